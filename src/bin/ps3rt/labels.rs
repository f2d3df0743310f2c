//! `ps3rt labels [PKG]`: what a package offers for region labels and top-down prompts (the bank, the
//! pool head, the text tower), and the text tower's view of a text (`--text`).

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use crate::{Failure, Format, run, ui};

/// Arguments of `ps3rt labels`.
#[derive(Args, Debug)]
pub struct LabelsArgs {
    /// Model package directory (default: the embedded tiny package).
    pub package: Option<PathBuf>,
    /// Encode this text with the package's text tower: token ids, and the bank labels closest to it.
    #[arg(long, value_name = "TEXT")]
    pub text: Option<String>,
    /// Write the text's selection prompt ([C] float32) to this .npy (for `run --prompt-npy`, or a C
    /// program's `ps3rt_encoder_set_prompt`).
    #[arg(long, value_name = "PROMPT.npy", requires = "text")]
    pub prompt_out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text, value_name = "FORMAT")]
    pub format: Format,
}

/// `ps3rt labels`.
pub fn run(args: LabelsArgs) -> Result<(), Failure> {
    let model = run::load_model(args.package.as_ref(), "tract", 0)?;
    let labels = model.labels();
    let bank = labels.bank();
    let encoded = match &args.text {
        Some(t) => Some(model.encode_text(t)?),
        None => None,
    };
    if let (Some(e), Some(path)) = (&encoded, &args.prompt_out) {
        crate::report::write_atomic(path, |w| {
            use npyz::WriterBuilder;
            let mut writer = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&[e.prompt.len() as u64])
                .writer(w)
                .begin_nd()?;
            writer.extend(e.prompt.iter().copied())?;
            writer.finish()
        })?;
    }
    // Bank labels closest to the text (cosine of the text embeddings, both from the same tower).
    let nearest: Vec<(String, f32)> = match (&encoded, bank) {
        (Some(e), Some(b)) => {
            let mut scores = Vec::new();
            b.score_into(&e.embedding, 5, &mut scores)
                .map_err(|m| Failure::new(1, m))?;
            scores
                .iter()
                .map(|s| {
                    let cos = (s.logit - b.logit_bias()) / b.logit_scale();
                    (b.label(s.index).unwrap_or("").to_string(), cos)
                })
                .collect()
        }
        _ => Vec::new(),
    };
    let random = model.manifest().source.checkpoint.starts_with("random-");
    match args.format {
        Format::Json => {
            let doc = json!({
                "model": model.manifest().name,
                "origin": model.origin(),
                "random_weights": random,
                "pool_regions": labels.max_regions(),
                "text_tower": labels.has_text_tower(),
                "bank": bank.map(|b| json!({
                    "labels": b.labels(),
                    "logit_scale": b.logit_scale(),
                    "logit_bias": b.logit_bias(),
                    "calibrated": b.calibrated(),
                    "source": b.source(),
                })),
                "text": encoded.as_ref().map(|e| json!({
                    "ids": e.ids,
                    "nearest_labels": nearest.iter().map(|(l, c)| json!({"label": l, "cosine": c})).collect::<Vec<_>>(),
                })),
            });
            let text = serde_json::to_string_pretty(&doc)
                .map_err(|e| Failure::new(1, format!("cannot format the JSON document: {e}")))?;
            ui::out(&format!("{text}\n"));
        }
        Format::Text => {
            use std::fmt::Write as _;
            let mut s = String::new();
            let _ = writeln!(
                s,
                "model    {} from {}",
                model.manifest().name,
                model.origin()
            );
            if random {
                let _ = writeln!(
                    s,
                    "         random weights: labels and prompts run, but their scores are noise"
                );
            }
            let _ = writeln!(
                s,
                "pool     {}",
                match labels.max_regions() {
                    Some(r) => format!("region pool head, {r} regions per run"),
                    None => "none (no region embeddings or labels)".into(),
                }
            );
            let _ = writeln!(
                s,
                "text     {}",
                if labels.has_text_tower() {
                    "text tower + tokenizer (free-text prompts)"
                } else {
                    "none (prompts from the bank or C floats only)"
                }
            );
            match bank {
                Some(b) => {
                    let _ = writeln!(
                        s,
                        "bank     {} labels, score = sigmoid({:.4} * cos + {:.4}){}",
                        b.len(),
                        b.logit_scale(),
                        b.logit_bias(),
                        if b.calibrated() {
                            ", calibrated"
                        } else {
                            ", UNCALIBRATED (no trained scale/bias)"
                        }
                    );
                    let _ = writeln!(s, "         source: {}", b.source());
                    for (i, l) in b.labels().iter().enumerate() {
                        let _ = writeln!(s, "         {i:>3}  {l}");
                    }
                }
                None => {
                    let _ = writeln!(s, "bank     none");
                }
            }
            if let Some(e) = &encoded {
                let n = e.ids.iter().rposition(|&i| i != 0).map_or(0, |p| p + 1);
                let _ = writeln!(
                    s,
                    "text     {:?}: ids {:?}",
                    args.text.as_deref().unwrap_or(""),
                    &e.ids[..n]
                );
                for (l, c) in &nearest {
                    let _ = writeln!(s, "         cos {c:+.3}  {l}");
                }
                if let Some(p) = &args.prompt_out {
                    let _ = writeln!(s, "prompt   {} ([{}] float32)", p.display(), e.prompt.len());
                }
            }
            ui::out(&s);
        }
    }
    Ok(())
}
