/*
 * schedule: lowers a Graph into a LoopProgram (loop.h), deciding loop order, vector width,
 * the parallel axis and what is prepared once at create time.
 */
#ifndef FUSE_SCHEDULE_H
#define FUSE_SCHEDULE_H

#include <stdint.h>

#include "ctx.h"
#include "graph.h"
#include "loop.h"

/* Requires: g verified. Lowers every node of g into run kernels (and weight copies or
 * transformations into prepare kernels), in cx->loop_arena, with vectors of `vector_lanes`
 * (4, 8 or 16) f32 lanes. The result passes loop_verify and computes what interp_run computes
 * (within the conformance tolerance). Returns NULL only after reporting an error (e.g. a
 * buffer too large for this machine's address space). */
LoopProgram *schedule_graph(Ctx *cx, const Graph *g, uint32_t vector_lanes);

#endif
