"""The three static-shape graphs of a ps3rt package, written over the official PS3 modules.

Every layer, norm and activation is the official module itself (timm trunk blocks, PS3's selection MLP
and ShallowConvNet), so a checkpoint's own variants (GELU flavour, norms, layer scales) carry over. Only
the glue between modules is rewritten, without data-dependent indexing, so the graphs export with
static shapes:

- `lowres`:  pixels [1,3,378,378] -> hidden [729,C] (last block, pre-norm), kv_cache [L,2,H,729,hd],
             sel_feat [729,C] (first C outputs of the selection MLP: the only slice PS3 uses).
- `hrsel`:   pixels [1,3,1512,1512] -> hr_feat [54*54, D] (ShallowConvNet, position-major).
- `hrenc`:   patches [K,588], pos [K,C], kv_cache -> features [K,C]. K is a named dimension that the
             runtime fixes when it loads the graph; nothing else varies.

The prompts (prior or top-down) are not folded in: the runtime computes the cosine maps, so a text
prompt can replace the prior prompt without a new graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _attention(blk, x: torch.Tensor, width: int, heads: int, kv_prefix: torch.Tensor | None = None):
    """Pre-norm attention of a timm block on tokens `x` [N, width]; with `kv_prefix` [2,H,M,hd] the keys and
    values of the low-res tokens are prepended (PS3's KV cache). Returns (attention output [N,C], k, v)."""
    head_dim = width // heads
    h = blk.norm1(x)
    qkv = F.linear(h, blk.attn.qkv.weight, blk.attn.qkv.bias)
    qkv = qkv.reshape(-1, 3, heads, head_dim).permute(1, 2, 0, 3)  # [3, H, N, hd]
    q, k, v = qkv[0], qkv[1], qkv[2]
    q, k = blk.attn.q_norm(q), blk.attn.k_norm(k)
    k_all, v_all = k, v
    if kv_prefix is not None:
        k_all = torch.cat([kv_prefix[0], k], dim=1)
        v_all = torch.cat([kv_prefix[1], v], dim=1)
    scores = torch.matmul(q * (head_dim ** -0.5), k_all.transpose(-2, -1))
    out = torch.matmul(scores.softmax(dim=-1), v_all)  # [H, N, hd]
    out = out.transpose(0, 1).reshape(-1, width)
    return blk.attn.proj(out), k, v


def _block(blk, x, width, heads, kv_prefix=None):
    a, k, v = _attention(blk, x, width, heads, kv_prefix)
    x = x + blk.ls1(a)
    x = x + blk.ls2(blk.mlp(blk.norm2(x)))
    return x, k, v


class LowRes(nn.Module):
    def __init__(self, enc):
        super().__init__()
        self.enc = enc
        self.trunk = enc.trunk
        self.heads = self.trunk.blocks[0].attn.num_heads
        self.select_layers = list(enc.config.select_based_on_layer)
        self.width = enc.width

    def forward(self, pixels):
        t = self.trunk
        x = t.patch_embed.proj(pixels)  # [1, C, 27, 27]
        x = x.flatten(2).transpose(1, 2)[0]  # [729, C]
        x = t.patch_embed.norm(x)
        x = x + t.pos_embed[0]  # 27x27 table used as is (PS3's resample is the identity here)
        x = t.norm_pre(x)
        hidden, cache = [], []
        for blk in t.blocks:
            x, k, v = _block(blk, x, self.width, self.heads)
            hidden.append(x)
            cache.append(torch.stack([k, v]))
        kv = torch.stack(cache)  # [L, 2, H, 729, hd]
        mlp = self.enc.selection_feature_proj
        s = torch.cat([hidden[i] for i in self.select_layers], dim=-1)
        s = mlp.norm(mlp.act(mlp.fc1(s)))
        sel = F.linear(s, mlp.fc2.weight[: self.width], mlp.fc2.bias[: self.width])
        return hidden[-1], kv, sel


class HrSel(nn.Module):
    def __init__(self, enc):
        super().__init__()
        self.net = enc.highres_selection_feature_module

    def forward(self, pixels):
        f = self.net(pixels)  # [1, D, g, g]
        return f[0].flatten(1).transpose(0, 1)  # [g*g, D]


class HrEnc(nn.Module):
    def __init__(self, enc):
        super().__init__()
        self.trunk = enc.trunk
        self.heads = self.trunk.blocks[0].attn.num_heads
        self.width = enc.width

    def forward(self, patches, pos, kv_cache):
        t = self.trunk
        w = t.patch_embed.proj.weight.reshape(self.width, -1)
        x = F.linear(patches, w, t.patch_embed.proj.bias)
        x = t.patch_embed.norm(x)
        x = x + pos
        x = t.norm_pre(x)
        for i, blk in enumerate(t.blocks):
            x, _, _ = _block(blk, x, self.width, self.heads, kv_prefix=kv_cache[i])
        return x
