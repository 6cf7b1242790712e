"""Shared helpers for the fusec_torch tests (tests/python/test_*.py).

A script makes a Suite, runs cases through it and calls finish(), which prints
"N passed, M failed" and exits 1 if any case failed. Options: --fusec PATH (required),
--backend B (interp), --filter S, --keep, --verbose.
"""

import argparse
import linecache
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "python"))  # fusec_torch
sys.path.insert(0, os.path.join(REPO, "tests", "conformance"))
from conformance import header_code  # noqa: E402,F401 (the examples' PyTorch code)

REL_TOL = 1e-4


class Failure(Exception):
    pass


def as_numpy(t):
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(t, dtype=np.float32))


def randomize_bn(module, generator=None, var_scale=1.0):
    """Random affine parameters and running statistics for every BatchNorm (running_var
    positive), so that eval-mode BN is not the identity."""
    g = generator
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            with torch.no_grad():
                if m.weight is not None:
                    m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(c, generator=g) - 0.5)
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                    m.running_var.copy_((torch.rand(c, generator=g) + 0.5) * var_scale)
                    m.num_batches_tracked.fill_(7)
    return module


def randomize_norms(module):
    """LayerNorm and MultiheadAttention parameters off their ones/zeros defaults."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.LayerNorm, torch.nn.MultiheadAttention)):
                for name, p in m.named_parameters():
                    if p.dim() >= 2:
                        bound = 1.0 / max(1.0, p[0].numel()) ** 0.5
                        p.uniform_(-bound, bound)
                    else:
                        p.uniform_(-0.5, 0.5)
                        if name.endswith("weight"):
                            p.add_(1.0)
    return module


def prep(model):
    model.eval()
    randomize_norms(model)
    randomize_bn(model)
    return model


def exec_source(src, filename):
    """Runs Python source registered under filename in linecache (so tracebacks and
    fusec_torch's messages show its lines); returns its namespace."""
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    ns = {"__name__": "fusec_test_" + re.sub(r"\W", "_", filename)}
    exec(compile(src, filename, "exec"), ns)
    return ns


def load_example(examples, name):
    path = os.path.join(examples, name + ".fuse")
    return exec_source(header_code(path), "<examples/%s.fuse header>" % name)


class Suite:
    def __init__(self, description, extra_args=None):
        ap = argparse.ArgumentParser(description=description)
        ap.add_argument("--fusec", required=True)
        ap.add_argument("--backend", default="interp")
        ap.add_argument("--examples", default=os.path.join(REPO, "examples"))
        ap.add_argument("--filter", default="")
        ap.add_argument("--keep", action="store_true")
        ap.add_argument("--verbose", action="store_true")
        if extra_args:
            extra_args(ap)
        self.args = ap.parse_args()
        self.fusec = os.path.abspath(self.args.fusec)
        self.examples = os.path.abspath(self.args.examples)
        self.tmp = tempfile.mkdtemp(prefix="fusec-torch-")
        self.passed, self.failed = [], []
        self.t0 = time.time()
        torch.set_num_threads(1)
        torch.manual_seed(0)
        if not os.access(self.fusec, os.X_OK):
            print("error: fusec not found or not executable: %s" % self.fusec)
            sys.exit(2)

    def dir(self, name):
        d = os.path.join(self.tmp, re.sub(r"[^A-Za-z0-9_.-]", "_", name))
        os.makedirs(d, exist_ok=True)
        return d

    def fusec_cmd(self, args, expect_rc=0, timeout=300):
        cmd = [self.fusec] + list(args)
        line = " ".join(shlex.quote(c) for c in cmd)
        if self.args.verbose:
            print("  $ " + line)
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure("fusec timed out\n  $ %s" % line)
        out = r.stdout.decode("utf-8", "replace")
        err = r.stderr.decode("utf-8", "replace")
        if r.returncode < 0:
            raise Failure("fusec crashed (signal %d)\n  $ %s\n%s" % (-r.returncode, line,
                                                                     indent(err)))
        if expect_rc is not None and r.returncode != expect_rc:
            raise Failure("fusec exited with %d (expected %d)\n  $ %s\n%s%s" % (
                r.returncode, expect_rc, line, indent(out), indent(err)))
        return r.returncode, out, err

    def check_keys(self, spec, weights, result, state_dict):
        """`fusec check SPEC --weights W` accepts the file, and the parameters it lists are
        the keys export() reported, all of them state_dict keys."""
        _, out, _ = self.fusec_cmd(["check", spec, "--weights", weights])
        listed = parameters_of(out)
        if sorted(listed) != sorted(result.keys):
            raise Failure("fusec check lists %s, export() reported %s" % (sorted(listed),
                                                                         sorted(result.keys)))
        for k, shape in listed.items():
            if k not in state_dict:
                raise Failure("the spec reads %s, which is not in the state_dict" % k)
            if list(state_dict[k].shape) != shape:
                raise Failure("%s: the spec wants %s, the state_dict has %s" % (
                    k, shape, list(state_dict[k].shape)))

    def run(self, spec, weights, inputs, outputs, d, backend="default"):
        """fusec run; inputs: [(name, tensor)], outputs: [name]; returns [np.ndarray]."""
        args = ["run", spec]
        if weights:
            args += ["--weights", weights]
        for name, t in inputs:
            p = os.path.join(d, "in_%s.npy" % name)
            np.save(p, as_numpy(t))
            args += ["--input", "%s=%s" % (name, p)]
        paths = []
        for name in outputs:
            p = os.path.join(d, "out_%s.npy" % name)
            if os.path.exists(p):
                os.unlink(p)
            paths.append(p)
            args += ["--output", "%s=%s" % (name, p)]
        if backend == "default":
            backend = self.args.backend
        if backend:
            args += ["--backend", backend]
        self.fusec_cmd(args)
        return [np.load(p) for p in paths]

    def compare(self, label, got, want):
        want = as_numpy(want)
        got = np.asarray(got)
        if got.dtype != np.float32:
            return self.line(False, label, "dtype %s" % got.dtype)
        if tuple(got.shape) != tuple(want.shape):
            return self.line(False, label, "shape %s, expected %s" % (list(got.shape),
                                                                      list(want.shape)))
        tol = REL_TOL * max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
        err = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
        if not np.isfinite(err):
            err = float("inf")
        return self.line(err <= tol, label, "%s max_err=%.3g tol=%.3g" % (
            list(want.shape), err, tol))

    def line(self, ok, label, detail):
        print("%s  %-52s %s" % ("ok  " if ok else "FAIL", label, detail))
        sys.stdout.flush()
        return ok

    def case(self, name, fn):
        if self.args.filter and self.args.filter not in name:
            return
        try:
            ok = fn()
        except Failure as e:
            print("FAIL  %-52s %s" % (name, e))
            ok = False
        except Exception:
            print("FAIL  %-52s python exception:\n%s" % (name, indent(traceback.format_exc())))
            ok = False
        (self.passed if ok else self.failed).append(name)
        sys.stdout.flush()

    def finish(self):
        print()
        print("%d passed, %d failed in %.1f s" % (len(self.passed), len(self.failed),
                                                   time.time() - self.t0))
        if self.failed:
            print("failed: " + ", ".join(self.failed))
        if self.args.keep:
            print("kept: " + self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        sys.exit(1 if self.failed else 0)


def parameters_of(check_output):
    """{key: shape} from the `parameters:` section of `fusec check`'s summary."""
    out, inside = {}, False
    for ln in check_output.splitlines():
        s = ln.strip()
        if s.startswith("parameters:"):
            inside = True
            continue
        if inside:
            m = re.match(r"^(\S+): f32\[([0-9, ]*)\]$", s)
            if not m:
                break
            out[m.group(1)] = [int(v) for v in m.group(2).split(",") if v.strip()]
    return out


def indent(text):
    return "".join("      " + ln + "\n" for ln in text.rstrip().splitlines())
