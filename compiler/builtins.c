/*
 * builtins: the catalogue of source ops (see builtins.h). Adding an op means adding its row
 * here, its shape rule in shape.c, and (if it needs a new graph op) a line in ops.def.
 */
#include "builtins.h"

#include <stdio.h>
#include <string.h>

#include "shape.h"
#include "util.h"

/* ---- Attribute lists ---- */

static const char *const upsample_modes[] = {"nearest", "bilinear", NULL};
static const char *const gelu_modes[] = {"none", "tanh", NULL};

static const AttrSpec upsample_attrs[] = {
    {.name = "size", .kind = AK_INT2, .range = AR_POSITIVE, .one_of = 1},
    {.name = "scale", .kind = AK_FLOAT2, .one_of = 1},
    {.name = "mode", .kind = AK_ENUM, .words = upsample_modes},
    {.name = "align_corners", .kind = AK_BOOL, .only_attr = "mode", .only_word = "bilinear"},
};

static const AttrSpec concat_attrs[] = {
    {.name = "axis", .kind = AK_INT, .required = true},
};

static const AttrSpec conv2d_attrs[] = {
    {.name = "out", .kind = AK_INT, .required = true, .range = AR_POSITIVE},
    {.name = "kernel", .kind = AK_INT2, .required = true, .range = AR_POSITIVE},
    {.name = "stride", .kind = AK_INT2, .range = AR_POSITIVE, .idef = 1},
    {.name = "padding", .kind = AK_INT2, .range = AR_NONNEG, .idef = 0},
    {.name = "dilation", .kind = AK_INT2, .range = AR_POSITIVE, .idef = 1},
    {.name = "groups", .kind = AK_INT, .range = AR_POSITIVE, .idef = 1},
    {.name = "bias", .kind = AK_BOOL, .bdef = true},
};

static const AttrSpec norm_attrs[] = {
    {.name = "eps", .kind = AK_FLOAT, .fdef = 1e-5},
};

static const AttrSpec linear_attrs[] = {
    {.name = "out", .kind = AK_INT, .required = true, .range = AR_POSITIVE},
    {.name = "bias", .kind = AK_BOOL, .bdef = true},
};

static const AttrSpec mha_attrs[] = {
    {.name = "heads", .kind = AK_INT, .required = true, .range = AR_POSITIVE},
    {.name = "bias", .kind = AK_BOOL, .bdef = true},
};

static const AttrSpec param_attrs[] = {
    {.name = "shape", .kind = AK_INTS, .required = true, .range = AR_POSITIVE},
};

static const AttrSpec gelu_attrs[] = {
    {.name = "approximate", .kind = AK_ENUM, .words = gelu_modes},
};

static const AttrSpec reduce_attrs[] = {
    {.name = "axes", .kind = AK_AXES, .required = true},
    {.name = "keepdim", .kind = AK_BOOL, .bdef = false},
};

static const AttrSpec softmax_attrs[] = {
    {.name = "axis", .kind = AK_INT, .required = true},
};

static const AttrSpec permute_attrs[] = {
    {.name = "perm", .kind = AK_INTS, .required = true},
};

static const AttrSpec view_attrs[] = {
    {.name = "shape", .kind = AK_INTS, .required = true}, /* entries >= 1, or one -1 */
};

static const AttrSpec flatten_attrs[] = {
    {.name = "start", .kind = AK_INT, .idef = 0},
    {.name = "end", .kind = AK_INT, .idef = -1},
};

static const AttrSpec transpose_attrs[] = {
    {.name = "dims", .kind = AK_INTS, .required = true, .len = 2},
};

static const AttrSpec pool_attrs[] = {
    {.name = "kernel", .kind = AK_INT2, .required = true, .range = AR_POSITIVE},
    {.name = "stride", .kind = AK_INT2, .range = AR_POSITIVE, .def_from = "kernel"},
    {.name = "padding", .kind = AK_INT2, .range = AR_NONNEG, .idef = 0},
};

/* ---- Weight slots, in the order the graph op takes them (ops.def) ---- */

static const SlotSpec conv2d_slots[] = {
    {"weight", SS_CONV_WEIGHT, INIT_FAN_IN, NULL},
    {"bias", SS_OUT, INIT_FAN_IN, "bias"},
};

static const SlotSpec batchnorm_slots[] = {
    {"weight", SS_CHANNELS, INIT_NEAR_ONE, NULL},
    {"bias", SS_CHANNELS, INIT_SMALL, NULL},
    {"running_mean", SS_CHANNELS, INIT_SMALL, NULL},
    {"running_var", SS_CHANNELS, INIT_POSITIVE, NULL},
};

static const SlotSpec linear_slots[] = {
    {"weight", SS_LINEAR_WEIGHT, INIT_FAN_IN, NULL},
    {"bias", SS_OUT, INIT_FAN_IN, "bias"},
};

static const SlotSpec layernorm_slots[] = {
    {"weight", SS_CHANNELS, INIT_NEAR_ONE, NULL},
    {"bias", SS_CHANNELS, INIT_SMALL, NULL},
};

static const SlotSpec mha_slots[] = {
    {"in_proj_weight", SS_MHA_IN_WEIGHT, INIT_FAN_IN, NULL},
    {"in_proj_bias", SS_MHA_IN_BIAS, INIT_SMALL, "bias"},
    {"out_proj.weight", SS_EMBED_SQUARE, INIT_FAN_IN, NULL},
    {"out_proj.bias", SS_EMBED, INIT_SMALL, "bias"},
};

static const SlotSpec param_slots[] = {
    {"", SS_ATTR_SHAPE, INIT_FAN_IN, NULL},
};

/* ---- The catalogue ---- */

#define ATTRS(a) a, (uint32_t)countof(a)
#define NO_ATTRS NULL, 0
#define SLOTS(s) s, (uint32_t)countof(s)
#define NO_SLOTS NULL, 0
#define UNARY(name, kind)                                                                          \
    {                                                                                              \
        name, kind, 1, 1, NO_ATTRS, NO_SLOTS, shape_unary                                          \
    }
#define REDUCE(name, kind)                                                                         \
    {                                                                                              \
        name, kind, 1, 1, ATTRS(reduce_attrs), NO_SLOTS, shape_reduce                              \
    }

static const SrcOp ops[] = {
    /* name       graph op     args (min, max)   attributes  weights  rule */
    {"upsample", OP_UPSAMPLE, 1, 1, ATTRS(upsample_attrs), NO_SLOTS, shape_upsample},
    {"concat", OP_CONCAT, 1, ARGS_VARIADIC, ATTRS(concat_attrs), NO_SLOTS, shape_concat},
    {"conv2d", OP_CONV2D, 1, 1, ATTRS(conv2d_attrs), SLOTS(conv2d_slots), shape_conv2d},
    {"batchnorm2d", OP_BATCHNORM, 1, 1, ATTRS(norm_attrs), SLOTS(batchnorm_slots),
     shape_batchnorm2d},
    {"batchnorm1d", OP_BATCHNORM, 1, 1, ATTRS(norm_attrs), SLOTS(batchnorm_slots),
     shape_batchnorm1d},
    {"linear", OP_LINEAR, 1, 1, ATTRS(linear_attrs), SLOTS(linear_slots), shape_linear},
    {"layernorm", OP_LAYERNORM, 1, 1, ATTRS(norm_attrs), SLOTS(layernorm_slots), shape_layernorm},
    {"mha", OP_MHA, 3, 3, ATTRS(mha_attrs), SLOTS(mha_slots), shape_mha},
    {"param", OP_PARAM, 0, 0, ATTRS(param_attrs), SLOTS(param_slots), shape_param},
    UNARY("relu", OP_RELU),
    UNARY("sigmoid", OP_SIGMOID),
    UNARY("tanh", OP_TANH),
    UNARY("exp", OP_EXP),
    UNARY("sqrt", OP_SQRT),
    UNARY("rsqrt", OP_RSQRT),
    UNARY("silu", OP_SILU),
    UNARY("abs", OP_ABS),
    UNARY("neg", OP_NEG),
    {"gelu", OP_GELU, 1, 1, ATTRS(gelu_attrs), NO_SLOTS, shape_gelu},
    {"min", OP_MIN, 2, 2, NO_ATTRS, NO_SLOTS, shape_minmax},
    {"max", OP_MAX, 2, 2, NO_ATTRS, NO_SLOTS, shape_minmax},
    REDUCE("mean", OP_MEAN),
    REDUCE("sum", OP_SUM),
    REDUCE("amax", OP_AMAX),
    REDUCE("amin", OP_AMIN),
    {"softmax", OP_SOFTMAX, 1, 1, ATTRS(softmax_attrs), NO_SLOTS, shape_softmax},
    {"matmul", OP_MATMUL, 2, 2, NO_ATTRS, NO_SLOTS, shape_matmul},
    {"permute", OP_PERMUTE, 1, 1, ATTRS(permute_attrs), NO_SLOTS, shape_permute},
    {"view", OP_VIEW, 1, 1, ATTRS(view_attrs), NO_SLOTS, shape_view},
    {"flatten", OP_VIEW, 1, 1, ATTRS(flatten_attrs), NO_SLOTS, shape_flatten},
    {"transpose", OP_PERMUTE, 1, 1, ATTRS(transpose_attrs), NO_SLOTS, shape_transpose},
    {"avgpool2d", OP_AVGPOOL2D, 1, 1, ATTRS(pool_attrs), NO_SLOTS, shape_pool},
    {"maxpool2d", OP_MAXPOOL2D, 1, 1, ATTRS(pool_attrs), NO_SLOTS, shape_pool},
};

_Static_assert(countof(ops) == 33, "source op added or removed: update LANGUAGE.md §3 and tests");

const SrcOp *builtin_find(const char *name)
{
    for (size_t i = 0; i < countof(ops); i++)
        if (strcmp(ops[i].name, name) == 0)
            return &ops[i];
    return NULL;
}

size_t builtin_names(const char **out, size_t cap)
{
    for (size_t i = 0; i < countof(ops) && i < cap; i++)
        out[i] = ops[i].name;
    return countof(ops);
}

const AttrSpec *builtin_attr(const SrcOp *op, const char *name)
{
    for (uint32_t i = 0; i < op->nattrs; i++)
        if (strcmp(op->attrs[i].name, name) == 0)
            return &op->attrs[i];
    return NULL;
}

uint32_t builtin_attr_index(const SrcOp *op, const char *name)
{
    const AttrSpec *a = builtin_attr(op, name);
    FUSE_ASSERT(a != NULL);
    return (uint32_t)(a - op->attrs);
}

const char *attr_kind_text(AttrKind kind)
{
    switch (kind) {
    case AK_INT:
        return "an int";
    case AK_FLOAT:
        return "a number";
    case AK_BOOL:
        return "true or false";
    case AK_ENUM:
        return "a word";
    case AK_INT2:
        return "an int or a pair [h, w]";
    case AK_FLOAT2:
        return "a number or a pair [h, w]";
    case AK_AXES:
        return "an axis or a list of axes";
    case AK_INTS:
        return "a list of ints";
    }
    FUSE_UNREACHABLE();
}

char *attr_words_text(const AttrSpec *a, char *buf, size_t size)
{
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; a->words && a->words[i] && at < size; i++) {
        const char *sep = i == 0 ? "" : a->words[i + 1] ? ", " : " or ";
        at += (size_t)snprintf(buf + at, size - at, "%s%s", sep, a->words[i]);
    }
    return buf;
}
