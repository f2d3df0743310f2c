"""Reading a ps3rt package from Python and running it with ONNX Runtime plus numpy glue.

This is the package's second implementation (the Rust runtime is the first): the exporter uses it to
check a fresh package against the official model, and tools/bench uses it as the ONNX Runtime peer.
The glue follows ../shared/ps3/INFERENCE.md and the runtime's documented rules (selection order:
probability descending, then raster index ascending).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
from safetensors.numpy import load_file


@dataclass
class Token:
    scale_index: int  # 0 -> first high-res scale (756)
    row: int
    col: int


def budget_split(budget: int, scales: list[int]) -> list[int]:
    high = scales[1:]
    pixels = [s * s for s in high]
    total = sum(pixels)
    split = [budget * p // total for p in pixels]
    split[-1] = budget - sum(split[:-1])
    return split


class Package:
    def __init__(self, path: str):
        self.path = path
        with open(os.path.join(path, "manifest.json")) as f:
            self.manifest = json.load(f)
        m = self.manifest
        self.geometry = m["geometry"]
        self.model = m["model"]
        self.scales = self.geometry["scales"]
        self.grids = self.geometry["grids"]
        self.patch = self.geometry["patch"]
        self.width = self.model["width"]
        self.tables = {k: v.astype(np.float32) for k, v in load_file(os.path.join(path, m["tables"]["file"])).items()}

    def graph_path(self, name: str) -> str:
        return os.path.join(self.path, self.manifest["graphs"][name]["file"])

    def pos_table(self, scale_index: int) -> np.ndarray:
        return self.tables[f"pos.{self.scales[scale_index + 1]}"]


def _normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    n = np.sqrt((x.astype(np.float64) ** 2).sum(axis=axis, keepdims=True))
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


class OrtPipeline:
    """The bottom-up pipeline on ONNX Runtime: the package's graphs plus numpy glue."""

    def __init__(self, package: Package, threads: int | None = None):
        import onnxruntime as ort

        self.pkg = package
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        self.lowres = ort.InferenceSession(package.graph_path("lowres"), opts, providers=providers)
        self.hrsel = ort.InferenceSession(package.graph_path("hrsel"), opts, providers=providers)
        self.hrenc = ort.InferenceSession(package.graph_path("hrenc"), opts, providers=providers)

    # -- stages ------------------------------------------------------------------------------------------
    def run_lowres(self, x378: np.ndarray):
        hidden, kv, sel = self.lowres.run(None, {"pixels": x378[None].astype(np.float32)})
        return hidden, kv, sel

    def run_hrsel(self, x_hrsel: np.ndarray):
        (feat,) = self.hrsel.run(None, {"pixels": x_hrsel[None].astype(np.float32)})
        return feat

    def prob_map(self, sel: np.ndarray, hr_feat: np.ndarray, prompt=None, prompt_hr=None) -> np.ndarray:
        t = self.pkg.tables
        prompt = t["prior_prompt"] if prompt is None else prompt
        prompt_hr = t["prior_prompt_hr"] if prompt_hr is None else prompt_hr
        g0 = self.pkg.grids[0]
        gh = self.pkg.geometry["hrsel_grid"]
        cos_lr = (_normalize(sel) * _normalize(prompt)).sum(-1).reshape(g0, g0)
        cos_hr = (_normalize(hr_feat) * _normalize(prompt_hr)).sum(-1).reshape(gh, gh)
        f = gh // g0
        pooled = cos_hr.reshape(g0, f, g0, f).max(axis=(1, 3))
        logits = np.clip((cos_lr + pooled) / 2 * 5.0, -10, 10)
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    def select(self, p: np.ndarray, budget: int, taken: list[np.ndarray] | None = None) -> list[Token]:
        """Top-n_i per scale by p (nearest-upsampled), ties by raster index; `taken` excludes patches."""
        g0 = self.pkg.grids[0]
        split = budget_split(budget, self.pkg.scales)
        tokens: list[Token] = []
        carry = 0
        for i, g in enumerate(self.pkg.grids[1:]):
            f = g // g0
            up = np.repeat(np.repeat(p, f, axis=0), f, axis=1).reshape(-1)
            avail = np.ones(g * g, dtype=bool) if taken is None else ~taken[i].reshape(-1)
            want = split[i] + carry
            n = min(want, int(avail.sum()))
            carry = want - n if i + 1 < len(split) else 0
            idx = np.flatnonzero(avail)
            order = idx[np.lexsort((idx, -up[idx]))][:n]
            for j in sorted(order):
                tokens.append(Token(i, int(j // g), int(j % g)))
        return tokens

    def gather(self, scaled: list[np.ndarray], tokens: list[Token]):
        """Patches [K,588] from the per-scale images and position rows [K,C]."""
        ps = self.pkg.patch
        patches = np.empty((len(tokens), 3 * ps * ps), dtype=np.float32)
        pos = np.empty((len(tokens), self.pkg.width), dtype=np.float32)
        for n, tok in enumerate(tokens):
            img = scaled[tok.scale_index]
            patches[n] = img[:, tok.row * ps:(tok.row + 1) * ps, tok.col * ps:(tok.col + 1) * ps].reshape(-1)
            pos[n] = self.pkg.pos_table(tok.scale_index)[tok.row * self.pkg.grids[tok.scale_index + 1] + tok.col]
        return patches, pos

    def run_hrenc(self, patches, pos, kv):
        (out,) = self.hrenc.run(None, {"patches": patches, "pos": pos, "kv_cache": kv})
        return out

    # -- whole pipeline on an already normalized [3, S_max, S_max] tensor --------------------------------
    def resize(self, x: np.ndarray, size: int) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        if x.shape[-1] == size:
            return x
        t = torch.from_numpy(np.ascontiguousarray(x))[None]
        return F.interpolate(t, size=(size, size), mode="bicubic", align_corners=False)[0].numpy()

    def encode(self, x: np.ndarray, budget: int, steps: int = 1, tokens_per_step=None):
        x378 = self.resize(x, self.pkg.scales[0])
        x_hr = self.resize(x, self.pkg.geometry["hrsel_input"])
        hidden, kv, sel = self.run_lowres(x378)
        feat = self.run_hrsel(x_hr)
        p = self.prob_map(sel, feat)
        scaled = [self.resize(x, s) for s in self.pkg.scales[1:]]
        taken = [np.zeros((g, g), dtype=bool) for g in self.pkg.grids[1:]]
        per_token = {}
        for step in range(steps):
            tokens = tokens_per_step[step] if tokens_per_step is not None else self.select(p, budget, taken)
            patches, pos = self.gather(scaled, tokens)
            out = self.run_hrenc(patches, pos, kv)
            for tok, f in zip(tokens, out):
                taken[tok.scale_index][tok.row, tok.col] = True
                per_token[(tok.scale_index, tok.row, tok.col)] = f
        order = sorted(per_token, key=lambda k: (k[0], k[1] * self.pkg.grids[k[0] + 1] + k[2]))
        high = np.stack([per_token[k] for k in order]) if order else np.zeros((0, self.pkg.width), np.float32)
        return np.concatenate([hidden, high], axis=0), p, [Token(*k) for k in order]
