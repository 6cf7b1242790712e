/*
 * schedule_attention: scaled dot-product attention as one streaming kernel.
 *
 * out[b, i, h*hd + t] = sum_j softmax_j(scale * q_i . k_j) v_j[t] for every batch b, head h
 * and query i, without the L x S score matrix: the keys are visited in blocks, and each query
 * row keeps a running maximum m, the running sum l of exp(score - m) and an unnormalized output
 * row o, both rescaled by exp(m_old - m_new) whenever a block raises the maximum (the online
 * softmax; flash attention). Memory is O((L + S) hd): the keys packed per head in panels of
 * KB keys (pack_keys), so that vectors run along the keys, and per thread the output tiles of a
 * group of query tiles, [group * MQ, dv], their running maxima and sums, and an [MQ, KB]
 * probability tile. The score tile of MQ queries by KB = NV vectors of keys is the GEMM's
 * register tile (pick_tile). Parallel over (batch, head, group of query tiles), the keys in order
 * inside and each key block taken by the group's tiles in turn: the results do not depend on the
 * thread count, nor on the group (each query's operations are the same). Within the conformance
 * tolerance of the reference, which forms the whole softmax in double.
 */
#include <math.h>
#include <string.h>

#include "schedule_internal.h"

typedef struct KeyBlock {
    const Attention *a;
    uint32_t mq, nv, pitch;               /* queries, vectors per tile; a P row's length */
    int64_t group;                        /* tiles of queries that share each key block */
    const LoopBuffer *kt;                 /* the keys packed per head (pack_keys) */
    LoopExpr *qbase, *kbase, *vbase;      /* the group's first query row, head's kt, V */
    LoopExpr *obase;                      /* the group's first output row */
    const LoopBuffer *o, *p;              /* per-thread O [group * mq, dv] and P [mq, pitch] */
    const LoopBuffer *ml;                 /* per-thread running maximum and sum, [2][group * mq] */
    LoopExpr *g;                          /* the tile within the group (key_block, update_o) */
    const LoopVar *m[MAX_MR], *l[MAX_MR]; /* the tile's running maximum and sum per query */
    const LoopVar *corr[MAX_MR];          /* this block's rescaling, per query */
    LoopExpr *key0;                       /* the block's first key (O update) */
    int64_t width;                        /* the block's keys (O update) */
} KeyBlock;

/* Row i of the tile's O (of the group's [group * mq, dv]), at column t. */
static LoopExpr *o_at(Sched *s, const KeyBlock *kb, uint32_t i, LoopExpr *t)
{
    LoopExpr *row = ix_addc(s, ix_mulc(s, kb->g, kb->mq), i);
    return ix_add(s, ix_mulc(s, row, kb->a->dv), t);
}

/* Query i of the tile's running maximum (which 0) or sum (1) in kb->ml. */
static LoopExpr *ml_at(Sched *s, const KeyBlock *kb, uint32_t which, uint32_t i)
{
    return ix_addc(s, ix_mulc(s, kb->g, kb->mq), (int64_t)which * kb->group * kb->mq + i);
}

/* The keys of each (batch, head) packed as panels of KB keys: key j, feature t at
 * (j / KB) * hd * KB + t * KB + j % KB of the head's hd * Sp (S rounded up to KB), so that a key
 * block's score loop reads one contiguous run of hd * KB values (rows of a plain [hd, S]
 * transpose lie S apart: for S a multiple of 1024 they all fall into one cache set). The last,
 * partial panel keeps the pitch KB. Two kernels: the whole panels, then the partial one. */
static const LoopBuffer *pack_keys(Sched *s, const Node *n, const Attention *a, int64_t kbw,
                                   int64_t sp)
{
    const LoopBuffer *kt = sched_scratch(s, "attn_kt", n->id, a->nb * a->heads * a->hd * sp);
    int64_t whole = a->s / kbw, rest = a->s - whole * kbw;
    if (whole > 0) {
        Pw pw = {.rank = 5, .dim = {a->nb, a->heads, whole, a->hd, kbw}, .nsrc = 1};
        int64_t dst[5] = {a->heads * a->hd * sp, a->hd * sp, a->hd * kbw, kbw, 1};
        int64_t src[5] = {a->kst[0], a->kst[1], kbw * a->kst[2], a->kst[3], a->kst[2]};
        pw.dst.buf = kt;
        pw.src[0].buf = a->k;
        memcpy(pw.dst.st, dst, sizeof dst);
        memcpy(pw.src[0].st, src, sizeof src);
        sched_kernel(s, n, "kt");
        sched_pointwise(s, &pw);
    }
    if (rest > 0) {
        Pw pw = {.rank = 4, .dim = {a->nb, a->heads, a->hd, rest}, .nsrc = 1};
        int64_t dst[4] = {a->heads * a->hd * sp, a->hd * sp, kbw, 1};
        int64_t src[4] = {a->kst[0], a->kst[1], a->kst[3], a->kst[2]};
        pw.dst.buf = kt;
        pw.dst.off = whole * a->hd * kbw;
        pw.src[0].buf = a->k;
        pw.src[0].off = whole * kbw * a->kst[2];
        memcpy(pw.dst.st, dst, sizeof dst);
        memcpy(pw.src[0].st, src, sizeof src);
        sched_kernel(s, n, "kt_rest");
        sched_pointwise(s, &pw);
    }
    return kt;
}

/* o[i, t + v*lanes ..] for nv vectors = o * corr_i + sum over the block's keys j of
 * p[i, j] v[key0 + j, t + v*lanes ..]: an MQ x NV register tile like the GEMM's. */
static void update_o(Sched *s, LoopStmt *block, LoopExpr *t, uint32_t lanes, uint32_t nv,
                     const void *ctx)
{
    const KeyBlock *kb = ctx;
    const Attention *a = kb->a;
    LoopVar *acc[MAX_MR][MAX_NV];
    for (uint32_t i = 0; i < kb->mq; i++)
        for (uint32_t v = 0; v < nv; v++) {
            LoopExpr *at = ix_addc(s, o_at(s, kb, i, t), (int64_t)v * lanes);
            acc[i][v] = decl(s, block, sched_fvar(s, "o", lanes),
                             bin(s, LOP_MUL, fx_load(s, kb->o, at, lanes),
                                 fx_bcast(s, lx_var(s->p, kb->corr[i]), lanes)));
        }
    LoopVar *j = sched_ivar(s, "j");
    LoopStmt *jl = sched_for(s, block, j, ix_c(s, 0), ix_c(s, kb->width), 1);
    LoopExpr *vrow = sched_local(
        s, jl, "vr",
        ix_add(s, ix_add(s, kb->vbase, ix_mulc(s, ix_add(s, kb->key0, ix_v(s, j)), a->vst[2])), t));
    LoopVar *vv[MAX_NV];
    for (uint32_t v = 0; v < nv; v++)
        vv[v] = decl(s, jl, sched_fvar(s, "v", lanes),
                     fx_load(s, a->v, ix_addc(s, vrow, (int64_t)v * lanes), lanes));
    for (uint32_t i = 0; i < kb->mq; i++) {
        LoopExpr *p = fx_load(s, kb->p, ix_addc(s, ix_v(s, j), (int64_t)i * kb->pitch), 1);
        LoopVar *pv = decl(s, jl, sched_fvar(s, "pj", lanes), fx_bcast(s, p, lanes));
        for (uint32_t v = 0; v < nv; v++)
            ls_append(s->p, jl,
                      ls_assign(s->p, acc[i][v],
                                lx_fma(s->p, lx_var(s->p, pv), lx_var(s->p, vv[v]),
                                       lx_var(s->p, acc[i][v]))));
    }
    for (uint32_t i = 0; i < kb->mq; i++)
        for (uint32_t v = 0; v < nv; v++)
            ls_append(s->p, block,
                      ls_store(s->p, kb->o, ix_addc(s, o_at(s, kb, i, t), (int64_t)v * lanes),
                               lx_var(s->p, acc[i][v])));
}

/* Keys [at, at + nv * lanes), for each tile of the group in turn (the keys and values of the
 * block stay in cache for the next tile): the MQ x NV score tile, the online softmax step per
 * query, the probabilities into P, then the output tile's update. */
static void key_block(Sched *s, LoopStmt *outer, LoopExpr *at, uint32_t lanes, uint32_t nv,
                      const void *ctx)
{
    const KeyBlock *kb0 = ctx;
    KeyBlock kb = *kb0;
    const Attention *a = kb.a;
    LoopVar *gv = sched_ivar(s, "g");
    LoopStmt *block = sched_for(s, outer, gv, ix_c(s, 0), ix_c(s, kb.group), 1);
    kb.g = ix_v(s, gv);
    LoopExpr *qbase = ix_add(s, kb.qbase, ix_mulc(s, kb.g, (int64_t)kb.mq * a->qst[2]));
    for (uint32_t i = 0; i < kb.mq; i++) {
        kb.m[i] = decl(s, block, sched_fvar(s, "m", 1), fx_load(s, kb.ml, ml_at(s, &kb, 0, i), 1));
        kb.l[i] = decl(s, block, sched_fvar(s, "l", 1), fx_load(s, kb.ml, ml_at(s, &kb, 1, i), 1));
    }
    LoopVar *acc[MAX_MR][MAX_NV];
    for (uint32_t i = 0; i < kb.mq; i++)
        for (uint32_t v = 0; v < nv; v++)
            acc[i][v] = decl(s, block, sched_fvar(s, "s", lanes), fx_c(s, 0.0f, lanes));
    int64_t kbw = kb.pitch;
    LoopExpr *panel = sched_local(
        s, block, "kp",
        ix_add(s, kb.kbase,
               ix_add(s, ix_mulc(s, ix_div(s, at, kbw), a->hd * kbw), ix_mod(s, at, kbw))));
    LoopVar *t = sched_ivar(s, "t");
    LoopStmt *tl = sched_for(s, block, t, ix_c(s, 0), ix_c(s, a->hd), 1);
    LoopExpr *krow = ix_add(s, panel, ix_mulc(s, ix_v(s, t), kbw));
    LoopVar *kv[MAX_NV];
    for (uint32_t v = 0; v < nv; v++)
        kv[v] = decl(s, tl, sched_fvar(s, "k", lanes),
                     fx_load(s, kb.kt, ix_addc(s, krow, (int64_t)v * lanes), lanes));
    for (uint32_t i = 0; i < kb.mq; i++) {
        LoopExpr *qi = ix_add(s, ix_addc(s, qbase, (int64_t)i * a->qst[2]), ix_v(s, t));
        LoopVar *qv =
            decl(s, tl, sched_fvar(s, "q", lanes), fx_bcast(s, fx_load(s, a->q, qi, 1), lanes));
        for (uint32_t v = 0; v < nv; v++)
            ls_append(s->p, tl,
                      ls_assign(s->p, acc[i][v],
                                lx_fma(s->p, lx_var(s->p, qv), lx_var(s->p, kv[v]),
                                       lx_var(s->p, acc[i][v]))));
    }
    for (uint32_t i = 0; i < kb.mq; i++) {
        LoopExpr *sc[MAX_NV], *top = NULL;
        for (uint32_t v = 0; v < nv; v++) {
            sc[v] = lx_var(
                s->p, decl(s, block, sched_fvar(s, "sc", lanes),
                           bin(s, LOP_MUL, lx_var(s->p, acc[i][v]), fx_c(s, a->scale, lanes))));
            top = top ? bin(s, LOP_MAX, top, sc[v]) : sc[v];
        }
        if (lanes > 1)
            top = lx_reduce(s->p, LOP_MAX, top);
        LoopVar *mnew =
            decl(s, block, sched_fvar(s, "mnew", 1), bin(s, LOP_MAX, lx_var(s->p, kb.m[i]), top));
        kb.corr[i] = decl(
            s, block, sched_fvar(s, "corr", 1),
            lx_unary(s->p, LOP_EXP, bin(s, LOP_SUB, lx_var(s->p, kb.m[i]), lx_var(s->p, mnew))));
        LoopExpr *sum = NULL;
        for (uint32_t v = 0; v < nv; v++) {
            LoopExpr *d = bin(s, LOP_SUB, sc[v], fx_bcast(s, lx_var(s->p, mnew), lanes));
            LoopVar *pv = decl(s, block, sched_fvar(s, "p", lanes), lx_unary(s->p, LOP_EXP, d));
            ls_append(s->p, block,
                      ls_store(s->p, kb.p, ix_c(s, (int64_t)i * kb.pitch + (int64_t)v * lanes),
                               lx_var(s->p, pv)));
            sum = sum ? bin(s, LOP_ADD, sum, lx_var(s->p, pv)) : lx_var(s->p, pv);
        }
        if (lanes > 1)
            sum = lx_reduce(s->p, LOP_ADD, sum);
        ls_append(s->p, block,
                  ls_assign(s->p, kb.l[i],
                            lx_fma(s->p, lx_var(s->p, kb.l[i]), lx_var(s->p, kb.corr[i]), sum)));
        ls_append(s->p, block, ls_store(s->p, kb.ml, ml_at(s, &kb, 0, i), lx_var(s->p, mnew)));
        ls_append(s->p, block, ls_store(s->p, kb.ml, ml_at(s, &kb, 1, i), lx_var(s->p, kb.l[i])));
    }
    kb.key0 = at;
    kb.width = (int64_t)nv * lanes;
    sched_span(s, block, 0, a->dv, kb.nv, update_o, &kb, "t");
}

/* o[i, t..] = 0 for every query of the group before the first key block. */
static void zero_o(Sched *s, LoopStmt *block, LoopExpr *t, uint32_t lanes, uint32_t nv,
                   const void *ctx)
{
    (void)nv;
    const KeyBlock *kb = ctx;
    for (int64_t i = 0; i < kb->group * kb->mq; i++)
        ls_append(s->p, block,
                  ls_store(s->p, kb->o, ix_addc(s, t, i * kb->a->dv), fx_c(s, 0.0f, lanes)));
}

/* out[i, t..] = o[i, t..] / l_i for every query of the group after the last key block. */
static void store_out(Sched *s, LoopStmt *block, LoopExpr *t, uint32_t lanes, uint32_t nv,
                      const void *ctx)
{
    (void)nv;
    const KeyBlock *kb = ctx;
    const Attention *a = kb->a;
    for (int64_t i = 0; i < kb->group * kb->mq; i++) {
        LoopExpr *o = fx_load(s, kb->o, ix_addc(s, t, i * a->dv), lanes);
        LoopExpr *l = fx_load(s, kb->ml, ix_c(s, kb->group * kb->mq + i), 1);
        LoopExpr *v = bin(s, LOP_DIV, o, fx_bcast(s, l, lanes));
        LoopExpr *at = ix_add(s, ix_addc(s, kb->obase, i * a->ost[2]), t);
        ls_append(s->p, block, ls_store(s->p, a->out, at, v));
    }
}

/* QUERY_GROUP: the most tiles of queries that take each key block in turn, so that its keys and
 * values are read from L2 once per group instead of once per tile. 2 measured best on a Zen 5
 * (W7's core 5% faster than 1, on 1 and 2 threads); 8 gained nothing, its O tiles (32 KiB)
 * no longer sharing L1 with the block. */
enum { QUERY_GROUP = 2 };

/* The group: the largest power of two up to QUERY_GROUP dividing the tiles of a head, while
 * that leaves at least 32 parallel iterations over all batches and heads. */
static int64_t query_group(int64_t tiles, int64_t heads)
{
    int64_t g = QUERY_GROUP;
    while (g > 1 && (tiles % g != 0 || tiles / g * heads < 32))
        g /= 2;
    return g;
}

void sched_attention(Sched *s, const Node *n, const Attention *a)
{
    KeyBlock kb = {.a = a};
    pick_tile(s, a->l, &kb.mq, &kb.nv);
    kb.pitch = kb.nv * s->vl;
    int64_t sp = (a->s + kb.pitch - 1) / kb.pitch * kb.pitch;
    kb.kt = pack_keys(s, n, a, kb.pitch, sp);
    kb.group = query_group(a->l / kb.mq, a->nb * a->heads);
    int64_t qblocks = a->l / (kb.mq * kb.group);
    kb.o = sched_thread(s, "attn_o", n->id, kb.group * kb.mq * a->dv);
    kb.p = sched_thread(s, "attn_p", n->id, (int64_t)kb.mq * kb.pitch);
    kb.ml = sched_thread(s, "attn_ml", n->id, 2 * kb.group * kb.mq);

    sched_kernel(s, n, "flash");
    LoopVar *tv = sched_ivar(s, "t");
    LoopStmt *body = sched_par(s, tv, a->nb * a->heads * qblocks);
    LoopExpr *qb = ix_mod(s, ix_v(s, tv), qblocks), *bh = ix_div(s, ix_v(s, tv), qblocks);
    LoopExpr *h = ix_mod(s, bh, a->heads), *b = ix_div(s, bh, a->heads);
    LoopExpr *row0 = ix_mulc(s, qb, kb.mq * kb.group);
    kb.qbase = ix_v(s, decl(s, body, sched_ivar(s, "qb"),
                            ix_add(s, ix_add(s, ix_mulc(s, b, a->qst[0]), ix_mulc(s, h, a->qst[1])),
                                   ix_mulc(s, row0, a->qst[2]))));
    kb.kbase = ix_v(s, decl(s, body, sched_ivar(s, "kb"), ix_mulc(s, bh, a->hd * sp)));
    kb.vbase = ix_v(s, decl(s, body, sched_ivar(s, "vb"),
                            ix_add(s, ix_mulc(s, b, a->vst[0]), ix_mulc(s, h, a->vst[1]))));
    kb.obase = ix_v(s, decl(s, body, sched_ivar(s, "ob"),
                            ix_add(s, ix_add(s, ix_mulc(s, b, a->ost[0]), ix_mulc(s, h, a->ost[1])),
                                   ix_mulc(s, row0, a->ost[2]))));
    for (int64_t i = 0; i < kb.group * kb.mq; i++) {
        ls_append(s->p, body, ls_store(s->p, kb.ml, ix_c(s, i), fx_c(s, -INFINITY, 1)));
        ls_append(s->p, body,
                  ls_store(s->p, kb.ml, ix_c(s, kb.group * kb.mq + i), fx_c(s, 0.0f, 1)));
    }
    sched_span(s, body, 0, a->dv, 1, zero_o, &kb, "t");
    sched_span(s, body, 0, a->s, kb.nv, key_block, &kb, "j");
    sched_span(s, body, 0, a->dv, 1, store_out, &kb, "t");
}

void sched_sdpa(Sched *s, const Node *n)
{
    const Shape *qs = &n->inputs[0]->shape, *vs = &n->inputs[2]->shape;
    uint32_t r = qs->rank;
    Attention a = {.heads = 1,
                   .l = qs->dim[r - 2],
                   .hd = qs->dim[r - 1],
                   .s = vs->dim[r - 2],
                   .dv = vs->dim[r - 1],
                   .scale = n->attr.attention.scale};
    a.nb = shape_numel(qs) / (a.l * a.hd);
    a.q = sched_value(s, n->inputs[0]);
    a.k = sched_value(s, n->inputs[1]);
    a.v = sched_value(s, n->inputs[2]);
    a.out = sched_dest(s, n);
    int64_t qst[3] = {a.l * a.hd, 0, a.hd}, vst[3] = {a.s * a.dv, 0, a.dv};
    int64_t ost[3] = {a.l * a.dv, 0, a.dv};
    memcpy(a.qst, qst, sizeof qst);
    memcpy(a.vst, vst, sizeof vst);
    memcpy(a.ost, ost, sizeof ost);
    bool kt = n->attr.attention.k_transposed; /* k^T [D, S]: key j, feature t at t * S + j */
    int64_t kst[4] = {a.s * a.hd, 0, kt ? 1 : a.hd, kt ? a.s : 1};
    memcpy(a.kst, kst, sizeof kst);
    sched_attention(s, n, &a);
}
