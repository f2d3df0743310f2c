#!/usr/bin/env python3
"""Per-stage latency of ps3rt and ONNX Runtime on the same package graphs, at several budgets.

    tools/bench/stages.py --model PKG [--budgets 256,1024,2560] [--frames 2] [--threads 2] [--backend B] [--json OUT]

For large packages (SO400M-size PS3-4K) where the question is the graphs, not the glue: both sides
get the same already-normalized input (ps3rt: `ps3rt bench` on a 4K frame, which adds its
preprocessing; ORT: the package's lowres/hrsel/hrenc graphs fed with torch-resized planes, timed
graph by graph). Prints p50 ms per stage, FLOPs per stage (from `ps3rt info`), achieved GFLOP/s and
each pipeline's peak RSS (ps3rt's from its own report, ORT's from this process, measured after ps3rt
ran in its own process). Runs one after the other, never both at once.
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
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "export"))

import numpy as np  # noqa: E402


def p50(xs):
    return float(np.percentile(np.array(xs), 50))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="package directory")
    ap.add_argument("--budgets", default="256,1024,2560")
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ps3rt-bin", default=os.path.join(ROOT, "target", "release", "ps3rt"))
    ap.add_argument("--skip-ps3rt", action="store_true")
    ap.add_argument("--backend", default="auto", help="ps3rt's backend (auto, tract, onnxruntime)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    budgets = [int(k) for k in args.budgets.split(",")]

    flops = {}
    for k in budgets:
        doc = json.loads(subprocess.run([args.ps3rt_bin, "-q", "info", args.model, "--format", "json", "--budget", str(k)],
                                        check=True, capture_output=True, text=True).stdout)
        flops[k] = next(f for f in doc["flops"] if f["budget"] == k)

    results = {"ps3rt": {}, "onnxruntime": {}}
    if not args.skip_ps3rt:
        print("ps3rt bench", file=sys.stderr, flush=True)
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run([args.ps3rt_bin, "-q", "bench", "--model", args.model, "--resolutions", "3840x2160",
                            "--budget", ",".join(map(str, budgets)), "--frames", str(args.frames), "--warmup", "1",
                            "--threads", str(args.threads), "--backend", args.backend, "--json", out.name], check=True, stdout=subprocess.DEVNULL)
            doc = json.load(open(out.name))
        results["ps3rt_peak_rss_gb"] = doc["machine"]["peak_rss_bytes"] / 1e9
        for r in doc["results"]:
            s = r["stages"]
            results["ps3rt"][r["budget"]] = {"lowres": s["lowres_ms"], "hrsel": s["hrsel_ms"], "hrenc": s["hrenc_ms"],
                                             "total": r["p50_ms"]}

    print("ONNX Runtime", file=sys.stderr, flush=True)
    from ps3_package import OrtPipeline, Package

    pkg = Package(args.model)
    ort = OrtPipeline(pkg, threads=args.threads)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (3, pkg.scales[-1], pkg.scales[-1])).astype(np.float32)
    x378 = ort.resize(x, pkg.scales[0])
    x_hr = ort.resize(x, pkg.geometry["hrsel_input"])
    scaled = [ort.resize(x, s) for s in pkg.scales[1:]]
    for k in budgets:
        times = {"lowres": [], "hrsel": [], "hrenc": []}
        for i in range(args.frames + 1):
            t = time.perf_counter()
            _, kv, sel = ort.run_lowres(x378)
            t1 = time.perf_counter()
            feat = ort.run_hrsel(x_hr)
            t2 = time.perf_counter()
            tokens = ort.select(ort.prob_map(sel, feat), k)
            patches, pos = ort.gather(scaled, tokens)
            t3 = time.perf_counter()
            ort.run_hrenc(patches, pos, kv)
            t4 = time.perf_counter()
            if i > 0:
                times["lowres"].append((t1 - t) * 1e3)
                times["hrsel"].append((t2 - t1) * 1e3)
                times["hrenc"].append((t4 - t3) * 1e3)
        results["onnxruntime"][k] = {s: p50(v) for s, v in times.items()}
    results["onnxruntime_peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9

    print(f"\n{pkg.manifest['name']}: p50 ms over {args.frames} frames, {args.threads} threads; GFLOP/s in brackets")
    print(f"{'K':>6} {'stage':>7} {'GFLOP':>9} {'ps3rt':>18} {'onnxruntime':>18} {'ps3rt / ORT time':>18}")
    stage_flops = {"lowres": lambda f: f["lowres"] + f["selection"], "hrsel": lambda f: f["hrsel"], "hrenc": lambda f: f["hrenc"]}
    for k in budgets:
        for s in ("lowres", "hrsel", "hrenc"):
            g = stage_flops[s](flops[k]) / 1e9
            o = results["onnxruntime"][k][s]
            ours = results["ps3rt"].get(k, {}).get(s)
            ours_txt = f"{ours:9.0f} ({g / ours * 1e3:5.0f})" if ours else f"{'-':>18}"
            ratio = f"{ours / o:17.2f}x" if ours else f"{'-':>18}"
            print(f"{k:>6} {s:>7} {g:9.1f} {ours_txt:>18} {o:9.0f} ({g / o * 1e3:5.0f}) {ratio}")
    if "ps3rt_peak_rss_gb" in results:
        print(f"peak RSS: ps3rt {results['ps3rt_peak_rss_gb']:.2f} GB, ONNX Runtime {results['onnxruntime_peak_rss_gb']:.2f} GB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"package": pkg.manifest["name"], "threads": args.threads, "frames": args.frames, "flops": flops,
                       "p50_ms": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
