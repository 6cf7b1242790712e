#!/bin/sh
# Golden test runner: golden.sh FUSEC SPEC
#
# The folder of SPEC says what is compared (run from tests/golden, so paths in diagnostics are
# relative and stable):
#   errors/NAME.fuse  `fusec check` must exit 1 (or the status in a `# exit: N` line); its
#                     stderr must equal NAME.err byte for byte
#   graph/NAME.fuse   `fusec check --dump=graph` stdout must equal NAME.graph
#   ast/NAME.fuse     `fusec check --dump=ast` stdout must equal NAME.ast
#   loops/NAME.fuse   `fusec check --dump=loops` stdout must equal NAME.loops
#   passes/NAME.fuse  `fusec check --dump-after=PASS` stdout must equal NAME.passes; the pass
#                     is the spec's `# args:` --dump-after (dce, the last pass, if none)
# A line `# args: ...` in the spec adds command-line arguments (e.g. --dim H=8).
# With GOLDEN_UPDATE=1 the expectations are rewritten instead of compared.
set -u
fusec=$1
spec=$2
golden_dir=$(cd "$(dirname "$0")/../golden" && pwd)
cd "$golden_dir" || exit 2
case "$spec" in
/*) rel=${spec#"$golden_dir"/} ;;
*) rel=$spec ;;
esac
stage=${rel%%/*}
base=${rel%.fuse}
args=$(sed -n 's/^# args: //p' "$rel" | head -n 1)
want_exit=$(sed -n 's/^# exit: //p' "$rel" | head -n 1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

case "$stage" in
errors)
    expected=$base.err
    # shellcheck disable=SC2086
    "$fusec" check "$rel" $args >"$tmp/stdout" 2>"$tmp/got"
    status=$?
    [ -n "$want_exit" ] || want_exit=1
    if [ "$status" != "$want_exit" ]; then
        echo "FAIL $rel: exit status $status, expected $want_exit"
        cat "$tmp/got"
        exit 1
    fi
    ;;
graph | ast | loops | passes)
    expected=$base.$stage
    dump=--dump=$stage
    if [ "$stage" = passes ]; then
        case " $args" in
        *" --dump-after"*) dump= ;;
        *) dump=--dump-after=dce ;;
        esac
    fi
    # shellcheck disable=SC2086
    "$fusec" check "$rel" $dump $args >"$tmp/got" 2>"$tmp/stderr"
    status=$?
    if [ "$status" != 0 ]; then
        echo "FAIL $rel: exit status $status"
        cat "$tmp/stderr"
        exit 1
    fi
    ;;
*)
    echo "golden.sh: unknown stage folder '$stage'"
    exit 2
    ;;
esac

if [ "${GOLDEN_UPDATE:-0}" = 1 ]; then
    cp "$tmp/got" "$expected"
    echo "updated $expected"
    exit 0
fi
if [ ! -f "$expected" ]; then
    echo "FAIL $rel: missing $expected (run with GOLDEN_UPDATE=1 to create it)"
    cat "$tmp/got"
    exit 1
fi
if ! diff -u "$expected" "$tmp/got"; then
    echo "FAIL $rel: output differs from $expected"
    exit 1
fi
exit 0
