//! What `ps3rt run` prints and writes: the JSON document, the features `.npy`, the human summary.

use std::io::Write;
use std::path::Path;

use ps3rt::{Encoder, Error, Output};
use serde_json::{Value, json};

/// The `run` JSON document (a contract: fields are added, never renamed).
pub fn json_document(
    encoder: &Encoder,
    out: &Output,
    input_path: &Path,
    input_kind: &str,
) -> Value {
    let model = encoder.model();
    let g = model.geometry();
    let scales = g.high_scales();
    let selected: Vec<Value> = out
        .selected()
        .iter()
        .map(|t| json!({"scale": scales[t.scale as usize], "row": t.row, "col": t.col}))
        .collect();
    let n = out.prob_grid();
    let prob_map: Vec<Vec<f32>> = out.prob_map().chunks(n).map(|r| r.to_vec()).collect();
    let per_scale = out.selected_per_scale(scales.len());
    let per_scale: serde_json::Map<String, Value> = scales
        .iter()
        .zip(&per_scale)
        .map(|(s, n)| (s.to_string(), json!(n)))
        .collect();
    let (w, h) = out.frame_size();
    json!({
        "ps3rt_version": ps3rt::VERSION,
        "model": {
            "name": model.manifest().name,
            "origin": model.origin(),
            "source_checkpoint": model.manifest().source.checkpoint,
            "backend": model.backend_name(),
        },
        "input": {"path": input_path.display().to_string(), "kind": input_kind, "width": w, "height": h},
        "tokens": out.token_count(),
        "width": out.width(),
        "budget": out.budget(),
        "steps": out.steps(),
        "budget_split": encoder.budget_split(),
        "selected_per_scale": per_scale,
        "selected": selected,
        "prob_map": prob_map,
        "regions": out.regions(),
        "timing_ms": out.timings(),
    })
}

/// The temporary name `path` is written under before the rename into place: `.NAME.tmp-PID` in the
/// same directory (a rename within one file system is atomic).
pub fn temporary_sibling(path: &Path) -> std::path::PathBuf {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    dir.join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Write `bytes` to `path` through a temporary file in the same directory and a rename, so readers
/// never see a half-written file.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), Error> {
    let tmp = temporary_sibling(path);
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::new(file);
        write(&mut w)?;
        w.flush()?;
        w.get_ref().sync_all()?;
        drop(w);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Write features `[N, C]` as float32 `.npy`.
pub fn write_features(path: &Path, out: &Output) -> Result<(), Error> {
    use npyz::WriterBuilder;
    let shape = [out.token_count() as u64, out.width() as u64];
    write_atomic(path, |w| {
        let mut npy = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(w)
            .begin_nd()?;
        npy.extend(out.features().iter().copied())?;
        npy.finish()
    })
}

/// Write the JSON document.
pub fn write_json(path: &Path, doc: &Value) -> Result<(), Error> {
    write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, doc).map_err(std::io::Error::other)?;
        w.write_all(b"\n")
    })
}

/// The short human summary printed when no output file is asked for (and after writing them).
pub fn summary(encoder: &Encoder, out: &Output, input: &str) -> String {
    use std::fmt::Write as _;
    let model = encoder.model();
    let g = model.geometry();
    let scales = g.high_scales();
    let mut s = String::new();
    let m = model.manifest();
    let _ = writeln!(
        s,
        "model    {} ({}) from {}, backend {}",
        m.name,
        m.source.checkpoint,
        model.origin(),
        model.backend_name()
    );
    if m.source.checkpoint.starts_with("random-") {
        let _ = writeln!(
            s,
            "         random weights: the selection shows the pipeline working, not what a trained PS3 would pick"
        );
    }
    let _ = writeln!(s, "input    {input}");
    let split: Vec<String> = scales
        .iter()
        .zip(encoder.budget_split())
        .map(|(sc, n)| format!("{sc}: {n}"))
        .collect();
    let _ = writeln!(
        s,
        "budget   K = {} per step ({}), {} step{} -> {} tokens x {} features",
        out.budget(),
        split.join(", "),
        out.steps(),
        if out.steps() == 1 { "" } else { "s" },
        out.token_count(),
        out.width()
    );
    let _ = writeln!(
        s,
        "selection probability (27x27, darker = more likely to be looked at closely):"
    );
    let shades = [' ', '.', ':', '-', '=', '+', '*', '#', '%', '@'];
    let p = out.prob_map();
    let (lo, hi) = p
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let n = out.prob_grid();
    for row in p.chunks(n) {
        let line: String = row
            .iter()
            .map(|&v| {
                let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
                let c = shades[((t * 9.0).round() as usize).min(9)];
                format!("{c}{c}")
            })
            .collect();
        let _ = writeln!(s, "         |{line}|");
    }
    let _ = writeln!(s, "         p in [{lo:.3}, {hi:.3}]");
    let _ = writeln!(
        s,
        "regions  {} groups of adjacent selected patches; best:",
        out.regions().len()
    );
    for (i, r) in out.regions().iter().take(5).enumerate() {
        let b = r.bbox;
        let _ = writeln!(
            s,
            "         {}. {:>4} px  x {:>6.0} y {:>6.0} w {:>5.0} h {:>5.0}  score {:.3}  {} patch{}",
            i + 1,
            r.scale,
            b.x,
            b.y,
            b.w,
            b.h,
            r.score,
            r.patches,
            if r.patches == 1 { "" } else { "es" }
        );
    }
    let t = out.timings();
    let _ = writeln!(
        s,
        "timing   total {:.1} ms: preprocess {:.1}, lowres {:.1}, hrsel {:.1}, select {:.1}, gather {:.1}, hrenc {:.1}",
        t.total_ms, t.preprocess_ms, t.lowres_ms, t.hrsel_ms, t.select_ms, t.gather_ms, t.hrenc_ms
    );
    s
}

/// The `labels` field of the run JSON: the labelled regions of the encoder's last `label_regions`.
pub fn labels_json(encoder: &Encoder, label_ms: f64) -> Value {
    let model = encoder.model();
    let bank = model.labels().bank();
    let regions: Vec<Value> = encoder
        .region_labels()
        .iter()
        .map(|r| {
            let labels: Vec<Value> = r
                .labels
                .iter()
                .map(|l| {
                    json!({
                        "label": bank.and_then(|b| b.label(l.index)).unwrap_or(""),
                        "index": l.index,
                        "score": l.score,
                        "logit": l.logit,
                    })
                })
                .collect();
            json!({
                "box": r.bbox,
                "scale": r.scale,
                "region_score": r.region_score,
                "tokens": r.tokens,
                "labels": labels,
            })
        })
        .collect();
    json!({
        "calibrated": bank.is_some_and(|b| b.calibrated()),
        "logit_scale": bank.map(|b| b.logit_scale()),
        "logit_bias": bank.map(|b| b.logit_bias()),
        "bank_size": bank.map_or(0, |b| b.len()),
        "random_weights": model.manifest().source.checkpoint.starts_with("random-"),
        "label_ms": label_ms,
        "regions": regions,
    })
}

/// The human lines of the last labeling: one per region, best labels first.
pub fn labels_text(encoder: &Encoder, label_ms: f64) -> String {
    use std::fmt::Write as _;
    let model = encoder.model();
    let bank = model.labels().bank();
    let mut s = String::new();
    let results = encoder.region_labels();
    let _ = writeln!(
        s,
        "labels   {} region{} in {label_ms:.1} ms{}",
        results.len(),
        if results.len() == 1 { "" } else { "s" },
        match bank {
            Some(b) if b.calibrated() => format!(", {} labels, calibrated SigLIP scores", b.len()),
            Some(b) => format!(", {} labels, uncalibrated scores", b.len()),
            None => ", no label bank (embeddings only)".into(),
        }
    );
    if model.manifest().source.checkpoint.starts_with("random-") {
        let _ = writeln!(
            s,
            "         random weights: these labels are noise, not a reading of the signs"
        );
    }
    for (i, r) in results.iter().enumerate() {
        let b = r.bbox;
        let names: Vec<String> = r
            .labels
            .iter()
            .map(|l| {
                format!(
                    "{} ({:.3})",
                    bank.and_then(|bk| bk.label(l.index)).unwrap_or("?"),
                    l.score
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "         {}. [{:.0} {:.0} {:.0} {:.0}] {} tokens: {}",
            i + 1,
            b.x,
            b.y,
            b.w,
            b.h,
            r.tokens,
            names.join(", ")
        );
    }
    s
}
