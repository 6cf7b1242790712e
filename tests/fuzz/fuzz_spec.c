/*
 * fuzz_spec: arbitrary bytes as a .fuse spec through every front-end stage: scan (the token
 * dump), parse, sema and build, for each graph of the file (at most MAX_ENTRIES) without and
 * with --dim bindings chosen from the input; a graph that builds is verified, dumped, lowered
 * (with or without the graph passes, then schedule_graph + loop_verify) and printed as C, since
 * those stages must take any graph the front end accepts. Diagnostics go to /dev/null: only the
 * exit paths are checked.
 *
 * Checked, besides the sanitizers: every stage that fails has reported an error (a stage never
 * fails silently), every graph it builds passes graph_verify, every loop program loop_verify.
 * Embedded NULs are allowed: the Source takes a length.
 */
#include "fuzz.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "arena.h"
#include "ast.h"
#include "ctx.h"
#include "diag.h"
#include "driver.h"
#include "emit_c.h"
#include "front.h"
#include "graph.h"
#include "loop.h"
#include "schedule.h"
#include "source.h"
#include "util.h"

enum {
    MAX_SPEC = 1 << 16, /* bytes; longer inputs only slow the search down */
    MAX_ENTRIES = 3,    /* graphs built per input */
    MAX_LOWERED = 4096, /* nodes; larger graphs are built but not lowered */
};

/* --dim values worth trying: small, the edges of validity, and overflows. */
static const int64_t dim_values[] = {1, 2, 3, 7, 64, 0, -1, (int64_t)1 << 40, INT64_MAX};

/* FNV-1a of the input, to choose the --dim bindings deterministically. */
static uint64_t hash_bytes(const uint8_t *data, size_t size)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 1099511628211ull;
    return h;
}

/* The first n dim names the file declares, in order. */
static size_t dim_names(const Ast *ast, const char **out, size_t n)
{
    size_t k = 0;
    for (const Decl *d = ast->decls; d && k < n; d = d->next)
        if (d->kind == DECL_DIM)
            for (const DimDef *def = d->dim.defs; def && k < n; def = def->next)
                out[k++] = def->name;
    return k;
}

/* Lowers a built graph, with the graph passes (driver_lower) or without, and prints it as C;
 * neither may fail on a graph that verified. */
static void lower(Ctx *cx, const Graph *g, uint64_t h)
{
    FILE *null = fuzz_null_stream();
    static const uint32_t lanes[] = {4, 8, 16};
    unsigned before = cx->diag->nerrors;
    LoopProgram *p;
    if ((h >> 2) & 1) {
        p = schedule_graph(cx, g, lanes[h % 3]);
        FUZZ_CHECK(!p || loop_verify(p, stderr));
    } else {
        KernelOptions ko = {.backend = BACKEND_C, .vector_lanes = lanes[h % 3]};
        p = driver_lower(cx, g, &ko); /* panics if loop_verify fails */
    }
    if (!p) {
        FUZZ_CHECK(cx->diag->nerrors > before); /* e.g. a buffer too large: reported */
        return;
    }
    loop_dump(p, null);
    StrBuf source = {0}, header = {0};
    EmitCOptions opt = {.header_name = "fuzz.h", .bounds_checks = (h >> 8) & 1};
    emit_c_program(p, &opt, &source, &header);
    sb_free(&source);
    sb_free(&header);
}

/* Builds cx->entry with the given bindings. */
static void build_one(Ctx *cx, const Ast *ast, const DimOverride *dims, size_t ndims, uint64_t h)
{
    cx->dims = dims;
    cx->ndims = ndims;
    unsigned before = cx->diag->nerrors;
    Graph *g = build_graph(cx, ast);
    if (!g) {
        FUZZ_CHECK(cx->diag->nerrors > before);
        return;
    }
    FUZZ_CHECK(cx->diag->nerrors == before);
    FUZZ_CHECK(graph_verify(g, stderr));
    graph_dump(g, fuzz_null_stream());
    (void)graph_flops(g);
    (void)graph_bytes(g);
    if (g->nnodes <= MAX_LOWERED)
        lower(cx, g, h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_SPEC)
        return 0;
    FILE *null = fuzz_null_stream();
    Source *src = source_new("fuzz.fuse", (const char *)data, size);

    Diag scan_diag;
    diag_init(&scan_diag, src, null);
    bool scanned = scan_dump_tokens(src, &scan_diag, null);
    FUZZ_CHECK(scanned == (scan_diag.nerrors == 0));

    Diag diag;
    diag_init(&diag, src, null);
    Ctx cx;
    ctx_init(&cx, src, &diag);
    Ast *ast = parse_source(src, cx.ast_arena, &diag);
    FUZZ_CHECK(ast ? diag.nerrors == 0 : diag.nerrors > 0);
    if (ast) {
        ast_dump(ast, null);
        bool ok = sema_check(&cx, ast);
        FUZZ_CHECK(ok == (diag.nerrors == 0));
        uint64_t h = hash_bytes(data, size);
        const char *names[2];
        size_t nnames = dim_names(ast, names, 2);
        DimOverride dims[3];
        for (size_t k = 0; k < nnames; k++)
            dims[k] = (DimOverride){names[k], dim_values[(h >> (4 * k)) % countof(dim_values)]};
        dims[nnames] = (DimOverride){"fuzz_unknown_dim", 2};
        unsigned entries = 0;
        for (const Decl *d = ast->decls; ok && d && entries < MAX_ENTRIES; d = d->next) {
            if (d->kind != DECL_GRAPH)
                continue;
            entries++;
            cx.entry = d->fn.name;
            build_one(&cx, ast, NULL, 0, h);
            if (nnames)
                build_one(&cx, ast, dims, nnames, h >> 16);
            if (h & 1)
                build_one(&cx, ast, dims + nnames, 1, h >> 24);
        }
        // An unknown entry and the default entry must be handled like any user error.
        if (ok) {
            cx.entry = (h >> 32) & 1 ? "fuzz_no_such_graph" : NULL;
            build_one(&cx, ast, NULL, 0, h >> 40);
        }
    }
    ctx_free(&cx);
    source_free(src);
    return 0;
}
