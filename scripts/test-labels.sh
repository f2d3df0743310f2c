#!/usr/bin/env bash
# The region-label example against the installed package layout (docs/labels.md):
#
#   1. build (PS3RT_PROFILE, default dev: the build `cargo test` made) and scripts/install.sh into
#      target/labels-test/prefix (removed once every check passed)
#   2. examples/cpp with CMake (find_package(ps3rt)): road_signs
#   3. road_signs on synthetic frames, on PPM frames of the project's road image and on a y4m video
#      made from them, bottom-up and with --prompt "speed limit sign" (text tower) and a bank label:
#      one line per frame in the documented format, and the random-weights note
#   4. `ps3rt labels` and `ps3rt run --labels --prompt` on the same package
#
#   scripts/test-labels.sh                (needs cmake, a C++17 compiler and the project's venv)
#   PS3RT_PROFILE=release scripts/test-labels.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

work="$root/target/labels-test"
prefix="$work/prefix"
profile=${PS3RT_PROFILE:-dev}
bindir=$root/target/$([ "$profile" = dev ] && echo debug || echo release)
passed=0
die() {
    echo "test-labels: FAILED: $*" >&2
    echo "test-labels: $passed passed, 1 failed"
    exit 1
}
ok() {
    passed=$((passed + 1))
    echo "ok: $*"
}

rm -rf "$work"
mkdir -p "$work"
cargo build --profile "$profile" --lib --bin ps3rt
scripts/install.sh --no-build --profile "$profile" "$prefix" >/dev/null
ok "$profile build installed in $prefix"

cmake -S examples/cpp -B "$work/cpp" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
    >"$work/cmake.log" || { cat "$work/cmake.log"; die "cmake configure (examples/cpp)"; }
cmake --build "$work/cpp" --target road_signs >>"$work/cmake.log" || { cat "$work/cmake.log"; die "build road_signs"; }
ok "road_signs built with find_package(ps3rt)"

line='^frame [0-9]+: [a-z0-9 ]+ \([01]\.[0-9][0-9]\) at \[-?[0-9]+ -?[0-9]+ [0-9]+ [0-9]+\], [0-9]+ ms$'
check() {
    local name=$1 frames=$2
    shift 2
    "$work/cpp/road_signs" "$@" >"$work/$name.out" 2>"$work/$name.err" || { cat "$work/$name.out" "$work/$name.err"; die "road_signs $name failed"; }
    [ "$(grep -cE "$line" "$work/$name.out")" = "$frames" ] || { cat "$work/$name.out"; die "road_signs $name: expected $frames frame lines"; }
    grep -q '^note: ps3-tiny-4k has random weights, so these labels are noise' "$work/$name.out" ||
        { cat "$work/$name.out"; die "road_signs $name: no random-weights note"; }
    cat "$work/$name.out"
}
check synthetic 3 --frames 3 --budget 256
check prompt 2 --frames 2 --budget 256 --prompt "speed limit sign"
grep -q '^top-down prompt: "speed limit sign"' "$work/prompt.out" || die "no prompt line"
check package 2 --frames 2 --budget 256 --package models/ps3-tiny-4k --prompt "stop sign"
ok "synthetic frames: one line per frame, bottom-up and top-down"

PY=$(tools/export/setup_venv.sh)
"$PY" - "$work" <<'PYEOF'
import sys
from PIL import Image
work = sys.argv[1]
img = Image.open("tests/fixtures/road-1280x720.png").convert("RGB")
frames = [img, img.transpose(Image.FLIP_LEFT_RIGHT)]
for i, f in enumerate(frames):
    f.save(f"{work}/road{i}.ppm")
with open(f"{work}/road.y4m", "wb") as out:
    out.write(b"YUV4MPEG2 W1280 H720 F10:1 Ip A1:1 C420jpeg\n")
    for f in frames:
        y, cb, cr = f.convert("YCbCr").split()
        out.write(b"FRAME\n" + y.tobytes() + cb.resize((640, 360)).tobytes() + cr.resize((640, 360)).tobytes())
PYEOF
check ppm 2 --budget 256 --ppm "$work/road0.ppm" "$work/road1.ppm"
check y4m 2 --budget 256 --y4m "$work/road.y4m" --prompt "speed limit sign"
# A camera piped in (ffmpeg ... -f yuv4mpegpipe - | road_signs --y4m -): y4m on standard input.
"$work/cpp/road_signs" --budget 256 --y4m - <"$work/road.y4m" >"$work/stdin.out" 2>&1 ||
    { cat "$work/stdin.out"; die "road_signs --y4m - failed"; }
[ "$(grep -cE "$line" "$work/stdin.out")" = 2 ] || { cat "$work/stdin.out"; die "road_signs --y4m -: expected 2 frame lines"; }
ok "PPM frames, a y4m video (I420 planes) and y4m on standard input"

"$bindir/ps3rt" labels >"$work/labels.out" || die "ps3rt labels"
grep -q '^bank     50 labels' "$work/labels.out" || { cat "$work/labels.out"; die "ps3rt labels: no bank"; }
"$bindir/ps3rt" -q run --input tests/fixtures/road-1280x720.png --budget 256 --labels \
    --prompt "speed limit sign" --json "$work/run.json" >"$work/run.out" || die "ps3rt run --labels"
"$PY" - "$work/run.json" <<'PYEOF'
import json, sys
doc = json.load(open(sys.argv[1]))
labels = doc["labels"]
assert labels["random_weights"] and labels["calibrated"], labels
assert 0 < len(labels["regions"]) <= 16, len(labels["regions"])
assert all(len(r["labels"]) == 3 for r in labels["regions"])
assert doc["prompt"] == {"text": "speed limit sign"}, doc["prompt"]
print("run --labels:", len(labels["regions"]), "regions, best", labels["regions"][0]["labels"][0])
PYEOF
ok "ps3rt labels and ps3rt run --labels --prompt"
# The installed copy (~270 MB, mostly libps3rt.a) is only for these checks: drop it once they pass.
rm -rf "$prefix"
echo "test-labels: $passed passed, 0 failed"
