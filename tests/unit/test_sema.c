/*
 * test_sema: sema_check (compiler/sema.c) through test_compile and parse + sema: what it
 * accepts (the LANGUAGE.md §1 example, every op of the catalogue, blocks, loops, shadowing),
 * and the exact text of its diagnostics, several independent errors in one run included.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "front.h"
#include "test_support.h"

/* The spec must fail sema (no graph is built) with exactly these diagnostics. */
static void expect_sema(const char *src, const char *want)
{
    TestCompile t;
    Ast *ast = test_parse(&t, src);
    assert_non_null(ast);
    assert_false(sema_check(&t.cx, ast));
    const char *got = test_diagnostics(&t);
    if (strcmp(got, want) != 0)
        print_message("--- want\n%s--- got\n%s", want, got);
    assert_string_equal(got, want);
    test_compile_free(&t);
}

/* The spec must pass sema without a diagnostic. */
static void expect_accepted(const char *src)
{
    TestCompile t;
    Ast *ast = test_parse(&t, src);
    assert_non_null(ast);
    bool ok = sema_check(&t.cx, ast);
    if (!ok)
        print_message("%s---\n%s", src, test_diagnostics(&t));
    assert_true(ok);
    assert_string_equal(test_diagnostics(&t), "");
    test_compile_free(&t);
}

static void accepts_section1_example(void **state)
{
    (void)state;
    expect_accepted(
        "fuse 1\n"
        "dim N = 1, H = 512, W = 512\n"
        "dim Hl = H // 2, Wl = W // 2\n"
        "block concat_conv(l: f32[N, Cl, Hl, Wl], h: f32[N, Ch, H, W]; out: int) -> "
        "f32[N, out, H, W] {\n"
        "    u = upsample(l, size=[H, W], mode=bilinear, align_corners=false)\n"
        "    x = concat(h, u, axis=1)\n"
        "    x = conv2d(x, out=out, kernel=1) @0\n"
        "    x = batchnorm2d(x) @1\n"
        "    return relu(x)\n"
        "}\n"
        "graph fuse_hl(h: f32[N, 128, H, W], l: f32[N, 128, Hl, Wl]) -> f32[N, 128, H, W] {\n"
        "    return concat_conv(l, h, out=128) @conv_fuse\n"
        "}\n");
}

/* Every op of the catalogue, with each kind of attribute value. */
static void accepts_every_op(void **state)
{
    (void)state;
    expect_accepted(
        "fuse 1\n"
        "dim N = 2, C = 8, H = 4\n"
        "block b(x: f32[N, C, H, W], q: f32[N, L, E]; k: int = 3, e: float = 1e-3, "
        "t: bool = true) {\n"
        "  a = upsample(x, scale=[2, 1.5], mode=\"bilinear\", align_corners=t)\n"
        "  a = upsample(x, size=[H * 2, W])\n"
        "  c = concat(x, x, x, axis=-3)\n"
        "  c = conv2d(c, out=C, kernel=[k, 1], stride=1, padding=[1, 0], dilation=1, groups=1, "
        "bias=t) @conv\n"
        "  c = batchnorm2d(c, eps=e) @bn\n"
        "  l = layernorm(batchnorm1d(flatten(c, start=2), eps=2) @bn1, eps=1e-5) @ln\n"
        "  m = mha(q, q, q, heads=2, bias=false) @attn\n"
        "  p = param(shape=[C, 1, 1]) @scale\n"
        "  y = relu(sigmoid(tanh(exp(sqrt(rsqrt(silu(abs(neg(gelu(c, approximate=tanh))))))))))\n"
        "  y = min(y, max(y, p))\n"
        "  s = mean(y, axes=[2, 3], keepdim=false) + sum(y, axes=-1) * amax(y, axes=1) - "
        "amin(y, axes=[0])\n"
        "  z = softmax(matmul(q, transpose(q, dims=[1, 2])), axis=-1)\n"
        "  z = view(permute(z, perm=[0, 2, 1]), shape=[N, -1])\n"
        "  z = linear(z, out=k * 2) @fc\n"
        "  v = avgpool2d(maxpool2d(y, kernel=2), kernel=[1, 1], stride=1, padding=0)\n"
        "  return y * 0.5 + -y / e\n"
        "}\n"
        "graph g(x: f32[N, C, H, H], q: f32[N, 3, 4]) -> f32[N, C, H, H] {\n"
        "  return b(x, q, k=3, e=0.5, t=false) @blk\n"
        "}\n");
}

/* Shadowing, rebinding, loops, dims in scopes and defaults. */
static void accepts_names_in_scope(void **state)
{
    (void)state;
    expect_accepted(
        "fuse 1\n"
        "dim C = 3, N = 1\n"
        "dim Hl = H // 2, H = 8\n"
        "require H % 2 == 0\n"
        "block f(x: f32[N, C, H, W]; r: int = C // 2, out: int = r) -> f32[N, out, H, W] {\n"
        "  require C >= r\n"
        "  x = conv2d(x, out=out, kernel=1) @conv{r}\n"
        "  return x\n"
        "}\n"
        "graph g(x: f32[N, 4, H, H]) -> (a: f32[N, 2, H, H], b: f32[N, 4, H, H]) {\n"
        "  y = x\n"
        "  for i in 0..2 {\n"
        "    y = y + i * x\n"
        "    z = y\n"
        "  }\n"
        "  for i in 0..C { y = y * 1.0 }\n"
        "  a = f(z, out=2) @layers.{C - 1}\n"
        "  return a, y\n"
        "}\n");
}

/* Two independent mistakes are both reported, and neither cascades. */
static void independent_errors(void **state)
{
    (void)state;
    TestCompile t;
    Ast *ast = test_parse(&t, "fuse 1\n"
                              "graph g(x: f32[4]) -> f32[4] {\n"
                              "  a = relu(y)\n"
                              "  b = a + y + a\n"
                              "  c = conv2d(b, out=4, kernel=1)\n"
                              "  d = c * q\n"
                              "  return d\n"
                              "}\n");
    assert_non_null(ast);
    assert_false(sema_check(&t.cx, ast));
    assert_int_equal(t.diag.nerrors, 3); /* y (once), the missing scope, q */
    test_compile_free(&t);
}

static void sema_failure_builds_nothing(void **state)
{
    (void)state;
    TestCompile t;
    assert_false(test_compile(
        &t, "fuse 1\ngraph g(x: f32[4]) -> f32[4] {\n  return relu(x) @s\n}\n", NULL, NULL));
    assert_null(t.graph);
    test_compile_free(&t);
}

static void unknown_op_suggests(void **state)
{
    (void)state;
    expect_sema("fuse 1\n"
                "graph g(x: f32[4]) -> f32[4] {\n"
                "  return upsampel(x)\n"
                "}\n",
                "test.fuse:3:10: error: unknown op or block 'upsampel'; did you mean 'upsample'?\n"
                "    3 |   return upsampel(x)\n"
                "      |          ^~~~~~~~\n");
}

static void undefined_name_suggests(void **state)
{
    (void)state;
    expect_sema("fuse 1\n"
                "graph g(input: f32[4]) -> f32[4] {\n"
                "  y = relu(inpt)\n"
                "  return y + inpt\n"
                "}\n",
                "test.fuse:3:12: error: undefined name 'inpt'; did you mean 'input'?\n"
                "    3 |   y = relu(inpt)\n"
                "      |            ^~~~\n");
}

static void unknown_and_missing_attribute(void **state)
{
    (void)state;
    expect_sema("fuse 1\n"
                "graph g(x: f32[1, 3, 8, 8]) -> f32[1, 3, 8, 8] {\n"
                "  return conv2d(x, out=3, kernal=3) @c\n"
                "}\n",
                "test.fuse:3:27: error: conv2d has no attribute 'kernal'; did you mean 'kernel'?\n"
                "    3 |   return conv2d(x, out=3, kernal=3) @c\n"
                "      |                           ^~~~~~\n"
                "test.fuse:3:10: error: conv2d needs the attribute 'kernel'\n"
                "    3 |   return conv2d(x, out=3, kernal=3) @c\n"
                "      |          ^~~~~~\n");
}

static void duplicate_and_wrong_kind_attributes(void **state)
{
    (void)state;
    expect_sema("fuse 1\n"
                "graph g(x: f32[1, 3, 8, 8]) -> f32[1, 3, 8, 8] {\n"
                "  return conv2d(x, out=true, kernel=[1, 2, 3], kernel=1) @c\n"
                "}\n",
                "test.fuse:3:24: error: attribute 'out' of conv2d takes an int, not a bool\n"
                "    3 |   return conv2d(x, out=true, kernel=[1, 2, 3], kernel=1) @c\n"
                "      |                        ^~~~\n"
                "test.fuse:3:37: error: attribute 'kernel' of conv2d takes one value or a pair [h, "
                "w], not a list of 3\n"
                "    3 |   return conv2d(x, out=true, kernel=[1, 2, 3], kernel=1) @c\n"
                "      |                                     ^~~~~~~~~\n"
                "test.fuse:3:48: error: attribute 'kernel' is given twice\n"
                "    3 |   return conv2d(x, out=true, kernel=[1, 2, 3], kernel=1) @c\n"
                "      |                                                ^~~~~~\n"
                "test.fuse:3:30: note: 'kernel' was first given here\n"
                "    3 |   return conv2d(x, out=true, kernel=[1, 2, 3], kernel=1) @c\n"
                "      |                              ^~~~~~\n");
}

static void enum_word(void **state)
{
    (void)state;
    expect_sema(
        "fuse 1\n"
        "graph g(x: f32[1, 3, 8, 8]) -> f32[1, 3, 16, 16] {\n"
        "  a = upsample(x, scale=2, mode=bicubic)\n"
        "  return upsample(x, scale=2, mode=bilnear)\n"
        "}\n",
        "test.fuse:3:33: error: unknown mode 'bicubic' for upsample; expected nearest or bilinear\n"
        "    3 |   a = upsample(x, scale=2, mode=bicubic)\n"
        "      |                                 ^~~~~~~\n"
        "test.fuse:4:36: error: unknown mode 'bilnear' for upsample; did you mean 'bilinear'?\n"
        "    4 |   return upsample(x, scale=2, mode=bilnear)\n"
        "      |                                    ^~~~~~~\n");
}

static void upsample_size_scale_align(void **state)
{
    (void)state;
    expect_sema("fuse 1\n"
                "graph g(x: f32[1, 3, 8, 8]) -> f32[1, 3, 16, 16] {\n"
                "  a = upsample(x, size=16, scale=2)\n"
                "  return upsample(x, mode=nearest, align_corners=false)\n"
                "}\n",
                "test.fuse:3:28: error: upsample takes size or scale, not both\n"
                "    3 |   a = upsample(x, size=16, scale=2)\n"
                "      |                            ^~~~~\n"
                "test.fuse:4:10: error: upsample needs size or scale\n"
                "    4 |   return upsample(x, mode=nearest, align_corners=false)\n"
                "      |          ^~~~~~~~\n"
                "test.fuse:4:36: error: 'align_corners' is only allowed with mode=bilinear, not "
                "mode=nearest\n"
                "    4 |   return upsample(x, mode=nearest, align_corners=false)\n"
                "      |                                    ^~~~~~~~~~~~~\n");
}

static void scopes_required_and_forbidden(void **state)
{
    (void)state;
    expect_sema("fuse 1\n"
                "graph g(x: f32[2, 4]) -> f32[2, 4] {\n"
                "  y = linear(x, out=4)\n"
                "  return relu(y) @act\n"
                "}\n",
                "test.fuse:3:7: error: linear has weights, so it needs a scope: write '@name' "
                "after its ')'\n"
                "    3 |   y = linear(x, out=4)\n"
                "      |       ^~~~~~\n"
                "test.fuse:4:18: error: relu has no weights, so it cannot take a scope\n"
                "    4 |   return relu(y) @act\n"
                "      |                  ^~~~\n");
}

static void recursion(void **state)
{
    (void)state;
    expect_sema("fuse 1\n"
                "block a(x: f32[N]) { return b(x) }\n"
                "block b(x: f32[N]) { return a(x) }\n"
                "block c(x: f32[N]) { return c(x) }\n"
                "graph g(x: f32[4]) -> f32[4] {\n"
                "  return a(x)\n"
                "}\n",
                "test.fuse:3:29: error: recursive block call: a -> b -> a; blocks are inlined, so "
                "they cannot recurse\n"
                "    3 | block b(x: f32[N]) { return a(x) }\n"
                "      |                             ^\n"
                "test.fuse:4:29: error: block 'c' calls itself (c -> c); blocks are inlined, so "
                "they cannot recurse\n"
                "    4 | block c(x: f32[N]) { return c(x) }\n"
                "      |                             ^\n");
}

static void returns(void **state)
{
    (void)state;
    expect_sema("fuse 1\n"
                "block f(x: f32[N]) {\n"
                "  return x, x\n"
                "}\n"
                "block h(x: f32[N]) {\n"
                "  return x\n"
                "  y = x\n"
                "}\n"
                "block k(x: f32[N]) {\n"
                "  for i in 0..2 {\n"
                "    return x\n"
                "  }\n"
                "}\n"
                "graph g(x: f32[4]) -> (a: f32[4], b: f32[4]) {\n"
                "  return x\n"
                "}\n",
                "test.fuse:3:13: error: a block returns one tensor, not 2\n"
                "    3 |   return x, x\n"
                "      |             ^\n"
                "test.fuse:6:3: error: 'return' must be the last statement of block 'h'\n"
                "    6 |   return x\n"
                "      |   ^~~~~~~~\n"
                "test.fuse:8:1: error: block 'h' has no 'return' at the end of its body\n"
                "    8 | }\n"
                "      | ^\n"
                "test.fuse:11:5: error: 'return' cannot be inside a 'for' loop\n"
                "   11 |     return x\n"
                "      |     ^~~~~~~~\n"
                "test.fuse:13:1: error: block 'k' has no 'return' at the end of its body\n"
                "   13 | }\n"
                "      | ^\n"
                "test.fuse:15:3: error: graph 'g' declares 2 outputs but returns 1 value\n"
                "   15 |   return x\n"
                "      |   ^~~~~~~~\n");
}

static void global_names(void **state)
{
    (void)state;
    expect_sema("fuse 1\n"
                "dim N = 4\n"
                "dim N = 5\n"
                "block relu(x: f32[N]) { return x }\n"
                "block f(x: f32[N]) { return x }\n"
                "graph f(x: f32[N]) -> f32[N] { return x }\n",
                "test.fuse:3:5: error: dim 'N' is defined twice\n"
                "    3 | dim N = 5\n"
                "      |     ^\n"
                "test.fuse:2:5: note: 'N' was first defined here\n"
                "    2 | dim N = 4\n"
                "      |     ^\n"
                "test.fuse:4:7: error: block 'relu' has the name of an op; blocks and graphs may "
                "not reuse op names\n"
                "    4 | block relu(x: f32[N]) { return x }\n"
                "      |       ^~~~\n"
                "test.fuse:6:7: error: 'f' is defined twice\n"
                "    6 | graph f(x: f32[N]) -> f32[N] { return x }\n"
                "      |       ^\n"
                "test.fuse:5:7: note: 'f' was first defined here\n"
                "    5 | block f(x: f32[N]) { return x }\n"
                "      |       ^\n");
}

static void compile_time_arguments(void **state)
{
    (void)state;
    expect_sema("fuse 1\n"
                "block f(x: f32[N]; out: int, eps: float = 1e-5) { return x }\n"
                "graph g(x: f32[4]) -> f32[4] {\n"
                "  return f(x, outt=4, eps=true)\n"
                "}\n",
                "test.fuse:4:15: error: block 'f' has no compile-time parameter 'outt'; did you "
                "mean 'out'?\n"
                "    4 |   return f(x, outt=4, eps=true)\n"
                "      |               ^~~~\n"
                "test.fuse:4:27: error: compile-time parameter 'eps' of block 'f' takes a number, "
                "not a bool\n"
                "    4 |   return f(x, outt=4, eps=true)\n"
                "      |                           ^~~~\n"
                "test.fuse:4:10: error: missing compile-time argument 'out' of block 'f'\n"
                "    4 |   return f(x, outt=4, eps=true)\n"
                "      |          ^\n"
                "test.fuse:2:20: note: 'out' is declared here without a default\n"
                "    2 | block f(x: f32[N]; out: int, eps: float = 1e-5) { return x }\n"
                "      |                    ^~~~~~~~\n");
}

static void pattern_variable_not_inferable(void **state)
{
    (void)state;
    expect_sema("fuse 1\n"
                "dim H = 8\n"
                "block f(x: f32[N, H // 2]) { return x }\n"
                "graph g(x: f32[1, 4]) -> f32[1, 4] {\n"
                "  return f(x)\n"
                "}\n",
                "test.fuse:3:19: error: 'H' cannot be inferred from the arguments of block 'f': it "
                "appears only inside dim expressions, which are checked, never solved\n"
                "    3 | block f(x: f32[N, H // 2]) { return x }\n"
                "      |                   ^\n");
}

static void body_namespace(void **state)
{
    (void)state;
    expect_sema("fuse 1\n"
                "dim H = 8\n"
                "graph g(x: f32[H]) -> f32[H] {\n"
                "  H = relu(x)\n"
                "  for x in 0..2 { }\n"
                "  return x\n"
                "}\n",
                "test.fuse:4:3: error: cannot assign to 'H': it is a dim\n"
                "    4 |   H = relu(x)\n"
                "      |   ^\n"
                "test.fuse:2:5: note: 'H' is defined here\n"
                "    2 | dim H = 8\n"
                "      |     ^\n"
                "test.fuse:5:7: error: loop variable 'x' reuses the name of a tensor\n"
                "    5 |   for x in 0..2 { }\n"
                "      |       ^\n"
                "test.fuse:3:9: note: 'x' is defined here\n"
                "    3 | graph g(x: f32[H]) -> f32[H] {\n"
                "      |         ^\n");
}

static void types_and_dims(void **state)
{
    (void)state;
    expect_sema("fuse 1\n"
                "graph g(x: f16[H]) -> f32[Hx] {\n"
                "  return x\n"
                "}\n",
                "test.fuse:2:12: error: dtype 'f16' is reserved for a later version; version 1 has "
                "only f32\n"
                "    2 | graph g(x: f16[H]) -> f32[Hx] {\n"
                "      |            ^~~\n"
                "test.fuse:2:16: error: undefined dim 'H'\n"
                "    2 | graph g(x: f16[H]) -> f32[Hx] {\n"
                "      |                ^\n"
                "test.fuse:2:27: error: undefined dim 'Hx'\n"
                "    2 | graph g(x: f16[H]) -> f32[Hx] {\n"
                "      |                           ^~\n");
}

static void arity(void **state)
{
    (void)state;
    expect_sema("fuse 1\n"
                "block f(a: f32[N], b: f32[N]) { return a + b }\n"
                "graph g(x: f32[4]) -> f32[4] {\n"
                "  y = f(x)\n"
                "  return min(x, x, x)\n"
                "}\n",
                "test.fuse:4:7: error: block 'f' takes 2 tensor arguments, not 1\n"
                "    4 |   y = f(x)\n"
                "      |       ^\n"
                "test.fuse:2:7: note: 'f' is defined here\n"
                "    2 | block f(a: f32[N], b: f32[N]) { return a + b }\n"
                "      |       ^\n"
                "test.fuse:5:20: error: min takes 2 tensor arguments, not 3\n"
                "    5 |   return min(x, x, x)\n"
                "      |                    ^\n");
}

static void numbers_and_tensors(void **state)
{
    (void)state;
    expect_sema("fuse 1\n"
                "dim H = 4\n"
                "block f(x: f32[N]; b: bool) { return x * b }\n"
                "graph g(x: f32[H]) -> f32[H] {\n"
                "  y = relu(H)\n"
                "  return f(x, b=true) + H\n"
                "}\n",
                "test.fuse:3:42: error: 'b' is a bool parameter; it cannot be used in arithmetic\n"
                "    3 | block f(x: f32[N]; b: bool) { return x * b }\n"
                "      |                                          ^\n"
                "test.fuse:5:12: error: argument 1 of relu must be a tensor, not the dim 'H'\n"
                "    5 |   y = relu(H)\n"
                "      |            ^\n");
}

static void graph_is_not_callable(void **state)
{
    (void)state;
    expect_sema("fuse 1\n"
                "graph h(x: f32[4]) -> f32[4] { return x }\n"
                "graph g(x: f32[4]) -> f32[4] {\n"
                "  return h(x)\n"
                "}\n",
                "test.fuse:4:10: error: 'h' is a graph; only ops and blocks can be called\n"
                "    4 |   return h(x)\n"
                "      |          ^\n"
                "test.fuse:2:7: note: 'h' is defined here\n"
                "    2 | graph h(x: f32[4]) -> f32[4] { return x }\n"
                "      |       ^\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_section1_example),
        cmocka_unit_test(accepts_every_op),
        cmocka_unit_test(accepts_names_in_scope),
        cmocka_unit_test(independent_errors),
        cmocka_unit_test(sema_failure_builds_nothing),
        cmocka_unit_test(unknown_op_suggests),
        cmocka_unit_test(undefined_name_suggests),
        cmocka_unit_test(unknown_and_missing_attribute),
        cmocka_unit_test(duplicate_and_wrong_kind_attributes),
        cmocka_unit_test(enum_word),
        cmocka_unit_test(upsample_size_scale_align),
        cmocka_unit_test(scopes_required_and_forbidden),
        cmocka_unit_test(recursion),
        cmocka_unit_test(returns),
        cmocka_unit_test(global_names),
        cmocka_unit_test(compile_time_arguments),
        cmocka_unit_test(pattern_variable_not_inferable),
        cmocka_unit_test(body_namespace),
        cmocka_unit_test(types_and_dims),
        cmocka_unit_test(arity),
        cmocka_unit_test(numbers_and_tensors),
        cmocka_unit_test(graph_is_not_callable),
    };
    return cmocka_run_group_tests_name("sema", tests, NULL, NULL);
}
