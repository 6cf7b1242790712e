/*
 * emit_llvm: LoopProgram -> LLVM IR module (see emit_llvm.h), with the LLVM 19 C API only
 * (opaque pointers, the *2 builders, *InContext constructors).
 *
 * Shape of a kernel K:
 * - `K(ptr bufs, ptr pool, ptr scratch)` loads the base pointer of every buffer the kernel uses
 *   from bufs[] and calls `K.inner(ptr noalias b..., ptr pool, ptr scratch)` (internal,
 *   alwaysinline): once inlined, the noalias parameters become alias scopes, which is what
 *   emit_c's `restrict` locals say (distinct buffers never overlap).
 * - Mutable locals (DECL/ASSIGN) are allocas in the entry block (mem2reg promotes them); loop
 *   variables are SSA phis. FOR_UNROLLED loops are emitted as plain loops (O3 unrolls them).
 * - A FOR_PARALLEL loop becomes a context struct (alloca: the used buffers, scratch, lo and
 *   every outer variable the body reads), the task `K.parN(ctx, begin, end, thread)` that loads
 *   it and calls `K.parN.inner(ptr noalias b..., ptr scratch, i64 lo, vars..., i64 begin, i64
 *   end, i32 thread)`, and a call of fuse_rt_parallel_for over the iteration count.
 *   BUF_THREAD buffers sit at scratch + scratch_bytes + thread * thread_scratch_bytes + offset.
 * - Loops of more than MAX_UNROLL_TRIPS iterations carry llvm.loop.unroll.disable (see there);
 *   FUSEC_JIT_UNROLL_ALL=1 in the environment leaves every loop to O3's unroller (measured on
 *   the seed block: about 20 ms more compile time, about 8 % less run time).
 * Float contract: no fast-math flags anywhere; FMA is llvm.fma; loads and stores are align 4.
 * Bools are i1 (vectors <N x i1>).
 */
#include "emit_llvm.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/DebugInfo.h> /* LLVMTemporaryMDNode: the self-reference of loop IDs */
#include <llvm-c/Error.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "util.h"

/* The attribute index of the function itself (LLVM spells it -1). */
#define FN_INDEX ((LLVMAttributeIndex)LLVMAttributeFunctionIndex)

_Static_assert(sizeof(size_t) == 8 && sizeof(void *) == 8, "the JIT assumes a 64-bit target");

/* The function being built. */
typedef struct Fn {
    LLVMValueRef fn;
    LLVMBasicBlockRef entry; /* allocas only; branches to the code at the end */
    LLVMValueRef *bufs;      /* by buffer id: the base pointer (NULL: unused here) */
    LLVMValueRef *vars;      /* by var id: an SSA value, or an alloca when slot[id] */
    bool *slot;
    LLVMValueRef pool, scratch, thread; /* thread: i32, NULL outside a parallel body */
    bool streamed;                      /* has streaming stores: ends with a store fence */
} Fn;

/* The emitter's state for one module. */
typedef struct Emit {
    const LoopProgram *p;
    const LoopKernel *k;
    LLVMContextRef cx;
    LLVMModuleRef m;
    LLVMBuilderRef b;        /* the code */
    LLVMBuilderRef alloca_b; /* the entry block's allocas */
    LLVMTypeRef f32, i32, i64, i1, ptr, void_t;
    Fn *fn;
    uint32_t npar;
    char kname[512];       /* the current kernel's symbol */
    const LoopVar **kvars; /* by var id, the current kernel's variables */
    bool x86;              /* the target is x86-64 (sfence orders streaming stores) */
    PtrMap emitted;        /* expression -> index in done: see emit_c.c emit_expr */
    LLVMValueRef *done;
    uint32_t ndone, done_cap;
} Emit;

/* ---- types and constants ---- */

static LLVMTypeRef vec(LLVMTypeRef t, uint32_t lanes)
{
    return lanes == 1 ? t : LLVMVectorType(t, lanes);
}

static LLVMTypeRef ltype(Emit *E, LoopType t)
{
    LLVMTypeRef s = t.scalar == LT_F32 ? E->f32 : t.scalar == LT_I64 ? E->i64 : E->i1;
    return vec(s, t.lanes);
}

static LLVMValueRef splat_const(LLVMValueRef c, uint32_t lanes)
{
    if (lanes == 1)
        return c;
    LLVMValueRef v[16];
    FUSE_ASSERT(lanes <= 16);
    for (uint32_t i = 0; i < lanes; i++)
        v[i] = c;
    return LLVMConstVector(v, lanes);
}

static LLVMValueRef cf(Emit *E, float f, uint32_t lanes)
{
    return splat_const(LLVMConstReal(E->f32, (double)f), lanes);
}

static LLVMValueRef ci32(Emit *E, int32_t v, uint32_t lanes)
{
    return splat_const(LLVMConstInt(E->i32, (unsigned long long)(int64_t)v, 1), lanes);
}

static LLVMValueRef ci64(Emit *E, int64_t v)
{
    return LLVMConstInt(E->i64, (unsigned long long)v, 1);
}

/* A vector of `lanes` copies of the scalar value s. */
static LLVMValueRef splat(Emit *E, LLVMValueRef s, uint32_t lanes)
{
    if (lanes == 1)
        return s;
    LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(s), lanes);
    LLVMValueRef one =
        LLVMBuildInsertElement(E->b, LLVMGetPoison(vt), s, LLVMConstInt(E->i32, 0, 0), "");
    return LLVMBuildShuffleVector(E->b, one, LLVMGetPoison(vt),
                                  LLVMConstNull(LLVMVectorType(E->i32, lanes)), "");
}

/* A call of the overloaded intrinsic `name` on type t. */
static LLVMValueRef intrinsic(Emit *E, const char *name, LLVMTypeRef t, LLVMValueRef *args,
                              unsigned nargs)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    FUSE_ASSERT(id != 0);
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(E->m, id, &t, 1);
    LLVMTypeRef fty = LLVMIntrinsicGetType(E->cx, id, &t, 1);
    return LLVMBuildCall2(E->b, fty, fn, args, nargs, "");
}

static LLVMValueRef fma3(Emit *E, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
    LLVMValueRef args[3] = {a, b, c};
    return intrinsic(E, "llvm.fma", LLVMTypeOf(a), args, 3);
}

/* ---- the math expansions: emit_c.c's, operation for operation ---- */

static LLVMValueRef fsel(Emit *E, LLVMValueRef m, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(E->b, m, a, b, "");
}

static LLVMValueRef fabs1(Emit *E, LLVMValueRef x)
{
    return intrinsic(E, "llvm.fabs", LLVMTypeOf(x), &x, 1);
}

static LLVMValueRef as_int(Emit *E, LLVMValueRef x, uint32_t n)
{
    return LLVMBuildBitCast(E->b, x, vec(E->i32, n), "");
}

static LLVMValueRef as_float(Emit *E, LLVMValueRef x, uint32_t n)
{
    return LLVMBuildBitCast(E->b, x, vec(E->f32, n), "");
}

/* |mag| with the sign of sgn, as emit_c's vcopysign: bits(mag) | (bits(sgn) & 0x80000000). */
static LLVMValueRef copysign1(Emit *E, uint32_t n, LLVMValueRef mag, LLVMValueRef sgn)
{
    LLVMValueRef s = LLVMBuildAnd(E->b, as_int(E, sgn, n), ci32(E, INT32_MIN, n), "");
    return as_float(E, LLVMBuildOr(E->b, as_int(E, mag, n), s, ""), n);
}

/* Horner: ((c[0] * x + c[1]) * x + ...) with fmas. */
static LLVMValueRef horner(Emit *E, uint32_t n, LLVMValueRef x, const float *c, size_t nc)
{
    LLVMValueRef r = fma3(E, cf(E, c[0], n), x, cf(E, c[1], n));
    for (size_t i = 2; i < nc; i++)
        r = fma3(E, r, x, cf(E, c[i], n));
    return r;
}

/* a * 2^k, big = k + 1.5*2^23: see emit_c.c scale_by_pow2. */
static LLVMValueRef scale_by_pow2(Emit *E, uint32_t n, LLVMValueRef a, LLVMValueRef big)
{
    LLVMBuilderRef b = E->b;
    LLVMValueRef ki = LLVMBuildSub(b, as_int(E, big, n), ci32(E, 0x4b400000, n), "");
    LLVMValueRef k1 = LLVMBuildAShr(b, ki, ci32(E, 1, n), "");
    LLVMValueRef e1 = LLVMBuildShl(b, LLVMBuildAdd(b, k1, ci32(E, 127, n), ""), ci32(E, 23, n), "");
    LLVMValueRef e2 = LLVMBuildShl(
        b, LLVMBuildAdd(b, LLVMBuildSub(b, ki, k1, ""), ci32(E, 127, n), ""), ci32(E, 23, n), "");
    return LLVMBuildFMul(b, LLVMBuildFMul(b, a, as_float(E, e1, n), ""), as_float(E, e2, n), "");
}

/* exp(x) within 1 ulp: see emit_c.c math_exp (same steps, same constants). */
static LLVMValueRef math_exp(Emit *E, uint32_t n, LLVMValueRef x)
{
    static const float poly[] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
    LLVMBuilderRef b = E->b;
    LLVMValueRef lo =
        fsel(E, LLVMBuildFCmp(b, LLVMRealOLT, x, cf(E, -150.0f, n), ""), cf(E, -150.0f, n), x);
    LLVMValueRef xc =
        fsel(E, LLVMBuildFCmp(b, LLVMRealOGT, lo, cf(E, 150.0f, n), ""), cf(E, 150.0f, n), lo);
    LLVMValueRef big = fma3(E, xc, cf(E, 1.44269502e+0f, n), cf(E, 0x1.8p23f, n));
    LLVMValueRef k = LLVMBuildFSub(b, big, cf(E, 0x1.8p23f, n), "");
    LLVMValueRef r = fma3(E, k, cf(E, -0x1.62e400p-1f, n), xc);
    r = fma3(E, k, cf(E, -0x1.7f7d1cp-20f, n), r);
    LLVMValueRef r2 = LLVMBuildFMul(b, r, r, "");
    LLVMValueRef r4 = LLVMBuildFMul(b, r2, r2, "");
    LLVMValueRef q01 = fma3(E, cf(E, poly[0], n), r, cf(E, poly[1], n));
    LLVMValueRef q23 = fma3(E, cf(E, poly[2], n), r, cf(E, poly[3], n));
    LLVMValueRef q45 = fma3(E, cf(E, poly[4], n), r, cf(E, poly[5], n));
    LLVMValueRef q = fma3(E, q01, r4, fma3(E, q23, r2, q45));
    LLVMValueRef p = LLVMBuildFAdd(b, fma3(E, q, r2, r), cf(E, 1.0f, n), "");
    return scale_by_pow2(E, n, p, big);
}

/* sigmoid: 1/(1+e) for x >= 0, e/(1+e) for x < 0, e = exp(-|x|). */
static LLVMValueRef math_sigmoid(Emit *E, uint32_t n, LLVMValueRef x)
{
    LLVMBuilderRef b = E->b;
    LLVMValueRef e = math_exp(E, n, LLVMBuildFNeg(b, fabs1(E, x), ""));
    LLVMValueRef d = LLVMBuildFAdd(b, cf(E, 1.0f, n), e, "");
    LLVMValueRef pos = LLVMBuildFDiv(b, cf(E, 1.0f, n), d, "");
    LLVMValueRef neg = LLVMBuildFDiv(b, e, d, "");
    return fsel(E, LLVMBuildFCmp(b, LLVMRealOLT, x, cf(E, 0.0f, n), ""), neg, pos);
}

/* tanh: odd polynomial for |x| < 0.625, else 1 - 2/(exp(2|x|)+1) with the sign of x. */
static LLVMValueRef math_tanh(Emit *E, uint32_t n, LLVMValueRef x)
{
    static const float poly[] = {-5.70498872745e-3f, 2.06390887954e-2f, -5.37397155531e-2f,
                                 1.33314422036e-1f, -3.33332819422e-1f};
    LLVMBuilderRef b = E->b;
    LLVMValueRef a = fabs1(E, x);
    LLVMValueRef e = math_exp(E, n, LLVMBuildFAdd(b, a, a, ""));
    LLVMValueRef big = LLVMBuildFSub(
        b, cf(E, 1.0f, n),
        LLVMBuildFDiv(b, cf(E, 2.0f, n), LLVMBuildFAdd(b, e, cf(E, 1.0f, n), ""), ""), "");
    LLVMValueRef s = LLVMBuildFMul(b, x, x, "");
    LLVMValueRef q = LLVMBuildFMul(b, horner(E, n, s, poly, countof(poly)), s, "");
    LLVMValueRef small = fma3(E, q, x, x);
    LLVMValueRef m = LLVMBuildFCmp(b, LLVMRealOLT, a, cf(E, 0.625f, n), "");
    return fsel(E, m, small, copysign1(E, n, big, x));
}

/* ---- expressions ---- */

static LLVMValueRef emit_expr(Emit *E, const LoopExpr *e);

static LLVMValueRef buf_ptr(Emit *E, const LoopBuffer *buf, LLVMValueRef index)
{
    LLVMValueRef base = E->fn->bufs[buf->id];
    FUSE_ASSERT(base);
    return LLVMBuildInBoundsGEP2(E->b, E->f32, base, &index, 1, "");
}

/* The current value of v: its SSA value, or a load of its alloca. */
static LLVMValueRef var_value(Emit *E, const LoopVar *v)
{
    FUSE_ASSERT(E->fn->vars[v->id]);
    if (E->fn->slot[v->id])
        return LLVMBuildLoad2(E->b, ltype(E, v->type), E->fn->vars[v->id], "");
    return E->fn->vars[v->id];
}

static LLVMValueRef emit_unary(Emit *E, const LoopExpr *e)
{
    LLVMValueRef a = emit_expr(E, e->op.a);
    uint32_t n = e->type.lanes;
    switch (e->op.op) {
    case LOP_NEG:
        return LLVMBuildFNeg(E->b, a, "");
    case LOP_ABS:
        return fabs1(E, a);
    case LOP_SQRT:
        return intrinsic(E, "llvm.sqrt", LLVMTypeOf(a), &a, 1);
    case LOP_FLOOR:
        return intrinsic(E, "llvm.floor", LLVMTypeOf(a), &a, 1);
    case LOP_EXP:
        return math_exp(E, n, a);
    case LOP_TANH:
        return math_tanh(E, n, a);
    case LOP_SIGMOID:
        return math_sigmoid(E, n, a);
    default:
        FUSE_UNREACHABLE();
    }
}

/* NaN-propagating max/min: a wins when it is NaN or strictly ahead, else b. */
static LLVMValueRef minmax(Emit *E, bool max, bool f32, LLVMValueRef a, LLVMValueRef b)
{
    LLVMValueRef m;
    if (f32) {
        LLVMValueRef ahead = LLVMBuildFCmp(E->b, max ? LLVMRealOGT : LLVMRealOLT, a, b, "");
        m = LLVMBuildOr(E->b, ahead, LLVMBuildFCmp(E->b, LLVMRealUNO, a, a, ""), "");
    } else {
        m = LLVMBuildICmp(E->b, max ? LLVMIntSGT : LLVMIntSLT, a, b, "");
    }
    return LLVMBuildSelect(E->b, m, a, b, "");
}

static LLVMValueRef emit_binary(Emit *E, const LoopExpr *e)
{
    LLVMValueRef a = emit_expr(E, e->op.a);
    LLVMValueRef b = emit_expr(E, e->op.b);
    bool f32 = e->type.scalar == LT_F32;
    switch (e->op.op) {
    case LOP_ADD:
        return f32 ? LLVMBuildFAdd(E->b, a, b, "") : LLVMBuildAdd(E->b, a, b, "");
    case LOP_SUB:
        return f32 ? LLVMBuildFSub(E->b, a, b, "") : LLVMBuildSub(E->b, a, b, "");
    case LOP_MUL:
        return f32 ? LLVMBuildFMul(E->b, a, b, "") : LLVMBuildMul(E->b, a, b, "");
    case LOP_DIV:
        return LLVMBuildFDiv(E->b, a, b, "");
    case LOP_MIN:
    case LOP_MAX:
        return minmax(E, e->op.op == LOP_MAX, f32, a, b);
    case LOP_LDEXP:
        return scale_by_pow2(E, e->type.lanes, a,
                             LLVMBuildFAdd(E->b, b, cf(E, 0x1.8p23f, e->type.lanes), ""));
    case LOP_FLOORDIV:
    case LOP_MOD: { /* Python semantics for a divisor > 0 */
        LLVMValueRef r = LLVMBuildSRem(E->b, a, b, "");
        LLVMValueRef neg = LLVMBuildICmp(E->b, LLVMIntSLT, r, LLVMConstNull(LLVMTypeOf(r)), "");
        if (e->op.op == LOP_MOD)
            return LLVMBuildSelect(E->b, neg, LLVMBuildAdd(E->b, r, b, ""), r, "");
        LLVMValueRef q = LLVMBuildSDiv(E->b, a, b, "");
        return LLVMBuildSub(E->b, q, LLVMBuildZExt(E->b, neg, LLVMTypeOf(q), ""), "");
    }
    case LOP_AND:
        return LLVMBuildAnd(E->b, a, b, "");
    case LOP_OR:
        return LLVMBuildOr(E->b, a, b, "");
    default:
        FUSE_UNREACHABLE();
    }
}

static LLVMValueRef emit_cmp(Emit *E, const LoopExpr *e)
{
    static const LLVMRealPredicate fp[] = {LLVMRealOEQ, LLVMRealUNE, LLVMRealOLT,
                                           LLVMRealOLE, LLVMRealOGT, LLVMRealOGE};
    static const LLVMIntPredicate ip[] = {LLVMIntEQ,  LLVMIntNE,  LLVMIntSLT,
                                          LLVMIntSLE, LLVMIntSGT, LLVMIntSGE};
    LLVMValueRef a = emit_expr(E, e->op.a);
    LLVMValueRef b = emit_expr(E, e->op.b);
    if (e->op.a->type.scalar == LT_F32)
        return LLVMBuildFCmp(E->b, fp[e->op.cmp], a, b, "");
    if (e->op.a->type.scalar == LT_I64)
        return LLVMBuildICmp(E->b, ip[e->op.cmp], a, b, "");
    FUSE_ASSERT(e->op.cmp == LCMP_EQ || e->op.cmp == LCMP_NE);
    return LLVMBuildICmp(E->b, ip[e->op.cmp], a, b, "");
}

/* Across lanes, exactly as emit_c's emit_reduce: sums in lane order (no reassociation); max
 * and min as a tree of adjacent pairs, log2(lanes) dependent steps instead of lanes - 1. The
 * NaN-propagating minmax is associative (it gives the first NaN, else the last lane holding the
 * extreme, whatever the bracketing of lanes in order), so the result is that of lane order. */
static LLVMValueRef emit_reduce(Emit *E, const LoopExpr *e)
{
    LLVMValueRef a = emit_expr(E, e->op.a);
    uint32_t n = e->op.a->type.lanes;
    if (n == 1)
        return a;
    if (e->op.op == LOP_ADD) {
        LLVMValueRef r = LLVMBuildExtractElement(E->b, a, LLVMConstInt(E->i32, 0, 0), "");
        for (uint32_t i = 1; i < n; i++)
            r = LLVMBuildFAdd(E->b, r,
                              LLVMBuildExtractElement(E->b, a, LLVMConstInt(E->i32, i, 0), ""), "");
        return r;
    }
    FUSE_ASSERT(n <= 16 && (n & (n - 1)) == 0);
    for (; n > 1; n /= 2) {
        LLVMValueRef even[8], odd[8];
        for (uint32_t i = 0; i < n / 2; i++) {
            even[i] = LLVMConstInt(E->i32, 2 * i, 0);
            odd[i] = LLVMConstInt(E->i32, 2 * i + 1, 0);
        }
        LLVMValueRef none = LLVMGetUndef(LLVMTypeOf(a));
        LLVMValueRef l = LLVMBuildShuffleVector(E->b, a, none, LLVMConstVector(even, n / 2), "");
        LLVMValueRef r = LLVMBuildShuffleVector(E->b, a, none, LLVMConstVector(odd, n / 2), "");
        a = minmax(E, e->op.op == LOP_MAX, true, l, r);
    }
    return LLVMBuildExtractElement(E->b, a, LLVMConstInt(E->i32, 0, 0), "");
}

/* llvm.masked.gather with every lane enabled: a vector of element pointers (one GEP with the
 * index vector), align 4, as emit_c's lane loop. */
static LLVMValueRef emit_gather(Emit *E, const LoopExpr *e)
{
    uint32_t n = e->type.lanes;
    LLVMValueRef ptrs = buf_ptr(E, e->load.buf, emit_expr(E, e->load.index));
    LLVMTypeRef types[2] = {vec(E->f32, n), LLVMVectorType(E->ptr, n)};
    static const char name[] = "llvm.masked.gather";
    unsigned id = LLVMLookupIntrinsicID(name, sizeof name - 1);
    FUSE_ASSERT(id != 0);
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(E->m, id, types, 2);
    LLVMTypeRef fty = LLVMIntrinsicGetType(E->cx, id, types, 2);
    LLVMValueRef mask = splat_const(LLVMConstInt(E->i1, 1, 0), n);
    LLVMValueRef args[4] = {ptrs, LLVMConstInt(E->i32, 4, 0), mask, LLVMGetPoison(types[0])};
    return LLVMBuildCall2(E->b, fty, fn, args, 4, "");
}

static LLVMValueRef emit_expr_once(Emit *E, const LoopExpr *e);

/* Each node of a statement's expression trees is built once (see emit_c.c emit_expr). */
static LLVMValueRef emit_expr(Emit *E, const LoopExpr *e)
{
    if (e->kind == LEXPR_CONST_F || e->kind == LEXPR_CONST_I || e->kind == LEXPR_VAR)
        return emit_expr_once(E, e);
    uint32_t at;
    if (ptrmap_get(&E->emitted, e, &at))
        return E->done[at];
    LLVMValueRef v = emit_expr_once(E, e);
    if (E->ndone == E->done_cap) {
        E->done_cap = E->done_cap ? 2 * E->done_cap : 64;
        E->done = xrealloc(E->done, E->done_cap * sizeof *E->done);
    }
    E->done[E->ndone] = v;
    ptrmap_put(&E->emitted, e, E->ndone++);
    return v;
}

/* Forgets what was built: the values of the statement before may not dominate the next one. */
static void forget_emitted(Emit *E)
{
    ptrmap_clear(&E->emitted);
    E->ndone = 0;
}

static LLVMValueRef emit_expr_once(Emit *E, const LoopExpr *e)
{
    uint32_t n = e->type.lanes;
    switch (e->kind) {
    case LEXPR_CONST_F:
        return cf(E, e->f, n);
    case LEXPR_CONST_I:
        return splat_const(ci64(E, e->i), n);
    case LEXPR_VAR:
        return var_value(E, e->var);
    case LEXPR_LOAD: {
        LLVMValueRef ld = LLVMBuildLoad2(E->b, ltype(E, e->type),
                                         buf_ptr(E, e->load.buf, emit_expr(E, e->load.index)), "");
        LLVMSetAlignment(ld, 4);
        return ld;
    }
    case LEXPR_UNARY:
        return emit_unary(E, e);
    case LEXPR_BINARY:
        return emit_binary(E, e);
    case LEXPR_FMA: {
        LLVMValueRef a = emit_expr(E, e->op.a), b = emit_expr(E, e->op.b);
        return fma3(E, a, b, emit_expr(E, e->op.c));
    }
    case LEXPR_SELECT: {
        LLVMValueRef c = emit_expr(E, e->op.a), a = emit_expr(E, e->op.b);
        return LLVMBuildSelect(E->b, c, a, emit_expr(E, e->op.c), "");
    }
    case LEXPR_CMP:
        return emit_cmp(E, e);
    case LEXPR_BROADCAST:
        return splat(E, emit_expr(E, e->op.a), n);
    case LEXPR_CAST: {
        LLVMValueRef a = emit_expr(E, e->op.a);
        if (e->type.scalar == LT_F32)
            return LLVMBuildSIToFP(E->b, a, ltype(E, e->type), "");
        return LLVMBuildFPToSI(E->b, a, ltype(E, e->type), "");
    }
    case LEXPR_REDUCE:
        return emit_reduce(E, e);
    case LEXPR_IOTA: {
        LLVMValueRef v[16];
        FUSE_ASSERT(n <= 16);
        for (uint32_t l = 0; l < n; l++)
            v[l] = ci64(E, (int64_t)l);
        return LLVMConstVector(v, n);
    }
    case LEXPR_GATHER:
        return emit_gather(E, e);
    case LEXPR_SHUFFLE: {
        LLVMValueRef a = emit_expr(E, e->op.a), mask[16];
        FUSE_ASSERT(n <= 16);
        for (uint32_t l = 0; l < n; l++)
            mask[l] = LLVMConstInt(LLVMInt32TypeInContext(E->cx), e->op.sel[l], false);
        return LLVMBuildShuffleVector(E->b, a, LLVMGetUndef(LLVMTypeOf(a)),
                                      LLVMConstVector(mask, n), "");
    }
    }
    FUSE_UNREACHABLE();
}

/* ---- analysis: which buffers and variables a statement tree touches ---- */

/* ---- functions ---- */

static void fn_begin(Emit *E, Fn *f, LLVMValueRef fn)
{
    memset(f, 0, sizeof *f);
    f->fn = fn;
    f->bufs = xcalloc(E->p->nbuffers + 1, sizeof(LLVMValueRef));
    f->vars = xcalloc(E->k->nvars + 1, sizeof(LLVMValueRef));
    f->slot = xcalloc(E->k->nvars + 1, sizeof(bool));
    f->entry = LLVMAppendBasicBlockInContext(E->cx, fn, "entry");
    LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(E->cx, fn, "start");
    LLVMPositionBuilderAtEnd(E->alloca_b, f->entry);
    LLVMPositionBuilderAtEnd(E->b, start);
    E->fn = f;
}

/* Closes the function: the entry block branches to the code, the code returns. */
static void fn_end(Emit *E, Fn *f)
{
    /* Streaming stores are weakly ordered: fence them before another thread may read them. */
    if (f->streamed && E->x86) {
        unsigned id = LLVMLookupIntrinsicID("llvm.x86.sse.sfence", 19);
        FUSE_ASSERT(id != 0);
        LLVMValueRef fn = LLVMGetIntrinsicDeclaration(E->m, id, NULL, 0);
        LLVMBuildCall2(E->b, LLVMIntrinsicGetType(E->cx, id, NULL, 0), fn, NULL, 0, "");
    } else if (f->streamed) {
        LLVMBuildFence(E->b, LLVMAtomicOrderingSequentiallyConsistent, 0, "");
    }
    LLVMBuildRetVoid(E->b);
    LLVMBasicBlockRef start = LLVMGetNextBasicBlock(f->entry);
    LLVMPositionBuilderAtEnd(E->alloca_b, f->entry);
    LLVMBuildBr(E->alloca_b, start);
    free(f->bufs);
    free(f->vars);
    free(f->slot);
}

static LLVMValueRef new_alloca(Emit *E, LLVMTypeRef t)
{
    LLVMValueRef a = LLVMBuildAlloca(E->alloca_b, t, "");
    return a;
}

static LLVMValueRef add_function(Emit *E, const char *name, LLVMTypeRef ret, LLVMTypeRef *params,
                                 unsigned nparams, bool internal)
{
    LLVMTypeRef fty = LLVMFunctionType(ret, params, nparams, 0);
    LLVMValueRef fn = LLVMAddFunction(E->m, name, fty);
    if (internal)
        LLVMSetLinkage(fn, LLVMInternalLinkage);
    unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
    LLVMAddAttributeAtIndex(fn, FN_INDEX, LLVMCreateEnumAttribute(E->cx, nounwind, 0));
    return fn;
}

static void add_attr(Emit *E, LLVMValueRef fn, unsigned index, const char *name)
{
    unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
    FUSE_ASSERT(kind != 0);
    LLVMAddAttributeAtIndex(fn, index, LLVMCreateEnumAttribute(E->cx, kind, 0));
}

static LLVMValueRef call(Emit *E, LLVMValueRef fn, LLVMValueRef *args, unsigned nargs)
{
    return LLVMBuildCall2(E->b, LLVMGlobalGetValueType(fn), fn, args, nargs, "");
}

/* The pointer of BUF_THREAD buffer b for thread `thread` (i32) in the scratch block. */
static LLVMValueRef thread_buf(Emit *E, const LoopBuffer *b, LLVMValueRef thread)
{
    LLVMValueRef t = LLVMBuildSExt(E->b, thread, E->i64, "");
    LLVMValueRef off =
        LLVMBuildAdd(E->b, LLVMBuildMul(E->b, t, ci64(E, E->p->thread_scratch_bytes), ""),
                     ci64(E, E->p->scratch_bytes + b->offset), "");
    return LLVMBuildInBoundsGEP2(E->b, LLVMInt8TypeInContext(E->cx), E->fn->scratch, &off, 1, "");
}

static void emit_stmt(Emit *E, const LoopStmt *s);

static void emit_block(Emit *E, const LoopStmt *s)
{
    for (uint32_t i = 0; i < s->block.n; i++)
        emit_stmt(E, s->block.stmts[i]);
}

/* Loops of more than this many iterations are not unrolled by LLVM (partial or runtime): like
 * gcc -O3 for the C backend, only short constant-trip loops are unrolled (fully), which keeps
 * the O3 pipeline and codegen fast (JIT compile time). */
#define MAX_UNROLL_TRIPS 64

/* Marks the loop whose back edge is `br` llvm.loop.unroll.disable (a self-referential loop ID
 * node, as LLVM requires). */
static void no_unroll(Emit *E, LLVMValueRef br)
{
    if (getenv("FUSEC_JIT_UNROLL_ALL"))
        return;
    static const char key[] = "llvm.loop.unroll.disable";
    LLVMMetadataRef opt_s = LLVMMDStringInContext2(E->cx, key, sizeof key - 1);
    LLVMMetadataRef opt = LLVMMDNodeInContext2(E->cx, &opt_s, 1);
    LLVMMetadataRef self = LLVMTemporaryMDNode(E->cx, NULL, 0);
    LLVMMetadataRef ops[2] = {self, opt};
    LLVMMetadataRef id = LLVMMDNodeInContext2(E->cx, ops, 2);
    LLVMMetadataReplaceAllUsesWith(self, id); /* disposes the temporary node */
    LLVMSetMetadata(br, LLVMGetMDKindIDInContext(E->cx, "llvm.loop", 9),
                    LLVMMetadataAsValue(E->cx, id));
}

/* for v = lo; v < hi; v += step: body. `v` is an SSA phi. */
static void emit_loop(Emit *E, const LoopVar *v, LLVMValueRef lo, LLVMValueRef hi, int64_t step,
                      const LoopStmt *body, bool is_block)
{
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(E->b);
    LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(E->cx, E->fn->fn, "loop");
    LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(E->cx, E->fn->fn, "body");
    LLVMBasicBlockRef exit = LLVMAppendBasicBlockInContext(E->cx, E->fn->fn, "exit");
    LLVMBuildBr(E->b, head);
    LLVMPositionBuilderAtEnd(E->b, head);
    LLVMValueRef i = LLVMBuildPhi(E->b, E->i64, "");
    LLVMBuildCondBr(E->b, LLVMBuildICmp(E->b, LLVMIntSLT, i, hi, ""), bb, exit);
    LLVMPositionBuilderAtEnd(E->b, bb);
    E->fn->vars[v->id] = i;
    E->fn->slot[v->id] = false;
    if (is_block)
        emit_block(E, body);
    else
        emit_stmt(E, body);
    LLVMValueRef next = LLVMBuildAdd(E->b, i, ci64(E, step), "");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(E->b);
    LLVMValueRef back = LLVMBuildBr(E->b, head);
    bool short_loop =
        LLVMIsAConstantInt(lo) && LLVMIsAConstantInt(hi) &&
        (LLVMConstIntGetSExtValue(hi) - LLVMConstIntGetSExtValue(lo)) / step <= MAX_UNROLL_TRIPS;
    if (!short_loop)
        no_unroll(E, back);
    LLVMValueRef in_v[2] = {lo, next};
    LLVMBasicBlockRef in_b[2] = {pre, latch};
    LLVMAddIncoming(i, in_v, in_b, 2);
    LLVMPositionBuilderAtEnd(E->b, exit);
}

/* The outlined FOR_PARALLEL loop s (top level of the kernel), with lo and hi evaluated. */
static void emit_parallel(Emit *E, const LoopStmt *s, LLVMValueRef lo, LLVMValueRef hi)
{
    const LoopProgram *p = E->p;
    uint32_t id = E->npar++;
    LoopUses u = loop_uses(E->p, E->k, s->loop.body, false);
    u.defined[s->loop.var->id] = true;
    Fn *outer = E->fn;
    LLVMBasicBlockRef outer_block = LLVMGetInsertBlock(E->b);

    /* What the body captures: buffers (not per-thread ones), scratch, lo, outer variables. */
    uint32_t cap = p->nbuffers + E->k->nvars + 4, nf = 0, nbufs = 0;
    LLVMTypeRef *ftypes = xcalloc(cap, sizeof(LLVMTypeRef));
    LLVMValueRef *fvals = xcalloc(cap, sizeof(LLVMValueRef));
    for (uint32_t i = 0; i < p->nbuffers; i++)
        if (u.bufs[i] && p->buffers[i]->kind != BUF_THREAD) {
            ftypes[nf] = E->ptr;
            fvals[nf++] = outer->bufs[i];
            nbufs++;
        }
    ftypes[nf] = E->ptr;
    fvals[nf++] = outer->scratch;
    ftypes[nf] = E->i64;
    fvals[nf++] = lo;
    uint32_t first_var = nf;
    for (uint32_t v = 0; v < E->k->nvars; v++)
        if (u.used[v] && !u.defined[v] && E->kvars[v]) {
            ftypes[nf] = ltype(E, E->kvars[v]->type);
            fvals[nf++] = var_value(E, E->kvars[v]);
        }
    LLVMTypeRef ctx_t = LLVMStructTypeInContext(E->cx, ftypes, nf, 0);

    /* The inner function: (captured..., i64 begin, i64 end, i32 thread). */
    char name[600];
    snprintf(name, sizeof name, "%s.par%u.inner", E->kname, id);
    ftypes[nf] = E->i64;
    ftypes[nf + 1] = E->i64;
    ftypes[nf + 2] = E->i32;
    LLVMValueRef inner = add_function(E, name, E->void_t, ftypes, nf + 3, true);
    add_attr(E, inner, FN_INDEX, "alwaysinline");
    for (uint32_t i = 0; i < nbufs; i++)
        add_attr(E, inner, i + 1, "noalias");
    Fn f;
    fn_begin(E, &f, inner);
    f.scratch = LLVMGetParam(inner, nbufs);
    f.thread = LLVMGetParam(inner, nf + 2);
    uint32_t k = 0;
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        if (!u.bufs[i])
            continue;
        if (p->buffers[i]->kind == BUF_THREAD)
            f.bufs[i] = thread_buf(E, p->buffers[i], f.thread);
        else
            f.bufs[i] = LLVMGetParam(inner, k++);
    }
    k = first_var;
    for (uint32_t v = 0; v < E->k->nvars; v++)
        if (u.used[v] && !u.defined[v] && E->kvars[v]) {
            /* a private copy, as emit_c's locals: the body may assign it */
            LLVMValueRef slot = new_alloca(E, ftypes[k]);
            LLVMBuildStore(E->b, LLVMGetParam(inner, k++), slot);
            f.vars[v] = slot;
            f.slot[v] = true;
        }
    /* for i in [begin, end): var = lo + i * step; body */
    LLVMValueRef plo = LLVMGetParam(inner, nbufs + 1);
    const LoopVar *iv = s->loop.var;
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(E->b);
    LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(E->cx, inner, "loop");
    LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(E->cx, inner, "body");
    LLVMBasicBlockRef exit = LLVMAppendBasicBlockInContext(E->cx, inner, "exit");
    LLVMBuildBr(E->b, head);
    LLVMPositionBuilderAtEnd(E->b, head);
    LLVMValueRef i = LLVMBuildPhi(E->b, E->i64, "");
    LLVMBuildCondBr(E->b, LLVMBuildICmp(E->b, LLVMIntSLT, i, LLVMGetParam(inner, nf + 1), ""), bb,
                    exit);
    LLVMPositionBuilderAtEnd(E->b, bb);
    f.vars[iv->id] = LLVMBuildAdd(E->b, plo, LLVMBuildMul(E->b, i, ci64(E, s->loop.step), ""), "");
    f.slot[iv->id] = false;
    emit_block(E, s->loop.body);
    LLVMValueRef next = LLVMBuildAdd(E->b, i, ci64(E, 1), "");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(E->b);
    no_unroll(E, LLVMBuildBr(E->b, head)); /* a thread's chunk of the parallel loop */
    LLVMValueRef in_v[2] = {LLVMGetParam(inner, nf), next};
    LLVMBasicBlockRef in_b[2] = {pre, latch};
    LLVMAddIncoming(i, in_v, in_b, 2);
    LLVMPositionBuilderAtEnd(E->b, exit);
    fn_end(E, &f);

    /* The task: loads the context and calls the inner function. */
    snprintf(name, sizeof name, "%s.par%u", E->kname, id);
    LLVMTypeRef tparams[4] = {E->ptr, E->i64, E->i64, E->i32};
    LLVMValueRef task = add_function(E, name, E->void_t, tparams, 4, true);
    Fn tf;
    fn_begin(E, &tf, task);
    LLVMValueRef *args = xcalloc(nf + 3, sizeof(LLVMValueRef));
    for (uint32_t j = 0; j < nf; j++) {
        LLVMValueRef at = LLVMBuildStructGEP2(E->b, ctx_t, LLVMGetParam(task, 0), j, "");
        args[j] = LLVMBuildLoad2(E->b, ftypes[j], at, "");
    }
    for (uint32_t j = 0; j < 3; j++)
        args[nf + j] = LLVMGetParam(task, j + 1);
    call(E, inner, args, nf + 3);
    fn_end(E, &tf);

    /* Back in the kernel: fill the context, count the iterations, run. */
    E->fn = outer;
    LLVMPositionBuilderAtEnd(E->b, outer_block);
    LLVMPositionBuilderAtEnd(E->alloca_b, outer->entry);
    LLVMValueRef ctx = new_alloca(E, ctx_t);
    for (uint32_t j = 0; j < nf; j++)
        LLVMBuildStore(E->b, fvals[j], LLVMBuildStructGEP2(E->b, ctx_t, ctx, j, ""));
    /* n = hi > lo ? (hi - lo + step - 1) / step : 0 */
    LLVMValueRef span =
        LLVMBuildAdd(E->b, LLVMBuildSub(E->b, hi, lo, ""), ci64(E, s->loop.step - 1), "");
    LLVMValueRef n =
        LLVMBuildSelect(E->b, LLVMBuildICmp(E->b, LLVMIntSGT, hi, lo, ""),
                        LLVMBuildSDiv(E->b, span, ci64(E, s->loop.step), ""), ci64(E, 0), "");
    LLVMValueRef pf = LLVMGetNamedFunction(E->m, EMIT_LLVM_PARALLEL_FOR);
    LLVMValueRef cargs[4] = {outer->pool, n, task, ctx};
    call(E, pf, cargs, 4);
    free(args);
    free(ftypes);
    free(fvals);
    loop_uses_free(&u);
}

static void emit_for(Emit *E, const LoopStmt *s)
{
    LLVMValueRef lo = emit_expr(E, s->loop.lo);
    LLVMValueRef hi = emit_expr(E, s->loop.hi);
    if (s->loop.for_kind == FOR_PARALLEL) {
        emit_parallel(E, s, lo, hi);
        return;
    }
    emit_loop(E, s->loop.var, lo, hi, s->loop.step, s->loop.body, true);
}

static void emit_if(Emit *E, const LoopStmt *s)
{
    LLVMValueRef c = emit_expr(E, s->branch.cond);
    LLVMBasicBlockRef then_b = LLVMAppendBasicBlockInContext(E->cx, E->fn->fn, "then");
    LLVMBasicBlockRef else_b =
        s->branch.else_body ? LLVMAppendBasicBlockInContext(E->cx, E->fn->fn, "else") : NULL;
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(E->cx, E->fn->fn, "join");
    LLVMBuildCondBr(E->b, c, then_b, else_b ? else_b : join);
    LLVMPositionBuilderAtEnd(E->b, then_b);
    emit_block(E, s->branch.then_body);
    LLVMBuildBr(E->b, join);
    if (else_b) {
        LLVMPositionBuilderAtEnd(E->b, else_b);
        emit_block(E, s->branch.else_body);
        LLVMBuildBr(E->b, join);
    }
    LLVMPositionBuilderAtEnd(E->b, join);
}

/* A streaming store is non-temporal where the address is aligned to the whole vector (what
 * the instruction needs) and a plain store elsewhere: outputs come from the caller. */
static void emit_store(Emit *E, const LoopStmt *s)
{
    LLVMValueRef at = buf_ptr(E, s->store.buf, emit_expr(E, s->store.index));
    LLVMValueRef v = emit_expr(E, s->store.value);
    if (!s->store.streaming) {
        LLVMSetAlignment(LLVMBuildStore(E->b, v, at), 4);
        return;
    }
    unsigned bytes = 4 * s->store.value->type.lanes;
    LLVMValueRef misaligned =
        LLVMBuildAnd(E->b, LLVMBuildPtrToInt(E->b, at, E->i64, ""), ci64(E, bytes - 1), "");
    LLVMValueRef aligned = LLVMBuildICmp(E->b, LLVMIntEQ, misaligned, ci64(E, 0), "");
    LLVMBasicBlockRef nt_b = LLVMAppendBasicBlockInContext(E->cx, E->fn->fn, "stream");
    LLVMBasicBlockRef plain_b = LLVMAppendBasicBlockInContext(E->cx, E->fn->fn, "store");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(E->cx, E->fn->fn, "stored");
    LLVMBuildCondBr(E->b, aligned, nt_b, plain_b);
    LLVMPositionBuilderAtEnd(E->b, nt_b);
    LLVMValueRef nt = LLVMBuildStore(E->b, v, at);
    LLVMSetAlignment(nt, bytes);
    LLVMMetadataRef one = LLVMValueAsMetadata(LLVMConstInt(E->i32, 1, 0));
    LLVMSetMetadata(nt, LLVMGetMDKindIDInContext(E->cx, "nontemporal", 11),
                    LLVMMetadataAsValue(E->cx, LLVMMDNodeInContext2(E->cx, &one, 1)));
    LLVMBuildBr(E->b, join);
    LLVMPositionBuilderAtEnd(E->b, plain_b);
    LLVMSetAlignment(LLVMBuildStore(E->b, v, at), 4);
    LLVMBuildBr(E->b, join);
    LLVMPositionBuilderAtEnd(E->b, join);
    E->fn->streamed = true;
}

static void emit_stmt_once(Emit *E, const LoopStmt *s);

static void emit_stmt(Emit *E, const LoopStmt *s)
{
    forget_emitted(E);
    emit_stmt_once(E, s);
    forget_emitted(E);
}

static void emit_stmt_once(Emit *E, const LoopStmt *s)
{
    switch (s->kind) {
    case LOOP_BLOCK:
        emit_block(E, s);
        return;
    case LOOP_FOR:
        emit_for(E, s);
        return;
    case LOOP_STORE:
        emit_store(E, s);
        return;
    case LOOP_IF:
        emit_if(E, s);
        return;
    case LOOP_DECL: {
        uint32_t id = s->decl.var->id;
        LLVMValueRef init = emit_expr(E, s->decl.init);
        if (!E->fn->slot[id] || !E->fn->vars[id]) {
            E->fn->vars[id] = new_alloca(E, ltype(E, s->decl.var->type));
            E->fn->slot[id] = true;
        }
        LLVMBuildStore(E->b, init, E->fn->vars[id]);
        return;
    }
    case LOOP_ASSIGN: {
        uint32_t id = s->assign.var->id;
        FUSE_ASSERT(E->fn->slot[id]);
        LLVMBuildStore(E->b, emit_expr(E, s->assign.value), E->fn->vars[id]);
        return;
    }
    case LOOP_PREFETCH: {
        LLVMValueRef at = buf_ptr(E, s->prefetch.buf, emit_expr(E, s->prefetch.index));
        int loc = s->prefetch.locality < 0   ? 0
                  : s->prefetch.locality > 3 ? 3
                                             : s->prefetch.locality;
        LLVMValueRef args[4] = {at, LLVMConstInt(E->i32, 0, 0),
                                LLVMConstInt(E->i32, (unsigned long long)loc, 0),
                                LLVMConstInt(E->i32, 1, 0)};
        intrinsic(E, "llvm.prefetch", E->ptr, args, 4);
        return;
    }
    }
}

/* ---- kernels ---- */

void emit_llvm_kernel_symbol(const LoopProgram *p, bool prepare, uint32_t i, char *buf, size_t size)
{
    const LoopKernel *k = prepare ? p->prepare[i] : p->kernels[i];
    int n = snprintf(buf, size, "fuse_jit_%c%u_%s", prepare ? 'p' : 'r', i, k->name);
    FUSE_ASSERT(n > 0 && (size_t)n < size); /* a truncated name could clash with another */
}

void emit_llvm_wrapper_symbol(const LoopProgram *p, const char *what, char *buf, size_t size)
{
    int n = snprintf(buf, size, "fuse_k_%s_%s", p->name, what);
    FUSE_ASSERT(n > 0 && (size_t)n < size);
}

static void emit_kernel(Emit *E, const LoopKernel *k, bool prepare, uint32_t index)
{
    const LoopProgram *p = E->p;
    E->k = k;
    E->npar = 0;
    emit_llvm_kernel_symbol(p, prepare, index, E->kname, sizeof E->kname);
    E->kvars = xcalloc(k->nvars + 1, sizeof *E->kvars);
    loop_collect_vars(k->body, E->kvars);
    LoopUses u = loop_uses(E->p, E->k, k->body, false);

    /* inner(ptr noalias b..., ptr pool, ptr scratch) */
    uint32_t nbufs = 0;
    LLVMTypeRef *pt = xcalloc(p->nbuffers + 3, sizeof(LLVMTypeRef));
    for (uint32_t i = 0; i < p->nbuffers; i++)
        if (u.bufs[i] && p->buffers[i]->kind != BUF_THREAD)
            pt[nbufs++] = E->ptr;
    pt[nbufs] = E->ptr;
    pt[nbufs + 1] = E->ptr;
    char name[600];
    snprintf(name, sizeof name, "%s.inner", E->kname);
    LLVMValueRef inner = add_function(E, name, E->void_t, pt, nbufs + 2, true);
    add_attr(E, inner, FN_INDEX, "alwaysinline");
    for (uint32_t i = 0; i < nbufs; i++)
        add_attr(E, inner, i + 1, "noalias");
    Fn f;
    fn_begin(E, &f, inner);
    f.pool = LLVMGetParam(inner, nbufs);
    f.scratch = LLVMGetParam(inner, nbufs + 1);
    uint32_t at = 0;
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        if (!u.bufs[i])
            continue;
        if (p->buffers[i]->kind == BUF_THREAD)  // outside a parallel loop: thread 0
            f.bufs[i] = thread_buf(E, p->buffers[i], LLVMConstInt(E->i32, 0, 0));
        else
            f.bufs[i] = LLVMGetParam(inner, at++);
    }
    emit_block(E, k->body);
    fn_end(E, &f);

    /* K(ptr bufs, ptr pool, ptr scratch): loads the table, calls inner. */
    LLVMTypeRef kt[3] = {E->ptr, E->ptr, E->ptr};
    LLVMValueRef kfn = add_function(E, E->kname, E->void_t, kt, 3, false);
    add_attr(E, kfn, 1, "noalias");
    add_attr(E, kfn, 1, "readonly");
    Fn kf;
    fn_begin(E, &kf, kfn);
    LLVMValueRef *args = xcalloc(nbufs + 3, sizeof(LLVMValueRef));
    at = 0;
    for (uint32_t i = 0; i < p->nbuffers; i++)
        if (u.bufs[i] && p->buffers[i]->kind != BUF_THREAD) {
            LLVMValueRef idx = ci64(E, (int64_t)i);
            LLVMValueRef slot =
                LLVMBuildInBoundsGEP2(E->b, E->ptr, LLVMGetParam(kfn, 0), &idx, 1, "");
            args[at++] = LLVMBuildLoad2(E->b, E->ptr, slot, p->buffers[i]->name);
        }
    args[at] = LLVMGetParam(kfn, 1);
    args[at + 1] = LLVMGetParam(kfn, 2);
    call(E, inner, args, nbufs + 2);
    fn_end(E, &kf);
    free(args);
    free(pt);
    loop_uses_free(&u);
    free(E->kvars);
    E->kvars = NULL;
}

/* `i32 fuse_k_P_<what>(params...)` calling driver_fn(driver, params...). */
static void emit_wrapper(Emit *E, const char *what, const char *driver_fn, LLVMTypeRef ret,
                         LLVMTypeRef *params, unsigned nparams, uintptr_t driver)
{
    LLVMTypeRef dparams[8];
    FUSE_ASSERT(nparams < 8);
    dparams[0] = E->ptr;
    for (unsigned i = 0; i < nparams; i++)
        dparams[i + 1] = params[i];
    LLVMValueRef dfn = add_function(E, driver_fn, ret, dparams, nparams + 1, false);
    char name[600];
    emit_llvm_wrapper_symbol(E->p, what, name, sizeof name);
    LLVMValueRef fn = add_function(E, name, ret, params, nparams, false);
    LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(E->cx, fn, "entry");
    LLVMPositionBuilderAtEnd(E->b, bb);
    LLVMValueRef args[8];
    /* the driver's descriptor: an address of this process, baked in */
    args[0] = LLVMConstIntToPtr(LLVMConstInt(E->i64, (unsigned long long)driver, 0), E->ptr);
    for (unsigned i = 0; i < nparams; i++)
        args[i + 1] = LLVMGetParam(fn, i);
    LLVMValueRef r = call(E, dfn, args, nparams + 1);
    if (ret == E->void_t)
        LLVMBuildRetVoid(E->b);
    else
        LLVMBuildRet(E->b, r);
}

static void emit_program(Emit *E, uintptr_t driver, const EmitLLVMPart *part)
{
    LLVMTypeRef pf[4] = {E->ptr, E->i64, E->ptr, E->ptr};
    add_function(E, EMIT_LLVM_PARALLEL_FOR, E->void_t, pf, 4, false);
    for (uint32_t i = 0; i < E->p->nprepare; i++)
        if (!part || part->prepare[i])
            emit_kernel(E, E->p->prepare[i], true, i);
    for (uint32_t i = 0; i < E->p->nkernels; i++)
        if (!part || part->run[i])
            emit_kernel(E, E->p->kernels[i], false, i);
    if (part && !part->wrappers)
        return;
    /* create(weights, nweights, pool, out, err, errlen), run(k, in, out, err, errlen),
     * destroy(k) */
    LLVMTypeRef cp[6] = {E->ptr, E->i64, E->ptr, E->ptr, E->ptr, E->i64};
    emit_wrapper(E, "create", EMIT_LLVM_DRIVER_CREATE, E->i32, cp, 6, driver);
    LLVMTypeRef rp[5] = {E->ptr, E->ptr, E->ptr, E->ptr, E->i64};
    emit_wrapper(E, "run", EMIT_LLVM_DRIVER_RUN, E->i32, rp, 5, driver);
    LLVMTypeRef dp[1] = {E->ptr};
    emit_wrapper(E, "destroy", EMIT_LLVM_DRIVER_DESTROY, E->void_t, dp, 1, driver);
}

/* ---- target and pipeline ---- */

static void initialize_native_target(void)
{
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
}

LLVMTargetMachineRef emit_llvm_target_machine(Ctx *cx, const JitOptions *opt)
{
    /* Target registration mutates LLVM's global registry: once per process, for threads that
     * compile modules concurrently through the embedding API. */
    static pthread_once_t native_target_once = PTHREAD_ONCE_INIT;
    pthread_once(&native_target_once, initialize_native_target);
    char *triple = LLVMGetDefaultTargetTriple();
    char *host_cpu = NULL, *host_features = NULL;
    const char *cpu = opt && opt->cpu ? opt->cpu : (host_cpu = LLVMGetHostCPUName());
    const char *features =
        opt && opt->features ? opt->features : (host_features = LLVMGetHostCPUFeatures());
    LLVMTargetRef target;
    char *msg = NULL;
    LLVMTargetMachineRef tm = NULL;
    if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
        diag_report_file(cx->diag, DIAG_ERROR, NULL, "JIT: no target for %s: %s", triple,
                         msg ? msg : "");
    } else {
        tm = LLVMCreateTargetMachine(target, triple, cpu, features, LLVMCodeGenLevelAggressive,
                                     LLVMRelocDefault, LLVMCodeModelJITDefault);
        if (!tm)
            diag_report_file(cx->diag, DIAG_ERROR, NULL,
                             "JIT: cannot make a target machine for %s, cpu %s", triple, cpu);
    }
    LLVMDisposeMessage(msg);
    LLVMDisposeMessage(host_features);
    LLVMDisposeMessage(host_cpu);
    LLVMDisposeMessage(triple);
    return tm;
}

static uint64_t expr_cost(const LoopExpr *e)
{
    if (!e)
        return 0;
    switch (e->kind) {
    case LEXPR_CONST_F:
    case LEXPR_CONST_I:
    case LEXPR_VAR:
        return 0;
    case LEXPR_LOAD:
        return 1 + expr_cost(e->load.index);
    case LEXPR_GATHER: /* split into several gathers and their index arithmetic */
        return 4 + expr_cost(e->load.index);
    default:
        return 1 + expr_cost(e->op.a) + expr_cost(e->op.b) + expr_cost(e->op.c);
    }
}

static uint64_t stmt_cost(const LoopStmt *s)
{
    if (!s)
        return 0;
    switch (s->kind) {
    case LOOP_FOR: {
        uint64_t body = 2 + stmt_cost(s->loop.body);
        /* O3 unrolls a short constant loop fully (see MAX_UNROLL_TRIPS) */
        const LoopExpr *lo = s->loop.lo, *hi = s->loop.hi;
        if (s->loop.for_kind == FOR_UNROLLED && lo->kind == LEXPR_CONST_I &&
            hi->kind == LEXPR_CONST_I && s->loop.step > 0) {
            int64_t trips = (hi->i - lo->i + s->loop.step - 1) / s->loop.step;
            if (trips > 1 && trips <= MAX_UNROLL_TRIPS)
                body *= (uint64_t)trips;
        }
        return body + expr_cost(s->loop.lo) + expr_cost(s->loop.hi);
    }
    case LOOP_STORE:
        return 1 + expr_cost(s->store.index) + expr_cost(s->store.value);
    case LOOP_IF:
        return 1 + expr_cost(s->branch.cond) + stmt_cost(s->branch.then_body) +
               stmt_cost(s->branch.else_body);
    case LOOP_BLOCK: {
        uint64_t c = 0;
        for (uint32_t i = 0; i < s->block.n; i++)
            c += stmt_cost(s->block.stmts[i]);
        return c;
    }
    case LOOP_DECL:
        return expr_cost(s->decl.init);
    case LOOP_ASSIGN:
        return expr_cost(s->assign.value);
    case LOOP_PREFETCH:
        return 1 + expr_cost(s->prefetch.index);
    }
    return 0;
}

uint64_t emit_llvm_kernel_cost(const LoopKernel *k)
{
    return 8 + stmt_cost(k->body); /* 8: the functions around the body */
}

LLVMModuleRef emit_llvm_module(const LoopProgram *p, LLVMContextRef llvm_ctx,
                               LLVMTargetMachineRef tm, uintptr_t driver, const EmitLLVMPart *part)
{
    Emit E = {.p = p, .cx = llvm_ctx};
    E.m = LLVMModuleCreateWithNameInContext(p->name, llvm_ctx);
    LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(E.m, dl);
    LLVMDisposeTargetData(dl); /* the module keeps its own copy */
    char *triple = LLVMGetTargetMachineTriple(tm);
    LLVMSetTarget(E.m, triple);
    E.x86 = strncmp(triple, "x86_64", 6) == 0;
    LLVMDisposeMessage(triple);
    E.b = LLVMCreateBuilderInContext(llvm_ctx);
    E.alloca_b = LLVMCreateBuilderInContext(llvm_ctx);
    E.f32 = LLVMFloatTypeInContext(llvm_ctx);
    E.i32 = LLVMInt32TypeInContext(llvm_ctx);
    E.i64 = LLVMInt64TypeInContext(llvm_ctx);
    E.i1 = LLVMInt1TypeInContext(llvm_ctx);
    E.ptr = LLVMPointerTypeInContext(llvm_ctx, 0);
    E.void_t = LLVMVoidTypeInContext(llvm_ctx);
    emit_program(&E, driver, part);
    LLVMDisposeBuilder(E.alloca_b);
    LLVMDisposeBuilder(E.b);
    ptrmap_free(&E.emitted);
    free(E.done);

    char *msg = NULL;
    if (LLVMVerifyModule(E.m, LLVMReturnStatusAction, &msg)) {
        char *ir = LLVMPrintModuleToString(E.m);
        fprintf(stderr, "%s\n", ir);
        LLVMDisposeMessage(ir);
        fuse_panic(__FILE__, __LINE__, "LLVM module of %s invalid: %s", p->name, msg);
    }
    LLVMDisposeMessage(msg);
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMErrorRef err = LLVMRunPasses(E.m, "default<O3>", tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (err) {
        char *text = LLVMGetErrorMessage(err); /* consumes err */
        char copy[512];
        snprintf(copy, sizeof copy, "%s", text);
        LLVMDisposeErrorMessage(text);
        fuse_panic(__FILE__, __LINE__, "LLVM passes failed on %s: %s", p->name, copy);
    }
    return E.m;
}
