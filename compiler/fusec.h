/*
 * fusec.h: the compiler as a library. Compiles a .fuse spec, held in memory or in a file, for
 * concrete dims into a kernel at run time, JIT-compiled with LLVM (or, with backend "c", by the
 * system C compiler). The kernel has the API of a kernel generated at build time
 * (fuse_rt_kernel_info in fuse_rt.h: create, run, destroy, and its signature), so a program
 * switches between the two by changing the one line that obtains the info.
 *
 *     fusec_options opt = {.entry = "fuse_hl", .dims = (fusec_dim[]){{"H", 96}, {"W", 160}},
 *                          .ndims = 2};
 *     char err[4096];
 *     fusec_module *m;
 *     if (fusec_compile_file("concat_conv.fuse", &opt, &m, err, sizeof err) != FUSE_RT_OK)
 *         { fputs(err, stderr); ... }
 *     const fuse_rt_kernel_info *info = fusec_module_info(m);
 *     fuse_rt_kernel *k;
 *     fuse_rt_kernel_create_from_file(info, "weights.safetensors", "", pool, &k, err, sizeof err);
 *     info->run(k, inputs, outputs, err, sizeof err);
 *     info->destroy(k);
 *     fusec_module_free(m);
 *
 * Errors are values: every function returns FUSE_RT_OK or a FUSE_RT_E* code with the
 * diagnostics in err (the same text `fusec check` prints, with file, line, column and caret,
 * truncated to errlen). Nothing here prints, exits or aborts on any spec, option or file.
 * Functions are thread-safe: modules may be compiled and used from several threads at once.
 */
#ifndef FUSEC_H
#define FUSEC_H

#include <stddef.h>
#include <stdint.h>

#include "fuse_rt.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FUSEC_VERSION "0.1.0"

/* A dim binding, as `--dim NAME=VALUE`: overrides the spec's default. */
typedef struct fusec_dim {
    const char *name;
    int64_t value;
} fusec_dim;

/* Options; all-zero (or a NULL pointer) means the command line's defaults. */
typedef struct fusec_options {
    const char *entry;     /* the graph to compile (--entry); NULL: the file's only graph */
    const char *prefix;    /* weight key prefix (--prefix); NULL: none */
    const fusec_dim *dims; /* ndims bindings (--dim) */
    size_t ndims;
    const char *backend;   /* "jit" or "c" (--backend); NULL: jit when built with LLVM, else c */
    const char *cpu;       /* JIT target CPU, e.g. "znver4" (--cpu); NULL: the host's */
    const char *features;  /* JIT target features, e.g. "+avx2,+fma" (--features); NULL: host */
    uint32_t vector_lanes; /* f32 lanes of generated vectors: 4, 8 or 16; 0: the host's */
} fusec_options;

/* A compiled graph: its machine code and the kernel info that describes it. Instances
 * created from the info must be destroyed before the module is freed. */
typedef struct fusec_module fusec_module;

/* Compiles `len` bytes of spec text (NULs allowed); `name` is the file name diagnostics show
 * (NULL: "<string>"). FUSE_RT_EFORMAT: the spec has errors (diagnosed in err), or the code
 * could not be generated (e.g. backend "c" and no working C compiler); FUSE_RT_EINVAL: an
 * option is invalid, or the entry is missing or names no graph of the spec. */
int fusec_compile_string(const char *text, size_t len, const char *name, const fusec_options *opt,
                         fusec_module **out, char *err, size_t errlen);

/* The same for a file. FUSE_RT_EIO: the file cannot be read. */
int fusec_compile_file(const char *path, const fusec_options *opt, fusec_module **out, char *err,
                       size_t errlen);

/* The kernel: valid until fusec_module_free. */
const fuse_rt_kernel_info *fusec_module_info(const fusec_module *m);

/* Milliseconds from spec text to callable code, for this module. */
double fusec_module_compile_ms(const fusec_module *m);

/* NULL is allowed. */
void fusec_module_free(fusec_module *m);

/* FUSEC_VERSION and the backends of this build, e.g. "0.1.0 (backends: jit c)". */
const char *fusec_version(void);

#ifdef __cplusplus
}
#endif

#endif
