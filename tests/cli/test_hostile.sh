#!/bin/sh
# Hostile input files, end to end: fusec reads specs, weights and tensors that people and their
# tools produce, and writes where it is told. Whatever those files hold, fusec must not crash,
# hang or leave anything behind (LANGUAGE.md §5): each case below must exit 1 (2 only for a
# usage error), name the offending file and its problem on stderr, show no sign of a crash, and
# leave every file under the work folder as it was (no output, no temporary, no overwritten
# input). The malformed-spec side is covered by tests/golden/errors; this script covers the
# weight (safetensors) side, the tensor (.npy) side and the file system side.
#
# The files are made here with printf, byte by byte, so each case shows what it feeds fusec.
# The graphs are in tests/cli/hostile/tiny.fuse.
# Usage: sh tests/cli/test_hostile.sh FUSEC   (run from the repository root)
set -u
fusec=$1
spec=$(cd "$(dirname "$0")/hostile" && pwd)/tiny.fuse
[ -f "$spec" ] || {
    echo "FAIL: cannot find tests/cli/hostile/tiny.fuse beside $0"
    exit 1
}
tmp=$(mktemp -d)
trap 'chmod -R u+rwx "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
work=$tmp/work # every file fusec may see; nothing in it may change in a failing case
in=$work/in    # the hostile inputs
out=$work/out  # where outputs go; emptied after every case
mkdir "$work" "$in" "$out"
failures=0
passes=0
skips=0
cases=0
last_case=
kept=
file_limit=
runner=

# A timeout turns a hang into a failure (status 124) where timeout(1) exists.
if command -v timeout >/dev/null 2>&1; then
    limit="timeout 20"
else
    limit=
fi
# Permission cases need an unprivileged user: root reads and writes through any mode bits. As
# root, they run as nobody where setpriv(1) can switch to it and nobody can run fusec from where
# it is (a checkout under a private folder, such as one made by mktemp -d, is out of its reach;
# nobody must also reach the work folder, made so below), and are skipped otherwise.
as_user=
can_deny=1
if [ "$(id -u)" = 0 ]; then
    nobody="setpriv --reuid=65534 --regid=65534 --clear-groups"
    # shellcheck disable=SC2086 # as the cases run it (see hostile)
    if $nobody $limit "$fusec" --version >/dev/null 2>&1; then
        as_user=$nobody
        chmod 755 "$tmp" "$work" "$in" "$out"
    else
        can_deny=0
    fi
fi

# ---- making files ----

# The helpers below use only shell built-ins, so that making the files stays fast. In the C
# locale ${#var} counts bytes.
LC_ALL=C
export LC_ALL

# le N BYTES: N (0 <= N < 2^63) as BYTES little-endian bytes.
le() {
    le_n=$1
    le_k=0
    while [ "$le_k" -lt "$2" ]; do
        le_b=$((le_n % 256))
        # shellcheck disable=SC2059
        printf "\\$((le_b / 64))$((le_b / 8 % 8))$((le_b % 8))"
        le_n=$((le_n / 256))
        le_k=$((le_k + 1))
    done
}

# zeros N: N zero bytes (built-ins up to 4 KiB).
zeros() {
    if [ "$1" -gt 4096 ]; then
        head -c "$1" /dev/zero
        return
    fi
    zeros_n=$1
    while [ "$zeros_n" -ge 8 ]; do
        printf '\0\0\0\0\0\0\0\0'
        zeros_n=$((zeros_n - 8))
    done
    while [ "$zeros_n" -gt 0 ]; do
        printf '\0'
        zeros_n=$((zeros_n - 1))
    done
}

# vals K...: one float32 per K (0 <= K < 32), little-endian: bytes 00 00 (0x80+K) 3f, the
# positive number 1 + K/128. Distinct for each K, so any misplaced element shows.
vals() {
    for vals_k in "$@"; do
        # shellcheck disable=SC2059
        printf "\\000\\000\\2$((vals_k / 8))$((vals_k % 8))\\077"
    done
}

# st FILE HEADER [DATA]: a safetensors file: the header's length (u64), the header, then DATA
# zero bytes (default 64: fc.weight [4,3] and fc.bias [4] in F32).
st() {
    { le "${#2}" 8; printf %s "$2"; zeros "${3-64}"; } >"$1"
}

# ent KEY DTYPE SHAPE OFFSETS: one header entry, "KEY":{"dtype":...}.
ent() {
    printf '"%s":{"dtype":"%s","shape":%s,"data_offsets":%s}' "$1" "$2" "$3" "$4"
}

# The two entries of a good weights file for graph lin.
W=$(ent fc.weight F32 '[4,3]' '[0,48]')
B=$(ent fc.bias F32 '[4]' '[48,64]')

# npy FILE DICT [K...]: a .npy file: the preamble (magic, version 1.0, u16 header length),
# the header DICT padded with spaces and a newline to a multiple of 64 bytes as numpy writes
# it, then the data: vals K...
npy() {
    npy_pad=$(((10 + ${#2} + 1 + 63) / 64 * 64 - 10 - ${#2} - 1))
    {
        printf '\223NUMPY\001\000'
        le $((${#2} + npy_pad + 1)) 2
        printf "%s%${npy_pad}s\n" "$2" ''
    } >"$1"
    npy_file=$1
    shift 2
    vals "$@" >>"$npy_file"
}

# dict DESCR FORTRAN SHAPE: a .npy header dict, as numpy writes it.
dict() {
    printf "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" "$1" "$2" "$3"
}

# The header of a good input for graphs lin, copy and pair: float32 [2, 3] in C order.
X=$(dict '<f4' False '(2, 3)')

# ---- checking ----

# snapshot: every path under $work with its inode, mode, size and modification time (to the
# nanosecond), so that a file created, removed, replaced or written shows. Folders are listed
# by name only: a temporary file created and removed again changes their times.
snapshot() {
    find "$work" -type d -printf '%p/\n' -o -printf '%p %i %m %s %T@\n'
}

fail() {
    echo "FAIL: $case_name: $*"
    sed 's/^/    /' "$tmp/err" | head -n 20
    failures=$((failures + 1))
}

# hostile NAME STATUS FILE PHRASE ARGS...: one run of fusec ARGS on a hostile input. Requires
# exit STATUS (never 124, a timeout, nor 128 or more, a signal), stderr with an error naming
# FILE and containing PHRASE (fixed strings), no sign of a crash, and every file under $work
# as it was. Several runs with the same NAME count as one case. Empties $out afterwards.
hostile() {
    case_name=$1
    want=$2
    file=$3
    phrase=$4
    shift 4
    if [ "$case_name" != "$last_case" ]; then
        cases=$((cases + 1))
        last_case=$case_name
    fi
    failed_before=$failures
    before=$(snapshot)
    if [ -n "$file_limit" ]; then
        (
            trap '' XFSZ
            ulimit -f "$file_limit"
            # shellcheck disable=SC2086 # $runner and $limit are commands with arguments
            exec $runner $limit "$fusec" "$@"
        ) >"$tmp/out" 2>"$tmp/err" </dev/null
    else
        # shellcheck disable=SC2086
        $runner $limit "$fusec" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    fi
    got=$?
    after=$(snapshot)
    err=$(cat "$tmp/err")
    case $err in
    *AddressSanitizer* | *LeakSanitizer* | *"runtime error:"* | *Segmentation* | \
        *"core dumped"* | *"internal error"* | *"assertion failed"*)
        crashed=1
        ;;
    *) crashed=0 ;;
    esac
    if [ "$got" -ge 124 ]; then
        fail "exit $got: a crash, a signal or a hang (fusec $*)"
    elif [ "$got" != "$want" ]; then
        fail "exit $got, expected $want (fusec $*)"
    elif [ "$crashed" = 1 ]; then
        fail "a crash signature on stderr"
    else
        case $err in
        *error:*) ;;
        *) fail "no 'error:' on stderr" ;;
        esac
        case $err in
        *"$file"*) ;;
        *) fail "stderr does not name '$file'" ;;
        esac
        case $err in
        *"$phrase"*) ;;
        *) fail "stderr does not say '$phrase'" ;;
        esac
        if [ "$before" != "$after" ]; then
            fail "files changed under the work folder:"
            printf '%s\n' "$before" >"$tmp/before"
            printf '%s\n' "$after" >"$tmp/after"
            diff "$tmp/before" "$tmp/after" | sed 's/^/    /'
        fi
        [ "$failed_before" != "$failures" ] || passes=$((passes + 1))
    fi
    if [ -n "$kept" ]; then
        cmp -s "$tmp/kept" "$kept" || fail "$kept is not what it was, byte for byte"
        kept=
    fi
    empty_out
}

# empty_out: leaves $out empty for the next case.
empty_out() {
    for f in "$out"/* "$out"/.[!.]*; do
        if [ -e "$f" ] || [ -L "$f" ]; then
            rm -rf "$out"
            mkdir "$out"
            break
        fi
    done
}

# keep PATH: the next case must leave the existing file PATH as it is, byte for byte.
keep() {
    cp "$1" "$tmp/kept"
    kept=$1
}

# limited BLOCKS ARGS...: hostile ARGS on a file system that refuses writes past BLOCKS
# blocks (ulimit -f; 512 or 1024 bytes each), as a full disk would. SIGXFSZ is ignored, so
# the write fails with EFBIG and fusec must clean up after it.
limited() {
    file_limit=$1
    shift
    hostile "$@"
    file_limit=
}

# unprivileged NAME COMMAND ARGS...: COMMAND ARGS (hostile, weights or tensor), where mode
# bits must deny access, so as an unprivileged user; skipped (as case NAME) if there is none.
unprivileged() {
    if [ "$can_deny" = 0 ]; then
        skip "$1" "running as root, which mode bits do not stop; nobody cannot run fusec here"
        return
    fi
    shift
    runner=$as_user
    "$@"
    runner=
}

# skip NAME WHY: a case that cannot run here; reported, counted, and never a pass.
skip() {
    echo "SKIP: $1: $2"
    empty_out
    cases=$((cases + 1))
    skips=$((skips + 1))
}

# weights NAME PHRASE: the hostile weights file $in/NAME.safetensors through `run`, which
# must then write no output. (`check` binds weights with the same code; a few cases below
# run it too.)
weights() {
    hostile "st-$1" 1 "$in/$1.safetensors" "$2" \
        run "$spec" --entry lin --weights "$in/$1.safetensors" --input "$in/x.npy" \
        --output "$out/y.npy" --backend interp
}

# checked NAME PHRASE: the same file through `check --weights`, as part of the same case.
checked() {
    last_case=st-$1
    hostile "st-$1" 1 "$in/$1.safetensors" "$2" \
        check "$spec" --entry lin --weights "$in/$1.safetensors"
}

# tensor NAME PHRASE: the hostile input $in/NAME.npy through `run`, which must write nothing.
tensor() {
    hostile "npy-$1" 1 "$in/$1.npy" "$2" \
        run "$spec" --entry copy --input "$in/$1.npy" --output "$out/y.npy" --backend interp
}

# ok WHAT ARGS...: a control run that must succeed (so that the failures above fail for the
# reason they name, not because the fixtures are wrong).
ok() {
    what=$1
    shift
    "$fusec" "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    if [ "$got" = 0 ]; then
        passes=$((passes + 1))
    else
        case_name="control: $what"
        fail "exit $got, expected 0 (fusec $*)"
    fi
}

# ---- the fixtures, and controls that they are good ----

npy "$in/x.npy" "$X" 0 1 2 3 4 5
st "$in/good.safetensors" "{$W,$B}"
ok "good weights" check "$spec" --entry lin --weights "$in/good.safetensors"
ok "good run" run "$spec" --entry lin --weights "$in/good.safetensors" --input "$in/x.npy" \
    --output "$tmp/y.npy" --backend interp
ok "good input" run "$spec" --entry copy --input "$in/x.npy" --output "$tmp/y.npy" --backend interp
cmp -s "$in/x.npy" "$tmp/y.npy" || {
    case_name="control: copy"
    fail "relu(x) is not x byte for byte"
}

# ---- safetensors: the 8-byte length and the header around it ----

: >"$in/empty.safetensors"
weights empty "0 bytes, too short for the 8-byte header length"
printf 'abcde' >"$in/short.safetensors"
weights short "5 bytes, too short for the 8-byte header length"
{ le 1000 8; printf '{}'; } >"$in/length-past-end.safetensors"
weights length-past-end "header length 1000 exceeds the file size (10 bytes)"
{ printf '\000\000\000\000\000\000\000\200'; printf '{}'; } >"$in/length-2-63.safetensors"
weights length-2-63 "header length 9223372036854775808 exceeds the file size"
{ printf '\377\377\377\377\377\377\377\377{}'; } >"$in/length-all-ones.safetensors"
weights length-all-ones "header length 18446744073709551615 exceeds the file size"
{ le 0 8; zeros 64; } >"$in/length-zero.safetensors"
weights length-zero "header length is 0"
# A header of 100 MiB + 1 byte in a sparse file of that size: over safetensors' own limit.
le $((100 * 1048576 + 1)) 8 >"$in/length-over-limit.safetensors"
dd if=/dev/null of="$in/length-over-limit.safetensors" bs=1 seek=$((100 * 1048576 + 9)) 2>/dev/null
weights length-over-limit "exceeds the limit of 100 MiB"
rm "$in/length-over-limit.safetensors"

# ---- safetensors: a header that is not the JSON it should be ----

st "$in/not-json.safetensors" 'PK\003\004 this is a zip file'
weights not-json "header is not valid JSON"
st "$in/array.safetensors" '[{"dtype":"F32"}]'
weights array "header is an array, not a JSON object"
st "$in/string.safetensors" '"fc.weight"'
weights string "header is a string, not a JSON object"
st "$in/blank.safetensors" '        '
weights blank "header is not valid JSON: expected a value at the end of the header"
st "$in/truncated-json.safetensors" "{$W,\"fc.bias\":{\"dtype\":\"F3"
weights truncated-json "unterminated string at the end of the header (truncated?)"
st "$in/trailing-garbage.safetensors" "{$W,$B}}"
weights trailing-garbage "trailing characters after the JSON value"
st "$in/trailing-comma.safetensors" "{$W,$B,}"
weights trailing-comma "expected a string key"
st "$in/single-quotes.safetensors" "{'fc.weight':{}}"
weights single-quotes "found a single quote"
{ le 4 8; printf '{\000}'; zeros 65; } >"$in/nul-byte.safetensors"
weights nul-byte "found byte 0x00"
st "$in/bad-utf8.safetensors" "{\"fc.w$(printf '\377')eight\":{}}"
weights bad-utf8 "invalid UTF-8"
st "$in/lone-surrogate.safetensors" '{"fc.weight\ud800":{}}'
weights lone-surrogate "unpaired surrogate"
st "$in/nul-in-key.safetensors" "{$B,$(ent 'fc.weight\u0000' F32 '[4,3]' '[0,48]')}"
weights nul-in-key "contains a NUL character"
deep=$(printf '%0100d' 0 | tr 0 '[')$(printf '%0100d' 0 | tr 0 ']')
st "$in/deep-nesting.safetensors" "{\"__metadata__\":$deep,$W,$B}"
weights deep-nesting "nesting deeper than 64 levels"

# ---- safetensors: entries that lie ----

st "$in/duplicate-key.safetensors" "{$W,$B,$W}"
weights duplicate-key "duplicate key 'fc.weight'"
st "$in/duplicate-metadata.safetensors" "{\"__metadata__\":{},$W,$B,\"__metadata__\":{}}"
weights duplicate-metadata "duplicate key '__metadata__'"
st "$in/duplicate-field.safetensors" \
    "{$B,"'"fc.weight":{"dtype":"F32","dtype":"F32","shape":[4,3],"data_offsets":[0,48]}}'
weights duplicate-field "entry 'fc.weight': duplicate field 'dtype'"
st "$in/unknown-field.safetensors" \
    "{$B,"'"fc.weight":{"dtype":"F32","shape":[4,3],"offsets":[0,48]}}'
weights unknown-field "entry 'fc.weight': unknown field 'offsets'"
st "$in/no-dtype.safetensors" "{$B,"'"fc.weight":{"shape":[4,3],"data_offsets":[0,48]}}'
weights no-dtype "entry 'fc.weight' has no 'dtype'"
st "$in/no-shape.safetensors" "{$B,"'"fc.weight":{"dtype":"F32","data_offsets":[0,48]}}'
weights no-shape "entry 'fc.weight' has no 'shape'"
st "$in/no-offsets.safetensors" "{$B,"'"fc.weight":{"dtype":"F32","shape":[4,3]}}'
weights no-offsets "entry 'fc.weight' has no 'data_offsets'"
st "$in/entry-not-object.safetensors" "{$B,"'"fc.weight":[0,48]}'
weights entry-not-object "entry 'fc.weight' is an array, not an object"
st "$in/dtype-not-string.safetensors" \
    "{$B,"'"fc.weight":{"dtype":4,"shape":[4,3],"data_offsets":[0,48]}}'
weights dtype-not-string "entry 'fc.weight': dtype is a number, not a string"
st "$in/unknown-dtype.safetensors" "{$B,$(ent fc.weight F128 '[4,3]' '[0,48]')}"
weights unknown-dtype "entry 'fc.weight': unknown dtype 'F128'"
st "$in/shape-not-array.safetensors" "{$B,$(ent fc.weight F32 '"4x3"' '[0,48]')}"
weights shape-not-array "entry 'fc.weight': shape is a string, not an array"
st "$in/shape-negative.safetensors" "{$B,$(ent fc.weight F32 '[-4,-3]' '[0,48]')}"
weights shape-negative "entry 'fc.weight': shape[0] -4 is negative"
st "$in/shape-fraction.safetensors" "{$B,$(ent fc.weight F32 '[4,3.0]' '[0,48]')}"
weights shape-fraction "entry 'fc.weight': shape[1] 3.0 is not an integer"
st "$in/shape-2-64.safetensors" "{$B,$(ent fc.weight F32 '[18446744073709551616,3]' '[0,48]')}"
weights shape-2-64 "shape[0] 18446744073709551616 does not fit in 64 bits"
st "$in/shape-2-63.safetensors" "{$B,$(ent fc.weight F32 '[9223372036854775808,3]' '[0,48]')}"
weights shape-2-63 "shape[0] 9223372036854775808 exceeds 2^63-1"
# 2^32 x 2^32 elements of 4 bytes: the byte count overflows 64 bits.
st "$in/shape-bytes-overflow.safetensors" \
    "{$B,$(ent fc.weight F32 '[4294967296,4294967296]' '[0,48]')}"
weights shape-bytes-overflow "needs more than 2^64 bytes"
st "$in/shape-rank-9.safetensors" "{$B,$(ent fc.weight F32 '[1,1,1,1,1,1,1,4,3]' '[0,48]')}"
weights shape-rank-9 "entry 'fc.weight': shape has more than 8 dimensions"
st "$in/offsets-past-end.safetensors" "{$B,$(ent fc.weight F32 '[4,3]' '[64,112]')}"
weights offsets-past-end \
    "entry 'fc.weight': data_offsets [64, 112] go past the end of the data area (64 bytes)"
st "$in/offsets-huge.safetensors" \
    "{$B,$(ent fc.weight F32 '[4,3]' '[18446744073709551600,18446744073709551615]')}"
weights offsets-huge "go past the end of the data area"
st "$in/offsets-reversed.safetensors" "{$B,$(ent fc.weight F32 '[4,3]' '[48,0]')}"
weights offsets-reversed "entry 'fc.weight': data_offsets [48, 0] are reversed"
st "$in/offsets-three.safetensors" "{$B,$(ent fc.weight F32 '[4,3]' '[0,48,64]')}"
weights offsets-three "entry 'fc.weight': data_offsets has more than 2 elements"
st "$in/offsets-one.safetensors" "{$B,$(ent fc.weight F32 '[4,3]' '[48]')}"
weights offsets-one "entry 'fc.weight': data_offsets has 1 element, not 2"
st "$in/offsets-negative.safetensors" "{$B,$(ent fc.weight F32 '[4,3]' '[-16,32]')}"
weights offsets-negative "data_offsets[0] -16 is negative"
# fc.bias [48, 64) and fc.weight [16, 64): the same bytes read as two tensors.
st "$in/offsets-overlap.safetensors" "{$B,$(ent fc.weight F32 '[4,3]' '[16,64]')}"
weights offsets-overlap "entries 'fc.weight' [16, 64) and 'fc.bias' [48, 64) overlap"
st "$in/size-short.safetensors" "{$B,$(ent fc.weight F32 '[4,3]' '[0,44]')}"
weights size-short "entry 'fc.weight': shape [4,3] of F32 needs 48 bytes, data_offsets give 44"
st "$in/size-long.safetensors" \
    "{$(ent fc.weight F32 '[4,3]' '[0,52]'),$(ent fc.bias F32 '[4]' '[52,68]')}" 68
weights size-long "needs 48 bytes, data_offsets give 52"
# The header promises 64 bytes of data; the file ends 16 bytes into it.
st "$in/data-truncated.safetensors" "{$W,$B}" 16
weights data-truncated "go past the end of the data area (16 bytes)"
# Every entry is checked, not only the ones the graph uses.
st "$in/unused-entry-lies.safetensors" "{$W,$B,$(ent other I64 '[]' '[60,68]')}"
weights unused-entry-lies \
    "entry 'other': data_offsets [60, 68] go past the end of the data area (64 bytes)"

# ---- safetensors: well-formed, but not what the graph needs ----

st "$in/dtype-f16.safetensors" "{$(ent fc.weight F16 '[4,3]' '[0,24]'),$B}" 64
weights dtype-f16 "weight 'fc.weight' in $in/dtype-f16.safetensors has dtype F16; this op needs F32"
st "$in/dtype-bf16.safetensors" "{$(ent fc.weight BF16 '[4,3]' '[0,24]'),$B}" 64
weights dtype-bf16 "has dtype BF16; this op needs F32"
st "$in/dtype-i64.safetensors" \
    "{$(ent fc.weight I64 '[4,3]' '[0,96]'),$(ent fc.bias F32 '[4]' '[96,112]')}" 112
weights dtype-i64 "has dtype I64; this op needs F32"
st "$in/dtype-f64.safetensors" "{$W,$(ent fc.bias F64 '[4]' '[48,80]')}" 80
weights dtype-f64 "weight 'fc.bias' in $in/dtype-f64.safetensors has dtype F64"
st "$in/key-missing.safetensors" "{$W}"
weights key-missing "weight 'fc.bias' (f32[4]) is missing from $in/key-missing.safetensors"
st "$in/key-renamed.safetensors" "{$B,$(ent fc.weights F32 '[4,3]' '[0,48]')}"
weights key-renamed "weight 'fc.weight' (f32[4,3]) is missing"
st "$in/shape-transposed.safetensors" "{$B,$(ent fc.weight F32 '[3,4]' '[0,48]')}"
weights shape-transposed \
    "weight 'fc.weight' in $in/shape-transposed.safetensors has shape [3,4]; this op needs [4,3]"
st "$in/shape-rank.safetensors" "{$W,$(ent fc.bias F32 '[1,4]' '[48,64]')}"
weights shape-rank "has shape [1,4]; this op needs [4]"
st "$in/empty-header.safetensors" '{}' 0
weights empty-header "weight 'fc.weight' (f32[4,3]) is missing"

# ---- safetensors: the file itself ----

mkdir "$in/directory.safetensors"
weights directory "is a directory"
weights missing "No such file or directory"
mkfifo "$in/fifo.safetensors"
weights fifo "is not a regular file"
st "$in/unreadable.safetensors" "{$W,$B}"
chmod 000 "$in/unreadable.safetensors"
unprivileged st-unreadable weights unreadable "Permission denied"
# `check --weights` reads the file the same way: a sample of the cases above through it.
checked length-past-end "header length 1000 exceeds the file size (10 bytes)"
checked not-json "header is not valid JSON"
checked nul-in-key "contains a NUL character"
checked offsets-overlap "entries 'fc.weight' [16, 64) and 'fc.bias' [48, 64) overlap"
checked data-truncated "go past the end of the data area (16 bytes)"
checked dtype-f16 "has dtype F16; this op needs F32"
checked key-missing "weight 'fc.bias' (f32[4]) is missing from $in/key-missing.safetensors"
checked shape-transposed "has shape [3,4]; this op needs [4,3]"
checked directory "is a directory"
checked fifo "is not a regular file"
# A weights file is also checked by bench before it compiles anything.
hostile st-bench 1 "$in/data-truncated.safetensors" "go past the end of the data area" \
    bench "$spec" --entry lin --weights "$in/data-truncated.safetensors" --backend c --runs 1
ln -s "$in/loop-b.safetensors" "$in/loop-a.safetensors"
ln -s "$in/loop-a.safetensors" "$in/loop-b.safetensors"
weights loop-a "Too many levels of symbolic links"
ln -s "$in/gone.safetensors" "$in/dangling.safetensors"
weights dangling "No such file or directory"
long=$(printf '%0300d' 0) # a file name over NAME_MAX
hostile st-name-too-long 1 "$in/$long.safetensors" "File name too long" \
    run "$spec" --entry lin --weights "$in/$long.safetensors" --input "$in/x.npy" \
    --output "$out/y.npy" --backend interp

# ---- safetensors: odd but valid ----

# The header length puts the data area at an odd offset, so no F32 entry is 4-byte aligned in
# the file: the values must still arrive intact (compared with the same data aligned).
hlen=$((${#W} + ${#B} + 3))
pad=$(((8 - (8 + hlen) % 8) % 8)) # spaces after the JSON that align the data to 8 bytes
{ le $((hlen + pad)) 8; printf "{%s,%s}%${pad}s" "$W" "$B" ''; vals $(seq 0 15); } \
    >"$in/aligned.safetensors"
pad=$((pad + 1))
{ le $((hlen + pad)) 8; printf "{%s,%s}%${pad}s" "$W" "$B" ''; vals $(seq 0 15); } \
    >"$in/unaligned.safetensors"
cases=$((cases + 1))
case_name=st-unaligned
if "$fusec" run "$spec" --entry lin --weights "$in/aligned.safetensors" --input "$in/x.npy" \
    --output "$tmp/want.npy" --backend interp >"$tmp/out" 2>"$tmp/err" &&
    "$fusec" run "$spec" --entry lin --weights "$in/unaligned.safetensors" --input "$in/x.npy" \
        --output "$tmp/got.npy" --backend interp >"$tmp/out" 2>"$tmp/err" &&
    cmp -s "$tmp/want.npy" "$tmp/got.npy"; then
    passes=$((passes + 1))
else
    fail "weights at an unaligned offset were not read intact"
fi
rm -f "$tmp/want.npy" "$tmp/got.npy"

# ---- .npy: the preamble ----

: >"$in/empty.npy"
tensor empty "not a .npy file"
printf 'PK\003\004\024\000\000\000' >"$in/zip.npy"
tensor zip "not a .npy file (it does not start with \\x93NUMPY)"
printf '1.0 2.0 3.0\n4.0 5.0 6.0\n' >"$in/text.npy"
tensor text "not a .npy file"
printf '\223NUMPY' >"$in/magic-only.npy"
tensor magic-only "file is truncated in its version"
printf '\223NUMPY\001\000\166' >"$in/length-cut.npy"
tensor length-cut "file is truncated in its header length"
npy "$in/version-9.npy" "$X" 0 1 2 3 4 5
printf '\223NUMPY\011\000' | dd of="$in/version-9.npy" conv=notrunc 2>/dev/null
tensor version-9 "unsupported .npy format version 9.0"
npy "$in/version-1-1.npy" "$X" 0 1 2 3 4 5
printf '\223NUMPY\001\001' | dd of="$in/version-1-1.npy" conv=notrunc 2>/dev/null
tensor version-1-1 "unsupported .npy format version 1.1"
{ printf '\223NUMPY\001\000'; le 4000 2; printf '%s\n' "$X"; } >"$in/length-past-end.npy"
tensor length-past-end "header length 4000 exceeds the file size"
{ printf '\223NUMPY\002\000\377\377\377\377'; printf '%s\n' "$X"; } >"$in/length-4g.npy"
tensor length-4g "header length 4294967295 exceeds the limit of 1 MiB"
# A real header of 2 MiB (version 2.0, u32 length): spaces after the dict.
{
    printf '\223NUMPY\002\000'
    le 2097152 4
    printf %s "$X"
    zeros $((2097152 - ${#X} - 1)) | tr '\0' ' '
    printf '\n'
    vals 0 1 2 3 4 5
} >"$in/header-2m.npy"
tensor header-2m "header length 2097152 exceeds the limit of 1 MiB"

# ---- .npy: the header dict ----

npy "$in/header-list.npy" "['<f4', False, (2, 3)]" 0 1 2 3 4 5
tensor header-list "bad header: not a Python dict literal"
npy "$in/header-cut.npy" "{'descr': '<f4', 'fortran_order': False, 'sh" 0 1 2 3 4 5
tensor header-cut "bad header: unterminated string"
npy "$in/header-json.npy" '{"descr": "<f4", "fortran_order": false, "shape": [2, 3]}' 0 1 2 3 4 5
tensor header-json "'fortran_order' is not True or False"
npy "$in/header-no-shape.npy" "{'descr': '<f4', 'fortran_order': False, }" 0 1 2 3 4 5
tensor header-no-shape "bad header: no 'shape' key"
npy "$in/header-extra-key.npy" "$(dict '<f4' False "(2, 3), 'strides': (12, 4)")" 0 1 2 3 4 5
tensor header-extra-key "bad header: unexpected key 'strides'"
npy "$in/header-duplicate-key.npy" "$(dict '<f4' False "(2, 3), 'descr': '<f8'")" 0 1 2 3 4 5
tensor header-duplicate-key "bad header: duplicate key 'descr'"
npy "$in/header-junk.npy" "$X$(printf '\001')" 0 1 2 3 4 5
tensor header-junk "bad header: unexpected text after the dict"
npy "$in/fortran-not-bool.npy" "$(dict '<f4' 0 '(2, 3)')" 0 1 2 3 4 5
tensor fortran-not-bool "'fortran_order' is not True or False"

# ---- .npy: the wrong dtype ----

# Each with the data that dtype needs: only the dtype is wrong.
for d in '<f8:48' '<i4:24' '|b1:6' '<f2:12' '|u1:6' '<c8:48' '<i8:48'; do
    descr=${d%:*}
    name=dtype-$(printf %s "$descr" | tr -d '<|')
    npy "$in/$name.npy" "$(dict "$descr" False '(2, 3)')"
    zeros "${d#*:}" >>"$in/$name.npy"
    tensor "$name" "dtype '$descr' is not float32 '<f4'; convert with .astype(np.float32)"
done
npy "$in/dtype-big-endian.npy" "$(dict '>f4' False '(2, 3)')" 0 1 2 3 4 5
tensor dtype-big-endian "dtype '>f4' is big-endian float32"
# An object array: a pickle follows the header.
npy "$in/dtype-object.npy" "$(dict '|O' False '(2, 3)')"
printf '\200\004\225\000\000\000\000\000\000\000\000.' >>"$in/dtype-object.npy"
tensor dtype-object "dtype '|O' is not float32 '<f4'"
npy "$in/dtype-structured.npy" \
    "{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': False, 'shape': (2, 3), }"
zeros 48 >>"$in/dtype-structured.npy"
tensor dtype-structured "dtype is a structured dtype"

# ---- .npy: the wrong shape, or data that does not fit it ----

npy "$in/shape-negative.npy" "$(dict '<f4' False '(-2, -3)')" 0 1 2 3 4 5
tensor shape-negative "negative dimension in 'shape'"
npy "$in/shape-huge.npy" "$(dict '<f4' False '(9223372036854775807, 9223372036854775807)')" 0
tensor shape-huge "has more elements than memory can hold"
npy "$in/shape-2-64.npy" "$(dict '<f4' False '(18446744073709551616,)')" 0 1 2 3 4 5
tensor shape-2-64 "dimension in 'shape' exceeds 2^63-1"
npy "$in/shape-int.npy" "$(dict '<f4' False '(6)')" 0 1 2 3 4 5
tensor shape-int "'shape' is (n), an int, not the tuple (n,)"
npy "$in/shape-rank-9.npy" "$(dict '<f4' False '(1, 1, 1, 1, 1, 1, 1, 2, 3)')" 0 1 2 3 4 5
tensor shape-rank-9 "'shape' has more than 8 dimensions"
npy "$in/shape-transposed.npy" "$(dict '<f4' False '(3, 2)')" 0 1 2 3 4 5
tensor shape-transposed "input 'x' has shape [3,2]; the graph declares f32[2,3]"
npy "$in/shape-flat.npy" "$(dict '<f4' False '(6,)')" 0 1 2 3 4 5
tensor shape-flat "input 'x' has shape [6]; the graph declares f32[2,3]"
npy "$in/shape-empty.npy" "$(dict '<f4' False '(0, 3)')"
tensor shape-empty "input 'x' has shape [0,3]; the graph declares f32[2,3]"
npy "$in/shape-scalar.npy" "$(dict '<f4' False '()')" 0
tensor shape-scalar "input 'x' has shape []; the graph declares f32[2,3]"
npy "$in/data-truncated.npy" "$X" 0 1 2 3 4
printf '\000\000' >>"$in/data-truncated.npy"
tensor data-truncated "truncated data: shape (2, 3) needs 24 bytes, the file has 22"
npy "$in/data-missing.npy" "$X"
tensor data-missing "truncated data: shape (2, 3) needs 24 bytes, the file has 0"
npy "$in/data-trailing.npy" "$X" 0 1 2 3 4 5 6
tensor data-trailing "4 bytes of trailing data after shape (2, 3) (24 bytes)"
# A header that claims far more than the file holds: nothing is allocated for it.
npy "$in/data-claims-2g.npy" "$(dict '<f4' False '(2, 268435456)')" 0 1 2 3 4 5
tensor data-claims-2g \
    "truncated data: shape (2, 268435456) needs 2147483648 bytes, the file has 24"
# Fortran order with the graph's shape but too little data.
npy "$in/fortran-truncated.npy" "$(dict '<f4' True '(2, 3)')" 0 3 1 4 2
tensor fortran-truncated "truncated data: shape (2, 3) needs 24 bytes, the file has 20"

# ---- .npy: the file itself ----

mkdir "$in/directory.npy"
tensor directory "is a directory"
tensor missing "No such file or directory"
mkfifo "$in/fifo.npy"
tensor fifo "is not a regular file"
cp "$in/x.npy" "$in/unreadable.npy"
chmod 000 "$in/unreadable.npy"
unprivileged npy-unreadable tensor unreadable "Permission denied"
hostile npy-name-too-long 1 "$in/$long.npy" "File name too long" \
    run "$spec" --entry copy --input "$in/$long.npy" --output "$out/y.npy" --backend interp
# A spec given where a tensor belongs.
hostile npy-spec-as-input 1 "$spec" "not a .npy file" \
    run "$spec" --entry copy --input "$spec" --output "$out/y.npy" --backend interp

# ---- .npy: Fortran order is accepted and transposed on load ----

# transposed NAME ENTRY WANT: run graph ENTRY on the Fortran-order input $in/NAME.npy; the
# output must equal the C-order file WANT byte for byte.
transposed() {
    cases=$((cases + 1))
    case_name=npy-$1
    if "$fusec" run "$spec" --entry "$2" --input "$in/$1.npy" --output "$tmp/got.npy" \
        --backend interp >"$tmp/out" 2>"$tmp/err" && cmp -s "$3" "$tmp/got.npy"; then
        passes=$((passes + 1))
    else
        fail "Fortran-order input not read as its C-order transpose"
    fi
    rm -f "$tmp/got.npy"
}

# [[0, 1, 2], [3, 4, 5]] stored column by column: 0 3 1 4 2 5.
npy "$in/fortran.npy" "$(dict '<f4' True '(2, 3)')" 0 3 1 4 2 5
transposed fortran copy "$in/x.npy"
# [2, 3, 4], element (i, j, k) = 12i + 4j + k, stored with i fastest, then j, then k.
npy "$in/fortran3.npy" "$(dict '<f4' True '(2, 3, 4)')"
for k in 0 1 2 3; do
    for j in 0 1 2; do
        for i in 0 1; do
            vals $((12 * i + 4 * j + k)) >>"$in/fortran3.npy"
        done
    done
done
npy "$tmp/want3.npy" "$(dict '<f4' False '(2, 3, 4)')" \
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23
transposed fortran3 cube "$tmp/want3.npy"

# ---- outputs that cannot be written ----

# run
hostile out-missing-dir 1 "$out/no/such/y.npy" "No such file or directory" \
    run "$spec" --entry copy --input "$in/x.npy" --output "$out/no/such/y.npy" --backend interp
mkdir "$out/y.npy"
hostile out-is-directory 1 "$out/y.npy" "Is a directory" \
    run "$spec" --entry copy --input "$in/x.npy" --output "$out/y.npy" --backend interp
hostile out-under-a-file 1 "$in/x.npy/y.npy" "Not a directory" \
    run "$spec" --entry copy --input "$in/x.npy" --output "$in/x.npy/y.npy" --backend interp
# A folder's name with a slash: the temporary file made inside it must go again.
hostile out-trailing-slash 1 "$out/" "Not a directory" \
    run "$spec" --entry copy --input "$in/x.npy" --output "$out/" --backend interp
hostile out-name-too-long 1 "$out/$long.npy" "File name too long" \
    run "$spec" --entry copy --input "$in/x.npy" --output "$out/$long.npy" --backend interp
mkdir "$out/locked"
chmod 555 "$out/locked"
unprivileged out-unwritable-dir hostile out-unwritable-dir 1 "$out/locked/y.npy" \
    "Permission denied" \
    run "$spec" --entry copy --input "$in/x.npy" --output "$out/locked/y.npy" --backend interp
# A failed run leaves an existing output as it was, byte for byte.
cp "$in/x.npy" "$out/y.npy"
keep "$out/y.npy"
hostile out-kept-on-failure 1 "$in/data-truncated.npy" "truncated data" \
    run "$spec" --entry copy --input "$in/data-truncated.npy" --output "$out/y.npy" --backend interp
# The second output cannot be written: the first, already written, is removed again.
hostile out-second-fails 1 "$out/no/q.npy" "No such file or directory" \
    run "$spec" --entry pair --input "$in/x.npy" --output p="$out/p.npy" \
    --output q="$out/no/q.npy" --backend interp
# A file system that refuses a write part way (here a file size limit, as a full disk would):
# the temporary file is removed and nothing is left.
limited 64 out-file-too-large 1 "$out/y.npy" "File too large" \
    run "$spec" --entry copy --dim N=100000 --random-inputs --output "$out/y.npy" --backend interp

# The same path as an input (tensor, spec or weights) and as an output would destroy the
# input: an error before anything runs.
cp "$in/x.npy" "$out/x.npy"
keep "$out/x.npy"
hostile out-equals-input 1 "$out/x.npy" "is also an input" \
    run "$spec" --entry pair --input "$out/x.npy" --output q="$out/x.npy" --backend interp

cp "$spec" "$out/spec.fuse"
keep "$out/spec.fuse"
hostile out-equals-spec 1 "$out/spec.fuse" "is also an input" \
    run "$out/spec.fuse" --entry copy --input "$in/x.npy" --output "$out/spec.fuse" \
    --backend interp

cp "$in/good.safetensors" "$out/w.safetensors"
keep "$out/w.safetensors"
hostile out-equals-weights 1 "$out/w.safetensors" "is also an input" \
    run "$spec" --entry lin --weights "$out/w.safetensors" --input "$in/x.npy" \
    --output "$out/w.safetensors" --backend interp

# Two outputs to one path: a usage error, like one output named twice.
hostile out-same-twice 2 "$out/y.npy" "given twice" \
    run "$spec" --entry pair --input "$in/x.npy" --output p="$out/y.npy" \
    --output q="$out/y.npy" --backend interp

# An empty path is a malformed option value: a usage error.
hostile out-empty-path 2 "--output" "needs a file name" \
    run "$spec" --entry copy --input "$in/x.npy" --output "" --backend interp

# The first output replaced an existing file before the second failed: removing it loses the
# user's file. Nothing may be renamed into place until every output is written.
cp "$in/x.npy" "$out/p.npy"
keep "$out/p.npy"
hostile out-second-fails-kept 1 "$out/no/q.npy" "No such file or directory" \
    run "$spec" --entry pair --input "$in/x.npy" --output p="$out/p.npy" \
    --output q="$out/no/q.npy" --backend interp
# Both written, but the second cannot be renamed into place (a folder has its name) after the
# first replaced an existing file: the first is put back, the same file as before.
cp "$in/x.npy" "$out/p.npy"
keep "$out/p.npy"
mkdir "$out/q.npy"
hostile out-rename-fails-kept 1 "$out/q.npy" "Is a directory" \
    run "$spec" --entry pair --input "$in/x.npy" --output p="$out/p.npy" \
    --output q="$out/q.npy" --backend interp

# emit-c
hostile emit-c-missing-dir 1 "$out/no/such/k.c" "cannot create" \
    emit-c "$spec" --entry copy -o "$out/no/such/k.c"
mkdir "$out/k.c"
hostile emit-c-is-directory 1 "$out/k.c" "Is a directory" \
    emit-c "$spec" --entry copy -o "$out/k.c"
hostile emit-c-under-a-file 1 "$in/x.npy/k.c" "Not a directory" \
    emit-c "$spec" --entry copy -o "$in/x.npy/k.c"
mkdir "$out/locked"
chmod 555 "$out/locked"
unprivileged emit-c-unwritable-dir hostile emit-c-unwritable-dir 1 "$out/locked/k.c" \
    "Permission denied" emit-c "$spec" --entry copy -o "$out/locked/k.c"
limited 1 emit-c-file-too-large 1 "$out/k.c" "File too large" \
    emit-c "$spec" --entry copy -o "$out/k.c"

# emit-c writes three files; when a later one fails, the earlier ones must go too.
hostile emit-c-header-missing-dir 1 "$out/no/k.h" "cannot create" \
    emit-c "$spec" --entry copy -o "$out/k.c" --header "$out/no/k.h"

mkdir "$out/fuse_rt.h"
hostile emit-c-rt-header-is-directory 1 "$out/fuse_rt.h" "Is a directory" \
    emit-c "$spec" --entry copy -o "$out/k.c"

cp "$spec" "$out/spec.fuse"
keep "$out/spec.fuse"
hostile emit-c-equals-spec 1 "$out/spec.fuse" "is also an input" \
    emit-c "$out/spec.fuse" --entry copy -o "$out/spec.fuse"

# -o names the header's path (k.h gets k.h as its header; fuse_rt.h is the runtime header's
# path): one file would be written over another. A usage error.
hostile emit-c-c-is-header 2 "$out/k.h" "would be written over" \
    emit-c "$spec" --entry copy -o "$out/k.h"

hostile emit-c-c-is-rt-header 2 "$out/fuse_rt.h" "would be written over" \
    emit-c "$spec" --entry copy -o "$out/fuse_rt.h"

hostile emit-c-empty-path 2 "-o" "needs a file name" \
    emit-c "$spec" --entry copy -o ""

# A weights file given to emit-c is checked as `check` checks it, not ignored.
hostile emit-c-bad-weights 1 "$in/not-json.safetensors" "header is not valid JSON" \
    emit-c "$spec" --entry lin --weights "$in/not-json.safetensors" -o "$out/k.c"

# emit-llvm, in a build with LLVM
if "$fusec" --version | grep -q "backends: jit"; then
    hostile emit-llvm-missing-dir 1 "$out/no/such/k.ll" "No such file or directory" \
        emit-llvm "$spec" --entry copy -o "$out/no/such/k.ll"
    mkdir "$out/k.ll"
    hostile emit-llvm-is-directory 1 "$out/k.ll" "Is a directory" \
        emit-llvm "$spec" --entry copy -o "$out/k.ll"
    hostile emit-llvm-under-a-file 1 "$in/x.npy/k.ll" "Not a directory" \
        emit-llvm "$spec" --entry copy -o "$in/x.npy/k.ll"
    mkdir "$out/locked"
    chmod 555 "$out/locked"
    unprivileged emit-llvm-unwritable-dir hostile emit-llvm-unwritable-dir 1 \
        "$out/locked/k.ll" "Permission denied" emit-llvm "$spec" --entry copy -o "$out/locked/k.ll"

    # A write that fails part way must not leave a truncated k.ll.
    limited 1 emit-llvm-file-too-large 1 "$out/k.ll" "File too large" \
        emit-llvm "$spec" --entry copy -o "$out/k.ll"

    cp "$spec" "$out/spec.fuse"
    keep "$out/spec.fuse"
    hostile emit-llvm-equals-spec 1 "$out/spec.fuse" "is also an input" \
        emit-llvm "$out/spec.fuse" --entry copy -o "$out/spec.fuse"

    hostile emit-llvm-empty-path 2 "-o" "needs a file name" \
        emit-llvm "$spec" --entry copy -o ""

    hostile emit-llvm-bad-weights 1 "$in/not-json.safetensors" "header is not valid JSON" \
        emit-llvm "$spec" --entry lin --weights "$in/not-json.safetensors" -o "$out/k.ll"
fi

# ---- specs that no golden file can hold ----

mkdir "$in/directory.fuse"
hostile spec-directory 1 "$in/directory.fuse" "Is a directory" check "$in/directory.fuse"
hostile spec-missing 1 "$in/missing.fuse" "No such file or directory" check "$in/missing.fuse"
cp "$spec" "$in/unreadable.fuse"
chmod 000 "$in/unreadable.fuse"
unprivileged spec-unreadable hostile spec-unreadable 1 "$in/unreadable.fuse" "Permission denied" \
    check "$in/unreadable.fuse"
# 64 MiB + 1 byte (sparse): over the limit on a spec's size.
dd if=/dev/null of="$in/huge.fuse" bs=1 seek=$((64 * 1048576 + 1)) 2>/dev/null
hostile spec-too-large 1 "$in/huge.fuse" "is larger than 67108864 bytes" check "$in/huge.fuse"
rm "$in/huge.fuse"
# An identifier of 1 MiB.
{
    printf 'fuse 1\ngraph g(x: f32[2]) -> f32[2] {\n    return '
    zeros 1048576 | tr '\0' x
    printf '\n}\n'
} >"$in/long-name.fuse"
hostile spec-long-name 1 "$in/long-name.fuse" "identifier too long (1048576 bytes; at most 255)" \
    check "$in/long-name.fuse"
# 100000 nested parentheses, and 16384 nested calls.
{
    printf 'fuse 1\ngraph g(x: f32[2]) -> f32[2] {\n    return '
    zeros 100000 | tr '\0' '('
    printf x
    zeros 100000 | tr '\0' ')'
    printf '\n}\n'
} >"$in/deep-parens.fuse"
hostile spec-deep-parens 1 "$in/deep-parens.fuse" "nesting too deep" check "$in/deep-parens.fuse"
calls='relu('
i=0
while [ "$i" -lt 14 ]; do # 2^14 calls
    calls=$calls$calls
    i=$((i + 1))
done
{
    printf 'fuse 1\ngraph g(x: f32[2]) -> f32[2] {\n    return %sx' "$calls"
    zeros 16384 | tr '\0' ')'
    printf '\n}\n'
} >"$in/deep-calls.fuse"
hostile spec-deep-calls 1 "$in/deep-calls.fuse" "nesting too deep" check "$in/deep-calls.fuse"
# A binary file given as the spec.
hostile spec-binary 1 "$in/x.npy" "unexpected byte 0x93" check "$in/x.npy"

echo "$cases cases: $passes checks passed, $failures failed, $skips cases skipped"
if [ "$skips" != 0 ]; then
    echo "($skips skipped: running as root, and nobody cannot run fusec here;" \
        "the other cases ran in full)"
elif [ -n "$as_user" ]; then
    echo "(running as root: the permission cases ran as nobody)"
fi
[ "$failures" = 0 ]
