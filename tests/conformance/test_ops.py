#!/usr/bin/python3
"""fusec vs PyTorch 1.13, op by op (LANGUAGE.md §3), plus scopes, --prefix, --dim and weights.

    /usr/bin/python3 test_ops.py --fusec build/fusec --examples examples [--filter NAME] [--keep]

Every case writes a small .fuse into a temporary folder, runs `fusec run --backend interp` on it
and compares with the equivalent PyTorch computation (see conformance.py for the tolerance).
Sizes are small and odd on purpose (7, 13, 17, 33: not multiples of 8 or 16), batch is 2.
"""

import collections
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conformance import (Suite, as_numpy, load_safetensors, randomize_all,  # noqa: E402
                         randomize_bn, save_safetensors)

S = Suite(__doc__)
torch.manual_seed(1234)
R = torch.randn


def dims_text(t):
    return ", ".join(str(d) for d in t.shape)


def spec_of(inputs, expected, body, pre=""):
    """A one-graph spec `g` whose signature follows the tensors: inputs {name: tensor},
    expected a tensor (single output) or {name: tensor} (named outputs, in order)."""
    params = ", ".join("%s: f32[%s]" % (k, dims_text(v)) for k, v in inputs.items())
    if isinstance(expected, dict):
        result = "(" + ", ".join("%s: f32[%s]" % (k, dims_text(v))
                                 for k, v in expected.items()) + ")"
    else:
        result = "f32[%s]" % dims_text(expected)
    lines = "\n".join("    " + ln.strip() for ln in body.strip().splitlines())
    return "fuse 1\n%s\ngraph g(%s) -> %s {\n%s\n}\n" % (pre, params, result, lines)


def case(name, body, inputs, expected, weights=None, pre="", **kw):
    """inputs: OrderedDict-like {name: tensor}; expected: tensor or {name: tensor}."""
    inputs = collections.OrderedDict(inputs)
    text = spec_of(inputs, expected, body, pre)
    exp = expected if isinstance(expected, dict) else {None: expected}
    S.check(name, text, inputs, exp, weights=weights, **kw)


def sd(scope, module):
    """module.state_dict() with every key under `scope.`."""
    return collections.OrderedDict((scope + "." + k, v) for k, v in module.state_dict().items())


def ev(m):
    return m.eval()


# ---------------------------------------------------------------------------------------------
# the safetensors writer itself (no fusec): layout as safetensors.torch.save_file writes it


def writer_selftest():
    import json
    import struct
    bn = randomize_bn(ev(nn.BatchNorm2d(3)))
    sd_ = collections.OrderedDict([("z.w", R(2, 3))] + [("bn." + k, v) for k, v in
                                                          bn.state_dict().items()])
    p = os.path.join(S.case_dir("safetensors_writer_layout"), "w.safetensors")
    save_safetensors(sd_, p)
    blob = open(p, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    text = blob[8:8 + n].decode("utf-8")
    header = json.loads(text)
    keys = list(header)
    ok = (n % 8 == 0 and text.startswith('{"__metadata__":{"format":"pt"},')
          and keys[1] == "bn.num_batches_tracked"  # I64 first, then F32 by key
          and keys[2:] == sorted(keys[2:])
          and header["bn.num_batches_tracked"] == {"dtype": "I64", "shape": [],
                                                   "data_offsets": [0, 8]}
          and len(blob) == 8 + n + header[keys[-1]]["data_offsets"][1])
    back, _ = load_safetensors(p)
    ok = ok and all(torch.equal(back[k], v) for k, v in sd_.items())
    print("%s  %-44s header %d bytes, order %s" % ("ok  " if ok else "FAIL",
                                                    "safetensors_writer_layout", n, keys[1:]))
    return ok


S.case("safetensors_writer_layout", writer_selftest)

# ---------------------------------------------------------------------------------------------
# upsample
x = R(2, 3, 7, 9)
case("upsample_nearest_size", "return upsample(x, size=[17, 20])", {"x": x},
     F.interpolate(x, size=(17, 20), mode="nearest"))
case("upsample_nearest_size_explicit_mode", "return upsample(x, size=[17, 20], mode=nearest)",
     {"x": x}, F.interpolate(x, size=(17, 20), mode="nearest"))
x = R(2, 3, 7, 13)
case("upsample_nearest_scale2", "return upsample(x, scale=2)", {"x": x},
     F.interpolate(x, scale_factor=2, mode="nearest"))
case("upsample_nearest_scale1.5", "return upsample(x, scale=1.5, mode=nearest)", {"x": x},
     F.interpolate(x, scale_factor=1.5, mode="nearest"))
case("upsample_nearest_scale_pair", "return upsample(x, scale=[2, 1.5])", {"x": x},
     F.interpolate(x, scale_factor=(2.0, 1.5), mode="nearest"))
case("upsample_nearest_scale0.5_down", "return upsample(x, scale=0.5)", {"x": x},
     F.interpolate(x, scale_factor=0.5, mode="nearest"))
x = R(2, 3, 2, 7)
case("upsample_nearest_2to82_7to17", "return upsample(x, size=[82, 17], mode=\"nearest\")",
     {"x": x}, F.interpolate(x, size=(82, 17), mode="nearest"))
x = R(2, 3, 17, 33)
case("upsample_nearest_down_17to7", "return upsample(x, size=[7, 13])", {"x": x},
     F.interpolate(x, size=(7, 13), mode="nearest"))
x = R(2, 3, 7, 13)
for ac in (False, True):
    acs = "true" if ac else "false"
    case("upsample_bilinear_size_ac_%s" % acs,
         "return upsample(x, size=[17, 33], mode=bilinear, align_corners=%s)" % acs, {"x": x},
         F.interpolate(x, size=(17, 33), mode="bilinear", align_corners=ac))
    case("upsample_bilinear_scale1.5_ac_%s" % acs,
         "return upsample(x, scale=1.5, mode=bilinear, align_corners=%s)" % acs, {"x": x},
         F.interpolate(x, scale_factor=1.5, mode="bilinear", align_corners=ac))
    case("upsample_bilinear_scale_pair_ac_%s" % acs,
         "return upsample(x, scale=[2, 1.5], mode=bilinear, align_corners=%s)" % acs, {"x": x},
         F.interpolate(x, scale_factor=(2.0, 1.5), mode="bilinear", align_corners=ac))
    x2 = R(2, 3, 2, 7)
    case("upsample_bilinear_2to82_7to17_ac_%s" % acs,
         "return upsample(x, size=[82, 17], mode=bilinear, align_corners=%s)" % acs, {"x": x2},
         F.interpolate(x2, size=(82, 17), mode="bilinear", align_corners=ac))
    x3 = R(2, 3, 17, 33)
    case("upsample_bilinear_down_ac_%s" % acs,
         "return upsample(x, size=[7, 13], mode=bilinear, align_corners=%s)" % acs, {"x": x3},
         F.interpolate(x3, size=(7, 13), mode="bilinear", align_corners=ac))
    x4 = R(2, 3, 1, 5)
    case("upsample_bilinear_from1_to1_ac_%s" % acs,
         "return upsample(x, size=[5, 1], mode=bilinear, align_corners=%s)" % acs, {"x": x4},
         F.interpolate(x4, size=(5, 1), mode="bilinear", align_corners=ac))
# sizes where the f32 index arithmetic of legacy nearest decides the source index
# (14 -> 46: dst 23; 9 -> 111: dst 37), and scales where r = 1/s differs from in/out
x = R(2, 3, 14, 9)
case("upsample_nearest_f32_rounding_14to46_9to111", "return upsample(x, size=[46, 111])", {"x": x},
     F.interpolate(x, size=(46, 111), mode="nearest"))
x = R(2, 3, 5, 7)
case("upsample_nearest_scale1.3", "return upsample(x, scale=1.3)", {"x": x},
     F.interpolate(x, scale_factor=1.3, mode="nearest"))
case("upsample_nearest_scale2.2", "return upsample(x, scale=2.2)", {"x": x},
     F.interpolate(x, scale_factor=2.2, mode="nearest"))
case("upsample_nearest_scale0.7", "return upsample(x, scale=0.7)", {"x": x},
     F.interpolate(x, scale_factor=0.7, mode="nearest"))
case("upsample_bilinear_scale1.3", "return upsample(x, scale=1.3, mode=bilinear)", {"x": x},
     F.interpolate(x, scale_factor=1.3, mode="bilinear", align_corners=False))
case("upsample_bilinear_scale0.7", "return upsample(x, scale=0.7, mode=bilinear)", {"x": x},
     F.interpolate(x, scale_factor=0.7, mode="bilinear", align_corners=False))
case("upsample_bilinear_scale2.5_ac_true",
     "return upsample(x, scale=2.5, mode=bilinear, align_corners=true)", {"x": x},
     F.interpolate(x, scale_factor=2.5, mode="bilinear", align_corners=True))
# out = floor(in * s) where in * f32(s) would fall just below the integer: 10 * 1.3 -> 13,
# 10 * 0.7 -> 7, 20 * 1.15 -> 23 (as F.interpolate with the Python float)
x = R(2, 2, 10, 20)
case("upsample_nearest_scale1.3_size10", "return upsample(x, scale=1.3)", {"x": x},
     F.interpolate(x, scale_factor=1.3, mode="nearest"))
case("upsample_bilinear_scale0.7_size10", "return upsample(x, scale=0.7, mode=bilinear)", {"x": x},
     F.interpolate(x, scale_factor=0.7, mode="bilinear", align_corners=False))
case("upsample_bilinear_scale_pair_2.3_1.15",
     "return upsample(x, scale=[2.3, 1.15], mode=bilinear, align_corners=true)", {"x": x},
     F.interpolate(x, scale_factor=(2.3, 1.15), mode="bilinear", align_corners=True))
x = R(2, 3, 5, 7)
for ac in (False, True):
    case("upsample_bilinear_identity_ac_%s" % str(ac).lower(),
         "return upsample(x, size=[5, 7], mode=bilinear, align_corners=%s)" % str(ac).lower(),
         {"x": x}, F.interpolate(x, size=(5, 7), mode="bilinear", align_corners=ac))
case("upsample_nearest_scale1", "return upsample(x, scale=1)", {"x": x},
     F.interpolate(x, scale_factor=1, mode="nearest"))
case("upsample_nearest_to_1x1", "return upsample(x, size=[1, 1])", {"x": x},
     F.interpolate(x, size=(1, 1), mode="nearest"))
x = R(2, 5, 8, 12)
case("upsample_bilinear_scale2_seedlike",
     "return upsample(x, scale=2, mode=bilinear, align_corners=false)", {"x": x},
     F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))

# ---------------------------------------------------------------------------------------------
# concat
a, b, c = R(2, 3, 5, 7), R(2, 4, 5, 7), R(2, 1, 5, 7)
case("concat2_axis1", "return concat(a, b, axis=1)", {"a": a, "b": b}, torch.cat([a, b], 1))
case("concat3_axis1", "return concat(a, b, c, axis=1)", {"a": a, "b": b, "c": c},
     torch.cat([a, b, c], 1))
case("concat3_axis_neg3", "return concat(c, a, b, axis=-3)", {"a": a, "b": b, "c": c},
     torch.cat([c, a, b], -3))
a, b = R(2, 3, 5), R(2, 3, 4)
case("concat_axis_neg1", "return concat(a, b, axis=-1)", {"a": a, "b": b}, torch.cat([a, b], -1))
a, b = R(1, 3, 5), R(2, 3, 5)
case("concat_axis0", "return concat(a, b, a, axis=0)", {"a": a, "b": b}, torch.cat([a, b, a], 0))

# ---------------------------------------------------------------------------------------------
# conv2d: one case per configuration; weights from nn.Conv2d under the scope `conv`.
CONVS = [
    # name, (cin, cout, kwargs), H, W, fuse attributes
    ("conv_k1", (5, 7, dict(kernel_size=1)), 13, 17, "out=7, kernel=1"),
    ("conv_k3_pad1", (5, 6, dict(kernel_size=3, padding=1)), 13, 17, "out=6, kernel=3, padding=1"),
    ("conv_k3_stride2_pad1", (5, 6, dict(kernel_size=3, stride=2, padding=1)), 13, 17,
     "out=6, kernel=3, stride=2, padding=1"),
    ("conv_k3_dil2_pad2", (5, 6, dict(kernel_size=3, padding=2, dilation=2)), 13, 17,
     "out=6, kernel=3, padding=2, dilation=2"),
    ("conv_k3_dil4_pad4", (4, 4, dict(kernel_size=3, padding=4, dilation=4)), 13, 17,
     "out=4, kernel=3, padding=4, dilation=4"),
    ("conv_k7_pad3_nobias", (2, 1, dict(kernel_size=7, padding=3, bias=False)), 13, 17,
     "out=1, kernel=7, padding=3, bias=false"),
    ("conv_k7_nopad", (3, 2, dict(kernel_size=7)), 13, 17, "out=2, kernel=7"),
    ("conv_groups3", (6, 9, dict(kernel_size=3, padding=1, groups=3)), 13, 17,
     "out=9, kernel=3, padding=1, groups=3"),
    ("conv_depthwise_nobias", (6, 6, dict(kernel_size=3, padding=1, groups=6, bias=False)), 13, 17,
     "out=6, kernel=3, padding=1, groups=6, bias=false"),
    ("conv_pairs", (5, 4, dict(kernel_size=(3, 5), stride=(2, 1), padding=(1, 2),
                               dilation=(1, 2))), 13, 17,
     "out=4, kernel=[3, 5], stride=[2, 1], padding=[1, 2], dilation=[1, 2]"),
    ("conv_k4_stride3", (3, 4, dict(kernel_size=4, stride=3)), 13, 17, "out=4, kernel=4, stride=3"),
    ("conv_pad_wider_than_kernel", (3, 2, dict(kernel_size=3, padding=3)), 7, 9,
     "out=2, kernel=3, padding=3"),
    ("conv_k3_on_height1", (4, 3, dict(kernel_size=3, padding=1)), 1, 5, "out=3, kernel=3, padding=1"),
    ("conv_out1_k1", (7, 1, dict(kernel_size=1)), 13, 17, "out=1, kernel=1"),
    ("conv_groups2_stride2_dil2", (4, 6, dict(kernel_size=3, stride=2, padding=2, dilation=2,
                                              groups=2)), 13, 17,
     "out=6, kernel=3, stride=2, padding=2, dilation=2, groups=2"),
    ("conv_k1_on_1x1", (12, 3, dict(kernel_size=1, bias=False)), 1, 1, "out=3, kernel=1, bias=false"),
    # the register tiles: 7 whole vectors at 8 lanes (a tile of 3, two of 2) and a partial one
    ("conv_groups2_dil2_tiles", (8, 16, dict(kernel_size=3, padding=2, dilation=2, groups=2)), 9,
     57, "out=16, kernel=3, padding=2, dilation=2, groups=2"),
]
for name, (cin, cout, kw), H, W, attrs in CONVS:
    m = ev(nn.Conv2d(cin, cout, **kw))
    x = R(2, cin, H, W)
    with torch.no_grad():
        y = m(x)
    case(name, "return conv2d(x, %s) @conv" % attrs, {"x": x}, y, weights=sd("conv", m))

# ---------------------------------------------------------------------------------------------
# batchnorm, linear, layernorm
m = randomize_bn(ev(nn.BatchNorm2d(5)))
x = R(2, 5, 7, 9)
with torch.no_grad():
    case("batchnorm2d", "return batchnorm2d(x) @bn", {"x": x}, m(x), weights=sd("bn", m))
m = randomize_bn(ev(nn.BatchNorm2d(5, eps=1e-3)))
with torch.no_grad():
    case("batchnorm2d_eps1e-3", "return batchnorm2d(x, eps=1e-3) @bn", {"x": x}, m(x),
         weights=sd("bn", m))
m = randomize_bn(ev(nn.BatchNorm1d(6)))
x = R(3, 6)
with torch.no_grad():
    case("batchnorm1d_rank2", "return batchnorm1d(x) @bn", {"x": x}, m(x), weights=sd("bn", m))
    x = R(2, 6, 11)
    case("batchnorm1d_rank3", "return batchnorm1d(x) @bn", {"x": x}, m(x), weights=sd("bn", m))

for name, shape, bias in [("linear_rank2", (3, 13), True), ("linear_rank3", (2, 5, 13), True),
                          ("linear_rank4", (2, 3, 5, 13), True),
                          ("linear_rank3_nobias", (2, 5, 13), False)]:
    m = ev(nn.Linear(13, 7, bias=bias))
    x = R(*shape)
    with torch.no_grad():
        case(name, "return linear(x, out=7%s) @fc" % ("" if bias else ", bias=false"), {"x": x},
             m(x), weights=sd("fc", m))

for name, shape, eps in [("layernorm_rank3", (2, 5, 13), None), ("layernorm_rank2_eps", (3, 17), 1e-3),
                         ("layernorm_rank4", (2, 3, 5, 17), None)]:
    m = randomize_all(ev(nn.LayerNorm(shape[-1], eps=eps or 1e-5)))
    x = R(*shape) * 2 + 0.5
    with torch.no_grad():
        case(name, "return layernorm(x%s) @ln" % ("" if eps is None else ", eps=%g" % eps),
             {"x": x}, m(x), weights=sd("ln", m))

# ---------------------------------------------------------------------------------------------
# mha: nn.MultiheadAttention(E, heads, batch_first=True)(q, k, v)[0]
for name, E, heads, bias, L, S_ in [("mha_bias", 12, 3, True, 5, 7), ("mha_nobias", 8, 2, False, 6, 6),
                                    ("mha_1head", 6, 1, True, 4, 9)]:
    m = randomize_all(ev(nn.MultiheadAttention(E, heads, bias=bias, batch_first=True)))
    q, k, v = R(2, L, E), R(2, S_, E), R(2, S_, E)
    with torch.no_grad():
        y = m(q, k, v, need_weights=False)[0]
    case(name, "return mha(q, k, v, heads=%d%s) @attn" % (heads, "" if bias else ", bias=false"),
         {"q": q, "k": k, "v": v}, y, weights=sd("attn", m))
m = randomize_all(ev(nn.MultiheadAttention(8, 4, batch_first=True)))
x = R(2, 7, 8)
with torch.no_grad():
    case("mha_self_same_input", "return mha(x, x, x, heads=4) @attn", {"x": x},
         m(x, x, x, need_weights=False)[0], weights=sd("attn", m))

# ---------------------------------------------------------------------------------------------
# param()
x = R(2, 5, 6)
gamma = R(6)
case("param_vector", "gm = param(shape=[6]) @gamma\nreturn x * gm", {"x": x}, x * gamma,
     weights={"gamma": gamma})
x = R(2, 4, 5, 7)
sc = R(1, 4, 1, 1)
case("param_nested_scope", "return x * param(shape=[1, 4, 1, 1]) @layer.scale + x", {"x": x},
     x * sc + x, weights={"layer.scale": sc, "layer.other": R(3)})

# ---------------------------------------------------------------------------------------------
# elementwise unary
x = R(2, 3, 7, 9) * 3
UNARY = [
    ("relu", "relu(x)", torch.relu(x)),
    ("sigmoid", "sigmoid(x)", torch.sigmoid(x)),
    ("tanh", "tanh(x)", torch.tanh(x)),
    ("exp", "exp(x)", torch.exp(x)),
    ("sqrt", "sqrt(abs(x) + 0.1)", torch.sqrt(torch.abs(x) + 0.1)),
    ("rsqrt", "rsqrt(abs(x) + 0.1)", torch.rsqrt(torch.abs(x) + 0.1)),
    ("silu", "silu(x)", F.silu(x)),
    ("abs", "abs(x)", torch.abs(x)),
    ("neg", "neg(x)", torch.neg(x)),
    ("gelu_none", "gelu(x)", F.gelu(x)),
    ("gelu_none_explicit", "gelu(x, approximate=none)", F.gelu(x, approximate="none")),
    ("gelu_tanh", "gelu(x, approximate=tanh)", F.gelu(x, approximate="tanh")),
]
for name, expr, y in UNARY:
    case("unary_" + name, "return " + expr, {"x": x}, y)
xs = torch.tensor([[-100.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 100.0]])
case("unary_sigmoid_extremes", "return sigmoid(x)", {"x": xs}, torch.sigmoid(xs))
case("unary_silu_tanh_extremes", "return silu(x) + tanh(x)", {"x": xs}, F.silu(xs) + torch.tanh(xs))

# non-finite inputs propagate as in PyTorch: NaN through relu/max/min/amax/maxpool/softmax,
# +-inf through the elementwise ops
xn = torch.tensor([[[[float("nan"), 1.0, -2.0, 0.5], [3.0, float("inf"), -1.0, 2.0],
                     [-float("inf"), 0.0, 4.0, -3.0]]]]).repeat(2, 2, 1, 1)
yn = torch.roll(xn, 1, dims=3) * 0.5
NONFINITE = [
    ("relu", "relu(x)", torch.relu(xn)),
    ("sigmoid_tanh", "sigmoid(x) + tanh(x)", torch.sigmoid(xn) + torch.tanh(xn)),
    ("max", "max(x, y)", torch.maximum(xn, yn)),
    ("min", "min(y, x)", torch.minimum(yn, xn)),
    ("amax", "amax(x, axes=[3])", torch.amax(xn, 3)),
    ("amin", "amin(x, axes=[2, 3], keepdim=true)", torch.amin(xn, (2, 3), keepdim=True)),
    ("maxpool", "maxpool2d(x, kernel=2, stride=1)", F.max_pool2d(xn, 2, 1)),
    ("softmax", "softmax(x, axis=3)", torch.softmax(xn, 3)),
    ("abs_neg", "abs(x) - neg(x)", torch.abs(xn) - torch.neg(xn)),
]
for name, expr, y in NONFINITE:
    case("nonfinite_" + name, "return " + expr, {"x": xn, "y": yn}, y)

# ---------------------------------------------------------------------------------------------
# min / max with broadcasting
a = R(2, 3, 5, 7)
b = R(2, 3, 1, 1)
case("min_bcast_gate", "return min(a, b)", {"a": a, "b": b}, torch.minimum(a, b))
b = R(7)
case("max_bcast_row", "return max(a, b)", {"a": a, "b": b}, torch.maximum(a, b))
a, b = R(2, 1, 5, 1), R(1, 3, 1, 7)
case("max_bcast_both", "return max(a, b)", {"a": a, "b": b}, torch.maximum(a, b))
case("min_same_shape", "return min(a, a * 0.5)", {"a": a}, torch.minimum(a, a * 0.5))

# ---------------------------------------------------------------------------------------------
# reductions
x = R(2, 3, 5, 7)
RED = [
    ("mean_hw", "mean(x, axes=[2, 3])", x.mean((2, 3))),
    ("mean_hw_keepdim", "mean(x, axes=[2, 3], keepdim=true)", x.mean((2, 3), keepdim=True)),
    ("mean_neg3", "mean(x, axes=[-3])", x.mean(-3)),
    ("mean_all_keepdim", "mean(x, axes=[0, 1, 2, 3], keepdim=true)",
     x.mean((0, 1, 2, 3), keepdim=True)),
    ("sum_c", "sum(x, axes=[1])", x.sum(1)),
    ("sum_neg_keepdim", "sum(x, axes=[-1, -3], keepdim=true)", x.sum((-1, -3), keepdim=True)),
    ("sum_keepdim_false_explicit", "sum(x, axes=[0], keepdim=false)", x.sum(0)),
    ("amax_neg", "amax(x, axes=[-1, -2])", torch.amax(x, (-1, -2))),
    ("amax_c_keepdim", "amax(x, axes=[1], keepdim=true)", torch.amax(x, 1, keepdim=True)),
    ("amin_0_2_keepdim", "amin(x, axes=[0, 2], keepdim=true)", torch.amin(x, (0, 2), keepdim=True)),
    ("amin_3", "amin(x, axes=[3])", torch.amin(x, 3)),
]
for name, expr, y in RED:
    case("reduce_" + name, "return " + expr, {"x": x}, y)
x2 = R(4, 33)
case("reduce_sum_rank2", "return sum(x, axes=[1])", {"x": x2}, x2.sum(1))

# ---------------------------------------------------------------------------------------------
# softmax
x = R(2, 3, 5, 7) * 20  # large values: the max must be subtracted
case("softmax_last", "return softmax(x, axis=-1)", {"x": x}, torch.softmax(x, -1))
case("softmax_axis1", "return softmax(x, axis=1)", {"x": x}, torch.softmax(x, 1))
x2 = R(4, 6) * 50
case("softmax_axis0_rank2", "return softmax(x, axis=0)", {"x": x2}, torch.softmax(x2, 0))

# ---------------------------------------------------------------------------------------------
# matmul
MM = [
    ("2d_2d", (5, 7), (7, 3)),
    ("1d_2d", (7,), (7, 3)),
    ("2d_1d", (5, 7), (7,)),
    ("3d_3d", (2, 5, 7), (2, 7, 3)),
    ("bcast_4d_3d", (2, 1, 5, 7), (3, 7, 4)),
    ("3d_2d", (2, 5, 7), (7, 3)),
    ("2d_3d", (5, 7), (2, 7, 3)),
    ("1d_3d", (7,), (2, 7, 3)),
    ("3d_1d", (2, 5, 7), (7,)),
    ("bcast_batch1", (1, 5, 7), (3, 7, 2)),
]
for name, sa, sb in MM:
    a, b = R(*sa), R(*sb)
    case("matmul_" + name, "return matmul(a, b)", {"a": a, "b": b}, torch.matmul(a, b))
a, b = R(13), R(13)
case("matmul_1d_1d_view", "return view(matmul(a, b), shape=[1])", {"a": a, "b": b},
     torch.matmul(a, b).reshape(1))

# ---------------------------------------------------------------------------------------------
# attention written out: softmax(scale * q k^T) v in its common spellings. The compiled backends
# recognize each as one streaming attention op (the attention pass; the variants it declines,
# last, are computed op by op); the interpreter runs them as written.


def sdpa(q, k, v, scale):
    return torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * scale, -1) @ v


q, k, v = R(2, 7, 5) * 2, R(2, 13, 5) * 2, R(2, 13, 6)
kt = k.transpose(1, 2).contiguous()
ATTN = [
    ("scores_times", "softmax(matmul(q, transpose(k, dims=[1, 2])) * 0.37, axis=-1)", 0.37),
    ("scores_divided", "softmax(matmul(q, transpose(k, dims=[-2, -1])) / 2.5, axis=2)", 0.4),
    ("scalar_first", "softmax(0.37 * matmul(q, transpose(k, dims=[1, 2])), axis=-1)", 0.37),
    ("scale_on_q", "softmax(matmul(q * 0.37, transpose(k, dims=[1, 2])), axis=-1)", 0.37),
    ("scale_on_k", "softmax(matmul(q, transpose(k / 2.5, dims=[1, 2])), axis=-1)", 0.4),
    ("scale_on_kt", "softmax(matmul(q, transpose(k, dims=[1, 2]) * 0.37), axis=-1)", 0.37),
    ("scale_twice", "softmax(matmul(q * 0.5, transpose(k, dims=[1, 2])) / 1.25, axis=-1)", 0.4),
    ("permute_k", "softmax(matmul(q, permute(k, perm=[0, 2, 1])) * 0.37, axis=-1)", 0.37),
    ("no_scale", "softmax(matmul(q, transpose(k, dims=[1, 2])), axis=-1)", 1.0),
]
for name, scores, scale in ATTN:
    case("attention_" + name, "return matmul(%s, v)" % scores, {"q": q, "k": k, "v": v},
         sdpa(q, k, v, scale))
case("attention_k_given_transposed", "return matmul(softmax(matmul(q, kt) * 0.37, axis=-1), v)",
     {"q": q, "kt": kt, "v": v}, sdpa(q, k, v, 0.37))
# more keys than one register tile's block (whole key panels and a partial one), at every
# vector width
ql, kl, vl = R(2, 10, 5) * 2, R(2, 53, 5) * 2, R(2, 53, 7)
case("attention_long_keys", "return matmul(softmax(matmul(q, transpose(k, dims=[1, 2])) * 0.6, "
     "axis=-1), v)", {"q": ql, "k": kl, "v": vl}, sdpa(ql, kl, vl, 0.6))
q2, k2, v2 = R(9, 4) * 2, R(11, 4) * 2, R(11, 3)
case("attention_rank2", "return matmul(softmax(matmul(q, transpose(k, dims=[0, 1])) * 0.5, "
     "axis=-1), v)", {"q": q2, "k": k2, "v": v2}, sdpa(q2, k2, v2, 0.5))
# heads formed through view and permute: [N, L, H*d] -> [N, H, L, d], and back
x = R(2, 9, 12)
heads = "\n".join([
    "q = permute(view(x * 1.5, shape=[2, 9, 3, 4]), perm=[0, 2, 1, 3])",
    "k = permute(view(x - 0.5, shape=[2, 9, 3, 4]), perm=[0, 2, 1, 3])",
    "v = permute(view(x, shape=[2, 9, 3, 4]), perm=[0, 2, 1, 3])",
    "k = transpose(k, dims=[2, 3])",
    "a = matmul(softmax(matmul(q, k) / 2, axis=-1), v)",
    "return view(permute(a, perm=[0, 2, 1, 3]), shape=[2, 9, 12])"])
qh, kh, vh = [t.view(2, 9, 3, 4).permute(0, 2, 1, 3) for t in (x * 1.5, x - 0.5, x)]
case("attention_heads_view_permute", heads, {"x": x},
     sdpa(qh, kh, vh, 0.5).permute(0, 2, 1, 3).reshape(2, 9, 12))
# declined: the scores also leave the graph; the softmax is over another axis
case("attention_scores_also_returned",
     "s = matmul(q, transpose(k, dims=[1, 2])) * 0.37\nreturn matmul(softmax(s, axis=-1), v), s",
     {"q": q, "k": k, "v": v},
     {"a": sdpa(q, k, v, 0.37), "s": torch.matmul(q, k.transpose(1, 2)) * 0.37})
qs = R(2, 13, 5)
case("attention_softmax_not_last",
     "return matmul(softmax(matmul(q, transpose(k, dims=[1, 2])) * 0.37, axis=1), v)",
     {"q": qs, "k": k, "v": v},
     torch.softmax(torch.matmul(qs, k.transpose(1, 2)) * 0.37, 1) @ v)

# ---------------------------------------------------------------------------------------------
# layout: permute, view, flatten, transpose
x = R(2, 3, 5, 7)
LAYOUT = [
    ("permute_nhwc", "permute(x, perm=[0, 2, 3, 1])", x.permute(0, 2, 3, 1)),
    ("permute_neg", "permute(x, perm=[-1, 0, 2, 1])", x.permute(-1, 0, 2, 1)),
    ("view_minus1_last", "view(x, shape=[2, -1])", x.reshape(2, -1)),
    ("view_minus1_first", "view(x, shape=[-1, 7])", x.reshape(-1, 7)),
    ("view_rank3", "view(x, shape=[6, 5, 7])", x.reshape(6, 5, 7)),
    ("view_of_permute", "view(permute(x, perm=[0, 2, 3, 1]), shape=[2, 35, 3])",
     x.permute(0, 2, 3, 1).reshape(2, 35, 3)),
    ("flatten_default", "flatten(x)", torch.flatten(x)),
    ("flatten_start1", "flatten(x, start=1)", torch.flatten(x, 1)),
    ("flatten_1_2", "flatten(x, start=1, end=2)", torch.flatten(x, 1, 2)),
    ("flatten_neg", "flatten(x, start=-2)", torch.flatten(x, -2)),
    ("transpose_1_neg1", "transpose(x, dims=[1, -1])", x.transpose(1, -1)),
    ("transpose_0_1", "transpose(x, dims=[0, 1])", x.transpose(0, 1)),
    ("transpose_then_flatten", "flatten(transpose(x, dims=[2, 3]), start=2)",
     torch.flatten(x.transpose(2, 3), 2)),
]
for name, expr, y in LAYOUT:
    case(name, "return " + expr, {"x": x}, y)

# ---------------------------------------------------------------------------------------------
# pools
x = R(2, 3, 13, 17)
POOLS = [
    ("avgpool_k3_s2_p1", "avgpool2d(x, kernel=3, stride=2, padding=1)",
     F.avg_pool2d(x, 3, 2, 1)),
    ("maxpool_k3_s2_p1", "maxpool2d(x, kernel=3, stride=2, padding=1)",
     F.max_pool2d(x, 3, 2, 1)),
    ("avgpool_k2_default_stride", "avgpool2d(x, kernel=2)", F.avg_pool2d(x, 2)),
    ("maxpool_k2_default_stride", "maxpool2d(x, kernel=2)", F.max_pool2d(x, 2)),
    ("maxpool_pairs", "maxpool2d(x, kernel=[3, 2], stride=[2, 1], padding=[1, 0])",
     F.max_pool2d(x, (3, 2), (2, 1), (1, 0))),
    ("avgpool_pairs", "avgpool2d(x, kernel=[3, 5], stride=[1, 2], padding=[1, 2])",
     F.avg_pool2d(x, (3, 5), (1, 2), (1, 2))),
    ("avgpool_k3_s3", "avgpool2d(x, kernel=3, stride=3)", F.avg_pool2d(x, 3, 3)),
    ("maxpool_k3_s1_p1", "maxpool2d(x, kernel=3, stride=1, padding=1)", F.max_pool2d(x, 3, 1, 1)),
]
for name, expr, y in POOLS:
    case(name, "return " + expr, {"x": x}, y)
xn = -torch.abs(R(2, 3, 13, 17)) - 1
case("maxpool_negative_padded", "return maxpool2d(x, kernel=3, stride=2, padding=1)", {"x": xn},
     F.max_pool2d(xn, 3, 2, 1))

# ---------------------------------------------------------------------------------------------
# scalar arithmetic and operator precedence
h = R(2, 3, 5, 7)
SCAL = [
    ("scalar_half_times", "0.5 * h", 0.5 * h),
    ("scalar_times_half", "h * 0.5", h * 0.5),
    ("scalar_one_plus_sigmoid", "1 + sigmoid(h)", 1 + torch.sigmoid(h)),
    ("scalar_div2", "h / 2", h / 2),
    ("scalar_unary_minus", "-h", -h),
    ("scalar_two_minus", "2 - h", 2 - h),
    ("scalar_recip", "1 / (h * h + 1)", 1 / (h * h + 1)),
    ("scalar_minus_paren_times", "-(h + 1) * 3", -(h + 1) * 3),
    ("scalar_minus_binds_tight", "- h * 2 - 1", (-h) * 2 - 1),
    ("scalar_exp_literal", "h - 1e-3 + 2.5E+3 * h", h - 1e-3 + 2500.0 * h),
    ("scalar_left_assoc", "h - h / 4 - 2 * h + h * h / 3", h - h / 4 - 2 * h + h * h / 3),
    ("scalar_minus_call", "-relu(h) + -sigmoid(h)", -torch.relu(h) + -torch.sigmoid(h)),
    ("scalar_dim_operand", "h * C + C", h * 3 + 3),
]
for name, expr, y in SCAL:
    case(name, "return " + expr, {"h": h}, y, pre="dim C = 3")
case("scalar_float_param",
     "return scale_by(h, s=0.25, k=3)", {"h": h}, h * 0.25 + 3 * h,
     pre="block scale_by(x: f32[N, C, H, W]; s: float, k: int = 1) -> f32[N, C, H, W] {\n"
         "    return x * s + k * x\n}")

# ---------------------------------------------------------------------------------------------
# broadcasting binary ops ([N, C, 1, 1] gates and friends)
x = R(2, 5, 7, 9)
gate = R(2, 5)
case("bcast_gate_view", "return x * view(sigmoid(gate), shape=[2, 5, 1, 1])",
     {"x": x, "gate": gate}, x * torch.sigmoid(gate).view(2, 5, 1, 1))
s = R(2, 1, 7, 9)
case("bcast_spatial_add", "return x + s", {"x": x, "s": s}, x + s)
case("bcast_spatial_sub_rev", "return s - x", {"x": x, "s": s}, s - x)
bb = torch.rand(5, 1, 1) + 0.5
case("bcast_trailing_div", "return x / b + 1", {"x": x, "b": bb}, x / bb + 1)
row = R(9)
case("bcast_row_sub", "return x - row", {"x": x, "row": row}, x - row)
case("bcast_mean_gate", "return x * sigmoid(mean(x, axes=[2, 3], keepdim=true))", {"x": x},
     x * torch.sigmoid(x.mean((2, 3), keepdim=True)))
p, q = R(2, 1, 7, 1), R(1, 5, 1, 9)
case("bcast_both_sides", "return p * q + p", {"p": p, "q": q}, p * q + p)

# ---------------------------------------------------------------------------------------------
# scopes: shared, for loops with {i}, blocks with scopes, nn.ModuleList keys


class Shared(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(torch.relu(self.conv(x)))


m = ev(Shared(4))
x = R(2, 4, 13, 17)
with torch.no_grad():
    case("scope_shared_conv_twice",
         "y = conv2d(x, out=4, kernel=3, padding=1) @conv\n"
         "return conv2d(relu(y), out=4, kernel=3, padding=1) @conv", {"x": x}, m(x),
         weights=m.state_dict())


class Stack(nn.Module):
    def __init__(self, c, n):
        super().__init__()
        self.layers = nn.ModuleList([nn.Conv2d(c, c, 3, padding=1) for _ in range(n)])

    def forward(self, x):
        for layer in self.layers:
            x = torch.relu(layer(x))
        return x


m = ev(Stack(3, 3))
x = R(2, 3, 11, 13)
with torch.no_grad():
    case("scope_for_modulelist",
         "for i in 0..3 {\n"
         "x = relu(conv2d(x, out=3, kernel=3, padding=1) @layers.{i})\n"
         "}\n"
         "return x", {"x": x}, m(x), weights=m.state_dict())


class Named(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer1 = nn.Module()
        self.layer1.conv = nn.Conv2d(c, c, 1)
        self.layer2 = nn.Module()
        self.layer2.conv = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return torch.tanh(self.layer2.conv(torch.tanh(self.layer1.conv(x))))


m = ev(Named(5))
x = R(2, 5, 7, 9)
with torch.no_grad():
    case("scope_splice_in_segment",
         "for i in 0..2 {\n"
         "x = tanh(conv2d(x, out=5, kernel=1) @layer{i+1}.conv)\n"
         "}\n"
         "return x", {"x": x}, m(x), weights=m.state_dict())


class ConvBN(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class Blocks(nn.Module):
    def __init__(self, c, n):
        super().__init__()
        self.blocks = nn.ModuleList([ConvBN(c) for _ in range(n)])

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x) + x
        return x


m = randomize_bn(ev(Blocks(4, 2)))
x = R(2, 4, 9, 11)
CONVBN = ("block convbn(x: f32[N, C, H, W]) -> f32[N, C, H, W] {\n"
          "    y = conv2d(x, out=C, kernel=3, padding=1, bias=false) @conv\n"
          "    return relu(batchnorm2d(y) @bn)\n}")
with torch.no_grad():
    y = m(x)
case("scope_block_in_for", "for i in 0..2 {\nx = convbn(x) @blocks.{i} + x\n}\nreturn x",
     {"x": x}, y, weights=m.state_dict(), pre=CONVBN)

# --prefix: the module sits at model.neck inside a parent; keys outside the prefix are ignored.


class Parent(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = nn.Module()
        self.model.neck = Blocks(4, 2)
        self.head = nn.Linear(4, 2)


par = ev(Parent())
randomize_bn(par)
with torch.no_grad():
    y = par.model.neck(x)
for label, pfx in [("prefix_no_dot", "model.neck"), ("prefix_trailing_dot", "model.neck.")]:
    case(label, "for i in 0..2 {\nx = convbn(x) @blocks.{i} + x\n}\nreturn x", {"x": x}, y,
         weights=par.state_dict(), pre=CONVBN, prefix=pfx)

# block compile-time parameters: int/float/bool with defaults, passed by keyword


class Opt(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.b = nn.Conv2d(6, 2, 1, bias=True)


m = ev(Opt())
x = R(2, 3, 7, 9)
with torch.no_grad():
    y = m.b(torch.relu(m.a(x)) * 0.5) * 1.0
OPTB = ("block cb(x: f32[N, Cin, H, W]; out: int, k: int = 1, bias: bool = true, gain: float = 1.0)"
        " -> f32[N, out, H, W] {\n"
        "    return conv2d(x, out=out, kernel=k, padding=k // 2, bias=bias) @conv * gain\n}")
case("block_ctparams_defaults",
     "y = relu(cb(x, out=6, k=3, bias=false) @a) * 0.5\nreturn cb(y, out=2) @b", {"x": x}, y,
     weights={"a.conv.weight": m.a.weight, "b.conv.weight": m.b.weight, "b.conv.bias": m.b.bias},
     pre=OPTB)

# statements separated by ';' and calls split over lines inside (...)
x = R(2, 3, 5, 7)
case("syntax_semicolons_and_newlines_in_parens",
     "a = relu(x); b = sigmoid(x)\nc = concat(a,\n  b,\n  axis=1\n)\nreturn c",
     {"x": x}, torch.cat([torch.relu(x), torch.sigmoid(x)], 1))

# several named outputs, returned in the declared order
a = R(2, 3, 5, 7)
case("outputs_named_order", "f3 = relu(a)\nf4 = a * 2\nreturn f4, f3", {"a": a},
     {"o3": a * 2, "o4": torch.relu(a)})

# for with zero iterations; nested for with two splices; a block scope used twice (shared)
x = R(2, 3, 5, 7)
case("for_zero_iterations", "for i in 0..0 {\nx = relu(x) * 2\n}\nreturn x + 1", {"x": x}, x + 1)


class Grid(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.rows = nn.ModuleList([nn.ModuleList([nn.Conv2d(c, c, 1) for _ in range(3)])
                                   for _ in range(2)])
        self.flat = nn.ModuleList([nn.Linear(7, 7) for _ in range(6)])

    def forward(self, x):
        for i in range(2):
            for j in range(3):
                x = torch.tanh(self.rows[i][j](x))
                x = self.flat[i * 3 + j](x)
        return x


m = ev(Grid(3))
with torch.no_grad():
    case("for_nested_two_splices",
         "for i in 0..2 {\n"
         "  for j in 0..3 {\n"
         "    x = tanh(conv2d(x, out=3, kernel=1) @rows.{i}.{j})\n"
         "    x = linear(x, out=7) @flat.{i * 3 + j}\n"
         "  }\n"
         "}\n"
         "return x", {"x": x}, m(x), weights=m.state_dict())

m = randomize_bn(ev(ConvBN(4)))
x = R(2, 4, 9, 11)
with torch.no_grad():
    y = m(m(x) + x)
case("scope_block_shared", "y = convbn(x) @shared\nreturn convbn(y + x) @shared", {"x": x}, y,
     weights=sd("shared", m), pre=CONVBN)

# broadcasting to a rank larger than both operands; softmax over an axis of size 1
a, b = R(5), R(2, 1, 1)
case("bcast_rank_grows", "return a * b + b", {"a": a, "b": b}, a * b + b)
x = R(2, 1, 5)
case("softmax_axis_size1", "return softmax(x, axis=1)", {"x": x}, torch.softmax(x, 1))
x = R(7)
case("reduce_rank1_keepdim", "return amax(x, axes=[0], keepdim=true)", {"x": x},
     torch.amax(x, 0, keepdim=True))

# outputs: an input returned as is, one value returned twice, three outputs, one not requested
x = R(2, 3, 5)
case("outputs_identity_and_duplicate", "y = sigmoid(x)\nreturn x, y, y", {"x": x},
     {"a": x, "b": torch.sigmoid(x), "c": torch.sigmoid(x)})
S.check("outputs_subset_requested",
        "fuse 1\ngraph g(x: f32[2, 3, 5]) -> (a: f32[2, 3, 5], b: f32[2, 3]) {\n"
        "    return relu(x), sum(x, axes=[2])\n}\n", {"x": x}, {"b": x.sum(2)})

# comments and newlines inside a call; a parameter rebound; file-level require
case("syntax_comments_in_call",
     "x = concat(x,      # the map\n"
     "           relu(x), # its positive part\n"
     "           axis=2)  # along W\n"
     "return x", {"x": x}, torch.cat([x, torch.relu(x)], 2), pre="require 2 >= 1")

# dims without defaults, given with --dim; a dim expression in a signature
DIMSPEC2 = """fuse 1
dim N, C
dim W = 2 * C + 1
graph g(x: f32[N, 2 * C, W]) -> f32[N, C, 2 * W] {
    return view(permute(view(x, shape=[N, 2, C, W]), perm=[0, 2, 1, 3]), shape=[N, C, 2 * W])
}
"""
x = R(2, 6, 7)
S.check("dim_no_default_given", DIMSPEC2, {"x": x},
        {None: x.view(2, 2, 3, 7).permute(0, 2, 1, 3).reshape(2, 3, 14)}, dims={"N": 2, "C": 3})
# more edges: rank-1 linear, K=1 matmul, single-input concat, identity layouts, unsorted axes,
# layout before upsample, layernorm of constant rows, mha with head size 1
m = ev(nn.Linear(9, 4))
x = R(9)
with torch.no_grad():
    case("linear_rank1", "return linear(x, out=4) @fc", {"x": x}, m(x), weights=sd("fc", m))
a, b = R(5, 1), R(1, 6)
case("matmul_k1_outer", "return matmul(a, b)", {"a": a, "b": b}, a @ b)
x = R(2, 3, 5, 7)
case("concat_single_input", "return concat(x, axis=1) * 1", {"x": x}, torch.cat([x], 1))
case("layout_identities",
     "a = transpose(x, dims=[1, 1])\nb = flatten(a, start=2, end=2)\n"
     "c = permute(b, perm=[0, 1, 2, 3])\nreturn view(c, shape=[2, 3, -1, 7])", {"x": x}, x)
case("reduce_unsorted_axes", "return mean(x, axes=[3, 1])", {"x": x}, x.mean((3, 1)))
case("upsample_after_permute",
     "return upsample(permute(x, perm=[0, 1, 3, 2]), size=[11, 9], mode=bilinear)", {"x": x},
     F.interpolate(x.permute(0, 1, 3, 2), size=(11, 9), mode="bilinear", align_corners=False))
m = randomize_all(ev(nn.LayerNorm(6)))
x = torch.cat([torch.full((2, 1, 6), 3.0), R(2, 2, 6)], 1)
with torch.no_grad():
    case("layernorm_constant_rows", "return layernorm(x) @ln", {"x": x}, m(x), weights=sd("ln", m))
m = randomize_all(ev(nn.MultiheadAttention(4, 4, batch_first=True)))
q, kv = R(2, 3, 4), R(2, 5, 4)
with torch.no_grad():
    case("mha_head_size1", "return mha(q, kv, kv, heads=4) @attn", {"q": q, "kv": kv},
         m(q, kv, kv, need_weights=False)[0], weights=sd("attn", m))

# blocks: literal and expression dims in a parameter's shape; a pattern variable shadows the
# file-level dim of the same name (C is 6 in the block although the file says 100)
m = ev(nn.Conv2d(6, 6, 1))
h, l_ = R(2, 6, 10, 14), R(2, 6, 5, 7)
with torch.no_grad():
    y = m(h + F.interpolate(l_, size=(10, 14), mode="nearest"))
case("block_shadow_literal_and_expr_dims", "return up_add(h, l) @c", {"h": h, "l": l_}, y,
     weights=sd("c.conv", m),
     pre="dim C = 100, H = 3\n"
         "block up_add(h: f32[N, C, H, W], l: f32[N, 6, H // 2, W // 2]) -> f32[N, C, H, W] {\n"
         "    return conv2d(h + upsample(l, scale=2), out=C, kernel=1) @conv\n}")

# dims use Python's floor division and modulo: -7 // 2 == -4, -7 % 3 == 2
x = R(6, 3)
S.check("dim_floor_division_negative",
        "fuse 1\ndim A = -7 // 2 + 10, B = -7 % 3 + 1\n"
        "graph g(x: f32[A, B]) -> f32[A, B] {\n    return x * 2\n}\n", {"x": x}, {None: x * 2})

# ---------------------------------------------------------------------------------------------
# --dim: defaults overridden, derived defaults follow (Hl = H // 2), explicit derived override
DIMSPEC = """fuse 1
dim N = 1, C = 4, H = 8, W = 8
dim Hl = H // 2, Wl = W // 2
graph up(h: f32[N, C, H, W], l: f32[N, C, Hl, Wl]) -> f32[N, 2 * C, H, W] {
    require H >= Hl
    u = upsample(l, size=[H, W], mode=bilinear, align_corners=false)
    return concat(h, u, axis=1)
}
"""


def dim_case(name, dims, N, C, H, W, Hl, Wl):
    h, l_ = R(N, C, H, W), R(N, C, Hl, Wl)
    y = torch.cat([h, F.interpolate(l_, size=(H, W), mode="bilinear", align_corners=False)], 1)
    S.check(name, DIMSPEC, {"h": h, "l": l_}, {None: y}, dims=dims)


dim_case("dim_defaults", None, 1, 4, 8, 8, 4, 4)
dim_case("dim_override_derived", {"N": 2, "C": 3, "H": 26, "W": 34}, 2, 3, 26, 34, 13, 17)
dim_case("dim_override_comma_form", ["N=2,C=3,H=26,W=34"], 2, 3, 26, 34, 13, 17)
dim_case("dim_override_derived_explicitly", ["N=2", "H=26", "W=34", "Hl=7", "Wl=11"],
         2, 4, 26, 34, 7, 11)

# ---------------------------------------------------------------------------------------------
# weights exactly as safetensors.torch.save_file(model.state_dict()) writes them: I64 0-d
# num_batches_tracked, __metadata__, entries sorted by dtype then key; also without metadata.


class WithBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_fuse = nn.Sequential(nn.Conv2d(6, 3, 1), nn.BatchNorm2d(3), nn.ReLU())


m = randomize_bn(ev(WithBN()))
x = R(2, 6, 7, 9)
with torch.no_grad():
    y = m.conv_fuse(x)
assert m.state_dict()["conv_fuse.1.num_batches_tracked"].dtype == torch.int64
SEQ = "x = conv2d(x, out=3, kernel=1) @conv_fuse.0\nreturn relu(batchnorm2d(x) @conv_fuse.1)"
case("weights_save_file_layout", SEQ, {"x": x}, y, weights=m.state_dict())


def no_meta_case():
    d = S.case_dir("weights_no_metadata")
    p = os.path.join(d, "w.safetensors")
    save_safetensors(m.state_dict(), p, metadata=False)
    return p


case("weights_no_metadata", SEQ, {"x": x}, y, weights=no_meta_case())

# entries of every dtype and shape (0-d, empty, F64, BF16, BOOL, I32, U8, F16) beside the used
# ones, inside and outside the prefix: all valid, only the used ones must be F32; and a file whose
# entries are not in save_file's order.
extra = collections.OrderedDict(m.state_dict())
extra.update({"conv_fuse.extra64": torch.randn(3, dtype=torch.float64),
              "conv_fuse.bf": torch.randn(2, 2).to(torch.bfloat16),
              "conv_fuse.flag": torch.tensor([True, False, True]),
              "conv_fuse.idx": torch.arange(5, dtype=torch.int32),
              "conv_fuse.bytes": torch.arange(3, dtype=torch.uint8),
              "conv_fuse.scalar": torch.tensor(1.5),
              "conv_fuse.empty": torch.zeros(0, 4),
              "outside.half": torch.randn(3).half()})
case("weights_all_dtypes_unused", SEQ, {"x": x}, y, weights=extra)


def reversed_file():
    p = os.path.join(S.case_dir("weights_unsorted_entries"), "w.safetensors")
    save_safetensors(m.state_dict(), p, order="reversed")
    return p


case("weights_unsorted_entries", SEQ, {"x": x}, y, weights=reversed_file())

# inputs: Fortran-order .npy is transposed on load; NAME= may be left out for a single input
xf = R(2, 3, 5, 7)


def fortran_file():
    d = S.case_dir("npy_fortran_order")
    p = os.path.join(d, "x_fortran.npy")
    np.save(p, np.asfortranarray(as_numpy(xf)))
    assert np.load(p).flags.f_contiguous
    return p


S.check("npy_fortran_order", spec_of({"x": xf}, xf, "return x * 2"), {}, {None: xf * 2},
        input_files={None: fortran_file()})
S.check("io_unnamed_input_named_out", spec_of({"x": xf}, xf, "return relu(x)"),
        {None: xf}, {"out": torch.relu(xf)})

# ---------------------------------------------------------------------------------------------
# random op chains (seeded, so reproducible): broadcasting, reductions, layouts, resampling and
# pools composed at random odd shapes. A failure prints its spec with --keep.
import random  # noqa: E402


def fuzz_spec(seed):
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    rank = rng.randint(1, 4)
    shape = [rng.choice([1, 2, 3, 5, 7]) for _ in range(rank)]
    if rank == 4:
        shape[2], shape[3] = rng.choice([5, 7, 9]), rng.choice([6, 11, 13])
    inputs = collections.OrderedDict(x0=torch.randn(*shape, generator=g))
    vals = [("x0", inputs["x0"])]
    lines = []
    for step in range(rng.randint(2, 7)):
        an, a = rng.choice(vals[-3:])
        r = a.dim()
        kind = rng.choice(["unary", "unary", "binary", "newin", "scalar", "reduce", "softmax",
                           "permute", "transpose", "flatten", "view", "concat", "matmul",
                           "upsample", "pool"])
        ex, res = None, None
        if kind == "unary":
            op = rng.choice(["relu", "sigmoid", "tanh", "abs", "neg", "silu", "gelu", "exp",
                             "sqrt", "rsqrt"])
            if op == "exp":
                ex, res = "exp(tanh(%s))" % an, torch.exp(torch.tanh(a))
            elif op in ("sqrt", "rsqrt"):
                ex = "%s(abs(%s) + 0.5)" % (op, an)
                res = getattr(torch, op)(torch.abs(a) + 0.5)
            else:
                fn = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
                      "abs": torch.abs, "neg": torch.neg, "silu": F.silu, "gelu": F.gelu}[op]
                ex, res = "%s(%s)" % (op, an), fn(a)
        elif kind in ("binary", "newin"):
            if kind == "binary":
                bn, b = rng.choice(vals)
                try:
                    torch.broadcast_shapes(a.shape, b.shape)
                except RuntimeError:
                    continue
            else:
                bshape = [d if rng.random() < 0.5 else 1 for d in a.shape]
                bshape = bshape[rng.randint(0, max(0, r - 1)):] or [1]
                bn = "x%d" % len(inputs)
                b = torch.randn(*bshape, generator=g)
                inputs[bn] = b
            op = rng.choice(["+", "-", "*", "/", "min", "max"])
            if op == "/":
                ex, res = "%s / (abs(%s) + 1)" % (an, bn), a / (torch.abs(b) + 1)
            elif op in ("min", "max"):
                fn = torch.minimum if op == "min" else torch.maximum
                ex, res = "%s(%s, %s)" % (op, an, bn), fn(a, b)
            else:
                ex = "%s %s %s" % (an, op, bn)
                res = {"+": a + b, "-": a - b, "*": a * b}[op]
        elif kind == "scalar":
            ex, res = rng.choice([("0.5 * %s + 1" % an, 0.5 * a + 1), ("2 - %s" % an, 2 - a),
                                  ("-%s / 4" % an, -a / 4), ("1 + sigmoid(%s)" % an,
                                                             1 + torch.sigmoid(a))])
        elif kind == "reduce":
            axes = sorted(rng.sample(range(r), rng.randint(1, r)))
            keep = rng.random() < 0.5
            if len(axes) == r and not keep:
                keep = True
            op = rng.choice(["mean", "sum", "amax", "amin"])
            neg = [ax - r if rng.random() < 0.5 else ax for ax in axes]
            ex = "%s(%s, axes=[%s], keepdim=%s)" % (op, an, ", ".join(map(str, neg)),
                                                    "true" if keep else "false")
            fn = {"mean": torch.mean, "sum": torch.sum, "amax": torch.amax, "amin": torch.amin}[op]
            res = fn(a, tuple(axes), keepdim=keep)
        elif kind == "softmax":
            ax = rng.randrange(r)
            ex, res = "softmax(%s, axis=%d)" % (an, ax), torch.softmax(a, ax)
        elif kind == "permute" and r >= 2:
            perm = list(range(r))
            rng.shuffle(perm)
            ex, res = "permute(%s, perm=[%s])" % (an, ", ".join(map(str, perm))), a.permute(*perm)
        elif kind == "transpose" and r >= 2:
            i, j = rng.sample(range(r), 2)
            ex, res = "transpose(%s, dims=[%d, %d])" % (an, i, j - r), a.transpose(i, j)
        elif kind == "flatten" and r >= 2:
            i = rng.randrange(r)
            j = rng.randrange(i, r)
            ex, res = "flatten(%s, start=%d, end=%d)" % (an, i, j), torch.flatten(a, i, j)
        elif kind == "view":
            new = list(a.shape)
            if r >= 2 and rng.random() < 0.5:
                i = rng.randrange(r - 1)
                new[i:i + 2] = [new[i] * new[i + 1]]
            else:
                new = [1] + new
            k = rng.randrange(len(new))
            txt = [str(d) if q != k else "-1" for q, d in enumerate(new)]
            ex, res = "view(%s, shape=[%s])" % (an, ", ".join(txt)), a.reshape(*new)
        elif kind == "concat":
            ax = rng.randrange(r)
            ex = "concat(%s, tanh(%s), %s, axis=%d)" % (an, an, an, ax - r)
            res = torch.cat([a, torch.tanh(a), a], ax - r)
        elif kind == "matmul" and r >= 2:
            ex = "tanh(0.1 * matmul(%s, transpose(%s, dims=[-1, -2])))" % (an, an)
            res = torch.tanh(0.1 * torch.matmul(a, a.transpose(-1, -2)))
        elif kind == "upsample" and r == 4:
            size = [rng.choice([1, 3, 8, 17]), rng.choice([2, 9, 20])]
            mode = rng.choice(["nearest", "bilinear"])
            ac = rng.random() < 0.5 if mode == "bilinear" else None
            ex = "upsample(%s, size=[%d, %d], mode=%s%s)" % (
                an, size[0], size[1], mode, "" if ac is None else ", align_corners=%s" %
                ("true" if ac else "false"))
            kw = {} if ac is None else {"align_corners": ac}
            res = F.interpolate(a, size=tuple(size), mode=mode, **kw)
        elif kind == "pool" and r == 4 and min(a.shape[2:]) >= 3:
            k = rng.choice([2, 3])
            st = rng.choice([1, 2, 3])
            p = rng.choice([0, 1]) if k == 3 else 0
            op = rng.choice(["avgpool2d", "maxpool2d"])
            ex = "%s(%s, kernel=%d, stride=%d, padding=%d)" % (op, an, k, st, p)
            res = (F.avg_pool2d if op == "avgpool2d" else F.max_pool2d)(a, k, st, p)
        if ex is None or res.numel() > 200000:
            continue
        vn = "v%d" % step
        lines.append("%s = %s" % (vn, ex))
        vals.append((vn, res))
    if not lines:
        lines.append("v = relu(x0)")
        vals.append(("v", torch.relu(inputs["x0"])))
    lines.append("return " + vals[-1][0])
    return inputs, "\n".join(lines), vals[-1][1]


for seed in range(150):
    fin, fbody, fexp = fuzz_spec(seed)
    case("fuzz_%02d" % seed, fbody, fin, fexp)

S.finish()
