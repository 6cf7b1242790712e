#!/bin/sh
# The generated C of every graph of every example compiles cleanly, with -Wall -Wextra -Werror
# under gcc and clang, with nothing installed (emit-c writes fuse_rt.h beside the output).
# Usage: test_emit_c_examples.sh FUSEC   (run from the repository root)
set -u
fusec=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passes=0
failures=0
compilers="gcc"
command -v clang-14 >/dev/null && compilers="$compilers clang-14"
for spec in examples/*.fuse; do
    for entry in $(sed -n 's/^graph \([A-Za-z_][A-Za-z0-9_]*\).*/\1/p' "$spec"); do
        out="$tmp/$(basename "$spec" .fuse)_$entry"
        mkdir -p "$out"
        if ! "$fusec" emit-c "$spec" --entry "$entry" -o "$out/$entry.c" 2>"$out/emit.log"; then
            echo "FAIL: fusec emit-c $spec --entry $entry"
            cat "$out/emit.log"
            failures=$((failures + 1))
            continue
        fi
        for cc in $compilers; do
            if $cc -std=c11 -Wall -Wextra -Werror -O2 -march=native -c "$out/$entry.c" \
                -o "$out/$entry.$cc.o" 2>"$out/$cc.log"; then
                passes=$((passes + 1))
            else
                echo "FAIL: $cc on the code generated for $spec --entry $entry"
                head -30 "$out/$cc.log"
                failures=$((failures + 1))
            fi
        done
    done
done
echo "$passes passed, $failures failed"
[ "$failures" = 0 ] && [ "$passes" -gt 0 ]
