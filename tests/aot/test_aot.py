"""A kernel generated at build time (examples/aot, fusec_add_kernel) against PyTorch.

Usage: /usr/bin/python3 test_aot.py --program PATH_TO_aot_concat_conv_small

The program embeds examples/concat_conv.fuse's graph fuse_hl at N=2, H=34, W=50 (Hl=17,
Wl=25). This script saves the seed's DimReduction state_dict as safetensors, runs the program
(which writes its random inputs and its output), and compares the output with PyTorch's:
max |got - want| <= 1e-4 * max(1, max |want|).
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--program", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = randomize_bn(DimReduction(128, 2)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "dimred.safetensors")
        save_safetensors(model.state_dict(), weights)
        for threads in (1, 2):
            out_dir = os.path.join(tmp, "t%d" % threads)
            os.mkdir(out_dir)
            run = subprocess.run([args.program, weights, "--runs", "2", "--threads", str(threads),
                                  "--save", out_dir], capture_output=True, text=True)
            print(run.stdout, end="")
            if run.returncode != 0:
                print(run.stderr)
                print("1 failed")
                return 1
            h = torch.from_numpy(np.load(os.path.join(out_dir, "h.npy")))
            lo = torch.from_numpy(np.load(os.path.join(out_dir, "l.npy")))
            got = np.load(os.path.join(out_dir, "out.npy"))
            with torch.no_grad():
                up = F.interpolate(lo, size=h.shape[-2:], mode="bilinear", align_corners=False)
                want = model(torch.cat([h, up], dim=1)).numpy()
            err = float(np.max(np.abs(got - want)))
            tol = 1e-4 * max(1.0, float(np.max(np.abs(want))))
            print("threads=%d: shape %s, max abs error %.3g (tolerance %.3g)"
                  % (threads, list(got.shape), err, tol))
            if got.shape != want.shape or not err <= tol:
                print("0 passed, 1 failed")
                return 1
    print("2 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
