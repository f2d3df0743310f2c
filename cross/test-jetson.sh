#!/usr/bin/env bash
# Tests the Jetson (aarch64) build here, under qemu-user: what CI can check without a Jetson.
#
#   1. cross/build-jetson.sh: the aarch64 build, both JetPack tarballs, GLIBC symbol-version limits;
#   2. the aarch64 CLI from the JetPack 5 tarball under qemu: `ps3rt info`, and `ps3rt run` on the
#      1280x720 test image, compared with the x86-64 build on the same image (same selection counts
#      per 27x27 cell, probability map and features within 1e-4 relative);
#   3. the C example (examples/c) cross-compiled against the tarball with pkg-config, run under qemu;
#   4. the Rust unit tests and the package tests, cross-compiled and run under qemu
#      (`--all-tests` adds the parity and CLI suites: several more minutes under emulation).
#
#   cross/test-jetson.sh [--profile release|dev] [--all-tests]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

TRIPLE=aarch64-unknown-linux-gnu
profile=release
all_tests=0
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile=$2; shift 2 ;;
        --all-tests) all_tests=1; shift ;;
        *) echo "test-jetson.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
started=$(date +%s)
step() { printf '\n== %s (%ds)\n' "$*" "$(($(date +%s) - started))"; }
qemu() { qemu-aarch64-static -L /usr/aarch64-linux-gnu "$@"; }
work="$root/target/jetson/test"
rm -rf "$work"
mkdir -p "$work"

step "cross/build-jetson.sh --profile $profile"
cross/build-jetson.sh --profile "$profile"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
tree="$root/target/jetson/ps3rt-$version-jetpack5-aarch64"

step "aarch64 CLI under qemu vs the x86-64 build"
image="$root/tests/fixtures/road-1280x720.png"
LD_LIBRARY_PATH="$tree/lib" qemu "$tree/bin/ps3rt" info >"$work/info.txt"
grep -q "ps3-tiny-4k" "$work/info.txt" || { cat "$work/info.txt" >&2; echo "test-jetson: info failed" >&2; exit 1; }
qemu "$tree/bin/ps3rt" -q run --input "$image" --budget 1024 --json "$work/arm.json" --features "$work/arm.npy" >/dev/null
cargo build --quiet --locked --profile "$profile" --bin ps3rt
x86=$root/target/$([ "$profile" = dev ] && echo debug || echo release)/ps3rt
"$x86" -q run --input "$image" --budget 1024 --json "$work/x86.json" --features "$work/x86.npy" >/dev/null
python3 - "$work" <<'PY'
import json, struct, sys
work = sys.argv[1]
a, b = (json.load(open(f"{work}/{n}.json")) for n in ("arm", "x86"))
def cells(doc):
    c = {}
    for t in doc["selected"]:
        f = t["scale"] // 14 // 27
        k = (t["scale"], t["row"] // f, t["col"] // f)
        c[k] = c.get(k, 0) + 1
    return c
assert cells(a) == cells(b), "aarch64 and x86-64 select different patch counts per cell"
pa = [v for r in a["prob_map"] for v in r]
pb = [v for r in b["prob_map"] for v in r]
dp = max(abs(x - y) for x, y in zip(pa, pb))
assert dp < 1e-4, f"probability maps differ by {dp}"
def npy(path):
    raw = open(path, "rb").read()
    hl = struct.unpack("<H", raw[8:10])[0]
    return struct.unpack(f"<{(len(raw) - 10 - hl) // 4}f", raw[10 + hl:])
fa, fb = npy(f"{work}/arm.npy"), npy(f"{work}/x86.npy")
assert len(fa) == len(fb)
err = max(abs(x - y) for x, y in zip(fa, fb)) / max(abs(y) for y in fb)
same = sum(1 for t, u in zip(a["selected"], b["selected"]) if t == u) / len(b["selected"])
assert err < 1e-4, f"features differ by {err:.2e} (relative)"
print(f"aarch64 vs x86-64: same per-cell counts, {same:.1%} identical tokens, prob map diff {dp:.1e}, features {err:.1e} relative; "
      f"aarch64 under qemu took {a['timing_ms']['total_ms']:.0f} ms, x86-64 {b['timing_ms']['total_ms']:.0f} ms")
PY

step "C example cross-compiled against the tarball (pkg-config), run under qemu"
PKG_CONFIG_PATH="$tree/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR= \
    aarch64-linux-gnu-gcc -std=c11 -O2 -Wall -Werror examples/c/encode_ppm.c -o "$work/encode_ppm" \
    $(PKG_CONFIG_PATH="$tree/lib/pkgconfig" pkg-config --cflags --libs ps3rt) -Wl,-rpath,"$tree/lib"
file "$work/encode_ppm" | grep -q "ARM aarch64"
"$(tools/export/setup_venv.sh)" -c "
import sys
from PIL import Image
Image.open(sys.argv[1]).convert('RGB').save(sys.argv[2])
" "$image" "$work/road.ppm"
qemu "$work/encode_ppm" "$work/road.ppm" --budget 256 --package "$tree/share/ps3rt/models/ps3-tiny-4k" \
    >"$work/c-example.txt" 2>&1 || { cat "$work/c-example.txt" >&2; exit 1; }
grep -q '^features 985 tokens x 32' "$work/c-example.txt" || { cat "$work/c-example.txt" >&2; exit 1; }
head -n 4 "$work/c-example.txt"

step "Rust tests cross-compiled, under qemu"
zigdir=$(ls -d "${PS3RT_VENV_DIR:-$HOME/.cache/ps3rt}"/zig-* | tail -n 1)
tests=(--lib --test package)
[ "$all_tests" = 1 ] && tests=(--lib --test package --test parity --test cli)
PATH="$zigdir/bin:$PATH" cargo-zigbuild test --locked --profile "$profile" \
    --config "target.$TRIPLE.runner='qemu-aarch64-static -L /usr/aarch64-linux-gnu'" \
    --target "$TRIPLE.2.31" "${tests[@]}"

step "done"
echo "test-jetson: ok"
