#!/usr/bin/env bash
# Proves the committed tiny package and parity fixtures are made by this repository's code, not by
# hand: regenerates the random checkpoint from its seed, re-exports the package and re-runs the
# official PS3 code, then compares with what is committed.
#
#   tools/parity/check_regen.sh            # ~1 minute once the venv exists (tools/export/setup_venv.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
PY=$("$root/tools/export/setup_venv.sh")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export PS3RT_TINY_CHECKPOINT="$work/checkpoint"
"$root/tools/export/make_tiny_package.sh" "$work/package" 2> "$work/export.log" || { cat "$work/export.log" >&2; exit 1; }
status=0
for f in "$root"/models/ps3-tiny-4k/*; do
    name=$(basename "$f")
    [ "$name" = README.md ] && continue
    if ! cmp -s "$f" "$work/package/$name"; then
        echo "check_regen: models/ps3-tiny-4k/$name differs from the regenerated package" >&2
        status=1
    fi
done
for f in "$work"/package/*; do
    [ -e "$root/models/ps3-tiny-4k/$(basename "$f")" ] || { echo "check_regen: regenerated $(basename "$f") is not committed" >&2; status=1; }
done
[ $status -eq 0 ] && echo "check_regen: models/ps3-tiny-4k is byte-identical to a fresh export of the seeded random checkpoint" >&2
# The fp16 storage variant exports (its own check against the official model: 5e-3) and runs.
"$PY" "$root/tools/export/ps3_export.py" --checkpoint "$work/checkpoint" --out "$work/package-fp16" --precision fp16 \
    2> "$work/export16.log" || { cat "$work/export16.log" >&2; exit 1; }
grep "verify:" "$work/export16.log" >&2
(cd "$root" && cargo run --quiet --locked -- -q run --model "$work/package-fp16" --input tests/fixtures/road-1280x720.png \
    --json "$work/fp16.json" > /dev/null) || { echo "check_regen: ps3rt cannot run the fp16 package" >&2; status=1; }
"$PY" "$root/tools/parity/make_fixtures.py" --checkpoint "$work/checkpoint" --out "$root/tests/fixtures/parity" --check 2> >(grep -v -i warn >&2) || status=1
exit $status
