/*
 * pass factor-sigmoid: the sigmoid of a sum of two broadcast operands, from the sigmoids of the
 * operands.
 *
 * BAM gates its input with x * (1 + sigmoid(c + s)), c per channel [N, C, 1, 1] and s per pixel
 * [N, 1, H, W]: C*H*W sigmoids for C + H*W distinct operands. With e = exp(-a), f = exp(-b),
 *   sigmoid(a + b) = 1 / (1 + e f) = sigmoid(a) sigmoid(b) / (sigmoid(a) sigmoid(b) +
 *                                                       sigmoid(-a) sigmoid(-b))
 * (multiply the middle form by (1 + e)(1 + f) / ((1 + e)(1 + f))). So the four sigmoids are
 * taken over the small operands, and each output element costs two products, a sum and a
 * division instead of an exp and a division. Every factor lies in [0, 1]: nothing overflows.
 * Rewrites sigmoid(add(a, b)) when neither a nor b has the sum's shape (both are broadcast)
 * and they hold at most an eighth of its elements together (the four small sigmoids then cost
 * less than half of what the rewrite saves, at any shape).
 * Numerical contract: equal in real arithmetic. In f32 each factor is within 2 ulp of its
 * sigmoid, and the quotient within about 8 ulp of sigmoid(a + b), within the conformance
 * tolerance. Where |a| and |b| both exceed about 87 with opposite signs (a sum of huge terms
 * that cancel), the products fall below the smallest normal float and lose precision, and
 * past about 103 they vanish (0 / 0 is NaN): sigmoid's operands from real models are nowhere
 * near; -O0 keeps the sigmoid of the sum.
 */
#include "passes.h"
#include "rewrite.h"

static bool broadcast_operand(const Node *operand, const Node *sum)
{
    return shape_numel(&operand->shape) < shape_numel(&sum->shape);
}

static Node *rule(Rewriter *rw, const Node *n, void *ctx)
{
    (void)ctx;
    if (n->kind != OP_SIGMOID || n->inputs[0]->kind != OP_ADD)
        return NULL;
    const Node *sum = n->inputs[0];
    const Node *a = sum->inputs[0], *b = sum->inputs[1];
    if (!broadcast_operand(a, sum) || !broadcast_operand(b, sum) ||
        8 * (shape_numel(&a->shape) + shape_numel(&b->shape)) > shape_numel(&sum->shape))
        return NULL;
    // One statement per node: the graph's node order must not depend on the C compiler's
    // order of evaluating arguments.
    Node *na = rw_in(rw, sum, 0), *nb = rw_in(rw, sum, 1);
    Node *sa = rw_unary(rw, OP_SIGMOID, na);
    Node *sb = rw_unary(rw, OP_SIGMOID, nb);
    Node *both = rw_binary(rw, OP_MUL, sa, sb);
    Node *sna = rw_unary(rw, OP_SIGMOID, rw_unary(rw, OP_NEG, na));
    Node *snb = rw_unary(rw, OP_SIGMOID, rw_unary(rw, OP_NEG, nb));
    Node *neither = rw_binary(rw, OP_MUL, sna, snb);
    return rw_binary(rw, OP_DIV, both, rw_binary(rw, OP_ADD, both, neither));
}

Graph *pass_factor_sigmoid(Ctx *cx, const Graph *g, uint32_t *rewritten)
{
    return rewrite_graph(cx, g, rule, NULL, rewritten);
}
