/*
 * ctx: creation and teardown of a compilation context (see ctx.h).
 */
#include "ctx.h"

#include <string.h>

#include "arena.h"

void ctx_init(Ctx *cx, const Source *src, Diag *diag)
{
    memset(cx, 0, sizeof *cx);
    cx->src = src;
    cx->diag = diag;
    cx->ast_arena = arena_new(0);
    cx->graph_arena = arena_new(0);
    cx->loop_arena = arena_new(0);
    cx->verify_each = true;
}

void ctx_free(Ctx *cx)
{
    arena_free(cx->ast_arena);
    arena_free(cx->graph_arena);
    arena_free(cx->loop_arena);
    cx->ast_arena = cx->graph_arena = cx->loop_arena = NULL;
}
