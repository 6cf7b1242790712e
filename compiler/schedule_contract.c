/*
 * schedule_contract: contractions (linear, matmul, conv2d) and multi-head attention.
 *
 * The workhorse is a register-blocked GEMM, C[m, n] = bias + scale * sum_k A[m, k] B[k, n]
 * over row-major operands with leading dimensions and broadcast batch strides: MR rows of C by
 * NV vectors of `vl` columns are accumulated in DECLared vector locals across the k loop (A
 * broadcast from a scalar load, B loaded as vectors), then stored; the columns' remainder runs
 * as single vectors and a scalar tail. Rows are blocked by the largest MR in {8, 4, 2, 1}
 * dividing M, so no row remainder exists. The parallel loop runs over (batch, row block).
 * With fewer columns than lanes (and B contiguous along k) the dot form is used instead:
 * vectors along k, reduced across lanes per output.
 *   linear   x [rows, K] times the weight transposed at create time ([K, O]), column bias
 *            (dot form with the weight as is for fewer outputs than lanes)
 *   matmul   torch.matmul with broadcast batch axes (1-D operands as [1, K] / [K, 1]); for
 *            fewer columns than lanes, B transposed per batch into scratch and the dot form
 *   conv2d   1x1, stride 1, no padding: per (image, group) W [og, cg] times X [cg, H*W], row
 *            bias; otherwise direct: MR output channels per output row, vectors along the
 *            output width where every tap is inside the row (stride 1), scalar with bounds
 *            checks at the borders and for strided convolutions
 *   mha      projections, scaled scores (dot form on K's rows, or K transposed per head),
 *            softmax, P V, out projection
 * Numerics: f32 accumulation with fused multiply-adds (interp.c uses double); within the
 * conformance tolerance for the tested sizes. No reduction is split across threads.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "schedule_internal.h"
#include "util.h"

enum { MAX_MR = 8, MAX_NV = 4 };

typedef struct Gemm {
    const LoopBuffer *a, *b, *c, *bias; /* bias may be NULL */
    int64_t m, n, k, lda, ldb, ldc;
    int64_t a_off, b_off, c_off, bias_off;
    bool bias_row; /* bias[m] (else bias[n]) */
    bool dot;      /* B given transposed: B[k, n] at b + n * ldb + k (the dot form) */
    float scale;   /* multiplies the sum (1: none); a column bias is added after it */
    uint32_t nbatch;
    int64_t bdim[FUSE_MAX_RANK];
    int64_t sa[FUSE_MAX_RANK], sb[FUSE_MAX_RANK], sc[FUSE_MAX_RANK], sbias[FUSE_MAX_RANK];
} Gemm;

typedef struct GemmRun {
    const Gemm *g;
    uint32_t mr;
    LoopExpr *abase, *bbase, *cbase, *zbase;
} GemmRun;

static LoopExpr *bin(Sched *s, LoopOp op, LoopExpr *a, LoopExpr *b)
{
    return lx_binary(s->p, op, a, b);
}

static LoopVar *decl(Sched *s, LoopStmt *block, LoopVar *v, LoopExpr *init)
{
    ls_append(s->p, block, ls_decl(s->p, v, init));
    return v;
}

/* The largest power of two <= max dividing m: row blocks without a remainder. */
static uint32_t pick_mr(int64_t m, uint32_t max)
{
    for (uint32_t mr = max; mr > 1; mr /= 2)
        if (m % mr == 0)
            return mr;
    return 1;
}

/* An MR x nv tile of C at column `at`: MR * nv accumulators DECLared before the k loop (bias
 * or 0), per k nv vector loads of B's row and MR scalar loads of A broadcast, MR * nv fmas;
 * the stores follow the loop. Named locals, not arrays, keep the accumulators in registers. */
static void gemm_tile(Sched *s, LoopStmt *block, LoopExpr *at, uint32_t lanes, uint32_t nv,
                      const void *ctx)
{
    const GemmRun *r = ctx;
    const Gemm *g = r->g;
    LoopVar *acc[MAX_MR][MAX_NV];
    for (uint32_t i = 0; i < r->mr; i++)
        for (uint32_t v = 0; v < nv; v++) {
            LoopExpr *init = fx_c(s, 0.0f, lanes);
            if (g->bias && g->bias_row)
                init = fx_bcast(s, fx_load(s, g->bias, ix_addc(s, r->zbase, i), 1), lanes);
            else if (g->bias && g->scale == 1.0f)
                init = fx_load(s, g->bias, ix_add(s, r->zbase, ix_addc(s, at, v * lanes)), lanes);
            acc[i][v] = decl(s, block, sched_fvar(s, "acc", lanes), init);
        }
    LoopVar *kv = sched_ivar(s, "k");
    LoopStmt *kl = sched_for(s, block, kv, ix_c(s, 0), ix_c(s, g->k), 1);
    LoopExpr *brow = ix_add(s, r->bbase, ix_mulc(s, ix_v(s, kv), g->ldb));
    LoopVar *bv[MAX_NV];
    for (uint32_t v = 0; v < nv; v++) {
        LoopExpr *at_v = ix_add(s, brow, ix_addc(s, at, v * lanes));
        bv[v] = decl(s, kl, sched_fvar(s, "b", lanes), fx_load(s, g->b, at_v, lanes));
    }
    for (uint32_t i = 0; i < r->mr; i++) {
        LoopExpr *ai = ix_add(s, r->abase, ix_addc(s, ix_v(s, kv), i * g->lda));
        LoopVar *av =
            decl(s, kl, sched_fvar(s, "a", lanes), fx_bcast(s, fx_load(s, g->a, ai, 1), lanes));
        for (uint32_t v = 0; v < nv; v++)
            ls_append(s->p, kl,
                      ls_assign(s->p, acc[i][v],
                                lx_fma(s->p, lx_var(s->p, av), lx_var(s->p, bv[v]),
                                       lx_var(s->p, acc[i][v]))));
    }
    for (uint32_t i = 0; i < r->mr; i++)
        for (uint32_t v = 0; v < nv; v++) {
            LoopExpr *val = lx_var(s->p, acc[i][v]);
            if (g->scale != 1.0f)
                val = bin(s, LOP_MUL, val, fx_c(s, g->scale, lanes));
            if (g->bias && !g->bias_row && g->scale != 1.0f)
                val =
                    bin(s, LOP_ADD, val,
                        fx_load(s, g->bias, ix_add(s, r->zbase, ix_addc(s, at, v * lanes)), lanes));
            LoopExpr *ci = ix_add(s, r->cbase, ix_addc(s, at, i * g->ldc + v * lanes));
            ls_append(s->p, block, ls_store(s->p, g->c, ci, val));
        }
}

/* Offset of batch `bt` (a flat index over g->bdim) with strides st, plus base. */
static LoopExpr *batch_offset(Sched *s, const Gemm *g, LoopExpr *bt, const int64_t *st,
                              int64_t base)
{
    LoopExpr *off = ix_c(s, base);
    int64_t inner = 1;
    for (uint32_t d = g->nbatch; d-- > 0;) {
        LoopExpr *digit = ix_div(s, bt, inner);
        if (d > 0)
            digit = ix_mod(s, digit, g->bdim[d]);
        off = ix_add(s, off, ix_mulc(s, digit, st[d]));
        inner *= g->bdim[d];
    }
    return off;
}

/* Dot form, for few columns: for each column n, MR rows of A dotted with column n of B (a
 * contiguous row of B^T), vectors along k reduced across lanes at the end, a scalar k tail. */
static void gemm_dot_column(Sched *s, LoopStmt *block, LoopExpr *n, const GemmRun *r)
{
    const Gemm *g = r->g;
    int64_t kvec = g->k / (int64_t)s->vl * (int64_t)s->vl;
    LoopVar *vacc[MAX_MR], *sacc[MAX_MR];
    for (uint32_t i = 0; i < r->mr; i++) {
        LoopExpr *init = fx_c(s, 0.0f, 1);
        if (g->bias)
            init = fx_load(s, g->bias, ix_add(s, r->zbase, g->bias_row ? ix_c(s, i) : n), 1);
        sacc[i] = decl(s, block, sched_fvar(s, "acc", 1), init);
        vacc[i] = decl(s, block, sched_fvar(s, "vacc", s->vl), fx_c(s, 0.0f, s->vl));
    }
    LoopVar *bt = decl(s, block, sched_ivar(s, "bt"), ix_add(s, r->bbase, ix_mulc(s, n, g->ldb)));
    for (int pass = 0; pass < 2; pass++) {
        int64_t lo = pass ? kvec : 0, hi = pass ? g->k : kvec;
        uint32_t lanes = pass ? 1 : s->vl;
        if (hi <= lo)
            continue;
        LoopVar *kv = sched_ivar(s, "k");
        LoopStmt *kl = sched_for(s, block, kv, ix_c(s, lo), ix_c(s, hi), lanes);
        LoopVar *bv = decl(s, kl, sched_fvar(s, "b", lanes),
                           fx_load(s, g->b, ix_add(s, ix_v(s, bt), ix_v(s, kv)), lanes));
        for (uint32_t i = 0; i < r->mr; i++) {
            LoopExpr *ai = ix_add(s, r->abase, ix_addc(s, ix_v(s, kv), i * g->lda));
            LoopVar *acc = pass ? sacc[i] : vacc[i];
            ls_append(s->p, kl,
                      ls_assign(s->p, acc,
                                lx_fma(s->p, fx_load(s, g->a, ai, lanes), lx_var(s->p, bv),
                                       lx_var(s->p, acc))));
        }
    }
    for (uint32_t i = 0; i < r->mr; i++) {
        LoopExpr *val = lx_var(s->p, sacc[i]);
        if (kvec > 0)
            val = bin(s, LOP_ADD, val, lx_reduce(s->p, LOP_ADD, lx_var(s->p, vacc[i])));
        if (g->scale != 1.0f)
            val = bin(s, LOP_MUL, val, fx_c(s, g->scale, 1));
        LoopExpr *ci = ix_add(s, r->cbase, ix_addc(s, n, i * g->ldc));
        ls_append(s->p, block, ls_store(s->p, g->c, ci, val));
    }
}

/* Emits the GEMM into the current kernel (which must be empty so far). */
static void gemm(Sched *s, const Gemm *g)
{
    int64_t batches = 1;
    for (uint32_t d = 0; d < g->nbatch; d++)
        batches *= g->bdim[d];
    uint32_t mr = pick_mr(g->m, MAX_MR);
    uint32_t nv = mr >= 8 ? 2 : MAX_NV;
    int64_t mblk = g->m / mr;
    LoopVar *t = sched_ivar(s, "t");
    LoopStmt *body = sched_par(s, t, batches * mblk);
    LoopExpr *blk = ix_mod(s, ix_v(s, t), mblk), *bt = ix_div(s, ix_v(s, t), mblk);
    LoopExpr *row0 = ix_mulc(s, blk, mr);
    GemmRun r = {g, mr, NULL, NULL, NULL, NULL};
    LoopExpr *a = ix_add(s, batch_offset(s, g, bt, g->sa, g->a_off), ix_mulc(s, row0, g->lda));
    LoopExpr *c = ix_add(s, batch_offset(s, g, bt, g->sc, g->c_off), ix_mulc(s, row0, g->ldc));
    r.abase = lx_var(s->p, decl(s, body, sched_ivar(s, "ab"), a));
    r.bbase =
        lx_var(s->p, decl(s, body, sched_ivar(s, "bb"), batch_offset(s, g, bt, g->sb, g->b_off)));
    r.cbase = lx_var(s->p, decl(s, body, sched_ivar(s, "cb"), c));
    if (g->bias) {
        LoopExpr *z = batch_offset(s, g, bt, g->sbias, g->bias_off);
        if (g->bias_row)
            z = ix_add(s, z, row0);
        r.zbase = lx_var(s->p, decl(s, body, sched_ivar(s, "zb"), z));
    }
    if (!g->dot) {
        sched_span(s, body, 0, g->n, nv, gemm_tile, &r, "n");
        return;
    }
    FUSE_ASSERT(g->scale == 1.0f || !g->bias); /* the bias would be scaled too */
    if (g->n == 1) {
        gemm_dot_column(s, body, ix_c(s, 0), &r);
        return;
    }
    LoopVar *nv_ = sched_ivar(s, "n");
    LoopStmt *nl = sched_for(s, body, nv_, ix_c(s, 0), ix_c(s, g->n), 1);
    gemm_dot_column(s, nl, ix_v(s, nv_), &r);
}

/* The dot form pays off when there are fewer columns than lanes and k fills vectors. */
static bool use_dot(const Sched *s, int64_t n, int64_t k)
{
    return n < (int64_t)s->vl && k >= (int64_t)s->vl;
}

/* ---- linear, matmul ---- */

/* nn.Linear on the last axis: x [rows, K] times weight^T [K, O] + bias[O]. */
void sched_linear(Sched *s, const Node *n)
{
    const Shape *xs = &n->inputs[0]->shape;
    int64_t k = xs->dim[xs->rank - 1], o = n->inputs[1]->shape.dim[0];
    Gemm g = {
        .m = shape_numel(xs) / k, .n = o, .k = k, .lda = k, .ldb = o, .ldc = o, .scale = 1.0f};
    g.a = sched_value(s, n->inputs[0]);
    g.dot = use_dot(s, o, k);
    if (g.dot) { /* weight [O, K] is already B^T */
        g.b = sched_value(s, n->inputs[1]);
        g.ldb = k;
    } else {
        g.b = sched_transposed(s, n->inputs[1]);
    }
    g.bias = n->ninputs > 2 ? sched_value(s, n->inputs[2]) : NULL;
    g.c = sched_dest(s, n);
    sched_kernel(s, n, NULL);
    gemm(s, &g);
}

/* torch.matmul: batch axes (all but the last two) broadcast; 1-D operands are [1, K] / [K, 1]. */
void sched_matmul(Sched *s, const Node *n)
{
    const Shape *as = &n->inputs[0]->shape, *bs = &n->inputs[1]->shape;
    int64_t m = as->rank >= 2 ? as->dim[as->rank - 2] : 1, k = as->dim[as->rank - 1];
    int64_t nn = bs->rank >= 2 ? bs->dim[bs->rank - 1] : 1;
    Shape ba, bb, bo;
    matmul_batch_shapes(as, bs, &ba, &bb, &bo);
    Gemm g = {.m = m, .n = nn, .k = k, .lda = k, .ldb = nn, .ldc = nn, .scale = 1.0f};
    g.nbatch = bo.rank;
    memcpy(g.bdim, bo.dim, sizeof g.bdim);
    int64_t sc[FUSE_MAX_RANK];
    sched_bcast_strides(&ba, &bo, g.sa);
    sched_bcast_strides(&bb, &bo, g.sb);
    sched_strides(&bo, sc);
    for (uint32_t d = 0; d < bo.rank; d++) {
        g.sa[d] *= m * k;
        g.sb[d] *= k * nn;
        g.sc[d] = sc[d] * m * nn;
    }
    g.a = sched_value(s, n->inputs[0]);
    g.b = sched_value(s, n->inputs[1]);
    g.dot = use_dot(s, nn, k);
    g.c = sched_dest(s, n);
    if (g.dot && nn > 1) { /* B^T per batch of b, so that columns are contiguous in k */
        int64_t count = shape_numel(&bb);
        const LoopBuffer *bt = sched_scratch(s, "matmul_bt", n->id, count * k * nn);
        Pw pw = {.rank = 3, .dim = {count, nn, k}, .nsrc = 1};
        pw.dst.buf = bt;
        pw.dst.st[0] = nn * k;
        pw.dst.st[1] = k;
        pw.dst.st[2] = 1;
        pw.src[0].buf = g.b;
        pw.src[0].st[0] = k * nn;
        pw.src[0].st[1] = 1;
        pw.src[0].st[2] = nn;
        sched_kernel(s, n, "bt");
        sched_pointwise(s, &pw);
        g.b = bt;
    }
    if (g.dot)
        g.ldb = k; /* B^T rows (a single column of B is contiguous in k as it is) */
    sched_kernel(s, n, NULL);
    gemm(s, &g);
}

/* ---- conv2d ---- */

typedef struct Conv {
    int64_t nb, c, h, w, o, cg, og, groups, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw;
    const LoopBuffer *x, *wt, *bias, *y;
} Conv;

/* The conv's sizes and buffers (weights as their prepared copies). */
static Conv conv_of(Sched *s, const Node *n)
{
    const Shape *xs = &n->inputs[0]->shape, *ws = &n->inputs[1]->shape;
    Conv c = {
        .nb = xs->dim[0],
        .c = xs->dim[1],
        .h = xs->dim[2],
        .w = xs->dim[3],
        .o = ws->dim[0],
        .cg = ws->dim[1],
        .kh = ws->dim[2],
        .kw = ws->dim[3],
        .oh = n->shape.dim[2],
        .ow = n->shape.dim[3],
        .groups = n->attr.conv.groups,
        .sh = n->attr.conv.stride_h,
        .sw = n->attr.conv.stride_w,
        .ph = n->attr.conv.pad_h,
        .pw = n->attr.conv.pad_w,
        .dh = n->attr.conv.dil_h,
        .dw = n->attr.conv.dil_w,
    };
    c.og = c.o / c.groups;
    c.x = sched_value(s, n->inputs[0]);
    c.wt = sched_value(s, n->inputs[1]);
    c.bias = n->ninputs > 2 ? sched_value(s, n->inputs[2]) : NULL;
    c.y = sched_dest(s, n);
    return c;
}

/* 1x1, stride 1, no padding: per (image, group), W [og, cg] times X [cg, H*W]. */
static void conv_pointwise(Sched *s, const Conv *c)
{
    int64_t hw = c->h * c->w;
    Gemm g = {.m = c->og,
              .n = hw,
              .k = c->cg,
              .lda = c->cg,
              .ldb = hw,
              .ldc = hw,
              .bias_row = true,
              .scale = 1.0f,
              .nbatch = 2};
    g.a = c->wt;
    g.b = c->x;
    g.c = c->y;
    g.bias = c->bias;
    g.bdim[0] = c->nb;
    g.bdim[1] = c->groups;
    g.sa[1] = c->og * c->cg;
    g.sb[0] = c->c * hw;
    g.sb[1] = c->cg * hw;
    g.sc[0] = c->o * hw;
    g.sc[1] = c->og * hw;
    g.sbias[1] = c->og;
    g.dot = hw == 1 && use_dot(s, hw, c->cg); /* a 1x1 map: X [cg, 1] is contiguous in k */
    gemm(s, &g);
}

typedef struct ConvRow {
    const Conv *c;
    uint32_t mr;
    LoopExpr *xb, *wb, *ob, *oc0, *iy0;
} ConvRow;

/* 0 <= i < n, as a bool. */
static LoopExpr *in_range(Sched *s, LoopExpr *i, int64_t n)
{
    return bin(s, LOP_AND, lx_cmp(s->p, LCMP_GE, i, ix_c(s, 0)),
               lx_cmp(s->p, LCMP_LT, i, ix_c(s, n)));
}

/* MR output channels at output columns [x, x + lanes) of one row; lanes 1 checks every tap's
 * column, vectors are only placed where every tap is inside the row. */
static void conv_point(Sched *s, LoopStmt *block, LoopExpr *x, uint32_t lanes, uint32_t nv,
                       const void *ctx)
{
    (void)nv;
    const ConvRow *r = ctx;
    const Conv *c = r->c;
    int64_t taps = c->kh * c->kw;
    LoopVar *acc[MAX_MR];
    for (uint32_t m = 0; m < r->mr; m++) {
        LoopExpr *init = c->bias ? fx_bcast(s, fx_load(s, c->bias, ix_addc(s, r->oc0, m), 1), lanes)
                                 : fx_c(s, 0.0f, lanes);
        acc[m] = decl(s, block, sched_fvar(s, "acc", lanes), init);
    }
    LoopVar *ix0 = decl(s, block, sched_ivar(s, "ix"), ix_addc(s, ix_mulc(s, x, c->sw), -c->pw));
    LoopVar *ci = sched_ivar(s, "ci");
    LoopStmt *cl = sched_for(s, block, ci, ix_c(s, 0), ix_c(s, c->cg), 1);
    LoopVar *i = sched_ivar(s, "i");
    LoopStmt *il = sched_for(s, cl, i, ix_c(s, 0), ix_c(s, c->kh), 1);
    LoopVar *iy =
        decl(s, il, sched_ivar(s, "iy"), ix_add(s, r->iy0, ix_mulc(s, ix_v(s, i), c->dh)));
    LoopStmt *yin = ls_block(s->p);
    ls_append(s->p, il, ls_if(s->p, in_range(s, ix_v(s, iy), c->h), yin, NULL));
    LoopExpr *row = ix_add(
        s, r->xb, ix_add(s, ix_mulc(s, ix_v(s, ci), c->h * c->w), ix_mulc(s, ix_v(s, iy), c->w)));
    LoopVar *rb = decl(s, yin, sched_ivar(s, "row"), row);
    LoopExpr *wrow =
        ix_add(s, r->wb, ix_add(s, ix_mulc(s, ix_v(s, ci), taps), ix_mulc(s, ix_v(s, i), c->kw)));
    LoopVar *wb = decl(s, yin, sched_ivar(s, "w"), wrow);
    LoopVar *j = sched_ivar(s, "j");
    LoopStmt *jl = sched_for(s, yin, j, ix_c(s, 0), ix_c(s, c->kw), 1);
    LoopVar *ix =
        decl(s, jl, sched_ivar(s, "ix"), ix_add(s, ix_v(s, ix0), ix_mulc(s, ix_v(s, j), c->dw)));
    LoopStmt *tap = jl;
    if (lanes == 1) {
        tap = ls_block(s->p);
        ls_append(s->p, jl, ls_if(s->p, in_range(s, ix_v(s, ix), c->w), tap, NULL));
    }
    LoopVar *xv = decl(s, tap, sched_fvar(s, "x", lanes),
                       fx_load(s, c->x, ix_add(s, ix_v(s, rb), ix_v(s, ix)), lanes));
    for (uint32_t m = 0; m < r->mr; m++) {
        LoopExpr *wi = ix_add(s, ix_v(s, wb), ix_addc(s, ix_v(s, j), (int64_t)m * c->cg * taps));
        LoopExpr *wv = fx_bcast(s, fx_load(s, c->wt, wi, 1), lanes);
        ls_append(
            s->p, tap,
            ls_assign(s->p, acc[m], lx_fma(s->p, wv, lx_var(s->p, xv), lx_var(s->p, acc[m]))));
    }
    for (uint32_t m = 0; m < r->mr; m++) {
        LoopExpr *oi = ix_add(s, r->ob, ix_addc(s, x, (int64_t)m * c->oh * c->ow));
        ls_append(s->p, block, ls_store(s->p, c->y, oi, lx_var(s->p, acc[m])));
    }
}

/* Scalar columns [lo, hi) of a row. */
static void conv_scalar(Sched *s, LoopStmt *block, const ConvRow *r, int64_t lo, int64_t hi)
{
    if (hi <= lo)
        return;
    LoopVar *x = sched_ivar(s, "x");
    LoopStmt *xl = sched_for(s, block, x, ix_c(s, lo), ix_c(s, hi), 1);
    conv_point(s, xl, ix_v(s, x), 1, 1, r);
}

/* Any conv: parallel over (image, group, channel block, output row). */
static void conv_direct(Sched *s, const Conv *c)
{
    uint32_t mr = pick_mr(c->og, MAX_MR);
    int64_t nblk = c->og / mr;
    LoopVar *t = sched_ivar(s, "t");
    LoopStmt *body = sched_par(s, t, c->nb * c->groups * nblk * c->oh);
    LoopExpr *tv = ix_v(s, t);
    LoopExpr *y = ix_mod(s, tv, c->oh);
    LoopExpr *blk = ix_mod(s, ix_div(s, tv, c->oh), nblk);
    LoopExpr *gi = ix_mod(s, ix_div(s, tv, c->oh * nblk), c->groups);
    LoopExpr *img = ix_div(s, tv, c->oh * nblk * c->groups);
    LoopVar *oc0 =
        decl(s, body, sched_ivar(s, "oc"), ix_add(s, ix_mulc(s, gi, c->og), ix_mulc(s, blk, mr)));
    ConvRow r = {c, mr, NULL, NULL, NULL, ix_v(s, oc0), NULL};
    LoopExpr *xb = ix_mulc(s, ix_add(s, ix_mulc(s, img, c->c), ix_mulc(s, gi, c->cg)), c->h * c->w);
    r.xb = ix_v(s, decl(s, body, sched_ivar(s, "xb"), xb));
    r.wb = ix_v(
        s, decl(s, body, sched_ivar(s, "wb"), ix_mulc(s, ix_v(s, oc0), c->cg * c->kh * c->kw)));
    LoopExpr *ob =
        ix_add(s, ix_mulc(s, ix_add(s, ix_mulc(s, img, c->o), ix_v(s, oc0)), c->oh * c->ow),
               ix_mulc(s, y, c->ow));
    r.ob = ix_v(s, decl(s, body, sched_ivar(s, "ob"), ob));
    r.iy0 = ix_v(s, decl(s, body, sched_ivar(s, "iy"), ix_addc(s, ix_mulc(s, y, c->sh), -c->ph)));
    /* Vector columns: with stride 1, lanes x..x+vl-1 of tap j read columns
     * x - pw + j*dw .. x + vl - 1 - pw + j*dw, all inside [0, W) for every j exactly when
     * pw <= x and x + vl <= W + pw - (kw-1)*dw. Columns outside [lo, end) are scalar. */
    int64_t lo = 0, end = 0;
    if (c->sw == 1) {
        int64_t hi = c->w + c->pw - (c->kw - 1) * c->dw;
        if (hi > c->ow)
            hi = c->ow;
        int64_t nvec = hi > c->pw ? (hi - c->pw) / (int64_t)s->vl : 0;
        if (nvec > 0) {
            lo = c->pw;
            end = lo + nvec * (int64_t)s->vl;
        }
    }
    conv_scalar(s, body, &r, 0, lo);
    if (end > lo) {
        LoopVar *x = sched_ivar(s, "x");
        LoopStmt *xl = sched_for(s, body, x, ix_c(s, lo), ix_c(s, end), s->vl);
        conv_point(s, xl, ix_v(s, x), s->vl, 1, &r);
    }
    conv_scalar(s, body, &r, end, c->ow);
}

void sched_conv2d(Sched *s, const Node *n)
{
    Conv c = conv_of(s, n);
    sched_kernel(s, n, NULL);
    bool pointwise = c.kh == 1 && c.kw == 1 && c.sh == 1 && c.sw == 1 && c.ph == 0 && c.pw == 0;
    if (pointwise)
        conv_pointwise(s, &c);
    else
        conv_direct(s, &c);
}

/* ---- multi-head attention ---- */

/* rows x e times the transposed projection's columns [col, col + e) (+ bias[col..]). */
static void project(Sched *s, const Node *n, const char *part, const LoopBuffer *x,
                    const LoopBuffer *wt, int64_t ldw, int64_t col, const LoopBuffer *bias,
                    const LoopBuffer *out, int64_t rows, int64_t e)
{
    Gemm g = {.m = rows,
              .n = e,
              .k = e,
              .lda = e,
              .ldb = ldw,
              .ldc = e,
              .b_off = col,
              .bias_off = col,
              .scale = 1.0f};
    g.a = x;
    g.b = wt;
    g.bias = bias;
    g.c = out;
    sched_kernel(s, n, part);
    gemm(s, &g);
}

/* Scores per (batch, head): Q_h [L, hd] K_h^T [hd, S] / sqrt(hd), into sc [N, heads, L, S].
 * With fewer keys than lanes the dot form reads K's rows as they are; otherwise each head's
 * keys are first transposed to [hd, S] so that vectors run along S. */
static void mha_scores(Sched *s, const Node *n, const LoopBuffer *qp, const LoopBuffer *kp,
                       const LoopBuffer *sc)
{
    const Shape *qs = &n->inputs[0]->shape, *ks = &n->inputs[1]->shape;
    int64_t nb = qs->dim[0], l = qs->dim[1], e = qs->dim[2], sl = ks->dim[1];
    int64_t heads = n->attr.mha.heads, hd = e / heads;
    Gemm g = {.m = l, .n = sl, .k = hd, .lda = e, .ldc = sl, .nbatch = 2};
    g.scale = (float)(1.0 / sqrt((double)hd));
    g.a = qp;
    g.c = sc;
    g.bdim[0] = nb;
    g.bdim[1] = heads;
    g.sa[0] = l * e;
    g.sa[1] = hd;
    g.sc[0] = heads * l * sl;
    g.sc[1] = l * sl;
    g.dot = use_dot(s, sl, hd);
    if (g.dot) {
        g.b = kp;
        g.ldb = e;
        g.sb[0] = sl * e;
        g.sb[1] = hd;
        sched_kernel(s, n, "scores");
        gemm(s, &g);
        return;
    }
    const LoopBuffer *kt = sched_scratch(s, "mha_kt", n->id, nb * sl * e);
    /* kt[b, h, t, j] = kp[b, j, h*hd + t]: each head's keys as a [hd, S] matrix. */
    Pw pw = {.rank = 4, .dim = {nb, heads, hd, sl}, .nsrc = 1};
    pw.dst.buf = kt;
    pw.dst.st[0] = heads * hd * sl;
    pw.dst.st[1] = hd * sl;
    pw.dst.st[2] = sl;
    pw.dst.st[3] = 1;
    pw.src[0].buf = kp;
    pw.src[0].st[0] = sl * e;
    pw.src[0].st[1] = hd;
    pw.src[0].st[2] = 1;
    pw.src[0].st[3] = e;
    sched_kernel(s, n, "kt");
    sched_pointwise(s, &pw);

    g.b = kt;
    g.ldb = sl;
    g.sb[0] = heads * hd * sl;
    g.sb[1] = hd * sl;
    sched_kernel(s, n, "scores");
    gemm(s, &g);
}

/* nn.MultiheadAttention(E, heads, batch_first=True) in eval mode, as interp.c's eval_mha. */
void sched_mha(Sched *s, const Node *n)
{
    bool has_bias = n->attr.mha.bias;
    const Shape *qs = &n->inputs[0]->shape, *ks = &n->inputs[1]->shape;
    int64_t nb = qs->dim[0], l = qs->dim[1], e = qs->dim[2], sl = ks->dim[1];
    int64_t heads = n->attr.mha.heads, hd = e / heads;
    const LoopBuffer *q = sched_value(s, n->inputs[0]), *k = sched_value(s, n->inputs[1]);
    const LoopBuffer *v = sched_value(s, n->inputs[2]);
    const LoopBuffer *in_w = sched_transposed(s, n->inputs[3]);
    const LoopBuffer *in_b = has_bias ? sched_value(s, n->inputs[4]) : NULL;
    const LoopBuffer *out_w = sched_transposed(s, n->inputs[has_bias ? 5 : 4]);
    const LoopBuffer *out_b = has_bias ? sched_value(s, n->inputs[6]) : NULL;
    const LoopBuffer *qp = sched_scratch(s, "mha_q", n->id, nb * l * e);
    const LoopBuffer *kp = sched_scratch(s, "mha_k", n->id, nb * sl * e);
    const LoopBuffer *vp = sched_scratch(s, "mha_v", n->id, nb * sl * e);
    const LoopBuffer *sc = sched_scratch(s, "mha_p", n->id, nb * heads * l * sl);
    const LoopBuffer *att = sched_scratch(s, "mha_att", n->id, nb * l * e);
    const LoopBuffer *dst = sched_dest(s, n);
    project(s, n, "q", q, in_w, 3 * e, 0, in_b, qp, nb * l, e);
    project(s, n, "k", k, in_w, 3 * e, e, in_b, kp, nb * sl, e);
    project(s, n, "v", v, in_w, 3 * e, 2 * e, in_b, vp, nb * sl, e);

    mha_scores(s, n, qp, kp, sc);
    sched_kernel(s, n, "softmax");
    sched_softmax_rows(s, sc, sc, nb * heads * l, sl, 1);

    /* att[b, i, h*hd + t] = sum_j P[b, h, i, j] V[b, j, h*hd + t]. */
    Gemm pv = {.m = l, .n = hd, .k = sl, .lda = sl, .ldb = e, .ldc = e, .nbatch = 2, .scale = 1.0f};
    pv.a = sc;
    pv.b = vp;
    pv.c = att;
    pv.bdim[0] = nb;
    pv.bdim[1] = heads;
    pv.sa[0] = heads * l * sl;
    pv.sa[1] = l * sl;
    pv.sb[0] = sl * e;
    pv.sb[1] = hd;
    pv.sc[0] = l * e;
    pv.sc[1] = hd;
    sched_kernel(s, n, "pv");
    gemm(s, &pv);
    project(s, n, "out", att, out_w, e, 0, out_b, dst, nb * l, e);
}
