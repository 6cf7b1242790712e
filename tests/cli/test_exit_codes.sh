#!/bin/sh
# The command line's exit statuses and messages (LANGUAGE.md §5): 0 success, 1 a problem in
# the user's input, 2 a usage error; outputs are written only by a successful run.
# Usage: test_exit_codes.sh FUSEC   (run from the repository root)
set -u
fusec=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
passes=0

# expect STATUS PATTERN -- ARGS...: runs fusec ARGS, checks the status and that stderr matches
# the grep pattern (empty pattern: anything).
expect() {
    want=$1
    pattern=$2
    shift 3
    "$fusec" "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    if [ "$got" != "$want" ]; then
        echo "FAIL: fusec $*: exit $got, expected $want"
        sed 's/^/    /' "$tmp/err"
        failures=$((failures + 1))
    elif [ -n "$pattern" ] && ! grep -q -- "$pattern" "$tmp/err"; then
        echo "FAIL: fusec $*: stderr does not match '$pattern'"
        sed 's/^/    /' "$tmp/err"
        failures=$((failures + 1))
    else
        passes=$((passes + 1))
    fi
}

cat >"$tmp/one.fuse" <<'SPEC'
fuse 1
dim H = 4
graph g(x: f32[2, H]) -> f32[2, H] {
    return relu(x) * 2
}
SPEC
cat >"$tmp/two.fuse" <<'SPEC'
fuse 1
graph a(x: f32[3]) -> f32[3] {
    return x
}
graph b(x: f32[3]) -> f32[3] {
    return -x
}
SPEC
cat >"$tmp/conv.fuse" <<'SPEC'
fuse 1
graph c(x: f32[1, 2, 3, 3]) -> f32[1, 4, 3, 3] {
    return conv2d(x, out=4, kernel=1) @conv
}
SPEC

expect 2 "usage" -- 
expect 0 "" -- --help
expect 0 "" -- --version
expect 2 "did you mean 'check'" -- chek "$tmp/one.fuse"
expect 2 "needs a spec file" -- check
expect 1 "cannot read" -- check "$tmp/missing.fuse"
expect 2 "unknown option '--bogus'" -- check "$tmp/one.fuse" --bogus
expect 2 "did you mean '--weights'" -- check "$tmp/one.fuse" --weigths w.safetensors
expect 2 "malformed --dim" -- check "$tmp/one.fuse" --dim H=abc
expect 2 "malformed --dim" -- check "$tmp/one.fuse" --dim =3
expect 1 "" -- check "$tmp/one.fuse" --dim H=0
expect 1 "" -- check "$tmp/one.fuse" --dim H=-2
expect 1 "out of range" -- check "$tmp/one.fuse" --dim H=99999999999999999999999
expect 0 "" -- check "$tmp/one.fuse" --dim H=7
expect 2 "choose one with --entry" -- check "$tmp/two.fuse"
expect 0 "" -- check "$tmp/two.fuse" --entry b
expect 2 "no graph named 'c'" -- check "$tmp/two.fuse" --entry c
expect 2 "unknown --dump" -- check "$tmp/one.fuse" --dump=bytecode
expect 0 "" -- check "$tmp/one.fuse" --dump=loops --vector-width 8
expect 2 "expected 4, 8 or 16" -- check "$tmp/one.fuse" --dump=loops --vector-width 5
expect 2 "emit-c needs -o" -- emit-c "$tmp/one.fuse"
expect 0 "" -- emit-c "$tmp/one.fuse" -o "$tmp/k.c"
[ -f "$tmp/k.h" ] && [ -f "$tmp/fuse_rt.h" ] || { echo "FAIL: emit-c did not write k.h and fuse_rt.h"; failures=$((failures + 1)); }
expect 1 "cannot create" -- emit-c "$tmp/one.fuse" -o "$tmp/no/such/k.c"
expect 0 "" -- run "$tmp/one.fuse" --random-inputs --backend c --threads 2 --bounds-checks
# The JIT exists in a build with LLVM (fusec --version lists the backends).
if "$fusec" --version | grep -q "backends: jit"; then
    expect 0 "" -- run "$tmp/one.fuse" --random-inputs --backend jit --threads 2
    expect 0 "" -- emit-llvm "$tmp/conv.fuse" -o "$tmp/k.ll" --cpu znver4
    grep -q "fma" "$tmp/k.ll" || { echo "FAIL: emit-llvm wrote no fma"; failures=$((failures + 1)); }
    expect 2 "emit-llvm needs -o" -- emit-llvm "$tmp/one.fuse"
    expect 2 "needs --backend c" -- run "$tmp/one.fuse" --random-inputs --backend jit --bounds-checks
else
    expect 2 "not available" -- run "$tmp/one.fuse" --random-inputs --backend jit
fi

# A C compiler that fails is an internal error; the generated code is kept for inspection.
mkdir "$tmp/cc"
env TMPDIR="$tmp/cc" CC=false "$fusec" run "$tmp/one.fuse" --random-inputs --backend c \
    >/dev/null 2>"$tmp/cc.err"
status=$?
if [ "$status" = 1 ] && grep -q "internal error: the C compiler 'false' failed" "$tmp/cc.err" &&
    ls "$tmp"/cc/fusec-*/kernel.c >/dev/null 2>&1; then
    passes=$((passes + 1))
else
    echo "FAIL: a failing C compiler: exit $status, or no message, or kernel.c not kept"
    cat "$tmp/cc.err"
    failures=$((failures + 1))
fi
expect 2 "unknown backend" -- run "$tmp/one.fuse" --backend cuda --random-inputs

# run: inputs and outputs by name
expect 0 "" -- run "$tmp/one.fuse" --random-inputs --output "$tmp/y.npy"
[ -f "$tmp/y.npy" ] || { echo "FAIL: run did not write y.npy"; failures=$((failures + 1)); }
expect 0 "" -- run "$tmp/one.fuse" --input "$tmp/y.npy" --output out="$tmp/z.npy"
expect 0 "" -- run "$tmp/one.fuse" --input x="$tmp/y.npy"
expect 2 "no input named 'y'" -- run "$tmp/one.fuse" --input y="$tmp/y.npy"
expect 2 "missing --input x" -- run "$tmp/one.fuse" --output "$tmp/w.npy"
expect 2 "no output named 'o'" -- run "$tmp/one.fuse" --input "$tmp/y.npy" --output o="$tmp/w.npy"
expect 1 "has shape \[2,4\]; the graph declares f32\[2,7\]" -- \
    run "$tmp/one.fuse" --dim H=7 --input "$tmp/y.npy" --output "$tmp/w.npy"
[ ! -e "$tmp/w.npy" ] || { echo "FAIL: a failed run left w.npy"; failures=$((failures + 1)); }
expect 1 "" -- run "$tmp/one.fuse" --input "$tmp/missing.npy"
expect 1 "one.fuse: error: not a .npy file" -- run "$tmp/one.fuse" --input "$tmp/one.fuse"
expect 1 "" -- run "$tmp/one.fuse" --input "$tmp/y.npy" --output "$tmp/no/such/dir/y.npy"
expect 1 "cannot read\|No such file\|open" -- check "$tmp/conv.fuse" --weights "$tmp/none.safetensors"
expect 1 "" -- check "$tmp/conv.fuse" --weights "$tmp/one.fuse"

echo "$passes passed, $failures failed"
[ "$failures" = 0 ]
