"""Shared helpers for the PyTorch conformance scripts (tests/conformance/test_*.py).

Each script is run by CTest as

    /usr/bin/python3 SCRIPT --fusec PATH_TO_FUSEC --examples PATH_TO_EXAMPLES

and exits 0 when every case passes. A case writes weights (safetensors, exactly what
safetensors.torch.save_file writes; the `safetensors` package is not needed), inputs (.npy),
runs `fusec run ... --backend interp` (or the backend given with --backend) and compares every
output with PyTorch 1.13:

    max |got - expected| <= 1e-4 * max(1, max |expected|)

One line is printed per compared output. A failing case does not stop the others; the script
exits 1 at the end if any case failed. Options besides --fusec/--examples:
    --backend B     interp (default), c or jit
    --filter S      run only the cases whose name contains S
    --keep          keep the temporary folder (specs, weights, inputs) and print its path
    --verbose       print every fusec command line
"""

import argparse
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from fusec_torch import safetensors as fusec_safetensors  # noqa: E402

REL_TOL = 1e-4


def save_safetensors(state_dict, path, metadata=None, order=None):
    """Writes state_dict as safetensors.torch.save_file does (fusec_torch's writer).

    metadata defaults to {"format": "pt"} (what transformers' save_pretrained passes and what
    save_file(..., metadata={"format": "pt"}) writes); pass {} for an empty one, False for none.
    order="reversed" writes a valid file whose data runs in the opposite order.
    """
    if metadata is None:
        metadata = {"format": "pt"}
    elif metadata is False:
        metadata = None
    with open(path, "wb") as f:
        f.write(fusec_safetensors.to_bytes(state_dict, metadata, order or "save_file"))


def load_safetensors(path):
    """Reads a safetensors file back: ({key: tensor}, the header's metadata)."""
    tensors, _, metadata = fusec_safetensors.load_file(path)
    return tensors, metadata


def as_numpy(t):
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(t, dtype=np.float32))


def randomize_bn(module, generator=None):
    """Gives every BatchNorm in module random affine parameters and running stats (running_var
    positive), so that eval-mode BN is not the identity."""
    g = generator
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            with torch.no_grad():
                if m.weight is not None:
                    m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.num_batches_tracked.fill_(7)
    return module


def randomize_all(module, scale=None):
    """Re-draws every floating parameter of module (not only BN) from U(-1, 1)/sqrt(fan_in)-like
    ranges, keeping BN/LayerNorm sensible. Used where default inits would be degenerate (zero
    biases of nn.MultiheadAttention, LayerNorm 1/0)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2:
                fan_in = p[0].numel()
                bound = scale if scale is not None else 1.0 / max(1.0, fan_in) ** 0.5
                p.uniform_(-bound, bound)
            else:
                p.uniform_(-0.5, 0.5)
                if name.endswith("weight"):  # norm scales
                    p.add_(1.0)
    randomize_bn(module)
    return module


class Failure(Exception):
    pass


class Suite:
    """Runs cases, prints a line per compared output, remembers failures."""

    def __init__(self, description):
        ap = argparse.ArgumentParser(description=description)
        ap.add_argument("--fusec", required=True)
        ap.add_argument("--examples", required=True)
        ap.add_argument("--backend", default="interp")
        ap.add_argument("--filter", default="")
        ap.add_argument("--keep", action="store_true")
        ap.add_argument("--verbose", action="store_true")
        self.args = ap.parse_args()
        self.fusec = os.path.abspath(self.args.fusec)
        self.examples = os.path.abspath(self.args.examples)
        self.backend = self.args.backend
        self.tmp = tempfile.mkdtemp(prefix="fuse-conf-")
        self.failed = []
        self.passed = []
        self.skipped = []
        self.t0 = time.time()
        torch.set_num_threads(2)
        torch.manual_seed(0)
        if not os.access(self.fusec, os.X_OK):
            print("error: fusec not found or not executable: %s" % self.fusec)
            sys.exit(2)

    # -- files ---------------------------------------------------------------------------
    def case_dir(self, name):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        return d

    def write_spec(self, name, text):
        path = os.path.join(self.case_dir(name), name + ".fuse")
        with open(path, "w") as f:
            f.write(text)
        return path

    # -- running fusec -------------------------------------------------------------------
    def fusec_run(self, name, spec, inputs, outputs, entry=None, weights=None, dims=None,
                  prefix=None, extra=(), input_files=None):
        """Runs `fusec run` and returns {output name: np.ndarray}.

        inputs: {name: tensor/array} (name None: the graph's single input, no NAME=);
        outputs: list of output names (None: the single unnamed output, no NAME=);
        weights: a state_dict (written as safetensors) or a path; dims: {K: V} (one --dim each)
        or a list of raw --dim values; input_files: {name: path} of .npy files written by the
        caller (e.g. Fortran order)."""
        d = self.case_dir(name)
        cmd = [self.fusec, "run", spec]
        if entry is not None:
            cmd += ["--entry", entry]
        if weights is not None:
            if isinstance(weights, str):
                wpath = weights
            else:
                wpath = os.path.join(d, "weights.safetensors")
                save_safetensors(weights, wpath)
            cmd += ["--weights", wpath]
        if prefix is not None:
            cmd += ["--prefix", prefix]
        if dims:
            if isinstance(dims, dict):
                for k, v in dims.items():
                    cmd += ["--dim", "%s=%d" % (k, v)]
            else:
                for v in dims:
                    cmd += ["--dim", v]
        for iname, value in inputs.items():
            p = os.path.join(d, "in_%s.npy" % (iname or "x"))
            np.save(p, as_numpy(value))
            cmd += ["--input", p if iname is None else "%s=%s" % (iname, p)]
        for iname, p in (input_files or {}).items():
            cmd += ["--input", p if iname is None else "%s=%s" % (iname, p)]
        out_paths = {}
        for oname in outputs:
            p = os.path.join(d, "out_%s.npy" % (oname or "out"))
            if os.path.exists(p):
                os.unlink(p)
            out_paths[oname] = p
            cmd += ["--output", p if oname is None else "%s=%s" % (oname, p)]
        cmd += ["--backend", self.backend]
        cmd += list(extra)
        line = " ".join(shlex.quote(c) for c in cmd)
        if self.args.verbose:
            print("  $ " + line)
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        except subprocess.TimeoutExpired:
            raise Failure("fusec timed out after 120 s\n  $ %s" % line)
        err = r.stderr.decode("utf-8", "replace")
        if r.returncode < 0:
            raise Failure("fusec crashed (signal %d)\n  $ %s\n%s" % (-r.returncode, line,
                                                                     _indent(err)))
        if r.returncode != 0:
            raise Failure("fusec exited with %d\n  $ %s\n%s" % (r.returncode, line,
                                                                 _indent(err)))
        result = {}
        for oname, p in out_paths.items():
            if not os.path.exists(p):
                raise Failure("fusec did not write %s\n  $ %s\n%s" % (p, line, _indent(err)))
            result[oname] = np.load(p)
        self.last_stderr = err
        self.last_cmd = line
        return result

    # -- comparing -----------------------------------------------------------------------
    def compare(self, label, got, expected, shapes=""):
        expected = as_numpy(expected)
        got = np.asarray(got)
        if got.dtype != np.float32:
            self._line(False, label, shapes, "output dtype %s, expected float32" % got.dtype)
            return False
        if tuple(got.shape) != tuple(expected.shape):
            self._line(False, label, shapes, "shape %s, expected %s" % (list(got.shape),
                                                                        list(expected.shape)))
            return False
        finite = np.isfinite(expected)
        tol = REL_TOL * max(1.0, float(np.max(np.abs(expected[finite]))) if finite.any() else 1.0)
        # NaN where PyTorch has NaN and the same infinities are exact matches; anything else
        # non-finite is an error
        g64, e64 = got.astype(np.float64), expected.astype(np.float64)
        same = (np.isnan(g64) & np.isnan(e64)) | (np.isinf(e64) & (g64 == e64))
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.where(same, 0.0, np.abs(g64 - e64))
        diff[np.isnan(diff)] = np.inf
        err = float(np.max(diff)) if expected.size else 0.0
        ok = err <= tol
        detail = "max_err=%.3g tol=%.3g" % (err, tol)
        if not ok and expected.size:
            idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
            detail += " at %s: got %r expected %r" % (list(map(int, idx)), float(got[idx]),
                                                      float(expected[idx]))
        self._line(ok, label, shapes, detail)
        return ok

    def _line(self, ok, label, shapes, detail):
        print("%s  %-44s %s %s" % ("ok  " if ok else "FAIL", label, shapes, detail))
        sys.stdout.flush()

    # -- cases ---------------------------------------------------------------------------
    def case(self, name, fn):
        """Runs fn() (which compares and returns True/False, or raises) as one case."""
        if self.args.filter and self.args.filter not in name:
            return
        try:
            ok = fn()
        except Failure as e:
            print("FAIL  %-44s %s" % (name, e))
            ok = False
        except Exception:  # a bug in the script itself: report it as a failing case
            print("FAIL  %-44s python exception:\n%s" % (name, _indent(traceback.format_exc())))
            ok = False
        (self.passed if ok else self.failed).append(name)
        sys.stdout.flush()

    def check(self, name, spec_text, inputs, expected, entry=None, weights=None, dims=None,
              prefix=None, extra=(), input_files=None, spec_path=None):
        """The usual case: write spec_text (or use spec_path), run, compare each output.

        expected: {output name or None: tensor}."""

        def body():
            spec = spec_path or self.write_spec(name, spec_text)
            outs = list(expected.keys())
            got = self.fusec_run(name, spec, inputs, outs, entry=entry, weights=weights,
                                 dims=dims, prefix=prefix, extra=extra, input_files=input_files)
            ok = True
            ins = " ".join("%s%s" % (k or "x", list(np.shape(as_numpy(v))))
                           for k, v in inputs.items())
            for oname, exp in expected.items():
                label = name if len(expected) == 1 else "%s:%s" % (name, oname)
                shapes = "[%s -> %s]" % (ins, list(np.shape(as_numpy(exp))))
                ok = self.compare(label, got[oname], exp, shapes) and ok
            return ok

        self.case(name, body)

    def finish(self):
        dt = time.time() - self.t0
        print()
        print("%d passed, %d failed in %.1f s" % (len(self.passed), len(self.failed), dt))
        if self.failed:
            print("failed: " + ", ".join(self.failed))
        if self.args.keep:
            print("kept: " + self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        sys.exit(1 if self.failed else 0)


def _indent(text):
    return "\n".join("      " + ln for ln in text.rstrip().splitlines())


def header_code(path):
    """The Python in a spec's header comment: lines `#   code` before `fuse 1`, keeping only
    the top-level import/from/class/def statements (not the demo lines at full size)."""
    code = []
    for ln in open(path):
        if not ln.startswith("#"):
            if ln.strip() == "":
                continue
            break  # the version line
        body = ln[1:].rstrip("\n")
        if body.startswith("   ") or body.strip() == "":
            code.append(body[3:] if body.startswith("   ") else "")
    kept, keep = [], False
    for ln in code:
        if ln and not ln[0].isspace():
            keep = re.match(r"(import|from|class|def)\b", ln) is not None
        if keep:
            kept.append(ln)
    return "\n".join(kept) + "\n"
