/*
 * schedule_internal: what the schedule_*.c files share (not a public header).
 *
 * The lowering is unfused: every live graph node becomes one or a few run kernels that read
 * their operands' buffers and write the node's own buffer, contiguous and row-major like the
 * graph's values. Files and their op classes:
 *   schedule.c           driver: buffers, weights (prepare kernels), outputs, dispatch
 *   schedule_pw.c        index helpers, the pointwise engine; elementwise, layout, concat,
 *                        upsample
 *   schedule_reduce.c    reductions, softmax, batchnorm, layernorm, pools
 *   schedule_contract.c  the register-blocked GEMM; linear, matmul, conv2d, mha
 * Invariants: every access is in bounds for every shape (ranges are split into vector bodies
 * and scalar tails, never padded); the outermost loop of a run kernel is FOR_PARALLEL over
 * independent iterations (never a reduction), so results do not depend on the thread count.
 */
#ifndef FUSE_SCHEDULE_INTERNAL_H
#define FUSE_SCHEDULE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"
#include "graph.h"
#include "loop.h"

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
    LoopKernel *k;              /* the kernel being built */
    bool prepare;               /* building a prepare kernel (serial loops) */
} Sched;

/* ---- kernels and buffers (schedule.c) ---- */

/* Starts a run kernel for node n named "k<id>_<op>[_<part>]" with a comment naming the op and
 * its spec line; sets s->k. part may be NULL. */
LoopKernel *sched_kernel(Sched *s, const Node *n, const char *part);
/* The buffer holding n's value (materializes an OP_SCALAR into scratch when first asked). */
const LoopBuffer *sched_value(Sched *s, const Node *n);
/* Where node n's kernels write its value: an output buffer it owns, or new scratch. */
const LoopBuffer *sched_dest(Sched *s, const Node *n);
/* New scratch of `elems` f32 named "<base><id>". */
const LoopBuffer *sched_scratch(Sched *s, const char *base, uint32_t id, int64_t elems);
/* The prepared [cols, rows] transpose of the 2-D weight node w ([rows, cols]). */
const LoopBuffer *sched_transposed(Sched *s, const Node *w);
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

/* ---- lowerings, one per op class ---- */

void sched_unary(Sched *s, const Node *n);
void sched_binary(Sched *s, const Node *n);
void sched_permute(Sched *s, const Node *n);
void sched_concat(Sched *s, const Node *n);
void sched_upsample(Sched *s, const Node *n);
void sched_reduce(Sched *s, const Node *n);
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
void sched_mha(Sched *s, const Node *n);

#endif
