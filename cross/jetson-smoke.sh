#!/usr/bin/env bash
# Smoke test of the TensorRT backend on a Jetson (JetPack 6.x/7.x: TensorRT 8.6, 10.3 or 10.13+), for
# people with one; it cannot run on ps3rt's CI machines (no GPU, no TensorRT). On the Jetson itself:
#
#   cross/jetson-smoke.sh [PKG]      PKG: a full-size package (e.g. packages/ps3-4k-k2560), optional
#
# 1. builds ps3rt (release) with --features tensorrt against the Jetson's own TensorRT and CUDA
#    headers (JetPack: /usr/include/aarch64-linux-gnu, /usr/local/cuda/include), so the shim matches
#    the installed libnvinfer exactly
# 2. ps3rt info: the probe must find TensorRT, the GPU (integrated) and report them
# 3. for the embedded tiny package and for PKG: builds the engines for K = 256, 1024, 2560 (the first
#    build of a full-size package takes minutes; progress is printed; engines are cached in
#    $PS3RT_ENGINE_CACHE, default ~/.cache/ps3rt/engines), compares the TensorRT features with the
#    tract backend's for the same selection on the 4K road scene (cosine per token, relative error;
#    fails below --min-cosine), and prints per-stage latency (median of N frames) with and without
#    CUDA graphs
# 4. runs the whole build again: every engine must now come from the cache
#
# Environment: PS3RT_TENSORRT_INCLUDE / PS3RT_CUDA_INCLUDE (other header locations), FRAMES (default
# 20), MIN_COSINE (default 0.99 for fp16, raise it with PRECISION=fp32), PRECISION (default auto).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
pkg=${1:-}
frames=${FRAMES:-20}
precision=${PRECISION:-auto}
min_cosine=${MIN_COSINE:-0.99}
budgets=256,1024,2560
log=target/jetson-smoke
mkdir -p "$log"

say() { printf '\n== %s\n' "$*"; }
die() {
    echo "jetson-smoke: FAILED: $*" >&2
    exit 1
}

[ "$(uname -m)" = aarch64 ] || echo "note: not an aarch64 machine; this script is meant for a Jetson" >&2
[ -f /etc/nv_tegra_release ] && say "L4T: $(head -1 /etc/nv_tegra_release)"
export PS3RT_TENSORRT_INCLUDE=${PS3RT_TENSORRT_INCLUDE:-/usr/include/$(uname -m)-linux-gnu}
export PS3RT_CUDA_INCLUDE=${PS3RT_CUDA_INCLUDE:-/usr/local/cuda/include}
[ -f "$PS3RT_TENSORRT_INCLUDE/NvInfer.h" ] || die "no NvInfer.h in $PS3RT_TENSORRT_INCLUDE (install TensorRT's dev package: apt install tensorrt-dev / libnvinfer-dev, or set PS3RT_TENSORRT_INCLUDE)"
[ -f "$PS3RT_CUDA_INCLUDE/cuda_runtime_api.h" ] || die "no cuda_runtime_api.h in $PS3RT_CUDA_INCLUDE (set PS3RT_CUDA_INCLUDE)"

say "build (release, --features tensorrt; TensorRT headers $PS3RT_TENSORRT_INCLUDE)"
cargo build --release --features tensorrt --bin ps3rt
bin=target/release/ps3rt

say "ps3rt info"
"$bin" info | tee "$log/info.txt" | sed -n '/^backends/,$p'
grep -q '^          tensorrt   available' "$log/info.txt" || die "TensorRT is not usable here (see the line above)"

run_package() {
    local name=$1
    shift
    say "$name: engines for K = $budgets (precision $precision)"
    "$bin" build-engines "$@" --budget "$budgets" --precision "$precision" | tee "$log/$name-build.txt"
    say "$name: parity with tract and latency (median of $frames frames, 4K road scene)"
    "$bin" build-engines "$@" --budget "$budgets" --precision "$precision" --compare-tract \
        --min-cosine "$min_cosine" --bench "$frames" | tee "$log/$name-bench.txt"
    say "$name: latency with CUDA graphs"
    "$bin" build-engines "$@" --budget "$budgets" --precision "$precision" --bench "$frames" --cuda-graph |
        tee "$log/$name-bench-graphs.txt"
    say "$name: second build comes from the cache"
    "$bin" build-engines "$@" --budget "$budgets" --precision "$precision" >"$log/$name-rebuild.txt"
    if grep -q ' built ' "$log/$name-rebuild.txt"; then
        cat "$log/$name-rebuild.txt"
        die "$name: engines were rebuilt although they were cached"
    fi
    echo "all engines from the cache"
}

run_package tiny
if [ -n "$pkg" ]; then
    run_package "$(basename "$pkg")" "$pkg"
else
    echo "(no full-size package given: pass one, e.g. cross/jetson-smoke.sh packages/ps3-4k-k2560)"
fi
say "jetson-smoke: passed; logs in $log"
