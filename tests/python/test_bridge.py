#!/usr/bin/python3
"""fusec_torch against PyTorch: export every example's module and many small ones, run them.

    /usr/bin/python3 tests/python/test_bridge.py --fusec build/fusec [--filter NAME]

Each round trip: fusec_torch.export(model, example inputs) at batch 1 and 2, save_weights()
with randomized BatchNorm statistics, `fusec check SPEC --weights W` (the keys it lists are the
ones export() reported, with the state_dict's shapes), `fusec run --backend interp` on random
inputs, compared with the model's eval() output: max |got - want| <= 1e-4 * max(1, max |want|).
One case also runs through fusec's default backend. Other cases: unsupported code gives an
error naming the fx node and its source line; save_weights output is what fusec reads.
"""

import json
import os
import struct
import sys
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from support import Failure, Suite, load_example, prep, randomize_bn  # noqa: E402

import fusec_torch  # noqa: E402  (support puts python/ on sys.path)

S = Suite(__doc__)
warnings.filterwarnings("ignore", message=".*is deprecated", category=UserWarning)
R = torch.randn
THIS = os.path.abspath(__file__)


def roundtrip(name, model, make_inputs, batches=(1, 2), concrete=None, expect=(),
              backend="default", output_names=None, seed=0, graph_name=None):
    """Cases name:b1, name:b2. make_inputs(batch) -> tuple of forward's leading arguments, or
    a dict of arguments by name (tensors become the graph's inputs; other values are fixed
    while tracing)."""
    prep(model)
    for b in batches:
        def body(b=b):
            torch.manual_seed(seed * 100 + b)
            inputs = make_inputs(b)
            named = isinstance(inputs, dict)  # by name, in forward's order
            inputs = inputs if named else tuple(inputs)
            d = S.dir("%s_b%d" % (name, b))
            spec = os.path.join(d, "model.fuse")
            wpath = os.path.join(d, "model.safetensors")
            res = fusec_torch.export(model, inputs, spec, concrete_args=concrete,
                                     output_names=output_names, name=graph_name)
            fusec_torch.save_weights(model, wpath)
            if S.args.verbose:
                print(res.text)
            for text in expect:
                if text not in res.text:
                    raise Failure("the spec does not contain %r:\n%s" % (text, res.text))
            S.check_keys(spec, wpath, res, model.state_dict())
            with torch.no_grad():
                if named:
                    want = model(**inputs, **(concrete or {}))
                else:
                    want = model(*inputs, **(concrete or {}))
            wants = list(want) if isinstance(want, (tuple, list)) else [want]
            values = list(inputs.values()) if named else inputs
            tensors = [t for t in values if isinstance(t, torch.Tensor)]
            if len(tensors) != len(res.inputs):
                raise Failure("export() made %d inputs for %d tensors" % (len(res.inputs),
                                                                          len(tensors)))
            feeds = [(n, t) for (n, _), t in zip(res.inputs, tensors)]
            got = S.run(spec, wpath, feeds, [n for n, _ in res.outputs], d, backend)
            ok = True
            for (oname, _), g, w in zip(res.outputs, got, wants):
                label = "%s:b%d" % (name, b) + ("" if len(wants) == 1 else ":" + oname)
                ok = S.compare(label, g, w) and ok
            return ok

        S.case("%s:b%d" % (name, b), body)


# ---------------------------------------------------------------------------------------------
# the PyTorch modules of the examples' header comments, as written there
def examples():
    torch.manual_seed(1)
    ns = load_example(S.examples, "concat_conv")
    dimred = ns["DimReduction"](6, 2)
    roundtrip("concat_conv:DimReduction:use_conv", dimred, lambda b: (R(b, 12, 5, 7),),
              expect=["@conv_fuse.0", "batchnorm2d(", "eps=1e-5", "@conv_fuse.1"])
    roundtrip("concat_conv:DimReduction:use_conv=False", dimred,
              lambda b: (R(b, 12, 5, 7), False), expect=["@liner_fuse", "permute("])
    roundtrip("concat_conv:DimReduction:concrete_args", dimred, lambda b: (R(b, 12, 4, 3),),
              concrete={"use_conv": False}, batches=(2,), expect=["@liner_fuse"])

    class FuseHL(nn.Module):  # the header's fuse_hl(model, h, l), as a module
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, h_feat, l_feat):
            return ns["fuse_hl"](self.model, h_feat, l_feat)

    roundtrip("concat_conv:fuse_hl", FuseHL(ns["DimReduction"](6, 2)),
              lambda b: (R(b, 6, 10, 14), R(b, 6, 5, 7)),
              expect=["upsample(", "concat(", "@model.conv_fuse.0"])

    ns = load_example(S.examples, "concat_linear")

    class SameRes(nn.Module):
        def __init__(self):
            super().__init__()
            self.dimred = ns["DimReduction"](6, 2)

        def forward(self, h_feat, l_feat):
            return self.dimred(torch.cat([h_feat, l_feat], dim=1), use_conv=False)

    roundtrip("concat_linear:fuse_same", SameRes(), lambda b: (R(b, 6, 5, 7), R(b, 6, 5, 7)),
              expect=["@dimred.liner_fuse"])

    ns = load_example(S.examples, "add_mul")
    roundtrip("add_mul:AddMulFusion", ns["AddMulFusion"](), lambda b: (R(b, 3, 4, 5),
                                                                       R(b, 3, 4, 5)))
    roundtrip("add_mul:UpAddFusion", ns["UpAddFusion"](), lambda b: (R(b, 3, 8, 6),
                                                                     R(b, 3, 4, 3)),
              output_names=["added", "multiplied"], expect=["added: f32", "multiplied: f32"])

    ns = load_example(S.examples, "se")
    roundtrip("se:SELayer", ns["SELayer"](16, 4), lambda b: (R(b, 16, 5, 7),),
              expect=["@fc.0", "@fc.2", "bias=false"])
    # the one case through fusec's default backend (jit with LLVM, else c): the exported spec
    # compiles
    roundtrip("se:SELayer:default_backend", ns["SELayer"](16, 4), lambda b: (R(b, 16, 5, 7),),
              batches=(2,), backend=None)

    ns = load_example(S.examples, "cbam")
    roundtrip("cbam:CBAM", ns["CBAM"](16, 4, 7), lambda b: (R(b, 16, 9, 8),),
              expect=["amax(", "@ca.fc.0", "@sa.conv1"])
    roundtrip("cbam:CBAM:k3", ns["CBAM"](16, 8, 3), lambda b: (R(b, 16, 4, 5),), batches=(2,))
    roundtrip("cbam:SpatialAttention", ns["SpatialAttention"](7), lambda b: (R(b, 5, 6, 7),))

    ns = load_example(S.examples, "bam")
    roundtrip("bam:BAM", ns["BAM"](16, 4), lambda b: (R(b, 16, 9, 10),),
              expect=["batchnorm1d(", "dilation=4"])

    ns = load_example(S.examples, "self_attention")
    roundtrip("self_attention:SelfAttention", ns["SelfAttention"](12, 8),
              lambda b: (R(b, 12, 3, 5),), expect=["softmax(", "matmul("])
    roundtrip("self_attention:MHSA", ns["MHSA"](12, 4), lambda b: (R(b, 12, 3, 5),),
              expect=["mha(", "heads=4", "layernorm("])

    ns = load_example(S.examples, "neck")
    roundtrip("neck:Neck", ns["Neck"](16, 4), lambda b: (R(b, 16, 8, 10), R(b, 16, 4, 5),
                                                         R(b, 16, 2, 3)),
              expect=["p3: f32", "p4: f32", "@cbam.1.sa.conv1", "@se.0.fc.2"])


# ---------------------------------------------------------------------------------------------
# every mapping, in small modules
class FunctionalForms(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        a = F.relu(self.conv(x)) + torch.relu(x) + x.relu()
        s = torch.sigmoid(x) + x.sigmoid() + F.sigmoid(x)
        t = torch.tanh(x) + x.tanh() + F.tanh(x) + F.silu(x) + F.gelu(x)
        t = t + F.gelu(x, approximate="tanh") + torch.exp(-x.abs()) + torch.abs(x)
        t = t + torch.sqrt(x.abs() + 1) + torch.rsqrt(x * x + 1) + x.abs().sqrt().neg()
        g = F.adaptive_avg_pool2d(x, 1) + F.adaptive_max_pool2d(x, (1, 1))
        g = g + x.mean((2, 3), keepdim=True) + x.amax(dim=(2, 3), keepdim=True)
        g = g + torch.amin(x, dim=[2, 3], keepdim=True) + x.sum(dim=(2, 3), keepdim=True) / 10
        return a * s + t * g


class ModuleForms(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.act = nn.Sequential(nn.ReLU(), nn.Identity(), nn.Dropout(0.5), nn.Dropout2d(0.2),
                                 nn.SiLU(), nn.GELU(), nn.Tanh(), nn.Sigmoid())
        self.gelu_tanh = nn.GELU(approximate="tanh")
        self.avg = nn.AdaptiveAvgPool2d((1, 1))
        self.max = nn.AdaptiveMaxPool2d(1)
        self.softmax = nn.Softmax(dim=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.pool = nn.MaxPool2d(2)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(c, c)

    def forward(self, x):
        y = self.act(x) + self.gelu_tanh(x)
        y = self.softmax(y) * (self.avg(x) + self.max(x))
        y = self.pool(self.up(y))
        z = self.fc(self.flat(self.avg(y)))
        return y * z.view(z.size(0), -1, 1, 1)


class Sizes(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc = nn.Linear(c, c, bias=False)

    def forward(self, x):
        b, c, _, _ = x.size()
        n, ch, h, w = x.shape
        assert n == b and ch == c and x.dim() == 4 and len(x) == b
        hw = x.shape[-2:]
        y = x.view(b, c, h * w).mean(-1)
        y = self.fc(y).view(x.size(0), x.size(1), 1, 1)
        z = x.reshape(x.size()[0], -1).view(n, ch, hw[0], hw[1])
        k = x.numel() // (b * c * h)
        up = F.interpolate(y, size=x.shape[2:], mode="nearest")
        return z * y.expand_as(x) + up + k + x.size(-1)


class MaxForms(nn.Module):
    def forward(self, x, y):
        a = torch.max(x, 1, keepdim=True)[0]
        b = x.max(dim=1, keepdim=True).values
        c = torch.min(x, dim=1)[0].unsqueeze(1)
        v, _ = torch.max(x, dim=1, keepdim=True)
        m = torch.max(x, y) + torch.minimum(x, y) + torch.maximum(x, y) + x.min(y)
        full = x.max() + torch.amin(x)
        return a + b + c + v + m - full


class SqueezeForms(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc = nn.Linear(c, c)

    def forward(self, x):
        g = x.mean((2, 3), keepdim=True).squeeze(-1).squeeze(-1)
        g = self.fc(g).unsqueeze(-1).unsqueeze(3)
        h = torch.squeeze(x.amax(1, keepdim=True), 1)
        h = torch.unsqueeze(h, 1)
        return x * g + h + x.mean(0, keepdim=True).squeeze()


class IdentityForms(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.id = nn.Identity()
        self.drop = nn.Dropout(0.3)
        self.conv = nn.Conv2d(c, c, 1)

    def forward(self, x):
        y = self.drop(self.id(x)).contiguous()
        y = F.dropout(y, 0.3, training=self.training)
        y = self.conv(y.clone()).detach().float()
        return y.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)


class ExpandForms(nn.Module):
    def forward(self, x):
        b, c, h, w = x.shape
        g = x.mean((2, 3), keepdim=True)
        s = x.mean(1, keepdim=True)
        e1 = g.expand_as(x)                        # materialized as an output
        e2 = s.expand(-1, c, -1, -1) * 2           # a channel expand, then a scalar op
        e3 = x.mean(0).expand(b, c, h, w)          # a new leading axis
        return e1, e2, e3 + g.expand(b, c, h, w) + s.expand_as(x)


class LayoutForms(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc = nn.Linear(c, c)
        self.flat = nn.Flatten(1, 2)

    def forward(self, x):
        b, c, h, w = x.shape
        t = torch.flatten(x, 2).transpose(1, 2)           # [b, hw, c]
        t = self.fc(t)
        t = torch.transpose(t, -1, -2).reshape(b, c, h, w)
        u = x.permute([0, 2, 3, 1])
        u = torch.permute(u, (0, 3, 1, 2))
        v = x.reshape(-1, w).view(b, -1)
        v = torch.reshape(v, (b, c, h, w))
        f = self.flat(x).view(b, c, h, w) + x.flatten(1).view_as(x)
        s = x.swapaxes(2, 3).transpose(2, 3)
        return t + u + v + f + s


class EpsForms(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bn2 = nn.BatchNorm2d(c, eps=0.1)
        self.bn1 = nn.BatchNorm1d(c, eps=0.25)
        self.bn1_3d = nn.BatchNorm1d(c, eps=1e-3)
        self.ln = nn.LayerNorm(c, eps=0.5)

    def forward(self, x):
        y = self.bn2(x)
        g = self.bn1(y.mean((2, 3)))
        t = self.bn1_3d(y.flatten(2))
        t = self.ln(t.transpose(1, 2)).transpose(1, 2)
        return y * g.view(-1, g.size(1), 1, 1) + t.view_as(y)


class Arithmetic(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.scale = c ** -0.5

    def forward(self, x, y):
        a = 2 - x + x / 3 - 1 / (1 + x.abs()) - (-x) * self.scale
        b = torch.add(x, y, alpha=2) + x.sub(y) + x.div(2) + torch.mul(x, y) + x.mul(0.5)
        c = torch.sub(x, y) * torch.div(x, 4) + x ** 2 + y.abs() ** 0.5 + (y * y + 1) ** -0.5
        q = x.flatten(2)                                    # [b, c, hw]
        d = (q @ q.transpose(1, 2)).softmax(-1)             # [b, c, c]
        e = torch.matmul(d, q) + torch.bmm(d, q) + d.matmul(q)
        e = F.softmax(e, dim=1) + torch.softmax(e, -1)
        return a + b + c + e.view_as(x) - x.neg()


class ConvForms(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.s2 = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.asym = nn.Conv2d(c, c, (3, 5), padding=(1, 2), bias=False)
        self.dil = nn.Conv2d(c, c, 3, padding=2, dilation=2, groups=2)
        self.same = nn.Conv2d(c, c, 3, padding="same")
        self.valid = nn.Conv2d(c, c, 1, padding="valid")
        self.bn = nn.BatchNorm2d(c)
        self.fc3d = nn.Linear(c, 3, bias=False)

    def forward(self, x):
        y = self.asym(x) + self.dil(x) + self.same(x) + self.valid(x)
        y = F.relu(self.bn(y), inplace=True)
        z = self.s2(y)
        z = F.interpolate(z, scale_factor=2, mode="bilinear", align_corners=True)
        return self.fc3d(z.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class AttentionForms(nn.Module):
    def __init__(self, e):
        super().__init__()
        self.seq_first = nn.MultiheadAttention(e, 2)
        self.no_bias = nn.MultiheadAttention(e, 1, bias=False, batch_first=True)
        self.cross = nn.MultiheadAttention(e, 2, batch_first=True)

    def forward(self, q, kv):
        a = self.seq_first(q.transpose(0, 1), q.transpose(0, 1), q.transpose(0, 1))[0]
        b, _ = self.no_bias(q, q, q, need_weights=False)
        c = self.cross(q, kv, kv)[0]
        return a.transpose(0, 1) + b + c


class ResampleForms(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Upsample(size=(9, 11), mode="bilinear", align_corners=False)
        self.avg = nn.AvgPool2d(3, stride=2, padding=1)
        self.avg2 = nn.AdaptiveAvgPool2d((2, 4))

    def forward(self, x):
        a = F.interpolate(x, scale_factor=(2, 3), mode="nearest")
        a = F.avg_pool2d(a, (2, 3))
        b = F.interpolate(x, scale_factor=1.5, mode="bilinear", align_corners=False,
                          recompute_scale_factor=True)
        b = F.interpolate(b, size=x.shape[-2:], mode="bilinear")
        c = F.max_pool2d(x, 3, 1, 1) + F.avg_pool2d(x, x.size(2))
        d = self.avg(self.up(x))
        e = self.avg2(x).mean((2, 3), keepdim=True)
        return a + b + c + F.interpolate(d, size=(x.size(2), x.size(3))) + e


class ParamForms(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gamma = nn.Parameter(torch.randn(1, c, 1, 1))
        self.register_buffer("shift", torch.randn(c, 1, 1))
        self.block = nn.Sequential(nn.Conv2d(c, c, 1), nn.ReLU(inplace=True))

    def forward(self, x):
        y = self.block(x)
        y = y.relu_()
        return x * self.gamma + self.shift + torch.cat([y, -y, x], dim=-3).sum(1, keepdim=True)


class Nested(nn.Module):
    """ModuleList and ModuleDict paths as scopes, a block reused twice."""

    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList([nn.Sequential(nn.Conv2d(c, c, 1), nn.BatchNorm2d(c))
                                     for _ in range(2)])
        self.heads = nn.ModuleDict({"gate": nn.Linear(c, c)})

    def forward(self, x, scale=2.0):
        for layer in self.layers:
            x = F.relu(layer(x))
        x = self.layers[0](x) * scale
        g = torch.sigmoid(self.heads["gate"](x.mean((2, 3))))
        return x * g.view(g.shape[0], g.shape[1], 1, 1)


class Names(nn.Module):
    """Inputs named after .fuse keywords, keyword-only arguments, outputs named by the caller."""

    def forward(self, input, dim, *, scale=2.0, shift=None):
        if shift is not None:
            input = input + shift
        return input * dim * scale, input - dim


class Unpacked(nn.Module):
    def forward(self, h, l):
        u = F.interpolate(l, size=h.shape[-2:], mode="bilinear", align_corners=False)
        added = h + u
        multiplied = h * u
        return added, multiplied


def mappings():
    torch.manual_seed(2)
    roundtrip("map:functional_forms", FunctionalForms(6), lambda b: (R(b, 6, 5, 4),),
              expect=["gelu(", "approximate=tanh", "silu(", "rsqrt(", "amin(", "sum("])
    roundtrip("map:module_forms", ModuleForms(6), lambda b: (R(b, 6, 4, 6),),
              expect=["softmax(", "maxpool2d(", "upsample(", "mode=nearest"])
    roundtrip("map:size_shape", Sizes(6), lambda b: (R(b, 6, 5, 3),),
              expect=["view(x, shape="])
    roundtrip("map:max_min", MaxForms(), lambda b: (R(b, 5, 4, 3), R(b, 5, 4, 3)),
              expect=["amax(", "amin(", "max(x, y)", "min(x, y)"])
    roundtrip("map:squeeze_unsqueeze", SqueezeForms(5), lambda b: (R(b, 5, 4, 3),))
    roundtrip("map:identity_dropout", IdentityForms(4), lambda b: (R(b, 4, 3, 5),))
    roundtrip("map:expand", ExpandForms(), lambda b: (R(b, 4, 3, 5),),
              expect=["upsample("])
    roundtrip("map:layout", LayoutForms(4), lambda b: (R(b, 4, 3, 5),),
              expect=["flatten(", "transpose(", "permute("])
    eps = EpsForms(4)
    for m in eps.modules():
        randomize_bn(m, var_scale=0.05)  # small running_var: eps matters
    roundtrip("map:eps", eps, lambda b: (R(b, 4, 3, 5),),
              expect=["eps=0.1", "eps=0.25", "eps=0.001", "eps=0.5"])
    roundtrip("map:arithmetic", Arithmetic(4), lambda b: (R(b, 4, 3, 2), R(b, 4, 3, 2)))
    roundtrip("map:conv", ConvForms(4), lambda b: (R(b, 4, 6, 8),),
              expect=["stride=2", "kernel=[3, 5]", "padding=[1, 2]", "dilation=2",
                      "groups=2", "align_corners=true"])
    roundtrip("map:attention", AttentionForms(8), lambda b: (R(b, 5, 8), R(b, 3, 8)),
              expect=["mha(", "bias=false", "perm=[1, 0, 2]"])
    roundtrip("map:resample", ResampleForms(), lambda b: (R(b, 3, 6, 8),),
              expect=["scale=[2, 3]", "avgpool2d("])
    roundtrip("map:params", ParamForms(4), lambda b: (R(b, 4, 3, 5),),
              expect=["param(shape=[1, 4, 1, 1]) @gamma", "@shift"])
    roundtrip("map:nested", Nested(4), lambda b: (R(b, 4, 3, 5),),
              expect=["@layers.0.0", "@layers.1.1", "@heads.gate"])
    roundtrip("map:names", Names(), lambda b: {"input": R(b, 3, 4), "dim": R(b, 3, 4)},
              concrete={"scale": 0.5}, output_names=["prod", "diff"], graph_name="named",
              expect=["graph named(input: f32", "dim_: f32", "prod: f32", "diff: f32",
                      "* 0.5", "fixed arguments: scale=0.5, shift=None"])
    roundtrip("map:return_names", Unpacked(), lambda b: (R(b, 2, 6, 4), R(b, 2, 3, 2)),
              expect=["(added: f32", "multiplied: f32"])


# ---------------------------------------------------------------------------------------------
# errors: the node and the source line
def marker_line(marker):
    for i, ln in enumerate(open(THIS), 1):
        if ln.rstrip().endswith("# " + marker):
            return i
    raise AssertionError("no marker " + marker)


class Unsupported1(nn.Module):
    def __init__(self):
        super().__init__()
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        y = x * 2
        return self.shuffle(y)  # ERR-MODULE


class Unsupported2(nn.Module):
    def forward(self, x):
        v = torch.topk(x, 2, dim=1)[0]  # ERR-FUNCTION
        return v


class Unsupported3(nn.Module):
    def forward(self, x):
        return x[:, :2] * 2  # ERR-SLICE


class Unsupported4(nn.Module):
    def forward(self, x):
        y = x * 2
        y.mul_(3)  # ERR-INPLACE
        return y


class Unsupported5(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # ERR-CONTROL
            return x
        return -x


class Unsupported6(nn.Module):
    def forward(self, x):
        return x + torch.ones(x.shape[-1])  # ERR-CONSTANT


class Unsupported7(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(4, affine=False)

    def forward(self, x):
        return self.bn(x)  # ERR-AFFINE


class Unsupported8(nn.Module):
    def forward(self, x):
        return x.cumsum(1)  # ERR-METHOD


class Unsupported9(nn.Module):
    def forward(self, x, mask):
        return x * mask


def errors():
    cases = [
        ("module", Unsupported1(), "ERR-MODULE", ["'shuffle'", "nn.PixelShuffle"]),
        ("function", Unsupported2(), "ERR-FUNCTION", ["'topk'", "torch.topk"]),
        ("slice", Unsupported3(), "ERR-SLICE", ["'getitem'", "slicing"]),
        ("inplace", Unsupported4(), "ERR-INPLACE", ["'mul_'", "in-place"]),
        ("control_flow", Unsupported5(), "ERR-CONTROL", ["control flow"]),
        ("tensor_constant", Unsupported6(), "ERR-CONSTANT", ["state_dict"]),
        ("bn_affine", Unsupported7(), "ERR-AFFINE", ["'bn'", "affine=False"]),
        ("method", Unsupported8(), "ERR-METHOD", ["'cumsum'", "Tensor.cumsum"]),
    ]
    for label, model, marker, words in cases:
        def body(model=model, marker=marker, words=words):
            try:
                fusec_torch.export(model.eval(), (R(1, 4, 4, 4),), None)
            except fusec_torch.ExportError as e:
                msg = str(e)
                want = "%s:%d" % (THIS, marker_line(marker))
                missing = [w for w in [want] + words if w not in msg]
                return S.line(not missing, "error:" + label,
                              msg if not missing else "missing %s in: %s" % (missing, msg))
            raise Failure("export() did not fail")
        S.case("error:" + label, body)

    def no_default():
        try:
            fusec_torch.export(Unsupported9(), (R(1, 3, 4, 4),), None)
        except fusec_torch.ExportError as e:
            return S.line("'mask'" in str(e), "error:no_example_no_default", str(e))
        raise Failure("export() did not fail")
    S.case("error:no_example_no_default", no_default)


# ---------------------------------------------------------------------------------------------
# save_weights: what fusec reads
def read_header(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob, n


def weights():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(F.relu(self.bn(self.conv(x))).mean((2, 3)))

    model = prep(Net())
    x = R(2, 3, 5, 5)
    d = S.dir("weights")
    spec = os.path.join(d, "net.fuse")
    res = fusec_torch.export(model, (x,), spec)
    sd = model.state_dict()

    def keep():
        p = os.path.join(d, "keep.safetensors")
        keys = fusec_torch.save_weights(model, p)
        header, blob, n = read_header(p)
        if header.get("__metadata__") != {"format": "pt"}:
            raise Failure("metadata %r" % header.get("__metadata__"))
        entries = [k for k in header if k != "__metadata__"]
        if sorted(entries) != sorted(sd.keys()) or sorted(keys) != sorted(sd.keys()):
            raise Failure("keys %s, expected %s" % (sorted(entries), sorted(sd.keys())))
        if (n + 8) % 8:
            raise Failure("the header is not padded to a multiple of 8")
        for k, e in header.items():
            if k == "__metadata__":
                continue
            want = "I64" if k.endswith("num_batches_tracked") else "F32"
            if e["dtype"] != want or e["shape"] != list(sd[k].shape):
                raise Failure("%s: %s %s, expected %s %s" % (k, e["dtype"], e["shape"], want,
                                                            list(sd[k].shape)))
        tensors, _ = fusec_torch.load_weights(p)
        for k, t in sd.items():
            if not torch.equal(tensors[k], t):
                raise Failure("%s differs after reading back" % k)
        if tensors["bn.num_batches_tracked"].item() != 7:
            raise Failure("num_batches_tracked not kept")
        # safetensors' order: I64 entries first, then F32, each by key
        order = sorted(entries, key=lambda k: (header[k]["dtype"] != "I64", k))
        offsets = sorted(entries, key=lambda k: header[k]["data_offsets"][0])
        if order != offsets:
            raise Failure("data order %s, expected %s" % (offsets, order))
        S.check_keys(spec, p, res, sd)
        return S.line(True, "weights:keep_num_batches_tracked", "%d keys" % len(entries))

    def drop():
        p = os.path.join(d, "drop.safetensors")
        keys = fusec_torch.save_weights(model.state_dict(), p, num_batches_tracked="drop")
        header, _, _ = read_header(p)
        if any(k.endswith("num_batches_tracked") for k in header) or \
                any(k.endswith("num_batches_tracked") for k in keys):
            raise Failure("num_batches_tracked written")
        S.check_keys(spec, p, res, sd)
        got = S.run(spec, p, [("x", x)], ["out"], d)
        with torch.no_grad():
            want = model(x)
        return S.compare("weights:drop_num_batches_tracked:run", got[0], want)

    def float64():
        m64 = prep(Net()).double()
        p = os.path.join(d, "f64.safetensors")
        fusec_torch.save_weights(m64, p)
        header, _, _ = read_header(p)
        bad = [k for k, e in header.items() if k != "__metadata__" and
               e["dtype"] != ("I64" if k.endswith("num_batches_tracked") else "F32")]
        if bad:
            raise Failure("not F32: %s" % bad)
        S.check_keys(spec, p, res, sd)
        got = S.run(spec, p, [("x", x)], ["out"], d)
        with torch.no_grad():
            want = m64(x.double()).float()
        return S.compare("weights:float64_written_as_f32:run", got[0], want)

    def wrong_shape():
        other = Net()
        other.fc = nn.Linear(4, 3)
        p = os.path.join(d, "wrong.safetensors")
        fusec_torch.save_weights(other, p)
        rc, _, err = S.fusec_cmd(["check", spec, "--weights", p], expect_rc=1)
        return S.line("fc.weight" in err, "weights:wrong_shape_rejected", err.splitlines()[0])

    S.case("weights:keep", keep)
    S.case("weights:drop", drop)
    S.case("weights:float64", float64)
    S.case("weights:wrong_shape", wrong_shape)


examples()
mappings()
errors()
weights()
S.finish()
