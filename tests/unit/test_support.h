/*
 * test_support: compile a spec held in a string through parse, sema and build, capturing the
 * diagnostics as text, for the unit tests of the compiler's modules.
 */
#ifndef FUSE_TEST_SUPPORT_H
#define FUSE_TEST_SUPPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "ast.h"
#include "ctx.h"
#include "diag.h"
#include "fuse_rt.h"
#include "graph.h"
#include "loop.h"

typedef struct TestCompile {
    Source *src;
    Diag diag;
    Ctx cx;
    FILE *diag_out;
    char *diag_text;
    size_t diag_len;
    Ast *ast;     /* NULL if parsing failed */
    Graph *graph; /* NULL if any stage failed */
} TestCompile;

/* Compiles `text` (named "test.fuse") for `entry` (NULL: the only graph) with optional
 * --dim bindings ("H=8,W=8" or NULL). Returns true if a graph was built. */
bool test_compile(TestCompile *t, const char *text, const char *entry, const char *dims);
/* Parses only. Returns the AST or NULL. */
Ast *test_parse(TestCompile *t, const char *text);
/* Everything diagnosed so far, as printed. */
const char *test_diagnostics(TestCompile *t);
void test_compile_free(TestCompile *t);

/* A whole file, NUL-terminated; fails the test if it cannot be read. Caller frees. */
char *test_read_file(const char *path);

/* Random inputs and weights for a graph (values in [-2, 2); running_var in [0.5, 2.5)), the
 * table create() takes, and room for the reference (want) and computed (got) outputs. */
typedef struct TestData {
    float **ins, **prm, **want, **got;
    fuse_rt_weight *weights;
} TestData;

void test_data_new(TestData *d, const Graph *g, uint64_t seed);
void test_data_free(TestData *d, const Graph *g);
/* want = the reference interpreter's outputs. */
void test_data_interp(TestData *d, const Graph *g);
/* got = the kernel's outputs, created on a pool of `threads` and run once. */
void test_data_run(const fuse_rt_kernel_info *info, const Graph *g, TestData *d, int threads);
/* Fails the test unless every got is within 1e-4 * max(1, max |want|) of want (NaN matches
 * NaN), the tolerance of the conformance suite. `what` names the case in the message. */
void test_data_compare(const Graph *g, const TestData *d, const char *what);

/* ---- the vector math's accuracy (test_emit_c, test_jit) ---- */

/* A 32-bit pseudo-random value; *s is the state. */
uint32_t test_lcg(uint64_t *s);
/* Distance in representable floats (0: identical; NaNs must match NaNs). */
int64_t test_ulp_distance(float got, float want);
/* The unary op in double, correctly rounded to within what f32 needs. */
double test_math_reference(LoopOp op, double x);
/* n inputs: a dense uniform sample of [-range, range], log-uniform magnitudes down to 2^-40
 * (the small-argument branches), and the special values around overflow, underflow and the
 * expansions' branch points. Caller frees. */
float *test_math_inputs(float range, int64_t n);

/* ---- streaming stores (test_emit_c, test_jit) ---- */

/* y = 2x + 1 over n elements: a FOR_PARALLEL loop of `lanes`-wide streaming stores, then a
 * scalar tail. One input x, one output y, program name "st". */
LoopProgram *test_streaming_program(Arena *arena, uint32_t lanes, int64_t n);
/* Runs info's kernel (k, created by the caller) on x with y at every offset 0..16 floats from a
 * 64-byte aligned block, and fails the test unless y = 2x + 1 and nothing around y changed. */
void test_streaming_check(const fuse_rt_kernel_info *info, fuse_rt_kernel *k, int64_t n);

/* ---- max and min across lanes (test_emit_c, test_jit) ---- */

/* y[v] = reduce_max and z[v] = reduce_min of the `lanes`-wide vector x[v * lanes ...], for v
 * in 0..TEST_REDUCE_VECTORS. Inputs x, outputs y and z, program name "red". */
enum { TEST_REDUCE_VECTORS = 200 };
LoopProgram *test_reduce_program(Arena *arena, uint32_t lanes);
/* Runs info's kernel (k, created by the caller) on vectors of ties, signed zeros, infinities
 * and NaNs of distinct payloads, and fails the test unless every result is bit for bit that of
 * folding the lanes in order: the first NaN, else the last lane holding the extreme. */
void test_reduce_check(const fuse_rt_kernel_info *info, fuse_rt_kernel *k, uint32_t lanes);

#endif
