#!/usr/bin/env python3
"""ps3rt's CPU preprocessing against the antialiasing resamplers a user would pick instead, one run.

    tools/bench/resample_peers.py [--ps3rt target/release/ps3rt] [--model PKG] [--resolution 7680x4320]
                                  [--threads 1,2] [--repeats 10] [--json OUT]

PS3 needs two planes of every frame, 378 x 378 and 1512 x 1512, each an antialiased bicubic
downscale of the whole frame (docs/preprocessing.md). This times, on the same RGB8 frame:
- ps3rt: the "preprocess" stage of `ps3rt bench --budget 16 --threads T` (both planes, normalized
  f32, straight from the raw frame; p50 over --repeats frames), for each T of --threads;
- Pillow (`Image.resize(..., BICUBIC)`, antialiased; single-threaded): the 1512 and the 378 plane,
  each from the frame, 8-bit out. The frame is made a PIL image once, outside the timing. A
  Pillow-SIMD build (`CC="cc -mavx2" pip install --no-binary pillow-simd pillow-simd`: integer
  AVX2 loops) is reported as such; plain Pillow is timed too when that is what is installed. Also
  PS3's own first step, the squash to 3780 x 3780 that the official code resizes from;
- OpenCV (`cv2.resize`, `INTER_AREA`: its antialiased downscale, a box filter), both planes, with
  1 and 2 threads; `INTER_LINEAR` / `INTER_CUBIC` are not listed: they read 2 or 4 source pixels per
  output whatever the scale (no antialiasing), so they do less than PS3's computation.

The peers are optional: a missing one is reported and skipped. Timings are p50 ms over --repeats
runs after one warm-up; the ratios are of numbers measured in this run (this machine is shared and
noisy: compare within a run). The test command runs it once on a small frame, to keep it working;
the comparison itself is an explicit benchmark (docs/performance.md, finding 40).
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

PLANES = (1512, 378)


def p50_ms(fn, repeats: int) -> float:
    """The median wall time of `fn()` in ms, after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return times[len(times) // 2]


def ps3rt_preprocess_ms(binary: str, model: str | None, resolution: str, threads: int, repeats: int) -> float:
    """p50 of the preprocess stage of `ps3rt bench` on an RGB8 frame of `resolution`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        cmd = [binary, "bench", "--resolutions", resolution, "--formats", "rgb8", "--budget", "16",
               "--frames", str(repeats), "--warmup", "2", "--threads", str(threads),
               "--timing-floor-rounds", "0", "--json", out]
        if model:
            cmd += ["--model", model]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
        with open(out) as f:
            result = json.load(f)["results"][0]
    return result["stage_percentiles"]["preprocess"]["p50_ms"]


def pillow_rows(frame, repeats: int) -> list[tuple[str, float]]:
    """Pillow's antialiased bicubic to each plane (and PS3's 3780 squash), one thread."""
    try:
        import PIL
        from PIL import Image
    except ImportError:
        print("Pillow: not installed, skipped")
        return []
    simd = "post" in PIL.__version__  # Pillow-SIMD versions are Pillow's plus ".postN"
    name = f"Pillow-SIMD {PIL.__version__}" if simd else f"Pillow {PIL.__version__}"
    image = Image.fromarray(frame)
    planes = {s: p50_ms(lambda s=s: image.resize((s, s), Image.BICUBIC), repeats) for s in PLANES}
    squash = p50_ms(lambda: image.resize((3780, 3780), Image.BICUBIC), max(3, repeats // 3))
    return [
        (f"{name}, BICUBIC, 1 thread: both planes", sum(planes.values())),
        (f"{name}, BICUBIC, 1 thread: 1512 plane alone", planes[1512]),
        (f"{name}, BICUBIC, 1 thread: PS3's squash to 3780", squash),
    ]


def opencv_rows(frame, repeats: int) -> list[tuple[str, float]]:
    """OpenCV's antialiased downscale (INTER_AREA) to each plane, on 1 and 2 threads."""
    try:
        import cv2
    except ImportError:
        print("OpenCV: not installed, skipped")
        return []
    rows = []
    for threads in (1, 2):
        cv2.setNumThreads(threads)
        total = sum(
            p50_ms(lambda s=s: cv2.resize(frame, (s, s), interpolation=cv2.INTER_AREA), repeats)
            for s in PLANES
        )
        rows.append((f"OpenCV {cv2.__version__}, INTER_AREA, {threads} thread(s): both planes", total))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ps3rt", default=os.path.join(ROOT, "target", "release", "ps3rt"))
    ap.add_argument("--model", help="package for ps3rt bench (default: the binary's embedded one)")
    ap.add_argument("--resolution", default="7680x4320")
    ap.add_argument("--threads", default="1,2", help="ps3rt thread counts, comma-separated")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    if not os.access(args.ps3rt, os.X_OK):
        sys.exit(f"{args.ps3rt}: no ps3rt binary (cargo build --release)")
    try:
        width, height = (int(v) for v in args.resolution.lower().split("x"))
    except ValueError:
        sys.exit(f"--resolution {args.resolution!r}: expected WIDTHxHEIGHT")
    if args.repeats < 1:
        sys.exit("--repeats must be at least 1")
    try:
        threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        sys.exit(f"--threads {args.threads!r}: expected thread counts such as 1,2")
    if not threads or min(threads) < 1:
        sys.exit(f"--threads {args.threads!r}: each count must be at least 1")

    import numpy as np

    # Content does not change these loops' cost (no data-dependent branches); noise is a worst
    # case for nothing and a fair frame for all.
    frame = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    rows = [
        (f"ps3rt, {t} thread(s): both planes (normalized f32)",
         ps3rt_preprocess_ms(args.ps3rt, args.model, args.resolution, t, args.repeats))
        for t in threads
    ]
    rows += pillow_rows(frame, args.repeats) + opencv_rows(frame, args.repeats)

    base = rows[0][1]
    print(f"{args.resolution} RGB8 frame -> the 1512 and 378 planes, p50 ms over {args.repeats} runs:")
    for name, ms in rows:
        print(f"  {name:<66} {ms:8.1f}   {ms / base:5.2f}x ps3rt's first row")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"resolution": args.resolution, "repeats": args.repeats,
                       "rows": [{"name": n, "p50_ms": ms} for n, ms in rows]}, f, indent=1)


if __name__ == "__main__":
    main()
