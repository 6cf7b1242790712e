/*
 * test_support: see test_support.h.
 */
#include "test_support.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "front.h"

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
