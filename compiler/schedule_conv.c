/*
 * schedule_conv: conv2d, but for 1x1 stride 1 without padding (a GEMM: conv_pointwise in
 * schedule_contract.c).
 *
 * Any kernel, stride, padding, dilation, groups: conv_rows. Parallel over (image, group,
 * output row). Per output row the cg * kh input rows it reads are first copied into per-thread
 * scratch, zero-padded ([cg][kh][sw][wq]: padded column i = input column i - pw, zeros outside
 * the image, goes to phase i % sw at i / sw), so that the columns one tap reads for a vector of
 * consecutive output columns are consecutive in one phase (tap kx: phase kx*dw % sw, from
 * kx*dw / sw on; stride 1 has one phase, the padded row itself), every output column is a
 * vector and no tap is checked. Then each block of MR output channels (its weights packed at
 * create time as [o/MR][cg][kh][kw][MR], one contiguous stream of broadcasts) runs register
 * tiles of MR x NV vectors along the row (pick_tile: 4 x 3 with 8 lanes and 16 registers, 8 x 2
 * with 16 lanes; 1 x 8 for one output channel a group): the accumulators are DECLared locals, one
 * loop over the cg * kh padded rows with the kw taps unrolled inside (NV vector loads and MR
 * broadcasts per tap). The columns past the whole tiles run as one or two narrower tiles, and a
 * last partial vector is computed whole and stored lane by lane from a per-thread buffer. Results
 * go through the epilogue (s->epi) at the store, per vector or lane. Numerics: every output is its
 * bias (or 0) plus the taps in (ci, ky, kx) order by fused multiply-adds (a padded tap adds w * 0),
 * whatever the thread count.
 */
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "schedule_internal.h"
#include "util.h"

/* MAX_UNROLL_KW: kernels up to this wide have their taps unrolled in a padded row.
 * CONV_MAX_NV: the vectors of a one-channel tile (a channel block of one: 8 independent
 * accumulator chains keep both fma units busy; the row loads fold into the fmas). */
enum { MAX_UNROLL_KW = 8, CONV_MAX_NV = 8 };

/* The conv's sizes and buffers (weights as their prepared copies; the input x, or its value when
 * x is NULL). */
static Conv conv_of(Sched *s, const Node *n, const LoopBuffer *x)
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
    const Node *in = n->inputs[0];
    c.pro = -1;
    if (!x && s->plan->packed_by_user[in->id] && !s->val[in->id]) {
        c.pro = s->plan->pub.group_of[in->id];
    } else if (!x && s->plan->read_in_place[in->id]) {
        for (uint32_t j = 0; j < in->ninputs; j++) {
            c.part[j] = sched_value(s, in->inputs[j]);
            c.part_c[j] = in->inputs[j]->shape.dim[1];
        }
        c.nparts = in->ninputs;
    } else {
        c.x = x ? x : sched_value(s, in);
    }
    c.wt = sched_value(s, n->inputs[1]);
    c.bias = n->ninputs > 2 ? sched_value(s, n->inputs[2]) : NULL;
    c.y = s->epi ? s->epi->dst : sched_dest(s, n); /* the epilogue's buffer, maybe none */
    return c;
}

/* 0 <= i < n, as a bool. */
static LoopExpr *in_range(Sched *s, LoopExpr *i, int64_t n)
{
    return bin(s, LOP_AND, lx_cmp(s->p, LCMP_GE, i, ix_c(s, 0)),
               lx_cmp(s->p, LCMP_LT, i, ix_c(s, n)));
}

/* ---- register tiles over zero-padded rows ---- */

/* The state of one conv_rows kernel. */
typedef struct ConvTile {
    const Conv *c;
    uint32_t mr, nv;
    /* > 0: the input (one channel) is a ring of this many rows in c->x, row iy at
     * (iy % ring) * w, rows outside the image never read from it */
    int64_t ring;
    const LoopBuffer *pad; /* the input rows an output row reads, zero-padded: [cg][kh][wp] */
    int64_t wp;            /* a padded row's width: sw phases of wq */
    int64_t wq;            /* a phase's width */
    const LoopBuffer *wt;  /* packed [o/MR][cg][kh][kw][MR] (packed) or as given */
    bool packed;
    const LoopBuffer *tmp;   /* [MR][vl]: the last, partial vector of a row, or NULL */
    LoopExpr *oc0, *wb, *ob; /* the channel block's first channel, weights, output row */
    FusePoint pt[MAX_MR];    /* the epilogue's point of each channel (x set per store), or unused */
    bool epi;
} ConvTile;

/* Weights packed at create time as [o/MR][cg][kh][kw][MR] (a channel block's taps one
 * contiguous stream of MR-wide broadcasts), or NULL when the weight is not a prepared one. */
static const LoopBuffer *pack_weights(Sched *s, const Conv *c, uint32_t mr)
{
    const LoopBuffer *w = c->wt;
    int64_t taps = c->cg * c->kh * c->kw;
    if (s->prepare || mr < 2 || w->kind != BUF_PREPARED || w->elems != c->o * taps)
        return NULL;
    char name[300], comment[400];
    snprintf(name, sizeof name, "%s_conv%u", w->name, mr);
    snprintf(comment, sizeof comment, "%s packed as [%lld][%lld][%lld][%lld][%u]", w->name,
             (long long)(c->o / mr), (long long)c->cg, (long long)c->kh, (long long)c->kw, mr);
    SchedSave save;
    const LoopBuffer *pk = sched_prepare_begin(s, name, comment, w->elems, &save);
    LoopVar *bv = sched_ivar(s, "blk");
    LoopStmt *bl = sched_for(s, s->k->body, bv, ix_c(s, 0), ix_c(s, c->o / mr), 1);
    LoopExpr *base = sched_local(s, bl, "base", ix_mulc(s, ix_v(s, bv), mr * taps));
    LoopVar *tv = sched_ivar(s, "k");
    LoopStmt *tl = sched_for(s, bl, tv, ix_c(s, 0), ix_c(s, taps), 1);
    for (uint32_t m = 0; m < mr; m++) {
        LoopExpr *di = ix_add(s, base, ix_addc(s, ix_mulc(s, ix_v(s, tv), mr), m));
        LoopExpr *si = ix_add(s, base, ix_addc(s, ix_v(s, tv), m * taps));
        ls_append(s->p, tl, ls_store(s->p, pk, di, fx_load(s, w, si, 1)));
    }
    sched_prepare_end(s, &save);
    return pk;
}

typedef struct RowFill {
    const LoopBuffer *src; /* NULL: zeros */
    LoopExpr *from, *to;   /* column i of the span: src[from + i] to pad[to + i] */
    const LoopBuffer *pad;
} RowFill;

static void fill_body(Sched *s, LoopStmt *block, LoopExpr *at, uint32_t lanes, uint32_t nv,
                      const void *ctx)
{
    const RowFill *f = ctx;
    for (uint32_t v = 0; v < nv; v++) {
        LoopExpr *i = ix_addc(s, at, (int64_t)v * lanes);
        LoopExpr *val =
            f->src ? fx_load(s, f->src, ix_add(s, f->from, i), lanes) : fx_c(s, 0.0f, lanes);
        ls_append(s->p, block, ls_store(s->p, f->pad, ix_add(s, f->to, i), val));
    }
}

/* Columns [lo, hi) of the padded row at pad[to]: zeros, or column i from src[from + i]. */
static void fill(Sched *s, LoopStmt *block, const ConvTile *t, LoopExpr *to, int64_t lo, int64_t hi,
                 const LoopBuffer *src, LoopExpr *from)
{
    RowFill f = {.src = src, .from = from, .to = to, .pad = t->pad};
    sched_span(s, block, lo, hi, 2, fill_body, &f, "c");
}

/* ceil(a / b) for b > 0. */
static int64_t ceil_div(int64_t a, int64_t b)
{
    return a >= 0 ? (a + b - 1) / b : -(-a / b);
}

/* The padded rows of output row y: row (ci, ky) holds input row iy0 + ky * dh of channel ci
 * (zeros outside the image), padded column i (input column i - pw, zeros outside the row) in
 * phase i % sw at i / sw. Columns past the phases' width, which no output reads, are left out. */
static void build_rows(Sched *s, LoopStmt *block, const ConvTile *t, LoopExpr *xb, LoopExpr *iy0)
{
    const Conv *c = t->c;
    LoopVar *ci = sched_ivar(s, "ci");
    LoopStmt *cl = sched_for(s, block, ci, ix_c(s, 0), ix_c(s, c->cg), 1);
    LoopExpr *src = sched_local(s, cl, "src", ix_add(s, xb, ix_mulc(s, ix_v(s, ci), c->h * c->w)));
    LoopVar *ky = sched_ivar(s, "ky");
    LoopStmt *kl = sched_for(s, cl, ky, ix_c(s, 0), ix_c(s, c->kh), 1);
    LoopExpr *to = sched_local(
        s, kl, "to", ix_mulc(s, ix_add(s, ix_mulc(s, ix_v(s, ci), c->kh), ix_v(s, ky)), t->wp));
    LoopExpr *iy = sched_local(s, kl, "iy", ix_add(s, iy0, ix_mulc(s, ix_v(s, ky), c->dh)));
    LoopStmt *in = ls_block(s->p), *out = ls_block(s->p);
    ls_append(s->p, kl, ls_if(s->p, in_range(s, iy, c->h), in, out));
    fill(s, out, t, to, 0, t->wp, NULL, NULL);
    LoopExpr *row = t->ring ? ix_mod(s, iy, t->ring) : iy; /* iy >= 0 here */
    LoopExpr *from = /* padded column i of the row is x[from + i] */
        sched_local(s, in, "from", ix_addc(s, ix_add(s, src, ix_mulc(s, row, c->w)), -c->pw));
    for (int64_t ph = 0; ph < c->sw; ph++) {
        int64_t lo = ceil_div(c->pw - ph, c->sw), hi = ceil_div(c->pw + c->w - ph, c->sw);
        lo = lo < 0 ? 0 : lo < t->wq ? lo : t->wq;
        hi = hi < lo ? lo : hi < t->wq ? hi : t->wq;
        LoopExpr *at = ph ? ix_addc(s, to, ph * t->wq) : to;
        fill(s, in, t, at, 0, lo, NULL, NULL);
        fill(s, in, t, at, hi, t->wq, NULL, NULL);
        if (c->sw == 1) {
            fill(s, in, t, at, lo, hi, c->x, from);
            continue;
        }
        LoopVar *j = sched_ivar(s, "j"); /* a strided gather, one column at a time */
        LoopStmt *jl = sched_for(s, in, j, ix_c(s, lo), ix_c(s, hi), 1);
        LoopExpr *col = ix_addc(s, ix_add(s, from, ix_mulc(s, ix_v(s, j), c->sw)), ph);
        ls_append(s->p, jl,
                  ls_store(s->p, t->pad, ix_add(s, at, ix_v(s, j)), fx_load(s, c->x, col, 1)));
    }
}

/* Where tap kx (a constant, or the variable jx) starts in a padded row: its phase, then its
 * offset in the phase. */
static LoopExpr *tap_offset(Sched *s, const ConvTile *t, LoopExpr *jx, int64_t kx)
{
    const Conv *c = t->c;
    if (!jx)
        return ix_c(s, kx * c->dw % c->sw * t->wq + kx * c->dw / c->sw);
    LoopExpr *d = ix_mulc(s, jx, c->dw);
    if (c->sw == 1)
        return d;
    return ix_add(s, ix_mulc(s, ix_mod(s, d, c->sw), t->wq), ix_div(s, d, c->sw));
}

/* The value at channel m of the block, output columns [x, x + lanes), through the epilogue,
 * stored. */
static void conv_store(Sched *s, LoopStmt *block, const ConvTile *t, uint32_t m, LoopExpr *x,
                       uint32_t lanes, LoopExpr *v)
{
    const Conv *c = t->c;
    if (t->epi) {
        FusePoint pt = t->pt[m];
        pt.at[3] = x;
        pt.lanes = lanes;
        pt.acc = v;
        v = fuse_value(s, s->epi, &pt, block);
    }
    if (c->y)
        ls_append(
            s->p, block,
            ls_store(s->p, c->y, ix_add(s, t->ob, ix_addc(s, x, (int64_t)m * c->oh * c->ow)), v));
}

/* An MR x nv tile of the output row at column x: MR * nv accumulators (bias or 0), one loop
 * over the cg * kh padded rows in (ci, ky) order with the kw taps unrolled inside: per tap nv
 * vector loads of the row and MR broadcasts of the weights, MR * nv fmas. `part` > 0: one
 * vector of which only the first `part` lanes are output columns (stored lane by lane). */
static void conv_tile(Sched *s, LoopStmt *block, const ConvTile *t, LoopExpr *x, uint32_t nv,
                      int64_t part)
{
    const Conv *c = t->c;
    uint32_t vl = s->vl, mr = t->mr;
    int64_t taps = c->cg * c->kh * c->kw;
    LoopVar *acc[MAX_MR][CONV_MAX_NV];
    for (uint32_t m = 0; m < mr; m++)
        for (uint32_t v = 0; v < nv; v++) {
            LoopExpr *init = c->bias
                                 ? fx_bcast(s, fx_load(s, c->bias, ix_addc(s, t->oc0, m), 1), vl)
                                 : fx_c(s, 0.0f, vl);
            acc[m][v] = decl(s, block, sched_fvar(s, "acc", vl), init);
        }
    LoopVar *rv = sched_ivar(s, "r");
    LoopStmt *rl = sched_for(s, block, rv, ix_c(s, 0), ix_c(s, c->cg * c->kh), 1);
    LoopExpr *xr = sched_local(s, rl, "xr", ix_add(s, ix_mulc(s, ix_v(s, rv), t->wp), x));
    int64_t wstep = t->packed ? c->kw * mr : c->kw; /* per padded row */
    LoopExpr *wr = sched_local(s, rl, "wr", ix_add(s, t->wb, ix_mulc(s, ix_v(s, rv), wstep)));
    LoopStmt *tap = rl;
    LoopExpr *kx = NULL;
    if (c->kw > MAX_UNROLL_KW) {
        LoopVar *kv = sched_ivar(s, "kx");
        tap = sched_for(s, rl, kv, ix_c(s, 0), ix_c(s, c->kw), 1);
        kx = ix_v(s, kv);
    }
    for (int64_t j = 0; j < (kx ? 1 : c->kw); j++) {
        LoopExpr *jx = kx ? kx : ix_c(s, j);
        LoopExpr *off = tap_offset(s, t, kx, j);
        LoopVar *xv[CONV_MAX_NV];
        for (uint32_t v = 0; v < nv; v++) {
            LoopExpr *i = ix_add(s, xr, ix_addc(s, off, (int64_t)v * vl));
            xv[v] = decl(s, tap, sched_fvar(s, "x", vl), fx_load(s, t->pad, i, vl));
        }
        for (uint32_t m = 0; m < mr; m++) {
            LoopExpr *wi = t->packed ? ix_add(s, wr, ix_addc(s, ix_mulc(s, jx, mr), m))
                                     : ix_add(s, wr, ix_addc(s, jx, (int64_t)m * taps));
            LoopVar *wv =
                decl(s, tap, sched_fvar(s, "w", vl), fx_bcast(s, fx_load(s, t->wt, wi, 1), vl));
            for (uint32_t v = 0; v < nv; v++)
                ls_append(s->p, tap,
                          ls_assign(s->p, acc[m][v],
                                    lx_fma(s->p, lx_var(s->p, wv), lx_var(s->p, xv[v]),
                                           lx_var(s->p, acc[m][v]))));
        }
    }
    if (!part) {
        for (uint32_t m = 0; m < mr; m++)
            for (uint32_t v = 0; v < nv; v++)
                conv_store(s, block, t, m, ix_addc(s, x, (int64_t)v * vl), vl,
                           lx_var(s->p, acc[m][v]));
        return;
    }
    FUSE_ASSERT(nv == 1 && t->tmp);
    for (uint32_t m = 0; m < mr; m++)
        ls_append(s->p, block,
                  ls_store(s->p, t->tmp, ix_c(s, (int64_t)m * vl), lx_var(s->p, acc[m][0])));
    LoopVar *l = sched_ivar(s, "l");
    LoopStmt *ll = sched_for(s, block, l, ix_c(s, 0), ix_c(s, part), 1);
    for (uint32_t m = 0; m < mr; m++)
        conv_store(s, ll, t, m, ix_add(s, x, ix_v(s, l)), 1,
                   fx_load(s, t->tmp, ix_addc(s, ix_v(s, l), (int64_t)m * vl), 1));
}

/* The tile, the packed weights and the thread scratch of a conv computed one output row at a
 * time (conv_row). */
static ConvTile *conv_tile_new(Sched *s, const Conv *c)
{
    ConvTile *t = ARENA_NEW(s->p->arena, ConvTile);
    uint32_t nv, vl = s->vl;
    pick_tile(s, c->og, &t->mr, &nv);
    if (t->mr == 1) /* one channel a group: 4 chains would wait on the fma latency */
        nv = CONV_MAX_NV;
    t->nv = nv;
    t->c = c;
    int64_t nfull = c->ow / vl, part = c->ow % vl, nvt = nfull + (part > 0);
    int64_t wq = nvt * vl + (c->kw - 1) * c->dw / c->sw; /* every tap of every vector */
    t->wq = (wq + vl - 1) / vl * vl;
    t->wp = c->sw * t->wq;
    const LoopBuffer *pk = pack_weights(s, c, t->mr);
    t->wt = pk ? pk : c->wt;
    t->packed = pk != NULL;
    uint32_t id = s->k->nvars;
    int64_t pad_elems = c->cg * c->kh * t->wp;
    t->pad = s->prepare ? sched_scratch(s, "rows", id, pad_elems)
                        : sched_thread(s, "rows", id, pad_elems);
    if (part)
        t->tmp = s->prepare ? sched_scratch(s, "part", id, (int64_t)t->mr * vl)
                            : sched_thread(s, "part", id, (int64_t)t->mr * vl);
    return t;
}

/* Output row y of image img and group gi into block: the input rows it reads copied, zero-padded
 * and split in phases, into thread scratch (every output column a vector, no bounds checks),
 * then every channel block of MR runs its tiles over them. */
static void conv_row(Sched *s, ConvTile *t, LoopStmt *body, LoopExpr *img, LoopExpr *gi,
                     LoopExpr *y)
{
    const Conv *c = t->c;
    uint32_t mr = t->mr, nv = t->nv, vl = s->vl;
    int64_t nfull = c->ow / vl, part = c->ow % vl;
    LoopExpr *xb =
        t->ring ? ix_c(s, 0)
                : sched_local(s, body, "xb",
                              ix_mulc(s, ix_add(s, ix_mulc(s, img, c->c), ix_mulc(s, gi, c->cg)),
                                      c->h * c->w));
    LoopExpr *iy0 = sched_local(s, body, "iy", ix_addc(s, ix_mulc(s, y, c->sh), -c->ph));
    build_rows(s, body, t, xb, iy0);

    LoopVar *bv = sched_ivar(s, "cb");
    LoopStmt *cb = sched_for(s, body, bv, ix_c(s, 0), ix_c(s, c->og / mr), 1);
    LoopExpr *oc0 =
        sched_local(s, cb, "oc", ix_add(s, ix_mulc(s, gi, c->og), ix_mulc(s, ix_v(s, bv), mr)));
    t->oc0 = oc0;
    t->wb = sched_local(s, cb, "wb", ix_mulc(s, oc0, c->cg * c->kh * c->kw));
    t->ob = sched_local(s, cb, "ob",
                        ix_add(s, ix_mulc(s, ix_add(s, ix_mulc(s, img, c->o), oc0), c->oh * c->ow),
                               ix_mulc(s, y, c->ow)));
    t->epi = s->epi && !fuse_trivial(s->epi);
    if (t->epi) { /* per channel: (image, channel, row); x per store */
        fuse_deps(s->epi);
        for (uint32_t m = 0; m < mr; m++) {
            FusePoint *pt = &t->pt[m];
            pt->slot = m;
            pt->lane_axis = 3;
            pt->at[0] = img;
            pt->at[1] = sched_local(s, cb, "e", ix_addc(s, oc0, m));
            pt->at[2] = y;
            fuse_hoist(s, s->epi, 7, pt, cb);
        }
    }
    /* Whole tiles, then the remaining vectors; a last whole tile and a remainder too narrow to
     * keep the fma units busy (3 + 1) become two tiles of about the same width (2 + 2). */
    int64_t nr = (int64_t)nv * vl, ntile = nfull / nv, rest = nfull % nv, last = 0;
    if (rest && ntile > 0 && (nv + rest) / 2 > rest) {
        ntile--;
        last = (nv + rest) / 2;
        rest = nv + rest - last;
    }
    if (ntile == 1) {
        conv_tile(s, cb, t, ix_c(s, 0), nv, 0);
    } else if (ntile > 1) {
        LoopVar *xv = sched_ivar(s, "x");
        LoopStmt *xl = sched_for(s, cb, xv, ix_c(s, 0), ix_c(s, ntile * nr), nr);
        conv_tile(s, xl, t, ix_v(s, xv), nv, 0);
    }
    if (rest)
        conv_tile(s, cb, t, ix_c(s, ntile * nr), (uint32_t)rest, 0);
    if (last)
        conv_tile(s, cb, t, ix_c(s, (ntile * nv + rest) * vl), (uint32_t)last, 0);
    if (part)
        conv_tile(s, cb, t, ix_c(s, nfull * vl), 1, part);
    if (t->epi)
        fuse_unhoist(s->epi);
}

/* Parallel over (image, group, output row), a row at a time. */
static void conv_rows(Sched *s, const Conv *c)
{
    ConvTile *t = conv_tile_new(s, c);
    LoopVar *tv = sched_ivar(s, "t");
    LoopStmt *body = sched_par(s, tv, c->nb * c->groups * c->oh);
    LoopExpr *y = sched_local(s, body, "y", ix_mod(s, ix_v(s, tv), c->oh));
    LoopExpr *gi = sched_local(s, body, "g", ix_mod(s, ix_div(s, ix_v(s, tv), c->oh), c->groups));
    LoopExpr *img = sched_local(s, body, "img", ix_div(s, ix_v(s, tv), c->oh * c->groups));
    conv_row(s, t, body, img, gi, y);
}

ConvTile *conv_band_new(Sched *s, const Node *n, const LoopBuffer *ring, int64_t rows)
{
    Conv *c = ARENA_NEW(s->p->arena, Conv);
    *c = conv_of(s, n, ring);
    FUSE_ASSERT(c->cg == 1 && c->groups == 1 && c->sh == 1 && rows > 0);
    ConvTile *t = conv_tile_new(s, c);
    t->ring = rows;
    return t;
}

void conv_band_row(Sched *s, ConvTile *t, LoopStmt *block, LoopExpr *img, LoopExpr *y)
{
    conv_row(s, t, block, img, ix_c(s, 0), y);
}

void sched_conv2d(Sched *s, const Node *n)
{
    Conv c = conv_of(s, n, NULL);
    sched_kernel(s, n, NULL);
    bool pointwise = c.kh == 1 && c.kw == 1 && c.sh == 1 && c.sw == 1 && c.ph == 0 && c.pw == 0;
    if (pointwise)
        conv_pointwise(s, &c);
    else
        conv_rows(s, &c);
}
