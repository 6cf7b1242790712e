/*
 * driver: spec -> graph -> loop IR -> kernel (see driver.h).
 */
#include "driver.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "front.h"
#include "schedule.h"
#include "util.h"

#ifdef FUSE_WITH_LLVM
#include "jit.h"
#endif

const char *driver_backend_name(Backend b)
{
    switch (b) {
    case BACKEND_INTERP:
        return "interp";
    case BACKEND_C:
        return "c";
    case BACKEND_JIT:
        return "jit";
    }
    return "?";
}

bool driver_parse_backend(const char *name, Backend *out)
{
#ifdef FUSE_WITH_LLVM
    const Backend available[] = {BACKEND_JIT, BACKEND_C, BACKEND_INTERP};
#else
    const Backend available[] = {BACKEND_C, BACKEND_INTERP};
#endif
    for (size_t i = 0; i < sizeof available / sizeof available[0]; i++)
        if (strcmp(name, driver_backend_name(available[i])) == 0) {
            *out = available[i];
            return true;
        }
    return false;
}

Backend driver_default_backend(void)
{
#ifdef FUSE_WITH_LLVM
    return BACKEND_JIT;
#else
    return BACKEND_C;
#endif
}

Source *driver_read_spec(Diag *diag, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        diag_report_file(diag, DIAG_ERROR, NULL, "cannot read '%s': %s", path, strerror(errno));
        return NULL;
    }
    StrBuf text = {0};
    char buf[65536];
    size_t n;
    bool too_big = false;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        if (text.len + n > FUSE_MAX_SOURCE_BYTES) {
            too_big = true;
            break;
        }
        sb_append_n(&text, buf, n);
    }
    bool failed = ferror(f);
    int err = errno;
    fclose(f);
    Source *src = NULL;
    if (too_big)
        diag_report_file(diag, DIAG_ERROR, NULL, "'%s' is larger than %u bytes", path,
                         FUSE_MAX_SOURCE_BYTES);
    else if (failed)
        diag_report_file(diag, DIAG_ERROR, NULL, "cannot read '%s': %s", path, strerror(err));
    else
        src = source_new(path, sb_str(&text), text.len);
    sb_free(&text);
    return src;
}

Ast *driver_parse(Ctx *cx)
{
    return parse_source(cx->src, cx->ast_arena, cx->diag);
}

static uint32_t count_graphs(const Ast *ast)
{
    uint32_t n = 0;
    for (const Decl *d = ast->decls; d; d = d->next)
        n += d->kind == DECL_GRAPH;
    return n;
}

static const Decl *find_graph(const Ast *ast, const char *name)
{
    for (const Decl *d = ast->decls; d; d = d->next)
        if (d->kind == DECL_GRAPH && strcmp(d->fn.name, name) == 0)
            return d;
    return NULL;
}

Graph *driver_build(Ctx *cx, const Ast *ast, const char *purpose, DriverStatus *status)
{
    *status = DRIVER_INPUT;
    if (!sema_check(cx, ast))
        return NULL;
    uint32_t ngraphs = count_graphs(ast);
    if (ngraphs == 0) {
        diag_report_file(cx->diag, DIAG_ERROR, cx->src->name,
                         "no graph to %s: the file declares no 'graph'", purpose);
        return NULL;
    }
    if (!cx->entry && ngraphs > 1) {
        StrBuf names = {0};
        for (const Decl *d = ast->decls; d; d = d->next)
            if (d->kind == DECL_GRAPH)
                sb_printf(&names, "%s%s", names.len ? ", " : "", d->fn.name);
        diag_report_file(cx->diag, DIAG_ERROR, NULL,
                         "%s has %u graphs (%s); choose one with --entry", cx->src->name, ngraphs,
                         sb_str(&names));
        sb_free(&names);
        *status = DRIVER_USAGE;
        return NULL;
    }
    Graph *g = build_graph(cx, ast);
    if (!g) {
        /* build explains an entry that names no graph; it is a usage error. */
        if (cx->entry && !find_graph(ast, cx->entry))
            *status = DRIVER_USAGE;
        return NULL;
    }
    if (cx->verify_each && !graph_verify(g, stderr))
        fuse_panic(__FILE__, __LINE__, "graph invalid after build");
    *status = DRIVER_OK;
    return g;
}

uint32_t driver_vector_lanes(const KernelOptions *opt)
{
    return opt->vector_lanes ? opt->vector_lanes : backend_c_host_vector_lanes();
}

const Graph *driver_optimize(Ctx *cx, const Graph *g, const KernelOptions *opt)
{
    return passes_run(cx, g, &opt->passes);
}

/* driver_lower, also telling the FLOPs of the graph that was scheduled. */
static LoopProgram *lower(Ctx *cx, const Graph *g, const KernelOptions *opt, double *executed_flops)
{
    const Graph *opt_g = driver_optimize(cx, g, opt);
    LoopProgram *p = schedule_graph(cx, opt_g, driver_vector_lanes(opt));
    if (p && !loop_verify(p, stderr))
        fuse_panic(__FILE__, __LINE__, "loop IR invalid after schedule");
    if (p) { /* the kernel reports the graph as written; bench reports what runs */
        p->flops = graph_flops(g);
        p->bytes = graph_bytes(g);
    }
    if (executed_flops)
        *executed_flops = graph_flops(opt_g);
    return p;
}

LoopProgram *driver_lower(Ctx *cx, const Graph *g, const KernelOptions *opt)
{
    return lower(cx, g, opt, NULL);
}

DriverStatus driver_compile(Ctx *cx, const LoopProgram *p, const KernelOptions *opt, Compiled *out)
{
    memset(out, 0, sizeof *out);
    out->vector_lanes = p->vector_lanes;
    switch (opt->backend) {
    case BACKEND_JIT: {
#ifdef FUSE_WITH_LLVM
        if (opt->bounds_checks) {
            diag_report_file(cx->diag, DIAG_ERROR, NULL,
                             "bounds checks need the C backend: the JIT has no checked mode");
            return DRIVER_USAGE;
        }
        JitOptions jo = {.cpu = opt->cpu, .features = opt->features};
        Jit *jit = jit_compile(cx, p, &jo);
        if (!jit)
            return DRIVER_INPUT;
        out->jit = jit;
        out->info = jit_kernel_info(jit);
        return DRIVER_OK;
#else
        break;
#endif
    }
    case BACKEND_C:
        if (!backend_c_load(cx, p, opt->bounds_checks, &out->c))
            return DRIVER_INPUT;
        out->info = out->c.info;
        return DRIVER_OK;
    case BACKEND_INTERP:
        break;
    }
    diag_report_file(cx->diag, DIAG_ERROR, NULL, "backend '%s' generates no code in this build",
                     driver_backend_name(opt->backend));
    return DRIVER_USAGE;
}

DriverStatus driver_compile_graph(Ctx *cx, const Graph *g, const KernelOptions *opt, Compiled *out)
{
    memset(out, 0, sizeof *out);
    double executed_flops = 0;
    LoopProgram *p = lower(cx, g, opt, &executed_flops);
    DriverStatus status = p ? driver_compile(cx, p, opt, out) : DRIVER_INPUT;
    out->executed_flops = executed_flops;
    return status;
}

void driver_release(Compiled *k)
{
#ifdef FUSE_WITH_LLVM
    jit_free(k->jit);
#endif
    backend_c_unload(&k->c);
    memset(k, 0, sizeof *k);
}
