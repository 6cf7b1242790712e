/*
 * pass commute-upsample: a 1x1 convolution applied before an upsample instead of after it.
 *
 * A 1x1 conv with stride 1 and no padding mixes channels at each pixel; a bilinear or nearest
 * upsample mixes pixels within each channel with weights that depend only on positions. Both
 * are linear and act on different axes, so they commute:
 *   conv1x1(upsample(x), W, b) == upsample(conv1x1(x, W, b))
 * the bias included, because every output of a nearest upsample is one input value and the
 * two bilinear weights of each axis sum to 1 (up(z + b) = up(z) + b). Groups do not matter
 * (still per pixel). Rewrites the conv (any groups) over an UPSAMPLE of an [N, C, h, w] map to
 * [N, C, H, W] into the conv at h x w followed by the same upsample of its output, when that
 * costs fewer FLOPs by the cost model of graph_flops (LANGUAGE.md section 5):
 *   after  = conv at h*w pixels + upsample of the conv's O output channels
 *   before = conv at H*W pixels + upsample of the C input channels, when the upsample has no
 *            other use (otherwise it is computed anyway and saves nothing)
 * (a bilinear upsample costs 7 per output element, a nearest one nothing).
 * Declines: kernels other than 1x1, strides, padding (the conv would see different pixels),
 * and whenever the low-resolution form is not cheaper (e.g. few input channels and many
 * output channels, or an upsample that shrinks).
 * Numerical contract: equal in real arithmetic. In f32 the interpolation now rounds the conv's
 * outputs instead of its inputs, and the conv sums interpolated values in another order: the
 * results differ by a few ulp of the largest |conv output|, within the conformance tolerance.
 */
#include "passes.h"
#include "rewrite.h"

/* FLOPs of upsampling `channels` channels of `up`'s result (graph_flops' model). */
static double upsample_flops(const Node *up, int64_t channels)
{
    const Shape *s = &up->shape;
    double per_channel = (double)(s->dim[0] * s->dim[2] * s->dim[3]);
    return up->attr.upsample.bilinear ? 7 * per_channel * (double)channels : 0;
}

/* FLOPs of the conv `conv` computed at `pixels` output pixels per image and channel. */
static double conv_flops(const Node *conv, int64_t pixels)
{
    double per_out = 2.0 * (double)(conv->inputs[0]->shape.dim[1] / conv->attr.conv.groups) +
                     (conv->attr.conv.bias ? 1 : 0);
    return (double)(conv->shape.dim[0] * conv->shape.dim[1] * pixels) * per_out;
}

static bool pointwise_conv(const Node *n)
{
    return n->kind == OP_CONV2D && n->attr.conv.kh == 1 && n->attr.conv.kw == 1 &&
           n->attr.conv.stride_h == 1 && n->attr.conv.stride_w == 1 && n->attr.conv.pad_h == 0 &&
           n->attr.conv.pad_w == 0;
}

static Node *rule(Rewriter *rw, const Node *n, void *ctx)
{
    (void)ctx;
    if (!pointwise_conv(n))
        return NULL;
    const Node *up = n->inputs[0];
    if (op_info[up->kind].cls != OPC_RESAMPLE || up->kind != OP_UPSAMPLE)
        return NULL;
    const Shape *low = &up->inputs[0]->shape;
    double after = conv_flops(n, low->dim[2] * low->dim[3]) + upsample_flops(up, n->shape.dim[1]);
    double before = conv_flops(n, up->shape.dim[2] * up->shape.dim[3]);
    if (rw->uses[up->id] == 1)
        before += upsample_flops(up, up->shape.dim[1]);
    if (!(after < before))
        return NULL;
    Node *b = n->ninputs > 2 ? rw_in(rw, n, 2) : NULL;
    Node *z = rw_conv2d(rw, n, rw_in(rw, up, 0), rw_in(rw, n, 1), b);
    rw_span_of(rw, up);
    return rw_upsample(rw, up, z);
}

Graph *pass_commute_upsample(Ctx *cx, const Graph *g, uint32_t *rewritten)
{
    return rewrite_graph(cx, g, rule, NULL, rewritten);
}
