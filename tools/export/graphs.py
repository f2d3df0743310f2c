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


# -- optional graphs (region labels and text prompts; format 1 packages may lack them) -------------------
POOL_MASK_BIAS = -30000.0  # masked keys: exp(-30000 + x) is exactly 0 in fp32 and fp16; no -inf * 0 NaNs


class Pool(nn.Module):
    """`pool`: tokens [N,C] (high-res tokens as the hrenc graph returns them, pre-norm) and mask [R,N]
    (1 = the token is in region r) -> embeddings [R,C]: one region embedding per mask row.

    This is PS3's pooled output for local captions (`forward_high_res(..., pool_gt_token_only=True)`):
    the trunk's final norm over the high-res tokens, then the attention-pool (MAP) head with
    `forward_attn_pool_with_mask`'s key mask: keys outside the region are masked out, and a row without
    any token in the region attends to all tokens (`mask[mask.sum(-1) == 0] = 1`). The head's own
    modules (q, kv, q_norm, k_norm, proj, norm, mlp) are the official ones; the latent query is shared
    by all rows, so keys and values are computed once."""

    def __init__(self, enc):
        super().__init__()
        t = enc.trunk
        self.norm = t.norm
        self.fc_norm = t.fc_norm
        self.head = t.head
        self.pool = t.attn_pool
        if getattr(self.pool, "pos_embed", None) is not None:
            raise RuntimeError("pool: attention pools with a position table are not supported")
        if self.pool.pool not in ("token", "avg", ""):
            raise RuntimeError(f"pool: attention-pool reduction {self.pool.pool!r} is not supported")

    def forward(self, tokens, mask):
        p = self.pool
        n, c = tokens.shape
        heads, hd, latent = p.num_heads, p.head_dim, p.latent_len
        x = self.norm(tokens)
        q = p.q(p.latent[0]).reshape(latent, heads, hd).transpose(0, 1)  # [H, L, hd]
        kv = p.kv(x).reshape(n, 2, heads, hd).permute(1, 2, 0, 3)  # [2, H, N, hd]
        k, v = kv[0], kv[1]
        q, k = p.q_norm(q), p.k_norm(k)
        scores = torch.matmul(q * p.scale, k.transpose(-2, -1))  # [H, L, N]
        keep = mask + (1.0 - mask.max(dim=-1, keepdim=True).values)  # empty rows attend to everything
        bias = (1.0 - keep) * POOL_MASK_BIAS  # [R, N]
        attn = (scores[None] + bias[:, None, None, :]).softmax(dim=-1)  # [R, H, L, N]
        out = torch.matmul(attn, v[None])  # [R, H, L, hd]
        out = out.transpose(1, 2).reshape(-1, latent, c)
        out = p.proj(out)
        out = out + p.mlp(p.norm(out))
        if p.pool == "token":
            out = out[:, 0]
        elif p.pool == "avg":
            out = out.mean(1)
        return self.head(self.fc_norm(out))


class Text(nn.Module):
    """`text`: token ids [1, context_length] (int64, PS3Tokenizer's padded ids) -> embedding [D] (the
    text embedding in the joint space, `pooled_output`) and prompt [C] (`prompt`: the prompt projection
    of the normalized embedding, what PS3's `prompt=` takes for top-down selection). The official
    TextTransformer runs as is."""

    def __init__(self, text_model):
        super().__init__()
        self.text = text_model

    def forward(self, ids):
        out = self.text(ids)
        return out.pooled_output[0], out.prompt[0]
