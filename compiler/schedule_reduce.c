/*
 * schedule_reduce: reductions (mean, sum, amax, amin), softmax, batchnorm, layernorm and the
 * 2-D pools, lowered to loop IR.
 *
 * Reductions keep their accumulators in registers: across the innermost kept axis they are
 * vectors (one lane per output), along a contiguous reduced axis a vector partial sum reduced
 * across lanes at the end, plus a scalar accumulator for the tail. Every parallel loop runs over
 * independent outputs (rows, planes), never over a reduced axis, so the summation order is
 * fixed whatever the thread count.
 * Numerics: accumulation is f32 (interp.c accumulates in double and rounds once); the error
 * stays within the conformance tolerance for the sizes we test. max/min are NaN-propagating,
 * start from an element of the window (never from an infinity constant), and maxpool skips
 * padded taps, which is -inf padding.
 */
#include <stdio.h>

#include "schedule_internal.h"
#include "util.h"

static LoopExpr *var(Sched *s, const LoopVar *v)
{
    return lx_var(s->p, v);
}

static void assign(Sched *s, LoopStmt *block, const LoopVar *v, LoopExpr *e)
{
    ls_append(s->p, block, ls_assign(s->p, v, e));
}

/* ---- mean, sum, amax, amin ---- */

/* The input's axes with size-1 axes dropped and neighbours of the same kind merged. */
typedef struct Groups {
    uint32_t n;
    int64_t size[FUSE_MAX_RANK];
    int64_t st[FUSE_MAX_RANK]; /* input stride */
    bool red[FUSE_MAX_RANK];
} Groups;

static Groups reduce_groups(const Node *n)
{
    const Shape *is = &n->inputs[0]->shape;
    int64_t st[FUSE_MAX_RANK];
    sched_strides(is, st);
    Groups g = {0};
    for (uint32_t d = 0; d < is->rank; d++) {
        if (is->dim[d] == 1)
            continue;
        bool red = n->attr.reduce.axes[d];
        if (g.n > 0 && g.red[g.n - 1] == red) {
            g.size[g.n - 1] *= is->dim[d];
            g.st[g.n - 1] = st[d];
            continue;
        }
        g.size[g.n] = is->dim[d];
        g.st[g.n] = st[d];
        g.red[g.n] = red;
        g.n++;
    }
    return g;
}

/* The accumulation of each reduction: NaN-propagating max/min, or a sum (mean divides later). */
static LoopOp reduce_op(OpKind k)
{
    return k == OP_AMAX ? LOP_MAX : k == OP_AMIN ? LOP_MIN : LOP_ADD;
}

/* Input offset of kept row r: the kept groups among the first `upto` are its digits. */
static LoopExpr *kept_offset(Sched *s, const Groups *g, LoopExpr *r, uint32_t upto)
{
    LoopExpr *off = ix_c(s, 0);
    int64_t inner = 1;
    for (uint32_t d = upto; d-- > 0;) {
        if (g->red[d])
            continue;
        LoopExpr *digit = ix_mod(s, ix_div(s, r, inner), g->size[d]);
        off = ix_add(s, off, ix_mulc(s, digit, g->st[d]));
        inner *= g->size[d];
    }
    return off;
}

/* Emits loops over the reduced groups in [0, upto) into block; returns the innermost body and
 * adds the loop offsets to *at. */
static LoopStmt *reduced_loops(Sched *s, LoopStmt *block, const Groups *g, uint32_t upto,
                               LoopExpr **at)
{
    for (uint32_t d = 0; d < upto; d++) {
        if (!g->red[d])
            continue;
        LoopVar *j = sched_ivar(s, "j");
        block = sched_for(s, block, j, ix_c(s, 0), ix_c(s, g->size[d]), 1);
        *at = ix_add(s, *at, ix_mulc(s, ix_v(s, j), g->st[d]));
    }
    return block;
}

/* Elements reduced into each output (the mean's divisor). */
static int64_t reduced_count(const Node *n)
{
    const Shape *is = &n->inputs[0]->shape;
    int64_t c = 1;
    for (uint32_t d = 0; d < is->rank; d++)
        if (n->attr.reduce.axes[d])
            c *= is->dim[d];
    return c;
}

/* The output from the accumulator: mean = sum / count, rounded once in f32. */
static LoopExpr *finish(Sched *s, const Node *n, LoopExpr *acc, uint32_t lanes)
{
    if (n->kind != OP_MEAN)
        return acc;
    return bin(s, LOP_DIV, acc, fx_c(s, (float)reduced_count(n), lanes));
}

/* Reductions of one input over the same axes, computed by one kernel in one pass over the
 * input (the plan's sibling reductions): node[0] is the group's root. */
typedef struct RedSet {
    uint32_t n;
    const Node *node[1 + PLAN_MAX_EXTRA];
    const LoopBuffer *dst[1 + PLAN_MAX_EXTRA];
} RedSet;

typedef struct KeptCtx {
    const RedSet *set;
    const Groups *g;
    const LoopBuffer *src;
    LoopExpr *in_base, *out_base;
} KeptCtx;

/* One vector of outputs along the innermost kept group: accumulate over all reduced groups. */
static void kept_body(Sched *s, LoopStmt *block, LoopExpr *at, uint32_t lanes, uint32_t nv,
                      const void *ctx)
{
    (void)nv;
    const KeptCtx *c = ctx;
    const RedSet *set = c->set;
    LoopExpr *first = ix_add(s, c->in_base, ix_mulc(s, at, c->g->st[c->g->n - 1]));
    const LoopVar *acc[1 + PLAN_MAX_EXTRA];
    for (uint32_t k = 0; k < set->n; k++) {
        LoopOp op = reduce_op(set->node[k]->kind);
        LoopExpr *init = op == LOP_ADD ? fx_c(s, 0.0f, lanes) : fx_load(s, c->src, first, lanes);
        acc[k] = decl(s, block, sched_fvar(s, "acc", lanes), init);
    }
    LoopExpr *idx = first;
    LoopStmt *in = reduced_loops(s, block, c->g, c->g->n - 1, &idx);
    LoopExpr *v = set->n > 1 ? sched_local(s, in, "v", fx_load(s, c->src, idx, lanes))
                             : fx_load(s, c->src, idx, lanes);
    for (uint32_t k = 0; k < set->n; k++)
        assign(s, in, acc[k], bin(s, reduce_op(set->node[k]->kind), var(s, acc[k]), v));
    for (uint32_t k = 0; k < set->n; k++) {
        LoopExpr *out = finish(s, set->node[k], var(s, acc[k]), lanes);
        ls_append(s->p, block, ls_store(s->p, set->dst[k], ix_add(s, c->out_base, at), out));
    }
}

/* Vector accumulators per reduction along a contiguous run: one add depends on the last, so a
 * single chain runs at the adder's latency, not at the memory's speed. */
enum { RED_CHAINS = 4 };

typedef struct RedCtx {
    const LoopBuffer *src;
    uint32_t n, chains; /* reductions; vector accumulators of each, interleaved by vector */
    LoopOp op[1 + PLAN_MAX_EXTRA];
    /* vacc NULL when the run is shorter than a vector */
    const LoopVar *vacc[1 + PLAN_MAX_EXTRA][RED_CHAINS], *sacc[1 + PLAN_MAX_EXTRA];
} RedCtx;

/* A piece of the contiguous innermost reduced group: nv vectors into chains 0..nv-1, or a
 * scalar into the scalar accs. */
static void red_body(Sched *s, LoopStmt *block, LoopExpr *at, uint32_t lanes, uint32_t nv,
                     const void *ctx)
{
    const RedCtx *c = ctx;
    for (uint32_t j = 0; j < nv; j++) {
        LoopExpr *i = ix_addc(s, at, (int64_t)j * lanes);
        LoopExpr *v = c->n > 1 ? sched_local(s, block, "v", fx_load(s, c->src, i, lanes))
                               : fx_load(s, c->src, i, lanes);
        for (uint32_t k = 0; k < c->n; k++) {
            const LoopVar *acc = lanes > 1 ? c->vacc[k][j] : c->sacc[k];
            assign(s, block, acc, bin(s, c->op[k], var(s, acc), v));
        }
    }
}

/* The last group is reduced: one output per row of kept groups. */
static void reduce_inner(Sched *s, const RedSet *set, const Groups *g, const LoopBuffer *src)
{
    int64_t rows = 1, len = g->size[g->n - 1];
    for (uint32_t d = 0; d < g->n; d++)
        if (!g->red[d])
            rows *= g->size[d];
    LoopVar *r = sched_ivar(s, "r");
    LoopStmt *body = sched_par(s, r, rows);
    LoopVar *base = decl(s, body, sched_ivar(s, "in"), kept_offset(s, g, ix_v(s, r), g->n));
    LoopExpr *first = fx_load(s, src, ix_v(s, base), 1);
    /* chains: up to 8 vector accumulators in all, and only for runs that fill them */
    uint32_t chains = set->n <= 2 ? RED_CHAINS : set->n <= 4 ? 2 : 1;
    while (chains > 1 && len < (int64_t)chains * s->vl * 4)
        chains /= 2;
    RedCtx c = {.src = src, .n = set->n, .chains = chains};
    for (uint32_t k = 0; k < set->n; k++) {
        LoopOp op = c.op[k] = reduce_op(set->node[k]->kind);
        LoopExpr *sinit = op == LOP_ADD ? fx_c(s, 0.0f, 1) : first;
        c.sacc[k] = decl(s, body, sched_fvar(s, "acc", 1), sinit);
        if (len >= s->vl) {
            LoopExpr *vinit = fx_bcast(s, op == LOP_ADD ? fx_c(s, 0.0f, 1) : first, s->vl);
            for (uint32_t j = 0; j < chains; j++)
                c.vacc[k][j] = decl(s, body, sched_fvar(s, "vacc", s->vl), vinit);
        }
    }
    LoopExpr *at = ix_v(s, base);
    LoopStmt *in = reduced_loops(s, body, g, g->n - 1, &at);
    LoopVar *rb = decl(s, in, sched_ivar(s, "at"), at);
    LoopExpr *start = ix_v(s, rb);
    /* The contiguous run [start, start + len): tiles of `chains` vectors, vectors into chain
     * 0, then a scalar tail. */
    int64_t step = (int64_t)chains * s->vl, tend = chains > 1 ? len / step * step : 0;
    if (tend > 0) {
        LoopVar *j = sched_ivar(s, "k");
        LoopStmt *tb = sched_for(s, in, j, ix_c(s, 0), ix_c(s, tend), step);
        red_body(s, tb, ix_add(s, start, ix_v(s, j)), s->vl, chains, &c);
    }
    int64_t vend = len / s->vl * s->vl;
    if (vend > tend) {
        LoopVar *j = sched_ivar(s, "k");
        LoopStmt *vb = sched_for(s, in, j, ix_c(s, tend), ix_c(s, vend), s->vl);
        red_body(s, vb, ix_add(s, start, ix_v(s, j)), s->vl, 1, &c);
    }
    if (len > vend) {
        LoopVar *j = sched_ivar(s, "k");
        LoopStmt *tb = sched_for(s, in, j, ix_c(s, vend), ix_c(s, len), 1);
        red_body(s, tb, ix_add(s, start, ix_v(s, j)), 1, 1, &c);
    }
    for (uint32_t k = 0; k < set->n; k++) {
        LoopExpr *total = var(s, c.sacc[k]);
        if (c.vacc[k][0]) { /* the chains pairwise, in a fixed order */
            LoopExpr *v[RED_CHAINS];
            for (uint32_t j = 0; j < chains; j++)
                v[j] = var(s, c.vacc[k][j]);
            for (uint32_t w = chains; w > 1; w /= 2)
                for (uint32_t j = 0; j < w / 2; j++)
                    v[j] = bin(s, c.op[k], v[2 * j], v[2 * j + 1]);
            total = bin(s, c.op[k], lx_reduce(s->p, c.op[k], v[0]), total);
        }
        ls_append(s->p, body,
                  ls_store(s->p, set->dst[k], ix_v(s, r), finish(s, set->node[k], total, 1)));
    }
}

/* Outputs per parallel block along a long kept innermost group. */
enum { KEPT_BLOCK = 512 };

/* The last group is kept (or there is none): vectors of outputs along it. */
static void reduce_outer(Sched *s, const RedSet *set, const Groups *g, const LoopBuffer *src)
{
    Groups one = *g;
    if (one.n == 0) { /* a single element */
        one.n = 1;
        one.size[0] = 1;
        one.st[0] = 1;
        one.red[0] = false;
    }
    int64_t rows = 1, len = one.size[one.n - 1];
    for (uint32_t d = 0; d + 1 < one.n; d++)
        if (!one.red[d])
            rows *= one.size[d];
    /* Long rows run in blocks, in parallel with the rows: a batch of one is one row. */
    int64_t width = len, nblk = 1;
    if (!s->prepare && len > KEPT_BLOCK) {
        width = KEPT_BLOCK;
        nblk = (len + width - 1) / width;
    }
    LoopVar *r = sched_ivar(s, "r");
    LoopStmt *body = sched_par(s, r, rows * nblk);
    LoopExpr *row =
        nblk > 1 ? sched_local(s, body, "row", ix_div(s, ix_v(s, r), nblk)) : ix_v(s, r);
    LoopVar *base = decl(s, body, sched_ivar(s, "in"), kept_offset(s, &one, row, one.n - 1));
    KeptCtx c = {set, &one, src, ix_v(s, base), ix_mulc(s, row, len)};
    if (nblk == 1) {
        sched_span(s, body, 0, len, 1, kept_body, &c, "i");
        return;
    }
    LoopExpr *blk = sched_local(s, body, "blk", ix_mod(s, ix_v(s, r), nblk));
    LoopExpr *x0 = sched_local(s, body, "x0", ix_mulc(s, blk, width));
    c.in_base =
        sched_local(s, body, "inx", ix_add(s, c.in_base, ix_mulc(s, x0, one.st[one.n - 1])));
    c.out_base = sched_local(s, body, "outx", ix_add(s, c.out_base, x0));
    int64_t last = len - (nblk - 1) * width;
    if (last == width) {
        sched_span(s, body, 0, width, 1, kept_body, &c, "i");
        return;
    }
    LoopStmt *full = ls_block(s->p), *part = ls_block(s->p);
    ls_append(s->p, body, ls_if(s->p, lx_cmp(s->p, LCMP_LT, blk, ix_c(s, nblk - 1)), full, part));
    sched_span(s, full, 0, width, 1, kept_body, &c, "i");
    sched_span(s, part, 0, last, 1, kept_body, &c, "i");
}

/* The reductions in `set` (of one input, over the same axes) as one kernel. */
static void reduce_set(Sched *s, RedSet *set)
{
    const Node *n = set->node[0];
    const LoopBuffer *src = sched_value(s, n->inputs[0]);
    for (uint32_t k = 0; k < set->n; k++)
        set->dst[k] = sched_dest(s, set->node[k]);
    sched_kernel(s, n, NULL);
    if (set->n > 1) { /* the comment names them all */
        char what[256];
        size_t at = 0;
        for (uint32_t k = 0; k < set->n && at < sizeof what; k++)
            at += (size_t)snprintf(what + at, sizeof what - at, "%s%s %%%u", k ? ", " : "",
                                   op_info[set->node[k]->kind].name, set->node[k]->id);
        s->k->comment = sched_describe(s, n, what);
    }
    Groups g = reduce_groups(n);
    if (g.n > 0 && g.red[g.n - 1])
        reduce_inner(s, set, &g, src);
    else
        reduce_outer(s, set, &g, src);
}

void sched_reduce(Sched *s, const Node *n)
{
    RedSet set = {.n = 1, .node = {n}};
    reduce_set(s, &set);
}

void sched_reduce_siblings(Sched *s, const PlanGroup *grp)
{
    RedSet set = {.n = 1, .node = {s->g->nodes[grp->root]}};
    for (uint32_t k = 0; k < grp->nextra; k++)
        set.node[set.n++] = s->g->nodes[grp->extra[k]];
    reduce_set(s, &set);
}

/* ---- softmax ---- */

typedef struct SoftCtx {
    const LoopBuffer *src, *dst;
    LoopExpr *base; /* the row's first element */
    const LoopVar *vacc, *sacc, *m, *sum;
    int pass; /* 0: max, 1: exp and sum, 2: divide */
} SoftCtx;

/* One piece of a contiguous row in pass 0 (running max), 1 (e = exp(x - m), stored, summed)
 * or 2 (divided by the sum in place). */
static void soft_row_body(Sched *s, LoopStmt *block, LoopExpr *at, uint32_t lanes, uint32_t nv,
                          const void *ctx)
{
    (void)nv;
    const SoftCtx *c = ctx;
    LoopExpr *i = ix_add(s, c->base, at);
    const LoopVar *acc = lanes > 1 ? c->vacc : c->sacc;
    if (c->pass == 0) {
        assign(s, block, acc, bin(s, LOP_MAX, var(s, acc), fx_load(s, c->src, i, lanes)));
        return;
    }
    if (c->pass == 1) {
        LoopExpr *d =
            bin(s, LOP_SUB, fx_load(s, c->src, i, lanes), fx_bcast(s, var(s, c->m), lanes));
        LoopVar *e = decl(s, block, sched_fvar(s, "e", lanes), lx_unary(s->p, LOP_EXP, d));
        ls_append(s->p, block, ls_store(s->p, c->dst, i, var(s, e)));
        assign(s, block, acc, bin(s, LOP_ADD, var(s, acc), var(s, e)));
        return;
    }
    LoopExpr *q = bin(s, LOP_DIV, fx_load(s, c->dst, i, lanes), fx_bcast(s, var(s, c->sum), lanes));
    ls_append(s->p, block, ls_store(s->p, c->dst, i, q));
}

/* Softmax along contiguous rows of `len`: max, exp and sum, divide; vectors along the row. */
static void softmax_last(Sched *s, const LoopBuffer *dst, const LoopBuffer *src, int64_t outer,
                         int64_t len)
{
    LoopVar *o = sched_ivar(s, "r");
    LoopStmt *body = sched_par(s, o, outer);
    LoopVar *base = decl(s, body, sched_ivar(s, "row"), ix_mulc(s, ix_v(s, o), len));
    SoftCtx c = {src, dst, ix_v(s, base), NULL, NULL, NULL, NULL, 0};
    bool vec = len >= s->vl;
    LoopVar *m = decl(s, body, sched_fvar(s, "m", 1), fx_load(s, src, ix_v(s, base), 1));
    c.sacc = c.m = m;
    if (vec)
        c.vacc = decl(s, body, sched_fvar(s, "mv", s->vl), fx_bcast(s, var(s, m), s->vl));
    sched_span(s, body, 0, len, 1, soft_row_body, &c, "i");
    if (vec)
        assign(s, body, m, bin(s, LOP_MAX, var(s, m), lx_reduce(s->p, LOP_MAX, var(s, c.vacc))));
    c.pass = 1;
    c.sacc = c.sum = decl(s, body, sched_fvar(s, "sum", 1), fx_c(s, 0.0f, 1));
    c.vacc = vec ? decl(s, body, sched_fvar(s, "sv", s->vl), fx_c(s, 0.0f, s->vl)) : NULL;
    sched_span(s, body, 0, len, 1, soft_row_body, &c, "i");
    if (vec)
        assign(s, body, c.sum,
               bin(s, LOP_ADD, var(s, c.sum), lx_reduce(s->p, LOP_ADD, var(s, c.vacc))));
    c.pass = 2;
    sched_span(s, body, 0, len, 1, soft_row_body, &c, "i");
}

typedef struct SoftColCtx {
    const LoopBuffer *src, *dst;
    LoopExpr *base;
    int64_t len, inner;
} SoftColCtx;

/* `lanes` neighbouring columns of a softmax along a strided axis, all passes. */
static void soft_col_body(Sched *s, LoopStmt *block, LoopExpr *at, uint32_t lanes, uint32_t nv,
                          const void *ctx)
{
    (void)nv;
    const SoftColCtx *c = ctx;
    LoopVar *b = decl(s, block, sched_ivar(s, "col"), ix_add(s, c->base, at));
    LoopVar *m = decl(s, block, sched_fvar(s, "m", lanes), fx_load(s, c->src, ix_v(s, b), lanes));
    LoopVar *j = sched_ivar(s, "j");
    LoopExpr *ij = ix_add(s, ix_v(s, b), ix_mulc(s, ix_v(s, j), c->inner));
    LoopStmt *l1 = sched_for(s, block, j, ix_c(s, 1), ix_c(s, c->len), 1);
    assign(s, l1, m, bin(s, LOP_MAX, var(s, m), fx_load(s, c->src, ij, lanes)));
    LoopVar *sum = decl(s, block, sched_fvar(s, "sum", lanes), fx_c(s, 0.0f, lanes));
    LoopVar *j2 = sched_ivar(s, "j");
    LoopExpr *ij2 = ix_add(s, ix_v(s, b), ix_mulc(s, ix_v(s, j2), c->inner));
    LoopStmt *l2 = sched_for(s, block, j2, ix_c(s, 0), ix_c(s, c->len), 1);
    LoopExpr *d = bin(s, LOP_SUB, fx_load(s, c->src, ij2, lanes), var(s, m));
    LoopVar *e = decl(s, l2, sched_fvar(s, "e", lanes), lx_unary(s->p, LOP_EXP, d));
    ls_append(s->p, l2, ls_store(s->p, c->dst, ij2, var(s, e)));
    assign(s, l2, sum, bin(s, LOP_ADD, var(s, sum), var(s, e)));
    LoopVar *j3 = sched_ivar(s, "j");
    LoopExpr *ij3 = ix_add(s, ix_v(s, b), ix_mulc(s, ix_v(s, j3), c->inner));
    LoopStmt *l3 = sched_for(s, block, j3, ix_c(s, 0), ix_c(s, c->len), 1);
    ls_append(
        s->p, l3,
        ls_store(s->p, c->dst, ij3, bin(s, LOP_DIV, fx_load(s, c->dst, ij3, lanes), var(s, sum))));
}

void sched_softmax_rows(Sched *s, const LoopBuffer *dst, const LoopBuffer *src, int64_t outer,
                        int64_t len, int64_t inner)
{
    if (inner == 1) {
        softmax_last(s, dst, src, outer, len);
        return;
    }
    LoopVar *o = sched_ivar(s, "r");
    LoopStmt *body = sched_par(s, o, outer);
    SoftColCtx c = {src, dst, ix_mulc(s, ix_v(s, o), len * inner), len, inner};
    sched_span(s, body, 0, inner, 1, soft_col_body, &c, "i");
}

void sched_softmax(Sched *s, const Node *n)
{
    uint32_t axis = n->attr.softmax.axis;
    int64_t outer = 1, inner = 1;
    for (uint32_t d = 0; d < axis; d++)
        outer *= n->shape.dim[d];
    for (uint32_t d = axis + 1; d < n->shape.rank; d++)
        inner *= n->shape.dim[d];
    const LoopBuffer *src = sched_value(s, n->inputs[0]), *dst = sched_dest(s, n);
    sched_kernel(s, n, NULL);
    sched_softmax_rows(s, dst, src, outer, n->shape.dim[axis], inner);
}

/* ---- batchnorm, layernorm ---- */

typedef struct AffineCtx {
    const LoopBuffer *x, *dst;
    LoopExpr *base;
    const LoopVar *mean, *scale, *shift;
} AffineCtx;

/* dst = (x - mean) * scale + shift, with per-plane scalars broadcast. */
static void bn_body(Sched *s, LoopStmt *block, LoopExpr *at, uint32_t lanes, uint32_t nv,
                    const void *ctx)
{
    (void)nv;
    const AffineCtx *c = ctx;
    LoopExpr *i = ix_add(s, c->base, at);
    LoopExpr *d = bin(s, LOP_SUB, fx_load(s, c->x, i, lanes), fx_bcast(s, var(s, c->mean), lanes));
    LoopExpr *v =
        lx_fma(s->p, d, fx_bcast(s, var(s, c->scale), lanes), fx_bcast(s, var(s, c->shift), lanes));
    ls_append(s->p, block, ls_store(s->p, c->dst, i, v));
}

/* Eval BatchNorm on [N, C, ...]: per plane, scale = weight / sqrt(var + eps). */
void sched_batchnorm(Sched *s, const Node *n)
{
    const LoopBuffer *x = sched_value(s, n->inputs[0]), *w = sched_value(s, n->inputs[1]);
    const LoopBuffer *b = sched_value(s, n->inputs[2]), *mean = sched_value(s, n->inputs[3]);
    const LoopBuffer *var_ = sched_value(s, n->inputs[4]), *dst = sched_dest(s, n);
    int64_t c = n->shape.dim[1], planes = n->shape.dim[0] * c, inner = 1;
    for (uint32_t d = 2; d < n->shape.rank; d++)
        inner *= n->shape.dim[d];
    sched_kernel(s, n, NULL);
    LoopVar *r = sched_ivar(s, "r");
    LoopStmt *body = sched_par(s, r, planes);
    LoopVar *ch = decl(s, body, sched_ivar(s, "c"), ix_mod(s, ix_v(s, r), c));
    LoopExpr *sd =
        lx_unary(s->p, LOP_SQRT,
                 bin(s, LOP_ADD, fx_load(s, var_, ix_v(s, ch), 1), fx_c(s, n->attr.norm.eps, 1)));
    AffineCtx a = {x, dst, ix_mulc(s, ix_v(s, r), inner), NULL, NULL, NULL};
    a.scale = decl(s, body, sched_fvar(s, "scale", 1),
                   bin(s, LOP_DIV, fx_load(s, w, ix_v(s, ch), 1), sd));
    a.mean = decl(s, body, sched_fvar(s, "mean", 1), fx_load(s, mean, ix_v(s, ch), 1));
    a.shift = decl(s, body, sched_fvar(s, "shift", 1), fx_load(s, b, ix_v(s, ch), 1));
    sched_span(s, body, 0, inner, 1, bn_body, &a, "i");
}

typedef struct LnCtx {
    const LoopBuffer *x, *w, *b, *dst;
    LoopExpr *base;
    const LoopVar *vacc, *sacc, *mean, *inv;
    const LoopVar *first; /* the row's first element */
    int pass;             /* 0: sum, 1: squared deviations, 2: normalize */
} LnCtx;

/* One piece of a row in pass 0 (sum of x - first), 1 (sum of squared deviations from the mean)
 * or 2 ((x - mean) * inv * weight + bias, the last two as one fma). */
static void ln_body(Sched *s, LoopStmt *block, LoopExpr *at, uint32_t lanes, uint32_t nv,
                    const void *ctx)
{
    (void)nv;
    const LnCtx *c = ctx;
    LoopExpr *xv = fx_load(s, c->x, ix_add(s, c->base, at), lanes);
    const LoopVar *acc = lanes > 1 ? c->vacc : c->sacc;
    if (c->pass == 0) {
        LoopExpr *shifted = bin(s, LOP_SUB, xv, fx_bcast(s, var(s, c->first), lanes));
        assign(s, block, acc, bin(s, LOP_ADD, var(s, acc), shifted));
        return;
    }
    LoopExpr *d = bin(s, LOP_SUB, xv, fx_bcast(s, var(s, c->mean), lanes));
    if (c->pass == 1) {
        LoopVar *dv = decl(s, block, sched_fvar(s, "d", lanes), d);
        assign(s, block, acc, lx_fma(s->p, var(s, dv), var(s, dv), var(s, acc)));
        return;
    }
    LoopExpr *nrm = bin(s, LOP_MUL, d, fx_bcast(s, var(s, c->inv), lanes));
    LoopExpr *v = lx_fma(s->p, nrm, fx_load(s, c->w, at, lanes), fx_load(s, c->b, at, lanes));
    ls_append(s->p, block, ls_store(s->p, c->dst, ix_add(s, c->base, at), v));
}

/* Sums a row pass of ln_body into a fresh scalar (plus vector partials when long enough). */
static const LoopVar *ln_pass(Sched *s, LoopStmt *body, LnCtx *c, int pass, int64_t k)
{
    c->pass = pass;
    c->sacc = decl(s, body, sched_fvar(s, "acc", 1), fx_c(s, 0.0f, 1));
    c->vacc = k >= s->vl ? decl(s, body, sched_fvar(s, "vacc", s->vl), fx_c(s, 0.0f, s->vl)) : NULL;
    sched_span(s, body, 0, k, 1, ln_body, c, "i");
    if (c->vacc)
        assign(s, body, c->sacc,
               bin(s, LOP_ADD, var(s, c->sacc), lx_reduce(s->p, LOP_ADD, var(s, c->vacc))));
    return c->sacc;
}

/* LayerNorm over the last axis (biased variance), one row per parallel iteration.
 * The mean is first + sum(x - first) / k: a row of equal values then has its value as its mean
 * exactly, and normalizes to exactly 0 (as PyTorch's does), where a plain f32 sum of k equal
 * values would round and 1 / sqrt(eps) would magnify that into the result. */
void sched_layernorm(Sched *s, const Node *n)
{
    const LoopBuffer *x = sched_value(s, n->inputs[0]), *w = sched_value(s, n->inputs[1]);
    const LoopBuffer *b = sched_value(s, n->inputs[2]), *dst = sched_dest(s, n);
    int64_t k = n->shape.dim[n->shape.rank - 1], rows = shape_numel(&n->shape) / k;
    sched_kernel(s, n, NULL);
    LoopVar *r = sched_ivar(s, "r");
    LoopStmt *body = sched_par(s, r, rows);
    LoopVar *base = decl(s, body, sched_ivar(s, "row"), ix_mulc(s, ix_v(s, r), k));
    LnCtx c = {x, w, b, dst, ix_v(s, base), NULL, NULL, NULL, NULL, NULL, 0};
    c.first = decl(s, body, sched_fvar(s, "first", 1), fx_load(s, x, ix_v(s, base), 1));
    const LoopVar *sum = ln_pass(s, body, &c, 0, k);
    c.mean =
        decl(s, body, sched_fvar(s, "mean", 1),
             bin(s, LOP_ADD, var(s, c.first), bin(s, LOP_DIV, var(s, sum), fx_c(s, (float)k, 1))));
    const LoopVar *sq = ln_pass(s, body, &c, 1, k);
    LoopExpr *v = bin(s, LOP_ADD, bin(s, LOP_DIV, var(s, sq), fx_c(s, (float)k, 1)),
                      fx_c(s, n->attr.norm.eps, 1));
    c.inv = decl(s, body, sched_fvar(s, "inv", 1),
                 bin(s, LOP_DIV, fx_c(s, 1.0f, 1), lx_unary(s->p, LOP_SQRT, v)));
    c.pass = 2;
    sched_span(s, body, 0, k, 1, ln_body, &c, "i");
}

/* ---- pools ---- */

/* 0 <= i < n, as a bool. */
static LoopExpr *in_range(Sched *s, LoopExpr *i, int64_t n)
{
    return bin(s, LOP_AND, lx_cmp(s->p, LCMP_GE, i, ix_c(s, 0)),
               lx_cmp(s->p, LCMP_LT, i, ix_c(s, n)));
}

/* i clamped into [0, n-1]: the window's first real tap seeds a max (no -inf constant). */
static LoopExpr *clamp(Sched *s, LoopExpr *i, int64_t n)
{
    return bin(s, LOP_MIN, bin(s, LOP_MAX, i, ix_c(s, 0)), ix_c(s, n - 1));
}

/* avgpool2d (count_include_pad: divides by kh*kw) and maxpool2d (padded taps skipped) on
 * [N, C, H, W]: a scalar gather per output, parallel over output rows. */
void sched_pool(Sched *s, const Node *n)
{
    const Shape *is = &n->inputs[0]->shape;
    int64_t planes = is->dim[0] * is->dim[1], h = is->dim[2], w = is->dim[3];
    int64_t oh = n->shape.dim[2], ow = n->shape.dim[3];
    int64_t kh = n->attr.pool.kh, kw = n->attr.pool.kw;
    int64_t sh = n->attr.pool.stride_h, sw = n->attr.pool.stride_w;
    int64_t ph = n->attr.pool.pad_h, pw = n->attr.pool.pad_w;
    bool is_max = n->kind == OP_MAXPOOL2D;
    const LoopBuffer *src = sched_value(s, n->inputs[0]), *dst = sched_dest(s, n);
    sched_kernel(s, n, NULL);
    LoopVar *r = sched_ivar(s, "r");
    LoopStmt *body = sched_par(s, r, planes * oh);
    LoopVar *plane =
        decl(s, body, sched_ivar(s, "plane"), ix_mulc(s, ix_div(s, ix_v(s, r), oh), h * w));
    LoopVar *y0 = decl(s, body, sched_ivar(s, "y"),
                       ix_addc(s, ix_mulc(s, ix_mod(s, ix_v(s, r), oh), sh), -ph));
    LoopVar *x = sched_ivar(s, "x");
    LoopStmt *xl = sched_for(s, body, x, ix_c(s, 0), ix_c(s, ow), 1);
    LoopVar *x0 = decl(s, xl, sched_ivar(s, "x"), ix_addc(s, ix_mulc(s, ix_v(s, x), sw), -pw));
    LoopExpr *init = fx_c(s, 0.0f, 1);
    if (is_max) {
        LoopExpr *first =
            ix_add(s, ix_v(s, plane),
                   ix_add(s, ix_mulc(s, clamp(s, ix_v(s, y0), h), w), clamp(s, ix_v(s, x0), w)));
        init = fx_load(s, src, first, 1);
    }
    LoopVar *acc = decl(s, xl, sched_fvar(s, "acc", 1), init);
    LoopVar *i = sched_ivar(s, "i");
    LoopStmt *il = sched_for(s, xl, i, ix_c(s, 0), ix_c(s, kh), 1);
    LoopVar *iy = decl(s, il, sched_ivar(s, "iy"), ix_add(s, ix_v(s, y0), ix_v(s, i)));
    LoopStmt *yin = ls_block(s->p);
    ls_append(s->p, il, ls_if(s->p, in_range(s, ix_v(s, iy), h), yin, NULL));
    LoopVar *j = sched_ivar(s, "j");
    LoopStmt *jl = sched_for(s, yin, j, ix_c(s, 0), ix_c(s, kw), 1);
    LoopVar *ix = decl(s, jl, sched_ivar(s, "ix"), ix_add(s, ix_v(s, x0), ix_v(s, j)));
    LoopStmt *xin = ls_block(s->p);
    ls_append(s->p, jl, ls_if(s->p, in_range(s, ix_v(s, ix), w), xin, NULL));
    LoopExpr *at = ix_add(s, ix_v(s, plane), ix_add(s, ix_mulc(s, ix_v(s, iy), w), ix_v(s, ix)));
    assign(s, xin, acc, bin(s, is_max ? LOP_MAX : LOP_ADD, var(s, acc), fx_load(s, src, at, 1)));
    LoopExpr *v = is_max ? var(s, acc) : bin(s, LOP_DIV, var(s, acc), fx_c(s, (float)(kh * kw), 1));
    LoopExpr *out = ix_add(s, ix_mulc(s, ix_v(s, r), ow), ix_v(s, x));
    ls_append(s->p, xl, ls_store(s->p, dst, out, v));
}
