/*
 * shape: the shape rule of every source op (PyTorch semantics, LANGUAGE.md §3). Each rule reads
 * a call's tensor arguments and attributes (OpCall, build.h), checks them, and sets the result
 * shape, the graph node's attributes and the quantities its weight shapes derive from. A rule
 * reports what is wrong at the argument or attribute at fault and returns false.
 * The catalogue (builtins.c) names one rule per op.
 */
#ifndef FUSE_SHAPE_H
#define FUSE_SHAPE_H

#include <stdbool.h>

#include "builtins.h"

bool shape_upsample(OpCall *c);
bool shape_concat(OpCall *c);
bool shape_conv2d(OpCall *c);
bool shape_batchnorm2d(OpCall *c);
bool shape_batchnorm1d(OpCall *c);
bool shape_linear(OpCall *c);
bool shape_layernorm(OpCall *c);
bool shape_mha(OpCall *c);
bool shape_param(OpCall *c);
bool shape_unary(OpCall *c); /* relu sigmoid tanh exp sqrt rsqrt silu abs neg */
bool shape_gelu(OpCall *c);
bool shape_minmax(OpCall *c); /* min, max: broadcasting */
bool shape_reduce(OpCall *c); /* mean sum amax amin */
bool shape_softmax(OpCall *c);
bool shape_matmul(OpCall *c);
bool shape_permute(OpCall *c);
bool shape_view(OpCall *c);
bool shape_flatten(OpCall *c);   /* -> OP_VIEW */
bool shape_transpose(OpCall *c); /* -> OP_PERMUTE */
bool shape_pool(OpCall *c);      /* avgpool2d maxpool2d */

#endif
