/*
 * test_support: see test_support.h.
 */
#include "test_support.h"

#include <float.h>
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

int64_t test_ulp_distance(float got, float want)
{
    if (isnan(want) || isnan(got))
        return isnan(want) && isnan(got) ? 0 : INT64_MAX;
    int32_t a, b;
    memcpy(&a, &got, 4);
    memcpy(&b, &want, 4);
    int64_t oa = a < 0 ? (int64_t)INT32_MIN - a : a;
    int64_t ob = b < 0 ? (int64_t)INT32_MIN - b : b;
    return oa > ob ? oa - ob : ob - oa;
}

double test_math_reference(LoopOp op, double x)
{
    switch (op) {
    case LOP_EXP:
        return exp(x);
    case LOP_TANH:
        return tanh(x);
    case LOP_SIGMOID:
        return 1.0 / (1.0 + exp(-x));
    case LOP_NEG:
        return -x;
    case LOP_ABS:
        return fabs(x);
    case LOP_SQRT:
        return sqrt(x);
    case LOP_FLOOR:
        return floor(x);
    default:
        fail_msg("no reference for loop op %d", (int)op);
    }
    return 0;
}

uint32_t test_lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(*s >> 33);
}

float *test_math_inputs(float range, int64_t n)
{
    static const float specials[] = {
        0.0f,         -0.0f,        INFINITY,     -INFINITY,     NAN,          -NAN,
        88.7228317f,  88.7228394f,  88.72284f,    89.0f,         -87.3365479f, -87.33655f,
        -103.972076f, -103.972084f, -103.98f,     -104.0f,       -150.0f,      150.0f,
        1e-30f,       -1e-30f,      FLT_MIN,      1e-45f,        FLT_MAX,      -FLT_MAX,
        0.625f,       -0.625f,      0.927734375f, -0.927734375f, 9.0f,         3.92f,
        20.0f,        -20.0f,       0.5f,         1.0f,          -1.0f,        1e-8f};
    float *x = xmalloc((size_t)n * sizeof *x);
    uint64_t seed = 42;
    size_t ns = countof(specials);
    for (int64_t i = 0; i < n; i++) {
        if ((size_t)i < ns)
            x[i] = specials[i];
        else if (i % 4 == 3)
            x[i] = (test_lcg(&seed) & 1 ? -1.0f : 1.0f) *
                   ldexpf(1.0f + (float)test_lcg(&seed) / 4294967296.0f,
                          (int)(test_lcg(&seed) % 48) - 40);
        else
            x[i] = -range + 2.0f * range * (float)((double)i / (double)n);
    }
    return x;
}

/* ---- streaming stores ---- */

LoopProgram *test_streaming_program(Arena *arena, uint32_t lanes, int64_t n)
{
    LoopProgram *p = loop_program_new(arena, "st");
    LoopBuffer *x = loop_add_buffer(p, "x", BUF_INPUT, 0, n);
    LoopBuffer *y = loop_add_buffer(p, "y", BUF_OUTPUT, 0, n);
    x->rank = y->rank = 1;
    x->shape[0] = y->shape[0] = n;
    LoopKernel *k = loop_add_kernel(p, "twice", "y = 2x + 1, streaming", false);
    const LoopType i64 = {LT_I64, 1};
    int64_t nv = n / lanes * lanes;
    LoopVar *i = loop_var(p, k, "i", i64);
    LoopStmt *body = ls_block(p);
    LoopExpr *v =
        lx_fma(p, lx_load(p, x, lx_var(p, i), lanes), lx_broadcast(p, lx_const_f(p, 2.0f), lanes),
               lx_broadcast(p, lx_const_f(p, 1.0f), lanes));
    ls_append(p, body, ls_store_streaming(p, y, lx_var(p, i), v));
    ls_append(p, k->body,
              ls_for(p, i, lx_const_i(p, 0), lx_const_i(p, nv), lanes, FOR_PARALLEL, body));
    LoopVar *j = loop_var(p, k, "j", i64);
    LoopStmt *tail = ls_block(p);
    ls_append(p, tail,
              ls_store(p, y, lx_var(p, j),
                       lx_fma(p, lx_load(p, x, lx_var(p, j), 1), lx_const_f(p, 2.0f),
                              lx_const_f(p, 1.0f))));
    ls_append(p, k->body, ls_for(p, j, lx_const_i(p, nv), lx_const_i(p, n), 1, FOR_SERIAL, tail));
    return p;
}

void test_streaming_check(const fuse_rt_kernel_info *info, fuse_rt_kernel *k, int64_t n)
{
    enum { MAX_OFFSET = 16, PAD = 32 };
    float *x = xmalloc((size_t)n * sizeof(float));
    for (int64_t j = 0; j < n; j++)
        x[j] = (float)j * 0.5f - 7.0f;
    float *block = aligned_alloc(64, ((size_t)n + PAD + 15) / 16 * 16 * sizeof(float));
    assert_non_null(block);
    for (int offset = 0; offset <= MAX_OFFSET; offset++) {
        for (int64_t j = 0; j < n + PAD; j++)
            block[j] = -1.0f;
        float *y = block + offset;
        const float *in[] = {x};
        float *out[] = {y};
        char err[FUSE_RT_ERR_MAX] = "";
        if (info->run(k, in, out, err, sizeof err) != FUSE_RT_OK)
            fail_msg("streaming run at offset %d: %s", offset, err);
        for (int64_t j = 0; j < n; j++)
            if (y[j] != x[j] * 2.0f + 1.0f)
                fail_msg("streaming store at offset %d: y[%lld] = %g, want %g", offset,
                         (long long)j, (double)y[j], (double)(x[j] * 2.0f + 1.0f));
        for (int64_t j = 0; j < n + PAD; j++)
            if ((j < offset || j >= offset + n) && block[j] != -1.0f)
                fail_msg("streaming store at offset %d wrote outside y at %lld", offset,
                         (long long)j);
    }
    free(block);
    free(x);
}

LoopProgram *test_reduce_program(Arena *arena, uint32_t lanes)
{
    LoopProgram *p = loop_program_new(arena, "red");
    const int64_t n = (int64_t)TEST_REDUCE_VECTORS * lanes;
    LoopBuffer *x = loop_add_buffer(p, "x", BUF_INPUT, 0, n);
    LoopBuffer *y = loop_add_buffer(p, "y", BUF_OUTPUT, 0, TEST_REDUCE_VECTORS);
    LoopBuffer *z = loop_add_buffer(p, "z", BUF_OUTPUT, 1, TEST_REDUCE_VECTORS);
    x->rank = y->rank = z->rank = 1;
    x->shape[0] = n;
    y->shape[0] = z->shape[0] = TEST_REDUCE_VECTORS;
    LoopKernel *k = loop_add_kernel(p, "across", "max and min across lanes", false);
    LoopVar *v = loop_var(p, k, "v", (LoopType){LT_I64, 1});
    LoopStmt *body = ls_block(p);
    LoopExpr *at = lx_binary(p, LOP_MUL, lx_var(p, v), lx_const_i(p, lanes));
    ls_append(p, body,
              ls_store(p, y, lx_var(p, v), lx_reduce(p, LOP_MAX, lx_load(p, x, at, lanes))));
    ls_append(p, body,
              ls_store(p, z, lx_var(p, v), lx_reduce(p, LOP_MIN, lx_load(p, x, at, lanes))));
    ls_append(
        p, k->body,
        ls_for(p, v, lx_const_i(p, 0), lx_const_i(p, TEST_REDUCE_VECTORS), 1, FOR_SERIAL, body));
    return p;
}

static float float_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The lane-order fold of the generated code: r = (x REL r || r != r) ? r : x. */
static float fold_lanes(const float *x, uint32_t lanes, bool max)
{
    float r = x[0];
    for (uint32_t l = 1; l < lanes; l++)
        r = ((max ? x[l] < r : x[l] > r) || r != r) ? r : x[l];
    return r;
}

void test_reduce_check(const fuse_rt_kernel_info *info, fuse_rt_kernel *k, uint32_t lanes)
{
    /* few distinct values, so that ties (and ties of -0 and +0) are common */
    const float pool[] = {-0.0f,
                          0.0f,
                          1.0f,
                          -1.0f,
                          2.0f,
                          INFINITY,
                          -INFINITY,
                          float_bits(0x7fc00001u),
                          float_bits(0xffc00002u),
                          float_bits(0x7fc12345u)};
    const int64_t n = (int64_t)TEST_REDUCE_VECTORS * lanes;
    float *x = malloc((size_t)n * sizeof *x);
    float y[TEST_REDUCE_VECTORS], z[TEST_REDUCE_VECTORS];
    uint64_t seed = 99;
    for (int64_t i = 0; i < n; i++) {
        uint32_t r = test_lcg(&seed);
        /* vectors 0..99 without NaN, the rest with a NaN in about one lane of 8 */
        uint32_t choices = i / lanes < TEST_REDUCE_VECTORS / 2 || r % 8 ? 7 : 10;
        x[i] = pool[(r >> 8) % choices];
    }
    const float *in[] = {x};
    float *out[] = {y, z};
    char err[FUSE_RT_ERR_MAX] = "";
    assert_int_equal(info->run(k, in, out, err, sizeof err), 0);
    for (int64_t v = 0; v < TEST_REDUCE_VECTORS; v++) {
        float want_max = fold_lanes(x + v * lanes, lanes, true);
        float want_min = fold_lanes(x + v * lanes, lanes, false);
        if (memcmp(&y[v], &want_max, 4) != 0 || memcmp(&z[v], &want_min, 4) != 0)
            fail_msg("lanes %u, vector %lld: max %a min %a, want %a %a", lanes, (long long)v,
                     (double)y[v], (double)z[v], (double)want_max, (double)want_min);
    }
    free(x);
}
