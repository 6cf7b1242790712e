/*
 * weights: binds a graph's parameters to data: from a safetensors file (LANGUAGE.md §4), or
 * deterministic pseudo-random values when no file is given (`run` and `bench`).
 */
#ifndef FUSE_WEIGHTS_H
#define FUSE_WEIGHTS_H

#include <stdbool.h>

#include "ctx.h"
#include "fuse_rt.h"
#include "graph.h"

/* Opens `path` and checks every parameter of g against it: the key (with cx->prefix) must
 * exist, be F32 and have the parameter's shape; each problem is an error at the .fuse line that
 * wanted the key. Unused keys under the prefix get one warning (their count and the first five);
 * keys ending in num_batches_tracked and keys outside the prefix are ignored.
 * On success returns the open file (caller closes it) and sets data[i] for g->params[i],
 * pointing into it. Returns NULL after reporting errors. */
fuse_rt_safetensors *weights_bind_file(Ctx *cx, const Graph *g, const char *path,
                                       const float **data);

/* Fills `out` (numel of the parameter) with the deterministic values `run` and `bench` use
 * without a weights file. The values depend only on the key and the init kind. */
void weights_fill_random(const Node *param, float *out);

/* The key prefix as LANGUAGE.md §4 normalizes it: "" or a string ending in '.'.
 * Writes into buf; returns buf. */
const char *weights_normalized_prefix(const char *prefix, char *buf, size_t size);

#endif
