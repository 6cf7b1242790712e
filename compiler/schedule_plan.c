/*
 * schedule_plan: the fusion planner, Graph -> Plan (schedule_internal.h). It partitions the live
 * nodes into groups, each lowered as one loop nest, from op classes alone (ops.def), never from
 * the shape of a whole workload:
 *   create time  a node that depends only on weights and scalars (PARAM/SCALAR, transitively)
 *                is computed once by prepare kernels; run kernels read its buffer.
 *   inline       an elementwise op (OPC_UNARY, OPC_BINARY, batchnorm as a per-channel affine),
 *                a resample (upsample) or a layout op (permute, slice, squeeze-like views) is
 *                computed inside its consumers' loops when all its uses are in that group, it is
 *                not a graph output, and no consumer broadcasts an elementwise result (that one
 *                is computed once, in a small kernel of its own). An upsample's input is never
 *                inlined: it is read at interpolated positions.
 *   epilogue     a contraction (conv2d, linear, matmul) whose uses are all in a group becomes
 *                the group's anchor: the elementwise members above it, all of its shape, run on
 *                its accumulators before the store. One contraction per group.
 *   side         a reduction (mean, sum, amax, amin) of a group's root over trailing axes (a
 *                global pool) or over one axis with a kept axis after it (a per-pixel channel
 *                mean) is accumulated in that group's loops, when the group's loop structure
 *                allows it; the root is not stored when only such reductions read it.
 *   siblings     an elementwise value no later group takes in joins, as a further stored root,
 *                a pointwise group of its shape (elementwise root, no contraction) one of whose
 *                members reads one of its inputs of that shape, when every user of the value runs
 *                after that group: one loop nest stores both in one pass, sharing the loads and
 *                the inlined producers (an upsample read by both is inlined instead of stored).
 *   concat       an input of a concat that only the concat reads, made by a pointwise root or a
 *                side reduction, is stored by its producer straight into the concat's slice; a
 *                concat whose inputs are all stored so runs no kernel. A concat whose only user
 *                is a contraction that reads its parts where they are (a 1x1 conv or a
 *                linear: contraction_reads_concat_in_place) is in no group and has no buffer.
 *   prologue     a pointwise group whose root only a 1x1 conv reads (no sibling, no side
 *                reduction, not an output) is marked packed_by_user: the conv may compute it
 *                while packing its column blocks, and the group then runs no kernel.
 * Everything else (softmax, layernorm, pools, concat, attention, reductions of inputs) is a group
 * of its own that reads its operands from buffers. Groups are formed greedily in reverse
 * topological order (each new group grows into its producers), then side reductions attach,
 * then groups are numbered by their root's position, which is their run order: every value a
 * group reads is made by a group with an earlier root.
 * With cx->explain_fusion, each declined producer -> consumer fusion gets a note at the span of
 * the op that would have moved, and why.
 */
#include "schedule.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "schedule_internal.h"
#include "util.h"

typedef struct Planner {
    Ctx *cx;
    const Graph *g;
    Plan *p;
    Arena *a;
    uint32_t n;          /* nodes */
    uint32_t *nusers;    /* by node id: live users (direct) */
    const Node ***users; /* by node id */
    bool *output;        /* by node id: returned by the graph */
    int32_t *group;      /* by node id: index into groups while planning, -1 none */
    PlanGroup *groups;   /* in creation order */
    bool *dead_group;    /* by group: dissolved (its reduction became a side reduction) */
    uint32_t ngroups;
    bool *cand;       /* by node id: an input of a member of the group being grown */
    const char **why; /* by node id: why it stayed out of its consumer's group */
} Planner;

/* ---- op classes ---- */

static bool is_source(const Node *n)
{
    return op_info[n->kind].cls == OPC_SOURCE;
}

static bool is_elementwise(const Node *n)
{
    OpClass c = op_info[n->kind].cls;
    return c == OPC_UNARY || c == OPC_BINARY || n->kind == OP_BATCHNORM;
}

/* Ops the expression engine evaluates at any point of a loop nest. */
static bool is_expr(const Node *n)
{
    return is_elementwise(n) || n->kind == OP_UPSAMPLE || n->kind == OP_PERMUTE ||
           n->kind == OP_SLICE;
}

static bool is_contraction(const Node *n)
{
    return op_info[n->kind].cls == OPC_CONTRACT;
}

static bool is_reduction(const Node *n)
{
    return op_info[n->kind].cls == OPC_REDUCE;
}

static const char *name_of(const Node *n)
{
    return op_info[n->kind].name;
}

/* A view that only adds or removes size-1 axes: the same axes in the same order. */
static bool squeeze_view(const Node *v)
{
    const Shape *in = &v->inputs[0]->shape, *out = &v->shape;
    uint32_t i = 0, o = 0;
    for (;;) {
        while (i < in->rank && in->dim[i] == 1)
            i++;
        while (o < out->rank && out->dim[o] == 1)
            o++;
        if (i == in->rank || o == out->rank)
            return i == in->rank && o == out->rank;
        if (in->dim[i++] != out->dim[o++])
            return false;
    }
}

/* The first node below n that is not a view. */
static const Node *through_views(const Node *n)
{
    while (n->kind == OP_VIEW)
        n = n->inputs[0];
    return n;
}

/* ---- uses ---- */

static void index_users(Planner *pl)
{
    const Graph *g = pl->g;
    pl->nusers = ARENA_ARRAY(pl->a, uint32_t, pl->n + 1);
    pl->users = ARENA_ARRAY(pl->a, const Node **, pl->n + 1);
    for (uint32_t i = 0; i < pl->n; i++)
        if (pl->p->live[i])
            for (uint32_t j = 0; j < g->nodes[i]->ninputs; j++)
                pl->nusers[g->nodes[i]->inputs[j]->id]++;
    uint32_t *fill = ARENA_ARRAY(pl->a, uint32_t, pl->n + 1);
    for (uint32_t i = 0; i < pl->n; i++)
        pl->users[i] = ARENA_ARRAY(pl->a, const Node *, pl->nusers[i] + 1);
    for (uint32_t i = 0; i < pl->n; i++)
        if (pl->p->live[i])
            for (uint32_t j = 0; j < g->nodes[i]->ninputs; j++) {
                uint32_t in = g->nodes[i]->inputs[j]->id;
                pl->users[in][fill[in]++] = g->nodes[i];
            }
    pl->output = ARENA_ARRAY(pl->a, bool, pl->n + 1);
    for (uint32_t o = 0; o < g->noutputs; o++)
        pl->output[g->outputs[o]->id] = true;
}

/* Uses of n's value, looking through views (a graph output counts as one). */
static uint32_t uses(const Planner *pl, const Node *n)
{
    uint32_t u = pl->output[n->id] ? 1 : 0;
    for (uint32_t i = 0; i < pl->nusers[n->id]; i++) {
        const Node *user = pl->users[n->id][i];
        u += user->kind == OP_VIEW ? uses(pl, user) : 1;
    }
    return u;
}

/* n is returned by the graph, itself or as a view of it. */
static bool output_via_views(const Planner *pl, const Node *n)
{
    if (pl->output[n->id])
        return true;
    for (uint32_t i = 0; i < pl->nusers[n->id]; i++) {
        const Node *u = pl->users[n->id][i];
        if (u->kind == OP_VIEW && output_via_views(pl, u))
            return true;
    }
    return false;
}

static bool is_member(const Planner *pl, const Node *n, int32_t grp)
{
    PlanRole r = pl->p->role[n->id];
    return pl->group[n->id] == grp && (r == ROLE_ROOT || r == ROLE_INLINE || r == ROLE_ANCHOR);
}

/* True when every use of n (through squeeze views) is a member of grp; else sets *why. */
static bool all_uses_in(const Planner *pl, const Node *n, int32_t grp, const char **why)
{
    if (pl->output[n->id]) {
        *why = "it is a graph output";
        return false;
    }
    for (uint32_t i = 0; i < pl->nusers[n->id]; i++) {
        const Node *u = pl->users[n->id][i];
        if (u->kind == OP_VIEW) {
            if (!squeeze_view(u)) {
                *why = "a view reshapes it";
                return false;
            }
            if (!all_uses_in(pl, u, grp, why))
                return false;
            continue;
        }
        if (!is_member(pl, u, grp)) {
            *why = NULL; /* "it has N uses": worded when the note is written */
            return false;
        }
        if (pl->p->role[u->id] == ROLE_ANCHOR) {
            *why = "the group's contraction reads it from memory";
            return false;
        }
    }
    return true;
}

/* Calls visit(pl, n, user, ctx) for each user of n, looking through views; stops and returns
 * false when visit does. */
typedef bool (*UserFn)(Planner *pl, const Node *n, const Node *user, const void *ctx);

static bool users_of(Planner *pl, const Node *n, const Node *via, UserFn visit, const void *ctx)
{
    for (uint32_t i = 0; i < pl->nusers[via->id]; i++) {
        const Node *u = pl->users[via->id][i];
        bool ok = u->kind == OP_VIEW ? users_of(pl, n, u, visit, ctx) : visit(pl, n, u, ctx);
        if (!ok)
            return false;
    }
    return true;
}

static bool each_user(Planner *pl, const Node *n, UserFn visit, const void *ctx)
{
    return users_of(pl, n, n, visit, ctx);
}

static bool not_upsample(Planner *pl, const Node *n, const Node *u, const void *ctx)
{
    (void)n;
    (void)ctx;
    if (u->kind != OP_UPSAMPLE)
        return true;
    pl->why[n->id] = "upsample reads it at interpolated positions";
    return false;
}

static bool not_broadcast(Planner *pl, const Node *n, const Node *u, const void *ctx)
{
    (void)ctx;
    if (shape_numel(&u->shape) <= shape_numel(&n->shape))
        return true;
    char buf[160];
    snprintf(buf, sizeof buf, "%s broadcasts it: computed once, in a kernel of its own",
             name_of(u));
    pl->why[n->id] = arena_strdup(pl->a, buf);
    return false;
}

/* Every member above contraction c (up to the root) must be elementwise with c's shape: the
 * epilogue runs per accumulator. */
static bool epilogue_user(Planner *pl, const Node *c, const Node *u, const void *ctx)
{
    const Node *anchor = ctx;
    char buf[160];
    if (u->kind == OP_VIEW || !is_elementwise(u) || !shape_equal(&u->shape, &anchor->shape)) {
        const char *how = !is_elementwise(u) ? "is not elementwise" : "changes its shape";
        snprintf(buf, sizeof buf, "%s %s", name_of(u), how);
        pl->why[anchor->id] = arena_strdup(pl->a, buf);
        return false;
    }
    (void)c;
    if (pl->p->role[u->id] == ROLE_ROOT)
        return true;
    return each_user(pl, u, epilogue_user, anchor);
}

/* ---- groups ---- */

static int32_t new_group(Planner *pl, const Node *root)
{
    int32_t gi = (int32_t)pl->ngroups++;
    PlanGroup *grp = &pl->groups[gi];
    grp->root = root->id;
    grp->anchor = -1;
    grp->store_root = true;
    if (is_expr(root)) {
        grp->kind = GROUP_POINTWISE;
    } else if (is_contraction(root)) {
        grp->kind = GROUP_CONTRACT;
        grp->anchor = (int32_t)root->id;
    } else {
        grp->kind = GROUP_SINGLE;
    }
    pl->group[root->id] = gi;
    pl->p->role[root->id] = ROLE_ROOT;
    return gi;
}

/* Marks the inputs of member m (below any views) as candidates to grow into. */
static void mark_inputs(Planner *pl, const Node *m)
{
    for (uint32_t i = 0; i < m->ninputs; i++)
        pl->cand[through_views(m->inputs[i])->id] = true;
}

/* Tries to make producer p a member of group gi; records why not. */
static void absorb(Planner *pl, int32_t gi, const Node *p)
{
    PlanGroup *grp = &pl->groups[gi];
    const char *why = NULL;
    if (!all_uses_in(pl, p, gi, &why)) {
        pl->why[p->id] = why;
        return;
    }
    if (!each_user(pl, p, not_upsample, NULL))
        return;
    if (is_expr(p)) {
        if (p->kind != OP_PERMUTE && p->kind != OP_SLICE && p->kind != OP_UPSAMPLE &&
            !each_user(pl, p, not_broadcast, NULL))
            return;
        pl->group[p->id] = gi;
        pl->p->role[p->id] = ROLE_INLINE;
        mark_inputs(pl, p);
        return;
    }
    if (is_contraction(p)) {
        char buf[160];
        if (grp->nextra) {
            pl->why[p->id] = "its users are siblings, and an epilogue stores one value";
            return;
        }
        if (grp->anchor >= 0) {
            const Node *a = pl->g->nodes[grp->anchor];
            snprintf(buf, sizeof buf, "the kernel already has a contraction (%s %%%u)", name_of(a),
                     a->id);
            pl->why[p->id] = arena_strdup(pl->a, buf);
            return;
        }
        if (!each_user(pl, p, epilogue_user, p))
            return;
        pl->group[p->id] = gi;
        pl->p->role[p->id] = ROLE_ANCHOR;
        grp->anchor = (int32_t)p->id;
        grp->kind = GROUP_CONTRACT;
        return;
    }
    pl->why[p->id] = is_reduction(p) ? "a reduction runs in loops of its own"
                                     : "it is computed by a kernel of its own";
}

/* Grows the pointwise group gi, whose members all have ids <= top, into its producers, latest
 * first, so that every user of a candidate has been decided when the candidate is. */
static void grow(Planner *pl, int32_t gi, uint32_t top)
{
    memset(pl->cand, 0, pl->n * sizeof(bool));
    for (uint32_t j = top + 1; j-- > 0;) {
        PlanRole r = pl->p->role[j];
        if (pl->group[j] == gi && (r == ROLE_ROOT || r == ROLE_INLINE)) {
            mark_inputs(pl, pl->g->nodes[j]); /* a root, or a member a sibling made */
            continue;
        }
        if (!pl->cand[j] || pl->group[j] >= 0)
            continue;
        const Node *p = pl->g->nodes[j];
        if (!pl->p->live[j] || is_source(p) || pl->p->pub.prepared[j])
            continue;
        absorb(pl, gi, p);
    }
}

/* ---- siblings ---- */

typedef struct SibCtx {
    const Node *n;   /* the value looking for a group */
    int32_t *found;  /* a group that can store it too, or -1 */
    uint32_t before; /* its users' groups must run after the group found: root ids above this */
} SibCtx;

/* Whether every user of n runs in a group after the one rooted at ctx->before (n stored
 * there is then written before it is read), none of them in that group. */
static bool runs_later(Planner *pl, const Node *n, const Node *u, const void *ctx)
{
    (void)n;
    const SibCtx *sc = ctx;
    int32_t ug = pl->group[u->id];
    return ug >= 0 && ug != *sc->found && pl->groups[ug].root > sc->before;
}

/* Whether user u of an input of sc->n is a member of a pointwise group that can store sc->n
 * too: of its shape, elementwise root, no contraction, room for one more root. */
static bool sibling_user(Planner *pl, const Node *in, const Node *u, const void *ctx)
{
    (void)in;
    const SibCtx *sc = ctx;
    int32_t gi = pl->group[u->id];
    if (u == sc->n || gi < 0 || !is_member(pl, u, gi))
        return true;
    const PlanGroup *grp = &pl->groups[gi];
    const Node *root = pl->g->nodes[grp->root];
    if (grp->kind != GROUP_POINTWISE || grp->nextra == PLAN_MAX_EXTRA || !is_elementwise(root) ||
        !shape_equal(&root->shape, &sc->n->shape))
        return true;
    SibCtx probe = {sc->n, &gi, grp->root};
    if (!each_user(pl, sc->n, runs_later, &probe))
        return true;
    *sc->found = gi;
    return false; /* stop looking */
}

/* Sibling fusion: elementwise n, which no later group could take in, becomes a further root
 * of a pointwise group of its shape that reads one of n's inputs of that shape (the loads and
 * any inlined producer are then shared), when every user of n runs after that group. Returns
 * the group, or -1. */
static int32_t join_sibling(Planner *pl, const Node *n)
{
    if (!is_elementwise(n))
        return -1;
    int32_t found = -1;
    SibCtx sc = {n, &found, 0};
    for (uint32_t k = 0; k < n->ninputs && found < 0; k++) {
        const Node *q = through_views(n->inputs[k]);
        if (shape_equal(&q->shape, &n->shape)) /* a read of the whole space, not a broadcast */
            each_user(pl, q, sibling_user, &sc);
    }
    if (found < 0)
        return -1;
    PlanGroup *grp = &pl->groups[found];
    grp->extra[grp->nextra++] = n->id;
    pl->group[n->id] = found;
    pl->p->role[n->id] = ROLE_ROOT;
    return found;
}

/* ---- sibling reductions ---- */

static bool same_reduction_axes(const Node *a, const Node *b)
{
    for (uint32_t d = 0; d < a->inputs[0]->shape.rank; d++)
        if (a->attr.reduce.axes[d] != b->attr.reduce.axes[d])
            return false;
    return true;
}

/* Reductions of one value over the same axes that stayed kernels of their own (CBAM's average
 * and max pools of x) join the earliest one's kernel: one pass over the value instead of one
 * each. Safe at the earliest one's place: they read nothing else. */
static void join_reductions(Planner *pl)
{
    for (uint32_t i = 0; i < pl->n; i++) {
        int32_t gi = pl->group[i];
        const Node *r = pl->g->nodes[i];
        if (gi < 0 || pl->dead_group[gi] || pl->groups[gi].root != i || !is_reduction(r) ||
            pl->groups[gi].kind != GROUP_SINGLE)
            continue;
        PlanGroup *grp = &pl->groups[gi];
        for (uint32_t j = i + 1; j < pl->n && grp->nextra < PLAN_MAX_EXTRA; j++) {
            int32_t gj = pl->group[j];
            const Node *q = pl->g->nodes[j];
            if (gj < 0 || gj == gi || pl->dead_group[gj] || pl->groups[gj].root != j ||
                !is_reduction(q) || pl->groups[gj].kind != GROUP_SINGLE ||
                q->inputs[0] != r->inputs[0] || !same_reduction_axes(r, q))
                continue;
            grp->extra[grp->nextra++] = j;
            pl->dead_group[gj] = true;
            pl->group[j] = gi;
        }
    }
}

/* ---- side reductions ---- */

/* Classifies reduction r of x's shape: SIDE_TRAILING from *axis, SIDE_AXIS at *axis, or
 * SIDE_NONE (with *why). Size-1 axes are ignored. */
static SideOrder side_order(const Node *r, uint32_t *axis, const char **why)
{
    const Shape *xs = &r->inputs[0]->shape;
    int32_t first_red = -1, last_red = -1, last_kept = -1, nred = 0;
    for (uint32_t d = 0; d < xs->rank; d++) {
        if (xs->dim[d] == 1)
            continue;
        if (r->attr.reduce.axes[d]) {
            if (first_red < 0)
                first_red = (int32_t)d;
            last_red = (int32_t)d;
            nred++;
        } else {
            last_kept = (int32_t)d;
        }
    }
    if (nred == 0) {
        *why = "it reduces no axis longer than 1";
        return SIDE_NONE;
    }
    if (last_kept < 0) {
        *why = "it reduces every axis (its loops would run on one thread)";
        return SIDE_NONE;
    }
    if (last_kept < first_red) {
        *axis = (uint32_t)first_red;
        return SIDE_TRAILING;
    }
    if (nred == 1 && last_kept > last_red) {
        *axis = (uint32_t)first_red;
        return SIDE_AXIS;
    }
    *why = "its axes are neither trailing nor a single axis";
    return SIDE_NONE;
}

/* Whether the contraction of group grp can accumulate reduction r (order o at axis) in its
 * epilogue: conv2d as a GEMM (1x1, stride 1, no padding) over the pixels (trailing from axis 2)
 * or the channels (axis 1, one group); linear and matmul over their last axis. */
static bool contract_side_ok(const Planner *pl, const PlanGroup *grp, SideOrder o, uint32_t axis,
                             const char **why)
{
    const Node *c = pl->g->nodes[grp->anchor];
    if (c->kind == OP_CONV2D) {
        bool gemm = c->attr.conv.kh == 1 && c->attr.conv.kw == 1 && c->attr.conv.stride_h == 1 &&
                    c->attr.conv.stride_w == 1 && c->attr.conv.pad_h == 0 &&
                    c->attr.conv.pad_w == 0;
        int64_t hw = c->shape.dim[2] * c->shape.dim[3];
        if (!gemm) {
            *why = "only a 1x1 convolution accumulates reductions in its epilogue";
            return false;
        }
        bool pixels = o == SIDE_TRAILING && axis >= 2 &&
                      (axis == 2 || c->shape.dim[2] == 1); /* every pixel axis reduced */
        if (pixels)
            return true;
        if (o == SIDE_AXIS && axis == 1 && c->attr.conv.groups == 1 && hw > 1)
            return true;
        *why = "conv2d's loops reduce only over all pixels or all channels";
        return false;
    }
    if (c->kind == OP_MATMUL && c->inputs[1]->shape.rank == 1) {
        *why = "matmul by a vector has no column axis";
        return false;
    }
    if (o == SIDE_TRAILING && axis == c->shape.rank - 1)
        return true;
    *why = "its loops reduce only over the last axis";
    return false;
}

/* Makes the standalone reduction r a side reduction of the group computing its input. */
static void attach_side(Planner *pl, const Node *r)
{
    const Node *x = r->inputs[0];
    if (is_source(x) || x->kind == OP_VIEW || pl->p->pub.prepared[x->id])
        return; /* no per-call producer to fuse with */
    int32_t gi = pl->group[x->id];
    PlanGroup *grp = &pl->groups[gi];
    const char *why = NULL;
    uint32_t axis = 0;
    SideOrder o = SIDE_NONE;
    if (pl->p->role[x->id] != ROLE_ROOT || grp->kind == GROUP_SINGLE)
        why = "its input is computed by a kernel of its own";
    else if (grp->root != x->id)
        why = "its input is a sibling stored by another value's loops";
    else
        o = side_order(r, &axis, &why);
    if (!why && grp->order != SIDE_NONE && (grp->order != o || grp->side_axis != axis))
        why = "another reduction already orders those loops differently";
    if (!why && grp->nside == PLAN_MAX_SIDES)
        why = "the kernel has too many reductions already";
    if (!why && grp->kind == GROUP_CONTRACT)
        contract_side_ok(pl, grp, o, axis, &why);
    if (why) {
        pl->why[r->id] = why;
        return;
    }
    pl->dead_group[pl->group[r->id]] = true;
    pl->group[r->id] = gi;
    pl->p->role[r->id] = ROLE_SIDE;
    grp->order = o;
    grp->side_axis = axis;
    grp->side[grp->nside++] = r->id;
}

static bool is_side_of(Planner *pl, const Node *x, const Node *u, const void *ctx)
{
    (void)x;
    const int32_t *gi = ctx;
    return pl->group[u->id] == *gi && pl->p->role[u->id] == ROLE_SIDE;
}

/* ---- concat elimination ---- */

/* The inputs of concat c that can be written straight into its buffer: stored once, read only
 * by c, made by a loop nest whose stores take any strides (a pointwise root, a side
 * reduction). The concat's axis must not be its last, and that axis longer than 1, so that the
 * slices stay contiguous along their innermost axis (vector stores). When every input is
 * written in place, the concat runs no kernel at all. */
static void eliminate_concat(Planner *pl, const Node *c)
{
    uint32_t last = c->shape.rank - 1;
    if (c->attr.concat.axis == last || c->shape.dim[last] == 1)
        return;
    bool all = true;
    for (uint32_t k = 0; k < c->ninputs; k++) {
        const Node *q = c->inputs[k];
        int32_t qg = q->kind == OP_VIEW ? -1 : pl->group[q->id];
        PlanRole r = qg >= 0 ? pl->p->role[q->id] : ROLE_NONE;
        bool ok = qg >= 0 && !pl->output[q->id] && uses(pl, q) == 1 &&
                  (r == ROLE_SIDE || (r == ROLE_ROOT && pl->groups[qg].kind == GROUP_POINTWISE &&
                                      pl->groups[qg].store_root));
        if (ok)
            pl->p->into[q->id] = c;
        else if (qg >= 0 && !pl->why[q->id])
            pl->why[q->id] = uses(pl, q) > 1 || pl->output[q->id]
                                 ? NULL
                                 : "its kernel stores only into a buffer of its own";
        all = all && ok;
    }
    if (all) { /* nothing left to copy: the concat is a buffer, like a view */
        pl->dead_group[pl->group[c->id]] = true;
        pl->group[c->id] = -1;
        pl->p->role[c->id] = ROLE_NONE;
    }
}

/* ---- notes ---- */

static void note(Planner *pl, const Node *at, const char *fmt, ...) FUSE_PRINTF(3, 4);
static void note(Planner *pl, const Node *at, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    diag_report(pl->cx->diag, DIAG_NOTE, at->span, "%s", buf);
}

/* One note per producer -> consumer-group pair that stayed apart, in consumer order. */
static void explain(Planner *pl)
{
    const Graph *g = pl->g;
    int32_t *seen = ARENA_ARRAY(pl->a, int32_t, pl->n + 1); /* by producer: last group noted */
    for (uint32_t i = 0; i < pl->n; i++)
        seen[i] = -1;
    for (uint32_t i = 0; i < pl->n; i++) {
        const Node *m = g->nodes[i];
        int32_t gi = pl->group[i];
        if (gi < 0 || pl->p->role[i] == ROLE_SIDE || is_reduction(m))
            continue; /* a reduction's own note follows */
        const PlanGroup *grp = &pl->groups[gi];
        for (uint32_t k = 0; k < m->ninputs; k++) {
            const Node *q = through_views(m->inputs[k]);
            int32_t qg = pl->group[q->id];
            if (qg < 0 || qg == gi || seen[q->id] == gi || pl->p->into[q->id] == m)
                continue;
            seen[q->id] = gi;
            uint32_t nuses = uses(pl, q);
            const char *why = pl->why[q->id];
            char buf[160];
            bool epilogue = is_contraction(q) && is_elementwise(m);
            if (pl->p->role[q->id] == ROLE_SIDE) {
                why = "a reduction is complete only after its loops";
            } else if (!why && grp->kind == GROUP_SINGLE) {
                snprintf(buf, sizeof buf, "%s reads its inputs from memory", name_of(m));
                why = buf;
            } else if (!why && pl->p->role[i] == ROLE_ANCHOR) {
                snprintf(buf, sizeof buf, "%s reads its operands from memory", name_of(m));
                why = buf;
            } else if (!why) {
                snprintf(buf, sizeof buf, "%s %u uses", epilogue ? "its input has" : "it has",
                         nuses);
                why = buf;
            }
            if (epilogue)
                note(pl, m, "%s not fused into %s: %s", name_of(m), name_of(q), why);
            else
                note(pl, q, "%s not fused into %s: %s", name_of(q), name_of(m), why);
        }
    }
    for (uint32_t i = 0; i < pl->n; i++)
        if (pl->group[i] >= 0 && pl->p->role[i] == ROLE_ROOT && is_reduction(g->nodes[i]) &&
            pl->why[i]) {
            const Node *r = g->nodes[i], *x = r->inputs[0];
            note(pl, r, "%s not accumulated in the loops of %s: %s", name_of(r), name_of(x),
                 pl->why[i]);
        }
}

/* ---- the plan ---- */

/* Nodes computed from weights and scalars alone. */
static void mark_prepared(Planner *pl)
{
    const Graph *g = pl->g;
    bool *konst = ARENA_ARRAY(pl->a, bool, pl->n + 1);
    for (uint32_t i = 0; i < pl->n; i++) {
        const Node *n = g->nodes[i];
        if (n->kind == OP_PARAM || n->kind == OP_SCALAR) {
            konst[i] = true;
            continue;
        }
        if (n->kind == OP_INPUT)
            continue;
        konst[i] = true;
        for (uint32_t j = 0; j < n->ninputs; j++)
            konst[i] = konst[i] && konst[n->inputs[j]->id];
        pl->p->pub.prepared[i] = konst[i];
    }
}

/* Concats read part by part where their parts are by their only user, a contraction
 * (contraction_reads_concat_in_place): no group, no buffer. */
static void mark_concats_read_in_place(Planner *pl)
{
    Plan *p = pl->p;
    p->read_in_place = ARENA_ARRAY(pl->a, bool, pl->n + 1);
    for (uint32_t i = 0; i < pl->n; i++) {
        const Node *n = pl->g->nodes[i];
        if (n->kind != OP_CONCAT || !p->live[i] || p->pub.prepared[i] || pl->output[i] ||
            pl->nusers[i] != 1)
            continue;
        const Node *user = pl->users[i][0];
        p->read_in_place[i] = user->inputs[0] == n && contraction_reads_concat_in_place(user);
    }
}

/* Pointwise groups a 1x1 conv may compute while packing its input (Plan.packed_by_user): the
 * root read by the conv alone, stored only for it (no sibling, no side reduction). */
static void mark_packed_by_user(Planner *pl)
{
    Plan *p = pl->p;
    p->packed_by_user = ARENA_ARRAY(pl->a, bool, pl->n + 1);
    for (uint32_t gi = 0; gi < pl->ngroups; gi++) {
        const PlanGroup *grp = &pl->groups[gi];
        const Node *root = pl->g->nodes[grp->root];
        if (pl->dead_group[gi] || grp->kind != GROUP_POINTWISE || grp->nextra || grp->nside ||
            !grp->store_root || pl->output[root->id] || pl->nusers[root->id] != 1 ||
            p->into[root->id])
            continue;
        const Node *conv = pl->users[root->id][0];
        p->packed_by_user[root->id] = conv->kind == OP_CONV2D && conv->inputs[0] == root &&
                                      pl->group[conv->id] >= 0 &&
                                      pl->groups[pl->group[conv->id]].anchor == (int32_t)conv->id &&
                                      contraction_packs_input(conv);
    }
}

static const char *group_name(Planner *pl, const PlanGroup *grp)
{
    const Node *root = pl->g->nodes[grp->root];
    char buf[96];
    if (grp->anchor >= 0 && (uint32_t)grp->anchor != grp->root)
        snprintf(buf, sizeof buf, "k%u_%s_%s", root->id, name_of(pl->g->nodes[grp->anchor]),
                 name_of(root));
    else
        snprintf(buf, sizeof buf, "k%u_%s", root->id, name_of(root));
    return arena_strdup(pl->a, buf);
}

/* Numbers the live groups by their root's position: their run order. */
static void number_groups(Planner *pl)
{
    Plan *p = pl->p;
    int32_t *renum = ARENA_ARRAY(pl->a, int32_t, pl->ngroups + 1);
    uint32_t ng = 0;
    for (uint32_t i = 0; i < pl->n; i++) {
        int32_t gi = pl->group[i];
        if (gi >= 0 && pl->groups[gi].root == i && !pl->dead_group[gi])
            renum[gi] = (int32_t)ng++;
    }
    p->groups = ARENA_ARRAY(pl->a, PlanGroup, ng + 1);
    p->pub.ngroups = ng;
    p->pub.group_name = ARENA_ARRAY(pl->a, const char *, ng + 1);
    for (uint32_t gi = 0; gi < pl->ngroups; gi++)
        if (!pl->dead_group[gi]) {
            p->groups[renum[gi]] = pl->groups[gi];
            p->pub.group_name[renum[gi]] = group_name(pl, &pl->groups[gi]);
        }
    for (uint32_t i = 0; i < pl->n; i++)
        p->pub.group_of[i] = pl->group[i] >= 0 ? renum[pl->group[i]] : -1;
}

Plan *sched_plan(Ctx *cx, const Graph *g)
{
    Arena *a = cx->loop_arena;
    Plan *p = ARENA_NEW(a, Plan);
    uint32_t n = g->nnodes;
    p->g = g;
    p->pub.nnodes = n;
    p->live = ARENA_ARRAY(a, bool, n + 1);
    p->role = ARENA_ARRAY(a, PlanRole, n + 1);
    p->pub.group_of = ARENA_ARRAY(a, int32_t, n + 1);
    p->pub.prepared = ARENA_ARRAY(a, bool, n + 1);
    Planner pl = {.cx = cx, .g = g, .p = p, .a = a, .n = n};
    pl.group = ARENA_ARRAY(a, int32_t, n + 1);
    pl.groups = ARENA_ARRAY(a, PlanGroup, n + 1);
    pl.dead_group = ARENA_ARRAY(a, bool, n + 1);
    pl.cand = ARENA_ARRAY(a, bool, n + 1);
    pl.why = ARENA_ARRAY(a, const char *, n + 1);
    for (uint32_t o = 0; o < g->noutputs; o++)
        p->live[g->outputs[o]->id] = true;
    for (uint32_t i = n; i-- > 0;)
        if (p->live[i])
            for (uint32_t j = 0; j < g->nodes[i]->ninputs; j++)
                p->live[g->nodes[i]->inputs[j]->id] = true;
    for (uint32_t i = 0; i < n; i++)
        pl.group[i] = -1;
    index_users(&pl);
    mark_prepared(&pl);
    mark_concats_read_in_place(&pl);

    for (uint32_t i = n; i-- > 0;) {
        const Node *nd = g->nodes[i];
        if (!p->live[i] || is_source(nd) || p->pub.prepared[i] || nd->kind == OP_VIEW ||
            p->read_in_place[i] || pl.group[i] >= 0)
            continue;
        int32_t gi = join_sibling(&pl, nd);
        if (gi < 0)
            gi = new_group(&pl, nd);
        if (pl.groups[gi].kind == GROUP_POINTWISE)
            grow(&pl, gi, pl.groups[gi].root);
    }
    for (uint32_t i = 0; i < n; i++)
        if (pl.group[i] >= 0 && p->role[i] == ROLE_ROOT && is_reduction(g->nodes[i]) &&
            pl.groups[pl.group[i]].kind == GROUP_SINGLE)
            attach_side(&pl, g->nodes[i]);
    join_reductions(&pl);
    for (uint32_t gi = 0; gi < pl.ngroups; gi++) {
        PlanGroup *grp = &pl.groups[gi];
        const Node *root = g->nodes[grp->root];
        int32_t id = (int32_t)gi;
        if (grp->nside && !output_via_views(&pl, root) && each_user(&pl, root, is_side_of, &id))
            grp->store_root = false;
    }
    p->into = ARENA_ARRAY(a, const Node *, n + 1);
    for (uint32_t i = 0; i < n; i++)
        if (pl.group[i] >= 0 && g->nodes[i]->kind == OP_CONCAT && p->role[i] == ROLE_ROOT)
            eliminate_concat(&pl, g->nodes[i]);
    mark_packed_by_user(&pl);
    if (cx->explain_fusion && cx->diag)
        explain(&pl);
    number_groups(&pl);
    return p;
}

FusionPlan *schedule_plan(Ctx *cx, const Graph *g)
{
    return &sched_plan(cx, g)->pub;
}
