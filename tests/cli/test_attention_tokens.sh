#!/bin/sh
# Self-attention over 128x128 = 16384 tokens (issue: attention after fusion): the written-out
# form and mha run in a small, bounded memory because neither forms the 16384 x 16384 score
# matrix (1 GiB per head in f32; mha has 8 heads). Each run's peak RSS must stay below 768 MiB
# (about 130 MiB in a Release build): its tensors are 8 MiB in and 8 MiB out, the rest is
# O(tokens x head size) scratch and the compiler itself; under AddressSanitizer the quarantine
# of freed memory is kept small so that it does not count. The values at small sizes are
# checked against PyTorch by tests/conformance.
# Usage: test_attention_tokens.sh FUSEC   (run from the repository root)
set -u
fusec=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$fusec" "$tmp" <<'PY'
import os, resource, subprocess, sys
import numpy as np

fusec, tmp = sys.argv[1], sys.argv[2]
LIMIT_MIB = 768
env = dict(os.environ)
env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=16"

failures = 0
for entry in ["attn_explicit", "attn_mha"]:
    out = "%s/%s.npy" % (tmp, entry)
    cmd = [fusec, "run", "examples/self_attention.fuse", "--entry", entry, "--dim", "H=128,W=128",
           "--threads", "2", "--random-inputs", "--output", out]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    # the largest peak of the children so far: this run's, or an earlier one already checked
    rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if p.returncode != 0:
        print("FAIL %s: exit %d\n%s" % (entry, p.returncode, p.stderr))
        failures += 1
        continue
    y = np.load(out)
    problems = []
    if y.shape != (1, 128, 128, 128):
        problems.append("shape %s" % (y.shape,))
    if not np.isfinite(y).all():
        problems.append("non-finite values")
    if rss_mib >= LIMIT_MIB:
        problems.append("peak RSS %.0f MiB >= %d MiB" % (rss_mib, LIMIT_MIB))
    if problems:
        print("FAIL %s: %s" % (entry, ", ".join(problems)))
        failures += 1
    else:
        print("ok   %s: 16384 tokens, peak RSS %.0f MiB" % (entry, rss_mib))
sys.exit(1 if failures else 0)
PY
