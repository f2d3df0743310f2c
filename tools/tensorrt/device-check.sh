#!/usr/bin/env bash
# A short check for a machine with an NVIDIA GPU but no TensorRT (no Rust needed there): the CUDA
# side of the TensorRT probe against a real driver and GPU, and the fallback reasons ps3rt gives.
#
# Prepare here (x86-64):  cargo build --features tensorrt --bin ps3rt
#                         mkdir -p target/device-check && strip -o target/device-check/ps3rt target/debug/ps3rt
#                         cp target/tensorrt-sdk/dispatch/libnvinfer_dispatch.so.11 target/device-check/
# Run there:              tools/tensorrt/device-check.sh [CUDART]   (default: a libcudart.so.1x from
#                         the Python site-packages, e.g. PyTorch's nvidia/cu13/lib)
set -u
dir=target/device-check
bin=$dir/ps3rt
out=${OUT:-/tmp}
# The binary may travel compressed (xz -k target/device-check/ps3rt).
[ -x "$bin" ] || { [ -f "$bin.xz" ] && xz -dk "$bin.xz" && chmod +x "$bin"; }
cudart=${1:-}
if [ -z "$cudart" ]; then
    for sp in $(python3 -c 'import site, sys; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null); do
        c=$(find "$sp/nvidia" -name 'libcudart.so.1[0-9]*' 2>/dev/null | sort -r | head -1)
        [ -n "$c" ] && cudart=$c && break
    done
fi
echo "== GPU (nvidia-smi -L)"
nvidia-smi -L 2>&1 | head -4
echo "== CUDA runtime used: ${cudart:-none found}"
echo "== 1. default search, no TensorRT installed"
"$bin" info 2>&1 | sed -n '/^backends/,$p' | tee "$out/info-default.txt"
echo "== 2. PS3RT_CUDART_LIB=$cudart, PS3RT_TENSORRT_LIB=libnvinfer_dispatch.so.11 (runtime-only TensorRT 11.4)"
PS3RT_CUDART_LIB="$cudart" PS3RT_TENSORRT_LIB="$PWD/$dir/libnvinfer_dispatch.so.11" "$bin" info 2>&1 | sed -n '/^backends/,$p' | tee "$out/info-dispatch.txt"
PS3RT_CUDART_LIB="$cudart" PS3RT_TENSORRT_LIB="$PWD/$dir/libnvinfer_dispatch.so.11" "$bin" info --format json >"$out/info-dispatch.json" 2>&1
echo "== 3. PS3RT_CUDART_LIB only: run --backend auto (falls back to tract, says why) and --backend tensorrt (exit 5)"
PS3RT_CUDART_LIB="$cudart" "$bin" -v run --input tests/fixtures/road-1280x720.png --budget 256 2>&1 | grep -E 'backend|ready' | head -3
PS3RT_CUDART_LIB="$cudart" "$bin" run --input tests/fixtures/road-1280x720.png --backend tensorrt --budget 256 >/dev/null 2>"$out/run-tensorrt.err"
echo "exit $? : $(cat "$out/run-tensorrt.err")"
echo "== 4. a device ordinal that does not exist"
PS3RT_CUDA_DEVICE=7 PS3RT_CUDART_LIB="$cudart" "$bin" info 2>&1 | grep -E 'CUDA|GPU' | head -3
