"""A kernel generated at build time (examples/aot, fusec_add_kernel) against PyTorch.

Usage: /usr/bin/python3 test_aot.py --program PATH_TO_aot_concat_conv_small
       /usr/bin/python3 test_aot.py --program PATH_TO_jit_concat_conv --spec concat_conv.fuse

aot_concat_conv_small embeds examples/concat_conv.fuse's graph fuse_hl at N=2, H=34, W=50
(Hl=17, Wl=25); jit_concat_conv compiles the spec at run time, here at random N, H, W (odd
sizes included). This script saves the seed's DimReduction state_dict as safetensors, runs the
program (which writes its random inputs and its output), and compares the output with
PyTorch's: max |got - want| <= 1e-4 * max(1, max |want|).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "conformance"))
from conformance import randomize_bn, save_safetensors  # noqa: E402


class DimReduction(nn.Module):  # the seed's module
    def __init__(self, dim, height=2):
        super().__init__()
        self.liner_fuse = nn.Linear(dim * height, dim)
        self.conv_fuse = nn.Sequential(nn.Conv2d(dim * height, dim, 1, stride=1),
                                       nn.BatchNorm2d(dim), nn.ReLU(inplace=True))

    def forward(self, merged_feat):
        return self.conv_fuse(merged_feat)


def run_and_compare(model, command, out_dir, label):
    """Runs one program that writes h.npy, l.npy and out.npy into out_dir, checks out.npy."""
    os.mkdir(out_dir)
    run = subprocess.run(command + ["--save", out_dir], capture_output=True, text=True)
    print(run.stdout, end="")
    if run.returncode != 0:
        print(run.stderr)
        return False
    h = torch.from_numpy(np.load(os.path.join(out_dir, "h.npy")))
    lo = torch.from_numpy(np.load(os.path.join(out_dir, "l.npy")))
    got = np.load(os.path.join(out_dir, "out.npy"))
    with torch.no_grad():
        up = F.interpolate(lo, size=h.shape[-2:], mode="bilinear", align_corners=False)
        want = model(torch.cat([h, up], dim=1)).numpy()
    err = float(np.max(np.abs(got - want)))
    tol = 1e-4 * max(1.0, float(np.max(np.abs(want))))
    print("%s: shape %s, max abs error %.3g (tolerance %.3g)" % (label, list(got.shape), err, tol))
    return got.shape == want.shape and err <= tol


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--program", required=True,
                    help="aot_concat_conv_small, or with --spec a program taking SPEC first")
    ap.add_argument("--spec", help="run-time kernels (examples/jit): the spec, at random dims")
    args = ap.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(20261128)
    model = randomize_bn(DimReduction(128, 2)).eval()
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "dimred.safetensors")
        save_safetensors(model.state_dict(), weights)
        for case, threads in enumerate((1, 2, 1)):
            command = [args.program]
            label = "threads=%d" % threads
            if args.spec:
                n, h, w = int(rng.integers(1, 3)), int(rng.integers(2, 40)), int(rng.integers(2, 40))
                command += [args.spec]
                label += " N=%d H=%d W=%d" % (n, h, w)
            elif case == 2:
                break
            command += [weights, "--runs", "2", "--threads", str(threads)]
            if args.spec:
                command += ["--entry", "fuse_hl", "--dim", "N=%d" % n, "--dim", "H=%d" % h,
                            "--dim", "W=%d" % w]
            if run_and_compare(model, command, os.path.join(tmp, "case%d" % case), label):
                passed += 1
            else:
                failed += 1
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
