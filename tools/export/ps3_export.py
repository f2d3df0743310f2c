#!/usr/bin/env python3
"""Export an official PS3 checkpoint to a ps3rt model package.

    ps3_export.py --checkpoint DIR --out PKG [--budget K] [--precision fp32|fp16] [--name NAME]
                  [--no-verify] [--force]

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

After writing, the package is run with ONNX Runtime and numpy glue and compared with the official
model on a random input (unless --no-verify).
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
from graphs import HrEnc, HrSel, LowRes  # noqa: E402
from ps3_official import CheckpointError, budget_split, build_vision_model, read_checkpoint, sha256_file  # noqa: E402

FORMAT_VERSION = 1
EXPORTER_VERSION = 1
OPSET = 17
EXTERNAL_MIN_BYTES = 1024
ALIGN = 64


def log(msg: str) -> None:
    print(f"ps3_export: {msg}", file=sys.stderr, flush=True)


# -- graphs -------------------------------------------------------------------------------------------------
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
        return {"name": v.name, "dtype": "float32", "shape": dims}

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
    args = ap.parse_args()

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

    parent = os.path.dirname(os.path.abspath(args.out)) or "."
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=".ps3rt-export-", dir=parent)
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

        os.chmod(stage, 0o755)
        for fname in os.listdir(stage):
            os.chmod(os.path.join(stage, fname), 0o644)
        if os.path.exists(args.out):
            shutil.rmtree(args.out)
        os.rename(stage, args.out)
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
