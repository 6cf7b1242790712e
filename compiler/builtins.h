/*
 * builtins: the catalogue of source ops (LANGUAGE.md §3). One static table in builtins.c has a
 * row per op the .fuse text may call, with everything the front end needs to know about it:
 *   - its tensor arity (positional arguments),
 *   - its attributes: name, kind, default or required, allowed range, enum words,
 *   - its weight slots: key suffix, shape rule and initialization, in graph input order,
 *   - the graph op it lowers to and the shape rule build applies (shape.c).
 * sema checks calls against the rows; build reads attributes through them and calls the rule.
 */
#ifndef FUSE_BUILTINS_H
#define FUSE_BUILTINS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graph.h"

/* How an attribute value is written and read (LANGUAGE.md §3 "Calls"). */
typedef enum AttrKind {
    AK_INT,    /* a dim expression (dims, int parameters, loop variables) */
    AK_FLOAT,  /* a number, a float parameter or a dim expression */
    AK_BOOL,   /* true, false or a bool parameter */
    AK_ENUM,   /* a bare word or a string, one of `words` */
    AK_INT2,   /* one int or a pair [h, w] */
    AK_FLOAT2, /* one number or a pair [h, w] */
    AK_AXES,   /* one axis or a non-empty list of axes */
    AK_INTS,   /* a list of ints (one int is a list of one) */
} AttrKind;

/* The range every int of an attribute must be in, checked once its value is known. */
typedef enum AttrRange { AR_ANY, AR_POSITIVE, AR_NONNEG } AttrRange;

typedef struct AttrSpec {
    const char *name;
    AttrKind kind;
    bool required;
    AttrRange range;
    int64_t idef;             /* default of AK_INT / AK_INT2 */
    double fdef;              /* default of AK_FLOAT */
    bool bdef;                /* default of AK_BOOL */
    const char *const *words; /* AK_ENUM: NULL-terminated; words[0] is the default */
    const char *def_from;     /* default: the value of this other attribute (pool stride) */
    uint32_t len;             /* AK_INTS: exact number of entries (0: any) */
    uint32_t one_of;          /* nonzero: exactly one attribute of this group must be given */
    const char *only_attr;    /* may be given only when enum attribute only_attr ... */
    const char *only_word;    /* ... has the word only_word */
} AttrSpec;

/* How a weight slot's shape derives from the call (quantities set by the shape rule). */
typedef enum SlotShape {
    SS_CONV_WEIGHT,   /* [out, in/groups, kh, kw] */
    SS_OUT,           /* [out] */
    SS_CHANNELS,      /* [C]: BatchNorm's axis 1, LayerNorm's last axis */
    SS_LINEAR_WEIGHT, /* [out, in] */
    SS_MHA_IN_WEIGHT, /* [3E, E] */
    SS_MHA_IN_BIAS,   /* [3E] */
    SS_EMBED_SQUARE,  /* [E, E] */
    SS_EMBED,         /* [E] */
    SS_ATTR_SHAPE,    /* the `shape` attribute (param()) */
} SlotShape;

typedef struct SlotSpec {
    const char *name; /* key suffix; "" for param(): the scope key itself */
    SlotShape shape;
    ParamInit init;
    const char *only_if; /* bool attribute that enables the slot (NULL: always present) */
} SlotSpec;

/* One call being built (build.h). A rule checks the arguments and attributes, sets the result
 * shape, the node attributes and the slot quantities; it returns false after reporting. */
typedef struct OpCall OpCall;
typedef bool (*OpRule)(OpCall *c);

#define ARGS_VARIADIC     UINT32_MAX
#define BUILTIN_MAX_ATTRS 8 /* attributes of one op, at most */

typedef struct SrcOp {
    const char *name;
    OpKind kind;                 /* the graph op it lowers to */
    uint32_t min_args, max_args; /* tensor arguments; max ARGS_VARIADIC: any number */
    const AttrSpec *attrs;
    uint32_t nattrs;
    const SlotSpec *slots; /* in the order the graph op takes them as inputs */
    uint32_t nslots;
    OpRule rule;
} SrcOp;

/* Returns the source op called `name`, or NULL. */
const SrcOp *builtin_find(const char *name);
/* Writes up to cap op names into out (for "did you mean"). Returns the number of ops. */
size_t builtin_names(const char **out, size_t cap);
/* Returns the attribute of op called `name`, or NULL. */
const AttrSpec *builtin_attr(const SrcOp *op, const char *name);
/* Index of attribute `name` of op (FUSE_ASSERT that it exists: a catalogue bug otherwise). */
uint32_t builtin_attr_index(const SrcOp *op, const char *name);
/* Ops with weight slots need a scope; ops without must not have one. */
static inline bool builtin_has_weights(const SrcOp *op)
{
    return op->nslots > 0;
}
/* "an int or a pair [h, w]": what a value of this kind looks like, for messages. */
const char *attr_kind_text(AttrKind kind);
/* Writes the words of an enum attribute as "a, b or c" into buf. Returns buf. */
char *attr_words_text(const AttrSpec *a, char *buf, size_t size);

#endif
