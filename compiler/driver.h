/*
 * driver: the pipeline from a spec to a callable kernel, in one place for its three users: the
 * command line (main.c), the embedding API (fusec_api.c) and bench. Each step reports its
 * problems to cx->diag and returns a status; none of them prints anywhere else or exits.
 *
 *   driver_read_spec   file -> Source
 *   driver_parse       Source -> AST                          (scan, parse)
 *   driver_build       AST -> Graph of the entry              (sema, build)
 *   driver_optimize    Graph -> Graph                         (the passes, passes.h)
 *   driver_lower       Graph -> LoopProgram                   (passes, schedule, verified)
 *   driver_compile     LoopProgram -> fuse_rt_kernel_info     (emit-c + cc, or emit-llvm + JIT)
 */
#ifndef FUSE_DRIVER_H
#define FUSE_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "ast.h"
#include "backend_c.h"
#include "ctx.h"
#include "fuse_rt.h"
#include "graph.h"
#include "loop.h"
#include "passes.h"

/* The statuses every step returns; the command line exits with them (LANGUAGE.md §5). */
typedef enum DriverStatus {
    DRIVER_OK = 0,
    DRIVER_INPUT = 1, /* a problem in the user's spec, weights or files */
    DRIVER_USAGE = 2, /* a problem in how fusec was asked (e.g. which graph) */
} DriverStatus;

typedef enum Backend { BACKEND_INTERP, BACKEND_C, BACKEND_JIT } Backend;

/* How a graph becomes code. */
typedef struct KernelOptions {
    Backend backend;       /* BACKEND_C or BACKEND_JIT */
    uint32_t vector_lanes; /* f32 lanes of generated vectors (4, 8, 16); 0: the host's */
    bool bounds_checks;    /* generated C checks every index (BACKEND_C only) */
    const char *cpu;       /* JIT target CPU (--cpu); NULL: the host's */
    const char *features;  /* JIT target features (--features); NULL: the host's */
    PassOptions passes;    /* -O0, --dump-after, --time-passes; zero: every pass, quietly */
} KernelOptions;

/* The backends of this build, by name: "jit" (with LLVM), "c", "interp". */
const char *driver_backend_name(Backend b);
/* Parses a backend name. Returns false if it names no backend of this build. */
bool driver_parse_backend(const char *name, Backend *out);
/* jit in a build with LLVM, else c (LANGUAGE.md §5). */
Backend driver_default_backend(void);

/* Reads a spec file (at most FUSE_MAX_SOURCE_BYTES). Returns NULL after reporting why. */
Source *driver_read_spec(Diag *diag, const char *path);

/* Scans and parses cx->src. Returns NULL after reporting errors. */
Ast *driver_parse(Ctx *cx);

/* sema, then build of cx->entry (or the file's only graph). `purpose` names what the graph is
 * for in the message about a file without graphs ("run", "compile"). Returns NULL with
 * *status set: DRIVER_USAGE when the file has several graphs and no entry was chosen or the
 * entry names none of them, else DRIVER_INPUT. */
Graph *driver_build(Ctx *cx, const Ast *ast, const char *purpose, DriverStatus *status);

/* The widest vector the target runs natively, or opt's choice. */
uint32_t driver_vector_lanes(const KernelOptions *opt);

/* The graph passes on g as opt->passes says (passes_run). Returns the graph to schedule. */
const Graph *driver_optimize(Ctx *cx, const Graph *g, const KernelOptions *opt);

/* Optimizes g (driver_optimize) and lowers the result to loop IR; the verifier runs after
 * lowering (a failure is our bug). The program's flops and bytes stay those of g as written
 * (LANGUAGE.md section 5). Returns NULL after reporting an error. */
LoopProgram *driver_lower(Ctx *cx, const Graph *g, const KernelOptions *opt);

/* A compiled program: its kernel API and what keeps the code alive. */
typedef struct Compiled {
    const fuse_rt_kernel_info *info; /* NULL until compiled */
    uint32_t vector_lanes;
    double executed_flops; /* graph_flops of the optimized graph (driver_compile_graph) */
    CKernel c;             /* BACKEND_C: the loaded shared object */
    void *jit;             /* BACKEND_JIT: the Jit (jit.h) */
} Compiled;

/* Compiles p with opt->backend. On failure *out is empty (driver_release is still safe). */
DriverStatus driver_compile(Ctx *cx, const LoopProgram *p, const KernelOptions *opt, Compiled *out);
/* Lowers and compiles g. */
DriverStatus driver_compile_graph(Ctx *cx, const Graph *g, const KernelOptions *opt, Compiled *out);
/* Unloads the code. Every instance created from out->info must be destroyed before. */
void driver_release(Compiled *k);

#endif
