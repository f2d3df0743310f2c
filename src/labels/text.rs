//! Free-text prompts: PS3's text cleaning, the package's tokenizer (the `tokenizers` crate, pure
//! Rust) and the text tower graph on tract, built on first use.

use std::sync::{Arc, OnceLock};

use tract_onnx::prelude::*;

use crate::error::{Error, Result};
use crate::package::manifest::TextSpec;
use crate::package::{OptionalGraph, Package};

/// A text encoded by the package's text tower.
#[derive(Debug, Clone, PartialEq)]
pub struct TextEmbedding {
    /// Token ids `[L]` as PS3's tokenizer gives them (cleaned, padded and truncated to L).
    pub ids: Vec<i64>,
    /// The text embedding `[D]` in the joint space (`pooled_output`; compare with region embeddings).
    pub embedding: Vec<f32>,
    /// The selection prompt `[C]` (`prompt`: what PS3's `prompt=` takes for top-down selection).
    pub prompt: Vec<f32>,
}

/// What encoding text needs, kept from the package (the text graph's files only).
pub(crate) struct TextAssets {
    spec: TextSpec,
    package: Package,
    tower: OnceLock<std::result::Result<Arc<Tower>, String>>,
}

struct Tower {
    tokenizer: tokenizers::Tokenizer,
    plan: Arc<TypedRunnableModel>,
}

impl std::fmt::Debug for TextAssets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextAssets")
            .field("spec", &self.spec)
            .finish()
    }
}

fn text_error(message: impl std::fmt::Display) -> Error {
    Error::Backend {
        backend: "tract",
        stage: "text".into(),
        message: message.to_string(),
    }
}

impl TextAssets {
    /// Keep the text graph, its weights and the tokenizer of `package` (nothing else stays alive).
    pub fn new(package: &Package, spec: &TextSpec) -> Result<TextAssets> {
        let graph = package
            .optional_graph_spec(OptionalGraph::Text)
            .ok_or_else(|| text_error("no graphs.text"))?;
        let mut keep = vec![graph.file.as_str(), spec.tokenizer.as_str()];
        keep.extend(graph.weights.as_deref());
        Ok(TextAssets {
            spec: spec.clone(),
            package: package.subset(&keep),
            tower: OnceLock::new(),
        })
    }

    fn tower(&self) -> Result<Arc<Tower>> {
        self.tower
            .get_or_init(|| self.build().map(Arc::new).map_err(|e| e.to_string()))
            .clone()
            .map_err(text_error)
    }

    fn build(&self) -> Result<Tower> {
        let origin = self.package.origin().to_string();
        let tokenizer = tokenizers::Tokenizer::from_bytes(self.package.file(&self.spec.tokenizer)?)
            .map_err(|e| {
                Error::package(
                    &origin,
                    &self.spec.tokenizer,
                    format!("not a tokenizer the tokenizers crate reads: {e}"),
                )
            })?;
        let proto = self.package.optional_graph_proto(OptionalGraph::Text)?;
        let mut model = tract_onnx::onnx()
            .model_for_proto_model(&proto)
            .map_err(text_error)?;
        drop(proto);
        model
            .set_input_fact(0, i64::fact([1, self.spec.context_length]).into())
            .map_err(text_error)?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(text_error)?;
        Ok(Tower { tokenizer, plan })
    }

    /// PS3's token ids for `text`: cleaned as the checkpoint's tokenizer config says, then tokenized
    /// with padding and truncation to L.
    pub fn tokenize(&self, text: &str) -> Result<Vec<i64>> {
        let tower = self.tower()?;
        self.tokenize_with(&tower, text)
    }

    fn tokenize_with(&self, tower: &Tower, text: &str) -> Result<Vec<i64>> {
        let cleaned = clean(&self.spec.clean, text);
        let enc = tower
            .tokenizer
            .encode(cleaned.as_str(), true)
            .map_err(|e| text_error(format!("tokenizing {text:?}: {e}")))?;
        let ids: Vec<i64> = enc.get_ids().iter().map(|&i| i64::from(i)).collect();
        if ids.len() != self.spec.context_length {
            return Err(Error::package(
                self.package.origin(),
                &self.spec.tokenizer,
                format!(
                    "gives {} ids for {text:?}, not the context length {} (padding/truncation missing)",
                    ids.len(),
                    self.spec.context_length
                ),
            ));
        }
        Ok(ids)
    }

    /// Encode `text` with the text tower (built on the first call).
    pub fn encode(&self, text: &str) -> Result<TextEmbedding> {
        if text.trim().is_empty() {
            return Err(Error::InvalidArgument("the prompt text is empty".into()));
        }
        let tower = self.tower()?;
        let ids = self.tokenize_with(&tower, text)?;
        let input = Tensor::from_shape(&[1, ids.len()], &ids).map_err(text_error)?;
        let out = tower.plan.run(tvec![input.into()]).map_err(text_error)?;
        let read = |i: usize| -> Result<Vec<f32>> {
            let t = out
                .get(i)
                .ok_or_else(|| text_error(format!("the text graph has no output {i}")))?;
            let v = t
                .try_as_plain_ram()
                .and_then(|view| view.as_slice::<f32>().map(|s| s.to_vec()))
                .map_err(text_error)?;
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::NonFinite(format!("text embedding of {text:?}")));
            }
            Ok(v)
        };
        Ok(TextEmbedding {
            ids,
            embedding: read(0)?,
            prompt: read(1)?,
        })
    }
}

/// PS3's text cleaning (`tokenization_ps3.get_clean_fn`) without ftfy's mojibake repair and HTML
/// unescaping: curly quotes become straight ones (as ftfy does), then
/// - "whitespace": runs of whitespace become one space, ends trimmed;
/// - "lower": the same, lower-cased;
/// - "canonicalize": `_` becomes a space, ASCII punctuation is removed, lower-cased, whitespace
///   collapsed and trimmed (big_vision's canonicalization).
pub fn clean(mode: &str, text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}' => '\'',
            '\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{201f}' => '"',
            c => c,
        })
        .collect();
    let collapse = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    match mode {
        "canonicalize" => {
            let t: String = text
                .trim()
                .chars()
                .map(|c| if c == '_' { ' ' } else { c })
                .filter(|c| !c.is_ascii_punctuation())
                .collect();
            collapse(&t.to_lowercase())
        }
        "lower" => collapse(text.trim()).to_lowercase(),
        _ => collapse(text.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn cleaning_follows_ps3() {
        assert_eq!(
            clean("canonicalize", "  Speed_Limit: 60!! "),
            "speed limit 60"
        );
        assert_eq!(clean("canonicalize", "don\u{2019}t  enter"), "dont enter");
        assert_eq!(clean("lower", " No\tEntry "), "no entry");
        assert_eq!(clean("whitespace", " No\n Entry "), "No Entry");
    }
}
