/*
 * test_parser: the bison parser (grammar/fuse.y) through parse_source: the AST it builds
 * (structure, lists in source order, spans), the dump of it, and the diagnostics of syntax
 * errors, byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "ast.h"
#include "test_support.h"

/* The example of LANGUAGE.md §1, verbatim. */
static const char section1_example[] =
    "fuse 1                                   # version line\n"
    "dim N = 1, H = 512, W = 512              # named sizes; a default may use other dims\n"
    "dim Hl = H // 2, Wl = W // 2\n"
    "\n"
    "# The seed's fusion block. PyTorch:\n"
    "#   self.conv_fuse = nn.Sequential(nn.Conv2d(256, 128, 1), nn.BatchNorm2d(128), "
    "nn.ReLU())\n"
    "block concat_conv(l: f32[N, Cl, Hl, Wl], h: f32[N, Ch, H, W]; out: int) -> "
    "f32[N, out, H, W] {\n"
    "    u = upsample(l, size=[H, W], mode=bilinear, align_corners=false)\n"
    "    x = concat(h, u, axis=1)                     # f32[N, Ch+Cl, H, W]\n"
    "    x = conv2d(x, out=out, kernel=1) @0          # keys <scope>.0.weight, <scope>.0.bias\n"
    "    x = batchnorm2d(x) @1                        # "
    "<scope>.1.weight/.bias/.running_mean/.running_var\n"
    "    return relu(x)\n"
    "}\n"
    "\n"
    "graph fuse_hl(h: f32[N, 128, H, W], l: f32[N, 128, Hl, Wl]) -> f32[N, 128, H, W] {\n"
    "    return concat_conv(l, h, out=128) @conv_fuse\n"
    "}\n";

/* A graph around `body`, in a static buffer. */
static const char *in_graph(const char *body)
{
    static char buf[65536];
    snprintf(buf, sizeof buf, "fuse 1\ngraph g(x: f32[N]) -> f32[N] {\n%s\n}\n", body);
    return buf;
}

/* The first statement of the first declaration. */
static const Stmt *first_stmt(const Ast *ast)
{
    assert_non_null(ast);
    assert_true(ast->decls->kind == DECL_GRAPH || ast->decls->kind == DECL_BLOCK);
    return ast->decls->fn.body;
}

/* The value of the first statement, an assignment. */
static const Expr *assigned(const Ast *ast)
{
    const Stmt *s = first_stmt(ast);
    assert_int_equal(s->kind, ST_ASSIGN);
    return s->assign.value;
}

static void assert_name(const Expr *e, const char *name)
{
    assert_non_null(e);
    assert_int_equal(e->kind, EX_NAME);
    assert_string_equal(e->name, name);
}

static void assert_bin(const Expr *e, BinOp op)
{
    assert_non_null(e);
    assert_int_equal(e->kind, EX_BIN);
    assert_int_equal(e->bin.op, op);
}

/* The text a span covers in `text`, in a static buffer. */
static const char *spanned(const char *text, Span s)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "%.*s", (int)(s.hi - s.lo), text + s.lo);
    return buf;
}

/* ast_dump into a malloc'ed string. */
static char *dump(const Ast *ast)
{
    char *text;
    size_t len;
    FILE *out = open_memstream(&text, &len);
    ast_dump(ast, out);
    fclose(out);
    return text;
}

static void section1_example_parses(void **state)
{
    (void)state;
    TestCompile t;
    Ast *ast = test_parse(&t, section1_example);
    assert_non_null(ast);
    assert_string_equal(test_diagnostics(&t), "");
    assert_int_equal(ast->version, 1);
    const Decl *d = ast->decls;
    assert_int_equal(d->kind, DECL_DIM);
    assert_string_equal(d->dim.defs->name, "N");
    assert_string_equal(d->dim.defs->next->next->name, "W");
    assert_null(d->dim.defs->next->next->next);
    d = d->next;
    assert_int_equal(d->kind, DECL_DIM);
    assert_bin(d->dim.defs->value, BIN_FLOORDIV);
    d = d->next;
    assert_int_equal(d->kind, DECL_BLOCK);
    assert_string_equal(d->fn.name, "concat_conv");
    assert_string_equal(d->fn.params->name, "l");
    assert_string_equal(d->fn.params->next->name, "h");
    assert_int_equal(d->fn.params->next->type.rank, 4);
    assert_string_equal(d->fn.cparams->name, "out");
    assert_int_equal(d->fn.cparams->ckind, CP_INT);
    assert_true(d->fn.has_result);
    assert_int_equal(d->fn.body->next->next->next->next->kind, ST_RETURN);
    d = d->next;
    assert_int_equal(d->kind, DECL_GRAPH);
    assert_string_equal(d->fn.name, "fuse_hl");
    assert_true(d->fn.unnamed_result);
    assert_string_equal(d->fn.outputs->name, "out");
    assert_null(d->fn.outputs->next);
    assert_null(d->next);
    test_compile_free(&t);
}

static void precedence_and_associativity(void **state)
{
    (void)state;
    TestCompile t;
    /* -a*b+c  ==  ((-a) * b) + c */
    const Expr *e = assigned(test_parse(&t, in_graph("y = -a*b+c")));
    assert_bin(e, BIN_ADD);
    assert_bin(e->bin.lhs, BIN_MUL);
    assert_int_equal(e->bin.lhs->bin.lhs->kind, EX_NEG);
    assert_name(e->bin.lhs->bin.lhs->unary.operand, "a");
    assert_name(e->bin.lhs->bin.rhs, "b");
    assert_name(e->bin.rhs, "c");
    test_compile_free(&t);

    /* a - b - c  ==  (a - b) - c;  a / b * c  ==  (a / b) * c */
    e = assigned(test_parse(&t, in_graph("y = a - b - c + a / b * c")));
    assert_bin(e, BIN_ADD);
    assert_bin(e->bin.lhs, BIN_SUB);
    assert_bin(e->bin.lhs->bin.lhs, BIN_SUB);
    assert_name(e->bin.lhs->bin.rhs, "c");
    assert_bin(e->bin.rhs, BIN_MUL);
    assert_bin(e->bin.rhs->bin.lhs, BIN_DIV);
    test_compile_free(&t);

    /* a - -b, and parentheses */
    e = assigned(test_parse(&t, in_graph("y = a - -(b + c) * 2")));
    assert_bin(e, BIN_SUB);
    assert_bin(e->bin.rhs, BIN_MUL);
    assert_int_equal(e->bin.rhs->bin.lhs->kind, EX_NEG);
    assert_bin(e->bin.rhs->bin.lhs->unary.operand, BIN_ADD);
    assert_int_equal(e->bin.rhs->bin.rhs->ival, 2);
    test_compile_free(&t);
}

static void dim_expressions(void **state)
{
    (void)state;
    TestCompile t;
    Ast *ast = test_parse(&t, "fuse 1\ndim X = -H + W // 2 % 3 * 4, Y\n");
    assert_non_null(ast);
    const DimDef *x = ast->decls->dim.defs;
    /* (-H) + (((W // 2) % 3) * 4) */
    assert_bin(x->value, BIN_ADD);
    assert_int_equal(x->value->bin.lhs->kind, EX_NEG);
    assert_bin(x->value->bin.rhs, BIN_MUL);
    assert_bin(x->value->bin.rhs->bin.lhs, BIN_MOD);
    assert_bin(x->value->bin.rhs->bin.lhs->bin.lhs, BIN_FLOORDIV);
    assert_string_equal(x->next->name, "Y");
    assert_null(x->next->value);
    test_compile_free(&t);
}

static void call_arguments(void **state)
{
    (void)state;
    TestCompile t;
    const char *text = in_graph("y = f(x, g(x), a=1, b=-0.5, c=true, d=\"s\", e=[1, [2, H]], "
                                "m=bilinear, k=H // 2, z=-1, f=2.5, n=false)");
    const Expr *e = assigned(test_parse(&t, text));
    assert_int_equal(e->kind, EX_CALL);
    assert_string_equal(e->call.callee, "f");
    assert_null(e->call.scope);
    const Arg *a = e->call.args;
    assert_null(a->name);
    assert_name(a->value, "x");
    a = a->next;
    assert_null(a->name);
    assert_int_equal(a->value->kind, EX_CALL);
    a = a->next;
    assert_string_equal(a->name, "a");
    assert_int_equal(a->value->kind, EX_INT);
    assert_int_equal(a->value->ival, 1);
    a = a->next;
    assert_string_equal(a->name, "b");
    assert_int_equal(a->value->kind, EX_NEG);
    assert_int_equal(a->value->unary.operand->kind, EX_FLOAT);
    assert_float_equal(a->value->unary.operand->fval, 0.5, 0);
    a = a->next;
    assert_int_equal(a->value->kind, EX_BOOL);
    assert_true(a->value->bval);
    a = a->next;
    assert_int_equal(a->value->kind, EX_STRING);
    assert_string_equal(a->value->name, "s");
    a = a->next;
    assert_int_equal(a->value->kind, EX_LIST);
    assert_int_equal(a->value->list.n, 2);
    assert_int_equal(a->value->list.items->next->kind, EX_LIST);
    assert_name(a->value->list.items->next->list.items->next, "H");
    a = a->next;
    assert_string_equal(a->name, "m");
    assert_name(a->value, "bilinear");
    a = a->next;
    assert_bin(a->value, BIN_FLOORDIV);
    a = a->next;
    assert_int_equal(a->value->kind, EX_NEG);
    assert_int_equal(a->value->unary.operand->kind, EX_INT);
    a = a->next;
    assert_int_equal(a->value->kind, EX_FLOAT);
    a = a->next;
    assert_int_equal(a->value->kind, EX_BOOL);
    assert_false(a->value->bval);
    assert_null(a->next);
    /* spans */
    assert_string_equal(spanned(text, e->call.callee_span), "f");
    assert_string_equal(spanned(text, e->call.args->next->next->name_span), "a");
    test_compile_free(&t);
}

static void scopes_attach_to_their_call(void **state)
{
    (void)state;
    TestCompile t;
    const char *text = in_graph("y = x + f(g(x) @a, k=1) @b.c");
    const Expr *e = assigned(test_parse(&t, text));
    assert_bin(e, BIN_ADD);
    const Expr *f = e->bin.rhs;
    assert_int_equal(f->kind, EX_CALL);
    assert_non_null(f->call.scope);
    assert_string_equal(f->call.scope->segs->parts->text, "b");
    assert_string_equal(f->call.scope->segs->next->parts->text, "c");
    assert_null(f->call.scope->segs->next->next);
    assert_string_equal(spanned(text, f->call.scope->span), "@b.c");
    assert_string_equal(spanned(text, f->span), "f(g(x) @a, k=1) @b.c");
    const Expr *g = f->call.args->value;
    assert_string_equal(g->call.scope->segs->parts->text, "a");
    test_compile_free(&t);
}

static void scope_splices(void **state)
{
    (void)state;
    TestCompile t;
    const Expr *e = assigned(test_parse(&t, in_graph("y = conv(x) @layers.{i}.conv{2*i+1}x")));
    const ScopeSeg *seg = e->call.scope->segs;
    assert_string_equal(seg->parts->text, "layers");
    seg = seg->next;
    assert_null(seg->parts->text);
    assert_name(seg->parts->splice, "i");
    assert_null(seg->parts->next);
    seg = seg->next;
    assert_string_equal(seg->parts->text, "conv");
    assert_bin(seg->parts->next->splice, BIN_ADD);
    assert_string_equal(seg->parts->next->next->text, "x");
    assert_null(seg->next);
    test_compile_free(&t);
}

static void block_and_graph_signatures(void **state)
{
    (void)state;
    TestCompile t;
    const char *text = "fuse 1\n"
                       "block b(x: f32[N, C], y: f32[C]; r: int = 16, s: float = -0.5, t: bool,\n"
                       "        u: int = C // 2) {\n"
                       "    return x\n"
                       "}\n"
                       "graph g(a: f32[4], b: f32[N])\n"
                       "    -> (o3: f32[N], o4: f32[2 * N]) {\n"
                       "    return a, b\n"
                       "}\n";
    Ast *ast = test_parse(&t, text);
    assert_non_null(ast);
    const Decl *b = ast->decls;
    assert_false(b->fn.has_result);
    assert_null(b->fn.outputs);
    const Param *q = b->fn.cparams;
    assert_string_equal(q->name, "r");
    assert_false(q->is_tensor);
    assert_int_equal(q->ckind, CP_INT);
    assert_int_equal(q->default_value->ival, 16);
    assert_string_equal(spanned(text, q->span), "r: int = 16");
    q = q->next;
    assert_int_equal(q->ckind, CP_FLOAT);
    assert_int_equal(q->default_value->kind, EX_NEG);
    q = q->next;
    assert_int_equal(q->ckind, CP_BOOL);
    assert_null(q->default_value);
    q = q->next;
    assert_bin(q->default_value, BIN_FLOORDIV);
    assert_null(q->next);
    assert_true(b->fn.params->is_tensor);
    assert_string_equal(spanned(text, b->fn.params->span), "x: f32[N, C]");
    assert_string_equal(spanned(text, b->fn.params->type.span), "f32[N, C]");
    assert_string_equal(spanned(text, b->fn.body_span), "{\n    return x\n}");

    const Decl *g = b->next;
    assert_true(g->fn.has_result);
    assert_false(g->fn.unnamed_result);
    assert_string_equal(g->fn.outputs->name, "o3");
    assert_string_equal(g->fn.outputs->next->name, "o4");
    assert_bin(g->fn.outputs->next->type.dims, BIN_MUL);
    assert_int_equal(g->fn.body->ret.n, 2);
    assert_name(g->fn.body->ret.values->next, "b");
    assert_string_equal(spanned(text, g->span), "graph g(a: f32[4], b: f32[N])\n"
                                                "    -> (o3: f32[N], o4: f32[2 * N]) {\n"
                                                "    return a, b\n"
                                                "}");
    test_compile_free(&t);
}

static void block_with_result(void **state)
{
    (void)state;
    TestCompile t;
    Ast *ast = test_parse(&t, "fuse 1\nblock b(x: f32[N]) -> f32[N] { return x }\n");
    assert_non_null(ast);
    assert_true(ast->decls->fn.has_result);
    assert_string_equal(ast->decls->fn.outputs->name, "out");
    assert_int_equal(ast->decls->fn.outputs->type.rank, 1);
    test_compile_free(&t);
}

static void for_loops_and_require(void **state)
{
    (void)state;
    TestCompile t;
    const char *text = "fuse 1\n"
                       "require H % 2 == 0, C >= 16\n"
                       "graph g(x: f32[N]) -> f32[N] {\n"
                       "    require N != 3\n"
                       "    for i in 0..L - 1 {\n"
                       "        for j in i..2 { x = f(x) @l.{i}.{j} }\n"
                       "        x = relu(x)\n"
                       "    }\n"
                       "    return x\n"
                       "}\n";
    Ast *ast = test_parse(&t, text);
    assert_non_null(ast);
    const Decl *r = ast->decls;
    assert_int_equal(r->kind, DECL_REQUIRE);
    assert_int_equal(r->require.conds->op, CMP_EQ);
    assert_bin(r->require.conds->lhs, BIN_MOD);
    assert_int_equal(r->require.conds->next->op, CMP_GE);
    assert_string_equal(spanned(text, r->require.conds->next->span), "C >= 16");
    const Stmt *s = r->next->fn.body;
    assert_int_equal(s->kind, ST_REQUIRE);
    assert_int_equal(s->require.conds->op, CMP_NE);
    s = s->next;
    assert_int_equal(s->kind, ST_FOR);
    assert_string_equal(s->loop.var, "i");
    assert_int_equal(s->loop.lo->ival, 0);
    assert_bin(s->loop.hi, BIN_SUB);
    const Stmt *inner = s->loop.body;
    assert_int_equal(inner->kind, ST_FOR);
    assert_name(inner->loop.lo, "i");
    assert_int_equal(inner->loop.body->kind, ST_ASSIGN);
    assert_null(inner->loop.body->next);
    assert_string_equal(spanned(text, inner->loop.body_span), "{ x = f(x) @l.{i}.{j} }");
    assert_int_equal(inner->next->kind, ST_ASSIGN);
    assert_null(inner->next->next);
    assert_int_equal(s->next->kind, ST_RETURN);
    test_compile_free(&t);
}

static void separators(void **state)
{
    (void)state;
    TestCompile t;
    const char *text = "fuse 1\n"
                       "graph g(x: f32[N]) -> f32[N] {;\n"
                       "    a = f(x,\n"
                       "          k=[1,\n"
                       "             2],\n"
                       "    ); b = a;;\n"
                       "\n"
                       "    # comment\n"
                       "    c = (a +\n"
                       "         b)\n"
                       "    return c}\n";
    Ast *ast = test_parse(&t, text);
    assert_non_null(ast);
    const Stmt *s = ast->decls->fn.body;
    assert_string_equal(s->assign.name, "a");
    assert_int_equal(s->assign.value->call.args->next->value->list.n, 2);
    assert_string_equal(s->next->assign.name, "b");
    assert_string_equal(s->next->next->assign.name, "c");
    assert_int_equal(s->next->next->next->kind, ST_RETURN);
    assert_null(s->next->next->next->next);
    assert_string_equal(spanned(text, s->span),
                        "a = f(x,\n          k=[1,\n             2],\n    )");
    test_compile_free(&t);
}

static void spans_of_operators(void **state)
{
    (void)state;
    TestCompile t;
    const char *text = in_graph("y = (a + b) // c");
    Ast *ast = test_parse(&t, text);
    assert_null(ast); /* // is not a tensor operator */
    test_compile_free(&t);

    text = in_graph("y = (a + b) / c");
    const Expr *e = assigned(test_parse(&t, text));
    assert_string_equal(spanned(text, e->span), "(a + b) / c");
    assert_string_equal(spanned(text, e->bin.op_span), "/");
    assert_string_equal(spanned(text, e->bin.lhs->span), "(a + b)");
    assert_string_equal(spanned(text, e->bin.lhs->bin.op_span), "+");
    assert_string_equal(spanned(text, first_stmt(t.ast)->assign.name_span), "y");
    test_compile_free(&t);
}

static void dump_shows_structure(void **state)
{
    (void)state;
    TestCompile t;
    Ast *ast = test_parse(&t, "fuse 1\n"
                              "dim N = 1, H\n"
                              "require N < 2\n"
                              "block b(x: f32[N, H]; k: int = 3) -> f32[N, H] {\n"
                              "    for i in 0..k { x = -x * 0.5 + 1e-5 @s }\n"
                              "    return x\n"
                              "}\n"
                              "graph g(x: f32[N, H]) -> (o: f32[N, H]) {\n"
                              "    y = b(x, k=2, m=\"s\", l=[1, -2]) @blk.{H+1}a\n"
                              "    return y\n"
                              "}\n");
    assert_null(ast); /* a scope after a float */
    assert_string_equal(test_diagnostics(&t),
                        "test.fuse:5:41: error: a scope may only follow the ')' of a call\n"
                        "    5 |     for i in 0..k { x = -x * 0.5 + 1e-5 @s }\n"
                        "      |                                         ^~\n");
    test_compile_free(&t);

    ast = test_parse(&t, "fuse 1\n"
                         "dim N = 1, H\n"
                         "require N < 2\n"
                         "block b(x: f32[N, H]; k: int = 3) -> f32[N, H] {\n"
                         "    for i in 0..k { x = -x * 0.5 + 1e-5 }\n"
                         "    return x\n"
                         "}\n"
                         "graph g(x: f32[N, H]) -> (o: f32[N, H]) {\n"
                         "    y = b(x, k=2, m=\"s\", l=[1, -2], f=2.0) @blk.{H+1}a\n"
                         "    return y\n"
                         "}\n");
    assert_non_null(ast);
    char *text = dump(ast);
    assert_string_equal(text,
                        "fuse 1\n"
                        "dim N = 1, H\n"
                        "require N < 2\n"
                        "block b\n"
                        "  param x: f32[N, H]\n"
                        "  cparam k: int = 3\n"
                        "  result f32[N, H]\n"
                        "  for i in 0..k\n"
                        "    assign x = (((-x) * 0.5) + 1e-05)\n"
                        "  return x\n"
                        "graph g\n"
                        "  param x: f32[N, H]\n"
                        "  output o: f32[N, H]\n"
                        "  assign y = b(x, k=2, m=\"s\", l=[1, (-2)], f=2.0) @blk.{(H + 1)}a\n"
                        "  return y\n");
    free(text);
    test_compile_free(&t);
}

/* Every .fuse file in examples/ parses. */
static void examples_parse(void **state)
{
    (void)state;
    DIR *dir = opendir(FUSE_EXAMPLES_DIR);
    if (!dir)
        skip();
    int n = 0;
    for (struct dirent *ent; (ent = readdir(dir));) {
        size_t len = strlen(ent->d_name);
        if (len < 5 || strcmp(ent->d_name + len - 5, ".fuse") != 0)
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", FUSE_EXAMPLES_DIR, ent->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        static char text[1 << 20];
        size_t got = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[got] = '\0';
        TestCompile t;
        Ast *ast = test_parse(&t, text);
        if (!ast)
            fprintf(stderr, "%s:\n%s", path, test_diagnostics(&t));
        assert_non_null(ast);
        test_compile_free(&t);
        n++;
    }
    closedir(dir);
    (void)n;
}

/* Parses text and checks that it fails with exactly `want` as diagnostics. */
static void assert_fails(const char *text, const char *want)
{
    TestCompile t;
    assert_null(test_parse(&t, text));
    assert_string_equal(test_diagnostics(&t), want);
    test_compile_free(&t);
}

static void version_errors(void **state)
{
    (void)state;
    assert_fails("# no version\n\ndim N = 1\n",
                 "test.fuse:3:1: error: missing version line 'fuse 1'\n"
                 "    3 | dim N = 1\n"
                 "      | ^~~\n");
    assert_fails("fuse 3\ndim N = 1 $\n",
                 "test.fuse:1:6: error: unsupported version 3; this compiler reads 'fuse 1'\n"
                 "    1 | fuse 3\n"
                 "      |      ^\n");
    assert_fails("", "test.fuse:1:1: error: missing version line 'fuse 1'\n"
                     "    1 | \n"
                     "      | ^\n");
}

static void unclosed_brackets(void **state)
{
    (void)state;
    assert_fails(in_graph("    y = relu(x\n    return y"),
                 "test.fuse:4:5: error: syntax error, unexpected 'return'\n"
                 "    4 |     return y\n"
                 "      |     ^~~~~~\n"
                 "test.fuse:3:13: note: '(' opened here\n"
                 "    3 |     y = relu(x\n"
                 "      |             ^\n");
    assert_fails("fuse 1\ngraph g(x: f32[N]) -> f32[N] {\n    return x\n",
                 "test.fuse:3:13: error: syntax error, unexpected end of file\n"
                 "    3 |     return x\n"
                 "      |             ^\n"
                 "test.fuse:2:30: note: '{' opened here\n"
                 "    2 | graph g(x: f32[N]) -> f32[N] {\n"
                 "      |                              ^\n");
    assert_fails(in_graph("    y = f(x]"), "test.fuse:3:12: error: syntax error, unexpected ']'\n"
                                           "    3 |     y = f(x]\n"
                                           "      |            ^\n"
                                           "test.fuse:3:10: note: '(' opened here\n"
                                           "    3 |     y = f(x]\n"
                                           "      |          ^\n");
}

static void independent_errors_are_all_reported(void **state)
{
    (void)state;
    assert_fails("fuse 1\n"
                 "graph g(x: f32) -> f32[N] {\n"
                 "    y = 1 +\n"
                 "    z = 2 2\n"
                 "    return x\n"
                 "}\n"
                 "graph h(x: f32[N]) -> f32[N] { return x @s }\n",
                 "test.fuse:2:15: error: syntax error, unexpected ')', expecting '['\n"
                 "    2 | graph g(x: f32) -> f32[N] {\n"
                 "      |               ^\n"
                 "test.fuse:3:12: error: syntax error, unexpected newline\n"
                 "    3 |     y = 1 +\n"
                 "      |            ^\n"
                 "test.fuse:4:11: error: syntax error, unexpected integer\n"
                 "    4 |     z = 2 2\n"
                 "      |           ^\n"
                 "test.fuse:7:41: error: a scope may only follow the ')' of a call\n"
                 "    7 | graph h(x: f32[N]) -> f32[N] { return x @s }\n"
                 "      |                                         ^~\n");
}

static void names_and_keywords(void **state)
{
    (void)state;
    assert_fails(in_graph("    in = relu(x)\n    return in"),
                 "test.fuse:3:5: error: 'in' is a keyword and cannot be used as a name\n"
                 "    3 |     in = relu(x)\n"
                 "      |     ^~\n"
                 "test.fuse:4:12: error: syntax error, unexpected 'in'\n"
                 "    4 |     return in\n"
                 "      |            ^~\n");
    assert_fails("fuse 1\ndim float = 2\n",
                 "test.fuse:2:5: error: 'float' is a keyword and cannot be used as a name\n"
                 "    2 | dim float = 2\n"
                 "      |     ^~~~~\n");
}

static void for_brace_on_next_line(void **state)
{
    (void)state;
    assert_fails(in_graph("    for i in 0..3\n    {\n        x = relu(x)\n    }\n    return x"),
                 "test.fuse:4:5: error: the '{' of a for loop must be on the same line as 'for'\n"
                 "    4 |     {\n"
                 "      |     ^\n");
}

static void graph_needs_result(void **state)
{
    (void)state;
    assert_fails("fuse 1\ngraph g(x: f32[N]) {\n    return x\n}\n",
                 "test.fuse:2:20: error: graph 'g' needs a result type ('-> f32[...]') before "
                 "its body\n"
                 "    2 | graph g(x: f32[N]) {\n"
                 "      |                    ^\n");
}

static void deep_expressions(void **state)
{
    (void)state;
    static char body[50000];
    /* a sum of 1500 terms: too deep for the later stages' recursion */
    strcpy(body, "y = x");
    for (int i = 0; i < 1500; i++)
        strcat(body, "+x");
    TestCompile t;
    assert_null(test_parse(&t, in_graph(body)));
    assert_non_null(strstr(test_diagnostics(&t), "error: expression nested too deeply (more "
                                                 "than 1000 levels)\n"));
    assert_null(strstr(strstr(test_diagnostics(&t), "error:") + 1, "error:"));
    test_compile_free(&t);

    /* 20000 minus signs exhaust the parser stack: still one clean error */
    strcpy(body, "y = ");
    memset(body + 4, '-', 20000);
    strcpy(body + 20004, "x");
    TestCompile t2;
    assert_null(test_parse(&t2, in_graph(body)));
    assert_non_null(strstr(test_diagnostics(&t2), "error: expression nested too deeply"));
    test_compile_free(&t2);

    /* 900 levels are fine */
    strcpy(body, "y = ");
    memset(body + 4, '-', 900);
    strcpy(body + 904, "x");
    TestCompile t3;
    assert_non_null(test_parse(&t3, in_graph(body)));
    test_compile_free(&t3);
}

static void hostile_input(void **state)
{
    (void)state;
    static const char nul[] = "fuse 1\ngraph g(x: f32[N]) -> f32[N] {\n  return \0x\n}\n";
    TestCompile t;
    memset(&t, 0, sizeof t);
    /* test_parse takes a C string: build the Source by hand to keep the NUL */
    Source *src = source_new("test.fuse", nul, sizeof nul - 1);
    char *text;
    size_t len;
    FILE *out = open_memstream(&text, &len);
    Diag d;
    diag_init(&d, src, out);
    Arena *arena = arena_new(0);
    assert_null(parse_source(src, arena, &d));
    fclose(out);
    assert_non_null(strstr(text, "test.fuse:3:10: error: unexpected byte 0x00\n"));
    free(text);
    arena_free(arena);
    source_free(src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(section1_example_parses),
        cmocka_unit_test(precedence_and_associativity),
        cmocka_unit_test(dim_expressions),
        cmocka_unit_test(call_arguments),
        cmocka_unit_test(scopes_attach_to_their_call),
        cmocka_unit_test(scope_splices),
        cmocka_unit_test(block_and_graph_signatures),
        cmocka_unit_test(block_with_result),
        cmocka_unit_test(for_loops_and_require),
        cmocka_unit_test(separators),
        cmocka_unit_test(spans_of_operators),
        cmocka_unit_test(dump_shows_structure),
        cmocka_unit_test(examples_parse),
        cmocka_unit_test(version_errors),
        cmocka_unit_test(unclosed_brackets),
        cmocka_unit_test(independent_errors_are_all_reported),
        cmocka_unit_test(names_and_keywords),
        cmocka_unit_test(for_brace_on_next_line),
        cmocka_unit_test(graph_needs_result),
        cmocka_unit_test(deep_expressions),
        cmocka_unit_test(hostile_input),
    };
    return cmocka_run_group_tests_name("parser", tests, NULL, NULL);
}
