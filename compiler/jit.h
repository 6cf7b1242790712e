/*
 * jit: LoopProgram -> LLVM IR (emit_llvm.c) -> machine code in this process (ORC LLJIT), as a
 * kernel with the same API as a generated C kernel (fuse_rt_kernel_info), so that a program
 * moves between build-time and JIT kernels by changing the one call that obtains the info.
 * Built only with FUSE_WITH_LLVM.
 */
#ifndef FUSE_JIT_H
#define FUSE_JIT_H

#include <stdbool.h>

#include "ctx.h"
#include "fuse_rt.h"
#include "loop.h"
#include "util.h"

/* Code generation target. NULL fields mean the host's (LLVMGetHostCPUName / Features). */
typedef struct JitOptions {
    const char *cpu;          /* e.g. "znver4" (--cpu) */
    const char *features;     /* e.g. "+avx2,+fma" (--features) */
    uint32_t compile_threads; /* threads compiling the kernels; 0: one per available CPU */
} JitOptions;

typedef struct Jit Jit;

/* Builds p as LLVM modules, verifies them (a failure is our bug: internal error), optimizes
 * them with default<O3> for the target and compiles them, on as many threads as this process
 * has CPUs (the machine code does not depend on the split), then links them in the JIT. Owns
 * everything it needs afterwards: p and its arena may be freed. Returns NULL after reporting an
 * error to cx->diag. */
Jit *jit_compile(Ctx *cx, const LoopProgram *p, const JitOptions *opt);
/* The kernel: valid until jit_free. Instances it creates must be destroyed before that. */
const fuse_rt_kernel_info *jit_kernel_info(const Jit *jit);
void jit_free(Jit *jit);

/* emit-llvm: appends the optimized module of p as LLVM assembly text to out. */
bool jit_emit_llvm(Ctx *cx, const LoopProgram *p, const JitOptions *opt, StrBuf *out);

#endif
