//! Compute and memory per frame, from a package manifest alone (nothing is loaded or run).
//!
//! **Counting rule:** a multiply-add counts as **2 FLOPs**. Only matrix products and convolutions are
//! counted; LayerNorm, GELU, softmax, residual adds, the probability map, top-k and the gathers are
//! left out (together well under 1% of a PS3 frame).
//!
//! With `C` the width, `L` the depth, `M` the MLP hidden width, `N` the low-res token count (729),
//! `P = 3 * patch^2` the values of one patch (588), `K` the budget and `n_sel` the number of selection
//! layers, the stages of one frame are:
//!
//! | stage | FLOPs |
//! |---|---|
//! | low-res trunk (`lowres`) | `2 N P C` (patch embed) + `L * trunk(N queries, N keys)` |
//! | selection MLP (`lowres`) | `2 N (n_sel C)^2` (fc1) + `2 N (n_sel C) C` (fc2, first C outputs only) |
//! | ShallowConvNet (`hrsel`) | see [`hrsel_flops`] |
//! | high-res trunk (`hrenc`, per step) | `2 K P C` (patch embed) + `L * trunk(K queries, N + K keys)` |
//!
//! where one transformer block on `q` query tokens attending to `k` keys costs
//! `trunk(q, k) = 6 q C^2 (qkv) + 2 q k C (Q K^T) + 2 q k C (attention x V) + 2 q C^2 (proj) + 4 q C M (MLP)`.
//! The high-res tokens attend to the low-res KV cache (the `N` keys computed by `lowres`) plus their own
//! `K` keys, so only the queries, keys and values of the `K` new tokens are computed. Each look-close
//! step repeats the high-res stage with `N + K` keys (a step attends to the low-res cache only).
//!
//! The selection MLP is `Mlp(n_sel C -> n_sel C -> C * (scales - 1))` in PS3, but PS3 only ever uses
//! the first `C` outputs, and ps3rt's graph computes just those.
//!
//! SO400M-size PS3-4K (C 1152, L 27, 16 heads, M 4304, four selection layers, ShallowConvNet 512 wide)
//! at K = 2560: low-res trunk 0.666 TFLOP, selection MLP 0.039, ShallowConvNet 0.046, high-res trunk
//! 3.156, total 3.907 TFLOP per frame (the unit tests below pin these).

use crate::package::Manifest;

/// Blocks of PS3's ShallowConvNet (fixed at 3 in PS3's configuration; not recorded in the manifest).
pub const HRSEL_BLOCKS: usize = 3;
/// Depthwise kernel side of the ShallowConvNet's ConvNeXt blocks.
pub const HRSEL_DW_KERNEL: usize = 7;
/// MLP expansion of the ShallowConvNet's ConvNeXt blocks.
pub const HRSEL_MLP_RATIO: usize = 4;

/// The sizes that decide the cost of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Patch side (14).
    pub patch: usize,
    /// Low-res tokens N (729).
    pub lowres_tokens: usize,
    /// Low-res input side (378).
    pub lowres_size: usize,
    /// Token width C.
    pub width: usize,
    /// Transformer blocks L.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP hidden width M.
    pub mlp_hidden: usize,
    /// Number of blocks feeding the selection MLP.
    pub selection_layers: usize,
    /// Input side of the ShallowConvNet (1512).
    pub hrsel_input: usize,
    /// Output grid side of the ShallowConvNet (54); its stem is a `hrsel_input / hrsel_grid` conv.
    pub hrsel_grid: usize,
    /// Hidden width of the ShallowConvNet.
    pub hrsel_hidden: usize,
    /// Output width D of the ShallowConvNet.
    pub hrsel_dim: usize,
}

impl Dims {
    /// The sizes recorded in a manifest. A manifest without `hrsel_hidden` (optional in format 1)
    /// takes `hrsel_dim`, which PS3's configurations use for both.
    pub fn from_manifest(m: &Manifest) -> Dims {
        let g = &m.geometry;
        let lowres_size = g.scales.first().copied().unwrap_or(0);
        let lowres_grid = g.grids.first().copied().unwrap_or(0);
        Dims {
            patch: g.patch,
            lowres_tokens: lowres_grid * lowres_grid,
            lowres_size,
            width: m.model.width,
            depth: m.model.depth,
            heads: m.model.heads,
            mlp_hidden: m.model.mlp_hidden,
            selection_layers: m.model.selection_layers.len(),
            hrsel_input: g.hrsel_input,
            hrsel_grid: g.hrsel_grid,
            hrsel_hidden: if m.model.hrsel_hidden > 0 {
                m.model.hrsel_hidden
            } else {
                m.model.hrsel_dim
            },
            hrsel_dim: m.model.hrsel_dim,
        }
    }

    /// Values in one patch, `3 * patch^2` (588).
    pub fn patch_values(&self) -> f64 {
        3.0 * (self.patch * self.patch) as f64
    }
}

/// FLOPs of one transformer block run on `queries` tokens that attend to `keys` keys (the queries'
/// own keys included): qkv, attention, output projection and MLP.
pub fn block_flops(d: &Dims, queries: usize, keys: usize) -> f64 {
    let (q, k, c, m) = (
        queries as f64,
        keys as f64,
        d.width as f64,
        d.mlp_hidden as f64,
    );
    let qkv = 2.0 * q * c * 3.0 * c;
    let scores = 2.0 * q * k * c;
    let mix = 2.0 * q * k * c;
    let proj = 2.0 * q * c * c;
    let mlp = 2.0 * 2.0 * q * c * m;
    qkv + scores + mix + proj + mlp
}

/// FLOPs of the patch embedding of `tokens` patches.
pub fn patch_embed_flops(d: &Dims, tokens: usize) -> f64 {
    2.0 * tokens as f64 * d.patch_values() * d.width as f64
}

/// FLOPs of the low-res trunk: patch embedding and L blocks on the N low-res tokens.
pub fn lowres_flops(d: &Dims) -> f64 {
    patch_embed_flops(d, d.lowres_tokens)
        + d.depth as f64 * block_flops(d, d.lowres_tokens, d.lowres_tokens)
}

/// FLOPs of the selection MLP on the N low-res tokens: fc1 `n_sel C -> n_sel C`, then the first `C`
/// outputs of fc2.
pub fn selection_flops(d: &Dims) -> f64 {
    let n = d.lowres_tokens as f64;
    let inner = (d.selection_layers * d.width) as f64;
    2.0 * n * inner * inner + 2.0 * n * inner * d.width as f64
}

/// FLOPs of the ShallowConvNet on the `hrsel_input` px plane, with `g = hrsel_grid`, `h` its hidden
/// width, `s = hrsel_input / g` the stem's kernel and stride (28):
/// stem conv `2 g^2 (3 s^2) h`; per ConvNeXt block a 7x7 depthwise conv `2 g^2 49 h` and a 4x MLP
/// `2 g^2 (h 4h) 2`; the 1x1 output conv `2 g^2 h D`.
pub fn hrsel_flops(d: &Dims) -> f64 {
    if d.hrsel_grid == 0 {
        return 0.0;
    }
    let g2 = (d.hrsel_grid * d.hrsel_grid) as f64;
    let stem_k = (d.hrsel_input / d.hrsel_grid) as f64;
    let h = d.hrsel_hidden as f64;
    let stem = 2.0 * g2 * 3.0 * stem_k * stem_k * h;
    let dw = 2.0 * g2 * (HRSEL_DW_KERNEL * HRSEL_DW_KERNEL) as f64 * h;
    let mlp = 2.0 * g2 * h * HRSEL_MLP_RATIO as f64 * h * 2.0;
    let out = 2.0 * g2 * h * d.hrsel_dim as f64;
    stem + HRSEL_BLOCKS as f64 * (dw + mlp) + out
}

/// FLOPs of one high-res step: patch embedding and L blocks on `budget` tokens attending to the
/// low-res KV cache plus themselves.
pub fn hrenc_step_flops(d: &Dims, budget: usize) -> f64 {
    patch_embed_flops(d, budget) + d.depth as f64 * block_flops(d, budget, d.lowres_tokens + budget)
}

/// FLOPs of one frame, per stage.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FrameFlops {
    /// High-res tokens per step.
    pub budget: usize,
    /// Look-close steps.
    pub steps: usize,
    /// Low-res trunk (patch embedding and blocks).
    pub lowres: f64,
    /// Selection MLP (in the low-res graph).
    pub selection: f64,
    /// High-res selection branch (ShallowConvNet).
    pub hrsel: f64,
    /// High-res trunk, one step.
    pub hrenc_step: f64,
    /// High-res trunk, all steps.
    pub hrenc: f64,
    /// Everything.
    pub total: f64,
}

/// FLOPs of one frame at `budget` tokens per step and `steps` steps (0 is taken as 1).
pub fn frame_flops(d: &Dims, budget: usize, steps: usize) -> FrameFlops {
    let steps = steps.max(1);
    let lowres = lowres_flops(d);
    let selection = selection_flops(d);
    let hrsel = hrsel_flops(d);
    let hrenc_step = hrenc_step_flops(d, budget);
    let hrenc = hrenc_step * steps as f64;
    FrameFlops {
        budget,
        steps,
        lowres,
        selection,
        hrsel,
        hrenc_step,
        hrenc,
        total: lowres + selection + hrsel + hrenc,
    }
}

/// Which stage needs the most working memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The low-res graph.
    Lowres,
    /// The high-res selection graph.
    Hrsel,
    /// The high-res graph.
    Hrenc,
}

impl Stage {
    /// The graph's name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Lowres => "lowres",
            Stage::Hrsel => "hrsel",
            Stage::Hrenc => "hrenc",
        }
    }
}

/// Estimated memory of one model with one encoder, in bytes. An estimate of what the computation
/// itself needs, in fp32 (the graphs compute in fp32 whatever the storage precision):
///
/// - `weights`: `weights.bin` (every initializer once), doubled for fp16 packages;
/// - `tables`: `tables.safetensors` converted to f32 (position rows of every high-res patch, prompts);
/// - `kv_cache`: `L x 2 x N x C` floats;
/// - `activations`: the live tensors of the largest stage (inputs, qkv, the attention scores of every
///   head, the MLP hidden layer, the block's input and output; for `hrsel` the 1512 px plane and the
///   ConvNeXt tensors);
/// - `output`: the encoder's features `[N + steps K, C]` and the per-step high-res features.
///
/// Backends hold more: tract keeps the trunk's weights once per graph that uses it (lowres and hrenc)
/// and allocates temporaries per run; the SO400M package at K = 2560 measured a 7.75 GB peak RSS with
/// tract where this estimate gives about 3.1 GB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MemoryEstimate {
    /// Graph weights in fp32.
    pub weights: u64,
    /// Glue tables in f32.
    pub tables: u64,
    /// The low-res KV cache.
    pub kv_cache: u64,
    /// Working memory of the largest stage.
    pub activations: u64,
    /// The stage that needs it.
    pub largest_stage: Stage,
    /// The encoder's output buffers.
    pub output: u64,
    /// Sum of the above.
    pub total: u64,
}

/// Bytes of `n` f32 values.
fn f32s(n: f64) -> f64 {
    4.0 * n
}

/// Estimate the memory of `manifest`'s model at `budget` tokens per step and `steps` steps.
pub fn memory_estimate(manifest: &Manifest, budget: usize, steps: usize) -> MemoryEstimate {
    let d = Dims::from_manifest(manifest);
    let steps = steps.max(1) as f64;
    let widen = if manifest.model.precision == "fp16" {
        2.0
    } else {
        1.0
    };
    let file_bytes = |name: &str| manifest.files.get(name).map(|e| e.bytes as f64);
    let weights = file_bytes(&manifest.weights.file)
        .map(|b| b * widen)
        .unwrap_or(f32s(manifest.model.parameters as f64));
    let tables = file_bytes(&manifest.tables.file).unwrap_or(0.0) * widen;
    let (n, c, m, h) = (
        d.lowres_tokens as f64,
        d.width as f64,
        d.mlp_hidden as f64,
        d.heads as f64,
    );
    let k = budget as f64;
    let kv_cache = f32s(d.depth as f64 * 2.0 * n * c);
    let lowres_in = 3.0 * (d.lowres_size * d.lowres_size) as f64;
    let lowres = f32s(
        lowres_in
            + n * c * (d.selection_layers as f64 + 2.0) // kept hidden states, block input and output
            + n * 3.0 * c // qkv
            + h * n * n // attention scores
            + n * m // MLP hidden
            + n * (d.selection_layers as f64 * c) // selection MLP hidden
            + n * c, // sel_feat
    );
    let (g2, hh) = ((d.hrsel_grid * d.hrsel_grid) as f64, d.hrsel_hidden as f64);
    let hrsel = f32s(
        3.0 * (d.hrsel_input * d.hrsel_input) as f64
            + g2 * hh * 3.0 // block input, depthwise output, residual
            + g2 * hh * HRSEL_MLP_RATIO as f64
            + g2 * d.hrsel_dim as f64,
    );
    let hrenc = f32s(
        k * d.patch_values() // patches
            + k * c * 3.0 // positions, block input and output
            + k * 3.0 * c // qkv
            + 2.0 * (n + k) * c // keys and values joined with the cache
            + h * k * (n + k) // attention scores
            + k * m, // MLP hidden
    );
    let (activations, largest_stage) = [
        (lowres, Stage::Lowres),
        (hrsel, Stage::Hrsel),
        (hrenc, Stage::Hrenc),
    ]
    .into_iter()
    .fold(
        (0.0, Stage::Lowres),
        |best, x| {
            if x.0 > best.0 { x } else { best }
        },
    );
    let output = f32s((n + 2.0 * steps * k) * c);
    let total = weights + tables + kv_cache + activations + output;
    MemoryEstimate {
        weights: weights as u64,
        tables: tables as u64,
        kv_cache: kv_cache as u64,
        activations: activations as u64,
        largest_stage,
        output: output as u64,
        total: total as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PS3-4K with the SO400M SigLIP trunk (the public PS3-4K-SigLIP2 checkpoint's sizes).
    fn so400m() -> Dims {
        Dims {
            patch: 14,
            lowres_tokens: 729,
            lowres_size: 378,
            width: 1152,
            depth: 27,
            heads: 16,
            mlp_hidden: 4304,
            selection_layers: 4,
            hrsel_input: 1512,
            hrsel_grid: 54,
            hrsel_hidden: 512,
            hrsel_dim: 512,
        }
    }

    fn close(actual: f64, expected: f64, rel: f64) -> bool {
        ((actual - expected) / expected).abs() <= rel
    }

    #[test]
    fn so400m_matches_the_measured_split_within_a_few_percent() {
        // ../shared/ps3/PERF-NOTES.md: one 2560-token 4K frame is about 3.9 TFLOP (low-res 0.67,
        // high-res 3.15); 1024 tokens about 1.8; 256 about 1.0.
        let d = so400m();
        let f = frame_flops(&d, 2560, 1);
        assert!(close(f.lowres, 0.67e12, 0.02), "lowres {}", f.lowres);
        assert!(close(f.hrenc, 3.15e12, 0.02), "hrenc {}", f.hrenc);
        assert!(close(f.total, 3.9e12, 0.02), "total {}", f.total);
        assert!(close(frame_flops(&d, 1024, 1).total, 1.8e12, 0.03));
        assert!(close(frame_flops(&d, 256, 1).total, 1.0e12, 0.05));
        // The small stages: fc1 4608x4608 and fc2's first 1152 outputs on 729 tokens; the
        // ShallowConvNet on 54x54.
        assert!(
            close(f.selection, 38.70e9, 0.001),
            "selection {}",
            f.selection
        );
        assert!(close(f.hrsel, 45.66e9, 0.001), "hrsel {}", f.hrsel);
    }

    #[test]
    fn tiny_model_by_hand() {
        // ps3-tiny-4k: C 32, L 4, M 128. One low-res block: qkv 6*729*32^2 = 4,478,976, proj
        // 2*729*32^2 = 1,492,992, attention 4*729^2*32 = 68,024,448, MLP 4*729*32*128 = 11,943,936
        // -> 85,940,352; four of them 343,761,408; patch embed 2*729*588*32 = 27,433,728.
        let text = include_str!("../models/ps3-tiny-4k/manifest.json");
        let (m, _) = Manifest::parse(text).expect("the tiny manifest parses");
        let d = Dims::from_manifest(&m);
        assert_eq!(
            (d.width, d.depth, d.mlp_hidden, d.lowres_tokens),
            (32, 4, 128, 729)
        );
        assert_eq!(block_flops(&d, 729, 729), 85_940_352.0);
        assert_eq!(lowres_flops(&d), 371_195_136.0);
        // One high-res block at K = 2: qkv 6*2*1024, attention 4*2*731*32, proj 2*2*1024, MLP
        // 4*2*32*128 = 12,288 + 187,136 + 4,096 + 32,768.
        assert_eq!(block_flops(&d, 2, 731), 236_288.0);
        // ShallowConvNet, 32 wide, g = 54: stem 2*2916*2352*32, per block 2*2916*49*32 +
        // 2*2916*32*128*2, out 2*2916*32*32.
        let g2 = 2916.0;
        let expected = 2.0 * g2 * 2352.0 * 32.0
            + 3.0 * (2.0 * g2 * 49.0 * 32.0 + 4.0 * g2 * 32.0 * 128.0)
            + 2.0 * g2 * 32.0 * 32.0;
        assert_eq!(hrsel_flops(&d), expected);
    }

    #[test]
    fn steps_repeat_only_the_high_res_stage() {
        let d = so400m();
        let one = frame_flops(&d, 1024, 1);
        let three = frame_flops(&d, 1024, 3);
        assert_eq!(three.hrenc, 3.0 * one.hrenc_step);
        assert_eq!(three.lowres, one.lowres);
        assert!((three.total - one.total - 2.0 * one.hrenc_step).abs() < 1.0);
        assert!(frame_flops(&d, 2048, 1).hrenc > 2.0 * one.hrenc);
        assert_eq!(frame_flops(&d, 1024, 0), one);
    }

    #[test]
    fn memory_estimate_of_the_tiny_package() {
        let text = include_str!("../models/ps3-tiny-4k/manifest.json");
        let (m, _) = Manifest::parse(text).expect("the tiny manifest parses");
        let e = memory_estimate(&m, 2560, 1);
        assert_eq!(e.weights, m.files["weights.bin"].bytes);
        assert_eq!(e.tables, m.files["tables.safetensors"].bytes);
        assert_eq!(e.kv_cache, 4 * 4 * 2 * 729 * 32);
        // At K = 2560 the attention scores (2 heads x 2560 x 3289 floats, 67 MB) make the high-res
        // stage the largest; at K = 64 the 1512 px plane of the selection branch (27 MB) is.
        assert_eq!(e.largest_stage, Stage::Hrenc);
        assert!(e.activations >= 4 * 2 * 2560 * 3289);
        assert_eq!(
            e.total,
            e.weights + e.tables + e.kv_cache + e.activations + e.output
        );
        let small = memory_estimate(&m, 64, 1);
        assert_eq!(small.largest_stage, Stage::Hrsel);
        assert!(small.activations >= 4 * 3 * 1512 * 1512);
        assert!(memory_estimate(&m, 2560, 2).output > e.output);
    }

    #[test]
    fn memory_estimate_of_so400m_at_k2560() {
        // The SO400M package: 1.79 GB of unique weights; tables hold 87,480 position rows x 1152.
        let text = include_str!("../models/ps3-tiny-4k/manifest.json");
        let (mut m, _) = Manifest::parse(text).expect("the tiny manifest parses");
        let d = so400m();
        m.model.width = d.width;
        m.model.depth = d.depth;
        m.model.heads = d.heads;
        m.model.head_dim = d.width / d.heads;
        m.model.mlp_hidden = d.mlp_hidden;
        m.model.hrsel_hidden = d.hrsel_hidden;
        m.model.hrsel_dim = d.hrsel_dim;
        if let Some(w) = m.files.get_mut("weights.bin") {
            w.bytes = 1_790_000_000;
        }
        if let Some(t) = m.files.get_mut("tables.safetensors") {
            t.bytes = 87_480 * 1152 * 4;
        }
        let e = memory_estimate(&m, 2560, 1);
        assert_eq!(e.largest_stage, Stage::Hrenc);
        assert_eq!(e.kv_cache, 27 * 2 * 729 * 1152 * 4);
        // The scores of 16 heads, 2560 queries x 3289 keys: 539 MB.
        assert!(e.activations > 16 * 2560 * 3289 * 4);
        assert!(close(e.total as f64, 3.1e9, 0.03), "total {}", e.total);
    }
}
