/*
 * test_support: see test_support.h.
 */
#include "test_support.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "front.h"
#include "interp.h"
#include "shape.h"
#include "util.h"

static DimOverride parsed_dims[16];
static char dims_copy[256];

static size_t parse_dims(const char *dims)
{
    if (!dims)
        return 0;
    size_t n = 0;
    snprintf(dims_copy, sizeof dims_copy, "%s", dims);
    for (char *tok = strtok(dims_copy, ","); tok && n < 16; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        if (!eq)
            continue;
        *eq = '\0';
        parsed_dims[n].name = tok;
        parsed_dims[n].value = strtoll(eq + 1, NULL, 10);
        n++;
    }
    return n;
}

static void setup(TestCompile *t, const char *text)
{
    memset(t, 0, sizeof *t);
    t->src = source_new("test.fuse", text, strlen(text));
    t->diag_out = open_memstream(&t->diag_text, &t->diag_len);
    diag_init(&t->diag, t->src, t->diag_out);
    ctx_init(&t->cx, t->src, &t->diag);
}

Ast *test_parse(TestCompile *t, const char *text)
{
    setup(t, text);
    t->ast = parse_source(t->src, t->cx.ast_arena, &t->diag);
    return t->ast;
}

bool test_compile(TestCompile *t, const char *text, const char *entry, const char *dims)
{
    setup(t, text);
    t->cx.entry = entry;
    t->cx.dims = parsed_dims;
    t->cx.ndims = parse_dims(dims);
    t->ast = parse_source(t->src, t->cx.ast_arena, &t->diag);
    if (!t->ast || !sema_check(&t->cx, t->ast))
        return false;
    t->graph = build_graph(&t->cx, t->ast);
    return t->graph != NULL;
}

const char *test_diagnostics(TestCompile *t)
{
    fflush(t->diag_out);
    return t->diag_text ? t->diag_text : "";
}

void test_compile_free(TestCompile *t)
{
    ctx_free(&t->cx);
    if (t->diag_out)
        fclose(t->diag_out);
    free(t->diag_text);
    source_free(t->src);
    memset(t, 0, sizeof *t);
}

char *test_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot read %s", path);
    StrBuf sb = {0};
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sb_append_n(&sb, buf, n);
    fclose(f);
    return sb.data ? sb.data : xcalloc(1, 1);
}

static float frand(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*state >> 40) / (double)(1ull << 24)) * 4.0f - 2.0f;
}

void test_data_new(TestData *d, const Graph *g, uint64_t seed)
{
    uint64_t rng = seed;
    d->ins = xcalloc(g->ninputs + 1, sizeof(float *));
    d->prm = xcalloc(g->nparams + 1, sizeof(float *));
    d->want = xcalloc(g->noutputs + 1, sizeof(float *));
    d->got = xcalloc(g->noutputs + 1, sizeof(float *));
    d->weights = xcalloc(g->nparams + 1, sizeof(fuse_rt_weight));
    for (uint32_t i = 0; i < g->ninputs; i++) {
        int64_t n = shape_numel(&g->inputs[i]->shape);
        d->ins[i] = xmalloc((size_t)n * sizeof(float) + 4);
        for (int64_t j = 0; j < n; j++)
            d->ins[i][j] = frand(&rng);
    }
    for (uint32_t i = 0; i < g->nparams; i++) {
        const Node *p = g->params[i];
        int64_t n = shape_numel(&p->shape);
        d->prm[i] = xmalloc((size_t)n * sizeof(float) + 4);
        bool var = strstr(p->attr.param.key, "running_var") != NULL;
        for (int64_t j = 0; j < n; j++)
            d->prm[i][j] = var ? fabsf(frand(&rng)) + 0.5f : frand(&rng);
        d->weights[i] = (fuse_rt_weight){p->attr.param.key, d->prm[i], p->shape.rank, p->shape.dim};
    }
    for (uint32_t o = 0; o < g->noutputs; o++) {
        size_t n = (size_t)shape_numel(&g->outputs[o]->shape);
        d->want[o] = xcalloc(n + 1, sizeof(float));
        d->got[o] = xcalloc(n + 1, sizeof(float));
    }
}

void test_data_free(TestData *d, const Graph *g)
{
    for (uint32_t i = 0; i < g->ninputs; i++)
        free(d->ins[i]);
    for (uint32_t i = 0; i < g->nparams; i++)
        free(d->prm[i]);
    for (uint32_t o = 0; o < g->noutputs; o++) {
        free(d->want[o]);
        free(d->got[o]);
    }
    free(d->ins);
    free(d->prm);
    free(d->want);
    free(d->got);
    free(d->weights);
}

void test_data_interp(TestData *d, const Graph *g)
{
    char err[256];
    if (!interp_run(g, (const float *const *)d->prm, (const float *const *)d->ins, d->want, err,
                    sizeof err))
        fail_msg("interp: %s", err);
}

void test_data_run(const fuse_rt_kernel_info *info, const Graph *g, TestData *d, int threads)
{
    char err[FUSE_RT_ERR_MAX] = "";
    fuse_rt_pool *pool = NULL;
    if (threads > 1 && fuse_rt_pool_create(threads, &pool, err, sizeof err) != FUSE_RT_OK)
        fail_msg("pool: %s", err);
    fuse_rt_kernel *k = NULL;
    if (info->create(d->weights, g->nparams, pool, &k, err, sizeof err) != FUSE_RT_OK)
        fail_msg("create: %s", err);
    if (info->run(k, (const float *const *)d->ins, d->got, err, sizeof err) != FUSE_RT_OK)
        fail_msg("run: %s", err);
    info->destroy(k);
    fuse_rt_pool_destroy(pool);
}

void test_data_compare(const Graph *g, const TestData *d, const char *what)
{
    for (uint32_t o = 0; o < g->noutputs; o++) {
        int64_t n = shape_numel(&g->outputs[o]->shape);
        const float *want = d->want[o], *got = d->got[o];
        double mx = 1.0;
        for (int64_t j = 0; j < n; j++)
            if (isfinite(want[j]) && fabs(want[j]) > mx)
                mx = fabs(want[j]);
        for (int64_t j = 0; j < n; j++) {
            bool same = (isnan(want[j]) && isnan(got[j])) || want[j] == got[j];
            double e = same ? 0.0 : fabs((double)want[j] - (double)got[j]);
            if (!(e <= 1e-4 * mx))
                fail_msg("%s: output %u[%lld] = %.9g, want %.9g", what, o, (long long)j,
                         (double)got[j], (double)want[j]);
        }
    }
}
