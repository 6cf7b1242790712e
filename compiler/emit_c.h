/*
 * emit_c: LoopProgram -> C11 source and header that depend on nothing but runtime/fuse_rt.h
 * and libm. Vectors use GCC/clang vector extensions of the program's width; multiply-adds are
 * explicit fmas; nothing relies on -ffast-math. The output implements the API of
 * fuse_rt_kernel_info for one graph (create/run/destroy, descriptors, constants).
 */
#ifndef FUSE_EMIT_C_H
#define FUSE_EMIT_C_H

#include <stdbool.h>

#include "loop.h"
#include "util.h"

typedef struct EmitCOptions {
    const char *header_name; /* how the source includes its header, e.g. "fuse_hl.h" */
    bool bounds_checks;      /* check every load and store index (for tests; slow) */
} EmitCOptions;

/* Requires: loop_verify(p). Appends the C source to `source` and the header to `header`.
 * The public symbols are fuse_k_<p->name>_info / _create / _run / _destroy. */
void emit_c_program(const LoopProgram *p, const EmitCOptions *opt, StrBuf *source, StrBuf *header);

/* The text of runtime/fuse_rt.h this compiler was built with (emit-c writes it beside its
 * output so the generated code compiles with nothing installed). Generated at build time. */
extern const char fuse_rt_header_text[];
extern const unsigned long fuse_rt_header_text_size;

#endif
