/*
 * test_emit_c: emit_c_program end to end. Small hand-built loop programs (one per expression
 * kind and op, at 1, 4, 8 and 16 lanes) are emitted, compiled with gcc and clang-14 under
 * -std=c11 -Wall -Wextra -Wpedantic -Werror at several optimization levels, loaded with dlopen
 * and run through their fuse_rt_kernel_info; results are compared with C computed here. The
 * math expansions (EXP, SIGMOID, TANH, ERF) are checked to <= 2 ulp against the correctly
 * rounded result (computed in double) on a dense sample plus the special values; the
 * bounds-checked mode must report an out-of-bounds store without writing out of bounds;
 * streaming stores must write what plain ones do at any alignment of the output.
 * Each compiled kernel is linked with its own copy of the runtime (runtime/ *.c, compiled once
 * per compiler into a mkdtemp directory).
 */
#include <dlfcn.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "arena.h"
#include "emit_c.h"
#include "fuse_rt.h"
#include "loop.h"
#include "test_support.h"

#define F32 ((LoopType){LT_F32, 1})
#define I64 ((LoopType){LT_I64, 1})

/* The group's state: a temp directory, which compilers have a runtime built there, and a
 * counter naming the shared objects. */
typedef struct Env {
    char dir[64];
    bool rt_built[2];
    int nbuilt;
} Env;

typedef struct Compiler {
    const char *cc;
    int id; /* index into Env.rt_built */
    const char *flags;
} Compiler;

/* A loaded kernel. */
typedef struct Loaded {
    void *dl;
    const fuse_rt_kernel_info *info;
    fuse_rt_kernel *k;
} Loaded;

static int env_setup(void **state)
{
    Env *env = calloc(1, sizeof *env);
    snprintf(env->dir, sizeof env->dir, "/tmp/fuse_emit_c_XXXXXX");
    if (!env || !mkdtemp(env->dir))
        return -1;
    *state = env;
    return 0;
}

static int env_teardown(void **state)
{
    Env *env = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", env->dir);
    int rc = system(cmd);
    free(env);
    return rc == 0 ? 0 : -1;
}

static void write_text(const char *dir, const char *name, const char *text, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static int run_cmd(const char *cmd, const char *log)
{
    int rc = system(cmd);
    if (rc != 0) {
        char show[512];
        snprintf(show, sizeof show, "head -c 6000 %s >&2", log);
        fprintf(stderr, "command failed: %s\n", cmd);
        (void)system(show);
    }
    return rc;
}

/* Compiles runtime/ *.c once per compiler into <dir>/rt<id>.a. */
static void build_runtime(Env *env, const Compiler *c)
{
    if (env->rt_built[c->id])
        return;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd %s && mkdir -p rt%d && cd rt%d && %s -std=c11 -O2 -fPIC -D_POSIX_C_SOURCE=200809L "
             "-D_DEFAULT_SOURCE -c %s/../runtime/*.c >log.txt 2>&1 && ar rcs ../rt%d.a *.o",
             env->dir, c->id, c->id, c->cc, FUSE_TEST_DATA_DIR, c->id);
    char log[128];
    snprintf(log, sizeof log, "%s/rt%d/log.txt", env->dir, c->id);
    assert_int_equal(run_cmd(cmd, log), 0);
    env->rt_built[c->id] = true;
}

/* Emits p, compiles it with c (warnings are errors), loads it and creates an instance with the
 * given weights. */
static Loaded load_program(Env *env, const LoopProgram *p, const Compiler *c, bool bounds,
                           const fuse_rt_weight *weights, size_t nweights)
{
    assert_true(loop_verify(p, stderr));
    build_runtime(env, c);
    StrBuf src = {0}, hdr = {0};
    char hname[64];
    int id = env->nbuilt++;
    snprintf(hname, sizeof hname, "k%d.h", id);
    EmitCOptions opt = {.header_name = hname, .bounds_checks = bounds};
    emit_c_program(p, &opt, &src, &hdr);
    char cname[64];
    snprintf(cname, sizeof cname, "k%d.c", id);
    write_text(env->dir, cname, src.data, src.len);
    write_text(env->dir, hname, hdr.data, hdr.len);
    write_text(env->dir, "fuse_rt.h", fuse_rt_header_text, fuse_rt_header_text_size);
    sb_free(&src);
    sb_free(&hdr);
    char cmd[2048], log[128];
    snprintf(log, sizeof log, "%s/k%d.log", env->dir, id);
    snprintf(cmd, sizeof cmd,
             "cd %s && %s -std=c11 %s -Wall -Wextra -Wpedantic -Werror -fPIC -shared k%d.c rt%d.a "
             "-o k%d.so -lm -lpthread >k%d.log 2>&1",
             env->dir, c->cc, c->flags, id, c->id, id, id);
    assert_int_equal(run_cmd(cmd, log), 0);
    char so[128], sym[128];
    snprintf(so, sizeof so, "%s/k%d.so", env->dir, id);
    Loaded l = {.dl = dlopen(so, RTLD_NOW | RTLD_LOCAL)};
    if (!l.dl)
        fprintf(stderr, "dlopen: %s\n", dlerror());
    assert_non_null(l.dl);
    snprintf(sym, sizeof sym, "fuse_k_%s_info", p->name);
    l.info = dlsym(l.dl, sym);
    assert_non_null(l.info);
    char err[FUSE_RT_ERR_MAX] = "";
    int rc = l.info->create(weights, nweights, NULL, &l.k, err, sizeof err);
    if (rc)
        fprintf(stderr, "create: %s\n", err);
    assert_int_equal(rc, 0);
    return l;
}

static void unload(Loaded *l)
{
    l->info->destroy(l->k);
    dlclose(l->dl);
}

static LoopBuffer *add_buf(LoopProgram *p, const char *name, LoopBufferKind kind, uint32_t index,
                           int64_t elems)
{
    LoopBuffer *b = loop_add_buffer(p, name, kind, index, elems);
    b->rank = 1;
    b->shape[0] = elems;
    return b;
}

static LoopExpr *ci(LoopProgram *p, int64_t i)
{
    return lx_const_i(p, i);
}

static LoopStmt *body_of(LoopStmt *s)
{
    return s->loop.body;
}

/* `for v in lo..hi step` with a fresh body, appended to block; returns the loop. */
static LoopStmt *add_for(LoopProgram *p, LoopStmt *block, LoopVar *v, int64_t lo, int64_t hi,
                         int64_t step)
{
    LoopStmt *s = ls_for(p, v, ci(p, lo), ci(p, hi), step, FOR_SERIAL, ls_block(p));
    ls_append(p, block, s);
    return s;
}

/* ---- unary ops: y = op(x), vectors of `lanes` then a scalar tail ---- */

typedef LoopExpr *(*BuildFn)(LoopProgram *p, LoopExpr *x);

static LoopProgram *unary_program(Arena *a, LoopOp op, uint32_t lanes, int64_t n)
{
    LoopProgram *p = loop_program_new(a, "un");
    LoopBuffer *x = add_buf(p, "x", BUF_INPUT, 0, n);
    LoopBuffer *y = add_buf(p, "y", BUF_OUTPUT, 0, n);
    LoopKernel *k = loop_add_kernel(p, "apply", "y = op(x), vectors then a scalar tail", false);
    int64_t nv = lanes > 1 ? n / lanes * lanes : 0;
    if (nv) {
        LoopVar *i = loop_var(p, k, "i", I64);
        LoopStmt *f = add_for(p, k->body, i, 0, nv, lanes);
        LoopExpr *v = lx_unary(p, op, lx_load(p, x, lx_var(p, i), lanes));
        ls_append(p, body_of(f), ls_store(p, y, lx_var(p, i), v));
    }
    LoopVar *j = loop_var(p, k, "j", I64);
    LoopStmt *f = add_for(p, k->body, j, nv, n, 1);
    ls_append(p, body_of(f),
              ls_store(p, y, lx_var(p, j), lx_unary(p, op, lx_load(p, x, lx_var(p, j), 1))));
    return p;
}

/* Runs a one-input one-output kernel. */
static void run1(Loaded *l, const float *x, float *y)
{
    const float *in[] = {x};
    float *out[] = {y};
    char err[FUSE_RT_ERR_MAX] = "";
    int rc = l->info->run(l->k, in, out, err, sizeof err);
    if (rc)
        fprintf(stderr, "run: %s\n", err);
    assert_int_equal(rc, 0);
}

/* Max ulp error of op over the sample, compiled by c at `lanes`. */
static int64_t math_error(Env *env, LoopOp op, uint32_t lanes, const Compiler *c, float range,
                          int64_t n)
{
    Arena *a = arena_new(1 << 16);
    LoopProgram *p = unary_program(a, op, lanes, n);
    Loaded l = load_program(env, p, c, false, NULL, 0);
    float *x = test_math_inputs(range, n);
    float *y = malloc((size_t)n * sizeof *y);
    run1(&l, x, y);
    int64_t worst = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t d = test_ulp_distance(y[i], (float)test_math_reference(op, (double)x[i]));
        if (d > worst) {
            worst = d;
            if (d > 2)
                fprintf(stderr, "%s(%a) = %a, want %a (%" PRId64 " ulp)\n", loop_op_name(op),
                        (double)x[i], (double)y[i], test_math_reference(op, (double)x[i]), d);
        }
    }
    free(x);
    free(y);
    unload(&l);
    arena_free(a);
    return worst;
}

static const Compiler gcc_o2 = {"gcc", 0, "-O2 -march=native"};
static const Compiler gcc_o0 = {"gcc", 0, "-O0"};
static const Compiler gcc_o3c = {"gcc", 0, "-O3 -march=native -ffp-contract=fast"};
static const Compiler clang_o3 = {"clang-14", 1, "-O3 -march=native -fno-math-errno"};
static const Compiler clang_o0 = {"clang-14", 1, "-O0 -march=native"};

static void check_math(void **state, LoopOp op, float range)
{
    Env *env = *state;
    const int64_t n = (1 << 21) + 7; /* not a multiple of 16: the scalar tail runs too */
    assert_true(math_error(env, op, 16, &gcc_o3c, range, n) <= 2);
    assert_true(math_error(env, op, 1, &clang_o3, range, 100003) <= 2);
    assert_true(math_error(env, op, 8, &clang_o3, range, 100003) <= 2);
    assert_true(math_error(env, op, 4, &gcc_o2, range, 100003) <= 2);
}

static void math_exp(void **state)
{
    check_math(state, LOP_EXP, 100.0f);
}

static void math_sigmoid(void **state)
{
    check_math(state, LOP_SIGMOID, 100.0f);
}

static void math_tanh(void **state)
{
    check_math(state, LOP_TANH, 100.0f);
}

/* NEG, ABS, SQRT, FLOOR are exact: compare bit for bit (NaN as NaN). */
static void exact_unary(void **state)
{
    Env *env = *state;
    static const LoopOp ops[] = {LOP_NEG, LOP_ABS, LOP_SQRT, LOP_FLOOR};
    static const uint32_t widths[] = {1, 4, 8, 16};
    const int64_t n = 1003;
    for (size_t o = 0; o < countof(ops); o++)
        for (size_t w = 0; w < countof(widths); w++) {
            Arena *a = arena_new(1 << 16);
            LoopProgram *p = unary_program(a, ops[o], widths[w], n);
            Loaded l = load_program(env, p, w % 2 ? &gcc_o0 : &clang_o3, false, NULL, 0);
            float *x = test_math_inputs(50.0f, n);
            float y[1003];
            run1(&l, x, y);
            for (int64_t i = 0; i < n; i++)
                assert_int_equal(
                    test_ulp_distance(y[i], (float)test_math_reference(ops[o], (double)x[i])), 0);
            free(x);
            unload(&l);
            arena_free(a);
        }
}

/* ---- the expression zoo: selects, compares, casts, min/max, fma, i64 and bool ops ---- */

enum { ZOO_N = 64, ZOO_OUTS = 10 };

/* y0 = select(a < b && a > 0 || a == b, a * b, a - b)   y1 = max(a, b)   y2 = min(a, b)
 * y3 = fma(a, b, 1.5)   y4 = f32(i64(a))   y5 = a / b
 * y6 = f32(i64(a) // 5) + 1000 * f32(i64(a) % 5)   (Python semantics on negatives)
 * y7 = f32((i - 37) // 3 - (i - 37) % 4) from the scalar loop variable
 * y8[64 + i / lanes] = reduce_add, y8[128 + i / lanes] = reduce_max, y8[192 + ...] = reduce_min
 * y9 = ldexp(a, 16 * f32(i64(b))): exact, subnormal, zero and inf results
 * (every output has 4 * ZOO_N elements; y0..y7 use the first ZOO_N) */
static LoopProgram *zoo_program(Arena *ar, uint32_t L)
{
    LoopProgram *p = loop_program_new(ar, "zoo");
    LoopBuffer *A = add_buf(p, "a", BUF_INPUT, 0, ZOO_N);
    LoopBuffer *B = add_buf(p, "b", BUF_INPUT, 1, ZOO_N);
    LoopBuffer *Y[ZOO_OUTS];
    for (uint32_t i = 0; i < ZOO_OUTS; i++) {
        char name[8];
        snprintf(name, sizeof name, "y%u", i);
        Y[i] = add_buf(p, name, BUF_OUTPUT, i, 4 * ZOO_N);
    }
    LoopKernel *k = loop_add_kernel(p, "zoo", "every expression kind", false);
    LoopVar *i = loop_var(p, k, "i", I64);
    LoopStmt *f = add_for(p, k->body, i, 0, ZOO_N, L);
    LoopStmt *bd = body_of(f);
    LoopVar *av = loop_var(p, k, "av", (LoopType){LT_F32, L});
    LoopVar *bv = loop_var(p, k, "bv", (LoopType){LT_F32, L});
    ls_append(p, bd, ls_decl(p, av, lx_load(p, A, lx_var(p, i), L)));
    ls_append(p, bd, ls_decl(p, bv, lx_load(p, B, lx_var(p, i), L)));
#define VA          lx_var(p, av)
#define VB          lx_var(p, bv)
#define BC(e)       (L > 1 ? lx_broadcast(p, (e), L) : (e))
#define STORE(n, e) ls_append(p, bd, ls_store(p, Y[n], lx_var(p, i), (e)))
    LoopExpr *c = lx_binary(p, LOP_OR,
                            lx_binary(p, LOP_AND, lx_cmp(p, LCMP_LT, VA, VB),
                                      lx_cmp(p, LCMP_GT, VA, BC(lx_const_f(p, 0)))),
                            lx_cmp(p, LCMP_EQ, VA, VB));
    STORE(0, lx_select(p, c, lx_binary(p, LOP_MUL, VA, VB), lx_binary(p, LOP_SUB, VA, VB)));
    STORE(1, lx_binary(p, LOP_MAX, VA, VB));
    STORE(2, lx_binary(p, LOP_MIN, VA, VB));
    STORE(3, lx_fma(p, VA, VB, BC(lx_const_f(p, 1.5f))));
    STORE(4, lx_cast(p, lx_cast(p, VA, LT_I64), LT_F32));
    STORE(5, lx_binary(p, LOP_DIV, VA, VB));
    LoopExpr *ai = lx_cast(p, VA, LT_I64);
    LoopExpr *q = lx_cast(p, lx_binary(p, LOP_FLOORDIV, ai, BC(ci(p, 5))), LT_F32);
    LoopExpr *r = lx_cast(p, lx_binary(p, LOP_MOD, ai, BC(ci(p, 5))), LT_F32);
    STORE(6, lx_fma(p, r, BC(lx_const_f(p, 1000.0f)), q));
    /* A scalar i64 expression of the loop variable, broadcast, selected by an i64 compare. */
    LoopExpr *d = lx_binary(p, LOP_SUB, lx_var(p, i), ci(p, 37));
    LoopExpr *s = lx_binary(p, LOP_SUB, lx_binary(p, LOP_FLOORDIV, d, ci(p, 3)),
                            lx_binary(p, LOP_MOD, d, ci(p, 4)));
    LoopExpr *sv = BC(s);
    LoopExpr *sel = lx_select(p, lx_cmp(p, LCMP_GE, sv, BC(ci(p, -100))), sv, BC(ci(p, 7)));
    STORE(7, lx_cast(p, sel, LT_F32));
    LoopExpr *slot = lx_binary(p, LOP_FLOORDIV, lx_var(p, i), ci(p, L));
    static const LoopOp red[] = {LOP_ADD, LOP_MAX, LOP_MIN};
    for (int64_t j = 0; j < 3; j++)
        ls_append(p, bd,
                  ls_store(p, Y[8], lx_binary(p, LOP_ADD, slot, ci(p, ZOO_N * (j + 1))),
                           lx_reduce(p, red[j], VA)));
    LoopExpr *k16 =
        lx_binary(p, LOP_MUL, lx_cast(p, lx_cast(p, VB, LT_I64), LT_F32), BC(lx_const_f(p, 16.0f)));
    STORE(9, lx_binary(p, LOP_LDEXP, VA, k16));
#undef VA
#undef VB
#undef BC
#undef STORE
    return p;
}

static int64_t floordiv(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

static int64_t floormod(int64_t a, int64_t b)
{
    return a % b + (a % b < 0 ? b : 0);
}

static float fmaxnan(float a, float b)
{
    return isnan(a) || isnan(b) ? NAN : a > b ? a : b;
}

static float fminnan(float a, float b)
{
    return isnan(a) || isnan(b) ? NAN : a < b ? a : b;
}

static void zoo_expect(const float *a, const float *b, uint32_t L, float want[ZOO_OUTS][4 * ZOO_N])
{
    memset(want, 0, sizeof(float) * ZOO_OUTS * 4 * ZOO_N);
    for (int64_t i = 0; i < ZOO_N; i++) {
        bool c = (a[i] < b[i] && a[i] > 0) || a[i] == b[i];
        want[0][i] = c ? a[i] * b[i] : a[i] - b[i];
        want[1][i] = fmaxnan(a[i], b[i]);
        want[2][i] = fminnan(a[i], b[i]);
        want[3][i] = fmaf(a[i], b[i], 1.5f);
        int64_t ai = isnan(a[i]) ? 0 : (int64_t)a[i]; /* NaN: undefined, not compared */
        want[4][i] = (float)ai;
        want[5][i] = a[i] / b[i];
        want[6][i] = fmaf((float)floormod(ai, 5), 1000.0f, (float)floordiv(ai, 5));
        int64_t i0 = i - i % L; /* y7 is a broadcast of the vector's first index */
        int64_t s = floordiv(i0 - 37, 3) - floormod(i0 - 37, 4);
        want[7][i] = (float)(s >= -100 ? s : 7);
        if (!isnan(b[i]))
            want[9][i] = ldexpf(a[i], 16 * (int)b[i]);
    }
    for (int64_t v = 0; v < ZOO_N / L; v++) {
        float sum = a[v * L], mx = a[v * L], mn = a[v * L];
        for (uint32_t l = 1; l < L; l++) {
            sum += a[v * L + l];
            mx = fmaxnan(mx, a[v * L + l]);
            mn = fminnan(mn, a[v * L + l]);
        }
        want[8][v + ZOO_N] = sum;
        want[8][v + 2 * ZOO_N] = mx;
        want[8][v + 3 * ZOO_N] = mn;
    }
}

static void expression_zoo(void **state)
{
    Env *env = *state;
    static const uint32_t widths[] = {1, 4, 8, 16};
    const Compiler *cs[] = {&gcc_o0, &gcc_o3c, &clang_o0, &clang_o3};
    float a[ZOO_N], b[ZOO_N];
    uint64_t seed = 7;
    for (int i = 0; i < ZOO_N; i++) {
        a[i] = (float)((int)(test_lcg(&seed) % 2001) - 1000) / 64.0f;
        b[i] = i % 5 == 0 ? a[i] : (float)((int)(test_lcg(&seed) % 2001) - 1000) / 64.0f + 0.01f;
    }
    a[9] = NAN;
    b[22] = NAN;
    a[41] = -0.0f;
    for (size_t w = 0; w < countof(widths); w++)
        for (size_t ic = 0; ic < countof(cs); ic++) {
            Arena *ar = arena_new(1 << 16);
            uint32_t L = widths[w];
            Loaded l = load_program(env, zoo_program(ar, L), cs[ic], ic == 0, NULL, 0);
            float y[ZOO_OUTS][4 * ZOO_N], want[ZOO_OUTS][4 * ZOO_N];
            memset(y, 0, sizeof y);
            const float *in[] = {a, b};
            float *out[ZOO_OUTS];
            for (int o = 0; o < ZOO_OUTS; o++)
                out[o] = y[o];
            char err[FUSE_RT_ERR_MAX] = "";
            assert_int_equal(l.info->run(l.k, in, out, err, sizeof err), 0);
            zoo_expect(a, b, L, want);
            for (int o = 0; o < ZOO_OUTS; o++)
                for (int i = 0; i < 4 * ZOO_N; i++) {
                    if (((o == 4 || o == 6) && i < ZOO_N && isnan(a[i])) ||
                        (o == 9 && i < ZOO_N && isnan(b[i])))
                        continue; /* f32 -> i64 of NaN is undefined */
                    if (test_ulp_distance(y[o][i], want[o][i]) != 0)
                        fprintf(stderr, "lanes %u %s y%d[%d] = %a, want %a\n", L, cs[ic]->cc, o, i,
                                (double)y[o][i], (double)want[o][i]);
                    assert_int_equal(test_ulp_distance(y[o][i], want[o][i]), 0);
                }
            unload(&l);
            arena_free(ar);
        }
}

/* ---- scratch, thread scratch and parallel loops ---- */

enum { ROWS = 23, COLS = 24 };

/* Kernel fill: s = x * 2 (BUF_SCRATCH). Kernel rows: var bias = 0.5 (captured by the parallel
 * body); parallel for r in 0..ROWS: t[c] = s[r*COLS + c] + bias (BUF_THREAD), then
 * y[r*COLS + c] = t[COLS - 1 - c] + r (reversed, so t must really be per thread). */
static LoopProgram *rows_program(Arena *ar, uint32_t L)
{
    LoopProgram *p = loop_program_new(ar, "rows");
    LoopBuffer *x = add_buf(p, "x", BUF_INPUT, 0, ROWS * COLS);
    LoopBuffer *y = add_buf(p, "y", BUF_OUTPUT, 0, ROWS * COLS);
    LoopBuffer *s = add_buf(p, "s", BUF_SCRATCH, 0, ROWS * COLS);
    LoopBuffer *t = add_buf(p, "t", BUF_THREAD, 0, COLS);
    LoopKernel *k1 = loop_add_kernel(p, "fill", "s = x * 2", false);
    LoopVar *i = loop_var(p, k1, "i", I64);
    LoopStmt *f1 = add_for(p, k1->body, i, 0, ROWS * COLS, L);
    LoopExpr *two = L > 1 ? lx_broadcast(p, lx_const_f(p, 2), L) : lx_const_f(p, 2);
    ls_append(
        p, body_of(f1),
        ls_store(p, s, lx_var(p, i), lx_binary(p, LOP_MUL, lx_load(p, x, lx_var(p, i), L), two)));
    LoopKernel *k2 = loop_add_kernel(p, "rows", "per-row work in thread scratch", false);
    LoopVar *bias = loop_var(p, k2, "bias", F32);
    ls_append(p, k2->body, ls_decl(p, bias, lx_const_f(p, 0.5f)));
    LoopVar *r = loop_var(p, k2, "r", I64), *c = loop_var(p, k2, "c", I64);
    LoopVar *c2 = loop_var(p, k2, "c2", I64);
    LoopStmt *pr = ls_for(p, r, ci(p, 0), ci(p, ROWS), 1, FOR_PARALLEL, ls_block(p));
    ls_append(p, k2->body, pr);
    LoopStmt *fc = add_for(p, body_of(pr), c, 0, COLS, 1);
    LoopExpr *at =
        lx_binary(p, LOP_ADD, lx_binary(p, LOP_MUL, lx_var(p, r), ci(p, COLS)), lx_var(p, c));
    ls_append(
        p, body_of(fc),
        ls_store(p, t, lx_var(p, c), lx_binary(p, LOP_ADD, lx_load(p, s, at, 1), lx_var(p, bias))));
    LoopStmt *fc2 = add_for(p, body_of(pr), c2, 0, COLS, 1);
    LoopExpr *at2 =
        lx_binary(p, LOP_ADD, lx_binary(p, LOP_MUL, lx_var(p, r), ci(p, COLS)), lx_var(p, c2));
    LoopExpr *rev = lx_binary(p, LOP_SUB, ci(p, COLS - 1), lx_var(p, c2));
    LoopExpr *rf = lx_cast(p, lx_var(p, r), LT_F32);
    ls_append(p, body_of(fc2),
              ls_store(p, y, at2, lx_binary(p, LOP_ADD, lx_load(p, t, rev, 1), rf)));
    return p;
}

typedef int (*PoolCreate)(int, fuse_rt_pool **, char *, size_t);
typedef void (*PoolDestroy)(fuse_rt_pool *);

static void scratch_and_threads(void **state)
{
    Env *env = *state;
    static const uint32_t widths[] = {1, 8};
    float x[ROWS * COLS], y[ROWS * COLS];
    for (int j = 0; j < ROWS * COLS; j++)
        x[j] = (float)j * 0.25f;
    for (size_t w = 0; w < countof(widths); w++) {
        Arena *ar = arena_new(1 << 16);
        Loaded l = load_program(env, rows_program(ar, widths[w]), &gcc_o2, w == 1, NULL, 0);
        assert_int_equal(l.info->scratch_bytes, (ROWS * COLS * 4 + 63) / 64 * 64);
        assert_int_equal(l.info->thread_scratch_bytes, 128);
        PoolCreate pool_create = (PoolCreate)(uintptr_t)dlsym(l.dl, "fuse_rt_pool_create");
        PoolDestroy pool_destroy = (PoolDestroy)(uintptr_t)dlsym(l.dl, "fuse_rt_pool_destroy");
        assert_non_null(pool_create);
        assert_non_null(pool_destroy);
        fuse_rt_pool *pool = NULL;
        char err[FUSE_RT_ERR_MAX] = "";
        assert_int_equal(pool_create(3, &pool, err, sizeof err), 0);
        fuse_rt_kernel *k3 = NULL;
        assert_int_equal(l.info->create(NULL, 0, pool, &k3, err, sizeof err), 0);
        for (int threads = 1; threads <= 3; threads += 2) {
            memset(y, 0, sizeof y);
            const float *in[] = {x};
            float *out[] = {y};
            fuse_rt_kernel *k = threads == 1 ? l.k : k3;
            assert_int_equal(l.info->run(k, in, out, err, sizeof err), 0);
            for (int r = 0; r < ROWS; r++)
                for (int c = 0; c < COLS; c++)
                    assert_true(y[r * COLS + c] ==
                                x[r * COLS + COLS - 1 - c] * 2.0f + 0.5f + (float)r);
        }
        l.info->destroy(k3);
        pool_destroy(pool);
        unload(&l);
        arena_free(ar);
    }
}

/* ---- streaming stores ---- */

#define STREAM_N 1003

/* Streaming stores write what plain ones do, at every alignment of the output (the aligned
 * vectors go around the caches, the others are plain stores), on 1 and 3 threads, with
 * compilers that have the instruction and one (-O0, no -march) that has only the SSE one. */
static void streaming_stores(void **state)
{
    Env *env = *state;
    static const uint32_t widths[] = {4, 8, 16};
    const Compiler *compilers[] = {&gcc_o2, &gcc_o0, &clang_o3};
    for (size_t w = 0; w < countof(widths); w++)
        for (size_t c = 0; c < countof(compilers); c++) {
            Arena *ar = arena_new(1 << 16);
            LoopProgram *p = test_streaming_program(ar, widths[w], STREAM_N);
            StrBuf src = {0}, hdr = {0};
            EmitCOptions opt = {.header_name = "st.h"};
            emit_c_program(p, &opt, &src, &hdr);
            char want_store[32];
            snprintf(want_store, sizeof want_store, "FUSE_STREAM%u(", widths[w]);
            assert_non_null(strstr(sb_str(&src), want_store));
            assert_non_null(strstr(sb_str(&src), "FUSE_SFENCE();"));
            sb_free(&src);
            sb_free(&hdr);
            Loaded l = load_program(env, p, compilers[c], c == 2, NULL, 0);
            PoolCreate pool_create = (PoolCreate)(uintptr_t)dlsym(l.dl, "fuse_rt_pool_create");
            PoolDestroy pool_destroy = (PoolDestroy)(uintptr_t)dlsym(l.dl, "fuse_rt_pool_destroy");
            fuse_rt_pool *pool = NULL;
            char err[FUSE_RT_ERR_MAX] = "";
            assert_int_equal(pool_create(3, &pool, err, sizeof err), 0);
            fuse_rt_kernel *k3 = NULL;
            assert_int_equal(l.info->create(NULL, 0, pool, &k3, err, sizeof err), 0);
            test_streaming_check(l.info, l.k, STREAM_N);
            test_streaming_check(l.info, k3, STREAM_N);
            l.info->destroy(k3);
            pool_destroy(pool);
            unload(&l);
            arena_free(ar);
        }
}

/* ---- max and min across lanes ---- */

/* The generated C combines lanes as a tree and gets the lane-order result bit for bit. */
static void reduce_lane_order(void **state)
{
    Env *env = *state;
    static const uint32_t widths[] = {4, 8, 16};
    const Compiler *compilers[] = {&gcc_o0, &clang_o3};
    for (size_t w = 0; w < countof(widths); w++)
        for (size_t c = 0; c < countof(compilers); c++) {
            Arena *ar = arena_new(1 << 16);
            Loaded l =
                load_program(env, test_reduce_program(ar, widths[w]), compilers[c], false, NULL, 0);
            test_reduce_check(l.info, l.k, widths[w]);
            unload(&l);
            arena_free(ar);
        }
}

/* ---- bounds checks ---- */

/* A copy loop that runs 16 elements past the end of y (elems 40, loop to 48 in vectors of
 * 8): the checked build must report it and leave the guard after y untouched. */
static void bounds_checked_store(void **state)
{
    Env *env = *state;
    Arena *ar = arena_new(1 << 16);
    LoopProgram *p = loop_program_new(ar, "oob");
    LoopBuffer *x = add_buf(p, "x", BUF_INPUT, 0, 48);
    LoopBuffer *y = add_buf(p, "y", BUF_OUTPUT, 0, 40);
    LoopKernel *k = loop_add_kernel(p, "copy", "y = x, one vector too far", false);
    LoopVar *i = loop_var(p, k, "i", I64);
    LoopStmt *f = add_for(p, k->body, i, 0, 48, 8);
    ls_append(p, body_of(f), ls_store(p, y, lx_var(p, i), lx_load(p, x, lx_var(p, i), 8)));
    Loaded l = load_program(env, p, &clang_o3, true, NULL, 0);
    float xs[48], ys[48];
    for (int j = 0; j < 48; j++) {
        xs[j] = (float)j;
        ys[j] = -1.0f;
    }
    const float *in[] = {xs};
    float *out[] = {ys};
    char err[FUSE_RT_ERR_MAX] = "";
    assert_int_equal(l.info->run(l.k, in, out, err, sizeof err), FUSE_RT_EINVAL);
    assert_non_null(strstr(err, "out-of-bounds access: copy: store y x8 at index 40"));
    for (int j = 0; j < 40; j++)
        assert_true(ys[j] == (float)j);
    for (int j = 40; j < 48; j++)
        assert_true(ys[j] == -1.0f);
    /* NULL arguments are errors, not crashes. */
    assert_int_equal(l.info->run(l.k, NULL, out, err, sizeof err), FUSE_RT_EINVAL);
    assert_int_equal(l.info->run(NULL, in, out, err, sizeof err), FUSE_RT_EINVAL);
    unload(&l);
    arena_free(ar);
}

/* A prefetch is only a hint, but in C its address is pointer arithmetic: the checked build
 * reports one past the end (x[i + 8] at i = 40 of 48 elements), and runs one within bounds. */
static void bounds_checked_prefetch(void **state)
{
    Env *env = *state;
    for (int64_t ahead = 0; ahead <= 8; ahead += 8) {
        Arena *ar = arena_new(1 << 16);
        LoopProgram *p = loop_program_new(ar, "oob");
        LoopBuffer *x = add_buf(p, "x", BUF_INPUT, 0, 48);
        LoopBuffer *y = add_buf(p, "y", BUF_OUTPUT, 0, 48);
        LoopKernel *k = loop_add_kernel(p, "pf", "y = x, x prefetched ahead", false);
        LoopVar *i = loop_var(p, k, "i", I64);
        LoopStmt *f = add_for(p, k->body, i, 0, 48, 8);
        LoopExpr *next = lx_binary(p, LOP_ADD, lx_var(p, i), lx_const_i(p, ahead));
        ls_append(p, body_of(f), ls_prefetch(p, x, next, 2));
        ls_append(p, body_of(f), ls_store(p, y, lx_var(p, i), lx_load(p, x, lx_var(p, i), 8)));
        Loaded l = load_program(env, p, &clang_o3, true, NULL, 0);
        float xs[48], ys[48];
        for (int j = 0; j < 48; j++)
            xs[j] = (float)j;
        const float *in[] = {xs};
        float *out[] = {ys};
        char err[FUSE_RT_ERR_MAX] = "";
        int rc = l.info->run(l.k, in, out, err, sizeof err);
        if (ahead == 0) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, FUSE_RT_EINVAL);
            assert_non_null(strstr(err, "out-of-bounds access: pf: prefetch x at index 48"));
        }
        for (int j = 0; j < 48; j++)
            assert_true(ys[j] == (float)j);
        unload(&l);
        arena_free(ar);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(expression_zoo),
        cmocka_unit_test(exact_unary),
        cmocka_unit_test(bounds_checked_store),
        cmocka_unit_test(bounds_checked_prefetch),
        cmocka_unit_test(scratch_and_threads),
        cmocka_unit_test(streaming_stores),
        cmocka_unit_test(math_exp),
        cmocka_unit_test(math_sigmoid),
        cmocka_unit_test(math_tanh),
        cmocka_unit_test(reduce_lane_order),
    };
    return cmocka_run_group_tests_name("emit_c", tests, env_setup, env_teardown);
}
