#!/usr/bin/python3
"""Runs every code block of docs/pytorch.md, in order, in one scratch folder.

    /usr/bin/python3 tests/python/test_docs.py --fusec build/fusec

```python blocks run in one namespace (this interpreter, with python/ importable); ```sh blocks
run with `sh -e`, with `fusec` and `python3` (this interpreter) first on PATH and the folder
holding a `python` link to the checkout's python/ (so `$PWD/python` works as in a checkout);
a ```fuse block must equal the spec file named just before it ("`NAME.fuse` is now:").
Any other kind of block is an error, so that nothing in the page goes untested.
"""

import contextlib
import io
import os
import re
import subprocess
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from support import REPO, Failure, Suite, indent  # noqa: E402

S = Suite(__doc__, lambda ap: ap.add_argument(
    "--doc", default=os.path.join(REPO, "docs", "pytorch.md")))
DOC = os.path.abspath(S.args.doc)
BLOCK = re.compile(r"^```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def blocks(text):
    for m in BLOCK.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        yield m.group(1), m.group(2), line, text[:m.start()]


def main():
    text = open(DOC).read()
    work = S.dir("docs")
    os.symlink(os.path.join(REPO, "python"), os.path.join(work, "python"))
    bin_dir = S.dir("bin")
    os.symlink(S.fusec, os.path.join(bin_dir, "fusec"))
    os.symlink(sys.executable, os.path.join(bin_dir, "python3"))
    env = dict(os.environ)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    ns = {"__name__": "__main__"}
    found = list(blocks(text))
    if not found:
        S.case("docs:blocks", lambda: S.line(False, "docs:blocks", "no code block in " + DOC))
    for kind, code, line, before in found:
        label = "docs:%s:line%d" % (kind or "plain", line)

        def body(kind=kind, code=code, line=line, before=before, label=label):
            if kind == "python":
                out = io.StringIO()
                cwd = os.getcwd()
                os.chdir(work)
                try:
                    with contextlib.redirect_stdout(out):
                        exec_block(code, line, ns)
                finally:
                    os.chdir(cwd)
                if S.args.verbose:
                    print(indent(out.getvalue()))
                return S.line(True, label, first_line(out.getvalue()))
            if kind == "sh":
                r = subprocess.run(["sh", "-e", "-c", code], cwd=work, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
                outp = r.stdout.decode("utf-8", "replace")
                if S.args.verbose:
                    print(indent(outp))
                if r.returncode != 0:
                    raise Failure("exit status %d\n%s" % (r.returncode, indent(outp)))
                return S.line(True, label, first_line(outp))
            if kind == "fuse":
                names = re.findall(r"`([A-Za-z0-9_.-]+\.fuse)` is now:", before)
                if not names:
                    raise Failure("no \"`NAME.fuse` is now:\" before the block")
                path = os.path.join(work, names[-1])
                got = open(path).read()
                if got != code:
                    raise Failure("%s differs from the block:\n%s" % (names[-1], indent(got)))
                return S.line(True, label, "%s as shown" % names[-1])
            raise Failure("a ```%s block: this test runs only python, sh and fuse blocks" % kind)

        S.case(label, body)


def exec_block(code, line, ns):
    # padded to the page's line numbers: tracebacks and fusec_torch's messages quote the page
    src = "\n" * line + code
    try:
        exec(compile(src, DOC, "exec"), ns)
    except Exception:
        raise Failure("python block failed:\n%s" % indent(traceback.format_exc()))


def first_line(text):
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[0][:100] if lines else ""


main()
S.finish()
