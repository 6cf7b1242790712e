/*
 * interp: the reference interpreter over the graph IR. Simple and obviously correct, it is the
 * oracle every backend is tested against (`fusec run --backend interp`). Each node's result is
 * materialized in full; sums accumulate in double; numerics follow PyTorch 1.13 float32
 * (LANGUAGE.md §3), including its f32 index arithmetic for upsampling.
 */
#ifndef FUSE_INTERP_H
#define FUSE_INTERP_H

#include <stdbool.h>
#include <stddef.h>

#include "graph.h"

/* Runs g. params[i] holds g->params[i] (contiguous, its shape), inputs[i] g->inputs[i],
 * outputs[i] receives g->outputs[i]. Buffers may not overlap outputs.
 * Returns false, with a message in err, when memory for an intermediate cannot be had. */
bool interp_run(const Graph *g, const float *const *params, const float *const *inputs,
                float *const *outputs, char *err, size_t errlen);

#endif
