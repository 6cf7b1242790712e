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
#include "graph.h"

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

#endif
