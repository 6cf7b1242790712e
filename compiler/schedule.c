/*
 * schedule: Graph -> LoopProgram (see schedule.h); the driver of the schedule_*.c files.
 *
 * The plan (schedule_plan.c) says what runs when. First every node that depends only on
 * weights is lowered, in topological order and with the same lowerings as run kernels, into
 * prepare kernels (serial loops): they read BUF_PARAM, write BUF_PREPARED when a run kernel
 * reads the result and BUF_SCRATCH when only other prepare kernels do. Then each group of the
 * plan becomes its run kernels, in order (a pointwise group a 1x1 conv computes while packing
 * its input, sched_prologue_deferred, runs none). Buffers: graph inputs are BUF_INPUT (index =
 * input position), outputs BUF_OUTPUT (index = output position), every weight a BUF_PARAM (index =
 * param position); a weight a run kernel reads gets a prepared copy (or transpose), and a
 * weight no run kernel reads is not kept. Each stored value gets a buffer of its own: the
 * output buffer of the first output position it is returned at, otherwise BUF_SCRATCH; values
 * computed inside a fused loop nest get none. A view is an alias (same row-major order);
 * outputs that are inputs, weights, views, create-time values or repeated are copied at the
 * end. Last, scratch buffers are packed by liveness into one arena (loop_plan_memory).
 * Invariant: groups run in the plan's order, so an operand's buffer exists before use.
 */
#include "schedule.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "schedule_internal.h"
#include "util.h"

/* ---- names and comments ---- */

static bool is_c_keyword(const char *s)
{
    static const char *const words[] = {
        "auto",    "break",  "case",     "char",   "const",    "continue", "default",
        "do",      "double", "else",     "enum",   "extern",   "float",    "for",
        "goto",    "if",     "inline",   "int",    "long",     "register", "restrict",
        "return",  "short",  "signed",   "sizeof", "static",   "struct",   "switch",
        "typedef", "union",  "unsigned", "void",   "volatile", "while",    "main"};
    for (size_t i = 0; i < countof(words); i++)
        if (strcmp(s, words[i]) == 0)
            return true;
    return false;
}

/* A C identifier made of `text`: other characters become '_', a leading digit gets 'v', a C
 * keyword gets a trailing '_'. */
static char *ident(Arena *a, const char *text)
{
    size_t n = strlen(text);
    char *out = arena_alloc(a, n + 3, 1);
    size_t at = 0;
    if (n == 0 || isdigit((unsigned char)text[0]))
        out[at++] = 'v';
    for (size_t i = 0; i < n; i++)
        out[at++] = isalnum((unsigned char)text[i]) ? text[i] : '_';
    if (is_c_keyword(out))
        out[at++] = '_';
    out[at] = '\0';
    return out;
}

/* `name` made unique among the program's buffer names (suffix _2, _3, ...). */
static const char *unique_name(Sched *s, const char *name)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", name);
    for (unsigned k = 2;; k++) {
        bool clash = false;
        for (uint32_t i = 0; i < s->p->nbuffers && !clash; i++)
            clash = strcmp(s->p->buffers[i]->name, buf) == 0;
        if (!clash)
            return arena_strdup(s->p->arena, buf);
        snprintf(buf, sizeof buf, "%.200s_%u", name, k);
    }
}

/* A buffer with a unique C-identifier name; at least one element (loop_verify wants it). */
static LoopBuffer *add_buffer(Sched *s, const char *name, LoopBufferKind kind, uint32_t index,
                              int64_t elems)
{
    const char *id = unique_name(s, ident(s->p->arena, name));
    return loop_add_buffer(s->p, id, kind, index, elems > 0 ? elems : 1);
}

/* The logical shape emit-c writes into the kernel's tensor descriptors. */
static void set_shape(LoopBuffer *b, const Shape *sh)
{
    b->rank = sh->rank;
    for (uint32_t d = 0; d < sh->rank; d++)
        b->shape[d] = sh->dim[d];
}

/* "what: FILE:LINE: text" for node n (the line trimmed, without comment delimiters). */
const char *sched_describe(Sched *s, const Node *n, const char *what)
{
    char buf[512];
    const Source *src = s->cx->src;
    if (!src) {
        snprintf(buf, sizeof buf, "%s (%s)", what, op_info[n->kind].name);
        return arena_strdup(s->p->arena, buf);
    }
    uint32_t line = 0, col = 0;
    source_line_col(src, n->span.lo, &line, &col);
    size_t len = 0;
    const char *text = source_line_text(src, line, &len);
    while (len && isspace((unsigned char)*text)) {
        text++;
        len--;
    }
    while (len && isspace((unsigned char)text[len - 1]))
        len--;
    int at = snprintf(buf, sizeof buf, "%s: %s:%u: ", what, src->name, line);
    if (at < 0 || at >= (int)sizeof buf - 1)
        at = (int)sizeof buf - 2;
    for (size_t i = 0; i < len && at + 2 < (int)sizeof buf; i++) {
        char c = text[i];
        bool closes = c == '*' && i + 1 < len && text[i + 1] == '/';
        bool opens = c == '/' && i + 1 < len && text[i + 1] == '*';
        buf[at++] = closes || opens || (unsigned char)c < 32 ? ' ' : c;
    }
    buf[at] = '\0';
    return arena_strdup(s->p->arena, buf);
}

LoopKernel *sched_kernel(Sched *s, const Node *n, const char *part)
{
    char name[160], what[128];
    const char *op = op_info[n->kind].name;
    if (s->epi && s->epi->grp->anchor == (int32_t)n->id) {
        snprintf(name, sizeof name, "%s%s%s", s->epi->name, part ? "_" : "", part ? part : "");
        s->k = loop_add_kernel(s->p, name, s->epi->comment, false);
        s->prepare = false;
        return s->k;
    }
    bool prep = s->plan->pub.prepared[n->id];
    snprintf(name, sizeof name, "%sk%u_%s%s%s", prep ? "prep_" : "", n->id, op, part ? "_" : "",
             part ? part : "");
    snprintf(what, sizeof what, "%s %%%u%s%s", op, n->id, part ? " " : "", part ? part : "");
    s->k = loop_add_kernel(s->p, name, sched_describe(s, n, what), prep);
    s->prepare = prep;
    return s->k;
}

/* Starts a create-time kernel (serial loops; reads weights, writes prepared buffers). */
static LoopKernel *prepare_kernel(Sched *s, const char *name, const char *comment)
{
    s->k = loop_add_kernel(s->p, ident(s->p->arena, name), comment, true);
    s->prepare = true;
    return s->k;
}

/* Variable names get the variable's id as a suffix, so they are unique in their kernel. */
static LoopVar *new_var(Sched *s, const char *name, LoopType t)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.40s%u", name, s->k->nvars);
    return loop_var(s->p, s->k, buf, t);
}

LoopExpr *sched_local(Sched *s, LoopStmt *block, const char *name, LoopExpr *e)
{
    LoopExpr *a = e->kind == LEXPR_BROADCAST ? e->op.a : e;
    if (a->kind == LEXPR_VAR || a->kind == LEXPR_CONST_F || a->kind == LEXPR_CONST_I ||
        a->kind == LEXPR_IOTA)
        return e;
    LoopVar *v = new_var(s, name, e->type);
    ls_append(s->p, block, ls_decl(s->p, v, e));
    return lx_var(s->p, v);
}

LoopVar *sched_ivar(Sched *s, const char *name)
{
    LoopType t = {LT_I64, 1};
    return new_var(s, name, t);
}

LoopVar *sched_fvar(Sched *s, const char *name, uint32_t lanes)
{
    LoopType t = {LT_F32, lanes};
    return new_var(s, name, t);
}

/* ---- buffers ---- */

const LoopBuffer *sched_scratch(Sched *s, const char *base, uint32_t id, int64_t elems)
{
    char name[64];
    snprintf(name, sizeof name, "%s%u", base, id);
    return add_buffer(s, name, BUF_SCRATCH, 0, elems);
}

const LoopBuffer *sched_thread(Sched *s, const char *base, uint32_t id, int64_t elems)
{
    char name[64];
    snprintf(name, sizeof name, "%s%u", base, id);
    return add_buffer(s, name, BUF_THREAD, 0, elems);
}

const LoopBuffer *sched_prepare_begin(Sched *s, const char *name, const char *comment,
                                      int64_t elems, SchedSave *save)
{
    save->k = s->k;
    save->prepare = s->prepare;
    LoopBuffer *b = add_buffer(s, name, BUF_PREPARED, 0, elems);
    char kname[300];
    snprintf(kname, sizeof kname, "prep_%s", b->name);
    prepare_kernel(s, kname, comment);
    return b;
}

void sched_prepare_end(Sched *s, const SchedSave *save)
{
    s->k = save->k;
    s->prepare = save->prepare;
}

/* A kernel writing n's value owns its storage unless n is a source or an alias. */
static bool owns_storage(const Node *n)
{
    return n->kind != OP_INPUT && n->kind != OP_PARAM && n->kind != OP_VIEW;
}

static bool is_elementwise(const Node *n)
{
    OpClass c = op_info[n->kind].cls;
    return c == OPC_UNARY || c == OPC_BINARY;
}

/* The graph output whose kernel can compute in place over n's stored value, or NULL: a
 * pointwise group storing only that output (no siblings), with n's shape, in which every node
 * reading n (transitively) is elementwise with that same shape, so that the kernel reads n at
 * exactly the index it writes; and no node outside that group reads n but n's own side
 * reductions. Then n is stored straight into the output's buffer and no full-size scratch
 * holds it (SE's x before `x * gate`, CBAM's x * channel gate). */
static const Node *in_place_consumer(Sched *s, const Node *n, uint32_t *out_index)
{
    const Plan *pl = s->plan;
    int32_t own = pl->pub.group_of[n->id], target = -1;
    if (own < 0 || !owns_storage(n))
        return NULL;
    for (uint32_t i = n->id + 1; i < s->g->nnodes; i++) {
        const Node *m = s->g->nodes[i];
        if (!pl->live[i])
            continue;
        for (uint32_t k = 0; k < m->ninputs; k++) {
            if (m->inputs[k] != n)
                continue;
            int32_t gm = pl->pub.group_of[i];
            if (gm == own && pl->role[i] == ROLE_SIDE)
                continue;
            if (gm < 0 || gm == own || (target >= 0 && gm != target))
                return NULL;
            target = gm;
        }
    }
    if (target < 0)
        return NULL;
    const PlanGroup *grp = &pl->groups[target];
    const Node *root = s->g->nodes[grp->root];
    if (grp->kind != GROUP_POINTWISE || grp->nextra || !shape_equal(&root->shape, &n->shape))
        return NULL;
    bool *reads_n = ARENA_ARRAY(s->cx->loop_arena, bool, s->g->nnodes);
    reads_n[n->id] = true;
    for (uint32_t i = n->id + 1; i <= grp->root; i++) {
        const Node *m = s->g->nodes[i];
        if (pl->pub.group_of[i] != target)
            continue;
        for (uint32_t k = 0; k < m->ninputs; k++)
            reads_n[i] = reads_n[i] || reads_n[m->inputs[k]->id];
        if (reads_n[i] && (!is_elementwise(m) || !shape_equal(&m->shape, &n->shape)))
            return NULL;
    }
    for (uint32_t o = 0; o < s->g->noutputs; o++)
        if (s->g->outputs[o] == root && !s->claimed[o] && owns_storage(root)) {
            *out_index = o;
            return root;
        }
    return NULL;
}

const LoopBuffer *sched_dest(Sched *s, const Node *n)
{
    if (s->in_place[n->id])
        return s->val[n->id] = s->in_place[n->id];
    if (s->plan->pub.prepared[n->id]) {
        char name[64];
        snprintf(name, sizeof name, "%s%u", op_info[n->kind].name, n->id);
        LoopBufferKind kind = s->keep[n->id] ? BUF_PREPARED : BUF_SCRATCH;
        LoopBuffer *b = add_buffer(s, name, kind, n->id, shape_numel(&n->shape));
        set_shape(b, &n->shape);
        return s->val[n->id] = b;
    }
    for (uint32_t o = 0; o < s->g->noutputs; o++)
        if (s->g->outputs[o] == n && !s->claimed[o] && owns_storage(n)) {
            s->claimed[o] = true;
            return s->val[n->id] = s->outputs[o];
        }
    uint32_t o;
    const Node *root = in_place_consumer(s, n, &o);
    if (root) {
        s->claimed[o] = true;
        s->in_place[root->id] = s->outputs[o];
        return s->val[n->id] = s->outputs[o];
    }
    return s->val[n->id] = sched_scratch(s, op_info[n->kind].name, n->id, shape_numel(&n->shape));
}

/* The prepared plain copy of weight w, made on first use. */
static const LoopBuffer *plain_weight(Sched *s, const Node *w)
{
    uint32_t i = w->attr.param.index;
    if (s->plain[i])
        return s->plain[i];
    LoopKernel *saved = s->k;
    bool saved_prepare = s->prepare;
    const LoopBuffer *pb = s->params[i];
    char name[300];
    snprintf(name, sizeof name, "%s_p", pb->name);
    LoopBuffer *b = add_buffer(s, name, BUF_PREPARED, i, pb->elems);
    b->rank = pb->rank;
    memcpy(b->shape, pb->shape, sizeof b->shape);
    snprintf(name, sizeof name, "prep_%s", b->name);
    char comment[400];
    snprintf(comment, sizeof comment, "copy of weight %s", w->attr.param.key);
    prepare_kernel(s, name, comment);
    sched_copy(s, b, pb, pb->elems);
    s->k = saved;
    s->prepare = saved_prepare;
    return s->plain[i] = b;
}

const LoopBuffer *sched_transposed(Sched *s, const Node *w)
{
    FUSE_ASSERT(w->kind == OP_PARAM && w->shape.rank == 2);
    uint32_t i = w->attr.param.index;
    if (s->trans[i])
        return s->trans[i];
    LoopKernel *saved = s->k;
    bool saved_prepare = s->prepare;
    const LoopBuffer *pb = s->params[i];
    int64_t rows = w->shape.dim[0], cols = w->shape.dim[1];
    char name[300];
    snprintf(name, sizeof name, "%s_t", pb->name);
    LoopBuffer *b = add_buffer(s, name, BUF_PREPARED, i, rows * cols);
    b->rank = 2;
    b->shape[0] = cols;
    b->shape[1] = rows;
    snprintf(name, sizeof name, "prep_%s", b->name);
    char comment[400];
    snprintf(comment, sizeof comment, "weight %s transposed to [%lld, %lld]", w->attr.param.key,
             (long long)cols, (long long)rows);
    prepare_kernel(s, name, comment);
    Pw pw = {.rank = 2, .dim = {cols, rows}, .nsrc = 1};
    pw.dst.buf = b;
    pw.dst.st[0] = rows;
    pw.dst.st[1] = 1;
    pw.src[0].buf = pb;
    pw.src[0].st[0] = 1;
    pw.src[0].st[1] = cols;
    sched_pointwise(s, &pw);
    s->k = saved;
    s->prepare = saved_prepare;
    return s->trans[i] = b;
}

const LoopBuffer *sched_value(Sched *s, const Node *n)
{
    if (n->kind == OP_VIEW)
        return sched_value(s, n->inputs[0]); /* same elements, same order */
    if (n->kind == OP_PARAM)
        return s->prepare ? s->params[n->attr.param.index] : plain_weight(s, n);
    if (s->val[n->id])
        return s->val[n->id];
    FUSE_ASSERT(n->kind == OP_SCALAR);
    LoopKernel *saved = s->k;
    bool saved_prepare = s->prepare;
    LoopBuffer *b = add_buffer(s, "scalar", BUF_PREPARED, n->id, 1);
    char name[64];
    snprintf(name, sizeof name, "prep_k%u_scalar", n->id);
    prepare_kernel(s, name, sched_describe(s, n, "scalar"));
    ls_append(s->p, s->k->body, ls_store(s->p, b, ix_c(s, 0), fx_c(s, n->attr.scalar.value, 1)));
    s->k = saved;
    s->prepare = saved_prepare;
    return s->val[n->id] = b;
}

/* ---- the driver ---- */

/* Inputs, outputs and weights, in signature order, with the graph's shapes. */
static void add_signature(Sched *s)
{
    const Graph *g = s->g;
    for (uint32_t i = 0; i < g->ninputs; i++) {
        const Node *n = g->inputs[i];
        LoopBuffer *b = add_buffer(s, n->attr.input.name, BUF_INPUT, i, shape_numel(&n->shape));
        set_shape(b, &n->shape);
        s->val[n->id] = b;
    }
    for (uint32_t o = 0; o < g->noutputs; o++) {
        const Node *n = g->outputs[o];
        LoopBuffer *b = add_buffer(s, g->output_names[o], BUF_OUTPUT, o, shape_numel(&n->shape));
        set_shape(b, &n->shape);
        s->outputs[o] = b;
    }
    for (uint32_t i = 0; i < g->nparams; i++) {
        const Node *n = g->params[i];
        LoopBuffer *b = add_buffer(s, n->attr.param.key, BUF_PARAM, i, shape_numel(&n->shape));
        b->key = arena_strdup(s->p->arena, n->attr.param.key);
        b->align = 4;
        set_shape(b, &n->shape);
        s->params[i] = b;
    }
}

/* keep[i]: node i is computed at create time and read per call (by a run kernel or as an
 * output), so its buffer outlives create. */
static bool *kept_values(Sched *s)
{
    const Graph *g = s->g;
    const FusionPlan *fp = &s->plan->pub;
    bool *keep = ARENA_ARRAY(s->p->arena, bool, g->nnodes + 1);
    for (uint32_t i = 0; i < g->nnodes; i++) {
        if (fp->group_of[i] < 0)
            continue;
        for (uint32_t j = 0; j < g->nodes[i]->ninputs; j++) {
            const Node *in = g->nodes[i]->inputs[j];
            while (in->kind == OP_VIEW)
                in = in->inputs[0];
            keep[in->id] = fp->prepared[in->id];
            if (s->plan->read_in_place[in->id]) /* the conv reads the concat's parts */
                for (uint32_t k = 0; k < in->ninputs; k++) {
                    const Node *part = in->inputs[k];
                    while (part->kind == OP_VIEW)
                        part = part->inputs[0];
                    keep[part->id] = fp->prepared[part->id];
                }
        }
    }
    for (uint32_t o = 0; o < g->noutputs; o++) {
        const Node *out = g->outputs[o];
        while (out->kind == OP_VIEW)
            out = out->inputs[0];
        keep[out->id] = fp->prepared[out->id];
    }
    return keep;
}

/* Dispatches one live node to the lowering of its op class. */
static void lower_node(Sched *s, const Node *n)
{
    switch (op_info[n->kind].cls) {
    case OPC_SOURCE:
        return; /* inputs are bound; weights and scalars are made on first use */
    case OPC_UNARY:
        sched_unary(s, n);
        return;
    case OPC_BINARY:
        sched_binary(s, n);
        return;
    case OPC_REDUCE:
        sched_reduce(s, n);
        return;
    case OPC_SOFTMAX:
        sched_softmax(s, n);
        return;
    case OPC_RESAMPLE:
        sched_upsample(s, n);
        return;
    case OPC_CONCAT:
        sched_concat(s, n);
        return;
    case OPC_POOL:
        sched_pool(s, n);
        return;
    case OPC_ATTENTION:
        if (n->kind == OP_MHA)
            sched_mha(s, n);
        else
            sched_sdpa(s, n);
        return;
    case OPC_NORM:
        if (n->kind == OP_BATCHNORM)
            sched_batchnorm(s, n);
        else
            sched_layernorm(s, n);
        return;
    case OPC_LAYOUT:
        if (n->kind == OP_VIEW)
            s->val[n->id] = sched_value(s, n->inputs[0]); /* same elements, same order */
        else if (n->kind == OP_SLICE)
            sched_slice(s, n);
        else
            sched_permute(s, n);
        return;
    case OPC_CONTRACT:
        if (n->kind == OP_CONV2D)
            sched_conv2d(s, n);
        else if (n->kind == OP_LINEAR)
            sched_linear(s, n);
        else
            sched_matmul(s, n);
        return;
    }
    FUSE_UNREACHABLE();
}

/* Output positions no kernel wrote directly get a copy of their value. */
static void copy_outputs(Sched *s)
{
    for (uint32_t o = 0; o < s->g->noutputs; o++) {
        const Node *n = s->g->outputs[o];
        const LoopBuffer *from = sched_value(s, n);
        if (from == s->outputs[o])
            continue;
        char name[64], comment[300];
        snprintf(name, sizeof name, "k_out%u_copy", o);
        snprintf(comment, sizeof comment, "output %s: copy of %s", s->g->output_names[o],
                 from->name);
        s->k = loop_add_kernel(s->p, name, comment, false);
        s->prepare = false;
        sched_copy(s, s->outputs[o], from, s->outputs[o]->elems);
    }
}

/* ---- streaming stores ---- */

/* A buffer at least this large is not in any cache when its kernel ends (it exceeds the
 * private caches many times and most shared ones), so writing it through the caches only costs
 * a read of every line before it is overwritten: on the machines of docs/performance.md a
 * 2-thread elementwise pass over 128 MiB planes runs about twice as fast with streaming stores. */
#define STREAM_MIN_BYTES ((int64_t)16 << 20)

static bool mentions_var(const LoopExpr *e, const LoopVar *v)
{
    if (!e || e->kind == LEXPR_CONST_F || e->kind == LEXPR_CONST_I || e->kind == LEXPR_IOTA)
        return false;
    if (e->kind == LEXPR_VAR)
        return e->var == v;
    if (e->kind == LEXPR_LOAD || e->kind == LEXPR_GATHER)
        return mentions_var(e->load.index, v);
    return mentions_var(e->op.a, v) || mentions_var(e->op.b, v) || mentions_var(e->op.c, v);
}

/* The store writes the next `lanes` elements on each trip of `loop` (index = v or v + base,
 * base invariant, step = lanes): consecutive stores fill whole cache lines, which streaming
 * needs; a register tile's rows filled a few vectors at a time would leave partial lines. */
static bool sweeps_loop(const LoopStmt *store, const LoopStmt *loop)
{
    if (!loop || loop->loop.step != store->store.value->type.lanes)
        return false;
    const LoopVar *v = loop->loop.var;
    const LoopExpr *i = store->store.index;
    if (i->kind == LEXPR_VAR)
        return i->var == v;
    if (i->kind != LEXPR_BINARY || i->op.op != LOP_ADD)
        return false;
    const LoopExpr *a = i->op.a, *b = i->op.b;
    return (a->kind == LEXPR_VAR && a->var == v && !mentions_var(b, v)) ||
           (b->kind == LEXPR_VAR && b->var == v && !mentions_var(a, v));
}

/* loop: the innermost FOR around s (NULL at the top). */
static void mark_streaming_stmt(LoopStmt *s, const LoopStmt *loop, const bool *loaded)
{
    if (!s)
        return;
    switch (s->kind) {
    case LOOP_BLOCK:
        for (uint32_t i = 0; i < s->block.n; i++)
            mark_streaming_stmt(s->block.stmts[i], loop, loaded);
        return;
    case LOOP_FOR:
        mark_streaming_stmt(s->loop.body, s, loaded);
        return;
    case LOOP_IF:
        mark_streaming_stmt(s->branch.then_body, loop, loaded);
        mark_streaming_stmt(s->branch.else_body, loop, loaded);
        return;
    case LOOP_STORE: {
        const LoopBuffer *b = s->store.buf;
        /* a lowering marks stores that fill whole lines in other ways as candidates */
        bool whole_lines = s->store.streaming || sweeps_loop(s, loop);
        s->store.streaming = whole_lines && s->store.value->type.lanes > 1 && !loaded[b->id] &&
                             (b->kind == BUF_OUTPUT || b->kind == BUF_SCRATCH) &&
                             b->elems * (int64_t)sizeof(float) >= STREAM_MIN_BYTES;
        return;
    }
    case LOOP_DECL:
    case LOOP_ASSIGN:
    case LOOP_PREFETCH:
        return;
    }
}

/* Marks as streaming the vector stores of run kernels that sweep a large output or scratch
 * buffer (or that their lowering marked as filling whole lines) the same kernel never reads
 * (no store is followed by a load of the same lines); clears the mark of every other. */
static void mark_streaming_stores(LoopProgram *p)
{
    for (uint32_t i = 0; i < p->nkernels; i++) {
        LoopKernel *k = p->kernels[i];
        LoopUses u = loop_uses(p, k, k->body, false);
        mark_streaming_stmt(k->body, NULL, u.loaded);
        loop_uses_free(&u);
    }
}

LoopProgram *schedule_graph(Ctx *cx, const Graph *g, uint32_t vector_lanes)
{
    FUSE_ASSERT(vector_lanes == 4 || vector_lanes == 8 || vector_lanes == 16);
    Arena *a = cx->loop_arena;
    LoopProgram *p = loop_program_new(a, g->name);
    p->vector_lanes = vector_lanes;
    p->flops = graph_flops(g);
    p->bytes = graph_bytes(g);
    char origin[512];
    snprintf(origin, sizeof origin, "%s, graph %s", cx->src ? cx->src->name : "<spec>", g->name);
    p->origin = arena_strdup(a, origin);

    Sched s = {.cx = cx, .g = g, .p = p, .vl = vector_lanes};
    s.plan = sched_plan(cx, g);
    s.val = ARENA_ARRAY(a, const LoopBuffer *, g->nnodes + 1);
    s.params = ARENA_ARRAY(a, const LoopBuffer *, g->nparams + 1);
    s.plain = ARENA_ARRAY(a, const LoopBuffer *, g->nparams + 1);
    s.trans = ARENA_ARRAY(a, const LoopBuffer *, g->nparams + 1);
    s.outputs = ARENA_ARRAY(a, const LoopBuffer *, g->noutputs + 1);
    s.claimed = ARENA_ARRAY(a, bool, g->noutputs + 1);
    s.in_place = ARENA_ARRAY(a, const LoopBuffer *, g->nnodes + 1);
    add_signature(&s);

    s.keep = kept_values(&s);
    for (uint32_t i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        if (s.plan->live[i] && s.plan->pub.prepared[i] && op_info[n->kind].cls != OPC_SOURCE &&
            n->kind != OP_VIEW) {
            s.prepare = true;
            lower_node(&s, n);
        }
    }
    for (uint32_t gi = 0; gi < s.plan->pub.ngroups; gi++) {
        const PlanGroup *grp = &s.plan->groups[gi];
        s.prepare = false;
        if (sched_prologue_deferred(&s, gi))
            continue;
        uint32_t banded = sched_band(&s, gi);
        if (banded) {
            gi += banded - 1;
            continue;
        }
        if (grp->kind == GROUP_SINGLE && grp->nextra)
            sched_reduce_siblings(&s, grp);
        else if (grp->kind == GROUP_SINGLE)
            lower_node(&s, g->nodes[grp->root]);
        else
            sched_group(&s, gi);
    }
    copy_outputs(&s);
    mark_streaming_stores(p);
    loop_plan_memory(p);
    return p;
}
