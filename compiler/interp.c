/*
 * interp: the reference interpreter, graph IR -> numbers (see interp.h).
 *
 * It walks g->nodes in topological order and materializes each live node's result in a
 * buffer of its own, row-major and contiguous. Each op is a plain loop nest written from the
 * op's definition (LANGUAGE.md §3), with no tiling and no fusion, because every backend is
 * checked against it and it must be easy to check by reading.
 *
 * Invariants:
 * - Numerics are PyTorch 1.13 float32: sums and dot products accumulate in double and are
 *   rounded to f32 once; transcendental functions are evaluated in double; upsampling
 *   computes its source indices in f32 exactly as PyTorch's CPU kernels do.
 * - Memory: a node is computed only if an output depends on it. Its buffer is freed right
 *   after its last consumer has run, and outputs are copied into the caller's buffers when
 *   their node is computed. Every buffer comes from a checked malloc, and a request larger
 *   than physical memory is refused before malloc: running out of memory is reported in
 *   `err`, never a crash.
 * - All index arithmetic is int64_t (a tensor may have up to 2^40 elements).
 */
#include "interp.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

typedef struct Run {
    const Graph *g;
    const float *const *params;
    const float *const *inputs;
    const float **val;  /* val[id]: the values of node id while it is live */
    float **owned;      /* owned[id]: the buffer this run allocated for node id, or NULL */
    uint64_t mem_limit; /* larger requests cannot succeed (physical memory) */
    char *err;
    size_t errlen;
} Run;

/* ---- memory -------------------------------------------------------------------------- */

/* Physical memory in bytes, or UINT64_MAX if unknown. A request above it cannot be served;
 * refusing it up front keeps an overcommitting kernel (or a sanitizer's allocator) from
 * handing out memory that faults, or aborting, later. */
static uint64_t physical_memory(void)
{
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    long pages = sysconf(_SC_PHYS_PAGES);
    long page_size = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page_size > 0)
        return (uint64_t)pages * (uint64_t)page_size;
#endif
    return UINT64_MAX;
}

static void set_error(Run *r, const char *what, const Node *n, uint64_t bytes)
{
    static const char *const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < countof(units)) {
        v /= 1024.0;
        u++;
    }
    if (r->err && r->errlen)
        snprintf(r->err, r->errlen, "out of memory: %s %%%u (%s) needs %.1f %s", what, n->id,
                 op_info[n->kind].name, v, units[u]);
}

/* Allocates count elements of elsize bytes for node n. Returns NULL, with the message in
 * r->err, if that cannot be had. `what` names the use: "intermediate" or "scratch for". */
static void *alloc_for(Run *r, const Node *n, int64_t count, size_t elsize, const char *what)
{
    FUSE_ASSERT(count >= 0 && count <= FUSE_MAX_ELEMENTS);
    uint64_t bytes = (uint64_t)count * (uint64_t)elsize; /* < 2^44: no overflow */
    void *p = NULL;
    if (bytes <= r->mem_limit && bytes <= (uint64_t)SIZE_MAX)
        p = malloc(bytes ? (size_t)bytes : 1);
    if (!p)
        set_error(r, what, n, bytes);
    return p;
}

/* ---- indexing helpers ---------------------------------------------------------------- */

static const float *arg(const Run *r, const Node *n, uint32_t i)
{
    return r->val[n->inputs[i]->id];
}

/* Row-major strides of s. */
static void strides_of(const Shape *s, int64_t *st)
{
    int64_t acc = 1;
    for (uint32_t d = s->rank; d-- > 0;) {
        st[d] = acc;
        acc *= s->dim[d];
    }
}

/* Strides that read a tensor of shape `in` as if it had shape `out` (NumPy broadcasting:
 * trailing axes aligned; a missing or size-1 axis of `in` gets stride 0). */
static void broadcast_strides(const Shape *in, const Shape *out, int64_t *st)
{
    int64_t own[FUSE_MAX_RANK];
    strides_of(in, own);
    FUSE_ASSERT(in->rank <= out->rank);
    uint32_t lead = out->rank - in->rank;
    for (uint32_t d = 0; d < out->rank; d++) {
        if (d < lead || in->dim[d - lead] == 1)
            st[d] = 0;
        else {
            FUSE_ASSERT(in->dim[d - lead] == out->dim[d]);
            st[d] = own[d - lead];
        }
    }
}

/* Walks every position of `shape` in row-major order, keeping the offsets of up to two
 * strided operands: off[k] = sum over axes d of idx[d] * st[k][d]. */
typedef struct Walk {
    const Shape *shape;
    int64_t idx[FUSE_MAX_RANK];
    int64_t st[2][FUSE_MAX_RANK];
    int64_t off[2];
} Walk;

static void walk_start(Walk *w, const Shape *shape)
{
    memset(w, 0, sizeof *w);
    w->shape = shape;
}

static void walk_next(Walk *w)
{
    for (uint32_t d = w->shape->rank; d-- > 0;) {
        w->idx[d]++;
        w->off[0] += w->st[0][d];
        w->off[1] += w->st[1][d];
        if (w->idx[d] < w->shape->dim[d])
            return;
        w->off[0] -= w->st[0][d] * w->idx[d];
        w->off[1] -= w->st[1][d] * w->idx[d];
        w->idx[d] = 0;
    }
}

/* Product of s->dim[lo..hi). */
static int64_t dims_product(const Shape *s, uint32_t lo, uint32_t hi)
{
    int64_t p = 1;
    for (uint32_t d = lo; d < hi; d++)
        p *= s->dim[d];
    return p;
}

/* ---- elementwise --------------------------------------------------------------------- */

static double sigmoid(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

/* One unary op on one value, in double (the caller rounds to f32 once). */
static double unary(const Node *n, double x)
{
    switch (n->kind) {
    case OP_RELU:
        return isnan(x) ? x : (x > 0 ? x : 0.0); /* torch.relu keeps NaN */
    case OP_SIGMOID:
        return sigmoid(x);
    case OP_TANH:
        return tanh(x);
    case OP_EXP:
        return exp(x);
    case OP_SQRT:
        return sqrt(x);
    case OP_RSQRT:
        return 1.0 / sqrt(x);
    case OP_SILU:
        return x * sigmoid(x);
    case OP_ABS:
        return fabs(x);
    case OP_NEG:
        return -x;
    case OP_GELU: /* in forms without the cancellation of 1 + erf and 1 + tanh for x < 0 */
        if (n->attr.gelu.tanh) {
            const double k = 0.79788456080286535588;                       /* sqrt(2/pi) */
            return x / (1.0 + exp(-2.0 * k * (x + 0.044715 * x * x * x))); /* 1 + tanh(u) */
        }
        return 0.5 * x * erfc(-x * 0.70710678118654752440); /* 1 + erf(x / sqrt 2) */
    default:
        FUSE_UNREACHABLE();
    }
}

static void eval_unary(const Run *r, const Node *n, float *out)
{
    const float *x = arg(r, n, 0);
    int64_t count = shape_numel(&n->shape);
    for (int64_t i = 0; i < count; i++)
        out[i] = (float)unary(n, (double)x[i]);
}

/* One binary op in f32 (correctly rounded, as PyTorch). min/max propagate NaN like
 * torch.minimum/maximum. */
static float binary(OpKind kind, float a, float b)
{
    switch (kind) {
    case OP_ADD:
        return a + b;
    case OP_SUB:
        return a - b;
    case OP_MUL:
        return a * b;
    case OP_DIV:
        return a / b;
    case OP_MIN:
        if (isnan(a) || isnan(b))
            return isnan(a) ? a : b;
        return a < b ? a : b;
    case OP_MAX:
        if (isnan(a) || isnan(b))
            return isnan(a) ? a : b;
        return a > b ? a : b;
    default:
        FUSE_UNREACHABLE();
    }
}

static void eval_binary(const Run *r, const Node *n, float *out)
{
    const float *a = arg(r, n, 0), *b = arg(r, n, 1);
    Walk w;
    walk_start(&w, &n->shape);
    broadcast_strides(&n->inputs[0]->shape, &n->shape, w.st[0]);
    broadcast_strides(&n->inputs[1]->shape, &n->shape, w.st[1]);
    int64_t count = shape_numel(&n->shape);
    for (int64_t i = 0; i < count; i++) {
        out[i] = binary(n->kind, a[w.off[0]], b[w.off[1]]);
        walk_next(&w);
    }
}

/* ---- resampling, joining, layout ----------------------------------------------------- */

/* The two source taps of a linear interpolation and the weight of the second one. */
typedef struct Tap {
    int64_t i0, i1;
    float l1;
} Tap;

/* PyTorch 1.13 compute_source_index_and_lambda: an axis of equal size is copied; otherwise
 * src = ratio*dst with align_corners, else max(ratio*(dst+0.5)-0.5, 0) evaluated in double
 * (PyTorch's 0.5 is a double literal) and rounded to f32; i0 = (int64)src, i1 = min(i0+1,
 * in-1), l1 = src - i0 in f32. */
static Tap linear_tap(float ratio, int64_t dst, int64_t in, int64_t out, bool align_corners)
{
    Tap t = {dst, dst, 0.0f};
    if (in == out)
        return t;
    float src;
    if (align_corners)
        src = ratio * (float)dst;
    else {
        src = (float)((double)ratio * ((double)dst + 0.5) - 0.5);
        if (src < 0)
            src = 0;
    }
    t.i0 = (int64_t)src;
    if (t.i0 > in - 1)  // only with a ratio PyTorch would not compute; keeps reads in bounds
        t.i0 = in - 1;
    t.i1 = t.i0 < in - 1 ? t.i0 + 1 : t.i0;
    t.l1 = fminf(fmaxf(src - (float)t.i0, 0.0f), 1.0f);
    return t;
}

/* PyTorch 1.13 legacy nearest (nearest_idx): an axis of equal size is copied, an exact 2x is
 * dst/2, otherwise min(floorf(f32(dst) * ratio), in-1) with the product in f32. */
static int64_t nearest_src(float ratio, int64_t dst, int64_t in, int64_t out)
{
    if (out == in)
        return dst;
    if (out == 2 * in)
        return dst / 2;
    int64_t s = (int64_t)floorf((float)dst * ratio);
    return s < in - 1 ? s : in - 1;
}

/* x [N, C, IH, IW] -> out [N, C, OH, OW]. */
static void eval_upsample(const Run *r, const Node *n, float *out)
{
    const float *x = arg(r, n, 0);
    const Shape *is = &n->inputs[0]->shape;
    FUSE_ASSERT(is->rank == 4 && n->shape.rank == 4);
    int64_t planes = is->dim[0] * is->dim[1];
    int64_t ih = is->dim[2], iw = is->dim[3], oh = n->shape.dim[2], ow = n->shape.dim[3];
    float rh = n->attr.upsample.ratio_h, rw = n->attr.upsample.ratio_w;
    bool ac = n->attr.upsample.align_corners;
    for (int64_t p = 0; p < planes; p++) {
        const float *src = x + p * ih * iw;
        float *dst = out + p * oh * ow;
        for (int64_t y = 0; y < oh; y++) {
            if (!n->attr.upsample.bilinear) {
                int64_t sy = nearest_src(rh, y, ih, oh);
                for (int64_t xo = 0; xo < ow; xo++)
                    dst[y * ow + xo] = src[sy * iw + nearest_src(rw, xo, iw, ow)];
                continue;
            }
            Tap th = linear_tap(rh, y, ih, oh, ac);
            for (int64_t xo = 0; xo < ow; xo++) {
                Tap tw = linear_tap(rw, xo, iw, ow, ac);
                float h0 = 1.0f - th.l1, w0 = 1.0f - tw.l1;
                float top = w0 * src[th.i0 * iw + tw.i0] + tw.l1 * src[th.i0 * iw + tw.i1];
                float bot = w0 * src[th.i1 * iw + tw.i0] + tw.l1 * src[th.i1 * iw + tw.i1];
                dst[y * ow + xo] = h0 * top + th.l1 * bot;
            }
        }
    }
}

/* torch.cat: for each index of the axes before `axis`, the inputs' slabs one after another. */
static void eval_concat(const Run *r, const Node *n, float *out)
{
    uint32_t axis = n->attr.concat.axis;
    FUSE_ASSERT(axis < n->shape.rank);
    int64_t outer = dims_product(&n->shape, 0, axis);
    int64_t inner = dims_product(&n->shape, axis + 1, n->shape.rank);
    int64_t at = 0;
    for (int64_t o = 0; o < outer; o++)
        for (uint32_t k = 0; k < n->ninputs; k++) {
            int64_t slab = n->inputs[k]->shape.dim[axis] * inner;
            memcpy(out + at, arg(r, n, k) + o * slab, (size_t)slab * sizeof(float));
            at += slab;
        }
    FUSE_ASSERT(at == shape_numel(&n->shape));
}

/* Output axis i is input axis perm[i]. */
static void eval_permute(const Run *r, const Node *n, float *out)
{
    const float *x = arg(r, n, 0);
    int64_t in_st[FUSE_MAX_RANK];
    strides_of(&n->inputs[0]->shape, in_st);
    Walk w;
    walk_start(&w, &n->shape);
    for (uint32_t d = 0; d < n->shape.rank; d++) {
        FUSE_ASSERT(n->attr.permute.perm[d] < n->shape.rank);
        w.st[0][d] = in_st[n->attr.permute.perm[d]];
    }
    int64_t count = shape_numel(&n->shape);
    for (int64_t i = 0; i < count; i++) {
        out[i] = x[w.off[0]];
        walk_next(&w);
    }
}

/* Input indices start..start+length-1 along the axis: per index of the axes before it, one
 * contiguous run of length*inner values. */
static void eval_slice(const Run *r, const Node *n, float *out)
{
    const float *x = arg(r, n, 0);
    const Shape *is = &n->inputs[0]->shape;
    uint32_t axis = n->attr.slice.axis;
    FUSE_ASSERT(axis < is->rank && n->attr.slice.start + n->attr.slice.length <= is->dim[axis]);
    int64_t outer = dims_product(is, 0, axis), inner = dims_product(is, axis + 1, is->rank);
    int64_t run = n->attr.slice.length * inner;
    for (int64_t o = 0; o < outer; o++)
        memcpy(out + o * run, x + (o * is->dim[axis] + n->attr.slice.start) * inner,
               (size_t)run * sizeof(float));
}

/* ---- contractions -------------------------------------------------------------------- */

/* nn.Conv2d: x [N, C, H, W], weight [O, C/G, KH, KW], bias [O] ->
 * out[n,o,y,x] = bias[o] + sum over c, i, j of w[o,c,i,j] * xpad[n, g*C/G + c, y*sh - ph + i*dh,
 * x*sw - pw + j*dw], zero outside the input, g = o / (O/G). One output plane accumulates in
 * double, so the innermost loop runs along contiguous rows. */
static bool eval_conv2d(Run *r, const Node *n, float *out)
{
    const float *x = arg(r, n, 0), *w = arg(r, n, 1);
    const float *bias = n->ninputs > 2 ? arg(r, n, 2) : NULL;
    const Shape *xs = &n->inputs[0]->shape, *ws = &n->inputs[1]->shape;
    FUSE_ASSERT(xs->rank == 4 && ws->rank == 4 && n->shape.rank == 4);
    int64_t nb = xs->dim[0], c = xs->dim[1], h = xs->dim[2], wd = xs->dim[3];
    int64_t o = ws->dim[0], cg = ws->dim[1], kh = ws->dim[2], kw = ws->dim[3];
    int64_t oh = n->shape.dim[2], ow = n->shape.dim[3];
    int64_t groups = n->attr.conv.groups;
    int64_t sh = n->attr.conv.stride_h, sw = n->attr.conv.stride_w;
    int64_t ph = n->attr.conv.pad_h, pw = n->attr.conv.pad_w;
    int64_t dh = n->attr.conv.dil_h, dw = n->attr.conv.dil_w;
    FUSE_ASSERT(groups >= 1 && cg * groups == c && o % groups == 0 && n->shape.dim[1] == o);
    int64_t og = o / groups;
    double *acc = alloc_for(r, n, oh * ow, sizeof(double), "scratch for");
    if (!acc)
        return false;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t oc = 0; oc < o; oc++) {
            int64_t g = oc / og;
            for (int64_t p = 0; p < oh * ow; p++)
                acc[p] = bias ? (double)bias[oc] : 0.0;
            for (int64_t ci = 0; ci < cg; ci++) {
                const float *plane = x + (b * c + g * cg + ci) * h * wd;
                for (int64_t i = 0; i < kh; i++)
                    for (int64_t j = 0; j < kw; j++) {
                        double wv = (double)w[((oc * cg + ci) * kh + i) * kw + j];
                        for (int64_t y = 0; y < oh; y++) {
                            int64_t iy = y * sh - ph + i * dh;
                            if (iy < 0 || iy >= h)
                                continue;
                            for (int64_t xo = 0; xo < ow; xo++) {
                                int64_t ix = xo * sw - pw + j * dw;
                                if (ix >= 0 && ix < wd)
                                    acc[y * ow + xo] += wv * (double)plane[iy * wd + ix];
                            }
                        }
                    }
            }
            float *dst = out + (b * o + oc) * oh * ow;
            for (int64_t p = 0; p < oh * ow; p++)
                dst[p] = (float)acc[p];
        }
    free(acc);
    return true;
}

/* nn.Linear on the last axis: y[r, o] = bias[o] + sum_k x[r, k] * weight[o, k]. */
static void eval_linear(const Run *r, const Node *n, float *out)
{
    const float *x = arg(r, n, 0), *w = arg(r, n, 1);
    const float *bias = n->ninputs > 2 ? arg(r, n, 2) : NULL;
    const Shape *xs = &n->inputs[0]->shape;
    FUSE_ASSERT(xs->rank >= 1 && n->inputs[1]->shape.rank == 2);
    int64_t k = xs->dim[xs->rank - 1], o = n->inputs[1]->shape.dim[0];
    FUSE_ASSERT(n->inputs[1]->shape.dim[1] == k);
    int64_t rows = shape_numel(xs) / k;
    for (int64_t row = 0; row < rows; row++)
        for (int64_t oc = 0; oc < o; oc++) {
            double s = bias ? (double)bias[oc] : 0.0;
            for (int64_t i = 0; i < k; i++)
                s += (double)x[row * k + i] * (double)w[oc * k + i];
            out[row * o + oc] = (float)s;
        }
}

/* torch.matmul. A 1-D left operand is [1, K] and a 1-D right one [K, 1], the added axis being
 * dropped from the result; the axes before the last two broadcast (batch). The result is laid
 * out [batch..., M, N] with dropped axes removed, which is the same row-major order. */
static bool eval_matmul(Run *r, const Node *n, float *out)
{
    const float *a = arg(r, n, 0), *b = arg(r, n, 1);
    const Shape *as = &n->inputs[0]->shape, *bs = &n->inputs[1]->shape;
    FUSE_ASSERT(as->rank >= 1 && bs->rank >= 1);
    int64_t m = as->rank >= 2 ? as->dim[as->rank - 2] : 1;
    int64_t k = as->dim[as->rank - 1];
    int64_t nn = bs->rank >= 2 ? bs->dim[bs->rank - 1] : 1;
    FUSE_ASSERT((bs->rank >= 2 ? bs->dim[bs->rank - 2] : bs->dim[0]) == k);

    Shape ba, bb, bo;
    matmul_batch_shapes(as, bs, &ba, &bb, &bo);
    int64_t batches = shape_numel(&bo);
    FUSE_ASSERT(batches * m * nn == shape_numel(&n->shape));
    int64_t sa[FUSE_MAX_RANK], sb[FUSE_MAX_RANK];
    broadcast_strides(&ba, &bo, sa); /* in matrices: multiply by m*k or k*nn below */
    broadcast_strides(&bb, &bo, sb);

    double *acc = alloc_for(r, n, nn, sizeof(double), "scratch for");
    if (!acc)
        return false;
    for (int64_t bi = 0; bi < batches; bi++) {
        int64_t oa = 0, ob = 0, rest = bi;
        for (uint32_t d = bo.rank; d-- > 0;) {
            int64_t idx = rest % bo.dim[d];
            rest /= bo.dim[d];
            oa += idx * sa[d];
            ob += idx * sb[d];
        }
        const float *am = a + oa * m * k, *bm = b + ob * k * nn;
        for (int64_t i = 0; i < m; i++) {
            for (int64_t j = 0; j < nn; j++)
                acc[j] = 0.0;
            for (int64_t p = 0; p < k; p++) {
                double av = (double)am[i * k + p];
                for (int64_t j = 0; j < nn; j++)
                    acc[j] += av * (double)bm[p * nn + j];
            }
            for (int64_t j = 0; j < nn; j++)
                out[(bi * m + i) * nn + j] = (float)acc[j];
        }
    }
    free(acc);
    return true;
}

/* ---- normalization ------------------------------------------------------------------- */

/* BatchNorm in eval mode, channel axis 1 of [N, C, ...]:
 * (x - running_mean) / sqrt(running_var + eps) * weight + bias. */
static void eval_batchnorm(const Run *r, const Node *n, float *out)
{
    const float *x = arg(r, n, 0), *w = arg(r, n, 1), *b = arg(r, n, 2);
    const float *mean = arg(r, n, 3), *var = arg(r, n, 4);
    const Shape *s = &n->shape;
    FUSE_ASSERT(s->rank >= 2);
    int64_t nb = s->dim[0], c = s->dim[1], inner = dims_product(s, 2, s->rank);
    double eps = (double)n->attr.norm.eps;
    for (int64_t i = 0; i < nb; i++)
        for (int64_t ch = 0; ch < c; ch++) {
            double scale = (double)w[ch] / sqrt((double)var[ch] + eps);
            double m = (double)mean[ch], shift = (double)b[ch];
            int64_t base = (i * c + ch) * inner;
            for (int64_t p = 0; p < inner; p++)
                out[base + p] = (float)(((double)x[base + p] - m) * scale + shift);
        }
}

/* nn.LayerNorm over the last axis, biased variance. */
static void eval_layernorm(const Run *r, const Node *n, float *out)
{
    const float *x = arg(r, n, 0), *w = arg(r, n, 1), *b = arg(r, n, 2);
    const Shape *s = &n->shape;
    FUSE_ASSERT(s->rank >= 1);
    int64_t k = s->dim[s->rank - 1], rows = shape_numel(s) / k;
    double eps = (double)n->attr.norm.eps;
    for (int64_t row = 0; row < rows; row++) {
        const float *xr = x + row * k;
        double mean = 0.0, var = 0.0;
        for (int64_t i = 0; i < k; i++)
            mean += (double)xr[i];
        mean /= (double)k;
        for (int64_t i = 0; i < k; i++)
            var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
        var /= (double)k;
        double inv = 1.0 / sqrt(var + eps);
        for (int64_t i = 0; i < k; i++)
            out[row * k + i] = (float)(((double)xr[i] - mean) * inv * (double)w[i] + (double)b[i]);
    }
}

/* ---- reductions and softmax ---------------------------------------------------------- */

/* mean/sum/amax/amin over the input axes in attr.reduce.axes. The output's row-major index
 * is the same with or without keepdim (size-1 axes do not move it), so each input element
 * adds into out[sum over kept axes d of idx[d] * stride_d]. amax/amin propagate NaN. */
static bool eval_reduce(Run *r, const Node *n, float *out)
{
    const float *x = arg(r, n, 0);
    const Shape *is = &n->inputs[0]->shape;
    Walk w;
    walk_start(&w, is);
    int64_t kept = 1, reduced = 1;
    for (uint32_t d = is->rank; d-- > 0;) {
        if (n->attr.reduce.axes[d]) {
            w.st[0][d] = 0;
            reduced *= is->dim[d];
        } else {
            w.st[0][d] = kept;
            kept *= is->dim[d];
        }
    }
    FUSE_ASSERT(kept == shape_numel(&n->shape));
    double *acc = alloc_for(r, n, kept, sizeof(double), "scratch for");
    if (!acc)
        return false;
    double init = n->kind == OP_AMAX ? -INFINITY : n->kind == OP_AMIN ? INFINITY : 0.0;
    for (int64_t i = 0; i < kept; i++)
        acc[i] = init;
    int64_t count = shape_numel(is);
    for (int64_t i = 0; i < count; i++) {
        double v = (double)x[i];
        double *a = &acc[w.off[0]];
        switch (n->kind) {
        case OP_MEAN:
        case OP_SUM:
            *a += v;
            break;
        case OP_AMAX:
            if (isnan(v) || v > *a)
                *a = isnan(*a) ? *a : v;
            break;
        case OP_AMIN:
            if (isnan(v) || v < *a)
                *a = isnan(*a) ? *a : v;
            break;
        default:
            FUSE_UNREACHABLE();
        }
        walk_next(&w);
    }
    for (int64_t i = 0; i < kept; i++)
        out[i] = (float)(n->kind == OP_MEAN ? acc[i] / (double)reduced : acc[i]);
    free(acc);
    return true;
}

/* torch.softmax along attr.softmax.axis: exp(x - max) / sum exp(x - max). */
static void eval_softmax(const Run *r, const Node *n, float *out)
{
    const float *x = arg(r, n, 0);
    const Shape *s = &n->shape;
    uint32_t axis = n->attr.softmax.axis;
    FUSE_ASSERT(axis < s->rank);
    int64_t outer = dims_product(s, 0, axis), len = s->dim[axis];
    int64_t inner = dims_product(s, axis + 1, s->rank);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            int64_t base = o * len * inner + i;
            double mx = -INFINITY, sum = 0.0;
            for (int64_t j = 0; j < len; j++)
                if ((double)x[base + j * inner] > mx)
                    mx = (double)x[base + j * inner];
            for (int64_t j = 0; j < len; j++)
                sum += exp((double)x[base + j * inner] - mx);
            for (int64_t j = 0; j < len; j++)
                out[base + j * inner] = (float)(exp((double)x[base + j * inner] - mx) / sum);
        }
}

/* ---- attention ----------------------------------------------------------------------- */

/* y[i, e] = bias[e] + sum_t x[i, t] * w[e, t] for rows i < rows, features e, t < dim. */
static void project(const float *x, int64_t rows, int64_t dim, const float *w, const float *bias,
                    double *y)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t e = 0; e < dim; e++) {
            double s = bias ? (double)bias[e] : 0.0;
            for (int64_t t = 0; t < dim; t++)
                s += (double)x[i * dim + t] * (double)w[e * dim + t];
            y[i * dim + e] = s;
        }
}

/* Scaled dot-product attention of one (batch, head): o[i*ldo + t] = sum_j softmax_j(scale *
 * sum_u q[i*ldq + u] k[j*ks + u*kc]) v[j*ldv + t], the softmax formed whole in double (p: S
 * doubles of scratch). */
typedef struct AttendOperands {
    const double *q, *k, *v;
    int64_t ldq, ks, kc, ldv; /* q's row stride; k's key and feature strides; v's row stride */
} AttendOperands;

static void attend(const AttendOperands *op, double *o, int64_t ldo, int64_t l, int64_t s,
                   int64_t d, int64_t dv, double scale, double *p)
{
    for (int64_t i = 0; i < l; i++) {
        const double *qi = op->q + i * op->ldq;
        double mx = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j < s; j++) {
            double dot = 0.0;
            for (int64_t u = 0; u < d; u++)
                dot += qi[u] * op->k[j * op->ks + u * op->kc];
            p[j] = dot * scale;
            if (p[j] > mx)
                mx = p[j];
        }
        for (int64_t j = 0; j < s; j++) {
            p[j] = exp(p[j] - mx);
            sum += p[j];
        }
        for (int64_t t = 0; t < dv; t++) {
            double acc = 0.0;
            for (int64_t j = 0; j < s; j++)
                acc += p[j] / sum * op->v[j * op->ldv + t];
            o[i * ldo + t] = acc;
        }
    }
}

/* nn.MultiheadAttention(E, heads, batch_first=True)(q, k, v)[0] in eval mode.
 * Inputs: q [N,L,E], k [N,S,E], v [N,S,E], in_proj_weight [3E,E], (in_proj_bias [3E]),
 * out_proj.weight [E,E], (out_proj.bias [E]). Per batch and head h (features h*D..h*D+D-1,
 * D = E/heads): P = softmax_S(Qh Kh^T / sqrt(D)), Oh = P Vh; heads concatenated, then
 * out_proj. */
static bool eval_mha(Run *r, const Node *n, float *out)
{
    bool has_bias = n->attr.mha.bias;
    FUSE_ASSERT(n->ninputs == (has_bias ? 7u : 5u));
    const float *q = arg(r, n, 0), *k = arg(r, n, 1), *v = arg(r, n, 2);
    const float *in_w = arg(r, n, 3);
    const float *in_b = has_bias ? arg(r, n, 4) : NULL;
    const float *out_w = arg(r, n, has_bias ? 5 : 4);
    const float *out_b = has_bias ? arg(r, n, 6) : NULL;
    const Shape *qs = &n->inputs[0]->shape, *ks = &n->inputs[1]->shape;
    FUSE_ASSERT(qs->rank == 3 && ks->rank == 3);
    int64_t nb = qs->dim[0], l = qs->dim[1], e = qs->dim[2], s = ks->dim[1];
    int64_t heads = n->attr.mha.heads;
    FUSE_ASSERT(heads >= 1 && e % heads == 0 && ks->dim[2] == e);
    int64_t hd = e / heads;

    double *qp = alloc_for(r, n, nb * l * e, sizeof(double), "scratch for");
    double *kp = qp ? alloc_for(r, n, nb * s * e, sizeof(double), "scratch for") : NULL;
    double *vp = kp ? alloc_for(r, n, nb * s * e, sizeof(double), "scratch for") : NULL;
    double *att = vp ? alloc_for(r, n, nb * l * e, sizeof(double), "scratch for") : NULL;
    double *p = att ? alloc_for(r, n, s, sizeof(double), "scratch for") : NULL;
    if (!p) {
        free(qp);
        free(kp);
        free(vp);
        free(att);
        return false;
    }
    project(q, nb * l, e, in_w, in_b, qp);
    project(k, nb * s, e, in_w + e * e, in_b ? in_b + e : NULL, kp);
    project(v, nb * s, e, in_w + 2 * e * e, in_b ? in_b + 2 * e : NULL, vp);

    double scale = 1.0 / sqrt((double)hd);
    for (int64_t b = 0; b < nb; b++)
        for (int64_t h = 0; h < heads; h++) {
            const AttendOperands op = {qp + b * l * e + h * hd,
                                       kp + b * s * e + h * hd,
                                       vp + b * s * e + h * hd,
                                       e,
                                       e,
                                       1,
                                       e};
            attend(&op, att + b * l * e + h * hd, e, l, s, hd, hd, scale, p);
        }

    for (int64_t i = 0; i < nb * l; i++)
        for (int64_t o = 0; o < e; o++) {
            double acc = out_b ? (double)out_b[o] : 0.0;
            for (int64_t t = 0; t < e; t++)
                acc += att[i * e + t] * (double)out_w[o * e + t];
            out[i * e + o] = (float)acc;
        }
    free(qp);
    free(kp);
    free(vp);
    free(att);
    free(p);
    return true;
}

/* The attention pass's op: softmax(scale * q k^T, last axis) v per batch, as the matmuls and
 * the softmax it stands for compute it (in double). */
static bool eval_attention(Run *r, const Node *n, float *out)
{
    const Shape *qs = &n->inputs[0]->shape, *vs = &n->inputs[2]->shape;
    uint32_t rank = qs->rank;
    int64_t l = qs->dim[rank - 2], d = qs->dim[rank - 1];
    int64_t s = vs->dim[rank - 2], dv = vs->dim[rank - 1];
    int64_t nb = shape_numel(qs) / (l * d);
    int64_t nq = nb * l * d, nk = nb * s * d, nv = nb * s * dv;
    double *buf = alloc_for(r, n, nq + nk + nv + l * dv + s, sizeof(double), "scratch for");
    if (!buf)
        return false;
    double *q = buf, *k = q + nq, *v = k + nk, *o = v + nv, *p = o + l * dv;
    const float *src[3] = {arg(r, n, 0), arg(r, n, 1), arg(r, n, 2)};
    for (int64_t i = 0; i < nq; i++)
        q[i] = src[0][i];
    for (int64_t i = 0; i < nk; i++)
        k[i] = src[1][i];
    for (int64_t i = 0; i < nv; i++)
        v[i] = src[2][i];
    bool kt = n->attr.attention.k_transposed;
    for (int64_t b = 0; b < nb; b++) {
        const AttendOperands op = {
            q + b * l * d, k + b * s * d, v + b * s * dv, d, kt ? 1 : d, kt ? s : 1, dv};
        attend(&op, o, dv, l, s, d, dv, (double)n->attr.attention.scale, p);
        for (int64_t i = 0; i < l * dv; i++)
            out[b * l * dv + i] = (float)o[i];
    }
    free(buf);
    return true;
}

/* ---- pooling ------------------------------------------------------------------------- */

/* nn.AvgPool2d (count_include_pad=True, ceil_mode=False: every window divides by kh*kw) and
 * nn.MaxPool2d (padding never wins: it acts as -inf; NaN propagates) on [N, C, H, W]. */
static void eval_pool(const Run *r, const Node *n, float *out)
{
    const float *x = arg(r, n, 0);
    const Shape *is = &n->inputs[0]->shape;
    FUSE_ASSERT(is->rank == 4 && n->shape.rank == 4);
    int64_t planes = is->dim[0] * is->dim[1], h = is->dim[2], w = is->dim[3];
    int64_t oh = n->shape.dim[2], ow = n->shape.dim[3];
    int64_t kh = n->attr.pool.kh, kw = n->attr.pool.kw;
    int64_t sh = n->attr.pool.stride_h, sw = n->attr.pool.stride_w;
    int64_t ph = n->attr.pool.pad_h, pw = n->attr.pool.pad_w;
    bool is_max = n->kind == OP_MAXPOOL2D;
    for (int64_t p = 0; p < planes; p++) {
        const float *src = x + p * h * w;
        for (int64_t y = 0; y < oh; y++)
            for (int64_t xo = 0; xo < ow; xo++) {
                double sum = 0.0, mx = -INFINITY;
                for (int64_t i = 0; i < kh; i++)
                    for (int64_t j = 0; j < kw; j++) {
                        int64_t iy = y * sh - ph + i, ix = xo * sw - pw + j;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                            continue;
                        double v = (double)src[iy * w + ix];
                        sum += v;
                        if (!isnan(mx) && (isnan(v) || v > mx))
                            mx = v;
                    }
                out[(p * oh + y) * ow + xo] = (float)(is_max ? mx : sum / (double)(kh * kw));
            }
    }
}

/* ---- driver -------------------------------------------------------------------------- */

/* Computes node n into out (numel(n->shape) floats). Returns false after reporting an
 * allocation failure. */
static bool compute(Run *r, const Node *n, float *out)
{
    switch (n->kind) {
    case OP_SCALAR:
        out[0] = n->attr.scalar.value;
        return true;
    case OP_UPSAMPLE:
        eval_upsample(r, n, out);
        return true;
    case OP_CONCAT:
        eval_concat(r, n, out);
        return true;
    case OP_CONV2D:
        return eval_conv2d(r, n, out);
    case OP_BATCHNORM:
        eval_batchnorm(r, n, out);
        return true;
    case OP_LINEAR:
        eval_linear(r, n, out);
        return true;
    case OP_LAYERNORM:
        eval_layernorm(r, n, out);
        return true;
    case OP_MHA:
        return eval_mha(r, n, out);
    case OP_ATTENTION:
        return eval_attention(r, n, out);
    case OP_RELU:
    case OP_SIGMOID:
    case OP_TANH:
    case OP_EXP:
    case OP_SQRT:
    case OP_RSQRT:
    case OP_SILU:
    case OP_ABS:
    case OP_NEG:
    case OP_GELU:
        eval_unary(r, n, out);
        return true;
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_DIV:
    case OP_MIN:
    case OP_MAX:
        eval_binary(r, n, out);
        return true;
    case OP_MEAN:
    case OP_SUM:
    case OP_AMAX:
    case OP_AMIN:
        return eval_reduce(r, n, out);
    case OP_SOFTMAX:
        eval_softmax(r, n, out);
        return true;
    case OP_MATMUL:
        return eval_matmul(r, n, out);
    case OP_PERMUTE:
        eval_permute(r, n, out);
        return true;
    case OP_SLICE:
        eval_slice(r, n, out);
        return true;
    case OP_VIEW:
        FUSE_ASSERT(shape_numel(&n->inputs[0]->shape) == shape_numel(&n->shape));
        memcpy(out, arg(r, n, 0), (size_t)shape_numel(&n->shape) * sizeof(float));
        return true;
    case OP_AVGPOOL2D:
    case OP_MAXPOOL2D:
        eval_pool(r, n, out);
        return true;
    case OP_INPUT:
    case OP_PARAM:
    case OP_COUNT:
        break;
    }
    FUSE_UNREACHABLE();
}

/* Makes r->val[n->id] hold node n's values: the caller's buffer for inputs and weights, a
 * new buffer otherwise. */
static bool eval_node(Run *r, const Node *n)
{
    if (n->kind == OP_INPUT) {
        FUSE_ASSERT(n->attr.input.index < r->g->ninputs && r->inputs[n->attr.input.index]);
        r->val[n->id] = r->inputs[n->attr.input.index];
        return true;
    }
    if (n->kind == OP_PARAM) {
        FUSE_ASSERT(n->attr.param.index < r->g->nparams && r->params[n->attr.param.index]);
        r->val[n->id] = r->params[n->attr.param.index];
        return true;
    }
    float *out = alloc_for(r, n, shape_numel(&n->shape), sizeof(float), "intermediate");
    if (!out)
        return false;
    r->owned[n->id] = out;
    r->val[n->id] = out;
    return compute(r, n, out);
}

static void release(Run *r, uint32_t id)
{
    free(r->owned[id]);
    r->owned[id] = NULL;
    r->val[id] = NULL;
}

bool interp_run(const Graph *g, const float *const *params, const float *const *inputs,
                float *const *outputs, char *err, size_t errlen)
{
    uint32_t nn = g->nnodes;
    size_t slots = nn ? nn : 1;
    Run r = {g, params, inputs, NULL, NULL, physical_memory(), err, errlen};
    if (err && errlen)
        err[0] = '\0';
    r.val = calloc(slots, sizeof *r.val);
    r.owned = calloc(slots, sizeof *r.owned);
    uint32_t *last_use = calloc(slots, sizeof *last_use);
    bool *live = calloc(slots, sizeof *live);
    bool ok = r.val && r.owned && last_use && live;
    if (!ok && err && errlen)
        snprintf(err, errlen, "out of memory: interpreter bookkeeping for %u nodes", nn);

    if (ok) {
        /* Liveness: outputs, then (walking backwards) everything a live node reads. */
        for (uint32_t i = 0; i < g->noutputs; i++)
            live[g->outputs[i]->id] = true;
        for (uint32_t i = nn; i-- > 0;)
            if (live[i])
                for (uint32_t j = 0; j < g->nodes[i]->ninputs; j++)
                    live[g->nodes[i]->inputs[j]->id] = true;
        /* last_use[i]: the last live node reading i (i itself if none). */
        for (uint32_t i = 0; i < nn; i++) {
            last_use[i] = i;
            if (live[i])
                for (uint32_t j = 0; j < g->nodes[i]->ninputs; j++)
                    last_use[g->nodes[i]->inputs[j]->id] = i;
        }
    }

    for (uint32_t i = 0; ok && i < nn; i++) {
        const Node *n = g->nodes[i];
        FUSE_ASSERT(n->id == i);
        if (!live[i])
            continue;
        ok = eval_node(&r, n);
        if (!ok)
            break;
        for (uint32_t o = 0; o < g->noutputs; o++)
            if (g->outputs[o] == n)
                memcpy(outputs[o], r.val[i], (size_t)shape_numel(&n->shape) * sizeof(float));
        for (uint32_t j = 0; j < n->ninputs; j++)
            if (last_use[n->inputs[j]->id] == i)
                release(&r, n->inputs[j]->id);
        if (last_use[i] == i)
            release(&r, i);
    }

    if (r.owned)
        for (uint32_t i = 0; i < nn; i++)
            free(r.owned[i]);
    free(r.val);
    free(r.owned);
    free(last_use);
    free(live);
    return ok;
}
