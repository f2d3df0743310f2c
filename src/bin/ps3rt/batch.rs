//! `ps3rt run` on a folder or glob: every image and tensor through one encoder, a progress bar, JSON
//! Lines, overlays and features into folders, and a summary table.
//!
//! A file that fails is reported on stderr, recorded in the JSON Lines with its exit code, counted,
//! and the run goes on (`--fail-fast` stops at the first one). The run exits 0 when every file
//! succeeded; otherwise with the code of its most serious failure, in the order 5 (backend), 1
//! (unexpected, e.g. an output could not be written), 4 (bad input).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ps3rt::{Encoder, Error, Timings};
use serde_json::json;

use crate::inputs::{self, LoadedInput};
use crate::run::{self, RunArgs};
use crate::{EXIT_BACKEND, EXIT_INPUT, EXIT_USAGE, Failure, Format, report, ui};

/// What one successfully encoded file gave.
struct Done {
    timings: Timings,
}

/// Where the outputs of one input go, relative to the output folders: the input's path relative to
/// the folder or the pattern's literal prefix, extension replaced (`a/b.jpg` -> `a/b`), or kept when
/// two inputs would otherwise collide (`a/b.jpg` and `a/b.png` -> `a/b.jpg`, `a/b.png`).
fn output_stems(files: &[PathBuf], base: &Path) -> Vec<PathBuf> {
    let rel: Vec<PathBuf> = files
        .iter()
        .map(|f| match f.strip_prefix(base) {
            Ok(r) if !r.as_os_str().is_empty() => r.to_path_buf(),
            _ => f
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| f.clone()),
        })
        .collect();
    let stems: Vec<PathBuf> = rel.iter().map(|r| r.with_extension("")).collect();
    let mut count: HashMap<&Path, usize> = HashMap::new();
    for s in &stems {
        *count.entry(s.as_path()).or_default() += 1;
    }
    stems
        .iter()
        .zip(&rel)
        .map(|(s, r)| {
            if count.get(s.as_path()).copied().unwrap_or(0) > 1 {
                r.clone()
            } else {
                s.clone()
            }
        })
        .collect()
}

/// `dir/stem.ext`, creating the folders in between.
fn output_path(dir: &Path, stem: &Path, ext: &str) -> Result<PathBuf, Error> {
    let mut name = stem.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::Io {
            path: parent.to_path_buf(),
            source: e,
        })?;
    }
    Ok(path)
}

/// How serious a failure's exit code is (lower is more serious).
fn severity(code: u8) -> u8 {
    match code {
        EXIT_BACKEND => 0,
        EXIT_INPUT => 2,
        _ => 1,
    }
}

/// Run `args` on `files` (already sorted); `base` is the folder or the pattern's literal prefix,
/// `skipped` the number of other files that were left out.
pub fn run(
    args: &RunArgs,
    all_files: &[PathBuf],
    base: &Path,
    skipped: usize,
) -> Result<(), Failure> {
    if args.selection.is_some() {
        return Err(Failure::new(
            EXIT_USAGE,
            "--selection gives the selection of one frame; use it with a single --input file",
        ));
    }
    let mut output_dirs = Vec::new();
    for dir in [&args.overlay, &args.features].into_iter().flatten() {
        std::fs::create_dir_all(dir).map_err(|e| {
            Failure::from(Error::Io {
                path: dir.clone(),
                source: e,
            })
        })?;
        output_dirs.push(std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone()));
    }
    // Outputs of an earlier run inside the input folder are not inputs.
    let kept: Vec<PathBuf> = all_files
        .iter()
        .filter(|f| {
            let f = std::fs::canonicalize(f).unwrap_or_else(|_| f.to_path_buf());
            !output_dirs.iter().any(|d| f.starts_with(d))
        })
        .cloned()
        .collect();
    if kept.len() < all_files.len() {
        log::info!(
            "left out {} files inside the output folders",
            all_files.len() - kept.len()
        );
    }
    let skipped = skipped + all_files.len() - kept.len();
    let files: &[PathBuf] = &kept;
    if files.is_empty() {
        return Err(Failure::new(
            EXIT_INPUT,
            format!(
                "{}: no images or tensors found (looked for {}{}{})",
                args.input.display(),
                inputs::BATCH_EXTENSIONS.join(", "),
                if skipped > 0 {
                    format!(
                        "; {skipped} other file{} skipped",
                        if skipped == 1 { "" } else { "s" }
                    )
                } else {
                    String::new()
                },
                if args.input.is_dir() && !args.recursive {
                    "; --recursive includes subfolders"
                } else {
                    ""
                }
            ),
        ));
    }
    let model = run::load_model(args.model.as_ref(), &args.backend, args.threads)?;
    let mut encoder = run::new_encoder(&model, args)?;
    let mut jsonl = match &args.json {
        Some(p) => Some(JsonLines::create(p)?),
        None => None,
    };
    let stems = output_stems(files, base);
    let names: Vec<String> = files
        .iter()
        .zip(&stems)
        .map(|(f, _)| match f.strip_prefix(base) {
            Ok(r) if !r.as_os_str().is_empty() => r.display().to_string(),
            _ => f.display().to_string(),
        })
        .collect();
    let name_width = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .min(48);
    let bar = ui::bar(files.len() as u64);
    let start = Instant::now();
    let mut done: Vec<Done> = Vec::new();
    let mut failed: Vec<(usize, u8, String)> = Vec::new();
    let mut stopped_early = false;

    std::thread::scope(|scope| -> Result<(), Failure> {
        // Decode the next file while the current one is encoded.
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Result<LoadedInput, Error>)>(1);
        scope.spawn(move || {
            for (i, f) in files.iter().enumerate() {
                if tx.send((i, inputs::load(f))).is_err() {
                    break;
                }
            }
        });
        for (i, loaded) in rx {
            let path = &files[i];
            bar.set_message(names[i].clone());
            let result = loaded.map_err(Failure::from).and_then(|input| {
                process(args, &mut encoder, &input, path, &stems[i]).map(|doc| (doc, input))
            });
            match result {
                Ok((doc, input)) => {
                    let out = encoder.output();
                    if let Some(w) = jsonl.as_mut() {
                        w.line(&doc)?;
                    }
                    match args.format {
                        Format::Json => {
                            let line = serde_json::to_string(&doc).map_err(|e| {
                                Failure::new(1, format!("cannot format the JSON document: {e}"))
                            })?;
                            bar.suspend(|| ui::out(&format!("{line}\n")));
                        }
                        Format::Text => {
                            let best = out
                                .regions()
                                .first()
                                .map(|r| format!("best {} px p {:.3}", r.scale, r.score))
                                .unwrap_or_else(|| "no regions".into());
                            let line = format!(
                                "ok    {:<name_width$}  {:<16} {:>4} regions, {best:<22}  {:>9.1} ms",
                                names[i],
                                input.short(),
                                out.regions().len(),
                                out.timings().total_ms,
                            );
                            bar.suspend(|| ui::out(&format!("{line}\n")));
                        }
                    }
                    done.push(Done {
                        timings: *out.timings(),
                    });
                }
                Err(f) => {
                    let message = if f.message.contains(&path.display().to_string()) {
                        f.message.clone()
                    } else {
                        format!("{}: {}", path.display(), f.message)
                    };
                    if let Some(w) = jsonl.as_mut() {
                        let doc = json!({
                            "input": {"path": path.display().to_string()},
                            "error": {"code": f.code, "message": message},
                        });
                        w.line(&doc)?;
                    }
                    bar.suspend(|| {
                        if args.format == Format::Text {
                            ui::out(&format!(
                                "FAIL  {:<name_width$}  exit {}\n",
                                names[i], f.code
                            ));
                        }
                        ui::err(&format!("error: {message}\n"));
                    });
                    failed.push((i, f.code, message));
                    if args.fail_fast {
                        stopped_early = true;
                        bar.inc(1);
                        break;
                    }
                }
            }
            bar.inc(1);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    if let Some(w) = jsonl {
        w.finish()?;
    }
    let table = summary(
        files.len(),
        &done,
        &failed,
        &names,
        skipped,
        stopped_early,
        start.elapsed().as_secs_f64(),
    );
    match args.format {
        Format::Text => ui::out(&table),
        Format::Json => {
            if log::log_enabled!(log::Level::Warn) {
                ui::err(&table);
            }
        }
    }
    if let Some(worst) = failed.iter().map(|f| f.1).min_by_key(|&c| severity(c)) {
        let n = failed.len();
        return Err(Failure::new(
            worst,
            format!(
                "{n} of {} file{} failed{}",
                files.len(),
                if files.len() == 1 { "" } else { "s" },
                if stopped_early {
                    " (stopped at the first failure: --fail-fast)"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(())
}

/// Encode one input and write its overlay and features; returns its JSON document.
fn process(
    args: &RunArgs,
    encoder: &mut Encoder,
    input: &LoadedInput,
    path: &Path,
    stem: &Path,
) -> Result<serde_json::Value, Failure> {
    run::encode(encoder, input)?;
    let out = encoder.output();
    let mut doc = report::json_document(encoder, out, path, input.kind());
    if let Some(dir) = &args.features {
        let npy = output_path(dir, stem, "npy")?;
        report::write_features(&npy, out)?;
        doc["outputs"]["features"] = json!(npy.display().to_string());
    }
    if let Some(dir) = &args.overlay {
        let png = output_path(dir, stem, "png")?;
        run::write_overlay(&args.overlay_options(), encoder, input, path, &png)?;
        doc["outputs"]["overlay"] = json!(png.display().to_string());
    }
    Ok(doc)
}

/// A JSON Lines output: written under a temporary name next to the final one (`.NAME.tmp-PID`,
/// where a long run can be followed: each line is flushed when its file is done) and renamed into
/// place when the run ends, so the final name never holds a half-written file. A run that ends
/// with an error removes the temporary file; one that is killed leaves it, never the final name.
struct JsonLines {
    path: PathBuf,
    tmp: PathBuf,
    w: Option<std::io::BufWriter<std::fs::File>>,
}

impl JsonLines {
    fn create(path: &Path) -> Result<JsonLines, Failure> {
        let tmp = crate::report::temporary_sibling(path);
        let file = std::fs::File::create(&tmp).map_err(|e| Self::io_at(path, e))?;
        Ok(JsonLines {
            path: path.to_path_buf(),
            tmp,
            w: Some(std::io::BufWriter::new(file)),
        })
    }

    fn io_at(path: &Path, e: std::io::Error) -> Failure {
        Failure::from(Error::Io {
            path: path.to_path_buf(),
            source: e,
        })
    }

    /// Append one document as a line and flush it.
    fn line(&mut self, doc: &serde_json::Value) -> Result<(), Failure> {
        let path = &self.path;
        let Some(w) = self.w.as_mut() else {
            return Ok(());
        };
        serde_json::to_writer(&mut *w, doc)
            .map_err(|e| Self::io_at(path, std::io::Error::other(e)))?;
        w.write_all(b"\n").map_err(|e| Self::io_at(path, e))?;
        w.flush().map_err(|e| Self::io_at(path, e))
    }

    /// Flush to disk and rename into place.
    fn finish(mut self) -> Result<(), Failure> {
        let Some(mut w) = self.w.take() else {
            return Ok(());
        };
        let result = w
            .flush()
            .and_then(|()| w.get_ref().sync_all())
            .and_then(|()| {
                drop(w);
                std::fs::rename(&self.tmp, &self.path)
            });
        if let Err(e) = result {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(Self::io_at(&self.path, e));
        }
        Ok(())
    }
}

impl Drop for JsonLines {
    fn drop(&mut self) {
        if self.w.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The summary table printed at the end of a folder or glob run.
fn summary(
    files: usize,
    done: &[Done],
    failed: &[(usize, u8, String)],
    names: &[String],
    skipped: usize,
    stopped_early: bool,
    wall_s: f64,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let processed = done.len() + failed.len();
    let _ = writeln!(
        s,
        "summary  {files} file{}: {} ok, {} failed{}{}",
        if files == 1 { "" } else { "s" },
        done.len(),
        failed.len(),
        if stopped_early {
            format!(", {} not run (--fail-fast)", files - processed)
        } else {
            String::new()
        },
        if skipped > 0 {
            format!(
                "; {skipped} other file{} skipped",
                if skipped == 1 { "" } else { "s" }
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        s,
        "         {wall_s:.2} s wall, {:.2} files/s (reading, encoding and writing)",
        if wall_s > 0.0 {
            processed as f64 / wall_s
        } else {
            0.0
        }
    );
    if !done.is_empty() {
        let _ = writeln!(
            s,
            "latency  {:<12}{:>10}{:>10}{:>10}",
            "ms", "mean", "p50", "p90"
        );
        // The whole encode, then each stage (Timings::stages).
        let names = std::iter::once("total").chain(Timings::default().stages().map(|(n, _)| n));
        for (row, name) in names.enumerate() {
            let ms = |t: &Timings| match row {
                0 => t.total_ms,
                stage => t.stages()[stage - 1].1,
            };
            let mut v: Vec<f64> = done.iter().map(|d| ms(&d.timings)).collect();
            v.sort_by(f64::total_cmp);
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let _ = writeln!(
                s,
                "         {name:<12}{mean:>10.1}{:>10.1}{:>10.1}",
                quantile(&v, 0.5),
                quantile(&v, 0.9)
            );
        }
    }
    if !failed.is_empty() {
        let shown: HashSet<usize> = failed.iter().take(10).map(|f| f.0).collect();
        let _ = writeln!(s, "failed   (exit code, file)");
        for (i, code, _) in failed.iter().filter(|f| shown.contains(&f.0)) {
            let _ = writeln!(s, "         {code}  {}", names[*i]);
        }
        if failed.len() > shown.len() {
            let _ = writeln!(s, "         ... and {} more", failed.len() - shown.len());
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_keep_extensions_only_on_collisions() {
        let files: Vec<PathBuf> = ["d/a.png", "d/a.jpg", "d/b.png", "d/sub/b.png"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let stems = output_stems(&files, Path::new("d"));
        let as_str: Vec<String> = stems.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(as_str, ["a.png", "a.jpg", "b", "sub/b"]);
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 5.0);
        assert_eq!(quantile(&v, 0.9), 9.0);
        assert_eq!(quantile(&[3.0], 0.9), 3.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn backend_failures_outrank_bad_inputs() {
        let worst = [EXIT_INPUT, EXIT_BACKEND, 1]
            .into_iter()
            .min_by_key(|&c| severity(c));
        assert_eq!(worst, Some(EXIT_BACKEND));
        assert!(severity(1) < severity(EXIT_INPUT));
    }
}
