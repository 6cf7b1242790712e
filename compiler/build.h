/*
 * build internals: what build.c (entry, frames, statements, block inlining, loops), dims.c
 * (dim binding, expression evaluation, requires) and shape.c (op calls: attributes, shape
 * rules, weights) share. The stage's public entry point is build_graph() in front.h.
 *
 * Evaluation model: the checked AST is interpreted once per instance. A Frame is one body being
 * built (the entry graph, or one inlined block call) and maps names to Vals: tensors (graph
 * nodes), ints (dims, int parameters, loop variables), floats and bools. A V_ERROR value is
 * poison: an error was already reported for it, and whatever uses it fails silently, so one
 * mistake is reported once.
 */
#ifndef FUSE_BUILD_H
#define FUSE_BUILD_H

#include <stdbool.h>
#include <stdint.h>

#include "ast.h"
#include "builtins.h"
#include "ctx.h"
#include "graph.h"
#include "util.h"

#define BUILD_MAX_NODES      1000000  /* more is "graph too large" */
#define BUILD_MAX_PARAMS     100000   /* distinct weights */
#define BUILD_MAX_STEPS      10000000 /* statements executed while unrolling */
#define BUILD_MAX_DEPTH      256      /* nested block calls */
#define BUILD_MAX_ITERATIONS 65536    /* of one `for` */

typedef enum ValKind { V_ERROR, V_TENSOR, V_INT, V_FLOAT, V_BOOL } ValKind;

typedef struct Val {
    ValKind kind;
    Node *node; /* V_TENSOR */
    int64_t i;  /* V_INT */
    double f;   /* V_FLOAT */
    bool b;     /* V_BOOL */
} Val;

typedef struct Binding {
    const char *name; /* NULL: removed (the variable of a finished loop) */
    Val val;
    Span def; /* where the name was bound */
} Binding;

/* An active `for` iteration, for the notes of errors inside it. */
typedef struct LoopCtx {
    const char *var;
    int64_t value;
    Span var_span;
    struct LoopCtx *outer;
} LoopCtx;

typedef struct Frame {
    struct Frame *caller; /* NULL for the entry graph */
    const Decl *fn;
    Span call;         /* the block call being inlined */
    const char *scope; /* block-call scopes, outermost first, joined by '.'; "" when none */
    uint32_t depth;
    Binding *vars; /* owns (frame_free) */
    uint32_t nvars, cap;
    LoopCtx *loop; /* innermost active loop of this body */
    bool stopped;  /* a requirement failed: the rest of the body is skipped */
} Frame;

typedef enum DimState {
    DS_TODO,    /* not evaluated yet */
    DS_BUSY,    /* being evaluated (meeting it again is a cycle) */
    DS_OK,      /* value is set */
    DS_ERROR,   /* an error was reported */
    DS_UNBOUND, /* no value: `dim X` without default or --dim, or depends on one (root) */
} DimState;

typedef struct FileDim {
    const DimDef *def;
    DimState state;
    int64_t value;
    bool overridden;  /* by --dim */
    const char *root; /* DS_UNBOUND: the dim without a value it depends on */
    bool reported;    /* its lack of value was reported at a use */
} FileDim;

/* A string-keyed hash map (open addressing); owns its arrays, not the keys or values. */
typedef struct StrMap {
    const char **keys;
    void **vals;
    uint32_t cap, n;
} StrMap;

/* The value stored under key, or NULL. */
void *strmap_get(const StrMap *m, const char *key);
/* Stores val under key (replacing any value). Borrows key: it must outlive the map. */
void strmap_put(StrMap *m, const char *key, void *val);
/* Frees the map's arrays; the map is empty again. */
void strmap_free(StrMap *m);

/* A note that follows an error: the loop iteration or block call it happened in. */
typedef struct ContextNote {
    Span at;
    char *msg; /* owns */
} ContextNote;

#define BUILD_MAX_CONTEXT_NOTES 8

typedef struct Builder {
    Ctx *cx;
    const Ast *ast;
    Graph *g;
    FileDim *dims; /* owns: one per file dim, in declaration order */
    uint32_t ndims;
    uint32_t *dim_stack; /* owns: dims being evaluated, for cycle paths */
    uint32_t dim_depth;
    uint32_t eager;              /* > 0 while evaluating dim defaults: unbound uses are quiet */
    const char *pending_unbound; /* set when an eager evaluation met an unbound dim */
    StrMap scopes;               /* weight scope key -> ScopeUse (first use) */
    StrMap params;               /* weight key -> its OP_PARAM node */
    PtrVec seen;                 /* owns its strings: errors printed, for de-duplication */
    bool shown;                  /* the last error was printed, so its notes are too */
    ContextNote context[BUILD_MAX_CONTEXT_NOTES]; /* to print after the last error's notes */
    uint32_t ncontext;
    bool aborted; /* a blow-up guard fired: stop building */
    uint64_t steps;
} Builder;

/* ---- build.c ---- */

/* Reports an error at `at` (once per span and message), then notes for the loop iterations and
 * block calls that `f` is inside. */
void build_error(Builder *b, const Frame *f, Span at, const char *fmt, ...) FUSE_PRINTF(4, 5);
/* A note for the last error (printed only if it was). */
void build_note(Builder *b, Span at, const char *fmt, ...) FUSE_PRINTF(3, 4);
/* Adds a node, guarding the graph size. Returns NULL once the guard fired. */
Node *build_node(Builder *b, const Frame *f, OpKind kind, Node *const *inputs, uint32_t n,
                 const Shape *shape, Span at);
/* Checks rank <= FUSE_MAX_RANK and at most FUSE_MAX_ELEMENTS elements. */
bool build_check_size(Builder *b, const Frame *f, const Shape *s, Span at);
/* Inlines a call of block `fn`. */
Val build_block_call(Builder *b, Frame *f, const Expr *call, const Decl *fn);
/* Appends the evaluated text of a scope (splices in decimal) to out. */
bool build_scope_text(Builder *b, Frame *f, const Scope *s, StrBuf *out);
Binding *frame_lookup(Frame *f, const char *name);
void frame_bind(Frame *f, const char *name, Val v, Span def);
/* The source text of a span, white space collapsed, in the graph arena. */
const char *build_span_text(Builder *b, Span s);

/* ---- dims.c ---- */

/* Reads cx->dims over the file's dims and evaluates every default. */
bool dims_init(Builder *b);
/* Evaluates any expression: tensors, numbers (Python int/float arithmetic), names. */
Val eval_expr(Builder *b, Frame *f, const Expr *e);
/* An expression that must be an int (a dim expression). */
bool eval_int(Builder *b, Frame *f, const Expr *e, int64_t *out);
/* An expression that must be a number. */
bool eval_float(Builder *b, Frame *f, const Expr *e, double *out);
bool eval_bool(Builder *b, Frame *f, const Expr *e, bool *out);
/* Checks `require` conditions; false if one failed (reported). */
bool check_conds(Builder *b, Frame *f, const Cond *conds);
/* A tensor for a Val: scalars become OP_SCALAR nodes (rounded once to f32). */
Node *val_to_node(Builder *b, Frame *f, Val v, Span at);

/* ---- shape.c ---- */

/* Builds a call of a source op. */
Val build_op_call(Builder *b, Frame *f, const Expr *call, const SrcOp *op);
/* result = broadcast of a and b (NumPy rules). */
bool shape_broadcast(const Shape *a, const Shape *b, Shape *result);

/* "f32[1,2,3]" for messages: `type_text(&s).s` lives until the end of the full expression. */
typedef struct TypeText {
    char s[SHAPE_TEXT_MAX + 4];
} TypeText;
TypeText type_text(const Shape *s);

/* One attribute of a call, as read by build. */
typedef struct AttrVal {
    bool given;
    Span span;              /* the value's text, or the call when defaulted */
    uint32_t n;             /* entries in i[] or f[] */
    Span at[FUSE_MAX_RANK]; /* the text of each entry (all `span` for one value) */
    int64_t i[FUSE_MAX_RANK];
    double f[2];
    bool b;
    uint32_t word; /* AK_ENUM: index into the spec's words */
} AttrVal;

#define OP_MAX_SLOTS 4

struct OpCall {
    Builder *b;
    Frame *f;
    const SrcOp *op;
    const Expr *call;
    Node **args; /* tensor arguments (arena) */
    const Expr **arg_exprs;
    uint32_t nargs;
    AttrVal attrs[BUILTIN_MAX_ATTRS]; /* indexed as op->attrs */
    /* Set by the rule. */
    Shape out;
    Node proto; /* proto.attr: the attributes of the node to make */
    int64_t out_ch, in_ch, groups, kh, kw, channels, embed; /* for SlotShape */
};

#endif
