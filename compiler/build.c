/*
 * build (stage 4): checked AST -> Graph of one entry point (LANGUAGE.md §1-§4).
 *
 * The entry graph's body is interpreted once, with every dim concrete:
 *   - its inputs become OP_INPUT nodes in signature order, file-level `require`s are checked;
 *   - each block call is inlined: tensor parameter dims are pattern variables bound by
 *     unification with the arguments' shapes (local to the call, shadowing file dims),
 *     compile-time parameters are bound from keyword arguments or defaults, the call's @scope
 *     is prepended to every weight key inside it, and the returned value is checked against the
 *     block's result type;
 *   - `for` is unrolled, its variable an int; names rebound inside keep their last value;
 *   - every op call goes through its catalogue row and shape rule (shape.c), which also forms
 *     weight keys; expressions and dims are evaluated in dims.c;
 *   - the graph's outputs are added in declared order and checked against the declared types.
 * Errors are reported at the text at fault, followed by notes naming the loop iterations and
 * block calls it happened in; a failed value is poison (V_ERROR) so one mistake is reported
 * once. Guards: BUILD_MAX_NODES nodes, BUILD_MAX_STEPS unrolled statements, BUILD_MAX_DEPTH
 * nested calls, BUILD_MAX_ITERATIONS per loop.
 * Invariant of the result: graph_verify() holds; every node carries a span of the spec.
 */
#include "front.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "build.h"
#include "diag.h"

static Val err_val(void)
{
    return (Val){.kind = V_ERROR};
}

/* ---- String map ---- */

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

void *strmap_get(const StrMap *m, const char *key)
{
    if (!m->cap)
        return NULL;
    for (uint32_t i = hash_str(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i])
            return NULL;
        if (strcmp(m->keys[i], key) == 0)
            return m->vals[i];
    }
}

static void strmap_grow(StrMap *m)
{
    StrMap bigger = {xcalloc(m->cap ? m->cap * 2 : 64, sizeof(char *)),
                     xcalloc(m->cap ? m->cap * 2 : 64, sizeof(void *)), m->cap ? m->cap * 2 : 64,
                     0};
    for (uint32_t i = 0; i < m->cap; i++)
        if (m->keys[i])
            strmap_put(&bigger, m->keys[i], m->vals[i]);
    strmap_free(m);
    *m = bigger;
}

void strmap_put(StrMap *m, const char *key, void *val)
{
    if ((m->n + 1) * 2 > m->cap)
        strmap_grow(m);
    uint32_t i = hash_str(key) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], key) != 0)
        i = (i + 1) & (m->cap - 1);
    if (!m->keys[i])
        m->n++;
    m->keys[i] = key;
    m->vals[i] = val;
}

void strmap_free(StrMap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- Diagnostics ---- */

/* Prints the context notes of the last error, after the notes its reporter added. */
static void flush_notes(Builder *b)
{
    for (uint32_t i = 0; i < b->ncontext; i++) {
        if (b->shown)
            diag_report(b->cx->diag, DIAG_NOTE, b->context[i].at, "%s", b->context[i].msg);
        free(b->context[i].msg);
    }
    b->ncontext = 0;
}

static void add_context(Builder *b, Span at, const char *msg)
{
    if (b->ncontext < BUILD_MAX_CONTEXT_NOTES)
        b->context[b->ncontext++] = (ContextNote){at, xstrdup(msg)};
}

/* The loop iterations and block calls around f, innermost first. */
static void queue_context(Builder *b, const Frame *f)
{
    char msg[160];
    for (; f; f = f->caller) {
        for (const LoopCtx *l = f->loop; l; l = l->outer) {
            snprintf(msg, sizeof msg, "in the iteration %s = %lld of this loop", l->var,
                     (long long)l->value);
            add_context(b, l->var_span, msg);
        }
        if (f->caller) {
            snprintf(msg, sizeof msg, "in this call of block '%s'", f->fn->fn.name);
            add_context(b, f->call, msg);
        }
    }
}

/* Whether this error (span and text) was printed already. Remembers it if not. */
static bool seen_before(Builder *b, Span at, const char *msg)
{
    StrBuf key = {0};
    sb_printf(&key, "%u:%u:%s", at.lo, at.hi, msg);
    for (size_t i = 0; i < b->seen.len; i++)
        if (strcmp(b->seen.items[i], sb_str(&key)) == 0) {
            sb_free(&key);
            return true;
        }
    if (b->seen.len < 256)
        ptrvec_push(&b->seen, xstrdup(sb_str(&key)));
    sb_free(&key);
    return false;
}

void build_error(Builder *b, const Frame *f, Span at, const char *fmt, ...)
{
    flush_notes(b);
    StrBuf msg = {0};
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(&msg, fmt, ap);
    va_end(ap);
    b->shown = !seen_before(b, at, sb_str(&msg));
    if (b->shown) {
        diag_report(b->cx->diag, DIAG_ERROR, at, "%s", sb_str(&msg));
        queue_context(b, f);
    }
    sb_free(&msg);
}

void build_note(Builder *b, Span at, const char *fmt, ...)
{
    if (!b->shown)
        return;
    va_list ap;
    va_start(ap, fmt);
    diag_vreport(b->cx->diag, DIAG_NOTE, at, fmt, ap);
    va_end(ap);
}

/* ---- Nodes ---- */

static bool room_for_node(Builder *b, const Frame *f, Span at)
{
    if (b->aborted)
        return false;
    if (b->g->nnodes < BUILD_MAX_NODES)
        return true;
    build_error(b, f, at, "graph too large: more than %d nodes", BUILD_MAX_NODES);
    b->aborted = true;
    return false;
}

Node *build_node(Builder *b, const Frame *f, OpKind kind, Node *const *inputs, uint32_t n,
                 const Shape *shape, Span at)
{
    if (!room_for_node(b, f, at))
        return NULL;
    return graph_add_node(b->g, kind, inputs, n, shape, at);
}

bool build_check_size(Builder *b, const Frame *f, const Shape *s, Span at)
{
    int64_t n = 1;
    for (uint32_t i = 0; i < s->rank; i++)
        if (!mul_i64(n, s->dim[i], &n) || n > FUSE_MAX_ELEMENTS) {
            build_error(b, f, at, "%s has more than 2^40 elements", type_text(s).s);
            return false;
        }
    return true;
}

const char *build_span_text(Builder *b, Span s)
{
    const char *text = b->cx->src->text;
    StrBuf out = {0};
    bool space = false;
    for (uint32_t i = s.lo; i < s.hi && i < b->cx->src->len; i++) {
        char c = text[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            space = out.len > 0;
            continue;
        }
        if (space)
            sb_append_n(&out, " ", 1);
        space = false;
        sb_append_n(&out, &c, 1);
    }
    const char *copy = arena_strdup(b->g->arena, sb_str(&out));
    sb_free(&out);
    return copy;
}

/* ---- Frames ---- */

Binding *frame_lookup(Frame *f, const char *name)
{
    for (uint32_t i = 0; i < f->nvars; i++)
        if (f->vars[i].name && strcmp(f->vars[i].name, name) == 0)
            return &f->vars[i];
    return NULL;
}

void frame_bind(Frame *f, const char *name, Val v, Span def)
{
    Binding *bd = frame_lookup(f, name);
    for (uint32_t i = 0; !bd && i < f->nvars; i++)
        if (!f->vars[i].name)
            bd = &f->vars[i]; /* the slot of a finished loop's variable */
    if (bd) {
        *bd = (Binding){name, v, def};
        return;
    }
    if (f->nvars == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 16;
        f->vars = xrealloc(f->vars, f->cap * sizeof(Binding));
    }
    f->vars[f->nvars++] = (Binding){name, v, def};
}

static void frame_free(Frame *f)
{
    free(f->vars);
    f->vars = NULL;
    f->nvars = f->cap = 0;
}

bool build_scope_text(Builder *b, Frame *f, const Scope *s, StrBuf *out)
{
    bool ok = true;
    for (const ScopeSeg *g = s->segs; g; g = g->next) {
        if (g != s->segs)
            sb_append(out, ".");
        for (const ScopePart *p = g->parts; p; p = p->next) {
            int64_t v;
            if (p->text)
                sb_append(out, p->text);
            else if (eval_int(b, f, p->splice, &v))
                sb_printf(out, "%lld", (long long)v);
            else
                ok = false;
        }
    }
    return ok;
}

/* ---- Types ---- */

/* Evaluates a declared type in frame f; every dim must be at least 1. */
static bool eval_type(Builder *b, Frame *f, const TensorType *t, Shape *out)
{
    bool ok = true;
    out->rank = 0;
    for (const Expr *d = t->dims; d; d = d->next) {
        int64_t v = 0;
        if (!eval_int(b, f, d, &v)) {
            ok = false;
        } else if (v < 1) {
            if (d->kind == EX_INT)
                build_error(b, f, d->span, "a dim must be at least 1, not %lld", (long long)v);
            else
                build_error(b, f, d->span, "a dim must be at least 1, but %s is %lld",
                            build_span_text(b, d->span), (long long)v);
            ok = false;
        }
        if (out->rank < FUSE_MAX_RANK)
            out->dim[out->rank++] = v;
    }
    return ok && build_check_size(b, f, out, t->span);
}

/* ---- Statements ---- */

static const Stmt *exec_stmts(Builder *b, Frame *f, const Stmt *st);

static void exec_for(Builder *b, Frame *f, const Stmt *st)
{
    int64_t lo = 0, hi = 0, n = 0;
    bool ok = eval_int(b, f, st->loop.lo, &lo);
    if (!eval_int(b, f, st->loop.hi, &hi) || !ok)
        return;
    Span range = span_join(st->loop.lo->span, st->loop.hi->span);
    if (lo > hi) {
        build_error(b, f, range,
                    "the range %lld..%lld runs backwards; its start must not be "
                    "greater than its end",
                    (long long)lo, (long long)hi);
        return;
    }
    if (__builtin_sub_overflow(hi, lo, &n) || n > BUILD_MAX_ITERATIONS) {
        build_error(b, f, range, "the range %lld..%lld has more than %d iterations", (long long)lo,
                    (long long)hi, BUILD_MAX_ITERATIONS);
        return;
    }
    LoopCtx lc = {st->loop.var, lo, st->loop.var_span, f->loop};
    f->loop = &lc;
    for (int64_t i = lo; i < hi && !b->aborted && !f->stopped; i++) {
        lc.value = i;
        frame_bind(f, st->loop.var, (Val){.kind = V_INT, .i = i}, st->loop.var_span);
        exec_stmts(b, f, st->loop.body);
    }
    f->loop = lc.outer;
    Binding *var = frame_lookup(f, st->loop.var);
    if (var)
        var->name = NULL; /* the variable ends with the loop; values bound in it stay */
}

/* Runs the statements up to a `return`, which it returns (NULL: none, or aborted). */
static const Stmt *exec_stmts(Builder *b, Frame *f, const Stmt *st)
{
    for (; st && !b->aborted && !f->stopped; st = st->next) {
        if (++b->steps > BUILD_MAX_STEPS) {
            build_error(b, f, st->span, "graph too large: unrolling runs more than %d statements",
                        BUILD_MAX_STEPS);
            b->aborted = true;
            return NULL;
        }
        switch (st->kind) {
        case ST_ASSIGN: {
            Val v = eval_expr(b, f, st->assign.value);
            if (v.kind == V_INT || v.kind == V_FLOAT) { /* a number bound to a name: a scalar */
                Node *n = val_to_node(b, f, v, st->assign.value->span);
                v = n ? (Val){.kind = V_TENSOR, .node = n} : err_val();
            }
            frame_bind(f, st->assign.name, v, st->assign.name_span);
            break;
        }
        case ST_RETURN:
            return st;
        case ST_REQUIRE: /* a failed requirement ends the body: what follows relies on it */
            f->stopped = !check_conds(b, f, st->require.conds);
            break;
        case ST_FOR:
            exec_for(b, f, st);
            break;
        }
    }
    return NULL;
}

/* ---- Block calls ---- */

/* A pattern variable bound during unification, and the argument that bound it. */
typedef struct PatVar {
    const char *name;
    int64_t value;
    const Param *by;
    Span at; /* the dim in the signature */
} PatVar;

static bool is_cparam(const Decl *fn, const char *name)
{
    for (const Param *p = fn->fn.cparams; p; p = p->next)
        if (strcmp(p->name, name) == 0)
            return true;
    return false;
}

static const PatVar *find_pat(const PatVar *v, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return &v[i];
    return NULL;
}

typedef struct Call {
    Builder *b;
    Frame *caller, *callee;
    const Expr *call;
    const Decl *fn;
    Node **args;
    const Expr **arg_exprs;
    uint32_t nargs;
} Call;

static bool unify_dim(Call *c, const Param *p, const Expr *d, uint32_t arg, uint32_t axis,
                      PatVar *vars, uint32_t *nvars)
{
    Builder *b = c->b;
    int64_t have = c->args[arg]->shape.dim[axis];
    TypeText t = type_text(&c->args[arg]->shape);
    if (d->kind == EX_INT) {
        if (d->ival == have)
            return true;
        build_error(b, c->caller, c->arg_exprs[arg]->span,
                    "in this call of '%s', argument '%s' is %s, but parameter '%s' needs %lld at "
                    "dim %u",
                    c->fn->fn.name, p->name, t.s, p->name, (long long)d->ival, axis);
        build_note(b, d->span, "'%s' is declared here as %s", p->name,
                   build_span_text(b, p->type.span));
        return false;
    }
    if (d->kind != EX_NAME || is_cparam(c->fn, d->name))
        return true; /* checked once every name is bound */
    const PatVar *v = find_pat(vars, *nvars, d->name);
    if (!v) {
        vars[(*nvars)++] = (PatVar){d->name, have, p, d->span};
        return true;
    }
    if (v->value == have)
        return true;
    build_error(b, c->caller, c->arg_exprs[arg]->span,
                "in this call of '%s', '%s' is %lld from argument '%s' (%s) but %lld from argument "
                "'%s'",
                c->fn->fn.name, d->name, (long long)have, p->name, t.s, (long long)v->value,
                v->by->name);
    build_note(b, v->at, "'%s' was bound to %lld by argument '%s'", d->name, (long long)v->value,
               v->by->name);
    return false;
}

/* Binds the pattern variables of the block's tensor parameters from the arguments' shapes. */
static bool unify(Call *c)
{
    uint32_t total = 0;
    for (const Param *p = c->fn->fn.params; p; p = p->next)
        total += p->type.rank;
    PatVar *vars = xcalloc(total ? total : 1, sizeof(PatVar));
    uint32_t nvars = 0, arg = 0;
    bool ok = true;
    for (const Param *p = c->fn->fn.params; p && arg < c->nargs; p = p->next, arg++) {
        const Shape *s = &c->args[arg]->shape;
        if (s->rank != p->type.rank) {
            build_error(c->b, c->caller, c->arg_exprs[arg]->span,
                        "in this call of '%s', argument '%s' is %s, but parameter '%s' has rank %u",
                        c->fn->fn.name, p->name, type_text(s).s, p->name, p->type.rank);
            build_note(c->b, p->type.span, "'%s' is declared here as %s", p->name,
                       build_span_text(c->b, p->type.span));
            ok = false;
            continue;
        }
        uint32_t axis = 0;
        for (const Expr *d = p->type.dims; d; d = d->next, axis++)
            ok = unify_dim(c, p, d, arg, axis, vars, &nvars) && ok;
    }
    for (uint32_t i = 0; i < nvars; i++)
        frame_bind(c->callee, vars[i].name, (Val){.kind = V_INT, .i = vars[i].value}, vars[i].at);
    free(vars);
    return ok;
}

static Val eval_const(Builder *b, Frame *f, CParamKind k, const Expr *e)
{
    Val v = {.kind = V_ERROR};
    switch (k) {
    case CP_INT:
        if (eval_int(b, f, e, &v.i))
            v.kind = V_INT;
        break;
    case CP_FLOAT:
        if (eval_float(b, f, e, &v.f))
            v.kind = V_FLOAT;
        break;
    case CP_BOOL:
        if (eval_bool(b, f, e, &v.b))
            v.kind = V_BOOL;
        break;
    }
    return v;
}

/* Compile-time parameters: keyword arguments (in the caller), else defaults (in the callee,
 * which sees the pattern variables and the parameters before). */
static bool bind_cparams(Call *c)
{
    bool ok = true;
    for (const Param *cp = c->fn->fn.cparams; cp; cp = cp->next) {
        const Arg *a = c->call->call.args;
        while (a && !(a->name && strcmp(a->name, cp->name) == 0))
            a = a->next;
        Val v = err_val();
        if (a)
            v = eval_const(c->b, c->caller, cp->ckind, a->value);
        else if (cp->default_value)
            v = eval_const(c->b, c->callee, cp->ckind, cp->default_value);
        else
            build_error(c->b, c->caller, c->call->call.callee_span,
                        "missing compile-time argument '%s' of block '%s'", cp->name,
                        c->fn->fn.name);
        ok = ok && v.kind != V_ERROR;
        frame_bind(c->callee, cp->name, v, cp->name_span);
    }
    return ok;
}

/* Dims written as expressions (or naming compile-time parameters), now that names are bound. */
static bool check_dim_exprs(Call *c)
{
    bool ok = true;
    uint32_t arg = 0;
    for (const Param *p = c->fn->fn.params; p && arg < c->nargs; p = p->next, arg++) {
        const Shape *s = &c->args[arg]->shape;
        if (s->rank != p->type.rank)
            continue;
        uint32_t axis = 0;
        for (const Expr *d = p->type.dims; d; d = d->next, axis++) {
            if (d->kind == EX_INT || (d->kind == EX_NAME && !is_cparam(c->fn, d->name)))
                continue;
            int64_t want = 0;
            if (!eval_int(c->b, c->callee, d, &want)) {
                ok = false;
            } else if (want != s->dim[axis]) {
                build_error(c->b, c->caller, c->arg_exprs[arg]->span,
                            "in this call of '%s', argument '%s' is %s, but parameter '%s' needs "
                            "%s = %lld at dim %u",
                            c->fn->fn.name, p->name, type_text(s).s, p->name,
                            build_span_text(c->b, d->span), (long long)want, axis);
                build_note(c->b, d->span, "'%s' is declared here as %s", p->name,
                           build_span_text(c->b, p->type.span));
                ok = false;
            }
        }
    }
    return ok;
}

/* The returned value, checked against the block's result type. */
static Val block_result(Call *c, const Stmt *ret)
{
    Builder *b = c->b;
    const Expr *e = ret->ret.values;
    Val v = eval_expr(b, c->callee, e);
    Node *n = v.kind == V_ERROR ? NULL : val_to_node(b, c->callee, v, e->span);
    if (!n)
        return err_val();
    const Param *res = c->fn->fn.outputs;
    if (c->fn->fn.has_result && res) {
        Shape want;
        if (!eval_type(b, c->callee, &res->type, &want))
            return err_val();
        if (!shape_equal(&want, &n->shape)) {
            build_error(b, c->callee, e->span, "block '%s' returns %s, but its result type is %s",
                        c->fn->fn.name, type_text(&n->shape).s, type_text(&want).s);
            build_note(b, res->type.span, "the result type is declared here as %s",
                       build_span_text(b, res->type.span));
            return err_val();
        }
    }
    return (Val){.kind = V_TENSOR, .node = n};
}

/* Evaluates the positional arguments in the caller. False if one failed. */
static bool eval_args(Call *c)
{
    bool ok = true;
    uint32_t n = 0;
    for (const Arg *a = c->call->call.args; a; a = a->next)
        n += !a->name;
    c->args = xcalloc(n ? n : 1, sizeof(Node *));
    c->arg_exprs = xcalloc(n ? n : 1, sizeof(Expr *));
    for (const Arg *a = c->call->call.args; a; a = a->next) {
        if (a->name)
            continue;
        Val v = eval_expr(c->b, c->caller, a->value);
        Node *x = v.kind == V_ERROR ? NULL : val_to_node(c->b, c->caller, v, a->value->span);
        ok = ok && x;
        c->arg_exprs[c->nargs] = a->value;
        c->args[c->nargs++] = x;
    }
    return ok;
}

/* The callee's scope: the caller's, then this call's @scope. */
static const char *call_scope(Call *c, bool *ok)
{
    StrBuf s = {0};
    sb_append(&s, c->caller->scope);
    const Scope *sc = c->call->call.scope;
    if (sc) {
        if (s.len)
            sb_append(&s, ".");
        *ok = build_scope_text(c->b, c->caller, sc, &s) && *ok;
    }
    const char *copy = arena_strdup(c->b->g->arena, sb_str(&s));
    sb_free(&s);
    return copy;
}

static Val inline_call(Call *c)
{
    Builder *b = c->b;
    bool ok = unify(c);
    ok = bind_cparams(c) && ok;
    if (!ok || !check_dim_exprs(c))
        return err_val();
    uint32_t arg = 0;
    for (const Param *p = c->fn->fn.params; p && arg < c->nargs; p = p->next, arg++)
        frame_bind(c->callee, p->name, (Val){.kind = V_TENSOR, .node = c->args[arg]}, p->name_span);
    const Stmt *ret = exec_stmts(b, c->callee, c->fn->fn.body);
    return ret ? block_result(c, ret) : err_val();
}

Val build_block_call(Builder *b, Frame *f, const Expr *call, const Decl *fn)
{
    if (f->depth >= BUILD_MAX_DEPTH) {
        build_error(b, f, call->call.callee_span, "block calls nested more than %d deep",
                    BUILD_MAX_DEPTH);
        b->aborted = true;
        return err_val();
    }
    Frame callee = {.caller = f, .fn = fn, .call = call->span, .depth = f->depth + 1};
    Call c = {b, f, &callee, call, fn, NULL, NULL, 0};
    bool ok = eval_args(&c);
    callee.scope = call_scope(&c, &ok);
    Val v = ok ? inline_call(&c) : err_val();
    free(c.args);
    free(c.arg_exprs);
    frame_free(&callee);
    return v;
}

/* ---- The entry graph ---- */

static const Decl *find_decl(const Ast *ast, DeclKind kind, const char *name)
{
    for (const Decl *d = ast->decls; d; d = d->next)
        if (d->kind == kind && strcmp(d->fn.name, name) == 0)
            return d;
    return NULL;
}

/* Reports why cx->entry (or its absence) names no graph; `graphs` lists the file's graphs. */
static void bad_entry(Ctx *cx, const Ast *ast, const char **graphs, uint32_t n)
{
    StrBuf list = {0};
    for (uint32_t i = 0; i < n; i++)
        sb_printf(&list, "%s%s", i ? ", " : "", graphs[i]);
    const char *all = n ? sb_str(&list) : "(none)";
    const char *near = cx->entry ? closest_name(cx->entry, graphs, n) : NULL;
    if (!cx->entry && n == 0)
        diag_report_file(cx->diag, DIAG_ERROR, cx->src->name, "the file declares no 'graph'");
    else if (!cx->entry)
        diag_report_file(cx->diag, DIAG_ERROR, NULL,
                         "%s has %u graphs (%s); choose one with --entry", cx->src->name, n, all);
    else if (find_decl(ast, DECL_BLOCK, cx->entry))
        diag_report_file(cx->diag, DIAG_ERROR, NULL,
                         "--entry %s: '%s' is a block, not a graph; the graphs are: %s", cx->entry,
                         cx->entry, all);
    else if (near)
        diag_report_file(cx->diag, DIAG_ERROR, NULL,
                         "--entry %s: no graph named '%s'; did you mean '%s'?", cx->entry,
                         cx->entry, near);
    else
        diag_report_file(cx->diag, DIAG_ERROR, NULL,
                         "--entry %s: no graph named '%s'; the graphs are: %s", cx->entry,
                         cx->entry, all);
    sb_free(&list);
}

/* cx->entry, or the only graph of the file; NULL after reporting. */
static const Decl *find_entry(Ctx *cx, const Ast *ast)
{
    if (cx->entry && find_decl(ast, DECL_GRAPH, cx->entry))
        return find_decl(ast, DECL_GRAPH, cx->entry);
    uint32_t n = 0;
    for (const Decl *d = ast->decls; d; d = d->next)
        n += d->kind == DECL_GRAPH;
    const char **graphs = xcalloc(n ? n : 1, sizeof(char *));
    const Decl *only = NULL;
    n = 0;
    for (const Decl *d = ast->decls; d; d = d->next)
        if (d->kind == DECL_GRAPH) {
            graphs[n++] = d->fn.name;
            only = d;
        }
    if (cx->entry || n != 1) {
        bad_entry(cx, ast, graphs, n);
        only = NULL;
    }
    free(graphs);
    return only;
}

static void add_inputs(Builder *b, Frame *f, const Decl *fn)
{
    for (const Param *p = fn->fn.params; p; p = p->next) {
        Shape s;
        Val v = err_val();
        if (eval_type(b, f, &p->type, &s) && room_for_node(b, f, p->span))
            v = (Val){.kind = V_TENSOR, .node = graph_add_input(b->g, p->name, &s, p->span)};
        frame_bind(f, p->name, v, p->name_span);
    }
}

static void add_outputs(Builder *b, Frame *f, const Decl *fn, const Stmt *ret)
{
    const Expr *e = ret->ret.values;
    for (const Param *o = fn->fn.outputs; o && e; o = o->next, e = e->next) {
        Val v = eval_expr(b, f, e);
        Node *n = v.kind == V_ERROR ? NULL : val_to_node(b, f, v, e->span);
        Shape want;
        if (!eval_type(b, f, &o->type, &want) || !n)
            continue;
        if (!shape_equal(&want, &n->shape)) {
            if (fn->fn.unnamed_result)
                build_error(b, f, e->span, "graph '%s' returns %s, but its result type is %s",
                            fn->fn.name, type_text(&n->shape).s, type_text(&want).s);
            else
                build_error(b, f, e->span,
                            "graph '%s' returns %s for '%s', but its declared type is %s",
                            fn->fn.name, type_text(&n->shape).s, o->name, type_text(&want).s);
            build_note(b, o->type.span, "the result type is declared here as %s",
                       build_span_text(b, o->type.span));
            continue;
        }
        graph_add_output(b->g, o->name, n);
    }
}

static void build_entry(Builder *b, const Decl *fn)
{
    Frame f = {.fn = fn, .scope = ""};
    add_inputs(b, &f, fn);
    const Stmt *ret = exec_stmts(b, &f, fn->fn.body);
    if (ret && !b->aborted)
        add_outputs(b, &f, fn, ret);
    frame_free(&f);
}

Graph *build_graph(Ctx *cx, const Ast *ast)
{
    const Decl *entry = find_entry(cx, ast);
    if (!entry)
        return NULL;
    unsigned before = cx->diag->nerrors;
    Builder builder = {.cx = cx, .ast = ast};
    Builder *b = &builder;
    b->g = graph_new(cx->graph_arena, entry->fn.name);
    dims_init(b);
    bool required = true; /* file-level requirements guard every graph */
    for (const Decl *d = ast->decls; d; d = d->next)
        if (d->kind == DECL_REQUIRE)
            required = check_conds(b, NULL, d->require.conds) && required;
    if (required)
        build_entry(b, entry);
    flush_notes(b);
    free(b->dims);
    free(b->dim_stack);
    strmap_free(&b->scopes);
    strmap_free(&b->params);
    for (size_t i = 0; i < b->seen.len; i++)
        free(b->seen.items[i]);
    ptrvec_free(&b->seen);
    return cx->diag->nerrors == before ? b->g : NULL;
}
