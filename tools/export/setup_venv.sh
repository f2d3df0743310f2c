#!/usr/bin/env bash
# Creates (once) the Python environment of the exporter and the parity tools, outside the repository,
# and prints the path of its python interpreter on stdout.
#
#   PY=$(tools/export/setup_venv.sh)      # ~3 GB download, 5.7 GB on disk on first use (torch pulls
#                                         # its CUDA packages), cached after
#
# The venv lives in ${PS3RT_VENV_DIR:-$HOME/.cache/ps3rt}/venv-<hash of requirements.txt>, so a change of
# pins builds a fresh one and an unchanged one is reused (CI caches $HOME/.cache).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
req="$here/requirements.txt"
base=${PS3RT_VENV_DIR:-$HOME/.cache/ps3rt}
key=$(sha256sum "$req" | cut -c1-12)
venv="$base/venv-$key"
stamp="$venv/.ps3rt-complete"

if [ ! -f "$stamp" ]; then
    python=${PYTHON:-python3}
    if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null; then
        echo "setup_venv.sh: need Python >= 3.9 as \$PYTHON or python3" >&2
        exit 1
    fi
    echo "setup_venv.sh: creating $venv (first use downloads about 3 GB)" >&2
    rm -rf "$venv"
    mkdir -p "$base"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    # No wheel cache: the venv itself is the cache (keyed by the pins), and a second copy of torch
    # and its CUDA wheels in ~/.cache/pip would cost another ~3.5 GB of disk.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir -r "$req" >&2
    "$venv/bin/python" -c 'import torch, timm, ps3, onnx, onnxruntime, safetensors' >&2
    touch "$stamp"
fi
echo "$venv/bin/python"
