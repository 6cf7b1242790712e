#!/usr/bin/python3
"""fuseref: a small, independent .fuse evaluator on top of PyTorch (a second oracle).

It parses LANGUAGE.md's grammar, inlines blocks, resolves dims and scopes, and evaluates every op
with the torch function the op table names. It is not a checker: it accepts more than fusec
should and reports errors tersely. Its use is triage: when fusec and a test disagree, running the
same case through fuseref tells whether the spec/test or fusec is wrong.

    /usr/bin/python3 fuseref.py run SPEC [--entry E] [--weights W] [--prefix P] [--dim K=V[,..]]
                                 --input [NAME=]X.npy ... --output [NAME=]Y.npy ... [--backend any]

(`--backend` and `--threads` are accepted and ignored, so the conformance scripts can run it in
place of fusec through a wrapper script.)
"""

import argparse
import os
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conformance import load_safetensors  # noqa: E402

TOKEN = re.compile(r"""
    (?P<ws>[ \t\r]+) | (?P<comment>\#[^\n]*) | (?P<nl>\n) |
    (?P<scope>@(?:[A-Za-z0-9_.]|\{[^}\s]*\})+) |
    (?P<float>[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+) |
    (?P<int>[0-9]+) | (?P<ident>[A-Za-z_][A-Za-z0-9_]*) | (?P<string>"[A-Za-z0-9_-]*") |
    (?P<op>//|\.\.|->|==|!=|<=|>=|[-+*/%(),\[\]{}:;=<>])
""", re.X)


class FuseError(Exception):
    pass


def tokenize(text):
    toks, depth, pos = [], 0, 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            raise FuseError("bad character at %d: %r" % (pos, text[pos]))
        pos = m.end()
        kind = m.lastgroup
        v = m.group()
        if kind in ("ws", "comment"):
            continue
        if kind == "nl":
            if depth == 0:
                toks.append(("nl", "\n"))
            continue
        if kind == "op":
            if v in "([":
                depth += 1
            elif v in ")]":
                depth -= 1
        toks.append((kind, v))
    toks.append(("eof", ""))
    return toks


class Parser:
    def __init__(self, text):
        self.t = tokenize(text)
        self.i = 0

    def peek(self, skip_nl=True):
        j = self.i
        while skip_nl and self.t[j][0] == "nl":
            j += 1
        return self.t[j]

    def next(self, skip_nl=True):
        while skip_nl and self.t[self.i][0] == "nl":
            self.i += 1
        tok = self.t[self.i]
        self.i += 1
        return tok

    def expect(self, v, skip_nl=True):
        tok = self.next(skip_nl)
        if tok[1] != v:
            raise FuseError("expected %r, got %r" % (v, tok[1]))
        return tok

    def accept(self, v, skip_nl=True):
        if self.peek(skip_nl)[1] == v:
            self.next(skip_nl)
            return True
        return False

    # file ------------------------------------------------------------------------------
    def file(self):
        self.expect("fuse")
        if self.next(False)[1] != "1":
            raise FuseError("version must be 1")
        dims, blocks, graphs = [], {}, {}
        while self.peek()[0] != "eof":
            kw = self.next()[1]
            if kw == "dim":
                while True:
                    name = self.next()[1]
                    dflt = self.dimx() if self.accept("=") else None
                    dims.append((name, dflt))
                    if not self.accept(",", False):
                        break
            elif kw == "require":
                dims.append(("__require__", self.conds()))
            elif kw in ("block", "graph"):
                d = self.decl(kw)
                (blocks if kw == "block" else graphs)[d["name"]] = d
            else:
                raise FuseError("unexpected %r at file level" % kw)
        return dims, blocks, graphs

    def decl(self, kw):
        name = self.next()[1]
        self.expect("(")
        tparams, cparams = [], []
        while True:
            pn = self.next()[1]
            self.expect(":")
            tparams.append((pn, self.ttype()))
            if self.accept(","):
                continue
            break
        if self.accept(";"):
            while True:
                pn = self.next()[1]
                self.expect(":")
                kind = self.next()[1]
                dflt = self.attr() if self.accept("=") else None
                cparams.append((pn, kind, dflt))
                if not self.accept(","):
                    break
        self.expect(")")
        result = None
        if self.accept("->"):
            if self.accept("("):
                result = []
                while True:
                    on = self.next()[1]
                    self.expect(":")
                    result.append((on, self.ttype()))
                    if not self.accept(","):
                        break
                self.expect(")")
            else:
                result = [("out", self.ttype())]
        return {"kind": kw, "name": name, "tparams": tparams, "cparams": cparams,
                "result": result, "body": self.body()}

    def ttype(self):
        self.expect("f32")
        self.expect("[")
        ds = [self.dimx()]
        while self.accept(","):
            ds.append(self.dimx())
        self.expect("]")
        return ds

    def body(self):
        self.expect("{")
        stmts = []
        while True:
            tok = self.peek()
            if tok[1] == "}":
                self.next()
                return stmts
            if tok[1] == ";":
                self.next()
                continue
            stmts.append(self.stmt())
            end = self.peek(False)
            if end[0] == "nl" or end[1] == ";":
                self.next(False)
            elif end[1] != "}":
                raise FuseError("statement not ended: %r" % (end[1],))

    def stmt(self):
        tok = self.next()
        if tok[1] == "return":
            es = [self.expr()]
            while self.accept(",", False):
                es.append(self.expr())
            return ("return", es)
        if tok[1] == "require":
            return ("require", self.conds())
        if tok[1] == "for":
            var = self.next()[1]
            self.expect("in")
            a = self.dimx()
            self.expect("..")
            b = self.dimx()
            return ("for", var, a, b, self.body())
        self.expect("=")
        return ("let", tok[1], self.expr())

    def conds(self):
        cs = []
        while True:
            a = self.dimx()
            op = self.next()[1]
            cs.append((op, a, self.dimx()))
            if not self.accept(",", False):
                return cs

    # tensor expressions ----------------------------------------------------------------
    def expr(self):
        e = self.term()
        while self.peek(False)[1] in ("+", "-"):
            op = self.next(False)[1]
            e = ("bin", op, e, self.term())
        return e

    def term(self):
        e = self.unary()
        while self.peek(False)[1] in ("*", "/"):
            op = self.next(False)[1]
            e = ("bin", op, e, self.unary())
        return e

    def unary(self):
        if self.accept("-", False):
            return ("neg", self.unary())
        return self.primary()

    def primary(self):
        tok = self.next()
        if tok[1] == "(":
            e = self.expr()
            self.expect(")")
            return e
        if tok[0] in ("int", "float"):
            return ("num", float(tok[1]))
        if tok[0] == "ident":
            if self.peek(False)[1] == "(":
                self.next()
                args, kws = [], {}
                if not self.accept(")"):
                    while True:
                        if self.peek()[0] == "ident" and self.t[self._after()][1] == "=":
                            k = self.next()[1]
                            self.expect("=")
                            kws[k] = self.attr()
                        else:
                            args.append(self.expr())
                        if self.accept(")"):
                            break
                        self.expect(",")
                scope = None
                if self.peek(False)[0] == "scope":
                    scope = self.next(False)[1][1:]
                return ("call", tok[1], args, kws, scope)
            return ("name", tok[1])
        raise FuseError("unexpected %r" % (tok[1],))

    def _after(self):
        j = self.i
        while self.t[j][0] == "nl":
            j += 1
        return j + 1

    def attr(self):
        tok = self.peek()
        if tok[1] == "[":
            self.next()
            vs = [self.attr()]
            while self.accept(","):
                vs.append(self.attr())
            self.expect("]")
            return ("list", vs)
        if tok[0] == "float":
            self.next()
            return ("num", float(tok[1]))
        if tok[1] == "-" and self.t[self._after()][0] == "float":
            self.next()
            return ("num", -float(self.next()[1]))
        if tok[0] == "string":
            self.next()
            return ("word", tok[1].strip('"'))
        if tok[1] in ("true", "false"):
            self.next()
            return ("bool", tok[1] == "true")
        return ("dim", self.dimx())

    # dim expressions -------------------------------------------------------------------
    def dimx(self):
        e = self.dterm()
        while self.peek(False)[1] in ("+", "-"):
            op = self.next(False)[1]
            e = (op, e, self.dterm())
        return e

    def dterm(self):
        e = self.dunary()
        while self.peek(False)[1] in ("*", "//", "%"):
            op = self.next(False)[1]
            e = (op, e, self.dunary())
        return e

    def dunary(self):
        tok = self.next()
        if tok[1] == "-":
            return ("u-", self.dunary())
        if tok[1] == "(":
            e = self.dimx()
            self.expect(")")
            return e
        if tok[0] == "int":
            return int(tok[1])
        if tok[0] == "ident":
            return tok[1]
        raise FuseError("bad dim expression at %r" % (tok[1],))


def deval(e, env):
    if isinstance(e, int):
        return e
    if isinstance(e, str):
        if e not in env:
            raise FuseError("unbound dim %s" % e)
        v = env[e]
        if isinstance(v, tuple):  # a compile-time param: ("int"/"float"/"bool", value)
            return v[1]
        if isinstance(v, torch.Tensor):
            raise FuseError("%s is a tensor, not a dim" % e)
        return v
    if e[0] == "u-":
        return -deval(e[1], env)
    a, b = deval(e[1], env), deval(e[2], env)
    return {"+": a + b, "-": a - b, "*": a * b, "//": a // b if b else _dz(), "%": a % b if b else _dz()}[e[0]]


def _dz():
    raise FuseError("division by zero")


def cond_ok(c, env):
    op, a, b = c
    a, b = deval(a, env), deval(b, env)
    return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def aval(a, env):
    """An attribute value: python int/float/bool/str or a list of them."""
    kind = a[0]
    if kind == "list":
        return [aval(x, env) for x in a[1]]
    if kind == "num":
        return a[1]
    if kind == "word":
        return a[1]
    if kind == "bool":
        return a[1]
    e = a[1]
    if isinstance(e, str) and e not in env:
        return e  # a bare word (enum)
    return deval(e, env)


def pair(v):
    return tuple(v) if isinstance(v, list) else (v, v)


class Evaluator:
    def __init__(self, file_dims, blocks, weights, prefix, dims):
        self.blocks = blocks
        self.weights = weights
        self.prefix = prefix
        self.used = set()
        self.env = {}
        pending = dict(file_dims)
        for k, v in dims.items():
            self.env[k] = v
            pending.pop(k, None)
        while pending:
            progress = False
            for k, e in list(pending.items()):
                try:
                    self.env[k] = deval(e, self.env)
                    del pending[k]
                    progress = True
                except FuseError:
                    pass
            if not progress:
                raise FuseError("unresolved dims: %s" % ", ".join(pending))

    def key(self, scope, slot):
        parts = [p for p in [scope, slot] if p]
        k = ".".join(parts)
        if self.prefix:
            k = self.prefix.rstrip(".") + "." + k
        return k

    def w(self, scope, slot, shape):
        k = self.key(scope, slot)
        if k not in self.weights:
            raise FuseError("missing weight %s %s" % (k, list(shape)))
        t = self.weights[k]
        if list(t.shape) != list(shape) or t.dtype != torch.float32:
            raise FuseError("weight %s: %s %s, wanted %s" % (k, t.dtype, list(t.shape), list(shape)))
        self.used.add(k)
        return t

    def splice(self, scope, env):
        return re.sub(r"\{([^}]*)\}", lambda m: str(deval(Parser(m.group(1) + "\n").dimx(), env)),
                      scope)

    def run(self, decl, args, env, scope_prefix):
        for s in decl["body"]:
            if s[0] == "return":
                return [self.expr(e, env, scope_prefix) for e in s[1]]
            self.stmt(s, env, scope_prefix)
        raise FuseError("no return")

    def stmt(self, s, env, sp):
        if s[0] == "let":
            env[s[1]] = self.expr(s[2], env, sp)
        elif s[0] == "require":
            for c in s[1]:
                if not cond_ok(c, env):
                    raise FuseError("require failed: %r" % (c,))
        elif s[0] == "for":
            a, b = deval(s[2], env), deval(s[3], env)
            for i in range(a, b):
                env[s[1]] = i
                for t in s[4]:
                    if t[0] == "return":
                        raise FuseError("return inside for")
                    self.stmt(t, env, sp)

    def expr(self, e, env, sp):
        k = e[0]
        if k == "num":
            return torch.tensor(e[1], dtype=torch.float32)
        if k == "name":
            v = env.get(e[1])
            if v is None:
                raise FuseError("unknown name %s" % e[1])
            if isinstance(v, torch.Tensor):
                return v
            if isinstance(v, tuple):
                v = v[1]
            return torch.tensor(float(v), dtype=torch.float32)
        if k == "neg":
            return -self.expr(e[1], env, sp)
        if k == "bin":
            a, b = self.expr(e[2], env, sp), self.expr(e[3], env, sp)
            return {"+": torch.add, "-": torch.sub, "*": torch.mul, "/": torch.div}[e[1]](a, b)
        if k == "call":
            return self.call(e, env, sp)
        raise FuseError("bad expression %r" % (e,))

    def call(self, e, env, sp):
        _, name, args, kws, scope = e
        scope = self.splice(scope, env) if scope else None
        full = ".".join(p for p in [sp, scope] if p) if scope else sp
        xs = [self.expr(a, env, sp) for a in args]
        at = {k: aval(v, env) for k, v in kws.items()}
        if name in self.blocks:
            return self.call_block(self.blocks[name], xs, at, env, full)
        return self.op(name, xs, at, full if scope else None)

    def call_block(self, b, xs, at, caller_env, full_scope):
        env = {k: v for k, v in self.env.items()}
        bound = set()
        if len(xs) != len(b["tparams"]):
            raise FuseError("%s takes %d tensors" % (b["name"], len(b["tparams"])))
        for (pn, dims), x in zip(b["tparams"], xs):
            if len(dims) != x.dim():
                raise FuseError("rank mismatch for %s" % pn)
            for d, n in zip(dims, x.shape):
                if isinstance(d, str):
                    if d in bound and env[d] != n:
                        raise FuseError("conflict on %s" % d)
                    env[d] = n
                    bound.add(d)
            env[pn] = x
        for (pn, dims), x in zip(b["tparams"], xs):
            for d, n in zip(dims, x.shape):
                if deval(d, env) != n:
                    raise FuseError("shape mismatch for %s" % pn)
        for pn, kind, dflt in b["cparams"]:
            if pn in at:
                v = at[pn]
            elif dflt is not None:
                v = aval(dflt, env)
            else:
                raise FuseError("missing compile-time argument %s" % pn)
            env[pn] = (kind, v)
        outs = self.run(b, xs, env, full_scope)
        return outs[0]

    def op(self, name, xs, at, scope):
        g = at.get
        if name == "upsample":
            mode = g("mode", "nearest")
            ac = g("align_corners", False)
            kw = {"mode": mode}
            if mode == "bilinear":
                kw["align_corners"] = ac
            if "size" in at:
                return F.interpolate(xs[0], size=pair(at["size"]), **kw)
            s = pair(at["scale"])
            return F.interpolate(xs[0], scale_factor=tuple(float(v) for v in s), **kw)
        if name == "concat":
            return torch.cat(xs, g("axis"))
        if name == "conv2d":
            x = xs[0]
            kh, kw_ = pair(at["kernel"])
            groups = g("groups", 1)
            wt = self.w(scope, "weight", [at["out"], x.shape[1] // groups, kh, kw_])
            bs = self.w(scope, "bias", [at["out"]]) if g("bias", True) else None
            return F.conv2d(x, wt, bs, pair(g("stride", 1)), pair(g("padding", 0)),
                            pair(g("dilation", 1)), groups)
        if name in ("batchnorm2d", "batchnorm1d"):
            c = xs[0].shape[1]
            ws = [self.w(scope, s, [c]) for s in ("weight", "bias", "running_mean", "running_var")]
            return F.batch_norm(xs[0], ws[2], ws[3], ws[0], ws[1], False, 0.0, float(g("eps", 1e-5)))
        if name == "linear":
            x = xs[0]
            wt = self.w(scope, "weight", [at["out"], x.shape[-1]])
            bs = self.w(scope, "bias", [at["out"]]) if g("bias", True) else None
            return F.linear(x, wt, bs)
        if name == "layernorm":
            c = xs[0].shape[-1]
            return F.layer_norm(xs[0], (c,), self.w(scope, "weight", [c]), self.w(scope, "bias", [c]),
                                float(g("eps", 1e-5)))
        if name == "mha":
            q, k, v = xs
            E = q.shape[-1]
            bias = g("bias", True)
            m = torch.nn.MultiheadAttention(E, at["heads"], bias=bias, batch_first=True).eval()
            sd = {"in_proj_weight": self.w(scope, "in_proj_weight", [3 * E, E]),
                  "out_proj.weight": self.w(scope, "out_proj.weight", [E, E])}
            if bias:
                sd["in_proj_bias"] = self.w(scope, "in_proj_bias", [3 * E])
                sd["out_proj.bias"] = self.w(scope, "out_proj.bias", [E])
            m.load_state_dict(sd)
            with torch.no_grad():
                return m(q, k, v, need_weights=False)[0]
        if name == "param":
            shp = at["shape"]
            return self.w(scope, None, shp if isinstance(shp, list) else [shp])
        unary = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "exp": torch.exp,
                 "sqrt": torch.sqrt, "rsqrt": torch.rsqrt, "silu": F.silu, "abs": torch.abs,
                 "neg": torch.neg}
        if name in unary:
            return unary[name](xs[0])
        if name == "gelu":
            return F.gelu(xs[0], approximate=g("approximate", "none"))
        if name in ("min", "max"):
            return (torch.minimum if name == "min" else torch.maximum)(xs[0], xs[1])
        if name in ("mean", "sum", "amax", "amin"):
            fn = {"mean": torch.mean, "sum": torch.sum, "amax": torch.amax, "amin": torch.amin}[name]
            return fn(xs[0], tuple(at["axes"]), keepdim=g("keepdim", False))
        if name == "softmax":
            return torch.softmax(xs[0], at["axis"])
        if name == "matmul":
            return torch.matmul(xs[0], xs[1])
        if name == "permute":
            return xs[0].permute(*at["perm"])
        if name == "view":
            return xs[0].reshape(*at["shape"])
        if name == "flatten":
            return torch.flatten(xs[0], g("start", 0), g("end", -1))
        if name == "transpose":
            return xs[0].transpose(*at["dims"])
        if name in ("avgpool2d", "maxpool2d"):
            k = pair(at["kernel"])
            s = pair(g("stride", at["kernel"]))
            p = pair(g("padding", 0))
            if name == "avgpool2d":
                return F.avg_pool2d(xs[0], k, s, p)
            return F.max_pool2d(xs[0], k, s, p)
        raise FuseError("unknown op or block %s" % name)


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd")
    ap.add_argument("spec")
    ap.add_argument("--entry")
    ap.add_argument("--weights")
    ap.add_argument("--prefix", default="")
    ap.add_argument("--dim", action="append", default=[])
    ap.add_argument("--input", action="append", default=[])
    ap.add_argument("--output", action="append", default=[])
    ap.add_argument("--backend")
    ap.add_argument("--threads")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        file_dims, blocks, graphs = Parser(open(a.spec).read()).file()
        entry = a.entry or (list(graphs)[0] if len(graphs) == 1 else None)
        if entry not in graphs:
            print("fuseref: --entry needed or unknown", file=sys.stderr)
            return 2
        g = graphs[entry]
        dims = {}
        for d in a.dim:
            for kv in d.split(","):
                k, v = kv.split("=")
                dims[k] = int(v)
        reqs = [e for k, e in file_dims if k == "__require__"]
        ev = Evaluator([(k, e) for k, e in file_dims if k != "__require__"], blocks,
                       load_safetensors(a.weights)[0] if a.weights else {}, a.prefix, dims)
        for cs in reqs:
            for c in cs:
                if not cond_ok(c, ev.env):
                    raise FuseError("require failed")
        env = dict(ev.env)
        names = [p for p, _ in g["tparams"]]
        for spec_in in a.input:
            n, _, path = spec_in.rpartition("=")
            n = n or names[0]
            x = torch.from_numpy(np.load(path).astype(np.float32))
            want = [deval(d, env) for d in dict(g["tparams"])[n]]
            if list(x.shape) != want:
                raise FuseError("input %s: shape %s, declared %s" % (n, list(x.shape), want))
            env[n] = x
        with torch.no_grad():
            outs = ev.run(g, None, env, None)
        onames = [o for o, _ in g["result"]]
        for (o, dims_o), t in zip(g["result"], outs):
            want = [deval(d, env) for d in dims_o]
            if list(t.shape) != want:
                raise FuseError("output %s: shape %s, declared %s" % (o, list(t.shape), want))
        for spec_out in a.output:
            n, _, path = spec_out.rpartition("=")
            n = n or onames[0]
            np.save(path, outs[onames.index(n)].numpy().astype(np.float32))
        unused = [k for k in ev.weights if k.startswith(a.prefix) and k not in ev.used
                  and not k.endswith("num_batches_tracked")]
        if unused:
            print("fuseref: warning: %d unused weights: %s" % (len(unused), unused[:5]), file=sys.stderr)
        return 0
    except FuseError as e:
        print("fuseref: error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
