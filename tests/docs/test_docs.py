"""The code in the documentation works as written.

Usage: /usr/bin/python3 test_docs.py --repo ROOT --build BUILD_DIR --fusec PATH/fusec
                                     --library PATH/libfusec.so --cc CC [--cflags FLAGS]

For README.md, docs/*.md and examples/README.md:
- every ```c block that defines main() is compiled against fusec.h and libfusec.so (-Wall
  -Wextra -Werror) and run: it must exit 0;
- every `fusec ...` command line in a ```sh block or an indented code block must name a fusec
  command and only options that `fusec --help` lists, so the docs cannot drift from the
  command line;
- a file that contains the line `<!-- doc-test: run -->` has its ```sh blocks run in order, in
  a fresh directory holding links to examples/ and python/ (as in a checkout), with the build
  installed into a temporary prefix (`--build`): its bin/ first on PATH, its pkg-config files
  found, its libraries on LD_LIBRARY_PATH (and Debian's python3, which has torch). Each block
  must exit 0.
Prints "N passed, M failed" and exits 1 on any failure.
"""
import argparse
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile

RUN_MARKER = "<!-- doc-test: run -->"


def code_blocks(text):
    """(language, code, line) for each fenced block."""
    blocks = []
    for m in re.finditer(r"^```([A-Za-z0-9_+-]*)[^\n]*\n(.*?)^```", text, re.M | re.S):
        blocks.append((m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1))
    return blocks


def command_lines(code):
    """Shell lines with backslash continuations joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    for line in joined.splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            yield line


def help_vocabulary(fusec):
    text = subprocess.run([fusec, "--help"], capture_output=True, text=True).stdout
    commands = set(re.findall(r"^  fusec ([a-z][a-z-]*) ", text, re.M))
    options = set(re.findall(r"--[a-z][a-z-]*", text)) | {"-o", "-O0"}
    return commands, options


def check_fusec_line(line, commands, options):
    """An error message, or None."""
    if not re.search(r"(^|[\s/])fusec\s", line):
        return None
    try:
        words = shlex.split(line)
    except ValueError as e:
        return "cannot parse: %s" % e
    for i, word in enumerate(words):
        if os.path.basename(word) != "fusec" or i + 1 >= len(words):
            continue
        command = words[i + 1]
        if command.startswith("-"):
            if command not in ("--help", "--version"):
                return "unknown fusec option %s" % command
            continue
        if command not in commands:
            return "unknown fusec command '%s'" % command
        for w in words[i + 2:]:
            if w in ("|", "&&", ";", ">", "2>"):
                break
            if w.startswith("-"):
                name = w.split("=")[0]
                if name not in options:
                    return "option %s is not in fusec --help" % name
    return None


def run_c_block(code, args, workdir, label):
    src = os.path.join(workdir, "doc.c")
    exe = os.path.join(workdir, "doc")
    with open(src, "w") as f:
        f.write(code)
    root = args.repo
    cmd = [args.cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", os.path.join(root, "compiler"),
           "-I", os.path.join(root, "runtime"), src, "-o", exe, args.library,
           "-Wl,-rpath," + os.path.dirname(os.path.abspath(args.library))]
    cmd[1:1] = shlex.split(args.cflags)
    build = subprocess.run(cmd, capture_output=True, text=True)
    if build.returncode != 0:
        return "%s: does not compile:\n%s" % (label, build.stderr)
    run = subprocess.run([exe], capture_output=True, text=True, cwd=root, timeout=300)
    if run.returncode != 0:
        return "%s: exits %d:\n%s%s" % (label, run.returncode, run.stdout, run.stderr)
    return None


def run_sh_block(code, env, workdir, label):
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", code], capture_output=True, text=True,
                         cwd=workdir, env=env, timeout=900)
    if run.returncode != 0:
        return "%s: exits %d:\n%s%s" % (label, run.returncode, run.stdout[-3000:],
                                        run.stderr[-3000:])
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--fusec", required=True)
    ap.add_argument("--library", required=True)
    ap.add_argument("--cc", default="cc")
    ap.add_argument("--cflags", default="")
    ap.add_argument("--build", help="build directory to install for the run-marked files")
    args = ap.parse_args()
    commands, options = help_vocabulary(args.fusec)
    files = [os.path.join(args.repo, "README.md"), os.path.join(args.repo, "examples", "README.md")]
    files += sorted(glob.glob(os.path.join(args.repo, "docs", "*.md")))
    prefix_dir = tempfile.TemporaryDirectory()
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(os.path.abspath(args.fusec)), "/usr/bin",
                                   env.get("PATH", "")])
    env["CC"] = args.cc
    env["CFLAGS"] = args.cflags
    if args.build:
        prefix = prefix_dir.name
        subprocess.run(["cmake", "--install", args.build, "--prefix", prefix], check=True,
                       capture_output=True)
        pcs = glob.glob(os.path.join(prefix, "**", "fusec.pc"), recursive=True)
        libdir = os.path.dirname(os.path.dirname(pcs[0]))
        env["PATH"] = os.pathsep.join([os.path.join(prefix, "bin"), env["PATH"]])
        env["PKG_CONFIG_PATH"] = os.path.dirname(pcs[0])
        env["LD_LIBRARY_PATH"] = libdir
    passed = failed = 0
    for path in files:
        with open(path) as f:
            text = f.read()
        rel = os.path.relpath(path, args.repo)
        run_all = RUN_MARKER in text
        with tempfile.TemporaryDirectory() as workdir:
            for tree in ("examples", "python"):
                os.symlink(os.path.join(args.repo, tree), os.path.join(workdir, tree))
            for lang, code, line in code_blocks(text):
                label = "%s:%d" % (rel, line)
                errors = []
                if lang == "c" and re.search(r"\bint main\s*\(", code):
                    errors.append(run_c_block(code, args, workdir, label))
                if lang in ("sh", "bash", "console"):
                    for cmd in command_lines(code):
                        problem = check_fusec_line(cmd, commands, options)
                        if problem:
                            errors.append("%s: %s: %s" % (label, cmd, problem))
                    if run_all and lang != "console":
                        errors.append(run_sh_block(code, env, workdir, label))
                errors = [e for e in errors if e]
                if lang not in ("c", "sh", "bash", "console") or (
                        lang == "c" and not re.search(r"\bint main\s*\(", code)
                        and not errors):
                    continue
                if errors:
                    failed += 1
                    print("FAIL " + "\n".join(errors))
                else:
                    passed += 1
            # indented (4-space) code blocks holding fusec commands
            indented = re.sub(r"\\\n {4,}", " ", text)
            for m in re.finditer(r"^ {4}(fusec .*)$", indented, re.M):
                label = "%s:%d" % (rel, indented.count("\n", 0, m.start()) + 1)
                problem = check_fusec_line(m.group(1), commands, options)
                if problem:
                    failed += 1
                    print("FAIL %s: %s: %s" % (label, m.group(1), problem))
                else:
                    passed += 1
    prefix_dir.cleanup()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
