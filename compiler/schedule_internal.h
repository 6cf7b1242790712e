/*
 * schedule_internal: what the schedule_*.c files share (not a public header).
 *
 * The plan (schedule_plan.c) groups the live nodes; each group becomes one loop nest that
 * reads the buffers of values stored by earlier groups and stores its own results (contiguous
 * and row-major like the graph's values, or a slice of a concat's buffer). Values inside a
 * group are never stored. Ops the fused engine does not cover are groups of one node lowered by
 * the per-op lowerings below, which also compute everything create-time, in prepare kernels.
 * Files:
 *   schedule.c           driver: buffers, weights and create-time values, groups, outputs
 *   schedule_plan.c      the fusion planner
 *   schedule_fuse.c      a group's expression tree; the fused pointwise lowering
 *   schedule_pw.c        index helpers, the single-op pointwise engine; elementwise, layout,
 *                        concat, upsample
 *   schedule_reduce.c    reductions, softmax, batchnorm, layernorm, pools
 *   schedule_contract.c  the register-blocked GEMM with its epilogue; linear, matmul, 1x1
 *                        conv2d, mha
 *   schedule_conv.c      conv2d (k x k): register tiles over zero-padded input rows
 *   schedule_attention.c softmax(scale * q k^T) v as one streaming kernel (mha's core, and the
 *                        attention pass's op)
 *   schedule_band.c      a channel reduction, small convs over its maps and the pass reading
 *                        them as one kernel over row bands (CBAM's spatial attention)
 * Invariants: every access is in bounds for every shape (ranges are split into vector bodies
 * and scalar tails, never padded); the outermost loop of a run kernel is FOR_PARALLEL over
 * independent iterations (never splitting a reduction: each reduced value is accumulated in
 * one iteration, in a fixed order), so results do not depend on the thread count.
 */
#ifndef FUSE_SCHEDULE_INTERNAL_H
#define FUSE_SCHEDULE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"
#include "graph.h"
#include "loop.h"
#include "schedule.h"

/* ---- the fusion plan (schedule_plan.c) ---- */

/* What a live node is in its group. */
typedef enum PlanRole {
    ROLE_NONE,   /* not computed per call: a source, a view (alias), create-time, or dead */
    ROLE_ROOT,   /* the value the group's loop nest runs over; stored unless only side
                    reductions read it */
    ROLE_INLINE, /* an expression evaluated inside the group's loops; never stored */
    ROLE_ANCHOR, /* a contraction (or the group's only op) whose result the epilogue reads */
    ROLE_SIDE,   /* a reduction of the root accumulated inside the group's loops */
} PlanRole;

typedef enum GroupKind {
    GROUP_POINTWISE, /* a loop nest over the root's shape evaluating an expression tree */
    GROUP_CONTRACT,  /* a contraction, its epilogue on the accumulators, side reductions */
    GROUP_SINGLE,    /* one op lowered on its own (reduction, softmax, norm, pool, concat, ...) */
} GroupKind;

/* How side reductions shape the loops of their group. */
typedef enum SideOrder {
    SIDE_NONE,
    SIDE_TRAILING, /* they reduce the root's axes [side_axis, rank): e.g. global pools */
    SIDE_AXIS,     /* they reduce the root's axis side_axis alone: e.g. a per-pixel channel mean */
} SideOrder;

enum { PLAN_MAX_SIDES = 8 };
enum { PLAN_MAX_EXTRA = 7 }; /* sibling roots besides a pointwise group's root */

typedef struct PlanGroup {
    uint32_t root;  /* node id */
    int32_t anchor; /* node id of the contraction, -1 none */
    GroupKind kind;
    bool store_root; /* false: the root's value is read only by side reductions */
    SideOrder order;
    uint32_t side_axis;
    uint32_t nside;
    uint32_t side[PLAN_MAX_SIDES]; /* node ids of the side reductions, in topological order */
    /* siblings: in a GROUP_POINTWISE, further elementwise values of the root's shape, stored by
     * the same loops (each is evaluated at the same point as the root and shares its operands'
     * loads), node ids descending, all below root; in a GROUP_SINGLE reduction, further
     * reductions of the same input over the same axes, computed in the same pass over it, node
     * ids ascending, all above root */
    uint32_t nextra;
    uint32_t extra[PLAN_MAX_EXTRA];
} PlanGroup;

typedef struct Plan {
    FusionPlan pub; /* what schedule.h shows */
    const Graph *g;
    bool *live;        /* by node id: contributes to an output */
    PlanRole *role;    /* by node id */
    PlanGroup *groups; /* by group, in run order (ascending root id) */
    /* by node id: the concat whose buffer this value is written into, at its slice, instead of
     * a buffer of its own (the concat then copies only its other inputs), or NULL */
    const Node **into;
    /* by node id: a concat its only user, a 1x1 conv or a linear, reads part by part from the
     * parts' buffers (contraction_reads_concat_in_place); it has no group and no buffer */
    bool *read_in_place;
    /* by node id: the root of a pointwise group whose only user is a 1x1 conv's input
     * (contraction_packs_input): the conv may compute it while packing its column blocks
     * (sched_prologue_deferred), the group then running no kernel of its own */
    bool *packed_by_user;
} Plan;

/* The plan of g in cx->loop_arena (schedule_plan without the public wrapper). */
Plan *sched_plan(Ctx *cx, const Graph *g);

typedef struct Fuse Fuse;

/* The state of one schedule_graph call. */
typedef struct Sched {
    Ctx *cx;
    const Graph *g;
    LoopProgram *p;
    uint32_t vl;                /* vector lanes */
    const LoopBuffer **val;     /* by node id: the buffer holding the node's value, or NULL */
    const LoopBuffer **params;  /* by param index: BUF_PARAM */
    const LoopBuffer **plain;   /* by param index: the prepared copy, or NULL */
    const LoopBuffer **trans;   /* by param index: prepared 2-D transpose, or NULL */
    const LoopBuffer **outputs; /* by output index: BUF_OUTPUT */
    bool *claimed;              /* by output index: a kernel writes it directly */
    /* by node id: the output buffer a group root computes in place over (sched_dest), or NULL */
    const LoopBuffer **in_place;
    LoopKernel *k; /* the kernel being built */
    bool prepare;  /* building a prepare kernel (serial loops) */
    const Plan *plan;
    bool *keep; /* by node id: computed at create time and read per call (a prepared buffer) */
    Fuse *epi;  /* the group's epilogue while its contraction is lowered, else NULL */
} Sched;

/* ---- kernels and buffers (schedule.c) ---- */

/* "what: FILE:LINE: text" for node n: a kernel's comment. */
const char *sched_describe(Sched *s, const Node *n, const char *what);
/* Starts a kernel for node n named "k<id>_<op>[_<part>]" with a comment naming the op and its
 * spec line; sets s->k. part may be NULL. A node computed at create time gets a prepare kernel
 * ("prep_k<id>_<op>"); the anchor of the epilogue being lowered gets its group's name. */
LoopKernel *sched_kernel(Sched *s, const Node *n, const char *part);
/* The buffer holding n's value: a view's is its input's; a weight's is the weight itself in a
 * prepare kernel and its prepared copy in a run kernel; an OP_SCALAR is materialized into a
 * prepared buffer when first asked. */
const LoopBuffer *sched_value(Sched *s, const Node *n);
/* Where node n's kernels write its value: an output buffer it owns, or new scratch; for a node
 * computed at create time a prepared buffer (scratch when only other create-time nodes read
 * it). */
const LoopBuffer *sched_dest(Sched *s, const Node *n);
/* New scratch of `elems` f32 named "<base><id>". */
const LoopBuffer *sched_scratch(Sched *s, const char *base, uint32_t id, int64_t elems);
/* New per-thread scratch (BUF_THREAD) of `elems` f32 named "<base><id>". */
const LoopBuffer *sched_thread(Sched *s, const char *base, uint32_t id, int64_t elems);
/* A new prepared buffer of `elems` f32 and the prepare kernel "prep_<name>" that fills it,
 * made the current kernel (serial loops); sched_prepare_end returns to the kernel that was
 * current. */
typedef struct SchedSave {
    LoopKernel *k;
    bool prepare;
} SchedSave;
const LoopBuffer *sched_prepare_begin(Sched *s, const char *name, const char *comment,
                                      int64_t elems, SchedSave *save);
void sched_prepare_end(Sched *s, const SchedSave *save);
/* The prepared [cols, rows] transpose of the 2-D weight node w ([rows, cols]). */
const LoopBuffer *sched_transposed(Sched *s, const Node *w);
/* e itself when it is a variable or a constant (maybe broadcast), else a new local of the
 * current kernel DECLared in block with e as its value: for values used more than once. */
LoopExpr *sched_local(Sched *s, LoopStmt *block, const char *name, LoopExpr *e);
/* a op b, for the lowering code's arithmetic on loop expressions. */
static inline LoopExpr *bin(Sched *s, LoopOp op, LoopExpr *a, LoopExpr *b)
{
    return lx_binary(s->p, op, a, b);
}
/* v = init DECLared at the end of block; returns v. */
static inline LoopVar *decl(Sched *s, LoopStmt *block, LoopVar *v, LoopExpr *init)
{
    ls_append(s->p, block, ls_decl(s->p, v, init));
    return v;
}
/* A new i64 loop variable / f32 local of the current kernel. */
LoopVar *sched_ivar(Sched *s, const char *name);
LoopVar *sched_fvar(Sched *s, const char *name, uint32_t lanes);

/* ---- index and loop helpers (schedule_pw.c) ---- */

LoopExpr *ix_c(Sched *s, int64_t v);                       /* i64 constant */
LoopExpr *ix_v(Sched *s, const LoopVar *v);                /* variable */
LoopExpr *ix_add(Sched *s, LoopExpr *a, LoopExpr *b);      /* folds constants and zeros */
LoopExpr *ix_addc(Sched *s, LoopExpr *a, int64_t c);       /* a + c */
LoopExpr *ix_mulc(Sched *s, LoopExpr *a, int64_t c);       /* a * c, folds 0 and 1 */
LoopExpr *ix_div(Sched *s, LoopExpr *a, int64_t c);        /* floor a / c (c > 0), folds 1 */
LoopExpr *ix_mod(Sched *s, LoopExpr *a, int64_t c);        /* a mod c (c > 0), folds 1 */
LoopExpr *fx_c(Sched *s, float v, uint32_t lanes);         /* f32 constant, broadcast */
LoopExpr *fx_bcast(Sched *s, LoopExpr *a, uint32_t lanes); /* broadcast unless lanes 1 */
/* A load of `lanes` elements at index; with stride 0 a scalar load broadcast. */
LoopExpr *fx_load(Sched *s, const LoopBuffer *b, LoopExpr *index, uint32_t lanes);

/* Appends `for v in lo..hi step` (serial) to block and returns its body. */
LoopStmt *sched_for(Sched *s, LoopStmt *block, LoopVar *v, LoopExpr *lo, LoopExpr *hi,
                    int64_t step);
/* Appends the kernel's outermost loop over [0, n): FOR_PARALLEL in run kernels. */
LoopStmt *sched_par(Sched *s, LoopVar *v, int64_t n);

/* Emits, into block, code covering [lo, hi) (constants) of an axis: `body` is called for
 * tiles of nv vectors (nv = tile_nv, then 1) and for a scalar tail (lanes 1, nv 1), with the
 * tile's first index. */
typedef void (*SpanBody)(Sched *s, LoopStmt *block, LoopExpr *at, uint32_t lanes, uint32_t nv,
                         const void *ctx);
void sched_span(Sched *s, LoopStmt *block, int64_t lo, int64_t hi, uint32_t tile_nv, SpanBody body,
                const void *ctx, const char *name);

/* ---- the pointwise engine (schedule_pw.c) ---- */

/* One operand of a pointwise kernel: element (i_0..i_{r-1}) of the iteration space is at
 * off + sum_d i_d * st[d]. buf NULL: the constant c. */
typedef struct PwOperand {
    const LoopBuffer *buf;
    float c;
    int64_t off;
    int64_t st[FUSE_MAX_RANK];
} PwOperand;

/* Value of one destination element from the sources' values (lanes wide). */
typedef LoopExpr *(*PwFn)(Sched *s, const void *ctx, LoopExpr *const *args, uint32_t lanes);

typedef struct Pw {
    uint32_t rank;
    int64_t dim[FUSE_MAX_RANK];
    PwOperand dst;
    PwOperand src[2];
    uint32_t nsrc;
    PwFn fn; /* NULL: copy src[0] */
    const void *ctx;
} Pw;

/* Emits a pointwise loop nest into the current kernel: collapses axes, vectorizes the
 * innermost axis when every operand is contiguous or broadcast along it, parallelizes rows. */
void sched_pointwise(Sched *s, Pw *pw);
/* Row-major strides of a shape; broadcast strides of `in` read as `out` (0 on stretched axes). */
void sched_strides(const Shape *s, int64_t *st);
void sched_bcast_strides(const Shape *in, const Shape *out, int64_t *st);
/* Copies `elems` elements from src to dst (a kernel must be open). */
void sched_copy(Sched *s, const LoopBuffer *dst, const LoopBuffer *src, int64_t elems);

/* ---- fused groups (schedule_fuse.c) ---- */

enum { FUSE_MAX_SLOTS = 8 }; /* rows of hoisted values: a contraction's MR rows */

/* A node of a group's expression tree, over the group's iteration space (the root's shape, its
 * axes merged where every operand allows it). */
typedef enum TKind {
    T_CONST,    /* c */
    T_LEAF,     /* a stored value: buf[off + sum_d i_d * st[d]] */
    T_ACC,      /* the anchor contraction's result at the point */
    T_RESAMPLE, /* an upsample of a stored value: plane at off + sum_d i_d * st[d] */
    T_OP,       /* the elementwise op n of the operands in[] */
} TKind;

typedef struct TNode {
    TKind kind;
    const Node *n; /* T_OP: the op; T_LEAF, T_RESAMPLE: the node read */
    uint32_t nin;
    struct TNode *in[5];
    float c;
    const LoopBuffer *buf;
    int64_t off;
    int64_t st[FUSE_MAX_RANK];
    int32_t ax_y, ax_x;   /* T_RESAMPLE: iteration axes of the output row / column, -1: none */
    int64_t y_add, x_add; /* T_RESAMPLE: added to those coordinates (a slice of it) */
    uint32_t refs;        /* uses within the tree: evaluated once into a local when > 1 */
    uint32_t deps;        /* iteration axes the value varies along (bit d) */
    bool on_acc;          /* reads the accumulator (never hoisted) */
    int32_t key_ax[FUSE_MAX_RANK];
    int64_t key_add[FUSE_MAX_RANK];
    uint32_t gen; /* evaluation memo: valid while it equals Fuse.gen */
    LoopExpr *memo;
    const LoopVar *hoisted[FUSE_MAX_SLOTS]; /* computed before the loops that do not change it */
    /* T_RESAMPLE built by fuse_build_rows: its values along the column axis for slot i are in
     * ubuf at ubase[i] + column (ubase[i] NULL: computed at the point) */
    const LoopBuffer *ubuf;
    LoopExpr *ubase[FUSE_MAX_SLOTS];
} TNode;

/* A reduction accumulated in the group's loops. */
typedef struct FuseSide {
    const Node *n;
    const LoopBuffer *buf;
    int64_t st[FUSE_MAX_RANK]; /* output stride per iteration axis; 0 on reduced axes */
    int64_t off;               /* of the first element (a slice of a concat's buffer) */
    LoopOp op;                 /* ADD, MAX, MIN */
    int64_t count;             /* mean: elements per output (the divisor); else 0 */
} FuseSide;

struct Fuse {
    const PlanGroup *grp;
    int32_t inline_group; /* a group whose root and inline members are members too, or -1 */
    const char *name;     /* the group's kernel name */
    const char *comment;  /* its ops and spec line */
    uint32_t rank;
    int64_t dim[FUSE_MAX_RANK];
    bool red[FUSE_MAX_RANK]; /* reduced by the side reductions */
    bool pin[FUSE_MAX_RANK]; /* an upsample's row or column: never merged */
    TNode *root, *acc;
    TNode **nodes; /* creation order: operands before their users */
    uint32_t nnodes, cap;
    const LoopBuffer *dst; /* the root's buffer; NULL when only side reductions read it */
    int64_t dst_st[FUSE_MAX_RANK], dst_off;
    FuseSide side[PLAN_MAX_SIDES];
    uint32_t nside;
    uint32_t gen;
    struct FuseTaps *taps; /* upsample taps computed in the current blocks (schedule_fuse.c) */
    uint32_t ntaps, cap_taps;
    /* the group's sibling roots (PlanGroup.extra), each stored like the root */
    uint32_t nextra;
    TNode *xroot[PLAN_MAX_EXTRA];
    const LoopBuffer *xdst[PLAN_MAX_EXTRA];
    int64_t xdst_st[PLAN_MAX_EXTRA][FUSE_MAX_RANK], xdst_off[PLAN_MAX_EXTRA];
};

/* A point of the iteration space: per axis the coordinate of the first lane (NULL: an axis the
 * value does not depend on, e.g. a reduced one), `lanes` consecutive points along lane_axis. */
typedef struct FusePoint {
    LoopExpr *at[FUSE_MAX_RANK];
    uint32_t lane_axis, lanes;
    LoopExpr *acc; /* T_ACC's value (lanes), or NULL */
    uint32_t slot; /* which hoisted values are in scope */
} FusePoint;

/* The buffer of the concat that node n is written into (made on first use), with the
 * concat's strides in st (n has its rank) and the offset of n's slice. */
const LoopBuffer *sched_slice_of(Sched *s, const Node *n, int64_t *st, int64_t *off);
/* When group gi starts a band (a per-pixel channel reduction, convs over its maps and the
 * full-size pass reading them: schedule_band.c), lowers its groups as one kernel and returns
 * how many; else 0. */
uint32_t sched_band(Sched *s, uint32_t gi);
/* Lowers group gi of the plan (any kind) into run kernels. */
void sched_group(Sched *s, uint32_t gi);
/* The fused expression of group gi over its root's shape (buffers of its root and side
 * reductions made). */
Fuse *fuse_new(Sched *s, uint32_t gi);
/* fuse_new, the root and inline members of group inline_group (>= 0) evaluated in the tree
 * instead of read from their buffers; buffers false: no buffer for the root or the side
 * reductions (the caller stores them). */
Fuse *fuse_new_with(Sched *s, uint32_t gi, int32_t inline_group, bool buffers);
/* A GROUP_SINGLE reduction gi and its siblings as the side reductions of their input (the
 * tree: that input read), without buffers. */
Fuse *fuse_new_reductions(Sched *s, uint32_t gi);
/* Whether f only stores the anchor's result as it is (no epilogue, no side reduction). */
bool fuse_trivial(const Fuse *f);
/* Merges axis d into axis d-1 when every operand allows it; returns whether it did. */
bool fuse_merge(Fuse *f, uint32_t d);
/* Recomputes which axes each tree node depends on (after merging). */
void fuse_deps(Fuse *f);
/* DECLs into block, for slot pt->slot, every value that depends only on the axes in `fixed`. */
void fuse_hoist(Sched *s, Fuse *f, uint32_t fixed, const FusePoint *pt, LoopStmt *block);
void fuse_unhoist(Fuse *f);
/* Computes, into per-thread scratch (block inside the parallel loop), every upsample of f
 * along column axis x_axis at the points rows[0..n) (every axis set but x_axis) for columns
 * [0, width); fuse_value then loads them. An x2 bilinear upsample (align_corners false) takes
 * its taps by shuffles of one vector load per input row instead of gathers. fuse_unbuild
 * forgets them when the loops that read them are done. */
void fuse_build_rows(Sched *s, Fuse *f, const FusePoint *rows, uint32_t n, uint32_t x_axis,
                     int64_t width, LoopStmt *block);
void fuse_unbuild(Fuse *f);
/* The root's value at pt (locals for shared subexpressions go into block). */
LoopExpr *fuse_value(Sched *s, Fuse *f, const FusePoint *pt, LoopStmt *block);
/* Index of the first lane of pt in buffer strides st (NULL coordinates count as 0). */
LoopExpr *fuse_index(Sched *s, const FusePoint *pt, const int64_t *st, int64_t off);
/* A side reduction's identity, its accumulation of v, and its final value from acc. */
LoopExpr *fuse_side_init(Sched *s, const FuseSide *sd, uint32_t lanes);
LoopExpr *fuse_side_add(Sched *s, const FuseSide *sd, LoopExpr *acc, LoopExpr *v);
LoopExpr *fuse_side_finish(Sched *s, const FuseSide *sd, LoopExpr *acc);
/* The value of elementwise node n (unary, binary, batchnorm) from its operands' values, all
 * `lanes` wide (schedule_pw.c). */
LoopExpr *sched_elementwise(Sched *s, const Node *n, LoopExpr *const *args, uint32_t lanes);
/* GELU of x (`lanes` wide), exact or with tanh_form the tanh approximation, without the
 * cancellation of 1 + erf and 1 + tanh for negative x (schedule_gelu.c). */
LoopExpr *sched_gelu(Sched *s, LoopExpr *x, bool tanh_form, uint32_t lanes);

/* ---- lowerings, one per op class ---- */

void sched_unary(Sched *s, const Node *n);
void sched_binary(Sched *s, const Node *n);
void sched_permute(Sched *s, const Node *n);
void sched_slice(Sched *s, const Node *n);
void sched_concat(Sched *s, const Node *n);
void sched_upsample(Sched *s, const Node *n);
void sched_reduce(Sched *s, const Node *n);
/* A GROUP_SINGLE reduction with sibling reductions (PlanGroup.extra): one kernel, one pass. */
void sched_reduce_siblings(Sched *s, const PlanGroup *grp);
void sched_softmax(Sched *s, const Node *n);
/* Softmax of src into dst viewed as [outer, len, inner] along the middle axis. */
void sched_softmax_rows(Sched *s, const LoopBuffer *dst, const LoopBuffer *src, int64_t outer,
                        int64_t len, int64_t inner);
void sched_batchnorm(Sched *s, const Node *n);
void sched_layernorm(Sched *s, const Node *n);
void sched_pool(Sched *s, const Node *n);
void sched_linear(Sched *s, const Node *n);
void sched_matmul(Sched *s, const Node *n);
void sched_conv2d(Sched *s, const Node *n);

/* ---- conv2d (schedule_conv.c, the 1x1 GEMM form in schedule_contract.c) ---- */

/* A conv2d's sizes and buffers (weights as their prepared copies; y NULL: not stored). */
typedef struct Conv {
    int64_t nb, c, h, w, o, cg, og, groups, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw;
    const LoopBuffer *x, *wt, *bias, *y;
    /* nparts > 0: x is NULL and the input is a concat along channels read in place
     * (Plan.read_in_place): part j, part_c[j] channels, in buffer part[j] */
    uint32_t nparts;
    const LoopBuffer *part[FUSE_MAX_CONCAT_READ];
    int64_t part_c[FUSE_MAX_CONCAT_READ];
    /* >= 0: x is NULL and the input is the root of this pointwise group, computed while the
     * column blocks are packed (sched_prologue_deferred) */
    int32_t pro;
} Conv;

/* 1x1, stride 1, no padding: per (image, group), W [og, cg] times X [cg, H*W] (a GEMM). */
void conv_pointwise(Sched *s, const Conv *c);
/* True when group gi is a pointwise group its consumer, a 1x1 conv, computes while packing its
 * column blocks (Plan.packed_by_user, and the conv's GEMM packs them): gi then runs no kernel
 * of its own and its root gets no buffer. */
bool sched_prologue_deferred(const Sched *s, uint32_t gi);
/* The largest power of two <= max dividing m; the register tile (mr rows by nv vectors) of a
 * contraction with m rows for the schedule's vector width (schedule_contract.c). */
uint32_t pick_mr(int64_t m, uint32_t max);
void pick_tile(const Sched *s, int64_t m, uint32_t *mr, uint32_t *nv);
enum { MAX_MR = 8, MAX_NV = 4 }; /* the largest register tile pick_tile returns */
void sched_mha(Sched *s, const Node *n);
/* Conv n (one input channel, stride 1 along the rows) one output row at a time, for kernels
 * built elsewhere (schedule_band.c): its tile, packed weights and thread scratch, its input
 * read from `ring`, the last `rows` input rows of the image (row iy at (iy % rows) * width);
 * conv_band_row emits output row y of image img into block, through the epilogue s->epi. */
typedef struct ConvTile ConvTile;
ConvTile *conv_band_new(Sched *s, const Node *n, const LoopBuffer *ring, int64_t rows);
void conv_band_row(Sched *s, ConvTile *t, LoopStmt *block, LoopExpr *img, LoopExpr *y);

/* ---- attention (schedule_attention.c) ---- */

/* softmax(scale * Q K^T) V per batch and head, Q [L, hd], K [S, hd], V [S, dv]: element (row
 * r, column t) of batch b, head h of Q, V or the output at b * st[0] + h * st[1] + r * st[2] +
 * t; of K at b * kst[0] + h * kst[1] + r * kst[2] + t * kst[3]. */
typedef struct Attention {
    const LoopBuffer *q, *k, *v, *out;
    int64_t nb, heads, l, s, hd, dv;
    int64_t qst[3], kst[4], vst[3], ost[3];
    float scale;
} Attention;

/* The keys packed per head (one or two kernels), then the streaming (flash) kernel. */
void sched_attention(Sched *s, const Node *n, const Attention *a);
/* OP_ATTENTION, through sched_attention. */
void sched_sdpa(Sched *s, const Node *n);

#endif
