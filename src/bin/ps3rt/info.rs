//! `ps3rt info [PKG]`: what a package is, what a frame costs, and what can run it here.
//!
//! Without `--verify` only the manifest is read and the files' sizes are checked (fast for a
//! multi-gigabyte package); `--verify` also checks every file's SHA-256, as loading does. Nothing is
//! compiled or run.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;
use ps3rt::flops::{self, Dims, FrameFlops, MemoryEstimate};
use ps3rt::package::{MANIFEST_FILE, Manifest};
use ps3rt::{Error, Geometry, Package};
use serde_json::{Value, json};

use crate::{EXIT_MODEL, EXIT_USAGE, Failure, Format, ui};

/// Arguments of `ps3rt info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Model package directory (default: the embedded tiny package).
    #[arg(value_name = "PKG", conflicts_with = "model")]
    pub package: Option<PathBuf>,
    /// The same as PKG (as in `ps3rt run --model`).
    #[arg(long, value_name = "PKG")]
    pub model: Option<PathBuf>,
    /// Also give FLOPs and memory at this budget K (next to the package's own budget).
    #[arg(long, value_name = "K")]
    pub budget: Option<usize>,
    /// Look-close steps per frame for the FLOPs and memory figures.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub steps: usize,
    /// Check every file's SHA-256 against the manifest (reads the whole package).
    #[arg(long)]
    pub verify: bool,
    /// What to print: text for people, or one JSON object.
    #[arg(long, value_enum, default_value_t = Format::Text, value_name = "FORMAT")]
    pub format: Format,
}

/// One file of the package as found.
struct FileStatus {
    name: String,
    /// Size the manifest gives (the manifest's own size for manifest.json).
    bytes: u64,
    /// Size on disk (None for the embedded package).
    on_disk: Option<u64>,
    /// "ok", "missing", "not a regular file", "size differs".
    status: &'static str,
}

/// A described package.
struct Described {
    origin: String,
    manifest: Manifest,
    geometry: Geometry,
    files: Vec<FileStatus>,
    /// Every file's SHA-256 was checked.
    verified: bool,
}

/// `ps3rt info`.
pub fn info(args: InfoArgs) -> Result<(), Failure> {
    if args.steps == 0 {
        return Err(Failure::new(EXIT_USAGE, "--steps must be at least 1"));
    }
    let path = args.package.as_ref().or(args.model.as_ref());
    let d = describe(path, args.verify)?;
    let total = d.geometry.total_high_patches();
    let mut budgets = vec![d.manifest.geometry.budget];
    if let Some(k) = args.budget {
        if k == 0 || k > total {
            return Err(Failure::new(
                EXIT_USAGE,
                format!("--budget {k} outside 1..={total} (the high-res patches of this model)"),
            ));
        }
        if k != budgets[0] {
            budgets.push(k);
        }
    }
    if let Some(&k) = budgets
        .iter()
        .find(|&&k| k.saturating_mul(args.steps) > total)
    {
        return Err(Failure::new(
            EXIT_USAGE,
            format!(
                "{} steps x budget {k} exceeds the {total} high-res patches",
                args.steps
            ),
        ));
    }
    let dims = Dims::from_manifest(&d.manifest);
    let costs: Vec<(FrameFlops, MemoryEstimate)> = budgets
        .iter()
        .map(|&k| {
            (
                flops::frame_flops(&dims, k, args.steps),
                flops::memory_estimate(&d.manifest, k, args.steps),
            )
        })
        .collect();
    let machine = Machine::probe();
    match args.format {
        Format::Text => ui::out(&text(&d, &costs, &machine)),
        Format::Json => {
            let doc = json_doc(&d, &costs, &machine);
            let text = serde_json::to_string_pretty(&doc)
                .map_err(|e| Failure::new(1, format!("cannot format the JSON document: {e}")))?;
            ui::out(&format!("{text}\n"));
        }
    }
    let bad: Vec<String> = d
        .files
        .iter()
        .filter(|f| f.status != "ok")
        .map(|f| format!("{} ({})", f.name, f.status))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            EXIT_MODEL,
            format!("model package {}: {}", d.origin, bad.join(", ")),
        ))
    }
}

/// Read the package: the embedded one (always verified), a directory's manifest and file sizes, or
/// (with `verify`) the whole directory with its hashes.
fn describe(path: Option<&PathBuf>, verify: bool) -> Result<Described, Failure> {
    let Some(dir) = path else {
        let pkg = crate::run::embedded_package()?;
        let files = pkg
            .manifest()
            .files
            .iter()
            .map(|(name, e)| FileStatus {
                name: name.clone(),
                bytes: e.bytes,
                on_disk: None,
                status: "ok",
            })
            .collect();
        return Ok(Described {
            origin: pkg.origin().to_string(),
            manifest: pkg.manifest().clone(),
            geometry: pkg.geometry().clone(),
            files,
            verified: true,
        });
    };
    if verify {
        ui::with_spinner(
            format!("verifying {} (SHA-256 of every file)", dir.display()),
            || Package::open(dir),
        )?;
    }
    let origin = dir.display().to_string();
    let package_error = |file: &str, reason: String| {
        Failure::from(Error::Package {
            package: origin.clone(),
            file: file.to_string(),
            reason,
        })
    };
    let meta = std::fs::metadata(dir).map_err(|e| {
        Failure::new(
            EXIT_MODEL,
            format!("model package {}: cannot open: {e}", dir.display()),
        )
    })?;
    if !meta.is_dir() {
        return Err(package_error(
            ".",
            "not a directory (a package is a directory holding manifest.json)".into(),
        ));
    }
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest_size = file_size(&manifest_path)
        .map_err(|reason| package_error(MANIFEST_FILE, reason.to_string()))?;
    let mut text = String::new();
    std::fs::File::open(&manifest_path)
        .and_then(|f| f.take(1 << 20).read_to_string(&mut text))
        .map_err(|e| package_error(MANIFEST_FILE, format!("cannot read: {e}")))?;
    let (manifest, geometry) =
        Manifest::parse(&text).map_err(|reason| package_error(MANIFEST_FILE, reason))?;
    let mut files = vec![FileStatus {
        name: MANIFEST_FILE.to_string(),
        bytes: manifest_size,
        on_disk: Some(manifest_size),
        status: "ok",
    }];
    for (name, entry) in &manifest.files {
        // Manifest::parse has checked that every name is a plain file name inside the package.
        let (on_disk, status) = match file_size(&dir.join(name)) {
            Ok(n) if n == entry.bytes => (Some(n), "ok"),
            Ok(n) => (Some(n), "size differs"),
            Err(status) => (None, status),
        };
        files.push(FileStatus {
            name: name.clone(),
            bytes: entry.bytes,
            on_disk,
            status,
        });
    }
    Ok(Described {
        origin,
        manifest,
        geometry,
        files,
        verified: verify,
    })
}

/// Size of a regular file (symbolic links are refused, as loading refuses them).
fn file_size(path: &Path) -> Result<u64, &'static str> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(m.len()),
        Ok(_) => Err("not a regular file"),
        Err(_) => Err("missing"),
    }
}

// ------------------------------------------------------------------ this machine

/// What this machine offers a GPU backend, as facts found on it (nothing is loaded or opened).
struct Machine {
    cpus: usize,
    memory_bytes: Option<u64>,
    /// First line of /proc/driver/nvidia/version.
    nvidia_driver: Option<String>,
    /// /dev/nvidia0 exists.
    nvidia_device: bool,
    /// First line of /etc/nv_tegra_release (Jetson's Linux for Tegra).
    tegra_release: Option<String>,
    /// Where libnvinfer was found in the dynamic loader's search paths.
    libnvinfer: Option<PathBuf>,
    /// How many loader directories were searched.
    searched_dirs: usize,
    /// What the TensorRT backend found (it opens the libraries when built in; cheap).
    tensorrt: ps3rt::backend::tensorrt::TensorRtProbe,
    /// The ONNX Runtime library found (version, path), or why none is usable.
    onnxruntime: Result<(String, PathBuf), String>,
    /// What `--preprocess gpu` would run on (CUDA device 0), or why it cannot.
    gpu_preprocessing: Result<GpuPreprocessing, String>,
}

/// Device 0 as GPU preprocessing sees it (ps3rt::image::gpu::GpuProbe, or nothing without the
/// `cuda` feature).
#[cfg(feature = "cuda")]
type GpuPreprocessing = ps3rt::image::gpu::GpuProbe;
#[cfg(not(feature = "cuda"))]
type GpuPreprocessing = std::convert::Infallible;

impl Machine {
    fn probe() -> Machine {
        // First line, runs of spaces collapsed ("NVRM version: NVIDIA UNIX ... 580.159.04 ...").
        let first_line = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|t| {
                    t.lines()
                        .next()
                        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                })
                .filter(|l| !l.is_empty())
        };
        let memory_bytes = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kb| kb * 1024)
        });
        let dirs = loader_dirs();
        let libnvinfer = dirs.iter().find_map(|d| find_prefixed(d, "libnvinfer.so"));
        Machine {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_bytes,
            nvidia_driver: first_line("/proc/driver/nvidia/version"),
            nvidia_device: Path::new("/dev/nvidia0").exists(),
            tegra_release: first_line("/etc/nv_tegra_release"),
            libnvinfer,
            searched_dirs: dirs.len(),
            tensorrt: ps3rt::backend::tensorrt::probe(
                &ps3rt::backend::tensorrt::TensorRtOptions::from_env().unwrap_or_default(),
            ),
            onnxruntime: probe_onnxruntime(),
            gpu_preprocessing: probe_gpu_preprocessing(),
        }
    }

    /// The `--preprocess gpu` line: where it would run, or why it cannot.
    fn gpu_preprocessing_line(&self) -> String {
        match &self.gpu_preprocessing {
            #[cfg(feature = "cuda")]
            Ok(p) => format!(
                "available: CUDA device {}, {} (sm_{}{}, {}), driver CUDA {}.{}, NVRTC {}.{} from {}",
                p.device,
                p.name,
                p.capability.0,
                p.capability.1,
                if p.integrated {
                    "integrated"
                } else {
                    "discrete"
                },
                p.driver_cuda.0,
                p.driver_cuda.1,
                p.nvrtc.0,
                p.nvrtc.1,
                p.nvrtc_path
            ),
            #[cfg(not(feature = "cuda"))]
            Ok(never) => match *never {},
            Err(why) => format!("not usable here: {why}"),
        }
    }

    /// `--preprocess gpu` for the JSON document.
    fn gpu_preprocessing_json(&self) -> Value {
        let summary = self.gpu_preprocessing_line();
        match &self.gpu_preprocessing {
            #[cfg(feature = "cuda")]
            Ok(p) => json!({
                "available": true,
                "summary": summary,
                "device": p.device,
                "name": p.name,
                "sm": format!("{}{}", p.capability.0, p.capability.1),
                "integrated": p.integrated,
                "driver_cuda": format!("{}.{}", p.driver_cuda.0, p.driver_cuda.1),
                "nvrtc": format!("{}.{}", p.nvrtc.0, p.nvrtc.1),
                "nvrtc_path": p.nvrtc_path,
            }),
            #[cfg(not(feature = "cuda"))]
            Ok(never) => match *never {},
            Err(why) => json!({"available": false, "summary": summary, "reason": why}),
        }
    }

    /// The `onnxruntime` backend line: available (which library) or why not.
    fn onnxruntime_line(&self) -> String {
        match &self.onnxruntime {
            Ok((version, path)) => format!(
                "available: ONNX Runtime {version} from {} (CPU; auto picks it when TensorRT is not usable)",
                path.display()
            ),
            Err(why) => format!("not usable here: {why}"),
        }
    }

    /// The `tensorrt` backend line: available (what on) or why not.
    fn tensorrt_line(&self) -> String {
        let p = &self.tensorrt;
        match (&p.unusable, &p.headers) {
            (Some((ps3rt::backend::tensorrt::UnusableKind::NotCompiled, _)), _) | (_, None) => {
                "not built into this binary (cargo feature `tensorrt`)".into()
            }
            (Some((_, why)), Some(h)) => {
                format!("built in (TensorRT {h} headers), not usable here: {why}")
            }
            (None, Some(h)) => format!(
                "available: {} (built with TensorRT {h} headers)",
                p.summary()
            ),
        }
    }

    /// Facts the TensorRT probe found (library, CUDA runtime, driver, GPU), when built in.
    fn tensorrt_facts(&self) -> Vec<String> {
        let p = &self.tensorrt;
        let mut facts = Vec::new();
        if p.headers.is_none() {
            return facts;
        }
        if let Some(l) = &p.library {
            facts.push(format!(
                "TensorRT {} from {}{}",
                l.version,
                l.path,
                if l.has_builder {
                    ""
                } else {
                    " (runtime only: no builder)"
                }
            ));
        }
        if let Some((path, version)) = &p.cuda_runtime {
            facts.push(format!(
                "CUDA runtime {version} from {path}, driver supports CUDA {}",
                p.cuda_driver.as_deref().unwrap_or("?")
            ));
        }
        if let Some(g) = &p.gpu {
            facts.push(format!(
                "GPU {}: {} (sm_{}, {:.1} GiB{})",
                g.device,
                g.name,
                g.sm.replace('.', ""),
                g.memory as f64 / (1u64 << 30) as f64,
                if g.integrated { ", integrated" } else { "" }
            ));
        }
        if let Some(c) = &p.cuda_problem {
            facts.push(format!("CUDA: {c}"));
        }
        facts
    }

    /// Why a TensorRT backend could not run here even if it were built in, or None when the
    /// prerequisites are present.
    fn gpu_facts(&self) -> Vec<String> {
        let mut facts = Vec::new();
        match (&self.nvidia_driver, &self.tegra_release) {
            (Some(v), _) => facts.push(format!("NVIDIA driver: {v}")),
            (None, Some(t)) => facts.push(format!("Jetson (L4T): {t}")),
            (None, None) => facts.push(
                "NVIDIA driver: none (no /proc/driver/nvidia/version, no /etc/nv_tegra_release)"
                    .into(),
            ),
        }
        facts.push(format!(
            "/dev/nvidia0: {}",
            if self.nvidia_device {
                "present"
            } else {
                "absent"
            }
        ));
        facts.push(match &self.libnvinfer {
            Some(p) => format!("libnvinfer: {}", p.display()),
            None => format!(
                "libnvinfer: not found in the loader's {} search paths",
                self.searched_dirs
            ),
        });
        facts
    }
}

/// The dynamic loader's search directories: LD_LIBRARY_PATH, /etc/ld.so.conf (with its includes),
/// then the default directories.
fn loader_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(v) = std::env::var_os("LD_LIBRARY_PATH") {
        dirs.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
    }
    read_ld_conf(Path::new("/etc/ld.so.conf"), &mut dirs, 0);
    for d in ["/lib", "/usr/lib", "/lib64", "/usr/lib64"] {
        dirs.push(PathBuf::from(d));
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

fn read_ld_conf(path: &Path, dirs: &mut Vec<PathBuf>, depth: usize) {
    if depth > 4 {
        return;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(pattern) = line.strip_prefix("include ") {
            let pattern = pattern.trim();
            let pattern = if Path::new(pattern).is_absolute() {
                PathBuf::from(pattern)
            } else {
                path.parent().unwrap_or(Path::new("/")).join(pattern)
            };
            if let Ok(paths) = glob::glob(&pattern.to_string_lossy()) {
                let mut included: Vec<PathBuf> = paths.flatten().collect();
                included.sort();
                for p in included {
                    read_ld_conf(&p, dirs, depth + 1);
                }
            }
        } else if line.starts_with('/') {
            dirs.push(PathBuf::from(line));
        }
    }
}

/// The first entry of `dir` whose name starts with `prefix`, if any.
fn find_prefixed(dir: &Path, prefix: &str) -> Option<PathBuf> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    names.sort();
    names.into_iter().next()
}

// ------------------------------------------------------------------ formatting

/// Decimal byte sizes: "869.4 kB", "1.79 GB".
pub fn bytes(n: u64) -> String {
    let v = n as f64;
    if v >= 1e9 {
        format!("{:.2} GB", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1} MB", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} kB", v / 1e3)
    } else {
        format!("{n} B")
    }
}

/// FLOPs with an SI prefix: "371.2 MFLOP", "3.91 TFLOP".
pub fn flop(v: f64) -> String {
    if v >= 1e12 {
        format!("{:.2} TFLOP", v / 1e12)
    } else if v >= 1e9 {
        format!("{:.1} GFLOP", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1} MFLOP", v / 1e6)
    } else {
        format!("{:.1} kFLOP", v / 1e3)
    }
}

/// 87480 -> "87,480".
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn join<T: ToString>(v: &[T], sep: &str) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

fn is_random(m: &Manifest) -> bool {
    m.source.checkpoint.starts_with("random-")
}

/// One row of the compute table: a stage's FLOPs.
type FlopField = fn(&FrameFlops) -> f64;
/// One row of the memory table, formatted.
type MemField = fn(&MemoryEstimate) -> String;

fn text(d: &Described, costs: &[(FrameFlops, MemoryEstimate)], machine: &Machine) -> String {
    use std::fmt::Write as _;
    let m = &d.manifest;
    let g = &m.geometry;
    let net = &m.model;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "package   {} ({}, format {})",
        m.name, d.origin, m.format_version
    );
    let _ = writeln!(
        s,
        "source    {}: model_type {}, timm {}",
        m.source.checkpoint,
        if m.source.model_type.is_empty() {
            "?"
        } else {
            &m.source.model_type
        },
        if m.source.timm_model.is_empty() {
            "?"
        } else {
            &m.source.timm_model
        }
    );
    if is_random(m) {
        let _ = writeln!(
            s,
            "          random weights: for exercising the pipeline, not for real selections"
        );
    }
    if !m.created_by.is_empty() {
        let tools: Vec<String> = m
            .created_by
            .iter()
            .filter(|(k, _)| k.as_str() != "tool")
            .map(|(k, v)| match v {
                Value::String(t) => format!("{k} {t}"),
                other => format!("{k} {other}"),
            })
            .collect();
        let tool = m
            .created_by
            .get("tool")
            .and_then(|v| v.as_str())
            .unwrap_or("an unknown tool");
        let _ = writeln!(s, "exported  by {tool}: {}", tools.join(", "));
    }
    let _ = writeln!(
        s,
        "geometry  patch {}; scales {} px; grids {}",
        g.patch,
        join(&g.scales, " / "),
        join(&g.grids, " / ")
    );
    let _ = writeln!(
        s,
        "          {} low-res tokens, {} high-res patches; frames are squashed to {}x{}",
        thousands(d.geometry.lowres_tokens() as u64),
        thousands(d.geometry.total_high_patches() as u64),
        g.input_size,
        g.input_size
    );
    let _ = writeln!(
        s,
        "          high-res selection branch: {} px -> {}x{}",
        g.hrsel_input, g.hrsel_grid, g.hrsel_grid
    );
    let split: Vec<String> = d
        .geometry
        .high_scales()
        .iter()
        .zip(&g.budget_split)
        .map(|(sc, n)| format!("{sc} px {n}"))
        .collect();
    let _ = writeln!(
        s,
        "budget    K = {} per step: {} (split by pixel count)",
        g.budget,
        split.join(", ")
    );
    let _ = writeln!(
        s,
        "network   width {}, depth {}, {} heads x {}, MLP {}; selection layers {}; ShallowConvNet {} -> {}",
        net.width,
        net.depth,
        net.heads,
        net.head_dim,
        net.mlp_hidden,
        join(&net.selection_layers, ", "),
        if net.hrsel_hidden > 0 {
            net.hrsel_hidden
        } else {
            net.hrsel_dim
        },
        net.hrsel_dim
    );
    let _ = writeln!(
        s,
        "          {} parameters; stored in {}, computed in fp32",
        if net.parameters > 0 {
            thousands(net.parameters)
        } else {
            "? (not recorded)".into()
        },
        net.precision
    );
    let _ = writeln!(
        s,
        "pixels    mean {}, std {} (after scaling 8-bit values to 0..1)",
        join(&m.normalization.mean, " "),
        join(&m.normalization.std, " ")
    );
    let name_w = d.files.iter().map(|f| f.name.len()).max().unwrap_or(0);
    for (i, f) in d.files.iter().enumerate() {
        let status = match (f.status, f.on_disk) {
            ("size differs", Some(n)) => format!(
                "SIZE DIFFERS: {} on disk, the manifest says {}",
                thousands(n),
                thousands(f.bytes)
            ),
            ("ok", _) => String::new(),
            (other, _) => other.to_uppercase(),
        };
        let line = format!(
            "{}{:<name_w$}  {:>10}  {}",
            if i == 0 { "files     " } else { "          " },
            f.name,
            bytes(f.bytes),
            status
        );
        let _ = writeln!(s, "{}", line.trim_end());
    }
    let total: u64 = d.files.iter().map(|f| f.bytes).sum();
    let _ = writeln!(
        s,
        "          {:<name_w$}  {:>10}  {}",
        "total",
        bytes(total),
        if d.verified {
            "SHA-256 of every file checked"
        } else {
            "sizes checked, hashes not (--verify checks them)"
        }
    );
    // Cost tables: one column per budget.
    let header: Vec<String> = costs
        .iter()
        .map(|(f, _)| {
            if f.steps > 1 {
                format!("K = {} x {}", f.budget, f.steps)
            } else {
                format!("K = {}", f.budget)
            }
        })
        .collect();
    let col = 16;
    let row = |s: &mut String, label: &str, cells: Vec<String>| {
        let _ = write!(s, "          {label:<38}");
        for c in cells {
            let _ = write!(s, "{c:>col$}");
        }
        s.push('\n');
    };
    let _ = writeln!(
        s,
        "compute   per frame; a multiply-add is 2 FLOPs; matmuls and convolutions (src/flops.rs)"
    );
    row(&mut s, "", header.clone());
    let n = d.geometry.lowres_tokens();
    let flop_rows: [(String, FlopField); 5] = [
        (format!("low-res trunk ({n} tokens)"), |f| f.lowres),
        ("selection MLP".into(), |f| f.selection),
        (format!("high-res selection ({} px)", g.hrsel_input), |f| {
            f.hrsel
        }),
        (format!("high-res trunk (K tokens, {n} + K keys)"), |f| {
            f.hrenc
        }),
        ("total".into(), |f| f.total),
    ];
    for (label, get) in &flop_rows {
        row(
            &mut s,
            label,
            costs.iter().map(|(f, _)| flop(get(f))).collect(),
        );
    }
    let _ = writeln!(
        s,
        "memory    estimate for one encoder, in fp32 (src/flops.rs)"
    );
    row(&mut s, "", header);
    let mem_rows: [(&str, MemField); 6] = [
        ("weights", |e| bytes(e.weights)),
        ("tables (position rows, prompts)", |e| bytes(e.tables)),
        ("low-res KV cache", |e| bytes(e.kv_cache)),
        ("activations of the largest stage", |e| {
            format!("{} {}", bytes(e.activations), e.largest_stage.name())
        }),
        ("output buffers", |e| bytes(e.output)),
        ("total", |e| bytes(e.total)),
    ];
    for (label, get) in &mem_rows {
        row(&mut s, label, costs.iter().map(|(_, e)| get(e)).collect());
    }
    let _ = writeln!(
        s,
        "          backends hold more: tract keeps the trunk once per graph that uses it, plus run temporaries"
    );
    let _ = writeln!(
        s,
        "backends  tract       available: CPU (every core unless --threads N)"
    );
    let _ = writeln!(s, "          tensorrt    {}", machine.tensorrt_line());
    let _ = writeln!(s, "          onnxruntime {}", machine.onnxruntime_line());
    let _ = writeln!(s, "preprocess cpu        available (the default)");
    let _ = writeln!(
        s,
        "          gpu         {}",
        machine.gpu_preprocessing_line()
    );
    let _ = writeln!(
        s,
        "machine   {} cores{}",
        machine.cpus,
        machine
            .memory_bytes
            .map(|b| format!(", {:.1} GiB memory", b as f64 / (1u64 << 30) as f64))
            .unwrap_or_default()
    );
    for fact in machine
        .gpu_facts()
        .into_iter()
        .chain(machine.tensorrt_facts())
    {
        let _ = writeln!(s, "          {fact}");
    }
    s
}

fn json_doc(d: &Described, costs: &[(FrameFlops, MemoryEstimate)], machine: &Machine) -> Value {
    let m = &d.manifest;
    let files: Vec<Value> = d
        .files
        .iter()
        .map(
            |f| json!({"name": f.name, "bytes": f.bytes, "on_disk": f.on_disk, "status": f.status}),
        )
        .collect();
    json!({
        "ps3rt_version": ps3rt::VERSION,
        "package": {
            "name": m.name,
            "origin": d.origin,
            "format_version": m.format_version,
            "verified": d.verified,
            "total_bytes": d.files.iter().map(|f| f.bytes).sum::<u64>(),
        },
        "source": {
            "checkpoint": m.source.checkpoint,
            "model_type": m.source.model_type,
            "timm_model": m.source.timm_model,
            "random_weights": is_random(m),
        },
        "created_by": m.created_by,
        "geometry": m.geometry,
        "lowres_tokens": d.geometry.lowres_tokens(),
        "high_res_patches": d.geometry.total_high_patches(),
        "model": m.model,
        "normalization": m.normalization,
        "files": files,
        "flops": costs.iter().map(|(f, _)| f).collect::<Vec<_>>(),
        "memory": costs.iter().map(|(f, e)| json!({"budget": f.budget, "steps": f.steps, "estimate": e})).collect::<Vec<_>>(),
        "backends": [
            {"name": "tract", "available": true, "device": "cpu"},
            {
                "name": "tensorrt",
                "available": machine.tensorrt.usable(),
                "reason": machine.tensorrt.unusable.as_ref().map(|(_, why)| why),
                "summary": machine.tensorrt_line(),
                "headers": machine.tensorrt.headers,
                "library": machine.tensorrt.library.as_ref().map(|l| json!({"path": l.path, "version": l.version, "builder": l.has_builder})),
                "cuda_runtime": machine.tensorrt.cuda_runtime.as_ref().map(|(path, version)| json!({"path": path, "version": version})),
                "gpu": machine.tensorrt.gpu.as_ref().map(|g| json!({"device": g.device, "name": g.name, "sm": g.sm, "integrated": g.integrated, "memory_bytes": g.memory})),
            },
            {
                "name": "onnxruntime",
                "available": machine.onnxruntime.is_ok(),
                "device": "cpu",
                "reason": machine.onnxruntime.as_ref().err(),
                "summary": machine.onnxruntime_line(),
                "library": machine.onnxruntime.as_ref().ok().map(|(version, path)| json!({"path": path.display().to_string(), "version": version})),
            },
        ],
        "preprocessing": {
            "cpu": {"available": true},
            "gpu": machine.gpu_preprocessing_json(),
        },
        "machine": {
            "cpus": machine.cpus,
            "memory_bytes": machine.memory_bytes,
            "nvidia_driver": machine.nvidia_driver,
            "nvidia_device": machine.nvidia_device,
            "tegra_release": machine.tegra_release,
            "libnvinfer": machine.libnvinfer.as_ref().map(|p| p.display().to_string()),
        },
    })
}

/// Open the ONNX Runtime library the backend would use (PS3RT_ONNXRUNTIME, ORT_DYLIB_PATH or the
/// loader's search path).
#[cfg(feature = "onnxruntime")]
fn probe_onnxruntime() -> Result<(String, PathBuf), String> {
    ps3rt::backend::onnxruntime::probe(&ps3rt::backend::onnxruntime::OnnxRuntimeOptions::default())
}

/// CUDA device 0's driver, device and NVRTC, as `--preprocess gpu` would open them.
#[cfg(feature = "cuda")]
fn probe_gpu_preprocessing() -> Result<GpuPreprocessing, String> {
    ps3rt::image::gpu::probe(0).map_err(|e| e.to_string())
}

/// Without the `cuda` feature there is nothing to open.
#[cfg(not(feature = "cuda"))]
fn probe_gpu_preprocessing() -> Result<GpuPreprocessing, String> {
    Err("not built into this binary (cargo feature `cuda`)".into())
}

/// Without the `onnxruntime` feature there is nothing to open.
#[cfg(not(feature = "onnxruntime"))]
fn probe_onnxruntime() -> Result<(String, PathBuf), String> {
    Err("not built into this binary (cargo feature `onnxruntime`)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(bytes(869_376), "869.4 kB");
        assert_eq!(bytes(1_790_000_000), "1.79 GB");
        assert_eq!(bytes(12), "12 B");
        assert_eq!(flop(3.9065e12), "3.91 TFLOP");
        assert_eq!(flop(371_195_136.0), "371.2 MFLOP");
        assert_eq!(thousands(87_480), "87,480");
        assert_eq!(thousands(3_044_000), "3,044,000");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn ld_conf_includes_are_followed() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let sub = dir.path().join("ld.so.conf.d");
        std::fs::create_dir(&sub).expect("mkdir");
        std::fs::write(sub.join("a.conf"), "/opt/a/lib # comment\n").expect("write");
        std::fs::write(
            dir.path().join("ld.so.conf"),
            format!("include {}/*.conf\n/opt/b/lib\n", sub.display()),
        )
        .expect("write");
        let mut dirs = Vec::new();
        read_ld_conf(&dir.path().join("ld.so.conf"), &mut dirs, 0);
        assert_eq!(
            dirs,
            [PathBuf::from("/opt/a/lib"), PathBuf::from("/opt/b/lib")]
        );
    }
}
