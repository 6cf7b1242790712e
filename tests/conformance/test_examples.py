#!/usr/bin/python3
"""Every graph of examples/*.fuse against the PyTorch module in its header comment.

    /usr/bin/python3 test_examples.py --fusec build/fusec --examples examples [--filter NAME]

The PyTorch code is taken from the spec's own header comment (its `import`, `class` and `def`
blocks, run as written), so the comment a reader copies is the code that is tested. Models are
in eval() mode with random weights (BatchNorm running stats randomized), saved as
safetensors.torch.save_file(model.state_dict()) would; sizes are reduced with --dim to small odd
values, batch 2.
"""

import collections
import os
import re
import sys

import torch
import torch.nn as nn  # noqa: F401 (the header code imports it too)
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conformance import Suite, header_code, randomize_all, randomize_bn  # noqa: E402

S = Suite(__doc__)
R = torch.randn
ALL_EXAMPLES = ["concat_conv", "concat_linear", "add_mul", "se", "cbam", "bam",
                "self_attention", "neck"]


def load_module_code(name):
    path = os.path.join(S.examples, name + ".fuse")
    ns = {}
    exec(compile(header_code(path), path + " (header comment)", "exec"), ns)
    return path, ns


def prep(model):
    """eval(), random BN statistics; parameters kept from the default init except norm layers
    and attention, whose default init (ones/zeros) would hide mistakes."""
    model.eval()
    for m in model.modules():
        if isinstance(m, (nn.LayerNorm, nn.MultiheadAttention)):
            randomize_all(m)
    randomize_bn(model)
    return model


def ex_case(name, example, entry, inputs, expected, state_dict=None, dims=None, prefix=None):
    path = os.path.join(S.examples, example + ".fuse")
    exp = expected if isinstance(expected, dict) else {None: expected}
    S.check(name, None, collections.OrderedDict(inputs), exp, entry=entry, weights=state_dict,
            dims=dims, prefix=prefix, spec_path=path)


def raiser(exc):
    """A case body that fails with exc (reported as a failing case by Suite.case)."""
    def body():
        raise exc
    return body


def missing(example):
    path = os.path.join(S.examples, example + ".fuse")
    if not os.path.exists(path):
        S.case(example, raiser(AssertionError("missing " + path)))
        return True
    return False


def guarded(example, fn):
    """Runs fn(ns) with the example's header code; a broken header is one failing case."""
    if missing(example):
        return
    try:
        _, ns = load_module_code(example)
    except Exception as e:  # the header comment does not run
        S.case(example + ":header", raiser(e))
        return
    try:
        fn(ns)
    except Exception as e:  # the header's classes do not fit the way this script uses them
        S.case(example + ":setup", raiser(e))


# ---------------------------------------------------------------------------------------------
def concat_conv(ns):
    torch.manual_seed(10)
    model = prep(ns["DimReduction"](12, 2))
    for label, N, H, W, Hl, Wl, dims in [
            ("derived", 2, 34, 50, 17, 25, {"N": 2, "C": 12, "H": 34, "W": 50}),
            ("odd_ratio", 2, 33, 41, 13, 19, {"N": 2, "C": 12, "H": 33, "W": 41, "Hl": 13, "Wl": 19})]:
        h, l_ = R(N, 12, H, W), R(N, 12, Hl, Wl)
        with torch.no_grad():
            y = ns["fuse_hl"](model, h, l_)
        ex_case("concat_conv:fuse_hl:" + label, "concat_conv", "fuse_hl", {"h": h, "l": l_}, y,
                model.state_dict(), dims)
    # only the conv_fuse keys (no unused-key warning)
    sd = {k: v for k, v in model.state_dict().items() if k.startswith("conv_fuse.")}
    h, l_ = R(2, 12, 18, 22), R(2, 12, 9, 11)
    with torch.no_grad():
        y = ns["fuse_hl"](model, h, l_)
    ex_case("concat_conv:fuse_hl:conv_keys_only", "concat_conv", "fuse_hl", {"h": h, "l": l_}, y,
            sd, {"N": 2, "C": 12, "H": 18, "W": 22})
    # the seed's channel count (128 + 128 -> 128) at a small map size
    big = prep(ns["DimReduction"](128, 2))
    h, l_ = R(1, 128, 24, 20), R(1, 128, 12, 10)
    with torch.no_grad():
        y = ns["fuse_hl"](big, h, l_)
    ex_case("concat_conv:fuse_hl:seed_channels", "concat_conv", "fuse_hl", {"h": h, "l": l_}, y,
            big.state_dict(), {"H": 24, "W": 20})
    merged = R(2, 24, 13, 17)
    with torch.no_grad():
        y = model(merged, use_conv=True)
    ex_case("concat_conv:dim_reduction", "concat_conv", "dim_reduction", {"merged": merged}, y,
            model.state_dict(), {"N": 2, "C": 12, "H": 13, "W": 17})


def concat_linear(ns):
    torch.manual_seed(11)
    model = prep(ns["DimReduction"](12, 2))
    h, l_ = R(2, 12, 13, 17), R(2, 12, 13, 17)
    with torch.no_grad():
        y = model(torch.cat([h, l_], dim=1), use_conv=False)
    ex_case("concat_linear:fuse_same", "concat_linear", "fuse_same", {"h": h, "l": l_}, y,
            model.state_dict(), {"N": 2, "C": 12, "H": 13, "W": 17})
    h, l_ = R(2, 12, 34, 26), R(2, 12, 17, 13)
    with torch.no_grad():
        up = F.interpolate(l_, size=(34, 26), mode="bilinear", align_corners=False)
        y = model(torch.cat([h, up], dim=1), use_conv=False)
    ex_case("concat_linear:fuse_hl", "concat_linear", "fuse_hl", {"h": h, "l": l_}, y,
            model.state_dict(), {"N": 2, "C": 12, "H": 34, "W": 26})


def add_mul(ns):
    torch.manual_seed(12)
    a, b = R(2, 5, 13, 17), R(2, 5, 13, 17)
    s, p = ns["AddMulFusion"]()(a, b)
    ex_case("add_mul:add_mul", "add_mul", "add_mul", {"a": a, "b": b},
            {"added": s, "multiplied": p}, None, {"N": 2, "C": 5, "H": 13, "W": 17})
    h, l_ = R(2, 5, 26, 34), R(2, 5, 13, 17)
    s, p = ns["UpAddFusion"]()(h, l_)
    ex_case("add_mul:fuse_hl", "add_mul", "fuse_hl", {"h": h, "l": l_},
            {"added": s, "multiplied": p}, None, {"N": 2, "C": 5, "H": 26, "W": 34})


def se(ns):
    torch.manual_seed(13)
    for label, C, r, H, W in [("r4", 32, 4, 13, 17), ("r16_default", 48, 16, 9, 7)]:
        model = prep(ns["SELayer"](C, r))
        x = R(2, C, H, W)
        with torch.no_grad():
            y = model(x)
        dims = {"N": 2, "C": C, "H": H, "W": W}
        if r != 16:
            dims["R"] = r
        ex_case("se:se_block:" + label, "se", None, {None: x}, y, model.state_dict(), dims)


def cbam(ns):
    torch.manual_seed(14)
    model = prep(ns["CBAM"](32, 4, 7))
    x = R(2, 32, 19, 23)
    with torch.no_grad():
        y = model(x)
    ex_case("cbam:cbam_block", "cbam", "cbam_block", {None: x}, y, model.state_dict(),
            {"N": 2, "C": 32, "R": 4, "H": 19, "W": 23})
    model = prep(ns["CBAM"](48, 16, 3))
    x = R(2, 48, 5, 6)
    with torch.no_grad():
        y = model(x)
    ex_case("cbam:cbam_block:k3", "cbam", "cbam_block", {None: x}, y, model.state_dict(),
            {"N": 2, "C": 48, "K": 3, "H": 5, "W": 6})
    sa = prep(ns["SpatialAttention"](7))
    x = R(2, 6, 11, 13)
    with torch.no_grad():
        y = x * sa(x)
    ex_case("cbam:spatial", "cbam", "spatial", {None: x}, y, sa.state_dict(),
            {"N": 2, "C": 6, "H": 11, "W": 13})


def bam(ns):
    torch.manual_seed(15)
    model = prep(ns["BAM"](32, 4))
    x = R(2, 32, 21, 27)
    with torch.no_grad():
        y = model(x)
    ex_case("bam:bam_block", "bam", None, {None: x}, y, model.state_dict(),
            {"N": 2, "C": 32, "R": 4, "H": 21, "W": 27})
    model = prep(ns["BAM"](32, 16))
    x = R(2, 32, 7, 5)
    with torch.no_grad():
        y = model(x)
    ex_case("bam:bam_block:r16", "bam", "bam_block", {None: x}, y, model.state_dict(),
            {"N": 2, "C": 32, "H": 7, "W": 5})


def self_attention(ns):
    torch.manual_seed(16)
    model = prep(ns["SelfAttention"](24, 64))
    x = R(2, 24, 5, 7)
    with torch.no_grad():
        y = model(x)
    ex_case("self_attention:attn_explicit", "self_attention", "attn_explicit", {None: x}, y,
            model.state_dict(), {"N": 2, "C": 24, "H": 5, "W": 7})
    for heads in (8, 4):
        model = prep(ns["MHSA"](24, heads))
        x = R(2, 24, 5, 7)
        with torch.no_grad():
            y = model(x)
        dims = {"N": 2, "C": 24, "H": 5, "W": 7}
        if heads != 8:
            dims["Heads"] = heads
        ex_case("self_attention:attn_mha:heads%d" % heads, "self_attention", "attn_mha", {None: x},
                y, model.state_dict(), dims)


def neck(ns):
    torch.manual_seed(17)
    model = prep(ns["Neck"](32, 4))
    f3, f4, f5 = R(2, 32, 34, 50), R(2, 32, 17, 25), R(2, 32, 8, 12)
    with torch.no_grad():
        p3, p4 = model(f3, f4, f5)
    dims = {"N": 2, "C": 32, "R": 4, "H": 34, "W": 50}
    ex_case("neck:neck", "neck", None, {"f3": f3, "f4": f4, "f5": f5}, {"p3": p3, "p4": p4},
            model.state_dict(), dims)

    # the neck inside a larger model: keys model.neck.*, read with --prefix
    class Detector(nn.Module):
        def __init__(self, neck_module):
            super().__init__()
            self.backbone = nn.Conv2d(3, 32, 3)
            self.neck = neck_module
            self.head = nn.Conv2d(32, 5, 1)

    parent = Detector(model)
    sd = collections.OrderedDict(("model." + k, v) for k, v in parent.state_dict().items())
    ex_case("neck:neck:prefix", "neck", "neck", {"f3": f3, "f4": f4, "f5": f5},
            {"p3": p3, "p4": p4}, sd, dims, prefix="model.neck")


for example, fn in [("concat_conv", concat_conv), ("concat_linear", concat_linear),
                    ("add_mul", add_mul), ("se", se), ("cbam", cbam), ("bam", bam),
                    ("self_attention", self_attention), ("neck", neck)]:
    guarded(example, fn)

# every graph of every example checks at its default (seed) sizes
def check_defaults(path, entry):
    import subprocess
    r = subprocess.run([S.fusec, "check", path, "--entry", entry], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    ok = r.returncode == 0
    print("%s  %-44s exit %d%s" % ("ok  " if ok else "FAIL", "check:%s:%s" % (
        os.path.basename(path), entry), r.returncode,
        "" if ok else "\n" + r.stderr.decode("utf-8", "replace")))
    return ok


for f in sorted(os.listdir(S.examples)):
    if f.endswith(".fuse"):
        p = os.path.join(S.examples, f)
        for g in re.findall(r"^graph\s+(\w+)", open(p).read(), re.M):
            S.case("check:%s:%s" % (f, g), lambda p=p, g=g: check_defaults(p, g))

# every example present is covered above
for f in sorted(os.listdir(S.examples)):
    if f.endswith(".fuse") and f[:-5] not in ALL_EXAMPLES:
        S.case("uncovered:" + f, raiser(
            AssertionError("examples/%s has no case in test_examples.py" % f)))

S.finish()
