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
    name = cfg.get("_name_or_path") or os.path.basename(os.path.normpath(path))
    return Checkpoint(path=path, name=name, model_type=model_type, vision_config=vision, preprocessor=pre, files=files)


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
