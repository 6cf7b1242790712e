/*
 * schedule_band: a per-pixel channel reduction, the small convolutions over its maps and the
 * full-size pointwise pass that reads their result, as one kernel over row bands (CBAM's spatial
 * attention: y = x * channel gate, the channel mean and max of y, a 7x7 conv over them, then
 * y * sigmoid(conv)).
 *
 * The groups, consecutive in the plan:
 *   P   a pointwise group over [N, C, H, W] (its root y) whose side reductions reduce the
 *       channels alone (SIDE_AXIS over axis 1), or reductions over the channels alone of a
 *       stored y (a GROUP_SINGLE with its siblings): the maps, each [N, 1, H, W];
 *   K.. contraction groups, each a conv2d with one input channel, a map of P, stride 1 and
 *       "same" padding (its halo: pad_h rows above and below), with its epilogue: [N, 1, H, W];
 *   G   a pointwise group over [N, C, H, W] reading y and the conv groups' results.
 * Nothing else reads y or the maps; the conv groups' results are read at their own pixel.
 * One parallel loop over (image, band of rows); in each band a sliding window over its rows:
 * row q + h of the maps (h the largest halo) is reduced from x into per-thread rings of 2h + 1
 * rows (the operands of a channel a few channels ahead prefetched), then output row q of each
 * conv (its input rows from the rings), then row q of G with y evaluated again from its
 * operands instead of read back: y and the maps are never stored, x is read from memory once
 * (the h rows above and below a band are reduced by both bands that need them, the same sums in
 * the same order) and its rows are read again from the cache.
 * Numerics are those of the separate kernels: every map value is its channels in order, every
 * conv output its taps in order, every y the same operations; bands depend on the shape alone.
 */
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "schedule_internal.h"
#include "util.h"

enum { BAND_MAX_CONVS = 8 };
enum { PREFETCH_CHANNELS = 4 }; /* how far ahead the reduction prefetches its operands */

typedef struct Band {
    uint32_t first, nconv; /* P is group first, the convs follow, then G */
    bool pointwise;        /* P is a pointwise group; else reductions of a stored value */
    uint32_t nmaps, maps[PLAN_MAX_SIDES]; /* node ids of P's reductions */
    int64_t n, c, h, w;
    int64_t halo;                    /* the largest conv's pad_h */
    uint32_t map_of[BAND_MAX_CONVS]; /* by conv: the side of P it reads */
} Band;

static const Node *strip_views(const Node *n)
{
    while (n->kind == OP_VIEW)
        n = n->inputs[0];
    return n;
}

static bool is_dims(const Shape *s, int64_t n, int64_t c, int64_t h, int64_t w)
{
    return s->rank == 4 && s->dim[0] == n && s->dim[1] == c && s->dim[2] == h && s->dim[3] == w;
}

static int32_t map_index(const Band *b, const Node *n)
{
    for (uint32_t k = 0; k < b->nmaps; k++)
        if (b->maps[k] == n->id)
            return (int32_t)k;
    return -1;
}

/* Group gi's members (not its side reductions) are elementwise ops only. */
static bool elementwise_members(const Sched *s, uint32_t gi)
{
    const Plan *pl = s->plan;
    for (uint32_t i = 0; i < s->g->nnodes; i++) {
        if (pl->pub.group_of[i] != (int32_t)gi || pl->role[i] == ROLE_SIDE ||
            pl->groups[gi].anchor == (int32_t)i)
            continue;
        const Node *n = s->g->nodes[i];
        OpClass cls = op_info[n->kind].cls;
        if (cls != OPC_UNARY && cls != OPC_BINARY && n->kind != OP_BATCHNORM)
            return false;
    }
    return true;
}

/* Conv group gi of a band over maps [N, 1, H, W] of P: which side it reads, its halo. */
static bool band_conv(const Sched *s, uint32_t gi, const Band *b, uint32_t *map, int64_t *halo)
{
    const PlanGroup *grp = &s->plan->groups[gi];
    if (grp->kind != GROUP_CONTRACT || grp->nside || grp->nextra || !grp->store_root ||
        s->plan->into[grp->root])
        return false;
    const Node *cv = s->g->nodes[grp->anchor], *root = s->g->nodes[grp->root];
    if (cv->kind != OP_CONV2D || !is_dims(&root->shape, b->n, 1, b->h, b->w) ||
        !is_dims(&cv->shape, b->n, 1, b->h, b->w) ||
        !is_dims(&cv->inputs[0]->shape, b->n, 1, b->h, b->w))
        return false;
    int32_t k = map_index(b, strip_views(cv->inputs[0]));
    int64_t kh = cv->inputs[1]->shape.dim[2], kw = cv->inputs[1]->shape.dim[3];
    if (k < 0 || cv->attr.conv.groups != 1 || cv->attr.conv.stride_h != 1 ||
        cv->attr.conv.stride_w != 1 || 2 * cv->attr.conv.pad_h != cv->attr.conv.dil_h * (kh - 1) ||
        2 * cv->attr.conv.pad_w != cv->attr.conv.dil_w * (kw - 1))
        return false;
    if (!elementwise_members(s, gi))
        return false;
    *map = (uint32_t)k;
    *halo = cv->attr.conv.pad_h;
    return true;
}

/* Whether every reader of node v (through views) passes `ok`; graph outputs never do. */
typedef bool (*ReaderOk)(const Sched *s, const Band *b, const Node *reader, uint32_t input);

static bool readers_ok(const Sched *s, const Band *b, const Node *v, ReaderOk ok)
{
    const Graph *g = s->g;
    for (uint32_t o = 0; o < g->noutputs; o++)
        if (strip_views(g->outputs[o]) == v)
            return false;
    for (uint32_t i = v->id + 1; i < g->nnodes; i++) {
        const Node *m = g->nodes[i];
        if (!s->plan->live[i] || m->kind == OP_VIEW)
            continue;
        for (uint32_t k = 0; k < m->ninputs; k++)
            if (strip_views(m->inputs[k]) == v && !ok(s, b, m, k))
                return false;
    }
    return true;
}

static int32_t group_of(const Sched *s, const Node *n)
{
    return s->plan->pub.group_of[n->id];
}

/* A map is read only as the input of a conv of the band. */
static bool map_reader_ok(const Sched *s, const Band *b, const Node *m, uint32_t input)
{
    for (uint32_t j = 0; j < b->nconv; j++)
        if (s->plan->groups[b->first + 1 + j].anchor == (int32_t)m->id)
            return input == 0;
    return false;
}

/* y is read only by P's side reductions and G's members. */
static bool root_reader_ok(const Sched *s, const Band *b, const Node *m, uint32_t input)
{
    (void)input;
    int32_t gm = group_of(s, m);
    PlanRole r = s->plan->role[m->id];
    return (gm == (int32_t)b->first && r == ROLE_SIDE) ||
           (gm == (int32_t)(b->first + b->nconv + 1) && (r == ROLE_INLINE || r == ROLE_ROOT));
}

/* A conv group's result is read after the band, or by a later member at its own pixel. */
static bool conv_reader_ok(const Sched *s, const Band *b, const Node *m, uint32_t input)
{
    int32_t gm = group_of(s, m);
    if (gm < (int32_t)b->first || gm > (int32_t)(b->first + b->nconv + 1))
        return true; /* its whole value exists by then */
    return is_dims(&m->inputs[input]->shape, b->n, 1, b->h, b->w); /* an elementwise member */
}

/* The band starting at group gi, or false. */
static bool band_match(const Sched *s, uint32_t gi, Band *b)
{
    const Plan *pl = s->plan;
    if (gi + 2 >= pl->pub.ngroups)
        return false;
    const PlanGroup *p = &pl->groups[gi];
    const Node *y = s->g->nodes[p->root];
    memset(b, 0, sizeof *b);
    b->first = gi;
    if (p->kind == GROUP_POINTWISE && p->order == SIDE_AXIS && p->side_axis == 1 && !p->nextra &&
        !pl->into[y->id]) {
        b->pointwise = true;
        b->nmaps = p->nside;
        memcpy(b->maps, p->side, p->nside * sizeof *p->side);
    } else if (p->kind == GROUP_SINGLE && op_info[y->kind].cls == OPC_REDUCE) {
        b->nmaps = p->nextra + 1;
        b->maps[0] = y->id;
        memcpy(b->maps + 1, p->extra, p->nextra * sizeof *p->extra);
        y = y->inputs[0]; /* the reduced value, stored */
        for (uint32_t d = 0; d < y->shape.rank; d++)
            if (s->g->nodes[p->root]->attr.reduce.axes[d] != (d == 1))
                return false;
    } else {
        return false;
    }
    if (y->shape.rank != 4)
        return false;
    b->n = y->shape.dim[0];
    b->c = y->shape.dim[1];
    b->h = y->shape.dim[2];
    b->w = y->shape.dim[3];
    for (uint32_t k = 0; k < b->nmaps; k++) {
        const Node *m = s->g->nodes[b->maps[k]];
        if (pl->into[m->id] || shape_numel(&m->shape) != b->n * b->h * b->w)
            return false;
    }
    uint32_t j = gi + 1;
    int64_t halo;
    while (j < pl->pub.ngroups && b->nconv < BAND_MAX_CONVS &&
           band_conv(s, j, b, &b->map_of[b->nconv], &halo)) {
        b->halo = halo > b->halo ? halo : b->halo;
        b->nconv++;
        j++;
    }
    if (!b->nconv || j >= pl->pub.ngroups)
        return false;
    const PlanGroup *gc = &pl->groups[j];
    const Node *z = s->g->nodes[gc->root];
    if (gc->kind != GROUP_POINTWISE || gc->order != SIDE_NONE || gc->nextra || !gc->store_root ||
        pl->into[z->id] || !is_dims(&z->shape, b->n, b->c, b->h, b->w) ||
        !elementwise_members(s, j))
        return false;
    if (b->pointwise && !readers_ok(s, b, y, root_reader_ok))
        return false;
    for (uint32_t k = 0; k < b->nmaps; k++)
        if (!readers_ok(s, b, s->g->nodes[b->maps[k]], map_reader_ok))
            return false;
    for (uint32_t k = 0; k < b->nconv; k++)
        if (!readers_ok(s, b, s->g->nodes[pl->groups[gi + 1 + k].root], conv_reader_ok))
            return false;
    return true;
}

/* ---- lowering ---- */

typedef struct BandLower {
    const Band *b;
    Fuse *p, *g;
    const LoopBuffer *ring[PLAN_MAX_SIDES];
    ConvTile *conv[BAND_MAX_CONVS];
    Fuse *epi[BAND_MAX_CONVS];
    int64_t rows;    /* in a ring */
    FusePoint pt;    /* image, channel, row */
    LoopExpr *rb;    /* a map row's first element in the rings */
    LoopExpr *ahead; /* the channel whose operands are prefetched, or NULL */
    int phase;       /* 0: init, 1: accumulate, 2: finish the maps; 3: G */
} BandLower;

/* One vector (or lane) at column `at` of the current row. */
static void band_point(Sched *s, const BandLower *L, LoopStmt *block, LoopExpr *at, uint32_t lanes)
{
    FusePoint pt = L->pt;
    pt.at[3] = at;
    pt.lanes = lanes;
    if (L->phase == 3) {
        Fuse *g = L->g;
        LoopExpr *v = fuse_value(s, g, &pt, block);
        LoopExpr *i = fuse_index(s, &pt, g->dst_st, g->dst_off);
        ls_append(s->p, block, ls_store_streaming(s->p, g->dst, i, v));
        return;
    }
    Fuse *p = L->p;
    LoopExpr *i = ix_add(s, L->rb, at), *v = NULL;
    if (L->phase == 1) /* y at the point, once for all the maps */
        v = sched_local(s, block, "y", fuse_value(s, p, &pt, block));
    for (uint32_t k = 0; k < p->nside; k++) {
        const FuseSide *sd = &p->side[k];
        if (L->phase == 2 && !sd->count)
            continue; /* the reduction is the map */
        LoopExpr *r = L->phase == 0   ? fuse_side_init(s, sd, lanes)
                      : L->phase == 1 ? fuse_side_add(s, sd, fx_load(s, L->ring[k], i, lanes), v)
                                      : fuse_side_finish(s, sd, fx_load(s, L->ring[k], i, lanes));
        ls_append(s->p, block, ls_store(s->p, L->ring[k], i, r));
    }
}

static void band_body(Sched *s, LoopStmt *block, LoopExpr *at, uint32_t lanes, uint32_t nv,
                      const void *ctx)
{
    const BandLower *L = ctx;
    if (L->phase == 1 && lanes > 1 && L->ahead) {
        /* a channel's row is a short run the hardware prefetcher has no time to learn: fetch
         * the full-size operands of a channel ahead, a line per tile */
        FusePoint ahead = L->pt;
        ahead.at[1] = L->ahead;
        ahead.at[3] = at;
        for (uint32_t k = 0; k < L->p->nnodes; k++) {
            const TNode *t = L->p->nodes[k];
            if (t->kind == T_LEAF && t->st[1] && t->st[3] == 1)
                ls_append(s->p, block,
                          ls_prefetch(s->p, t->buf, fuse_index(s, &ahead, t->st, t->off), 3));
        }
    }
    for (uint32_t v = 0; v < nv; v++)
        band_point(s, L, block, ix_addc(s, at, (int64_t)v * lanes), lanes);
}

/* The loop over the channels at row `row`, with f's values fixed per channel hoisted. */
static void channel_loop(Sched *s, BandLower *L, Fuse *f, LoopStmt *block, LoopExpr *img,
                         LoopExpr *row)
{
    LoopVar *cv = sched_ivar(s, "c");
    LoopStmt *cl = sched_for(s, block, cv, ix_c(s, 0), ix_c(s, L->b->c), 1);
    L->pt.at[0] = img;
    L->pt.at[1] = ix_v(s, cv);
    L->pt.at[2] = row;
    L->ahead = NULL;
    if (L->phase == 1)
        L->ahead = sched_local(
            s, cl, "ahead",
            bin(s, LOP_MIN, ix_addc(s, ix_v(s, cv), PREFETCH_CHANNELS), ix_c(s, L->b->c - 1)));
    fuse_hoist(s, f, 7, &L->pt, cl);
    sched_span(s, cl, 0, L->b->w, 2, band_body, L, "x");
    fuse_unhoist(f);
}

/* Row r of every map (0 <= r < H), into the rings at r % rows. */
static void map_row(Sched *s, BandLower *L, LoopStmt *block, LoopExpr *img, LoopExpr *r)
{
    L->rb = sched_local(s, block, "rb", ix_mulc(s, ix_mod(s, r, L->rows), L->b->w));
    L->pt.at[0] = img;
    L->pt.at[1] = NULL;
    L->pt.at[2] = r;
    L->phase = 0;
    sched_span(s, block, 0, L->b->w, 1, band_body, L, "x");
    L->phase = 1;
    channel_loop(s, L, L->p, block, img, r);
    L->phase = 2;
    L->pt.at[1] = NULL;
    sched_span(s, block, 0, L->b->w, 1, band_body, L, "x");
}

/* Rows [y0, y0 + nrows) of image img: the window slides from row y0 - 2h (map rows from
 * y0 - h) to y0 + nrows - 1. */
static void band_rows(Sched *s, BandLower *L, LoopStmt *block, LoopExpr *img, LoopExpr *y0,
                      int64_t nrows)
{
    const Band *b = L->b;
    int64_t h = b->halo;
    LoopVar *qv = sched_ivar(s, "q");
    LoopStmt *ql = sched_for(s, block, qv, ix_addc(s, y0, -2 * h), ix_addc(s, y0, nrows), 1);
    LoopExpr *q = ix_v(s, qv);
    LoopExpr *r = sched_local(s, ql, "r", ix_addc(s, q, h));
    LoopStmt *in = ls_block(s->p);
    LoopExpr *inside = bin(s, LOP_AND, lx_cmp(s->p, LCMP_GE, r, ix_c(s, 0)),
                           lx_cmp(s->p, LCMP_LT, r, ix_c(s, b->h)));
    ls_append(s->p, ql, ls_if(s->p, inside, in, NULL));
    map_row(s, L, in, img, r);
    LoopStmt *out = ls_block(s->p);
    ls_append(s->p, ql, ls_if(s->p, lx_cmp(s->p, LCMP_GE, q, y0), out, NULL));
    for (uint32_t k = 0; k < b->nconv; k++) {
        s->epi = L->epi[k];
        conv_band_row(s, L->conv[k], out, img, q);
        s->epi = NULL;
    }
    L->phase = 3;
    channel_loop(s, L, L->g, out, img, q);
}

/* Rows per band: at least 8 bands in all where the image is tall enough, each at least 4 halos
 * tall so that the rows reduced twice stay a small part. */
static int64_t band_height(const Band *b)
{
    int64_t per_image = (8 + b->n - 1) / b->n;
    int64_t rows = (b->h + per_image - 1) / per_image;
    if (rows < 4 * b->halo)
        rows = 4 * b->halo;
    return rows < b->h ? rows : b->h;
}

static void band_lower(Sched *s, const Band *b)
{
    const Plan *pl = s->plan;
    uint32_t gc = b->first + b->nconv + 1;
    char name[256], comment[1024];
    snprintf(name, sizeof name, "%s_bands", pl->pub.group_name[gc]);
    BandLower L = {.b = b, .rows = 2 * b->halo + 1};
    int at = snprintf(comment, sizeof comment, "row bands of");
    for (uint32_t k = 0; k <= b->nconv + 1; k++)
        at += snprintf(comment + at, sizeof comment - (size_t)at, "%s %s", k ? "," : "",
                       pl->pub.group_name[b->first + k]);
    s->k = loop_add_kernel(s->p, arena_strdup(s->p->arena, name), NULL, false);
    s->prepare = false;
    L.p = b->pointwise ? fuse_new_with(s, b->first, -1, false) : fuse_new_reductions(s, b->first);
    fuse_deps(L.p);
    for (uint32_t k = 0; k < L.p->nside; k++)
        L.ring[k] = sched_thread(s, "ring", k, L.rows * b->w);
    for (uint32_t k = 0; k < b->nconv; k++) { /* in order: later ones read earlier results */
        const PlanGroup *grp = &pl->groups[b->first + 1 + k];
        L.epi[k] = fuse_new(s, b->first + 1 + k);
        s->epi = L.epi[k];
        L.conv[k] = conv_band_new(s, s->g->nodes[grp->anchor], L.ring[b->map_of[k]], L.rows);
        s->epi = NULL;
    }
    L.g = fuse_new_with(s, gc, b->pointwise ? (int32_t)b->first : -1, true);
    fuse_deps(L.g);
    snprintf(comment + at, sizeof comment - (size_t)at, "; %s", L.g->comment);
    s->k->comment = arena_strdup(s->p->arena, comment);
    L.pt.lane_axis = 3;
    int64_t rows = band_height(b), nb = (b->h + rows - 1) / rows, last = b->h - (nb - 1) * rows;
    LoopVar *tv = sched_ivar(s, "t");
    LoopStmt *body = sched_par(s, tv, b->n * nb);
    LoopExpr *img =
        b->n == 1 ? ix_c(s, 0) : sched_local(s, body, "img", ix_div(s, ix_v(s, tv), nb));
    LoopExpr *band =
        nb == 1 ? ix_c(s, 0) : sched_local(s, body, "band", ix_mod(s, ix_v(s, tv), nb));
    if (last == rows) {
        band_rows(s, &L, body, img, sched_local(s, body, "y0", ix_mulc(s, band, rows)), rows);
        return;
    }
    LoopStmt *full = ls_block(s->p), *tail = ls_block(s->p);
    ls_append(s->p, body, ls_if(s->p, lx_cmp(s->p, LCMP_LT, band, ix_c(s, nb - 1)), full, tail));
    band_rows(s, &L, full, img, sched_local(s, full, "y0", ix_mulc(s, band, rows)), rows);
    band_rows(s, &L, tail, img, ix_c(s, (nb - 1) * rows), last);
}

uint32_t sched_band(Sched *s, uint32_t gi)
{
    Band b;
    if (!band_match(s, gi, &b))
        return 0;
    band_lower(s, &b);
    return b.nconv + 2;
}
