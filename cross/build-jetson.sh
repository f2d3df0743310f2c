#!/usr/bin/env bash
# Cross-builds ps3rt for Jetson (aarch64-unknown-linux-gnu) on an x86-64 machine and packs one
# deployable tarball per JetPack line:
#
#   target/aarch64-unknown-linux-gnu/<profile>/    libps3rt.so, libps3rt.a, ps3rt
#   target/jetson/ps3rt-<version>-jetpack5-aarch64.tar.gz   Ubuntu 20.04, glibc 2.31 (TensorRT 8.5)
#   target/jetson/ps3rt-<version>-jetpack6-aarch64.tar.gz   Ubuntu 22.04, glibc 2.35 (TensorRT 8.6 / 10.3;
#                                                           also JetPack 7, Ubuntu 24.04)
#
# One build serves every line: it is linked (cargo-zigbuild) against glibc 2.31, the oldest JetPack
# userland, and TensorRT/CUDA are opened at run time, never linked. Each tarball is checked: no
# symbol may need a GLIBC version above its line's (2.31 / 2.35), and the SONAME must be libps3rt.so.1.
#
#   cross/setup.sh                           # once: cross toolchain, qemu, cargo-zigbuild, zig
#   cross/build-jetson.sh [--profile release|dev] [--features "a,b"]
#
# Tarball layout: bin/ps3rt, lib/ (libps3rt.so.1 + link, libps3rt.a, pkgconfig/, cmake/ps3rt/),
# include/ (ps3rt.h, ps3rt.hpp), share/ps3rt/models/ps3-tiny-4k, share/ps3rt/python/ps3rt.py,
# share/doc/ps3rt/, README.md (deployment steps).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

TRIPLE=aarch64-unknown-linux-gnu
GLIBC_BUILD=2.31
profile=release
features=
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile=$2; shift 2 ;;
        --features) features=$2; shift 2 ;;
        -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "build-jetson.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$profile" in release | dev) ;; *) echo "build-jetson.sh: --profile release|dev" >&2; exit 2 ;; esac
outdir=$([ "$profile" = dev ] && echo debug || echo release)

zigdir=$(ls -d "${PS3RT_VENV_DIR:-$HOME/.cache/ps3rt}"/zig-* 2>/dev/null | tail -n 1 || true)
if [ -z "$zigdir" ] || [ ! -x "$zigdir/bin/zig" ] || ! cargo-zigbuild --version >/dev/null 2>&1; then
    echo "build-jetson.sh: zig or cargo-zigbuild missing: run cross/setup.sh" >&2
    exit 1
fi
export PATH="$zigdir/bin:$PATH"
command -v aarch64-linux-gnu-gcc >/dev/null || { echo "build-jetson.sh: aarch64-linux-gnu-gcc missing: run cross/setup.sh" >&2; exit 1; }

echo "== cargo zigbuild --target $TRIPLE.$GLIBC_BUILD ($profile)" >&2
# zig links against glibc 2.31 stubs and compiles dependencies' C code (mimalloc) for the same glibc.
# (cross/config.toml is not passed: its gcc linker would win over zigbuild's and link against this
# machine's glibc.)
cargo zigbuild --locked --profile "$profile" --target "$TRIPLE.$GLIBC_BUILD" \
    --lib --bin ps3rt ${features:+--features "$features"}
art="$root/target/$TRIPLE/$outdir"
file "$art/ps3rt" | grep -q "ARM aarch64" || { echo "build-jetson.sh: $art/ps3rt is not an aarch64 executable" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
mkdir -p target/jetson

# Highest GLIBC_x.y symbol version an ELF file needs.
max_glibc() {
    aarch64-linux-gnu-objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1
}

for line in 5 6; do
    case $line in
        5) limit=2.31; ubuntu="20.04"; trt="8.5 (JetPack 5.1)" ;;
        6) limit=2.35; ubuntu="22.04"; trt="8.6 (JetPack 6.0) or 10.3 (JetPack 6.1/6.2); JetPack 7 (Ubuntu 24.04, TensorRT 10.13) too" ;;
    esac
    name="ps3rt-$version-jetpack$line-aarch64"
    stage="target/jetson/$name"
    rm -rf "$stage"
    STRIP=aarch64-linux-gnu-strip scripts/install.sh --target "$TRIPLE" --profile "$profile" --strip "$stage" >/dev/null
    install -D -m 755 "$art/ps3rt" "$stage/bin/ps3rt"
    aarch64-linux-gnu-strip --strip-debug "$stage/bin/ps3rt"
    mkdir -p "$stage/share/ps3rt/models"
    cp -r models/ps3-tiny-4k "$stage/share/ps3rt/models/"
    for f in "$stage/bin/ps3rt" "$stage/lib/libps3rt.so.1"; do
        need=$(max_glibc "$f")
        if [ "$(printf '%s\n%s\n' "$need" "$limit" | sort -V | tail -n 1)" != "$limit" ]; then
            echo "build-jetson.sh: $f needs GLIBC_$need, JetPack $line has $limit" >&2
            exit 1
        fi
        echo "jetpack$line: $(basename "$f") needs GLIBC_$need (<= $limit)" >&2
    done
    cat >"$stage/README.md" <<README
# ps3rt $version for NVIDIA Jetson, JetPack $line (Ubuntu $ubuntu, aarch64)

Built on x86-64 by cross/build-jetson.sh (cargo-zigbuild, glibc $GLIBC_BUILD). TensorRT and CUDA are
opened at run time when present (TensorRT $trt); without them ps3rt runs on the CPU (tract).

    tar xzf $name.tar.gz && cd $name
    export LD_LIBRARY_PATH=\$PWD/lib:\$LD_LIBRARY_PATH   # or copy lib/ and include/ to /usr/local
    bin/ps3rt info                                      # the embedded tiny model, backends available here
    bin/ps3rt run --input frame.jpg                     # one image, or a folder
    bin/ps3rt camera --device /dev/video0 --frames 100  # a V4L2 camera (if this build has the camera command)

For stable latency pin the clocks first: \`sudo nvpmodel -m 0 && sudo jetson_clocks\` (the highest
power mode; check \`nvpmodel -q\`). C/C++: include/ps3rt.h and ps3rt.hpp, pkg-config (lib/pkgconfig) or
CMake (\`find_package(ps3rt)\` with CMAKE_PREFIX_PATH=\$PWD). share/ps3rt/models/ps3-tiny-4k is a
random-weight test model: export a real checkpoint with tools/export on a workstation.
README
    tar -C target/jetson -czf "target/jetson/$name.tar.gz" "$name"
    echo "wrote target/jetson/$name.tar.gz ($(du -h "target/jetson/$name.tar.gz" | cut -f1))" >&2
done
