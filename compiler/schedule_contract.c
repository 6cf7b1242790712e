/*
 * schedule_contract: contractions (linear, matmul, conv2d) and multi-head attention.
 *
 * The workhorse is a register-blocked GEMM, C[m, n] = bias + scale * sum_k A[m, k] B[k, n]
 * over row-major operands with leading dimensions and broadcast batch strides: MR rows of C by
 * NV vectors of `vl` columns are accumulated in DECLared vector locals across the k loop (A
 * broadcast from a scalar load, B loaded as vectors), then stored; the columns' remainder runs
 * as single vectors and a scalar tail. Rows are blocked by the largest MR in {8, 4, 2, 1}
 * dividing M, so no row remainder exists. The parallel loop runs over (batch, row block);
 * when B is a weight (a linear's), over (batch, chunk of row blocks) instead, B packed at
 * create time as [N/NR][K][NR] panels and each panel swept by the chunk's row blocks while it
 * stays in L1 (gemm_weight_panels).
 * A prepared A (a weight) is packed at create time as [M/MR][K][MR] (pack_a), so that the
 * micro-kernel's broadcasts read one contiguous stream. Parallel over column blocks instead
 * (cols_outer: 1x1 convs over many pixels), each column block (one image row when the epilogue
 * needs rows and columns apart, else COL_BLOCK columns) is first packed into per-thread scratch
 * as [width/NR][K][NR] panels (NR = the tile's columns; pack_b: contiguous panels instead of
 * rows 1 MiB apart that collide in the caches), reused by every row block, while the next
 * block's rows of B are prefetched into L2 a slice per row block (prefetch_next); per row
 * block, the epilogue's upsamples of the image row are built once into thread scratch
 * (fuse_build_rows) and read by the tiles as plain vector loads. A sum of more than KC_MAX
 * terms runs in k blocks (k_block): each block packed and summed by every row block into C,
 * the last one through the epilogue, so that a panel stays in L1 and a block in L2 whatever
 * k is. B may be several buffers, a
 * range of k each (a concat's parts read in place), and A too (a linear over a concat); or B
 * may be computed while packing (a prologue: a 1x1 conv's input, a pointwise group's root that
 * is never stored, one image row per block, its upsampled rows built per channel, the columns
 * past the whole panels packed after them). The sum over k of each output runs in the same
 * order in every form.
 * With fewer columns than lanes (and B contiguous along k) the dot form is used instead:
 * vectors along k, reduced across lanes per output.
 *   linear   x [rows, K] times the weight transposed at create time ([K, O]), column bias
 *            (dot form with the weight as is for fewer outputs than lanes)
 *   matmul   torch.matmul with broadcast batch axes (1-D operands as [1, K] / [K, 1]); for
 *            fewer columns than lanes, B transposed per batch into scratch and the dot form
 *   conv2d   1x1, stride 1, no padding: per (image, group) W [og, cg] times X [cg, H*W], row
 *            bias (conv_pointwise); every other conv is in schedule_conv.c
 *   mha      the in projections, the streaming attention core (schedule_attention.c), the
 *            out projection
 * Numerics: f32 accumulation with fused multiply-adds (interp.c uses double); within the
 * conformance tolerance for the tested sizes. No reduction is split across threads.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "schedule_internal.h"
#include "util.h"

/* PACK_B_BYTES: the largest packed column block of B (per-thread scratch, meant for L2).
 * KC_MAX: the most terms of the sum a packed block holds; a longer sum runs in passes (k_block),
 * so that a panel (KC_MAX x NR) stays in L1 and a block in L2. */
enum { COL_BLOCK = 256, PACK_B_BYTES = 1 << 20, KC_MAX = 256 };
/* ROW_CHUNK: row blocks per parallel iteration of a GEMM over a weight's packed panels. */
enum { ROW_CHUNK = 16 };

/* The terms k in [k0, the next segment's k0) of the sum: row k of B at buf + off + the batch
 * offset (strides sb) + (k - k0) * ldb; with `a`, element (i, k) of A at a + a_off + the batch
 * offset (strides sa) + i * lda + (k - k0), else A as the Gemm gives it. Several segments when
 * a contraction reads a concat's parts in place: a 1x1 conv's B, a linear's A. */
typedef struct KSeg {
    const LoopBuffer *buf;
    int64_t k0, off;
    int64_t sb[FUSE_MAX_RANK];
    const LoopBuffer *a;
    int64_t a_off, lda;
    int64_t sa[FUSE_MAX_RANK];
} KSeg;

typedef struct Gemm {
    const LoopBuffer *a, *b, *c, *bias; /* bias may be NULL; c NULL: no store (an epilogue whose
                                           value only side reductions read) */
    int64_t m, n, k, lda, ldb, ldc;
    int64_t a_off, b_off, c_off, bias_off;
    bool bias_row; /* bias[m] (else bias[n]) */
    bool dot;      /* B given transposed: B[k, n] at b + n * ldb + k (the dot form) */
    float scale;   /* multiplies the sum (1: none); a column bias is added after it */
    uint32_t nbatch;
    int64_t bdim[FUSE_MAX_RANK];
    int64_t sa[FUSE_MAX_RANK], sb[FUSE_MAX_RANK], sc[FUSE_MAX_RANK], sbias[FUSE_MAX_RANK];
    /* The epilogue (NULL: C is the sums). Axis d of its iteration space (the contraction's
     * output) has the coordinate bmul[d] * batch digit bdig[d] + row digit rdig[d] (-1: none)
     * + the column part cax[d]: 1 the column, 2 the image row y, 3 the image column x of
     * column y * img_w + x. */
    Fuse *epi;
    int32_t bdig[FUSE_MAX_RANK], rdig[FUSE_MAX_RANK];
    int64_t bmul[FUSE_MAX_RANK];
    int8_t cax[FUSE_MAX_RANK];
    uint32_t nrdig;
    int64_t rdim[FUSE_MAX_RANK]; /* the row's digits, outermost first */
    int64_t img_w;               /* > 0: the columns run as image rows of img_w, then x */
    bool cols_outer;             /* parallel over column blocks, row blocks inside */
    /* nseg > 0: B (and maybe A) is these segments, in order of k0, the first at 0, instead of
     * b, b_off, sb; gemm() makes b the one segment of the others */
    uint32_t nseg;
    KSeg seg[FUSE_MAX_CONCAT_READ];
    /* A prologue (a 1x1 conv's input, a pointwise group's root, never stored): B[k, column]
     * is its value at (batch, k, image row, x), computed into the packed block (all of it,
     * the columns that fill no panel included); needs img_w and cols_outer */
    Fuse *pro;
} Gemm;

/* Which part of a sum split in k blocks (k_block) a tile computes: all of it, a block before
 * the last (its sums, unfinished, stored and reloaded by the next), or the last block (from
 * those sums, through the epilogue). */
typedef enum KPass { KPASS_ALL, KPASS_PARTIAL, KPASS_LAST } KPass;

/* Rows [k0, k1) of what the next column block reads: row k at base + k * ld in buf. */
typedef struct PrefetchRows {
    const LoopBuffer *buf;
    LoopExpr *base;
    int64_t ld, k0, k1;
} PrefetchRows;

/* The prefetch of the next column block's first k block (of B, or of the prologue's operands)
 * spread over the k loops of the whole-panel tiles: row block rb asks for rows
 * [rb * per, (rb + 1) * per) of it, as prefetch_rows does in one burst before the tiles, but
 * each tile for `lines` lines of them, one every `stride` terms. A burst of hundreds of
 * prefetches stalls the core until line fill buffers free up (5% of W1k's time in the burst
 * loop); one every few terms never waits. */
typedef struct TilePrefetch {
    uint32_t n; /* 0: off */
    PrefetchRows to[FUSE_MAX_CONCAT_READ];
    int64_t per;    /* rows per row block */
    int64_t lpr;    /* lines per row of the block */
    int64_t lines;  /* lines per tile */
    int64_t stride; /* terms between two prefetches */
    int64_t rows;   /* rows of the next block's first k block */
    int64_t terms;  /* of the pass whose tiles ask */
} TilePrefetch;

typedef struct GemmRun {
    const Gemm *g;
    uint32_t mr, nv;
    int64_t kc; /* terms per k block: packed panels are [kc][NR] (g->k: one block) */
    KPass pass;
    LoopExpr *k0, *k1;      /* the terms [k0, k1) of this pass */
    LoopExpr *kb;           /* KPASS_PARTIAL: the k block (the first one starts from the bias) */
    const LoopBuffer *sums; /* k blocks: where the sums so far wait, C itself or (no C) thread
                               scratch as [M][width] for the column block, row i at sbase */
    LoopExpr *sbase;
    int64_t sum_ld;
    const LoopBuffer *apk; /* A packed as [M/MR][K][MR] per matrix, or NULL: A as it is */
    const LoopBuffer *bpk; /* the column block of B packed as [width/NR][kc][NR] (NR = nv * vl)
                              in thread scratch, or NULL: B read in place */
    bool weight_panels;    /* bpk is instead all of a weight B's panels, [N/NR][K][NR] */
    LoopExpr *abase, *cbase, *zbase;
    LoopExpr *bbase[FUSE_MAX_CONCAT_READ];     /* by segment: row k of B at bbase + k * ldb */
    LoopExpr *abase_seg[FUSE_MAX_CONCAT_READ]; /* by segment with its own A: row i's k at
                                                  abase_seg + i * lda + k */
    LoopExpr *colbase;                         /* first column of the span */
    LoopExpr *y;                               /* img_w > 0: the image row */
    LoopExpr *rb;     /* cols_outer: the row block (row reductions start at block 0) */
    TilePrefetch tpf; /* n > 0: the whole-panel tiles prefetch the next column block */
    FusePoint pt[MAX_MR];
    const LoopVar *vacc[PLAN_MAX_SIDES][MAX_MR], *sacc[PLAN_MAX_SIDES][MAX_MR];
} GemmRun;

/* The end of segment j's rows of B. */
static int64_t seg_end(const Gemm *g, uint32_t j)
{
    return j + 1 < g->nseg ? g->seg[j + 1].k0 : g->k;
}

/* The largest power of two <= max dividing m: row blocks without a remainder. */
uint32_t pick_mr(int64_t m, uint32_t max)
{
    for (uint32_t mr = max; mr > 1; mr /= 2)
        if (m % mr == 0)
            return mr;
    return 1;
}

/* The register tile, MR rows by NV vectors: its MR * NV accumulators, NV vectors of B and one
 * broadcast of A must fit the vector registers, or the accumulators spill to the stack every
 * k step. 16 lanes means AVX-512 and 32 registers (8 x 2; 4 x 4 for fewer rows); 8 or 4 lanes
 * mean AVX2 or SSE and 16 registers (4 x 3 uses all of them; 2 x 4, 1 x 4 for fewer rows). */
void pick_tile(const Sched *s, int64_t m, uint32_t *mr, uint32_t *nv)
{
    if (s->vl >= 16) {
        *mr = pick_mr(m, MAX_MR);
        *nv = *mr >= 8 ? 2 : MAX_NV;
    } else {
        *mr = pick_mr(m, 4);
        *nv = *mr >= 4 ? 3 : MAX_NV;
    }
}

/* ---- epilogues ---- */

/* Digit j (outermost first) of idx over dims[0..n). */
static LoopExpr *digit_of(Sched *s, LoopExpr *idx, const int64_t *dims, uint32_t n, uint32_t j)
{
    int64_t inner = 1;
    for (uint32_t k = j + 1; k < n; k++)
        inner *= dims[k];
    LoopExpr *d = ix_div(s, idx, inner);
    return j > 0 ? ix_mod(s, d, dims[j]) : d;
}

/* The axes whose coordinate does not depend on the column. */
static uint32_t row_axes(const Gemm *g)
{
    uint32_t mask = 0;
    for (uint32_t d = 0; d < g->epi->rank; d++)
        if (!g->cax[d])
            mask |= 1u << d;
    return mask;
}

/* The batch parts of the coordinates (batch index bt), as locals in block. */
static void batch_coords(Sched *s, const Gemm *g, LoopExpr *bt, LoopExpr **bpart, LoopStmt *block)
{
    for (uint32_t d = 0; d < g->epi->rank; d++) {
        bpart[d] = ix_c(s, 0);
        if (g->bdig[d] >= 0)
            bpart[d] = sched_local(
                s, block, "e",
                ix_mulc(s, digit_of(s, bt, g->bdim, g->nbatch, (uint32_t)g->bdig[d]), g->bmul[d]));
    }
}

/* The point of row `row` (columns set per tile); its coordinates go into block. */
static void row_point(Sched *s, const Gemm *g, LoopExpr *const *bpart, LoopExpr *row, uint32_t slot,
                      FusePoint *pt, LoopStmt *block)
{
    const Fuse *f = g->epi;
    memset(pt, 0, sizeof *pt);
    pt->slot = slot;
    for (uint32_t d = 0; d < f->rank; d++) {
        if (g->cax[d] == 1 || g->cax[d] == 3)
            pt->lane_axis = d;
        if (g->cax[d])
            continue;
        LoopExpr *c = bpart[d];
        if (g->rdig[d] >= 0)
            c = sched_local(
                s, block, "e",
                ix_add(s, c, digit_of(s, row, g->rdim, g->nrdig, (uint32_t)g->rdig[d])));
        pt->at[d] = c;
    }
}

/* Row points and hoisted values of the MR rows from row0, and column-reduction
 * accumulators when `col_sides` (spans of `len` columns). */
static void epi_rows(Sched *s, GemmRun *r, LoopExpr *bt, LoopExpr *row0, LoopStmt *block,
                     bool col_sides, int64_t len)
{
    const Gemm *g = r->g;
    Fuse *f = g->epi;
    if (!f)
        return;
    LoopExpr *bpart[FUSE_MAX_RANK];
    batch_coords(s, g, bt, bpart, block);
    for (uint32_t i = 0; i < r->mr; i++) {
        row_point(s, g, bpart, ix_addc(s, row0, i), i, &r->pt[i], block);
        fuse_hoist(s, f, row_axes(g), &r->pt[i], block);
        for (uint32_t k = 0; col_sides && k < f->nside; k++) {
            r->sacc[k][i] =
                decl(s, block, sched_fvar(s, "acc", 1), fuse_side_init(s, &f->side[k], 1));
            r->vacc[k][i] = NULL;
            if (!g->dot && len >= (int64_t)s->vl)
                r->vacc[k][i] = decl(s, block, sched_fvar(s, "vacc", s->vl),
                                     fuse_side_init(s, &f->side[k], s->vl));
        }
    }
}

/* The column reductions' results of the MR rows, stored. */
static void epi_finish_rows(Sched *s, const GemmRun *r, LoopStmt *block)
{
    const Fuse *f = r->g->epi;
    for (uint32_t i = 0; i < r->mr; i++)
        for (uint32_t k = 0; k < f->nside; k++) {
            const FuseSide *sd = &f->side[k];
            LoopExpr *total = lx_var(s->p, r->sacc[k][i]);
            if (r->vacc[k][i])
                total = bin(s, sd->op, lx_reduce(s->p, sd->op, lx_var(s->p, r->vacc[k][i])), total);
            LoopExpr *at = fuse_index(s, &r->pt[i], sd->st, sd->off);
            ls_append(s->p, block, ls_store(s->p, sd->buf, at, fuse_side_finish(s, sd, total)));
        }
}

/* Row i's point at column `col` (x within the image row `at`). */
static FusePoint col_point(const GemmRun *r, uint32_t i, LoopExpr *col, LoopExpr *x, uint32_t lanes,
                           LoopExpr *acc)
{
    FusePoint pt = r->pt[i];
    for (uint32_t d = 0; d < r->g->epi->rank; d++) {
        if (r->g->cax[d] == 1)
            pt.at[d] = col;
        else if (r->g->cax[d] == 2)
            pt.at[d] = r->y;
        else if (r->g->cax[d] == 3)
            pt.at[d] = x;
    }
    pt.lanes = lanes;
    pt.acc = acc;
    return pt;
}

/* The value stored for row i at column col: the sum through the epilogue; column reductions
 * accumulate it. */
static LoopExpr *epi_store(Sched *s, const GemmRun *r, LoopStmt *block, uint32_t i, LoopExpr *col,
                           LoopExpr *x, uint32_t lanes, LoopExpr *val, LoopExpr *ci)
{
    const Gemm *g = r->g;
    Fuse *f = g->epi;
    if (f) {
        FusePoint pt = col_point(r, i, col, x, lanes, val);
        val = fuse_value(s, f, &pt, block);
        if (f->nside && g->c) /* stored and accumulated */
            val = sched_local(s, block, "y", val);
        if (f->grp->order == SIDE_TRAILING)
            for (uint32_t k = 0; k < f->nside; k++) {
                const LoopVar *acc = lanes > 1 ? r->vacc[k][i] : r->sacc[k][i];
                ls_append(
                    s->p, block,
                    ls_assign(s->p, acc, fuse_side_add(s, &f->side[k], lx_var(s->p, acc), val)));
            }
    }
    if (g->c)
        ls_append(s->p, block, ls_store(s->p, g->c, ci, val));
    return val;
}

/* Row reductions (over the MR rows of this block, then over blocks in order) of the values
 * at column col: the first row block stores, the others accumulate into the result. */
static void epi_row_sides(Sched *s, const GemmRun *r, LoopStmt *block, LoopExpr *col, LoopExpr *x,
                          uint32_t lanes, LoopExpr *const *vals)
{
    const Fuse *f = r->g->epi;
    LoopStmt *first = ls_block(s->p), *rest = ls_block(s->p);
    for (uint32_t k = 0; k < f->nside; k++) {
        const FuseSide *sd = &f->side[k];
        LoopExpr *t = vals[0];
        for (uint32_t i = 1; i < r->mr; i++)
            t = fuse_side_add(s, sd, t, vals[i]);
        LoopVar *tv = decl(s, block, sched_fvar(s, "red", lanes), t);
        FusePoint pt = col_point(r, 0, col, x, lanes, NULL);
        LoopExpr *at = fuse_index(s, &pt, sd->st, sd->off);
        ls_append(s->p, first, ls_store(s->p, sd->buf, at, lx_var(s->p, tv)));
        LoopExpr *sum = fuse_side_add(s, sd, fx_load(s, sd->buf, at, lanes), lx_var(s->p, tv));
        ls_append(s->p, rest, ls_store(s->p, sd->buf, at, sum));
    }
    ls_append(s->p, block, ls_if(s->p, lx_cmp(s->p, LCMP_EQ, r->rb, ix_c(s, 0)), first, rest));
}

/* ---- the GEMM ---- */

/* The rows [lo, hi) of B within segment j's rows: [*a, *b). */
static void seg_clip(Sched *s, const Gemm *g, uint32_t j, LoopExpr *lo, LoopExpr *hi, LoopExpr **a,
                     LoopExpr **b)
{
    int64_t k0 = g->seg[j].k0, k1 = seg_end(g, j);
    *a = k0 > 0 ? bin(s, LOP_MAX, lo, ix_c(s, k0)) : lo;
    *b = k1 < g->k ? bin(s, LOP_MIN, hi, ix_c(s, k1)) : hi;
}

/* The terms of segment j that this pass sums: [k0, k1) within the segment's rows. */
static void pass_terms(Sched *s, const GemmRun *r, uint32_t j, LoopExpr **k0, LoopExpr **k1)
{
    const Gemm *g = r->g;
    if (r->pass == KPASS_ALL) {
        *k0 = ix_c(s, g->seg[j].k0);
        *k1 = ix_c(s, seg_end(g, j));
        return;
    }
    seg_clip(s, g, j, r->k0, r->k1, k0, k1);
}

/* The MR x nv fmas of step kv of segment j: acc[i][v] += A[row i, kv] * bv[v]. */
static void gemm_tile_fmas(Sched *s, LoopStmt *kl, const GemmRun *r, LoopVar *kv, uint32_t j,
                           LoopVar *acc[MAX_MR][MAX_NV], LoopVar *const *bv, uint32_t lanes,
                           uint32_t nv)
{
    const Gemm *g = r->g;
    const KSeg *sg = &g->seg[j];
    for (uint32_t i = 0; i < r->mr; i++) {
        LoopExpr *ai = sg->a    ? ix_add(s, r->abase_seg[j], ix_addc(s, ix_v(s, kv), i * sg->lda))
                       : r->apk ? ix_add(s, r->abase, ix_addc(s, ix_mulc(s, ix_v(s, kv), r->mr), i))
                                : ix_add(s, r->abase, ix_addc(s, ix_v(s, kv), i * g->lda));
        const LoopBuffer *abuf = sg->a ? sg->a : r->apk ? r->apk : g->a;
        LoopVar *av =
            decl(s, kl, sched_fvar(s, "a", lanes), fx_bcast(s, fx_load(s, abuf, ai, 1), lanes));
        for (uint32_t v = 0; v < nv; v++)
            ls_append(s->p, kl,
                      ls_assign(s->p, acc[i][v],
                                lx_fma(s->p, lx_var(s->p, av), lx_var(s->p, bv[v]),
                                       lx_var(s->p, acc[i][v]))));
    }
}

/* Where row i's sums so far at column col (`at` in the span) + off wait between k blocks. */
static LoopExpr *sum_index(Sched *s, const GemmRun *r, uint32_t i, LoopExpr *col, LoopExpr *at,
                           int64_t off)
{
    if (r->sums == r->g->c)
        return ix_add(s, r->cbase, ix_addc(s, col, i * r->g->ldc + off));
    return ix_add(s, r->sbase, ix_addc(s, at, i * r->sum_ld + off));
}

/* This tile's share of r->tpf at term j of its k loop (the tile at column `at` of the block):
 * line q = tile * lines + j / stride of the row block's slice, when j is a multiple of stride. */
static void tile_prefetch(Sched *s, LoopStmt *kl, const GemmRun *r, LoopExpr *j, LoopExpr *at)
{
    const TilePrefetch *t = &r->tpf;
    LoopStmt *due = ls_block(s->p);
    ls_append(s->p, kl,
              ls_if(s->p, lx_cmp(s->p, LCMP_EQ, ix_mod(s, j, t->stride), ix_c(s, 0)), due, NULL));
    if (t->lines * t->stride < t->terms) { /* terms past the tile's lines ask for nothing */
        LoopStmt *mine = ls_block(s->p);
        ls_append(s->p, due,
                  ls_if(s->p, lx_cmp(s->p, LCMP_LT, j, ix_c(s, t->lines * t->stride)), mine, NULL));
        due = mine;
    }
    int64_t nr = (int64_t)r->nv * s->vl;
    LoopExpr *q = ix_add(s, ix_mulc(s, ix_div(s, at, nr), t->lines), ix_div(s, j, t->stride));
    LoopExpr *row = bin(s, LOP_MIN, ix_add(s, ix_mulc(s, r->rb, t->per), ix_div(s, q, t->lpr)),
                        ix_c(s, t->rows - 1));
    row = sched_local(s, due, "pfr", row);
    LoopExpr *col = ix_mulc(s, ix_mod(s, q, t->lpr), 16);
    for (uint32_t i = 0; i < t->n; i++) {
        const PrefetchRows *to = &t->to[i];
        LoopStmt *in = due; /* within the target holding the row */
        if (to->k0 > 0) {
            LoopStmt *from = ls_block(s->p);
            LoopExpr *lo = lx_cmp(s->p, LCMP_GE, row, ix_c(s, to->k0));
            ls_append(s->p, in, ls_if(s->p, lo, from, NULL));
            in = from;
        }
        if (to->k1 < t->rows) {
            LoopStmt *below = ls_block(s->p);
            LoopExpr *hi = lx_cmp(s->p, LCMP_LT, row, ix_c(s, to->k1));
            ls_append(s->p, in, ls_if(s->p, hi, below, NULL));
            in = below;
        }
        LoopExpr *at_line = ix_add(s, ix_add(s, to->base, ix_mulc(s, row, to->ld)), col);
        ls_append(s->p, in, ls_prefetch(s->p, to->buf, at_line, 2));
    }
}

/* An MR x nv tile of C at column `at` (of the span; the column is colbase + at): MR * nv
 * accumulators DECLared before the k loop (bias or 0), per k nv vector loads of B's row and MR
 * scalar loads of A broadcast, MR * nv fmas; the stores (through the epilogue) follow the loop.
 * Named locals, not arrays, keep the accumulators in registers. */
static void gemm_tile(Sched *s, LoopStmt *block, LoopExpr *at, uint32_t lanes, uint32_t nv,
                      const void *ctx)
{
    const GemmRun *r = ctx;
    const Gemm *g = r->g;
    LoopExpr *col = ix_add(s, r->colbase, at);
    LoopVar *acc[MAX_MR][MAX_NV];
    /* a partial pass after the first block: the sums so far, from C */
    LoopStmt *reload = r->pass == KPASS_PARTIAL ? ls_block(s->p) : NULL;
    for (uint32_t i = 0; i < r->mr; i++)
        for (uint32_t v = 0; v < nv; v++) {
            LoopExpr *si = r->pass != KPASS_ALL ? sum_index(s, r, i, col, at, v * lanes) : NULL;
            LoopExpr *init = fx_c(s, 0.0f, lanes);
            if (r->pass == KPASS_LAST)
                init = fx_load(s, r->sums, si, lanes);
            else if (g->bias && g->bias_row)
                init = fx_bcast(s, fx_load(s, g->bias, ix_addc(s, r->zbase, i), 1), lanes);
            else if (g->bias && g->scale == 1.0f)
                init = fx_load(s, g->bias, ix_add(s, r->zbase, ix_addc(s, col, v * lanes)), lanes);
            acc[i][v] = decl(s, block, sched_fvar(s, "acc", lanes), init);
            if (reload)
                ls_append(s->p, reload, ls_assign(s->p, acc[i][v], fx_load(s, r->sums, si, lanes)));
        }
    if (reload)
        ls_append(s->p, block, ls_if(s->p, lx_cmp(s->p, LCMP_NE, r->kb, ix_c(s, 0)), reload, NULL));
    bool packed = r->bpk && nv == r->nv && lanes == s->vl; /* a whole panel */
    int64_t nr = (int64_t)r->nv * s->vl;
    /* row k of the panel at pb + k * nr: panel p holds [k0, k1) from p * nr * kc, or all k
     * from p * nr * K */
    LoopExpr *panel = NULL;
    if (packed && r->weight_panels)
        panel = sched_local(s, block, "pb", ix_mulc(s, at, g->k));
    else if (packed)
        panel =
            sched_local(s, block, "pb", ix_add(s, ix_mulc(s, at, r->kc), ix_mulc(s, r->k0, -nr)));
    if (g->pro && !packed) { /* the columns past the whole panels, packed as [k][rem] */
        int64_t whole = g->img_w / nr * nr, rem = g->img_w - whole;
        LoopVar *kv = sched_ivar(s, "k");
        LoopStmt *kl = sched_for(s, block, kv, ix_c(s, 0), ix_c(s, g->k), 1);
        LoopExpr *brow = ix_add(s, ix_addc(s, ix_mulc(s, ix_v(s, kv), rem), whole * g->k),
                                ix_addc(s, at, -whole));
        LoopVar *bv[MAX_NV];
        for (uint32_t v = 0; v < nv; v++)
            bv[v] = decl(s, kl, sched_fvar(s, "b", lanes),
                         fx_load(s, r->bpk, ix_addc(s, brow, v * lanes), lanes));
        gemm_tile_fmas(s, kl, r, kv, 0, acc, bv, lanes, nv);
    }
    uint32_t loops = packed ? 1 : g->pro ? 0 : g->nseg;
    for (uint32_t j = 0; j < loops; j++) { /* a k loop per segment of B */
        LoopExpr *k0 = r->k0, *k1 = r->k1;
        if (!packed)
            pass_terms(s, r, j, &k0, &k1);
        LoopVar *kv = sched_ivar(s, "k");
        LoopStmt *kl = sched_for(s, block, kv, k0, k1, 1);
        LoopExpr *brow = packed ? ix_add(s, panel, ix_mulc(s, ix_v(s, kv), nr))
                                : ix_add(s, r->bbase[j], ix_mulc(s, ix_v(s, kv), g->ldb));
        LoopVar *bv[MAX_NV];
        for (uint32_t v = 0; v < nv; v++) {
            LoopExpr *at_v =
                packed ? ix_addc(s, brow, v * lanes) : ix_add(s, brow, ix_addc(s, col, v * lanes));
            bv[v] = decl(s, kl, sched_fvar(s, "b", lanes),
                         fx_load(s, packed ? r->bpk : g->seg[j].buf, at_v, lanes));
        }
        FUSE_ASSERT(!packed || !g->seg[j].a);
        gemm_tile_fmas(s, kl, r, kv, j, acc, bv, lanes, nv);
        if (packed && r->tpf.n)
            tile_prefetch(s, kl, r, ix_add(s, ix_v(s, kv), ix_mulc(s, k0, -1)), at);
    }
    if (r->pass == KPASS_PARTIAL) { /* the sums so far, for the next block */
        for (uint32_t i = 0; i < r->mr; i++)
            for (uint32_t v = 0; v < nv; v++)
                ls_append(s->p, block,
                          ls_store(s->p, r->sums, sum_index(s, r, i, col, at, v * lanes),
                                   lx_var(s->p, acc[i][v])));
        return;
    }
    LoopExpr *vals[MAX_NV][MAX_MR];
    for (uint32_t i = 0; i < r->mr; i++)
        for (uint32_t v = 0; v < nv; v++) {
            LoopExpr *val = lx_var(s->p, acc[i][v]);
            if (g->scale != 1.0f)
                val = bin(s, LOP_MUL, val, fx_c(s, g->scale, lanes));
            if (g->bias && !g->bias_row && g->scale != 1.0f)
                val = bin(
                    s, LOP_ADD, val,
                    fx_load(s, g->bias, ix_add(s, r->zbase, ix_addc(s, col, v * lanes)), lanes));
            LoopExpr *ci = ix_add(s, r->cbase, ix_addc(s, col, i * g->ldc + v * lanes));
            vals[v][i] = epi_store(s, r, block, i, ix_addc(s, col, v * lanes),
                                   ix_addc(s, at, v * lanes), lanes, val, ci);
        }
    if (g->epi && g->epi->grp->order == SIDE_AXIS)
        for (uint32_t v = 0; v < nv; v++)
            epi_row_sides(s, r, block, ix_addc(s, col, v * lanes), ix_addc(s, at, v * lanes), lanes,
                          vals[v]);
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

/* Where row k of B would be for k = 0 in segment j of batch bt: row k at this + k * ldb. */
static LoopExpr *seg_base(Sched *s, const Gemm *g, uint32_t j, LoopExpr *bt)
{
    const KSeg *sg = &g->seg[j];
    return ix_addc(s, batch_offset(s, g, bt, sg->sb, sg->off), -sg->k0 * g->ldb);
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
    FUSE_ASSERT(g->nseg == 1 && !g->seg[0].a); /* B^T rows and A rows are contiguous in k */
    LoopVar *bt =
        decl(s, block, sched_ivar(s, "bt"), ix_add(s, r->bbase[0], ix_mulc(s, n, g->ldb)));
    for (int pass = 0; pass < 2; pass++) {
        int64_t lo = pass ? kvec : 0, hi = pass ? g->k : kvec;
        uint32_t lanes = pass ? 1 : s->vl;
        if (hi <= lo)
            continue;
        LoopVar *kv = sched_ivar(s, "k");
        LoopStmt *kl = sched_for(s, block, kv, ix_c(s, lo), ix_c(s, hi), lanes);
        LoopVar *bv = decl(s, kl, sched_fvar(s, "b", lanes),
                           fx_load(s, g->seg[0].buf, ix_add(s, ix_v(s, bt), ix_v(s, kv)), lanes));
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
        epi_store(s, r, block, i, n, n, 1, val, ci);
    }
}

/* The columns of one row block: all of them in spans (image row by image row when img_w). */
static void gemm_columns(Sched *s, LoopStmt *body, GemmRun *r, uint32_t nv)
{
    const Gemm *g = r->g;
    if (!g->img_w) {
        sched_span(s, body, 0, g->n, nv, gemm_tile, r, "n");
        return;
    }
    LoopVar *y = sched_ivar(s, "y");
    LoopStmt *yl = sched_for(s, body, y, ix_c(s, 0), ix_c(s, g->n / g->img_w), 1);
    r->y = ix_v(s, y);
    r->colbase = sched_local(s, yl, "col", ix_mulc(s, r->y, g->img_w));
    sched_span(s, yl, 0, g->img_w, nv, gemm_tile, r, "x");
}

typedef struct DivCtx {
    const GemmRun *r;
} DivCtx;

/* A mean over rows, finished: the accumulated sums of the block's columns divided. */
static void row_mean_body(Sched *s, LoopStmt *block, LoopExpr *at, uint32_t lanes, uint32_t nv,
                          const void *ctx)
{
    (void)nv;
    const GemmRun *r = ((const DivCtx *)ctx)->r;
    const Fuse *f = r->g->epi;
    LoopExpr *col = ix_add(s, r->colbase, at);
    FusePoint pt = col_point(r, 0, col, at, lanes, NULL);
    for (uint32_t k = 0; k < f->nside; k++) {
        const FuseSide *sd = &f->side[k];
        if (!sd->count)
            continue;
        LoopExpr *i = fuse_index(s, &pt, sd->st, sd->off);
        ls_append(
            s->p, block,
            ls_store(s->p, sd->buf, i, fuse_side_finish(s, sd, fx_load(s, sd->buf, i, lanes))));
    }
}

/* Columns [0, len) of a column block through `body` (both gemm_tile and row_mean_body). */
static void block_span(Sched *s, LoopStmt *block, const GemmRun *r, int64_t width, int64_t last,
                       LoopExpr *cbk, int64_t ncb, uint32_t nv, SpanBody body, const void *ctx)
{
    if (last == width) {
        sched_span(s, block, 0, width, nv, body, ctx, "n");
        return;
    }
    (void)r;
    LoopStmt *full = ls_block(s->p), *part = ls_block(s->p);
    ls_append(s->p, block, ls_if(s->p, lx_cmp(s->p, LCMP_LT, cbk, ix_c(s, ncb - 1)), full, part));
    sched_span(s, full, 0, width, nv, body, ctx, "n");
    sched_span(s, part, 0, last, nv, body, ctx, "n");
}

/* Panels [0, np) of the column block, the pass's rows [k0, k1) of B, into r->bpk: k outer,
 * so that each row of B is read once, contiguously. */
static void pack_panels(Sched *s, LoopStmt *block, const GemmRun *r, int64_t np)
{
    const Gemm *g = r->g;
    if (np <= 0)
        return;
    int64_t nr = (int64_t)r->nv * s->vl;
    for (uint32_t sg = 0; sg < g->nseg; sg++) {
        LoopExpr *k0, *k1;
        pass_terms(s, r, sg, &k0, &k1);
        LoopVar *kv = sched_ivar(s, "k");
        LoopStmt *kl = sched_for(s, block, kv, k0, k1, 1);
        LoopExpr *src = sched_local(
            s, kl, "src",
            ix_add(s, ix_add(s, r->bbase[sg], ix_mulc(s, ix_v(s, kv), g->ldb)), r->colbase));
        LoopExpr *dst = sched_local(s, kl, "dst",
                                    ix_mulc(s, ix_add(s, ix_v(s, kv), ix_mulc(s, r->k0, -1)), nr));
        LoopVar *j = sched_ivar(s, "j");
        LoopStmt *jl = sched_for(s, kl, j, ix_c(s, 0), ix_c(s, np), 1);
        for (uint32_t v = 0; v < r->nv; v++) {
            LoopExpr *si = ix_add(s, src, ix_addc(s, ix_mulc(s, ix_v(s, j), nr), v * s->vl));
            LoopExpr *di =
                ix_add(s, dst, ix_addc(s, ix_mulc(s, ix_v(s, j), nr * r->kc), v * s->vl));
            ls_append(s->p, jl, ls_store(s->p, r->bpk, di, fx_load(s, g->seg[sg].buf, si, s->vl)));
        }
    }
}

/* The whole panels of this column block (the last one may be partial) into thread scratch. */
static void pack_b(Sched *s, LoopStmt *block, const GemmRun *r, int64_t width, int64_t last,
                   LoopExpr *cbk, int64_t ncb)
{
    int64_t nr = (int64_t)r->nv * s->vl;
    if (last == width) {
        pack_panels(s, block, r, width / nr);
        return;
    }
    LoopStmt *full = ls_block(s->p), *part = ls_block(s->p);
    ls_append(s->p, block, ls_if(s->p, lx_cmp(s->p, LCMP_LT, cbk, ix_c(s, ncb - 1)), full, part));
    pack_panels(s, full, r, width / nr);
    pack_panels(s, part, r, last / nr);
}

/* The column block (image row r->y of batch bt) computed from the prologue into r->bpk: per
 * input channel k, the prologue's upsampled rows built once, its whole panels (as pack_panels
 * lays them out) and the rest as [k][rem] after them. */
static void pack_prologue(Sched *s, LoopStmt *block, const GemmRun *r, LoopExpr *bt)
{
    const Gemm *g = r->g;
    Fuse *f = g->pro;
    int64_t nr = (int64_t)r->nv * s->vl, width = g->img_w, np = width / nr, rem = width - np * nr;
    LoopVar *kv = sched_ivar(s, "k");
    LoopStmt *kl = sched_for(s, block, kv, ix_c(s, 0), ix_c(s, g->k), 1);
    FusePoint pt;
    memset(&pt, 0, sizeof pt);
    pt.at[0] = bt;
    pt.at[1] = ix_v(s, kv);
    pt.at[2] = r->y;
    pt.lane_axis = 3;
    fuse_build_rows(s, f, &pt, 1, 3, width, kl);
    if (np > 0) {
        LoopExpr *dst = sched_local(s, kl, "dst", ix_mulc(s, ix_v(s, kv), nr));
        LoopVar *j = sched_ivar(s, "j");
        LoopStmt *jl = sched_for(s, kl, j, ix_c(s, 0), ix_c(s, np), 1);
        for (uint32_t v = 0; v < r->nv; v++) {
            FusePoint at = pt;
            at.at[3] = ix_addc(s, ix_mulc(s, ix_v(s, j), nr), v * s->vl);
            at.lanes = s->vl;
            LoopExpr *di = ix_add(s, dst, ix_addc(s, ix_mulc(s, ix_v(s, j), nr * g->k), v * s->vl));
            ls_append(s->p, jl, ls_store(s->p, r->bpk, di, fuse_value(s, f, &at, jl)));
        }
    }
    LoopExpr *rest =
        rem ? sched_local(s, kl, "rest", ix_addc(s, ix_mulc(s, ix_v(s, kv), rem), np * nr * g->k))
            : NULL;
    for (int64_t c = 0; c < rem;) {
        uint32_t lanes = rem - c >= (int64_t)s->vl ? s->vl : 1;
        FusePoint at = pt;
        at.at[3] = ix_c(s, np * nr + c);
        at.lanes = lanes;
        ls_append(s->p, kl, ls_store(s->p, r->bpk, ix_addc(s, rest, c), fuse_value(s, f, &at, kl)));
        c += lanes;
    }
    fuse_unbuild(f);
}

/* Whether a prologue's leaf is a full-size operand read along image rows (channel and row
 * strides, contiguous x): what the prefetch of the next image row asks for. */
static bool row_leaf(const TNode *t)
{
    return t->kind == T_LEAF && t->st[3] == 1 && t->st[1] != 0 && t->st[2] != 0;
}

/* Software prefetch (into L2) of the prologue's full-size operands at the next image row
 * while row block rb runs: channels [rb * per, (rb + 1) * per), so that the next block's
 * rows are asked for once, spread over the row blocks (as prefetch_next does for B). */
static void prefetch_prologue(Sched *s, LoopStmt *block, const GemmRun *r, LoopExpr *bt,
                              int64_t mblk)
{
    const Gemm *g = r->g;
    const Fuse *f = g->pro;
    int64_t per = (g->k + mblk - 1) / mblk;
    LoopStmt *then = ls_block(s->p);
    ls_append(s->p, block,
              ls_if(s->p, lx_cmp(s->p, LCMP_LT, r->y, ix_c(s, f->dim[2] - 1)), then, NULL));
    LoopExpr *lo = ix_mulc(s, r->rb, per);
    LoopExpr *hi = bin(s, LOP_MIN, ix_addc(s, lo, per), ix_c(s, g->k));
    for (uint32_t i = 0; i < f->nnodes; i++) {
        const TNode *t = f->nodes[i];
        if (!row_leaf(t))
            continue;
        LoopVar *kv = sched_ivar(s, "k");
        LoopStmt *kl = sched_for(s, then, kv, lo, hi, 1);
        LoopExpr *row = ix_add(s, ix_mulc(s, bt, t->st[0]),
                               ix_add(s, ix_mulc(s, ix_v(s, kv), t->st[1]),
                                      ix_mulc(s, ix_addc(s, r->y, 1), t->st[2])));
        row = sched_local(s, kl, "pf", ix_addc(s, row, t->off));
        LoopVar *c = sched_ivar(s, "c");
        LoopStmt *cl = sched_for(s, kl, c, ix_c(s, 0), ix_c(s, f->dim[3]), 16);
        ls_append(s->p, cl, ls_prefetch(s->p, t->buf, ix_add(s, row, ix_v(s, c)), 2));
    }
}

/* Software prefetch (into L2) of the rows of B the next pass packs, while row block rb runs:
 * rows [from, to) of columns [col, col + width) (width: LoopExpr), a slice of them per row
 * block, so that they are asked for once, spread over the row blocks. */
static void prefetch_rows(Sched *s, LoopStmt *block, const GemmRun *r, LoopExpr *from, LoopExpr *to,
                          LoopExpr *col, LoopExpr *width, int64_t mblk)
{
    const Gemm *g = r->g;
    int64_t per = (r->kc + mblk - 1) / mblk;
    LoopExpr *lo = ix_add(s, from, ix_mulc(s, r->rb, per));
    LoopExpr *hi = bin(s, LOP_MIN, ix_addc(s, lo, per), to);
    for (uint32_t sg = 0; sg < g->nseg; sg++) { /* rows [lo, hi) within each segment */
        LoopExpr *a, *b;
        seg_clip(s, g, sg, lo, hi, &a, &b);
        LoopVar *kv = sched_ivar(s, "k");
        LoopStmt *kl = sched_for(s, block, kv, a, b, 1);
        LoopExpr *row = sched_local(
            s, kl, "pf", ix_add(s, ix_add(s, r->bbase[sg], ix_mulc(s, ix_v(s, kv), g->ldb)), col));
        LoopVar *c = sched_ivar(s, "c");
        LoopStmt *cl = sched_for(s, kl, c, ix_c(s, 0), width, 16);
        ls_append(s->p, cl, ls_prefetch(s->p, g->seg[sg].buf, ix_add(s, row, ix_v(s, c)), 2));
    }
}

/* The column blocks [0, result) of a batch whose next block is a whole one (of width columns;
 * the last block has `last`). */
static int64_t with_whole_next(int64_t width, int64_t last, int64_t ncb)
{
    return ncb - 1 - (last != width);
}

/* The prefetch of the last (or only) pass: the first k block of the next column block, when
 * it is a whole one of the same batch. */
static void prefetch_next(Sched *s, LoopStmt *block, const GemmRun *r, int64_t width, int64_t last,
                          LoopExpr *cbk, int64_t ncb, int64_t mblk)
{
    int64_t upto = with_whole_next(width, last, ncb);
    if (upto <= 0)
        return;
    LoopStmt *then = ls_block(s->p);
    ls_append(s->p, block, ls_if(s->p, lx_cmp(s->p, LCMP_LT, cbk, ix_c(s, upto)), then, NULL));
    prefetch_rows(s, then, r, ix_c(s, 0), ix_c(s, r->kc), ix_addc(s, r->colbase, width),
                  ix_c(s, width), mblk);
}

/* Sets r->tpf for the last (or only) pass when every row block has whole panels to spread it
 * over: B's rows (per part) in the next column block, or the prologue's operands at the next
 * image row; else it stays off and prefetch_next or prefetch_prologue asks in one burst. */
static void plan_tile_prefetch(Sched *s, GemmRun *r, LoopStmt *body, LoopExpr *bt, int64_t width,
                               int64_t last, LoopExpr *cbk, int64_t ncb, int64_t mblk)
{
    const Gemm *g = r->g;
    int64_t nr = (int64_t)r->nv * s->vl, np = last / nr;
    int64_t upto = with_whole_next(width, last, ncb);
    int64_t nkb = (g->k + r->kc - 1) / r->kc, terms = g->k - (nkb - 1) * r->kc;
    TilePrefetch *t = &r->tpf;
    if (np == 0)
        return;
    if (g->pro) { /* the full-size leaves at the next image row (the last row: its own again) */
        const Fuse *f = g->pro;
        LoopExpr *y = bin(s, LOP_MIN, ix_addc(s, r->y, 1), ix_c(s, f->dim[2] - 1));
        for (uint32_t i = 0; i < f->nnodes; i++) {
            const TNode *l = f->nodes[i];
            if (!row_leaf(l))
                continue;
            if (t->n == FUSE_MAX_CONCAT_READ) {
                t->n = 0;
                return;
            }
            LoopExpr *row0 = ix_add(s, ix_mulc(s, bt, l->st[0]), ix_mulc(s, y, l->st[2]));
            t->to[t->n++] = (PrefetchRows){
                l->buf, sched_local(s, body, "pfb", ix_addc(s, row0, l->off)), l->st[1], 0, g->k};
        }
    } else if (upto > 0) { /* blocks from upto on ask for block upto's rows (whole) again */
        LoopExpr *next = ix_mulc(s, bin(s, LOP_MIN, ix_addc(s, cbk, 1), ix_c(s, upto)), width);
        for (uint32_t sg = 0; sg < g->nseg; sg++)
            t->to[t->n++] = (PrefetchRows){
                g->seg[sg].buf, sched_local(s, body, "pfb", ix_add(s, r->bbase[sg], next)), g->ldb,
                g->seg[sg].k0, seg_end(g, sg)};
    }
    t->per = (r->kc + mblk - 1) / mblk;
    t->lpr = (width + 15) / 16;
    t->lines = (t->per * t->lpr + np - 1) / np;
    t->stride = terms / t->lines > 1 ? terms / t->lines : 1;
    t->rows = r->kc;
    t->terms = terms;
}

/* The column reductions of the MR rows over this column block, unfinished, into partial[k] at
 * [block][row] (block = batch * ncb + column block, of nblocks): a reduction over all columns
 * would be split across threads, so each column block keeps its own, and finish_partials
 * combines them in block order (the result does not depend on the thread count). */
static void store_partials(Sched *s, const GemmRun *r, LoopStmt *block, const LoopBuffer **partial,
                           LoopExpr *blk, int64_t nblocks, LoopExpr *row0)
{
    const Gemm *g = r->g;
    const Fuse *f = g->epi;
    LoopExpr *at = sched_local(s, block, "pp", ix_add(s, ix_mulc(s, blk, g->m), row0));
    for (uint32_t k = 0; k < f->nside; k++) {
        const FuseSide *sd = &f->side[k];
        partial[k] = sched_scratch(s, "partial", sd->n->id, nblocks * g->m);
        for (uint32_t i = 0; i < r->mr; i++) {
            LoopExpr *total = lx_var(s->p, r->sacc[k][i]);
            if (r->vacc[k][i])
                total = bin(s, sd->op, lx_reduce(s->p, sd->op, lx_var(s->p, r->vacc[k][i])), total);
            ls_append(s->p, block, ls_store(s->p, partial[k], ix_addc(s, at, i), total));
        }
    }
}

/* One more kernel: each row's column reductions combined over the column blocks in order,
 * finished (a mean divides) and stored where the side reduction's value goes. */
static void finish_partials(Sched *s, const Gemm *g, const LoopBuffer *const *partial,
                            int64_t batches, int64_t ncb)
{
    const Fuse *f = g->epi;
    sched_kernel(s, s->g->nodes[f->grp->anchor], "pool");
    LoopVar *t = sched_ivar(s, "t");
    LoopStmt *body = sched_par(s, t, batches * g->m);
    LoopExpr *row = sched_local(s, body, "row", ix_mod(s, ix_v(s, t), g->m));
    LoopExpr *bt = sched_local(s, body, "bt", ix_div(s, ix_v(s, t), g->m));
    LoopExpr *bpart[FUSE_MAX_RANK];
    batch_coords(s, g, bt, bpart, body);
    FusePoint pt;
    row_point(s, g, bpart, row, 0, &pt, body);
    for (uint32_t k = 0; k < f->nside; k++) {
        const FuseSide *sd = &f->side[k];
        LoopVar *acc = decl(s, body, sched_fvar(s, "acc", 1), fuse_side_init(s, sd, 1));
        LoopVar *cb = sched_ivar(s, "cb");
        LoopStmt *cl = sched_for(s, body, cb, ix_c(s, 0), ix_c(s, ncb), 1);
        LoopExpr *at =
            ix_add(s, ix_mulc(s, ix_add(s, ix_mulc(s, bt, ncb), ix_v(s, cb)), g->m), row);
        ls_append(
            s->p, cl,
            ls_assign(s->p, acc, bin(s, sd->op, lx_var(s->p, acc), fx_load(s, partial[k], at, 1))));
        LoopExpr *dst = fuse_index(s, &pt, sd->st, sd->off);
        ls_append(s->p, body,
                  ls_store(s->p, sd->buf, dst, fuse_side_finish(s, sd, lx_var(s->p, acc))));
    }
}

/* Columns per block: an image row when the epilogue needs rows, else COL_BLOCK rounded down to
 * whole panels of NV vectors (a remainder would run a narrower, slower tile in every block). */
static int64_t block_width(const Sched *s, const Gemm *g, uint32_t nv)
{
    if (g->img_w)
        return g->img_w;
    int64_t nr = (int64_t)nv * s->vl, width = COL_BLOCK >= nr ? COL_BLOCK / nr * nr : COL_BLOCK;
    return g->n < width ? g->n : width;
}

/* The loop over row blocks [lo, hi) (rows row0 = rb * MR on), with A's, C's and the bias's
 * bases for them given those of the batch (bases). */
static LoopStmt *row_blocks(Sched *s, LoopStmt *body, GemmRun *r, LoopExpr *lo, LoopExpr *hi,
                            LoopExpr *const *bases, LoopExpr **row0)
{
    const Gemm *g = r->g;
    LoopVar *rb = sched_ivar(s, "rb");
    LoopStmt *rl = sched_for(s, body, rb, lo, hi, 1);
    r->rb = ix_v(s, rb);
    *row0 = ix_mulc(s, r->rb, r->mr);
    r->abase = sched_local(s, rl, "ar", ix_add(s, bases[0], ix_mulc(s, *row0, g->lda)));
    r->cbase = sched_local(s, rl, "cr", ix_add(s, bases[1], ix_mulc(s, *row0, g->ldc)));
    if (g->bias)
        r->zbase = sched_local(s, rl, "zr", g->bias_row ? ix_add(s, bases[2], *row0) : bases[2]);
    if (r->sums && r->sums != g->c)
        r->sbase = sched_local(s, rl, "sr", ix_mulc(s, *row0, r->sum_ld));
    return rl;
}

/* The loop over the k blocks before the last (r->kc terms each), r set for its passes; the
 * caller emits a pass into the returned body, then calls begin_last_pass. */
static LoopStmt *begin_partial_passes(Sched *s, LoopStmt *body, GemmRun *r)
{
    int64_t nkb = (r->g->k + r->kc - 1) / r->kc;
    LoopVar *kb = sched_ivar(s, "kb");
    LoopStmt *kl = sched_for(s, body, kb, ix_c(s, 0), ix_c(s, nkb - 1), 1);
    r->pass = KPASS_PARTIAL;
    r->kb = ix_v(s, kb);
    r->k0 = sched_local(s, kl, "k0", ix_mulc(s, r->kb, r->kc));
    r->k1 = sched_local(s, kl, "k1", ix_addc(s, r->k0, r->kc));
    return kl;
}

/* r set for the last k block's pass, which goes through the epilogue. */
static void begin_last_pass(Sched *s, GemmRun *r)
{
    int64_t nkb = (r->g->k + r->kc - 1) / r->kc;
    r->pass = KPASS_LAST;
    r->k0 = ix_c(s, (nkb - 1) * r->kc);
    r->k1 = ix_c(s, r->g->k);
}

/* k in nearly equal blocks of at most cap terms: the terms per block. */
static int64_t even_k_blocks(int64_t k, int64_t cap)
{
    int64_t nkb = (k + cap - 1) / cap;
    return (k + nkb - 1) / nkb;
}

/* The k blocks before the last of a column block (k_block): each packed, then every row
 * block's tiles sum it into C (the first from the bias), while the next block's rows of B
 * are prefetched. bases: A's, C's and the bias's for the batch. */
static void partial_passes(Sched *s, LoopStmt *body, GemmRun *r, LoopExpr *const *bases,
                           int64_t width, int64_t last, LoopExpr *cbk, int64_t ncb, int64_t mblk)
{
    const Gemm *g = r->g;
    LoopStmt *kl = begin_partial_passes(s, body, r);
    pack_b(s, kl, r, width, last, cbk, ncb);
    LoopExpr *row0;
    LoopStmt *rl = row_blocks(s, kl, r, ix_c(s, 0), ix_c(s, mblk), bases, &row0);
    LoopExpr *next_end = bin(s, LOP_MIN, ix_addc(s, r->k1, r->kc), ix_c(s, g->k));
    /* the same columns' next k block: a partial last block has fewer columns */
    LoopExpr *cols = last == width ? ix_c(s, width)
                                   : bin(s, LOP_MIN, ix_c(s, width),
                                         ix_addc(s, ix_mulc(s, r->colbase, -1), g->n));
    prefetch_rows(s, rl, r, r->k1, next_end, r->colbase, cols, mblk);
    block_span(s, rl, r, width, last, cbk, ncb, r->nv, gemm_tile, r);
}

/* Parallel over (batch, column block), the row blocks in order inside: a column block of B
 * stays in cache for all of them, and row reductions are accumulated in a fixed order. */
static void gemm_cols(Sched *s, const Gemm *g, GemmRun *r, uint32_t nv, int64_t batches,
                      int64_t mblk)
{
    int64_t width = block_width(s, g, nv);
    int64_t ncb = (g->n + width - 1) / width, last = g->n - (ncb - 1) * width;
    LoopVar *t = sched_ivar(s, "t");
    LoopStmt *body = sched_par(s, t, batches * ncb);
    LoopExpr *cbk = ix_mod(s, ix_v(s, t), ncb), *bt = ix_div(s, ix_v(s, t), ncb);
    LoopExpr *ab = sched_local(s, body, "ab", batch_offset(s, g, bt, g->sa, g->a_off));
    LoopExpr *cb = sched_local(s, body, "cb", batch_offset(s, g, bt, g->sc, g->c_off));
    LoopExpr *zb =
        g->bias ? sched_local(s, body, "zb", batch_offset(s, g, bt, g->sbias, g->bias_off)) : NULL;
    LoopExpr *bases[3] = {ab, cb, zb};
    for (uint32_t j = 0; j < g->nseg; j++) {
        FUSE_ASSERT(!g->seg[j].a); /* A is a weight here */
        r->bbase[j] = sched_local(s, body, "bb", seg_base(s, g, j, bt));
    }
    if (g->img_w)
        r->y = sched_local(s, body, "y", cbk);
    r->colbase = sched_local(s, body, "col", ix_mulc(s, cbk, width));
    int64_t nkb = (g->k + r->kc - 1) / r->kc;
    if (nkb > 1) {
        partial_passes(s, body, r, bases, width, last, cbk, ncb, mblk);
        begin_last_pass(s, r);
    }
    if (g->pro)
        pack_prologue(s, body, r, bt);
    else if (r->bpk)
        pack_b(s, body, r, width, last, cbk, ncb);
    if (r->bpk)
        plan_tile_prefetch(s, r, body, bt, width, last, cbk, ncb, mblk);
    LoopExpr *row0;
    LoopStmt *rl = row_blocks(s, body, r, ix_c(s, 0), ix_c(s, mblk), bases, &row0);
    bool col_sides = g->epi && g->epi->grp->order == SIDE_TRAILING;
    epi_rows(s, r, bt, row0, rl, col_sides, width);
    if (g->pro && !r->tpf.n)
        prefetch_prologue(s, rl, r, bt, mblk);
    else if (r->bpk && !r->tpf.n)
        prefetch_next(s, rl, r, width, last, cbk, ncb, mblk);
    if (g->epi && g->img_w && !s->prepare) { /* upsamples of this image row, per channel */
        FusePoint rows[MAX_MR];
        uint32_t xax = 0;
        for (uint32_t d = 0; d < g->epi->rank; d++)
            if (g->cax[d] == 3)
                xax = d;
        for (uint32_t i = 0; i < r->mr; i++)
            rows[i] = col_point(r, i, NULL, NULL, 1, NULL);
        fuse_build_rows(s, g->epi, rows, r->mr, xax, g->img_w, rl);
    }
    block_span(s, rl, r, width, last, cbk, ncb, nv, gemm_tile, r);
    const LoopBuffer *partial[PLAN_MAX_SIDES];
    if (col_sides)
        store_partials(s, r, rl, partial, ix_add(s, ix_mulc(s, bt, ncb), cbk), ncb * batches, row0);
    if (g->epi) {
        fuse_unbuild(g->epi);
        fuse_unhoist(g->epi);
        bool means = false;
        for (uint32_t k = 0; k < g->epi->nside; k++)
            means = means || g->epi->side[k].count;
        if (g->epi->grp->order == SIDE_AXIS && means) {
            LoopExpr *bpart[FUSE_MAX_RANK];
            batch_coords(s, g, bt, bpart, body);
            row_point(s, g, bpart, ix_c(s, 0), 0, &r->pt[0], body);
            DivCtx dc = {r};
            block_span(s, body, r, width, last, cbk, ncb, 1, row_mean_body, &dc);
        }
    }
    if (col_sides)
        finish_partials(s, g, partial, batches, ncb);
}

/* A packed as [M/MR][K][MR] per M x K matrix at create time, so that the micro-kernel reads
 * one contiguous stream of weights: for a prepared A (a weight) whose matrices are contiguous
 * (lda = K) at multiples of M * K. NULL when A does not qualify. */
static const LoopBuffer *pack_a(Sched *s, const Gemm *g, uint32_t mr)
{
    const LoopBuffer *a = g->a;
    int64_t mk = g->m * g->k;
    if (s->prepare || mr < 2 || g->seg[0].a || a->kind != BUF_PREPARED || g->lda != g->k ||
        a->elems % mk || g->a_off % mk)
        return NULL;
    for (uint32_t d = 0; d < g->nbatch; d++)
        if (g->sa[d] % mk)
            return NULL;
    char name[300], comment[400];
    snprintf(name, sizeof name, "%s_mr%u", a->name, mr);
    snprintf(comment, sizeof comment, "%s packed as [%lld][%lld][%u] per matrix", a->name,
             (long long)(g->m / mr), (long long)g->k, mr);
    SchedSave save;
    const LoopBuffer *pk = sched_prepare_begin(s, name, comment, a->elems, &save);
    int64_t blocks = a->elems / (mr * g->k);
    LoopVar *bv = sched_ivar(s, "blk");
    LoopStmt *bl = sched_for(s, s->k->body, bv, ix_c(s, 0), ix_c(s, blocks), 1);
    LoopExpr *base = sched_local(s, bl, "base", ix_mulc(s, ix_v(s, bv), mr * g->k));
    LoopVar *kv = sched_ivar(s, "k");
    LoopStmt *kl = sched_for(s, bl, kv, ix_c(s, 0), ix_c(s, g->k), 1);
    for (uint32_t i = 0; i < mr; i++) {
        LoopExpr *di = ix_add(s, base, ix_addc(s, ix_mulc(s, ix_v(s, kv), mr), i));
        LoopExpr *si = ix_add(s, base, ix_addc(s, ix_v(s, kv), i * g->k));
        ls_append(s->p, kl, ls_store(s->p, pk, di, fx_load(s, a, si, 1)));
    }
    sched_prepare_end(s, &save);
    return pk;
}

/* The terms per k block of a GEMM packing column blocks of `width`: all k when a block of
 * B holds them (at most KC_MAX rows, PACK_B_BYTES), else k in nearly equal blocks that do.
 * The blocks run in passes (partial_passes): each tile's sums are stored (into C, or thread
 * scratch of the block's size without one) and reloaded as they are, so the terms are added
 * in the same order and the result does not change. Not for a prologue (its block is one
 * image row of all k). */
static int64_t k_block(const Gemm *g, int64_t width)
{
    int64_t cap = PACK_B_BYTES / (4 * width);
    if (cap > KC_MAX)
        cap = KC_MAX;
    if (g->k <= cap || g->pro || cap < 16 || (!g->c && g->m * width * 4 > PACK_B_BYTES))
        return g->k;
    return even_k_blocks(g->k, cap);
}

/* Whether a GEMM of m rows, k terms and column blocks of `width` packs `cols` columns of each
 * block of B. Packing a block costs about as much as 2 row blocks' use of it (BAM's 128 -> 8
 * reduction ran 0.54 -> 0.40 ms unpacked); from 4 row blocks on it pays. */
static bool packs_block(const Sched *s, int64_t m, int64_t k, int64_t width, int64_t cols)
{
    uint32_t mr, nv;
    pick_tile(s, m, &mr, &nv);
    int64_t nr = (int64_t)nv * s->vl;
    return m / mr >= 4 && width >= nr && k * cols * 4 <= PACK_B_BYTES;
}

/* Whether B is a weight read as panels packed at create time (pack_b_weight), each panel
 * swept by the row blocks of a chunk while it stays in L1 (gemm_weight_panels): B prepared,
 * one segment, no batch strides, whole panels, no side reductions in the epilogue (they
 * accumulate over a row block's columns in order). */
static bool uses_weight_panels(const Sched *s, const Gemm *g, const GemmRun *r, int64_t mblk)
{
    const KSeg *sg = &g->seg[0];
    if (s->prepare || g->dot || g->cols_outer || g->nseg != 1 || sg->a || g->img_w ||
        sg->buf->kind != BUF_PREPARED || g->n < (int64_t)r->nv * s->vl || mblk < 2 || !g->c ||
        (g->epi && g->epi->nside))
        return false;
    for (uint32_t d = 0; d < g->nbatch; d++)
        if (sg->sb[d])
            return false;
    return true;
}

/* B's whole panels as [N/NR][K][NR], at create time. */
static const LoopBuffer *pack_b_weight(Sched *s, const Gemm *g, int64_t nr)
{
    const KSeg *sg = &g->seg[0];
    int64_t np = g->n / nr;
    char name[300], comment[400];
    snprintf(name, sizeof name, "%s_nr%lld", sg->buf->name, (long long)nr);
    snprintf(comment, sizeof comment, "%s packed as [%lld][%lld][%lld] panels", sg->buf->name,
             (long long)np, (long long)g->k, (long long)nr);
    SchedSave save;
    const LoopBuffer *pk = sched_prepare_begin(s, name, comment, np * g->k * nr, &save);
    LoopVar *pv = sched_ivar(s, "p");
    LoopStmt *pl = sched_for(s, s->k->body, pv, ix_c(s, 0), ix_c(s, np), 1);
    LoopVar *kv = sched_ivar(s, "k");
    LoopStmt *kl = sched_for(s, pl, kv, ix_c(s, 0), ix_c(s, g->k), 1);
    LoopExpr *dst = sched_local(
        s, kl, "dst", ix_add(s, ix_mulc(s, ix_v(s, pv), g->k * nr), ix_mulc(s, ix_v(s, kv), nr)));
    LoopExpr *src = sched_local(s, kl, "src",
                                ix_add(s, ix_addc(s, ix_mulc(s, ix_v(s, kv), g->ldb), sg->off),
                                       ix_mulc(s, ix_v(s, pv), nr)));
    for (int64_t c = 0; c < nr; c++)
        ls_append(
            s->p, kl,
            ls_store(s->p, pk, ix_addc(s, dst, c), fx_load(s, sg->buf, ix_addc(s, src, c), 1)));
    sched_prepare_end(s, &save);
    return pk;
}

/* The row blocks [lo, hi) of a chunk, with the epilogue's row values per block. */
static LoopStmt *chunk_rows(Sched *s, LoopStmt *block, GemmRun *r, LoopExpr *bt, LoopExpr *lo,
                            LoopExpr *hi, LoopExpr *const *bases)
{
    LoopExpr *row0;
    LoopStmt *rl = row_blocks(s, block, r, lo, hi, bases, &row0);
    epi_rows(s, r, bt, row0, rl, false, r->g->n);
    return rl;
}

/* One pass of gemm_weight_panels over a chunk's row blocks [lo, hi): per whole panel, the row
 * blocks in turn; then the columns past the whole panels, B read in place. */
static void weight_panel_pass(Sched *s, LoopStmt *block, GemmRun *r, LoopExpr *bt, LoopExpr *lo,
                              LoopExpr *hi, LoopExpr *const *bases)
{
    const Gemm *g = r->g;
    int64_t nr = (int64_t)r->nv * s->vl, np = g->n / nr;
    LoopVar *pv = sched_ivar(s, "p");
    LoopStmt *pl = sched_for(s, block, pv, ix_c(s, 0), ix_c(s, np), 1);
    LoopStmt *rl = chunk_rows(s, pl, r, bt, lo, hi, bases);
    gemm_tile(s, rl, ix_mulc(s, ix_v(s, pv), nr), s->vl, r->nv, r);
    if (g->epi)
        fuse_unhoist(g->epi);
    if (np * nr < g->n) {
        rl = chunk_rows(s, block, r, bt, lo, hi, bases);
        sched_span(s, rl, np * nr, g->n, r->nv, gemm_tile, r, "n");
        if (g->epi)
            fuse_unhoist(g->epi);
    }
}

/* Parallel over (batch, chunk of ROW_CHUNK row blocks): per whole panel of B (packed at create
 * time, contiguous), the chunk's row blocks in turn, so that the panel is read from L1 and A's
 * rows from L2 (row blocks outside, all of B would stream through L1 for each). A sum of more
 * than KC_MAX terms runs in k blocks (as in gemm_cols, the sums so far kept in C), so that a
 * panel's rows of one block fit L1. Each output's sum runs in the same order as in
 * gemm_columns. */
static void gemm_weight_panels(Sched *s, const Gemm *g, GemmRun *r, int64_t batches, int64_t mblk)
{
    int64_t nchunk = (mblk + ROW_CHUNK - 1) / ROW_CHUNK;
    r->bpk = pack_b_weight(s, g, (int64_t)r->nv * s->vl);
    r->weight_panels = true;
    LoopVar *t = sched_ivar(s, "t");
    LoopStmt *body = sched_par(s, t, batches * nchunk);
    LoopExpr *ch = ix_mod(s, ix_v(s, t), nchunk), *bt = ix_div(s, ix_v(s, t), nchunk);
    LoopExpr *bases[3] = {
        sched_local(s, body, "ab", batch_offset(s, g, bt, g->sa, g->a_off)),
        sched_local(s, body, "cb", batch_offset(s, g, bt, g->sc, g->c_off)),
        g->bias ? sched_local(s, body, "zb", batch_offset(s, g, bt, g->sbias, g->bias_off)) : NULL};
    r->bbase[0] = sched_local(s, body, "bb", seg_base(s, g, 0, bt));
    LoopExpr *lo = sched_local(s, body, "rb0", ix_mulc(s, ch, ROW_CHUNK));
    LoopExpr *hi =
        sched_local(s, body, "rb1", bin(s, LOP_MIN, ix_addc(s, lo, ROW_CHUNK), ix_c(s, mblk)));
    if (g->k > KC_MAX) {
        r->kc = even_k_blocks(g->k, KC_MAX);
        r->sums = g->c;
        weight_panel_pass(s, begin_partial_passes(s, body, r), r, bt, lo, hi, bases);
        begin_last_pass(s, r);
    }
    weight_panel_pass(s, body, r, bt, lo, hi, bases);
}

/* Emits the GEMM into the current kernel (which must be empty so far). */
static void gemm(Sched *s, const Gemm *given)
{
    Gemm one = *given; /* B as segments: b, b_off and sb as the only one unless given */
    if (!one.nseg) {
        one.seg[0] = (KSeg){.buf = one.b, .off = one.b_off};
        memcpy(one.seg[0].sb, one.sb, sizeof one.sb);
        one.nseg = 1;
    }
    const Gemm *g = &one;
    int64_t batches = 1;
    for (uint32_t d = 0; d < g->nbatch; d++)
        batches *= g->bdim[d];
    uint32_t mr, nv;
    pick_tile(s, g->m, &mr, &nv);
    int64_t mblk = g->m / mr;
    GemmRun r = {.g = g,
                 .mr = mr,
                 .nv = nv,
                 .kc = g->k,
                 .pass = KPASS_ALL,
                 .k0 = ix_c(s, 0),
                 .k1 = ix_c(s, g->k),
                 .colbase = ix_c(s, 0)};
    if (!g->dot)
        r.apk = pack_a(s, g, mr);
    if (g->cols_outer) {
        FUSE_ASSERT(!g->dot);
        int64_t width = block_width(s, g, nv);
        int64_t nr = (int64_t)nv * s->vl;
        if (g->pro) { /* sched_prologue_deferred checked that it packs, remainder included */
            FUSE_ASSERT(width == g->img_w && packs_block(s, g->m, g->k, width, width));
            r.bpk = sched_thread(s, "panel", s->k->nvars, g->k * width);
        } else if (!s->prepare && packs_block(s, g->m, k_block(g, width), width, width / nr * nr)) {
            r.kc = k_block(g, width);
            r.bpk = sched_thread(s, "panel", s->k->nvars, r.kc * (width / nr) * nr);
            r.sums = g->c;
            r.sum_ld = width;
            if (r.kc < g->k && !g->c)
                r.sums = sched_thread(s, "sums", s->k->nvars, g->m * width);
        }
        gemm_cols(s, g, &r, nv, batches, mblk);
        return;
    }
    if (uses_weight_panels(s, g, &r, mblk)) {
        gemm_weight_panels(s, g, &r, batches, mblk);
        return;
    }
    LoopVar *t = sched_ivar(s, "t");
    LoopStmt *body = sched_par(s, t, batches * mblk);
    LoopExpr *blk = ix_mod(s, ix_v(s, t), mblk), *bt = ix_div(s, ix_v(s, t), mblk);
    LoopExpr *row0 = ix_mulc(s, blk, mr);
    LoopExpr *a = ix_add(s, batch_offset(s, g, bt, g->sa, g->a_off), ix_mulc(s, row0, g->lda));
    LoopExpr *c = ix_add(s, batch_offset(s, g, bt, g->sc, g->c_off), ix_mulc(s, row0, g->ldc));
    r.abase = lx_var(s->p, decl(s, body, sched_ivar(s, "ab"), a));
    for (uint32_t j = 0; j < g->nseg; j++) {
        const KSeg *sg = &g->seg[j];
        r.bbase[j] = lx_var(s->p, decl(s, body, sched_ivar(s, "bb"), seg_base(s, g, j, bt)));
        if (sg->a) {
            LoopExpr *at = ix_add(s, batch_offset(s, g, bt, sg->sa, sg->a_off),
                                  ix_addc(s, ix_mulc(s, row0, sg->lda), -sg->k0));
            r.abase_seg[j] = lx_var(s->p, decl(s, body, sched_ivar(s, "as"), at));
        }
    }
    r.cbase = lx_var(s->p, decl(s, body, sched_ivar(s, "cb"), c));
    if (g->bias) {
        LoopExpr *z = batch_offset(s, g, bt, g->sbias, g->bias_off);
        if (g->bias_row)
            z = ix_add(s, z, row0);
        r.zbase = lx_var(s->p, decl(s, body, sched_ivar(s, "zb"), z));
    }
    bool col_sides = g->epi && g->epi->grp->order == SIDE_TRAILING;
    epi_rows(s, &r, bt, row0, body, col_sides, g->img_w ? g->img_w : g->n);
    if (!g->dot) {
        gemm_columns(s, body, &r, nv);
    } else {
        FUSE_ASSERT(g->scale == 1.0f || !g->bias); /* the bias would be scaled too */
        if (g->n == 1) {
            gemm_dot_column(s, body, ix_c(s, 0), &r);
        } else {
            LoopVar *nv_ = sched_ivar(s, "n");
            LoopStmt *nl = sched_for(s, body, nv_, ix_c(s, 0), ix_c(s, g->n), 1);
            gemm_dot_column(s, nl, ix_v(s, nv_), &r);
        }
    }
    if (col_sides)
        epi_finish_rows(s, &r, body);
    if (g->epi)
        fuse_unhoist(g->epi);
}

/* The dot form pays off when there are fewer columns than lanes and k fills vectors. */
static bool use_dot(const Sched *s, int64_t n, int64_t k)
{
    return n < (int64_t)s->vl && k >= (int64_t)s->vl;
}

/* ---- linear, matmul ---- */

/* Takes the group's epilogue (if any) with no axis mapped yet; returns it. */
static Fuse *epi_begin(Sched *s, Gemm *g)
{
    g->epi = s->epi && !fuse_trivial(s->epi) ? s->epi : NULL;
    for (uint32_t d = 0; d < FUSE_MAX_RANK; d++) {
        g->bdig[d] = g->rdig[d] = -1;
        g->bmul[d] = 1;
        g->cax[d] = 0;
    }
    return g->epi;
}

/* Where the result goes: the epilogue's buffer (maybe none) or the node's own. */
static const LoopBuffer *gemm_dest(Sched *s, const Node *n)
{
    return s->epi ? s->epi->dst : sched_dest(s, n);
}

/* nn.Linear on the last axis: x [rows, K] times weight^T [K, O] + bias[O]. */
void sched_linear(Sched *s, const Node *n)
{
    const Shape *xs = &n->inputs[0]->shape;
    int64_t k = xs->dim[xs->rank - 1], o = n->inputs[1]->shape.dim[0];
    Gemm g = {
        .m = shape_numel(xs) / k, .n = o, .k = k, .lda = k, .ldb = o, .ldc = o, .scale = 1.0f};
    const Node *x = n->inputs[0];
    g.dot = use_dot(s, o, k);
    if (g.dot) { /* weight [O, K] is already B^T */
        g.b = sched_value(s, n->inputs[1]);
        g.ldb = k;
    } else {
        g.b = sched_transposed(s, n->inputs[1]);
    }
    if (s->plan->read_in_place[x->id]) { /* A's columns from the concat's parts */
        FUSE_ASSERT(!g.dot);
        for (uint32_t j = 0; j < x->ninputs; j++) {
            KSeg *sg = &g.seg[g.nseg++];
            sg->k0 = j ? g.seg[j - 1].k0 + g.seg[j - 1].lda : 0;
            sg->a = sched_value(s, x->inputs[j]);
            sg->lda = x->inputs[j]->shape.dim[xs->rank - 1];
            sg->buf = g.b;
            sg->off = sg->k0 * g.ldb;
        }
        g.a = g.seg[0].a;
    } else {
        g.a = sched_value(s, x);
    }
    g.bias = n->ninputs > 2 ? sched_value(s, n->inputs[2]) : NULL;
    g.c = gemm_dest(s, n);
    Fuse *f = epi_begin(s, &g);
    if (f) { /* rows: the leading axes; columns: the last */
        uint32_t last = n->shape.rank - 1;
        for (uint32_t d = 0; d < last; d++) {
            g.rdig[d] = (int32_t)d;
            g.rdim[d] = n->shape.dim[d];
        }
        g.nrdig = last;
        g.cax[last] = 1;
        fuse_deps(f);
    }
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
    g.c = gemm_dest(s, n);
    Fuse *f = epi_begin(s, &g);
    if (f) { /* batch axes, then M (unless a is 1-D), then N (unless b is 1-D) */
        uint32_t d = 0;
        for (; d < bo.rank; d++)
            g.bdig[d] = (int32_t)d;
        if (as->rank >= 2) {
            g.rdig[d++] = 0;
            g.rdim[0] = m;
            g.nrdig = 1;
        }
        if (bs->rank >= 2)
            g.cax[d++] = 1;
        FUSE_ASSERT(d == n->shape.rank);
        fuse_deps(f);
    }
    if (g.dot && nn > 1) { /* B^T per batch of b, so that columns are contiguous in k */
        int64_t count = shape_numel(&bb);
        /* b computed at create time (a folded Linear's weight) is transposed there too, once,
         * not on every call */
        bool once = !s->prepare && g.b->kind == BUF_PREPARED;
        SchedSave save;
        char name[64];
        snprintf(name, sizeof name, "matmul_bt%u", n->id);
        const LoopBuffer *bt =
            once ? sched_prepare_begin(s, name, sched_describe(s, n, "B transposed"),
                                       count * k * nn, &save)
                 : sched_scratch(s, "matmul_bt", n->id, count * k * nn);
        Pw pw = {.rank = 3, .dim = {count, nn, k}, .nsrc = 1};
        pw.dst.buf = bt;
        pw.dst.st[0] = nn * k;
        pw.dst.st[1] = k;
        pw.dst.st[2] = 1;
        pw.src[0].buf = g.b;
        pw.src[0].st[0] = k * nn;
        pw.src[0].st[1] = 1;
        pw.src[0].st[2] = nn;
        if (!once)
            sched_kernel(s, n, "bt");
        sched_pointwise(s, &pw);
        if (once)
            sched_prepare_end(s, &save);
        g.b = bt;
    }
    if (g.dot)
        g.ldb = k; /* B^T rows (a single column of B is contiguous in k as it is) */
    sched_kernel(s, n, NULL);
    gemm(s, &g);
}

/* ---- conv2d (the rest is in schedule_conv.c) ---- */

/* 1x1, stride 1, no padding: per (image, group), W [og, cg] times X [cg, H*W]. */
void conv_pointwise(Sched *s, const Conv *c)
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
    for (uint32_t j = 0; j < c->nparts; j++) { /* a concat's parts (one group) */
        KSeg *sg = &g.seg[g.nseg++];
        sg->buf = c->part[j];
        sg->k0 = j ? g.seg[j - 1].k0 + c->part_c[j - 1] : 0;
        sg->sb[0] = c->part_c[j] * hw;
    }
    g.dot = hw == 1 && use_dot(s, hw, c->cg); /* a 1x1 map: X [cg, 1] is contiguous in k */
    FUSE_ASSERT(!g.dot || !g.nseg);
    Fuse *f = epi_begin(s, &g);
    SideOrder sides = f ? f->grp->order : SIDE_NONE;
    if (f) {
        /* image: batch digit 0; channel: group (batch digit 1) * og + row; pixels: one flat
         * column unless an operand needs the image row and column apart */
        g.bdig[0] = 0;
        g.bdig[1] = 1;
        g.bmul[1] = c->og;
        g.rdig[1] = 0;
        g.rdim[0] = c->og;
        g.nrdig = 1;
        if (c->pro < 0 && fuse_merge(f, 3)) {
            g.cax[2] = 1;
        } else {
            g.cax[2] = 2;
            g.cax[3] = 3;
            g.img_w = c->w;
        }
        fuse_deps(f);
    }
    /* Column blocks outside: the B block stays in cache across row blocks; needed for row
     * (channel) reductions; column (pixel) reductions are kept per column block and combined
     * by one more kernel (store_partials, finish_partials). */
    if (c->pro >= 0) { /* B computed while packing, an image row per block */
        char comment[600];
        snprintf(comment, sizeof comment, "%s; input packed from %s", s->k->comment,
                 s->plan->pub.group_name[c->pro]);
        s->k->comment = arena_strdup(s->p->arena, comment);
        g.pro = fuse_new_with(s, (uint32_t)c->pro, -1, false);
        fuse_deps(g.pro);
        g.img_w = c->w;
    }
    int64_t width = g.img_w ? g.img_w : COL_BLOCK;
    g.cols_outer = !g.dot && (sides == SIDE_AXIS || (hw + width - 1) / width >= 4);
    FUSE_ASSERT(!g.pro || g.cols_outer);
    gemm(s, &g);
}

bool sched_prologue_deferred(const Sched *s, uint32_t gi)
{
    const Node *root = s->g->nodes[s->plan->groups[gi].root];
    if (s->prepare || !s->plan->packed_by_user[root->id])
        return false;
    const Node *conv = NULL; /* the only user (schedule_plan.c) */
    for (uint32_t i = root->id + 1; i < s->g->nnodes && !conv; i++)
        if (s->plan->live[i] && s->g->nodes[i]->inputs[0] == root)
            conv = s->g->nodes[i];
    FUSE_ASSERT(conv && conv->kind == OP_CONV2D);
    const Shape *xs = &root->shape;
    int64_t o = conv->shape.dim[1], k = xs->dim[1], h = xs->dim[2], w = xs->dim[3];
    int32_t cg = s->plan->pub.group_of[conv->id];
    bool axis_sides = cg >= 0 && s->plan->groups[cg].order == SIDE_AXIS;
    /* conv_pointwise's column blocks are then image rows, parallel outside (cols_outer) */
    return h * w > 1 && (axis_sides || h >= 4) && packs_block(s, o, k, w, w);
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
    const LoopBuffer *att = sched_scratch(s, "mha_att", n->id, nb * l * e);
    const LoopBuffer *dst = sched_dest(s, n);
    project(s, n, "q", q, in_w, 3 * e, 0, in_b, qp, nb * l, e);
    project(s, n, "k", k, in_w, 3 * e, e, in_b, kp, nb * sl, e);
    project(s, n, "v", v, in_w, 3 * e, 2 * e, in_b, vp, nb * sl, e);

    Attention at = {.q = qp,
                    .k = kp,
                    .v = vp,
                    .out = att,
                    .nb = nb,
                    .heads = heads,
                    .l = l,
                    .s = sl,
                    .hd = hd,
                    .dv = hd,
                    .qst = {l * e, hd, e},
                    .kst = {sl * e, hd, e, 1},
                    .vst = {sl * e, hd, e},
                    .ost = {l * e, hd, e}};
    at.scale = (float)(1.0 / sqrt((double)hd));
    sched_attention(s, n, &at);
    project(s, n, "out", att, out_w, e, 0, out_b, dst, nb * l, e);
}
