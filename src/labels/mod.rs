//! Reading road signs: region embeddings, a label bank, and top-down prompts (docs/labels.md).
//!
//! - **Region embeddings**: PS3's attention-pool (MAP) head over the high-res tokens of one region, with
//!   the key mask PS3 uses for local captions (`forward_high_res(..., pool_gt_token_only=True)`): the
//!   trunk's final norm, then the pool head attending only to the tokens whose footprint overlaps the
//!   region (all tokens when none does). The package's `pool` graph runs through the backend.
//! - **Label bank**: labels encoded offline by the checkpoint's own text tower and tokenizer, stored
//!   in the package with SigLIP's logit scale t and bias b; a region's score for a label is
//!   `sigmoid(t * cos(region, label) + b)`. No text model or tokenizer is needed at run time.
//! - **Top-down prompts**: a prompt `[C]` replaces PS3's prior prompt in selection, as `prompt=`
//!   does: a bank label's prompt, C floats computed offline, or free text encoded by the package's
//!   text tower (`text_model(tokenizer(text)).prompt`, as PS3's README shows).

mod bank;
mod regions;
mod text;

use std::sync::Arc;

pub use bank::{LabelBank, LabelScore};
pub(crate) use regions::RegionLabeler;
pub use text::{TextEmbedding, clean};

use crate::error::{Error, Result};
use crate::geometry::FrameBox;
use crate::package::{OptionalGraph, Package};
use text::TextAssets;

/// What to label after an encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelOptions {
    /// Most regions to label, best first (0: the pool graph's region count R, 16 by default).
    pub max_regions: usize,
    /// Labels kept per region, best first.
    pub top_k: usize,
    /// Skip regions with fewer selected patches than this.
    pub min_patches: u32,
}

impl Default for LabelOptions {
    fn default() -> Self {
        LabelOptions {
            max_regions: 0,
            top_k: 3,
            min_patches: 1,
        }
    }
}

/// One labelled region.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RegionLabel {
    /// The region in frame pixels.
    #[serde(rename = "box")]
    pub bbox: FrameBox,
    /// The region's scale in pixels (756, 1512, 3780); 0 for a box given by the caller.
    pub scale: u32,
    /// The region's selection score (0 for a box given by the caller).
    pub region_score: f32,
    /// High-res tokens pooled (overlapping the box); 0 means none did, and the embedding pools all
    /// of them, as PS3 does.
    pub tokens: u32,
    /// The region embedding `[C]` (PS3's pooled output, not normalized).
    #[serde(skip)]
    pub embedding: Vec<f32>,
    /// The best labels of the bank, best first (empty without a bank).
    pub labels: Vec<LabelScore>,
}

/// A model's label parts: the bank, the pool head's size, the text tower (each optional).
#[derive(Debug, Default)]
pub struct ModelLabels {
    bank: Option<Arc<LabelBank>>,
    max_regions: Option<usize>,
    text: Option<TextAssets>,
}

impl ModelLabels {
    /// Read the optional parts of `package` (cheap: the text tower is built on first use).
    pub(crate) fn load(package: &Package) -> Result<ModelLabels> {
        let m = package.manifest();
        let bank = match &m.labels {
            Some(spec) => {
                let bank = LabelBank::parse(
                    package.file(&spec.file)?,
                    package.file(&spec.embeddings)?,
                    spec.count,
                    spec.dim,
                    m.model.width,
                )
                .map_err(|(json, reason)| {
                    let file = if json { &spec.file } else { &spec.embeddings };
                    Error::package(package.origin(), file, reason)
                })?;
                Some(Arc::new(bank))
            }
            None => None,
        };
        let max_regions = package
            .optional_graph_spec(OptionalGraph::Pool)
            .and_then(|g| g.outputs.first())
            .and_then(|o| match o.shape.first() {
                Some(crate::package::manifest::Dim::Fixed(r)) => Some(*r),
                _ => None,
            });
        let text = match &m.text {
            Some(spec) => Some(TextAssets::new(package, spec)?),
            None => None,
        };
        Ok(ModelLabels {
            bank,
            max_regions,
            text,
        })
    }

    /// The label bank, if the package has one.
    pub fn bank(&self) -> Option<&LabelBank> {
        self.bank.as_deref()
    }

    /// Regions per pool run R, if the package has a region pool head.
    pub fn max_regions(&self) -> Option<usize> {
        self.max_regions
    }

    /// Whether the package carries the text tower (free-text prompts).
    pub fn has_text_tower(&self) -> bool {
        self.text.is_some()
    }

    fn text(&self, origin: &str) -> Result<&TextAssets> {
        self.text.as_ref().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "model {origin}: the package has no text tower (graphs.text + tokenizer), so free-text prompts cannot be encoded; use a bank label or C floats, or re-export with tools/export/ps3_export.py --text-tower"
            ))
        })
    }

    /// PS3's token ids for `text` (cleaned, padded and truncated to the context length).
    pub fn tokenize(&self, origin: &str, text: &str) -> Result<Vec<i64>> {
        self.text(origin)?.tokenize(text)
    }

    /// Encode `text` with the package's text tower (built on the first call, then reused).
    pub fn encode_text(&self, origin: &str, text: &str) -> Result<TextEmbedding> {
        self.text(origin)?.encode(text)
    }

    /// The selection prompt `[C]` of the bank label spelled exactly `label`.
    pub fn label_prompt(&self, origin: &str, label: &str) -> Result<&[f32]> {
        let bank = self.bank().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "model {origin}: the package has no label bank (labels section)"
            ))
        })?;
        let i = bank.index_of(label).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{label:?} is not a label of the bank ({} labels; `ps3rt labels PKG` lists them)",
                bank.len()
            ))
        })?;
        bank.prompt(i)
            .ok_or_else(|| Error::InvalidArgument(format!("label {i} has no prompt")))
    }
}
