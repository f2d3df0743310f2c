#!/usr/bin/env bash
# GPU preprocessing on a machine with an NVIDIA GPU (no Rust needed there): tests/gpu_preprocess.rs
# and the GPU case of tests/alloc.rs against the real driver and GPU, then `ps3rt bench` with the
# planes resampled on the CPU and on the GPU, one after the other on the same two pinned cores
# (tract, and ONNX Runtime when its library was carried), each way of uploading frames, and the
# errors a user gets.
#
# Prepare here (x86-64), then carry target/device-gpu (about 27 MB) to the GPU machine:
#   tools/gpu/prepare-device-check.sh
# Run there:  tools/gpu/device-check.sh [SECTION...]     (results under $OUT, default /tmp)
# Sections (default: all): tests, bench, upload, pinned, gather, download, c, camera, errors.
#   pinned: frames in page-locked memory (ps3rt::PinnedBuffer) against pageable ones, GPU
#           preprocessing, both backends, with the CPU-preprocessing baseline in the same call;
#   gather: the selected patches gathered on the CPU against on the GPU (PS3RT_GPU_GATHER);
#   download: the planes brought back into pageable buffers against page-locked ones
#           (PS3RT_GPU_DOWNLOAD), pinned frames, both backends;
#   c:      the C++ frame_loop example on the GPU, its frames in ps3rt_pinned_alloc memory;
#   camera: ps3rt camera on the synthetic scene, CPU then GPU preprocessing (frames captured into
#           page-locked memory).
set -u
sections=${*:-tests bench upload pinned gather download c camera errors}
want() { case " $sections " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
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
if want tests; then
    echo "== tests/gpu_preprocess.rs, allocation count included (PS3RT_REQUIRE_GPU=1: a missing GPU fails)"
    "$dir/gpu_preprocess" --nocapture --test-threads=1 >"$out/tests.txt" 2>&1
    echo "gpu_preprocess exit $?"
    grep -E '^test |test result|compared|allocations by ps3rt|GPU:|panicked|assert' "$out/tests.txt" | head -40
fi
bench() { # name, then ps3rt bench arguments
    local name=$1
    shift
    taskset -c 2,3 "$dir/ps3rt" bench --model models/ps3-tiny-4k --resolutions 1280x720,3840x2160,7680x4320 --formats rgb8,nv12 \
        --threads 2 --json "$out/bench-$name.json" "$@" >"$out/bench-$name.txt" 2>&1
    echo "-- $name: $*"
    grep -E '^(model|constant latency|  memory floor)' "$out/bench-$name.txt"
    sed -n '/^GPU preprocessing/,/^constant/p' "$out/bench-$name.txt" | grep -v '^constant'
}
want bench && echo "== ps3rt bench on cores 2-3: CPU, then GPU preprocessing (frames brought over as auto picks)"
want bench && for b in 256 2560; do
    frames=20
    [ "$b" = 2560 ] && frames=10
    for p in cpu gpu; do
        bench "tract-$b-$p" --backend tract --budget "$b" --frames "$frames" --warmup 2 --preprocess "$p"
        [ -n "$ort" ] && PS3RT_ONNXRUNTIME="$ort" bench "onnxruntime-$b-$p" --backend onnxruntime \
            --budget "$b" --frames "$frames" --warmup 2 --preprocess "$p"
    done
done
want upload && echo "== each way of bringing frames to the GPU (tract, K = 256)"
want upload && for mode in pageable registered staged mapped; do
    PS3RT_GPU_UPLOAD=$mode bench "upload-$mode" --backend tract --budget 256 --frames 15 --warmup 2 --preprocess gpu
done
if want pinned; then
    echo "== frames in pinned memory against pageable ones (K = 256; CPU preprocessing first, as the baseline)"
    for backend in onnxruntime tract; do
        [ "$backend" = onnxruntime ] && [ -z "$ort" ] && continue
        for run in cpu-pageable gpu-pageable gpu-pinned; do
            PS3RT_ONNXRUNTIME="$ort" bench "pinned-$backend-$run" --backend "$backend" --budget 256 --frames 20 \
                --warmup 3 --preprocess "${run%-*}" --frame-memory "${run#*-}"
        done
    done
    PS3RT_ONNXRUNTIME="$ort" bench "pinned-onnxruntime-2560" --backend onnxruntime --budget 2560 --frames 10 \
        --warmup 2 --preprocess gpu --frame-memory pinned
fi
if want gather; then
    echo "== the selected patches gathered on the CPU (PS3RT_GPU_GATHER=cpu) or on the GPU, pinned frames, ONNX Runtime"
    for b in 256 2560; do
        frames=20
        [ "$b" = 2560 ] && frames=10
        for where in cpu gpu; do
            PS3RT_GPU_GATHER=$where PS3RT_ONNXRUNTIME="$ort" bench "gather-$b-$where" --backend onnxruntime --budget "$b" \
                --frames "$frames" --warmup 2 --preprocess gpu --frame-memory pinned
        done
    done
    PS3RT_GPU_GATHER=fpga "$dir/ps3rt" run --model models/ps3-tiny-4k --input tests/fixtures/road-1280x720.png --preprocess gpu >/dev/null 2>"$out/err-gather.txt"
    echo "bad PS3RT_GPU_GATHER -> exit $?: $(cat "$out/err-gather.txt")"
fi
if want download; then
    echo "== the planes brought back into pageable buffers (PS3RT_GPU_DOWNLOAD=pageable) or page-locked ones (the default), pinned frames"
    for backend in onnxruntime tract; do
        [ "$backend" = onnxruntime ] && [ -z "$ort" ] && continue
        for round in 1 2; do
            for how in pageable auto; do
                PS3RT_GPU_DOWNLOAD=$how PS3RT_ONNXRUNTIME="$ort" bench "download-$backend-$how-$round" --backend "$backend" \
                    --budget 256 --frames 20 --warmup 3 --preprocess gpu --frame-memory pinned --timing-floor-rounds 0
            done
        done
    done
fi
if want c; then
    echo "== the C++ frame_loop example on GPU 0 (frames in ps3rt_pinned_alloc memory)"
    "$dir/frame_loop" --package models/ps3-tiny-4k --frames 3 --size 1920x1080 --budget 256 --gpu 0 \
        >"$out/frame_loop.txt" 2>&1
    echo "frame_loop exit $?"
    head -6 "$out/frame_loop.txt"
fi
if want camera; then
    echo "== ps3rt camera on the synthetic 4K NV12 scene at 30 fps (GPU: frames captured into pinned memory)"
    for p in cpu gpu; do
        taskset -c 2,3 "$dir/ps3rt" camera --model models/ps3-tiny-4k --synthetic 3840x2160 --format nv12 --fps 30 \
            --frames 40 --budget 256 --threads 2 --preprocess "$p" >"$out/camera-$p.txt" 2>&1
        echo "-- $p: exit $?"
        grep -A2 '^summary' "$out/camera-$p.txt"
    done
fi
want errors || exit 0
echo "== errors"
"$dir/ps3rt" run --model models/ps3-tiny-4k --input tests/fixtures/road-1280x720.png --preprocess gpu:7 >/dev/null 2>"$out/err-device.txt"
echo "gpu:7 -> exit $?: $(cat "$out/err-device.txt")"
PS3RT_NVRTC_LIB=/nonexistent/libnvrtc.so "$dir/ps3rt" run --model models/ps3-tiny-4k --input tests/fixtures/road-1280x720.png --preprocess gpu >/dev/null 2>"$out/err-nvrtc.txt"
echo "no NVRTC -> exit $?: $(cat "$out/err-nvrtc.txt")"
PS3RT_GPU_UPLOAD=fast "$dir/ps3rt" run --model models/ps3-tiny-4k --input tests/fixtures/road-1280x720.png --preprocess gpu >/dev/null 2>"$out/err-upload.txt"
echo "bad PS3RT_GPU_UPLOAD -> exit $?: $(cat "$out/err-upload.txt")"
PS3RT_GPU_DOWNLOAD=fast "$dir/ps3rt" run --model models/ps3-tiny-4k --input tests/fixtures/road-1280x720.png --preprocess gpu >/dev/null 2>"$out/err-download.txt"
echo "bad PS3RT_GPU_DOWNLOAD -> exit $?: $(cat "$out/err-download.txt")"
"$dir/ps3rt" -v run --model models/ps3-tiny-4k --input tests/fixtures/road-1280x720.png --preprocess gpu --budget 256 2>&1 | grep -iE 'GPU|error' | head -3
