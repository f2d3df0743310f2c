#!/usr/bin/env bash
# The project's test command (what CI runs): formatting, lints, the Rust test suite (parity with the
# official PS3 code included) and the proof that the committed package and fixtures regenerate.
#
#   scripts/test.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

step() { printf '\n== %s\n' "$*"; }

# Disk: a fresh run writes about 3.5 GB under target/ and, on first use, about 6 GB of Python venv
# under ~/.cache/ps3rt (torch pulls its CUDA packages). Incremental compilation would add ~1.8 GB of
# session caches that a one-shot run never reads back, so it is off here (cargo's own switch).
export CARGO_INCREMENTAL=0
disk() { df -Pk "$root" | awk -v what="$1" 'NR == 2 { printf "disk %s: %.1f GB free\n", what, $4 / 1048576 }'; }
report_on_exit() {
    local rc=$?
    disk "at the end (exit $rc)"
    [ -d "$root/target" ] && du -sh "$root/target" | awk '{ print "target/: " $1 }'
}
trap report_on_exit EXIT
disk "at the start"

step "setup"
scripts/setup.sh
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings
step "the library and CLI build without default features (no embedded model, mimalloc or V4L2)"
cargo check --locked --no-default-features --lib --bins
step "cargo test"
cargo test --locked
step "ONNX Runtime for the backend tests: the venv's libonnxruntime (tools/export/setup_venv.sh)"
ort_lib=$("$(tools/export/setup_venv.sh)" -c 'import glob, os, onnxruntime
libs = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))
print(libs[-1] if libs else "")')
[ -f "$ort_lib" ] || { echo "test.sh: no libonnxruntime.so in the venv's onnxruntime package" >&2; exit 1; }
echo "$ort_lib"
step "GPU preprocessing kernels compile with NVRTC for sm_75, sm_87 (Jetson Orin) and sm_90 (the venv's libnvrtc; no GPU needed)"
nvrtc_lib=$("$(tools/export/setup_venv.sh)" -c 'import glob, os, site
libs = sorted(l for sp in site.getsitepackages() for l in glob.glob(os.path.join(sp, "nvidia", "*", "lib", "libnvrtc.so.*")) if "builtins" not in l)
print(libs[-1] if libs else "")')
[ -f "$nvrtc_lib" ] || { echo "test.sh: no libnvrtc.so in the venv's nvidia packages (torch's CUDA runtime)" >&2; exit 1; }
echo "$nvrtc_lib"
PS3RT_NVRTC_LIB="$nvrtc_lib" PS3RT_TEST_NVRTC=1 cargo test --locked --lib image::gpu
step "ONNX Runtime backend against tract (tests/onnxruntime.rs)"
PS3RT_TEST_ONNXRUNTIME="$ort_lib" cargo test --locked --test onnxruntime
step "no allocation per frame in ps3rt's own code, tract, ONNX Runtime and GPU preprocessing (counting allocator; built without mimalloc)"
PS3RT_TEST_ONNXRUNTIME="$ort_lib" cargo test --locked --no-default-features --features embedded-model,onnxruntime,cuda --test alloc --test gpu_preprocess
step "C ABI, C++ and Python bindings, install layout (scripts/test-ffi.sh)"
PS3RT_PROFILE=dev scripts/test-ffi.sh
step "region labels and prompts: examples/cpp/road_signs, ps3rt labels, run --labels --prompt (scripts/test-labels.sh)"
PS3RT_PROFILE=dev scripts/test-labels.sh
step "TensorRT backend: shim compiled against real headers, fallback and engine cache (scripts/test-tensorrt.sh)"
scripts/test-tensorrt.sh
step "regenerate the tiny package and the parity fixtures from scratch"
tools/parity/check_regen.sh
step "preprocessing vs PIL + torch (tools/parity/measure_preprocessing.py)"
"$(tools/export/setup_venv.sh)" tools/parity/measure_preprocessing.py --check 2> >(grep -v -i warn >&2)
step "tools/bench/resample_peers.py on a small frame (the script runs; the 8K comparison is an explicit benchmark)"
cargo build --locked --bin ps3rt
"$(tools/export/setup_venv.sh)" tools/bench/resample_peers.py --ps3rt target/debug/ps3rt --model models/ps3-tiny-4k \
    --resolution 640x360 --repeats 1 --threads 1
