"""W1 (bilinear up(l), concat with h, conv1x1 2C->C + BN + ReLU) in Halide 14, hand-scheduled.

    HL_NUM_THREADS=2 /usr/bin/python3 bench/halide_w1.py [--c 128] [--h 512] [--w 512]
        [--runs 11] [--warmup 1] [--check-h 64 --check-w 96] [--no-check]

The graph as written (no algebraic rewrite): BatchNorm is folded into the conv weights and bias
with numpy beforehand; the 1x1 conv is two reductions, over the C channels of h and the C
channels of up(l), so that no concatenated tensor exists. Schedule: rows in parallel; per row,
per tile of 32 pixels, the tile of h (all C channels) is copied into a contiguous 16 KB buffer
and the tile of up(l) is computed (vectorized over x, both lerps inline) into another one; then
per 8 output channels, the 8 x 32 outputs (16 vectors of 16 lanes) stay in registers over the
2C-long reduction, the weights broadcast from a [ci][co] array, and ReLU is applied on the way
out. In the innermost loop: 8 broadcasts, 2 vector loads, 16 FMAs.

Before timing, the pipeline's output is checked against the PyTorch module of
examples/concat_conv.fuse at a small size (max abs err <= 1e-4 * max(1, max|ref|)): computed
here, or read from --reference (what bench/run.py passes, to spare a second torch import).
stdout: one JSON line (median_ms, min_ms, max_ms, runs, check_max_err, check_tol, ...).
Exit status 1 if the check fails.
"""

import argparse
import json
import os
import statistics
import sys
import time

import halide as hl
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads  # noqa: E402

VEC = 16        # f32 lanes of a vector (AVX-512)
TILE_X = 32     # pixels per register tile (2 vectors)
TILE_CO = 8     # output channels per register tile


def fold_bn(state, eps=1e-5):
    """(w [Cout, Cin], b [Cout]) of conv_fuse.0 with conv_fuse.1 (eval BatchNorm) folded in."""
    w = state["conv_fuse.0.weight"].astype(np.float64)[:, :, 0, 0]
    b = state["conv_fuse.0.bias"].astype(np.float64)
    g = state["conv_fuse.1.weight"].astype(np.float64)
    beta = state["conv_fuse.1.bias"].astype(np.float64)
    mean = state["conv_fuse.1.running_mean"].astype(np.float64)
    var = state["conv_fuse.1.running_var"].astype(np.float64)
    s = g / np.sqrt(var + eps)
    return (w * s[:, None]).astype(np.float32), ((b - mean) * s + beta).astype(np.float32)


def src_coord(dst, in_size, out_size):
    """PyTorch's bilinear source index for align_corners=False with an output size:
    (i0, i1, frac), the scale being in/out and the coordinate clamped at 0."""
    scale = hl.f32(in_size) / hl.f32(out_size)
    s = hl.max((hl.f32(dst) + 0.5) * scale - 0.5, 0.0)
    i0 = hl.min(hl.i32(s), in_size - 1)
    i1 = hl.min(i0 + 1, in_size - 1)
    return i0, i1, s - hl.f32(i0)


class Pipeline:
    def __init__(self, c):
        self.c = c
        x, y, co = hl.Var("x"), hl.Var("y"), hl.Var("co")
        self.h = hl.ImageParam(hl.Float(32), 3, "h")        # (x, y, c)
        self.l = hl.ImageParam(hl.Float(32), 3, "l")        # (x, y, c), half resolution
        self.wh = hl.ImageParam(hl.Float(32), 2, "wh")      # (co, ci): weights on h's channels
        self.wl = hl.ImageParam(hl.Float(32), 2, "wl")      # (co, ci): weights on up(l)'s
        self.b = hl.ImageParam(hl.Float(32), 1, "b")
        h, l, wh, wl, b = self.h, self.l, self.wh, self.wl, self.b
        H, W = h.dim(1).extent(), h.dim(0).extent()
        Hl, Wl = l.dim(1).extent(), l.dim(0).extent()

        x0, x1, fx = src_coord(x, Wl, W)
        y0, y1, fy = src_coord(y, Hl, H)
        upx = hl.Func("upx")                                # horizontal lerp, low-res rows
        upx[x, y, co] = l[x0, y, co] * (1.0 - fx) + l[x1, y, co] * fx
        up = hl.Func("up")
        up[x, y, co] = upx[x, y0, co] * (1.0 - fy) + upx[x, y1, co] * fy
        hp = hl.Func("hp")                                  # h, packed per tile
        hp[x, y, co] = h[x, y, co]

        r = hl.RDom([(0, c)], "r")
        conv = hl.Func("conv")
        conv[x, y, co] = b[co]
        conv[x, y, co] += wh[co, r.x] * hp[x, y, r.x]
        conv[x, y, co] += wl[co, r.x] * up[x, y, r.x]
        out = hl.Func("out")
        out[x, y, co] = hl.max(conv[x, y, co], 0.0)

        xo, xi, coo, coi = hl.Var("xo"), hl.Var("xi"), hl.Var("coo"), hl.Var("coi")
        out.split(x, xo, xi, TILE_X).split(co, coo, coi, TILE_CO) \
           .reorder(xi, coi, coo, xo, y).vectorize(xi, VEC).parallel(y)
        conv.compute_at(out, coo).vectorize(x, VEC).unroll(x).unroll(co)
        for k in range(2):
            conv.update(k).reorder(x, co, r.x).vectorize(x, VEC).unroll(x).unroll(co)
        hp.compute_at(out, xo).vectorize(x, VEC)
        up.compute_at(out, xo).vectorize(x, VEC)            # upx inline
        for p in (h, l):
            p.dim(0).set_stride(1)
        for p in (wh, wl):
            p.dim(0).set_stride(1)
        self.out = out
        self.target = hl.get_jit_target_from_environment()
        out.compile_jit(self.target)

    def bind(self, h, l, w, b):
        """h [C, H, W], l [C, H/2, W/2], w [C, 2C] (folded), b [C]; numpy f32, C order.
        Returns the output array [C, H, W] that run() fills."""
        c = self.c
        self._keep = [np.ascontiguousarray(a, dtype=np.float32) for a in
                      (h, l, w[:, :c].T, w[:, c:].T, b)]
        hh, ll, wh, wl, bb = self._keep
        # hl.Buffer keeps numpy's axis order; a transposed view makes x dimension 0.
        self.h.set(hl.Buffer(hh.T))
        self.l.set(hl.Buffer(ll.T))
        self.wh.set(hl.Buffer(wh.T))     # (co, ci) with co contiguous
        self.wl.set(hl.Buffer(wl.T))
        self.b.set(hl.Buffer(bb))
        self.y = np.zeros(hh.shape, dtype=np.float32)
        self.ybuf = hl.Buffer(self.y.T)
        return self.y

    def run(self):
        self.out.realize(self.ybuf, self.target)


def torch_reference(c, hgt, wid, seed=1234):
    """(state, h, l, y) from the PyTorch module of examples/concat_conv.fuse (random weights)."""
    import torch
    w = workloads.WORKLOADS["W1"]
    d = {"C": c, "H": hgt, "W": wid}
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    model, fn = w.build(workloads.namespace(w), d)
    model.eval()
    workloads.randomize(model, torch, g)
    h, l = [torch.rand(*s, generator=g) for s in w.inputs(d).values()]
    with torch.no_grad():
        y = fn(h, l)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    return state, h.numpy()[0], l.numpy()[0], y.numpy()[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--c", type=int, default=128)
    ap.add_argument("--h", type=int, default=512)
    ap.add_argument("--w", type=int, default=512)
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--check-h", type=int, default=64)
    ap.add_argument("--check-w", type=int, default=96)
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--reference", metavar="NPZ",
                    help="the PyTorch reference to check against (h, l, y and the state_dict's "
                    "conv_fuse.* entries, as bench/run.py writes it) instead of running PyTorch "
                    "here")
    a = ap.parse_args()
    for v in (a.w, a.check_w):
        if v % TILE_X or v < TILE_X:
            ap.error("widths must be multiples of %d" % TILE_X)

    t0 = time.perf_counter()
    p = Pipeline(a.c)
    compile_ms = (time.perf_counter() - t0) * 1e3
    res = {"compile_ms": compile_ms, "target": str(p.target),
           "hl_num_threads": os.environ.get("HL_NUM_THREADS", "")}

    if not a.no_check:
        if a.reference:
            z = np.load(a.reference)
            state = {k: z[k] for k in z.files if k.startswith("conv_fuse.")}
            h, l, ref = z["h"][0], z["l"][0], z["y"][0]
        else:
            state, h, l, ref = torch_reference(a.c, a.check_h, a.check_w)
        wf, bf = fold_bn(state)
        got = p.bind(h, l, wf, bf)
        p.run()
        err = float(np.max(np.abs(got - ref)))
        tol = 1e-4 * max(1.0, float(np.max(np.abs(ref))))
        res.update(check_size=list(ref.shape), check_max_err=err, check_tol=tol,
                   check_ok=err <= tol)
        if err > tol:
            print(json.dumps(res))
            print("halide_w1: output differs from PyTorch: max abs err %.3g > %.3g" % (err, tol),
                  file=sys.stderr)
            return 1

    rng = np.random.default_rng(7)
    h = rng.random((a.c, a.h, a.w), dtype=np.float32)
    l = rng.random((a.c, a.h // 2, a.w // 2), dtype=np.float32)
    wf = (rng.random((a.c, 2 * a.c), dtype=np.float32) - 0.5) * 0.1
    bf = (rng.random(a.c, dtype=np.float32) - 0.5) * 0.1
    p.bind(h, l, wf, bf)
    for _ in range(a.warmup):
        p.run()
    times = []
    for _ in range(a.runs):
        t = time.perf_counter()
        p.run()
        times.append((time.perf_counter() - t) * 1e3)
    res.update(median_ms=statistics.median(times), min_ms=min(times), max_ms=max(times),
               runs=a.runs, warmup=a.warmup, size=[a.c, a.h, a.w])
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
