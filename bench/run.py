#!/usr/bin/python3
"""fusec side by side with PyTorch eager, Halide and oneDNN on the fusion workloads.

    /usr/bin/python3 bench/run.py --fusec build/release/fusec [--only W1,W3] [--quick]
                                  [--runs N] [--threads 2] [--json OUT] [--markdown]

For each workload (bench/workloads.py): `fusec bench --json --threads T --runs N`; PyTorch
eager (the module of the spec's header comment, eval(), no_grad, inputs allocated once,
torch.set_num_threads(T)) in a subprocess, once plain and once with LD_PRELOAD of tcmalloc;
for W1 the hand-scheduled Halide pipeline (bench/halide_w1.py, HL_NUM_THREADS=T); for W8 oneDNN's
convolution called directly (bench/onednn_w8.c, compiled here with `cc -O2 ... -ldnnl`,
OMP_NUM_THREADS=T). Every timer makes one untimed warm-up call (as `fusec bench` does), then
times N calls; the figures are medians in ms. It prints one table: the times, the ratio a goal is
about, the goal, and pass/miss.

Before timing, at the --quick sizes, outputs are checked (max abs err <= 1e-4*max(1, max|ref|)):
fusec's (`fusec run` with the PyTorch model's weights) against PyTorch for every workload,
Halide's against PyTorch (inside halide_w1.py), oneDNN's against PyTorch. A peer whose package
is missing (python3-halide, libdnnl-dev, libtcmalloc-minimal4) is skipped, and said so.

Exit status: 0 when everything ran and every check passed (a missed goal is not a failure);
1 when a check failed or a program misbehaved; 2 on a usage error.
"""

import argparse
import datetime
import importlib.util
import json
import os
import platform
import resource
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
import workloads  # noqa: E402

REPO = workloads.REPO
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
WARMUP = 1   # `fusec bench` makes exactly one untimed call; every other timer does the same
REL_TOL = 1e-4
BENCH_FIELDS = ["graph", "backend", "threads", "runs", "median_ms", "min_ms", "max_ms", "flops",
                "executed_flops", "gflops", "peak_gflops", "peak_fraction", "bytes",
                "compile_ms", "scratch_bytes", "prepared_bytes"]
GOAL_TEXT = {"halide": "Halide", "torch_tc": "PT+tc", "min_tc_onednn": "min(PT+tc, oneDNN)"}


class Report:
    """Collects problems (failed checks, misbehaving programs) and skips, printed as they come."""

    def __init__(self):
        self.problems = []
        self.skips = []
        self.checks = []
        self.t0 = time.time()

    def say(self, msg):
        ru = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        cpu = sum(r.ru_utime + r.ru_stime for r in ru)
        print("[%5.1f s, cpu %5.1f s] %s" % (time.time() - self.t0, cpu, msg), file=sys.stderr,
              flush=True)

    def problem(self, msg):
        self.problems.append(msg)
        self.say("PROBLEM: " + msg)

    def skip(self, what, why):
        self.skips.append({"what": what, "why": why})
        self.say("SKIP: %s (%s)" % (what, why))

    def check(self, label, ok, detail):
        self.checks.append({"check": label, "ok": ok, "detail": detail})
        self.say("%s %s: %s" % ("check ok  " if ok else "check FAIL", label, detail))
        if not ok:
            self.problems.append("check failed: %s: %s" % (label, detail))


R = Report()


def sh(cmd):
    return " ".join(shlex.quote(str(c)) for c in cmd)


def run_cmd(cmd, env=None, timeout=None, what=None, stderr=subprocess.PIPE):
    """(stdout, stderr) of cmd, or None (reported) when it fails or times out. With
    stderr=None the command's stderr goes straight to ours (progress lines)."""
    what = what or os.path.basename(str(cmd[0]))
    try:
        p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=stderr,
                           text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        R.problem("%s: timed out after %s s\n  $ %s" % (what, timeout, sh(cmd)))
        return None
    except OSError as e:
        R.problem("%s: cannot run: %s\n  $ %s" % (what, e, sh(cmd)))
        return None
    if p.returncode != 0:
        R.problem("%s: exit status %d\n  $ %s\n%s" % (what, p.returncode, sh(cmd),
                                                    _indent((p.stderr or "")[-3000:]
                                                            + p.stdout[-2000:])))
        return None
    return p.stdout, p.stderr


def _indent(text):
    return "\n".join("    " + ln for ln in text.rstrip().splitlines())


def peer_env(threads, preload=()):
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "HL_NUM_THREADS"):
        env[k] = str(threads)
    env.pop("LD_PRELOAD", None)
    preload = [p for p in preload if p]
    if preload:
        env["LD_PRELOAD"] = ":".join(preload)
    return env


def json_lines(text):
    out = []
    for ln in text.splitlines():
        ln = ln.strip()
        if ln.startswith("{"):
            out.append(json.loads(ln))
    return out


# -- correctness ------------------------------------------------------------------------------

def compare(label, got, ref):
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        R.check(label, False, "shape %s, expected %s" % (list(got.shape), list(ref.shape)))
        return
    tol = REL_TOL * max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    diff[~np.isfinite(diff)] = np.inf
    err = float(np.max(diff)) if ref.size else 0.0
    R.check(label, err <= tol, "max abs err %.3g, tol %.3g, shape %s" % (err, tol,
                                                                      list(ref.shape)))


def save_safetensors(state, path):
    """The float32 entries of a state_dict in the safetensors format (sorted keys)."""
    header, blobs, off = {}, [], 0
    for k in sorted(state):
        a = np.ascontiguousarray(state[k])
        if a.dtype != np.float32:
            continue                  # num_batches_tracked: fusec ignores it
        b = a.tobytes()
        header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def check_fusec(args, torch, w, tmp):
    """fusec run (the PyTorch model's weights and inputs) against PyTorch at the quick size."""
    model, fn, inputs = workloads.instantiate(w, torch, quick=True)
    with torch.no_grad():
        refs = workloads.as_tuple(fn(*inputs))
    d = os.path.join(tmp, "check_" + w.name)
    os.makedirs(d, exist_ok=True)
    wpath = os.path.join(d, "weights.safetensors")
    save_safetensors({k: v.detach().numpy() for k, v in model.state_dict().items()}, wpath)
    cmd = [args.fusec, "run", w.spec_path(), "--entry", w.entry, "--dim", w.dim_arg(True),
           "--weights", wpath, "--threads", str(args.threads)]
    for name, t in zip(w.inputs(w.dims(True)), inputs):
        p = os.path.join(d, name + ".npy")
        np.save(p, t.numpy())
        cmd += ["--input", "%s=%s" % (name, p)]
    outs = []
    for i, name in enumerate(w.outputs):
        p = os.path.join(d, "out%d.npy" % i)
        outs.append(p)
        cmd += ["--output", p if name is None else "%s=%s" % (name, p)]
    if run_cmd(cmd, timeout=args.timeout, what="fusec run (%s check)" % w.name) is None:
        R.check("fusec %s vs PyTorch" % w.name, False, "fusec run failed")
        return
    if w.name == "W1":
        z = {k: v.detach().numpy() for k, v in model.state_dict().items()
             if k.startswith("conv_fuse.")}
        z.update(h=inputs[0].numpy(), l=inputs[1].numpy(), y=refs[0].numpy())
        np.savez(os.path.join(tmp, "w1_reference.npz"), **z)
    for name, p, ref in zip(w.outputs, outs, refs):
        label = "fusec %s%s vs PyTorch" % (w.name, "" if name is None else "." + name)
        if not os.path.exists(p):
            R.check(label, False, "fusec wrote no %s" % p)
            continue
        compare(label, np.load(p), ref.numpy())


def fold_conv_bn(model, eps=1e-5):
    """(weights [Co, Ci, kh, kw], bias [Co]) of ConvBNReLU's conv with its BatchNorm folded."""
    st = {k: v.detach().numpy().astype(np.float64) for k, v in model.state_dict().items()
          if v.is_floating_point()}
    s = st["bn.weight"] / np.sqrt(st["bn.running_var"] + eps)
    w = st["conv.weight"] * s[:, None, None, None]
    b = st["bn.bias"] - st["bn.running_mean"] * s
    if "conv.bias" in st:
        b = b + st["conv.bias"] * s
    return w.astype(np.float32), b.astype(np.float32)


def check_onednn(args, torch, exe, tmp):
    w = workloads.WORKLOADS["W8"]
    model, fn, (x,) = workloads.instantiate(w, torch, quick=True)
    with torch.no_grad():
        ref = fn(x).numpy()
    wf, bf = fold_conv_bn(model)
    d = os.path.join(tmp, "check_onednn")
    os.makedirs(d, exist_ok=True)
    x.numpy().astype(np.float32).tofile(os.path.join(d, "src.bin"))
    wf.tofile(os.path.join(d, "wei.bin"))
    bf.tofile(os.path.join(d, "bias.bin"))
    dims = w.dims(True)
    out = os.path.join(d, "dst.bin")
    r = run_cmd([exe, "--c", dims["C"], "--h", dims["H"], "--w", dims["W"], "--runs", 1,
                 "--warmup", 0, "--input", d, "--output", out],
                env=peer_env(args.threads), timeout=args.timeout, what="onednn_w8 (check)")
    if r is None:
        R.check("oneDNN W8 vs PyTorch", False, "onednn_w8 failed")
        return
    compare("oneDNN W8 vs PyTorch", np.fromfile(out, dtype=np.float32).reshape(ref.shape), ref)


# -- peers ------------------------------------------------------------------------------------

def fusec_bench(args, w):
    cmd = [args.fusec, "bench", w.spec_path(), "--entry", w.entry, "--dim", w.dim_arg(args.quick),
           "--threads", args.threads, "--runs", args.runs, "--json"]
    r = run_cmd(cmd, timeout=args.timeout, what="fusec bench (%s)" % w.name)
    if r is None:
        return None
    lines = [ln for ln in r[0].splitlines() if ln.strip()]
    if len(lines) != 1:
        R.problem("fusec bench (%s): stdout has %d lines, expected one JSON line\n  $ %s"
                  % (w.name, len(lines), sh(cmd)))
        if not lines:
            return None
    try:
        res = json.loads(lines[0])
    except ValueError as e:
        R.problem("fusec bench (%s): stdout is not JSON (%s)\n  $ %s" % (w.name, e, sh(cmd)))
        return None
    missing = [f for f in BENCH_FIELDS if f not in res]
    if missing:
        R.problem("fusec bench (%s): JSON lacks %s\n  $ %s" % (w.name, ", ".join(missing),
                                                                sh(cmd)))
    if "median_ms" not in res:
        return None
    bad = []
    if res.get("runs") not in (None, args.runs):
        bad.append("runs %r, asked %d" % (res.get("runs"), args.runs))
    if res.get("threads") not in (None, args.threads):
        bad.append("threads %r, asked %d" % (res.get("threads"), args.threads))
    if not (res.get("min_ms", 0) <= res["median_ms"] <= res.get("max_ms", float("inf"))):
        bad.append("median %r outside [min, max]" % res["median_ms"])
    if res.get("flops") and res.get("gflops") and res["median_ms"] > 0:
        g = res["flops"] / res["median_ms"] / 1e6
        if abs(g - res["gflops"]) > 0.01 * g + 0.01:
            bad.append("gflops %r, flops/median gives %.3f" % (res["gflops"], g))
    if bad:
        R.problem("fusec bench (%s): %s\n  $ %s" % (w.name, "; ".join(bad), sh(cmd)))
    res["command"] = sh(cmd)
    return res


def torch_times(args, names, tcmalloc):
    label = "PyTorch+tcmalloc" if tcmalloc else "PyTorch"
    preload = [p for p in (args.torch_preload, tcmalloc) if p]
    cmd = [sys.executable, os.path.join(BENCH, "torch_peer.py"), "--only", ",".join(names),
           "--runs", args.runs, "--warmup", WARMUP, "--threads", args.threads]
    if args.quick:
        cmd.append("--quick")
    r = run_cmd(cmd, env=peer_env(args.threads, preload), timeout=args.timeout * len(names),
                what=label, stderr=None)
    if r is None:
        return {}
    res = {d["workload"]: d for d in json_lines(r[0])}
    for d in res.values():
        if bool(tcmalloc) != d.get("tcmalloc"):
            R.problem("%s: tcmalloc %s in the process (LD_PRELOAD=%s)"
                      % (label, "mapped" if d.get("tcmalloc") else "not mapped",
                         ":".join(preload)))
        d["command"] = ("LD_PRELOAD=%s " % ":".join(preload) if preload else "") + sh(cmd)
    return res


def halide_time(args, w, tmp):
    d, q = w.dims(args.quick), w.dims(True)
    cmd = [sys.executable, os.path.join(BENCH, "halide_w1.py"), "--c", d["C"], "--h", d["H"],
           "--w", d["W"], "--runs", args.runs, "--warmup", WARMUP, "--check-h", q["H"],
           "--check-w", q["W"]]
    ref = os.path.join(tmp, "w1_reference.npz")
    shown = list(cmd)
    if args.no_check:
        cmd.append("--no-check")
    elif os.path.exists(ref):
        cmd += ["--reference", ref]
    p = None
    try:
        p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                           env=peer_env(args.threads), timeout=args.timeout)
    except subprocess.TimeoutExpired:
        R.problem("Halide W1: timed out\n  $ %s" % sh(cmd))
        return None
    lines = json_lines(p.stdout)
    res = lines[-1] if lines else {}
    if "check_max_err" in res:
        R.check("Halide W1 vs PyTorch", bool(res.get("check_ok")),
                "max abs err %.3g, tol %.3g, shape %s" % (res["check_max_err"], res["check_tol"],
                                                          [1] + res["check_size"]))
    if p.returncode != 0 or "median_ms" not in res:
        if "check_max_err" not in res or res.get("check_ok"):
            R.problem("Halide W1: exit status %d\n  $ %s\n%s" % (p.returncode, sh(cmd),
                                                               _indent(p.stderr[-3000:])))
        return None
    res["command"] = "HL_NUM_THREADS=%d %s" % (args.threads, sh(shown))
    return res


def onednn_build(args, tmp):
    if not os.path.exists("/usr/include/oneapi/dnnl/dnnl.h"):
        R.skip("oneDNN (W8)", "libdnnl-dev is not installed: /usr/include/oneapi/dnnl/dnnl.h "
               "missing; apt-get install libdnnl-dev")
        return None
    exe = os.path.join(tmp, "onednn_w8")
    cmd = [args.cc, "-O2", "-o", exe, os.path.join(BENCH, "onednn_w8.c"), "-ldnnl"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        if "cannot find -ldnnl" in p.stderr or "dnnl.h" in p.stderr:
            R.skip("oneDNN (W8)", "cannot build against libdnnl: " + p.stderr.strip()[:200])
        else:
            R.problem("oneDNN: build failed\n  $ %s\n%s" % (sh(cmd), _indent(p.stderr)))
        return None
    return exe


def onednn_time(args, w, exe, layout):
    d = w.dims(args.quick)
    cmd = [exe, "--c", d["C"], "--h", d["H"], "--w", d["W"], "--runs", args.runs,
           "--warmup", WARMUP, "--layout", layout]
    r = run_cmd(cmd, env=peer_env(args.threads), timeout=args.timeout,
                what="onednn_w8 (%s)" % layout)
    if r is None:
        return None
    lines = json_lines(r[0])
    if not lines:
        R.problem("onednn_w8: no JSON on stdout\n  $ %s" % sh(cmd))
        return None
    res = lines[-1]
    res["command"] = "OMP_NUM_THREADS=%d %s" % (args.threads, sh(cmd))
    return res


# -- the table --------------------------------------------------------------------------------

def med(d):
    return d.get("median_ms") if d else None


def goal_status(args, w, row):
    if not w.goal:
        base = med(row.get("torch_tc")) or med(row.get("torch"))
        ratio = med(row.get("fusec")) / base if base and med(row.get("fusec")) else None
        return ratio, "vs PT+tc" if med(row.get("torch_tc")) else "vs PT", "-", "next issue"
    kind, factor = w.goal
    f = med(row.get("fusec"))
    if kind == "halide":
        parts = [med(row.get("halide"))]
    elif kind == "torch_tc":
        parts = [med(row.get("torch_tc"))]
    else:
        parts = [med(row.get("torch_tc")), med(row.get("onednn"))]
    goal = "<= %.2g x %s" % (factor, GOAL_TEXT[kind])
    if f is None:
        return None, GOAL_TEXT[kind], goal, "error"
    if any(p is None for p in parts):
        return None, GOAL_TEXT[kind], goal, "skip"
    ratio = f / min(parts)
    status = "pass" if ratio <= factor else "miss"
    if args.quick:
        status += " (quick)"
    return ratio, GOAL_TEXT[kind], goal, status


def fmt(v, digits=None):
    """A number for the table: 3 significant digits below 100, else no decimals."""
    if v is None:
        return "-"
    if digits is not None:
        return "%.*f" % (digits, v)
    if v == 0 or abs(v) >= 100:
        return "%.0f" % v
    return "%.3g" % v


COLUMNS = ["workload", "fusec ms", "fusec %peak", "PyTorch ms", "PyTorch+tc ms",
           "Halide/oneDNN ms", "ratio", "goal", "status"]


def table_rows(args, rows):
    out = []
    for w, row in rows:
        ratio, base, goal, status = goal_status(args, w, row)
        peer = med(row.get("halide")) if w.peer == "halide" else med(row.get("onednn"))
        peer_s = "-" if w.peer is None else (fmt(peer) if peer is not None else "skipped")
        if w.peer:
            peer_s += " (%s)" % ("Halide" if w.peer == "halide" else "oneDNN")
        pf = row.get("fusec", {}) or {}
        out.append([w.name, fmt(med(row.get("fusec"))),
                    fmt(100 * pf["peak_fraction"], 1) if "peak_fraction" in pf else "-",
                    fmt(med(row.get("torch"))), fmt(med(row.get("torch_tc"))), peer_s,
                    "-" if ratio is None else "%.3g (%s)" % (ratio, base), goal, status])
        row.update(ratio=ratio, ratio_base=base, goal=goal, status=status)
    return out


RATE_COLUMNS = ["workload", "GFLOP", "fusec GFLOP/s", "PyTorch", "PyTorch+tc", "Halide/oneDNN",
                "peak GFLOP/s"]


def rate_rows(rows):
    out = []
    for w, row in rows:
        f = row.get("fusec") or {}
        flops = f.get("flops")
        rate = {}
        for k in ("fusec", "torch", "torch_tc", "halide", "onednn"):
            m = med(row.get(k))
            rate[k] = flops / m / 1e6 if flops and m else None
        row["gflops"] = rate
        peer = rate["halide"] if w.peer == "halide" else rate["onednn"]
        out.append([w.name, ("%.3g" % (flops / 1e9)) if flops else "-", fmt(rate["fusec"]),
                    fmt(rate["torch"]), fmt(rate["torch_tc"]), fmt(peer),
                    fmt(f.get("peak_gflops"))])
    return out


def print_table(columns, rows, markdown):
    if markdown:
        print("| " + " | ".join(columns) + " |")
        print("|" + "|".join("---" for _ in columns) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        return
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(wd) for c, wd in zip(columns, widths)).rstrip())
    for r in rows:
        print("  ".join(v.ljust(wd) for v, wd in zip(r, widths)).rstrip())


def fusec_version(fusec):
    try:
        return subprocess.run([fusec, "--version"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fusec", required=True, help="the fusec binary")
    ap.add_argument("--only", help="comma-separated workloads (default: all): "
                    + ",".join(workloads.WORKLOADS))
    ap.add_argument("--quick", action="store_true", help="small sizes, 3 runs (a smoke test)")
    ap.add_argument("--runs", type=int, help="timed calls per measurement (default 11; quick 3); "
                    "odd, so that every timer's median is the middle call")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", metavar="OUT", help="write every number to OUT")
    ap.add_argument("--markdown", action="store_true", help="print the table in markdown")
    ap.add_argument("--no-check", action="store_true", help="skip the correctness checks")
    ap.add_argument("--tcmalloc", default=TCMALLOC, help="the library LD_PRELOADed")
    ap.add_argument("--torch-preload", metavar="LIB",
                    help="also LD_PRELOAD LIB into both PyTorch runs (e.g. an OpenBLAS "
                    "libblas.so.3, when Debian's alternatives select the reference BLAS)")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    ap.add_argument("--timeout", type=float, help="seconds per program (default 600; quick 120)")
    args = ap.parse_args()
    args.runs = args.runs or (3 if args.quick else 11)
    args.timeout = args.timeout or (120 if args.quick else 600)
    if args.runs < 1 or args.threads < 1:
        ap.error("--runs and --threads must be positive")
    if args.runs % 2 == 0:
        ap.error("--runs must be odd: with an even count fusec bench reports the upper of the "
                 "two middle times and the other timers their mean")
    names = args.only.split(",") if args.only else list(workloads.WORKLOADS)
    unknown = [n for n in names if n not in workloads.WORKLOADS]
    if unknown:
        ap.error("unknown workload(s) %s; known: %s" % (",".join(unknown),
                                                         ",".join(workloads.WORKLOADS)))
    if not os.access(args.fusec, os.X_OK):
        ap.error("--fusec %s is not an executable" % args.fusec)
    args.fusec = os.path.abspath(args.fusec)
    sel = [workloads.WORKLOADS[n] for n in names]
    t_start = time.time()
    load0 = os.getloadavg()

    have_halide = importlib.util.find_spec("halide") is not None
    have_tc = os.path.exists(args.tcmalloc)
    if any(w.peer == "halide" for w in sel) and not have_halide:
        R.skip("Halide (W1)", "python3-halide is not installed (no `halide` module for %s); "
               "apt-get install python3-halide" % sys.executable)
    if not have_tc:
        R.skip("PyTorch+tcmalloc", "%s not found; apt-get install libtcmalloc-minimal4"
               % args.tcmalloc)

    tmp = tempfile.mkdtemp(prefix="fusec-bench-")
    try:
        onednn = onednn_build(args, tmp) if any(w.peer == "onednn" for w in sel) else None

        if not args.no_check:
            import torch
            torch.set_num_threads(args.threads)
            for w in sel:
                check_fusec(args, torch, w, tmp)
            if onednn:
                check_onednn(args, torch, onednn, tmp)

        rows = [(w, {}) for w in sel]
        for w, row in rows:
            R.say("timing %s: fusec" % w.name)
            row["fusec"] = fusec_bench(args, w)
        R.say("timing PyTorch")
        plain = torch_times(args, names, None)
        tc = {}
        if have_tc:
            R.say("timing PyTorch+tcmalloc")
            tc = torch_times(args, names, args.tcmalloc)
        for w, row in rows:
            row["torch"] = plain.get(w.name)
            row["torch_tc"] = tc.get(w.name)
            if w.peer == "halide" and have_halide:
                R.say("timing %s: Halide" % w.name)
                row["halide"] = halide_time(args, w, tmp)
            if w.peer == "onednn" and onednn:
                R.say("timing %s: oneDNN" % w.name)
                row["onednn"] = onednn_time(args, w, onednn, "nchw")
                row["onednn_blocked"] = onednn_time(args, w, onednn, "any")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    load1 = os.getloadavg()
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    command = sh([sys.executable] + sys.argv)
    table = table_rows(args, rows)
    rates = rate_rows(rows)
    blas = sorted({b for d in plain.values() for b in d.get("blas", [])})
    meta = {"date": when, "command": command, "fusec": fusec_version(args.fusec),
            "cpu": cpu_model(), "cpus": os.cpu_count(), "threads": args.threads,
            "runs": args.runs, "warmup": WARMUP, "quick": args.quick, "nice": os.nice(0),
            "loadavg_start": list(load0), "loadavg_end": list(load1),
            "seconds": round(time.time() - t_start, 1),
            "tcmalloc": args.tcmalloc if have_tc else None,
            "torch_preload": args.torch_preload, "torch_blas": blas,
            "torch": next((d.get("torch") for d in plain.values()), None)}

    md = args.markdown
    la = "load average %.2f %.2f %.2f at start, %.2f %.2f %.2f at end" % (load0 + load1)
    head = "%s, %s; %d threads, %d warm-up + %d timed calls, medians in ms%s" % (
        when, la, args.threads, WARMUP, args.runs, " (quick sizes)" if args.quick else "")
    print(("`%s`\n" if md else "%s") % command)
    print("%s; %s; nice %d.%s" % (head, meta["fusec"], meta["nice"], "\n" if md else ""))
    print_table(COLUMNS, table, md)
    print("\n" if md else "", end="")
    print_table(RATE_COLUMNS, rates, md)
    print("\n" if md else "", end="")
    notes = ["sizes: " + "; ".join("%s %s" % (w.name, w.dim_arg(args.quick)) for w in sel)]
    notes.append("GFLOP/s: the graph's FLOPs as written (fusec bench's `flops`) / median; peak: "
                 "the FMA peak fusec bench measured in the same run (`peak_gflops`)")
    for w, row in rows:
        b = row.get("onednn_blocked")
        if b:
            notes.append("%s: oneDNN with the src/dst layouts it chooses (%s, reorders not "
                         "timed): %s ms" % (w.name, b.get("impl", "?"), fmt(b["median_ms"])))
        o = row.get("onednn")
        if o:
            notes.append("%s: oneDNN NCHW implementation: %s" % (w.name, o.get("impl", "?")))
    if blas:
        ref = any("/blas/libblas" in b for b in blas)
        notes.append("PyTorch's BLAS: %s%s" % (", ".join(blas), " (the reference BLAS: Linear "
                     "and matmul are slow; see docs/performance.md)" if ref else ""))
    if args.torch_preload:
        notes.append("PyTorch runs with LD_PRELOAD=%s" % args.torch_preload)
    notes += ["skipped: %s (%s)" % (s["what"], s["why"]) for s in R.skips]
    if R.checks:
        notes.append("checks: %d of %d outputs agree (max abs err <= %g * max(1, max|ref|))"
                     % (sum(c["ok"] for c in R.checks), len(R.checks), REL_TOL))
    notes += ["PROBLEM: " + p.splitlines()[0] for p in R.problems]
    for n in notes:
        print(("- %s" if md else "%s") % n)

    if args.json:
        doc = {"meta": meta, "skipped": R.skips, "checks": R.checks, "problems": R.problems,
               "workloads": [dict(name=w.name, title=w.title, spec=w.spec, entry=w.entry,
                                  dims=w.dims(args.quick), **row) for w, row in rows]}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    return 1 if R.problems else 0


if __name__ == "__main__":
    sys.exit(main())
