/*
 * pass fold-batchnorm: eval-mode BatchNorm removed from the graph.
 *
 * BatchNorm is y = (x - mean) * s + beta per channel c of axis 1, with
 *   s = gamma * rsqrt(var + eps).
 * Rewrites:
 * - after a CONV2D (any kernel, stride, groups) or a LINEAR whose result is [N, C] (its output
 *   channels are then BatchNorm's axis 1), when that contraction's only use is the BatchNorm:
 *     W' = W * s            (s broadcast over the output-channel axis 0 of the weight)
 *     b' = (b - mean) * s + beta      (or beta - mean * s without a bias)
 *   and the contraction with W', b' replaces both nodes.
 * - any other BatchNorm: the per-channel affine y = x * s + t, t = beta - mean * s, with s and
 *   t viewed [C, 1, ...] to broadcast over axis 1, so that later fusion treats it as two
 *   elementwise ops.
 * s, t, W' and b' are nodes over PARAMs only (VIEW/MUL/SUB/ADD/RSQRT/SCALAR): weight-only
 * subgraphs, to be computed once when the kernel is created.
 * Declines to fold (and makes the affine instead) when the contraction has another use (it
 * would have to be computed twice) or when a linear's output channels are not axis 1 (a
 * [N, L, C] linear under batchnorm1d normalizes L, not C).
 * Numerical contract: equal in real arithmetic. The reference evaluates BatchNorm in double
 * and rounds once; here s, W', b' and t are rounded to f32 and the contraction's sum carries
 * the folded weights, which moves the result by a few ulp of max(|W x| |s|, |mean s|, |beta|):
 * within the conformance tolerance 1e-4 * max(1, max |y|) unless |mean * s| exceeds the
 * outputs by about three orders of magnitude.
 */
#include "passes.h"
#include "rewrite.h"

/* [c, 1, ..., 1] of rank `rank`: aligned to the last `rank` axes of a tensor (broadcasting),
 * it holds one value per index of the first of them. */
static Shape channel_shape(int64_t c, uint32_t rank)
{
    Shape s = {.rank = rank};
    s.dim[0] = c;
    for (uint32_t d = 1; d < rank; d++)
        s.dim[d] = 1;
    return s;
}

typedef struct Affine {
    Node *s, *gamma, *beta, *mean; /* new nodes, all [C] */
} Affine;

static Affine scale_of(Rewriter *rw, const Node *bn)
{
    Affine a = {.gamma = rw_in(rw, bn, 1), .beta = rw_in(rw, bn, 2), .mean = rw_in(rw, bn, 3)};
    Node *var = rw_in(rw, bn, 4);
    Node *inv =
        rw_unary(rw, OP_RSQRT, rw_binary(rw, OP_ADD, var, rw_scalar(rw, bn->attr.norm.eps)));
    a.s = rw_binary(rw, OP_MUL, a.gamma, inv);
    return a;
}

/* beta - mean * s, or (b - mean) * s + beta for a contraction with bias b. */
static Node *shift_of(Rewriter *rw, const Affine *a, Node *b)
{
    if (!b)
        return rw_binary(rw, OP_SUB, a->beta, rw_binary(rw, OP_MUL, a->mean, a->s));
    return rw_binary(rw, OP_ADD, rw_binary(rw, OP_MUL, rw_binary(rw, OP_SUB, b, a->mean), a->s),
                     a->beta);
}

/* The contraction c with W * s and the folded bias, or NULL if c cannot absorb bn. */
static Node *fold(Rewriter *rw, const Node *bn, const Node *c)
{
    if (op_info[c->kind].cls != OPC_CONTRACT || rw->uses[c->id] != 1)
        return NULL;
    if (c->kind != OP_CONV2D && !(c->kind == OP_LINEAR && c->shape.rank == 2))
        return NULL;
    Affine a = scale_of(rw, bn);
    Node *w = rw_in(rw, c, 1);
    Shape ws = channel_shape(w->shape.dim[0], w->shape.rank);
    Node *w2 = rw_binary(rw, OP_MUL, w, rw_view(rw, a.s, &ws));
    Node *b2 = shift_of(rw, &a, c->ninputs > 2 ? rw_in(rw, c, 2) : NULL);
    rw_span_of(rw, c); /* still the user's conv or linear */
    if (c->kind == OP_CONV2D)
        return rw_conv2d(rw, c, rw_in(rw, c, 0), w2, b2);
    return rw_linear(rw, rw_in(rw, c, 0), w2, b2);
}

static Node *rule(Rewriter *rw, const Node *n, void *ctx)
{
    (void)ctx;
    if (n->kind != OP_BATCHNORM)
        return NULL;
    Node *folded = fold(rw, n, n->inputs[0]);
    if (folded)
        return folded;
    Affine a = scale_of(rw, n);
    Shape cs = channel_shape(n->shape.dim[1], n->shape.rank - 1);
    Node *s = rw_view(rw, a.s, &cs), *t = rw_view(rw, shift_of(rw, &a, NULL), &cs);
    return rw_binary(rw, OP_ADD, rw_binary(rw, OP_MUL, rw_in(rw, n, 0), s), t);
}

Graph *pass_fold_batchnorm(Ctx *cx, const Graph *g, uint32_t *rewritten)
{
    return rewrite_graph(cx, g, rule, NULL, rewritten);
}
