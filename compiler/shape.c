/*
 * shape (part of stage 4, build): op calls -> graph nodes.
 *
 * A call of a source op is built in four steps: its tensor arguments are evaluated; its
 * attributes are read through the op's catalogue row (builtins.c), defaults filled and ranges
 * checked; the op's shape rule (below) checks the arguments and sets the result shape, the node
 * attributes and the slot quantities; then its weights get their keys (--prefix, block-call
 * scopes, the op's scope, the slot), are checked against earlier uses of the same scope, and
 * become OP_PARAM inputs of the node, in slot order.
 * Shapes follow PyTorch 1.13 (LANGUAGE.md §3). Every axis stored in a node is normalized to
 * 0..rank-1. Every int attribute is within +-2^40, so sums of two fit int64; products are
 * checked.
 */
#include "shape.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "build.h"

/* ---- Shapes ---- */

TypeText type_text(const Shape *s)
{
    TypeText t;
    char buf[SHAPE_TEXT_MAX];
    snprintf(t.s, sizeof t.s, "f32%s", shape_format(s, buf, sizeof buf));
    return t;
}

bool shape_broadcast(const Shape *a, const Shape *b, Shape *result)
{
    uint32_t rank = a->rank > b->rank ? a->rank : b->rank;
    Shape r = {.rank = rank};
    for (uint32_t i = 0; i < rank; i++) {
        int64_t da = i < a->rank ? a->dim[a->rank - 1 - i] : 1;
        int64_t db = i < b->rank ? b->dim[b->rank - 1 - i] : 1;
        if (da != db && da != 1 && db != 1)
            return false;
        r.dim[rank - 1 - i] = da == 1 ? db : da;
    }
    *result = r;
    return true;
}

/* ---- Small helpers for the rules ---- */

static const AttrVal *attr(const OpCall *c, const char *name)
{
    return &c->attrs[builtin_attr_index(c->op, name)];
}

static const Shape *arg_shape(const OpCall *c, uint32_t k)
{
    return &c->args[k]->shape;
}

static bool fail_rank(OpCall *c, uint32_t k, const char *want)
{
    build_error(c->b, c->f, c->arg_exprs[k]->span, "%s takes %s, not %s", c->op->name, want,
                type_text(arg_shape(c, k)).s);
    return false;
}

/* Normalizes axis v of a tensor of shape s (negative counts from the last). */
static bool axis_of(OpCall *c, const char *what, int64_t v, Span at, const Shape *s, uint32_t *out)
{
    int64_t r = s->rank;
    if (r == 0) {
        build_error(c->b, c->f, at, "%s %lld is out of range: %s has no axes", what, (long long)v,
                    type_text(s).s);
        return false;
    }
    if (v < -r || v >= r) {
        build_error(c->b, c->f, at, "%s %lld is out of range for %s: expected %lld..%lld", what,
                    (long long)v, type_text(s).s, (long long)-r, (long long)(r - 1));
        return false;
    }
    *out = (uint32_t)(v < 0 ? v + r : v);
    return true;
}

/* Output size of a sliding window: floor((in + 2p - d(k-1) - 1) / s) + 1, at least 1. */
static bool window(OpCall *c, const char *axis, int64_t in, int64_t k, int64_t s, int64_t p,
                   int64_t d, Span at, int64_t *out)
{
    int64_t reach = 0, pad2 = 0, padded = 0;
    if (!mul_i64(d, k - 1, &reach) || !add_i64(reach, 1, &reach) || !mul_i64(p, 2, &pad2) ||
        !add_i64(in, pad2, &padded)) {
        build_error(c->b, c->f, at, "%s: the window is too large", c->op->name);
        return false;
    }
    if (padded < reach) {
        build_error(c->b, c->f, at,
                    "%s: the kernel window (%lld) is larger than the padded input %s (%lld)",
                    c->op->name, (long long)reach, axis, (long long)padded);
        return false;
    }
    *out = (padded - reach) / s + 1;
    return true;
}

/* ---- Shape rules ---- */

bool shape_unary(OpCall *c)
{
    c->out = *arg_shape(c, 0);
    return true;
}

bool shape_gelu(OpCall *c)
{
    c->out = *arg_shape(c, 0);
    c->proto.attr.gelu.tanh = attr(c, "approximate")->word == 1;
    return true;
}

bool shape_minmax(OpCall *c)
{
    if (shape_broadcast(arg_shape(c, 0), arg_shape(c, 1), &c->out))
        return true;
    build_error(c->b, c->f, c->call->span, "cannot broadcast %s and %s in %s",
                type_text(arg_shape(c, 0)).s, type_text(arg_shape(c, 1)).s, c->op->name);
    return false;
}

/* Output size and ratio of one upsampled axis (graph.h: attr.upsample). */
static bool upsample_axis(OpCall *c, uint32_t k, int64_t in, int64_t *out, float *ratio)
{
    const AttrVal *size = attr(c, "size"), *scale = attr(c, "scale");
    bool align = attr(c, "mode")->word == 1 && attr(c, "align_corners")->b;
    const char *axis = k == 0 ? "height" : "width";
    if (scale->given) {
        double s = scale->f[k];
        if (!(s > 0) || !isfinite(s)) {
            build_error(c->b, c->f, scale->at[k],
                        "attribute 'scale' of upsample must be positive, not %g", s);
            return false;
        }
        double o = floor((double)in * s); /* F.interpolate: floor(in * scale) in double */
        if (o < 1 || o > (double)FUSE_MAX_ELEMENTS) {
            build_error(c->b, c->f, scale->at[k], "upsample: scale %g makes the %s %lld * %g = %g",
                        s, axis, (long long)in, s, o);
            return false;
        }
        *out = (int64_t)o;
        *ratio = (float)(1.0 / s);
    } else {
        *out = size->i[k];
        *ratio = (float)in / (float)*out;
    }
    if (align)
        *ratio = *out > 1 ? (float)(in - 1) / (float)(*out - 1) : 0.0f;
    return true;
}

bool shape_upsample(OpCall *c)
{
    const Shape *x = arg_shape(c, 0);
    if (x->rank != 4)
        return fail_rank(c, 0, "a 4-d tensor [N, C, H, W]");
    const AttrVal *scale = attr(c, "scale");
    c->out = *x;
    float rh = 0, rw = 0;
    if (!upsample_axis(c, 0, x->dim[2], &c->out.dim[2], &rh) ||
        !upsample_axis(c, 1, x->dim[3], &c->out.dim[3], &rw))
        return false;
    bool bilinear = attr(c, "mode")->word == 1;
    c->proto.attr.upsample.bilinear = bilinear;
    c->proto.attr.upsample.align_corners = bilinear && attr(c, "align_corners")->b;
    c->proto.attr.upsample.ratio_h = rh;
    c->proto.attr.upsample.ratio_w = rw;
    c->proto.attr.upsample.from_scale = scale->given;
    c->proto.attr.upsample.scale_h = scale->given ? (float)scale->f[0] : 0.0f;
    c->proto.attr.upsample.scale_w = scale->given ? (float)scale->f[1] : 0.0f;
    return true;
}

static bool concat_one(OpCall *c, uint32_t k, uint32_t axis)
{
    const Shape *x0 = arg_shape(c, 0), *xk = arg_shape(c, k);
    TypeText t0 = type_text(x0), tk = type_text(xk);
    Span at = c->arg_exprs[k]->span;
    if (xk->rank != x0->rank) {
        build_error(c->b, c->f, at, "cannot concat %s and %s: their ranks differ", t0.s, tk.s);
        return false;
    }
    for (uint32_t d = 0; d < x0->rank; d++)
        if (d != axis && xk->dim[d] != x0->dim[d]) {
            build_error(c->b, c->f, at,
                        "cannot concat %s and %s along axis %u: dim %u differs (%lld vs %lld)",
                        t0.s, tk.s, axis, d, (long long)x0->dim[d], (long long)xk->dim[d]);
            return false;
        }
    if (!add_i64(c->out.dim[axis], xk->dim[axis], &c->out.dim[axis]))
        c->out.dim[axis] = INT64_MAX; /* reported by the size check */
    return true;
}

bool shape_concat(OpCall *c)
{
    const AttrVal *av = attr(c, "axis");
    uint32_t axis;
    if (!axis_of(c, "axis", av->i[0], av->at[0], arg_shape(c, 0), &axis))
        return false;
    c->out = *arg_shape(c, 0);
    bool ok = true;
    for (uint32_t k = 1; k < c->nargs; k++)
        ok = concat_one(c, k, axis) && ok;
    c->proto.attr.concat.axis = axis;
    return ok;
}

bool shape_conv2d(OpCall *c)
{
    const Shape *x = arg_shape(c, 0);
    if (x->rank != 4)
        return fail_rank(c, 0, "a 4-d tensor [N, C, H, W]");
    const AttrVal *out = attr(c, "out"), *k = attr(c, "kernel"), *st = attr(c, "stride");
    const AttrVal *pad = attr(c, "padding"), *dil = attr(c, "dilation"), *g = attr(c, "groups");
    int64_t cin = x->dim[1], groups = g->i[0];
    bool ok = true;
    if (cin % groups != 0) {
        build_error(c->b, c->f, g->at[0],
                    "conv2d: %lld input channels are not divisible by "
                    "groups=%lld",
                    (long long)cin, (long long)groups);
        ok = false;
    }
    if (out->i[0] % groups != 0) {
        build_error(c->b, c->f, out->at[0], "conv2d: out=%lld is not divisible by groups=%lld",
                    (long long)out->i[0], (long long)groups);
        ok = false;
    }
    int64_t oh = 0, ow = 0; /* one error per call: the width's would repeat the height's */
    ok = ok &&
         window(c, "height", x->dim[2], k->i[0], st->i[0], pad->i[0], dil->i[0], k->at[0], &oh);
    ok =
        ok && window(c, "width", x->dim[3], k->i[1], st->i[1], pad->i[1], dil->i[1], k->at[1], &ow);
    if (!ok)
        return false;
    c->out = (Shape){4, {x->dim[0], out->i[0], oh, ow}};
    c->out_ch = out->i[0];
    c->in_ch = cin;
    c->groups = groups;
    c->kh = k->i[0];
    c->kw = k->i[1];
    c->proto.attr.conv.out = out->i[0];
    c->proto.attr.conv.kh = k->i[0];
    c->proto.attr.conv.kw = k->i[1];
    c->proto.attr.conv.stride_h = st->i[0];
    c->proto.attr.conv.stride_w = st->i[1];
    c->proto.attr.conv.pad_h = pad->i[0];
    c->proto.attr.conv.pad_w = pad->i[1];
    c->proto.attr.conv.dil_h = dil->i[0];
    c->proto.attr.conv.dil_w = dil->i[1];
    c->proto.attr.conv.groups = groups;
    c->proto.attr.conv.bias = attr(c, "bias")->b;
    return true;
}

/* BatchNorm in eval mode: per channel of axis 1. */
static bool batchnorm(OpCall *c)
{
    c->out = *arg_shape(c, 0);
    c->channels = c->out.dim[1];
    c->proto.attr.norm.eps = (float)attr(c, "eps")->f[0];
    return true;
}

bool shape_batchnorm2d(OpCall *c)
{
    if (arg_shape(c, 0)->rank != 4)
        return fail_rank(c, 0, "a 4-d tensor [N, C, H, W]");
    return batchnorm(c);
}

bool shape_batchnorm1d(OpCall *c)
{
    uint32_t r = arg_shape(c, 0)->rank;
    if (r != 2 && r != 3)
        return fail_rank(c, 0, "a 2-d or 3-d tensor ([N, C] or [N, C, L])");
    return batchnorm(c);
}

bool shape_linear(OpCall *c)
{
    const Shape *x = arg_shape(c, 0);
    if (x->rank == 0)
        return fail_rank(c, 0, "a tensor with at least 1 dim");
    const AttrVal *out = attr(c, "out");
    c->out = *x;
    c->out.dim[x->rank - 1] = out->i[0];
    c->out_ch = out->i[0];
    c->in_ch = x->dim[x->rank - 1];
    c->proto.attr.linear.out = out->i[0];
    c->proto.attr.linear.bias = attr(c, "bias")->b;
    return true;
}

bool shape_layernorm(OpCall *c)
{
    const Shape *x = arg_shape(c, 0);
    if (x->rank == 0)
        return fail_rank(c, 0, "a tensor with at least 1 dim");
    c->out = *x;
    c->channels = x->dim[x->rank - 1];
    c->proto.attr.norm.eps = (float)attr(c, "eps")->f[0];
    return true;
}

bool shape_mha(OpCall *c)
{
    static const char *const want[] = {"a 3-d query [N, L, E]", "a 3-d key [N, S, E]",
                                       "a 3-d value [N, S, E]"};
    bool ok = true;
    for (uint32_t k = 0; k < 3; k++)
        if (arg_shape(c, k)->rank != 3)
            ok = fail_rank(c, k, want[k]);
    if (!ok)
        return false;
    const Shape *q = arg_shape(c, 0), *key = arg_shape(c, 1), *v = arg_shape(c, 2);
    int64_t e = q->dim[2], heads = attr(c, "heads")->i[0];
    if (key->dim[0] != q->dim[0] || key->dim[2] != e) {
        build_error(c->b, c->f, c->arg_exprs[1]->span,
                    "mha: key %s does not fit query %s: the batch (%lld) and embedding (%lld) "
                    "sizes must match",
                    type_text(key).s, type_text(q).s, (long long)q->dim[0], (long long)e);
        ok = false;
    } else if (!shape_equal(key, v)) {
        build_error(c->b, c->f, c->arg_exprs[2]->span,
                    "mha: value %s must have the shape of key %s", type_text(v).s,
                    type_text(key).s);
        ok = false;
    }
    if (e % heads != 0) {
        build_error(c->b, c->f, attr(c, "heads")->at[0],
                    "mha: the embedding size %lld is not divisible by heads=%lld", (long long)e,
                    (long long)heads);
        ok = false;
    }
    c->out = *q;
    c->embed = e;
    c->proto.attr.mha.heads = heads;
    c->proto.attr.mha.bias = attr(c, "bias")->b;
    return ok;
}

bool shape_param(OpCall *c)
{
    const AttrVal *s = attr(c, "shape");
    c->out.rank = s->n;
    for (uint32_t i = 0; i < s->n; i++)
        c->out.dim[i] = s->i[i];
    return true;
}

bool shape_reduce(OpCall *c)
{
    const Shape *x = arg_shape(c, 0);
    const AttrVal *axes = attr(c, "axes");
    bool *red = c->proto.attr.reduce.axes;
    for (uint32_t j = 0; j < axes->n; j++) {
        uint32_t a;
        if (!axis_of(c, "axis", axes->i[j], axes->at[j], x, &a))
            return false;
        if (red[a]) {
            build_error(c->b, c->f, axes->at[j], "axes of %s name axis %u of %s twice", c->op->name,
                        a, type_text(x).s);
            return false;
        }
        red[a] = true;
    }
    bool keep = attr(c, "keepdim")->b;
    c->proto.attr.reduce.keepdim = keep;
    c->out.rank = 0;
    for (uint32_t d = 0; d < x->rank; d++)
        if (!red[d])
            c->out.dim[c->out.rank++] = x->dim[d];
        else if (keep)
            c->out.dim[c->out.rank++] = 1;
    return true;
}

bool shape_softmax(OpCall *c)
{
    const AttrVal *av = attr(c, "axis");
    c->out = *arg_shape(c, 0);
    return axis_of(c, "axis", av->i[0], av->at[0], &c->out, &c->proto.attr.softmax.axis);
}

/* torch.matmul: 1-d operands are promoted (and the added axis removed from the result); the
 * batch dims (all but the last two) broadcast. */
bool shape_matmul(OpCall *c)
{
    const Shape *a = arg_shape(c, 0), *b = arg_shape(c, 1);
    TypeText ta = type_text(a), tb = type_text(b);
    if (a->rank == 0 || b->rank == 0) {
        build_error(c->b, c->f, c->call->span, "cannot matmul %s and %s: both need at least 1 dim",
                    ta.s, tb.s);
        return false;
    }
    Shape a2 = *a, b2 = *b;
    if (a->rank == 1)
        a2 = (Shape){2, {1, a->dim[0]}};
    if (b->rank == 1)
        b2 = (Shape){2, {b->dim[0], 1}};
    int64_t ka = a2.dim[a2.rank - 1], kb = b2.dim[b2.rank - 2];
    if (ka != kb) {
        build_error(c->b, c->f, c->call->span,
                    "cannot matmul %s and %s: the inner dims differ (%lld vs %lld)", ta.s, tb.s,
                    (long long)ka, (long long)kb);
        return false;
    }
    Shape ba = {a2.rank - 2, {0}}, bb = {b2.rank - 2, {0}}, batch;
    memcpy(ba.dim, a2.dim, ba.rank * sizeof(int64_t));
    memcpy(bb.dim, b2.dim, bb.rank * sizeof(int64_t));
    if (!shape_broadcast(&ba, &bb, &batch)) {
        build_error(c->b, c->f, c->call->span,
                    "cannot matmul %s and %s: the batch dims %s and %s do not broadcast", ta.s,
                    tb.s, type_text(&ba).s + 3, type_text(&bb).s + 3);
        return false;
    }
    c->out = batch;
    if (a->rank > 1)
        c->out.dim[c->out.rank++] = a2.dim[a2.rank - 2];
    if (b->rank > 1)
        c->out.dim[c->out.rank++] = b2.dim[b2.rank - 1];
    return true;
}

bool shape_permute(OpCall *c)
{
    const Shape *x = arg_shape(c, 0);
    const AttrVal *perm = attr(c, "perm");
    if (perm->n != x->rank) {
        build_error(c->b, c->f, perm->span, "perm of permute has %u entries, but %s has %u dims",
                    perm->n, type_text(x).s, x->rank);
        return false;
    }
    bool used[FUSE_MAX_RANK] = {0};
    c->out.rank = x->rank;
    for (uint32_t j = 0; j < perm->n; j++) {
        uint32_t a;
        if (!axis_of(c, "axis", perm->i[j], perm->at[j], x, &a))
            return false;
        if (used[a]) {
            build_error(c->b, c->f, perm->at[j], "perm of permute names axis %u twice", a);
            return false;
        }
        used[a] = true;
        c->proto.attr.permute.perm[j] = a;
        c->out.dim[j] = x->dim[a];
    }
    return true;
}

static void list_text(const AttrVal *av, char *buf, size_t size)
{
    size_t at = (size_t)snprintf(buf, size, "[");
    for (uint32_t j = 0; j < av->n && at < size; j++)
        at += (size_t)snprintf(buf + at, size - at, "%s%lld", j ? "," : "", (long long)av->i[j]);
    if (at < size)
        snprintf(buf + at, size - at, "]");
}

bool shape_view(OpCall *c)
{
    const Shape *x = arg_shape(c, 0);
    const AttrVal *shape = attr(c, "shape");
    int64_t total = shape_numel(x), known = 1;
    int32_t infer = -1;
    for (uint32_t j = 0; j < shape->n; j++) {
        int64_t v = shape->i[j];
        if (v == -1 && infer < 0) {
            infer = (int32_t)j;
        } else if (v == -1) {
            build_error(c->b, c->f, shape->at[j], "only one entry of the shape of view may be -1");
            return false;
        } else if (v < 1) {
            build_error(c->b, c->f, shape->at[j],
                        "entries of the shape of view must be at least 1 (or -1 once), not %lld",
                        (long long)v);
            return false;
        } else if (!mul_i64(known, v, &known) || known > FUSE_MAX_ELEMENTS) {
            known = FUSE_MAX_ELEMENTS + 1; /* cannot match: reported below */
        }
        c->out.dim[j] = v;
    }
    c->out.rank = shape->n;
    char want[SHAPE_TEXT_MAX];
    list_text(shape, want, sizeof want);
    if (infer >= 0 && total % known == 0) {
        c->out.dim[infer] = total / known;
        return true;
    }
    if (infer < 0 && known == total)
        return true;
    build_error(c->b, c->f, shape->span, "cannot view %s (%lld elements) as %s", type_text(x).s,
                (long long)total, want);
    return false;
}

bool shape_flatten(OpCall *c)
{
    const Shape *x = arg_shape(c, 0);
    const AttrVal *start = attr(c, "start"), *end = attr(c, "end");
    Shape one = {1, {1}};
    const Shape *ax = x->rank ? x : &one; /* torch.flatten of a 0-d tensor is [1] */
    uint32_t s, e;
    bool ok = axis_of(c, "start", start->i[0], start->at[0], ax, &s);
    if (!axis_of(c, "end", end->i[0], end->at[0], ax, &e) || !ok)
        return false;
    if (s > e) {
        build_error(c->b, c->f, start->at[0],
                    "flatten: start %lld (axis %u) comes after end %lld (axis %u)",
                    (long long)start->i[0], s, (long long)end->i[0], e);
        return false;
    }
    c->out.rank = 0;
    int64_t joined = 1;
    for (uint32_t d = 0; d < ax->rank; d++) {
        if (d < s || d > e)
            c->out.dim[c->out.rank++] = ax->dim[d];
        else
            joined *= ax->dim[d]; /* at most the tensor's element count */
        if (d == e)
            c->out.dim[c->out.rank++] = joined;
    }
    return true;
}

bool shape_transpose(OpCall *c)
{
    const Shape *x = arg_shape(c, 0);
    const AttrVal *dims = attr(c, "dims");
    uint32_t a, b;
    bool ok = axis_of(c, "dim", dims->i[0], dims->at[0], x, &a);
    if (!axis_of(c, "dim", dims->i[1], dims->at[1], x, &b) || !ok)
        return false;
    c->out = *x;
    for (uint32_t d = 0; d < x->rank; d++)
        c->proto.attr.permute.perm[d] = d;
    c->proto.attr.permute.perm[a] = b;
    c->proto.attr.permute.perm[b] = a;
    c->out.dim[a] = x->dim[b];
    c->out.dim[b] = x->dim[a];
    return true;
}

bool shape_pool(OpCall *c)
{
    const Shape *x = arg_shape(c, 0);
    if (x->rank != 4)
        return fail_rank(c, 0, "a 4-d tensor [N, C, H, W]");
    const AttrVal *k = attr(c, "kernel"), *st = attr(c, "stride"), *pad = attr(c, "padding");
    bool ok = true;
    for (uint32_t a = 0; a < 2; a++)
        if (pad->i[a] > k->i[a] / 2) {
            build_error(c->b, c->f, pad->at[a],
                        "%s: padding %lld is more than half the kernel %lld (PyTorch requires "
                        "padding <= kernel / 2)",
                        c->op->name, (long long)pad->i[a], (long long)k->i[a]);
            ok = false;
        }
    int64_t oh = 0, ow = 0;
    ok = ok && window(c, "height", x->dim[2], k->i[0], st->i[0], pad->i[0], 1, k->at[0], &oh);
    ok = ok && window(c, "width", x->dim[3], k->i[1], st->i[1], pad->i[1], 1, k->at[1], &ow);
    if (!ok)
        return false;
    c->out = (Shape){4, {x->dim[0], x->dim[1], oh, ow}};
    c->proto.attr.pool.kh = k->i[0];
    c->proto.attr.pool.kw = k->i[1];
    c->proto.attr.pool.stride_h = st->i[0];
    c->proto.attr.pool.stride_w = st->i[1];
    c->proto.attr.pool.pad_h = pad->i[0];
    c->proto.attr.pool.pad_w = pad->i[1];
    return true;
}

/* ---- Attributes ---- */

static bool in_range(OpCall *c, const AttrSpec *a, int64_t v, Span at)
{
    const char *op = c->op->name;
    if (v > FUSE_MAX_ELEMENTS || v < -FUSE_MAX_ELEMENTS) {
        build_error(c->b, c->f, at, "attribute '%s' of %s is out of range: %lld", a->name, op,
                    (long long)v);
        return false;
    }
    if (a->range == AR_POSITIVE && v < 1) {
        build_error(c->b, c->f, at, "attribute '%s' of %s must be at least 1, not %lld", a->name,
                    op, (long long)v);
        return false;
    }
    if (a->range == AR_NONNEG && v < 0) {
        build_error(c->b, c->f, at, "attribute '%s' of %s must not be negative, not %lld", a->name,
                    op, (long long)v);
        return false;
    }
    return true;
}

/* One int or a list of them; a single value of a pair kind fills both entries. */
static bool read_ints(OpCall *c, const AttrSpec *a, const Expr *e, AttrVal *av)
{
    bool ok = true;
    const Expr *one = e->kind == EX_LIST ? e->list.items : e;
    for (const Expr *it = one; it && av->n < FUSE_MAX_RANK;
         it = e->kind == EX_LIST ? it->next : NULL) {
        int64_t v = 0;
        bool got = eval_int(c->b, c->f, it, &v) && in_range(c, a, v, it->span);
        ok = ok && got;
        av->at[av->n] = it->span;
        av->i[av->n++] = v;
    }
    if (a->kind == AK_INT2 && av->n == 1) {
        av->at[1] = av->at[0];
        av->i[av->n++] = av->i[0];
    }
    return ok;
}

static bool read_floats(OpCall *c, const Expr *e, AttrVal *av)
{
    bool ok = true;
    const Expr *one = e->kind == EX_LIST ? e->list.items : e;
    for (const Expr *it = one; it && av->n < 2; it = e->kind == EX_LIST ? it->next : NULL) {
        double v = 0;
        ok = eval_float(c->b, c->f, it, &v) && ok;
        av->at[av->n] = it->span;
        av->f[av->n++] = v;
    }
    if (av->n == 1) {
        av->at[1] = av->at[0];
        av->f[av->n++] = av->f[0];
    }
    return ok;
}

static bool read_word(OpCall *c, const AttrSpec *a, const Expr *e, AttrVal *av)
{
    if (e->kind == EX_NAME || e->kind == EX_STRING)
        for (uint32_t i = 0; a->words[i]; i++)
            if (strcmp(a->words[i], e->name) == 0) {
                av->word = i;
                return true;
            }
    build_error(c->b, c->f, e->span, "bad value for attribute '%s' of %s", a->name, c->op->name);
    return false;
}

static bool read_value(OpCall *c, const AttrSpec *a, const Expr *e, AttrVal *av)
{
    switch (a->kind) {
    case AK_INT:
    case AK_INT2:
    case AK_AXES:
    case AK_INTS:
        return read_ints(c, a, e, av);
    case AK_FLOAT:
    case AK_FLOAT2:
        return read_floats(c, e, av);
    case AK_BOOL:
        return eval_bool(c->b, c->f, e, &av->b);
    case AK_ENUM:
        return read_word(c, a, e, av);
    }
    FUSE_UNREACHABLE();
}

static void set_default(OpCall *c, const AttrSpec *a, AttrVal *av)
{
    av->span = c->call->call.callee_span;
    for (uint32_t i = 0; i < FUSE_MAX_RANK; i++)
        av->at[i] = av->span;
    av->i[0] = av->i[1] = a->idef;
    av->f[0] = av->f[1] = a->fdef;
    av->b = a->bdef;
    av->n = a->kind == AK_INT || a->kind == AK_FLOAT ? 1 : a->kind == AK_INT2 ? 2 : 0;
}

static bool read_attrs(OpCall *c)
{
    bool ok = true;
    for (uint32_t i = 0; i < c->op->nattrs; i++) {
        const AttrSpec *a = &c->op->attrs[i];
        AttrVal *av = &c->attrs[i];
        const Arg *arg = c->call->call.args;
        while (arg && !(arg->name && strcmp(arg->name, a->name) == 0))
            arg = arg->next;
        if (!arg) {
            set_default(c, a, av);
            if (a->required) { /* sema reports this; kept for callers that skip it */
                build_error(c->b, c->f, c->call->call.callee_span, "%s needs the attribute '%s'",
                            c->op->name, a->name);
                ok = false;
            }
            continue;
        }
        av->given = true;
        av->span = arg->value->span;
        ok = read_value(c, a, arg->value, av) && ok;
    }
    for (uint32_t i = 0; i < c->op->nattrs; i++)
        if (!c->attrs[i].given && c->op->attrs[i].def_from)
            c->attrs[i] = c->attrs[builtin_attr_index(c->op, c->op->attrs[i].def_from)];
    return ok;
}

/* ---- Weights ---- */

/* The first use of a weight scope: which op and slots it needed. */
typedef struct ScopeUse {
    const char *op;
    const char *slots;
    Span at;
} ScopeUse;

static Shape slot_shape(const OpCall *c, const SlotSpec *s)
{
    switch (s->shape) {
    case SS_CONV_WEIGHT:
        return (Shape){4, {c->out_ch, c->in_ch / c->groups, c->kh, c->kw}};
    case SS_OUT:
        return (Shape){1, {c->out_ch}};
    case SS_CHANNELS:
        return (Shape){1, {c->channels}};
    case SS_LINEAR_WEIGHT:
        return (Shape){2, {c->out_ch, c->in_ch}};
    case SS_MHA_IN_WEIGHT:
        return (Shape){2, {3 * c->embed, c->embed}};
    case SS_MHA_IN_BIAS:
        return (Shape){1, {3 * c->embed}};
    case SS_EMBED_SQUARE:
        return (Shape){2, {c->embed, c->embed}};
    case SS_EMBED:
        return (Shape){1, {c->embed}};
    case SS_ATTR_SHAPE:
        return c->out;
    }
    FUSE_UNREACHABLE();
}

static bool slot_on(const OpCall *c, const SlotSpec *s)
{
    return !s->only_if || attr(c, s->only_if)->b;
}

static void sb_truncate(StrBuf *sb, size_t len)
{
    if (sb->data && len <= sb->len) {
        sb->len = len;
        sb->data[len] = '\0';
    }
}

/* The key of the op's scope: --prefix, the block-call scopes, the op's @scope. */
static bool scope_key(OpCall *c, StrBuf *key)
{
    if (!c->call->call.scope) { /* sema reports this */
        build_error(c->b, c->f, c->call->call.callee_span, "%s needs a scope", c->op->name);
        return false;
    }
    const char *prefix = c->b->cx->prefix;
    if (prefix && *prefix) {
        sb_append(key, prefix);
        if (prefix[strlen(prefix) - 1] != '.')
            sb_append(key, ".");
    }
    if (*c->f->scope) {
        sb_append(key, c->f->scope);
        sb_append(key, ".");
    }
    return build_scope_text(c->b, c->f, c->call->call.scope, key);
}

/* A scope used again must need the same slots (then their shapes are compared one by one). */
static bool check_scope_use(OpCall *c, const char *key, const char *slots)
{
    Builder *b = c->b;
    ScopeUse *u = strmap_get(&b->scopes, key);
    if (!u) {
        u = ARENA_NEW(b->g->arena, ScopeUse);
        *u = (ScopeUse){c->op->name, arena_strdup(b->g->arena, slots), c->call->span};
        strmap_put(&b->scopes, arena_strdup(b->g->arena, key), u);
        return true;
    }
    if (strcmp(u->slots, slots) == 0)
        return true;
    build_error(b, c->f, c->call->span,
                "scope '%s' is used again with other weights: %s here needs %s, but %s at its "
                "first use needed %s",
                key, c->op->name, slots, u->op, u->slots);
    build_note(b, u->at, "'%s' is first used here", key);
    return false;
}

static Node *add_slot(OpCall *c, const char *key, const SlotSpec *s)
{
    Builder *b = c->b;
    Shape want = slot_shape(c, s);
    if (!build_check_size(b, c->f, &want, c->call->span))
        return NULL;
    Node *p = strmap_get(&b->params, key);
    if (p && !shape_equal(&p->shape, &want)) {
        build_error(b, c->f, c->call->span,
                    "weight '%s' must be %s here, but its first use made it %s (a scope used "
                    "twice shares its weights)",
                    key, type_text(&want).s, type_text(&p->shape).s);
        build_note(b, p->span, "'%s' is first used here", key);
        return NULL;
    }
    if (p)
        return p;
    if (b->g->nparams >= BUILD_MAX_PARAMS && !b->aborted) {
        build_error(b, c->f, c->call->span, "graph too large: more than %d weights",
                    BUILD_MAX_PARAMS);
        b->aborted = true;
    }
    if (b->aborted || b->g->nnodes >= BUILD_MAX_NODES)
        return build_node(b, c->f, OP_PARAM, NULL, 0, &want, c->call->span); /* reports */
    p = graph_add_param(b->g, key, &want, s->init, c->call->span);
    strmap_put(&b->params, p->attr.param.key, p);
    return p;
}

/* Appends the op's weights to in[] (after its arguments). Returns false after reporting. */
static bool add_weights(OpCall *c, Node **in, uint32_t *n)
{
    StrBuf key = {0}, slots = {0};
    bool ok = scope_key(c, &key);
    size_t base = key.len;
    for (uint32_t i = 0; i < c->op->nslots; i++)
        if (slot_on(c, &c->op->slots[i]))
            sb_printf(&slots, "%s%s", slots.len ? ", " : "",
                      *c->op->slots[i].name ? c->op->slots[i].name : "the scope itself");
    ok = ok && check_scope_use(c, sb_str(&key), sb_str(&slots));
    for (uint32_t i = 0; ok && i < c->op->nslots; i++) {
        const SlotSpec *s = &c->op->slots[i];
        if (!slot_on(c, s))
            continue;
        sb_truncate(&key, base);
        if (*s->name)
            sb_printf(&key, ".%s", s->name);
        Node *p = add_slot(c, sb_str(&key), s);
        ok = p != NULL;
        in[(*n)++] = p;
    }
    sb_free(&key);
    sb_free(&slots);
    return ok;
}

/* ---- Calls ---- */

static bool eval_call_args(OpCall *c, Node **in)
{
    bool ok = true;
    for (const Arg *a = c->call->call.args; a; a = a->next) {
        if (a->name)
            continue;
        Val v = eval_expr(c->b, c->f, a->value);
        Node *x = v.kind == V_ERROR ? NULL : val_to_node(c->b, c->f, v, a->value->span);
        ok = ok && x;
        c->arg_exprs[c->nargs] = a->value;
        in[c->nargs++] = x;
    }
    return ok;
}

static Val make_node(OpCall *c, Node **in)
{
    Builder *b = c->b;
    uint32_t n = c->nargs;
    if (!c->op->rule(c) || !build_check_size(b, c->f, &c->out, c->call->span))
        return (Val){.kind = V_ERROR};
    if (c->op->nslots && !add_weights(c, in, &n))
        return (Val){.kind = V_ERROR};
    if (c->op->kind == OP_PARAM) /* param(): the weight itself */
        return (Val){.kind = V_TENSOR, .node = in[0]};
    Node *node = build_node(b, c->f, c->op->kind, in, n, &c->out, c->call->span);
    if (!node)
        return (Val){.kind = V_ERROR};
    node->attr = c->proto.attr;
    return (Val){.kind = V_TENSOR, .node = node};
}

Val build_op_call(Builder *b, Frame *f, const Expr *call, const SrcOp *op)
{
    uint32_t npos = 0;
    for (const Arg *a = call->call.args; a; a = a->next)
        npos += !a->name;
    if (npos < op->min_args || npos > op->max_args) { /* sema reports this */
        build_error(b, f, call->call.callee_span, "%s does not take %u tensor arguments", op->name,
                    npos);
        return (Val){.kind = V_ERROR};
    }
    OpCall c = {.b = b, .f = f, .op = op, .call = call};
    Node **in = xcalloc(npos + OP_MAX_SLOTS, sizeof(Node *));
    c.args = in;
    c.arg_exprs = xcalloc(npos ? npos : 1, sizeof(Expr *));
    bool ok = eval_call_args(&c, in);
    ok = read_attrs(&c) && ok;
    Val v = ok ? make_node(&c, in) : (Val){.kind = V_ERROR};
    free(in);
    free(c.arg_exprs);
    return v;
}
