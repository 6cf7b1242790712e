/*
 * schedule_pw: index helpers, the pointwise engine, and the ops it lowers: elementwise
 * unary/binary (broadcasting), permute, concat, copies, and upsample (a scalar gather).
 *
 * The pointwise engine takes an iteration space with one strided destination and up to two
 * strided sources (broadcast axes have stride 0), drops size-1 axes, merges axes that are
 * contiguous for every operand, and emits: a parallel loop over rows (all axes but the
 * innermost, flattened) or, for a single long row, over blocks of it; inside, the innermost
 * axis in `vl`-wide vectors plus a scalar tail. Operands with stride 0 along the innermost axis
 * are a scalar load broadcast; any other stride makes the kernel scalar (a gather).
 * Numerics: one f32 operation per graph op as interp.c rounds it (unary ops are evaluated in
 * f32 with the generators' 2-ulp math functions, within the conformance tolerance).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "schedule_internal.h"
#include "util.h"

/* ---- index expressions ---- */

LoopExpr *ix_c(Sched *s, int64_t v)
{
    return lx_const_i(s->p, v);
}

LoopExpr *ix_v(Sched *s, const LoopVar *v)
{
    return lx_var(s->p, v);
}

static bool is_const(const LoopExpr *e, int64_t v)
{
    return e->kind == LEXPR_CONST_I && e->i == v;
}

LoopExpr *ix_add(Sched *s, LoopExpr *a, LoopExpr *b)
{
    if (a->kind == LEXPR_CONST_I && b->kind == LEXPR_CONST_I)
        return ix_c(s, a->i + b->i);
    if (is_const(a, 0))
        return b;
    if (is_const(b, 0))
        return a;
    return lx_binary(s->p, LOP_ADD, a, b);
}

LoopExpr *ix_addc(Sched *s, LoopExpr *a, int64_t c)
{
    return ix_add(s, a, ix_c(s, c));
}

LoopExpr *ix_mulc(Sched *s, LoopExpr *a, int64_t c)
{
    if (c == 0)
        return ix_c(s, 0);
    if (c == 1)
        return a;
    if (a->kind == LEXPR_CONST_I)
        return ix_c(s, a->i * c);
    return lx_binary(s->p, LOP_MUL, a, ix_c(s, c));
}

LoopExpr *ix_div(Sched *s, LoopExpr *a, int64_t c)
{
    FUSE_ASSERT(c > 0);
    if (c == 1)
        return a;
    return lx_binary(s->p, LOP_FLOORDIV, a, ix_c(s, c));
}

LoopExpr *ix_mod(Sched *s, LoopExpr *a, int64_t c)
{
    FUSE_ASSERT(c > 0);
    if (c == 1)
        return ix_c(s, 0);
    return lx_binary(s->p, LOP_MOD, a, ix_c(s, c));
}

LoopExpr *fx_bcast(Sched *s, LoopExpr *a, uint32_t lanes)
{
    return lanes > 1 ? lx_broadcast(s->p, a, lanes) : a;
}

LoopExpr *fx_c(Sched *s, float v, uint32_t lanes)
{
    return fx_bcast(s, lx_const_f(s->p, v), lanes);
}

LoopExpr *fx_load(Sched *s, const LoopBuffer *b, LoopExpr *index, uint32_t lanes)
{
    return lx_load(s->p, b, index, lanes);
}

/* ---- loops ---- */

LoopStmt *sched_for(Sched *s, LoopStmt *block, LoopVar *v, LoopExpr *lo, LoopExpr *hi, int64_t step)
{
    LoopStmt *body = ls_block(s->p);
    ls_append(s->p, block, ls_for(s->p, v, lo, hi, step, FOR_SERIAL, body));
    return body;
}

LoopStmt *sched_par(Sched *s, LoopVar *v, int64_t n)
{
    LoopStmt *body = ls_block(s->p);
    LoopForKind kind = s->prepare ? FOR_SERIAL : FOR_PARALLEL;
    ls_append(s->p, s->k->body, ls_for(s->p, v, ix_c(s, 0), ix_c(s, n), 1, kind, body));
    return body;
}

/* One loop of a span: [lo, hi) of `base + v` in steps of lanes * nv. */
static void span_loop(Sched *s, LoopStmt *block, LoopExpr *base, int64_t lo, int64_t hi,
                      uint32_t lanes, uint32_t nv, SpanBody body, const void *ctx, const char *name)
{
    if (hi <= lo)
        return;
    int64_t step = (int64_t)lanes * nv;
    if (hi - lo == step) { /* one iteration: no loop */
        body(s, block, ix_addc(s, base, lo), lanes, nv, ctx);
        return;
    }
    LoopVar *v = sched_ivar(s, name);
    LoopStmt *in = sched_for(s, block, v, ix_c(s, lo), ix_c(s, hi), step);
    body(s, in, ix_add(s, base, ix_v(s, v)), lanes, nv, ctx);
}

/* sched_span with a base expression: covers base + [lo, hi). */
static void span_from(Sched *s, LoopStmt *block, LoopExpr *base, int64_t lo, int64_t hi,
                      uint32_t tile_nv, SpanBody body, const void *ctx, const char *name)
{
    int64_t vl = s->vl;
    int64_t at = lo;
    if (tile_nv > 1) {
        int64_t step = vl * tile_nv, end = lo + (hi - lo) / step * step;
        span_loop(s, block, base, at, end, s->vl, tile_nv, body, ctx, name);
        at = end;
    }
    int64_t vend = at + (hi - at) / vl * vl;
    span_loop(s, block, base, at, vend, s->vl, 1, body, ctx, name);
    span_loop(s, block, base, vend, hi, 1, 1, body, ctx, name);
}

void sched_span(Sched *s, LoopStmt *block, int64_t lo, int64_t hi, uint32_t tile_nv, SpanBody body,
                const void *ctx, const char *name)
{
    span_from(s, block, ix_c(s, 0), lo, hi, tile_nv, body, ctx, name);
}

/* ---- the pointwise engine ---- */

void sched_strides(const Shape *s, int64_t *st)
{
    int64_t acc = 1;
    for (uint32_t d = s->rank; d-- > 0;) {
        st[d] = acc;
        acc *= s->dim[d];
    }
}

void sched_bcast_strides(const Shape *in, const Shape *out, int64_t *st)
{
    int64_t own[FUSE_MAX_RANK];
    sched_strides(in, own);
    FUSE_ASSERT(in->rank <= out->rank);
    uint32_t lead = out->rank - in->rank;
    for (uint32_t d = 0; d < out->rank; d++)
        st[d] = d < lead || in->dim[d - lead] == 1 ? 0 : own[d - lead];
}

/* The operands of pw that are buffers: dst first. */
static uint32_t operands(Pw *pw, PwOperand **ops)
{
    uint32_t n = 0;
    ops[n++] = &pw->dst;
    for (uint32_t i = 0; i < pw->nsrc; i++)
        if (pw->src[i].buf)
            ops[n++] = &pw->src[i];
    return n;
}

/* Drops size-1 axes and merges axes contiguous for every operand. */
static void collapse(Pw *pw)
{
    PwOperand *ops[3];
    uint32_t nops = operands(pw, ops);
    uint32_t r = 0;
    for (uint32_t d = 0; d < pw->rank; d++) {
        if (pw->dim[d] == 1)
            continue;
        bool merge = r > 0;
        for (uint32_t o = 0; o < nops && merge; o++)
            merge = ops[o]->st[r - 1] == ops[o]->st[d] * pw->dim[d];
        if (merge) {
            pw->dim[r - 1] *= pw->dim[d];
            for (uint32_t o = 0; o < nops; o++)
                ops[o]->st[r - 1] = ops[o]->st[d];
            continue;
        }
        pw->dim[r] = pw->dim[d];
        for (uint32_t o = 0; o < nops; o++)
            ops[o]->st[r] = ops[o]->st[d];
        r++;
    }
    if (r == 0) {
        pw->dim[0] = 1;
        for (uint32_t o = 0; o < nops; o++)
            ops[o]->st[0] = 1;
        r = 1;
    }
    pw->rank = r;
}

/* A body of the innermost axis: base[i] are the operands' row offsets (dst first). */
typedef struct PwRow {
    Pw *pw;
    LoopExpr *base[3];
} PwRow;

static LoopExpr *operand_index(Sched *s, LoopExpr *base, LoopExpr *at, int64_t st)
{
    return ix_add(s, base, ix_mulc(s, at, st));
}

/* One store of `lanes` destination elements at innermost index `at`. */
static void pw_body(Sched *s, LoopStmt *block, LoopExpr *at, uint32_t lanes, uint32_t nv,
                    const void *ctx)
{
    (void)nv;
    const PwRow *row = ctx;
    Pw *pw = row->pw;
    uint32_t last = pw->rank - 1, b = 1;
    LoopExpr *args[2];
    for (uint32_t i = 0; i < pw->nsrc; i++) {
        const PwOperand *op = &pw->src[i];
        if (!op->buf) {
            args[i] = fx_c(s, op->c, lanes);
            continue;
        }
        LoopExpr *base = row->base[b++];
        if (op->st[last] == 0)
            args[i] = fx_bcast(s, fx_load(s, op->buf, base, 1), lanes);
        else
            args[i] = fx_load(s, op->buf, operand_index(s, base, at, op->st[last]), lanes);
    }
    LoopExpr *v = pw->fn ? pw->fn(s, pw->ctx, args, lanes) : args[0];
    LoopExpr *di = operand_index(s, row->base[0], at, pw->dst.st[last]);
    ls_append(s->p, block, ls_store(s->p, pw->dst.buf, di, v));
}

/* Vectors need a contiguous destination and sources that are contiguous or broadcast along
 * the innermost axis; anything else (a transposing gather) stays scalar. */
static bool vectorizable(Pw *pw)
{
    uint32_t last = pw->rank - 1;
    if (pw->dst.st[last] != 1)
        return false;
    for (uint32_t i = 0; i < pw->nsrc; i++)
        if (pw->src[i].buf && pw->src[i].st[last] > 1)
            return false;
    return true;
}

/* Covers [lo, hi) of the innermost axis, vectorized when the operands allow it. */
static void pw_span(Sched *s, LoopStmt *block, PwRow *row, LoopExpr *base, int64_t lo, int64_t hi)
{
    if (vectorizable(row->pw)) {
        span_from(s, block, base, lo, hi, 1, pw_body, row, "i");
        return;
    }
    LoopVar *v = sched_ivar(s, "i");
    LoopStmt *in = sched_for(s, block, v, ix_c(s, lo), ix_c(s, hi), 1);
    pw_body(s, in, ix_add(s, base, ix_v(s, v)), 1, 1, row);
}

/* A single row of `len` elements: parallel over blocks of it. */
static void pw_blocks(Sched *s, Pw *pw, int64_t len)
{
    PwOperand *ops[3];
    uint32_t nops = operands(pw, ops);
    PwRow row = {pw, {NULL, NULL, NULL}};
    for (uint32_t o = 0; o < nops; o++)
        row.base[o] = ix_c(s, ops[o]->off);
    const int64_t block = (int64_t)s->vl * 1024;
    if (s->prepare || len <= block) {
        pw_span(s, s->k->body, &row, ix_c(s, 0), 0, len);
        return;
    }
    int64_t nb = (len + block - 1) / block;
    LoopVar *b = sched_ivar(s, "b");
    LoopStmt *body = sched_par(s, b, nb);
    LoopExpr *start = ix_mulc(s, ix_v(s, b), block);
    if (nb * block == len) {
        pw_span(s, body, &row, start, 0, block);
        return;
    }
    LoopStmt *full = ls_block(s->p), *last = ls_block(s->p);
    ls_append(s->p, body,
              ls_if(s->p, lx_cmp(s->p, LCMP_LT, ix_v(s, b), ix_c(s, nb - 1)), full, last));
    pw_span(s, full, &row, start, 0, block);
    pw_span(s, last, &row, ix_c(s, 0), (nb - 1) * block, len);
}

/* Rows: the axes before the innermost, flattened into one parallel index whose digits
 * (r // inner % dim) give each operand's row offset, DECLared once per row. */
void sched_pointwise(Sched *s, Pw *pw)
{
    collapse(pw);
    uint32_t last = pw->rank - 1;
    int64_t rows = 1;
    for (uint32_t d = 0; d < last; d++)
        rows *= pw->dim[d];
    if (rows == 1) {
        pw_blocks(s, pw, pw->dim[last]);
        return;
    }
    LoopVar *r = sched_ivar(s, "r");
    LoopStmt *body = sched_par(s, r, rows);
    PwOperand *ops[3];
    uint32_t nops = operands(pw, ops);
    PwRow row = {pw, {NULL, NULL, NULL}};
    for (uint32_t o = 0; o < nops; o++) {
        LoopExpr *off = ix_c(s, ops[o]->off);
        int64_t inner = 1;
        for (uint32_t d = last; d-- > 0;) {
            LoopExpr *digit = ix_div(s, ix_v(s, r), inner);
            if (d > 0)
                digit = ix_mod(s, digit, pw->dim[d]);
            off = ix_add(s, off, ix_mulc(s, digit, ops[o]->st[d]));
            inner *= pw->dim[d];
        }
        if (off->kind == LEXPR_CONST_I) { /* e.g. a broadcast row: no local needed */
            row.base[o] = off;
            continue;
        }
        LoopVar *bv = sched_ivar(s, o == 0 ? "dst" : "src");
        ls_append(s->p, body, ls_decl(s->p, bv, off));
        row.base[o] = ix_v(s, bv);
    }
    pw_span(s, body, &row, ix_c(s, 0), 0, pw->dim[last]);
}

void sched_copy(Sched *s, const LoopBuffer *dst, const LoopBuffer *src, int64_t elems)
{
    Pw pw = {.rank = 1, .dim = {elems}, .nsrc = 1};
    pw.dst.buf = dst;
    pw.dst.st[0] = 1;
    pw.src[0].buf = src;
    pw.src[0].st[0] = 1;
    sched_pointwise(s, &pw);
}

/* ---- elementwise ops ---- */

/* Shorthands for the expression builders. */
static LoopExpr *un(Sched *s, LoopOp op, LoopExpr *a)
{
    return lx_unary(s->p, op, a);
}

static LoopExpr *unary_value(Sched *s, const void *ctx, LoopExpr *const *args, uint32_t lanes)
{
    const Node *n = ctx;
    LoopExpr *x = args[0];
    switch (n->kind) {
    case OP_RELU: /* select(x < 0, 0, x): NaN passes through as in torch.relu */
        return lx_select(s->p, lx_cmp(s->p, LCMP_LT, x, fx_c(s, 0.0f, lanes)), fx_c(s, 0.0f, lanes),
                         x);
    case OP_SIGMOID:
        return un(s, LOP_SIGMOID, x);
    case OP_TANH:
        return un(s, LOP_TANH, x);
    case OP_EXP:
        return un(s, LOP_EXP, x);
    case OP_SQRT:
        return un(s, LOP_SQRT, x);
    case OP_RSQRT:
        return bin(s, LOP_DIV, fx_c(s, 1.0f, lanes), un(s, LOP_SQRT, x));
    case OP_SILU:
        return bin(s, LOP_MUL, x, un(s, LOP_SIGMOID, x));
    case OP_ABS:
        return un(s, LOP_ABS, x);
    case OP_NEG:
        return un(s, LOP_NEG, x);
    case OP_GELU:
        return sched_gelu(s, x, n->attr.gelu.tanh, lanes);
    default:
        FUSE_UNREACHABLE();
    }
}

static LoopExpr *binary_value(Sched *s, const void *ctx, LoopExpr *const *args, uint32_t lanes)
{
    const Node *n = ctx;
    (void)lanes;
    static const LoopOp ops[] = {LOP_ADD, LOP_SUB, LOP_MUL, LOP_DIV, LOP_MIN, LOP_MAX};
    static const OpKind kinds[] = {OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MIN, OP_MAX};
    for (size_t i = 0; i < countof(kinds); i++)
        if (kinds[i] == n->kind)
            return bin(s, ops[i], args[0], args[1]);
    FUSE_UNREACHABLE();
}

/* Eval BatchNorm as one expression: fma(x - mean, weight / sqrt(var + eps), bias), the
 * operations of sched_batchnorm in its order. */
static LoopExpr *batchnorm_value(Sched *s, const Node *n, LoopExpr *const *args, uint32_t lanes)
{
    LoopExpr *sd = un(s, LOP_SQRT, bin(s, LOP_ADD, args[4], fx_c(s, n->attr.norm.eps, lanes)));
    LoopExpr *scale = bin(s, LOP_DIV, args[1], sd);
    return lx_fma(s->p, bin(s, LOP_SUB, args[0], args[3]), scale, args[2]);
}

LoopExpr *sched_elementwise(Sched *s, const Node *n, LoopExpr *const *args, uint32_t lanes)
{
    if (n->kind == OP_BATCHNORM)
        return batchnorm_value(s, n, args, lanes);
    if (op_info[n->kind].cls == OPC_UNARY)
        return unary_value(s, n, args, lanes);
    return binary_value(s, n, args, lanes);
}

/* A source operand reading node `in` as the shape `out` (broadcasting). */
static void bind_source(Sched *s, PwOperand *op, const Node *in, const Shape *out)
{
    if (in->kind == OP_SCALAR) {
        op->buf = NULL;
        op->c = in->attr.scalar.value;
        return;
    }
    op->buf = sched_value(s, in);
    sched_bcast_strides(&in->shape, out, op->st);
}

/* The destination operand: n's own buffer, row-major. */
static void bind_dest(Sched *s, Pw *pw, const Node *n)
{
    pw->rank = n->shape.rank;
    memcpy(pw->dim, n->shape.dim, sizeof pw->dim);
    pw->dst.buf = sched_dest(s, n);
    sched_strides(&n->shape, pw->dst.st);
}

void sched_unary(Sched *s, const Node *n)
{
    Pw pw = {.nsrc = 1, .fn = unary_value, .ctx = n};
    bind_source(s, &pw.src[0], n->inputs[0], &n->shape);
    bind_dest(s, &pw, n);
    sched_kernel(s, n, NULL);
    sched_pointwise(s, &pw);
}

void sched_binary(Sched *s, const Node *n)
{
    Pw pw = {.nsrc = 2, .fn = binary_value, .ctx = n};
    bind_source(s, &pw.src[0], n->inputs[0], &n->shape);
    bind_source(s, &pw.src[1], n->inputs[1], &n->shape);
    bind_dest(s, &pw, n);
    sched_kernel(s, n, NULL);
    sched_pointwise(s, &pw);
}

/* Output axis d reads input axis perm[d]. */
void sched_permute(Sched *s, const Node *n)
{
    Pw pw = {.nsrc = 1};
    int64_t in_st[FUSE_MAX_RANK];
    sched_strides(&n->inputs[0]->shape, in_st);
    pw.src[0].buf = sched_value(s, n->inputs[0]);
    for (uint32_t d = 0; d < n->shape.rank; d++)
        pw.src[0].st[d] = in_st[n->attr.permute.perm[d]];
    bind_dest(s, &pw, n);
    sched_kernel(s, n, NULL);
    sched_pointwise(s, &pw);
}

/* torch.cat: input k's [outer, slab_k] rows go to column offset at_k of [outer, total]. */
void sched_concat(Sched *s, const Node *n)
{
    uint32_t axis = n->attr.concat.axis;
    int64_t outer = 1, inner = 1;
    for (uint32_t d = 0; d < axis; d++)
        outer *= n->shape.dim[d];
    for (uint32_t d = axis + 1; d < n->shape.rank; d++)
        inner *= n->shape.dim[d];
    int64_t total = n->shape.dim[axis] * inner, at = 0;
    const LoopBuffer *dst = s->val[n->id] ? s->val[n->id] : sched_dest(s, n);
    for (uint32_t k = 0; k < n->ninputs; k++) {
        int64_t slab = n->inputs[k]->shape.dim[axis] * inner;
        if (s->plan->into[n->inputs[k]->id] == n) { /* its producer wrote it in place */
            at += slab;
            continue;
        }
        Pw pw = {.rank = 2, .dim = {outer, slab}, .nsrc = 1};
        pw.dst.buf = dst;
        pw.dst.off = at;
        pw.dst.st[0] = total;
        pw.dst.st[1] = 1;
        pw.src[0].buf = sched_value(s, n->inputs[k]);
        pw.src[0].st[0] = slab;
        pw.src[0].st[1] = 1;
        char part[32];
        snprintf(part, sizeof part, "in%u", k);
        sched_kernel(s, n, part);
        sched_pointwise(s, &pw);
        at += slab;
    }
}

/* ---- upsample ---- */

/* The source taps of output index `dst` along one axis, as interp.c's linear_tap /
 * nearest_src compute them (in f32; the one double expression there is exact in double, so an
 * f32 fma rounds it identically). */
typedef struct AxisTaps {
    LoopExpr *i0, *i1; /* i64 */
    LoopExpr *l1;      /* f32 weight of i1 (bilinear) */
} AxisTaps;

static LoopExpr *cast_f(Sched *s, LoopExpr *a)
{
    return lx_cast(s->p, a, LT_F32);
}

/* Bilinear taps of `dst` as DECLared locals in block: src, i0 = min(trunc(src), in-1),
 * i1 = min(i0+1, in-1), l1 = clamp(src - i0, 0, 1); src = max(fma(ratio, dst + 0.5, -0.5), 0)
 * (the double expression of interp.c, exact before its one rounding) or ratio * dst with
 * align_corners. An axis of equal size is copied. */
static AxisTaps linear_taps(Sched *s, LoopStmt *block, LoopExpr *dst, float ratio, int64_t in,
                            int64_t out, bool ac, const char *name)
{
    AxisTaps t = {dst, dst, lx_const_f(s->p, 0.0f)};
    if (in == out)
        return t;
    LoopExpr *fd = cast_f(s, dst), *src;
    if (ac)
        src = bin(s, LOP_MUL, lx_const_f(s->p, ratio), fd);
    else
        src = bin(s, LOP_MAX,
                  lx_fma(s->p, lx_const_f(s->p, ratio), bin(s, LOP_ADD, fd, fx_c(s, 0.5f, 1)),
                         fx_c(s, -0.5f, 1)),
                  fx_c(s, 0.0f, 1));
    char buf[16];
    snprintf(buf, sizeof buf, "s%s", name);
    LoopVar *sv = sched_fvar(s, buf, 1);
    ls_append(s->p, block, ls_decl(s->p, sv, src));
    snprintf(buf, sizeof buf, "%s0", name);
    LoopVar *i0 = sched_ivar(s, buf);
    LoopExpr *trunc = lx_cast(s->p, lx_var(s->p, sv), LT_I64);
    ls_append(s->p, block, ls_decl(s->p, i0, bin(s, LOP_MIN, trunc, ix_c(s, in - 1))));
    t.i0 = ix_v(s, i0);
    t.i1 = bin(s, LOP_MIN, ix_addc(s, t.i0, 1), ix_c(s, in - 1));
    LoopExpr *frac = bin(s, LOP_SUB, lx_var(s->p, sv), cast_f(s, t.i0));
    t.l1 = bin(s, LOP_MIN, bin(s, LOP_MAX, frac, fx_c(s, 0.0f, 1)), fx_c(s, 1.0f, 1));
    snprintf(buf, sizeof buf, "l%s", name);
    LoopVar *lv = sched_fvar(s, buf, 1);
    ls_append(s->p, block, ls_decl(s->p, lv, t.l1));
    t.l1 = lx_var(s->p, lv);
    return t;
}

/* PyTorch's legacy nearest: equal size copies, exact 2x halves, else
 * min(floor(f32(dst) * ratio), in-1) with the product rounded to f32. */
static LoopExpr *nearest_tap(Sched *s, LoopExpr *dst, float ratio, int64_t in, int64_t out)
{
    if (in == out)
        return dst;
    if (out == 2 * in)
        return ix_div(s, dst, 2);
    LoopExpr *f = un(s, LOP_FLOOR, bin(s, LOP_MUL, cast_f(s, dst), lx_const_f(s->p, ratio)));
    return bin(s, LOP_MIN, lx_cast(s->p, f, LT_I64), ix_c(s, in - 1));
}

/* x [N, C, IH, IW] -> [N, C, OH, OW]; parallel over output rows of all planes. */
void sched_upsample(Sched *s, const Node *n)
{
    const Shape *is = &n->inputs[0]->shape;
    int64_t planes = is->dim[0] * is->dim[1], ih = is->dim[2], iw = is->dim[3];
    int64_t oh = n->shape.dim[2], ow = n->shape.dim[3];
    float rh = n->attr.upsample.ratio_h, rw = n->attr.upsample.ratio_w;
    bool ac = n->attr.upsample.align_corners, bil = n->attr.upsample.bilinear;
    const LoopBuffer *src = sched_value(s, n->inputs[0]), *dst = sched_dest(s, n);
    sched_kernel(s, n, NULL);
    LoopVar *r = sched_ivar(s, "r");
    LoopStmt *body = sched_par(s, r, planes * oh);
    LoopExpr *plane = ix_mulc(s, ix_div(s, ix_v(s, r), oh), ih * iw);
    LoopExpr *y = ix_mod(s, ix_v(s, r), oh);
    LoopVar *x = sched_ivar(s, "x");
    LoopExpr *out_at = ix_add(s, ix_mulc(s, ix_v(s, r), ow), ix_v(s, x));
    if (!bil) {
        LoopVar *row = sched_ivar(s, "row");
        ls_append(
            s->p, body,
            ls_decl(s->p, row, ix_add(s, plane, ix_mulc(s, nearest_tap(s, y, rh, ih, oh), iw))));
        LoopStmt *in = sched_for(s, body, x, ix_c(s, 0), ix_c(s, ow), 1);
        LoopExpr *at = ix_add(s, ix_v(s, row), nearest_tap(s, ix_v(s, x), rw, iw, ow));
        ls_append(s->p, in, ls_store(s->p, dst, out_at, fx_load(s, src, at, 1)));
        return;
    }
    AxisTaps th = linear_taps(s, body, y, rh, ih, oh, ac, "y");
    LoopVar *r0 = sched_ivar(s, "row0"), *r1 = sched_ivar(s, "row1");
    ls_append(s->p, body, ls_decl(s->p, r0, ix_add(s, plane, ix_mulc(s, th.i0, iw))));
    ls_append(s->p, body, ls_decl(s->p, r1, ix_add(s, plane, ix_mulc(s, th.i1, iw))));
    LoopStmt *in = sched_for(s, body, x, ix_c(s, 0), ix_c(s, ow), 1);
    AxisTaps tw = linear_taps(s, in, ix_v(s, x), rw, iw, ow, ac, "x");
    LoopExpr *w0 = bin(s, LOP_SUB, fx_c(s, 1.0f, 1), tw.l1);
    LoopExpr *h0 = bin(s, LOP_SUB, fx_c(s, 1.0f, 1), th.l1);
    LoopExpr *a = fx_load(s, src, ix_add(s, ix_v(s, r0), tw.i0), 1);
    LoopExpr *b = fx_load(s, src, ix_add(s, ix_v(s, r0), tw.i1), 1);
    LoopExpr *c = fx_load(s, src, ix_add(s, ix_v(s, r1), tw.i0), 1);
    LoopExpr *d = fx_load(s, src, ix_add(s, ix_v(s, r1), tw.i1), 1);
    LoopExpr *top = bin(s, LOP_ADD, bin(s, LOP_MUL, w0, a), bin(s, LOP_MUL, tw.l1, b));
    LoopExpr *bot = bin(s, LOP_ADD, bin(s, LOP_MUL, w0, c), bin(s, LOP_MUL, tw.l1, d));
    LoopExpr *v = bin(s, LOP_ADD, bin(s, LOP_MUL, h0, top), bin(s, LOP_MUL, th.l1, bot));
    ls_append(s->p, in, ls_store(s->p, dst, out_at, v));
}

/* Input indices start..start+length-1 along the axis: [outer, length*inner] rows read at
 * column offset start*inner of the input's [outer, dim*inner] rows. */
void sched_slice(Sched *s, const Node *n)
{
    const Shape *is = &n->inputs[0]->shape;
    uint32_t axis = n->attr.slice.axis;
    int64_t outer = 1, inner = 1;
    for (uint32_t d = 0; d < axis; d++)
        outer *= is->dim[d];
    for (uint32_t d = axis + 1; d < is->rank; d++)
        inner *= is->dim[d];
    int64_t run = n->attr.slice.length * inner;
    Pw pw = {.rank = 2, .dim = {outer, run}, .nsrc = 1};
    pw.dst.buf = sched_dest(s, n);
    pw.dst.st[0] = run;
    pw.dst.st[1] = 1;
    pw.src[0].buf = sched_value(s, n->inputs[0]);
    pw.src[0].off = n->attr.slice.start * inner;
    pw.src[0].st[0] = is->dim[axis] * inner;
    pw.src[0].st[1] = 1;
    sched_kernel(s, n, NULL);
    sched_pointwise(s, &pw);
}
