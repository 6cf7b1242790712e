/*
 * graph: the graph IR. One Graph per compiled entry point, with every dim concrete.
 *
 * Meaning:
 * - A Graph is an SSA DAG of Nodes kept in topological order: every node's inputs come before it
 *   in g->nodes. Node ids are dense indices into g->nodes.
 * - Every value is an f32 tensor, logically row-major (NCHW for 4-D maps), exactly as PyTorch:
 *   the buffers a graph takes and returns are contiguous in that order. Rank 0 is a scalar.
 * - Weights are OP_PARAM nodes, one per distinct key (a shared scope yields one node used
 *   twice), listed in g->params in order of first use. Ops take their weights as inputs, in the
 *   slot order documented in ops.def.
 * - Binary ops broadcast as NumPy/PyTorch: trailing axes aligned, size-1 axes stretched. A node's
 *   shape is its result's shape; inputs keep their own shapes.
 * - Every axis stored in an attribute is normalized to 0..rank-1.
 * - Numerics are PyTorch 1.13's float32 semantics (LANGUAGE.md §3); the reference interpreter
 *   (interp.c) is the executable definition.
 * Nodes live in the graph arena and carry the span of the .fuse text they came from.
 */
#ifndef FUSE_GRAPH_H
#define FUSE_GRAPH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "source.h"

#define FUSE_MAX_RANK 8
/* A tensor has at most 2^40 elements (LANGUAGE.md §2). */
#define FUSE_MAX_ELEMENTS ((int64_t)1 << 40)

typedef struct Arena Arena;

typedef enum OpKind {
#define OP(name, text, min, max, cls) OP_##name,
#include "ops.def"
#undef OP
    OP_COUNT
} OpKind;

typedef enum OpClass {
    OPC_SOURCE,    /* no computation: inputs, weights, constants */
    OPC_UNARY,     /* elementwise, one input */
    OPC_BINARY,    /* elementwise, two inputs, broadcasting */
    OPC_REDUCE,    /* reduction over attr.reduce axes */
    OPC_CONTRACT,  /* a sum of products over an axis: conv, linear, matmul */
    OPC_NORM,      /* per-channel / per-row affine normalization */
    OPC_RESAMPLE,  /* spatial resampling */
    OPC_LAYOUT,    /* moves elements without arithmetic */
    OPC_CONCAT,    /* joins inputs along an axis */
    OPC_SOFTMAX,   /* normalized exponential along an axis */
    OPC_POOL,      /* windowed spatial reduction */
    OPC_ATTENTION, /* multi-head attention */
} OpClass;

typedef struct OpInfo {
    const char *name;
    uint32_t min_inputs, max_inputs;
    OpClass cls;
} OpInfo;

extern const OpInfo op_info[OP_COUNT];

typedef struct Shape {
    uint32_t rank;
    int64_t dim[FUSE_MAX_RANK];
} Shape;

int64_t shape_numel(const Shape *s);
bool shape_equal(const Shape *a, const Shape *b);
/* Writes "[1,128,512,512]" into buf (always terminated). Returns buf. */
char *shape_format(const Shape *s, char *buf, size_t size);
#define SHAPE_TEXT_MAX (FUSE_MAX_RANK * 22 + 4)

/* How `fusec run`/`bench` fill a weight when no file is given (weights.c). */
typedef enum ParamInit {
    INIT_FAN_IN,   /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = numel / shape[0] */
    INIT_NEAR_ONE, /* U(0.5, 1.5): norm scales */
    INIT_SMALL,    /* U(-0.5, 0.5): norm shifts, running means */
    INIT_POSITIVE, /* U(0.5, 1.5): BatchNorm running_var (must be positive) */
} ParamInit;

typedef struct Node Node;

struct Node {
    OpKind kind;
    uint32_t id; /* index in Graph.nodes */
    Shape shape; /* result shape, concrete */
    Span span;   /* .fuse text this node came from */
    uint32_t ninputs;
    Node **inputs; /* arena array */
    union {        /* the valid member is fixed by kind: */
        struct {
            uint32_t index;   /* position in Graph.inputs */
            const char *name; /* the graph parameter's name */
        } input;              /* OP_INPUT */
        struct {
            uint32_t index;  /* position in Graph.params */
            const char *key; /* full safetensors key, --prefix included */
            ParamInit init;
        } param; /* OP_PARAM */
        struct {
            float value;
        } scalar; /* OP_SCALAR: rank 0 */
        struct {
            bool bilinear;      /* else nearest (PyTorch's legacy "nearest") */
            bool align_corners; /* bilinear only */
            /* Source-per-destination ratio per spatial axis as PyTorch computes it, in f32:
             * in/out for size=, 1/scale for scale=, (in-1)/(out-1) with align_corners. */
            float ratio_h, ratio_w;
            bool from_scale; /* given as scale= (for dumps) */
            float scale_h, scale_w;
        } upsample; /* OP_UPSAMPLE: rank 4, output [N, C, out_h, out_w] from shape */
        struct {
            uint32_t axis;
        } concat; /* OP_CONCAT */
        struct {
            int64_t out, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
            bool bias;
        } conv; /* OP_CONV2D */
        struct {
            float eps;
        } norm; /* OP_BATCHNORM (channel axis 1), OP_LAYERNORM (last axis) */
        struct {
            int64_t out;
            bool bias;
        } linear; /* OP_LINEAR: acts on the last axis */
        struct {
            int64_t heads;
            bool bias;
        } mha; /* OP_MHA */
        struct {
            bool tanh; /* approximate=tanh */
        } gelu;        /* OP_GELU */
        struct {
            bool axes[FUSE_MAX_RANK]; /* reduced axes of the input */
            bool keepdim;
        } reduce; /* OP_MEAN, OP_SUM, OP_AMAX, OP_AMIN */
        struct {
            uint32_t axis;
        } softmax; /* OP_SOFTMAX */
        struct {
            uint32_t perm[FUSE_MAX_RANK]; /* output axis i is input axis perm[i] */
        } permute;                        /* OP_PERMUTE */
        struct {
            int64_t kh, kw, stride_h, stride_w, pad_h, pad_w;
        } pool; /* OP_AVGPOOL2D, OP_MAXPOOL2D */
        struct {
            uint32_t axis;
            int64_t start, length; /* input indices start..start+length-1 along axis */
        } slice;                   /* OP_SLICE (internal: made by the graph passes) */
        struct {
            float scale;       /* multiplies the scores q . k */
            bool k_transposed; /* input 1 is k^T [..., D, S] rather than k [..., S, D] */
        } attention; /* OP_ATTENTION (internal): q [B..., L, D], v [B..., S, Dv], equal batch
                        axes B...; result [B..., L, Dv] = softmax(scale * q k^T, last) v */
    } attr;
};

typedef struct Graph {
    Arena *arena; /* borrowed: where nodes live */
    const char *name;
    Node **nodes; /* topological order; nodes[i]->id == i */
    uint32_t nnodes, cap;
    Node **inputs; /* OP_INPUT nodes in signature order */
    uint32_t ninputs;
    Node **params; /* OP_PARAM nodes in order of first use */
    uint32_t nparams;
    Node **outputs; /* returned values in declared order (may repeat or be inputs) */
    const char **output_names;
    uint32_t noutputs;
    /* Capacities of the arrays above, and an open-addressing index of params by key
     * (param_slots has param_slot_count entries, a power of two, NULL = empty). */
    uint32_t cap_inputs, cap_params, cap_outputs;
    Node **param_slots;
    uint32_t param_slot_count;
} Graph;

Graph *graph_new(Arena *arena, const char *name);

/* Appends a node whose inputs are already in g. Copies `inputs`. The caller sets attr. */
Node *graph_add_node(Graph *g, OpKind kind, Node *const *inputs, uint32_t ninputs,
                     const Shape *shape, Span span);
Node *graph_add_input(Graph *g, const char *name, const Shape *shape, Span span);
/* Returns the existing PARAM node for key if any (the caller checks its shape), else a new one. */
Node *graph_find_param(const Graph *g, const char *key);
Node *graph_add_param(Graph *g, const char *key, const Shape *shape, ParamInit init, Span span);
Node *graph_add_scalar(Graph *g, float value, Span span);
void graph_add_output(Graph *g, const char *name, Node *value);

/* torch.matmul's batch axes for operands of shapes a and b: batch_a and batch_b are the
 * operands' shapes without their last two axes (none for a 1-D operand), batch their
 * broadcast. Requires: the shapes are compatible (build checked them). */
void matmul_batch_shapes(const Shape *a, const Shape *b, Shape *batch_a, Shape *batch_b,
                         Shape *batch);

/* Writes the graph as text (--dump=graph); the format is what the golden tests compare. */
void graph_dump(const Graph *g, FILE *out);

/* A node's attributes as graph_dump prints them (" axis=1", " out=128 kernel=[1,1] ..."). */
void graph_dump_attrs(const Node *n, FILE *out);
/* Checks the IR invariants (topological order, arities, ranks, and the shape rule of the ops
 * whose rule is local: elementwise, layout, concat, slice, upsample, conv2d, linear,
 * batchnorm, attention). Returns false and prints the first violation to `out` if one is broken: a
 * compiler bug, never a user error. */
bool graph_verify(const Graph *g, FILE *out);
uint32_t graph_count_op(const Graph *g, OpKind kind);

/* The most inputs of a concat that a contraction reads in place. */
#define FUSE_MAX_CONCAT_READ 8
/* The widest vector any backend uses, in f32 lanes. */
#define FUSE_MAX_LANES 16
/* True when n is a contraction the schedule runs as one GEMM that reads the parts of the concat
 * it takes (its input 0) where they are (schedule_contract.c): a 1x1 conv (stride 1, no
 * padding, one group, more than one pixel) over a concat along channels, its B by segments of
 * rows; a linear with at least FUSE_MAX_LANES outputs over a concat along the last axis, its A
 * by segments of columns; at most FUSE_MAX_CONCAT_READ parts. Such a concat needs no buffer when
 * n is its only user (split-concat and the planner both ask). */
bool contraction_reads_concat_in_place(const Node *n);
/* True when n is a 1x1 conv (stride 1, no padding, one group) over a 4-D map: a GEMM whose
 * column blocks are image rows of its input, which it can compute while packing them. */
bool contraction_packs_input(const Node *n);

/* Cost of the graph as written (LANGUAGE.md §5 `bench`): FLOPs, and bytes of each input,
 * output and weight once. */
double graph_flops(const Graph *g);
double graph_bytes(const Graph *g);

#endif
