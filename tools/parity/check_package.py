#!/usr/bin/env python3
"""Check `ps3rt run` on a package against the official PS3 code on its checkpoint (any size).

    check_package.py --checkpoint DIR --package PKG [--ps3rt target/release/ps3rt] [--budget K]

1. the parity tensor (tools/parity/make_fixtures.py) through the official model at budget K: its
   selection and last_hidden_state;
2. `ps3rt run` on the same tensor with its own selection: the number of selected patches in every
   (scale, 27x27 cell) must equal the reference's;
3. `ps3rt run --selection` with the reference's selection: features within 1e-4 relative.
Prints ps3rt's wall time and peak RSS for both runs. Exit status 0 when both checks pass.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "export"))

import numpy as np  # noqa: E402

from make_fixtures import parity_tensor, run_case  # noqa: E402
from ps3_official import read_checkpoint  # noqa: E402


def run_ps3rt(cmd: list[str]) -> tuple[float, float]:
    """Run a command under /usr/bin/time; return (wall seconds, peak RSS in GB of that command alone).
    (A child forked from this process would report this process's RSS at the fork.)"""
    with tempfile.NamedTemporaryFile("r") as stats:
        t0 = time.time()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", stats.name, *cmd], stdout=subprocess.DEVNULL)
        wall = time.time() - t0
        if proc.returncode != 0:
            raise SystemExit(f"check_package: {' '.join(cmd)} failed with exit code {proc.returncode}")
        return wall, int(stats.read().split()[-1]) / 1e6


def cell_counts(tokens, grids, g0=27):
    counts = {}
    for s, r, c in tokens:
        f = grids[s] // g0
        key = (s, r // f, c // f)
        counts[key] = counts.get(key, 0) + 1
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--package", required=True)
    ap.add_argument("--ps3rt", default=os.path.join(HERE, "..", "..", "target", "release", "ps3rt"))
    ap.add_argument("--budget", type=int, default=None)
    args = ap.parse_args()

    with open(os.path.join(args.package, "manifest.json")) as f:
        manifest = json.load(f)
    geo = manifest["geometry"]
    budget = args.budget or geo["budget"]
    scales, grids = geo["scales"][1:], geo["grids"][1:]
    ckpt = read_checkpoint(args.checkpoint)
    x = parity_tensor(geo["input_size"])

    t0 = time.time()
    ref = run_case(ckpt, x, budget, 1)
    ref_s = time.time() - t0
    ref_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"reference (official PS3, PyTorch CPU): {ref_s:.1f} s, peak RSS {ref_rss:.2f} GB", flush=True)
    ref_tokens = [tuple(int(v) for v in t) for t in ref["selection"][0]]

    with tempfile.TemporaryDirectory() as tmp:
        npy = os.path.join(tmp, "pixels.npy")
        np.save(npy, x)
        del x
        own_json = os.path.join(tmp, "own.json")
        wall, rss = run_ps3rt([args.ps3rt, "-q", "run", "--model", args.package, "--input", npy, "--budget", str(budget), "--json", own_json])
        with open(own_json) as f:
            own = json.load(f)
        print(f"ps3rt run (own selection): {wall:.1f} s wall incl. load, peak RSS {rss:.2f} GB; stages {own['timing_ms']}")
        own_tokens = [(scales.index(t["scale"]), t["row"], t["col"]) for t in own["selected"]]
        a, b = cell_counts(own_tokens, grids), cell_counts(ref_tokens, grids)
        differing = sum(1 for k in set(a) | set(b) if a.get(k, 0) != b.get(k, 0))
        print(f"selection: {len(own_tokens)} vs {len(ref_tokens)} tokens, {differing} (scale, cell) pairs with a different count")

        sel = os.path.join(tmp, "selection.json")
        with open(sel, "w") as f:
            json.dump({"steps": [[{"scale": scales[s], "row": r, "col": c} for s, r, c in ref_tokens]]}, f)
        feats = os.path.join(tmp, "features.npy")
        wall, rss = run_ps3rt([args.ps3rt, "-q", "run", "--model", args.package, "--input", npy, "--budget", str(budget), "--selection", sel, "--features", feats])
        ours = np.load(feats)
    err = float(np.abs(ours - ref["features"]).max() / np.abs(ref["features"]).max())
    print(f"ps3rt run (reference selection): {wall:.1f} s, peak RSS {rss:.2f} GB; features {ours.shape}: max|diff|/max|ref| = {err:.2e}")
    ok = differing == 0 and err <= 1e-4
    print("check_package: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
