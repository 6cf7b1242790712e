/*
 * dot: `fusec dot`: a graph as Graphviz text, before and after optimization, with the fused
 * groups (one per run kernel) drawn as clusters, so a reader sees at a glance what became one
 * loop nest, what runs once at create time, and which tensors still exist in memory.
 */
#ifndef FUSE_DOT_H
#define FUSE_DOT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "graph.h"

/* How the optimized graph was partitioned (schedule_plan's FusionPlan): group_of[id] is the
 * run kernel computing node id, or -1 for nodes that are not computed per call (inputs,
 * weights, scalars, aliases, and whatever is computed once at create time: prepared[id]). */
typedef struct DotGroups {
    uint32_t ngroups;
    const int32_t *group_of;  /* by node id of the optimized graph */
    const char *const *names; /* by group: the kernel's name */
    const bool *prepared;     /* by node id: computed once at create time */
} DotGroups;

/* Writes one digraph with two clusters: `built` (the graph as written, one box per op) and,
 * when `optimized` is not NULL, the graph after the passes with its fused groups (`groups` may
 * be NULL: no grouping drawn). Labels show op, attributes that matter, and shapes; the spec
 * line of each node is in its tooltip. */
void dot_write(FILE *out, const Graph *built, const Graph *optimized, const DotGroups *groups);

#endif
