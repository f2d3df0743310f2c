#!/usr/bin/env bash
# GPU preprocessing on a machine with an NVIDIA GPU (no Rust needed there): tests/gpu_preprocess.rs
# and the GPU case of tests/alloc.rs against the real driver and GPU, then `ps3rt bench` with the
# planes resampled on the CPU and on the GPU, one after the other on the same two pinned cores
# (tract, and ONNX Runtime when its library was carried), each way of uploading frames, and the
# errors a user gets.
#
# Prepare here (x86-64), then carry target/device-gpu (about 30 MB) to the GPU machine:
#   tools/gpu/prepare-device-check.sh
# Run there:  tools/gpu/device-check.sh     (results under $OUT, default /tmp)
set -u
dir=target/device-gpu
out=${OUT:-/tmp}
for f in "$dir"/*.xz; do
    [ -e "${f%.xz}" ] || { xz -dkc "$f" >"${f%.xz}" && chmod +x "${f%.xz}"; }
done
# NVRTC of the driver's CUDA version: the toolkit's, else a Python package's (PyTorch's nvidia/cu13).
nvrtc=${PS3RT_NVRTC_LIB:-}
if [ -z "$nvrtc" ]; then
    nvrtc=$(ls /usr/local/cuda/lib64/libnvrtc.so.1[0-9]* /usr/local/cuda/targets/*/lib/libnvrtc.so.1[0-9]* 2>/dev/null | grep -v builtins | sort | tail -1)
fi
if [ -z "$nvrtc" ]; then
    for sp in $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
        nvrtc=$(find "$sp/nvidia" -name 'libnvrtc.so.1[0-9]*' 2>/dev/null | grep -v builtins | sort | tail -1)
        [ -n "$nvrtc" ] && break
    done
fi
export PS3RT_NVRTC_LIB="$nvrtc" PS3RT_REQUIRE_GPU=1
ort=$(ls "$PWD/$dir"/libonnxruntime.so.* 2>/dev/null | grep -v '\.xz$' | head -1)
echo "== GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
echo "== NVRTC: ${nvrtc:-none found}; ONNX Runtime: ${ort:-not carried}"
echo "== CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) ($(nproc) cores)"
echo "== 1. tests/gpu_preprocess.rs, allocation count included (PS3RT_REQUIRE_GPU=1: a missing GPU fails)"
"$dir/gpu_preprocess" --nocapture --test-threads=1 2>&1 | tee "$out/tests.txt"
echo "gpu_preprocess exit ${PIPESTATUS[0]}"
bench() { # name, then ps3rt bench arguments
    local name=$1
    shift
    taskset -c 2,3 "$dir/ps3rt" bench --model models/ps3-tiny-4k --resolutions 1280x720,3840x2160,7680x4320 --formats rgb8,nv12 \
        --threads 2 --json "$out/bench-$name.json" "$@" >"$out/bench-$name.txt" 2>&1
    echo "-- $name: $*"
    grep -E '^(model|constant latency|  memory floor)' "$out/bench-$name.txt"
    sed -n '/^GPU preprocessing/,/^constant/p' "$out/bench-$name.txt" | grep -v '^constant'
}
echo "== 2. ps3rt bench on cores 2-3: CPU, then GPU preprocessing (frames brought over as auto picks)"
for b in 256 2560; do
    frames=20
    [ "$b" = 2560 ] && frames=10
    for p in cpu gpu; do
        bench "tract-$b-$p" --backend tract --budget "$b" --frames "$frames" --warmup 2 --preprocess "$p"
        [ -n "$ort" ] && PS3RT_ONNXRUNTIME="$ort" bench "onnxruntime-$b-$p" --backend onnxruntime \
            --budget "$b" --frames "$frames" --warmup 2 --preprocess "$p"
    done
done
echo "== 3. each way of bringing frames to the GPU (tract, K = 256)"
for mode in pageable registered staged mapped; do
    PS3RT_GPU_UPLOAD=$mode bench "upload-$mode" --backend tract --budget 256 --frames 15 --warmup 2 --preprocess gpu
done
echo "== 4. errors"
"$dir/ps3rt" run --model models/ps3-tiny-4k --input tests/fixtures/road-1280x720.png --preprocess gpu:7 >/dev/null 2>"$out/err-device.txt"
echo "gpu:7 -> exit $?: $(cat "$out/err-device.txt")"
PS3RT_NVRTC_LIB=/nonexistent/libnvrtc.so "$dir/ps3rt" run --model models/ps3-tiny-4k --input tests/fixtures/road-1280x720.png --preprocess gpu >/dev/null 2>"$out/err-nvrtc.txt"
echo "no NVRTC -> exit $?: $(cat "$out/err-nvrtc.txt")"
PS3RT_GPU_UPLOAD=fast "$dir/ps3rt" run --model models/ps3-tiny-4k --input tests/fixtures/road-1280x720.png --preprocess gpu >/dev/null 2>"$out/err-upload.txt"
echo "bad PS3RT_GPU_UPLOAD -> exit $?: $(cat "$out/err-upload.txt")"
"$dir/ps3rt" -v run --model models/ps3-tiny-4k --input tests/fixtures/road-1280x720.png --preprocess gpu --budget 256 2>&1 | grep -iE 'GPU|error' | head -3
