"""A torch.fx tracer whose proxies carry the values the example inputs give.

Every node created while tracing is also run on concrete tensors, and its result is kept in
`node.meta["value"]`. Shape queries (`x.size()`, `x.size(i)`, `x.shape`, `x.dim()`, `len(x)`,
`x.numel()`) are answered from those values with plain Python integers and leave no node in
the graph, so `b, c, _, _ = x.size()` and `x.shape[-2:]` work (torch.fx's own
`symbolic_trace` cannot unpack them on Python 3.11), and every size in the graph is a constant.
Unpacking a proxy whose value is a tuple (`values, indices = torch.max(x, 1)`) works too.

Each node also gets `node.meta["source"]`: (file, line, code) of the user's code that created
it, for error messages.
"""

import inspect
import linecache
import os

import torch
import torch.fx as fx

from .errors import ExportError

_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

# Tensor attributes answered from the example value instead of being traced.
_SHAPE_ATTRS = ("shape", "ndim", "dtype", "device", "is_cuda", "layout")
# Tensor methods likewise (they return plain Python values).
_SHAPE_METHODS = ("size", "dim", "ndimension", "numel", "nelement")
_SHAPE_FUNCTIONS = (torch.numel,)


def user_frame():
    """(file, line, code) of the innermost frame outside torch and this package, or None."""
    frame = inspect.currentframe()
    while frame is not None:
        fname = os.path.abspath(frame.f_code.co_filename)
        if not fname.startswith(_TORCH_DIR) and not fname.startswith(_OWN_DIR):
            code = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
            return (frame.f_code.co_filename, frame.f_lineno, code)
        frame = frame.f_back
    return None


def where(source):
    """'file:line: code' for a (file, line, code) triple (or 'an unknown line')."""
    if not source:
        return "an unknown line"
    fname, line, code = source
    text = "%s:%d" % (fname, line)
    if code:
        text += ": " + code
    return text


def _is_tensor_like(v):
    return isinstance(v, torch.Tensor)


class ValueProxy(fx.Proxy):
    """A proxy whose node carries a concrete example value in node.meta['value']."""

    @property
    def value(self):
        return self.node.meta.get("value")

    def __getattr__(self, k):
        if k in _SHAPE_ATTRS:
            v = self.node.meta.get("value")
            if isinstance(v, torch.Tensor):
                return getattr(v, k)
        return super().__getattr__(k)

    def __len__(self):
        v = self.node.meta.get("value")
        if isinstance(v, (torch.Tensor, tuple, list)):
            return len(v)
        return super().__len__()

    def __iter__(self):
        v = self.node.meta.get("value")
        if isinstance(v, (tuple, list)):
            return iter([self[i] for i in range(len(v))])
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            return iter([self[i] for i in range(v.shape[0])])
        return super().__iter__()


class ValueTracer(fx.Tracer):
    """fx.Tracer that runs every node on the example values as it records it.

    inputs: {placeholder name: example value} for the traced forward's arguments."""

    def __init__(self, inputs, fixed=None):
        super().__init__()
        self.example_inputs = dict(inputs)
        self.fixed = dict(fixed or {})
        self._concrete = 0  # > 0 while running a node on concrete values

    # Module calls and parameter reads made while computing concrete values must not be
    # recorded: fx patches nn.Module.__call__ and __getattr__ during the whole trace.
    def call_module(self, m, forward, args, kwargs):
        if self._concrete:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if self._concrete:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def proxy(self, node):
        return ValueProxy(node, self)

    def create_args_for_root(self, root_fn, is_module, concrete_args=None):
        """Placeholders for the tensor arguments, in forward's order; every other argument is
        passed its fixed value. (fx's own version adds assertion nodes for fixed arguments, and
        its code patching for keyword-only arguments fails on Python 3.11.)"""
        fn = inspect.unwrap(root_fn)
        params = list(inspect.signature(fn).parameters.values())
        if is_module:
            params = params[1:]
        pos, kw = [], {}
        for p in params:
            if p.name in self.example_inputs:
                v = self.create_proxy("placeholder", p.name, (), {})
            elif p.name in self.fixed:
                v = self.fixed[p.name]
            else:
                raise ExportError("forward's argument %r has no example input and no value"
                                  % p.name)
            if p.kind == inspect.Parameter.KEYWORD_ONLY:
                kw[p.name] = v
            else:
                pos.append(v)

        def forward_with_fixed_arguments(*args):
            return root_fn(*args, **kw)

        return forward_with_fixed_arguments, ([self.root] if is_module else []) + pos

    def to_bool(self, obj):
        node = obj.node
        raise ExportError(
            "node '%s' (%s %s) at %s: a traced tensor decides control flow: branches and loops "
            "may depend on sizes and on forward's fixed arguments, not on tensor values"
            % (node.name, node.op, _target_name(node.target), where(user_frame())))

    def iter(self, obj):
        node = obj.node
        raise ExportError("node '%s' (%s %s) at %s: cannot iterate over it" % (
            node.name, node.op, _target_name(node.target), where(user_frame())))

    # -- values -------------------------------------------------------------------------
    def _value_of(self, a):
        if isinstance(a, fx.Proxy):
            node = a.node
            if "value" not in node.meta:
                raise ExportError("%s: %s has no example value" % (where(user_frame()),
                                                                    node.name))
            return node.meta["value"]
        return a

    def _concrete_args(self, args, kwargs):
        a = fx.node.map_aggregate(args, self._value_of)
        kw = fx.node.map_aggregate(kwargs, self._value_of)
        return a, kw

    def _run(self, kind, target, args, kwargs, inplace):
        a, kw = self._concrete_args(args, kwargs)
        if inplace:  # run in-place ops on copies, so recorded values stay as they were
            a = fx.node.map_aggregate(a, lambda v: v.clone() if _is_tensor_like(v) else v)
        self._concrete += 1
        try:
            with torch.no_grad():
                if kind == "call_function":
                    return target(*a, **kw)
                if kind == "call_method":
                    return getattr(a[0], target)(*a[1:], **kw)
                if kind == "call_module":
                    mod = self.root.get_submodule(target)
                    return mod.forward(*a, **kw)
                if kind == "get_attr":
                    obj = self.root
                    for part in target.split("."):
                        obj = getattr(obj, part)
                    return obj
        finally:
            self._concrete -= 1
        raise AssertionError(kind)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None,
                     proxy_factory_fn=None):
        source = user_frame()
        # shape queries: plain Python values, no node
        if (kind == "call_method" and target in _SHAPE_METHODS) or \
                (kind == "call_function" and target in _SHAPE_FUNCTIONS) or \
                (kind == "call_function" and target is getattr and len(args) == 2
                 and args[1] in _SHAPE_ATTRS):
            a, kw = self._concrete_args(args, kwargs)
            if kind == "call_method":
                return getattr(a[0], target)(*a[1:], **kw)
            return target(*a, **kw)

        if kind == "placeholder":
            value = self.example_inputs.get(target)
        elif kind == "output":
            value = None
        else:
            inplace = False
            if kind == "call_method" and target.endswith("_") and not target.endswith("__"):
                inplace = True
            if kwargs.get("inplace") is True:
                inplace = True
            if kind == "call_module":
                inplace = inplace or getattr(self.root.get_submodule(target), "inplace",
                                             False) is True
            try:
                value = self._run(kind, target, args, kwargs, inplace)
            except ExportError:
                raise
            except Exception as e:
                raise ExportError("%s: PyTorch failed on the example inputs while tracing "
                                  "(%s %s): %s: %s" % (where(source), kind, _target_name(target),
                                                       type(e).__name__, e)) from e
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr,
                                     proxy_factory_fn)
        proxy.node.meta["value"] = value
        proxy.node.meta["source"] = source
        return proxy


def _target_name(target):
    if isinstance(target, str):
        return target
    name = getattr(target, "__name__", None)
    if name:
        import torch.nn.functional as F
        for prefix, ns in (("torch.", torch), ("F.", F)):
            if getattr(ns, name, None) is target:
                return prefix + name
    mod = getattr(target, "__module__", None) or ""
    if mod == "_operator":
        mod = "operator"
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) \
        or repr(target)
    return "%s.%s" % (mod, name) if mod else name


def target_name(target):
    return _target_name(target)


def trace(module, inputs, concrete_args):
    """Traces module.forward with ValueTracer. inputs: {name: tensor}; concrete_args:
    {name: value} for the arguments fixed during tracing. Returns the fx.Graph."""
    tracer = ValueTracer(inputs, concrete_args)
    try:
        graph = tracer.trace(module)
    except ExportError:
        raise
    except fx.proxy.TraceError as e:
        raise ExportError("%s: %s" % (where(_innermost_user_frame(e)), e)) from e
    except NotImplementedError as e:
        raise ExportError("%s: %s" % (where(_innermost_user_frame(e)), e)) from e
    except TypeError as e:
        raise ExportError("%s: %s" % (where(_innermost_user_frame(e)), e)) from e
    return graph, tracer


def _innermost_user_frame(exc):
    """(file, line, code) of the innermost traceback entry outside torch and this package."""
    tb = exc.__traceback__
    found = None
    while tb is not None:
        fname = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if not fname.startswith(_TORCH_DIR) and not fname.startswith(_OWN_DIR):
            code = linecache.getline(tb.tb_frame.f_code.co_filename, tb.tb_lineno).strip()
            found = (tb.tb_frame.f_code.co_filename, tb.tb_lineno, code)
        tb = tb.tb_next
    return found
