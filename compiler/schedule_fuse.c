/*
 * schedule_fuse: a fused group's expression tree and the pointwise lowering of it.
 *
 * A group's members (schedule_plan.c) become a tree over the root's iteration space: members are
 * T_OP nodes (or, for permute, slice and squeeze views, a remapping of their operand's axes),
 * everything stored elsewhere is a T_LEAF read with per-axis strides (0 where broadcast), an
 * inlined upsample is a T_RESAMPLE evaluated from its stored input at the point, and the
 * anchor contraction is T_ACC, its accumulator. A node used twice is one tree node evaluated
 * once per point. Axes are merged where every operand (and every store) is contiguous across
 * them, except an upsample's row and column axes.
 * Evaluation at a point of `lanes` consecutive elements along the lane axis: a leaf is a
 * vector load (stride 1), a broadcast scalar load (stride 0) or a gather (other strides); an
 * upsample computes its taps per lane (index and weight vectors, gathered taps) exactly as the
 * unfused kernel does per element (or, in a contraction's epilogue over image rows, is built once
 * per row block and image row into thread scratch and loaded: fuse_build_rows; an x2 upsample
 * then takes its taps from one vector load per input row by shuffles, in the interior and at
 * the clamped edges, with the same weights and operations); a subtree that does not vary along the
 * lane axis is computed once as a scalar and broadcast, and one that depends only on the axes fixed
 * outside the inner loops is hoisted there (per row). Float operations are those of the unfused
 * lowering, in the same order, so fusion does not change results (reductions aside: see below).
 * Pointwise groups run as: a parallel loop over rows (all axes but the innermost, flattened),
 * inside it the innermost axis in vectors and a scalar tail. An x2 upsample along the innermost
 * axis is built once per row into thread scratch by fuse_build_rows (an upsample alone, straight
 * into its output), then loaded. Sibling roots (PlanGroup.extra) are evaluated at the same point
 * as the root, sharing its memoized operands, and stored beside it.
 * Side reductions reorder the loops so that each output is accumulated inside one parallel
 * iteration, in a fixed order, so the result never depends on the thread count: over trailing axes,
 * the parallel loop runs over the kept leading axes and serial loops over the rest (vector partials
 * reduced across lanes at the end, as the standalone reduction does); over one axis, that axis is a
 * serial loop inside each vector of the innermost axis.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "schedule_internal.h"
#include "util.h"

/* A node's axes seen from the iteration space: axis a is iteration axis ax[a] (-1: none, the
 * coordinate is fixed) plus add[a]. */
typedef struct AxMap {
    int32_t ax[FUSE_MAX_RANK];
    int64_t add[FUSE_MAX_RANK];
} AxMap;

static int32_t group_of(const Sched *s, const Node *n)
{
    return s->plan->pub.group_of[n->id];
}

static PlanRole role_of(const Sched *s, const Node *n)
{
    return s->plan->role[n->id];
}

/* ---- building the tree ---- */

static TNode *add_tnode(Sched *s, Fuse *f, TKind kind, const Node *n, const AxMap *key)
{
    TNode *t = ARENA_NEW(s->p->arena, TNode);
    t->kind = kind;
    t->n = n;
    t->ax_y = t->ax_x = -1;
    if (key) {
        memcpy(t->key_ax, key->ax, sizeof t->key_ax);
        memcpy(t->key_add, key->add, sizeof t->key_add);
    }
    if (f->nnodes == f->cap) {
        uint32_t cap = f->cap ? f->cap * 2 : 16;
        TNode **grown = ARENA_ARRAY(s->p->arena, TNode *, cap);
        if (f->nnodes)
            memcpy(grown, f->nodes, f->nnodes * sizeof *grown);
        f->nodes = grown;
        f->cap = cap;
    }
    f->nodes[f->nnodes++] = t;
    return t;
}

static TNode *find_tnode(Fuse *f, const Node *n, const AxMap *m, uint32_t rank)
{
    for (uint32_t i = 0; i < f->nnodes; i++) {
        TNode *t = f->nodes[i];
        if (t->n != n || t->kind == T_CONST || t->kind == T_ACC)
            continue;
        bool same = true;
        for (uint32_t a = 0; a < rank && same; a++)
            same = t->key_ax[a] == m->ax[a] && t->key_add[a] == m->add[a];
        if (same)
            return t;
    }
    return NULL;
}

/* Iteration strides of n's row-major elements seen through m. */
static void strides_through(const Shape *sh, const AxMap *m, int64_t *st, int64_t *off)
{
    int64_t own[FUSE_MAX_RANK];
    sched_strides(sh, own);
    memset(st, 0, FUSE_MAX_RANK * sizeof *st);
    *off = 0;
    for (uint32_t a = 0; a < sh->rank; a++) {
        if (sh->dim[a] == 1)
            continue;
        *off += m->add[a] * own[a];
        if (m->ax[a] >= 0)
            st[m->ax[a]] += own[a];
    }
}

/* The map of operand `in` of elementwise n (broadcast: trailing axes aligned). */
static AxMap operand_map(const Node *n, const Node *in, const AxMap *m)
{
    AxMap r;
    memset(&r, 0, sizeof r);
    uint32_t lead = n->shape.rank - in->shape.rank;
    for (uint32_t a = 0; a < in->shape.rank; a++) {
        r.ax[a] = -1;
        if (in->shape.dim[a] == 1)
            continue;
        r.ax[a] = m->ax[a + lead];
        r.add[a] = m->add[a + lead];
    }
    return r;
}

/* BatchNorm's per-channel operands: a [C] vector along the input's axis 1. */
static AxMap channel_map(const AxMap *m)
{
    AxMap r;
    memset(&r, 0, sizeof r);
    r.ax[0] = m->ax[1];
    r.add[0] = m->add[1];
    return r;
}

/* The map of a squeeze view's input: its non-1 axes are the view's, in order. */
static AxMap view_input_map(const Node *v, const AxMap *m)
{
    const Shape *in = &v->inputs[0]->shape, *out = &v->shape;
    AxMap r;
    memset(&r, 0, sizeof r);
    uint32_t o = 0;
    for (uint32_t a = 0; a < in->rank; a++) {
        r.ax[a] = -1;
        if (in->dim[a] == 1)
            continue;
        while (o < out->rank && out->dim[o] == 1)
            o++;
        FUSE_ASSERT(o < out->rank);
        r.ax[a] = m->ax[o];
        r.add[a] = m->add[o];
        o++;
    }
    return r;
}

static TNode *tree(Sched *s, Fuse *f, const Node *n, const AxMap *m);

static TNode *leaf(Sched *s, Fuse *f, const Node *n, const AxMap *m)
{
    TNode *t = add_tnode(s, f, T_LEAF, n, m);
    t->buf = sched_value(s, n);
    strides_through(&n->shape, m, t->st, &t->off);
    return t;
}

/* upsample(x) with x stored: the plane (N, C) through m, the row and column axes apart. */
static TNode *resample(Sched *s, Fuse *f, const Node *n, const AxMap *m)
{
    TNode *t = add_tnode(s, f, T_RESAMPLE, n, m);
    const Node *x = n->inputs[0];
    t->buf = sched_value(s, x);
    const Shape *is = &x->shape;
    int64_t plane = is->dim[2] * is->dim[3];
    for (uint32_t a = 0; a < 2; a++) {
        int64_t st = a == 0 ? is->dim[1] * plane : plane;
        if (is->dim[a] == 1)
            continue;
        t->off += m->add[a] * st;
        if (m->ax[a] >= 0)
            t->st[m->ax[a]] += st;
    }
    t->ax_y = n->shape.dim[2] == 1 ? -1 : m->ax[2];
    t->ax_x = n->shape.dim[3] == 1 ? -1 : m->ax[3];
    t->y_add = m->add[2];
    t->x_add = m->add[3];
    if (t->ax_y >= 0)
        f->pin[t->ax_y] = true;
    if (t->ax_x >= 0)
        f->pin[t->ax_x] = true;
    return t;
}

static bool is_member(const Sched *s, const Fuse *f, const Node *n)
{
    int32_t gi = (int32_t)(f->grp - s->plan->groups), at = group_of(s, n);
    PlanRole r = role_of(s, n);
    if (at >= 0 && at == f->inline_group) /* the root and the inline members of that group */
        return r == ROLE_INLINE || r == ROLE_ROOT;
    return at == gi && (r == ROLE_INLINE || r == ROLE_ROOT || r == ROLE_ANCHOR);
}

static TNode *tree(Sched *s, Fuse *f, const Node *n, const AxMap *m)
{
    if (f->grp->anchor == (int32_t)n->id) {
        if (!f->acc)
            f->acc = add_tnode(s, f, T_ACC, n, NULL);
        f->acc->refs++;
        return f->acc;
    }
    if (n->kind == OP_SCALAR) {
        TNode *t = add_tnode(s, f, T_CONST, n, NULL);
        t->c = n->attr.scalar.value;
        t->refs = 1;
        return t;
    }
    if (n->kind == OP_VIEW) {
        const Node *below = n->inputs[0];
        while (below->kind == OP_VIEW)
            below = below->inputs[0];
        if (is_member(s, f, below)) {
            AxMap im = view_input_map(n, m);
            return tree(s, f, n->inputs[0], &im);
        }
    }
    TNode *t = find_tnode(f, n, m, n->shape.rank);
    if (t) {
        t->refs++;
        return t;
    }
    if (!is_member(s, f, n)) {
        t = leaf(s, f, n, m);
    } else if (n->kind == OP_PERMUTE) {
        AxMap im;
        memset(&im, 0, sizeof im);
        for (uint32_t d = 0; d < n->shape.rank; d++) {
            im.ax[n->attr.permute.perm[d]] = m->ax[d];
            im.add[n->attr.permute.perm[d]] = m->add[d];
        }
        return tree(s, f, n->inputs[0], &im);
    } else if (n->kind == OP_SLICE) {
        AxMap im = *m;
        im.add[n->attr.slice.axis] += n->attr.slice.start;
        if (n->shape.dim[n->attr.slice.axis] == 1 &&
            n->inputs[0]->shape.dim[n->attr.slice.axis] > 1)
            im.ax[n->attr.slice.axis] = -1;
        return tree(s, f, n->inputs[0], &im);
    } else if (n->kind == OP_UPSAMPLE) {
        t = resample(s, f, n, m);
    } else {
        FUSE_ASSERT(n->kind == OP_BATCHNORM || op_info[n->kind].cls == OPC_UNARY ||
                    op_info[n->kind].cls == OPC_BINARY);
        TNode *in[5];
        for (uint32_t i = 0; i < n->ninputs; i++) {
            AxMap im =
                n->kind == OP_BATCHNORM && i > 0 ? channel_map(m) : operand_map(n, n->inputs[i], m);
            in[i] = tree(s, f, n->inputs[i], &im);
        }
        t = add_tnode(s, f, T_OP, n, m);
        t->nin = n->ninputs;
        memcpy(t->in, in, n->ninputs * sizeof *in);
    }
    t->refs = 1;
    return t;
}

/* "conv2d %6 + add %12 + relu %13: FILE:LINE: text" (members in order, the root's line). */
static const char *describe_group(Sched *s, const PlanGroup *grp)
{
    char what[256];
    int at = 0;
    const Graph *g = s->g;
    for (uint32_t i = 0; i <= grp->root && at < (int)sizeof what - 40; i++) {
        PlanRole r = role_of(s, g->nodes[i]);
        if (group_of(s, g->nodes[i]) != (int32_t)(grp - s->plan->groups) || r == ROLE_SIDE)
            continue;
        at += snprintf(what + at, sizeof what - (size_t)at, "%s%s %%%u", at ? " + " : "",
                       op_info[g->nodes[i]->kind].name, i);
    }
    for (uint32_t k = 0; k < grp->nside && at < (int)sizeof what - 40; k++)
        at += snprintf(what + at, sizeof what - (size_t)at, ", %s %%%u",
                       op_info[g->nodes[grp->side[k]]->kind].name, grp->side[k]);
    return sched_describe(s, g->nodes[grp->root], what);
}

const LoopBuffer *sched_slice_of(Sched *s, const Node *n, int64_t *st, int64_t *off)
{
    const Node *c = s->plan->into[n->id];
    const LoopBuffer *b = s->val[c->id] ? s->val[c->id] : sched_dest(s, c);
    uint32_t axis = c->attr.concat.axis;
    sched_strides(&c->shape, st);
    int64_t at = 0;
    for (uint32_t k = 0; c->inputs[k] != n; k++)
        at += c->inputs[k]->shape.dim[axis];
    *off = at * st[axis];
    return b;
}

/* buffers false: the side's reduction alone (no buffer, no strides). */
static void side_of(Sched *s, Fuse *f, const Node *r, bool buffers)
{
    FuseSide *sd = &f->side[f->nside++];
    sd->n = r;
    sd->op = r->kind == OP_AMAX ? LOP_MAX : r->kind == OP_AMIN ? LOP_MIN : LOP_ADD;
    const Shape *xs = &r->inputs[0]->shape;
    int64_t own[FUSE_MAX_RANK];
    memset(own, 0, sizeof own);
    if (buffers && s->plan->into[r->id]) /* a slice of a concat (same rank as the reduced value) */
        sd->buf = sched_slice_of(s, r, own, &sd->off);
    else if (buffers)
        sd->buf = sched_dest(s, r);
    if (buffers && !s->plan->into[r->id])
        sched_strides(&r->shape, own);
    uint32_t o = 0;
    int64_t count = 1;
    for (uint32_t d = 0; d < xs->rank; d++) {
        if (r->attr.reduce.axes[d]) {
            count *= xs->dim[d];
            f->red[d] = true;
            if (r->attr.reduce.keepdim)
                o++;
            continue;
        }
        sd->st[d] = xs->dim[d] == 1 ? 0 : own[o];
        o++;
    }
    sd->count = r->kind == OP_MEAN ? count : 0;
}

/* Where root n of a group is stored: its concat's slice, or its own buffer. */
static const LoopBuffer *root_dst(Sched *s, const Node *n, int64_t *st, int64_t *off)
{
    *off = 0;
    if (s->plan->into[n->id])
        return sched_slice_of(s, n, st, off);
    sched_strides(&n->shape, st);
    if (n->shape.rank == 0)
        st[0] = 1;
    return sched_dest(s, n);
}

Fuse *fuse_new(Sched *s, uint32_t gi)
{
    return fuse_new_with(s, gi, -1, true);
}

Fuse *fuse_new_with(Sched *s, uint32_t gi, int32_t inline_group, bool buffers)
{
    const PlanGroup *grp = &s->plan->groups[gi];
    const Node *root = s->g->nodes[grp->root];
    Fuse *f = ARENA_NEW(s->p->arena, Fuse);
    f->grp = grp;
    f->inline_group = inline_group;
    f->name = s->plan->pub.group_name[gi];
    f->comment = describe_group(s, grp);
    f->rank = root->shape.rank;
    memcpy(f->dim, root->shape.dim, sizeof f->dim);
    if (f->rank == 0) { /* a scalar: one element */
        f->rank = 1;
        f->dim[0] = 1;
    }
    for (uint32_t k = 0; k < grp->nside; k++)
        side_of(s, f, s->g->nodes[grp->side[k]], buffers);
    if (grp->store_root && buffers)
        f->dst = root_dst(s, root, f->dst_st, &f->dst_off);
    AxMap id;
    memset(&id, 0, sizeof id);
    for (uint32_t d = 0; d < FUSE_MAX_RANK; d++)
        id.ax[d] = (int32_t)d;
    f->root = tree(s, f, root, &id);
    for (uint32_t k = 0; k < grp->nextra; k++) { /* siblings share the tree's nodes */
        const Node *x = s->g->nodes[grp->extra[k]];
        f->xdst[k] = root_dst(s, x, f->xdst_st[k], &f->xdst_off[k]);
        f->xroot[k] = tree(s, f, x, &id);
        f->nextra++;
    }
    return f;
}

Fuse *fuse_new_reductions(Sched *s, uint32_t gi)
{
    const PlanGroup *grp = &s->plan->groups[gi];
    const Node *r = s->g->nodes[grp->root], *x = r->inputs[0];
    FUSE_ASSERT(grp->kind == GROUP_SINGLE && op_info[r->kind].cls == OPC_REDUCE);
    Fuse *f = ARENA_NEW(s->p->arena, Fuse);
    f->grp = grp;
    f->inline_group = -1;
    f->name = s->plan->pub.group_name[gi];
    f->comment = describe_group(s, grp);
    f->rank = x->shape.rank;
    memcpy(f->dim, x->shape.dim, sizeof f->dim);
    side_of(s, f, r, false);
    for (uint32_t k = 0; k < grp->nextra; k++)
        side_of(s, f, s->g->nodes[grp->extra[k]], false);
    AxMap id;
    memset(&id, 0, sizeof id);
    for (uint32_t d = 0; d < FUSE_MAX_RANK; d++)
        id.ax[d] = (int32_t)d;
    f->root = tree(s, f, x, &id);
    return f;
}

bool fuse_trivial(const Fuse *f)
{
    return f->root->kind == T_ACC && f->nside == 0;
}

/* ---- merging axes ---- */

/* Whether axes d-1, d of strides st can be one axis (st of the merged axis in *merged). */
static bool mergeable(const Fuse *f, const int64_t *st, uint32_t d, int64_t *merged)
{
    if (f->dim[d] == 1) {
        *merged = st[d - 1];
        return true;
    }
    if (f->dim[d - 1] == 1) {
        *merged = st[d];
        return true;
    }
    *merged = st[d];
    return st[d - 1] == st[d] * f->dim[d];
}

/* Moves axis `from` out and renumbers: axes above it shift down by one. */
static void remove_axis(int64_t *st, uint32_t rank, uint32_t from)
{
    for (uint32_t d = from; d + 1 < rank; d++)
        st[d] = st[d + 1];
    st[rank - 1] = 0;
}

static int32_t renumber(int32_t ax, uint32_t d)
{
    return ax < (int32_t)d ? ax : ax == (int32_t)d ? (int32_t)d - 1 : ax - 1;
}

bool fuse_merge(Fuse *f, uint32_t d)
{
    FUSE_ASSERT(d > 0 && d < f->rank);
    bool size1 = f->dim[d] == 1 || f->dim[d - 1] == 1;
    if (!size1 && (f->pin[d] || f->pin[d - 1] || f->red[d] != f->red[d - 1]))
        return false;
    int64_t m;
    if (f->dst && !mergeable(f, f->dst_st, d, &m))
        return false;
    for (uint32_t k = 0; k < f->nextra; k++)
        if (!mergeable(f, f->xdst_st[k], d, &m))
            return false;
    for (uint32_t k = 0; k < f->nside; k++)
        if (!mergeable(f, f->side[k].st, d, &m))
            return false;
    for (uint32_t i = 0; i < f->nnodes; i++) {
        TNode *t = f->nodes[i];
        if ((t->kind == T_LEAF || t->kind == T_RESAMPLE) && !mergeable(f, t->st, d, &m))
            return false;
    }
    /* Every operand agrees: rewrite them all. */
    if (f->dst) {
        mergeable(f, f->dst_st, d, &m);
        f->dst_st[d - 1] = m;
        remove_axis(f->dst_st, f->rank, d);
    }
    for (uint32_t k = 0; k < f->nextra; k++) {
        mergeable(f, f->xdst_st[k], d, &m);
        f->xdst_st[k][d - 1] = m;
        remove_axis(f->xdst_st[k], f->rank, d);
    }
    for (uint32_t k = 0; k < f->nside; k++) {
        mergeable(f, f->side[k].st, d, &m);
        f->side[k].st[d - 1] = m;
        remove_axis(f->side[k].st, f->rank, d);
    }
    for (uint32_t i = 0; i < f->nnodes; i++) {
        TNode *t = f->nodes[i];
        if (t->kind != T_LEAF && t->kind != T_RESAMPLE)
            continue;
        mergeable(f, t->st, d, &m);
        t->st[d - 1] = m;
        remove_axis(t->st, f->rank, d);
        if (t->kind == T_RESAMPLE) {
            /* a size-1 row or column merged away: its coordinate is 0 */
            if ((t->ax_y == (int32_t)d && f->dim[d] == 1) ||
                (t->ax_y == (int32_t)d - 1 && f->dim[d - 1] == 1))
                t->ax_y = -1;
            if ((t->ax_x == (int32_t)d && f->dim[d] == 1) ||
                (t->ax_x == (int32_t)d - 1 && f->dim[d - 1] == 1))
                t->ax_x = -1;
            if (t->ax_y >= 0)
                t->ax_y = renumber(t->ax_y, d);
            if (t->ax_x >= 0)
                t->ax_x = renumber(t->ax_x, d);
        }
    }
    bool red = f->dim[d] == 1 ? f->red[d - 1] : f->dim[d - 1] == 1 ? f->red[d] : f->red[d];
    bool pin = f->dim[d] == 1 ? f->pin[d - 1] : f->dim[d - 1] == 1 ? f->pin[d] : false;
    f->dim[d - 1] *= f->dim[d];
    f->red[d - 1] = red;
    f->pin[d - 1] = pin;
    for (uint32_t k = d; k + 1 < f->rank; k++) {
        f->dim[k] = f->dim[k + 1];
        f->red[k] = f->red[k + 1];
        f->pin[k] = f->pin[k + 1];
    }
    f->rank--;
    return true;
}

/* Merges every pair of axes that allows it, innermost first, and drops size-1 axes. */
static void collapse(Fuse *f)
{
    for (uint32_t d = f->rank; d-- > 1;)
        if (d < f->rank)
            fuse_merge(f, d);
    for (uint32_t d = f->rank; d-- > 1;) /* size-1 axes left between pinned ones */
        if (d < f->rank && (f->dim[d] == 1 || f->dim[d - 1] == 1))
            fuse_merge(f, d);
}

void fuse_deps(Fuse *f)
{
    uint32_t all = (1u << f->rank) - 1;
    for (uint32_t i = 0; i < f->nnodes; i++) {
        TNode *t = f->nodes[i];
        t->deps = 0;
        t->on_acc = t->kind == T_ACC;
        switch (t->kind) {
        case T_CONST:
            break;
        case T_ACC:
            t->deps = all;
            break;
        case T_LEAF:
        case T_RESAMPLE:
            for (uint32_t d = 0; d < f->rank; d++)
                if (t->st[d] != 0)
                    t->deps |= 1u << d;
            if (t->ax_y >= 0)
                t->deps |= 1u << t->ax_y;
            if (t->ax_x >= 0)
                t->deps |= 1u << t->ax_x;
            break;
        case T_OP:
            for (uint32_t k = 0; k < t->nin; k++) {
                t->deps |= t->in[k]->deps;
                t->on_acc = t->on_acc || t->in[k]->on_acc;
            }
            break;
        }
    }
}

/* ---- evaluation ---- */

/* v made `lanes` wide (a scalar is broadcast). */
static LoopExpr *widen(Sched *s, LoopExpr *v, uint32_t lanes)
{
    return v->type.lanes == lanes ? v : lx_broadcast(s->p, v, lanes);
}

/* a op b with a scalar side broadcast to the other's lanes. */
static LoopExpr *vbin(Sched *s, LoopOp op, LoopExpr *a, LoopExpr *b)
{
    uint32_t n = a->type.lanes > b->type.lanes ? a->type.lanes : b->type.lanes;
    return bin(s, op, widen(s, a, n), widen(s, b, n));
}

/* An i64 constant of `lanes` lanes. */
static LoopExpr *iconst(Sched *s, int64_t v, uint32_t lanes)
{
    return widen(s, ix_c(s, v), lanes);
}

/* a + b on indices, scalars folded, a scalar side broadcast. */
static LoopExpr *iadd(Sched *s, LoopExpr *a, LoopExpr *b)
{
    if (a->type.lanes == 1 && b->type.lanes == 1)
        return ix_add(s, a, b);
    return vbin(s, LOP_ADD, a, b);
}

LoopExpr *fuse_index(Sched *s, const FusePoint *pt, const int64_t *st, int64_t off)
{
    LoopExpr *i = ix_c(s, off);
    for (uint32_t d = 0; d < FUSE_MAX_RANK; d++)
        if (st[d] != 0 && pt->at[d])
            i = ix_add(s, i, ix_mulc(s, pt->at[d], st[d]));
    return i;
}

/* A coordinate of an upsample's output: scalar, or a lane vector along the lane axis. */
static LoopExpr *coord(Sched *s, const FusePoint *pt, int32_t ax, int64_t add, uint32_t lanes)
{
    if (ax < 0)
        return ix_c(s, add);
    LoopExpr *c = ix_addc(s, pt->at[ax], add);
    if ((uint32_t)ax != pt->lane_axis || lanes == 1)
        return c;
    if (c->kind == LEXPR_CONST_I && c->i == 0)
        return lx_iota(s->p, lanes);
    return bin(s, LOP_ADD, widen(s, c, lanes), lx_iota(s->p, lanes));
}

typedef struct Taps {
    LoopExpr *i0, *i1, *l0, *l1; /* l0, l1: the weights of i0 and i1 (bilinear; l0 = 1 - l1) */
} Taps;

/* Taps already computed into locals of `block`, for the same op, axis and coordinate: the
 * rows of a contraction's tile share their columns' taps. */
struct FuseTaps {
    const LoopStmt *block;
    const Node *n;
    int axis;
    LoopExpr *coord;
    Taps taps;
};

static bool same_expr(const LoopExpr *a, const LoopExpr *b)
{
    if (a == b)
        return true;
    if (!a || !b || a->kind != b->kind || a->type.scalar != b->type.scalar ||
        a->type.lanes != b->type.lanes)
        return false;
    switch (a->kind) {
    case LEXPR_CONST_I:
        return a->i == b->i;
    case LEXPR_CONST_F:
        return a->f == b->f;
    case LEXPR_VAR:
        return a->var == b->var;
    case LEXPR_IOTA:
        return true;
    case LEXPR_BINARY:
        return a->op.op == b->op.op && same_expr(a->op.a, b->op.a) && same_expr(a->op.b, b->op.b);
    case LEXPR_BROADCAST:
        return same_expr(a->op.a, b->op.a);
    default:
        return false;
    }
}

static Taps *cached_taps(Fuse *f, const LoopStmt *block, const Node *n, int axis, LoopExpr *c)
{
    for (uint32_t i = 0; i < f->ntaps; i++) {
        struct FuseTaps *t = &f->taps[i];
        if (t->block == block && t->n == n && t->axis == axis && same_expr(t->coord, c))
            return &t->taps;
    }
    return NULL;
}

static void cache_taps(Sched *s, Fuse *f, const LoopStmt *block, const Node *n, int axis,
                       LoopExpr *c, Taps taps)
{
    if (f->ntaps == f->cap_taps) {
        uint32_t cap = f->cap_taps ? f->cap_taps * 2 : 16;
        struct FuseTaps *grown = ARENA_ARRAY(s->p->arena, struct FuseTaps, cap);
        if (f->ntaps)
            memcpy(grown, f->taps, f->ntaps * sizeof *grown);
        f->taps = grown;
        f->cap_taps = cap;
    }
    f->taps[f->ntaps++] = (struct FuseTaps){block, n, axis, c, taps};
}

static LoopExpr *fconst(Sched *s, float v, uint32_t lanes)
{
    return fx_c(s, v, lanes);
}

/* Taps of output coordinate d (i64, any lanes) along one axis, as sched_upsample computes them:
 * bilinear src = max(fma(ratio, d + 0.5, -0.5), 0) (or ratio * d with align_corners), i0 =
 * min(trunc(src), in-1), i1 = min(i0+1, in-1), l1 = clamp(src - i0, 0, 1); an axis of equal
 * size reads d with weight 0; nearest as PyTorch's legacy nearest. */
static Taps taps(Sched *s, LoopStmt *block, LoopExpr *d, float ratio, int64_t in, int64_t out,
                 bool bilinear, bool ac)
{
    d = sched_local(s, block, "d", d);
    uint32_t n = d->type.lanes;
    Taps t = {d, d, NULL, fconst(s, 0.0f, n)};
    if (in == out) {
        t.l0 = vbin(s, LOP_SUB, fconst(s, 1.0f, 1), t.l1);
        return t;
    }
    LoopExpr *fd = lx_cast(s->p, d, LT_F32);
    if (!bilinear) {
        if (out == 2 * in) {
            t.i0 = bin(s, LOP_FLOORDIV, d, iconst(s, 2, n));
        } else {
            LoopExpr *fl = lx_unary(s->p, LOP_FLOOR, bin(s, LOP_MUL, fd, fconst(s, ratio, n)));
            t.i0 = bin(s, LOP_MIN, lx_cast(s->p, fl, LT_I64), iconst(s, in - 1, n));
        }
        t.i0 = t.i1 = sched_local(s, block, "n", t.i0);
        return t;
    }
    LoopExpr *src;
    if (ac)
        src = bin(s, LOP_MUL, fconst(s, ratio, n), fd);
    else
        src = bin(s, LOP_MAX,
                  lx_fma(s->p, fconst(s, ratio, n), bin(s, LOP_ADD, fd, fconst(s, 0.5f, n)),
                         fconst(s, -0.5f, n)),
                  fconst(s, 0.0f, n));
    src = sched_local(s, block, "s", src);
    t.i0 = sched_local(s, block, "i",
                       bin(s, LOP_MIN, lx_cast(s->p, src, LT_I64), iconst(s, in - 1, n)));
    t.i1 =
        sched_local(s, block, "i",
                    bin(s, LOP_MIN, bin(s, LOP_ADD, t.i0, iconst(s, 1, n)), iconst(s, in - 1, n)));
    LoopExpr *frac = bin(s, LOP_SUB, src, lx_cast(s->p, t.i0, LT_F32));
    t.l1 =
        sched_local(s, block, "l",
                    bin(s, LOP_MIN, bin(s, LOP_MAX, frac, fconst(s, 0.0f, n)), fconst(s, 1.0f, n)));
    t.l0 = sched_local(s, block, "l", vbin(s, LOP_SUB, fconst(s, 1.0f, 1), t.l1));
    return t;
}

/* One element (or lanes of them) of buf at index i (scalar: a load; vector: a gather). */
static LoopExpr *fetch(Sched *s, const LoopBuffer *b, LoopExpr *i)
{
    return i->type.lanes == 1 ? fx_load(s, b, i, 1) : lx_gather(s->p, b, i);
}

/* The taps of upsample n along axis (0 rows, 1 columns) at coordinate c, once per block. */
static Taps axis_taps(Sched *s, Fuse *f, LoopStmt *block, const Node *n, int axis, LoopExpr *c)
{
    Taps *known = cached_taps(f, block, n, axis, c);
    if (known)
        return *known;
    const Shape *is = &n->inputs[0]->shape;
    Taps t = taps(s, block, c, axis ? n->attr.upsample.ratio_w : n->attr.upsample.ratio_h,
                  is->dim[2 + axis], n->shape.dim[2 + axis], n->attr.upsample.bilinear,
                  n->attr.upsample.align_corners);
    cache_taps(s, f, block, n, axis, c, t);
    return t;
}

/* The input columns a vector of output columns reads, as one window: lane l reads columns
 * start + sel0[l] and (bilinear) start + sel1[l] of each input row it blends, so one vector load
 * per row and a shuffle per tap replace gathers. fixed: NULL, or the vector's row and column
 * taps when the caller computed them once per row. */
typedef struct ColWindow {
    LoopExpr *start;
    uint8_t sel0[16], sel1[16];
    const Taps *fixed;
} ColWindow;

/* The window of an x2 interior vector at output column x0: lane l reads taps i0 = jb + (l + 1) / 2
 * and i1 = i0 + 1 (bilinear, jb = x0 / 2 - 1: input columns (x0 + l) / 2 - 1 for even l,
 * (x0 + l) / 2 for odd l); nearest reads jb + l / 2 (jb = x0 / 2). */
static ColWindow x2_window(LoopExpr *jb, bool bilinear, uint32_t lanes, const Taps *fixed)
{
    ColWindow w = {.start = jb, .fixed = fixed};
    for (uint32_t l = 0; l < lanes; l++) {
        w.sel0[l] = (uint8_t)(bilinear ? (l + 1) / 2 : l / 2);
        w.sel1[l] = (uint8_t)(w.sel0[l] + 1);
    }
    return w;
}

/* The input column upsample `up` reads for output column d (tap i1 when second), as taps()
 * computes it at run time. */
static int64_t column_tap(const Node *up, int64_t d, bool second)
{
    int64_t in = up->inputs[0]->shape.dim[3], out = up->shape.dim[3];
    float ratio = up->attr.upsample.ratio_w;
    int64_t i0;
    if (in == out)
        return d;
    if (!up->attr.upsample.bilinear) {
        i0 = out == 2 * in ? d / 2 : (int64_t)floorf((float)d * ratio);
        return i0 < in - 1 ? i0 : in - 1;
    }
    float src = up->attr.upsample.align_corners ? ratio * (float)d
                                                : fmaxf(fmaf(ratio, (float)d + 0.5f, -0.5f), 0.0f);
    i0 = (int64_t)src < in - 1 ? (int64_t)src : in - 1;
    return second && i0 + 1 < in ? i0 + 1 : i0;
}

/* The window of the vector of `lanes` output columns from the constant x0, when every column
 * it reads lies within `lanes` consecutive input columns (the edges of an x2 upsample, where
 * the taps clamp). */
static bool const_window(Sched *s, const Node *up, int64_t x0, uint32_t lanes, ColWindow *w)
{
    int64_t in = up->inputs[0]->shape.dim[3];
    if (lanes < 2 || in < lanes || x0 + lanes > up->shape.dim[3])
        return false;
    /* the taps grow with the column: the first lane's i0 is the least, the last's i1 the most */
    int64_t start = column_tap(up, x0, false), last = column_tap(up, x0 + lanes - 1, true);
    if (start > in - (int64_t)lanes)
        start = in - lanes;
    if (last - start >= lanes)
        return false;
    *w = (ColWindow){.start = ix_c(s, start)};
    for (uint32_t l = 0; l < lanes; l++) {
        w->sel0[l] = (uint8_t)(column_tap(up, x0 + l, false) - start);
        w->sel1[l] = (uint8_t)(column_tap(up, x0 + l, true) - start);
    }
    return true;
}

/* The two taps of a row starting at r (scalar) for the columns of window w: one vector load,
 * two shuffles. */
static void window_taps(Sched *s, const LoopBuffer *b, LoopExpr *r, const ColWindow *w,
                        uint32_t lanes, LoopStmt *block, LoopExpr **i0, LoopExpr **i1)
{
    LoopExpr *v = sched_local(s, block, "z", fx_load(s, b, ix_add(s, r, w->start), lanes));
    *i0 = lx_shuffle(s->p, v, w->sel0);
    *i1 = lx_shuffle(s->p, v, w->sel1);
}

/* upsample at pt, `lanes` wide (1 when it does not vary along the lane axis). win: NULL, or
 * the window of input columns the vector reads (see ColWindow), whose taps are then shuffled
 * out of one vector load per input row; the weights and operations are those of the gathers. */
static LoopExpr *eval_resample(Sched *s, Fuse *f, const TNode *t, const FusePoint *pt,
                               uint32_t lanes, LoopStmt *block, const ColWindow *win)
{
    const Node *n = t->n;
    const Shape *is = &n->inputs[0]->shape;
    int64_t iw = is->dim[3];
    bool bil = n->attr.upsample.bilinear;
    LoopExpr *plane = fuse_index(s, pt, t->st, t->off);
    if (lanes > 1 && t->st[pt->lane_axis] != 0)
        plane = bin(s, LOP_ADD, widen(s, plane, lanes),
                    bin(s, LOP_MUL, lx_iota(s->p, lanes), iconst(s, t->st[pt->lane_axis], lanes)));
    const Taps *fixed = win ? win->fixed : NULL;
    Taps ty =
        fixed ? fixed[0] : axis_taps(s, f, block, n, 0, coord(s, pt, t->ax_y, t->y_add, lanes));
    Taps tx = {0}; /* a nearest window needs no column taps */
    if (fixed)
        tx = fixed[1];
    else if (bil || !win)
        tx = axis_taps(s, f, block, n, 1, coord(s, pt, t->ax_x, t->x_add, lanes));
    LoopExpr *r0 = sched_local(
        s, block, "r", iadd(s, plane, vbin(s, LOP_MUL, ty.i0, iconst(s, iw, ty.i0->type.lanes))));
    if (!bil && win) /* one vector load, shuffled */
        return lx_shuffle(
            s->p, sched_local(s, block, "z", fx_load(s, t->buf, ix_add(s, r0, win->start), lanes)),
            win->sel0);
    if (!bil)
        return fetch(s, t->buf, iadd(s, r0, tx.i0));
    LoopExpr *r1 = sched_local(
        s, block, "r", iadd(s, plane, vbin(s, LOP_MUL, ty.i1, iconst(s, iw, ty.i1->type.lanes))));
    LoopExpr *a, *b, *c, *d;
    if (win) {
        FUSE_ASSERT(r0->type.lanes == 1 && r1->type.lanes == 1 && lanes > 1);
        window_taps(s, t->buf, r0, win, lanes, block, &a, &b);
        window_taps(s, t->buf, r1, win, lanes, block, &c, &d);
    } else {
        a = fetch(s, t->buf, iadd(s, r0, tx.i0));
        b = fetch(s, t->buf, iadd(s, r0, tx.i1));
        c = fetch(s, t->buf, iadd(s, r1, tx.i0));
        d = fetch(s, t->buf, iadd(s, r1, tx.i1));
    }
    LoopExpr *w0 = tx.l0, *h0 = ty.l0;
    LoopExpr *top = vbin(s, LOP_ADD, vbin(s, LOP_MUL, w0, a), vbin(s, LOP_MUL, tx.l1, b));
    LoopExpr *bot = vbin(s, LOP_ADD, vbin(s, LOP_MUL, w0, c), vbin(s, LOP_MUL, tx.l1, d));
    return widen(s, vbin(s, LOP_ADD, vbin(s, LOP_MUL, h0, top), vbin(s, LOP_MUL, ty.l1, bot)),
                 lanes);
}

static LoopExpr *eval_leaf(Sched *s, const TNode *t, const FusePoint *pt, uint32_t lanes)
{
    LoopExpr *i = fuse_index(s, pt, t->st, t->off);
    if (lanes == 1)
        return fx_load(s, t->buf, i, 1);
    int64_t st = t->st[pt->lane_axis];
    if (st == 1)
        return fx_load(s, t->buf, i, lanes);
    LoopExpr *step = bin(s, LOP_MUL, lx_iota(s->p, lanes), iconst(s, st, lanes));
    return lx_gather(s->p, t->buf, bin(s, LOP_ADD, widen(s, i, lanes), step));
}

/* t's value at pt: pt->lanes wide if t varies along the lane axis, else a scalar. */
static LoopExpr *eval(Sched *s, Fuse *f, TNode *t, const FusePoint *pt, LoopStmt *block)
{
    if (t->hoisted[pt->slot])
        return lx_var(s->p, t->hoisted[pt->slot]);
    if (t->gen == f->gen && t->memo)
        return t->memo;
    uint32_t lanes = pt->lanes > 1 && (t->deps >> pt->lane_axis & 1) ? pt->lanes : 1;
    LoopExpr *v = NULL;
    switch (t->kind) {
    case T_CONST:
        return lx_const_f(s->p, t->c);
    case T_ACC:
        FUSE_ASSERT(pt->acc);
        return pt->acc;
    case T_LEAF:
        v = eval_leaf(s, t, pt, lanes);
        break;
    case T_RESAMPLE:
        if (t->ubase[pt->slot])
            v = fx_load(s, t->ubuf, ix_add(s, t->ubase[pt->slot], pt->at[t->ax_x]), lanes);
        else
            v = eval_resample(s, f, t, pt, lanes, block, NULL);
        break;
    case T_OP: {
        /* operands are locals: an op may read one several times (relu, silu, gelu) */
        LoopExpr *args[5];
        for (uint32_t k = 0; k < t->nin; k++) {
            LoopExpr *a = sched_local(s, block, "v", eval(s, f, t->in[k], pt, block));
            if (t->in[k]->gen == f->gen) /* another user (a sibling) reads the same local */
                t->in[k]->memo = a;
            args[k] = widen(s, a, lanes);
        }
        v = sched_elementwise(s, t->n, args, lanes);
        break;
    }
    }
    if (t->refs > 1 && v->kind != LEXPR_LOAD) {
        LoopVar *lv = sched_fvar(s, "e", lanes);
        ls_append(s->p, block, ls_decl(s->p, lv, v));
        v = lx_var(s->p, lv);
    }
    t->gen = f->gen;
    t->memo = v;
    return v;
}

LoopExpr *fuse_value(Sched *s, Fuse *f, const FusePoint *pt, LoopStmt *block)
{
    f->gen++;
    return widen(s, eval(s, f, f->root, pt, block), pt->lanes);
}

void fuse_hoist(Sched *s, Fuse *f, uint32_t fixed, const FusePoint *pt, LoopStmt *block)
{
    FUSE_ASSERT(pt->slot < FUSE_MAX_SLOTS);
    f->gen++;
    FusePoint one = *pt;
    one.lanes = 1;
    for (uint32_t i = 0; i < f->nnodes; i++) {
        TNode *t = f->nodes[i];
        if (t->kind == T_CONST || t->on_acc || (t->deps & ~fixed) != 0 || t->hoisted[pt->slot])
            continue;
        LoopExpr *v = eval(s, f, t, &one, block);
        if (v->kind == LEXPR_VAR) {
            t->hoisted[pt->slot] = v->var;
            continue;
        }
        LoopVar *lv = sched_fvar(s, t->kind == T_OP ? "h" : "w", 1);
        ls_append(s->p, block, ls_decl(s->p, lv, v));
        t->hoisted[pt->slot] = lv;
    }
}

void fuse_unhoist(Fuse *f)
{
    for (uint32_t i = 0; i < f->nnodes; i++)
        memset(f->nodes[i]->hoisted, 0, sizeof f->nodes[i]->hoisted);
}

typedef struct BuildCtx {
    Fuse *f;
    const TNode *t;
    const FusePoint *rows;
    uint32_t n, x_axis;
    const LoopBuffer *buf; /* row i is at base[i] + column in buf */
    LoopExpr *const *base;
    bool x2;                       /* columns of x2 interior vectors */
    Taps fixed[FUSE_MAX_SLOTS][2]; /* their row and column taps, per row */
} BuildCtx;

static void build_body(Sched *s, LoopStmt *block, LoopExpr *at, uint32_t lanes, uint32_t nv,
                       const void *ctx)
{
    (void)nv;
    const BuildCtx *c = ctx;
    const Node *up = c->t->n;
    bool bil = up->attr.upsample.bilinear;
    LoopExpr *jb =
        c->x2 ? sched_local(s, block, "jb", ix_addc(s, ix_div(s, at, 2), bil ? -1 : 0)) : NULL;
    ColWindow edge;
    bool at_edge = !c->x2 && at->kind == LEXPR_CONST_I && const_window(s, up, at->i, lanes, &edge);
    for (uint32_t i = 0; i < c->n; i++) { /* the rows share the taps */
        FusePoint pt = c->rows[i];
        pt.at[c->x_axis] = at;
        pt.lane_axis = c->x_axis;
        pt.lanes = lanes;
        pt.acc = NULL;
        ColWindow interior;
        const ColWindow *win = NULL;
        if (c->x2) {
            interior = x2_window(jb, bil, lanes, c->fixed[i]);
            win = &interior;
        } else if (at_edge) {
            win = &edge;
        }
        LoopExpr *v = eval_resample(s, c->f, c->t, &pt, lanes, block, win);
        ls_append(s->p, block, ls_store(s->p, c->buf, ix_add(s, c->base[i], at), v));
    }
}

/* The columns [*lo, *hi) of x2 interior vectors of upsample up over rows of `width` columns,
 * for an x2 upsample over its whole width: bilinear (align_corners false), those whose load from
 * x0/2 - 1 stays in the row and no tap is clamped (vl <= x0 <= 2 (in_w + 1 - vl)); nearest,
 * those whose load from x0/2 stays in the row (x0 <= 2 (in_w - vl)). Returns whether there are
 * any. */
static bool x2_interior(const Sched *s, const Node *up, int64_t width, int64_t *lo, int64_t *hi)
{
    uint32_t vl = s->vl;
    int64_t in_w = up->inputs[0]->shape.dim[3], out_w = up->shape.dim[3];
    bool bil = up->attr.upsample.bilinear;
    int64_t first = bil ? vl : 0, last = bil ? 2 * (in_w + 1 - (int64_t)vl) : 2 * (in_w - vl);
    *lo = *hi = 0;
    if ((bil && (up->attr.upsample.align_corners || up->attr.upsample.ratio_w != 0.5f)) ||
        out_w != 2 * in_w || width != out_w || vl < 8 || last < first)
        return false;
    *lo = first;
    *hi = *lo + ((last - *lo) / vl + 1) * vl;
    return true;
}

/* Computes upsample t along column axis x_axis at the points rows[0..n) for columns
 * [0, width) into buf at base[i] + column: vectors and a scalar tail; an x2 bilinear upsample
 * (align_corners false) over its whole width takes the taps of its interior vectors by
 * shuffles. */
static void build_into(Sched *s, Fuse *f, const TNode *t, const FusePoint *rows, uint32_t n,
                       uint32_t x_axis, int64_t width, LoopStmt *block, const LoopBuffer *buf,
                       LoopExpr *const *base)
{
    int64_t lo = 0, hi = 0;
    BuildCtx c = {f, t, rows, n, x_axis, buf, base, false, {{{0}}}};
    if (x2_interior(s, t->n, width, &lo, &hi))
        for (uint32_t i = 0; i < n; i++) { /* the interior taps, once per row */
            FusePoint pt = rows[i];
            pt.at[x_axis] = ix_c(s, lo);
            pt.lane_axis = x_axis;
            pt.lanes = s->vl;
            c.fixed[i][0] = axis_taps(s, f, block, t->n, 0, coord(s, &pt, t->ax_y, t->y_add, 1));
            if (t->n->attr.upsample.bilinear) /* nearest needs no column taps */
                c.fixed[i][1] = axis_taps(s, f, block, t->n, 1, coord(s, &pt, t->ax_x, 0, s->vl));
        }
    sched_span(s, block, 0, lo, 1, build_body, &c, "x");
    c.x2 = true;
    sched_span(s, block, lo, hi, 1, build_body, &c, "x");
    c.x2 = false;
    sched_span(s, block, hi, width, 1, build_body, &c, "x");
}

void fuse_build_rows(Sched *s, Fuse *f, const FusePoint *rows, uint32_t n, uint32_t x_axis,
                     int64_t width, LoopStmt *block)
{
    for (uint32_t k = 0; k < f->nnodes; k++) {
        TNode *t = f->nodes[k];
        if (t->kind != T_RESAMPLE || t->ax_x != (int32_t)x_axis || t->x_add != 0)
            continue;
        if (!t->ubuf || t->ubuf->elems < (int64_t)n * width)
            t->ubuf = sched_thread(s, "up", t->n->id, (int64_t)n * width);
        LoopExpr *base[FUSE_MAX_SLOTS];
        for (uint32_t i = 0; i < n; i++) {
            t->ubase[rows[i].slot] = NULL;
            base[i] = ix_c(s, (int64_t)i * width);
        }
        build_into(s, f, t, rows, n, x_axis, width, block, t->ubuf, base);
        for (uint32_t i = 0; i < n; i++)
            t->ubase[rows[i].slot] = base[i];
    }
}

void fuse_unbuild(Fuse *f)
{
    for (uint32_t i = 0; i < f->nnodes; i++)
        memset(f->nodes[i]->ubase, 0, sizeof f->nodes[i]->ubase);
}

LoopExpr *fuse_side_init(Sched *s, const FuseSide *sd, uint32_t lanes)
{
    float v = sd->op == LOP_MAX ? -INFINITY : sd->op == LOP_MIN ? INFINITY : 0.0f;
    return fx_c(s, v, lanes);
}

LoopExpr *fuse_side_add(Sched *s, const FuseSide *sd, LoopExpr *acc, LoopExpr *v)
{
    return bin(s, sd->op, acc, v);
}

LoopExpr *fuse_side_finish(Sched *s, const FuseSide *sd, LoopExpr *acc)
{
    if (!sd->count)
        return acc;
    return bin(s, LOP_DIV, acc, fx_c(s, (float)sd->count, acc->type.lanes));
}

/* ---- the pointwise lowering ---- */

/* SIDE_AXIS groups (a reduction over an outer axis, e.g. the channels of each pixel): the
 * innermost axis runs in blocks of SIDE_AXIS_BLOCK elements (axis_block), in parallel with the
 * other axes. */
enum { SIDE_AXIS_BLOCK = 512 };

typedef struct PwLoop {
    Fuse *f;
    FusePoint pt;
    const LoopVar *vacc[PLAN_MAX_SIDES], *sacc[PLAN_MAX_SIDES]; /* SIDE_TRAILING accumulators */
    int32_t inner;                                              /* SIDE_AXIS: that axis, else -1 */
} PwLoop;

/* The root at the point, stored; side reductions accumulate it. whole_lines: the caller's
 * step stores whole cache lines of each destination row, so the stores are streaming
 * candidates (mark_streaming_stores decides). */
static LoopExpr *point(Sched *s, Fuse *f, const FusePoint *pt, LoopStmt *block, bool whole_lines)
{
    LoopStmt *(*store)(LoopProgram *, const LoopBuffer *, LoopExpr *, LoopExpr *) =
        whole_lines && pt->lanes > 1 ? ls_store_streaming : ls_store;
    LoopExpr *v = fuse_value(s, f, pt, block);
    if (f->dst && f->nside) /* stored and accumulated */
        v = sched_local(s, block, "y", v);
    if (f->dst)
        ls_append(s->p, block, store(s->p, f->dst, fuse_index(s, pt, f->dst_st, f->dst_off), v));
    for (uint32_t k = 0; k < f->nextra; k++) { /* same point, same evaluation: shared locals */
        LoopExpr *x = widen(s, eval(s, f, f->xroot[k], pt, block), pt->lanes);
        LoopExpr *i = fuse_index(s, pt, f->xdst_st[k], f->xdst_off[k]);
        ls_append(s->p, block, store(s->p, f->xdst[k], i, x));
    }
    return v;
}

/* `lanes` elements at innermost index `at`. */
static void pw_body(Sched *s, LoopStmt *block, LoopExpr *at, uint32_t lanes, uint32_t nv,
                    const void *ctx)
{
    (void)nv;
    const PwLoop *L = ctx;
    Fuse *f = L->f;
    FusePoint pt = L->pt;
    pt.at[pt.lane_axis] = at;
    pt.lanes = lanes;
    FUSE_ASSERT(L->inner < 0);
    LoopExpr *v = point(s, f, &pt, block, false);
    for (uint32_t k = 0; k < f->nside; k++) {
        const LoopVar *acc = lanes > 1 ? L->vacc[k] : L->sacc[k];
        ls_append(s->p, block,
                  ls_assign(s->p, acc, fuse_side_add(s, &f->side[k], lx_var(s->p, acc), v)));
    }
}

/* ---- SIDE_AXIS: reductions over an outer axis ---- */

/* One block of `width` elements of the innermost axis at `base`: the partial reductions of
 * each element in per-thread rows, the reduced axis outside and the block inside, so each
 * step of the reduced axis sweeps whole cache lines of every row it reads and writes (the
 * hardware prefetcher follows them); each element is still accumulated in the axis' order. */
typedef struct AxisCtx {
    const PwLoop *L;
    LoopExpr *base;
    const LoopBuffer *acc[PLAN_MAX_SIDES];
    int phase; /* 0: init, 1: accumulate, 2: finish */
} AxisCtx;

static void axis_body(Sched *s, LoopStmt *block, LoopExpr *at, uint32_t lanes, uint32_t nv,
                      const void *ctx)
{
    (void)nv;
    const AxisCtx *c = ctx;
    Fuse *f = c->L->f;
    FusePoint pt = c->L->pt;
    pt.at[pt.lane_axis] = ix_add(s, c->base, at);
    pt.lanes = lanes;
    if (c->phase == 0) {
        for (uint32_t k = 0; k < f->nside; k++)
            ls_append(s->p, block,
                      ls_store(s->p, c->acc[k], at, fuse_side_init(s, &f->side[k], lanes)));
        return;
    }
    if (c->phase == 1) {
        LoopExpr *v = point(s, f, &pt, block, true);
        for (uint32_t k = 0; k < f->nside; k++) {
            LoopExpr *sum = fuse_side_add(s, &f->side[k], fx_load(s, c->acc[k], at, lanes), v);
            ls_append(s->p, block, ls_store(s->p, c->acc[k], at, sum));
        }
        return;
    }
    pt.at[c->L->inner] = NULL;
    for (uint32_t k = 0; k < f->nside; k++) {
        LoopExpr *i = fuse_index(s, &pt, f->side[k].st, f->side[k].off);
        LoopExpr *r = fuse_side_finish(s, &f->side[k], fx_load(s, c->acc[k], at, lanes));
        ls_append(s->p, block, ls_store(s->p, f->side[k].buf, i, r));
    }
}

static void axis_block(Sched *s, const PwLoop *L, const LoopBuffer *const *acc, LoopStmt *block,
                       LoopExpr *base, int64_t width)
{
    Fuse *f = L->f;
    AxisCtx c = {.L = L, .base = base};
    for (uint32_t k = 0; k < f->nside; k++)
        c.acc[k] = acc[k];
    sched_span(s, block, 0, width, 1, axis_body, &c, "i");
    c.phase = 1;
    LoopVar *cv = sched_ivar(s, "c");
    LoopStmt *in = sched_for(s, block, cv, ix_c(s, 0), ix_c(s, f->dim[L->inner]), 1);
    PwLoop at_c = *L;
    at_c.pt.at[L->inner] = ix_v(s, cv);
    c.L = &at_c;
    sched_span(s, in, 0, width, 1, axis_body, &c, "i");
    c.phase = 2;
    c.L = L;
    sched_span(s, block, 0, width, 1, axis_body, &c, "i");
}

/* Coordinates of the axes in `axes` (a bit mask) from the flat parallel index r, DECLared in
 * block; returns the number of iterations. */
static int64_t digits(Sched *s, Fuse *f, uint32_t axes, LoopExpr *r, FusePoint *pt, LoopStmt *block)
{
    int64_t inner = 1;
    for (uint32_t d = f->rank; d-- > 0;) {
        if (!(axes >> d & 1))
            continue;
        LoopExpr *digit = ix_div(s, r, inner);
        inner *= f->dim[d];
        bool last = true; /* the outermost digit needs no modulo */
        for (uint32_t e = 0; e < d; e++)
            last = last && !(axes >> e & 1);
        if (!last)
            digit = ix_mod(s, digit, f->dim[d]);
        if (digit->kind == LEXPR_VAR || digit->kind == LEXPR_CONST_I) {
            pt->at[d] = digit;
            continue;
        }
        LoopVar *v = sched_ivar(s, "i");
        ls_append(s->p, block, ls_decl(s->p, v, digit));
        pt->at[d] = ix_v(s, v);
    }
    return inner;
}

/* A span body shifted by a base: at = base + i. */
typedef struct Shifted {
    const PwLoop *L;
    LoopExpr *base;
} Shifted;

static void shifted_body(Sched *s, LoopStmt *block, LoopExpr *at, uint32_t lanes, uint32_t nv,
                         const void *ctx)
{
    const Shifted *sh = ctx;
    pw_body(s, block, ix_add(s, sh->base, at), lanes, nv, sh->L);
}

static void span_at(Sched *s, const PwLoop *L, LoopStmt *block, LoopExpr *base, int64_t lo,
                    int64_t hi)
{
    if (base->kind == LEXPR_CONST_I && base->i == 0) {
        sched_span(s, block, lo, hi, 1, pw_body, L, "i");
        return;
    }
    Shifted sh = {L, base};
    sched_span(s, block, lo, hi, 1, shifted_body, &sh, "i");
}

/* A single axis: parallel over blocks of it (serial in prepare kernels or when short). */
static void pw_single(Sched *s, const PwLoop *L, int64_t len)
{
    const int64_t block = (int64_t)s->vl * 1024;
    if (s->prepare || len <= block) {
        fuse_hoist(s, L->f, 0, &L->pt, s->k->body);
        span_at(s, L, s->k->body, ix_c(s, 0), 0, len);
        return;
    }
    int64_t nb = (len + block - 1) / block;
    fuse_hoist(s, L->f, 0, &L->pt, s->k->body);
    LoopVar *b = sched_ivar(s, "b");
    LoopStmt *body = sched_par(s, b, nb);
    LoopExpr *start = ix_mulc(s, ix_v(s, b), block);
    if (nb * block == len) {
        span_at(s, L, body, start, 0, block);
        return;
    }
    LoopStmt *full = ls_block(s->p), *last = ls_block(s->p);
    ls_append(s->p, body,
              ls_if(s->p, lx_cmp(s->p, LCMP_LT, ix_v(s, b), ix_c(s, nb - 1)), full, last));
    span_at(s, L, full, start, 0, block);
    span_at(s, L, last, ix_c(s, 0), (nb - 1) * block, len);
}

/* Whether f reads an x2 bilinear upsample along the innermost axis that fuse_build_rows builds
 * by shuffles (vector loads of the built row then replace gathers). */
static bool x2_rows(const Sched *s, const Fuse *f, uint32_t last)
{
    int64_t lo, hi;
    for (uint32_t k = 0; k < f->nnodes; k++) {
        const TNode *t = f->nodes[k];
        if (t->kind == T_RESAMPLE && t->ax_x == (int32_t)last && t->x_add == 0 &&
            x2_interior(s, t->n, f->dim[last], &lo, &hi))
            return true;
    }
    return false;
}

/* Whether f is an upsample alone whose rows along the innermost axis are stored contiguously. */
static bool upsample_alone(const Fuse *f)
{
    uint32_t last = f->rank - 1;
    const TNode *t = f->root;
    return t->kind == T_RESAMPLE && f->dst && !f->nside && !f->nextra && t->ax_x == (int32_t)last &&
           t->x_add == 0 && f->dst_st[last] == 1;
}

static void lower_pointwise(Sched *s, Fuse *f)
{
    collapse(f);
    fuse_deps(f);
    s->k = loop_add_kernel(s->p, f->name, f->comment, false);
    s->prepare = false;
    uint32_t last = f->rank - 1;
    PwLoop L = {.f = f, .inner = -1};
    L.pt.lane_axis = last;
    const PlanGroup *grp = f->grp;
    if (f->rank == 1 && grp->order == SIDE_NONE) {
        pw_single(s, &L, f->dim[0]);
        fuse_unhoist(f);
        return;
    }
    /* Axes of the parallel loop; the serial ones run inside it. */
    uint32_t par = 0, serial = 0;
    for (uint32_t d = 0; d < last; d++) {
        if (grp->order == SIDE_TRAILING && f->red[d])
            serial |= 1u << d;
        else if (grp->order == SIDE_AXIS && f->red[d])
            L.inner = (int32_t)d;
        else
            par |= 1u << d;
    }
    int64_t rows = 1;
    for (uint32_t d = 0; d < f->rank; d++)
        if (par >> d & 1)
            rows *= f->dim[d];
    int64_t width = f->dim[last], nblk = 1;
    if (grp->order == SIDE_AXIS) {
        if (!s->prepare && width > SIDE_AXIS_BLOCK) {
            nblk = (width + SIDE_AXIS_BLOCK - 1) / SIDE_AXIS_BLOCK;
            width = SIDE_AXIS_BLOCK;
        }
    }
    LoopVar *r = sched_ivar(s, "r");
    LoopStmt *body = sched_par(s, r, rows * nblk);
    digits(s, f, par, nblk > 1 ? ix_div(s, ix_v(s, r), nblk) : ix_v(s, r), &L.pt, body);
    fuse_hoist(s, f, par, &L.pt, body);
    if (grp->order == SIDE_TRAILING) {
        for (uint32_t k = 0; k < f->nside; k++) {
            LoopVar *sa = sched_fvar(s, "acc", 1);
            ls_append(s->p, body, ls_decl(s->p, sa, fuse_side_init(s, &f->side[k], 1)));
            L.sacc[k] = sa;
            if (f->dim[last] >= s->vl) {
                LoopVar *va = sched_fvar(s, "vacc", s->vl);
                ls_append(s->p, body, ls_decl(s->p, va, fuse_side_init(s, &f->side[k], s->vl)));
                L.vacc[k] = va;
            }
        }
    }
    LoopStmt *in = body;
    for (uint32_t d = 0; d < last; d++)
        if (serial >> d & 1) {
            LoopVar *v = sched_ivar(s, "j");
            in = sched_for(s, in, v, ix_c(s, 0), ix_c(s, f->dim[d]), 1);
            L.pt.at[d] = ix_v(s, v);
        }
    if (upsample_alone(f)) { /* the rows straight into the destination */
        LoopExpr *base = sched_local(s, in, "o", fuse_index(s, &L.pt, f->dst_st, f->dst_off));
        build_into(s, f, f->root, &L.pt, 1, last, f->dim[last], in, f->dst, &base);
    } else if (grp->order != SIDE_AXIS && x2_rows(s, f, last)) { /* rows once, by shuffles */
        fuse_build_rows(s, f, &L.pt, 1, last, f->dim[last], in);
        span_at(s, &L, in, ix_c(s, 0), 0, f->dim[last]);
        fuse_unbuild(f);
    } else if (grp->order == SIDE_AXIS) {
        const LoopBuffer *acc[PLAN_MAX_SIDES];
        for (uint32_t k = 0; k < f->nside; k++)
            acc[k] = sched_thread(s, "sacc", k, width);
        LoopExpr *start = ix_c(s, 0), *blk = NULL;
        if (nblk > 1) {
            blk = sched_local(s, in, "blk", ix_mod(s, ix_v(s, r), nblk));
            start = sched_local(s, in, "x0", ix_mulc(s, blk, width));
        }
        int64_t last_w = f->dim[last] - (nblk - 1) * width;
        if (last_w == width) {
            axis_block(s, &L, acc, in, start, width);
        } else {
            LoopStmt *full = ls_block(s->p), *part = ls_block(s->p);
            ls_append(s->p, in,
                      ls_if(s->p, lx_cmp(s->p, LCMP_LT, blk, ix_c(s, nblk - 1)), full, part));
            axis_block(s, &L, acc, full, start, width);
            axis_block(s, &L, acc, part, start, last_w);
        }
    } else {
        span_at(s, &L, in, ix_c(s, 0), 0, f->dim[last]);
    }
    if (grp->order == SIDE_TRAILING) {
        FusePoint kept = L.pt;
        for (uint32_t d = 0; d < f->rank; d++)
            if (!(par >> d & 1))
                kept.at[d] = NULL;
        for (uint32_t k = 0; k < f->nside; k++) {
            const FuseSide *sd = &f->side[k];
            LoopExpr *total = lx_var(s->p, L.sacc[k]);
            if (L.vacc[k])
                total = bin(s, sd->op, lx_reduce(s->p, sd->op, lx_var(s->p, L.vacc[k])), total);
            ls_append(s->p, body,
                      ls_store(s->p, sd->buf, fuse_index(s, &kept, sd->st, sd->off),
                               fuse_side_finish(s, sd, total)));
        }
    }
    fuse_unhoist(f);
}

/* ---- groups ---- */

void sched_group(Sched *s, uint32_t gi)
{
    const PlanGroup *grp = &s->plan->groups[gi];
    FUSE_ASSERT(grp->kind != GROUP_SINGLE);
    Fuse *f = fuse_new(s, gi);
    if (grp->kind == GROUP_POINTWISE) {
        lower_pointwise(s, f);
        return;
    }
    const Node *c = s->g->nodes[grp->anchor];
    s->epi = f;
    if (c->kind == OP_CONV2D)
        sched_conv2d(s, c);
    else if (c->kind == OP_LINEAR)
        sched_linear(s, c);
    else
        sched_matmul(s, c);
    s->epi = NULL;
    fuse_unhoist(f);
}
