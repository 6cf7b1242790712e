/*
 * emit_llvm: LoopProgram -> an LLVM module, or one per part of the program (through the LLVM C
 * API), the code generator the JIT (jit.c) runs. It mirrors emit_c.c's semantics exactly: IEEE f32
 * without reassociation or fast-math flags, llvm.fma for FMA, NaN-propagating MAX/MIN by
 * fcmp+select, Python FLOORDIV/MOD, and the same polynomial EXP/TANH/SIGMOID/ERF with the same
 * constants.
 *
 * The module holds, for a program named P:
 * - per kernel (prepare kernel i: emit_llvm_kernel_symbol(p, true, i)), an external
 *   `void K(ptr bufs, ptr pool, ptr scratch)`: bufs[buffer id] is the base of every buffer but
 *   BUF_THREAD ones (the caller fills the table), scratch the instance's scratch block (per-thread
 *   scratch follows scratch_bytes into it), pool the instance's thread pool;
 * - for each FOR_PARALLEL loop, an internal task `void K.parN(ptr ctx, i64 begin, i64 end, i32
 *   thread)` run through fuse_rt_parallel_for;
 * - `i32 fuse_k_P_create/_run/_destroy(...)` with fuse_rt_kernel_info's signatures, calling
 *   EMIT_LLVM_DRIVER_CREATE/_RUN/_DESTROY with `driver` (an address baked in as a constant) as
 *   their first argument.
 * These headers stay free of LLVM's: LLVM handles are passed as their opaque struct pointers.
 */
#ifndef FUSE_EMIT_LLVM_H
#define FUSE_EMIT_LLVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctx.h"
#include "fuse_rt.h"
#include "jit.h"
#include "loop.h"

struct LLVMOpaqueContext;
struct LLVMOpaqueModule;
struct LLVMOpaqueTargetMachine;

/* Names of the C driver functions the wrappers call (registered in the JIT by jit.c):
 *   int create(const void *driver, const fuse_rt_weight *, size_t, fuse_rt_pool *,
 *              fuse_rt_kernel **, char *, size_t);
 *   int run(const void *driver, fuse_rt_kernel *, const float *const *, float *const *,
 *           char *, size_t);
 *   void destroy(const void *driver, fuse_rt_kernel *); */
#define EMIT_LLVM_DRIVER_CREATE  "fuse_jit_driver_create"
#define EMIT_LLVM_DRIVER_RUN     "fuse_jit_driver_run"
#define EMIT_LLVM_DRIVER_DESTROY "fuse_jit_driver_destroy"
#define EMIT_LLVM_PARALLEL_FOR   "fuse_rt_parallel_for"

/* The ABI of a kernel function of the module. */
typedef void (*EmitLLVMKernelFn)(void *const *bufs, fuse_rt_pool *pool, char *scratch);

/* A TargetMachine for opt's CPU and features (NULL fields: the host's) at
 * LLVMCodeGenLevelAggressive, with the JIT's code model. Initializes the native target once.
 * Returns NULL after reporting an error to cx->diag. Owns: the caller (LLVMDisposeTargetMachine,
 * or hand it to the JIT). */
struct LLVMOpaqueTargetMachine *emit_llvm_target_machine(Ctx *cx, const JitOptions *opt);

/* A part of p's functions, for a module of its own: kernels never call each other (the driver
 * calls them through the symbols), so the parts of a program compile independently, on
 * several threads (jit.c). prepare[i] / run[i]: whether prepare / run kernel i is in the part;
 * wrappers: whether the create/run/destroy wrappers are. */
typedef struct EmitLLVMPart {
    const bool *prepare, *run;
    bool wrappers;
} EmitLLVMPart;

/* Builds p's module (or, with part not NULL, the module of that part) in context `llvm_ctx`
 * for `tm`'s triple and data layout, verifies it (a failure is an internal error: fuse_panic
 * with LLVM's message) and optimizes it with default<O3>. `driver` is the value the wrappers
 * pass to the driver (0 for emit-llvm). Only reads p: threads may build parts of one program
 * at once, each in its own LLVM context with its own target machine.
 * Owns: the caller (LLVMDisposeModule, or hand it to the JIT in a thread-safe module). */
struct LLVMOpaqueModule *emit_llvm_module(const LoopProgram *p, struct LLVMOpaqueContext *llvm_ctx,
                                          struct LLVMOpaqueTargetMachine *tm, uintptr_t driver,
                                          const EmitLLVMPart *part);

/* A relative estimate of the time it takes to optimize and compile kernel k (the size of its
 * loop IR, short constant loops counted as unrolled): what jit.c balances the parts by. */
uint64_t emit_llvm_kernel_cost(const LoopKernel *k);

/* The symbol of prepare (prepare = true) or run kernel i of p, written into buf. */
void emit_llvm_kernel_symbol(const LoopProgram *p, bool prepare, uint32_t i, char *buf,
                             size_t size);

/* The symbol of the wrapper `fuse_k_<p->name>_<what>` (what: "create", "run", "destroy"). */
void emit_llvm_wrapper_symbol(const LoopProgram *p, const char *what, char *buf, size_t size);

#endif
