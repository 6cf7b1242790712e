/*
 * front: the stages from AST to graph.
 *
 *   sema   (sema.c)  AST -> checked AST: names, ops, attributes, scopes, recursion, returns.
 *                    Everything that does not need concrete dims. Reports every independent
 *                    error it finds.
 *   build  (build.c) checked AST -> Graph of one entry: binds dims (--dim over file defaults),
 *                    inlines blocks with per-call dim unification, unrolls `for`, evaluates
 *                    `require`, infers and checks every shape, forms weight keys.
 *
 * Why two stages and not a typed AST: blocks are inlined per call and loops unrolled, so one
 * AST node has a different shape at every instance. Shape checking therefore happens as the
 * graph is built, one instance at a time, and sema keeps what is true of every instance.
 */
#ifndef FUSE_FRONT_H
#define FUSE_FRONT_H

#include <stdbool.h>

#include "ast.h"
#include "ctx.h"
#include "graph.h"

/* Requires: ast from parse_source. Returns false if it reported errors. */
bool sema_check(Ctx *cx, const Ast *ast);

/* Requires: sema_check succeeded. Builds cx->entry (or the only graph) into cx->graph_arena.
 * Returns NULL if it reported errors. */
Graph *build_graph(Ctx *cx, const Ast *ast);

#endif
