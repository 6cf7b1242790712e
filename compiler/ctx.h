/*
 * ctx: the state of one compilation, passed first to every stage. There are no globals: the
 * compiler is a library (the JIT embeds it), so everything lives here and in its arenas.
 */
#ifndef FUSE_CTX_H
#define FUSE_CTX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diag.h"
#include "source.h"

typedef struct Arena Arena;

/* A --dim NAME=VALUE binding from the command line or the API. */
typedef struct DimOverride {
    const char *name;
    int64_t value;
} DimOverride;

typedef struct Ctx {
    Diag *diag;         /* borrowed */
    const Source *src;  /* borrowed: the spec */
    Arena *ast_arena;   /* owns (ctx_free): the AST */
    Arena *graph_arena; /* owns (ctx_free): the graph IR */
    Arena *loop_arena;  /* owns (ctx_free): the loop IR */
    /* Options. */
    const char *entry;       /* graph to build; NULL: the only graph of the file */
    const char *prefix;      /* weight key prefix (LANGUAGE.md §4); NULL or "" for none */
    const DimOverride *dims; /* borrowed */
    size_t ndims;
    bool verify_each;    /* verify the graph after every pass */
    bool explain_fusion; /* --explain-fusion: a note at the spec line for each fusion declined */
} Ctx;

/* Initializes cx with fresh arenas. */
void ctx_init(Ctx *cx, const Source *src, Diag *diag);
void ctx_free(Ctx *cx);

#endif
