/*
 * loop: construction, text dump and verifier of the loop IR (see loop.h).
 */
#include "loop.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "util.h"

static const char *const op_names[LOP_COUNT] = {
    [LOP_ADD] = "add",     [LOP_SUB] = "sub",
    [LOP_MUL] = "mul",     [LOP_MIN] = "min",
    [LOP_MAX] = "max",     [LOP_DIV] = "div",
    [LOP_LDEXP] = "ldexp", [LOP_FLOORDIV] = "floordiv",
    [LOP_MOD] = "mod",     [LOP_AND] = "and",
    [LOP_OR] = "or",       [LOP_NEG] = "neg",
    [LOP_ABS] = "abs",     [LOP_SQRT] = "sqrt",
    [LOP_FLOOR] = "floor", [LOP_EXP] = "exp",
    [LOP_TANH] = "tanh",   [LOP_SIGMOID] = "sigmoid",
};

static const char *const cmp_text[] = {"==", "!=", "<", "<=", ">", ">="};
static const char *const buffer_kind_names[] = {"input",    "output",  "param",
                                                "prepared", "scratch", "thread"};

const char *loop_op_name(LoopOp op)
{
    FUSE_ASSERT(op < LOP_COUNT);
    return op_names[op];
}

static bool is_unary(LoopOp op)
{
    return op >= LOP_NEG;
}

LoopProgram *loop_program_new(Arena *arena, const char *name)
{
    LoopProgram *p = ARENA_NEW(arena, LoopProgram);
    p->arena = arena;
    p->name = arena_strdup(arena, name);
    return p;
}

/* Appends to an arena-backed growable pointer array. */
static void push(Arena *a, void ***items, uint32_t *n, uint32_t *cap, void *item)
{
    if (*n == *cap) {
        uint32_t grown = *cap ? *cap * 2 : 16;
        void **fresh = ARENA_ARRAY(a, void *, grown);
        if (*n)
            memcpy(fresh, *items, *n * sizeof(void *));
        *items = fresh;
        *cap = grown;
    }
    (*items)[(*n)++] = item;
}

static int64_t align64(int64_t x)
{
    return (x + 63) & ~(int64_t)63;
}

LoopBuffer *loop_add_buffer(LoopProgram *p, const char *name, LoopBufferKind kind, uint32_t index,
                            int64_t elems)
{
    LoopBuffer *b = ARENA_NEW(p->arena, LoopBuffer);
    b->id = p->nbuffers;
    b->name = arena_strdup(p->arena, name);
    b->kind = kind;
    b->index = index;
    b->elems = elems;
    b->align = kind == BUF_PARAM ? 4 : 64;
    if (kind == BUF_SCRATCH) {
        b->offset = p->scratch_bytes;
        p->scratch_bytes = align64(p->scratch_bytes + elems * 4);
    } else if (kind == BUF_THREAD) {
        b->offset = p->thread_scratch_bytes;
        p->thread_scratch_bytes = align64(p->thread_scratch_bytes + elems * 4);
    } else if (kind == BUF_PREPARED) {
        p->prepared_bytes += align64(elems * 4);
    }
    push(p->arena, (void ***)&p->buffers, &p->nbuffers, &p->cap_buffers, b);
    return b;
}

LoopKernel *loop_add_kernel(LoopProgram *p, const char *name, const char *comment, bool prepare)
{
    LoopKernel *k = ARENA_NEW(p->arena, LoopKernel);
    k->name = arena_strdup(p->arena, name);
    k->comment = arena_strdup(p->arena, comment ? comment : "");
    k->body = ls_block(p);
    if (prepare)
        push(p->arena, (void ***)&p->prepare, &p->nprepare, &p->cap_prepare, k);
    else
        push(p->arena, (void ***)&p->kernels, &p->nkernels, &p->cap_kernels, k);
    return k;
}

LoopVar *loop_var(LoopProgram *p, LoopKernel *k, const char *name, LoopType type)
{
    LoopVar *v = ARENA_NEW(p->arena, LoopVar);
    v->id = k->nvars++;
    v->name = arena_strdup(p->arena, name);
    v->type = type;
    return v;
}

static LoopExpr *expr(LoopProgram *p, LoopExprKind kind, LoopScalar scalar, uint32_t lanes)
{
    LoopExpr *e = ARENA_NEW(p->arena, LoopExpr);
    e->kind = kind;
    e->type.scalar = scalar;
    e->type.lanes = lanes;
    return e;
}

LoopExpr *lx_const_f(LoopProgram *p, float f)
{
    LoopExpr *e = expr(p, LEXPR_CONST_F, LT_F32, 1);
    e->f = f;
    return e;
}

LoopExpr *lx_const_i(LoopProgram *p, int64_t i)
{
    LoopExpr *e = expr(p, LEXPR_CONST_I, LT_I64, 1);
    e->i = i;
    return e;
}

LoopExpr *lx_var(LoopProgram *p, const LoopVar *v)
{
    LoopExpr *e = expr(p, LEXPR_VAR, v->type.scalar, v->type.lanes);
    e->var = v;
    return e;
}

LoopExpr *lx_load(LoopProgram *p, const LoopBuffer *b, LoopExpr *index, uint32_t lanes)
{
    LoopExpr *e = expr(p, LEXPR_LOAD, LT_F32, lanes);
    e->load.buf = b;
    e->load.index = index;
    return e;
}

LoopExpr *lx_unary(LoopProgram *p, LoopOp op, LoopExpr *a)
{
    LoopExpr *e = expr(p, LEXPR_UNARY, a->type.scalar, a->type.lanes);
    e->op.op = op;
    e->op.a = a;
    return e;
}

LoopExpr *lx_binary(LoopProgram *p, LoopOp op, LoopExpr *a, LoopExpr *b)
{
    LoopExpr *e = expr(p, LEXPR_BINARY, a->type.scalar, a->type.lanes);
    e->op.op = op;
    e->op.a = a;
    e->op.b = b;
    return e;
}

LoopExpr *lx_fma(LoopProgram *p, LoopExpr *a, LoopExpr *b, LoopExpr *c)
{
    LoopExpr *e = expr(p, LEXPR_FMA, LT_F32, a->type.lanes);
    e->op.a = a;
    e->op.b = b;
    e->op.c = c;
    return e;
}

LoopExpr *lx_select(LoopProgram *p, LoopExpr *cond, LoopExpr *a, LoopExpr *b)
{
    LoopExpr *e = expr(p, LEXPR_SELECT, a->type.scalar, a->type.lanes);
    e->op.a = cond;
    e->op.b = a;
    e->op.c = b;
    return e;
}

LoopExpr *lx_cmp(LoopProgram *p, LoopCmp cmp, LoopExpr *a, LoopExpr *b)
{
    LoopExpr *e = expr(p, LEXPR_CMP, LT_BOOL, a->type.lanes);
    e->op.cmp = cmp;
    e->op.a = a;
    e->op.b = b;
    return e;
}

LoopExpr *lx_broadcast(LoopProgram *p, LoopExpr *a, uint32_t lanes)
{
    LoopExpr *e = expr(p, LEXPR_BROADCAST, a->type.scalar, lanes);
    e->op.a = a;
    return e;
}

LoopExpr *lx_cast(LoopProgram *p, LoopExpr *a, LoopScalar to)
{
    LoopExpr *e = expr(p, LEXPR_CAST, to, a->type.lanes);
    e->op.a = a;
    return e;
}

LoopExpr *lx_reduce(LoopProgram *p, LoopOp op, LoopExpr *a)
{
    LoopExpr *e = expr(p, LEXPR_REDUCE, a->type.scalar, 1);
    e->op.op = op;
    e->op.a = a;
    return e;
}

LoopExpr *lx_iota(LoopProgram *p, uint32_t lanes)
{
    return expr(p, LEXPR_IOTA, LT_I64, lanes);
}

LoopExpr *lx_gather(LoopProgram *p, const LoopBuffer *b, LoopExpr *index)
{
    LoopExpr *e = expr(p, LEXPR_GATHER, LT_F32, index->type.lanes);
    e->load.buf = b;
    e->load.index = index;
    return e;
}

LoopExpr *lx_shuffle(LoopProgram *p, LoopExpr *a, const uint8_t *sel)
{
    LoopExpr *e = expr(p, LEXPR_SHUFFLE, a->type.scalar, a->type.lanes);
    uint8_t *copy = arena_alloc(p->arena, a->type.lanes, 1);
    memcpy(copy, sel, a->type.lanes);
    e->op.a = a;
    e->op.sel = copy;
    return e;
}

static LoopStmt *stmt(LoopProgram *p, LoopStmtKind kind)
{
    LoopStmt *s = ARENA_NEW(p->arena, LoopStmt);
    s->kind = kind;
    return s;
}

LoopStmt *ls_block(LoopProgram *p)
{
    return stmt(p, LOOP_BLOCK);
}

void ls_append(LoopProgram *p, LoopStmt *block, LoopStmt *s)
{
    FUSE_ASSERT(block->kind == LOOP_BLOCK);
    push(p->arena, (void ***)&block->block.stmts, &block->block.n, &block->block.cap, s);
}

LoopStmt *ls_for(LoopProgram *p, LoopVar *var, LoopExpr *lo, LoopExpr *hi, int64_t step,
                 LoopForKind kind, LoopStmt *body)
{
    LoopStmt *s = stmt(p, LOOP_FOR);
    s->loop.var = var;
    s->loop.lo = lo;
    s->loop.hi = hi;
    s->loop.step = step;
    s->loop.for_kind = kind;
    s->loop.body = body;
    return s;
}

LoopStmt *ls_store(LoopProgram *p, const LoopBuffer *b, LoopExpr *index, LoopExpr *value)
{
    LoopStmt *s = stmt(p, LOOP_STORE);
    s->store.buf = b;
    s->store.index = index;
    s->store.value = value;
    return s;
}

LoopStmt *ls_store_streaming(LoopProgram *p, const LoopBuffer *b, LoopExpr *index, LoopExpr *value)
{
    LoopStmt *s = ls_store(p, b, index, value);
    s->store.streaming = true;
    return s;
}

LoopStmt *ls_if(LoopProgram *p, LoopExpr *cond, LoopStmt *then_body, LoopStmt *else_body)
{
    LoopStmt *s = stmt(p, LOOP_IF);
    s->branch.cond = cond;
    s->branch.then_body = then_body;
    s->branch.else_body = else_body;
    return s;
}

LoopStmt *ls_decl(LoopProgram *p, LoopVar *var, LoopExpr *init)
{
    LoopStmt *s = stmt(p, LOOP_DECL);
    s->decl.var = var;
    s->decl.init = init;
    return s;
}

LoopStmt *ls_assign(LoopProgram *p, const LoopVar *var, LoopExpr *value)
{
    LoopStmt *s = stmt(p, LOOP_ASSIGN);
    s->assign.var = var;
    s->assign.value = value;
    return s;
}

LoopStmt *ls_prefetch(LoopProgram *p, const LoopBuffer *b, LoopExpr *index, int locality)
{
    LoopStmt *s = stmt(p, LOOP_PREFETCH);
    s->prefetch.buf = b;
    s->prefetch.index = index;
    s->prefetch.locality = locality;
    return s;
}

/* ---- memory planning ---- */

/* A scratch buffer to place: bytes, and the kernels [first, last] that touch it. */
typedef struct Slot {
    LoopBuffer *b;
    int64_t bytes, first, last;
} Slot;

static int by_size_desc(const void *a, const void *b)
{
    const Slot *x = a, *y = b;
    if (x->bytes != y->bytes)
        return x->bytes > y->bytes ? -1 : 1;
    return x->b->id < y->b->id ? -1 : x->b->id > y->b->id;
}

static int by_offset(const void *a, const void *b)
{
    const Slot *x = *(const Slot *const *)a, *y = *(const Slot *const *)b;
    return x->b->offset < y->b->offset ? -1 : x->b->offset > y->b->offset;
}

/* Greedy interval packing of slots[0..n) (placed largest first); returns the arena size. */
static int64_t pack(Slot *slots, uint32_t n)
{
    qsort(slots, n, sizeof *slots, by_size_desc);
    Slot **placed = xcalloc(n + 1, sizeof *placed);
    int64_t size = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t m = 0;
        for (uint32_t j = 0; j < i; j++)
            if (slots[j].first <= slots[i].last && slots[i].first <= slots[j].last)
                placed[m++] = &slots[j];
        qsort(placed, m, sizeof *placed, by_offset);
        int64_t at = 0;
        for (uint32_t j = 0; j < m; j++) {
            if (placed[j]->b->offset >= at + slots[i].bytes)
                break; /* the gap before placed[j] fits */
            int64_t end = align64(placed[j]->b->offset + placed[j]->bytes);
            if (end > at)
                at = end;
        }
        slots[i].b->offset = at;
        if (align64(at + slots[i].bytes) > size)
            size = align64(at + slots[i].bytes);
    }
    free(placed);
    return size;
}

void loop_plan_memory(LoopProgram *p)
{
    uint32_t nk = p->nprepare + p->nkernels;
    Slot *slots[2];
    uint32_t n[2] = {0, 0};
    for (int t = 0; t < 2; t++)
        slots[t] = xcalloc(p->nbuffers + 1, sizeof(Slot));
    int32_t *where = xcalloc(p->nbuffers + 1, sizeof(int32_t)); /* slot index + 1 */
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        LoopBuffer *b = p->buffers[i];
        int t = b->kind == BUF_SCRATCH ? 0 : b->kind == BUF_THREAD ? 1 : -1;
        if (t < 0)
            continue;
        /* an untouched buffer still gets bytes of its own inside the arena */
        slots[t][n[t]] = (Slot){b, b->elems * 4, nk, nk};
        where[i] = (int32_t)n[t]++ + 1;
    }
    for (uint32_t k = 0; k < nk; k++) {
        const LoopKernel *kern = k < p->nprepare ? p->prepare[k] : p->kernels[k - p->nprepare];
        LoopUses u = loop_uses(p, kern, kern->body, false);
        for (uint32_t i = 0; i < p->nbuffers; i++) {
            if (!u.bufs[i] || !where[i])
                continue;
            int t = p->buffers[i]->kind == BUF_SCRATCH ? 0 : 1;
            Slot *sl = &slots[t][where[i] - 1];
            if (sl->first == nk)
                sl->first = k;
            sl->last = k;
        }
        loop_uses_free(&u);
    }
    p->scratch_bytes = pack(slots[0], n[0]);
    p->thread_scratch_bytes = pack(slots[1], n[1]);
    free(where);
    free(slots[0]);
    free(slots[1]);
}

/* ---- dump ---- */

static void dump_type(LoopType t, FILE *out)
{
    static const char *const names[] = {"f32", "i64", "bool"};
    fprintf(out, "%s", names[t.scalar]);
    if (t.lanes > 1)
        fprintf(out, "x%u", t.lanes);
}

/* What the dump of one statement knows: the nodes its expressions share, each printed once as
 * `let $N = ...` before the statement and referred to as $N after. */
typedef struct Dump {
    FILE *out;
    PtrMap uses;  /* node -> references within the statement */
    PtrMap names; /* node -> N of its let */
    PtrMap sizes; /* node -> operations in its tree (capped) */
    uint32_t nlets;
} Dump;

/* A shared subtree of fewer operations is printed where it is used. */
enum { DUMP_LET_MIN_OPS = 3, DUMP_SIZE_CAP = 1 << 20 };

/* Too small to be worth a name. */
static bool dump_leaf(const LoopExpr *e)
{
    switch (e->kind) {
    case LEXPR_CONST_F:
    case LEXPR_CONST_I:
    case LEXPR_VAR:
    case LEXPR_IOTA:
        return true;
    case LEXPR_BROADCAST:
        return dump_leaf(e->op.a);
    default:
        return false;
    }
}

/* The operands of e, in print order (at most 3). */
static uint32_t dump_operands(const LoopExpr *e, const LoopExpr *ops[3])
{
    switch (e->kind) {
    case LEXPR_LOAD:
    case LEXPR_GATHER:
        ops[0] = e->load.index;
        return 1;
    case LEXPR_UNARY:
    case LEXPR_BROADCAST:
    case LEXPR_CAST:
    case LEXPR_REDUCE:
    case LEXPR_SHUFFLE:
        ops[0] = e->op.a;
        return 1;
    case LEXPR_BINARY:
    case LEXPR_CMP:
        ops[0] = e->op.a;
        ops[1] = e->op.b;
        return 2;
    case LEXPR_FMA:
    case LEXPR_SELECT:
        ops[0] = e->op.a;
        ops[1] = e->op.b;
        ops[2] = e->op.c;
        return 3;
    default:
        return 0;
    }
}

/* Counts the references to each node and the size of its tree; a shared node's operands are
 * visited once. Returns the size. */
static uint32_t dump_count(Dump *d, const LoopExpr *e)
{
    if (dump_leaf(e))
        return 0;
    uint32_t n = 0, size = 1;
    ptrmap_get(&d->uses, e, &n);
    ptrmap_put(&d->uses, e, n + 1);
    if (n) {
        ptrmap_get(&d->sizes, e, &size);
        return size;
    }
    const LoopExpr *ops[3];
    for (uint32_t i = 0, k = dump_operands(e, ops); i < k; i++)
        size += dump_count(d, ops[i]);
    size = size < DUMP_SIZE_CAP ? size : DUMP_SIZE_CAP;
    ptrmap_put(&d->sizes, e, size);
    return size;
}

static void dump_expr(Dump *d, const LoopExpr *e);

/* Prints a let for every shared node under e, operands first. */
static void dump_lets(Dump *d, const LoopExpr *e, int depth)
{
    uint32_t n = 0;
    if (dump_leaf(e) || ptrmap_get(&d->names, e, &n))
        return;
    const LoopExpr *ops[3];
    for (uint32_t i = 0, k = dump_operands(e, ops); i < k; i++)
        dump_lets(d, ops[i], depth);
    uint32_t size = 0;
    ptrmap_get(&d->uses, e, &n);
    ptrmap_get(&d->sizes, e, &size);
    if (n < 2 || size < DUMP_LET_MIN_OPS || ptrmap_get(&d->names, e, &n))
        return;
    for (int i = 0; i < depth; i++)
        fputs("  ", d->out);
    fprintf(d->out, "let $%u = ", d->nlets + 1);
    dump_expr(d, e);
    fprintf(d->out, "\n");
    ptrmap_put(&d->names, e, ++d->nlets);
}

static void dump_expr(Dump *d, const LoopExpr *e)
{
    FILE *out = d->out;
    uint32_t name;
    if (ptrmap_get(&d->names, e, &name)) {
        fprintf(out, "$%u", name);
        return;
    }
    switch (e->kind) {
    case LEXPR_CONST_F:
        if (isinf(e->f))
            fprintf(out, "%sinf", e->f < 0 ? "-" : "");
        else
            fprintf(out, "%.9gf", (double)e->f);
        break;
    case LEXPR_CONST_I:
        fprintf(out, "%" PRId64, e->i);
        break;
    case LEXPR_VAR:
        fprintf(out, "%s", e->var->name);
        break;
    case LEXPR_LOAD:
        fprintf(out, "%s[", e->load.buf->name);
        dump_expr(d, e->load.index);
        fprintf(out, e->type.lanes > 1 ? "]x%u" : "]", e->type.lanes);
        break;
    case LEXPR_UNARY:
        fprintf(out, "%s(", op_names[e->op.op]);
        dump_expr(d, e->op.a);
        fprintf(out, ")");
        break;
    case LEXPR_BINARY: {
        static const char *const infix[] = {
            [LOP_ADD] = "+",       [LOP_SUB] = "-", [LOP_MUL] = "*",  [LOP_DIV] = "/",
            [LOP_FLOORDIV] = "//", [LOP_MOD] = "%", [LOP_AND] = "&&", [LOP_OR] = "||"};
        const char *sym = e->op.op < countof(infix) ? infix[e->op.op] : NULL;
        if (sym) {
            fprintf(out, "(");
            dump_expr(d, e->op.a);
            fprintf(out, " %s ", sym);
            dump_expr(d, e->op.b);
            fprintf(out, ")");
        } else {
            fprintf(out, "%s(", op_names[e->op.op]);
            dump_expr(d, e->op.a);
            fprintf(out, ", ");
            dump_expr(d, e->op.b);
            fprintf(out, ")");
        }
        break;
    }
    case LEXPR_FMA:
    case LEXPR_SELECT:
        fprintf(out, e->kind == LEXPR_FMA ? "fma(" : "select(");
        dump_expr(d, e->op.a);
        fprintf(out, ", ");
        dump_expr(d, e->op.b);
        fprintf(out, ", ");
        dump_expr(d, e->op.c);
        fprintf(out, ")");
        break;
    case LEXPR_CMP:
        fprintf(out, "(");
        dump_expr(d, e->op.a);
        fprintf(out, " %s ", cmp_text[e->op.cmp]);
        dump_expr(d, e->op.b);
        fprintf(out, ")");
        break;
    case LEXPR_BROADCAST:
    case LEXPR_CAST:
        dump_type(e->type, out);
        fprintf(out, "(");
        dump_expr(d, e->op.a);
        fprintf(out, ")");
        break;
    case LEXPR_REDUCE:
        fprintf(out, "reduce_%s(", op_names[e->op.op]);
        dump_expr(d, e->op.a);
        fprintf(out, ")");
        break;
    case LEXPR_IOTA:
        fprintf(out, "iota%u", e->type.lanes);
        break;
    case LEXPR_GATHER:
        fprintf(out, "%s[{", e->load.buf->name);
        dump_expr(d, e->load.index);
        fprintf(out, "}]x%u", e->type.lanes);
        break;
    case LEXPR_SHUFFLE:
        fprintf(out, "shuffle(");
        dump_expr(d, e->op.a);
        for (uint32_t l = 0; l < e->type.lanes; l++)
            fprintf(out, "%s%u", l ? "," : ", [", e->op.sel[l]);
        fprintf(out, "])");
        break;
    }
}

static void indent(int depth, FILE *out)
{
    for (int i = 0; i < depth; i++)
        fputs("  ", out);
}

/* The expressions of s itself (not of the statements in it). */
static uint32_t stmt_exprs(const LoopStmt *s, const LoopExpr *roots[2])
{
    switch (s->kind) {
    case LOOP_FOR:
        roots[0] = s->loop.lo;
        roots[1] = s->loop.hi;
        return 2;
    case LOOP_STORE:
        roots[0] = s->store.index;
        roots[1] = s->store.value;
        return 2;
    case LOOP_IF:
        roots[0] = s->branch.cond;
        return 1;
    case LOOP_DECL:
        roots[0] = s->decl.init;
        return 1;
    case LOOP_ASSIGN:
        roots[0] = s->assign.value;
        return 1;
    case LOOP_PREFETCH:
        roots[0] = s->prefetch.index;
        return 1;
    case LOOP_BLOCK:
        break;
    }
    return 0;
}

static void dump_stmt(const LoopStmt *s, int depth, FILE *out)
{
    static const char *const for_names[] = {"for", "parallel for", "unrolled for"};
    Dump dd = {.out = out}, *d = &dd;
    const LoopExpr *roots[2];
    uint32_t nroots = stmt_exprs(s, roots);
    for (uint32_t i = 0; i < nroots; i++)
        dump_count(d, roots[i]);
    for (uint32_t i = 0; i < nroots; i++)
        dump_lets(d, roots[i], depth);
    switch (s->kind) {
    case LOOP_BLOCK:
        for (uint32_t i = 0; i < s->block.n; i++)
            dump_stmt(s->block.stmts[i], depth, out);
        break;
    case LOOP_FOR:
        indent(depth, out);
        fprintf(out, "%s %s in ", for_names[s->loop.for_kind], s->loop.var->name);
        dump_expr(d, s->loop.lo);
        fprintf(out, "..");
        dump_expr(d, s->loop.hi);
        if (s->loop.step != 1)
            fprintf(out, " step %" PRId64, s->loop.step);
        fprintf(out, " {\n");
        dump_stmt(s->loop.body, depth + 1, out);
        indent(depth, out);
        fprintf(out, "}\n");
        break;
    case LOOP_STORE:
        indent(depth, out);
        fprintf(out, "%s%s[", s->store.streaming ? "stream " : "", s->store.buf->name);
        dump_expr(d, s->store.index);
        fprintf(out,
                s->store.value->type.lanes > 1 ? "]x%u = " : "] = ", s->store.value->type.lanes);
        dump_expr(d, s->store.value);
        fprintf(out, "\n");
        break;
    case LOOP_IF:
        indent(depth, out);
        fprintf(out, "if ");
        dump_expr(d, s->branch.cond);
        fprintf(out, " {\n");
        dump_stmt(s->branch.then_body, depth + 1, out);
        if (s->branch.else_body) {
            indent(depth, out);
            fprintf(out, "} else {\n");
            dump_stmt(s->branch.else_body, depth + 1, out);
        }
        indent(depth, out);
        fprintf(out, "}\n");
        break;
    case LOOP_DECL:
        indent(depth, out);
        fprintf(out, "var %s: ", s->decl.var->name);
        dump_type(s->decl.var->type, out);
        fprintf(out, " = ");
        dump_expr(d, s->decl.init);
        fprintf(out, "\n");
        break;
    case LOOP_ASSIGN:
        indent(depth, out);
        fprintf(out, "%s = ", s->assign.var->name);
        dump_expr(d, s->assign.value);
        fprintf(out, "\n");
        break;
    case LOOP_PREFETCH:
        indent(depth, out);
        fprintf(out, "prefetch %s[", s->prefetch.buf->name);
        dump_expr(d, s->prefetch.index);
        fprintf(out, "] locality %d\n", s->prefetch.locality);
        break;
    }
    ptrmap_free(&d->uses);
    ptrmap_free(&d->names);
    ptrmap_free(&d->sizes);
}

static void dump_kernel(const LoopKernel *k, const char *what, FILE *out)
{
    fprintf(out, "%s %s", what, k->name);
    if (k->comment[0])
        fprintf(out, "  # %s", k->comment);
    fprintf(out, "\n");
    dump_stmt(k->body, 1, out);
}

void loop_dump(const LoopProgram *p, FILE *out)
{
    fprintf(out,
            "program %s  # scratch %" PRId64 " B, per-thread %" PRId64 " B, prepared %" PRId64
            " B\n",
            p->name, p->scratch_bytes, p->thread_scratch_bytes, p->prepared_bytes);
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        const LoopBuffer *b = p->buffers[i];
        fprintf(out, "  buffer %s: %s", b->name, buffer_kind_names[b->kind]);
        if (b->kind <= BUF_PREPARED)
            fprintf(out, " %u", b->index);
        else
            fprintf(out, " @%" PRId64, b->offset);
        fprintf(out, " f32[%" PRId64 "]", b->elems);
        if (b->rank) {
            fprintf(out, " as [");
            for (uint32_t d = 0; d < b->rank; d++)
                fprintf(out, "%s%" PRId64, d ? "," : "", b->shape[d]);
            fprintf(out, "]");
        }
        fprintf(out, "\n");
    }
    for (uint32_t i = 0; i < p->nprepare; i++)
        dump_kernel(p->prepare[i], "prepare", out);
    for (uint32_t i = 0; i < p->nkernels; i++)
        dump_kernel(p->kernels[i], "kernel", out);
}

/* ---- verify ---- */

typedef struct Verifier {
    const LoopProgram *p;
    const LoopKernel *k;
    bool prepare;
    FILE *out;
    bool *visible;  /* by var id: in scope here */
    bool *declared; /* by var id: declared once already (no redeclaration) */
    int loop_depth;
    bool in_parallel;
} Verifier;

static bool fail(Verifier *v, const char *fmt, ...) FUSE_PRINTF(2, 3);
static bool fail(Verifier *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(v->out, "loop_verify: kernel %s: ", v->k->name);
    vfprintf(v->out, fmt, ap);
    fputc('\n', v->out);
    va_end(ap);
    return false;
}

static bool valid_lanes(uint32_t lanes)
{
    return lanes == 1 || lanes == 4 || lanes == 8 || lanes == 16;
}

static bool same_type(LoopType a, LoopType b)
{
    return a.scalar == b.scalar && a.lanes == b.lanes;
}

static bool is_index(const LoopExpr *e)
{
    return e->type.scalar == LT_I64 && e->type.lanes == 1;
}

static bool verify_expr(Verifier *v, const LoopExpr *e);

static bool verify_access(Verifier *v, const LoopBuffer *b, const LoopExpr *index, uint32_t lanes)
{
    if (!b || b->id >= v->p->nbuffers || v->p->buffers[b->id] != b)
        return fail(v, "access to a buffer not in the program");
    if (!verify_expr(v, index))
        return false;
    if (!is_index(index))
        return fail(v, "index into %s is not an i64 scalar", b->name);
    if (b->kind == BUF_THREAD && !v->in_parallel)
        return fail(v, "thread buffer %s used outside a parallel loop", b->name);
    if (index->kind == LEXPR_CONST_I && (index->i < 0 || index->i + lanes > b->elems))
        return fail(v, "constant index %" PRId64 " (x%u) outside %s[%" PRId64 "]", index->i, lanes,
                    b->name, b->elems);
    return true;
}

static bool verify_expr(Verifier *v, const LoopExpr *e)
{
    if (!valid_lanes(e->type.lanes))
        return fail(v, "expression with %u lanes", e->type.lanes);
    switch (e->kind) {
    case LEXPR_CONST_F:
    case LEXPR_CONST_I:
        return e->type.lanes == 1 ? true : fail(v, "vector constant (broadcast it)");
    case LEXPR_VAR:
        if (e->var->id >= v->k->nvars || !v->visible[e->var->id])
            return fail(v, "variable %s used outside its scope", e->var->name);
        return same_type(e->type, e->var->type) ? true : fail(v, "type of %s", e->var->name);
    case LEXPR_LOAD:
    case LEXPR_GATHER:
        if (e->type.scalar != LT_F32)
            return fail(v, "load of a non-f32 type");
        if (v->prepare ? e->load.buf->kind == BUF_INPUT || e->load.buf->kind == BUF_OUTPUT ||
                             e->load.buf->kind == BUF_THREAD
                       : e->load.buf->kind == BUF_PARAM)
            return fail(v, "%s reads %s buffer %s", v->prepare ? "prepare" : "run",
                        buffer_kind_names[e->load.buf->kind], e->load.buf->name);
        if (e->kind == LEXPR_LOAD)
            return verify_access(v, e->load.buf, e->load.index, e->type.lanes);
        if (e->type.lanes < 2 || e->load.index->type.scalar != LT_I64 ||
            e->load.index->type.lanes != e->type.lanes)
            return fail(v, "gather from %s with an index of another type", e->load.buf->name);
        return verify_expr(v, e->load.index);
    case LEXPR_IOTA:
        return e->type.scalar == LT_I64 && e->type.lanes > 1 ? true : fail(v, "iota type");
    case LEXPR_UNARY:
        if (!is_unary(e->op.op) || e->op.a->type.scalar != LT_F32)
            return fail(v, "unary %s on a non-f32 operand", op_names[e->op.op]);
        return verify_expr(v, e->op.a) && same_type(e->type, e->op.a->type);
    case LEXPR_BINARY: {
        LoopOp op = e->op.op;
        if (!verify_expr(v, e->op.a) || !verify_expr(v, e->op.b))
            return false;
        if (is_unary(op) || !same_type(e->op.a->type, e->op.b->type) ||
            !same_type(e->type, e->op.a->type))
            return fail(v, "binary %s with mismatched types", op_names[op]);
        LoopScalar s = e->type.scalar;
        bool ok = op <= LOP_MAX     ? s != LT_BOOL
                  : op <= LOP_LDEXP ? s == LT_F32
                  : op <= LOP_MOD   ? s == LT_I64
                                    : s == LT_BOOL;
        return ok ? true : fail(v, "binary %s on the wrong scalar type", op_names[op]);
    }
    case LEXPR_FMA:
        if (!verify_expr(v, e->op.a) || !verify_expr(v, e->op.b) || !verify_expr(v, e->op.c))
            return false;
        if (e->type.scalar != LT_F32 || !same_type(e->op.a->type, e->type) ||
            !same_type(e->op.b->type, e->type) || !same_type(e->op.c->type, e->type))
            return fail(v, "fma with mismatched types");
        return true;
    case LEXPR_SELECT:
        if (!verify_expr(v, e->op.a) || !verify_expr(v, e->op.b) || !verify_expr(v, e->op.c))
            return false;
        if (e->op.a->type.scalar != LT_BOOL || e->op.a->type.lanes != e->type.lanes ||
            !same_type(e->op.b->type, e->type) || !same_type(e->op.c->type, e->type))
            return fail(v, "select with mismatched types");
        return true;
    case LEXPR_CMP:
        if (!verify_expr(v, e->op.a) || !verify_expr(v, e->op.b))
            return false;
        if (!same_type(e->op.a->type, e->op.b->type) || e->op.a->type.scalar == LT_BOOL ||
            e->type.lanes != e->op.a->type.lanes)
            return fail(v, "comparison with mismatched types");
        return true;
    case LEXPR_BROADCAST:
        if (!verify_expr(v, e->op.a))
            return false;
        if (e->op.a->type.lanes != 1 || e->type.scalar != e->op.a->type.scalar)
            return fail(v, "broadcast of a vector");
        return true;
    case LEXPR_CAST:
        if (!verify_expr(v, e->op.a))
            return false;
        if (e->type.lanes != e->op.a->type.lanes || e->type.scalar == LT_BOOL ||
            e->op.a->type.scalar == LT_BOOL || e->type.scalar == e->op.a->type.scalar)
            return fail(v, "cast between these types");
        return true;
    case LEXPR_REDUCE:
        if (!verify_expr(v, e->op.a))
            return false;
        if ((e->op.op != LOP_ADD && e->op.op != LOP_MAX && e->op.op != LOP_MIN) ||
            e->op.a->type.scalar != LT_F32 || e->type.lanes != 1)
            return fail(v, "reduce_%s", op_names[e->op.op]);
        return true;
    case LEXPR_SHUFFLE:
        if (!verify_expr(v, e->op.a))
            return false;
        if (e->type.scalar != LT_F32 || !same_type(e->type, e->op.a->type) || e->type.lanes < 2)
            return fail(v, "shuffle of a non-f32 vector");
        for (uint32_t l = 0; l < e->type.lanes; l++)
            if (e->op.sel[l] >= e->type.lanes)
                return fail(v, "shuffle lane %u out of range", e->op.sel[l]);
        return true;
    }
    return fail(v, "unknown expression kind");
}

static bool verify_stmt(Verifier *v, const LoopStmt *s);

static bool verify_block(Verifier *v, const LoopStmt *s)
{
    /* DECLs are visible until the end of their block. */
    bool ok = true;
    for (uint32_t i = 0; ok && i < s->block.n; i++)
        ok = verify_stmt(v, s->block.stmts[i]);
    for (uint32_t i = 0; i < s->block.n; i++)
        if (s->block.stmts[i]->kind == LOOP_DECL)
            v->visible[s->block.stmts[i]->decl.var->id] = false;
    return ok;
}

static bool verify_nested(Verifier *v, const LoopStmt *body)
{
    if (!body || body->kind != LOOP_BLOCK)
        return fail(v, "a loop or branch body is not a block");
    return verify_block(v, body);
}

static bool verify_for(Verifier *v, const LoopStmt *s)
{
    const LoopVar *var = s->loop.var;
    if (var->id >= v->k->nvars || v->declared[var->id])
        return fail(v, "loop variable %s declared twice", var->name);
    if (var->type.scalar != LT_I64 || var->type.lanes != 1)
        return fail(v, "loop variable %s is not an i64 scalar", var->name);
    if (!verify_expr(v, s->loop.lo) || !verify_expr(v, s->loop.hi))
        return false;
    if (!is_index(s->loop.lo) || !is_index(s->loop.hi) || s->loop.step < 1)
        return fail(v, "bounds of loop %s", var->name);
    bool parallel = s->loop.for_kind == FOR_PARALLEL;
    if (parallel && v->loop_depth > 0)
        return fail(v, "parallel loop %s is nested in another loop", var->name);
    if (s->loop.for_kind == FOR_UNROLLED &&
        (s->loop.lo->kind != LEXPR_CONST_I || s->loop.hi->kind != LEXPR_CONST_I))
        return fail(v, "unrolled loop %s has non-constant bounds", var->name);
    v->declared[var->id] = v->visible[var->id] = true;
    v->loop_depth++;
    v->in_parallel |= parallel;
    bool ok = verify_nested(v, s->loop.body);
    v->in_parallel &= !parallel;
    v->loop_depth--;
    v->visible[var->id] = false;
    return ok;
}

static bool verify_store(Verifier *v, const LoopStmt *s)
{
    const LoopBuffer *b = s->store.buf;
    bool writable = v->prepare
                        ? b->kind == BUF_PREPARED || b->kind == BUF_SCRATCH
                        : b->kind == BUF_OUTPUT || b->kind == BUF_SCRATCH || b->kind == BUF_THREAD;
    if (!writable)
        return fail(v, "stores to %s buffer %s", buffer_kind_names[b->kind], b->name);
    if (!verify_expr(v, s->store.value))
        return false;
    if (s->store.value->type.scalar != LT_F32)
        return fail(v, "store of a non-f32 value to %s", b->name);
    if (s->store.streaming && s->store.value->type.lanes == 1)
        return fail(v, "streaming store of a scalar to %s", b->name);
    return verify_access(v, b, s->store.index, s->store.value->type.lanes);
}

static bool verify_stmt(Verifier *v, const LoopStmt *s)
{
    switch (s->kind) {
    case LOOP_BLOCK:
        return verify_block(v, s);
    case LOOP_FOR:
        return verify_for(v, s);
    case LOOP_STORE:
        return verify_store(v, s);
    case LOOP_IF:
        if (!verify_expr(v, s->branch.cond))
            return false;
        if (s->branch.cond->type.scalar != LT_BOOL || s->branch.cond->type.lanes != 1)
            return fail(v, "if condition is not a bool scalar");
        return verify_nested(v, s->branch.then_body) &&
               (!s->branch.else_body || verify_nested(v, s->branch.else_body));
    case LOOP_DECL: {
        const LoopVar *var = s->decl.var;
        if (var->id >= v->k->nvars || v->declared[var->id])
            return fail(v, "variable %s declared twice", var->name);
        if (!verify_expr(v, s->decl.init))
            return false;
        if (!same_type(var->type, s->decl.init->type))
            return fail(v, "initial value of %s has another type", var->name);
        v->declared[var->id] = v->visible[var->id] = true;
        return true;
    }
    case LOOP_ASSIGN:
        if (s->assign.var->id >= v->k->nvars || !v->visible[s->assign.var->id])
            return fail(v, "assignment to %s outside its scope", s->assign.var->name);
        if (!verify_expr(v, s->assign.value))
            return false;
        return same_type(s->assign.var->type, s->assign.value->type)
                   ? true
                   : fail(v, "assignment to %s of another type", s->assign.var->name);
    case LOOP_PREFETCH:
        return verify_access(v, s->prefetch.buf, s->prefetch.index, 1);
    }
    return fail(v, "unknown statement kind");
}

static bool verify_kernel(const LoopProgram *p, const LoopKernel *k, bool prepare, FILE *out)
{
    Verifier v = {.p = p, .k = k, .prepare = prepare, .out = out};
    v.visible = xcalloc(k->nvars + 1, sizeof(bool));
    v.declared = xcalloc(k->nvars + 1, sizeof(bool));
    bool ok = k->body && k->body->kind == LOOP_BLOCK ? verify_block(&v, k->body)
                                                     : fail(&v, "body is not a block");
    free(v.visible);
    free(v.declared);
    return ok;
}

bool loop_verify(const LoopProgram *p, FILE *out)
{
    for (uint32_t i = 0; i < p->nbuffers; i++)
        if (p->buffers[i]->id != i || p->buffers[i]->elems < 1) {
            fprintf(out, "loop_verify: buffer %u is malformed\n", i);
            return false;
        }
    for (uint32_t i = 0; i < p->nprepare; i++)
        if (!verify_kernel(p, p->prepare[i], true, out))
            return false;
    for (uint32_t i = 0; i < p->nkernels; i++)
        if (!verify_kernel(p, p->kernels[i], false, out))
            return false;
    return true;
}

/* ---- uses ---- */

static void uses_expr(LoopUses *u, const LoopExpr *e)
{
    if (!e || e->kind == LEXPR_CONST_F || e->kind == LEXPR_CONST_I || e->kind == LEXPR_IOTA)
        return;
    if (e->kind == LEXPR_VAR) {
        u->used[e->var->id] = true;
    } else if (e->kind == LEXPR_LOAD || e->kind == LEXPR_GATHER) {
        u->bufs[e->load.buf->id] = true;
        u->loaded[e->load.buf->id] = true;
        uses_expr(u, e->load.index);
    } else {
        uses_expr(u, e->op.a);
        if (e->kind == LEXPR_BINARY || e->kind == LEXPR_FMA || e->kind == LEXPR_SELECT ||
            e->kind == LEXPR_CMP)
            uses_expr(u, e->op.b);
        if (e->kind == LEXPR_FMA || e->kind == LEXPR_SELECT)
            uses_expr(u, e->op.c);
    }
}

static void uses_stmt(LoopUses *u, const LoopStmt *s)
{
    if (!s)
        return;
    switch (s->kind) {
    case LOOP_BLOCK:
        for (uint32_t i = 0; i < s->block.n; i++)
            uses_stmt(u, s->block.stmts[i]);
        return;
    case LOOP_FOR:
        uses_expr(u, s->loop.lo);
        uses_expr(u, s->loop.hi);
        u->defined[s->loop.var->id] = true;
        if (!(u->skip_parallel && s->loop.for_kind == FOR_PARALLEL))
            uses_stmt(u, s->loop.body);
        return;
    case LOOP_STORE:
        u->bufs[s->store.buf->id] = true;
        uses_expr(u, s->store.index);
        uses_expr(u, s->store.value);
        return;
    case LOOP_IF:
        uses_expr(u, s->branch.cond);
        uses_stmt(u, s->branch.then_body);
        uses_stmt(u, s->branch.else_body);
        return;
    case LOOP_DECL:
        u->defined[s->decl.var->id] = true;
        uses_expr(u, s->decl.init);
        return;
    case LOOP_ASSIGN:
        u->used[s->assign.var->id] = true;
        uses_expr(u, s->assign.value);
        return;
    case LOOP_PREFETCH:
        u->bufs[s->prefetch.buf->id] = true;
        uses_expr(u, s->prefetch.index);
        return;
    }
}

LoopUses loop_uses(const LoopProgram *p, const LoopKernel *k, const LoopStmt *s, bool skip_parallel)
{
    LoopUses u = {.skip_parallel = skip_parallel};
    u.bufs = xcalloc(p->nbuffers + 1, sizeof(bool));
    u.loaded = xcalloc(p->nbuffers + 1, sizeof(bool));
    u.used = xcalloc(k->nvars + 1, sizeof(bool));
    u.defined = xcalloc(k->nvars + 1, sizeof(bool));
    uses_stmt(&u, s);
    return u;
}

void loop_uses_free(LoopUses *u)
{
    free(u->bufs);
    free(u->loaded);
    free(u->used);
    free(u->defined);
}

void loop_collect_vars(const LoopStmt *s, const LoopVar **vars)
{
    if (!s)
        return;
    switch (s->kind) {
    case LOOP_BLOCK:
        for (uint32_t i = 0; i < s->block.n; i++)
            loop_collect_vars(s->block.stmts[i], vars);
        return;
    case LOOP_FOR:
        vars[s->loop.var->id] = s->loop.var;
        loop_collect_vars(s->loop.body, vars);
        return;
    case LOOP_IF:
        loop_collect_vars(s->branch.then_body, vars);
        loop_collect_vars(s->branch.else_body, vars);
        return;
    case LOOP_DECL:
        vars[s->decl.var->id] = s->decl.var;
        return;
    default:
        return;
    }
}
