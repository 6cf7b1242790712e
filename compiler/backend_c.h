/*
 * backend_c: `fusec run --backend c` and `fusec emit-c`: turns a LoopProgram into C with
 * emit_c, writes it with the runtime header beside it, and for `run` compiles it with the
 * system C compiler into a shared object in a private temporary directory and loads it.
 */
#ifndef FUSE_BACKEND_C_H
#define FUSE_BACKEND_C_H

#include <stdbool.h>

#include "ctx.h"
#include "diag.h"
#include "fuse_rt.h"
#include "loop.h"
#include "util.h"

/* A compiled and loaded kernel. */
typedef struct CKernel {
    void *handle;                    /* owns: dlopen handle */
    char *dir;                       /* owns: the temporary directory (removed by unload) */
    const fuse_rt_kernel_info *info; /* inside the loaded object */
} CKernel;

/* Writes `<c_path>`, `<h_path>` and fuse_rt.h beside the header, all or nothing (an
 * OutputFiles set, outfile.h): a failure leaves no file written, half-written or replaced.
 * Requires: the three paths name three different files (outfile_same_file). Reports failures to
 * cx->diag. */
bool backend_c_write(Ctx *cx, const LoopProgram *p, const char *c_path, const char *h_path,
                     bool bounds_checks);

/* The path of the runtime header backend_c_write writes beside h_path, appended to out. */
void backend_c_rt_header_path(const char *h_path, StrBuf *out);

/* Emits, compiles (`$CC` or cc, -O3 -march=native, no fast-math) and loads p. A compiler
 * failure is an internal error, and the generated files are kept for inspection (the message
 * names them). */
bool backend_c_load(Ctx *cx, const LoopProgram *p, bool bounds_checks, CKernel *out);
void backend_c_unload(CKernel *k);

/* The widest f32 vector the host runs natively: 16 with AVX-512, 8 with AVX2, else 4. */
uint32_t backend_c_host_vector_lanes(void);

#endif
