/*
 * dot: graphs as Graphviz text (see dot.h).
 */
#include "dot.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Text as a DOT double-quoted string body: quotes and backslashes escaped, control bytes
 * dropped (a key or name may hold anything the user wrote). */
static void put_escaped(FILE *out, const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\')
            fputc('\\', out);
        if (c >= 0x20)
            fputc(c, out);
    }
}

/* The label of a node: op and attributes on the first line, the shape on the second. */
static void put_label(FILE *out, const Node *n)
{
    char *attrs = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&attrs, &len);
    if (mem) {
        graph_dump_attrs(n, mem);
        fclose(mem);
    }
    char shape[SHAPE_TEXT_MAX];
    fprintf(out, "%s", op_info[n->kind].name);
    /* weights and inputs are named by the attribute; long attribute lists are cut */
    if (attrs && len) {
        size_t shown = len > 60 ? 60 : len;
        put_escaped(out, attrs, shown);
        if (shown < len)
            fputs(" ...", out);
    }
    fprintf(out, "\\n%s", shape_format(&n->shape, shape, sizeof shape));
    free(attrs);
}

static const char *node_style(const Node *n)
{
    switch (n->kind) {
    case OP_INPUT:
        return "shape=box, style=\"rounded,filled\", fillcolor=\"#dbe9f6\"";
    case OP_PARAM:
        return "shape=note, style=filled, fillcolor=\"#eeeeee\", fontsize=9";
    case OP_SCALAR:
        return "shape=plaintext, fontsize=9";
    default:
        break;
    }
    switch (op_info[n->kind].cls) {
    case OPC_CONTRACT:
    case OPC_ATTENTION:
        return "shape=box, style=filled, fillcolor=\"#f8d9b0\"";
    case OPC_UNARY:
    case OPC_BINARY:
        return "shape=box, style=rounded";
    default:
        return "shape=box";
    }
}

/* One node statement; `prefix` keeps the ids of the two graphs apart. */
static void put_node(FILE *out, const char *prefix, const Node *n, const char *indent)
{
    fprintf(out, "%s%s%u [%s, label=\"", indent, prefix, n->id, node_style(n));
    put_label(out, n);
    fprintf(out, "\", tooltip=\"%%%u, spec bytes %u-%u\"];\n", n->id, n->span.lo, n->span.hi);
}

static void put_edges(FILE *out, const char *prefix, const Graph *g)
{
    for (uint32_t i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        for (uint32_t j = 0; j < n->ninputs; j++)
            fprintf(out, "    %s%u -> %s%u;\n", prefix, n->inputs[j]->id, prefix, n->id);
    }
    for (uint32_t i = 0; i < g->noutputs; i++) {
        fprintf(out,
                "    %sout%u [shape=box, style=\"rounded,filled\", fillcolor=\"#d5ecd4\", "
                "label=\"",
                prefix, i);
        put_escaped(out, g->output_names[i], strlen(g->output_names[i]));
        fprintf(out, "\"];\n    %s%u -> %sout%u;\n", prefix, g->outputs[i]->id, prefix, i);
    }
}

static bool at_create_time(const Node *n, const DotGroups *groups)
{
    return groups && groups->prepared[n->id];
}

static void put_graph(FILE *out, const char *prefix, const char *title, const Graph *g,
                      const DotGroups *groups)
{
    fprintf(out, "  subgraph cluster_%s {\n    label=\"", prefix);
    put_escaped(out, title, strlen(title));
    fprintf(out, "\";\n    fontsize=16;\n");
    for (uint32_t i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        if (!groups || (groups->group_of[n->id] < 0 && !at_create_time(n, groups)))
            put_node(out, prefix, n, "    ");
    }
    bool any_create = false;
    for (uint32_t i = 0; groups && i < g->nnodes; i++)
        any_create |= at_create_time(g->nodes[i], groups);
    if (any_create) {
        fprintf(out,
                "    subgraph cluster_%s_create {\n      label=\"create time (once)\";\n"
                "      style=dashed;\n",
                prefix);
        for (uint32_t i = 0; i < g->nnodes; i++)
            if (at_create_time(g->nodes[i], groups))
                put_node(out, prefix, g->nodes[i], "      ");
        fprintf(out, "    }\n");
    }
    for (uint32_t k = 0; groups && k < groups->ngroups; k++) {
        fprintf(out, "    subgraph cluster_%s_k%u {\n      label=\"kernel ", prefix, k);
        const char *name = groups->names && groups->names[k] ? groups->names[k] : "";
        put_escaped(out, name, strlen(name));
        fprintf(out, "\";\n      style=filled;\n      fillcolor=\"#fff7e0\";\n");
        for (uint32_t i = 0; i < g->nnodes; i++)
            if (groups->group_of[i] == (int32_t)k)
                put_node(out, prefix, g->nodes[i], "      ");
        fprintf(out, "    }\n");
    }
    put_edges(out, prefix, g);
    fprintf(out, "  }\n");
}

void dot_write(FILE *out, const Graph *built, const Graph *optimized, const DotGroups *groups)
{
    fprintf(out, "digraph \"");
    put_escaped(out, built->name, strlen(built->name));
    fprintf(out, "\" {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=11];\n"
                 "  edge [color=\"#555555\"];\n");
    put_graph(out, "a", "as written", built, NULL);
    if (optimized)
        put_graph(out, "b",
                  groups ? "after the passes: one cluster per run kernel" : "after the passes",
                  optimized, groups);
    fprintf(out, "}\n");
}
