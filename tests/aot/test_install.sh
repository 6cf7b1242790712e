#!/bin/sh
# `cmake --install` gives a package another project can use: find_package(fusec) and
# fusec_add_kernel() build examples/aot/main.c against the installed fusec, fusec::library
# builds examples/jit/main.c, and both run; pkg-config builds the same without CMake, and the
# man page is in place.
# Usage: test_install.sh BUILD_DIR SOURCE_DIR PYTHON CC [FLAGS]
# CC and FLAGS build the other project as fusec was built (a sanitizer build installs an
# instrumented runtime, which only links into an instrumented program).
set -eu
build=$1
src=$2
python=$3
cc=$4
flags=${5:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
mkdir "$tmp/project"
cp "$src/examples/aot/main.c" "$src/examples/concat_conv.fuse" "$src/examples/common/runner.c" \
    "$src/examples/common/runner.h" "$tmp/project/"
cp "$src/examples/jit/main.c" "$tmp/project/jit_main.c"
cat >"$tmp/project/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.25)
project(uses_fusec C)
find_package(fusec 0.1 REQUIRED)
add_executable(app main.c runner.c)
fusec_add_kernel(TARGET app SPEC concat_conv.fuse ENTRY fuse_hl DIMS H=16 W=16)
if(TARGET fusec::library)
    add_executable(jit_app jit_main.c runner.c)
    target_link_libraries(jit_app PRIVATE fusec::library)
endif()
CMAKE
cmake -S "$tmp/project" -B "$tmp/project/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
cmake --build "$tmp/project/build" >/dev/null
# No weights file: the program must fail cleanly, naming the missing file.
if "$tmp/project/build/app" "$tmp/missing.safetensors" 2>"$tmp/err"; then
    echo "FAIL: app ran without weights"
    exit 1
fi
grep -q "missing.safetensors" "$tmp/err" || { cat "$tmp/err"; echo "FAIL: no file in message"; exit 1; }
# With the seed module's weights it runs (its numbers are checked against PyTorch by test_aot.py).
"$python" - "$tmp/w.safetensors" "$src/tests/conformance" <<'PY'
import sys
sys.path.insert(0, sys.argv[2])
import torch
from conformance import save_safetensors
conv = torch.nn.Sequential(torch.nn.Conv2d(256, 128, 1), torch.nn.BatchNorm2d(128))
save_safetensors({"conv_fuse." + k: v for k, v in conv.state_dict().items()}, sys.argv[1])
PY
"$tmp/project/build/app" "$tmp/w.safetensors" --runs 1
# The compiler library, installed: a spec error comes back as text, then a run at a new shape.
printf 'fuse 1\ngraph g(x: f32[4]) -> f32[4] {\n    return x + y\n}\n' >"$tmp/bad.fuse"
if "$tmp/project/build/jit_app" "$tmp/bad.fuse" "$tmp/w.safetensors" 2>"$tmp/err"; then
    echo "FAIL: jit_app compiled a spec with an error"
    exit 1
fi
grep -q "bad.fuse:3:.*error: .*'y'" "$tmp/err" || { cat "$tmp/err"; echo "FAIL: diagnostic"; exit 1; }
"$tmp/project/build/jit_app" "$tmp/project/concat_conv.fuse" "$tmp/w.safetensors" --entry fuse_hl \
    --dim H=24 --dim W=20 --runs 1 >"$tmp/out"
grep -q "fuse_hl: compiled in" "$tmp/out" || { cat "$tmp/out"; echo "FAIL: jit_app"; exit 1; }
# Without CMake: pkg-config finds the library where the tree was installed (the .pc files are
# relocatable), and the man page is installed.
pcdir=$(dirname "$(find "$tmp/prefix" -name fusec.pc)")
flags_pc=$(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs fusec)
libdir=$(PKG_CONFIG_PATH="$pcdir" pkg-config --variable=libdir fusec)
# shellcheck disable=SC2086 # the flags are words
"$cc" $flags $flags_pc -I"$src/examples/common" -o "$tmp/jit_pc" "$src/examples/jit/main.c" \
    "$src/examples/common/runner.c" $flags_pc -Wl,-rpath,"$libdir"
"$tmp/jit_pc" "$tmp/project/concat_conv.fuse" "$tmp/w.safetensors" --entry fuse_hl \
    --dim H=8 --dim W=12 --runs 1 >"$tmp/out"
grep -q "fuse_hl: compiled in" "$tmp/out" || { cat "$tmp/out"; echo "FAIL: pkg-config build"; exit 1; }
[ -f "$tmp/prefix/share/man/man1/fusec.1" ] || { echo "FAIL: no man page installed"; exit 1; }
echo "6 passed, 0 failed"
