/*
 * passes: the optimizer, Graph -> Graph, as a list of passes run in order (the table in
 * passes.c is the list of what the compiler does to a graph). Each pass builds a new graph
 * through the rewriter (rewrite.h) and lives in compiler/pass_<name>.c, whose header comment
 * states what it rewrites, when it declines and its numerical contract. graph_verify runs
 * after every pass, and the kernel interface (inputs, params, outputs) must come out
 * unchanged: a failure is a compiler bug (fuse_panic).
 *
 * Decisions are made from op classes (ops.def) and shapes, never by recognizing a whole
 * workload: any graph the language can write gets the treatment the seed block gets.
 */
#ifndef FUSE_PASSES_H
#define FUSE_PASSES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ctx.h"
#include "graph.h"

/* One pass: returns the new graph (in g's arena); *rewritten gets how many nodes it replaced. */
typedef Graph *(*PassFn)(Ctx *cx, const Graph *g, uint32_t *rewritten);

typedef struct Pass {
    const char *name; /* as --dump-after spells it */
    const char *what; /* one line for --help and the docs */
    PassFn run;
} Pass;

typedef struct PassOptions {
    bool disabled;          /* -O0: the graph goes to the schedule as built */
    const char *dump_after; /* a pass name: dump the graph after it to dump_out and stop there */
    FILE *dump_out;
    FILE *time_out; /* --time-passes: per-pass time and node counts go here; NULL: off */
} PassOptions;

/* The pipeline, in order; *count gets its length. */
const Pass *passes_table(size_t *count);
/* The pass called `name`, or NULL. */
const Pass *passes_find(const char *name);
/* Writes the pass names separated by `sep` (for usage messages). */
void passes_list_names(FILE *out, const char *sep);

/* Runs the pipeline on g (opt may be NULL: every pass, no dump, no timing). Returns the
 * optimized graph, or g itself when the passes are disabled. The result has g's inputs,
 * params and outputs, in order, with the same names, keys and shapes. */
const Graph *passes_run(Ctx *cx, const Graph *g, const PassOptions *opt);

/* ---- the passes (one file each; contracts in their header comments) ---- */

/* permute(0,2,3,1) -> linear -> permute(0,3,1,2) becomes a 1x1 conv2d; view chains, identity
 * views and permutes, permute chains and permutes that only move size-1 axes simplified.
 * Exact: moves no arithmetic except the linear's, which becomes the same sums. */
Graph *pass_layout(Ctx *cx, const Graph *g, uint32_t *rewritten);
/* Eval BatchNorm folded into the conv2d/linear it follows (weight-only nodes), else turned
 * into a per-channel x * s + t. Reorders f32 rounding (within the conformance tolerance). */
Graph *pass_fold_batchnorm(Ctx *cx, const Graph *g, uint32_t *rewritten);
/* A contraction over a concat along its input channels becomes the sum of one contraction
 * per part with the weight sliced. Reorders f32 rounding of the sum. */
Graph *pass_split_concat(Ctx *cx, const Graph *g, uint32_t *rewritten);
/* conv1x1(upsample(x)) becomes upsample(conv1x1(x)) where that costs fewer FLOPs. Equal in
 * real arithmetic; f32 rounding differs within the conformance tolerance. */
Graph *pass_commute_upsample(Ctx *cx, const Graph *g, uint32_t *rewritten);
/* matmul(softmax(scale * q k^T), v) becomes one ATTENTION op (no score matrix). Equal in real
 * arithmetic; the online softmax rounds differently (within the conformance tolerance). */
Graph *pass_attention(Ctx *cx, const Graph *g, uint32_t *rewritten);
/* sigmoid(a + b) of two broadcast operands becomes sigmoid(a) sigmoid(b) / (sigmoid(a) sigmoid(b)
 * + sigmoid(-a) sigmoid(-b)): four sigmoids over the operands instead of one per element of
 * the sum. Equal in real arithmetic; within the conformance tolerance in f32. */
Graph *pass_factor_sigmoid(Ctx *cx, const Graph *g, uint32_t *rewritten);
/* Common subexpressions merged. Exact. */
Graph *pass_cse(Ctx *cx, const Graph *g, uint32_t *rewritten);
/* Nodes no output depends on removed (inputs and params kept). Exact. */
Graph *pass_dce(Ctx *cx, const Graph *g, uint32_t *rewritten);

#endif
