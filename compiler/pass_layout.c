/*
 * pass layout: layout ops (OPC_LAYOUT) resolved so that no transpose runs that need not.
 *
 * Rewrites:
 * - permute(0,2,3,1) -> linear -> permute(0,3,1,2), i.e. nn.Linear applied over the channels
 *   of an NCHW map, becomes conv2d(x, weight viewed [out, in, 1, 1], bias) with kernel 1: the
 *   same sums over the same channels, read where they lie, with no transpose executed.
 * - permute of permute: composed into one (output axis i reads perm1[perm2[i]]).
 * - a permute that moves only size-1 axes (the other axes keep their order): a view, since
 *   the elements stay in the same row-major order.
 * - view of view: one view of the innermost source.
 * - identity views and permutes (same shape, or perm 0..r-1): dropped, the input stands in.
 * Declines: the permute-linear-permute form when the linear has another use (the conv would
 *   duplicate the contraction), when the linear's input is not that permute (or has already
 *   become a view), and for other ranks (a conv2d is 4-d).
 * Numerical contract: exact. Layout ops move values without arithmetic; the conv computes
 *   out[n,o,y,x] = b[o] + sum_c w[o,c] x[n,c,y,x], the linear's sum term for term (backends
 *   accumulate it in the same f32 precision, so results agree within the conformance
 *   tolerance and usually to the bit).
 */
#include <string.h>

#include "passes.h"
#include "rewrite.h"

static bool perm_is(const Node *n, const uint32_t *perm, uint32_t rank)
{
    if (n->kind != OP_PERMUTE || n->shape.rank != rank)
        return false;
    return memcmp(n->attr.permute.perm, perm, rank * sizeof(uint32_t)) == 0;
}

/* permute(0,3,1,2) of linear of permute(0,2,3,1): the linear as a 1x1 conv2d, or NULL. */
static Node *linear_as_conv(Rewriter *rw, const Node *n)
{
    static const uint32_t to_nhwc[4] = {0, 2, 3, 1}, to_nchw[4] = {0, 3, 1, 2};
    const Node *lin = n->inputs[0];
    if (!perm_is(n, to_nchw, 4) || lin->kind != OP_LINEAR || rw->uses[lin->id] != 1)
        return NULL;
    Node *inner = rw_in(rw, lin, 0);
    if (!perm_is(inner, to_nhwc, 4))
        return NULL;
    rw_span_of(rw, lin);
    Node *w = rw_in(rw, lin, 1);
    Shape w4 = {4, {w->shape.dim[0], w->shape.dim[1], 1, 1}};
    Node proto = {.kind = OP_CONV2D}; /* kernel 1, no padding */
    proto.attr.conv.stride_h = proto.attr.conv.stride_w = 1;
    proto.attr.conv.dil_h = proto.attr.conv.dil_w = 1;
    proto.attr.conv.groups = 1;
    Node *bias = lin->ninputs > 2 ? rw_in(rw, lin, 2) : NULL;
    return rw_conv2d(rw, &proto, inner->inputs[0], rw_view(rw, w, &w4), bias);
}

/* True if perm keeps the axes of size > 1 in their order: the permute is a reshape. */
static bool moves_only_unit_axes(const Shape *in, const uint32_t *perm, uint32_t rank)
{
    int64_t last = -1;
    for (uint32_t d = 0; d < rank; d++) {
        if (in->dim[perm[d]] == 1)
            continue;
        if ((int64_t)perm[d] < last)
            return false;
        last = perm[d];
    }
    return true;
}

static Node *permute(Rewriter *rw, const Node *n)
{
    Node *conv = linear_as_conv(rw, n);
    if (conv)
        return conv;
    Node *x = rw_in(rw, n, 0);
    uint32_t rank = n->shape.rank, perm[FUSE_MAX_RANK];
    memcpy(perm, n->attr.permute.perm, rank * sizeof(uint32_t));
    bool changed = false;
    while (x->kind == OP_PERMUTE) {
        uint32_t composed[FUSE_MAX_RANK];
        for (uint32_t d = 0; d < rank; d++)
            composed[d] = x->attr.permute.perm[perm[d]];
        memcpy(perm, composed, rank * sizeof(uint32_t));
        x = x->inputs[0];
        changed = true;
    }
    if (moves_only_unit_axes(&x->shape, perm, rank))
        return rw_view(rw, x, &n->shape); /* x itself for the identity */
    return changed ? rw_permute(rw, x, perm) : NULL;
}

/* rw_view reads through views and drops the identity. */
static Node *view(Rewriter *rw, const Node *n)
{
    Node *x = rw_in(rw, n, 0);
    if (x->kind == OP_VIEW || shape_equal(&x->shape, &n->shape))
        return rw_view(rw, x, &n->shape);
    return NULL;
}

static Node *rule(Rewriter *rw, const Node *n, void *ctx)
{
    (void)ctx;
    if (n->kind == OP_PERMUTE)
        return permute(rw, n);
    if (n->kind == OP_VIEW)
        return view(rw, n);
    return NULL;
}

Graph *pass_layout(Ctx *cx, const Graph *g, uint32_t *rewritten)
{
    return rewrite_graph(cx, g, rule, NULL, rewritten);
}
