#!/usr/bin/env python3
"""Replace the label bank of a ps3rt package, encoded by the checkpoint's own text tower.

    ps3_labels.py --package PKG --checkpoint DIR --set labels.txt [--tokenizer DIR]
                  [--logit-scale T --logit-bias B | --uncalibrated]

labels.txt holds one label per line ('#' comment lines and blank lines are skipped). The checkpoint
must be the one the package was exported from (its config.json and model.safetensors SHA-256 are
checked against the manifest's `source.files`), so bank and image embeddings share one joint space.
labels.json and labels.safetensors are rewritten and the manifest's `labels` section and `files`
hashes updated. Nothing else changes. The new package is assembled next to PKG (the unchanged files
as hard links, so nothing large is copied), flushed to disk and swapped with PKG in one step
(atomic_dir.py), so an interrupted or failed run leaves either the old bank or the new one, never a
mixture of the two.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from atomic_dir import install_dir, staged_copy  # noqa: E402
from ps3_export import log, read_labels, write_label_bank  # noqa: E402
from ps3_official import CheckpointError, build_text_model, load_tokenizer, logit_params, read_checkpoint, sha256_file  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--package", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--set", required=True, metavar="LABELS_TXT", help="the new labels, one per line")
    ap.add_argument("--tokenizer", default=None, help="local copy of the checkpoint's tokenizer directory")
    ap.add_argument("--logit-scale", type=float, default=None)
    ap.add_argument("--logit-bias", type=float, default=None)
    ap.add_argument("--uncalibrated", action="store_true")
    args = ap.parse_args()
    if (args.logit_scale is None) != (args.logit_bias is None):
        ap.error("--logit-scale and --logit-bias go together")
    manifest_path = os.path.join(args.package, "manifest.json")
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
        if manifest.get("format") != "ps3rt-package":
            raise CheckpointError(f"{manifest_path}: not a ps3rt package manifest")
        if "pool" not in manifest.get("graphs", {}):
            raise CheckpointError(f"{args.package}: no pool graph (graphs.pool); re-export with tools/export/ps3_export.py")
        ckpt = read_checkpoint(args.checkpoint)
        source = manifest.get("source", {}).get("files", {})
        for name in ("config.json", "model.safetensors"):
            if source.get(name) != ckpt.files.get(name):
                raise CheckpointError(
                    f"{args.checkpoint}/{name} (SHA-256 {ckpt.files.get(name)}) is not the file the package was exported from "
                    f"({source.get(name)}): the bank would live in another embedding space")
        labels = read_labels(args.set)
        text_model = build_text_model(ckpt)
        tokenizer = load_tokenizer(ckpt, args.tokenizer)
        if args.logit_scale is not None:
            scale_bias, calibrated = (args.logit_scale, args.logit_bias), True
        elif (found := logit_params(ckpt)) is not None:
            scale_bias, calibrated = found, True
        elif args.uncalibrated:
            scale_bias, calibrated = (1.0, 0.0), False
        else:
            raise CheckpointError("the checkpoint has no logit_scale/logit_bias; pass --logit-scale T --logit-bias B or --uncalibrated")
    except (CheckpointError, OSError, json.JSONDecodeError) as e:
        log(f"error: {e}")
        return 2

    # The files written anew are left out of the staged copy: writing through a hard link would
    # change the old package in place.
    old_section = manifest.get("labels") or {}
    replaced = {"manifest.json", "labels.json", "labels.safetensors", old_section.get("file"), old_section.get("embeddings")}
    package = os.path.realpath(args.package)
    stage = staged_copy(package, skip=replaced - {None})
    try:
        section = write_label_bank(stage, labels, text_model, tokenizer, float(scale_bias[0]), float(scale_bias[1]), calibrated,
                                   f"{ckpt.name}: official PS3 text tower and tokenizer")
        for name in (section["file"], section["embeddings"]):
            path = os.path.join(stage, name)
            manifest["files"][name] = {"sha256": sha256_file(path), "bytes": os.path.getsize(path)}
            os.chmod(path, 0o644)
        # Old bank files under other names were left out of the copy: out of the manifest too.
        for name in replaced - {None, "manifest.json", section["file"], section["embeddings"]}:
            manifest["files"].pop(name, None)
        manifest["labels"] = section
        manifest["files"] = dict(sorted(manifest["files"].items()))
        with open(os.path.join(stage, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        os.chmod(os.path.join(stage, "manifest.json"), 0o644)
        install_dir(stage, package)
        stage = None
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
    log(f"{args.package}: label bank replaced ({len(labels)} labels, scale {scale_bias[0]:.4g}, bias {scale_bias[1]:.4g}"
        f"{'' if calibrated else ', uncalibrated'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
