/*
 * pass attention: scaled dot-product attention written out as ops becomes one ATTENTION op,
 * which the schedule computes as a streaming kernel without the L x S score matrix.
 *
 * Rewrites matmul(softmax(scores, last axis), v) where
 *   scores = matmul(q, kt), each of scores, q, kt optionally multiplied or divided by scalar
 *            constants (`* s`, `s *`, `/ s`, any number of them, on any of the three);
 *   kt     = k^T through a permute that swaps the last two axes (transpose(k, dims=[-2, -1])
 *            and permute(k, perm=[..., -1, -2]) alike), or any other value of shape
 *            [B..., D, S], read as k^T as it is;
 * into attention(q, k or kt, v) with scale = the product of the scalars (divisors inverted).
 * Heads formed through view/permute are batch axes like any other by then (the layout pass has
 * composed the permutes); the attention reads its operands as they are.
 * Declines: when the scores, their scaled forms or the softmax have another use (the score
 * matrix would exist anyway), when the softmax is not over the last axis, and when the batch
 * axes of q, k^T and v are not the same (matmul's broadcasting is left to the matmuls).
 * Numerical contract: equal in real arithmetic. The scale is applied to the f32 dot products
 * (one rounding instead of one per scalar and per scaled operand), and the softmax is formed
 * online in f32 (exp(score - running max), rescaled when the maximum grows): within the
 * conformance tolerance of the reference.
 */
#include "passes.h"
#include "rewrite.h"

/* The scalar constant of x = a * c, c * a or a / c (c an OP_SCALAR), folded into *scale;
 * returns a (the other operand), or NULL if x is not such a product. */
static const Node *strip_scalar(const Node *x, double *scale)
{
    if (x->kind != OP_MUL && x->kind != OP_DIV)
        return NULL;
    const Node *a = x->inputs[0], *b = x->inputs[1];
    if (b->kind == OP_SCALAR && shape_equal(&a->shape, &x->shape)) {
        double c = b->attr.scalar.value;
        *scale *= x->kind == OP_MUL ? c : 1.0 / c;
        return a;
    }
    if (x->kind == OP_MUL && a->kind == OP_SCALAR && shape_equal(&b->shape, &x->shape)) {
        *scale *= a->attr.scalar.value;
        return b;
    }
    return NULL;
}

/* x without its scalar factors; with only_use, every product peeled must have no other use. */
static const Node *strip_scalars(const Rewriter *rw, const Node *x, double *scale, bool only_use)
{
    for (;;) {
        double s = *scale;
        const Node *a = strip_scalar(x, &s);
        if (!a || (only_use && rw->uses[x->id] != 1))
            return x;
        *scale = s;
        x = a;
    }
}

/* True if perm swaps the last two of rank axes and keeps the others. */
static bool swaps_last_two(const Node *n)
{
    uint32_t r = n->shape.rank;
    if (n->kind != OP_PERMUTE || r < 2)
        return false;
    for (uint32_t d = 0; d + 2 < r; d++)
        if (n->attr.permute.perm[d] != d)
            return false;
    return n->attr.permute.perm[r - 2] == r - 1 && n->attr.permute.perm[r - 1] == r - 2;
}

static bool same_batch(const Shape *a, const Shape *b)
{
    if (a->rank != b->rank)
        return false;
    for (uint32_t d = 0; d + 2 < a->rank; d++)
        if (a->dim[d] != b->dim[d])
            return false;
    return true;
}

static Node *rule(Rewriter *rw, const Node *n, void *ctx)
{
    (void)ctx;
    if (n->kind != OP_MATMUL)
        return NULL;
    const Node *p = n->inputs[0], *v = n->inputs[1];
    uint32_t r = p->shape.rank;
    if (p->kind != OP_SOFTMAX || rw->uses[p->id] != 1 || r < 2 || p->attr.softmax.axis != r - 1)
        return NULL;
    double scale = 1.0;
    const Node *scores = strip_scalars(rw, p->inputs[0], &scale, true);
    if (scores->kind != OP_MATMUL || rw->uses[scores->id] != 1)
        return NULL;
    const Node *q = strip_scalars(rw, scores->inputs[0], &scale, false);
    const Node *kt = strip_scalars(rw, scores->inputs[1], &scale, false);
    if (q->shape.rank != r || !same_batch(&q->shape, &kt->shape) ||
        !same_batch(&q->shape, &v->shape) || !same_batch(&q->shape, &n->shape))
        return NULL;
    const Node *k = kt;
    bool k_transposed = true;
    if (swaps_last_two(kt)) {
        k = strip_scalars(rw, kt->inputs[0], &scale, false);
        k_transposed = false;
    }
    rw_span_of(rw, p); /* the softmax: where the score matrix was */
    Node *in[3] = {rw_map(rw, q), rw_map(rw, k), rw_map(rw, v)};
    Node *a = rw_node(rw, OP_ATTENTION, in, 3, &n->shape);
    a->attr.attention.scale = (float)scale;
    a->attr.attention.k_transposed = k_transposed;
    return a;
}

Graph *pass_attention(Ctx *cx, const Graph *g, uint32_t *rewritten)
{
    return rewrite_graph(cx, g, rule, NULL, rewritten);
}
