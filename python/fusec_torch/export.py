"""export(): an nn.Module's forward, traced with torch.fx, written as a .fuse spec."""

import ast
import inspect
import io
import math
import operator
import re
import textwrap
import tokenize

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .errors import ExportError
from .trace import trace, target_name, where

# The .fuse language's keywords and source ops (docs/LANGUAGE.md §1 and §3).
FUSE_KEYWORDS = frozenset("fuse dim block graph return require for in true false int float "
                          "bool f32 f16 bf16".split())
FUSE_OPS = frozenset("upsample concat conv2d batchnorm2d batchnorm1d linear layernorm mha param "
                     "relu sigmoid tanh exp sqrt rsqrt silu abs neg gelu min max mean sum amax "
                     "amin softmax matmul permute view flatten transpose avgpool2d "
                     "maxpool2d".split())

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCOPE_SEGMENT = re.compile(r"^[A-Za-z0-9_]+$")


class ExportResult:
    """What export() wrote: the spec text and a summary of its graph.

    text: the .fuse spec; path: where it was written (or None); graph: the graph's name;
    inputs / outputs: [(name, shape)] in order; keys: the state_dict keys the spec reads."""

    def __init__(self, text, path, graph, inputs, outputs, keys):
        self.text = text
        self.path = path
        self.graph = graph
        self.inputs = inputs
        self.outputs = outputs
        self.keys = keys

    def __repr__(self):
        return "ExportResult(graph=%r, inputs=%r, outputs=%r, keys=%d)" % (
            self.graph, self.inputs, self.outputs, len(self.keys))


class Val:
    """A tensor value of the spec: `expr` (a name) computes a tensor of shape `eshape`, which
    broadcasts to PyTorch's shape `tshape` (they differ only after expand/expand_as, which
    the spec leaves to the broadcasting of the ops that consume the value)."""

    __slots__ = ("expr", "eshape", "tshape", "full")

    def __init__(self, expr, eshape, tshape=None):
        self.expr = expr
        self.eshape = tuple(eshape)
        self.tshape = tuple(eshape if tshape is None else tshape)
        self.full = None  # the materialized Val, once made


class Bad:
    """An element of a tuple result that the spec cannot produce (e.g. argmax indices)."""

    def __init__(self, what):
        self.what = what


def snake_case(name):
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    s = re.sub(r"[^a-z0-9_]", "_", s)
    if not s or s[0].isdigit():
        s = "g_" + s
    return s


def fmt_number(v):
    """A Python number as a .fuse literal (a float literal needs digits on both sides)."""
    if isinstance(v, bool):
        raise ValueError("a bool is not a number")
    if isinstance(v, int):
        return str(v)
    v = float(v)
    if not math.isfinite(v):
        raise ValueError("%r cannot be written in a .fuse spec" % v)
    r = repr(v)
    if "e" in r:
        mant, exp = r.split("e")
        r = "%se%d" % (mant, int(exp))
    return r


def fmt_list(xs):
    return "[" + ", ".join(str(int(x)) for x in xs) + "]"


def fmt_pair(p):
    """One value for an equal pair, else [a, b]."""
    if isinstance(p, (tuple, list)):
        if len(p) == 1:
            return str(int(p[0]))
        if len(p) == 2 and p[0] == p[1]:
            return str(int(p[0]))
        return fmt_list(p)
    return str(int(p))


def _pair(p):
    if isinstance(p, (tuple, list)):
        return (int(p[0]), int(p[0])) if len(p) == 1 else (int(p[0]), int(p[1]))
    return (int(p), int(p))


def broadcast(a, b):
    a, b = tuple(a), tuple(b)
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + a
    b = (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise ValueError("shapes %s and %s do not broadcast" % (list(a), list(b)))
    return tuple(out)


def _params(args, kwargs, names, defaults):
    """Binds a call's positional and keyword arguments to `names`; `defaults` maps the
    optional ones to their default values."""
    out = {}
    for i, a in enumerate(args):
        if i >= len(names):
            raise TypeError("too many arguments")
        out[names[i]] = a
    for k, v in kwargs.items():
        if k not in names:
            raise TypeError("unexpected argument %r" % k)
        out[k] = v
    for n in names:
        if n not in out:
            if n in defaults:
                out[n] = defaults[n]
            else:
                raise TypeError("missing argument %r" % n)
    return out


def _varargs(args, kwargs, key):
    """Sizes or dims passed either as *args or as one sequence (x.permute(0, 2, 1) or
    x.permute([0, 2, 1]) or x.permute(dims=...))."""
    if key in kwargs:
        v = kwargs[key]
    elif len(args) == 1 and isinstance(args[0], (tuple, list)):
        v = args[0]
    else:
        v = args
    return [int(d) for d in v] if isinstance(v, (tuple, list)) else [int(v)]


class _Emitter:
    def __init__(self, module, graph, input_names, comments):
        self.module = module
        self.graph = graph
        self.input_names = input_names
        self.comments = comments
        self.lines = []          # (statement, source)
        self.vals = {}           # fx node -> Val | list | None
        self.names = set(FUSE_KEYWORDS)
        self.keys = []
        self.state_keys = set(module.state_dict().keys())
        self.order = {n: i for i, n in enumerate(graph.nodes)}
        self.live = self._live_nodes()
        self.node = None
        self.modules = dict(module.named_modules())
        out = next(n for n in graph.nodes if n.op == "output")
        self.multi_output = isinstance(out.args[0], (tuple, list))

    # -- bookkeeping ---------------------------------------------------------------------
    def _live_nodes(self):
        out = [n for n in self.graph.nodes if n.op == "output"]
        live, stack = set(), list(out)
        while stack:
            n = stack.pop()
            if n in live:
                continue
            live.add(n)
            stack.extend(n.all_input_nodes)
        for n in self.graph.nodes:  # nodes created without a proxy: their first user's line
            if n.op == "get_attr" and not n.meta.get("source"):
                users = sorted(n.users, key=lambda u: self.order[u])
                if users:
                    n.meta["source"] = users[0].meta.get("source")
        return live

    def value_of(self, node):
        if "value" in node.meta:
            return node.meta["value"]
        if node.op == "get_attr":
            obj = self.module
            for part in node.target.split("."):
                obj = getattr(obj, part, None)
            return obj
        return None

    def fail(self, msg, node=None):
        node = node if node is not None else self.node
        if node is None:
            raise ExportError(msg)
        raise ExportError("node '%s' (%s) at %s: %s" % (node.name, describe(node, self.modules),
                                                         where(node.meta.get("source")), msg))

    def fresh(self, base):
        base = re.sub(r"[^A-Za-z0-9_]", "_", base) or "v"
        if base[0].isdigit():
            base = "v_" + base
        name = base
        while name in self.names:
            name += "_"
        self.names.add(name)
        return name

    def stmt(self, base, expr, shape, source=None):
        """Binds `expr` to a new name; returns its Val."""
        name = self.fresh(base)
        src = source if source is not None else (self.node.meta.get("source")
                                                 if self.node is not None else None)
        self.lines.append(("%s = %s" % (name, expr), src))
        return Val(name, shape)

    def scope(self, path):
        segs = path.split(".")
        if not path or not all(_SCOPE_SEGMENT.match(s) for s in segs):
            self.fail("the module path %r cannot be a .fuse scope (segments must be letters, "
                      "digits and _)" % path)
        return "@" + path

    def use_keys(self, path, slots):
        for s in slots:
            key = "%s.%s" % (path, s) if s else path
            if key not in self.state_keys:
                self.fail("the spec would read %r, which is not in the module's state_dict"
                          % key)
            if key not in self.keys:
                self.keys.append(key)

    # -- values --------------------------------------------------------------------------
    def val(self, a, what="an input"):
        """The Val (or Python number) for argument a of the current node."""
        if isinstance(a, fx.Node):
            v = self.vals.get(a)
            if isinstance(v, Val):
                return v
            if isinstance(v, list):
                self.fail("%s is a tuple (%s), not a tensor: index it first" % (what, a.name))
            self.fail("%s (%s) is not a tensor the spec can compute" % (what, a.name))
        if isinstance(a, bool) or not isinstance(a, (int, float)):
            self.fail("%s is %r, which is neither a traced tensor nor a number" % (what, a))
        return a

    def tensor(self, a, what="the input"):
        v = self.val(a, what)
        if not isinstance(v, Val):
            self.fail("%s must be a tensor, not the number %r" % (what, v))
        return v

    def full(self, v):
        """v with its PyTorch shape: materializes a pending expand. Nearest upsampling of a
        size-1 axis copies it exactly: one upsample when only the last two axes of a rank-4
        value grow, else one per axis, each axis viewed into an [outer, 1, 1, inner] map."""
        if v.eshape == v.tshape:
            return v
        if v.full is not None:
            return v.full
        shape = list(v.eshape)
        target = list(v.tshape)
        cur = v
        count = [0]

        def step(expr, shape_):
            count[0] += 1
            return self.stmt("%s_x%d" % (v.expr, count[0]), expr, shape_)

        if len(shape) < len(target):
            shape = [1] * (len(target) - len(shape)) + shape
            cur = step("view(%s, shape=%s)" % (cur.expr, fmt_list(shape)), shape)
        grow = [i for i in range(len(target)) if shape[i] != target[i]]
        if len(target) == 4 and set(grow) <= {2, 3}:
            cur = step("upsample(%s, size=%s, mode=nearest)" % (cur.expr, fmt_list(target[2:])),
                       target)
        else:
            for i in grow:
                p = int(math.prod(shape[:i]))
                q = int(math.prod(shape[i + 1:]))
                t = step("view(%s, shape=%s)" % (cur.expr, fmt_list([p, 1, 1, q])), (p, 1, 1, q))
                t = step("upsample(%s, size=%s, mode=nearest)" % (t.expr, fmt_list([target[i], q])),
                         (p, 1, target[i], q))
                shape[i] = target[i]
                cur = step("view(%s, shape=%s)" % (t.expr, fmt_list(shape)), shape)
        v.full = Val(cur.expr, target)
        return v.full

    def operand(self, v):
        if isinstance(v, Val):
            return v.expr
        return fmt_number(v)

    def tshape(self, node=None):
        node = node if node is not None else self.node
        value = node.meta.get("value")
        if isinstance(value, torch.Tensor):
            return tuple(value.shape)
        self.fail("the result is not a tensor")

    def rank(self, v, ranks, what="the input"):
        if len(v.tshape) not in ranks:
            self.fail("%s has shape %s; this needs rank %s" % (
                what, list(v.tshape), " or ".join(str(r) for r in ranks)))

    def inplace_check(self, a, node=None):
        """An in-place op on node a is exported as its out-of-place form, which is only right
        when nothing reads a, or a view of it, after it. Views share the example values'
        storage."""
        node = node if node is not None else self.node
        if not isinstance(a, fx.Node):
            return
        ptr = _storage_ptr(self.value_of(a))
        me = self.order[node]
        for u in self.graph.nodes:
            if u is node or self.order[u] <= me or u not in self.live:
                continue
            for n in u.all_input_nodes:
                if n is node:
                    continue
                if n is a or (ptr is not None and _storage_ptr(self.value_of(n)) == ptr):
                    reader = "forward's result" if u.op == "output" else u.name
                    self.fail("this in-place operation changes %s, which %s reads afterwards: "
                              "write it out of place" % (a.name, reader), node)

    # -- the walk ------------------------------------------------------------------------
    def run(self, graph_name, output_names):
        inputs = []
        outputs = []
        result_line = None
        for node in self.graph.nodes:  # in-place ops whose result is unused
            if node not in self.live and _is_inplace(node, self.modules) and node.args:
                self.inplace_check(node.args[0], node)
        for node in self.graph.nodes:
            self.node = node
            if node.op == "placeholder":
                if node.target not in self.input_names:
                    continue  # an argument fixed while tracing
                value = node.meta.get("value")
                if value.dtype != torch.float32:
                    self.fail("input %s is %s; fusec computes in float32: pass float32 example "
                              "inputs" % (node.target, value.dtype))
                name = self.fresh(self.input_names[node.target])
                v = Val(name, value.shape)
                self.vals[node] = v
                inputs.append((name, tuple(value.shape)))
                continue
            if node.op == "output":
                result_line = self.output(node, output_names, outputs)
                continue
            if node not in self.live:
                continue
            value = node.meta.get("value")
            if isinstance(value, torch.Tensor) and value.dtype != torch.float32 and \
                    node.op != "get_attr":
                self.fail("the result is %s; fusec computes in float32 only" % value.dtype)
            if node.op == "get_attr":
                self.vals[node] = self.get_attr(node)
            elif node.op == "call_module":
                mod = self.module.get_submodule(node.target)
                self.vals[node] = self.call_module(node, mod)
            elif node.op == "call_function":
                self.vals[node] = self.call_function(node)
            elif node.op == "call_method":
                self.vals[node] = self.call_method(node)
            else:
                self.fail("unexpected fx node kind %s" % node.op)
        self.node = None
        return self.render(graph_name, inputs, outputs, result_line), inputs, outputs

    def output(self, node, output_names, outputs):
        res = node.args[0]
        multi = isinstance(res, (tuple, list))
        items = list(res) if multi else [res]
        if not items:
            self.fail("forward returns nothing")
        exprs = []
        for i, it in enumerate(items):
            if not isinstance(it, fx.Node):
                self.fail("forward's result %d is %r, not a tensor" % (i, it))
            self.node = it
            v = self.full(self.tensor(it, "forward's result %d" % i))
            if len(v.tshape) == 0:
                self.fail("a 0-d result cannot be a graph output (a .fuse type has at least one "
                          "dim): reshape it to [1] in forward")
            exprs.append(v.expr)
            outputs.append((None, v.tshape))
        self.node = node
        if multi:
            names = list(output_names) if output_names else None
            if names is None or len(names) != len(items):
                names = ["out%d" % i for i in range(len(items))]
            taken = set()
            for i, n in enumerate(names):
                n = _fuse_ident(n)
                while n in taken:
                    n += "_"
                taken.add(n)
                outputs[i] = (n, outputs[i][1])
        else:
            outputs[0] = ("out", outputs[0][1])
        return "return " + ", ".join(exprs)

    def render(self, graph_name, inputs, outputs, result_line):
        sig = ", ".join("%s: f32%s" % (n, fmt_list(s)) for n, s in inputs)
        if not self.multi_output:
            res = "f32%s" % fmt_list(outputs[0][1])
        else:
            res = "(" + ", ".join("%s: f32%s" % (n, fmt_list(s)) for n, s in outputs) + ")"
        body = [(s, src) for s, src in self.lines] + [(result_line, None)]
        width = min(72, max(len(s) for s, _ in body))
        out = ["graph %s(%s) -> %s {" % (graph_name, sig, res)]
        last = None
        for s, src in body:
            line = "    " + s
            code = _code_only(src[2]) if src else ""
            if self.comments and code and src != last:
                line = "    " + s.ljust(width) + "  # " + code
            if src:
                last = src
            out.append(line.rstrip())
        out.append("}")
        return "\n".join(out) + "\n"

    # -- get_attr: bare parameters and buffers -------------------------------------------
    def get_attr(self, node):
        value = self.value_of(node)
        path = node.target
        if not isinstance(value, torch.Tensor):
            self.fail("attribute %s is a %s, not a tensor" % (path, type(value).__name__))
        if path not in self.state_keys:
            self.fail("tensor %s is not in the module's state_dict (a tensor constant or a "
                      "non-persistent buffer): register it as an nn.Parameter or a buffer"
                      % path)
        if not value.is_floating_point():
            self.fail("tensor %s is %s; fusec reads float32 weights only" % (path, value.dtype))
        if value.dim() == 0:
            self.fail("parameter %s is 0-d; a .fuse param() has at least one dim: give it "
                      "shape [1]" % path)
        self.use_keys(path, [""])
        return self.stmt(node.name, "param(shape=%s) %s" % (fmt_list(value.shape),
                                                            self.scope(path)), value.shape)

    # -- modules -------------------------------------------------------------------------
    def call_module(self, node, mod):
        path = node.target
        args, kwargs = node.args, node.kwargs
        t = type(mod)
        if getattr(mod, "inplace", False) is True and args:
            self.inplace_check(args[0])

        def one_input():
            if len(args) + len(kwargs) != 1:
                self.fail("expected one input")
            return self.tensor(args[0] if args else next(iter(kwargs.values())))

        if t in (nn.Identity,) or isinstance(mod, nn.modules.dropout._DropoutNd):
            return one_input() if isinstance(mod, nn.modules.dropout._DropoutNd) else \
                self.tensor(args[0])
        if t in _UNARY_MODULES:
            x = one_input()
            return self.unary(_UNARY_MODULES[t], x)
        if t is nn.GELU:
            return self.gelu(one_input(), mod.approximate)
        if t is nn.Softmax:
            if mod.dim is None:
                self.fail("nn.Softmax() without dim: give the axis")
            x = self.full(one_input())
            return self.stmt(node.name, "softmax(%s, axis=%d)" % (x.expr, mod.dim), x.tshape)
        if t is nn.Conv2d:
            return self.conv2d(node, mod, path, one_input())
        if t is nn.Linear:
            x = self.full(one_input())
            attrs = "out=%d" % mod.out_features
            if mod.bias is None:
                attrs += ", bias=false"
            self.use_keys(path, ["weight"] + (["bias"] if mod.bias is not None else []))
            return self.stmt(node.name, "linear(%s, %s) %s" % (x.expr, attrs, self.scope(path)),
                             self.tshape())
        if t in (nn.BatchNorm1d, nn.BatchNorm2d):
            return self.batchnorm(node, mod, path, one_input())
        if t is nn.LayerNorm:
            x = self.full(one_input())
            if len(mod.normalized_shape) != 1:
                self.fail("nn.LayerNorm over %d trailing dims: fusec's layernorm normalizes the "
                          "last axis only" % len(mod.normalized_shape))
            if not mod.elementwise_affine:
                self.fail("nn.LayerNorm(elementwise_affine=False) has no weight and bias: "
                          "fusec's layernorm reads both")
            self.use_keys(path, ["weight", "bias"])
            return self.stmt(node.name, "layernorm(%s, eps=%s) %s" % (
                x.expr, fmt_number(mod.eps), self.scope(path)), x.tshape)
        if t is nn.MultiheadAttention:
            return self.mha(node, mod, path)
        if t is nn.Flatten:
            return self.flatten(node, one_input(), mod.start_dim, mod.end_dim)
        if t in (nn.Upsample, nn.UpsamplingBilinear2d, nn.UpsamplingNearest2d):
            align = mod.align_corners
            return self.interpolate(node, one_input(), mod.size, mod.scale_factor, mod.mode,
                                    align, getattr(mod, "recompute_scale_factor", None), False)
        if t is nn.AdaptiveAvgPool2d:
            return self.adaptive_pool(node, one_input(), mod.output_size, "avg")
        if t is nn.AdaptiveMaxPool2d:
            if mod.return_indices:
                self.fail("nn.AdaptiveMaxPool2d(return_indices=True): indices are not supported")
            return self.adaptive_pool(node, one_input(), mod.output_size, "max")
        if t is nn.AvgPool2d:
            return self.pool(node, one_input(), "avg", mod.kernel_size, mod.stride, mod.padding,
                             1, mod.count_include_pad, mod.divisor_override)
        if t is nn.MaxPool2d:
            if mod.return_indices:
                self.fail("nn.MaxPool2d(return_indices=True): indices are not supported")
            return self.pool(node, one_input(), "max", mod.kernel_size, mod.stride, mod.padding,
                             mod.dilation, True, None)
        self.fail("module %s is not supported by fusec_torch" % _type_name(t))

    def conv2d(self, node, mod, path, x):
        x = self.full(x)
        self.rank(x, (4,))
        if mod.padding_mode != "zeros":
            self.fail("nn.Conv2d(padding_mode=%r): only zero padding is supported"
                      % mod.padding_mode)
        k = _pair(mod.kernel_size)
        d = _pair(mod.dilation)
        if isinstance(mod.padding, str):
            if mod.padding == "valid":
                p = (0, 0)
            else:  # same
                tot = [d[i] * (k[i] - 1) for i in range(2)]
                if any(t % 2 for t in tot):
                    self.fail("nn.Conv2d(padding='same') with an even kernel pads unevenly; "
                              "fusec pads both sides alike")
                p = (tot[0] // 2, tot[1] // 2)
        else:
            p = _pair(mod.padding)
        s = _pair(mod.stride)
        attrs = ["out=%d" % mod.out_channels, "kernel=%s" % fmt_pair(k)]
        if s != (1, 1):
            attrs.append("stride=%s" % fmt_pair(s))
        if p != (0, 0):
            attrs.append("padding=%s" % fmt_pair(p))
        if d != (1, 1):
            attrs.append("dilation=%s" % fmt_pair(d))
        if mod.groups != 1:
            attrs.append("groups=%d" % mod.groups)
        if mod.bias is None:
            attrs.append("bias=false")
        self.use_keys(path, ["weight"] + (["bias"] if mod.bias is not None else []))
        return self.stmt(node.name, "conv2d(%s, %s) %s" % (x.expr, ", ".join(attrs),
                                                          self.scope(path)), self.tshape())

    def batchnorm(self, node, mod, path, x):
        x = self.full(x)
        op = "batchnorm2d" if isinstance(mod, nn.BatchNorm2d) else "batchnorm1d"
        self.rank(x, (4,) if op == "batchnorm2d" else (2, 3))
        if not mod.affine:
            self.fail("%s(affine=False) has no weight and bias: fusec's %s reads both"
                      % (type(mod).__name__, op))
        if not mod.track_running_stats or mod.running_mean is None:
            self.fail("%s(track_running_stats=False) normalizes with batch statistics even in "
                      "eval(): fusec uses running statistics" % type(mod).__name__)
        self.use_keys(path, ["weight", "bias", "running_mean", "running_var"])
        return self.stmt(node.name, "%s(%s, eps=%s) %s" % (op, x.expr, fmt_number(mod.eps),
                                                         self.scope(path)), x.tshape)

    def mha(self, node, mod, path):
        try:
            p = _params(node.args, node.kwargs,
                        ["query", "key", "value", "key_padding_mask", "need_weights",
                         "attn_mask", "average_attn_weights"],
                        {"key_padding_mask": None, "need_weights": True, "attn_mask": None,
                         "average_attn_weights": True})
        except TypeError as e:
            self.fail("nn.MultiheadAttention call: %s" % e)
        if p["key_padding_mask"] is not None or p["attn_mask"] is not None:
            self.fail("nn.MultiheadAttention with a mask is not supported")
        if not mod._qkv_same_embed_dim:
            self.fail("nn.MultiheadAttention(kdim=, vdim=) different from embed_dim is not "
                      "supported")
        if mod.bias_k is not None or mod.add_zero_attn:
            self.fail("nn.MultiheadAttention(add_bias_kv=True or add_zero_attn=True) is not "
                      "supported")
        q, k, v = (self.full(self.tensor(p[n], n)) for n in ("query", "key", "value"))
        for t, n in ((q, "query"), (k, "key"), (v, "value")):
            self.rank(t, (2, 3), n)
        unbatched = len(q.tshape) == 2
        moved = {}

        def batch_first(t):
            if t.expr in moved:
                return moved[t.expr]
            if unbatched:
                r = self.stmt(t.expr + "_b", "view(%s, shape=%s)" % (
                    t.expr, fmt_list((1,) + t.tshape)), (1,) + t.tshape)
            elif not mod.batch_first:
                r = self.stmt(t.expr + "_b", "permute(%s, perm=[1, 0, 2])" % t.expr,
                              (t.tshape[1], t.tshape[0], t.tshape[2]))
            else:
                r = t
            moved[t.expr] = r
            return r

        qb, kb, vb = batch_first(q), batch_first(k), batch_first(v)
        bias = mod.in_proj_bias is not None
        attrs = "heads=%d" % mod.num_heads + ("" if bias else ", bias=false")
        shape = (qb.tshape[0], qb.tshape[1], mod.embed_dim)
        self.use_keys(path, ["in_proj_weight", "out_proj.weight"] +
                      (["in_proj_bias", "out_proj.bias"] if bias else []))
        o = self.stmt(node.name, "mha(%s, %s, %s, %s) %s" % (qb.expr, kb.expr, vb.expr, attrs,
                                                            self.scope(path)), shape)
        if unbatched:
            o = self.stmt(node.name, "view(%s, shape=%s)" % (o.expr, fmt_list(shape[1:])),
                          shape[1:])
        elif not mod.batch_first:
            o = self.stmt(node.name, "permute(%s, perm=[1, 0, 2])" % o.expr,
                          (shape[1], shape[0], shape[2]))
        return [o, Bad("the attention weights (element 1 of nn.MultiheadAttention's result)")]

    # -- shared op forms -----------------------------------------------------------------
    def unary(self, op, x):
        if not isinstance(x, Val):
            self.fail("%s of a number" % op)
        return Val(self.stmt(self.node.name, "%s(%s)" % (op, x.expr), x.eshape).expr,
                   x.eshape, self.tshape())

    def gelu(self, x, approximate):
        if approximate not in ("none", "tanh"):
            self.fail("gelu(approximate=%r) is not supported" % approximate)
        extra = "" if approximate == "none" else ", approximate=tanh"
        return Val(self.stmt(self.node.name, "gelu(%s%s)" % (x.expr, extra), x.eshape).expr,
                   x.eshape, self.tshape())

    def binary(self, op, a, b):
        if not isinstance(a, Val) and not isinstance(b, Val):
            self.fail("%s between two numbers" % op)
        ea = a.eshape if isinstance(a, Val) else ()
        eb = b.eshape if isinstance(b, Val) else ()
        try:
            eshape = broadcast(ea, eb)
        except ValueError as e:
            self.fail(str(e))
        rhs = self.operand(b)
        if op in ("-", "/") and isinstance(b, Val) is False and rhs.startswith("-"):
            rhs = "(" + rhs + ")"
        expr = "%s %s %s" % (self.operand(a), op, rhs)
        return Val(self.stmt(self.node.name, expr, eshape).expr, eshape, self.tshape())

    def reduce(self, node, op, x, dims, keepdim, shape=None):
        x = self.full(x)
        r = len(x.tshape)
        if dims is None or (isinstance(dims, (tuple, list)) and len(dims) == 0):
            axes = list(range(r))
        elif isinstance(dims, (tuple, list)):
            axes = [int(d) for d in dims]
        else:
            axes = [int(dims)]
        if r == 0:
            self.fail("a reduction of a 0-d tensor")
        attrs = "axes=%s" % fmt_list(axes) + (", keepdim=true" if keepdim else "")
        if shape is None:
            shape = self.tshape(node)
        return self.stmt(node.name, "%s(%s, %s)" % (op, x.expr, attrs), shape)

    def view(self, node, x):
        x = self.full(x)
        shape = self.tshape(node)
        if shape == x.tshape:
            return x
        if len(shape) == 0:
            self.fail("a view to a 0-d tensor is not supported")
        return self.stmt(node.name, "view(%s, shape=%s)" % (x.expr, fmt_list(shape)), shape)

    def flatten(self, node, x, start, end):
        x = self.full(x)
        r = len(x.tshape)
        if r == 0:
            self.fail("flatten of a 0-d tensor")
        s, e = start % r, end % r
        if s >= e:
            return x
        attrs = ["start=%d" % start]
        if end != -1:
            attrs.append("end=%d" % end)
        return self.stmt(node.name, "flatten(%s, %s)" % (x.expr, ", ".join(attrs)),
                         self.tshape(node))

    def interpolate(self, node, x, size, scale_factor, mode, align_corners, recompute, antialias):
        x = self.full(x)
        self.rank(x, (4,))
        if mode not in ("nearest", "bilinear"):
            self.fail("interpolate(mode=%r): fusec upsamples with nearest or bilinear" % mode)
        if antialias:
            self.fail("interpolate(antialias=True) is not supported")
        out = self.tshape(node)
        if size is not None or recompute:
            attrs = "size=%s" % fmt_list(out[2:])
        else:
            sf = scale_factor
            if isinstance(sf, (tuple, list)):
                sf = list(sf) if len(sf) == 2 else [sf[0], sf[0]]
                if sf[0] == sf[1]:
                    sf = sf[0]
            if isinstance(sf, list):
                attrs = "scale=[%s, %s]" % (fmt_number(sf[0]), fmt_number(sf[1]))
            else:
                attrs = "scale=%s" % fmt_number(sf)
        attrs += ", mode=%s" % mode
        if mode == "bilinear":
            attrs += ", align_corners=%s" % ("true" if align_corners else "false")
        elif align_corners is not None:
            self.fail("align_corners with mode='nearest'")
        return self.stmt(node.name, "upsample(%s, %s)" % (x.expr, attrs), out)

    def adaptive_pool(self, node, x, output_size, kind, tuple_result=False):
        x = self.full(x)
        self.rank(x, (3, 4))
        r = len(x.tshape)
        h, w = x.tshape[-2:]
        out = tuple(node.meta["value"][0].shape) if tuple_result else self.tshape(node)
        oh, ow = out[-2:]
        if (oh, ow) == (h, w):
            return x
        if (oh, ow) == (1, 1):
            op = "mean" if kind == "avg" else "amax"
            return self.stmt(node.name, "%s(%s, axes=[%d, %d], keepdim=true)" % (
                op, x.expr, r - 2, r - 1), out)
        if h % oh == 0 and w % ow == 0:
            self.rank(x, (4,))
            op = "avgpool2d" if kind == "avg" else "maxpool2d"
            return self.stmt(node.name, "%s(%s, kernel=%s)" % (
                op, x.expr, fmt_pair((h // oh, w // ow))), out)
        self.fail("adaptive pooling from %dx%d to %dx%d: supported when the input size is a "
                  "multiple of the output size" % (h, w, oh, ow))

    def pool(self, node, x, kind, kernel, stride, padding, dilation, count_include_pad,
             divisor_override, tuple_result=False):
        x = self.full(x)
        self.rank(x, (4,))
        k = _pair(kernel)
        s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
            else _pair(stride)
        p = _pair(padding)
        if _pair(dilation) != (1, 1):
            self.fail("pooling with dilation is not supported")
        if divisor_override is not None:
            self.fail("avg_pool2d(divisor_override=) is not supported")
        if not count_include_pad and p != (0, 0):
            self.fail("avg_pool2d(count_include_pad=False) with padding: fusec counts the padding")
        out = tuple(node.meta["value"][0].shape) if tuple_result else self.tshape(node)
        want = tuple((x.tshape[2 + i] + 2 * p[i] - k[i]) // s[i] + 1 for i in range(2))
        if out[2:] != want:
            self.fail("pooling to %s (ceil_mode?): fusec's pools round the output size down"
                      % list(out[2:]))
        attrs = ["kernel=%s" % fmt_pair(k)]
        if s != k:
            attrs.append("stride=%s" % fmt_pair(s))
        if p != (0, 0):
            attrs.append("padding=%s" % fmt_pair(p))
        op = "avgpool2d" if kind == "avg" else "maxpool2d"
        return self.stmt(node.name, "%s(%s, %s)" % (op, x.expr, ", ".join(attrs)), out)

    def concat(self, node, tensors, dim):
        if not isinstance(tensors, (tuple, list)) or not tensors:
            self.fail("torch.cat of %r" % (tensors,))
        vs = [self.full(self.tensor(t, "a concatenated tensor")) for t in tensors]
        if len(vs) == 1:
            return vs[0]
        return self.stmt(node.name, "concat(%s, axis=%d)" % (", ".join(v.expr for v in vs),
                                                             int(dim)), self.tshape(node))

    def matmul(self, node, a, b):
        a, b = self.full(self.tensor(a)), self.full(self.tensor(b))
        if len(a.tshape) < 2 or len(b.tshape) < 2:
            self.fail("matmul with a 1-d operand is not supported (fusec's matmul takes "
                      "matrices)")
        return self.stmt(node.name, "matmul(%s, %s)" % (a.expr, b.expr), self.tshape(node))

    def permute(self, node, x, perm):
        x = self.full(x)
        r = len(x.tshape)
        if [d % r for d in perm] == list(range(r)):
            return x
        return self.stmt(node.name, "permute(%s, perm=%s)" % (x.expr, fmt_list(perm)),
                         self.tshape(node))

    def transpose(self, node, x, a, b):
        x = self.full(x)
        r = len(x.tshape)
        if r == 0 or a % r == b % r:
            return x
        return self.stmt(node.name, "transpose(%s, dims=[%d, %d])" % (x.expr, a, b),
                         self.tshape(node))

    def softmax(self, node, x, dim, dtype=None):
        if dim is None:
            self.fail("softmax without dim: give the axis")
        if dtype is not None and dtype != torch.float32:
            self.fail("softmax(dtype=%s) is not supported" % dtype)
        x = self.full(x)
        return self.stmt(node.name, "softmax(%s, axis=%d)" % (x.expr, int(dim)), x.tshape)

    def expand(self, node, x):
        shape = self.tshape(node)
        try:
            if broadcast(x.eshape, shape) != shape:
                raise ValueError
        except ValueError:
            self.fail("cannot expand %s to %s" % (list(x.eshape), list(shape)))
        return Val(x.expr, x.eshape, shape)

    def pow(self, node, x, e):
        if not isinstance(x, Val) or isinstance(e, Val):
            self.fail("only a tensor to a constant power is supported")
        if e == 1:
            return Val(x.expr, x.eshape, self.tshape())
        if e == 2:
            return Val(self.stmt(node.name, "%s * %s" % (x.expr, x.expr), x.eshape).expr,
                       x.eshape, self.tshape())
        if e == 0.5:
            return self.unary("sqrt", x)
        if e == -0.5:
            return self.unary("rsqrt", x)
        if e == -1:
            return Val(self.stmt(node.name, "1 / %s" % x.expr, x.eshape).expr, x.eshape,
                       self.tshape())
        self.fail("x ** %r: supported exponents are 2, 1, 0.5, -0.5 and -1" % (e,))

    def maxmin(self, node, args, kwargs, op):
        """torch.max/min and Tensor.max/min: a full reduction, a reduction over dim (a tuple
        of values and indices) or the elementwise maximum of two tensors."""
        x = self.tensor(args[0])
        rest = list(args[1:])
        other = kwargs.get("other")
        dim = kwargs.get("dim")
        keepdim = kwargs.get("keepdim", False)
        if rest:
            if isinstance(rest[0], fx.Node):
                other = rest[0]
            else:
                dim = rest[0]
                if len(rest) > 1:
                    keepdim = rest[1]
        red = "amax" if op == "max" else "amin"
        if other is not None:
            return self.minmax2(node, op, x, self.tensor(other))
        if dim is None:
            return self.reduce(node, red, x, None, False)
        r = self.reduce(node, red, x, dim, keepdim, tuple(node.meta["value"][0].shape))
        return [r, Bad("the indices of torch.%s(x, dim)" % op)]

    def minmax2(self, node, op, a, b):
        try:
            eshape = broadcast(a.eshape, b.eshape)
        except ValueError as e:
            self.fail(str(e))
        return Val(self.stmt(node.name, "%s(%s, %s)" % (op, a.expr, b.expr), eshape).expr,
                   eshape, self.tshape(node))

    def getitem(self, node, obj, idx):
        v = self.vals.get(obj) if isinstance(obj, fx.Node) else None
        if isinstance(v, list):
            if not isinstance(idx, int):
                self.fail("only integer indices of a tuple result are supported")
            try:
                e = v[idx]
            except IndexError:
                self.fail("index %d out of range" % idx)
            if isinstance(e, Bad):
                self.fail("%s cannot be computed by fusec" % e.what)
            return e
        if isinstance(v, Val):
            self.fail("indexing or slicing a tensor (%s[%s]) is not supported" % (
                obj.name, _fmt_index(idx)))
        self.fail("indexing %s is not supported" % (obj.name if isinstance(obj, fx.Node)
                                                    else repr(obj)))

    # -- functions and methods -----------------------------------------------------------
    def call_function(self, node):
        fn = node.target
        args, kwargs = node.args, node.kwargs
        h = _FUNCTIONS.get(fn)
        if h is None:
            self.fail("function %s is not supported by fusec_torch" % target_name(fn))
        if kwargs.get("inplace") is True and args:
            self.inplace_check(args[0])
        try:
            return h(self, node, args, kwargs)
        except TypeError as e:
            self.fail("%s: %s" % (target_name(fn), e))

    def call_method(self, node):
        name = node.target
        args, kwargs = node.args, node.kwargs
        base = name
        if name.endswith("_") and not name.endswith("__") and name[:-1] in _INPLACE_OK:
            base = name[:-1]
            self.inplace_check(args[0])
        h = _METHODS.get(base)
        if h is None:
            self.fail("method Tensor.%s is not supported by fusec_torch" % name)
        try:
            return h(self, node, args, kwargs)
        except TypeError as e:
            self.fail("Tensor.%s: %s" % (name, e))


def _storage_ptr(v):
    if not isinstance(v, torch.Tensor) or v.numel() == 0:
        return None
    try:
        return v.untyped_storage().data_ptr()
    except AttributeError:
        return v.storage().data_ptr()


def _is_inplace(node, modules):
    if node.op == "call_method":
        return node.target.endswith("_") and not node.target.endswith("__")
    if node.op == "call_function":
        return node.kwargs.get("inplace") is True or node.target in (torch.relu_, F.relu_)
    if node.op == "call_module":
        return getattr(modules.get(node.target), "inplace", False) is True
    return False


def _code_only(line):
    """A line of Python without its trailing comment."""
    cut = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line).readline):
            if tok.type == tokenize.COMMENT:
                cut = tok.start[1]
                break
    except (tokenize.TokenError, SyntaxError):
        pass
    return (line if cut is None else line[:cut]).rstrip()


def _fmt_index(idx):
    if isinstance(idx, tuple):
        return ", ".join(_fmt_index(i) for i in idx)
    if isinstance(idx, slice):
        return "%s:%s%s" % ("" if idx.start is None else idx.start,
                            "" if idx.stop is None else idx.stop,
                            "" if idx.step is None else ":%s" % idx.step)
    if idx is Ellipsis:
        return "..."
    if isinstance(idx, fx.Node):
        return idx.name
    return repr(idx)


def _type_name(t):
    mod = t.__module__
    if mod.startswith("torch.nn.modules"):
        return "nn." + t.__name__
    return "%s.%s" % (mod, t.__qualname__)


def describe(node, modules):
    if node.op == "call_module":
        m = modules.get(node.target)
        return "call_module %s: %s" % (node.target, _type_name(type(m)) if m is not None else "?")
    if node.op == "call_function":
        return "call_function %s" % target_name(node.target)
    if node.op == "call_method":
        return "call_method Tensor.%s" % node.target
    if node.op == "get_attr":
        return "get_attr %s" % node.target
    return node.op


def _fuse_ident(name):
    name = re.sub(r"[^A-Za-z0-9_]", "_", str(name)) or "v"
    if name[0].isdigit():
        name = "v_" + name
    if name in FUSE_KEYWORDS:
        name += "_"
    return name


_UNARY_MODULES = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.SiLU: "silu"}


# handlers: (emitter, node, args, kwargs) -> Val | list
def _h_unary(op):
    def h(e, node, args, kwargs):
        p = _params(args, kwargs, ["input", "inplace"], {"inplace": False})
        return e.unary(op, e.tensor(p["input"]))
    return h


def _h_binary(op):
    def h(e, node, args, kwargs):
        names = ["input", "other", "alpha"] if op in "+-" else ["input", "other", "rounding_mode"]
        p = _params(args, kwargs, names, {"alpha": 1, "rounding_mode": None})
        a, b = e.val(p["input"]), e.val(p["other"])
        if op in "+-" and p["alpha"] != 1:
            if isinstance(b, Val):
                b = e.binary("*", p["alpha"], b)
            else:
                b = b * p["alpha"]
        if op == "/" and p["rounding_mode"] is not None:
            e.fail("div(rounding_mode=%r) is not supported" % p["rounding_mode"])
        return e.binary(op, a, b)
    return h


def _h_operator(op):
    def h(e, node, args, kwargs):
        return e.binary(op, e.val(args[0]), e.val(args[1]))
    return h


def _h_neg(e, node, args, kwargs):
    return e.unary("neg", e.tensor(args[0]))


def _h_identity(e, node, args, kwargs):
    return e.tensor(args[0])


def _h_to_float(e, node, args, kwargs):
    x = e.tensor(args[0])
    return x


def _h_to(e, node, args, kwargs):
    for a in list(args[1:]) + list(kwargs.values()):
        if isinstance(a, torch.dtype) and a != torch.float32:
            e.fail("conversion to %s: fusec computes in float32" % a)
    return e.tensor(args[0])


def _h_dropout(e, node, args, kwargs):
    p = _params(args, kwargs, ["input", "p", "training", "inplace"],
                {"p": 0.5, "training": True, "inplace": False})
    if p["training"]:
        e.fail("dropout with training=True is random: pass training=self.training and export "
               "in eval()")
    return e.tensor(p["input"])


def _h_torch_dropout(e, node, args, kwargs):
    p = _params(args, kwargs, ["input", "p", "train"], {})
    if p["train"]:
        e.fail("dropout with train=True is random")
    return e.tensor(p["input"])


def _h_gelu(e, node, args, kwargs):
    p = _params(args, kwargs, ["input", "approximate"], {"approximate": "none"})
    return e.gelu(e.tensor(p["input"]), p["approximate"])


def _h_softmax(e, node, args, kwargs):
    p = _params(args, kwargs, ["input", "dim", "_stacklevel", "dtype"],
                {"dim": None, "_stacklevel": 3, "dtype": None})
    return e.softmax(node, e.tensor(p["input"]), p["dim"], p["dtype"])


def _h_tensor_softmax(e, node, args, kwargs):
    p = _params(args, kwargs, ["input", "dim", "dtype"], {"dtype": None})
    return e.softmax(node, e.tensor(p["input"]), p["dim"], p["dtype"])


def _h_reduce(op):
    def h(e, node, args, kwargs):
        p = _params(args, kwargs, ["input", "dim", "keepdim", "dtype"],
                    {"dim": None, "keepdim": False, "dtype": None})
        if p["dtype"] is not None and p["dtype"] != torch.float32:
            e.fail("%s(dtype=%s) is not supported" % (op, p["dtype"]))
        return e.reduce(node, op, e.tensor(p["input"]), p["dim"], p["keepdim"])
    return h


def _h_amax(op):
    def h(e, node, args, kwargs):
        p = _params(args, kwargs, ["input", "dim", "keepdim"], {"dim": (), "keepdim": False})
        return e.reduce(node, op, e.tensor(p["input"]), p["dim"], p["keepdim"])
    return h


def _h_max(e, node, args, kwargs):
    return e.maxmin(node, args, kwargs, "max")


def _h_min(e, node, args, kwargs):
    return e.maxmin(node, args, kwargs, "min")


def _h_maximum(op):
    def h(e, node, args, kwargs):
        p = _params(args, kwargs, ["input", "other"], {})
        return e.minmax2(node, op, e.tensor(p["input"]), e.tensor(p["other"]))
    return h


def _h_cat(e, node, args, kwargs):
    p = _params(args, kwargs, ["tensors", "dim"], {"dim": 0})
    return e.concat(node, p["tensors"], p["dim"])


def _h_matmul(e, node, args, kwargs):
    p = _params(args, kwargs, ["input", "other"], {})
    return e.matmul(node, p["input"], p["other"])


def _h_view(e, node, args, kwargs):
    return e.view(node, e.tensor(args[0]))


def _h_view_as(e, node, args, kwargs):
    e.tensor(args[1] if len(args) > 1 else kwargs["other"], "the shape source")
    return e.view(node, e.tensor(args[0]))


def _h_squeeze(e, node, args, kwargs):
    return e.view(node, e.tensor(args[0]))


def _h_flatten(e, node, args, kwargs):
    p = _params(args, kwargs, ["input", "start_dim", "end_dim"], {"start_dim": 0, "end_dim": -1})
    return e.flatten(node, e.tensor(p["input"]), int(p["start_dim"]), int(p["end_dim"]))


def _h_permute(e, node, args, kwargs):
    x = e.tensor(args[0])
    return e.permute(node, x, _varargs(args[1:], kwargs, "dims"))


def _h_transpose(e, node, args, kwargs):
    p = _params(args, kwargs, ["input", "dim0", "dim1"], {})
    return e.transpose(node, e.tensor(p["input"]), int(p["dim0"]), int(p["dim1"]))


def _h_expand(e, node, args, kwargs):
    return e.expand(node, e.tensor(args[0]))


def _h_expand_as(e, node, args, kwargs):
    e.tensor(args[1] if len(args) > 1 else kwargs["other"], "the shape source")
    return e.expand(node, e.tensor(args[0]))


def _h_pow(e, node, args, kwargs):
    p = _params(args, kwargs, ["input", "exponent"], {})
    return e.pow(node, e.val(p["input"]), p["exponent"])


def _h_interpolate(e, node, args, kwargs):
    p = _params(args, kwargs, ["input", "size", "scale_factor", "mode", "align_corners",
                               "recompute_scale_factor", "antialias"],
                {"size": None, "scale_factor": None, "mode": "nearest", "align_corners": None,
                 "recompute_scale_factor": None, "antialias": False})
    return e.interpolate(node, e.tensor(p["input"]), p["size"], p["scale_factor"], p["mode"],
                         p["align_corners"], p["recompute_scale_factor"], p["antialias"])


def _h_adaptive(kind, indices=False):
    """indices: whether the function returns (values, indices); None: as return_indices says
    (the public F.adaptive_max_pool2d dispatches on it)."""
    def h(e, node, args, kwargs):
        p = _params(args, kwargs, ["input", "output_size", "return_indices"],
                    {"return_indices": False})
        indices_ = bool(p["return_indices"]) if indices is None else indices
        if p["return_indices"] and not indices_:
            e.fail("adaptive_max_pool2d(return_indices=True): indices are not supported")
        v = e.adaptive_pool(node, e.tensor(p["input"]), p["output_size"], kind, indices_)
        return [v, Bad("the indices of adaptive_max_pool2d")] if indices_ else v
    return h


def _h_avg_pool2d(e, node, args, kwargs):
    p = _params(args, kwargs, ["input", "kernel_size", "stride", "padding", "ceil_mode",
                               "count_include_pad", "divisor_override"],
                {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True,
                 "divisor_override": None})
    return e.pool(node, e.tensor(p["input"]), "avg", p["kernel_size"], p["stride"],
                  p["padding"], 1, p["count_include_pad"], p["divisor_override"])


def _h_max_pool2d(indices):
    def h(e, node, args, kwargs):
        p = _params(args, kwargs, ["input", "kernel_size", "stride", "padding", "dilation",
                                   "ceil_mode", "return_indices"],
                    {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                     "return_indices": False})
        tup = bool(p["return_indices"]) if indices is None else indices
        v = e.pool(node, e.tensor(p["input"]), "max", p["kernel_size"], p["stride"],
                   p["padding"], p["dilation"], True, None, tup)
        return [v, Bad("the indices of max_pool2d")] if tup else v
    return h


def _h_getitem(e, node, args, kwargs):
    return e.getitem(node, args[0], args[1])


def _h_getattr(e, node, args, kwargs):
    obj, attr = args[0], args[1]
    v = e.vals.get(obj) if isinstance(obj, fx.Node) else None
    if isinstance(v, list) and attr in ("values", "indices"):
        return e.getitem(node, obj, 0 if attr == "values" else 1)
    e.fail("attribute .%s is not supported" % attr)


_FUNCTIONS = {
    operator.add: _h_operator("+"), operator.sub: _h_operator("-"),
    operator.mul: _h_operator("*"), operator.truediv: _h_operator("/"),
    operator.neg: _h_neg, operator.pos: _h_identity,
    operator.matmul: _h_matmul, operator.pow: _h_pow, operator.getitem: _h_getitem,
    getattr: _h_getattr,
    torch.add: _h_binary("+"), torch.sub: _h_binary("-"), torch.subtract: _h_binary("-"),
    torch.mul: _h_binary("*"), torch.multiply: _h_binary("*"), torch.div: _h_binary("/"),
    torch.divide: _h_binary("/"), torch.true_divide: _h_binary("/"),
    torch.pow: _h_pow, torch.neg: _h_neg, torch.negative: _h_neg,
    torch.matmul: _h_matmul, torch.bmm: _h_matmul,
    torch.relu: _h_unary("relu"), torch.relu_: _h_unary("relu"), F.relu: _h_unary("relu"),
    F.relu_: _h_unary("relu"),
    torch.sigmoid: _h_unary("sigmoid"), F.sigmoid: _h_unary("sigmoid"),
    torch.tanh: _h_unary("tanh"), F.tanh: _h_unary("tanh"),
    torch.exp: _h_unary("exp"), torch.sqrt: _h_unary("sqrt"), torch.rsqrt: _h_unary("rsqrt"),
    torch.abs: _h_unary("abs"), F.silu: _h_unary("silu"), F.gelu: _h_gelu,
    torch.softmax: _h_softmax, F.softmax: _h_softmax,
    torch.mean: _h_reduce("mean"), torch.sum: _h_reduce("sum"),
    torch.amax: _h_amax("amax"), torch.amin: _h_amax("amin"),
    torch.max: _h_max, torch.min: _h_min,
    torch.maximum: _h_maximum("max"), torch.minimum: _h_maximum("min"),
    torch.cat: _h_cat, torch.concat: _h_cat,
    torch.permute: _h_permute, torch.reshape: _h_view, torch.flatten: _h_flatten,
    torch.transpose: _h_transpose, torch.swapaxes: _h_transpose,
    torch.squeeze: _h_squeeze, torch.unsqueeze: _h_squeeze,
    F.interpolate: _h_interpolate,
    F.adaptive_avg_pool2d: _h_adaptive("avg"),
    F._adaptive_max_pool2d: _h_adaptive("max"),
    F.adaptive_max_pool2d_with_indices: _h_adaptive("max", indices=True),
    F.adaptive_max_pool2d: _h_adaptive("max", indices=None),
    F.avg_pool2d: _h_avg_pool2d,
    F._max_pool2d: _h_max_pool2d(False), F.max_pool2d_with_indices: _h_max_pool2d(True),
    F.max_pool2d: _h_max_pool2d(None),
    F.dropout: _h_dropout, F.dropout2d: _h_dropout, F.alpha_dropout: _h_dropout,
    torch.dropout: _h_torch_dropout,
}
if hasattr(F, "dropout1d"):
    _FUNCTIONS[F.dropout1d] = _h_dropout

_METHODS = {
    "add": _h_binary("+"), "sub": _h_binary("-"), "subtract": _h_binary("-"),
    "mul": _h_binary("*"), "multiply": _h_binary("*"), "div": _h_binary("/"),
    "divide": _h_binary("/"), "true_divide": _h_binary("/"),
    "pow": _h_pow, "neg": _h_neg, "negative": _h_neg,
    "matmul": _h_matmul, "bmm": _h_matmul,
    "relu": _h_unary("relu"), "sigmoid": _h_unary("sigmoid"), "tanh": _h_unary("tanh"),
    "exp": _h_unary("exp"), "sqrt": _h_unary("sqrt"), "rsqrt": _h_unary("rsqrt"),
    "abs": _h_unary("abs"),
    "softmax": _h_tensor_softmax,
    "mean": _h_reduce("mean"), "sum": _h_reduce("sum"),
    "amax": _h_amax("amax"), "amin": _h_amax("amin"),
    "max": _h_max, "min": _h_min, "maximum": _h_maximum("max"), "minimum": _h_maximum("min"),
    "permute": _h_permute, "view": _h_view, "reshape": _h_view, "view_as": _h_view_as,
    "reshape_as": _h_view_as, "flatten": _h_flatten, "transpose": _h_transpose,
    "swapaxes": _h_transpose, "squeeze": _h_squeeze, "unsqueeze": _h_squeeze,
    "expand": _h_expand, "expand_as": _h_expand_as,
    "contiguous": _h_identity, "clone": _h_identity, "detach": _h_identity,
    "float": _h_to_float, "to": _h_to,
}

# in-place methods exported as their out-of-place form (when nothing reads the input after)
_INPLACE_OK = frozenset(["add", "sub", "mul", "div", "relu", "sigmoid", "tanh", "exp", "sqrt",
                         "rsqrt", "abs", "neg", "pow", "squeeze", "unsqueeze", "transpose"])


def _return_names(module):
    """The names in `return a, b` of forward's source, when every return statement of it
    returns the same plain names; else None."""
    try:
        src = textwrap.dedent(inspect.getsource(type(module).forward))
        tree = ast.parse(src)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    names = None
    for n in ast.walk(tree):
        if isinstance(n, ast.Return) and n.value is not None:
            if isinstance(n.value, (ast.Tuple, ast.List)) and \
                    all(isinstance(el, ast.Name) for el in n.value.elts):
                this = [el.id for el in n.value.elts]
            else:
                return None
            if names is not None and names != this:
                return None
            names = this
    return names


def export(module, example_inputs, path=None, *, concrete_args=None, name=None,
           output_names=None, comments=True):
    """Traces `module` with torch.fx on `example_inputs` and writes a .fuse spec to `path`.

    example_inputs: a tensor, a tuple/list (forward's leading positional arguments) or a dict
    (by argument name). Tensor arguments become the graph's inputs, with forward's names and in
    its order; any other value fixes that argument while tracing. Arguments of forward given
    neither here nor in `concrete_args` ({name: value}) are fixed to their defaults.

    Every size is taken from the example inputs: the spec is for those shapes. The module is
    traced in eval() mode (its mode is restored afterwards). Scopes are the module paths, so the
    spec reads exactly the keys of module.state_dict() (write them with save_weights()).

    name: the graph's name (default: the module's class name in snake_case);
    output_names: names of the outputs when forward returns a tuple (default: the names in
    forward's `return a, b`, else out0, out1, ...); comments: append the PyTorch source line
    to the statements it produced.

    Returns an ExportResult; raises ExportError for anything the spec cannot express, naming
    the fx node and the source line."""
    if not isinstance(module, nn.Module):
        raise ExportError("export() takes an nn.Module, not %s" % type(module).__name__)
    sig = inspect.signature(module.forward)
    params = list(sig.parameters.values())
    for p in params:
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise ExportError("%s.forward takes %s%s: give it named arguments" % (
                type(module).__name__, "*" if p.kind == p.VAR_POSITIONAL else "**", p.name))
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    given = {}
    if isinstance(example_inputs, dict):
        for k, v in example_inputs.items():
            if k not in sig.parameters:
                raise ExportError("%s.forward has no argument %r" % (type(module).__name__, k))
            given[k] = v
    elif isinstance(example_inputs, (tuple, list)):
        positional = [p for p in params if p.kind != inspect.Parameter.KEYWORD_ONLY]
        if len(example_inputs) > len(positional):
            raise ExportError("%s.forward takes %d arguments, %d example inputs given" % (
                type(module).__name__, len(positional), len(example_inputs)))
        for p, v in zip(positional, example_inputs):
            given[p.name] = v
    else:
        raise ExportError("example_inputs must be a tensor, a tuple or a dict")
    fixed = dict(concrete_args or {})
    inputs = {}
    for p in params:
        if p.name in fixed:
            continue
        if p.name in given:
            v = given[p.name]
            if isinstance(v, torch.Tensor):
                inputs[p.name] = v.detach()
            else:
                fixed[p.name] = v
        elif p.default is not inspect.Parameter.empty:
            fixed[p.name] = p.default
        else:
            raise ExportError("%s.forward's argument %r has no example input and no default"
                              % (type(module).__name__, p.name))
    if not inputs:
        raise ExportError("%s.forward has no tensor argument among the example inputs"
                          % type(module).__name__)
    input_names = {}
    taken = set()
    for n in inputs:
        fn = _fuse_ident(n)
        while fn in taken:
            fn += "_"
        taken.add(fn)
        input_names[n] = fn

    gname = name or snake_case(type(module).__name__)
    if not _IDENT.match(gname) or gname in FUSE_KEYWORDS or gname in FUSE_OPS:
        if name is not None:
            raise ExportError("graph name %r is not usable (an identifier that is neither a "
                              "keyword nor an op name)" % name)
        gname = gname + "_graph"

    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        graph, _tracer = trace(module, inputs, fixed)
        em = _Emitter(module, graph, input_names, comments)
        names = output_names if output_names is not None else _return_names(module)
        body, ins, outs = em.run(gname, names)
    finally:
        for m, t in modes.items():
            m.train(t)

    arglist = ", ".join("%s %s" % (n, list(s)) for n, s in ins)
    header = ["# %s, exported with fusec_torch.export" % type(module).__name__,
              "# inputs: %s" % arglist]
    if fixed:
        header.append("# fixed arguments: %s" % ", ".join(
            "%s=%r" % (k, v) for k, v in fixed.items()))
    header.append("# weights: the module's state_dict (fusec_torch.save_weights), %d keys read"
                  % len(em.keys))
    text = "\n".join(header) + "\n\nfuse 1\n\n" + body
    if path is not None:
        with open(path, "w") as f:
            f.write(text)
    return ExportResult(text, path, gname, ins, outs, list(em.keys))
