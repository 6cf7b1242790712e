/*
 * rewrite: the one way the graph passes change a graph. A rewrite copies the old graph node by
 * node, in topological order, into a NEW graph in the same arena, keeping an old -> new map; a
 * pass's rule sees each old node after its inputs have been mapped and may stand a new subgraph
 * in for it. The old graph is never mutated, so a pass can always compare with what it had.
 *
 * Invariants kept for every pass:
 * - The interface is identical: the same inputs (names, shapes, order), the same params (ALL
 *   of them, used or not: they are the kernel's weight interface, in the same order with the
 *   same keys), the same outputs in the same order under the same names and shapes.
 * - The new graph is SSA in topological order: a rule can only use nodes already made.
 * - Nodes a rule makes take the span of the old node being rewritten, or of the one the rule
 *   names with rw_span_of (a folded conv keeps its conv's), so the schedule's comments and
 *   any diagnostic still point at the .fuse text they came from.
 * Rules see live nodes only (those an output depends on); dead ones are copied as they are.
 * A node a rule replaced is still copied if it was reached first (e.g. a conv before the
 * BatchNorm that absorbs it): the copy is dead, and the dce pass removes it.
 */
#ifndef FUSE_REWRITE_H
#define FUSE_REWRITE_H

#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"
#include "graph.h"

typedef struct Rewriter {
    Ctx *cx;
    const Graph *old;
    Graph *g;             /* the graph being made */
    Node **map;           /* by old id: the new node standing for it (NULL until visited) */
    const bool *live;     /* by old id: an output depends on the node */
    const uint32_t *uses; /* by old id: uses by live old nodes, each output position counting */
    const Node *at;       /* the old node being rewritten */
    Span span;            /* what new nodes take: at's, unless the rule calls rw_span_of */
    Node *at_copy;        /* rw_copy(at), if the rule made one: a copy is not a rewrite */
    uint32_t rewritten;   /* nodes the rule replaced or dropped */
} Rewriter;

/* A pass's rule, called for every live old node except inputs and params (copied as they
 * are), with the node's inputs already mapped. Returns the new node that stands for `old`
 * (made with the rw_* helpers below, or an existing new node), or NULL to copy `old`
 * unchanged. */
typedef Node *(*RewriteRule)(Rewriter *rw, const Node *old, void *ctx);

/* Rewrites g with rule into a new graph allocated in g's arena. *rewritten (if not NULL) gets
 * the number of nodes the rule replaced. */
Graph *rewrite_graph(Ctx *cx, const Graph *g, RewriteRule rule, void *ctx, uint32_t *rewritten);
/* g without its dead nodes (inputs and params stay): the dce pass. *rewritten gets how many
 * nodes were left out. */
Graph *rewrite_drop_dead(Ctx *cx, const Graph *g, uint32_t *rewritten);

/* live[id] of g: an output depends on node id (interp.c and the schedule decide the same).
 * Returns an array in g's arena. */
bool *rewrite_liveness(const Graph *g);

/* ---- building blocks for rules (new nodes take rw->span) ---- */

/* Nodes made from now on (in this rule call) take old node `old`'s span. */
void rw_span_of(Rewriter *rw, const Node *old);

/* The new node standing for old node `old` (which must have been visited and not dropped). */
Node *rw_map(const Rewriter *rw, const Node *old);
/* The new node standing for input k of old node `old`. */
Node *rw_in(const Rewriter *rw, const Node *old, uint32_t k);
/* `old` copied with its inputs mapped, same attributes and shape. */
Node *rw_copy(Rewriter *rw, const Node *old);
/* A node of `kind` over new nodes with shape `shape`; the caller sets attributes. */
Node *rw_node(Rewriter *rw, OpKind kind, Node *const *inputs, uint32_t ninputs, const Shape *shape);
Node *rw_scalar(Rewriter *rw, float value);
/* Elementwise ops; binary ones broadcast (the shapes must be compatible). */
Node *rw_unary(Rewriter *rw, OpKind kind, Node *x);
Node *rw_binary(Rewriter *rw, OpKind kind, Node *a, Node *b);
/* x reshaped to `shape` (same element count), reading through views of views; the source
 * itself if it has that shape. */
Node *rw_view(Rewriter *rw, Node *x, const Shape *shape);
/* x with output axis i = input axis perm[i]. */
Node *rw_permute(Rewriter *rw, Node *x, const uint32_t *perm);
/* Input indices start..start+length-1 along axis (x itself when that is all of it). */
Node *rw_slice(Rewriter *rw, Node *x, uint32_t axis, int64_t start, int64_t length);
/* A conv2d with the window attributes of `proto` (an old or new OP_CONV2D) over x with weight
 * w [out, in/groups, kh, kw] and optional bias b [out]; the result shape follows from them. */
Node *rw_conv2d(Rewriter *rw, const Node *proto, Node *x, Node *w, Node *b);
/* nn.Linear of x over its last axis with weight w [out, in] and optional bias b [out]. While
 * the schedule prepares LINEAR weights only from params (it transposes a param at create
 * time), a computed weight is transposed in the graph instead: matmul(x, permute(w)) + b. The
 * transpose depends only on weights, so it is the same create-time work, and the sums are the
 * same (one rounding of the bias add apart). */
Node *rw_linear(Rewriter *rw, Node *x, Node *w, Node *b);
/* An upsample with the attributes of `proto` (an OP_UPSAMPLE) of x [N, C', h, w], where h, w
 * are the spatial size of proto's input, to the spatial size of proto's result. */
Node *rw_upsample(Rewriter *rw, const Node *proto, Node *x);

#endif
