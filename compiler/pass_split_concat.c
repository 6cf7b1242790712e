/*
 * pass split-concat: a contraction over a concat never materializes the concat.
 *
 * A contraction is linear in its input channels, so for x = concat(x_0, ..., x_{k-1}) along
 * the axis it sums over, with part j holding channels off_j .. off_j + c_j - 1:
 *   conv(x, W, b) = sum_j conv(x_j, W[:, off_j : off_j + c_j], b_j)
 * where the bias is added once (b_j = b for one part, none for the others). Rewrites:
 * - CONV2D with groups == 1 (any kernel, stride, padding, dilation) over a CONCAT along axis 1;
 * - LINEAR over a CONCAT along its last axis;
 * into one contraction per part, each with its weight sliced along its input axis (OP_SLICE
 * over the weight: weight-only, computed once at create time), summed left to right. The bias
 * rides on the first part produced by a resampling op (OPC_RESAMPLE), else on the first part:
 * commute-upsample can then move that part, bias included, to the lower resolution.
 * Declines when the concat has another use (it exists anyway, and splitting would only add
 * the sums), when the concat is along another axis, for grouped convolutions (a group
 * may straddle two parts), and for a contraction that reads the concat's parts in place (a 1x1
 * conv or a wide enough linear: contraction_reads_concat_in_place) when no part is resampled:
 * there the split would only store every part's partial sum but the last at full size, with
 * nothing to commute.
 * Numerical contract: equal in real arithmetic. The reference sums all channels in one double
 * accumulator; here each part is a separate f32-rounded contraction and the partial results
 * are added in f32: a few ulp of the largest partial sum, within the conformance tolerance.
 */
#include "passes.h"
#include "rewrite.h"

/* The part that gets the bias: the first made by a resampling op, else the first. */
static uint32_t bias_part(const Node *cat)
{
    for (uint32_t j = 0; j < cat->ninputs; j++)
        if (op_info[cat->inputs[j]->kind].cls == OPC_RESAMPLE)
            return j;
    return 0;
}

static Node *rule(Rewriter *rw, const Node *n, void *ctx)
{
    (void)ctx;
    bool conv = n->kind == OP_CONV2D && n->attr.conv.groups == 1;
    if (!conv && n->kind != OP_LINEAR)
        return NULL;
    const Node *cat = n->inputs[0];
    uint32_t axis = conv ? 1 : n->shape.rank - 1;
    if (cat->kind != OP_CONCAT || cat->attr.concat.axis != axis || rw->uses[cat->id] != 1)
        return NULL;
    if (contraction_reads_concat_in_place(n) && /* bias_part finds no resampled part */
        op_info[cat->inputs[bias_part(cat)]->kind].cls != OPC_RESAMPLE)
        return NULL;
    Node *w = rw_in(rw, n, 1), *b = n->ninputs > 2 ? rw_in(rw, n, 2) : NULL, *sum = NULL;
    uint32_t with_bias = bias_part(cat);
    int64_t off = 0;
    for (uint32_t j = 0; j < cat->ninputs; j++) {
        int64_t c = cat->inputs[j]->shape.dim[axis];
        Node *x = rw_in(rw, cat, j), *wj = rw_slice(rw, w, 1, off, c);
        Node *bj = j == with_bias ? b : NULL;
        Node *y = conv ? rw_conv2d(rw, n, x, wj, bj) : rw_linear(rw, x, wj, bj);
        sum = sum ? rw_binary(rw, OP_ADD, sum, y) : y;
        off += c;
    }
    return sum;
}

Graph *pass_split_concat(Ctx *cx, const Graph *g, uint32_t *rewritten)
{
    return rewrite_graph(cx, g, rule, NULL, rewritten);
}
