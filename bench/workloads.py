"""The benchmark workloads: their .fuse graphs, sizes, goals, and the PyTorch modules they mirror.

The PyTorch code of a workload is the code in its .fuse file's header comment (the `import`,
`class` and `def` blocks, run as written), so what is timed is what the spec says it mirrors.
Models are in eval() mode, BatchNorm statistics and affine parameters randomized (so that BN is
not the identity), inputs torch.rand as in the headers; everything is seeded.
"""

import collections
import os
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
# The examples' PyTorch modules are read the way the conformance tests read them.
sys.path.insert(0, os.path.join(REPO, "tests", "conformance"))
from conformance import header_code  # noqa: E402


class Workload:
    def __init__(self, name, title, spec, entry, full, quick, inputs, build, outputs=(None,),
                 peer=None, goal=None, note=""):
        self.name = name
        self.title = title
        self.spec = spec                    # path relative to the repository root
        self.entry = entry
        self.full = full                    # {dim: value} for --dim, the benchmark size
        self.quick = quick                  # the --quick (and correctness-check) size
        self.inputs = inputs                # dims -> OrderedDict(name -> shape), graph order
        self.build = build                  # (namespace, dims) -> (model, fn(*inputs))
        self.outputs = outputs              # graph output names (None: the single output)
        self.peer = peer                    # "halide", "onednn" or None
        self.goal = goal                    # (base, factor): fusec <= factor * base, or None
        self.note = note

    def dims(self, quick):
        return dict(self.quick if quick else self.full)

    def spec_path(self):
        return os.path.join(REPO, self.spec)

    def dim_arg(self, quick):
        return ",".join("%s=%d" % kv for kv in self.dims(quick).items())


def _od(*pairs):
    return collections.OrderedDict(pairs)


def _hl_inputs(d):
    return _od(("h", [1, d["C"], d["H"], d["W"]]), ("l", [1, d["C"], d["H"] // 2, d["W"] // 2]))


def _same_inputs(d):
    return _od(("h", [1, d["C"], d["H"], d["W"]]), ("l", [1, d["C"], d["H"], d["W"]]))


def _merged_input(d):
    return _od(("merged", [1, 2 * d["C"], d["H"], d["W"]]))


def _x_input(d):
    return _od(("x", [1, d["C"], d["H"], d["W"]]))


def _w1(ns, d):
    model = ns["DimReduction"](d["C"], 2)
    fuse_hl = ns["fuse_hl"]
    return model, lambda h, l: fuse_hl(model, h, l)


def _w1k(ns, d):
    model = ns["DimReduction"](d["C"], 2)
    return model, lambda merged: model(merged, use_conv=True)


def _w2(ns, d):
    torch = ns["torch"]
    model = ns["DimReduction"](d["C"], 2)
    return model, lambda h, l: model(torch.cat([h, l], dim=1), use_conv=False)


def _module(cls, *args):
    def build(ns, d):
        model = ns[cls](*[d[a] if isinstance(a, str) else a for a in args])
        return model, model
    return build


# Goal bases: "halide", "torch_tc" (PyTorch eager with tcmalloc), "min_tc_onednn" (the faster
# of PyTorch+tcmalloc and oneDNN called directly). Attention goals come with the next issue.
WORKLOADS = collections.OrderedDict((w.name, w) for w in [
    Workload("W1", "up(l) ++ h -> conv1x1 256->128 + BN + ReLU, 512^2",
             "examples/concat_conv.fuse", "fuse_hl",
             _od(("C", 128), ("H", 512), ("W", 512)), _od(("C", 128), ("H", 32), ("W", 64)),
             _hl_inputs, _w1, peer="halide", goal=("halide", 0.6)),
    Workload("W1k", "W1's contraction alone: conv1x1 256->128 + BN + ReLU, 512^2",
             "examples/concat_conv.fuse", "dim_reduction",
             _od(("C", 128), ("H", 512), ("W", 512)), _od(("C", 128), ("H", 32), ("W", 64)),
             _merged_input, _w1k),
    Workload("W2", "h ++ l -> permute -> Linear 256->128 -> permute, 512^2",
             "examples/concat_linear.fuse", "fuse_same",
             _od(("C", 128), ("H", 512), ("W", 512)), _od(("C", 128), ("H", 32), ("W", 64)),
             _same_inputs, _w2, goal=("torch_tc", 0.55)),
    Workload("W3", "h + up(l), h * up(l), 512^2",
             "examples/add_mul.fuse", "fuse_hl",
             _od(("C", 128), ("H", 512), ("W", 512)), _od(("C", 128), ("H", 32), ("W", 64)),
             _hl_inputs, _module("UpAddFusion"), outputs=("added", "multiplied"),
             goal=("torch_tc", 0.2)),
    Workload("W3c", "h + up(l) -> conv1x1 128->128 + BN + ReLU, 512^2",
             "bench/w3c.fuse", "fuse_hl",
             _od(("C", 128), ("H", 512), ("W", 512)), _od(("C", 128), ("H", 32), ("W", 64)),
             _hl_inputs, _module("UpAddConv", "C"), goal=("torch_tc", 0.45)),
    Workload("W8", "conv3x3 128->128 pad 1 + BN + ReLU, 128^2",
             "bench/w8.fuse", "conv_bn_relu",
             _od(("C", 128), ("H", 128), ("W", 128)), _od(("C", 128), ("H", 16), ("W", 24)),
             _x_input, _module("ConvBNReLU", "C"), peer="onednn", goal=("min_tc_onednn", 1.0)),
    Workload("W4", "SE, r=16, C=128, 512^2",
             "examples/se.fuse", "se_block",
             _od(("C", 128), ("H", 512), ("W", 512)), _od(("C", 128), ("H", 16), ("W", 24)),
             _x_input, _module("SELayer", "C", 16), goal=("torch_tc", 0.7)),
    Workload("W1SE", "W1 then SE (r=16): the seed pipeline, 512^2",
             "bench/w1se.fuse", "fuse_hl_se",
             _od(("C", 128), ("H", 512), ("W", 512)), _od(("C", 128), ("H", 32), ("W", 64)),
             _hl_inputs, _module("FuseSE", "C"), goal=("torch_tc", 0.42)),
    Workload("W5", "CBAM, r=16, 7x7, C=128, 256^2",
             "examples/cbam.fuse", "cbam_block",
             _od(("C", 128), ("H", 256), ("W", 256)), _od(("C", 128), ("H", 16), ("W", 24)),
             _x_input, _module("CBAM", "C", 16, 7), goal=("torch_tc", 0.2)),
    Workload("W6", "BAM, r=16, dilation 4, C=128, 128^2",
             "examples/bam.fuse", "bam_block",
             _od(("C", 128), ("H", 128), ("W", 128)), _od(("C", 128), ("H", 16), ("W", 24)),
             _x_input, _module("BAM", "C", 16), goal=("torch_tc", 0.35)),
    Workload("W7", "self-attention, d=128, C=128, 64x64 = 4096 tokens",
             "bench/w7.fuse", "attn",
             _od(("C", 128), ("H", 64), ("W", 64)), _od(("C", 128), ("H", 5), ("W", 7)),
             _x_input, _module("SelfAttention", "C", 128), goal=("torch_tc", 0.6)),
    Workload("MHSA", "LayerNorm + MHA 8 heads, C=128, 64x64 = 4096 tokens",
             "examples/self_attention.fuse", "attn_mha",
             _od(("C", 128), ("H", 64), ("W", 64)), _od(("C", 128), ("H", 5), ("W", 7)),
             _x_input, _module("MHSA", "C", 8)),
])


_NS = {}


def namespace(w):
    path = w.spec_path()
    if path not in _NS:
        ns = {}
        exec(compile(header_code(path), path + " (header comment)", "exec"), ns)
        _NS[path] = ns
    return _NS[path]


def randomize(model, torch, generator):
    """BatchNorm: running statistics and affine parameters random; LayerNorm and attention:
    every parameter random (their default ones/zeros would make them near identities)."""
    nn = torch.nn
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5, generator=generator)
                m.running_var.uniform_(0.5, 1.5, generator=generator)
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.uniform_(-0.5, 0.5, generator=generator)
            elif isinstance(m, (nn.LayerNorm, nn.MultiheadAttention)):
                for name, p in m.named_parameters():
                    if name.endswith("weight") and p.dim() == 1:
                        p.uniform_(0.5, 1.5, generator=generator)
                    elif p.dim() == 1:
                        p.uniform_(-0.2, 0.2, generator=generator)


def instantiate(w, torch, quick, seed=1234):
    """(model, fn, inputs): an eval() model with random weights, the callable to time, and the
    inputs in graph order (torch.rand, allocated once)."""
    d = w.dims(quick)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    model, fn = w.build(namespace(w), d)
    model.eval()
    randomize(model, torch, g)
    inputs = [torch.rand(*shape, generator=g) for shape in w.inputs(d).values()]
    return model, fn, inputs


def as_tuple(y):
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)
