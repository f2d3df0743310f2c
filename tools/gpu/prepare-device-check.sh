#!/usr/bin/env bash
# Build what tools/gpu/device-check.sh runs on a GPU machine without Rust, into target/device-gpu
# (compressed, about 27 MB; the device tool carries at most 64 MiB with the repository): the GPU
# tests built without mimalloc (so they also count allocations), the CLI, the C++ frame_loop example
# with libps3rt.so, and the project venv's ONNX Runtime library. Both binaries are built without the embedded model: the script passes the
# committed models/ps3-tiny-4k, which travels with the repository.
set -euo pipefail
cd "$(dirname "$0")/../.."
newest() { ls -t target/release/deps/"$1"-* | grep -v '\.d$' | head -1; }
dir=target/device-gpu
rm -rf "$dir" && mkdir -p "$dir"
cargo build --release --locked --no-default-features --features mimalloc,onnxruntime,cuda --bin ps3rt
strip -o "$dir/ps3rt" target/release/ps3rt
cargo test --release --locked --no-default-features --features onnxruntime,cuda --test gpu_preprocess --no-run
strip -o "$dir/gpu_preprocess" "$(newest gpu_preprocess)"
# The C++ frame_loop example (the C API's pinned memory and GPU preprocessing from C++), linked with
# libps3rt.so of the same features (no embedded model: the example loads the committed package), which
# it finds next to itself.
cargo build --release --locked --no-default-features --features mimalloc,onnxruntime,cuda --lib
abi=$(sed -n 's/^#define PS3RT_ABI_VERSION \([0-9]*\)$/\1/p' include/ps3rt.h)
strip -o "$dir/libps3rt.so.$abi" target/release/libps3rt.so
ln -sf "libps3rt.so.$abi" "$dir/libps3rt.so"
g++ -O2 -std=c++17 -Iinclude -Ibindings/cpp examples/cpp/frame_loop.cpp -L"$dir" -lps3rt \
    -Wl,-rpath,'$ORIGIN' -static-libstdc++ -o "$dir/frame_loop"
rm "$dir/libps3rt.so"
strip "$dir/frame_loop"
ort=$("$(tools/export/setup_venv.sh)" -c 'import glob, os, onnxruntime
libs = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))
print(libs[-1] if libs else "")')
[ -f "$ort" ] && cp "$ort" "$dir/"
xz -T2 "$dir"/*
ls -la "$dir"
echo "(target/release/ps3rt is now this reduced build: cargo build --release rebuilds the default one)"
