//! The label bank: labels encoded offline by the checkpoint's own text tower, scored against region
//! embeddings with SigLIP's calibrated sigmoid.

use std::ffi::CString;

use safetensors::SafeTensors;
use serde::Deserialize;

use crate::package::tables::read_f32;

/// One label's score for one region embedding.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LabelScore {
    /// Index into the bank ([`LabelBank::label`]).
    pub index: usize,
    /// `sigmoid(logit)`: SigLIP's probability that the label describes the region (calibrated when
    /// [`LabelBank::calibrated`]).
    pub score: f32,
    /// `logit_scale * cos(region, label) + logit_bias`.
    pub logit: f32,
}

/// Labels with their text embeddings `[M, D]` (unit length) and selection prompts `[M, C]`.
#[derive(Debug, Clone)]
pub struct LabelBank {
    labels: Vec<String>,
    c_labels: Vec<CString>,
    embeddings: Vec<f32>,
    prompts: Vec<f32>,
    dim: usize,
    scale: f32,
    bias: f32,
    calibrated: bool,
    source: String,
}

#[derive(Deserialize)]
struct BankJson {
    labels: Vec<String>,
    logit_scale: f64,
    logit_bias: f64,
    #[serde(default = "yes")]
    calibrated: bool,
    #[serde(default)]
    source: String,
}

fn yes() -> bool {
    true
}

impl LabelBank {
    /// Parse `labels.json` and `labels.safetensors`; on failure, the reason (the caller names the file).
    pub(crate) fn parse(
        json: &[u8],
        tensors: &[u8],
        count: usize,
        dim: usize,
        prompt_dim: usize,
    ) -> Result<LabelBank, (bool, String)> {
        let j: BankJson =
            serde_json::from_slice(json).map_err(|e| (true, format!("not a label bank: {e}")))?;
        if j.labels.len() != count {
            return Err((
                true,
                format!("{} labels, the manifest says {count}", j.labels.len()),
            ));
        }
        let mut c_labels = Vec::with_capacity(count);
        for (i, l) in j.labels.iter().enumerate() {
            if l.is_empty() || l.len() > 255 {
                return Err((true, format!("label {i} is empty or longer than 255 bytes")));
            }
            c_labels.push(
                CString::new(l.as_str())
                    .map_err(|_| (true, format!("label {i} contains a NUL byte")))?,
            );
        }
        let (scale, bias) = (j.logit_scale as f32, j.logit_bias as f32);
        if !(scale.is_finite() && scale > 0.0 && bias.is_finite()) {
            return Err((
                true,
                format!(
                    "logit_scale {scale} must be finite and positive, logit_bias {bias} finite"
                ),
            ));
        }
        let st = SafeTensors::deserialize(tensors)
            .map_err(|e| (false, format!("not a valid safetensors file: {e}")))?;
        let mut embeddings = read_f32(&st, "embeddings", &[count, dim]).map_err(|e| (false, e))?;
        let prompts = read_f32(&st, "prompts", &[count, prompt_dim]).map_err(|e| (false, e))?;
        for (i, row) in embeddings.chunks_mut(dim.max(1)).enumerate() {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm <= 0.0 {
                return Err((false, format!("embedding of label {i} is zero")));
            }
            row.iter_mut().for_each(|v| *v /= norm);
        }
        Ok(LabelBank {
            labels: j.labels,
            c_labels,
            embeddings,
            prompts,
            dim,
            scale,
            bias,
            calibrated: j.calibrated,
            source: j.source,
        })
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the bank is empty (never, for a loaded package).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Every label, in bank order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Label `index`.
    pub fn label(&self, index: usize) -> Option<&str> {
        self.labels.get(index).map(String::as_str)
    }

    /// Label `index` as a C string (for the C ABI; lives as long as the bank).
    pub(crate) fn c_label(&self, index: usize) -> Option<&CString> {
        self.c_labels.get(index)
    }

    /// The index of the label spelled exactly `label`.
    pub fn index_of(&self, label: &str) -> Option<usize> {
        self.labels.iter().position(|l| l == label)
    }

    /// Unit-length text embedding `[D]` of label `index`.
    pub fn embedding(&self, index: usize) -> Option<&[f32]> {
        (index < self.len()).then(|| &self.embeddings[index * self.dim..(index + 1) * self.dim])
    }

    /// Selection prompt `[C]` of label `index` (the text tower's `prompt`, what PS3's `prompt=` takes).
    pub fn prompt(&self, index: usize) -> Option<&[f32]> {
        let c = self.prompts.len() / self.len().max(1);
        (index < self.len()).then(|| &self.prompts[index * c..(index + 1) * c])
    }

    /// Embedding width D.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// SigLIP's logit scale t (linear): `score = sigmoid(t * cos + b)`.
    pub fn logit_scale(&self) -> f32 {
        self.scale
    }

    /// SigLIP's logit bias b.
    pub fn logit_bias(&self) -> f32 {
        self.bias
    }

    /// Whether t and b are the checkpoint's trained values (scores are then calibrated probabilities).
    pub fn calibrated(&self) -> bool {
        self.calibrated
    }

    /// Where the bank came from (checkpoint and encoder).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Score `embedding` (`[D]`, any length) against every label and keep the `top_k` best in `out`
    /// (score descending, then bank order). Errors on a width mismatch or a zero embedding.
    pub fn score_into(
        &self,
        embedding: &[f32],
        top_k: usize,
        out: &mut Vec<LabelScore>,
    ) -> Result<(), String> {
        out.clear();
        if embedding.len() != self.dim {
            return Err(format!(
                "embedding has {} values, the bank's width is {}",
                embedding.len(),
                self.dim
            ));
        }
        let norm = embedding.iter().map(|v| v * v).sum::<f32>().sqrt();
        if !(norm.is_finite() && norm > 0.0) {
            return Err("embedding is zero or not finite".into());
        }
        for (index, row) in self.embeddings.chunks(self.dim).enumerate() {
            let cos = row.iter().zip(embedding).map(|(a, b)| a * b).sum::<f32>() / norm;
            let logit = self.scale * cos + self.bias;
            let score = 1.0 / (1.0 + (-logit).exp());
            out.push(LabelScore {
                index,
                score,
                logit,
            });
        }
        out.sort_unstable_by(|a, b| b.logit.total_cmp(&a.logit).then(a.index.cmp(&b.index)));
        out.truncate(top_k);
        Ok(())
    }
}
