/*
 * rewrite: graph -> new graph through a pass's rule (see rewrite.h).
 */
#include "rewrite.h"

#include <string.h>

#include "arena.h"
#include "util.h"

bool *rewrite_liveness(const Graph *g)
{
    bool *live = ARENA_ARRAY(g->arena, bool, g->nnodes + 1);
    for (uint32_t o = 0; o < g->noutputs; o++)
        live[g->outputs[o]->id] = true;
    for (uint32_t i = g->nnodes; i-- > 0;)
        if (live[i])
            for (uint32_t j = 0; j < g->nodes[i]->ninputs; j++)
                live[g->nodes[i]->inputs[j]->id] = true;
    return live;
}

/* Uses of each node by live nodes; an output position is a use. Dead copies left by an
 * earlier pass must not make a node look shared. */
static uint32_t *live_uses(const Graph *g, const bool *live)
{
    uint32_t *uses = ARENA_ARRAY(g->arena, uint32_t, g->nnodes + 1);
    for (uint32_t i = 0; i < g->nnodes; i++)
        if (live[i])
            for (uint32_t j = 0; j < g->nodes[i]->ninputs; j++)
                uses[g->nodes[i]->inputs[j]->id]++;
    for (uint32_t o = 0; o < g->noutputs; o++)
        uses[g->outputs[o]->id]++;
    return uses;
}

/* Inputs and params are the kernel's interface: copied as they are, at the same positions. */
static Node *copy_source(Rewriter *rw, const Node *old)
{
    Node *n;
    if (old->kind == OP_INPUT) {
        n = graph_add_input(rw->g, old->attr.input.name, &old->shape, old->span);
        FUSE_ASSERT(n->attr.input.index == old->attr.input.index);
    } else {
        n = graph_add_param(rw->g, old->attr.param.key, &old->shape, old->attr.param.init,
                            old->span);
        FUSE_ASSERT(n->attr.param.index == old->attr.param.index);
    }
    return n;
}

/* The rewrite; rule NULL drops dead nodes instead of copying them. */
static Graph *rewrite(Ctx *cx, const Graph *g, RewriteRule rule, void *ctx, uint32_t *rewritten)
{
    Rewriter rw = {.cx = cx, .old = g, .g = graph_new(g->arena, g->name)};
    rw.map = ARENA_ARRAY(g->arena, Node *, g->nnodes + 1);
    rw.live = rewrite_liveness(g);
    rw.uses = live_uses(g, rw.live);
    for (uint32_t i = 0; i < g->nnodes; i++) {
        const Node *old = g->nodes[i];
        rw.at = old;
        rw.span = old->span;
        rw.at_copy = NULL;
        if (old->kind == OP_INPUT || old->kind == OP_PARAM) {
            rw.map[i] = copy_source(&rw, old);
        } else if (!rw.live[i] && !rule) {
            rw.rewritten++; /* rw.map[i] stays NULL: rw_map refuses it */
        } else if (!rw.live[i]) {
            rw.map[i] = rw_copy(&rw, old);
        } else {
            Node *n = rule ? rule(&rw, old, ctx) : NULL;
            if (n && n != rw.at_copy)
                rw.rewritten++;
            rw.map[i] = n ? n : rw_copy(&rw, old);
        }
    }
    FUSE_ASSERT(rw.g->ninputs == g->ninputs && rw.g->nparams == g->nparams);
    for (uint32_t o = 0; o < g->noutputs; o++)
        graph_add_output(rw.g, g->output_names[o], rw_map(&rw, g->outputs[o]));
    if (rewritten)
        *rewritten = rw.rewritten;
    return rw.g;
}

Graph *rewrite_graph(Ctx *cx, const Graph *g, RewriteRule rule, void *ctx, uint32_t *rewritten)
{
    FUSE_ASSERT(rule != NULL);
    return rewrite(cx, g, rule, ctx, rewritten);
}

Graph *rewrite_drop_dead(Ctx *cx, const Graph *g, uint32_t *rewritten)
{
    return rewrite(cx, g, NULL, NULL, rewritten);
}

/* ---- building blocks ---- */

Node *rw_map(const Rewriter *rw, const Node *old)
{
    FUSE_ASSERT(old->id < rw->old->nnodes && rw->old->nodes[old->id] == old);
    Node *n = rw->map[old->id];
    FUSE_ASSERT(n != NULL);
    return n;
}

Node *rw_in(const Rewriter *rw, const Node *old, uint32_t k)
{
    FUSE_ASSERT(k < old->ninputs);
    return rw_map(rw, old->inputs[k]);
}

void rw_span_of(Rewriter *rw, const Node *old)
{
    rw->span = old->span;
}

Node *rw_node(Rewriter *rw, OpKind kind, Node *const *inputs, uint32_t ninputs, const Shape *shape)
{
    return graph_add_node(rw->g, kind, inputs, ninputs, shape, rw->span);
}

Node *rw_copy(Rewriter *rw, const Node *old)
{
    Node *ins[8];
    Node **inputs =
        old->ninputs <= countof(ins) ? ins : ARENA_ARRAY(rw->g->arena, Node *, old->ninputs);
    for (uint32_t k = 0; k < old->ninputs; k++)
        inputs[k] = rw_in(rw, old, k);
    Node *n = graph_add_node(rw->g, old->kind, inputs, old->ninputs, &old->shape, old->span);
    n->attr = old->attr;
    if (old == rw->at)
        rw->at_copy = n;
    return n;
}

Node *rw_scalar(Rewriter *rw, float value)
{
    return graph_add_scalar(rw->g, value, rw->span);
}

Node *rw_unary(Rewriter *rw, OpKind kind, Node *x)
{
    FUSE_ASSERT(op_info[kind].cls == OPC_UNARY && kind != OP_GELU);
    return rw_node(rw, kind, &x, 1, &x->shape);
}

Node *rw_binary(Rewriter *rw, OpKind kind, Node *a, Node *b)
{
    FUSE_ASSERT(op_info[kind].cls == OPC_BINARY);
    const Shape *sa = &a->shape, *sb = &b->shape;
    uint32_t rank = sa->rank > sb->rank ? sa->rank : sb->rank;
    Shape s = {.rank = rank};
    for (uint32_t i = 0; i < rank; i++) {
        int64_t da = i < sa->rank ? sa->dim[sa->rank - 1 - i] : 1;
        int64_t db = i < sb->rank ? sb->dim[sb->rank - 1 - i] : 1;
        FUSE_ASSERT(da == db || da == 1 || db == 1);
        s.dim[rank - 1 - i] = da == 1 ? db : da;
    }
    Node *ins[2] = {a, b};
    return rw_node(rw, kind, ins, 2, &s);
}

Node *rw_view(Rewriter *rw, Node *x, const Shape *shape)
{
    FUSE_ASSERT(shape_numel(shape) == shape_numel(&x->shape));
    while (x->kind == OP_VIEW) /* a view reinterprets row-major order: views compose */
        x = x->inputs[0];
    if (shape_equal(shape, &x->shape))
        return x;
    return rw_node(rw, OP_VIEW, &x, 1, shape);
}

Node *rw_permute(Rewriter *rw, Node *x, const uint32_t *perm)
{
    Shape s = {.rank = x->shape.rank};
    for (uint32_t d = 0; d < s.rank; d++) {
        FUSE_ASSERT(perm[d] < s.rank);
        s.dim[d] = x->shape.dim[perm[d]];
    }
    Node *n = rw_node(rw, OP_PERMUTE, &x, 1, &s);
    memcpy(n->attr.permute.perm, perm, s.rank * sizeof(uint32_t));
    return n;
}

Node *rw_slice(Rewriter *rw, Node *x, uint32_t axis, int64_t start, int64_t length)
{
    FUSE_ASSERT(axis < x->shape.rank && start >= 0 && length >= 1 &&
                start + length <= x->shape.dim[axis]);
    if (start == 0 && length == x->shape.dim[axis])
        return x;
    Shape s = x->shape;
    s.dim[axis] = length;
    Node *n = rw_node(rw, OP_SLICE, &x, 1, &s);
    n->attr.slice.axis = axis;
    n->attr.slice.start = start;
    n->attr.slice.length = length;
    return n;
}

/* Output size along one axis (shape.c's window rule). */
static int64_t window_out(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil)
{
    return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

Node *rw_conv2d(Rewriter *rw, const Node *proto, Node *x, Node *w, Node *b)
{
    FUSE_ASSERT(proto->kind == OP_CONV2D && x->shape.rank == 4 && w->shape.rank == 4);
    Node *ins[3] = {x, w, b};
    const Shape *xs = &x->shape;
    int64_t kh = w->shape.dim[2], kw = w->shape.dim[3];
    Shape s = {4,
               {xs->dim[0], w->shape.dim[0],
                window_out(xs->dim[2], kh, proto->attr.conv.stride_h, proto->attr.conv.pad_h,
                           proto->attr.conv.dil_h),
                window_out(xs->dim[3], kw, proto->attr.conv.stride_w, proto->attr.conv.pad_w,
                           proto->attr.conv.dil_w)}};
    Node *n = rw_node(rw, OP_CONV2D, ins, b ? 3 : 2, &s);
    n->attr.conv = proto->attr.conv;
    n->attr.conv.out = w->shape.dim[0];
    n->attr.conv.kh = kh;
    n->attr.conv.kw = kw;
    n->attr.conv.bias = b != NULL;
    return n;
}

Node *rw_linear(Rewriter *rw, Node *x, Node *w, Node *b)
{
    FUSE_ASSERT(w->shape.rank == 2 && x->shape.rank >= 1);
    FUSE_ASSERT(w->shape.dim[1] == x->shape.dim[x->shape.rank - 1]);
    Shape s = x->shape;
    s.dim[s.rank - 1] = w->shape.dim[0];
    if (w->kind != OP_PARAM) {
        static const uint32_t transpose[2] = {1, 0};
        Node *ins[2] = {x, rw_permute(rw, w, transpose)};
        Node *y = rw_node(rw, OP_MATMUL, ins, 2, &s);
        return b ? rw_binary(rw, OP_ADD, y, b) : y;
    }
    Node *ins[3] = {x, w, b};
    Node *n = rw_node(rw, OP_LINEAR, ins, b ? 3 : 2, &s);
    n->attr.linear.out = w->shape.dim[0];
    n->attr.linear.bias = b != NULL;
    return n;
}

Node *rw_upsample(Rewriter *rw, const Node *proto, Node *x)
{
    FUSE_ASSERT(proto->kind == OP_UPSAMPLE && x->shape.rank == 4);
    /* the ratios were computed from the input size: the new input must have the same one */
    const Shape *in = &proto->inputs[0]->shape;
    FUSE_ASSERT(x->shape.dim[2] == in->dim[2] && x->shape.dim[3] == in->dim[3]);
    Shape s = {4, {x->shape.dim[0], x->shape.dim[1], proto->shape.dim[2], proto->shape.dim[3]}};
    Node *n = rw_node(rw, OP_UPSAMPLE, &x, 1, &s);
    n->attr.upsample = proto->attr.upsample;
    return n;
}
