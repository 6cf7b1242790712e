/*
 * pass cse: common subexpressions merged.
 *
 * Two nodes are the same computation when they have the same op, the same (already merged)
 * inputs in the same order, the same shape and byte-identical attributes; for ADD and MUL the
 * inputs may come in either order. The second becomes a use of the first. Scalars with the
 * same bits merge; inputs and params never do (they are the interface).
 * Declines: nothing else is compared. Attributes are compared by their bytes, which is exact
 * (equal bytes mean equal attributes; nodes come zeroed from the arena, so unset bytes match)
 * and at worst misses a merge (e.g. 0.0 and -0.0 scalars stay apart).
 * Numerical contract: exact: a merged node computes the very same values.
 */
#include <string.h>

#include "arena.h"
#include "passes.h"
#include "rewrite.h"

typedef struct Table {
    Node **slots; /* open addressing, NULL = empty; a power of two entries */
    uint32_t mask;
} Table;

static bool commutes(OpKind k)
{
    return k == OP_ADD || k == OP_MUL;
}

/* The inputs of the node `old` would have, in canonical order. */
static void canonical_inputs(const Rewriter *rw, const Node *old, Node **ins)
{
    for (uint32_t k = 0; k < old->ninputs; k++)
        ins[k] = rw_in(rw, old, k);
    if (commutes(old->kind) && ins[0]->id > ins[1]->id) {
        Node *t = ins[0];
        ins[0] = ins[1];
        ins[1] = t;
    }
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    return (h ^ v) * 1099511628211ULL; /* FNV-1a step */
}

static uint64_t hash_node(OpKind kind, Node *const *ins, uint32_t nin, const Shape *shape,
                          const void *attr, size_t attr_size)
{
    uint64_t h = mix(1469598103934665603ULL, (uint64_t)kind);
    for (uint32_t k = 0; k < nin; k++)
        h = mix(h, ins[k]->id);
    for (uint32_t d = 0; d < shape->rank; d++)
        h = mix(h, (uint64_t)shape->dim[d]);
    const unsigned char *a = attr;
    for (size_t i = 0; i < attr_size; i++)
        h = mix(h, a[i]);
    return h;
}

static bool same(const Node *n, OpKind kind, Node *const *ins, uint32_t nin, const Node *old)
{
    if (n->kind != kind || n->ninputs != nin || !shape_equal(&n->shape, &old->shape) ||
        memcmp(&n->attr, &old->attr, sizeof n->attr) != 0)
        return false;
    Node *have[2];
    const Node *const *cmp = (const Node *const *)n->inputs;
    if (commutes(kind)) {
        have[0] = n->inputs[0]->id <= n->inputs[1]->id ? n->inputs[0] : n->inputs[1];
        have[1] = have[0] == n->inputs[0] ? n->inputs[1] : n->inputs[0];
        cmp = (const Node *const *)have;
    }
    for (uint32_t k = 0; k < nin; k++)
        if (cmp[k] != ins[k])
            return false;
    return true;
}

static Node *rule(Rewriter *rw, const Node *old, void *ctx)
{
    Table *t = ctx;
    Node *small[8];
    Node **ins = old->ninputs <= 8 ? small : ARENA_ARRAY(rw->g->arena, Node *, old->ninputs);
    canonical_inputs(rw, old, ins);
    uint64_t h = hash_node(old->kind, ins, old->ninputs, &old->shape, &old->attr, sizeof old->attr);
    uint32_t i = (uint32_t)h & t->mask;
    for (; t->slots[i]; i = (i + 1) & t->mask)
        if (same(t->slots[i], old->kind, ins, old->ninputs, old))
            return t->slots[i];
    Node *n = rw_copy(rw, old);
    t->slots[i] = n;
    return n;
}

Graph *pass_cse(Ctx *cx, const Graph *g, uint32_t *rewritten)
{
    Table t;
    uint32_t size = 64;
    while (size < 2 * g->nnodes)
        size *= 2;
    t.slots = ARENA_ARRAY(g->arena, Node *, size);
    t.mask = size - 1;
    return rewrite_graph(cx, g, rule, &t, rewritten);
}
