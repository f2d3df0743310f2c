#!/usr/bin/env bash
# Installs what building the V4L2 capture source needs, idempotently: the `v4l` crate's sys crate
# (v4l2-sys-mit 0.3) runs bindgen on <linux/videodev2.h> at build time, so the build machine needs
# libclang and the Linux UAPI headers (Debian/Ubuntu: libclang-dev, linux-libc-dev). Only on Linux;
# elsewhere (and with `--no-default-features`, which leaves the `v4l2` feature out) nothing is needed.
#
#   scripts/setup-capture.sh
set -euo pipefail

if [ "$(uname -s)" != Linux ]; then
    exit 0
fi

have_libclang() {
    # clang-sys (bindgen's loader) looks for libclang.so / libclang-*.so in the usual places,
    # or where LIBCLANG_PATH points.
    if [ -n "${LIBCLANG_PATH:-}" ] && ls "$LIBCLANG_PATH"/libclang*.so* >/dev/null 2>&1; then
        return 0
    fi
    local f
    for f in /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/*/libclang-*.so* /usr/lib/*/libclang.so*; do
        case "${f##*/}" in
        libclang.so* | libclang-[0-9]*.so*) [ -e "$f" ] && return 0 ;;
        esac
    done
    return 1
}

missing=()
have_libclang || missing+=(libclang-dev)
[ -f /usr/include/linux/videodev2.h ] || missing+=(linux-libc-dev)
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-capture: install ${missing[*]} (libclang and the Linux UAPI headers) with your package manager," >&2
    echo "setup-capture: or build without V4L2 capture: cargo build --no-default-features --features embedded-model" >&2
    exit 1
fi
sudo_cmd=()
if [ "$(id -u)" != 0 ]; then
    sudo_cmd=(sudo)
fi
echo "setup-capture: installing ${missing[*]}" >&2
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
have_libclang || {
    echo "setup-capture: libclang still not found after installing ${missing[*]}" >&2
    exit 1
}
