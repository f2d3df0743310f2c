#!/usr/bin/env bash
# Fetch the TensorRT and CUDA headers that the `tensorrt` cargo feature compiles its C++ shim against,
# from package registries (never committed), into target/tensorrt-sdk/ where build.rs looks by default:
#
#   target/tensorrt-sdk/trt-11.4/include     TensorRT 11.4.0.106 headers (crate trtx-sys 0.9.1+rtx1.7,
#                                            TensorRT-Headers/TRT-Enterprise-11.4, Apache-2.0)
#   target/tensorrt-sdk/trt-10.16/include    TensorRT 10.16.0.72 headers (crate trtx-sys 0.5.0,
#                                            TensorRT-Headers/TRT-Enterprise-10.16, Apache-2.0)
#   target/tensorrt-sdk/cuda/include         CUDA 13 runtime headers (PyPI nvidia-cuda-runtime and
#                                            nvidia-cuda-crt 13.5.37)
#   target/tensorrt-sdk/tensorrt -> trt-11.4 the default the build script uses (--default 10.16 to switch)
#   target/tensorrt-sdk/dispatch/            with --dispatch: PyPI tensorrt-dispatch-cu12-libs 11.4.0.106,
#                                            a real, loadable runtime-only libnvinfer_dispatch.so.11 (0.3 MB
#                                            wheel), and cuda/lib/libcudart.so.13 from the runtime wheel
#                                            above: real libraries for the fallback tests
#
# Every download is pinned by SHA-256 and cached in target/tensorrt-sdk/downloads; a second run does
# nothing but check. Needs curl, tar, python3 -m pip (download only) and unzip.
#
#   tools/tensorrt/fetch-headers.sh [--dispatch] [--default 11.4|10.16]
#
# After it, `cargo build --features tensorrt` finds everything; or point the build elsewhere with
# PS3RT_TENSORRT_INCLUDE (the directory holding NvInfer.h) and PS3RT_CUDA_INCLUDE (cuda_runtime_api.h).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
sdk="${PS3RT_TENSORRT_SDK:-${CARGO_TARGET_DIR:-$root/target}/tensorrt-sdk}"
downloads="$sdk/downloads"
want_dispatch=0
default=11.4
while [ $# -gt 0 ]; do
    case "$1" in
    --dispatch) want_dispatch=1 ;;
    --default)
        default=${2:?--default needs 11.4 or 10.16}
        shift
        ;;
    -h | --help)
        sed -n '2,22p' "$0"
        exit 0
        ;;
    *)
        echo "fetch-headers: unknown argument $1" >&2
        exit 2
        ;;
    esac
    shift
done
case "$default" in 11.4 | 10.16) ;; *)
    echo "fetch-headers: --default must be 11.4 or 10.16" >&2
    exit 2
    ;;
esac
mkdir -p "$downloads"

say() { printf 'fetch-headers: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}
sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# crate NAME VERSION SHA256 -> path of the verified .crate file
crate() {
    local name=$1 version=$2 sha=$3
    local file="$downloads/$name-$version.crate"
    if ! sha_ok "$file" "$sha"; then
        local enc=${version//+/%2B}
        say "downloading crate $name $version (crates.io)"
        curl -sSfL --retry 3 -o "$file.part" "https://static.crates.io/crates/$name/$name-$enc.crate" ||
            die "cannot download crate $name $version"
        mv "$file.part" "$file"
        sha_ok "$file" "$sha" || die "$file: SHA-256 mismatch (expected $sha)"
    fi
    echo "$file"
}

# wheel NAME VERSION FILENAME SHA256 -> path of the verified wheel (pip download, no install)
wheel() {
    local name=$1 version=$2 filename=$3 sha=$4
    local file="$downloads/$filename"
    if ! sha_ok "$file" "$sha"; then
        say "downloading wheel $name $version (PyPI)"
        python3 -m pip download -q --no-deps --only-binary=:all: --no-cache-dir \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --python-version 3.11 -d "$downloads" "$name==$version" || die "cannot download $name $version"
        sha_ok "$file" "$sha" || die "$file: SHA-256 mismatch (expected $sha)"
    fi
    echo "$file"
}

# TensorRT headers from a trtx-sys crate: extract_trt CRATE DIR_IN_CRATE DEST
extract_trt() {
    local crate_file=$1 inner=$2 dest=$3
    if [ -f "$dest/include/NvInferVersion.h" ] && [ -f "$dest/.from" ] && [ "$(cat "$dest/.from")" = "$(basename "$crate_file"):$inner" ]; then
        return
    fi
    rm -rf "$dest" "$dest.tmp"
    mkdir -p "$dest.tmp/include"
    # The crate's top directory is <name>-<version>, the file's name without .crate.
    local top
    top=$(basename "$crate_file" .crate)
    tar xzf "$crate_file" -C "$dest.tmp" "$top/TensorRT-Headers/$inner"
    # Headers only (NvInfer*.h, NvOnnx*.h); impl/ holds the Python plugin header, not needed.
    find "$dest.tmp/$top/TensorRT-Headers/$inner" -maxdepth 1 -name '*.h' -exec mv {} "$dest.tmp/include/" \;
    rm -rf "${dest:?}.tmp/$top"
    echo "$(basename "$crate_file"):$inner" >"$dest.tmp/.from"
    mv "$dest.tmp" "$dest"
}

trt11=$(crate trtx-sys 0.9.1+rtx1.7 5480ee056292951daa1bc74532162d6cb75190f091e45d7d97c0c356916ae171)
trt10=$(crate trtx-sys 0.5.0 1efd9036abbd2775da5df4e49793ec8e656f026fb9c60dff7e95bda2d654e634)
extract_trt "$trt11" TRT-Enterprise-11.4 "$sdk/trt-11.4"
extract_trt "$trt10" TRT-Enterprise-10.16 "$sdk/trt-10.16"

rt=$(wheel nvidia-cuda-runtime 13.5.37 nvidia_cuda_runtime-13.5.37-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl \
    df2b79a8852f10d1fef8c848489c49eebb5754051bf870202a862831412b179d)
crt=$(wheel nvidia-cuda-crt 13.5.37 nvidia_cuda_crt-13.5.37-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl \
    e898b7f73d3035fa89915a3f7bf3b54a73e90249746111aed295822c4729bb29)
stamp="$(basename "$rt") $(basename "$crt")"
if [ ! -f "$sdk/cuda/include/cuda_runtime_api.h" ] || [ "$(cat "$sdk/cuda/.from" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$sdk/cuda" "$sdk/cuda.tmp"
    mkdir -p "$sdk/cuda.tmp/include"
    for w in "$rt" "$crt"; do
        unzip -q -o "$w" 'nvidia/cu13/include/*' -d "$sdk/cuda.tmp/x"
    done
    cp -R "$sdk/cuda.tmp/x/nvidia/cu13/include/." "$sdk/cuda.tmp/include/"
    rm -rf "$sdk/cuda.tmp/x"
    echo "$stamp" >"$sdk/cuda.tmp/.from"
    mv "$sdk/cuda.tmp" "$sdk/cuda"
fi

ln -sfn "trt-$default" "$sdk/tensorrt"

if [ "$want_dispatch" = 1 ]; then
    d=$(wheel tensorrt-dispatch-cu12-libs 11.4.0.106 tensorrt_dispatch_cu12_libs-11.4.0.106-py3-none-manylinux_2_28_x86_64.whl \
        ef42ddd8f9ed2147bc1850327e530df6c4e9a4d361aa479cc4b676f3c1ab4ba3)
    if [ ! -f "$sdk/cuda/lib/libcudart.so.13" ]; then
        rm -rf "$sdk/cudart.tmp"
        unzip -q -o "$rt" 'nvidia/cu13/lib/libcudart.so.13' -d "$sdk/cudart.tmp"
        mkdir -p "$sdk/cuda/lib"
        mv "$sdk/cudart.tmp/nvidia/cu13/lib/libcudart.so.13" "$sdk/cuda/lib/"
        rm -rf "$sdk/cudart.tmp"
    fi
    if [ ! -f "$sdk/dispatch/libnvinfer_dispatch.so.11" ]; then
        rm -rf "$sdk/dispatch.tmp"
        unzip -q -o "$d" 'tensorrt_dispatch_libs/*.so*' -d "$sdk/dispatch.tmp"
        mkdir -p "$sdk/dispatch"
        mv "$sdk/dispatch.tmp/tensorrt_dispatch_libs/libnvinfer_dispatch.so.11" "$sdk/dispatch/"
        rm -rf "$sdk/dispatch.tmp"
    fi
fi

say "TensorRT headers: $sdk/trt-11.4/include (11.4.0), $sdk/trt-10.16/include (10.16.0); default $sdk/tensorrt -> trt-$default"
say "CUDA headers:     $sdk/cuda/include (13.x, from nvidia-cuda-runtime + nvidia-cuda-crt 13.5.37)"
if [ "$want_dispatch" = 1 ]; then
    say "runtime-only TensorRT library: $sdk/dispatch/libnvinfer_dispatch.so.11; CUDA runtime: $sdk/cuda/lib/libcudart.so.13"
fi
echo "$sdk"
