/*
 * loop: the loop IR, shared by both code generators (emit_c.c, emit_llvm.c), as Halide's C and
 * LLVM code generators share one IR. schedule.c lowers a Graph into a LoopProgram.
 *
 * Meaning:
 * - A LoopProgram owns typed, explicitly sized buffers (LoopBuffer) and two lists of kernels:
 *   `prepare` kernels run once when an instance is created (weight folding, splitting, packing:
 *   they read BUF_PARAM and write BUF_PREPARED, with BUF_SCRATCH for temporaries), `run`
 *   kernels run on every call, in order.
 * - Scratch buffers share one arena: a buffer's bytes [offset, offset + 4 * elems) are its own
 *   only from the first kernel that touches it to the last (prepare kernels first, then run
 *   kernels), so two buffers whose lifetimes do not meet may overlap (loop_plan_memory).
 * - A kernel is a statement tree: FOR loops (serial, parallel or unrolled), DECL/ASSIGN of
 *   mutable local variables (vector accumulators held across a reduction loop are DECLs outside
 *   the loop, ASSIGNed inside it), STORE to buffers, IF, PREFETCH and BLOCK.
 * - Expressions are typed: f32, i64 or bool, each with a lane count (1 = scalar; 4, 8 or 16 =
 *   a vector). A vector LOAD/STORE of n lanes touches n consecutive elements starting at its
 *   i64 index (no alignment assumed unless the buffer and index say so: see LoopBuffer.align).
 *   Arithmetic between vectors is lane-wise; BROADCAST makes a vector from a scalar.
 * - Indices are element offsets (not bytes) into a buffer, computed in i64. Every access must be
 *   inside the buffer: loop_verify cannot prove it, so the generators offer a bounds-checked mode
 *   and the tests run generated kernels under AddressSanitizer.
 * - Float semantics are IEEE f32 without reassociation: a generator must not reorder arithmetic
 *   (no -ffast-math). FMA is a fused multiply-add (one rounding). MAX/MIN propagate NaN like
 *   torch.maximum/minimum. EXP, TANH, SIGMOID are within 2 ulp of the correctly rounded
 *   result (the generators emit polynomial approximations).
 * - A FOR_PARALLEL loop may only appear at the top level of a kernel's body (not nested in
 *   another loop); its iterations are split into static contiguous chunks over the thread pool,
 *   so results never depend on the thread count. Its body may use BUF_THREAD buffers: scratch
 *   private to the executing thread.
 * All nodes live in the program's arena.
 */
#ifndef FUSE_LOOP_H
#define FUSE_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "source.h"

typedef struct Arena Arena;
typedef struct LoopExpr LoopExpr;
typedef struct LoopStmt LoopStmt;

typedef enum LoopScalar { LT_F32, LT_I64, LT_BOOL } LoopScalar;

typedef struct LoopType {
    LoopScalar scalar;
    uint32_t lanes; /* 1, 4, 8 or 16 */
} LoopType;

typedef enum LoopBufferKind {
    BUF_INPUT,    /* a graph input (read-only), index = input position */
    BUF_OUTPUT,   /* a graph output, index = output position */
    BUF_PARAM,    /* a weight as the user gave it (read-only; prepare kernels only) */
    BUF_PREPARED, /* a weight as prepared at create time (read-only in run kernels) */
    BUF_SCRATCH,  /* per-instance working memory shared by the run kernels, at `offset` */
    BUF_THREAD,   /* per-thread working memory, used inside a FOR_PARALLEL body */
} LoopBufferKind;

typedef struct LoopBuffer {
    uint32_t id;      /* index in LoopProgram.buffers */
    const char *name; /* a C identifier, from the spec where possible (e.g. "h", "conv_w") */
    LoopBufferKind kind;
    uint32_t index;  /* position among the program's inputs / outputs / params */
    int64_t elems;   /* f32 elements */
    uint32_t align;  /* guaranteed alignment of element 0 in bytes (4 or 64) */
    int64_t offset;  /* BUF_SCRATCH / BUF_THREAD: byte offset in its arena */
    const char *key; /* BUF_PARAM: the safetensors key; else NULL */
    uint32_t rank;   /* logical shape (inputs, outputs and params: exactly the graph's) */
    int64_t shape[8];
} LoopBuffer;

typedef struct LoopVar {
    uint32_t id;
    const char *name; /* unique within its kernel */
    LoopType type;
} LoopVar;

typedef enum LoopExprKind {
    LEXPR_CONST_F,   /* f: an f32 constant (lanes 1; BROADCAST it for vectors) */
    LEXPR_CONST_I,   /* i: an i64 constant */
    LEXPR_VAR,       /* var: a loop variable or a DECLared local */
    LEXPR_LOAD,      /* load: type.lanes consecutive f32 from buf at index */
    LEXPR_UNARY,     /* op, a */
    LEXPR_BINARY,    /* op, a, b: same type */
    LEXPR_FMA,       /* a * b + c with one rounding, all f32 of the same lanes */
    LEXPR_SELECT,    /* cond ? a : b, lane-wise; cond is bool with the same lanes */
    LEXPR_CMP,       /* cmp of a and b -> bool */
    LEXPR_BROADCAST, /* a (lanes 1) repeated to type.lanes */
    LEXPR_CAST,      /* a converted to type.scalar: i64->f32 rounds to nearest; f32->i64
                        truncates toward zero (callers floor first when needed) */
    LEXPR_REDUCE,    /* op (ADD, MAX, MIN) across the lanes of a -> lanes 1 */
    LEXPR_IOTA,      /* i64 x type.lanes (> 1): 0, 1, ..., lanes-1 */
    LEXPR_GATHER,    /* load: type.lanes f32, lane l from buf at lane l of index (i64 x lanes) */
    LEXPR_SHUFFLE,   /* op.a permuted: lane l is lane op.sel[l] of a (f32 vector, same type) */
} LoopExprKind;

typedef enum LoopOp {
    /* binary: f32 and i64 */
    LOP_ADD,
    LOP_SUB,
    LOP_MUL,
    LOP_MIN, /* f32: NaN-propagating */
    LOP_MAX, /* f32: NaN-propagating */
    /* binary: f32 only */
    LOP_DIV,
    LOP_LDEXP, /* a * 2^b, b integral in [-252, 254] (else some value, never undefined); exact
                  unless the product is subnormal or overflows, where it rounds once */
    /* binary: i64 only (Python floor semantics, divisor > 0) */
    LOP_FLOORDIV,
    LOP_MOD,
    /* binary: bool only */
    LOP_AND,
    LOP_OR,
    /* unary: f32 */
    LOP_NEG,
    LOP_ABS,
    LOP_SQRT,
    LOP_FLOOR,
    LOP_EXP,
    LOP_TANH,
    LOP_SIGMOID,
    LOP_COUNT
} LoopOp;

typedef enum LoopCmp { LCMP_EQ, LCMP_NE, LCMP_LT, LCMP_LE, LCMP_GT, LCMP_GE } LoopCmp;

struct LoopExpr {
    LoopExprKind kind;
    LoopType type;
    union {                 /* the valid member is fixed by kind: */
        float f;            /* LEXPR_CONST_F */
        int64_t i;          /* LEXPR_CONST_I */
        const LoopVar *var; /* LEXPR_VAR */
        struct {
            const LoopBuffer *buf;
            LoopExpr *index; /* i64, lanes 1 (LEXPR_GATHER: lanes of the result) */
        } load;              /* LEXPR_LOAD, LEXPR_GATHER */
        struct {
            LoopOp op;
            LoopCmp cmp; /* LEXPR_CMP */
            LoopExpr *a, *b, *c;
            const uint8_t *sel; /* LEXPR_SHUFFLE: type.lanes lane numbers of a */
        } op; /* LEXPR_UNARY, _BINARY, _FMA (a*b+c), _SELECT (a=cond, b, c), _CMP, _BROADCAST,
                 _CAST, _REDUCE, _SHUFFLE (a, sel) */
    };
};

typedef enum LoopForKind {
    FOR_SERIAL,
    FOR_PARALLEL, /* static chunks over the thread pool; top level of a kernel only */
    FOR_UNROLLED, /* constant bounds; the generator may emit it unrolled */
} LoopForKind;

typedef enum LoopStmtKind {
    LOOP_FOR,      /* loop */
    LOOP_STORE,    /* store */
    LOOP_IF,       /* branch */
    LOOP_BLOCK,    /* block */
    LOOP_DECL,     /* decl: a new mutable local with an initial value */
    LOOP_ASSIGN,   /* assign */
    LOOP_PREFETCH, /* prefetch: a hint, no semantics */
} LoopStmtKind;

struct LoopStmt {
    LoopStmtKind kind;
    union {
        struct {
            LoopVar *var;      /* i64 scalar, read-only in the body */
            LoopExpr *lo, *hi; /* var = lo, lo+step, ... while var < hi */
            int64_t step;
            LoopForKind for_kind;
            LoopStmt *body;
        } loop;
        struct {
            const LoopBuffer *buf;
            LoopExpr *index; /* i64 scalar */
            LoopExpr *value; /* f32, lanes consecutive elements */
            /* A hint, no semantics: the stored lines are not read again while they could
             * still be cached, so a generator may write them around the caches (a streaming
             * store) where the address allows. Vector stores only. */
            bool streaming;
        } store;
        struct {
            LoopExpr *cond;                  /* bool scalar */
            LoopStmt *then_body, *else_body; /* else may be NULL */
        } branch;
        struct {
            LoopStmt **stmts;
            uint32_t n, cap;
        } block;
        struct {
            LoopVar *var;
            LoopExpr *init;
        } decl;
        struct {
            const LoopVar *var;
            LoopExpr *value;
        } assign;
        struct {
            const LoopBuffer *buf;
            LoopExpr *index;
            int locality; /* 0..3 as __builtin_prefetch */
        } prefetch;
    };
};

typedef struct LoopKernel {
    const char *name;    /* a C identifier */
    const char *comment; /* what it computes, with the spec lines it implements */
    LoopStmt *body;      /* a LOOP_BLOCK */
    uint32_t nvars;      /* LoopVar ids are 0..nvars-1 within the kernel */
} LoopKernel;

typedef struct LoopProgram {
    Arena *arena;     /* borrowed: where everything lives */
    const char *name; /* the graph's name: the generated API's prefix */
    LoopBuffer **buffers;
    uint32_t nbuffers, cap_buffers;
    LoopKernel **prepare; /* run once at create time */
    uint32_t nprepare, cap_prepare;
    LoopKernel **kernels; /* run on every call, in order */
    uint32_t nkernels, cap_kernels;
    int64_t scratch_bytes;        /* BUF_SCRATCH arena size */
    int64_t thread_scratch_bytes; /* BUF_THREAD arena size per thread */
    int64_t prepared_bytes;       /* all BUF_PREPARED buffers */
    uint32_t vector_lanes;        /* the widest vector the schedule uses (4, 8 or 16) */
    double flops, bytes;          /* of the graph as written (graph_flops, graph_bytes) */
    const char *origin;           /* "FILE, graph NAME, dims N=1 H=512 ..." for comments */
} LoopProgram;

LoopProgram *loop_program_new(Arena *arena, const char *name);
/* Adds a buffer; BUF_SCRATCH and BUF_THREAD buffers get 64-byte aligned offsets of their own
 * (loop_plan_memory may later let buffers with disjoint lifetimes share bytes). */
LoopBuffer *loop_add_buffer(LoopProgram *p, const char *name, LoopBufferKind kind, uint32_t index,
                            int64_t elems);
LoopKernel *loop_add_kernel(LoopProgram *p, const char *name, const char *comment, bool prepare);

/* Builders. Types are checked by loop_verify, not here. */
LoopVar *loop_var(LoopProgram *p, LoopKernel *k, const char *name, LoopType type);
LoopExpr *lx_const_f(LoopProgram *p, float f);
LoopExpr *lx_const_i(LoopProgram *p, int64_t i);
LoopExpr *lx_var(LoopProgram *p, const LoopVar *v);
LoopExpr *lx_load(LoopProgram *p, const LoopBuffer *b, LoopExpr *index, uint32_t lanes);
LoopExpr *lx_unary(LoopProgram *p, LoopOp op, LoopExpr *a);
LoopExpr *lx_binary(LoopProgram *p, LoopOp op, LoopExpr *a, LoopExpr *b);
LoopExpr *lx_fma(LoopProgram *p, LoopExpr *a, LoopExpr *b, LoopExpr *c);
LoopExpr *lx_select(LoopProgram *p, LoopExpr *cond, LoopExpr *a, LoopExpr *b);
LoopExpr *lx_cmp(LoopProgram *p, LoopCmp cmp, LoopExpr *a, LoopExpr *b);
LoopExpr *lx_broadcast(LoopProgram *p, LoopExpr *a, uint32_t lanes);
LoopExpr *lx_cast(LoopProgram *p, LoopExpr *a, LoopScalar to);
LoopExpr *lx_reduce(LoopProgram *p, LoopOp op, LoopExpr *a);
LoopExpr *lx_iota(LoopProgram *p, uint32_t lanes);
LoopExpr *lx_gather(LoopProgram *p, const LoopBuffer *b, LoopExpr *index);
/* sel (a->type.lanes entries, each < lanes) is copied. */
LoopExpr *lx_shuffle(LoopProgram *p, LoopExpr *a, const uint8_t *sel);

LoopStmt *ls_block(LoopProgram *p);
void ls_append(LoopProgram *p, LoopStmt *block, LoopStmt *s);
LoopStmt *ls_for(LoopProgram *p, LoopVar *var, LoopExpr *lo, LoopExpr *hi, int64_t step,
                 LoopForKind kind, LoopStmt *body);
LoopStmt *ls_store(LoopProgram *p, const LoopBuffer *b, LoopExpr *index, LoopExpr *value);
/* The same store, marked streaming. */
LoopStmt *ls_store_streaming(LoopProgram *p, const LoopBuffer *b, LoopExpr *index, LoopExpr *value);
LoopStmt *ls_if(LoopProgram *p, LoopExpr *cond, LoopStmt *then_body, LoopStmt *else_body);
LoopStmt *ls_decl(LoopProgram *p, LoopVar *var, LoopExpr *init);
LoopStmt *ls_assign(LoopProgram *p, const LoopVar *var, LoopExpr *value);
LoopStmt *ls_prefetch(LoopProgram *p, const LoopBuffer *b, LoopExpr *index, int locality);

/* Packs the scratch arena by liveness: each BUF_SCRATCH buffer lives from the first kernel
 * that touches it to the last (prepare kernels, then run kernels, in order), each BUF_THREAD
 * buffer within its kernels; a buffer gets the lowest 64-byte aligned offset that overlaps no
 * buffer live at the same time (largest first). Sets offsets, scratch_bytes and
 * thread_scratch_bytes. Call once every kernel is built. */
void loop_plan_memory(LoopProgram *p);

/* Writes the program as text (--dump=loops); golden tests compare it. */
void loop_dump(const LoopProgram *p, FILE *out);
/* Checks types, variable scoping (a var is used only inside its FOR or after its DECL in an
 * enclosing block), parallel placement, buffer kinds (run kernels never write inputs, params or
 * prepared buffers; prepare kernels write only prepared and scratch buffers) and constant-index
 * bounds.
 * Returns false and prints the first violation: a compiler bug, never a user error. */
bool loop_verify(const LoopProgram *p, FILE *out);

const char *loop_op_name(LoopOp op);

/* What a statement tree touches, for code generators that declare only what a kernel or an
 * outlined parallel body needs. Arrays are owned (loop_uses_free). */
typedef struct LoopUses {
    bool *bufs;         /* by buffer id: loaded, stored or prefetched */
    bool *loaded;       /* by buffer id: loaded or gathered */
    bool *used;         /* by var id: read or assigned */
    bool *defined;      /* by var id: a FOR or DECL inside the tree */
    bool skip_parallel; /* FOR_PARALLEL bodies were not entered */
} LoopUses;

LoopUses loop_uses(const LoopProgram *p, const LoopKernel *k, const LoopStmt *s,
                   bool skip_parallel);
void loop_uses_free(LoopUses *u);

/* Sets vars[v->id] = v for every variable a FOR or DECL in the tree defines (vars has
 * kernel->nvars entries). */
void loop_collect_vars(const LoopStmt *s, const LoopVar **vars);

#endif
