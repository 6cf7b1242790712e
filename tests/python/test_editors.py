#!/usr/bin/python3
"""The editor grammars (editors/) against the language: nothing may fall behind it.

    /usr/bin/python3 tests/python/test_editors.py [--vim PATH]

The words of the language are read from their sources: the keywords from docs/LANGUAGE.md
("- Keywords: `...`"), the op names from LANGUAGE.md's op table, compiler/builtins.c and
compiler/ops.def, the attribute names and enum words from compiler/builtins.c. Then:
  - editors/vscode: package.json declares the language and the grammar; the TextMate grammar is
    JSON, each regex compiles with Python's `re` (the grammar keeps to the syntax Python and
    Oniguruma share), and a small tokenizer that applies its rules as TextMate does gives every
    keyword, op, attribute and enum word its scope, on a file using all of them and on
    examples/*.fuse (ops, @scopes, numbers, comments);
  - editors/vim: the syntax file names every keyword, op, attribute and enum word; when vim is
    installed, it is run on the same files and the syntax groups under the cursor are checked.
Prints "N passed, M failed" and exits 1 on failure.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EDITORS = os.path.join(REPO, "editors")

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--vim", default=shutil.which("vim") or "")
ap.add_argument("--fusec", default="")  # accepted for symmetry with the other scripts
ap.add_argument("--keep", action="store_true")
ARGS = ap.parse_args()

passed, failed = [], []
T0 = time.time()


def case(name, fn):
    try:
        msg = fn()
        ok = True
    except AssertionError as e:
        msg, ok = str(e), False
    except Exception as e:  # a bug here is a failing case too
        msg, ok = "%s: %s" % (type(e).__name__, e), False
    print("%s  %-40s %s" % ("ok  " if ok else "FAIL", name, msg or ""))
    (passed if ok else failed).append(name)


# -- the language's words, from their sources ---------------------------------------------------
def read(*parts):
    with open(os.path.join(REPO, *parts)) as f:
        return f.read()


LANG = read("docs", "LANGUAGE.md")
BUILTINS = read("compiler", "builtins.c")
OPS_DEF = read("compiler", "ops.def")

m = re.search(r"^- Keywords: `([^`]+)`", LANG, re.M)
KEYWORDS = m.group(1).split() if m else []

DOC_OPS = []
for row in re.findall(r"^\| *(`[^|]*)\|", LANG, re.M):
    for span in re.findall(r"`([^`]*)`", row):
        for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span):
            if len(word) > 1 and word not in DOC_OPS:  # x, a, b, q, k, v are arguments
                DOC_OPS.append(word)

SRC_OPS = re.findall(r'^\s*(?:\{|UNARY\(|REDUCE\()"([a-z0-9_]+)",\s*OP_', BUILTINS, re.M)
GRAPH_OPS = re.findall(r'^OP\(\s*\w+,\s*"([a-z0-9_]+)"', OPS_DEF, re.M)
# graph-IR ops the source spells otherwise: as an operator, or not at all (the graph's inputs and
# scalar constants, the op both batchnorm1d and batchnorm2d build, and the ops ops.def marks
# "internal", which passes create)
OPERATORS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
GRAPH_ONLY = {"input", "scalar", "batchnorm"} | set(
    re.findall(r'^OP\(\s*\w+,\s*"([a-z0-9_]+)".*/\*\s*internal', OPS_DEF, re.M))
OPS = []
for w in DOC_OPS + SRC_OPS + [g for g in GRAPH_OPS if g not in GRAPH_ONLY | set(OPERATORS)]:
    if w not in OPS:
        OPS.append(w)
ATTRS = sorted(set(re.findall(r'\.name = "([a-z_0-9]+)"', BUILTINS)))
ENUM_WORDS = []
for lst in re.findall(r"static const char \*const \w+\[\] = \{([^}]*)\}", BUILTINS):
    ENUM_WORDS += re.findall(r'"([a-z0-9_]+)"', lst)


def words_found():
    assert len(KEYWORDS) >= 16, "LANGUAGE.md: keywords not found (%s)" % KEYWORDS
    assert len(SRC_OPS) >= 30, "builtins.c: ops not found (%d)" % len(SRC_OPS)
    assert set(DOC_OPS) == set(SRC_OPS), \
        "LANGUAGE.md's op table and builtins.c differ: %s" % sorted(set(DOC_OPS) ^ set(SRC_OPS))
    assert len(GRAPH_OPS) >= 30, "ops.def: ops not found"
    assert len(ATTRS) >= 15 and ENUM_WORDS, "builtins.c: attributes not found"
    return "%d keywords, %d ops, %d attributes, %d enum words" % (
        len(KEYWORDS), len(OPS), len(ATTRS), len(ENUM_WORDS))


case("language:words", words_found)

# a file that uses every word: the op calls, the attributes, the enum words
SAMPLE_LINES = ["fuse 1", "dim N = 1, H = 4", "block b(x: f32[N, H]; k: int = 2, f: float = 0.5, "
                "t: bool = true) -> f32[N, H] {", "    require H % 2 == 0", "    for i in 0..k {",
                "        x = x * 1e-5 + 2.5E+3 - 12 // 3", "    }", "    return x", "}",
                "graph g(x: f32[N, H]) -> (o: f32[N, H], p: f32[N, H]) {"]
for op in OPS:
    SAMPLE_LINES.append("    y = %s(x) @s.{i}.w" % op)
for a in ATTRS:
    SAMPLE_LINES.append("    y = relu(x, %s=1)" % a)
for e in ENUM_WORDS:
    SAMPLE_LINES.append("    y = gelu(x, mode=%s)" % e)
for op in GRAPH_OPS:
    if op in OPERATORS:
        SAMPLE_LINES.append("    y = x %s x" % OPERATORS[op])
SAMPLE_LINES += ['    y = upsample(x, mode="bilinear")  # a comment', "    return x, y", "}"]
SAMPLE = "\n".join(SAMPLE_LINES) + "\n"


def positions():
    """(line index, column, word, expected kind) for every word the grammars must know."""
    out = []
    for i, ln in enumerate(SAMPLE_LINES):
        for kw in KEYWORDS:
            for mm in re.finditer(r"\b%s\b" % re.escape(kw), ln):
                if kw == "fuse" and i != 0:
                    continue
                out.append((i, mm.start(), kw, "keyword"))
    for i, ln in enumerate(SAMPLE_LINES):
        mm = re.match(r"    y = ([a-z0-9_]+)\(x\) @", ln)
        if mm:
            out.append((i, mm.start(1), mm.group(1), "op"))
            out.append((i, ln.index("@"), "@s.{i}.w", "scope"))
        mm = re.match(r"    y = relu\(x, ([a-z_0-9]+)=1\)", ln)
        if mm:
            out.append((i, mm.start(1), mm.group(1), "attribute"))
        mm = re.match(r"    y = gelu\(x, mode=([a-z0-9_]+)\)", ln)
        if mm:
            out.append((i, mm.start(1), mm.group(1), "enum"))
        mm = re.match(r"    y = x ([-+*/]) x$", ln)
        if mm:
            out.append((i, mm.start(1), mm.group(1), "operator"))
    return out


# -- TextMate ------------------------------------------------------------------------------------
VSCODE = os.path.join(EDITORS, "vscode")
TM_PATH = os.path.join(VSCODE, "syntaxes", "fuse.tmLanguage.json")
TM_KIND = {  # what each kind of word must be scoped as (a prefix of the TextMate scope)
    "keyword": ("keyword.", "storage.type", "constant.language.boolean"),
    "op": ("support.function.builtin.fuse",),
    "attribute": ("variable.parameter.attribute.fuse",),
    "enum": ("constant.language.enum.fuse",),
    "scope": ("entity.name.namespace.scope.fuse",),
    "operator": ("keyword.operator.arithmetic.fuse",),
}


def load_tm():
    with open(TM_PATH) as f:
        return json.load(f)


def package():
    with open(os.path.join(VSCODE, "package.json")) as f:
        pkg = json.load(f)
    langs = pkg["contributes"]["languages"]
    grams = pkg["contributes"]["grammars"]
    assert any(lg["id"] == "fuse" and ".fuse" in lg["extensions"] for lg in langs), langs
    g = [g for g in grams if g["language"] == "fuse"]
    assert g, "no grammar for language fuse"
    path = os.path.normpath(os.path.join(VSCODE, g[0]["path"]))
    assert path == TM_PATH, "grammar path %s" % path
    assert g[0]["scopeName"] == load_tm()["scopeName"] == "source.fuse"
    for lg in langs:
        if "configuration" in lg:
            with open(os.path.join(VSCODE, lg["configuration"])) as f:
                conf = json.load(f)
            assert conf["comments"]["lineComment"] == "#"
    return "language fuse, grammar source.fuse"


def all_regexes(node, path="$"):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("match", "begin", "end", "while") and isinstance(v, str):
                yield path + "." + k, v
            else:
                yield from all_regexes(v, path + "." + k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from all_regexes(v, "%s[%d]" % (path, i))


# Oniguruma-only syntax that Python's re does not read (none is used now; listed so that a rule
# using it is reported as skipped rather than failing).
ONIG_ONLY = re.compile(r"\\[hHGAzZ]|\(\?<[A-Za-z]|\\p\{|\(\?~|\\k<|\[\[:")


def regexes_compile():
    n = skipped = 0
    for where, rx in all_regexes(load_tm()):
        if ONIG_ONLY.search(rx):
            skipped += 1
            continue
        try:
            re.compile(rx)
        except re.error as e:
            raise AssertionError("%s: %s does not compile: %s" % (where, rx, e))
        n += 1
    assert n > 10, "only %d regexes" % n
    return "%d regexes compile%s" % (n, ", %d Oniguruma-only skipped" % skipped if skipped else "")


def tm_rules(tm):
    """The grammar's match rules in the order TextMate tries them (includes expanded)."""
    repo = tm.get("repository", {})
    out = []

    def walk(node, seen):
        if "include" in node:
            ref = node["include"]
            assert ref.startswith("#"), "include %s" % ref
            assert ref[1:] not in seen, "recursive include %s" % ref
            walk(repo[ref[1:]], seen | {ref[1:]})
            return
        if "begin" in node:
            raise AssertionError("begin/end rules are not handled by this tokenizer: %s" % node)
        if "match" in node:
            out.append((re.compile(node["match"]), node.get("name"), node.get("captures", {})))
        for p in node.get("patterns", []):
            walk(p, seen)

    for p in tm["patterns"]:
        walk(p, set())
    return out


def tokenize(rules, line):
    """[(start, end, scope)]: at each point the rule matching earliest wins, the first listed
    on a tie (as TextMate does with match rules)."""
    toks, pos = [], 0
    while pos <= len(line):
        best = None
        for i, (rx, name, caps) in enumerate(rules):
            mm = rx.search(line, pos)
            if mm and (best is None or mm.start() < best[0].start()):
                best = (mm, name, caps)
        if best is None:
            break
        mm, name, caps = best
        if name:
            toks.append((mm.start(), mm.end(), name.replace("$1", mm.group(1) or "")
                         if mm.groups() else name))
        for g, c in caps.items():
            g = int(g)
            if mm.group(g) is not None and "name" in c:
                cname = c["name"].replace("$1", mm.group(1) or "") if mm.groups() else c["name"]
                toks.append((mm.start(g), mm.end(g), cname))
        pos = mm.end() if mm.end() > pos else pos + 1
    return toks


def scopes_at(toks, col):
    """The scopes at col, outermost first."""
    return [s for a, b, s in toks if a <= col < b]


def tm_words():
    rules = tm_rules(load_tm())
    toks = [tokenize(rules, ln) for ln in SAMPLE_LINES]
    bad = []
    for i, col, word, kind in positions():
        s = scopes_at(toks[i], col)
        if not any(x.startswith(TM_KIND[kind]) for x in s):
            bad.append("%s %r line %d: %s" % (kind, word, i + 1, " ".join(s) or "none"))
    assert not bad, "; ".join(bad[:8]) + (" ... (%d)" % len(bad) if len(bad) > 8 else "")
    return "%d words scoped" % len(positions())


EXAMPLE_CHECKS = [
    (r"\b(%s)\(" % "|".join(SRC_OPS), 1, "support.function.builtin.fuse"),
    (r"@(?:[A-Za-z0-9_]|\{[^{}\n]*\})+(?:\.(?:[A-Za-z0-9_]|\{[^{}\n]*\})+)*", 0,
     "entity.name.namespace.scope.fuse"),
    (r"^\s*(#)", 1, "comment.line.number-sign.fuse"),
    (r"\b(1e-5|0\.125)\b", 1, "constant.numeric.float.fuse"),
    (r"^(fuse) 1$", 1, "keyword.other.version.fuse"),
    (r"^(graph|block) ([a-z_0-9]+)", 2, "entity.name.function.fuse"),
]


def example_files():
    d = os.path.join(REPO, "examples")
    return [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".fuse")]


def tm_examples():
    rules = tm_rules(load_tm())
    n = 0
    for path in example_files():
        for lnum, ln in enumerate(open(path), 1):
            ln = ln.rstrip("\n")
            toks = None
            comment = ln.find("#")
            for rx, g, want in EXAMPLE_CHECKS:
                for mm in re.finditer(rx, ln):
                    if comment >= 0 and mm.start(g) > comment and want != \
                            "comment.line.number-sign.fuse":
                        continue  # inside a comment
                    toks = toks if toks is not None else tokenize(rules, ln)
                    s = scopes_at(toks, mm.start(g))
                    assert want in s, "%s:%d: %r is %s, expected %s" % (
                        os.path.basename(path), lnum, mm.group(g), " ".join(s) or "none", want)
                    n += 1
    return "%d tokens in %d examples" % (n, len(example_files()))


# -- Vim -----------------------------------------------------------------------------------------
VIM_SYNTAX = os.path.join(EDITORS, "vim", "syntax", "fuse.vim")
VIM_KIND = {
    "keyword": ("fuseVersion", "fuseDeclaration", "fuseStatement", "fuseRepeat", "fuseBoolean",
                "fuseType"),
    "op": ("fuseOp",),
    "attribute": ("fuseAttr",),
    "enum": ("fuseEnum",),
    "scope": ("fuseScope",),
    "operator": ("fuseOperator",),
}


def vim_groups():
    """{group: set of words} from `syn keyword` lines and `\\%(a\\|b\\)` alternations of
    `syn match` lines."""
    groups = {}
    for ln in open(VIM_SYNTAX):
        mm = re.match(r"\s*syn(?:tax)? keyword (\w+)((?:\s+\w+)+)", ln)
        if mm:
            groups.setdefault(mm.group(1), set()).update(
                w for w in mm.group(2).split() if not w.startswith("contained"))
            continue
        mm = re.match(r'\s*syn(?:tax)? match (\w+) "(.*)"', ln)
        if mm:
            for alt in re.findall(r"\\%\(([\w\\|]+)\\\)", mm.group(2)):
                groups.setdefault(mm.group(1), set()).update(alt.split("\\|"))
    return groups


def vim_words():
    groups = vim_groups()
    missing = []
    for kind, words in (("keyword", KEYWORDS), ("op", OPS), ("attribute", ATTRS),
                        ("enum", ENUM_WORDS)):
        names = VIM_KIND[kind]
        for w in words:
            if not any(w in groups.get(g, ()) for g in names):
                missing.append("%s %s" % (kind, w))
    assert not missing, "not in %s: %s" % (os.path.relpath(VIM_SYNTAX, REPO), ", ".join(missing))
    return "every word named"


VIM_SCRIPT = r"""
set nocompatible
let &runtimepath = '%(rtp)s,' . &runtimepath
filetype plugin on
syntax on
let s:out = []
for s:f in readfile('%(list)s')
  execute 'edit ' . fnameescape(s:f)
  call add(s:out, 'FILE ' . s:f . ' ' . &filetype . ' ' . get(b:, 'current_syntax', '-'))
  for s:l in range(1, line('$'))
    let s:line = getline(s:l)
    let s:prev = ''
    for s:c in range(1, len(s:line))
      let s:name = synIDattr(synID(s:l, s:c, 1), 'name')
      if s:name !=# s:prev
        call add(s:out, s:l . ' ' . s:c . ' ' . s:name)
        let s:prev = s:name
      endif
    endfor
  endfor
endfor
call writefile(s:out, '%(out)s')
qall!
"""


def run_vim(files):
    tmp = tempfile.mkdtemp(prefix="fuse-vim-")
    try:
        lst = os.path.join(tmp, "files")
        out = os.path.join(tmp, "out")
        with open(lst, "w") as f:
            f.write("\n".join(files) + "\n")
        script = os.path.join(tmp, "run.vim")
        with open(script, "w") as f:
            f.write(VIM_SCRIPT % {"rtp": os.path.join(EDITORS, "vim"), "list": lst, "out": out})
        r = subprocess.run([ARGS.vim, "-Nu", "NONE", "-i", "NONE", "-n", "-Es", "-S", script],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                           cwd=tmp)
        assert os.path.exists(out), "vim wrote nothing (exit %d): %s" % (
            r.returncode, r.stdout.decode("utf-8", "replace")[-500:])
        result, cur = {}, None
        for ln in open(out):
            parts = ln.rstrip("\n").split(" ")
            if parts[0] == "FILE":
                cur = {"filetype": parts[2], "syntax": parts[3], "runs": []}
                result[parts[1]] = cur
            else:
                cur["runs"].append((int(parts[0]), int(parts[1]), parts[2] if len(parts) > 2
                                    else ""))
        return result
    finally:
        if not ARGS.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def vim_group_at(runs, lnum, col):
    """The group at 1-based line and column from the run list."""
    name = ""
    for ln_, c, g in runs:
        if ln_ == lnum and c <= col:
            name = g
        elif ln_ > lnum or (ln_ == lnum and c > col):
            break
    return name


def vim_run():
    if not ARGS.vim:
        return "vim not installed: skipped"
    tmp = tempfile.mkdtemp(prefix="fuse-sample-")
    try:
        sample = os.path.join(tmp, "sample.fuse")
        with open(sample, "w") as f:
            f.write(SAMPLE)
        files = [sample] + example_files()
        res = run_vim(files)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for f in files:
        assert f in res, "vim did not open %s" % f
        assert res[f]["filetype"] == "fuse" and res[f]["syntax"] == "fuse", \
            "%s: filetype %s, syntax %s" % (f, res[f]["filetype"], res[f]["syntax"])
    runs = res[sample]["runs"]
    bad = []
    for i, col, word, kind in positions():
        g = vim_group_at(runs, i + 1, col + 1)
        if g not in VIM_KIND[kind]:
            bad.append("%s %r line %d: %s" % (kind, word, i + 1, g or "none"))
    n = 0
    for path in example_files():
        runs = res[path]["runs"]
        for lnum, ln in enumerate(open(path), 1):
            comment = ln.find("#")
            for rx, g, want in ((r"\b(%s)\(" % "|".join(SRC_OPS), 1, "fuseOp"),
                                (r"@[A-Za-z0-9_{]", 0, "fuseScope"),
                                (r"^\s*(#)", 1, "fuseComment")):
                for mm in re.finditer(rx, ln):
                    if comment >= 0 and mm.start(g) > comment and want != "fuseComment":
                        continue
                    got = vim_group_at(runs, lnum, mm.start(g) + 1)
                    if got != want:
                        bad.append("%s:%d: %r is %s" % (os.path.basename(path), lnum,
                                                         mm.group(g), got or "none"))
                    n += 1
    assert not bad, "; ".join(bad[:8]) + (" ... (%d)" % len(bad) if len(bad) > 8 else "")
    return "%d words and %d example tokens highlighted" % (len(positions()), n)


case("vscode:package", package)
case("vscode:regexes", regexes_compile)
case("vscode:words", tm_words)
case("vscode:examples", tm_examples)
case("vim:words", vim_words)
case("vim:highlighting", vim_run)

print()
print("%d passed, %d failed in %.1f s" % (len(passed), len(failed), time.time() - T0))
if failed:
    print("failed: " + ", ".join(failed))
sys.exit(1 if failed else 0)
