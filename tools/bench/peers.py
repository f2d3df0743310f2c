#!/usr/bin/env python3
"""ps3rt against the peers a user would pick instead, side by side in one run, on the same frames.

    tools/bench/peers.py [--model PKG --checkpoint CKPT] [--resolutions 1280x720,3840x2160]
                         [--budget K] [--frames N] [--threads 2] [--skip-reference]
                         [--ps3rt-backends tract,onnxruntime] [--json OUT]

Every peer starts from the same raw 8-bit RGB frame (the project's synthetic road scene, rendered by
`ps3rt demo`) and ends with the features `[729 + K, C]`:
- ps3rt: `ps3rt bench` (release build), once per backend of --ps3rt-backends (default tract; the
  onnxruntime backend opens this Python's own onnxruntime library unless PS3RT_ONNXRUNTIME is set);
- tract with default settings: the same ps3rt code built without the mimalloc feature and run with
  one thread (tract's default executor), to show what ps3rt's own work on top of tract adds;
- ONNX Runtime: the package's own three graphs in `onnxruntime` (same thread count) with numpy/torch
  glue and PS3's preprocessing (PIL squash, torch resizes): what a Python user would write;
- the official reference: PyTorch CPU (`ps3-torch`, same checkpoint, same input, same budget).
Prints p50 latencies and the ratios. Without --model, the embedded tiny package and its checkpoint
(regenerated from its seed) are used.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "export"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402


def p50(xs):
    return float(np.percentile(np.array(xs), 50))


def onnxruntime_library() -> str:
    """The ONNX Runtime library for ps3rt's onnxruntime backend: $PS3RT_ONNXRUNTIME, else the one in
    this Python's onnxruntime wheel (the same build the ONNX Runtime peer runs)."""
    if os.environ.get("PS3RT_ONNXRUNTIME"):
        return os.environ["PS3RT_ONNXRUNTIME"]
    import glob

    import onnxruntime

    libs = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))
    if not libs:
        raise SystemExit("no libonnxruntime.so in this Python's onnxruntime package: set PS3RT_ONNXRUNTIME")
    return libs[-1]


def ps3rt_bench(binary: str, model: str | None, res: list[str], budget: int, frames: int, threads: int, env=None,
                backend: str = "auto") -> dict:
    if backend == "onnxruntime":
        env = dict(env or os.environ, PS3RT_ONNXRUNTIME=onnxruntime_library())
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [binary, "-q", "bench", "--resolutions", ",".join(res), "--budget", str(budget), "--frames", str(frames),
               "--warmup", "2", "--threads", str(threads), "--backend", backend, "--json", out.name]
        if model:
            cmd += ["--model", model]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
        doc = json.load(open(out.name))
    return {r["resolution"]: r for r in doc["results"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="package directory (default: models/ps3-tiny-4k)")
    ap.add_argument("--checkpoint", default=None, help="the package's checkpoint (default: regenerate the tiny one)")
    ap.add_argument("--resolutions", default="1280x720,3840x2160")
    ap.add_argument("--budget", type=int, default=None)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-reference", action="store_true", help="leave out the official PyTorch code (slow at full size)")
    ap.add_argument("--skip-tract-default", action="store_true", help="leave out the tract-defaults build")
    ap.add_argument("--ps3rt-bin", default=None, help="a prebuilt ps3rt (default: cargo build --release)")
    ap.add_argument("--tract-default-bin", default=None,
                    help="a prebuilt ps3rt without mimalloc (default: cargo build --no-default-features)")
    ap.add_argument("--ps3rt-backends", default="tract",
                    help="ps3rt backends to run, comma-separated (tract, onnxruntime); ratios are against the first")
    ap.add_argument("--pin", default=None, help="CPU list for every peer (taskset -c), e.g. 0,1")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.pin:
        # Every peer runs on the same cores: this process (ONNX Runtime, PyTorch) and the ps3rt
        # processes it starts (they inherit the affinity).
        os.sched_setaffinity(0, {int(c) for c in args.pin.split(",")})
    torch.set_num_threads(args.threads)

    from ps3_official import build_vision_model, read_checkpoint
    from ps3_package import OrtPipeline, Package
    from ps3.image_processing_ps3 import PS3ImageProcessor

    model_dir = args.model or os.path.join(ROOT, "models", "ps3-tiny-4k")
    pkg = Package(model_dir)
    budget = args.budget or pkg.geometry["budget"]
    res = args.resolutions.split(",")
    work = tempfile.mkdtemp(prefix="ps3rt-peers-")

    if args.ps3rt_bin:
        ps3rt = args.ps3rt_bin
    else:
        print("building ps3rt (release)", file=sys.stderr, flush=True)
        subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "ps3rt"], cwd=ROOT, check=True)
        ps3rt = os.path.join(ROOT, "target", "release", "ps3rt")
    frames = {}
    for r in res:
        subprocess.run([ps3rt, "-q", "demo", "--size", r, "--out-dir", work, "--budget", str(budget)] + (["--model", model_dir] if args.model else []),
                       check=True, stdout=subprocess.DEVNULL)
        frames[r] = np.asarray(Image.open(os.path.join(work, f"road-{r}.png")).convert("RGB"))

    results = {r: {} for r in res}
    backends = args.ps3rt_backends.split(",")
    ps3rt_columns = []
    for i, backend in enumerate(backends):
        column = "ps3rt" if i == 0 else f"ps3rt_{backend}"
        ps3rt_columns.append(column)
        print(f"ps3rt ({backend})", file=sys.stderr, flush=True)
        ours = ps3rt_bench(ps3rt, args.model, res, budget, args.frames, args.threads, backend=backend)
        for r in res:
            results[r][column] = ours[r]["p50_ms"]

    if not args.skip_tract_default:
        print("tract with default settings (no mimalloc, 1 thread; separate build, slow the first time)", file=sys.stderr, flush=True)
        plain_bin = args.tract_default_bin
        if plain_bin is None:
            tdir = os.path.join(ROOT, "target", "peer-tract-default")
            subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "ps3rt", "--no-default-features", "--features",
                            "embedded-model", "--target-dir", tdir], cwd=ROOT, check=True)
            plain_bin = os.path.join(tdir, "release", "ps3rt")
        # The package by path: a prebuilt tract-defaults binary may lack the embedded model.
        plain = ps3rt_bench(plain_bin, model_dir, res, budget, args.frames, 1)
        for r in res:
            results[r]["tract_default"] = plain[r]["p50_ms"]

    print("ONNX Runtime + numpy glue", file=sys.stderr, flush=True)
    ort = OrtPipeline(pkg, threads=args.threads)
    norm = pkg.manifest["normalization"]
    proc = PS3ImageProcessor(image_size=pkg.scales[-1], mean=norm["mean"], std=norm["std"], interpolation="bicubic", resize_mode="squash")

    def ort_frame(rgb):
        x = proc.preprocess(Image.fromarray(rgb))["pixel_values"][0].numpy()
        out, _, _ = ort.encode(x, budget, steps=1)
        return out

    for r in res:
        ort_frame(frames[r])
        times = []
        for _ in range(args.frames):
            t = time.perf_counter()
            ort_frame(frames[r])
            times.append((time.perf_counter() - t) * 1e3)
        results[r]["onnxruntime"] = p50(times)

    if not args.skip_reference:
        print("official PS3 (PyTorch CPU)", file=sys.stderr, flush=True)
        ckpt_dir = args.checkpoint
        if ckpt_dir is None:
            ckpt_dir = os.path.join(work, "checkpoint")
            env = dict(os.environ, PS3RT_TINY_CHECKPOINT=ckpt_dir)
            subprocess.run([os.path.join(ROOT, "tools", "export", "make_tiny_package.sh"), os.path.join(work, "pkg")], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ckpt = read_checkpoint(ckpt_dir)
        model = build_vision_model(ckpt, budget)
        ref_frames = max(2, min(args.frames, 5))
        for r in res:
            def ref_frame():
                x = proc.preprocess(Image.fromarray(frames[r]))["pixel_values"][0][None]
                with torch.no_grad():
                    return model(pixel_values=x, num_look_close=1, output_hidden_states=True).last_hidden_state
            ref_frame()
            times = []
            for _ in range(ref_frames):
                t = time.perf_counter()
                ref_frame()
                times.append((time.perf_counter() - t) * 1e3)
            results[r]["official"] = p50(times)

    print(f"\npackage {pkg.manifest['name']}, K = {budget}, {args.threads} threads, p50 over {args.frames} frames (official: up to 5), ms;"
          f" ps3rt = the {backends[0]} backend")
    peers = [p for p in ps3rt_columns + ["tract_default", "onnxruntime", "official"] if p in results[res[0]]]
    print("resolution  " + "".join(f"{p:>15}" for p in peers) + "".join(f"{'ps3rt x ' + p:>24}" for p in peers[1:]))
    for r in res:
        row = results[r]
        print(f"{r:>10}  " + "".join(f"{row[p]:>15.1f}" for p in peers) + "".join(f"{row[p] / row['ps3rt']:>23.2f}x" for p in peers[1:]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"package": pkg.manifest["name"], "budget": budget, "threads": args.threads, "frames": args.frames,
                       "ps3rt_backends": backends, "p50_ms": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
