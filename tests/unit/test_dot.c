/*
 * test_dot: `fusec dot`'s Graphviz text. The output must be a well-formed digraph (balanced
 * braces and quotes, every edge between declared nodes), show every op with its shape, draw
 * each fused group as a cluster and create-time nodes apart, and escape whatever a user can
 * put into a name or key.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dot.h"
#include "test_support.h"

static char *render(const Graph *built, const Graph *optimized, const DotGroups *groups)
{
    FILE *out = tmpfile();
    assert_non_null(out);
    dot_write(out, built, optimized, groups);
    long len = ftell(out);
    assert_true(len > 0);
    char *text = calloc((size_t)len + 1, 1);
    assert_non_null(text);
    rewind(out);
    assert_int_equal(fread(text, 1, (size_t)len, out), (size_t)len);
    fclose(out);
    return text;
}

/* Structural checks: braces balance outside strings, strings close, and every `a -> b` edge
 * names nodes declared with `[`. */
static void check_well_formed(const char *text)
{
    int depth = 0;
    bool in_string = false;
    for (const char *c = text; *c; c++) {
        if (in_string) {
            if (*c == '\\' && c[1])
                c++;
            else if (*c == '"')
                in_string = false;
            else
                assert_true(*c != '\n');
            continue;
        }
        if (*c == '"')
            in_string = true;
        depth += *c == '{';
        depth -= *c == '}';
        assert_true(depth >= 0);
    }
    assert_false(in_string);
    assert_int_equal(depth, 0);
    for (const char *e = strstr(text, " -> "); e; e = strstr(e + 4, " -> ")) {
        const char *from = e;
        while (from > text && from[-1] != ' ')
            from--;
        char name[32], decl[40];
        snprintf(name, sizeof name, "%.*s", (int)(e - from), from);
        snprintf(decl, sizeof decl, "%s [", name);
        if (!strstr(text, decl))
            fail_msg("edge from undeclared node %s", name);
        int n = 0;
        sscanf(e + 4, "%31[a-z0-9]%n", name, &n);
        assert_true(n > 0);
        snprintf(decl, sizeof decl, "%s [", name);
        if (!strstr(text, decl))
            fail_msg("edge to undeclared node %s", name);
    }
}

static const char seed[] = "fuse 1\n"
                           "graph g(h: f32[1, 4, 8, 8], l: f32[1, 4, 4, 4]) -> f32[1, 4, 8, 8] {\n"
                           "    u = upsample(l, size=[8, 8], mode=bilinear)\n"
                           "    x = concat(h, u, axis=1)\n"
                           "    return relu(batchnorm2d(conv2d(x, out=4, kernel=1) @c) @bn)\n"
                           "}\n";

static void as_written(void **state)
{
    (void)state;
    TestCompile t;
    assert_true(test_compile(&t, seed, NULL, NULL));
    char *text = render(t.graph, NULL, NULL);
    check_well_formed(text);
    assert_non_null(strstr(text, "digraph \"g\""));
    assert_non_null(strstr(text, "upsample mode=bilinear"));
    assert_non_null(strstr(text, "concat axis=1\\n[1,8,8,8]"));
    assert_non_null(strstr(text, "conv2d out=4"));
    assert_non_null(strstr(text, "param \\\"c.weight\\\""));
    assert_non_null(strstr(text, "label=\"out\""));
    assert_null(strstr(text, "cluster_b"));
    free(text);
    test_compile_free(&t);
}

/* Groups drawn as clusters over a second copy of the graph: here the same graph, with the
 * upsample, concat and conv in one kernel, the rest in another, and the weights' BN folding
 * standing for create-time work. */
static void fused_groups(void **state)
{
    (void)state;
    TestCompile t;
    assert_true(test_compile(&t, seed, NULL, NULL));
    const Graph *g = t.graph;
    int32_t *group_of = calloc(g->nnodes, sizeof(int32_t));
    bool *prepared = calloc(g->nnodes, sizeof(bool));
    for (uint32_t i = 0; i < g->nnodes; i++) {
        OpKind k = g->nodes[i]->kind;
        prepared[i] = k == OP_BATCHNORM;
        group_of[i] = op_info[k].cls == OPC_SOURCE ? -1
                      : k == OP_BATCHNORM          ? -1 /* drawn as create-time work */
                      : k == OP_RELU               ? 1
                                                   : 0;
    }
    const char *names[2] = {"k0_conv2d", "k1_relu"};
    DotGroups groups = {2, group_of, names, prepared};
    char *text = render(g, g, &groups);
    check_well_formed(text);
    assert_non_null(strstr(text, "subgraph cluster_b_k0"));
    assert_non_null(strstr(text, "label=\"kernel k0_conv2d\""));
    assert_non_null(strstr(text, "label=\"kernel k1_relu\""));
    assert_non_null(strstr(text, "create time (once)"));
    /* the batchnorm is declared inside the create-time cluster of the second graph */
    const char *create = strstr(text, "cluster_b_create");
    const char *bn = strstr(create, "batchnorm");
    assert_non_null(bn);
    assert_true(bn < strstr(create, "cluster_b_k0"));
    free(text);
    free(group_of);
    free(prepared);
    test_compile_free(&t);
}

static void hostile_names_are_escaped(void **state)
{
    (void)state;
    static const char spec[] = "fuse 1\n"
                               "graph g(x: f32[2]) -> f32[2] {\n"
                               "    return x * param(shape=[2]) @w\n"
                               "}\n";
    TestCompile t;
    assert_true(test_compile(&t, spec, NULL, NULL));
    /* a --prefix can put any byte into a key */
    t.graph->params[0]->attr.param.key = "a\"b\\c\nd";
    char *text = render(t.graph, NULL, NULL);
    check_well_formed(text);
    assert_non_null(strstr(text, "\\\"a\\\"b\\\\cd\\\""));
    free(text);
    test_compile_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(as_written),
        cmocka_unit_test(fused_groups),
        cmocka_unit_test(hostile_names_are_escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
