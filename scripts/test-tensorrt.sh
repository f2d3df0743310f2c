#!/usr/bin/env bash
# The TensorRT backend's checks on a machine without TensorRT or a GPU (docs/tensorrt.md):
#
#   1. fetch TensorRT 11.4 and 10.16 headers, CUDA 13 headers and the test libraries (cached)
#   2. for each header set: build the library and the CLI with --features tensorrt (the C++ shim with
#      -Werror), check that nothing links TensorRT or CUDA and that no shim symbol is exported, run
#      tests/tensorrt.rs and the shim's unit tests: the runtime-only dispatch library (11.4) is refused
#      as runtime-only under 11.4 headers and as a version mismatch under 10.16 headers; the real CUDA 13
#      runtime reports no GPU; auto falls back to tract with the reason; the engine cache
#   3. clippy --all-targets --features tensorrt -D warnings (11.4 headers)
#   4. the CLI: info reports why TensorRT is unusable, run --backend tensorrt exits 5 with the reason,
#      auto runs on tract, build-engines exits 5
#
#   scripts/test-tensorrt.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
started=$(date +%s)
passed=0
step() { printf '\n== %s (%ds)\n' "$*" "$(($(date +%s) - started))"; }
ok() {
    passed=$((passed + 1))
    echo "ok: $*"
}
die() {
    echo "test-tensorrt: FAILED: $*" >&2
    echo "test-tensorrt: $passed passed, 1 failed"
    exit 1
}

step "fetch headers and test libraries (tools/tensorrt/fetch-headers.sh --dispatch)"
sdk=$(tools/tensorrt/fetch-headers.sh --dispatch)
ok "TensorRT 11.4 + 10.16 headers, CUDA 13 headers, libnvinfer_dispatch.so.11, libcudart.so.13 in $sdk"

export PS3RT_TEST_REQUIRE_SDK=1 PS3RT_TENSORRT_SDK="$sdk" PS3RT_CUDA_INCLUDE="$sdk/cuda/include"
export CXXFLAGS="${CXXFLAGS:-} -Werror"
for v in 10.16 11.4; do
    export PS3RT_TENSORRT_INCLUDE="$sdk/trt-$v/include"
    step "TensorRT $v headers: build with --features tensorrt"
    cargo build --locked --features tensorrt --lib --bin ps3rt 2>&1 | grep -v '^warning: ps3rt@' || die "build with TensorRT $v headers"
    shim=$(ls -t "$target"/debug/build/ps3rt-*/out/libp3trt.a | head -1)
    undefined=$(nm -u "$shim" | awk '{print $2}' | grep -E 'nvinfer|nvonnx|cuda|_INTERNAL' || true)
    [ -z "$undefined" ] || die "the shim references TensorRT/CUDA symbols at link time: $undefined"
    so=$target/debug/libps3rt.so
    if readelf -d "$so" | grep -E 'NEEDED.*(nvinfer|nvonnx|cudart|libcuda)'; then
        die "$so links TensorRT or CUDA"
    fi
    if nm -D --defined-only "$so" | grep -q ' p3trt_'; then
        die "$so exports shim symbols"
    fi
    ok "TensorRT $v: shim compiled (-Werror); no link-time TensorRT/CUDA dependency; shim symbols not exported"
    step "TensorRT $v headers: tests/tensorrt.rs and the TensorRT unit tests"
    cargo test --locked --features tensorrt --test tensorrt 2>&1 | grep -v '^warning: ps3rt@' | tee "$target/test-tensorrt-$v.log" | grep -E '^test |test result' || true
    grep -q 'test result: ok. 13 passed' "$target/test-tensorrt-$v.log" || die "tests/tensorrt.rs with TensorRT $v headers"
    cargo test --locked --features tensorrt --lib tensorrt 2>&1 | grep -E 'test result: ok' || die "unit tests with TensorRT $v headers"
    ok "TensorRT $v: 13 integration tests and the cache unit tests"
done

step "clippy --all-targets --features tensorrt -D warnings (TensorRT 11.4 headers)"
cargo clippy --locked --all-targets --features tensorrt -- -D warnings 2>&1 | grep -v '^warning: ps3rt@' || die "clippy"
ok "clippy clean with the feature"

step "CLI with the feature on this machine (no TensorRT, no GPU)"
bin=$target/debug/ps3rt
logs=$target
"$bin" info >"$logs/test-tensorrt-info.txt" || die "ps3rt info"
grep -q 'tensorrt    built in (TensorRT 11.4.0 headers), not usable here: TensorRT library not found' "$logs/test-tensorrt-info.txt" ||
    { cat "$logs/test-tensorrt-info.txt"; die "info does not report why TensorRT is unusable"; }
set +e
"$bin" run --input tests/fixtures/road-1280x720.png --backend tensorrt --budget 256 >/dev/null 2>"$logs/test-tensorrt-run.err"
code=$?
set -e
[ "$code" = 5 ] || die "run --backend tensorrt exited $code, expected 5"
grep -q 'TensorRT library not found' "$logs/test-tensorrt-run.err" || die "run --backend tensorrt: no reason given"
"$bin" -v run --input tests/fixtures/road-1280x720.png --budget 256 2>&1 >/dev/null | grep -q 'TensorRT not used: TensorRT library not found' ||
    die "run --backend auto does not log the fallback reason"
PS3RT_TENSORRT_LIB="$sdk/dispatch/libnvinfer_dispatch.so.11" "$bin" build-engines >/dev/null 2>"$logs/test-tensorrt-build.err" && die "build-engines succeeded without TensorRT"
grep -q 'runtime-only TensorRT library' "$logs/test-tensorrt-build.err" || { cat "$logs/test-tensorrt-build.err"; die "build-engines: wrong reason"; }
ok "info, run --backend tensorrt (exit 5), auto (tract, reason logged), build-engines (exit 5, runtime-only library)"

echo
echo "test-tensorrt: $(($(date +%s) - started)) s"
echo "test-tensorrt: $passed passed, 0 failed"
