#!/usr/bin/env bash
# The checks of the C ABI, the C++ and Python bindings and the install layout (docs/c-api.md):
#
#   1. include/ps3rt.h is what cbindgen 0.29.4 generates from src/ffi/ (a diff fails)
#   2. release build, scripts/install.sh into target/ffi-test/prefix (removed once every check passed)
#   3. the shared library: SONAME libps3rt.so.<ABI>, exports exactly the header's ps3rt_ functions
#   4. tests/c with CMake against the installed package: api_test, api_test_static (libps3rt.a),
#      threads_test, api_test --quick under valgrind memcheck
#   5. tests/c built with AddressSanitizer + UBSan: api_test, threads_test
#   6. examples/c and examples/cpp built with CMake and with pkg-config (shared and static), run
#   7. the Python binding's tests (the project's venv, numpy), compared with `ps3rt run`
#
#   scripts/test-ffi.sh        (after scripts/setup-ffi.sh)
#   PS3RT_PROFILE=dev scripts/test-ffi.sh   reuse the dev-profile build of `cargo test` (what
#                                           scripts/test.sh does: no second build of tract)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

CBINDGEN_VERSION=0.29.4
work="$root/target/ffi-test"
prefix="$work/prefix"
passed=0
started=$(date +%s)

step() { printf '\n== %s (%ds)\n' "$*" "$(($(date +%s) - started))"; }
ok() {
    passed=$((passed + 1))
    echo "ok: $*"
}
die() {
    echo "test-ffi: FAILED: $*" >&2
    echo "test-ffi: $passed passed, 1 failed"
    exit 1
}

rm -rf "$work"
mkdir -p "$work"

step "header: include/ps3rt.h == cbindgen $CBINDGEN_VERSION output"
if [ "$(cbindgen --version 2>/dev/null || true)" != "cbindgen $CBINDGEN_VERSION" ]; then
    die "cbindgen $CBINDGEN_VERSION is needed (found: $(cbindgen --version 2>&1 || true)); run scripts/setup-ffi.sh"
fi
cbindgen --quiet --config cbindgen.toml --output "$work/ps3rt.h" src/ffi/mod.rs
if ! diff -u include/ps3rt.h "$work/ps3rt.h"; then
    die "include/ps3rt.h is stale: regenerate it with
    cbindgen --config cbindgen.toml --output include/ps3rt.h src/ffi/mod.rs"
fi
ok "the committed header is the generated one"

profile=${PS3RT_PROFILE:-release}
bindir=$root/target/$([ "$profile" = dev ] && echo debug || echo release)
step "$profile build and install"
cargo build --profile "$profile" --lib --bin ps3rt
scripts/install.sh --no-build --profile "$profile" "$prefix"
lib="$prefix/lib"
ok "installed in $prefix"

step "shared library: SONAME and exports"
abi=$(sed -n 's/^#define PS3RT_ABI_VERSION \([0-9]*\)$/\1/p' include/ps3rt.h)
soname=$(readelf -d "$lib/libps3rt.so.$abi" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
[ "$soname" = "libps3rt.so.$abi" ] || die "SONAME is '$soname', want libps3rt.so.$abi"
nm -D --defined-only "$lib/libps3rt.so.$abi" | awk '{print $NF}' | sort >"$work/exports.txt"
if grep -v '^ps3rt_' "$work/exports.txt" >"$work/foreign.txt"; then
    head -20 "$work/foreign.txt" >&2
    die "the shared library exports $(wc -l <"$work/foreign.txt") symbols without the ps3rt_ prefix"
fi
# Every declared function is exported and nothing else is.
grep -o 'PS3RT_API[^;]*' include/ps3rt.h >/dev/null || die "no PS3RT_API declarations in the header"
tr '\n' ' ' <include/ps3rt.h | grep -oE 'PS3RT_API[^;(]*\bps3rt_[a-z0-9_]+\(' |
    grep -oE 'ps3rt_[a-z0-9_]+\($' | tr -d '(' | sort -u >"$work/declared.txt"
if ! diff -u "$work/declared.txt" "$work/exports.txt"; then
    die "the exported functions differ from the header's declarations (- header, + library)"
fi
ok "SONAME $soname; exports = the $(wc -l <"$work/exports.txt") functions of ps3rt.h, all ps3rt_"

step "C tests (CMake against the installed package; static link; valgrind)"
cmake -S tests/c -B "$work/tests" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPS3RT_VALGRIND=ON >"$work/tests-configure.log" || { cat "$work/tests-configure.log"; die "cmake configure (tests/c)"; }
cmake --build "$work/tests" -j2 >"$work/tests-build.log" || { cat "$work/tests-build.log"; die "build (tests/c)"; }
ctest --test-dir "$work/tests" --output-on-failure -j2 || die "C tests"
ok "api_test, api_test_static, threads_test, api_test_valgrind"
grep -E 'ERROR SUMMARY|definitely lost|indirectly lost' "$work/tests/Testing/Temporary/LastTest.log" | tail -3 | sed 's/^/    /' || true

step "C tests with AddressSanitizer + UBSan"
cmake -S tests/c -B "$work/asan" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Debug \
    -DPS3RT_SANITIZE=ON >"$work/asan-configure.log" || { cat "$work/asan-configure.log"; die "cmake configure (asan)"; }
cmake --build "$work/asan" -j2 >"$work/asan-build.log" || { cat "$work/asan-build.log"; die "build (asan)"; }
ctest --test-dir "$work/asan" --output-on-failure || die "C tests under AddressSanitizer"
ok "api_test, threads_test under ASan + UBSan"

step "examples: CMake and pkg-config against the installed package"
PY=$(tools/export/setup_venv.sh)
"$PY" -c "
import sys
from PIL import Image
Image.open(sys.argv[1]).convert('RGB').save(sys.argv[2])
" tests/fixtures/road-1280x720.png "$work/road.ppm"
for ex in c cpp; do
    cmake -S "examples/$ex" -B "$work/examples-$ex" -DCMAKE_PREFIX_PATH="$prefix" \
        -DCMAKE_BUILD_TYPE=Release >"$work/examples-$ex.log" || { cat "$work/examples-$ex.log"; die "cmake configure (examples/$ex)"; }
    cmake --build "$work/examples-$ex" >>"$work/examples-$ex.log" || { cat "$work/examples-$ex.log"; die "build (examples/$ex)"; }
done
check_encode_ppm() {
    "$@" "$work/road.ppm" --budget 256 >"$work/encode_ppm.out" || die "$1 failed"
    grep -q '^features 985 tokens x 32' "$work/encode_ppm.out" || { cat "$work/encode_ppm.out"; die "$1: unexpected output"; }
    grep -q '^   1\. ' "$work/encode_ppm.out" || { cat "$work/encode_ppm.out"; die "$1: no region printed"; }
}
check_frame_loop() {
    "$@" --frames 3 --size 640x360 --budget 128 >"$work/frame_loop.out" || die "$1 failed"
    [ "$(grep -c '^frame [0-9]: 857 tokens' "$work/frame_loop.out")" = 3 ] || { cat "$work/frame_loop.out"; die "$1: unexpected output"; }
    grep -q '^expected error (status 1)' "$work/frame_loop.out" || { cat "$work/frame_loop.out"; die "$1: no error shown"; }
}
check_encode_ppm "$work/examples-c/encode_ppm"
check_encode_ppm "$work/examples-c/encode_ppm" --package models/ps3-tiny-4k
cat "$work/encode_ppm.out"
check_frame_loop "$work/examples-cpp/frame_loop"
cat "$work/frame_loop.out"
# --gpu: on a GPU machine preprocessing moves there; elsewhere the loop names what is missing and
# goes on on the CPU.
"$work/examples-cpp/frame_loop" --frames 2 --size 640x360 --budget 128 --gpu 0 >"$work/frame_loop_gpu.out" \
    || die "frame_loop --gpu 0 failed"
grep -qE '^(preprocessing on CUDA device 0, frames in page-locked memory|preprocessing on the CPU: GPU 0 unavailable \(.*cuda.*\))$' "$work/frame_loop_gpu.out" \
    || { cat "$work/frame_loop_gpu.out"; die "frame_loop --gpu 0: no preprocessing line"; }
[ "$(grep -c '^frame [0-9]: 857 tokens' "$work/frame_loop_gpu.out")" = 2 ] || { cat "$work/frame_loop_gpu.out"; die "frame_loop --gpu 0: unexpected output"; }
grep preprocessing "$work/frame_loop_gpu.out"
ok "examples built with CMake (find_package(ps3rt), ps3rt::ps3rt) and run"

export PKG_CONFIG_PATH="$lib/pkgconfig"
pkg-config --exists ps3rt ps3rt-static || die "pkg-config does not find ps3rt"
[ "$(pkg-config --modversion ps3rt)" = "$(sed -n 's/^#define PS3RT_VERSION_MAJOR //p' include/ps3rt.h).$(sed -n 's/^#define PS3RT_VERSION_MINOR //p' include/ps3rt.h).$(sed -n 's/^#define PS3RT_VERSION_PATCH //p' include/ps3rt.h)" ] ||
    die "pkg-config version differs from the header's"
# shellcheck disable=SC2046 # word splitting of pkg-config output is intended
cc -std=c99 -Wall -Wextra -Werror examples/c/encode_ppm.c -o "$work/encode_ppm_pc" \
    $(pkg-config --cflags --libs ps3rt) -Wl,-rpath,"$lib"
# shellcheck disable=SC2046
cc -std=c99 -Wall -Wextra -Werror examples/c/encode_ppm.c -o "$work/encode_ppm_pc_static" \
    $(pkg-config --cflags --libs ps3rt-static)
# shellcheck disable=SC2046
c++ -std=c++17 -Wall -Wextra -Werror examples/cpp/frame_loop.cpp -o "$work/frame_loop_pc" \
    $(pkg-config --cflags --libs ps3rt) -Wl,-rpath,"$lib"
if ldd "$work/encode_ppm_pc_static" | grep -q libps3rt; then
    die "the static pkg-config build links libps3rt.so"
fi
check_encode_ppm "$work/encode_ppm_pc"
check_encode_ppm "$work/encode_ppm_pc_static"
check_frame_loop "$work/frame_loop_pc"
ok "examples built with pkg-config (ps3rt: shared; ps3rt-static: static) and run"

step "Python binding (ctypes + numpy)"
(cd bindings/python && PS3RT_LIBRARY="$lib/libps3rt.so.$abi" PS3RT_CLI="$bindir/ps3rt" \
    "$PY" -m unittest -v test_ps3rt) || die "Python binding tests"
"$PY" -c "
import sys
sys.path.insert(0, sys.argv[1])
import ps3rt
assert ps3rt._lib._name.startswith(sys.argv[2]), ps3rt._lib._name
print('installed module:', ps3rt.version(), 'from', ps3rt._lib._name)
" "$prefix/share/ps3rt/python" "$lib" || die "the installed Python module does not find its library"
ok "Python tests; the installed module finds the installed library"

echo
# The installed copy (~270 MB, mostly libps3rt.a) is only for these checks: drop it once they pass.
rm -rf "$prefix"
echo "test-ffi: $passed passed, 0 failed ($(($(date +%s) - started)) s)"
