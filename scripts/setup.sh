#!/usr/bin/env bash
# Installs what building and testing ps3rt needs, idempotently: the Rust components the checks use and
# the pinned Python environment of the exporter and parity tools (outside the repository, cached).
#
#   scripts/setup.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found; install Rust (https://rustup.rs), 1.91 or newer" >&2
    exit 1
fi
if command -v rustup >/dev/null; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || echo "setup: could not add rustfmt/clippy with rustup" >&2
fi
if ! command -v python3 >/dev/null; then
    echo "setup: python3 (3.9+) with venv support is needed for the exporter and parity checks" >&2
    exit 1
fi
"$root/scripts/setup-capture.sh"
"$root/tools/export/setup_venv.sh" >/dev/null
"$root/scripts/setup-ffi.sh"
echo "setup: ok (Python tools in $(dirname "$(dirname "$("$root/tools/export/setup_venv.sh")")"))" >&2
