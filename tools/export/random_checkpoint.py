#!/usr/bin/env python3
"""Write a PS3 checkpoint with random weights, in the Hugging Face layout of the PS3 releases.

    random_checkpoint.py --out DIR --width W --depth D --heads H --seed S
                         [--scales 378,756,1512,3780] [--max-select K] [--mlp-ratio R]
                         [--hrsel-dim D] [--model-name TIMM_NAME]
                         [--text-width W] [--text-depth D] [--text-vocab V]

The architecture is the official one (ps3-torch + timm); `vision_config.timm_overrides` carries the
width/depth/heads/mlp ratio that shrink the timm trunk. Every parameter is drawn at random from a
generator seeded by (seed, parameter name), so no code path is hidden behind PS3's constant inits
(zero position residuals, 1e-6 ConvNeXt scales, unit LayerNorms) and adding parameters elsewhere never
changes the values of existing ones. SO400M size: --width 1152 --depth 27 --heads 16.

The text tower (`text_model.`, the official TextTransformer with its prompt projection) is random
too, with SigLIP's initial logit scale and bias as top-level `logit_scale` (log space) and
`logit_bias` tensors, and the checkpoint carries a small tokenizer of exactly --text-vocab tokens
(tiny_tokenizer.py, in `tokenizer/`) named by a PS3-style `tokenizer_config.json`, so the text paths
(label bank, text prompts) run offline like a release checkpoint with its tokenizer copied locally.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from ps3.configuration_ps3 import PS3TextConfig  # noqa: E402
from ps3.modeling_ps3 import PS3TextModel  # noqa: E402
from ps3_official import Checkpoint, build_vision_model, timm_overrides  # noqa: E402,F401
from tiny_tokenizer import build_tokenizer  # noqa: E402


def selection_layers(depth: int) -> list[int]:
    """PS3 selects on layers [0, 9, 18, 26] of 27: first, thirds, last."""
    layers = sorted({0, depth // 3, 2 * depth // 3, depth - 1})
    return layers


def randomize(module: torch.nn.Module, seed: int, prefix: str) -> None:
    """Draw every parameter of `module` at random, reproducibly per (seed, name)."""
    norm_types = (torch.nn.LayerNorm, torch.nn.GroupNorm)
    norm_params = set()
    for mname, m in module.named_modules():
        if isinstance(m, norm_types) or type(m).__name__ in ("LayerNorm2d", "LayerNorm"):
            for pname, _ in m.named_parameters(recurse=False):
                norm_params.add(f"{mname}.{pname}" if mname else pname)
    with torch.no_grad():
        for name, p in module.named_parameters():
            g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32((prefix + name).encode()))
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name in norm_params:
                value = 1.0 + 0.1 * r if name.endswith("weight") else 0.05 * r
            elif name.endswith("bias"):
                value = 0.05 * r
            elif "pos_emb" in name or name.endswith("pos_embed"):
                value = 0.3 * r
            elif p.dim() >= 2:
                fan_in = p[0].numel()
                value = r / (fan_in ** 0.5)
            else:
                # prior prompt, ConvNeXt per-channel scales, attention-pool latent, ...
                value = 0.5 * r
            p.copy_(value)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="checkpoint directory to write")
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--depth", type=int, required=True)
    ap.add_argument("--heads", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--scales", default="378,756,1512,3780")
    ap.add_argument("--max-select", type=int, default=2560, help="max_select_num (default budget K)")
    ap.add_argument("--mlp-ratio", type=float, default=None, help="trunk MLP ratio (default: the timm model's)")
    ap.add_argument("--hrsel-dim", type=int, default=512, help="ShallowConvNet width (PS3: 512)")
    ap.add_argument("--text-width", type=int, default=None, help="text tower width (default: min(width, 512))")
    ap.add_argument("--text-depth", type=int, default=2)
    ap.add_argument("--text-vocab", type=int, default=1024)
    ap.add_argument("--model-name", default="vit_so400m_patch14_siglip_384")
    args = ap.parse_args()

    scales = sorted(int(s) for s in args.scales.split(","))
    if scales[0] != 378 or any(s % 378 for s in scales):
        ap.error("--scales: PS3 needs 378 first and multiples of 378 (e.g. 378,756,1512,3780)")
    if args.width % args.heads:
        ap.error("--width must be a multiple of --heads")
    overrides = {"embed_dim": args.width, "depth": args.depth, "num_heads": args.heads}
    if args.mlp_ratio is not None:
        overrides["mlp_ratio"] = args.mlp_ratio
    vision_config = {
        "model_type": "ps3_vision_model",
        "model_name": args.model_name,
        "hidden_size": args.width,
        "pool": "map",
        "ps3": True,
        "ps3_scales": scales,
        "select_based_on_layer": selection_layers(args.depth),
        "min_select_num": 1,
        "max_select_num": args.max_select,
        "separate_pos_emb": True,
        "highres_selection_feature": True,
        "highres_selection_module_hidden_dim": args.hrsel_dim,
        "highres_selection_module_out_dim": args.hrsel_dim,
        "timm_overrides": overrides,
    }
    text_width = args.text_width or min(args.width, 512)
    text_heads = max(1, text_width // 64) if text_width >= 64 else 1
    text_config = {
        "model_type": "ps3_text_model",
        "output_dim": args.width,
        "prompt_proj_dim": args.width,
        "context_length": 64,
        "vocab_size": args.text_vocab,
        "width": text_width,
        "heads": text_heads,
        "layers": args.text_depth,
        "hf_tokenizer_name": "tokenizer",
        "tokenizer_kwargs": {"clean": "canonicalize"},
        "no_causal_mask": True,
        "pool_type": "last",
        "proj_bias": True,
        "act_kwargs": {"approximate": "tanh"},
        "norm_kwargs": {"eps": 1e-6},
    }

    os.makedirs(args.out, exist_ok=True)
    ckpt = Checkpoint(path=args.out, name="random", model_type="ps3", vision_config=vision_config, preprocessor={})
    # Build the official architecture (no weights on disk yet) and randomize it.
    from ps3.configuration_ps3 import PS3VisionConfig
    from ps3.modeling_ps3 import PS3VisionModel

    vc = {k: v for k, v in vision_config.items() if k not in ("timm_overrides", "model_type")}
    with timm_overrides(overrides):
        vision = PS3VisionModel(PS3VisionConfig(**vc)).vision_model
    text = PS3TextModel(PS3TextConfig(**{k: v for k, v in text_config.items() if k != "model_type"})).text_model
    randomize(vision, args.seed, "vision_model.")
    randomize(text, args.seed, "text_model.")

    tensors = {}
    for prefix, module in (("vision_model.", vision), ("text_model.", text)):
        for k, v in module.state_dict().items():
            tensors[prefix + k] = v.detach().contiguous().clone()
    # SigLIP's initial values (open_clip convention: the scale is stored as its logarithm).
    tensors["logit_scale"] = torch.tensor([math.log(10.0)], dtype=torch.float32)
    tensors["logit_bias"] = torch.tensor([-10.0], dtype=torch.float32)
    constant = [k for k, v in tensors.items() if v.numel() > 1 and float(v.float().std()) == 0.0]
    if constant:
        raise SystemExit(f"random_checkpoint: parameters left constant: {constant}")
    save_file(tensors, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})

    config = {
        "architectures": ["PS3Model"],
        "model_type": "ps3",
        "_name_or_path": f"random-ps3-w{args.width}-d{args.depth}-h{args.heads}-s{args.seed}",
        "torch_dtype": "float32",
        "vision_config": vision_config,
        "text_config": text_config,
    }
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    pre = {
        "image_processor_type": "PS3ImageProcessor",
        "image_size": scales[-1],
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "interpolation": "bicubic",
        "resize_mode": "squash",
    }
    with open(os.path.join(args.out, "preprocessor_config.json"), "w") as f:
        json.dump(pre, f, indent=2)
        f.write("\n")
    # The tokenizer: a Hugging Face tokenizer directory plus PS3's tokenizer_config.json naming it (the
    # releases name a Hub tokenizer there; a local relative path keeps this checkpoint offline).
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(args.text_vocab), pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]"
    )
    fast.save_pretrained(os.path.join(args.out, "tokenizer"))
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_name": "tokenizer", "context_length": text_config["context_length"], "clean": "canonicalize"}, f, indent=2)
        f.write("\n")
    n_params = sum(v.numel() for k, v in tensors.items() if k.startswith("vision_model."))
    print(f"random_checkpoint: wrote {args.out} ({n_params:,} vision parameters, seed {args.seed})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
