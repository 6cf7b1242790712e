#!/bin/sh
# fusec bench (LANGUAGE.md section 5): with --json, stdout is exactly one line holding one JSON
# object with the documented fields, consistent with each other and with `fusec check`; with
# several graphs, one table or one JSON line per graph; every graph of bench/*.fuse runs.
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
# Several graphs: --entry a,b (and no --entry on a file of several graphs) gives one table, or
# with --json one line per graph, in the order asked; an even --runs takes the mean of the two
# middle times.
cat >>"$tmp/g.fuse" <<'SPEC'
graph h(x: f32[2, 8, 9, 11]) -> f32[2, 8, 9, 11] {
    return sigmoid(x) * x
}
SPEC
if ! "$fusec" bench "$tmp/g.fuse" --entry h,g --json --runs 2 >"$tmp/two" 2>"$tmp/err"; then
    echo "FAIL: bench --entry h,g --json exited with an error"
    cat "$tmp/err"
    failures=$((failures + 1))
fi
"$python" - "$tmp/two" <<'PY' || failures=$((failures + 1))
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]).read().splitlines()]
assert [r["graph"] for r in rows] == ["h", "g"], rows
# g: conv 16x8x3x3 (1152), its bias (16), BatchNorm's four vectors (4 x 16); h: none
assert [r["params"] for r in rows] == [0, 1152 + 16 + 64], rows
for r in rows:
    assert r["runs"] == 2 and abs(r["median_ms"] - (r["min_ms"] + r["max_ms"]) / 2) < 1e-3, r
assert rows[0]["peak_gflops"] == rows[1]["peak_gflops"], rows
print("bench --entry h,g --json: ok")
PY
if "$fusec" bench "$tmp/g.fuse" --runs 3 >"$tmp/table" 2>"$tmp/err"; then
    [ "$(grep -c -E '^(g|h) +[0-9]+ ' "$tmp/table")" = 2 ] && grep -q "^graph  *parameters" "$tmp/table" ||
        { echo "FAIL: bench of a two-graph file printed no table:"; cat "$tmp/table"; failures=$((failures + 1)); }
else
    echo "FAIL: bench of a two-graph file exited with an error"
    cat "$tmp/err"
    failures=$((failures + 1))
fi
"$fusec" bench "$tmp/g.fuse" --entry g,,h >/dev/null 2>&1
[ $? = 2 ] || { echo "FAIL: bench --entry g,,h should be a usage error"; failures=$((failures + 1)); }
# The benchmark specs (bench/*.fuse: the workloads of bench/run.py and the stages that
# docs/performance.md times) stay valid: every graph of each compiles and runs, at small sizes.
for spec in bench/*.fuse; do
    n=$(grep -c '^graph ' "$spec")
    if "$fusec" bench "$spec" --dim C=16,H=12,W=12 --runs 1 --threads 2 >"$tmp/spec" 2>"$tmp/err"; then
        [ "$(grep -c -E '^[a-z0-9_]+ +[0-9]+ ' "$tmp/spec")" = "$n" ] || [ "$n" = 1 ] ||
            { echo "FAIL: $spec: not one row per graph"; cat "$tmp/spec"; failures=$((failures + 1)); }
    else
        echo "FAIL: bench $spec at small sizes exited with an error"
        cat "$tmp/err"
        failures=$((failures + 1))
    fi
done
echo "$((9 - failures)) passed, $failures failed"
[ "$failures" = 0 ]
