/*
 * test_scanner: the flex scanner (grammar/fuse.l) through scan_dump_tokens, the --dump=tokens
 * view: token kinds and positions, the newline rules, scopes, and every lexical error,
 * including hostile input (NUL bytes, huge literals, deep nesting).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"
#include "diag.h"
#include "source.h"

/* One scan: the token dump, the diagnostics, and whether the scan reported no error. */
typedef struct Scan {
    char *tokens;
    char *diags;
    char *kinds; /* just the KIND column, space separated */
    bool ok;
} Scan;

static void scan_n(Scan *s, const char *text, size_t len)
{
    size_t tokens_len, diags_len;
    FILE *tokens = open_memstream(&s->tokens, &tokens_len);
    FILE *diags = open_memstream(&s->diags, &diags_len);
    Source *src = source_new("test.fuse", text, len);
    Diag d;
    diag_init(&d, src, diags);
    s->ok = scan_dump_tokens(src, &d, tokens);
    fclose(tokens);
    fclose(diags);
    source_free(src);
    /* KIND is the second field of each line. */
    s->kinds = calloc(1, strlen(s->tokens) + 1);
    for (const char *line = s->tokens; *line;) {
        const char *kind = strchr(line, ' ') + 1;
        size_t n = strcspn(kind, " ");
        if (*s->kinds)
            strcat(s->kinds, " ");
        strncat(s->kinds, kind, n);
        line = strchr(line, '\n') + 1;
    }
}

static void scan(Scan *s, const char *text)
{
    scan_n(s, text, strlen(text));
}

static void scan_free(Scan *s)
{
    free(s->tokens);
    free(s->diags);
    free(s->kinds);
}

static void keywords_and_identifiers(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "fuse dim block graph return require for in true false int float bool f32 f16 bf16\n"
             "fused _x f64 Int");
    assert_true(s.ok);
    assert_string_equal(s.kinds, "FUSE DIM BLOCK GRAPH RETURN REQUIRE FOR IN TRUE FALSE INT_KW "
                                 "FLOAT_KW BOOL_KW F32 F16 BF16 IDENT IDENT IDENT IDENT EOF");
    scan_free(&s);
}

static void dump_format(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "fuse 1\ndim N = 12 # twelve\n");
    assert_true(s.ok);
    assert_string_equal(s.tokens, "1:1 FUSE 'fuse'\n"
                                  "1:6 INT '1'\n"
                                  "2:1 DIM 'dim'\n"
                                  "2:5 IDENT 'N'\n"
                                  "2:7 ASSIGN '='\n"
                                  "2:9 INT '12'\n"
                                  "2:11 EOF ''\n");
    assert_string_equal(s.diags, "");
    scan_free(&s);
}

static void range_is_int_dotdot_int(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "0..3 i..n 10..(2*n)");
    assert_true(s.ok);
    assert_string_equal(s.kinds, "INT DOTDOT INT IDENT DOTDOT IDENT INT DOTDOT LPAREN INT STAR "
                                 "IDENT RPAREN EOF");
    scan_free(&s);
}

static void floats(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "1e-5 2.5E+3 0.5 3e2 12");
    assert_true(s.ok);
    assert_string_equal(s.kinds, "FLOAT FLOAT FLOAT FLOAT INT EOF");
    assert_non_null(strstr(s.tokens, "1:1 FLOAT '1e-5'\n1:6 FLOAT '2.5E+3'\n"));
    scan_free(&s);
}

static void operators(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "a // b / c % d -> == != < <= > >= = + - * , ; : [ ]");
    assert_true(s.ok);
    assert_string_equal(s.kinds, "IDENT SLASHSLASH IDENT SLASH IDENT PERCENT IDENT ARROW EQ NE LT "
                                 "LE GT GE ASSIGN PLUS MINUS STAR COMMA SEMI COLON LBRACKET "
                                 "RBRACKET EOF");
    scan_free(&s);
}

static void scope_with_dots(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "f(x) @fc.0 + g(y) @conv_fuse");
    assert_true(s.ok);
    assert_string_equal(s.kinds, "IDENT LPAREN IDENT RPAREN AT SEGTEXT SEGDOT SEGTEXT PLUS IDENT "
                                 "LPAREN IDENT RPAREN AT SEGTEXT EOF");
    assert_non_null(strstr(s.tokens, "1:6 AT '@'\n1:7 SEGTEXT 'fc'\n1:9 SEGDOT '.'\n"
                                     "1:10 SEGTEXT '0'\n"));
    scan_free(&s);
}

static void scope_keywords_are_segments(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "@graph.in.0x");
    assert_true(s.ok);
    assert_string_equal(s.kinds, "AT SEGTEXT SEGDOT SEGTEXT SEGDOT SEGTEXT EOF");
    scan_free(&s);
}

static void scope_splices(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "@layers.{i}.conv @layer{i+1}");
    assert_true(s.ok);
    assert_string_equal(s.kinds, "AT SEGTEXT SEGDOT SPLICE_OPEN IDENT SPLICE_CLOSE SEGDOT SEGTEXT "
                                 "AT SEGTEXT SPLICE_OPEN IDENT PLUS INT SPLICE_CLOSE EOF");
    scan_free(&s);
}

/* Only a '}' closes a splice: a stray ')' inside one leaves the scanner in the splice. */
static void splice_closed_only_by_brace(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "(f(x) @a{i)}.b)");
    assert_true(s.ok); /* the parser reports the stray ')' */
    assert_string_equal(s.kinds, "LPAREN IDENT LPAREN IDENT RPAREN AT SEGTEXT SPLICE_OPEN IDENT "
                                 "RPAREN SPLICE_CLOSE SEGDOT SEGTEXT RPAREN EOF");
    scan_free(&s);

    scan(&s, "{\nx = f(y) @a{i\ny = 1\n}");
    assert_false(s.ok);
    assert_string_equal(s.kinds, "LBRACE NL IDENT ASSIGN IDENT LPAREN IDENT RPAREN AT SEGTEXT "
                                 "SPLICE_OPEN IDENT ERROR NL IDENT ASSIGN INT NL RBRACE EOF");
    assert_string_equal(s.diags, "test.fuse:2:14: error: missing '}' in scope splice\n"
                                 "    2 | x = f(y) @a{i\n"
                                 "      |              ^\n"
                                 "test.fuse:2:12: note: '{' opened here\n"
                                 "    2 | x = f(y) @a{i\n"
                                 "      |            ^\n");
    scan_free(&s);
}

static void scope_ends_at_other_bytes(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "{\nx = f(y) @a.b\n}");
    assert_true(s.ok);
    assert_string_equal(s.kinds, "LBRACE NL IDENT ASSIGN IDENT LPAREN IDENT RPAREN AT SEGTEXT "
                                 "SEGDOT SEGTEXT NL RBRACE EOF");
    scan_free(&s);
}

static void newlines_only_in_bodies(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "fuse 1\ndim N = 1,\n  H = 2\ngraph g(x: f32[N],\n  y: f32[N])\n  -> f32[N] {\n"
             "  a = f(x,\n    y)\n  b = [1,\n 2]\n\n  return a\n}\n");
    assert_true(s.ok);
    assert_string_equal(s.kinds,
                        "FUSE INT DIM IDENT ASSIGN INT COMMA IDENT ASSIGN INT "
                        "GRAPH IDENT LPAREN IDENT COLON F32 LBRACKET IDENT RBRACKET COMMA "
                        "IDENT COLON F32 LBRACKET IDENT RBRACKET RPAREN ARROW F32 LBRACKET IDENT "
                        "RBRACKET LBRACE NL "
                        "IDENT ASSIGN IDENT LPAREN IDENT COMMA IDENT RPAREN NL "
                        "IDENT ASSIGN LBRACKET INT COMMA INT RBRACKET NL NL "
                        "RETURN IDENT NL RBRACE EOF");
    scan_free(&s);
}

static void newline_in_nested_body(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "{\nf(for i in 0..2 {\n})\n}");
    /* a body inside parentheses takes newlines again; its end gives them back to ( ) */
    assert_string_equal(s.kinds, "LBRACE NL IDENT LPAREN FOR IDENT IN INT DOTDOT INT LBRACE NL "
                                 "RBRACE RPAREN NL RBRACE EOF");
    scan_free(&s);
}

static void comments(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "# leading\nfuse 1 # version\n{\n  x = 1 # one\n  # whole line\n}\n#end");
    assert_true(s.ok);
    assert_string_equal(s.kinds, "FUSE INT LBRACE NL IDENT ASSIGN INT NL NL RBRACE EOF");
    scan_free(&s);
}

static void strings(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "\"bilinear\" \"a-b_1\" \"\"");
    assert_true(s.ok);
    assert_string_equal(s.kinds, "STRING STRING STRING EOF");
    scan_free(&s);

    scan(&s, "\"a b\"");
    assert_false(s.ok);
    assert_string_equal(s.diags, "test.fuse:1:1: error: a string may hold only letters, digits, "
                                 "'_' and '-'\n"
                                 "    1 | \"a b\"\n"
                                 "      | ^~~~~\n");
    scan_free(&s);

    scan(&s, "\"abc\nx");
    assert_false(s.ok);
    assert_non_null(strstr(s.diags, "1:1: error: unterminated string\n"));
    assert_string_equal(s.kinds, "ERROR IDENT EOF");
    scan_free(&s);
}

static void bad_characters(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "x = a $ b");
    assert_false(s.ok);
    assert_string_equal(s.kinds, "IDENT ASSIGN IDENT ERROR IDENT EOF");
    assert_string_equal(s.diags, "test.fuse:1:7: error: unexpected character '$'\n"
                                 "    1 | x = a $ b\n"
                                 "      |       ^\n");
    scan_free(&s);

    scan(&s, "x !\ny \xc3\x97\nz .\n'");
    assert_false(s.ok);
    assert_string_equal(s.kinds, "IDENT ERROR IDENT ERROR IDENT ERROR ERROR EOF");
    assert_non_null(strstr(s.diags, "1:3: error: unexpected character '!'\n"));
    assert_non_null(strstr(s.diags, "2:3: error: unexpected character '\xc3\x97'\n"));
    assert_non_null(strstr(s.diags, "3:3: error: unexpected character '.'\n"));
    assert_non_null(strstr(s.diags, "4:1: error: unexpected character \"'\"\n"));
    scan_free(&s);
}

/* A second error on a line is almost always a consequence of the first: it is not shown. */
static void one_error_per_line(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "x = $ $\ny = $");
    assert_false(s.ok);
    assert_string_equal(s.kinds, "IDENT ASSIGN ERROR ERROR IDENT ASSIGN ERROR EOF");
    assert_string_equal(s.diags, "test.fuse:1:5: error: unexpected character '$'\n"
                                 "    1 | x = $ $\n"
                                 "      |     ^\n"
                                 "test.fuse:2:5: error: unexpected character '$'\n"
                                 "    2 | y = $\n"
                                 "      |     ^\n");
    scan_free(&s);
}

static void nul_bytes(void **state)
{
    (void)state;
    static const char text[] = "fuse 1\0x\0\0";
    Scan s;
    scan_n(&s, text, sizeof text - 1);
    assert_false(s.ok);
    assert_string_equal(s.kinds, "FUSE INT ERROR IDENT ERROR ERROR EOF");
    assert_non_null(strstr(s.tokens, "1:7 ERROR '\\x00'\n"));
    assert_non_null(strstr(s.diags, "test.fuse:1:7: error: unexpected byte 0x00\n"));
    scan_free(&s);
}

static void identifier_length(void **state)
{
    (void)state;
    char text[400];
    memset(text, 'a', 255);
    text[255] = '\0';
    Scan s;
    scan(&s, text);
    assert_true(s.ok);
    assert_string_equal(s.kinds, "IDENT EOF");
    scan_free(&s);

    memset(text, 'b', 300);
    text[300] = '\0';
    scan(&s, text);
    assert_false(s.ok);
    assert_string_equal(s.kinds, "IDENT EOF");
    assert_non_null(strstr(s.diags, "1:1: error: identifier too long (300 bytes; at most 255)\n"));
    scan_free(&s);
}

static void huge_integers(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "4611686018427387904"); /* 2^62 */
    assert_true(s.ok);
    assert_string_equal(s.kinds, "INT EOF");
    scan_free(&s);

    scan(&s, "x 4611686018427387905\n99999999999999999999999999 y");
    assert_false(s.ok);
    assert_string_equal(s.kinds, "IDENT ERROR ERROR IDENT EOF");
    assert_non_null(strstr(s.diags, "1:3: error: integer literal too large (at most 2^62)\n"));
    assert_non_null(strstr(s.diags, "2:1: error: integer literal too large (at most 2^62)\n"));
    scan_free(&s);
}

static void malformed_numbers(void **state)
{
    (void)state;
    Scan s;
    scan(&s, ".5\n5.\n3x\n1e999");
    assert_false(s.ok);
    assert_string_equal(s.kinds, "FLOAT FLOAT ERROR FLOAT EOF");
    assert_non_null(strstr(s.diags, "1:1: error: a float literal needs a digit before '.' "
                                    "(write 0.5)\n"));
    assert_non_null(strstr(s.diags, "2:1: error: a float literal needs a digit after '.' "
                                    "(write 5.0)\n"));
    assert_non_null(strstr(s.diags, "3:1: error: invalid number '3x'\n"));
    assert_non_null(strstr(s.diags, "4:1: error: float literal too large\n"));
    scan_free(&s);
}

static void nesting_limit(void **state)
{
    (void)state;
    char text[1024];
    memset(text, '[', 256);
    memset(text + 256, ']', 256);
    text[512] = '\0';
    Scan s;
    scan(&s, text);
    assert_true(s.ok);
    scan_free(&s);

    memset(text, '(', 600);
    text[600] = '\0';
    scan(&s, text);
    assert_false(s.ok);
    /* one error, at the 257th bracket, and then the scan stops */
    assert_non_null(strstr(s.diags, "test.fuse:1:257: error: nesting too deep (more than 256 "
                                    "open brackets)\n"));
    assert_null(strstr(strstr(s.diags, "error:") + 1, "error:"));
    assert_non_null(strstr(s.tokens, "1:256 LPAREN '('\n1:257 ERROR '('\n1:258 EOF ''\n"));
    scan_free(&s);
}

static void scope_errors(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "f(x) @ s");
    assert_false(s.ok);
    assert_string_equal(s.diags, "test.fuse:1:6: error: '@' must be followed by a scope name, "
                                 "with no space in between\n"
                                 "    1 | f(x) @ s\n"
                                 "      |      ^\n");
    scan_free(&s);

    scan(&s, "f(x) @a. b");
    assert_false(s.ok);
    assert_non_null(strstr(s.diags, "1:8: error: a scope segment must follow '.' (a scope has no "
                                    "spaces)\n"));
    assert_string_equal(s.kinds, "IDENT LPAREN IDENT RPAREN AT SEGTEXT ERROR IDENT EOF");
    scan_free(&s);

    scan(&s, "@a{@b}");
    assert_false(s.ok);
    assert_non_null(strstr(s.diags, "1:4: error: a scope cannot appear inside a scope\n"));
    scan_free(&s);
}

static void eof_after_last_token(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "{\n  x\n\n# trailing comment\n\n");
    assert_string_equal(s.tokens, "1:1 LBRACE '{'\n"
                                  "1:2 NL '\\n'\n"
                                  "2:3 IDENT 'x'\n"
                                  "2:4 NL '\\n'\n"
                                  "3:1 NL '\\n'\n"
                                  "4:19 NL '\\n'\n"
                                  "5:1 NL '\\n'\n"
                                  "2:4 EOF ''\n");
    scan_free(&s);

    scan(&s, "");
    assert_true(s.ok);
    assert_string_equal(s.tokens, "1:1 EOF ''\n");
    scan_free(&s);
}

static void missing_brace_before_declaration(void **state)
{
    (void)state;
    Scan s;
    scan(&s, "graph g() {\n  for i in 0..2 {\n    x = y\ngraph h");
    assert_false(s.ok);
    /* two zero-width '}' close the open bodies before the keyword */
    assert_non_null(strstr(s.tokens, "3:10 NL '\\n'\n4:1 RBRACE ''\n4:1 RBRACE ''\n"
                                     "4:1 GRAPH 'graph'\n"));
    assert_non_null(strstr(s.diags, "test.fuse:4:1: error: missing '}' before 'graph'\n"));
    assert_non_null(strstr(s.diags, "test.fuse:2:17: note: '{' opened here\n"));
    scan_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keywords_and_identifiers),
        cmocka_unit_test(dump_format),
        cmocka_unit_test(range_is_int_dotdot_int),
        cmocka_unit_test(floats),
        cmocka_unit_test(operators),
        cmocka_unit_test(scope_with_dots),
        cmocka_unit_test(scope_keywords_are_segments),
        cmocka_unit_test(scope_splices),
        cmocka_unit_test(splice_closed_only_by_brace),
        cmocka_unit_test(scope_ends_at_other_bytes),
        cmocka_unit_test(newlines_only_in_bodies),
        cmocka_unit_test(newline_in_nested_body),
        cmocka_unit_test(comments),
        cmocka_unit_test(strings),
        cmocka_unit_test(bad_characters),
        cmocka_unit_test(one_error_per_line),
        cmocka_unit_test(nul_bytes),
        cmocka_unit_test(identifier_length),
        cmocka_unit_test(huge_integers),
        cmocka_unit_test(malformed_numbers),
        cmocka_unit_test(nesting_limit),
        cmocka_unit_test(scope_errors),
        cmocka_unit_test(eof_after_last_token),
        cmocka_unit_test(missing_brace_before_declaration),
    };
    return cmocka_run_group_tests_name("scanner", tests, NULL, NULL);
}
