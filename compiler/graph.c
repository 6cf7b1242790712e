/*
 * graph: construction, text dump, verifier and cost model of the graph IR (see graph.h).
 */
#include "graph.h"

#include <inttypes.h>
#include <string.h>

#include "arena.h"
#include "util.h"

const OpInfo op_info[OP_COUNT] = {
#define OP(name, text, min, max, cls) {text, min, max, cls},
#include "ops.def"
#undef OP
};

_Static_assert(OP_COUNT == 38, "ops.def changed: update graph goldens, interp and cost model");

int64_t shape_numel(const Shape *s)
{
    int64_t n = 1;
    for (uint32_t i = 0; i < s->rank; i++)
        n *= s->dim[i];
    return n;
}

bool shape_equal(const Shape *a, const Shape *b)
{
    if (a->rank != b->rank)
        return false;
    for (uint32_t i = 0; i < a->rank; i++)
        if (a->dim[i] != b->dim[i])
            return false;
    return true;
}

char *shape_format(const Shape *s, char *buf, size_t size)
{
    size_t at = 0;
    at += (size_t)snprintf(buf, size, "[");
    for (uint32_t i = 0; i < s->rank && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%" PRId64, i ? "," : "", s->dim[i]);
    if (at < size)
        snprintf(buf + at, size - at, "]");
    return buf;
}

void matmul_batch_shapes(const Shape *a, const Shape *b, Shape *batch_a, Shape *batch_b,
                         Shape *batch)
{
    *batch_a = (Shape){.rank = a->rank >= 2 ? a->rank - 2 : 0};
    *batch_b = (Shape){.rank = b->rank >= 2 ? b->rank - 2 : 0};
    memcpy(batch_a->dim, a->dim, batch_a->rank * sizeof(int64_t));
    memcpy(batch_b->dim, b->dim, batch_b->rank * sizeof(int64_t));
    *batch = (Shape){.rank = batch_a->rank > batch_b->rank ? batch_a->rank : batch_b->rank};
    for (uint32_t d = 0; d < batch->rank; d++) {
        uint32_t from_a = batch->rank - batch_a->rank, from_b = batch->rank - batch_b->rank;
        int64_t da = d >= from_a ? batch_a->dim[d - from_a] : 1;
        int64_t db = d >= from_b ? batch_b->dim[d - from_b] : 1;
        FUSE_ASSERT(da == db || da == 1 || db == 1);
        batch->dim[d] = da == 1 ? db : da;
    }
}

Graph *graph_new(Arena *arena, const char *name)
{
    Graph *g = ARENA_NEW(arena, Graph);
    g->arena = arena;
    g->name = arena_strdup(arena, name);
    return g;
}

static void push_node(Graph *g, Node *n)
{
    if (g->nnodes == g->cap) {
        uint32_t cap = g->cap ? g->cap * 2 : 64;
        Node **nodes = ARENA_ARRAY(g->arena, Node *, cap);
        if (g->nnodes)
            memcpy(nodes, g->nodes, g->nnodes * sizeof(Node *));
        g->nodes = nodes;
        g->cap = cap;
    }
    n->id = g->nnodes;
    g->nodes[g->nnodes++] = n;
}

/* Makes room for one more element in an arena array of pointers, doubling its capacity. */
static void **reserve_ptr(Arena *a, void **arr, uint32_t n, uint32_t *cap)
{
    if (n < *cap)
        return arr;
    uint32_t grown = *cap ? *cap * 2 : 8;
    void **fresh = ARENA_ARRAY(a, void *, grown);
    if (n)
        memcpy(fresh, arr, n * sizeof(void *));
    *cap = grown;
    return fresh;
}

Node *graph_add_node(Graph *g, OpKind kind, Node *const *inputs, uint32_t ninputs,
                     const Shape *shape, Span span)
{
    FUSE_ASSERT(kind < OP_COUNT);
    FUSE_ASSERT(shape->rank <= FUSE_MAX_RANK);
    Node *n = ARENA_NEW(g->arena, Node);
    n->kind = kind;
    n->shape = *shape;
    n->span = span;
    n->ninputs = ninputs;
    n->inputs = ARENA_ARRAY(g->arena, Node *, ninputs ? ninputs : 1);
    for (uint32_t i = 0; i < ninputs; i++) {
        FUSE_ASSERT(inputs[i] && inputs[i]->id < g->nnodes && g->nodes[inputs[i]->id] == inputs[i]);
        n->inputs[i] = inputs[i];
    }
    push_node(g, n);
    return n;
}

Node *graph_add_input(Graph *g, const char *name, const Shape *shape, Span span)
{
    Node *n = graph_add_node(g, OP_INPUT, NULL, 0, shape, span);
    n->attr.input.index = g->ninputs;
    n->attr.input.name = arena_strdup(g->arena, name);
    g->inputs = (Node **)reserve_ptr(g->arena, (void **)g->inputs, g->ninputs, &g->cap_inputs);
    g->inputs[g->ninputs++] = n;
    return n;
}

static uint64_t hash_key(const char *key)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *c = (const unsigned char *)key; *c; c++)
        h = (h ^ *c) * 1099511628211ULL;
    return h;
}

/* The slot where key is, or the empty slot where it would go. */
static Node **param_slot(const Graph *g, const char *key)
{
    uint32_t mask = g->param_slot_count - 1;
    for (uint32_t i = (uint32_t)hash_key(key) & mask;; i = (i + 1) & mask) {
        Node **slot = &g->param_slots[i];
        if (!*slot || strcmp((*slot)->attr.param.key, key) == 0)
            return slot;
    }
}

/* Keeps the index at most half full, so probes stay short. */
static void grow_param_index(Graph *g)
{
    if (2 * (g->nparams + 1) <= g->param_slot_count)
        return;
    g->param_slot_count = g->param_slot_count ? g->param_slot_count * 2 : 64;
    g->param_slots = ARENA_ARRAY(g->arena, Node *, g->param_slot_count);
    for (uint32_t i = 0; i < g->nparams; i++)
        *param_slot(g, g->params[i]->attr.param.key) = g->params[i];
}

Node *graph_find_param(const Graph *g, const char *key)
{
    return g->param_slot_count ? *param_slot(g, key) : NULL;
}

Node *graph_add_param(Graph *g, const char *key, const Shape *shape, ParamInit init, Span span)
{
    Node *n = graph_find_param(g, key);
    if (n)
        return n;
    n = graph_add_node(g, OP_PARAM, NULL, 0, shape, span);
    n->attr.param.index = g->nparams;
    n->attr.param.key = arena_strdup(g->arena, key);
    n->attr.param.init = init;
    g->params = (Node **)reserve_ptr(g->arena, (void **)g->params, g->nparams, &g->cap_params);
    grow_param_index(g);
    g->params[g->nparams++] = n;
    *param_slot(g, n->attr.param.key) = n;
    return n;
}

Node *graph_add_scalar(Graph *g, float value, Span span)
{
    Shape s = {0};
    Node *n = graph_add_node(g, OP_SCALAR, NULL, 0, &s, span);
    n->attr.scalar.value = value;
    return n;
}

void graph_add_output(Graph *g, const char *name, Node *value)
{
    uint32_t cap = g->cap_outputs;
    g->outputs = (Node **)reserve_ptr(g->arena, (void **)g->outputs, g->noutputs, &cap);
    if (cap != g->cap_outputs) {
        const char **names = ARENA_ARRAY(g->arena, const char *, cap);
        for (uint32_t i = 0; i < g->noutputs; i++)
            names[i] = g->output_names[i];
        g->output_names = names;
        g->cap_outputs = cap;
    }
    g->outputs[g->noutputs] = value;
    g->output_names[g->noutputs] = arena_strdup(g->arena, name);
    g->noutputs++;
}

uint32_t graph_count_op(const Graph *g, OpKind kind)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < g->nnodes; i++)
        n += g->nodes[i]->kind == kind;
    return n;
}

bool contraction_reads_concat_in_place(const Node *n)
{
    const Node *cat = n->inputs[0];
    if (cat->kind != OP_CONCAT || cat->ninputs > FUSE_MAX_CONCAT_READ)
        return false;
    if (n->kind == OP_LINEAR) /* never the dot form, which wants whole rows of x */
        return cat->attr.concat.axis == cat->shape.rank - 1 &&
               n->shape.dim[n->shape.rank - 1] >= FUSE_MAX_LANES;
    return contraction_packs_input(n) && cat->attr.concat.axis == 1 &&
           n->shape.dim[2] * n->shape.dim[3] > 1;
}

bool contraction_packs_input(const Node *n)
{
    return n->kind == OP_CONV2D && n->attr.conv.kh == 1 && n->attr.conv.kw == 1 &&
           n->attr.conv.stride_h == 1 && n->attr.conv.stride_w == 1 && n->attr.conv.pad_h == 0 &&
           n->attr.conv.pad_w == 0 && n->attr.conv.groups == 1;
}

static const char *bool_text(bool b)
{
    return b ? "true" : "false";
}

static void dump_pair(FILE *out, const char *name, int64_t a, int64_t b)
{
    fprintf(out, " %s=[%" PRId64 ",%" PRId64 "]", name, a, b);
}

static void dump_axes(FILE *out, const bool *axes, uint32_t rank)
{
    fprintf(out, " axes=[");
    const char *sep = "";
    for (uint32_t i = 0; i < rank; i++)
        if (axes[i]) {
            fprintf(out, "%s%u", sep, i);
            sep = ",";
        }
    fprintf(out, "]");
}

static void dump_attrs(const Node *n, FILE *out)
{
    switch (n->kind) {
    case OP_INPUT:
        fprintf(out, " %s", n->attr.input.name);
        break;
    case OP_PARAM:
        fprintf(out, " \"%s\"", n->attr.param.key);
        break;
    case OP_SCALAR:
        fprintf(out, " %.9g", (double)n->attr.scalar.value);
        break;
    case OP_UPSAMPLE:
        fprintf(out, " mode=%s", n->attr.upsample.bilinear ? "bilinear" : "nearest");
        if (n->attr.upsample.bilinear)
            fprintf(out, " align_corners=%s", bool_text(n->attr.upsample.align_corners));
        if (n->attr.upsample.from_scale)
            fprintf(out, " scale=[%.9g,%.9g]", (double)n->attr.upsample.scale_h,
                    (double)n->attr.upsample.scale_w);
        fprintf(out, " ratio=[%.9g,%.9g]", (double)n->attr.upsample.ratio_h,
                (double)n->attr.upsample.ratio_w);
        break;
    case OP_CONCAT:
        fprintf(out, " axis=%u", n->attr.concat.axis);
        break;
    case OP_CONV2D:
        fprintf(out, " out=%" PRId64, n->attr.conv.out);
        dump_pair(out, "kernel", n->attr.conv.kh, n->attr.conv.kw);
        dump_pair(out, "stride", n->attr.conv.stride_h, n->attr.conv.stride_w);
        dump_pair(out, "padding", n->attr.conv.pad_h, n->attr.conv.pad_w);
        dump_pair(out, "dilation", n->attr.conv.dil_h, n->attr.conv.dil_w);
        fprintf(out, " groups=%" PRId64 " bias=%s", n->attr.conv.groups,
                bool_text(n->attr.conv.bias));
        break;
    case OP_BATCHNORM:
    case OP_LAYERNORM:
        fprintf(out, " eps=%.9g", (double)n->attr.norm.eps);
        break;
    case OP_LINEAR:
        fprintf(out, " out=%" PRId64 " bias=%s", n->attr.linear.out,
                bool_text(n->attr.linear.bias));
        break;
    case OP_MHA:
        fprintf(out, " heads=%" PRId64 " bias=%s", n->attr.mha.heads, bool_text(n->attr.mha.bias));
        break;
    case OP_GELU:
        fprintf(out, " approximate=%s", n->attr.gelu.tanh ? "tanh" : "none");
        break;
    case OP_MEAN:
    case OP_SUM:
    case OP_AMAX:
    case OP_AMIN:
        dump_axes(out, n->attr.reduce.axes, n->inputs[0]->shape.rank);
        fprintf(out, " keepdim=%s", bool_text(n->attr.reduce.keepdim));
        break;
    case OP_SOFTMAX:
        fprintf(out, " axis=%u", n->attr.softmax.axis);
        break;
    case OP_PERMUTE:
        fprintf(out, " perm=[");
        for (uint32_t i = 0; i < n->shape.rank; i++)
            fprintf(out, "%s%u", i ? "," : "", n->attr.permute.perm[i]);
        fprintf(out, "]");
        break;
    case OP_AVGPOOL2D:
    case OP_MAXPOOL2D:
        dump_pair(out, "kernel", n->attr.pool.kh, n->attr.pool.kw);
        dump_pair(out, "stride", n->attr.pool.stride_h, n->attr.pool.stride_w);
        dump_pair(out, "padding", n->attr.pool.pad_h, n->attr.pool.pad_w);
        break;
    case OP_SLICE:
        fprintf(out, " axis=%u start=%" PRId64 " length=%" PRId64, n->attr.slice.axis,
                n->attr.slice.start, n->attr.slice.length);
        break;
    case OP_ATTENTION:
        fprintf(out, " scale=%.9g k_transposed=%s", (double)n->attr.attention.scale,
                bool_text(n->attr.attention.k_transposed));
        break;
    default:
        break;
    }
}

void graph_dump(const Graph *g, FILE *out)
{
    char buf[SHAPE_TEXT_MAX];
    fprintf(out, "graph %s\n", g->name);
    for (uint32_t i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        fprintf(out, "  %%%u = %s", n->id, op_info[n->kind].name);
        if (n->ninputs) {
            fprintf(out, "(");
            for (uint32_t j = 0; j < n->ninputs; j++)
                fprintf(out, "%s%%%u", j ? ", " : "", n->inputs[j]->id);
            fprintf(out, ")");
        }
        dump_attrs(n, out);
        fprintf(out, " : f32%s\n", shape_format(&n->shape, buf, sizeof buf));
    }
    for (uint32_t i = 0; i < g->noutputs; i++)
        fprintf(out, "  return %s = %%%u\n", g->output_names[i], g->outputs[i]->id);
}

void graph_dump_attrs(const Node *n, FILE *out)
{
    dump_attrs(n, out);
}

/* True if `in` broadcasts to exactly `out` along with some other operand: trailing axes
 * aligned, each of in's dims 1 or out's. */
static bool broadcasts_to(const Shape *in, const Shape *out)
{
    if (in->rank > out->rank)
        return false;
    for (uint32_t d = 0; d < in->rank; d++) {
        int64_t have = in->dim[d], want = out->dim[out->rank - in->rank + d];
        if (have != want && have != 1)
            return false;
    }
    return true;
}

/* Output size of a conv2d window along one axis (shape.c's rule). */
static int64_t window_out(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil)
{
    return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

/* The shape rule of the ops whose rule is local (graph.h). Returns NULL or what is wrong. */
static const char *check_shape(const Node *n)
{
    const Shape *s = &n->shape;
    const Shape *x = n->ninputs ? &n->inputs[0]->shape : NULL;
    switch (op_info[n->kind].cls) {
    case OPC_UNARY:
        return shape_equal(s, x) ? NULL : "shape differs from its input's";
    case OPC_BINARY: {
        const Shape *y = &n->inputs[1]->shape;
        if (!broadcasts_to(x, s) || !broadcasts_to(y, s))
            return "an input does not broadcast to the result";
        for (uint32_t d = 0; d < s->rank; d++) {
            int64_t a = d + x->rank >= s->rank ? x->dim[d + x->rank - s->rank] : 1;
            int64_t b = d + y->rank >= s->rank ? y->dim[d + y->rank - s->rank] : 1;
            if (s->dim[d] != (a == 1 ? b : a))
                return "result is not the broadcast of its inputs";
        }
        return NULL;
    }
    default:
        break;
    }
    switch (n->kind) {
    case OP_VIEW:
        return shape_numel(s) == shape_numel(x) ? NULL : "view changes the element count";
    case OP_PERMUTE: {
        bool seen[FUSE_MAX_RANK] = {false};
        if (s->rank != x->rank)
            return "permute changes the rank";
        for (uint32_t d = 0; d < s->rank; d++) {
            uint32_t p = n->attr.permute.perm[d];
            if (p >= s->rank || seen[p] || s->dim[d] != x->dim[p])
                return "perm is not a permutation of the input's axes";
            seen[p] = true;
        }
        return NULL;
    }
    case OP_SLICE: {
        uint32_t a = n->attr.slice.axis;
        if (s->rank != x->rank || a >= s->rank || n->attr.slice.start < 0 ||
            n->attr.slice.length != s->dim[a] || n->attr.slice.start + s->dim[a] > x->dim[a])
            return "slice is out of its input's bounds";
        for (uint32_t d = 0; d < s->rank; d++)
            if (d != a && s->dim[d] != x->dim[d])
                return "slice changes an axis other than its own";
        return NULL;
    }
    case OP_CONCAT: {
        uint32_t a = n->attr.concat.axis;
        int64_t total = 0;
        if (a >= s->rank)
            return "concat axis out of range";
        for (uint32_t k = 0; k < n->ninputs; k++) {
            const Shape *in = &n->inputs[k]->shape;
            if (in->rank != s->rank)
                return "concat input of another rank";
            for (uint32_t d = 0; d < s->rank; d++)
                if (d != a && in->dim[d] != s->dim[d])
                    return "concat inputs differ off the axis";
            total += in->dim[a];
        }
        return total == s->dim[a] ? NULL : "concat size is not the sum of its inputs'";
    }
    case OP_UPSAMPLE:
        return s->rank == 4 && x->rank == 4 && s->dim[0] == x->dim[0] && s->dim[1] == x->dim[1]
                   ? NULL
                   : "upsample must keep N and C of a 4-d input";
    case OP_CONV2D: {
        const Shape *w = &n->inputs[1]->shape;
        int64_t g = n->attr.conv.groups;
        if (x->rank != 4 || w->rank != 4 || s->rank != 4 || g < 1)
            return "conv2d needs 4-d input, weight and result";
        if (w->dim[0] != n->attr.conv.out || s->dim[1] != w->dim[0] || w->dim[0] % g != 0 ||
            w->dim[1] * g != x->dim[1] || w->dim[2] != n->attr.conv.kh ||
            w->dim[3] != n->attr.conv.kw || s->dim[0] != x->dim[0])
            return "conv2d weight does not match its input and attributes";
        if (s->dim[2] != window_out(x->dim[2], n->attr.conv.kh, n->attr.conv.stride_h,
                                    n->attr.conv.pad_h, n->attr.conv.dil_h) ||
            s->dim[3] != window_out(x->dim[3], n->attr.conv.kw, n->attr.conv.stride_w,
                                    n->attr.conv.pad_w, n->attr.conv.dil_w))
            return "conv2d result size does not follow its window";
        if ((n->ninputs == 3) != n->attr.conv.bias ||
            (n->ninputs == 3 &&
             (n->inputs[2]->shape.rank != 1 || n->inputs[2]->shape.dim[0] != n->attr.conv.out)))
            return "conv2d bias does not match";
        return NULL;
    }
    case OP_LINEAR: {
        const Shape *w = &n->inputs[1]->shape;
        if (x->rank < 1 || w->rank != 2 || s->rank != x->rank || w->dim[0] != n->attr.linear.out ||
            w->dim[1] != x->dim[x->rank - 1] || s->dim[s->rank - 1] != w->dim[0])
            return "linear weight does not match its input and attributes";
        for (uint32_t d = 0; d + 1 < s->rank; d++)
            if (s->dim[d] != x->dim[d])
                return "linear changes an axis other than the last";
        if ((n->ninputs == 3) != n->attr.linear.bias ||
            (n->ninputs == 3 &&
             (n->inputs[2]->shape.rank != 1 || n->inputs[2]->shape.dim[0] != n->attr.linear.out)))
            return "linear bias does not match";
        return NULL;
    }
    case OP_ATTENTION: {
        const Shape *k = &n->inputs[1]->shape, *v = &n->inputs[2]->shape;
        uint32_t r = s->rank;
        if (r < 2 || x->rank != r || k->rank != r || v->rank != r)
            return "attention needs q, k, v and result of one rank >= 2";
        for (uint32_t d = 0; d + 2 < r; d++)
            if (x->dim[d] != s->dim[d] || k->dim[d] != s->dim[d] || v->dim[d] != s->dim[d])
                return "attention operands differ in their batch axes";
        bool kt = n->attr.attention.k_transposed;
        int64_t kd = k->dim[kt ? r - 2 : r - 1], ks = k->dim[kt ? r - 1 : r - 2];
        if (kd != x->dim[r - 1] || ks != v->dim[r - 2] || s->dim[r - 2] != x->dim[r - 2] ||
            s->dim[r - 1] != v->dim[r - 1])
            return "attention q, k, v and result do not match";
        return NULL;
    }
    case OP_BATCHNORM:
        if (s->rank < 2 || !shape_equal(s, x))
            return "batchnorm needs [N, C, ...] and keeps it";
        for (uint32_t k = 1; k < 5; k++)
            if (n->inputs[k]->shape.rank != 1 || n->inputs[k]->shape.dim[0] != s->dim[1])
                return "batchnorm parameter is not [C]";
        return NULL;
    default:
        return NULL;
    }
}

bool graph_verify(const Graph *g, FILE *out)
{
    for (uint32_t i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        const OpInfo *info = &op_info[n->kind];
        if (n->id != i) {
            fprintf(out, "graph_verify: node %%%u stored at index %u\n", n->id, i);
            return false;
        }
        if (n->ninputs < info->min_inputs || n->ninputs > info->max_inputs) {
            fprintf(out, "graph_verify: %%%u (%s) has %u inputs\n", i, info->name, n->ninputs);
            return false;
        }
        for (uint32_t j = 0; j < n->ninputs; j++)
            if (!n->inputs[j] || n->inputs[j]->id >= i ||
                g->nodes[n->inputs[j]->id] != n->inputs[j]) {
                fprintf(out, "graph_verify: %%%u input %u is not an earlier node\n", i, j);
                return false;
            }
        if (n->shape.rank > FUSE_MAX_RANK) {
            fprintf(out, "graph_verify: %%%u has rank %u\n", i, n->shape.rank);
            return false;
        }
        for (uint32_t d = 0; d < n->shape.rank; d++)
            if (n->shape.dim[d] < 1) {
                fprintf(out, "graph_verify: %%%u has dim %u = %lld\n", i, d,
                        (long long)n->shape.dim[d]);
                return false;
            }
        if (shape_numel(&n->shape) > FUSE_MAX_ELEMENTS) {
            fprintf(out, "graph_verify: %%%u has more than 2^40 elements\n", i);
            return false;
        }
        const char *why = check_shape(n);
        if (why) {
            fprintf(out, "graph_verify: %%%u (%s): %s\n", i, info->name, why);
            return false;
        }
    }
    for (uint32_t i = 0; i < g->ninputs; i++)
        if (g->inputs[i]->kind != OP_INPUT || g->inputs[i]->attr.input.index != i) {
            fprintf(out, "graph_verify: input %u is not an OP_INPUT with that index\n", i);
            return false;
        }
    for (uint32_t i = 0; i < g->nparams; i++)
        if (g->params[i]->kind != OP_PARAM || g->params[i]->attr.param.index != i) {
            fprintf(out, "graph_verify: param %u is not an OP_PARAM with that index\n", i);
            return false;
        }
    for (uint32_t i = 0; i < g->noutputs; i++)
        if (!g->outputs[i] || g->nodes[g->outputs[i]->id] != g->outputs[i]) {
            fprintf(out, "graph_verify: output %u is not a node of the graph\n", i);
            return false;
        }
    return true;
}

/* FLOPs of one node as written (LANGUAGE.md §5): 2 per multiply-add, 1 per bias add, 2 per
 * BatchNorm element, 1 per element for relu/add/mul/scale, 4 per sigmoid element, 7 per
 * bilinear output element, 1 per reduced input element, 5 per softmax element. Ops the
 * contract does not name are counted by the same yardstick (a transcendental as 4). */
static double node_flops(const Node *n)
{
    double out = (double)shape_numel(&n->shape);
    double in0 = n->ninputs ? (double)shape_numel(&n->inputs[0]->shape) : 0;
    switch (n->kind) {
    case OP_UPSAMPLE:
        return n->attr.upsample.bilinear ? 7 * out : 0;
    case OP_CONV2D: {
        double per_out = (double)(n->inputs[0]->shape.dim[1] / n->attr.conv.groups) *
                         (double)(n->attr.conv.kh * n->attr.conv.kw);
        return out * (2 * per_out + (n->attr.conv.bias ? 1 : 0));
    }
    case OP_LINEAR: {
        const Shape *x = &n->inputs[0]->shape;
        double k = (double)x->dim[x->rank - 1];
        return out * (2 * k + (n->attr.linear.bias ? 1 : 0));
    }
    case OP_MATMUL: {
        const Shape *a = &n->inputs[0]->shape;
        double k = (double)a->dim[a->rank - 1];
        return out * 2 * k;
    }
    case OP_MHA: {
        const Shape *q = &n->inputs[0]->shape, *k = &n->inputs[1]->shape;
        double nb = (double)q->dim[0], l = (double)q->dim[1], s = (double)k->dim[1];
        double e = (double)q->dim[2];
        double proj = 2 * e * e * nb * (l + 2 * s) + 2 * e * e * nb * l;
        double scores = 2 * nb * l * s * e * 2; /* q k^T and p v, over all heads */
        double softmax = 5 * nb * l * s * (double)n->attr.mha.heads;
        return proj + scores + softmax;
    }
    case OP_ATTENTION: { /* q k^T, p v and the softmax, per batch */
        const Shape *q = &n->inputs[0]->shape, *v = &n->inputs[2]->shape;
        double l = (double)q->dim[q->rank - 2], d = (double)q->dim[q->rank - 1];
        double sl = (double)v->dim[v->rank - 2], dv = (double)v->dim[v->rank - 1];
        double nb = out / (l * dv);
        return nb * l * sl * (2 * d + 2 * dv + 5);
    }
    case OP_BATCHNORM:
        return 2 * out;
    case OP_LAYERNORM:
        return 5 * out;
    case OP_RELU:
    case OP_ABS:
    case OP_NEG:
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_DIV:
    case OP_MIN:
    case OP_MAX:
        return out;
    case OP_SIGMOID:
    case OP_TANH:
    case OP_EXP:
    case OP_SQRT:
    case OP_RSQRT:
        return 4 * out;
    case OP_SILU:
        return 5 * out;
    case OP_GELU:
        return 8 * out;
    case OP_MEAN:
    case OP_SUM:
    case OP_AMAX:
    case OP_AMIN:
        return in0;
    case OP_SOFTMAX:
        return 5 * out;
    case OP_AVGPOOL2D:
    case OP_MAXPOOL2D:
        return out * (double)(n->attr.pool.kh * n->attr.pool.kw);
    default:
        return 0;
    }
}

double graph_flops(const Graph *g)
{
    double total = 0;
    for (uint32_t i = 0; i < g->nnodes; i++)
        total += node_flops(g->nodes[i]);
    return total;
}

double graph_bytes(const Graph *g)
{
    double total = 0;
    for (uint32_t i = 0; i < g->ninputs; i++)
        total += 4.0 * (double)shape_numel(&g->inputs[i]->shape);
    for (uint32_t i = 0; i < g->nparams; i++)
        total += 4.0 * (double)shape_numel(&g->params[i]->shape);
    for (uint32_t i = 0; i < g->noutputs; i++)
        total += 4.0 * (double)shape_numel(&g->outputs[i]->shape);
    return total;
}
