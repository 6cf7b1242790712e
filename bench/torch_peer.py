"""PyTorch eager timings for bench/run.py, in a process of their own (so that LD_PRELOAD of
tcmalloc applies to the whole process, torch included).

    /usr/bin/python3 bench/torch_peer.py --only W1,W3 [--quick] [--runs 11] [--warmup 1]
                                         [--threads 2]

stdout: one JSON object per line, per workload: median_ms, min_ms, max_ms, runs, threads,
tcmalloc (whether libtcmalloc is mapped into this process), blas (the BLAS libraries mapped:
Linear and matmul go to libblas.so.3, whichever implementation Debian's alternatives select),
torch version.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads  # noqa: E402


def mapped_libs():
    """The shared objects mapped into this process (real paths)."""
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for ln in f:
                parts = ln.split()
                if len(parts) >= 6 and ".so" in parts[5]:
                    libs.add(os.path.realpath(parts[5]))
    except OSError:
        pass
    return sorted(libs)


def time_calls(fn, inputs, runs, warmup):
    with torch.no_grad():
        for _ in range(warmup):
            fn(*inputs)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn(*inputs)
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    libs = mapped_libs()
    tc = any("libtcmalloc" in p for p in libs)
    blas = [p for p in libs if "blas" in os.path.basename(p) or "/blas/" in p]
    for name in a.only.split(","):
        w = workloads.WORKLOADS[name]
        model, fn, inputs = workloads.instantiate(w, torch, a.quick)
        times = time_calls(fn, inputs, a.runs, a.warmup)
        print(json.dumps({"workload": name, "median_ms": statistics.median(times),
                          "min_ms": min(times), "max_ms": max(times), "runs": a.runs,
                          "warmup": a.warmup, "threads": torch.get_num_threads(),
                          "tcmalloc": tc, "blas": blas, "torch": torch.__version__}), flush=True)
        print("  PyTorch%s %s: %.3f ms" % ("+tcmalloc" if tc else "", name,
                                          statistics.median(times)), file=sys.stderr, flush=True)
        del model, fn, inputs


if __name__ == "__main__":
    main()
