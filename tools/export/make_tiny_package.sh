#!/usr/bin/env bash
# Regenerates the embedded tiny package models/ps3-tiny-4k from nothing but this repository:
# a random-weight checkpoint (fixed seed) exported with the project's exporter.
#
#   tools/export/make_tiny_package.sh [OUT_DIR]     # default: models/ps3-tiny-4k
#
# The checkpoint itself is written to $PS3RT_TINY_CHECKPOINT (default: a temporary directory).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/models/ps3-tiny-4k}
PY=$("$root/tools/export/setup_venv.sh")
ckpt=${PS3RT_TINY_CHECKPOINT:-$(mktemp -d)/ps3-tiny-4k-checkpoint}
"$PY" "$root/tools/export/random_checkpoint.py" --out "$ckpt" \
    --width 32 --depth 4 --heads 2 --mlp-ratio 4 --hrsel-dim 32 --seed 20250611 \
    --scales 378,756,1512,3780 --max-select 2560
"$PY" "$root/tools/export/ps3_export.py" --checkpoint "$ckpt" --out "$out" --name ps3-tiny-4k --force --text-tower
