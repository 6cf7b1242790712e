/*
 * test_passes: the graph passes keep every graph's meaning and make the rewrites they promise.
 *
 * Meaning: for every graph of every example (at small dims), every golden of
 * tests/golden/passes and the graphs below, the reference interpreter on the graph as built
 * and on the graph after all passes agree within the conformance tolerance,
 * 1e-4 * max(1, max |ref|), on random inputs and weights; so does the JIT (through
 * driver_compile_graph, passes included), since until the schedule hoists weight-only nodes it
 * computes them on every call and must take whatever the passes make.
 * Rewrites: the seed block loses its concat and BatchNorm, runs its low-resolution conv before
 * the upsample and executes about 37% fewer FLOPs; the spellings of attention become one op;
 * each pass's decline cases are left alone.
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "driver.h"
#include "interp.h"
#include "passes.h"
#include "test_support.h"
#include "util.h"

/* The interpreter on g and on opt (same interface) must agree, and the JIT with them. */
static void check_same_outputs(Ctx *cx, const Graph *g, const Graph *opt, const char *what)
{
    TestData d;
    test_data_new(&d, g, 0x5eedULL + g->nnodes);
    test_data_interp(&d, g);
    char err[256];
    if (!interp_run(opt, (const float *const *)d.prm, (const float *const *)d.ins, d.got, err,
                    sizeof err))
        fail_msg("%s: %s", what, err);
    test_data_compare(g, &d, what);
#ifdef FUSE_WITH_LLVM
    KernelOptions ko = {.backend = BACKEND_JIT};
    Compiled code;
    if (driver_compile_graph(cx, g, &ko, &code) != DRIVER_OK)
        fail_msg("%s: the JIT failed", what);
    test_data_run(code.info, g, &d, 2);
    char label[512];
    snprintf(label, sizeof label, "%s (jit)", what);
    test_data_compare(g, &d, label);
    driver_release(&code);
#endif
    test_data_free(&d, g);
}

/* Compiles `text` for entry at dims, runs every pass, checks the outputs; t keeps the graphs. */
static const Graph *optimize(TestCompile *t, const char *text, const char *entry, const char *dims,
                             const char *what)
{
    if (!test_compile(t, text, entry, dims))
        fail_msg("%s: %s", what, test_diagnostics(t));
    const Graph *opt = passes_run(&t->cx, t->graph, NULL);
    check_same_outputs(&t->cx, t->graph, opt, what);
    return opt;
}

static const Node *find_op(const Graph *g, OpKind kind, uint32_t nth)
{
    for (uint32_t i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->kind == kind && nth-- == 0)
            return g->nodes[i];
    return NULL;
}

static double flops_saved(const Graph *before, const Graph *after)
{
    return 1.0 - graph_flops(after) / graph_flops(before);
}

/* ---- every example and every golden keeps its meaning ---- */

static void every_example(void **state)
{
    (void)state;
    static const char *const examples[] = {"add_mul",       "bam",  "cbam", "concat_conv",
                                           "concat_linear", "neck", "se",   "self_attention"};
    for (size_t i = 0; i < countof(examples); i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s.fuse", FUSE_EXAMPLES_DIR, examples[i]);
        char *text = test_read_file(path);
        TestCompile parsed;
        Ast *ast = test_parse(&parsed, text);
        assert_non_null(ast);
        for (const Decl *d = ast->decls; d; d = d->next) {
            if (d->kind != DECL_GRAPH)
                continue;
            char what[600];
            snprintf(what, sizeof what, "%s: graph %s", path, d->fn.name);
            print_message("%s\n", what);
            TestCompile t;
            optimize(&t, text, d->fn.name, "N=2,C=16,H=12,W=20", what);
            test_compile_free(&t);
        }
        test_compile_free(&parsed);
        free(text);
    }
}

/* The dims of a golden's `# args: ... --dim LIST` line, or NULL. */
static const char *golden_dims(const char *text, char *buf, size_t size)
{
    const char *args = strstr(text, "# args:");
    const char *dim = args ? strstr(args, "--dim ") : NULL;
    const char *eol = args ? strchr(args, '\n') : NULL;
    if (!dim || (eol && dim > eol))
        return NULL;
    dim += strlen("--dim ");
    size_t n = strcspn(dim, " \n");
    snprintf(buf, size, "%.*s", (int)(n < size ? n : size - 1), dim);
    return buf;
}

static void every_golden(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/golden/passes", FUSE_TEST_DATA_DIR);
    DIR *d = opendir(dir);
    assert_non_null(d);
    uint32_t seen = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".fuse") != 0)
            continue;
        char path[1024], dims[256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        char *text = test_read_file(path);
        print_message("%s\n", path);
        TestCompile t;
        optimize(&t, text, NULL, golden_dims(text, dims, sizeof dims), path);
        test_compile_free(&t);
        free(text);
        seen++;
    }
    closedir(d);
    assert_true(seen >= 10);
}

/* ---- the seed block ---- */

static void seed_block(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/concat_conv.fuse", FUSE_EXAMPLES_DIR);
    char *text = test_read_file(path);
    TestCompile t;
    const Graph *opt = optimize(&t, text, "fuse_hl", "C=8,H=10,W=14", "seed, small");
    assert_int_equal(graph_count_op(opt, OP_CONCAT), 0);
    assert_int_equal(graph_count_op(opt, OP_BATCHNORM), 0);
    assert_int_equal(graph_count_op(opt, OP_CONV2D), 2);
    const Node *up = find_op(opt, OP_UPSAMPLE, 0);
    assert_non_null(up);
    assert_int_equal(graph_count_op(opt, OP_UPSAMPLE), 1);
    /* the conv runs on l at the low resolution, then its result is upsampled */
    assert_int_equal(up->inputs[0]->kind, OP_CONV2D);
    assert_ptr_equal(up->inputs[0]->inputs[0], opt->inputs[1]);
    test_compile_free(&t);

    /* at the seed's size: 17.55 GFLOP as written, about 37% of it removed */
    assert_true(test_compile(&t, text, "fuse_hl", NULL));
    opt = passes_run(&t.cx, t.graph, NULL);
    double saved = flops_saved(t.graph, opt);
    print_message("seed: %.4g -> %.4g FLOP (%.2f%% fewer)\n", graph_flops(t.graph),
                  graph_flops(opt), 100 * saved);
    assert_true(saved > 0.36 && saved < 0.38);
    test_compile_free(&t);
    free(text);
}

static void concat_linear_becomes_convs(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/concat_linear.fuse", FUSE_EXAMPLES_DIR);
    char *text = test_read_file(path);
    static const char *const entries[] = {"fuse_same", "fuse_hl"};
    for (size_t i = 0; i < countof(entries); i++) {
        TestCompile t;
        const Graph *opt = optimize(&t, text, entries[i], "C=6,H=8,W=10", entries[i]);
        assert_int_equal(graph_count_op(opt, OP_PERMUTE), 0);
        assert_int_equal(graph_count_op(opt, OP_LINEAR), 0);
        /* fuse_same: one conv reading the concat's parts in place; fuse_hl: split, so that
         * the upsampled part's conv runs at the low resolution */
        bool same = i == 0;
        assert_int_equal(graph_count_op(opt, OP_CONCAT), same ? 1 : 0);
        assert_int_equal(graph_count_op(opt, OP_CONV2D), same ? 1 : 2);
        const Node *up = find_op(opt, OP_UPSAMPLE, 0);
        if (up)
            assert_int_equal(up->inputs[0]->kind, OP_CONV2D);
        test_compile_free(&t);
    }
    free(text);
}

/* ---- each pass on graphs written for it ---- */

static void layout_rewrites(void **state)
{
    (void)state;
    TestCompile t;
    const Graph *opt =
        optimize(&t,
                 "fuse 1\n"
                 "graph g(x: f32[2, 5, 3, 4]) -> (a: f32[2, 7, 3, 4], "
                 "b: f32[2, 5, 3, 4], c: f32[5, 2, 12]) {\n"
                 "  y = linear(permute(x, perm=[0, 2, 3, 1]), out=7, bias=false) @fc\n"
                 "  t = permute(permute(x, perm=[0, 2, 3, 1]), perm=[0, 3, 1, 2])\n"
                 "  v = view(view(x, shape=[10, 12]), shape=[2, 5, 12])\n"
                 "  return permute(y, perm=[0, 3, 1, 2]), t, permute(v, perm=[1, 0, 2])\n"
                 "}\n",
                 NULL, NULL, "layout");
    assert_int_equal(graph_count_op(opt, OP_LINEAR), 0);
    assert_int_equal(graph_count_op(opt, OP_CONV2D), 1);
    assert_int_equal(graph_count_op(opt, OP_PERMUTE), 1); /* only c's */
    assert_int_equal(graph_count_op(opt, OP_VIEW), 2);    /* the conv weight, c's source */
    assert_ptr_equal(opt->outputs[1], opt->inputs[0]);
    test_compile_free(&t);
}

static void fold_batchnorm_rewrites(void **state)
{
    (void)state;
    TestCompile t;
    /* a strided grouped conv folds; a shared conv and a BatchNorm of an input become affines */
    const Graph *opt =
        optimize(&t,
                 "fuse 1\n"
                 "graph g(x: f32[2, 4, 9, 7]) -> (a: f32[2, 6, 5, 4], b: f32[2, 6, 9, 7], "
                 "c: f32[2, 6, 9, 7], d: f32[2, 4, 9, 7]) {\n"
                 "  a = batchnorm2d(conv2d(x, out=6, kernel=3, stride=2, padding=1, groups=2) "
                 "@c1) @b1\n"
                 "  c = conv2d(x, out=6, kernel=1, bias=false) @c2\n"
                 "  return a, batchnorm2d(c) @b2, c, batchnorm2d(x) @b3\n"
                 "}\n",
                 NULL, NULL, "fold-batchnorm");
    assert_int_equal(graph_count_op(opt, OP_BATCHNORM), 0);
    assert_int_equal(graph_count_op(opt, OP_CONV2D), 2);
    assert_int_equal(opt->outputs[0]->kind, OP_CONV2D);
    assert_int_not_equal(opt->outputs[0]->inputs[1]->kind, OP_PARAM); /* folded weight */
    assert_int_equal(opt->outputs[1]->kind, OP_ADD);                  /* x * s + t */
    assert_int_equal(opt->outputs[3]->kind, OP_ADD);
    test_compile_free(&t);
}

static void split_concat_rewrites(void **state)
{
    (void)state;
    TestCompile t;
    const Graph *opt =
        optimize(&t,
                 "fuse 1\n"
                 "graph g(a: f32[1, 3, 9, 8], b: f32[1, 2, 9, 8], r: f32[2, 3, 5], "
                 "s: f32[2, 3, 4]) -> (y: f32[1, 4, 5, 4], z: f32[2, 3, 6]) {\n"
                 "  y = conv2d(concat(a, b, axis=1), out=4, kernel=3, stride=2, padding=2, "
                 "dilation=2) @c\n"
                 "  return y, linear(concat(r, s, axis=2), out=6) @fc\n"
                 "}\n",
                 NULL, NULL, "split-concat");
    assert_int_equal(graph_count_op(opt, OP_CONCAT), 0);
    assert_int_equal(graph_count_op(opt, OP_CONV2D), 2);
    assert_int_equal(graph_count_op(opt, OP_SLICE), 4);
    test_compile_free(&t);
    /* a 1x1 conv, or a linear of 16 outputs or more, reads the concat's parts in place unless
     * a part is resampled */
    opt = optimize(&t,
                   "fuse 1\n"
                   "graph g(a: f32[2, 3, 6, 8], b: f32[2, 2, 6, 8], c: f32[2, 2, 3, 4]) -> "
                   "(y: f32[2, 4, 6, 8], z: f32[2, 4, 6, 8], w: f32[2, 3, 6, 16]) {\n"
                   "  y = conv2d(concat(a, relu(b), axis=1), out=4, kernel=1) @c\n"
                   "  u = upsample(c, scale=2, mode=nearest)\n"
                   "  z = conv2d(concat(a, u, axis=1), out=4, kernel=1) @d\n"
                   "  return y, z, linear(concat(a, a, axis=3), out=16) @fc\n"
                   "}\n",
                   NULL, NULL, "split-concat");
    assert_int_equal(graph_count_op(opt, OP_CONCAT), 2);
    assert_int_equal(graph_count_op(opt, OP_CONV2D), 3);
    assert_int_equal(opt->outputs[0]->kind, OP_CONV2D);
    assert_int_equal(opt->outputs[0]->inputs[0]->kind, OP_CONCAT);
    assert_int_equal(opt->outputs[1]->kind, OP_ADD);
    assert_int_equal(opt->outputs[2]->kind, OP_LINEAR);
    assert_int_equal(opt->outputs[2]->inputs[0]->kind, OP_CONCAT);
    test_compile_free(&t);
}

static void commute_upsample_rewrites(void **state)
{
    (void)state;
    TestCompile t;
    /* bilinear with align_corners, nearest by a non-integer size, and an upsample that is also
     * returned (its cost is not saved, the conv's is) */
    const Graph *opt =
        optimize(&t,
                 "fuse 1\n"
                 "graph g(x: f32[2, 8, 5, 6]) -> (a: f32[2, 3, 11, 13], b: f32[2, 4, 7, 9], "
                 "u: f32[2, 8, 7, 9], c: f32[2, 4, 7, 9]) {\n"
                 "  u = upsample(x, size=[7, 9], mode=bilinear)\n"
                 "  a = conv2d(upsample(x, size=[11, 13], mode=bilinear, align_corners=true), "
                 "out=3, kernel=1) @a\n"
                 "  b = conv2d(upsample(x, size=[7, 9]), out=4, kernel=1, bias=false) @b\n"
                 "  return a, b, u, conv2d(u, out=4, kernel=1) @c\n"
                 "}\n",
                 NULL, NULL, "commute-upsample");
    for (uint32_t o = 0; o < opt->noutputs; o++)
        if (o != 2) {
            assert_int_equal(opt->outputs[o]->kind, OP_UPSAMPLE);
            assert_int_equal(opt->outputs[o]->inputs[0]->kind, OP_CONV2D);
        }
    test_compile_free(&t);
}

/* BAM's gate: sigmoid(c + s) over [N, C, 1, 1] + [N, 1, H, W] becomes four sigmoids over the
 * operands (the planner computes them in their own small kernels) and a quotient per element;
 * an operand of the sum's shape, a scalar operand, or operands that are not much smaller than
 * the sum keep the sigmoid of the sum. */
static void factor_sigmoid_rewrites(void **state)
{
    (void)state;
    TestCompile t;
    const Graph *opt =
        optimize(&t,
                 "fuse 1\n"
                 "graph g(x: f32[2, 16, 7, 9], c: f32[2, 16, 1, 1], s: f32[2, 1, 7, 9], "
                 "y: f32[1, 4, 1, 1], z: f32[1, 1, 2, 2])\n"
                 "  -> (bam: f32[2, 16, 7, 9], full: f32[2, 16, 7, 9], scalar: f32[2, 16, 7, 9], "
                 "small: f32[1, 4, 2, 2]) {\n"
                 "  bam = x * (1 + sigmoid(c + 3 * s))\n"
                 "  return bam, sigmoid(x + c), sigmoid(x + 1), sigmoid(y + z)\n"
                 "}\n",
                 NULL, NULL, "factor-sigmoid");
    const Node *gate = opt->outputs[0]->inputs[1]->inputs[1];
    assert_int_equal(gate->kind, OP_DIV);
    uint32_t small_sigmoids = 0;
    for (uint32_t i = 0; i < opt->nnodes; i++) {
        const Node *n = opt->nodes[i];
        if (n->kind == OP_SIGMOID && shape_numel(&n->shape) < 2 * 16 * 7 * 9)
            small_sigmoids++;
    }
    assert_int_equal(small_sigmoids, 4 + 1); /* c, -c, s, -s, and sigmoid(y + z) */
    for (uint32_t o = 1; o < 4; o++)
        assert_int_equal(opt->outputs[o]->kind, OP_SIGMOID);
    test_compile_free(&t);
}

/* Each spelling of softmax(scale * q k^T) v becomes one attention op with the scale folded;
 * the scores returned as well, or a softmax over another axis, are left to the ops. */
static void attention_rewrites(void **state)
{
    (void)state;
    static const struct {
        float scale;
        bool k_transposed;
    } want[] = {{0.5f, false}, {0.25f, false}, {0.75f, false}, {0.125f, false},
                {0.2f, false}, {0.3f, false},  {1.0f, false},  {2.0f, true}};
    TestCompile t;
    const Graph *opt =
        optimize(&t,
                 "fuse 1\n"
                 "graph g(q: f32[2, 7, 5], k: f32[2, 13, 5], kt: f32[2, 5, 13], v: f32[2, 13, 6], "
                 "x: f32[2, 9, 12])\n"
                 "  -> (a0: f32[2, 7, 6], a1: f32[2, 7, 6], a2: f32[2, 7, 6], a3: f32[2, 7, 6], "
                 "a4: f32[2, 7, 6], a5: f32[2, 7, 6], a6: f32[2, 7, 6], a7: f32[2, 7, 6], "
                 "heads: f32[2, 9, 12], d0: f32[2, 7, 6], s: f32[2, 7, 13], d1: f32[2, 7, 6]) {\n"
                 "  kk = transpose(k, dims=[1, 2])\n"
                 "  a0 = matmul(softmax(matmul(q, kk) * 0.5, axis=-1), v)\n"
                 "  a1 = matmul(softmax(matmul(q, kk) / 4, axis=2), v)\n"
                 "  a2 = matmul(softmax(0.75 * matmul(q, kk), axis=-1), v)\n"
                 "  a3 = matmul(softmax(matmul(q * 0.125, kk), axis=-1), v)\n"
                 "  a4 = matmul(softmax(matmul(q, transpose(k / 5, dims=[-2, -1])), axis=-1), v)\n"
                 "  a5 = matmul(softmax(matmul(q, kk * 0.3), axis=-1), v)\n"
                 "  a6 = matmul(softmax(matmul(q, permute(k, perm=[0, 2, 1])), axis=-1), v)\n"
                 "  a7 = matmul(softmax(matmul(q, kt) * 2, axis=-1), v)\n"
                 "  qh = permute(view(x, shape=[2, 9, 3, 4]), perm=[0, 2, 1, 3])\n"
                 "  kh = transpose(permute(view(x * 2, shape=[2, 9, 3, 4]), perm=[0, 2, 1, 3]), "
                 "dims=[2, 3])\n"
                 "  h = matmul(softmax(matmul(qh, kh) / 2, axis=-1), qh)\n"
                 "  s = matmul(q, kk) * 0.9\n"
                 "  d1 = matmul(softmax(matmul(q, kk) * 0.7, axis=1), v)\n"
                 "  return a0, a1, a2, a3, a4, a5, a6, a7, view(permute(h, perm=[0, 2, 1, 3]), "
                 "shape=[2, 9, 12]), matmul(softmax(s, axis=-1), v), s, d1\n"
                 "}\n",
                 NULL, NULL, "attention");
    for (uint32_t o = 0; o < countof(want); o++) {
        const Node *a = opt->outputs[o];
        assert_int_equal(a->kind, OP_ATTENTION);
        assert_float_equal(a->attr.attention.scale, want[o].scale, 1e-7);
        assert_int_equal(a->attr.attention.k_transposed, want[o].k_transposed);
    }
    assert_int_equal(graph_count_op(opt, OP_ATTENTION), countof(want) + 1); /* + heads */
    assert_int_equal(opt->outputs[9]->kind, OP_MATMUL);
    assert_int_equal(opt->outputs[11]->kind, OP_MATMUL);
    test_compile_free(&t);
}

static void cse_and_dce(void **state)
{
    (void)state;
    TestCompile t;
    const Graph *opt = optimize(&t,
                                "fuse 1\n"
                                "graph g(x: f32[3, 4]) -> f32[3, 4] {\n"
                                "  unused = linear(x, out=2) @fc\n"
                                "  return sigmoid(x) * 2 + 2 * sigmoid(x) - relu(x) * relu(x)\n"
                                "}\n",
                                NULL, NULL, "cse, dce");
    assert_int_equal(graph_count_op(opt, OP_SIGMOID), 1);
    assert_int_equal(graph_count_op(opt, OP_RELU), 1);
    assert_int_equal(graph_count_op(opt, OP_SCALAR), 1);
    assert_int_equal(graph_count_op(opt, OP_LINEAR), 0);
    assert_int_equal(opt->nparams, 2); /* fc.weight and fc.bias stay: the kernel takes them */
    test_compile_free(&t);
}

/* ---- the runner ---- */

static void options(void **state)
{
    (void)state;
    TestCompile t;
    assert_true(test_compile(&t,
                             "fuse 1\ngraph g(x: f32[1, 2, 3, 3]) -> f32[1, 2, 3, 3] {\n"
                             "  return batchnorm2d(conv2d(x, out=2, kernel=1) @c) @b\n}\n",
                             NULL, NULL));
    PassOptions off = {.disabled = true};
    assert_ptr_equal(passes_run(&t.cx, t.graph, &off), t.graph);

    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    PassOptions dump = {.dump_after = "fold-batchnorm", .dump_out = out};
    const Graph *after = passes_run(&t.cx, t.graph, &dump);
    fclose(out);
    assert_non_null(strstr(text, "graph g\n"));
    assert_int_equal(graph_count_op(after, OP_BATCHNORM), 0);
    assert_int_equal(graph_count_op(after, OP_CONV2D), 2); /* dce has not run yet */
    free(text);

    size_t n;
    const Pass *table = passes_table(&n);
    assert_true(n == 8);
    assert_string_equal(table[n - 1].name, "dce");
    assert_ptr_equal(passes_find("split-concat"), &table[2]);
    assert_null(passes_find("nope"));
    test_compile_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_example),
        cmocka_unit_test(every_golden),
        cmocka_unit_test(seed_block),
        cmocka_unit_test(concat_linear_becomes_convs),
        cmocka_unit_test(layout_rewrites),
        cmocka_unit_test(fold_batchnorm_rewrites),
        cmocka_unit_test(split_concat_rewrites),
        cmocka_unit_test(commute_upsample_rewrites),
        cmocka_unit_test(attention_rewrites),
        cmocka_unit_test(factor_sigmoid_rewrites),
        cmocka_unit_test(cse_and_dce),
        cmocka_unit_test(options),
    };
    return cmocka_run_group_tests_name("passes", tests, NULL, NULL);
}
