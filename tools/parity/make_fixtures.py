#!/usr/bin/env python3
"""Golden fixtures from the official PS3 code (ps3-torch) on the tiny package's checkpoint.

    make_fixtures.py --checkpoint DIR --out tests/fixtures/parity [--check]

Cases (budget K = the package's 2560 and K/2; steps 1 and 2):
- tensor: a [3, 3780, 3780] normalized tensor defined by integer arithmetic (`parity_tensor` below;
  the Rust test computes the same bits), fed as `pixel_values`;
- image: tests/fixtures/road-1280x720.png (made by ps3rt's synthetic road scene) through the official
  `PS3ImageProcessor` (PIL bicubic squash to 3780, ToTensor, Normalize).

Each case stores the official selection of every look-close step (recorded at `forward_high_res`),
the 27x27 selection probability map and `last_hidden_state` [729 + steps*K, C]. With --check, the
fixtures are regenerated in memory and compared with the committed ones instead of written.

Label and prompt cases (docs/labels.md), from the same checkpoint's text tower and tokenizer:
- text: PS3Tokenizer ids [M, L], text embeddings [M, D] (`pooled_output`) and prompts [M, C]
  (`prompt`) of a few strings (case, punctuation, underscores, spacing, accents);
- pool: region embeddings of the tensor input's bottom-up selection (K = 2560) for boxes on the finest
  grid, each given as a float 0/1 `gt_selection_maps` to the official
  `forward_high_res(..., pool_gt_token_only=True)`, with the key masks the official code builds and the
  SigLIP scores `sigmoid(scale * cos + bias)` against the default label bank (tools/export/road_signs.txt);
- topdown: the official forward with `prompt=` (the text tower's prompt of a string): selection,
  probability map and features, as for the tensor cases.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "export"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from ps3.image_processing_ps3 import PS3ImageProcessor  # noqa: E402
from ps3_export import DEFAULT_LABELS, official_region_embeddings, read_labels  # noqa: E402
from ps3_official import build_text_model, build_vision_model, load_tokenizer, logit_params, read_checkpoint, sha256_file  # noqa: E402

CASES = [
    ("tensor", 2560, 1),
    ("tensor", 1280, 1),
    ("tensor", 2560, 2),
    ("tensor", 1280, 2),
    ("image", 2560, 1),
    ("image", 1280, 2),
]


TEXTS = ["stop sign", "speed limit 60", "Speed Limit 60!", "no_entry   sign", "a yield sign, far away.", "Zürich exit"]
# (row0, col0, row1, col1) on the finest grid (270 at 4K), end exclusive.
POOL_BOXES = [(0, 0, 270, 270), (10, 20, 60, 90), (100, 5, 140, 30), (33, 47, 71, 133), (200, 200, 201, 201), (0, 135, 135, 270)]
POOL_BUDGET = 2560
TOPDOWN_CASES = [("speed limit sign", 2560, 1), ("stop sign", 1280, 2)]


def parity_tensor(size: int = 3780) -> np.ndarray:
    """[3, size, size] float32 from integer arithmetic only (bit-identical in any language):
    u8 = (coarse block hash * 3 / 4 + fine diagonal ramp) mod 256, then (u8 / 255 - 0.5) / 0.5."""
    y = np.arange(size, dtype=np.uint32)[None, :, None]
    x = np.arange(size, dtype=np.uint32)[None, None, :]
    c = np.arange(3, dtype=np.uint32)[:, None, None]
    with np.errstate(over="ignore"):
        key = (y // 90) * np.uint32(73) + (x // 90) * np.uint32(151) + c * np.uint32(29)
        coarse = ((key * np.uint32(2654435761)) >> np.uint32(24)) & np.uint32(255)
        fine = (x * np.uint32(7) + y * np.uint32(3) + c * np.uint32(11)) & np.uint32(31)
        u8 = (coarse * np.uint32(3) // np.uint32(4) + fine) & np.uint32(255)
    v = u8.astype(np.float32) / np.float32(255.0)
    return ((v - np.float32(0.5)) / np.float32(0.5)).astype(np.float32)


def image_tensor(path: str, ckpt) -> np.ndarray:
    norm = ckpt.normalization
    proc = PS3ImageProcessor(image_size=ckpt.scales[-1], mean=norm["mean"], std=norm["std"], interpolation="bicubic", resize_mode="squash")
    return proc.preprocess(Image.open(path).convert("RGB"))["pixel_values"][0].numpy()


def run_case(ckpt, x: np.ndarray, budget: int, steps: int, prompt: np.ndarray | None = None) -> dict:
    model = build_vision_model(ckpt, budget)
    enc = model.vision_model
    recorded = []
    original = enc.forward_high_res

    def record(x_, selection_maps, **kw):
        recorded.append([m[0].clone() for m in selection_maps])
        return original(x_, selection_maps, **kw)

    enc.forward_high_res = record
    with torch.no_grad():
        out = model(pixel_values=torch.from_numpy(x)[None], num_look_close=steps, output_hidden_states=True,
                    prompt=None if prompt is None else torch.from_numpy(prompt)[None])
    enc.forward_high_res = original
    selection = []
    for maps in recorded:
        tokens = [(i, r, c) for i, m in enumerate(maps) for r, c in torch.nonzero(m).tolist()]
        selection.append(np.array(tokens, dtype=np.int32))
    prob = out.selection_probs[0][0].float().numpy()
    f = prob.shape[0] // 27
    return {
        "selection": selection,
        "prob_map": np.ascontiguousarray(prob[::f, ::f]).astype(np.float32),
        "features": out.last_hidden_state[0].float().numpy(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--image", default=os.path.join(HERE, "..", "..", "tests", "fixtures", "road-1280x720.png"))
    ap.add_argument("--check", action="store_true", help="compare with the committed fixtures instead of writing")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    ckpt = read_checkpoint(args.checkpoint)
    inputs = {"tensor": parity_tensor(ckpt.scales[-1]), "image": image_tensor(args.image, ckpt)}
    index = {
        "checkpoint": ckpt.name,
        "checkpoint_files": ckpt.files,
        "image": os.path.basename(args.image),
        "image_sha256": sha256_file(args.image),
        "torch": torch.__version__.split("+")[0],
        "cases": [],
    }
    failures = []
    os.makedirs(args.out, exist_ok=True)
    outputs = []  # (files, arrays) of every case
    for kind, budget, steps in CASES:
        name = f"{kind}-k{budget}-s{steps}"
        print(f"make_fixtures: {name}", file=sys.stderr, flush=True)
        res = run_case(ckpt, inputs[kind], budget, steps)
        files = {"prob_map": f"{name}.prob_map.npy", "features": f"{name}.features.npy"}
        files.update({f"selection_step{s}": f"{name}.selection{s}.npy" for s in range(steps)})
        arrays = {"prob_map": res["prob_map"], "features": res["features"]}
        arrays.update({f"selection_step{s}": sel for s, sel in enumerate(res["selection"])})
        index["cases"].append({"name": name, "input": kind, "budget": budget, "steps": steps, "files": files})
        outputs.append((files, arrays))

    # Text tower and tokenizer.
    print("make_fixtures: text", file=sys.stderr, flush=True)
    text_model = build_text_model(ckpt)
    tokenizer = load_tokenizer(ckpt)
    with torch.no_grad():
        ids = tokenizer.ids(TEXTS)
        t_out = text_model(ids)
    files = {"ids": "text.ids.npy", "embeddings": "text.embeddings.npy", "prompts": "text.prompts.npy"}
    arrays = {"ids": ids.numpy().astype(np.int64), "embeddings": t_out.pooled_output.float().numpy(),
              "prompts": t_out.prompt.float().numpy()}
    index["text"] = {"strings": TEXTS, "context_length": tokenizer.context_length, "clean": tokenizer.clean, "files": files}
    outputs.append((files, arrays))

    # Region embeddings (pool head) and label scores.
    print("make_fixtures: pool", file=sys.stderr, flush=True)
    model = build_vision_model(ckpt, POOL_BUDGET)
    grid = ckpt.scales[-1] // 14
    pooled, _, masks, picked = official_region_embeddings(model, torch.from_numpy(inputs["tensor"])[None], POOL_BOXES, grid)
    del model
    labels = read_labels(DEFAULT_LABELS)
    with torch.no_grad():
        bank = text_model(tokenizer.ids(labels)).pooled_output.float().numpy()
    scale, bias = logit_params(ckpt)
    cos = (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)) @ (bank / np.linalg.norm(bank, axis=1, keepdims=True)).T
    logits = (scale * cos + bias).astype(np.float32)
    files = {"embeddings": "pool.embeddings.npy", "masks": "pool.masks.npy", "logits": "pool.logits.npy",
             "selection_step0": "pool.selection0.npy"}
    arrays = {"embeddings": pooled.astype(np.float32), "masks": masks.astype(np.float32), "logits": logits,
              "selection_step0": picked}
    index["pool"] = {"input": "tensor", "budget": POOL_BUDGET, "steps": 1,
                     "boxes": [list(b) for b in POOL_BOXES], "grid": grid, "labels": len(labels),
                     "logit_scale": scale, "logit_bias": bias, "files": files}
    outputs.append((files, arrays))

    # Top-down selection with text prompts.
    index["topdown_cases"] = []
    for text, budget, steps in TOPDOWN_CASES:
        name = f"topdown-{text.replace(' ', '_')}-k{budget}-s{steps}"
        print(f"make_fixtures: {name}", file=sys.stderr, flush=True)
        with torch.no_grad():
            prompt = text_model(tokenizer.ids([text])).prompt[0].float().numpy()
        res = run_case(ckpt, inputs["tensor"], budget, steps, prompt=prompt)
        files = {"prompt": f"{name}.prompt.npy", "prob_map": f"{name}.prob_map.npy", "features": f"{name}.features.npy"}
        files.update({f"selection_step{s}": f"{name}.selection{s}.npy" for s in range(steps)})
        arrays = {"prompt": prompt, "prob_map": res["prob_map"], "features": res["features"]}
        arrays.update({f"selection_step{s}": sel for s, sel in enumerate(res["selection"])})
        index["topdown_cases"].append({"name": name, "input": "tensor", "text": text, "budget": budget, "steps": steps,
                                       "files": files})
        outputs.append((files, arrays))

    for files, arrays in outputs:
        for key, fname in files.items():
            path = os.path.join(args.out, fname)
            if args.check:
                if not os.path.exists(path):
                    failures.append(f"{fname}: missing")
                    continue
                old = np.load(path)
                new = arrays[key]
                if old.shape != new.shape or old.dtype != new.dtype:
                    failures.append(f"{fname}: shape/dtype {old.shape} {old.dtype} vs regenerated {new.shape} {new.dtype}")
                elif old.dtype.kind == "f":
                    err = float(np.abs(old - new).max() / max(float(np.abs(old).max()), 1e-30))
                    if err > 1e-5:
                        failures.append(f"{fname}: differs from the regenerated values (max rel {err:.2e})")
                elif not np.array_equal(old, new):
                    failures.append(f"{fname}: selection differs from the regenerated one")
            else:
                np.save(path, arrays[key])
    index_path = os.path.join(args.out, "fixtures.json")
    if args.check:
        with open(index_path) as f:
            committed = json.load(f)
        for key in ("checkpoint", "checkpoint_files", "image_sha256", "cases", "text", "pool", "topdown_cases"):
            if committed.get(key) != index[key]:
                failures.append(f"fixtures.json: {key} differs from the regenerated index")
        if failures:
            print("make_fixtures: CHECK FAILED\n  " + "\n  ".join(failures), file=sys.stderr)
            return 1
        print(f"make_fixtures: {len(outputs)} cases (vision, text, pool, top-down) regenerated from scratch and equal to the committed fixtures", file=sys.stderr)
        return 0
    with open(index_path, "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    print(f"make_fixtures: wrote {len(outputs)} cases to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
