#!/usr/bin/env bash
# Installs what cross-compiling ps3rt for Jetson (aarch64) needs on a Debian/Ubuntu x86-64 machine,
# idempotently:
#   - Debian's aarch64 cross toolchain and libc (gcc/g++-aarch64-linux-gnu, libc6-dev-arm64-cross) and
#     qemu-user-static (runs the aarch64 tests and examples here);
#   - the Rust target aarch64-unknown-linux-gnu;
#   - cargo-zigbuild and zig (PyPI's ziglang, in a venv outside the repository), to link against an
#     older glibc than the build machine's: JetPack 5 is Ubuntu 20.04 (glibc 2.31).
#
#   cross/setup.sh
set -euo pipefail
ZIGBUILD_VERSION=0.24.1
ZIGLANG_VERSION=0.14.1
root=$(cd "$(dirname "$0")/.." && pwd)

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need=()
for pkg in gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "cross/setup: installing ${need[*]}" >&2
    sudo_ apt-get update -qq >&2
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
if command -v rustup >/dev/null; then
    rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu >&2
fi
if [ "$(cargo-zigbuild --version 2>/dev/null | awk '{print $2}')" != "$ZIGBUILD_VERSION" ]; then
    echo "cross/setup: installing cargo-zigbuild $ZIGBUILD_VERSION" >&2
    cargo install --locked --quiet cargo-zigbuild --version "$ZIGBUILD_VERSION" >&2
fi
zigenv=${PS3RT_VENV_DIR:-$HOME/.cache/ps3rt}/zig-$ZIGLANG_VERSION
if [ ! -x "$zigenv/bin/zig" ]; then
    echo "cross/setup: installing zig $ZIGLANG_VERSION (PyPI ziglang) in $zigenv" >&2
    rm -rf "$zigenv"
    python3 -m venv "$zigenv"
    "$zigenv/bin/python" -m pip install --quiet --disable-pip-version-check "ziglang==$ZIGLANG_VERSION" >&2
    zig=$("$zigenv/bin/python" -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
    ln -sf "$zig" "$zigenv/bin/zig"
fi
echo "cross/setup: ok (zig: $zigenv/bin/zig)" >&2
