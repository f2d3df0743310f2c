#!/usr/bin/env python3
"""Export an official PS3 checkpoint to a ps3rt model package.

    ps3_export.py --checkpoint DIR --out PKG [--budget K] [--precision fp32|fp16] [--name NAME]
                  [--no-verify] [--force]
                  [--labels FILE|none] [--text-tower] [--tokenizer DIR] [--max-regions R]
                  [--logit-scale T --logit-bias B | --uncalibrated] [--no-pool]

DIR is a local checkpoint in the Hugging Face layout of the PS3 releases (e.g. a download of
nvidia/PS3-4K-SigLIP2, or one written by random_checkpoint.py). Nothing is downloaded.

The package (format version 1) holds:
- manifest.json: geometry, budget split, widths, selection layers, normalization, graph I/O, the source
  checkpoint's file hashes, and the SHA-256 and size of every file;
- lowres.onnx, hrsel.onnx, hrenc.onnx: opset 17, static shapes except hrenc's budget dimension "K";
- weights.bin: every large initializer of the three graphs, stored once. The trunk appears in both lowres
  and hrenc; identical tensors (by content) share one range of this file, so the trunk is stored once;
- tables.safetensors: per-scale position rows (resampled pos_embed + pos_emb_residual, precomputed with
  the official resample), the prior prompt, its high-res projection and the projection's weights.

Optional parts (format 1 readers that predate them ignore them; docs/labels.md):
- pool.onnx (+ pool_weights.bin): the attention-pool (MAP) head over the high-res tokens with a key
  mask per region: tokens [N,C] + mask [R,N] -> embeddings [R,C] (N named, R = --max-regions);
- labels.json + labels.safetensors: a label bank encoded by the checkpoint's own text tower and
  tokenizer (--labels, default tools/export/road_signs.txt) with the SigLIP logit scale and bias;
  tools/export/ps3_labels.py replaces it later;
- text.onnx (+ text_weights.bin) and tokenizer.json (--text-tower): the text tower as a graph and the
  tokenizer with PS3's padding and truncation built in, so the runtime encodes free-text prompts.
New graphs keep their weights in their own files (deduplicated by content the same way as weights.bin),
so adding them never changes the three vision graphs, weights.bin or tables.safetensors.

After writing, the package is run with ONNX Runtime and numpy glue and compared with the official
model on a random input (unless --no-verify); so are the pool head, the text tower and the tokenizer.

The package is written into a staging directory next to PKG, verified there, flushed to disk and
renamed into place (with --force, swapped with the old package in one step; atomic_dir.py): PKG
never holds a half-written or unverified package, and a failed or interrupted export leaves the old
one as it was.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from onnx import external_data_helper, helper, numpy_helper  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

import ps3.modeling_ps3 as official  # noqa: E402
from atomic_dir import install_dir, staging_dir  # noqa: E402
from graphs import HrEnc, HrSel, LowRes, Pool, Text  # noqa: E402
from ps3_official import (  # noqa: E402
    CheckpointError,
    budget_split,
    build_text_model,
    build_vision_model,
    load_tokenizer,
    logit_params,
    read_checkpoint,
    sha256_file,
)

FORMAT_VERSION = 1
EXPORTER_VERSION = 1
OPSET = 17
EXTERNAL_MIN_BYTES = 1024
ALIGN = 64


def log(msg: str) -> None:
    print(f"ps3_export: {msg}", file=sys.stderr, flush=True)


# -- graphs -------------------------------------------------------------------------------------------------
DEFAULT_LABELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "road_signs.txt")
DEFAULT_MAX_REGIONS = 16
ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64"}


def export_graph(module, args, inputs, outputs, dynamic_axes, tmp, name, output_shapes) -> onnx.ModelProto:
    path = os.path.join(tmp, f"{name}.onnx")
    with torch.no_grad():
        torch.onnx.export(
            module,
            args,
            path,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic_axes or None,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load(path, load_external_data=True)
    # Declare the output shapes we know (custom ops can leave the exporter's inference incomplete).
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        del dims[:]
        for d in output_shapes[out.name]:
            dim = dims.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = d
    ops = {n.op_type for n in model.graph.node}
    forbidden = ops & {"If", "Loop", "Scan", "TopK", "NonZero", "Where"}
    if forbidden:
        raise RuntimeError(f"{name}: graph has ops a static engine cannot take: {sorted(forbidden)}")
    return model


def to_fp16_storage(model: onnx.ModelProto) -> None:
    """Store large float initializers as fp16 behind a Cast to float: half the bytes, same graph maths
    in fp32 (TensorRT picks its own precision at build time)."""
    g = model.graph
    casts, keep = [], []
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.nbytes >= EXTERNAL_MIN_BYTES:
            half = numpy_helper.from_array(arr.astype(np.float16), init.name + "__fp16")
            keep.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT, name=init.name + "__cast"))
        else:
            keep.append(init)
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)


class SharedWeights:
    """weights.bin: unique large initializers, 64-byte aligned, deduplicated by content."""

    def __init__(self, path: str):
        self.path = path
        self.file = open(path, "wb")
        self.offset = 0
        self.by_hash: dict[str, tuple[int, int]] = {}
        self.unique_bytes = 0
        self.referenced_bytes = 0

    def place(self, raw: bytes) -> tuple[int, int]:
        key = hashlib.sha256(raw).hexdigest()
        self.referenced_bytes += len(raw)
        if key not in self.by_hash:
            pad = (-self.offset) % ALIGN
            self.file.write(b"\0" * pad)
            self.offset += pad
            self.by_hash[key] = (self.offset, len(raw))
            self.file.write(raw)
            self.offset += len(raw)
            self.unique_bytes += len(raw)
        return self.by_hash[key]

    def externalize(self, model: onnx.ModelProto, location: str) -> None:
        for init in model.graph.initializer:
            arr = numpy_helper.to_array(init)
            if arr.nbytes < EXTERNAL_MIN_BYTES or arr.dtype.kind != "f":
                continue
            raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            offset, length = self.place(raw)
            init.ClearField("float_data")
            init.ClearField("int32_data")
            init.raw_data = raw
            external_data_helper.set_external_data(init, location=location, offset=offset, length=length)
            init.data_location = onnx.TensorProto.EXTERNAL
            init.ClearField("raw_data")

    def close(self) -> None:
        self.file.close()


def io_spec(model: onnx.ModelProto) -> dict:
    def spec(v):
        dims = []
        for d in v.type.tensor_type.shape.dim:
            dims.append(d.dim_param if d.dim_param else int(d.dim_value))
        return {"name": v.name, "dtype": ONNX_DTYPES[v.type.tensor_type.elem_type], "shape": dims}

    return {"inputs": [spec(v) for v in model.graph.input], "outputs": [spec(v) for v in model.graph.output]}


# -- tables -------------------------------------------------------------------------------------------------
def build_tables(enc, scales, grids, precision) -> dict[str, np.ndarray]:
    """Per-scale position rows = official bicubic resample of pos_embed to g x g (antialiased, as PS3's
    selected_pos_embed does) + pos_emb_residual[scale]; prompts for the selection glue."""
    trunk = enc.trunk
    tables = {}
    with torch.no_grad():
        for i, g in enumerate(grids[1:]):
            pos = official.resample_abs_pos_embed(trunk.pos_embed, (g, g), num_prefix_tokens=0, use_cpe=False)[0]
            if enc.config.separate_pos_emb:
                pos = pos + enc.pos_emb_residual[i][0]
            tables[f"pos.{scales[i + 1]}"] = pos.float().numpy()
        prior = enc.prior_prompt.detach().float()
        tables["prior_prompt"] = prior.numpy()
        if enc.config.highres_selection_feature:
            d = enc.config.highres_selection_module_out_dim
            proj = enc.prompt_proj_for_highres
            tables["prior_prompt_hr"] = proj(prior[None])[0, :d].float().numpy()
            tables["prompt_proj_hr.weight"] = proj.weight[:d].float().numpy()
            tables["prompt_proj_hr.bias"] = proj.bias[:d].float().numpy()
    dtype = np.float16 if precision == "fp16" else np.float32
    return {k: np.ascontiguousarray(v.astype(dtype)) for k, v in tables.items()}


# -- labels and text ------------------------------------------------------------------------------------------
def read_labels(path: str) -> list[str]:
    """One label per line; blank lines and lines starting with '#' are skipped; duplicates refused."""
    with open(path, encoding="utf-8") as f:
        labels = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    if not labels:
        raise CheckpointError(f"{path}: no labels")
    seen = set()
    for label in labels:
        if label in seen:
            raise CheckpointError(f"{path}: label {label!r} appears twice")
        if len(label.encode("utf-8")) > 255:
            raise CheckpointError(f"{path}: label {label[:40]!r}... is longer than 255 bytes")
        seen.add(label)
    return labels


def encode_texts(text_model, tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids [M,L], text embeddings [M,D] (pooled_output) and prompts [M,C] from the official code."""
    ids = tokenizer.ids(texts)
    with torch.no_grad():
        out = text_model(ids)
    return ids.numpy(), out.pooled_output.float().numpy(), out.prompt.float().numpy()


def write_label_bank(stage: str, labels: list[str], text_model, tokenizer, scale: float, bias: float, calibrated: bool,
                     source: str) -> dict:
    """labels.json + labels.safetensors; returns the manifest's `labels` section."""
    _, emb, prompts = encode_texts(text_model, tokenizer, labels)
    save_file({"embeddings": np.ascontiguousarray(emb, dtype=np.float32), "prompts": np.ascontiguousarray(prompts, dtype=np.float32)},
              os.path.join(stage, "labels.safetensors"))
    bank = {
        "labels": labels,
        "logit_scale": scale,
        "logit_bias": bias,
        "calibrated": calibrated,
        "source": source,
    }
    with open(os.path.join(stage, "labels.json"), "w", encoding="utf-8") as f:
        json.dump(bank, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return {"file": "labels.json", "embeddings": "labels.safetensors", "count": len(labels), "dim": int(emb.shape[1])}


TOKENIZER_PROBES = ["Speed limit 60!", "STOP sign", "no_entry   sign", "  yield, then turn left.  ", "km/h 120", "Zürich exit"]


def check_tokenizer(tokenizer, tokenizer_json: str, texts: list[str]) -> None:
    """The packaged tokenizer.json, fed PS3's cleaned text, must give PS3Tokenizer's ids exactly."""
    from tokenizers import Tokenizer
    from ps3.tokenization_ps3 import get_clean_fn

    tk = Tokenizer.from_str(tokenizer_json)
    clean = get_clean_fn(tokenizer.clean)
    ref = tokenizer.ids(texts).numpy()
    for text, want in zip(texts, ref):
        got = tk.encode(clean(text)).ids
        if list(got) != [int(v) for v in want]:
            raise RuntimeError(f"tokenizer.json gives {got[:12]}... for {text!r}, PS3Tokenizer {list(want[:12])}...")


# -- verification ---------------------------------------------------------------------------------------------
def verify(model, pkg_dir: str, budget: int, precision: str, seed: int = 0) -> float:
    """Run the package (ONNX Runtime + glue) and the official model on the same random input with the
    same selection; return max|diff| / max|ref| of last_hidden_state."""
    from ps3_package import OrtPipeline, Package, Token

    pkg = Package(pkg_dir)
    s_max = pkg.scales[-1]
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((1, 3, s_max, s_max), generator=g) * 2 - 1
    enc = model.vision_model
    recorded = []
    original = enc.forward_high_res

    def record(x_, selection_maps, **kw):
        recorded.append([m[0].clone() for m in selection_maps])
        return original(x_, selection_maps, **kw)

    enc.forward_high_res = record
    try:
        with torch.no_grad():
            ref = model(pixel_values=x, num_look_close=1, output_hidden_states=True).last_hidden_state[0].numpy().copy()
    finally:
        enc.forward_high_res = original
    gc.collect()  # the reference's activations go before ONNX Runtime loads the graphs
    tokens = [Token(i, int(r), int(c)) for i, m in enumerate(recorded[0]) for r, c in torch.nonzero(m).tolist()]
    pipe = OrtPipeline(pkg)
    ours, _, _ = pipe.encode(x[0].numpy(), budget, steps=1, tokens_per_step=[tokens])
    if ours.shape != ref.shape:
        raise RuntimeError(f"verify: package gives {ours.shape}, official model {ref.shape}")
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def verify_pool(model, pkg_dir: str, max_regions: int, seed: int = 1) -> float:
    """The pool graph (ONNX Runtime) against the official `forward_high_res(..., pool_gt_token_only=True)`
    for regions given as ground-truth boxes, with one shared selection; returns max relative error."""
    import onnxruntime as ort
    from ps3_package import Package

    pkg = Package(pkg_dir)
    enc = model.vision_model
    g = torch.Generator().manual_seed(seed)
    s_max = pkg.scales[-1]
    x = torch.rand((1, 3, s_max, s_max), generator=g) * 2 - 1
    boxes = [(0, 0, pkg.grids[-1], pkg.grids[-1]), (10, 20, 60, 90), (100, 5, 140, 30), (200, 200, 201, 201)]
    boxes = boxes[:max_regions]
    ref, tokens, masks, _ = official_region_embeddings(model, x, boxes, pkg.grids[-1])
    sess = ort.InferenceSession(pkg.graph_path("pool"), providers=["CPUExecutionProvider"])
    mask = np.zeros((max_regions, tokens.shape[0]), np.float32)
    mask[: len(boxes)] = masks
    (ours,) = sess.run(None, {"tokens": tokens, "mask": mask})
    ours = ours[: len(boxes)]
    del enc
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def official_region_embeddings(model, x, boxes, grid):
    """Official region embeddings: the bottom-up selection of `x`, then, for each box (row0, col0, row1,
    col1 on the finest grid, end exclusive) given as a float 0/1 `gt_selection_maps`, the pooled output
    of `forward_high_res(..., pool_gt_token_only=True)`. Returns (embeddings [R,C], the high-res
    tokens [K,C] of that selection (pre-norm, token order), the official key masks [R,K] (0/1), the
    selection as (scale index, row, col) rows [K,3] in token order)."""
    enc = model.vision_model
    recorded = []
    original = enc.forward_high_res

    def record(x_, selection_maps, **kw):
        recorded.append([m.clone() for m in selection_maps])
        return original(x_, selection_maps, **kw)

    enc.forward_high_res = record
    try:
        with torch.no_grad():
            model(pixel_values=x, num_look_close=1, output_hidden_states=True)
    finally:
        enc.forward_high_res = original
    selection = recorded[0]
    r = len(boxes)
    gt = torch.zeros((r, grid, grid), dtype=torch.float32)
    for i, (r0, c0, r1, c1) in enumerate(boxes):
        gt[i, r0:r1, c0:c1] = 1.0
    xr = x.repeat(r, 1, 1, 1)
    with torch.no_grad():
        low = enc.forward_low_res(x, output_hidden_states=True, return_kv_cache=True)
        kv = low["output_kv_cache"].repeat(1, 1, r, 1, 1, 1)
        sel_r = [m.repeat(r, 1, 1) for m in selection]
        pooled = enc.forward_high_res(xr, sel_r, kv_cache=kv, pool_gt_token_only=True, gt_selection_maps=gt)["x"]
        tokens = enc.forward_high_res(x, selection, kv_cache=low["output_kv_cache"], output_hidden_states=True)["hidden_states"][-1][0]
        # The key masks the official code builds (same interpolation as forward_high_res).
        maps = [torch.nn.functional.interpolate(gt.unsqueeze(1), size=m.shape[-2:], mode="area").squeeze(1) for m in selection]
        flat = torch.cat([m.reshape(r, -1) for m in maps], dim=-1)
        sel = torch.cat([m.reshape(1, -1) for m in selection], dim=-1)[0].bool()
        masks = (flat[:, sel] != 0).float()
    picked = np.array([(i, r, c) for i, m in enumerate(selection) for r, c in torch.nonzero(m[0]).tolist()], dtype=np.int32)
    return pooled.float().numpy(), tokens.float().numpy(), masks.numpy(), picked


def verify_text(text_model, tokenizer, pkg_dir: str, texts: list[str]) -> float:
    """The text graph (ONNX Runtime) against the official text model; max relative error over the
    embeddings and prompts of `texts`."""
    import onnxruntime as ort

    ids, emb, prompts = encode_texts(text_model, tokenizer, texts)
    sess = ort.InferenceSession(os.path.join(pkg_dir, "text.onnx"), providers=["CPUExecutionProvider"])
    err = 0.0
    for i in range(len(texts)):
        e, p = sess.run(None, {"ids": ids[i : i + 1].astype(np.int64)})
        err = max(err, float(np.abs(e - emb[i]).max() / np.abs(emb[i]).max()), float(np.abs(p - prompts[i]).max() / np.abs(prompts[i]).max()))
    return err


# -- main ---------------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="local PS3 checkpoint directory (Hugging Face layout)")
    ap.add_argument("--out", required=True, help="package directory to create")
    ap.add_argument("--budget", type=int, default=None, help="high-res token budget K (default: the checkpoint's max_select_num)")
    ap.add_argument("--precision", choices=["fp32", "fp16"], default="fp32", help="storage precision of weights and tables")
    ap.add_argument("--name", default=None, help="package name (default: derived from the checkpoint)")
    ap.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime check against the official model")
    ap.add_argument("--force", action="store_true", help="replace --out if it exists")
    ap.add_argument("--labels", default=DEFAULT_LABELS,
                    help="label bank: a text file with one label per line, or 'none' (default: tools/export/road_signs.txt)")
    ap.add_argument("--text-tower", action="store_true", help="also package the text tower and tokenizer (free-text prompts)")
    ap.add_argument("--tokenizer", default=None, help="local copy of the checkpoint's tokenizer (a Hugging Face tokenizer directory)")
    ap.add_argument("--max-regions", type=int, default=DEFAULT_MAX_REGIONS, help="regions per pool run, R (default 16)")
    ap.add_argument("--no-pool", action="store_true", help="leave out the region pool head (and so the label bank)")
    ap.add_argument("--logit-scale", type=float, default=None, help="SigLIP logit scale t (linear, not log) when the checkpoint has none")
    ap.add_argument("--logit-bias", type=float, default=None, help="SigLIP logit bias b when the checkpoint has none")
    ap.add_argument("--uncalibrated", action="store_true",
                    help="without a logit scale and bias: score with t = 1, b = 0 and mark the bank uncalibrated")
    args = ap.parse_args()
    if not 1 <= args.max_regions <= 256:
        ap.error("--max-regions must be in 1..256")
    if (args.logit_scale is None) != (args.logit_bias is None):
        ap.error("--logit-scale and --logit-bias go together")

    try:
        ckpt = read_checkpoint(args.checkpoint)
    except CheckpointError as e:
        log(f"error: {e}")
        return 2
    budget = args.budget if args.budget is not None else ckpt.default_budget
    scales = ckpt.scales
    patch = 14
    grids = [s // patch for s in scales]
    total_patches = sum(g * g for g in grids[1:])
    if not 1 <= budget <= total_patches:
        log(f"error: --budget {budget} outside 1..{total_patches} (high-res patches at scales {scales[1:]})")
        return 2
    if os.path.exists(args.out) and not args.force:
        log(f"error: {args.out} exists (use --force to replace it)")
        return 2

    t0 = time.time()
    log(f"loading {args.checkpoint} with the official PS3 code")
    try:
        model = build_vision_model(ckpt, budget)
    except CheckpointError as e:
        log(f"error: {e}")
        return 2
    enc = model.vision_model
    trunk = enc.trunk
    width, depth = enc.width, enc.layers
    heads = trunk.blocks[0].attn.num_heads
    head_dim = width // heads
    if trunk.patch_embed.patch_size[0] != patch or trunk.pos_embed.shape[1] != grids[0] ** 2:
        log("error: the trunk must have patch 14 and a 27x27 position table (timm img_size 384)")
        return 2
    hrsel_input = 1512  # fixed in the official forward: F.interpolate(x, size=1512)
    hrsel_dim = enc.config.highres_selection_module_out_dim
    hrsel_kernel = enc.config.highres_selection_module_kernel_size
    hrsel_grid = hrsel_input // hrsel_kernel
    if not enc.config.highres_selection_feature or hrsel_grid % grids[0]:
        log("error: checkpoints without the high-res selection branch are not supported yet")
        return 2

    stage = staging_dir(args.out, "export")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            n_lr = grids[0] ** 2
            log("exporting lowres graph")
            lowres = export_graph(
                LowRes(enc), (torch.zeros(1, 3, scales[0], scales[0]),),
                ["pixels"], ["hidden", "kv_cache", "sel_feat"], None, tmp, "lowres",
                {"hidden": [n_lr, width], "kv_cache": [depth, 2, heads, n_lr, head_dim], "sel_feat": [n_lr, width]})
            log("exporting hrsel graph")
            hrsel = export_graph(
                HrSel(enc), (torch.zeros(1, 3, hrsel_input, hrsel_input),), ["pixels"], ["hr_feat"], None, tmp, "hrsel",
                {"hr_feat": [hrsel_grid * hrsel_grid, hrsel_dim]})
            log("exporting hrenc graph")
            k_example = min(budget, 64)
            hrenc = export_graph(
                HrEnc(enc),
                (torch.zeros(k_example, 3 * patch * patch), torch.zeros(k_example, width),
                 torch.zeros(depth, 2, heads, n_lr, head_dim)),
                ["patches", "pos", "kv_cache"], ["features"],
                {"patches": {0: "K"}, "pos": {0: "K"}, "features": {0: "K"}}, tmp, "hrenc",
                {"features": ["K", width]})

        graphs = {"lowres": lowres, "hrsel": hrsel, "hrenc": hrenc}
        if args.precision == "fp16":
            for m in graphs.values():
                to_fp16_storage(m)
        weights = SharedWeights(os.path.join(stage, "weights.bin"))
        specs = {}
        for name, m in graphs.items():
            m.producer_name = "ps3rt-export"
            weights.externalize(m, "weights.bin")
            specs[name] = io_spec(m)
        weights.close()
        for name, m in graphs.items():
            onnx.save_model(m, os.path.join(stage, f"{name}.onnx"))
            onnx.checker.check_model(os.path.join(stage, f"{name}.onnx"))
        # The in-memory graphs hold a copy of every weight: free them before the verification run.
        del graphs, lowres, hrsel, hrenc, m
        gc.collect()
        log(f"weights.bin: {weights.unique_bytes / 1e6:.1f} MB unique of {weights.referenced_bytes / 1e6:.1f} MB referenced by the graphs")

        tables = build_tables(enc, scales, grids, args.precision)
        save_file(tables, os.path.join(stage, "tables.safetensors"))

        # Optional parts: pool head, label bank, text tower + tokenizer (new files only).
        extra_graphs, sections = {}, {}
        want_labels = not args.no_pool and args.labels.lower() != "none"
        text_model = tokenizer = None
        labels = None
        if want_labels or args.text_tower:
            if not ckpt.text_config:
                if args.text_tower:
                    log("error: --text-tower: the checkpoint has no text tower (text_config)")
                    return 2
                log("no text tower in the checkpoint: no label bank")
                want_labels = False
            else:
                try:
                    text_model = build_text_model(ckpt)
                    tokenizer = load_tokenizer(ckpt, args.tokenizer)
                    if want_labels:
                        labels = read_labels(args.labels)
                except (CheckpointError, OSError) as e:
                    log(f"error: {e}")
                    return 2
                out_dim = text_model.output_dim
                if out_dim != width:
                    log(f"error: the text embedding width {out_dim} differs from the image embedding width {width}")
                    return 2
        scale_bias = None
        if want_labels:
            found = logit_params(ckpt)
            if args.logit_scale is not None:
                scale_bias, calibrated = (args.logit_scale, args.logit_bias), True
            elif found is not None:
                scale_bias, calibrated = found, True
            elif args.uncalibrated:
                scale_bias, calibrated = (1.0, 0.0), False
            else:
                log("error: the checkpoint has no logit_scale/logit_bias; pass --logit-scale T --logit-bias B "
                    "(the trained SigLIP values) or --uncalibrated (scores are then not probabilities), or --labels none")
                return 2
        with tempfile.TemporaryDirectory() as tmp:
            if not args.no_pool:
                log(f"exporting pool graph (R = {args.max_regions} regions)")
                n_example = min(budget, 64)
                extra_graphs["pool"] = export_graph(
                    Pool(enc), (torch.zeros(n_example, width), torch.zeros(args.max_regions, n_example)),
                    ["tokens", "mask"], ["embeddings"], {"tokens": {0: "N"}, "mask": {1: "N"}}, tmp, "pool",
                    {"embeddings": [args.max_regions, width]})
            if args.text_tower:
                log("exporting text graph")
                ctx = tokenizer.context_length
                extra_graphs["text"] = export_graph(
                    Text(text_model), (torch.zeros(1, ctx, dtype=torch.int64),), ["ids"], ["embedding", "prompt"], None,
                    tmp, "text", {"embedding": [text_model.output_dim], "prompt": [text_model.prompt_proj_dim]})
        for name, m in extra_graphs.items():
            if args.precision == "fp16":
                to_fp16_storage(m)
            m.producer_name = "ps3rt-export"
            w = SharedWeights(os.path.join(stage, f"{name}_weights.bin"))
            w.externalize(m, f"{name}_weights.bin")
            w.close()
            specs[name] = {**io_spec(m), "weights": f"{name}_weights.bin"}
            onnx.save_model(m, os.path.join(stage, f"{name}.onnx"))
            onnx.checker.check_model(os.path.join(stage, f"{name}.onnx"))
        extra_graphs.clear()
        if want_labels:
            log(f"encoding {len(labels)} labels with the checkpoint's text tower")
            sections["labels"] = write_label_bank(
                stage, labels, text_model, tokenizer, float(scale_bias[0]), float(scale_bias[1]), calibrated,
                f"{ckpt.name}: official PS3 text tower and tokenizer")
        if args.text_tower:
            tok_json = tokenizer.fixed_length_json()
            check_tokenizer(tokenizer, tok_json, TOKENIZER_PROBES + (labels or []))
            with open(os.path.join(stage, "tokenizer.json"), "w", encoding="utf-8") as f:
                f.write(tok_json)
            sections["text"] = {
                "tokenizer": "tokenizer.json",
                "context_length": tokenizer.context_length,
                "clean": tokenizer.clean,
                "embedding_dim": int(text_model.output_dim),
                "prompt_dim": int(text_model.prompt_proj_dim),
            }

        files = {}
        for fname in sorted(os.listdir(stage)):
            p = os.path.join(stage, fname)
            files[fname] = {"sha256": sha256_file(p), "bytes": os.path.getsize(p)}
        import onnxruntime
        import timm

        n_params = sum(p.numel() for p in enc.parameters())
        mlp_hidden = trunk.blocks[0].mlp.fc1.out_features
        manifest = {
            "format": "ps3rt-package",
            "format_version": FORMAT_VERSION,
            "name": args.name or f"{os.path.basename(os.path.normpath(args.checkpoint))}-k{budget}",
            "created_by": {
                "tool": "tools/export/ps3_export.py",
                "exporter_version": EXPORTER_VERSION,
                "torch": torch.__version__.split("+")[0],
                "ps3_torch": _dist_version("ps3-torch"),
                "timm": timm.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
            },
            "source": {
                "checkpoint": ckpt.name,
                "model_type": ckpt.model_type,
                "timm_model": ckpt.vision_config["model_name"],
                "timm_overrides": ckpt.vision_config.get("timm_overrides"),
                "files": ckpt.files,
            },
            "geometry": {
                "patch": patch,
                "scales": scales,
                "grids": grids,
                "input_size": scales[-1],
                "hrsel_input": hrsel_input,
                "hrsel_grid": hrsel_grid,
                "budget": budget,
                "budget_split": budget_split(budget, scales),
            },
            "model": {
                "width": width,
                "depth": depth,
                "heads": heads,
                "head_dim": head_dim,
                "mlp_hidden": mlp_hidden,
                "selection_layers": list(enc.config.select_based_on_layer),
                "hrsel_dim": hrsel_dim,
                "hrsel_hidden": enc.config.highres_selection_module_hidden_dim,
                "parameters": n_params,
                "precision": args.precision,
            },
            "normalization": ckpt.normalization,
            "graphs": {name: {"file": f"{name}.onnx", **spec} for name, spec in specs.items()},
            "weights": {"file": "weights.bin"},
            "tables": {"file": "tables.safetensors"},
            **sections,
            "files": files,
        }
        with open(os.path.join(stage, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")

        if not args.no_verify:
            log("verifying the package against the official model (ONNX Runtime, random input)")
            err = verify(model, stage, budget, args.precision)
            limit = 1e-4 if args.precision == "fp32" else 5e-3
            log(f"verify: max|diff|/max|ref| = {err:.2e} (limit {limit:.0e})")
            if not err <= limit:
                log("error: the exported graphs do not reproduce the official model")
                return 3
            if "pool" in specs:
                err = verify_pool(model, stage, args.max_regions)
                log(f"verify pool: max|diff|/max|ref| = {err:.2e} (limit {limit:.0e})")
                if not err <= limit:
                    log("error: the pool graph does not reproduce the official region embeddings")
                    return 3
            if "text" in specs:
                err = verify_text(text_model, tokenizer, stage, TOKENIZER_PROBES + (labels or [])[:8])
                log(f"verify text: max|diff|/max|ref| = {err:.2e} (limit {limit:.0e})")
                if not err <= limit:
                    log("error: the text graph does not reproduce the official text tower")
                    return 3

        for fname in os.listdir(stage):
            os.chmod(os.path.join(stage, fname), 0o644)
        install_dir(stage, args.out)
        stage = None
    finally:
        if stage and os.path.exists(stage):
            shutil.rmtree(stage)
    total = sum(v["bytes"] for v in files.values())
    log(f"wrote {args.out}: {total / 1e6:.1f} MB in {time.time() - t0:.1f} s")
    return 0


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    sys.exit(main())
