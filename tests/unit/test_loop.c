/*
 * test_loop: the loop IR (loop.h) on a hand-built program, no scheduler involved: a 1x1
 * convolution as a matrix contraction Y[co,p] = relu(sum_ci W[co,ci] X[ci,p] + b[co]) with the
 * structure PERF-NOTES asks of the schedule: a prepare kernel packs W into [co/MR][ci][MR] (and
 * copies b), the run kernel has a parallel loop over pixel blocks whose body keeps MR x NV
 * vector accumulators (DECLed before the reduction loop, ASSIGNed with FMAs of a broadcast
 * weight and a vector of pixels inside it) and stores them through a bias + relu epilogue, then
 * a scalar tail handles the pixels left over. Checked here: loop_verify accepts it, loop_dump
 * prints exactly the text below, loop_verify rejects five kinds of malformed program, and the
 * program emitted by emit_c (compiled with cc, loaded with dlopen, run single-threaded and on a
 * 3-thread pool) matches a naive loop within 1e-5 relative.
 */
#include <dlfcn.h>
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

enum {
    CI = 13, /* input channels (the reduction) */
    CO = 16, /* output channels */
    P = 37,  /* pixels: two blocks of NB, then a tail of 5 */
    L = 8,   /* vector lanes */
    MR = 4,  /* output channels per register block */
    NV = 2,  /* vectors of pixels per register block */
    NB = NV * L,
};

#define I64 ((LoopType){LT_I64, 1})
#define F32 ((LoopType){LT_F32, 1})
#define V8  ((LoopType){LT_F32, L})

/* The conv program and the buffers the tests poke at. */
typedef struct Conv {
    Arena *arena;
    LoopProgram *p;
    LoopBuffer *x, *y, *w, *b, *wp, *bp;
} Conv;

static LoopExpr *ci(LoopProgram *p, int64_t i)
{
    return lx_const_i(p, i);
}

static LoopExpr *var(LoopProgram *p, const LoopVar *v)
{
    return lx_var(p, v);
}

static LoopExpr *add(LoopProgram *p, LoopExpr *a, LoopExpr *b)
{
    return lx_binary(p, LOP_ADD, a, b);
}

static LoopExpr *mul(LoopProgram *p, LoopExpr *a, LoopExpr *b)
{
    return lx_binary(p, LOP_MUL, a, b);
}

/* a * s + b with a constant s. */
static LoopExpr *lin(LoopProgram *p, LoopExpr *a, int64_t s, LoopExpr *b)
{
    return add(p, mul(p, a, ci(p, s)), b);
}

static LoopStmt *for_in(LoopProgram *p, LoopStmt *block, LoopVar *v, LoopExpr *lo, LoopExpr *hi,
                        int64_t step, LoopForKind kind)
{
    LoopStmt *s = ls_for(p, v, lo, hi, step, kind, ls_block(p));
    ls_append(p, block, s);
    return s->loop.body;
}

static LoopBuffer *buffer(LoopProgram *p, const char *name, LoopBufferKind kind, uint32_t index,
                          int64_t d0, int64_t d1)
{
    LoopBuffer *b = loop_add_buffer(p, name, kind, index, d0 * (d1 ? d1 : 1));
    b->rank = d1 ? 2 : 1;
    b->shape[0] = d0;
    b->shape[1] = d1;
    return b;
}

/* wp[(cb*CI + c)*MR + r] = w[(cb*MR + r)*CI + c];  bp[co] = b[co] */
static void build_pack(Conv *cv)
{
    LoopProgram *p = cv->p;
    LoopKernel *k =
        loop_add_kernel(p, "pack_w", "W [co][ci] -> [co/MR][ci][MR]; bias copied", true);
    LoopVar *cb = loop_var(p, k, "cb", I64), *c = loop_var(p, k, "c", I64);
    LoopVar *r = loop_var(p, k, "r", I64), *co = loop_var(p, k, "co", I64);
    LoopStmt *b1 = for_in(p, k->body, cb, ci(p, 0), ci(p, CO / MR), 1, FOR_SERIAL);
    LoopStmt *b2 = for_in(p, b1, c, ci(p, 0), ci(p, CI), 1, FOR_SERIAL);
    LoopStmt *b3 = for_in(p, b2, r, ci(p, 0), ci(p, MR), 1, FOR_UNROLLED);
    LoopExpr *dst = lin(p, lin(p, var(p, cb), CI, var(p, c)), MR, var(p, r));
    LoopExpr *src = lin(p, lin(p, var(p, cb), MR, var(p, r)), CI, var(p, c));
    ls_append(p, b3, ls_store(p, cv->wp, dst, lx_load(p, cv->w, src, 1)));
    LoopStmt *b4 = for_in(p, k->body, co, ci(p, 0), ci(p, CO), 1, FOR_SERIAL);
    ls_append(p, b4, ls_store(p, cv->bp, var(p, co), lx_load(p, cv->b, var(p, co), 1)));
}

/* The register-blocked micro-kernel for pixel block pb (vectors) and its epilogue. */
static void build_blocks(Conv *cv, LoopKernel *k, LoopStmt *pbody, LoopVar *pb)
{
    LoopProgram *p = cv->p;
    LoopVar *cb = loop_var(p, k, "cb", I64), *c = loop_var(p, k, "c", I64);
    LoopStmt *cbody = for_in(p, pbody, cb, ci(p, 0), ci(p, CO / MR), 1, FOR_SERIAL);
    LoopVar *acc[MR][NV];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) {
            char name[16];
            snprintf(name, sizeof name, "acc%d%d", r, v);
            acc[r][v] = loop_var(p, k, name, V8);
            ls_append(p, cbody, ls_decl(p, acc[r][v], lx_broadcast(p, lx_const_f(p, 0), L)));
        }
    LoopStmt *red = for_in(p, cbody, c, ci(p, 0), ci(p, CI), 1, FOR_SERIAL);
    LoopExpr *wrow = mul(p, lin(p, var(p, cb), CI, var(p, c)), ci(p, MR));
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) {
            LoopExpr *w = lx_broadcast(p, lx_load(p, cv->wp, add(p, wrow, ci(p, r)), 1), L);
            LoopExpr *xi =
                add(p, lin(p, var(p, c), P, mul(p, var(p, pb), ci(p, NB))), ci(p, v * L));
            LoopExpr *f = lx_fma(p, w, lx_load(p, cv->x, xi, L), var(p, acc[r][v]));
            ls_append(p, red, ls_assign(p, acc[r][v], f));
        }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) {
            LoopExpr *co = lin(p, var(p, cb), MR, ci(p, r));
            LoopExpr *bias = lx_broadcast(p, lx_load(p, cv->bp, co, 1), L);
            LoopExpr *sum = lx_binary(p, LOP_ADD, var(p, acc[r][v]), bias);
            LoopExpr *relu = lx_binary(p, LOP_MAX, sum, lx_broadcast(p, lx_const_f(p, 0), L));
            LoopExpr *yi =
                add(p, lin(p, lin(p, var(p, cb), MR, ci(p, r)), P, mul(p, var(p, pb), ci(p, NB))),
                    ci(p, v * L));
            ls_append(p, cbody, ls_store(p, cv->y, yi, relu));
        }
}

/* The pixels past the last full block, one at a time. */
static void build_tail(Conv *cv, LoopKernel *k)
{
    LoopProgram *p = cv->p;
    LoopVar *px = loop_var(p, k, "px", I64), *co = loop_var(p, k, "co", I64);
    LoopVar *c = loop_var(p, k, "ct", I64), *s = loop_var(p, k, "s", F32);
    LoopStmt *pbody = for_in(p, k->body, px, ci(p, P / NB * NB), ci(p, P), 1, FOR_SERIAL);
    LoopStmt *cbody = for_in(p, pbody, co, ci(p, 0), ci(p, CO), 1, FOR_SERIAL);
    ls_append(p, cbody, ls_decl(p, s, lx_const_f(p, 0)));
    LoopStmt *red = for_in(p, cbody, c, ci(p, 0), ci(p, CI), 1, FOR_SERIAL);
    LoopExpr *cb = lx_binary(p, LOP_FLOORDIV, var(p, co), ci(p, MR));
    LoopExpr *r = lx_binary(p, LOP_MOD, var(p, co), ci(p, MR));
    LoopExpr *wi = lin(p, lin(p, cb, CI, var(p, c)), MR, r);
    LoopExpr *xi = lin(p, var(p, c), P, var(p, px));
    LoopExpr *f = lx_fma(p, lx_load(p, cv->wp, wi, 1), lx_load(p, cv->x, xi, 1), var(p, s));
    ls_append(p, red, ls_assign(p, s, f));
    LoopExpr *sum = lx_binary(p, LOP_ADD, var(p, s), lx_load(p, cv->bp, var(p, co), 1));
    ls_append(p, cbody,
              ls_store(p, cv->y, lin(p, var(p, co), P, var(p, px)),
                       lx_binary(p, LOP_MAX, sum, lx_const_f(p, 0))));
}

static Conv build_conv(void)
{
    Conv cv = {.arena = arena_new(1 << 16)};
    LoopProgram *p = cv.p = loop_program_new(cv.arena, "conv1x1");
    p->vector_lanes = L;
    p->flops = 2.0 * CO * CI * P;
    p->bytes = 4.0 * (CI * P + CO * P + CO * CI + CO);
    p->origin = "test_loop.c, graph conv1x1, dims CI=13 CO=16 P=37";
    cv.x = buffer(p, "x", BUF_INPUT, 0, CI, P);
    cv.y = buffer(p, "y", BUF_OUTPUT, 0, CO, P);
    cv.w = buffer(p, "w", BUF_PARAM, 0, CO, CI);
    cv.w->key = "conv.weight";
    cv.b = buffer(p, "b", BUF_PARAM, 1, CO, 0);
    cv.b->key = "conv.bias";
    cv.wp = buffer(p, "w_packed", BUF_PREPARED, 0, CO * CI, 0);
    cv.bp = buffer(p, "b_prepared", BUF_PREPARED, 1, CO, 0);
    build_pack(&cv);
    LoopKernel *k =
        loop_add_kernel(p, "conv", "y = relu(w @ x + b), 1x1 conv as a contraction", false);
    LoopVar *pb = loop_var(p, k, "pb", I64);
    LoopStmt *pbody = for_in(p, k->body, pb, ci(p, 0), ci(p, P / NB), 1, FOR_PARALLEL);
    build_blocks(&cv, k, pbody, pb);
    build_tail(&cv, k);
    return cv;
}

/* Text written by loop_dump or loop_verify. The stream's buffer lives in the caller's
 * Captured (open_memstream keeps pointers to it until fclose). */
typedef struct Captured {
    char *text;
    size_t len;
} Captured;

static char *dump_text(const LoopProgram *p, bool verify, bool *ok, Captured *out)
{
    FILE *f = open_memstream(&out->text, &out->len);
    assert_non_null(f);
    if (verify)
        *ok = loop_verify(p, f);
    else
        loop_dump(p, f);
    fclose(f);
    return out->text;
}

/* ---- verify and dump ---- */

static void conv_verifies(void **state)
{
    (void)state;
    Conv cv = build_conv();
    bool ok = false;
    Captured captured = {0};
    char *msg = dump_text(cv.p, true, &ok, &captured);
    assert_string_equal(msg, "");
    assert_true(ok);
    free(msg);
    arena_free(cv.arena);
}

/* clang-format off */
static const char conv_dump[] =
    "program conv1x1  # scratch 0 B, per-thread 0 B, prepared 896 B\n"
    "  buffer x: input 0 f32[481] as [13,37]\n"
    "  buffer y: output 0 f32[592] as [16,37]\n"
    "  buffer w: param 0 f32[208] as [16,13]\n"
    "  buffer b: param 1 f32[16] as [16]\n"
    "  buffer w_packed: prepared 0 f32[208] as [208]\n"
    "  buffer b_prepared: prepared 1 f32[16] as [16]\n"
    "prepare pack_w  # W [co][ci] -> [co/MR][ci][MR]; bias copied\n"
    "  for cb in 0..4 {\n"
    "    for c in 0..13 {\n"
    "      unrolled for r in 0..4 {\n"
    "        w_packed[((((cb * 13) + c) * 4) + r)] = w[((((cb * 4) + r) * 13) + c)]\n"
    "      }\n"
    "    }\n"
    "  }\n"
    "  for co in 0..16 {\n"
    "    b_prepared[co] = b[co]\n"
    "  }\n"
    "kernel conv  # y = relu(w @ x + b), 1x1 conv as a contraction\n"
    "  parallel for pb in 0..2 {\n"
    "    for cb in 0..4 {\n"
    "      var acc00: f32x8 = f32x8(0f)\n"
    "      var acc01: f32x8 = f32x8(0f)\n"
    "      var acc10: f32x8 = f32x8(0f)\n"
    "      var acc11: f32x8 = f32x8(0f)\n"
    "      var acc20: f32x8 = f32x8(0f)\n"
    "      var acc21: f32x8 = f32x8(0f)\n"
    "      var acc30: f32x8 = f32x8(0f)\n"
    "      var acc31: f32x8 = f32x8(0f)\n"
    "      for c in 0..13 {\n"
    "        acc00 = fma(f32x8(w_packed[((((cb * 13) + c) * 4) + 0)]), x[(((c * 37) + (pb * 16)) + 0)]x8, acc00)\n"
    "        acc01 = fma(f32x8(w_packed[((((cb * 13) + c) * 4) + 0)]), x[(((c * 37) + (pb * 16)) + 8)]x8, acc01)\n"
    "        acc10 = fma(f32x8(w_packed[((((cb * 13) + c) * 4) + 1)]), x[(((c * 37) + (pb * 16)) + 0)]x8, acc10)\n"
    "        acc11 = fma(f32x8(w_packed[((((cb * 13) + c) * 4) + 1)]), x[(((c * 37) + (pb * 16)) + 8)]x8, acc11)\n"
    "        acc20 = fma(f32x8(w_packed[((((cb * 13) + c) * 4) + 2)]), x[(((c * 37) + (pb * 16)) + 0)]x8, acc20)\n"
    "        acc21 = fma(f32x8(w_packed[((((cb * 13) + c) * 4) + 2)]), x[(((c * 37) + (pb * 16)) + 8)]x8, acc21)\n"
    "        acc30 = fma(f32x8(w_packed[((((cb * 13) + c) * 4) + 3)]), x[(((c * 37) + (pb * 16)) + 0)]x8, acc30)\n"
    "        acc31 = fma(f32x8(w_packed[((((cb * 13) + c) * 4) + 3)]), x[(((c * 37) + (pb * 16)) + 8)]x8, acc31)\n"
    "      }\n"
    "      y[(((((cb * 4) + 0) * 37) + (pb * 16)) + 0)]x8 = max((acc00 + f32x8(b_prepared[((cb * 4) + 0)])), f32x8(0f))\n"
    "      y[(((((cb * 4) + 0) * 37) + (pb * 16)) + 8)]x8 = max((acc01 + f32x8(b_prepared[((cb * 4) + 0)])), f32x8(0f))\n"
    "      y[(((((cb * 4) + 1) * 37) + (pb * 16)) + 0)]x8 = max((acc10 + f32x8(b_prepared[((cb * 4) + 1)])), f32x8(0f))\n"
    "      y[(((((cb * 4) + 1) * 37) + (pb * 16)) + 8)]x8 = max((acc11 + f32x8(b_prepared[((cb * 4) + 1)])), f32x8(0f))\n"
    "      y[(((((cb * 4) + 2) * 37) + (pb * 16)) + 0)]x8 = max((acc20 + f32x8(b_prepared[((cb * 4) + 2)])), f32x8(0f))\n"
    "      y[(((((cb * 4) + 2) * 37) + (pb * 16)) + 8)]x8 = max((acc21 + f32x8(b_prepared[((cb * 4) + 2)])), f32x8(0f))\n"
    "      y[(((((cb * 4) + 3) * 37) + (pb * 16)) + 0)]x8 = max((acc30 + f32x8(b_prepared[((cb * 4) + 3)])), f32x8(0f))\n"
    "      y[(((((cb * 4) + 3) * 37) + (pb * 16)) + 8)]x8 = max((acc31 + f32x8(b_prepared[((cb * 4) + 3)])), f32x8(0f))\n"
    "    }\n"
    "  }\n"
    "  for px in 32..37 {\n"
    "    for co in 0..16 {\n"
    "      var s: f32 = 0f\n"
    "      for ct in 0..13 {\n"
    "        s = fma(w_packed[(((((co // 4) * 13) + ct) * 4) + (co % 4))], x[((ct * 37) + px)], s)\n"
    "      }\n"
    "      y[((co * 37) + px)] = max((s + b_prepared[co]), 0f)\n"
    "    }\n"
    "  }\n";
/* clang-format on */

static void conv_dump_text(void **state)
{
    (void)state;
    Conv cv = build_conv();
    Captured captured = {0};
    char *text = dump_text(cv.p, false, NULL, &captured);
    assert_string_equal(text, conv_dump);
    free(text);
    arena_free(cv.arena);
}

/* loop_verify's verdict on a program broken by `breaker`, and its message. */
static void expect_rejected(void (*breaker)(Conv *), const char *message)
{
    Conv cv = build_conv();
    breaker(&cv);
    bool ok = true;
    Captured captured = {0};
    char *msg = dump_text(cv.p, true, &ok, &captured);
    assert_false(ok);
    if (!strstr(msg, message))
        fprintf(stderr, "got: %s", msg);
    assert_non_null(strstr(msg, message));
    free(msg);
    arena_free(cv.arena);
}

static void break_nested_parallel(Conv *cv)
{
    LoopProgram *p = cv->p;
    LoopKernel *k = cv->p->kernels[0];
    LoopVar *i = loop_var(p, k, "i", I64), *j = loop_var(p, k, "j", I64);
    LoopStmt *outer = for_in(p, k->body, i, ci(p, 0), ci(p, 2), 1, FOR_SERIAL);
    LoopStmt *inner = for_in(p, outer, j, ci(p, 0), ci(p, 2), 1, FOR_PARALLEL);
    ls_append(p, inner, ls_store(p, cv->y, var(p, j), lx_const_f(p, 1)));
}

static void break_scope(Conv *cv)
{
    LoopProgram *p = cv->p;
    LoopKernel *k = cv->p->kernels[0];
    /* pb, the parallel loop's variable, used after its loop. */
    const LoopVar *pb = k->body->block.stmts[0]->loop.var;
    ls_append(p, k->body, ls_store(p, cv->y, var(p, pb), lx_const_f(p, 1)));
}

static void break_store_to_input(Conv *cv)
{
    LoopProgram *p = cv->p;
    ls_append(p, cv->p->kernels[0]->body, ls_store(p, cv->x, ci(p, 0), lx_const_f(p, 1)));
}

static void break_types(Conv *cv)
{
    LoopProgram *p = cv->p;
    LoopExpr *v = lx_binary(p, LOP_ADD, lx_load(p, cv->bp, ci(p, 0), L), lx_const_f(p, 1));
    ls_append(p, cv->p->kernels[0]->body, ls_store(p, cv->y, ci(p, 0), v));
}

static void break_bounds(Conv *cv)
{
    LoopProgram *p = cv->p;
    ls_append(p, cv->p->kernels[0]->body,
              ls_store(p, cv->y, ci(p, CO * P - 4), lx_load(p, cv->x, ci(p, 0), L)));
}

static void break_scalar_streaming(Conv *cv)
{
    LoopProgram *p = cv->p;
    ls_append(p, cv->p->kernels[0]->body, ls_store_streaming(p, cv->y, ci(p, 0), lx_const_f(p, 1)));
}

static void verify_rejects(void **state)
{
    (void)state;
    expect_rejected(break_nested_parallel, "parallel loop j is nested in another loop");
    expect_rejected(break_scope, "variable pb used outside its scope");
    expect_rejected(break_store_to_input, "stores to input buffer x");
    expect_rejected(break_types, "binary add with mismatched types");
    expect_rejected(break_bounds, "constant index 588 (x8) outside y[592]");
    expect_rejected(break_scalar_streaming, "streaming store of a scalar to y");
}

/* A streaming store verifies and dumps with its mark. */
static void streaming_store_dump(void **state)
{
    (void)state;
    Conv cv = build_conv();
    LoopProgram *p = cv.p;
    ls_append(p, p->kernels[0]->body,
              ls_store_streaming(p, cv.y, ci(p, 0), lx_load(p, cv.x, ci(p, 0), L)));
    bool ok = false;
    Captured verdict = {0}, dump = {0};
    char *msg = dump_text(p, true, &ok, &verdict);
    assert_string_equal(msg, "");
    assert_true(ok);
    char *text = dump_text(p, false, NULL, &dump);
    assert_non_null(strstr(text, "\n  stream y[0]x8 = x[0]x8\n"));
    free(msg);
    free(text);
    arena_free(cv.arena);
}

/* ---- emitted, compiled, run ---- */

typedef int (*PoolCreate)(int, fuse_rt_pool **, char *, size_t);
typedef void (*PoolDestroy)(fuse_rt_pool *);

static void reference(const float *x, const float *w, const float *b, float *y)
{
    for (int co = 0; co < CO; co++)
        for (int px = 0; px < P; px++) {
            double s = b[co];
            for (int c = 0; c < CI; c++)
                s += (double)w[co * CI + c] * x[c * P + px];
            y[co * P + px] = s > 0 ? (float)s : 0.0f;
        }
}

static void write_file(const char *dir, const char *name, const char *text, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Emits the program into dir and builds dir/conv.so with the runtime sources. */
static void build_so(const LoopProgram *p, const char *dir)
{
    StrBuf src = {0}, hdr = {0};
    EmitCOptions opt = {.header_name = "conv1x1.h"};
    emit_c_program(p, &opt, &src, &hdr);
    write_file(dir, "conv1x1.c", src.data, src.len);
    write_file(dir, "conv1x1.h", hdr.data, hdr.len);
    write_file(dir, "fuse_rt.h", fuse_rt_header_text, fuse_rt_header_text_size);
    sb_free(&src);
    sb_free(&hdr);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cd %s && cc -std=c11 -O2 -march=native -Wall -Wextra -Werror -fPIC -c conv1x1.c "
             "&& cc -std=c11 -O2 -fPIC -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -shared "
             "conv1x1.o %s/../runtime/*.c -o conv.so -lm -lpthread",
             dir, FUSE_TEST_DATA_DIR);
    assert_int_equal(system(cmd), 0);
}

static void run_conv(void *dl, fuse_rt_pool *pool, const float *x, const float *w, const float *b,
                     float *y)
{
    const fuse_rt_kernel_info *info = dlsym(dl, "fuse_k_conv1x1_info");
    assert_non_null(info);
    assert_int_equal(info->abi_version, FUSE_RT_ABI_VERSION);
    assert_string_equal(info->name, "conv1x1");
    assert_int_equal(info->ninputs, 1);
    assert_int_equal(info->noutputs, 1);
    assert_int_equal(info->nparams, 2);
    assert_string_equal(info->inputs[0].name, "x");
    assert_int_equal(info->inputs[0].rank, 2);
    assert_int_equal(info->inputs[0].shape[1], P);
    assert_string_equal(info->outputs[0].name, "y");
    assert_int_equal(info->outputs[0].shape[0], CO);
    assert_string_equal(info->params[0].name, "conv.weight");
    assert_string_equal(info->params[1].name, "conv.bias");
    assert_true(info->flops == 2.0 * CO * CI * P);
    assert_int_equal(info->prepared_bytes, 896);
    int64_t wshape[] = {CO, CI}, bshape[] = {CO};
    fuse_rt_weight weights[] = {{"conv.bias", b, 1, bshape}, {"conv.weight", w, 2, wshape}};
    fuse_rt_kernel *k = NULL;
    char err[FUSE_RT_ERR_MAX] = "";
    int rc = info->create(weights, 2, pool, &k, err, sizeof err);
    if (rc)
        fprintf(stderr, "create: %s\n", err);
    assert_int_equal(rc, 0);
    const float *in[] = {x};
    float *out[] = {y};
    assert_int_equal(info->run(k, in, out, err, sizeof err), 0);
    info->destroy(k);
}

static void conv_runs(void **state)
{
    (void)state;
    Conv cv = build_conv();
    char dir[] = "/tmp/fuse_loop_XXXXXX";
    assert_non_null(mkdtemp(dir));
    build_so(cv.p, dir);
    char so[64];
    snprintf(so, sizeof so, "%s/conv.so", dir);
    void *dl = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(dl);
    float x[CI * P], w[CO * CI], b[CO], y1[CO * P], y3[CO * P], want[CO * P];
    uint32_t s = 12345;
    for (size_t i = 0; i < countof(x); i++)
        x[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
    for (size_t i = 0; i < countof(w); i++)
        w[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
    for (size_t i = 0; i < countof(b); i++)
        b[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
    reference(x, w, b, want);
    run_conv(dl, NULL, x, w, b, y1);
    PoolCreate pool_create = (PoolCreate)(uintptr_t)dlsym(dl, "fuse_rt_pool_create");
    PoolDestroy pool_destroy = (PoolDestroy)(uintptr_t)dlsym(dl, "fuse_rt_pool_destroy");
    assert_non_null(pool_create);
    assert_non_null(pool_destroy);
    fuse_rt_pool *pool = NULL;
    char err[FUSE_RT_ERR_MAX];
    assert_int_equal(pool_create(3, &pool, err, sizeof err), 0);
    run_conv(dl, pool, x, w, b, y3);
    pool_destroy(pool);
    for (int i = 0; i < CO * P; i++) {
        assert_true(fabsf(y1[i] - want[i]) <= 1e-5f * fmaxf(1.0f, fabsf(want[i])));
        assert_true(memcmp(&y1[i], &y3[i], sizeof(float)) == 0); /* thread count invariant */
    }
    dlclose(dl);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    arena_free(cv.arena);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conv_verifies),  cmocka_unit_test(conv_dump_text),
        cmocka_unit_test(verify_rejects), cmocka_unit_test(streaming_store_dump),
        cmocka_unit_test(conv_runs),
    };
    return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
