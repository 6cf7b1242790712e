#!/bin/sh
# The man page (docs/fusec.1) documents every command and option that `fusec --help` lists,
# and nothing that fusec does not accept, so the two cannot drift apart.
# Usage: test_manpage.sh FUSEC (from the repository root)
set -eu
fusec=$1
page=docs/fusec.1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$fusec" --help >"$tmp/help"
# the page's text with roff's escaped hyphens made plain
sed 's/\\-/-/g; s/\\f[BIR]//g' "$page" >"$tmp/page"
head -1 "$page" | grep -q '^\.TH FUSEC 1 ' || { echo "FAIL: $page has no .TH header"; exit 1; }
fail=0
for opt in $(grep -o -- '--[a-z][a-z-]*' "$tmp/help" | sort -u); do
    grep -q -- "$opt" "$tmp/page" || { echo "FAIL: $opt is in --help but not in $page"; fail=1; }
done
for opt in $(grep -o -- '--[a-z][a-z-]*' "$tmp/page" | sort -u); do
    grep -q -- "$opt" "$tmp/help" || { echo "FAIL: $opt is in $page but not in --help"; fail=1; }
done
for cmd in $(sed -n 's/^  fusec \([a-z][a-z-]*\) .*/\1/p' "$tmp/help" | sort -u); do
    grep -q "^\.B fusec $cmd\$" "$tmp/page" || { echo "FAIL: command $cmd not in SYNOPSIS"; fail=1; }
done
[ $fail = 0 ] || exit 1
echo "1 passed, 0 failed"
