/*
 * schedule: lowers a Graph into a LoopProgram (loop.h), deciding loop order, vector width,
 * the parallel axis and what is prepared once at create time.
 */
#ifndef FUSE_SCHEDULE_H
#define FUSE_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"
#include "graph.h"
#include "loop.h"

/* The fusion plan: which run kernel computes each node per call. A group is one loop nest (a
 * few kernels for ops that need several passes); groups are numbered in the order their kernels
 * run. The rules (schedule_plan.c) come from op classes: elementwise, resample and layout
 * producers are computed inside their consumer's loops when all their uses are there; the
 * elementwise consumers of a contraction run on its accumulators before the store; spatial and
 * per-pixel channel reductions are accumulated in the loops of the group producing their input;
 * a concat's inputs are stored into its slices by their producers where they can; whatever
 * depends only on weights is computed once at create time. Everything lives in
 * cx->loop_arena. */
typedef struct FusionPlan {
    uint32_t nnodes; /* of the graph */
    uint32_t ngroups;
    /* by node id: the group computing the node per call, or -1 for nodes not computed per call:
     * inputs, weights, scalars, views (aliases of another node's buffer), concats whose inputs
     * are all written into their slices by their producers, concats a 1x1 conv reads part by
     * part, nodes computed at create time and dead nodes */
    int32_t *group_of;
    const char **group_name; /* by group: its run kernel ("k14_conv2d_relu"; parts get suffixes) */
    bool *prepared;          /* by node id: computed once at create time from weights alone */
} FusionPlan;

/* Requires: g verified. Plans the fusion of g's nodes (the plan schedule_graph follows). With
 * cx->explain_fusion, reports a note at each node whose fusion was declined, saying why.
 * Returns: arena-allocated in cx->loop_arena; never NULL. */
FusionPlan *schedule_plan(Ctx *cx, const Graph *g);

/* Requires: g verified. Lowers the groups of schedule_plan into run kernels (and everything
 * that depends only on weights into prepare kernels), in cx->loop_arena, with vectors of
 * `vector_lanes` (4, 8 or 16) f32 lanes. The result passes loop_verify and computes what interp_run
 * computes (within the conformance tolerance). Returns NULL only after reporting an error (e.g. a
 * buffer too large for this machine's address space). */
LoopProgram *schedule_graph(Ctx *cx, const Graph *g, uint32_t vector_lanes);

#endif
