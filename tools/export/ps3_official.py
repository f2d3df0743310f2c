"""Loading official PS3 checkpoints with the official model code (PyPI `ps3-torch`).

Everything the exporter and the parity tools know about a checkpoint goes through here:
- the Hugging Face layout of the PS3 releases (config.json with model_type "ps3" + vision_config, or
  "ps3_vision_model"; model.safetensors; preprocessor_config.json when present),
- the `timm_overrides` extension used by small test checkpoints,
- the per-scale budget split, computed with the remainder rule of the GitHub code (ps3-torch 0.1.3 drops
  the remainder, see ../shared/ps3/INFERENCE.md), always passed explicitly to the official model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", message="The number of hidden layers to return")

import timm  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import ps3  # noqa: E402,F401  (registers the official model code)
from ps3.configuration_ps3 import PS3VisionConfig  # noqa: E402
from ps3.modeling_ps3 import PS3VisionModel  # noqa: E402

VISION_PREFIX = "vision_model."
ALLOWED_TIMM_OVERRIDES = ("embed_dim", "depth", "num_heads", "mlp_ratio")
SIGLIP_NORM = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


class CheckpointError(Exception):
    """A checkpoint directory that cannot be exported, with the reason."""


def budget_split(budget: int, scales: list[int]) -> list[int]:
    """Split `budget` high-res tokens over the high-res scales by pixel count; the last scale takes the
    remainder (GitHub PS3; PyPI 0.1.3 lacks the remainder line)."""
    high = scales[1:]
    pixels = [s * s for s in high]
    total = sum(pixels)
    split = [budget * p // total for p in pixels]
    split[-1] = budget - sum(split[:-1])
    return split


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def timm_overrides(overrides: dict[str, Any] | None):
    """Apply `timm_overrides` (embed_dim, depth, num_heads, mlp_ratio) when the official code creates its
    timm trunk. The official encoder calls `timm.create_model` through the module attribute, so patching
    the attribute for the duration of construction is enough."""
    if not overrides:
        yield
        return
    unknown = set(overrides) - set(ALLOWED_TIMM_OVERRIDES)
    if unknown:
        raise CheckpointError(f"timm_overrides: unsupported keys {sorted(unknown)}; allowed: {ALLOWED_TIMM_OVERRIDES}")
    original = timm.create_model

    def create_model(name, *args, **kwargs):
        kwargs.update(overrides)
        return original(name, *args, **kwargs)

    timm.create_model = create_model
    try:
        yield
    finally:
        timm.create_model = original


@dataclass
class Checkpoint:
    """A PS3 checkpoint directory, read and checked."""

    path: str
    name: str
    model_type: str
    vision_config: dict[str, Any]
    preprocessor: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    text_config: dict[str, Any] = field(default_factory=dict)  # config.json's text_config ({} if none)

    @property
    def scales(self) -> list[int]:
        return sorted(int(s) for s in self.vision_config.get("ps3_scales", [378, 756, 1512]))

    @property
    def default_budget(self) -> int:
        return int(self.vision_config.get("max_select_num", 1280))

    @property
    def normalization(self) -> dict[str, list[float]]:
        mean = self.preprocessor.get("mean", self.preprocessor.get("image_mean"))
        std = self.preprocessor.get("std", self.preprocessor.get("image_std"))
        if mean is None or std is None:
            return dict(SIGLIP_NORM)

        def three(v):
            return [float(x) for x in v] if isinstance(v, (list, tuple)) else [float(v)] * 3

        return {"mean": three(mean), "std": three(std)}


def read_checkpoint(path: str) -> Checkpoint:
    """Read config.json (+ preprocessor_config.json) of a local checkpoint directory; no network."""
    cfg_path = os.path.join(path, "config.json")
    weights_path = os.path.join(path, "model.safetensors")
    if not os.path.isfile(cfg_path):
        raise CheckpointError(f"{cfg_path}: missing (expected a Hugging Face PS3 checkpoint directory)")
    if not os.path.isfile(weights_path):
        raise CheckpointError(f"{weights_path}: missing (sharded or .bin checkpoints are not supported)")
    with open(cfg_path) as f:
        cfg = json.load(f)
    model_type = cfg.get("model_type")
    if model_type == "ps3":
        if "vision_config" not in cfg:
            raise CheckpointError(f"{cfg_path}: model_type 'ps3' without vision_config")
        vision = dict(cfg["vision_config"])
    elif model_type == "ps3_vision_model":
        vision = dict(cfg)
    else:
        raise CheckpointError(f"{cfg_path}: model_type {model_type!r} is not 'ps3' or 'ps3_vision_model'")
    if vision.get("radio"):
        raise CheckpointError(f"{cfg_path}: C-RADIO checkpoints (radio=true) are not supported by this exporter yet")
    if not vision.get("model_name"):
        raise CheckpointError(f"{cfg_path}: vision_config.model_name (the timm architecture) is missing")
    pre = {}
    pre_path = os.path.join(path, "preprocessor_config.json")
    if os.path.isfile(pre_path):
        with open(pre_path) as f:
            pre = json.load(f)
    files = {"config.json": sha256_file(cfg_path), "model.safetensors": sha256_file(weights_path)}
    if pre:
        files["preprocessor_config.json"] = sha256_file(pre_path)
    tok_cfg = os.path.join(path, "tokenizer_config.json")
    if os.path.isfile(tok_cfg):
        files["tokenizer_config.json"] = sha256_file(tok_cfg)
    name = cfg.get("_name_or_path") or os.path.basename(os.path.normpath(path))
    text = dict(cfg.get("text_config") or {}) if model_type == "ps3" else {}
    return Checkpoint(path=path, name=name, model_type=model_type, vision_config=vision, preprocessor=pre, files=files,
                      text_config=text)


def build_vision_model(ckpt: Checkpoint, budget: int | None = None) -> PS3VisionModel:
    """The official PS3VisionModel with the checkpoint's weights, in eval mode, float32.

    `budget` fixes `max_select_num_each_scale` to our split of that budget (the official default when
    None would use ps3-torch 0.1.3's split without remainder)."""
    vc = {k: v for k, v in ckpt.vision_config.items() if k not in ("timm_overrides", "model_type", "architectures")}
    budget = ckpt.default_budget if budget is None else budget
    vc["max_select_num"] = budget
    vc["max_select_num_each_scale"] = budget_split(budget, ckpt.scales)
    vc.setdefault("pool", "map")
    vc["pretrained"] = False
    config = PS3VisionConfig(**vc)
    with timm_overrides(ckpt.vision_config.get("timm_overrides")):
        model = PS3VisionModel(config)
    state = load_file(os.path.join(ckpt.path, "model.safetensors"))
    vision = {k[len(VISION_PREFIX):]: v for k, v in state.items() if k.startswith(VISION_PREFIX)}
    if not vision:
        raise CheckpointError(f"{ckpt.path}/model.safetensors: no tensors under '{VISION_PREFIX}'")
    expected = model.vision_model.state_dict()
    missing = sorted(set(expected) - set(vision))
    unexpected = sorted(set(vision) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{ckpt.path}/model.safetensors does not match the architecture of config.json: "
            f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}"
        )
    for k, v in vision.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(f"{k}: shape {tuple(v.shape)} in the checkpoint, {tuple(expected[k].shape)} in the architecture")
    model.vision_model.load_state_dict({k: v.float() for k, v in vision.items()}, strict=True)
    model.eval()
    return model.float()


# -- text tower, tokenizer, logit scale and bias (label banks and text prompts) ---------------------------
TEXT_PREFIX = "text_model."


def build_text_model(ckpt: Checkpoint):
    """The official PS3 TextTransformer (`PS3TextModel.text_model`) with the checkpoint's weights, eval, fp32."""
    from ps3.configuration_ps3 import PS3TextConfig
    from ps3.modeling_ps3 import PS3TextModel

    if not ckpt.text_config:
        raise CheckpointError(f"{ckpt.path}/config.json has no text_config (a vision-only checkpoint has no text tower)")
    tc = {k: v for k, v in ckpt.text_config.items() if k not in ("model_type", "architectures")}
    if tc.get("embed_cls"):
        raise CheckpointError(f"{ckpt.path}/config.json: text_config.embed_cls (CoCa-style) is not supported")
    model = PS3TextModel(PS3TextConfig(**tc)).text_model
    state = load_file(os.path.join(ckpt.path, "model.safetensors"))
    text = {k[len(TEXT_PREFIX):]: v for k, v in state.items() if k.startswith(TEXT_PREFIX)}
    if not text:
        raise CheckpointError(f"{ckpt.path}/model.safetensors: no tensors under '{TEXT_PREFIX}'")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(text))
    unexpected = sorted(set(text) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{ckpt.path}/model.safetensors: the text tower does not match text_config: missing {missing[:8]}, unexpected {unexpected[:8]}"
        )
    model.load_state_dict({k: v.float() for k, v in text.items()}, strict=True)
    model.eval()
    return model.float()


def logit_params(ckpt: Checkpoint) -> tuple[float, float] | None:
    """(scale, bias) of the SigLIP score `sigmoid(scale * cos + bias)` from the checkpoint's top-level
    `logit_scale` (open_clip convention: stored as a logarithm) and `logit_bias`; None when absent."""
    from safetensors import safe_open

    with safe_open(os.path.join(ckpt.path, "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
        if "logit_scale" not in keys or "logit_bias" not in keys:
            return None
        scale = float(f.get_tensor("logit_scale").float().reshape(-1)[0].exp())
        bias = float(f.get_tensor("logit_bias").float().reshape(-1)[0])
    return scale, bias


@dataclass
class TextTokenizer:
    """The checkpoint's tokenizer as PS3 uses it (`PS3Tokenizer`), plus what ps3rt needs to replay it."""

    ps3: Any  # ps3.tokenization_ps3.PS3Tokenizer
    directory: str  # the local Hugging Face tokenizer directory
    context_length: int
    clean: str  # PS3's cleaning: "canonicalize", "lower" or "whitespace"

    def ids(self, texts: list[str]) -> torch.Tensor:
        return self.ps3(texts)

    def fixed_length_json(self) -> str:
        """The fast tokenizer as tokenizer.json with PS3's padding and truncation built in (pad/truncate
        to context_length on the tokenizer's side), so `encode(clean(text))` gives PS3's ids."""
        hf = self.ps3.tokenizer
        tk = hf.backend_tokenizer
        from tokenizers import Tokenizer

        tk = Tokenizer.from_str(tk.to_str())
        tk.enable_truncation(max_length=self.context_length, strategy="longest_first", direction=hf.truncation_side)
        tk.enable_padding(length=self.context_length, pad_id=hf.pad_token_id, pad_token=hf.pad_token, direction=hf.padding_side)
        return tk.to_str()


def load_tokenizer(ckpt: Checkpoint, directory: str | None = None) -> TextTokenizer:
    """PS3's tokenizer for `ckpt`, from local files only. The checkpoint's tokenizer_config.json names
    the tokenizer (a Hub name for the releases, e.g. timm/ViT-SO400M-14-SigLIP2-378), its context length
    and cleaning; `directory` is a local copy of that tokenizer (default: the name itself when it is a
    directory relative to the checkpoint)."""
    from ps3.tokenization_ps3 import PS3Tokenizer

    cfg_path = os.path.join(ckpt.path, "tokenizer_config.json")
    cfg = {}
    if os.path.isfile(cfg_path):
        with open(cfg_path) as f:
            cfg = json.load(f)
    name = cfg.get("tokenizer_name") or ckpt.text_config.get("hf_tokenizer_name")
    context = int(cfg.get("context_length") or ckpt.text_config.get("context_length") or 64)
    clean = cfg.get("clean") or (ckpt.text_config.get("tokenizer_kwargs") or {}).get("clean") or "whitespace"
    if directory is None:
        candidate = os.path.join(ckpt.path, name) if name else None
        if candidate and os.path.isdir(candidate):
            directory = candidate
        else:
            raise CheckpointError(
                f"{cfg_path}: the tokenizer {name!r} is not a local directory of the checkpoint; pass --tokenizer DIR "
                "with a local copy of it (tokenizer.json and tokenizer_config.json; nothing is downloaded)"
            )
    if not os.path.isfile(os.path.join(directory, "tokenizer.json")):
        raise CheckpointError(f"{directory}: no tokenizer.json (a fast Hugging Face tokenizer directory is needed)")
    if clean not in ("canonicalize", "lower", "whitespace"):
        raise CheckpointError(f"{cfg_path}: clean {clean!r} is not canonicalize, lower or whitespace")
    ps3 = PS3Tokenizer(tokenizer_name=os.path.abspath(directory), context_length=context, clean=clean)
    return TextTokenizer(ps3=ps3, directory=directory, context_length=context, clean=clean)
