/*
 * fuzz_graph: a structured fuzzer for the whole compiler. The input bytes choose a random
 * VALID graph from the op catalogue (elementwise ops with broadcasting, reductions, softmax,
 * matmul, linear, conv2d, norms, attention (mha, and written out as matmul, softmax, matmul),
 * the SE, CBAM and BAM blocks in their common spellings, upsampling, concat, pools and the
 * layout ops) with small shapes (now and then one dim up to 40, past every vector width and
 * tile). The graph is written as .fuse text, compiled (parse, sema, build) and evaluated by
 * the reference interpreter on deterministic pseudo-random inputs and weights; it is lowered
 * as the command line lowers it (driver_lower: the graph passes, schedule_graph, loop_verify),
 * or for one lane setting in four by schedule_graph alone, and run through the JIT and, when
 * the first byte says so (it spawns a C compiler), through the C backend with bounds checks.
 * Every output must match the interpreter's within the conformance tolerance,
 *     max |got - want| <= 1e-4 * max(1, max |want|)   (NaN matches NaN),
 * and a JIT kernel on two threads must match one thread bit for bit. The fusion plan of the
 * scheduled graph and the program's run kernels are checked against the fusion rules (see
 * check_fusion_rules): legal groups, no fusion missed, one group per kernel.
 *
 * The generator knows the shape rules, so a graph the front end rejects is a generator bug, and
 * aborts like a mismatch. It also tracks a bound on every value's magnitude and whether it is
 * exact (an input's or a weight's values, moved but not rounded): ops that would turn fp32
 * rounding into errors above the tolerance (cancellation between large values, a square root
 * or layernorm of rounding noise) are not generated, so a mismatch is a real miscompile.
 *
 * Input layout: byte 0 holds the flags (see F_* below), the rest drives the generator; when
 * the bytes run out every choice is 0, so short inputs give small graphs. Any change to the
 * generator maps old inputs to other graphs: keep reproducers also as .fuse text or unit tests.
 */
#include "fuzz.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "ast.h"
#include "backend_c.h"
#include "ctx.h"
#include "diag.h"
#include "driver.h"
#include "front.h"
#include "fuse_rt.h"
#include "graph.h"
#include "interp.h"
#include "loop.h"
#include "schedule.h"
#include "source.h"
#include "util.h"
#include "weights.h"

#ifdef FUSE_WITH_LLVM
#include "jit.h"
#endif

enum {
    MAX_VALUES = 40,    /* values one graph defines, inputs included */
    MAX_INPUTS = 8,     /* graph inputs */
    MAX_OPS = 14,       /* generated statements */
    MAX_ELEMS = 4096,   /* elements of one tensor */
    MAX_MACS = 1 << 19, /* multiply-adds of one contraction */
    BIG_DIM = 40,       /* a size past every vector width and tile, now and then */
    MAX_OUTPUTS = 3,    /* graph outputs */
    MAX_NAMED_DIM = 9,  /* dims 1..9 may be written as D1..D9 */
    MAX_RANK = 6,       /* ranks generated (FUSE_MAX_RANK is 8) */
    INPUT_BOUND = 2,    /* inputs are uniform in [-2, 2) */
    TEXT_MAX = 160,     /* one expression */
    SHAPE_TEXT = 96,    /* "[1, 2, 3]" */
};

/* Values above this magnitude could lose more than the tolerance to cancellation. */
#define BOUND_LIMIT 100.0
#define TOLERANCE   1e-4

/* ---- the input bytes ---- */

typedef struct Bytes {
    const uint8_t *p;
    size_t n;
} Bytes;

/* A choice in [0, n); 0 once the bytes run out. */
static unsigned pick(Bytes *b, unsigned n)
{
    if (n <= 1 || b->n == 0)
        return 0;
    unsigned v = *b->p++;
    b->n--;
    if (n > 256 && b->n > 0) {
        v = v << 8 | *b->p++;
        b->n--;
    }
    return v % n;
}

static bool flip(Bytes *b)
{
    return pick(b, 2) == 1;
}

/* A value in [lo, hi]. */
static int64_t range(Bytes *b, int64_t lo, int64_t hi)
{
    return lo + (int64_t)pick(b, (unsigned)(hi - lo + 1));
}

/* ---- the generated graph ---- */

typedef struct Value {
    char name[8];
    Shape shape;
    double bound; /* every finite element has |x| <= bound; INFINITY: no bound known */
    bool exact;   /* the elements are input or weight values, unrounded (maybe duplicated) */
    bool used;    /* by a statement or as an output */
} Value;

typedef struct Gen {
    Bytes in;
    bool named_dims; /* write input and output dims 1..9 as D1..D9 */
    StrBuf params;   /* the graph's (or the block's) tensor parameters */
    StrBuf body;     /* the statements */
    Value v[MAX_VALUES];
    uint32_t nv, ninputs, nstmts, nscopes;
} Gen;

static int64_t numel(const Shape *s)
{
    int64_t n = 1;
    for (uint32_t d = 0; d < s->rank; d++)
        n *= s->dim[d];
    return n;
}

/* "[2, 3]", or with named dims "[D2, D3]" (dims over MAX_NAMED_DIM stay numbers). */
static const char *shape_text(const Shape *s, bool named, char buf[SHAPE_TEXT])
{
    size_t o = (size_t)snprintf(buf, SHAPE_TEXT, "[");
    for (uint32_t d = 0; d < s->rank; d++) {
        bool name = named && s->dim[d] <= MAX_NAMED_DIM;
        o += (size_t)snprintf(buf + o, SHAPE_TEXT - o, "%s%s%lld", d ? ", " : "", name ? "D" : "",
                              (long long)s->dim[d]);
    }
    snprintf(buf + o, SHAPE_TEXT - o, "]");
    return buf;
}

/* An axis as written: sometimes counted from the end. */
static long long axis_text(Gen *g, uint32_t axis, uint32_t rank)
{
    return flip(&g->in) ? (long long)axis - (long long)rank : (long long)axis;
}

/* A new graph input of this shape, or -1 when there is no room for one. */
static int new_input(Gen *g, const Shape *s)
{
    if (g->ninputs == MAX_INPUTS || g->nv == MAX_VALUES || s->rank == 0)
        return -1;
    Value *v = &g->v[g->nv];
    snprintf(v->name, sizeof v->name, "x%u", g->ninputs);
    v->shape = *s;
    v->bound = INPUT_BOUND;
    v->exact = true;
    char t[SHAPE_TEXT];
    sb_printf(&g->params, "%s%s: f32%s", g->ninputs ? ", " : "", v->name,
              shape_text(s, g->named_dims, t));
    g->ninputs++;
    return (int)g->nv++;
}

/* Defines the next value as `expr` (printf-style). Returns its index, or -1 when full. */
static int define(Gen *g, const Shape *s, double bound, bool exact, const char *fmt, ...)
    FUSE_PRINTF(5, 6);

static int define(Gen *g, const Shape *s, double bound, bool exact, const char *fmt, ...)
{
    if (g->nv == MAX_VALUES)
        return -1;
    Value *v = &g->v[g->nv];
    snprintf(v->name, sizeof v->name, "v%u", g->nstmts++);
    v->shape = *s;
    v->bound = bound;
    v->exact = exact;
    sb_printf(&g->body, "    %s = ", v->name);
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(&g->body, fmt, ap);
    va_end(ap);
    sb_append(&g->body, "\n");
    return (int)g->nv++;
}

/* A fresh weight scope. */
static const char *scope(Gen *g, char buf[16])
{
    snprintf(buf, 16, "@s%u", g->nscopes++);
    return buf;
}

/* An operand: the latest value half of the time, else any, so that ops chain. */
static uint32_t operand(Gen *g)
{
    return flip(&g->in) ? pick(&g->in, g->nv) : g->nv - 1;
}

/* A size in [1, small], or one time in eight in [small + 1, BIG_DIM]: small sizes keep graphs
 * fast, the large ones reach the vectorized and tiled loops and their remainders. */
static int64_t size(Gen *g, int64_t small)
{
    return pick(&g->in, 8) == 7 ? range(&g->in, small + 1, BIG_DIM) : range(&g->in, 1, small);
}

/* A random shape of rank r with dims mostly in [1, 6] and at most `elems` elements. */
static Shape random_shape(Gen *g, uint32_t r, int64_t elems)
{
    Shape s = {.rank = r};
    int64_t n = 1;
    for (uint32_t d = 0; d < r; d++) {
        int64_t v = size(g, 6), cap = elems / n;
        s.dim[d] = v <= cap ? v : cap < 1 ? 1 : cap;
        n *= s.dim[d];
    }
    return s;
}

/* A shape that broadcasts with `a` (NumPy rules): each trailing axis kept, 1, or (where a has
 * 1) any size; maybe one axis fewer or more. Its rank is at least 1 (a tensor type has one). */
static Shape broadcast_partner(Gen *g, const Shape *a)
{
    uint32_t r = a->rank;
    switch (pick(&g->in, 5)) {
    case 0:
        r = r > 1 ? r - 1 : r;
        break;
    case 1:
        r = r < MAX_RANK ? r + 1 : r;
        break;
    }
    if (r == 0)
        r = 1;
    Shape s = {.rank = r};
    for (uint32_t i = 0; i < r; i++) {
        uint32_t d = r - 1 - i;
        int64_t ad = i < a->rank ? a->dim[a->rank - 1 - i] : 1;
        unsigned c = pick(&g->in, 4);
        s.dim[d] = c == 0 ? 1 : ad;
        if (ad == 1 && c == 3)
            s.dim[d] = range(&g->in, 2, 3);
        if (i >= a->rank)
            s.dim[d] = c == 0 ? range(&g->in, 1, 3) : 1;
    }
    return s;
}

/* The broadcast of two shapes (build checked the same rule), or false. */
static bool broadcast(const Shape *a, const Shape *b, Shape *out)
{
    uint32_t r = a->rank > b->rank ? a->rank : b->rank;
    Shape s = {.rank = r};
    for (uint32_t i = 0; i < r; i++) {
        int64_t da = i < a->rank ? a->dim[a->rank - 1 - i] : 1;
        int64_t db = i < b->rank ? b->dim[b->rank - 1 - i] : 1;
        if (da != db && da != 1 && db != 1)
            return false;
        s.dim[r - 1 - i] = da == 1 ? db : da;
    }
    *out = s;
    return true;
}

/* ---- the ops: each returns false, having written nothing, when its operand does not fit ---- */

static bool gen_unary(Gen *g, const Value *a)
{
    static const struct {
        const char *open, *close; /* around the operand */
        double bound;             /* of the result: < 0 means the input's bound */
        bool exact;               /* keeps exactness */
        bool any;                 /* well defined for any input, inf and NaN included */
    } ops[] = {
        {"relu(", ")", -1, true, true},
        {"abs(", ")", -1, true, true},
        {"neg(", ")", -1, true, true},
        {"-", "", -1, true, true},
        {"sigmoid(", ")", 1, false, true},
        {"tanh(", ")", 1, false, true},
        {"silu(", ")", -1, false, false},
        {"gelu(", ")", -1, false, false},
        {"gelu(", ", approximate=tanh)", -1, false, false},
        {"gelu(", ", approximate=\"none\")", -1, false, false},
    };
    unsigned k = pick(&g->in, countof(ops));
    if (!ops[k].any && !isfinite(a->bound))
        return false;
    double bound = ops[k].bound < 0 ? fmax(a->bound, 0.3) : ops[k].bound;
    return define(g, &a->shape, bound, a->exact && ops[k].exact, "%s%s%s", ops[k].open, a->name,
                  ops[k].close) >= 0;
}

/* exp, sqrt and rsqrt, with their inputs kept where fp32 rounding cannot be amplified. */
static bool gen_transcendental(Gen *g, const Value *a)
{
    const char *n = a->name;
    switch (pick(&g->in, 4)) {
    case 0:
        if (a->bound <= 4)
            return define(g, &a->shape, exp(a->bound), false, "exp(%s)", n) >= 0;
        if (!isfinite(a->bound))
            return false;
        return define(g, &a->shape, 1, false, "exp(-abs(%s))", n) >= 0;
    case 1:
        // sqrt of a rounded value near 0 turns its rounding error into 1e-4 and more.
        if (a->exact)
            return define(g, &a->shape, sqrt(a->bound), false, "sqrt(%s)", n) >= 0;
        if (!isfinite(a->bound))
            return false;
        return define(g, &a->shape, sqrt(a->bound + 1), false, "sqrt(abs(%s) + 1)", n) >= 0;
    case 2:
        if (a->exact)
            return define(g, &a->shape, INFINITY, false, "rsqrt(%s)", n) >= 0;
        if (!isfinite(a->bound))
            return false;
        return define(g, &a->shape, 1, false, "rsqrt(%s * %s + 1)", n, n) >= 0;
    default:
        if (!isfinite(a->bound))
            return false;
        return define(g, &a->shape, 1, false, "1 / (1 + exp(-%s))", n) >= 0;
    }
}

/* The second operand of a binary op: an existing value that broadcasts, a new input, a
 * param(), or `a` itself. Writes its text into text (a name, or a param() call). */
static bool binary_partner(Gen *g, const Value *a, Value *b, char text[TEXT_MAX])
{
    Shape out;
    switch (pick(&g->in, 5)) {
    case 0: { /* an existing value */
        uint32_t start = pick(&g->in, g->nv);
        for (uint32_t k = 0; k < g->nv; k++) {
            const Value *c = &g->v[(start + k) % g->nv];
            if (broadcast(&a->shape, &c->shape, &out) && numel(&out) <= MAX_ELEMS) {
                *b = *c;
                snprintf(text, TEXT_MAX, "%s", c->name);
                return true;
            }
        }
        return false;
    }
    case 1:
    case 2: { /* a new input */
        Shape s = broadcast_partner(g, &a->shape);
        if (!broadcast(&a->shape, &s, &out) || numel(&out) > MAX_ELEMS)
            return false;
        int k = new_input(g, &s);
        if (k < 0)
            return false;
        *b = g->v[k];
        snprintf(text, TEXT_MAX, "%s", b->name);
        return true;
    }
    case 3: { /* a weight */
        Shape s = broadcast_partner(g, &a->shape);
        if (!broadcast(&a->shape, &s, &out) || numel(&out) > MAX_ELEMS)
            return false;
        char t[SHAPE_TEXT], sc[16];
        b->shape = s;
        b->bound = 1;
        b->exact = true;
        snprintf(text, TEXT_MAX, "param(shape=%s) %s", shape_text(&s, false, t), scope(g, sc));
        return true;
    }
    default:
        *b = *a;
        snprintf(text, TEXT_MAX, "%s", a->name);
        return true;
    }
}

static bool gen_binary(Gen *g, const Value *a)
{
    Value b;
    char bt[TEXT_MAX];
    if (!binary_partner(g, a, &b, bt))
        return false;
    Shape s;
    if (!broadcast(&a->shape, &b.shape, &s))
        return false;
    bool fin = isfinite(a->bound) && isfinite(b.bound);
    bool exact = a->exact && b.exact;
    double m = fmax(a->bound, b.bound);
    const char *an = a->name;
    // Operands on either side: the broadcast is symmetric, the arithmetic is not.
    bool swap = flip(&g->in);
    const char *l = swap ? bt : an, *r = swap ? an : bt;
    switch (pick(&g->in, 6)) {
    case 0:
        if (!fin || a->bound + b.bound > BOUND_LIMIT)
            return false;
        return define(g, &s, a->bound + b.bound, false, "%s + %s", l, r) >= 0;
    case 1:
        if (!fin || a->bound + b.bound > BOUND_LIMIT)
            return false;
        return define(g, &s, a->bound + b.bound, false, "%s - %s", l, r) >= 0;
    case 2:
        if (!fin || a->bound * b.bound > BOUND_LIMIT)
            return false;
        return define(g, &s, a->bound * b.bound, false, "%s * %s", l, r) >= 0;
    case 3:
        return define(g, &s, m, exact, "min(%s, %s)", l, r) >= 0;
    case 4:
        return define(g, &s, m, exact, "max(%s, %s)", l, r) >= 0;
    default:
        if (!fin)
            return false;
        return define(g, &s, a->bound, false, "%s / (abs(%s) + 1)", an, bt) >= 0;
    }
}

/* A tensor and a number. */
static bool gen_scalar(Gen *g, const Value *a)
{
    static const struct {
        const char *text;
        double value;
    } nums[] = {{"0.5", 0.5},   {"2", 2}, {"1.5", 1.5},   {"-1", -1},
                {"0.25", 0.25}, {"3", 3}, {"1e-3", 1e-3}, {"-0.75", -0.75}};
    unsigned k = pick(&g->in, countof(nums));
    const char *c = nums[k].text, *n = a->name;
    double v = fabs(nums[k].value), b = a->bound;
    switch (pick(&g->in, 5)) {
    case 0:
        return b + v <= BOUND_LIMIT && define(g, &a->shape, b + v, false, "%s + %s", n, c) >= 0;
    case 1:
        return b + v <= BOUND_LIMIT && define(g, &a->shape, b + v, false, "%s - %s", c, n) >= 0;
    case 2: /* a scaled inf stays inf, a scaled NaN NaN: fine for any input */
        return (b * v <= BOUND_LIMIT || !isfinite(b)) &&
               define(g, &a->shape, b * v, false, "%s * %s", c, n) >= 0;
    case 3:
        return v >= 0.25 && (b / v <= BOUND_LIMIT || !isfinite(b)) &&
               define(g, &a->shape, b / v, false, "%s / %s", n, c) >= 0;
    default:
        return isfinite(b) && v <= BOUND_LIMIT &&
               define(g, &a->shape, v, false, "%s / (abs(%s) + 1)", c, n) >= 0;
    }
}

static bool gen_reduce(Gen *g, const Value *a)
{
    static const char *const names[] = {"sum", "mean", "amax", "amin"};
    const Shape *x = &a->shape;
    if (x->rank == 0)
        return false;
    unsigned op = pick(&g->in, countof(names));
    if (op < 2 && !isfinite(a->bound))
        return false;
    bool red[FUSE_MAX_RANK] = {0};
    uint32_t nred = 0;
    for (uint32_t d = 0; d < x->rank; d++)
        nred += red[d] = flip(&g->in);
    if (nred == 0) {
        red[pick(&g->in, x->rank)] = true;
        nred = 1;
    }
    bool keep = flip(&g->in);
    Shape s = {.rank = 0};
    int64_t count = 1;
    StrBuf axes = {0};
    for (uint32_t d = 0; d < x->rank; d++) {
        if (red[d]) {
            count *= x->dim[d];
            sb_printf(&axes, "%s%lld", axes.len ? ", " : "", axis_text(g, d, x->rank));
        }
        if (!red[d] || keep)
            s.dim[s.rank++] = red[d] ? 1 : x->dim[d];
    }
    double bound = op == 0 ? a->bound * (double)count : a->bound;
    bool ok = false;
    if (bound <= BOUND_LIMIT || !isfinite(a->bound)) {
        bool list = nred > 1 || flip(&g->in);
        const char *kd = keep ? ", keepdim=true" : flip(&g->in) ? ", keepdim=false" : "";
        ok = define(g, &s, bound, op >= 2 && a->exact, "%s(%s, axes=%s%s%s%s)", names[op], a->name,
                    list ? "[" : "", sb_str(&axes), list ? "]" : "", kd) >= 0;
    }
    sb_free(&axes);
    return ok;
}

static bool gen_softmax(Gen *g, const Value *a)
{
    if (a->shape.rank == 0 || !isfinite(a->bound))
        return false;
    uint32_t axis = pick(&g->in, a->shape.rank);
    return define(g, &a->shape, 1, false, "softmax(%s, axis=%lld)", a->name,
                  axis_text(g, axis, a->shape.rank)) >= 0;
}

/* torch.matmul's result shape (1-d operands promoted, batch dims broadcast), or false. */
static bool matmul_shape(const Shape *a, const Shape *b, Shape *out)
{
    Shape a2 = *a, b2 = *b;
    if (a->rank == 1)
        a2 = (Shape){2, {1, a->dim[0]}};
    if (b->rank == 1)
        b2 = (Shape){2, {b->dim[0], 1}};
    if (a2.dim[a2.rank - 1] != b2.dim[b2.rank - 2])
        return false;
    Shape ba = {.rank = a2.rank - 2}, bb = {.rank = b2.rank - 2}, s;
    memcpy(ba.dim, a2.dim, ba.rank * sizeof(int64_t));
    memcpy(bb.dim, b2.dim, bb.rank * sizeof(int64_t));
    if (!broadcast(&ba, &bb, &s))
        return false;
    if (a->rank > 1)
        s.dim[s.rank++] = a2.dim[a2.rank - 2];
    if (b->rank > 1)
        s.dim[s.rank++] = b2.dim[b2.rank - 1];
    *out = s;
    return true;
}

static bool gen_matmul(Gen *g, const Value *a)
{
    const Shape *x = &a->shape;
    if (x->rank == 0 || x->rank > 4 || !isfinite(a->bound))
        return false;
    int64_t k = x->dim[x->rank - 1];
    Shape bs;
    if (pick(&g->in, 4) == 0) {
        bs = (Shape){1, {k}};
    } else {
        Shape batch = {.rank = 0};
        if (x->rank > 2 || flip(&g->in)) {
            Shape xb = {.rank = x->rank > 2 ? x->rank - 2 : 0};
            memcpy(xb.dim, x->dim, xb.rank * sizeof(int64_t));
            batch = xb.rank ? broadcast_partner(g, &xb) : (Shape){1, {range(&g->in, 1, 3)}};
            if (batch.rank > 2)
                batch.rank = 2;
        }
        bs = batch;
        bs.dim[bs.rank++] = k;
        bs.dim[bs.rank++] = size(g, 5);
    }
    Shape s;
    if (!matmul_shape(x, &bs, &s) || numel(&s) > MAX_ELEMS || numel(&s) * k > MAX_MACS ||
        a->bound * INPUT_BOUND * (double)k > BOUND_LIMIT)
        return false;
    Value b;
    char bt[TEXT_MAX], t[SHAPE_TEXT], sc[16];
    bool ok = false;
    switch (pick(&g->in, 3)) {
    case 0:
        // An existing value of that shape, or else the value against itself transposed.
        for (uint32_t j = 0; j < g->nv && !ok; j++)
            if (shape_equal(&g->v[j].shape, &bs)) {
                b = g->v[j];
                snprintf(bt, sizeof bt, "%s", b.name);
                ok = true;
            }
        break;
    case 1:
        b = (Value){.shape = bs, .bound = 1, .exact = true};
        snprintf(bt, sizeof bt, "param(shape=%s) %s", shape_text(&bs, false, t), scope(g, sc));
        ok = true;
        break;
    }
    if (!ok) {
        int j = new_input(g, &bs);
        if (j < 0)
            return false;
        b = g->v[j];
        snprintf(bt, sizeof bt, "%s", b.name);
    }
    double bound = a->bound * b.bound * (double)k;
    if (!isfinite(b.bound) || bound > BOUND_LIMIT)
        return false;
    return define(g, &s, bound, false, "matmul(%s, %s)", a->name, bt) >= 0;
}

/* The bound of linear/conv over fan_in inputs of bound b (weights_fill_random's scale). */
static double contraction_bound(double b, int64_t fan_in, bool bias)
{
    return b * sqrt((double)fan_in) + (bias ? 1 : 0);
}

/* (x - mean) / sqrt(var + eps) * weight + bias with |mean|, |bias| <= 0.5, var >= 0.5 and
 * weight <= 1.5 (weights_fill_random). */
static double batchnorm_bound(double b)
{
    return (b + 0.5) * 1.5 / sqrt(0.5) + 0.5;
}

static bool gen_linear(Gen *g, const Value *a)
{
    const Shape *x = &a->shape;
    if (x->rank == 0 || !isfinite(a->bound))
        return false;
    int64_t in = x->dim[x->rank - 1], out = size(g, 8);
    Shape s = *x;
    s.dim[s.rank - 1] = out;
    bool bias = !flip(&g->in);
    double bound = contraction_bound(a->bound, in, bias);
    if (numel(&s) > MAX_ELEMS || numel(&s) * in > MAX_MACS || bound > BOUND_LIMIT)
        return false;
    char sc[16];
    return define(g, &s, bound, false, "linear(%s, out=%lld%s) %s", a->name, (long long)out,
                  bias ? (flip(&g->in) ? ", bias=true" : "") : ", bias=false", scope(g, sc)) >= 0;
}

/* `name=v` or `name=[h, w]`, or nothing when both are the default and the choice says so. */
static void pair_attr(Gen *g, StrBuf *sb, const char *name, int64_t h, int64_t w, int64_t def)
{
    if (h == def && w == def && flip(&g->in))
        return;
    if (h == w && flip(&g->in))
        sb_printf(sb, ", %s=%lld", name, (long long)h);
    else
        sb_printf(sb, ", %s=[%lld, %lld]", name, (long long)h, (long long)w);
}

/* floor((in + 2p - d(k-1) - 1) / s) + 1, or 0 when the window does not fit. */
static int64_t window(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d)
{
    int64_t reach = d * (k - 1) + 1, padded = in + 2 * p;
    return padded < reach ? 0 : (padded - reach) / s + 1;
}

static bool gen_conv(Gen *g, const Value *a)
{
    const Shape *x = &a->shape;
    if (x->rank != 4 || !isfinite(a->bound))
        return false;
    int64_t c = x->dim[1], groups = 1;
    for (int64_t d = range(&g->in, 1, c); d >= 1; d--)
        if (c % d == 0) {
            groups = d;
            break;
        }
    if (pick(&g->in, 3))
        groups = 1;
    int64_t per = 8 / groups > 1 ? 8 / groups : 1;
    int64_t out = groups * size(g, per);
    int64_t k[2], st[2], pad[2], dil[2], o[2];
    for (int i = 0; i < 2; i++) {
        k[i] = range(&g->in, 1, 3);
        st[i] = pick(&g->in, 3) ? 1 : 2;
        pad[i] = pick(&g->in, 3) ? 0 : range(&g->in, 1, 2);
        dil[i] = pick(&g->in, 4) ? 1 : 2;
        o[i] = window(x->dim[2 + i], k[i], st[i], pad[i], dil[i]);
        if (o[i] == 0)
            return false;
    }
    Shape s = {4, {x->dim[0], out, o[0], o[1]}};
    int64_t fan_in = c / groups * k[0] * k[1];
    bool bias = !flip(&g->in);
    double bound = contraction_bound(a->bound, fan_in, bias);
    if (numel(&s) > MAX_ELEMS || numel(&s) * fan_in > MAX_MACS || bound > BOUND_LIMIT)
        return false;
    StrBuf attrs = {0};
    sb_printf(&attrs, "out=%lld", (long long)out);
    if (k[0] == k[1] && flip(&g->in))
        sb_printf(&attrs, ", kernel=%lld", (long long)k[0]);
    else
        sb_printf(&attrs, ", kernel=[%lld, %lld]", (long long)k[0], (long long)k[1]);
    pair_attr(g, &attrs, "stride", st[0], st[1], 1);
    pair_attr(g, &attrs, "padding", pad[0], pad[1], 0);
    pair_attr(g, &attrs, "dilation", dil[0], dil[1], 1);
    if (groups > 1 || flip(&g->in))
        sb_printf(&attrs, ", groups=%lld", (long long)groups);
    if (!bias)
        sb_append(&attrs, ", bias=false");
    char sc[16];
    bool ok = define(g, &s, bound, false, "conv2d(%s, %s) %s", a->name, sb_str(&attrs),
                     scope(g, sc)) >= 0;
    sb_free(&attrs);
    return ok;
}

static bool gen_batchnorm(Gen *g, const Value *a)
{
    uint32_t r = a->shape.rank;
    if ((r < 2 || r > 4) || !isfinite(a->bound))
        return false;
    double bound = batchnorm_bound(a->bound);
    if (bound > BOUND_LIMIT)
        return false;
    char sc[16];
    return define(g, &a->shape, bound, false, "%s(%s%s) %s", r == 4 ? "batchnorm2d" : "batchnorm1d",
                  a->name, flip(&g->in) ? ", eps=0.001" : "", scope(g, sc)) >= 0;
}

static bool gen_layernorm(Gen *g, const Value *a)
{
    const Shape *x = &a->shape;
    if (x->rank == 0 || !isfinite(a->bound))
        return false;
    // Rows of rounded values that should be equal have a variance of rounding noise, which a
    // small eps magnifies past the tolerance: give those a larger eps.
    if (!a->exact && a->bound > 16)
        return false;
    double bound = sqrt((double)x->dim[x->rank - 1]) * 1.5 + 0.5;
    if (bound > BOUND_LIMIT)
        return false;
    char sc[16];
    return define(g, x, bound, false, "layernorm(%s%s) %s", a->name, a->exact ? "" : ", eps=0.01",
                  scope(g, sc)) >= 0;
}

static bool gen_mha(Gen *g, const Value *a)
{
    const Shape *q = &a->shape;
    if (q->rank != 3 || !isfinite(a->bound))
        return false;
    int64_t n = q->dim[0], l = q->dim[1], e = q->dim[2], heads = 1;
    for (int64_t d = range(&g->in, 1, e); d >= 1; d--)
        if (e % d == 0) {
            heads = d;
            break;
        }
    bool bias = !flip(&g->in);
    double se = sqrt((double)e);
    double bound = (fmax(a->bound, INPUT_BOUND) * se + 0.5) * se + 0.5;
    if (bound > BOUND_LIMIT)
        return false;
    const Value *k = a, *v = a;
    if (flip(&g->in)) {
        Shape ks = {3, {n, size(g, 5), e}};
        int ki = new_input(g, &ks);
        if (ki < 0)
            return false;
        k = v = &g->v[ki];
        if (flip(&g->in)) {
            int vi = new_input(g, &ks);
            if (vi < 0)
                return false;
            v = &g->v[vi];
        }
    }
    int64_t s = k->shape.dim[1];
    if (n * (l + s) * e * 4 * e + n * l * s * e * 2 > MAX_MACS)
        return false;
    char sc[16];
    return define(g, q, bound, false, "mha(%s, %s, %s, heads=%lld%s) %s", a->name, k->name, v->name,
                  (long long)heads, bias ? "" : ", bias=false", scope(g, sc)) >= 0;
}

/* Attention written out, in one of the spellings the attention pass recognizes:
 * matmul(softmax(scores, last axis), v) with q the operand, k and v new inputs or q itself, k^T
 * through transpose or permute or given as an input, a scalar scale on the scores (`* c`,
 * `c *`, `/ c`), on q, on k, or none. */
static bool gen_attention(Gen *g, const Value *a)
{
    const Shape *q = &a->shape;
    uint32_t r = q->rank;
    if (r < 2 || r > 4 || !isfinite(a->bound))
        return false;
    int64_t l = q->dim[r - 2], d = q->dim[r - 1], sl = flip(&g->in) ? l : size(g, 9);
    int64_t dv = flip(&g->in) ? d : size(g, 6), nb = numel(q) / (l * d);
    if (nb * l * sl * (d + dv) > MAX_MACS || nb * l * dv > MAX_ELEMS || nb * sl * d > MAX_ELEMS ||
        nb * sl * dv > MAX_ELEMS)
        return false;
    Shape ks = *q, kts = *q, vs = *q, os = *q;
    ks.dim[r - 2] = sl;
    kts.dim[r - 2] = d;
    kts.dim[r - 1] = sl;
    vs.dim[r - 2] = sl;
    vs.dim[r - 1] = dv;
    os.dim[r - 1] = dv;
    const char *qn = a->name;
    char kn[8], vn[8], kscaled[48], qt[48], kt[112], scores[256];
    double kb = a->bound, vb = a->bound;
    bool self = sl == l && flip(&g->in);
    int ki = -1;
    unsigned kform = pick(&g->in, 3); /* 0 transpose, 1 permute, 2 k^T as an input */
    if (kform == 2) {
        ki = new_input(g, &kts);
    } else if (!self) {
        ki = new_input(g, &ks);
    }
    if (ki < 0 && (kform == 2 || !self))
        return false;
    snprintf(kn, sizeof kn, "%s", ki >= 0 ? g->v[ki].name : qn);
    kb = ki >= 0 ? INPUT_BOUND : kb;
    if (dv == d && sl == l && self && flip(&g->in)) {
        snprintf(vn, sizeof vn, "%s", qn);
    } else {
        int vi = new_input(g, &vs);
        if (vi < 0)
            return false;
        snprintf(vn, sizeof vn, "%s", g->v[vi].name);
        vb = INPUT_BOUND;
    }
    unsigned where = pick(&g->in, 6); /* scores * c, c * scores, scores / c, q, k, none */
    double c = (double)range(&g->in, 1, 8) / 8.0;
    snprintf(kscaled, sizeof kscaled, where == 4 ? "(%s * %g)" : "%s", kn, c);
    if (kform == 0)
        snprintf(kt, sizeof kt, "transpose(%s, dims=[%lld, %lld])", kscaled, axis_text(g, r - 2, r),
                 axis_text(g, r - 1, r));
    else if (kform == 1) {
        StrBuf perm = {0};
        for (uint32_t i = 0; i < r; i++)
            sb_printf(&perm, "%s%u", i ? ", " : "", i + 2 == r ? r - 1 : i + 1 == r ? r - 2 : i);
        snprintf(kt, sizeof kt, "permute(%s, perm=[%s])", kscaled, sb_str(&perm));
        sb_free(&perm);
    } else
        snprintf(kt, sizeof kt, "%s", kscaled);
    snprintf(qt, sizeof qt, where == 3 ? "(%s * %g)" : "%s", qn, c);
    if (where == 0)
        snprintf(scores, sizeof scores, "matmul(%s, %s) * %g", qt, kt, c);
    else if (where == 1)
        snprintf(scores, sizeof scores, "%g * matmul(%s, %s)", c, qt, kt);
    else if (where == 2)
        snprintf(scores, sizeof scores, "matmul(%s, %s) / %g", qt, kt, 1.0 / c);
    else
        snprintf(scores, sizeof scores, "matmul(%s, %s)", qt, kt);
    if (a->bound * kb * (double)d > BOUND_LIMIT)
        return false;
    return define(g, &os, vb, false, "matmul(softmax(%s, axis=%lld), %s)", scores,
                  axis_text(g, r - 1, r), vn) >= 0;
}

/* ---- attention blocks: SE, CBAM and BAM in the spellings users write them ---- */

/* A global pool of x [N, C, H, W] over H, W (`mean` or `amax`), written with or without
 * keepdim and brought to [N, C] (rank 2) or [N, C, 1, 1] (rank 4) by `view` or `flatten`
 * where the spelling needs it. Returns the value, or -1 when full. */
static int global_pool(Gen *g, const Value *x, const char *op, uint32_t rank)
{
    int64_t n = x->shape.dim[0], c = x->shape.dim[1];
    Shape flat = {2, {n, c}}, kept = {4, {n, c, 1, 1}};
    bool keep = flip(&g->in), say_false = !keep && flip(&g->in);
    long long h = axis_text(g, 2, 4), w = axis_text(g, 3, 4);
    int p = define(g, keep ? &kept : &flat, x->bound, false, "%s(%s, axes=[%lld, %lld]%s)", op,
                   x->name, h, w,
                   keep        ? ", keepdim=true"
                   : say_false ? ", keepdim=false"
                               : "");
    if (p < 0 || (rank == 4) == keep)
        return p;
    const Value *v = &g->v[p];
    if (rank == 2 && flip(&g->in))
        return define(g, &flat, v->bound, false, "flatten(%s, start=1)", v->name);
    if (rank == 2)
        return define(g, &flat, v->bound, false, "view(%s, shape=[%lld, %lld])", v->name,
                      (long long)n, flip(&g->in) ? -1LL : (long long)c);
    return define(g, &kept, v->bound, false, "view(%s, shape=[%lld, %lld, 1, 1])", v->name,
                  (long long)n, (long long)c);
}

/* The channel MLP C -> hidden -> C on a pooled descriptor: `linear` on [N, C] or 1x1 `conv2d`
 * on [N, C, 1, 1], with the scopes given (shared between CBAM's two descriptors), maybe a
 * batchnorm (BAM) before the ReLU. */
static int channel_mlp(Gen *g, int pooled, bool conv, int64_t hidden, bool bias, bool bn,
                       const char *s1, const char *sbn, const char *s2, double hb, double ob)
{
    const Value *p = &g->v[pooled];
    Shape hs = p->shape, os = p->shape;
    hs.dim[1] = hidden;
    const char *b = bias ? "" : ", bias=false";
    int h = conv ? define(g, &hs, hb, false, "conv2d(%s, out=%lld, kernel=1%s) %s", p->name,
                          (long long)hidden, b, s1)
                 : define(g, &hs, hb, false, "linear(%s, out=%lld%s) %s", p->name,
                          (long long)hidden, b, s1);
    if (h < 0)
        return -1;
    const char *hn = g->v[h].name;
    if (bn)
        h = define(g, &hs, batchnorm_bound(hb), false, "relu(%s(%s) %s)",
                   conv ? "batchnorm2d" : "batchnorm1d", hn, sbn);
    else
        h = define(g, &hs, hb, false, "relu(%s)", hn);
    if (h < 0)
        return -1;
    hn = g->v[h].name;
    return conv ? define(g, &os, ob, false, "conv2d(%s, out=%lld, kernel=1%s) %s", hn,
                         (long long)os.dim[1], b, s2)
                : define(g, &os, ob, false, "linear(%s, out=%lld%s) %s", hn, (long long)os.dim[1],
                         b, s2);
}

/* SE (one average pool) or CBAM's channel attention (average and max pools through one shared
 * MLP, added): x * sigmoid(mlp(pools)), the gate as [N, C] viewed to [N, C, 1, 1] or computed
 * at that shape, applied as `x * gate` or `gate * x`. */
static bool gen_channel_attention(Gen *g, const Value *a)
{
    const Shape *x = &a->shape;
    if (x->rank != 4 || !isfinite(a->bound) || g->nv + 12 > MAX_VALUES)
        return false;
    int64_t n = x->dim[0], c = x->dim[1];
    int64_t hidden = range(&g->in, 1, c < 8 ? c : 8);
    bool two = flip(&g->in), conv = flip(&g->in), bias = pick(&g->in, 3) == 0;
    double hb = contraction_bound(a->bound, c, bias);
    double ob = contraction_bound(hb, hidden, bias);
    if (hb > BOUND_LIMIT || 2 * ob > BOUND_LIMIT)
        return false;
    char s1[16], s2[16];
    scope(g, s1);
    scope(g, s2);
    const char *op[2] = {"mean", "amax"};
    int m[2] = {-1, -1};
    for (int i = 0; i < (two ? 2 : 1); i++) {
        int p = global_pool(g, a, op[i], conv ? 4 : 2);
        m[i] = p < 0 ? -1 : channel_mlp(g, p, conv, hidden, bias, false, s1, "", s2, hb, ob);
        if (m[i] < 0)
            return false;
    }
    Shape gs = g->v[m[0]].shape, full = {4, {n, c, 1, 1}};
    int gate = two ? define(g, &gs, 1, false, "sigmoid(%s + %s)", g->v[m[0]].name, g->v[m[1]].name)
                   : define(g, &gs, 1, false, "sigmoid(%s)", g->v[m[0]].name);
    if (gate >= 0 && !conv)
        gate = define(g, &full, 1, false, "view(%s, shape=[%lld, %lld, 1, 1])", g->v[gate].name,
                      (long long)n, (long long)c);
    if (gate < 0)
        return false;
    bool first = flip(&g->in);
    return define(g, x, a->bound, false, "%s * %s", first ? g->v[gate].name : a->name,
                  first ? a->name : g->v[gate].name) >= 0;
}

/* CBAM's spatial attention: the channel mean and max (keepdim, or reduced and viewed back),
 * concatenated, a k x k conv to one channel with `same` padding, sigmoid, times x. */
static bool gen_spatial_attention(Gen *g, const Value *a)
{
    const Shape *x = &a->shape;
    if (x->rank != 4 || !isfinite(a->bound) || g->nv + 6 > MAX_VALUES)
        return false;
    int64_t n = x->dim[0], h = x->dim[2], w = x->dim[3], k = 2 * range(&g->in, 0, 3) + 1;
    double cb = contraction_bound(a->bound, 2 * k * k, false);
    if (cb > BOUND_LIMIT || n * h * w * 2 * k * k > MAX_MACS)
        return false;
    Shape map = {4, {n, 1, h, w}}, flat = {3, {n, h, w}}, two = {4, {n, 2, h, w}};
    const char *op[2] = {"mean", "amax"};
    int pooled[2];
    for (int i = 0; i < 2; i++) {
        bool keep = flip(&g->in);
        pooled[i] =
            define(g, keep ? &map : &flat, a->bound, i == 1 && a->exact, "%s(%s, axes=[%lld]%s)",
                   op[i], a->name, axis_text(g, 1, 4), keep ? ", keepdim=true" : "");
        if (pooled[i] >= 0 && !keep)
            pooled[i] = define(g, &map, a->bound, i == 1 && a->exact,
                               "view(%s, shape=[%lld, 1, %lld, %lld])", g->v[pooled[i]].name,
                               (long long)n, (long long)h, (long long)w);
        if (pooled[i] < 0)
            return false;
    }
    char sc[16];
    int gate = define(g, &two, a->bound, false, "concat(%s, %s, axis=1)", g->v[pooled[0]].name,
                      g->v[pooled[1]].name);
    if (gate >= 0)
        gate = define(g, &map, 1, false,
                      "sigmoid(conv2d(%s, out=1, kernel=%lld, padding=%lld, bias=false) %s)",
                      g->v[gate].name, (long long)k, (long long)(k / 2), scope(g, sc));
    return gate >= 0 && define(g, x, a->bound, false, "%s * %s", a->name, g->v[gate].name) >= 0;
}

/* BAM: a channel branch (average pool, linear + batchnorm1d + ReLU, linear; or the same as 1x1
 * convs) and a spatial branch (1x1 conv to `hidden` channels + BN + ReLU, up to two dilated
 * 3x3 convs keeping the size, maybe with BN, 1x1 conv to one channel), broadcast-added:
 * x * (1 + sigmoid(c + s)). */
static bool gen_bam(Gen *g, const Value *a)
{
    const Shape *x = &a->shape;
    if (x->rank != 4 || !isfinite(a->bound) || g->nv + 16 > MAX_VALUES)
        return false;
    int64_t n = x->dim[0], c = x->dim[1], h = x->dim[2], w = x->dim[3];
    int64_t hidden = range(&g->in, 1, c < 4 ? c : 4);
    bool conv = flip(&g->in);
    unsigned convs = pick(&g->in, 3);
    bool di_bn[2];
    int64_t dil[2];
    for (int i = 0; i < 2; i++) {
        di_bn[i] = flip(&g->in);
        dil[i] = range(&g->in, 1, 3);
    }
    // The bounds of each stage, checked before anything is written.
    double chb = batchnorm_bound(contraction_bound(a->bound, c, true));
    double cob = contraction_bound(chb, hidden, true);
    double sb = batchnorm_bound(contraction_bound(a->bound, c, true));
    double sbs[3] = {sb};
    for (unsigned i = 0; i < convs; i++) {
        sb = contraction_bound(sb, 9 * hidden, true);
        sb = di_bn[i] ? batchnorm_bound(sb) : sb;
        sbs[i + 1] = sb;
    }
    double sob = contraction_bound(sb, hidden, true);
    if (chb > BOUND_LIMIT || sb > BOUND_LIMIT || cob + sob > BOUND_LIMIT ||
        n * h * w * hidden * (c + 9 * hidden * convs + 1) > MAX_MACS)
        return false;
    char s1[16], sbn[16], s2[16], reduce[16], reduce_bn[16], final[16];
    scope(g, s1);
    scope(g, sbn);
    scope(g, s2);
    scope(g, reduce);
    scope(g, reduce_bn);
    int p = global_pool(g, a, "mean", conv ? 4 : 2);
    int cg = p < 0 ? -1
                   : channel_mlp(g, p, conv, hidden, true, true, s1, sbn, s2,
                                 contraction_bound(a->bound, c, true), cob);
    if (cg >= 0 && !conv)
        cg = define(g, &(Shape){4, {n, c, 1, 1}}, cob, false, "view(%s, shape=[%lld, %lld, 1, 1])",
                    g->v[cg].name, (long long)n, (long long)c);
    if (cg < 0)
        return false;
    Shape hs = {4, {n, hidden, h, w}}, one = {4, {n, 1, h, w}};
    int s = define(g, &hs, sbs[0], false, "relu(batchnorm2d(conv2d(%s, out=%lld, kernel=1) %s) %s)",
                   a->name, (long long)hidden, reduce, reduce_bn);
    for (unsigned i = 0; i < convs && s >= 0; i++) {
        char d1[16], d2[16];
        const char *sn = g->v[s].name;
        scope(g, d1);
        scope(g, d2);
        if (di_bn[i])
            s = define(g, &hs, sbs[i + 1], false,
                       "relu(batchnorm2d(conv2d(%s, out=%lld, kernel=3, padding=%lld, "
                       "dilation=%lld) %s) %s)",
                       sn, (long long)hidden, (long long)dil[i], (long long)dil[i], d1, d2);
        else
            s = define(g, &hs, sbs[i + 1], false,
                       "relu(conv2d(%s, out=%lld, kernel=3, padding=%lld, dilation=%lld) %s)", sn,
                       (long long)hidden, (long long)dil[i], (long long)dil[i], d1);
    }
    if (s >= 0)
        s = define(g, &one, sob, false, "conv2d(%s, out=1, kernel=1) %s", g->v[s].name,
                   scope(g, final));
    return s >= 0 && define(g, x, 2 * a->bound, false, "%s * (1 + sigmoid(%s + %s))", a->name,
                            g->v[cg].name, g->v[s].name) >= 0;
}

static bool gen_upsample(Gen *g, const Value *a)
{
    /* Scales exact in binary, so floor(in * scale) has one answer. */
    static const double scales[] = {0.5, 1, 1.5, 2, 2.5, 3, 0.75, 1.25, 0.25};
    const Shape *x = &a->shape;
    if (x->rank != 4)
        return false;
    bool bilinear = flip(&g->in);
    if (bilinear && !isfinite(a->bound))
        return false;
    Shape s = *x;
    StrBuf attrs = {0};
    if (flip(&g->in)) {
        s.dim[2] = size(g, 8);
        s.dim[3] = flip(&g->in) ? s.dim[2] : size(g, 8);
        if (s.dim[2] == s.dim[3] && flip(&g->in))
            sb_printf(&attrs, "size=%lld", (long long)s.dim[2]);
        else
            sb_printf(&attrs, "size=[%lld, %lld]", (long long)s.dim[2], (long long)s.dim[3]);
    } else {
        double sh = scales[pick(&g->in, countof(scales))];
        double sw = flip(&g->in) ? sh : scales[pick(&g->in, countof(scales))];
        s.dim[2] = (int64_t)floor((double)x->dim[2] * sh);
        s.dim[3] = (int64_t)floor((double)x->dim[3] * sw);
        if (s.dim[2] < 1 || s.dim[3] < 1) {
            sb_free(&attrs);
            return false;
        }
        if (sh == sw && flip(&g->in))
            sb_printf(&attrs, "scale=%g", sh);
        else
            sb_printf(&attrs, "scale=[%g, %g]", sh, sw);
    }
    if (bilinear) {
        sb_append(&attrs, flip(&g->in) ? ", mode=bilinear" : ", mode=\"bilinear\"");
        switch (pick(&g->in, 3)) {
        case 1:
            sb_append(&attrs, ", align_corners=true");
            break;
        case 2:
            sb_append(&attrs, ", align_corners=false");
            break;
        }
    } else if (flip(&g->in)) {
        sb_append(&attrs, ", mode=nearest");
    }
    bool ok = numel(&s) <= MAX_ELEMS && define(g, &s, a->bound, a->exact && !bilinear,
                                               "upsample(%s, %s)", a->name, sb_str(&attrs)) >= 0;
    sb_free(&attrs);
    return ok;
}

static bool gen_concat(Gen *g, const Value *a)
{
    const Shape *x = &a->shape;
    if (x->rank == 0)
        return false;
    uint32_t axis = pick(&g->in, x->rank);
    unsigned n = 2 + pick(&g->in, 3);
    Shape s = *x;
    StrBuf args = {0};
    sb_append(&args, a->name);
    double bound = a->bound;
    bool exact = a->exact;
    for (unsigned i = 1; i < n; i++) {
        const Value *b = NULL;
        unsigned c = pick(&g->in, 3);
        if (c == 0) {
            for (uint32_t j = 0; j < g->nv && !b; j++) {
                const Shape *y = &g->v[j].shape;
                bool fits = y->rank == x->rank;
                for (uint32_t d = 0; fits && d < x->rank; d++)
                    fits = d == axis || y->dim[d] == x->dim[d];
                if (fits)
                    b = &g->v[j];
            }
        }
        if (!b && c == 1) {
            Shape y = *x;
            y.dim[axis] = size(g, 3);
            int j = new_input(g, &y);
            b = j >= 0 ? &g->v[j] : NULL;
        }
        if (!b)
            b = a;
        sb_printf(&args, ", %s", b->name);
        s.dim[axis] += b->shape.dim[axis];
        bound = fmax(bound, b->bound);
        exact = exact && b->exact;
    }
    bool ok = numel(&s) <= MAX_ELEMS && define(g, &s, bound, exact, "concat(%s, axis=%lld)",
                                               sb_str(&args), axis_text(g, axis, x->rank)) >= 0;
    sb_free(&args);
    return ok;
}

static bool gen_pool(Gen *g, const Value *a)
{
    const Shape *x = &a->shape;
    if (x->rank != 4)
        return false;
    bool avg = flip(&g->in);
    if (avg && !isfinite(a->bound))
        return false;
    int64_t k[2], st[2], pad[2], o[2];
    bool stride_given = flip(&g->in);
    for (int i = 0; i < 2; i++) {
        k[i] = range(&g->in, 1, 3);
        st[i] = stride_given ? range(&g->in, 1, 3) : k[i];
        pad[i] = range(&g->in, 0, k[i] / 2);
        o[i] = window(x->dim[2 + i], k[i], st[i], pad[i], 1);
        if (o[i] == 0)
            return false;
    }
    Shape s = {4, {x->dim[0], x->dim[1], o[0], o[1]}};
    StrBuf attrs = {0};
    if (k[0] == k[1] && flip(&g->in))
        sb_printf(&attrs, "kernel=%lld", (long long)k[0]);
    else
        sb_printf(&attrs, "kernel=[%lld, %lld]", (long long)k[0], (long long)k[1]);
    if (stride_given)
        pair_attr(g, &attrs, "stride", st[0], st[1], -1);
    pair_attr(g, &attrs, "padding", pad[0], pad[1], 0);
    bool ok = define(g, &s, a->bound, a->exact && !avg, "%s(%s, %s)",
                     avg ? "avgpool2d" : "maxpool2d", a->name, sb_str(&attrs)) >= 0;
    sb_free(&attrs);
    return ok;
}

static bool gen_layout(Gen *g, const Value *a)
{
    const Shape *x = &a->shape;
    Shape s = {.rank = 0};
    StrBuf attrs = {0};
    bool ok = true;
    switch (pick(&g->in, 4)) {
    case 0: { /* permute */
        if (x->rank == 0) {
            ok = false;
            break;
        }
        uint32_t perm[FUSE_MAX_RANK];
        for (uint32_t d = 0; d < x->rank; d++)
            perm[d] = d;
        for (uint32_t d = x->rank; d-- > 1;) {
            uint32_t j = pick(&g->in, d + 1), t = perm[d];
            perm[d] = perm[j];
            perm[j] = t;
        }
        s.rank = x->rank;
        sb_append(&attrs, "perm=[");
        for (uint32_t d = 0; d < x->rank; d++) {
            s.dim[d] = x->dim[perm[d]];
            sb_printf(&attrs, "%s%lld", d ? ", " : "", axis_text(g, perm[d], x->rank));
        }
        sb_append(&attrs, "]");
        ok = define(g, &s, a->bound, a->exact, "permute(%s, %s)", a->name, sb_str(&attrs)) >= 0;
        break;
    }
    case 1: { /* transpose */
        if (x->rank == 0) {
            ok = false;
            break;
        }
        uint32_t i = pick(&g->in, x->rank), j = pick(&g->in, x->rank);
        s = *x;
        s.dim[i] = x->dim[j];
        s.dim[j] = x->dim[i];
        ok = define(g, &s, a->bound, a->exact, "transpose(%s, dims=[%lld, %lld])", a->name,
                    axis_text(g, i, x->rank), axis_text(g, j, x->rank)) >= 0;
        break;
    }
    case 2: { /* view: the elements split into up to 5 dims, one maybe written as -1 */
        int64_t left = numel(x);
        uint32_t r = 1 + pick(&g->in, 5);
        for (uint32_t d = 0; d + 1 < r; d++) {
            int64_t f = 1;
            for (int64_t c = range(&g->in, 1, left < 6 ? left : 6); c >= 1; c--)
                if (left % c == 0) {
                    f = c;
                    break;
                }
            s.dim[s.rank++] = f;
            left /= f;
        }
        s.dim[s.rank++] = left;
        int infer = pick(&g->in, 3) == 0 ? (int)pick(&g->in, s.rank) : -1;
        sb_append(&attrs, "shape=[");
        for (uint32_t d = 0; d < s.rank; d++)
            sb_printf(&attrs, "%s%lld", d ? ", " : "",
                      (int)d == infer ? -1LL : (long long)s.dim[d]);
        sb_append(&attrs, "]");
        ok = define(g, &s, a->bound, a->exact, "view(%s, %s)", a->name, sb_str(&attrs)) >= 0;
        break;
    }
    default: { /* flatten; torch.flatten of a 0-d tensor is [1] */
        Shape one = {1, {1}};
        const Shape *ax = x->rank ? x : &one;
        uint32_t st = pick(&g->in, ax->rank);
        uint32_t en = st + pick(&g->in, ax->rank - st);
        int64_t joined = 1;
        for (uint32_t d = 0; d < ax->rank; d++) {
            if (d < st || d > en)
                s.dim[s.rank++] = ax->dim[d];
            else
                joined *= ax->dim[d];
            if (d == en)
                s.dim[s.rank++] = joined;
        }
        bool deflt = st == 0 && en == ax->rank - 1 && flip(&g->in);
        if (!deflt)
            sb_printf(&attrs, ", start=%lld, end=%lld", axis_text(g, st, ax->rank),
                      axis_text(g, en, ax->rank));
        ok = define(g, &s, a->bound, a->exact, "flatten(%s%s)", a->name, sb_str(&attrs)) >= 0;
        break;
    }
    }
    sb_free(&attrs);
    return ok;
}

typedef bool (*GenOp)(Gen *g, const Value *a);

static const GenOp gen_ops[] = {
    gen_unary,
    gen_transcendental,
    gen_binary,
    gen_binary,
    gen_scalar,
    gen_reduce,
    gen_softmax,
    gen_matmul,
    gen_linear,
    gen_conv,
    gen_batchnorm,
    gen_layernorm,
    gen_mha,
    gen_upsample,
    gen_concat,
    gen_pool,
    gen_layout,
    gen_layout,
    gen_attention,
    gen_channel_attention,
    gen_spatial_attention,
    gen_bam,
};

/* The graph's text into `out`; the values it returns into outs[0, *nouts). */
static void generate(Gen *g, uint32_t *outs, uint32_t *nouts, bool in_block)
{
    static const uint32_t ranks[] = {1, 2, 3, 4, 4, 4, 2, 5};
    uint32_t r = ranks[pick(&g->in, countof(ranks))];
    Shape s0 = random_shape(g, r, 1024);
    new_input(g, &s0);
    unsigned nops = 1 + pick(&g->in, MAX_OPS);
    for (unsigned i = 0; i < nops && g->nv < MAX_VALUES; i++) {
        uint32_t k = operand(g);
        Value a = g->v[k];
        for (int tries = 0; tries < 3; tries++)
            if (gen_ops[pick(&g->in, countof(gen_ops))](g, &a)) {
                g->v[k].used = true;
                break;
            }
    }
    // Outputs: the last value (viewed to [1] if it is a scalar: a type has at least one dim),
    // then maybe others, repeats and inputs included.
    uint32_t last = g->nv - 1;
    if (g->v[last].shape.rank == 0) {
        Shape one = {1, {1}};
        const Value *l = &g->v[last];
        if (define(g, &one, l->bound, l->exact, "view(%s, shape=[1])", l->name) >= 0)
            last = g->nv - 1;
        else
            last = 0;
    }
    *nouts = 0;
    outs[(*nouts)++] = last;
    unsigned extra = in_block ? 0 : pick(&g->in, MAX_OUTPUTS);
    for (unsigned i = 0; i < extra; i++) {
        // A value nothing uses (so that it is checked), else any, inputs and repeats included.
        uint32_t k = pick(&g->in, g->nv);
        for (uint32_t j = 0; j < g->nv && !flip(&g->in); j++) {
            uint32_t c = (k + j) % g->nv;
            if (!g->v[c].used && c != last) {
                k = c;
                break;
            }
        }
        if (g->v[k].shape.rank > 0) {
            g->v[k].used = true;
            outs[(*nouts)++] = k;
        }
    }
}

/* Writes the whole file. With `block`, the body is a block the graph calls. */
static void write_spec(Gen *g, StrBuf *out, const uint32_t *outs, uint32_t nouts, bool block)
{
    char t[SHAPE_TEXT];
    sb_append(out, "fuse 1\n");
    if (g->named_dims) {
        sb_append(out, "dim D1 = 1");
        for (int d = 2; d <= MAX_NAMED_DIM; d++)
            sb_printf(out, ", D%d = %d", d, d);
        sb_append(out, "\n");
    }
    StrBuf result = {0};
    if (nouts == 1) {
        sb_printf(&result, "f32%s", shape_text(&g->v[outs[0]].shape, g->named_dims, t));
    } else {
        sb_append(&result, "(");
        for (uint32_t i = 0; i < nouts; i++)
            sb_printf(&result, "%so%u: f32%s", i ? ", " : "", i,
                      shape_text(&g->v[outs[i]].shape, g->named_dims, t));
        sb_append(&result, ")");
    }
    if (block) {
        // The block's tensor parameters take dims as pattern variables (P<n> binds n).
        sb_append(out, "block body(");
        for (uint32_t i = 0, n = 0; i < g->nv; i++) {
            const Value *v = &g->v[i];
            if (v->name[0] != 'x')
                continue;
            sb_printf(out, "%s%s: f32[", n++ ? ", " : "", v->name);
            for (uint32_t d = 0; d < v->shape.rank; d++)
                sb_printf(out, "%sP%lld", d ? ", " : "", (long long)v->shape.dim[d]);
            sb_append(out, "]");
        }
        sb_printf(out, ") -> %s {\n%s    return %s\n}\n", sb_str(&result), sb_str(&g->body),
                  g->v[outs[0]].name);
        sb_printf(out, "graph fz(%s) -> %s {\n    return body(", sb_str(&g->params),
                  sb_str(&result));
        for (uint32_t i = 0; i < g->ninputs; i++)
            sb_printf(out, "%sx%u", i ? ", " : "", i);
        sb_append(out, ") @blk\n}\n");
    } else {
        sb_printf(out, "graph fz(%s) -> %s {\n%s    return ", sb_str(&g->params), sb_str(&result),
                  sb_str(&g->body));
        for (uint32_t i = 0; i < nouts; i++)
            sb_printf(out, "%s%s", i ? ", " : "", g->v[outs[i]].name);
        sb_append(out, "\n}\n");
    }
    sb_free(&result);
}

/* ---- running it ---- */

static float frand(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*state >> 40) / (double)(1ull << 24)) * 4.0f - 2.0f;
}

/* Buffers for one graph: inputs and weights filled, outputs for each backend. */
typedef struct Data {
    float **ins, **prm, **want, **got, **got2;
    fuse_rt_weight *weights;
} Data;

static float *alloc_floats(int64_t n)
{
    return xcalloc((size_t)(n > 0 ? n : 1), sizeof(float));
}

static void data_new(Data *d, const Graph *g)
{
    uint64_t rng = 0x5eed;
    d->ins = xcalloc(g->ninputs + 1, sizeof(float *));
    d->prm = xcalloc(g->nparams + 1, sizeof(float *));
    d->want = xcalloc(g->noutputs + 1, sizeof(float *));
    d->got = xcalloc(g->noutputs + 1, sizeof(float *));
    d->got2 = xcalloc(g->noutputs + 1, sizeof(float *));
    d->weights = xcalloc(g->nparams + 1, sizeof(fuse_rt_weight));
    for (uint32_t i = 0; i < g->ninputs; i++) {
        int64_t n = shape_numel(&g->inputs[i]->shape);
        d->ins[i] = alloc_floats(n);
        for (int64_t j = 0; j < n; j++)
            d->ins[i][j] = frand(&rng);
    }
    for (uint32_t i = 0; i < g->nparams; i++) {
        const Node *p = g->params[i];
        d->prm[i] = alloc_floats(shape_numel(&p->shape));
        weights_fill_random(p, d->prm[i]);
        d->weights[i] = (fuse_rt_weight){p->attr.param.key, d->prm[i], p->shape.rank, p->shape.dim};
    }
    for (uint32_t o = 0; o < g->noutputs; o++) {
        int64_t n = shape_numel(&g->outputs[o]->shape);
        d->want[o] = alloc_floats(n);
        d->got[o] = alloc_floats(n);
        d->got2[o] = alloc_floats(n);
    }
}

static void data_free(Data *d, const Graph *g)
{
    for (uint32_t i = 0; i < g->ninputs; i++)
        free(d->ins[i]);
    for (uint32_t i = 0; i < g->nparams; i++)
        free(d->prm[i]);
    for (uint32_t o = 0; o < g->noutputs; o++) {
        free(d->want[o]);
        free(d->got[o]);
        free(d->got2[o]);
    }
    free(d->ins);
    free(d->prm);
    free(d->want);
    free(d->got);
    free(d->got2);
    free(d->weights);
}

static noreturn void bug(const char *spec, const char *what, ...) FUSE_PRINTF(2, 3);

static noreturn void bug(const char *spec, const char *what, ...)
{
    fprintf(stderr, "fuzz_graph: ");
    va_list ap;
    va_start(ap, what);
    vfprintf(stderr, what, ap);
    va_end(ap);
    fprintf(stderr, "\n---- the spec ----\n%s------------------\n", spec);
    fflush(stderr);
    abort();
}

/* Every output within the tolerance of the interpreter's. */
static void compare(const Graph *g, float *const *want, float *const *got, const char *backend,
                    const char *spec)
{
    for (uint32_t o = 0; o < g->noutputs; o++) {
        int64_t n = shape_numel(&g->outputs[o]->shape);
        double mx = 1.0;
        for (int64_t j = 0; j < n; j++)
            if (isfinite(want[o][j]) && fabs(want[o][j]) > mx)
                mx = fabs(want[o][j]);
        for (int64_t j = 0; j < n; j++) {
            float w = want[o][j], r = got[o][j];
            bool same = (isnan(w) && isnan(r)) || w == r;
            double e = same ? 0.0 : fabs((double)w - (double)r);
            if (!(e <= TOLERANCE * mx))
                bug(spec,
                    "%s: output %s[%lld] = %.9g, the interpreter says %.9g (error %.3g, allowed "
                    "%.3g)",
                    backend, g->output_names[o], (long long)j, (double)r, (double)w, e,
                    TOLERANCE * mx);
        }
    }
}

/* Creates an instance (on `threads` threads) and runs it into out. */
static void run_kernel(const fuse_rt_kernel_info *info, const Graph *g, const Data *d,
                       float *const *out, int threads, const char *backend, const char *spec)
{
    char err[FUSE_RT_ERR_MAX] = "";
    fuse_rt_pool *pool = NULL;
    if (threads > 1 && fuse_rt_pool_create(threads, &pool, err, sizeof err) != FUSE_RT_OK)
        bug(spec, "%s: cannot make a pool: %s", backend, err);
    fuse_rt_kernel *k = NULL;
    if (info->create(d->weights, g->nparams, pool, &k, err, sizeof err) != FUSE_RT_OK)
        bug(spec, "%s: create failed: %s", backend, err);
    if (info->run(k, (const float *const *)d->ins, out, err, sizeof err) != FUSE_RT_OK)
        bug(spec, "%s: run failed: %s", backend, err);
    info->destroy(k);
    fuse_rt_pool_destroy(pool);
}

#ifdef FUSE_WITH_LLVM
static void check_jit(Ctx *cx, const LoopProgram *p, const Graph *g, const Data *d, bool threads,
                      const char *spec)
{
    JitOptions opt = {0};
    Jit *jit = jit_compile(cx, p, &opt);
    if (!jit)
        bug(spec, "jit_compile failed");
    const fuse_rt_kernel_info *info = jit_kernel_info(jit);
    run_kernel(info, g, d, d->got, 1, "jit", spec);
    compare(g, d->want, d->got, "jit", spec);
    if (threads) {
        run_kernel(info, g, d, d->got2, 2, "jit on 2 threads", spec);
        for (uint32_t o = 0; o < g->noutputs; o++) {
            size_t n = (size_t)shape_numel(&g->outputs[o]->shape);
            if (memcmp(d->got[o], d->got2[o], n * sizeof(float)) != 0)
                bug(spec, "jit: output %s differs between 1 and 2 threads", g->output_names[o]);
        }
    }
    jit_free(jit);
}
#endif

static void check_c(Ctx *cx, const LoopProgram *p, const Graph *g, const Data *d, bool threads,
                    const char *spec)
{
    CKernel k;
    if (!backend_c_load(cx, p, true, &k))
        bug(spec, "backend_c_load failed");
    run_kernel(k.info, g, d, d->got, threads ? 2 : 1, "c", spec);
    compare(g, d->want, d->got, "c", spec);
    backend_c_unload(&k);
}

/* ---- the fusion rules (schedule.h), checked on the plan and the kernels of a program ----
 *
 * The planner's groups are checked against the rules written from op classes alone, apart from
 * the planner's own code:
 *   legal     a group holds at most one contraction; an op that reads its operands from memory
 *             (softmax, norms but batchnorm, pools, concat, attention) is alone in its group; a
 *             group stores at most one value besides its reductions' results (reductions of
 *             values it computes, or of one value over the same axes; the others are computed
 *             in its loops, so all their uses are in the group), or, without a contraction, up
 *             to 8 elementwise values of one shape (siblings); whatever depends only on
 *             weights is computed at create time, and nothing else is;
 *   maximal   an elementwise value whose every use is an elementwise op of its own shape in
 *             one other group is computed in that group (it is never stored); a contraction
 *             whose every use is in one group of elementwise ops all of its shape, a group
 *             that stores one value, is that group's anchor (its epilogue); an elementwise
 *             group root r whose every user runs after a later group B (no contraction,
 *             elementwise root of r's shape, fewer than 8 stores), where a member of B above
 *             r reads an input of r of r's shape, is stored by B (a sibling);
 *   kernels   every run kernel belongs to one group (named k<root>_...) or copies an output,
 *             and every group runs at least one kernel: the count in --dump=loops is the
 *             number of groups plus their extra passes plus the output copies. */

static bool rule_elementwise(const Node *n)
{
    OpClass c = op_info[n->kind].cls;
    return c == OPC_UNARY || c == OPC_BINARY || n->kind == OP_BATCHNORM;
}

static bool rule_inline_capable(const Node *n) /* computed at any point of a loop nest */
{
    return rule_elementwise(n) || n->kind == OP_UPSAMPLE || n->kind == OP_PERMUTE ||
           n->kind == OP_SLICE;
}

static const Node *below_views(const Node *n)
{
    while (n->kind == OP_VIEW)
        n = n->inputs[0];
    return n;
}

/* The root id a kernel's name gives ("k12_conv2d_relu" -> 12), or -1 for an output copy
 * ("k_out0_copy"). */
static int64_t kernel_root(const char *name, const char *spec)
{
    if (strncmp(name, "k_out", 5) == 0)
        return -1;
    char *end = NULL;
    long long id = name[0] == 'k' ? strtoll(name + 1, &end, 10) : -1;
    if (id < 0 || !end || *end != '_')
        bug(spec, "run kernel %s is named after no node", name);
    return id;
}

/* A contraction computing its input while packing it (its comment "...; input packed from
 * NAME") runs that group too. */
static void credit_prologue(const LoopKernel *k, const FusionPlan *fp, uint32_t *kernels,
                            const char *spec)
{
    static const char lead[] = "; input packed from ";
    const char *at = k->comment ? strstr(k->comment, lead) : NULL;
    if (!at)
        return;
    at += sizeof lead - 1;
    for (uint32_t gi = 0; gi < fp->ngroups; gi++)
        if (strcmp(fp->group_name[gi], at) == 0) {
            kernels[gi]++;
            return;
        }
    bug(spec, "run kernel %s packs a group that does not exist", k->name);
}

/* A kernel running several groups in row bands ("k<root>_<op>_bands", its comment "row bands
 * of NAME, NAME, ...; ...") runs each group it names. */
static void credit_band(const LoopKernel *k, const FusionPlan *fp, uint32_t *kernels,
                        const char *spec)
{
    static const char lead[] = "row bands of ";
    size_t len = strlen(k->name);
    if (len < 6 || strcmp(k->name + len - 6, "_bands") != 0)
        return;
    if (!k->comment || strncmp(k->comment, lead, sizeof lead - 1) != 0)
        bug(spec, "run kernel %s names no groups", k->name);
    const char *at = k->comment + sizeof lead - 1;
    for (;;) {
        size_t n = strcspn(at, ",;");
        bool found = false;
        for (uint32_t gi = 0; gi < fp->ngroups && !found; gi++)
            if (strlen(fp->group_name[gi]) == n && strncmp(fp->group_name[gi], at, n) == 0) {
                kernels[gi]++;
                found = true;
            }
        if (!found)
            bug(spec, "run kernel %s names a group that does not exist", k->name);
        if (at[n] != ',')
            return;
        at += n + 2; /* ", " */
    }
}

/* Whether member i of group gi (not a side reduction) reads q (below views). */
static bool reads(const Graph *g, uint32_t i, const Node *q)
{
    for (uint32_t k = 0; k < g->nodes[i]->ninputs; k++)
        if (below_views(g->nodes[i]->inputs[k]) == q)
            return true;
    return false;
}

/* Siblings: a group storing several values stores elementwise values of one shape and holds no
 * contraction; and no sibling fusion is missed (see the rules above). Groups run in index
 * order. */
static void check_siblings(const Graph *g, const FusionPlan *fp, const bool *stored,
                           const bool *side, const uint32_t *stores, const uint32_t *contractions,
                           const int64_t *root_of, const char *spec)
{
    uint32_t n = g->nnodes, ng = fp->ngroups;
    for (uint32_t i = 0; i < n; i++) {
        int32_t gi = fp->group_of[i];
        if (gi < 0 || !stored[i] || side[i] || stores[gi] < 2)
            continue;
        const Node *m = g->nodes[i], *root = g->nodes[root_of[gi]];
        if (stores[gi] > 8 || contractions[gi] || !rule_elementwise(m) ||
            !shape_equal(&m->shape, &root->shape))
            bug(spec, "fusion rules: group %s stores %u values, %s %%%u among them",
                fp->group_name[gi], stores[gi], op_info[m->kind].name, i);
    }
    for (uint32_t ga = 0; ga < ng; ga++) {
        int64_t r = root_of[ga];
        if (r < 0 || !rule_elementwise(g->nodes[r]))
            continue;
        const Node *rn = g->nodes[r];
        bool primary = true; /* r is its group's root, not a sibling of another */
        int64_t first_use = ng;
        bool unknown = false; /* a user that runs no kernel (a concat written in place) */
        for (uint32_t i = (uint32_t)r + 1; i < n; i++) {
            int32_t gi = fp->group_of[i];
            if ((uint32_t)gi == ga && !side[i])
                primary = false;
            if (g->nodes[i]->kind == OP_VIEW || !reads(g, i, rn))
                continue;
            if (gi < 0)
                unknown = true;
            else if (gi < first_use)
                first_use = gi;
        }
        if (!primary || unknown)
            continue;
        for (uint32_t gb = ga + 1; gb < first_use; gb++) {
            int64_t rb = root_of[gb];
            if (rb < 0 || contractions[gb] || stores[gb] >= 8 || !rule_elementwise(g->nodes[rb]) ||
                !shape_equal(&g->nodes[rb]->shape, &rn->shape))
                continue;
            for (uint32_t k = 0; k < rn->ninputs; k++) {
                const Node *q = below_views(rn->inputs[k]);
                if (!shape_equal(&q->shape, &rn->shape))
                    continue;
                for (uint32_t i = (uint32_t)r + 1; i < n; i++)
                    if (fp->group_of[i] == (int32_t)gb && !side[i] && reads(g, i, q))
                        bug(spec,
                            "fusion rules: %s %%%u is stored by group %s, but group %s reads %%%u "
                            "too and could store it",
                            op_info[rn->kind].name, (uint32_t)r, fp->group_name[ga],
                            fp->group_name[gb], q->id);
            }
        }
    }
}

/* Reductions of one value over the same axes (CBAM's average and max pools) may share a group
 * that computes them all in one pass: each is a reduction result of that group, not a store. */
static bool sibling_reduction(const Graph *g, const FusionPlan *fp, uint32_t i)
{
    const Node *r = g->nodes[i];
    if (op_info[r->kind].cls != OPC_REDUCE)
        return false;
    for (uint32_t j = 0; j < g->nnodes; j++) {
        const Node *q = g->nodes[j];
        if (j == i || fp->group_of[j] != fp->group_of[i] || op_info[q->kind].cls != OPC_REDUCE ||
            q->inputs[0] != r->inputs[0])
            continue;
        bool same_axes = true;
        for (uint32_t d = 0; d < r->inputs[0]->shape.rank; d++)
            same_axes = same_axes && q->attr.reduce.axes[d] == r->attr.reduce.axes[d];
        if (same_axes)
            return true;
    }
    return false;
}

static void check_fusion_rules(Ctx *cx, const Graph *g, const LoopProgram *p, const char *spec)
{
    const FusionPlan *fp = schedule_plan(cx, g);
    uint32_t n = g->nnodes, ng = fp->ngroups;
    FUZZ_CHECK(fp->nnodes == n);
    bool *live = calloc(n + 1, sizeof *live), *konst = calloc(n + 1, sizeof *konst);
    bool *stored = calloc(n + 1, sizeof *stored), *side = calloc(n + 1, sizeof *side);
    uint32_t *nuses = calloc(n + 1, sizeof *nuses);
    int32_t *use_group = calloc(n + 1, sizeof *use_group); /* the one group using it, or -2 */
    bool *uses_ok = calloc(n + 1, sizeof *uses_ok);        /* every use elementwise, same shape */
    uint32_t *members = calloc(ng + 1, sizeof *members), *contractions = calloc(ng + 1, 4);
    uint32_t *stores = calloc(ng + 1, sizeof *stores), *kernels = calloc(ng + 1, 4);
    bool *pure = calloc(ng + 1, sizeof *pure); /* only elementwise members of one shape */
    const Shape **shape_of = calloc(ng + 1, sizeof *shape_of); /* of its first member */
    int64_t *root_of = calloc(ng + 1, sizeof *root_of);
    FUZZ_CHECK(live && konst && stored && side && nuses && use_group && uses_ok && members &&
               contractions && stores && kernels && pure && shape_of && root_of);
    for (uint32_t o = 0; o < g->noutputs; o++) {
        live[g->outputs[o]->id] = true;
        stored[below_views(g->outputs[o])->id] = true;
    }
    for (uint32_t i = n; i-- > 0;)
        if (live[i])
            for (uint32_t k = 0; k < g->nodes[i]->ninputs; k++)
                live[g->nodes[i]->inputs[k]->id] = true;
    for (uint32_t i = 0; i < n; i++) {
        use_group[i] = -1;
        uses_ok[i] = true;
    }
    for (uint32_t gi = 0; gi < ng; gi++) {
        pure[gi] = true;
        root_of[gi] = -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        const Node *m = g->nodes[i];
        OpClass c = op_info[m->kind].cls;
        if (c == OPC_SOURCE) {
            konst[i] = m->kind != OP_INPUT;
            FUZZ_CHECK(fp->group_of[i] == -1);
            continue;
        }
        konst[i] = true;
        for (uint32_t k = 0; k < m->ninputs; k++)
            konst[i] = konst[i] && konst[m->inputs[k]->id];
        if (!live[i])
            continue;
        if (fp->prepared[i] != konst[i])
            bug(spec, "fusion rules: %s %%%u %s at create time", op_info[m->kind].name, i,
                konst[i] ? "depends only on weights but is not computed" : "is computed");
        int32_t gi = fp->group_of[i];
        if (konst[i] || m->kind == OP_VIEW) {
            if (gi != -1)
                bug(spec, "fusion rules: %s %%%u is in a run kernel", op_info[m->kind].name, i);
            continue;
        }
        if (gi < 0) {
            if (m->kind != OP_CONCAT) /* its inputs write its slices, or its user reads them */
                bug(spec, "fusion rules: %s %%%u is computed by no group", op_info[m->kind].name,
                    i);
            for (uint32_t k = 0; k < m->ninputs; k++)
                stored[below_views(m->inputs[k])->id] = true;
            continue;
        }
        FUZZ_CHECK((uint32_t)gi < ng);
        members[gi]++;
        contractions[gi] += c == OPC_CONTRACT;
        if (!shape_of[gi])
            shape_of[gi] = &m->shape;
        pure[gi] = pure[gi] && rule_elementwise(m) && shape_equal(shape_of[gi], &m->shape);
        for (uint32_t k = 0; k < m->ninputs; k++) {
            const Node *in = m->inputs[k], *q = below_views(in);
            uint32_t qi = q->id;
            nuses[qi]++;
            use_group[qi] = use_group[qi] == -1 || use_group[qi] == gi ? gi : -2;
            uses_ok[qi] =
                uses_ok[qi] && in == q && rule_elementwise(m) && shape_equal(&m->shape, &q->shape);
            if (fp->group_of[qi] >= 0 && fp->group_of[qi] != gi)
                stored[qi] = true;
        }
        if (op_info[m->kind].cls == OPC_REDUCE && fp->group_of[below_views(m->inputs[0])->id] == gi)
            side[i] = true;
    }
    for (uint32_t i = 0; i < n; i++)
        if (fp->group_of[i] >= 0 && !side[i])
            side[i] = sibling_reduction(g, fp, i);
    for (uint32_t i = 0; i < n; i++) { /* every group's stores, before the rules read them */
        int32_t gi = fp->group_of[i];
        if (gi >= 0 && stored[i] && !side[i]) {
            stores[gi]++;
            root_of[gi] = i;
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        const Node *m = g->nodes[i];
        int32_t gi = fp->group_of[i];
        if (gi < 0)
            continue;
        const char *op = op_info[m->kind].name;
        if (!rule_inline_capable(m) && op_info[m->kind].cls != OPC_CONTRACT &&
            op_info[m->kind].cls != OPC_REDUCE && members[gi] != 1)
            bug(spec, "fusion rules: %s %%%u shares group %s", op, i, fp->group_name[gi]);
        /* maximal: an elementwise value read only by elementwise ops of its shape in one
         * other group */
        int32_t ug = use_group[i];
        bool output = false;
        for (uint32_t o = 0; o < g->noutputs; o++)
            output = output || below_views(g->outputs[o]) == m;
        if (output || nuses[i] == 0 || ug < 0 || ug == gi || !uses_ok[i])
            continue;
        if (rule_elementwise(m))
            bug(spec, "fusion rules: %s %%%u is stored, but group %s could compute it", op, i,
                fp->group_name[ug]);
        if (op_info[m->kind].cls == OPC_CONTRACT && pure[ug] && contractions[ug] == 0 &&
            stores[ug] <= 1 && shape_equal(shape_of[ug], &m->shape))
            bug(spec, "fusion rules: %s %%%u is stored, but could be group %s's anchor", op, i,
                fp->group_name[ug]);
    }
    for (uint32_t gi = 0; gi < ng; gi++)
        if (contractions[gi] > 1)
            bug(spec, "fusion rules: group %s holds %u contractions", fp->group_name[gi],
                contractions[gi]);
    check_siblings(g, fp, stored, side, stores, contractions, root_of, spec);
    uint32_t copies = 0;
    for (uint32_t k = 0; k < p->nkernels; k++) {
        int64_t root = kernel_root(p->kernels[k]->name, spec);
        if (root < 0) {
            copies++;
            continue;
        }
        int64_t gi = root < n ? fp->group_of[root] : -1;
        /* named after the group's last store, a side reduction, or the group's own root (one
         * only side reductions read, with a stored sibling) */
        bool named = gi >= 0 && strncmp(p->kernels[k]->name, fp->group_name[gi],
                                        strlen(fp->group_name[gi])) == 0;
        if (gi < 0 || (root_of[gi] >= 0 && root_of[gi] != root && !side[root] && !named))
            bug(spec, "run kernel %s belongs to no group", p->kernels[k]->name);
        kernels[gi]++;
        credit_band(p->kernels[k], fp, kernels, spec);
        credit_prologue(p->kernels[k], fp, kernels, spec);
    }
    if (copies > g->noutputs)
        bug(spec, "%u output copies for %u outputs", copies, g->noutputs);
    for (uint32_t gi = 0; gi < ng; gi++)
        if (kernels[gi] == 0)
            bug(spec, "group %s runs no kernel", fp->group_name[gi]);
    free(live), free(konst), free(stored), free(side), free(nuses), free(use_group);
    free(uses_ok), free(members), free(contractions), free(stores), free(kernels), free(pure);
    free(shape_of), free(root_of);
}

/* Flags of byte 0. */
enum {
    F_LANES = 3,        /* vector lanes: 4, 8, 16, or 8 without the graph passes */
    F_THREADS = 1 << 2, /* also run on two threads */
    F_BLOCK = 1 << 3,   /* the body in a block */
    F_NAMED = 1 << 4,   /* dims written as names */
    F_C = 15 << 4,      /* all four set (named dims too): run the C backend, 1 input in 16 */
};

/* The JIT allocates heavily: ASan's default 256 MiB quarantine of freed memory makes every
 * allocation touch fresh pages, which costs more than the compilation itself. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "quarantine_size_mb=16:max_malloc_fill_size=0";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t lanes[] = {4, 8, 16, 8};
    unsigned flags = size ? data[0] : 0;
    Gen g = {.in = {data + (size ? 1 : 0), size ? size - 1 : 0},
             .named_dims = (flags & F_NAMED) != 0};
    uint32_t outs[MAX_OUTPUTS + 1], nouts;
    StrBuf spec = {0};
    bool block = (flags & F_BLOCK) != 0;
    generate(&g, outs, &nouts, block);
    write_spec(&g, &spec, outs, nouts, block && nouts == 1);
    sb_free(&g.params);
    sb_free(&g.body);
    if (getenv("FUSE_FUZZ_PRINT")) /* to see what a corpus holds */
        fprintf(stderr, "%s", sb_str(&spec));

    // Diagnostics are collected, to be shown if the front end rejects the graph.
    char *diag_text = NULL;
    size_t diag_len = 0;
    FILE *diag_out = open_memstream(&diag_text, &diag_len);
    FUZZ_CHECK(diag_out != NULL);
    Source *src = source_new("fuzz_graph.fuse", spec.data, spec.len);
    Diag diag;
    diag_init(&diag, src, diag_out);
    Ctx cx;
    ctx_init(&cx, src, &diag);
    cx.verify_each = true;
    Ast *ast = parse_source(src, cx.ast_arena, &diag);
    Graph *graph = ast && sema_check(&cx, ast) ? build_graph(&cx, ast) : NULL;
    fflush(diag_out);
    if (!graph)
        bug(sb_str(&spec), "the front end rejected a generated graph (a generator bug):\n%s",
            diag_text ? diag_text : "");
    if (!graph_verify(graph, stderr))
        bug(sb_str(&spec), "graph_verify failed");

    Data d;
    data_new(&d, graph);
    char err[256];
    if (!interp_run(graph, (const float *const *)d.prm, (const float *const *)d.ins, d.want, err,
                    sizeof err))
        bug(sb_str(&spec), "interp_run failed: %s", err);
    LoopProgram *p;
    const Graph *scheduled = graph;
    if ((flags & F_LANES) == 3) {
        p = schedule_graph(&cx, graph, lanes[flags & F_LANES]);
        if (p && !loop_verify(p, stderr))
            bug(sb_str(&spec), "loop_verify failed");
    } else {
        KernelOptions ko = {.backend = BACKEND_JIT, .vector_lanes = lanes[flags & F_LANES]};
        p = driver_lower(&cx, graph, &ko);            /* panics if loop_verify fails */
        scheduled = driver_optimize(&cx, graph, &ko); /* the same passes again: the same graph */
    }
    if (!p)
        bug(sb_str(&spec), "lowering failed");
    check_fusion_rules(&cx, scheduled, p, sb_str(&spec));
#ifdef FUSE_WITH_LLVM
    check_jit(&cx, p, graph, &d, (flags & F_THREADS) != 0, sb_str(&spec));
#endif
    if ((flags & F_C) == F_C)
        check_c(&cx, p, graph, &d, (flags & F_THREADS) != 0, sb_str(&spec));

    data_free(&d, graph);
    ctx_free(&cx);
    fclose(diag_out);
    free(diag_text);
    source_free(src);
    sb_free(&spec);
    return 0;
}
