#!/usr/bin/env bash
# Installs what the C/C++/Python API checks (scripts/test-ffi.sh) need, idempotently: a C/C++
# toolchain, cmake, pkg-config and valgrind from the system's packages (Debian/Ubuntu apt), and
# cbindgen 0.29.4 from crates.io (pinned: the header is generated with it; Debian's cbindgen 0.24
# cannot parse edition-2024 attributes such as #[unsafe(no_mangle)]). The Python side uses the
# project's venv (tools/export/setup_venv.sh), which has numpy.
#
#   scripts/setup-ffi.sh
set -euo pipefail

CBINDGEN_VERSION=0.29.4

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then
    sudo_cmd=(sudo)
fi

# command -> Debian package
declare -A wanted=(
    [cc]=gcc
    [c++]=g++
    [make]=make
    [cmake]=cmake
    [pkg-config]=pkg-config
    [valgrind]=valgrind
    [readelf]=binutils
)
missing=()
for cmd in "${!wanted[@]}"; do
    if ! command -v "$cmd" >/dev/null 2>&1; then
        missing+=("${wanted[$cmd]}")
    fi
done
# AddressSanitizer's runtime comes with gcc on Debian (libasan); check that it links.
if command -v cc >/dev/null 2>&1 &&
    ! echo 'int main(void){return 0;}' | cc -x c -fsanitize=address,undefined -o /dev/null - >/dev/null 2>&1; then
    missing+=(gcc)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "setup-ffi: install these packages with your package manager: ${missing[*]}" >&2
        exit 1
    fi
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    echo "setup-ffi: installing ${missing[*]}" >&2
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends \
        "${missing[@]}" libc6-dev >&2
fi

if [ "$(cbindgen --version 2>/dev/null || true)" != "cbindgen $CBINDGEN_VERSION" ]; then
    if ! command -v cargo >/dev/null; then
        echo "setup-ffi: cargo not found; install Rust (https://rustup.rs)" >&2
        exit 1
    fi
    echo "setup-ffi: installing cbindgen $CBINDGEN_VERSION (cargo install --locked)" >&2
    cargo install --locked --force cbindgen --version "$CBINDGEN_VERSION" >&2
fi
echo "setup-ffi: ok ($(cbindgen --version), $(cmake --version | head -1), $(valgrind --version))" >&2
