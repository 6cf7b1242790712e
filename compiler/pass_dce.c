/*
 * pass dce: nodes no output depends on removed.
 *
 * Liveness is interp.c's and the schedule's: outputs are live, and so is every input of a live
 * node. Every other node is left out of the new graph, except inputs and params: they are the
 * kernel's interface and stay even when nothing reads them (create() still takes every
 * weight). The passes before leave the nodes they replaced dead; this is where they go.
 * Declines: nothing live is ever removed.
 * Numerical contract: exact: what is removed was never computed by any backend.
 */
#include "passes.h"
#include "rewrite.h"

Graph *pass_dce(Ctx *cx, const Graph *g, uint32_t *rewritten)
{
    return rewrite_drop_dead(cx, g, rewritten);
}
