#!/bin/sh
# fusec bench (LANGUAGE.md section 5): with --json, stdout is exactly one line holding one JSON
# object with the documented fields, consistent with each other and with `fusec check`.
# Usage: test_bench.sh FUSEC   (run from the repository root)
set -u
fusec=$1
python=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
cat >"$tmp/g.fuse" <<'SPEC'
fuse 1
graph g(x: f32[2, 8, 9, 11]) -> f32[2, 16, 9, 11] {
    return relu(batchnorm2d(conv2d(x, out=16, kernel=3, padding=1) @conv) @bn)
}
SPEC
if ! "$fusec" bench "$tmp/g.fuse" --json --runs 3 --threads 2 >"$tmp/out" 2>"$tmp/err"; then
    echo "FAIL: bench --json exited with an error"
    cat "$tmp/err"
    failures=$((failures + 1))
fi
flops=$("$fusec" check "$tmp/g.fuse" | sed -n 's/^  flops: \([0-9]*\).*/\1/p')
"$python" - "$tmp/out" "$flops" <<'PY' || failures=$((failures + 1))
import json, sys
text = open(sys.argv[1]).read()
lines = text.splitlines()
assert len(lines) == 1, "stdout has %d lines" % len(lines)
d = json.loads(lines[0])
need = ["median_ms", "min_ms", "max_ms", "runs", "threads", "backend", "flops", "executed_flops",
        "gflops", "peak_fraction", "bytes", "compile_ms", "scratch_bytes", "prepared_bytes"]
missing = [k for k in need if k not in d]
assert not missing, "missing fields %s" % missing
assert d["runs"] == 3 and d["threads"] == 2 and d["backend"] in ("jit", "c"), d
assert 0 < d["min_ms"] <= d["median_ms"] <= d["max_ms"], d
assert d["flops"] == float(sys.argv[2]), (d["flops"], sys.argv[2])
assert abs(d["gflops"] - d["flops"] / d["median_ms"] / 1e6) <= 1e-3 * d["gflops"] + 1e-3, d
assert 0 < d["peak_fraction"] < 1.5, d
assert d["bytes"] > 0 and d["compile_ms"] > 0 and d["prepared_bytes"] > 0, d
assert d["scratch_bytes"] >= 0, d
print("bench --json: ok")
PY
"$fusec" bench "$tmp/g.fuse" --runs 2 >"$tmp/text" 2>/dev/null || failures=$((failures + 1))
grep -q "median" "$tmp/text" || { echo "FAIL: no median in the text report"; failures=$((failures + 1)); }
"$fusec" bench "$tmp/g.fuse" --backend interp >/dev/null 2>&1
[ $? = 2 ] || { echo "FAIL: bench --backend interp should be a usage error"; failures=$((failures + 1)); }
"$fusec" bench "$tmp/g.fuse" --runs 0 >/dev/null 2>&1
[ $? = 2 ] || { echo "FAIL: bench --runs 0 should be a usage error"; failures=$((failures + 1)); }
echo "$((4 - failures)) passed, $failures failed"
[ "$failures" = 0 ]
