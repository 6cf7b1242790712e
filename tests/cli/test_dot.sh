#!/bin/sh
# fusec dot: the seed block as written (with its concat and batchnorm) and after the passes
# (neither left; the folded weights in the create-time cluster; one cluster per run kernel,
# named as in --dump=loops); an unwritable -o is exit 1 with nothing left behind.
# Usage: test_dot.sh FUSEC (from the repository root)
set -eu
fusec=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
args="examples/concat_conv.fuse --entry fuse_hl --dim C=8,H=8,W=8"
# shellcheck disable=SC2086
"$fusec" dot $args -o "$tmp/seed.dot"
# shellcheck disable=SC2086
"$fusec" check $args --dump=loops >"$tmp/loops"
fail() { echo "FAIL: $1"; exit 1; }
written=$(sed -n '/cluster_a {/,/cluster_b {/p' "$tmp/seed.dot")
after=$(sed -n '/cluster_b {/,$p' "$tmp/seed.dot")
echo "$written" | grep -q 'label="concat axis=1' || fail "no concat as written"
echo "$written" | grep -q 'label="batchnorm' || fail "no batchnorm as written"
echo "$after" | grep -q 'label="concat' && fail "a concat is left after the passes"
echo "$after" | grep -q 'label="batchnorm' && fail "a batchnorm is left after the passes"
echo "$after" | grep -q 'create time (once)' || fail "no create-time cluster"
kernels=$(echo "$after" | sed -n 's/.*label="kernel \([a-z0-9_]*\)".*/\1/p')
[ -n "$kernels" ] || fail "no kernel clusters"
for k in $kernels; do
    grep -q "kernel $k\b" "$tmp/loops" || grep -q "$k" "$tmp/loops" || fail "kernel $k not in --dump=loops"
done
[ "$(grep -c '{' "$tmp/seed.dot")" = "$(grep -c '}' "$tmp/seed.dot")" ] || fail "unbalanced braces"
# stdout by default, the same text
# shellcheck disable=SC2086
"$fusec" dot $args | cmp -s - "$tmp/seed.dot" || fail "stdout differs from -o"
# an output path in a missing directory
# shellcheck disable=SC2086
if "$fusec" dot $args -o "$tmp/missing/seed.dot" 2>"$tmp/err"; then fail "exit 0"; fi
grep -q "missing/seed.dot" "$tmp/err" || fail "message does not name the file"
[ ! -e "$tmp/missing" ] || fail "something was created"
echo "$(echo "$kernels" | wc -w) kernels; 1 passed, 0 failed"
