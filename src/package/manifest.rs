//! `manifest.json`: the versioned description of a model package, and its consistency checks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::geometry::Geometry;

/// The value of `format` in every ps3rt package manifest.
pub const FORMAT: &str = "ps3rt-package";
/// The package format version this runtime reads.
pub const FORMAT_VERSION: u32 = 1;

/// The parsed manifest (see `tools/export/ps3_export.py` for the writer).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version; this runtime reads [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Human-readable package name.
    pub name: String,
    /// Tool and library versions that wrote the package.
    #[serde(default)]
    pub created_by: BTreeMap<String, serde_json::Value>,
    /// The checkpoint the package was exported from.
    pub source: Source,
    /// Scales, grids and budget.
    pub geometry: GeometrySpec,
    /// Widths and depths of the network.
    pub model: ModelSpec,
    /// Pixel normalization applied after scaling 8-bit values to 0..1.
    pub normalization: Normalization,
    /// The three graphs.
    pub graphs: Graphs,
    /// The shared external-data file of the graphs.
    pub weights: FileRef,
    /// The tables the glue needs (position rows, prompts).
    pub tables: FileRef,
    /// The label bank (optional; docs/labels.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<LabelsSpec>,
    /// The text tower's tokenizer and widths (optional; present with `graphs.text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextSpec>,
    /// Every file of the package with its SHA-256 and size.
    pub files: BTreeMap<String, FileEntry>,
}

/// The `labels` section: a label bank encoded by the checkpoint's own text tower.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelsSpec {
    /// The bank's JSON file (labels, logit scale and bias, calibration, source).
    pub file: String,
    /// The safetensors file with `embeddings` `[M, D]` and `prompts` `[M, C]`.
    pub embeddings: String,
    /// Number of labels M.
    pub count: usize,
    /// Embedding width D (the joint space: the image embedding width).
    pub dim: usize,
}

/// The `text` section: what encoding free text needs besides `graphs.text`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextSpec {
    /// The tokenizer (Hugging Face tokenizer.json, padding and truncation to `context_length` built in).
    pub tokenizer: String,
    /// Token ids per text, L.
    pub context_length: usize,
    /// PS3's text cleaning before tokenization: "canonicalize", "lower" or "whitespace".
    pub clean: String,
    /// Width of the text embedding D.
    pub embedding_dim: usize,
    /// Width of the selection prompt (the vision width C).
    pub prompt_dim: usize,
}

/// The source checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    /// Checkpoint name (Hugging Face repository or directory name).
    pub checkpoint: String,
    /// `config.json`'s model_type.
    #[serde(default)]
    pub model_type: String,
    /// timm architecture of the trunk.
    #[serde(default)]
    pub timm_model: String,
    /// SHA-256 of the checkpoint's files.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// Geometry section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeometrySpec {
    /// Patch side (14).
    pub patch: usize,
    /// Scales, ascending (378, 756, 1512, 3780).
    pub scales: Vec<usize>,
    /// Token grid side per scale.
    pub grids: Vec<usize>,
    /// The side every frame is squashed to (largest scale).
    pub input_size: usize,
    /// Input side of the high-res selection branch.
    pub hrsel_input: usize,
    /// Output grid of the high-res selection branch.
    pub hrsel_grid: usize,
    /// Default high-res token budget K.
    pub budget: usize,
    /// Per-scale split of the default budget.
    pub budget_split: Vec<usize>,
}

/// Network section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Token width C.
    pub width: usize,
    /// Number of transformer blocks L.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Hidden width of the blocks' MLP.
    pub mlp_hidden: usize,
    /// Blocks whose outputs feed the selection MLP.
    pub selection_layers: Vec<usize>,
    /// Output width D of the high-res selection branch.
    pub hrsel_dim: usize,
    /// Hidden width of the high-res selection branch.
    #[serde(default)]
    pub hrsel_hidden: usize,
    /// Parameter count of the vision model.
    #[serde(default)]
    pub parameters: u64,
    /// Storage precision of weights and tables ("fp32" or "fp16").
    pub precision: String,
}

/// Normalization section.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Normalization {
    /// Per-channel mean.
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
}

/// The three graphs of a package.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Graphs {
    /// Low-res trunk + selection features.
    pub lowres: GraphSpec,
    /// High-res selection branch.
    pub hrsel: GraphSpec,
    /// High-res encoding with the KV cache.
    pub hrenc: GraphSpec,
    /// Region pool head (optional): tokens `[N, C]` + mask `[R, N]` -> embeddings `[R, C]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<GraphSpec>,
    /// Text tower (optional): ids `[1, L]` (int64) -> embedding `[D]`, prompt `[C]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<GraphSpec>,
}

/// One graph file and its interface.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GraphSpec {
    /// File name inside the package.
    pub file: String,
    /// Inputs, in order.
    pub inputs: Vec<TensorSpec>,
    /// Outputs, in order.
    pub outputs: Vec<TensorSpec>,
    /// The file holding this graph's external data (None: the package's `weights` file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
}

/// Name, type and shape of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// Element type: "float32" (every vision graph tensor), "int64" (the text tower's token ids).
    pub dtype: String,
    /// Dimensions; the budget dimension of hrenc is the string "K".
    pub shape: Vec<Dim>,
}

/// A dimension: fixed, or named (fixed by the runtime when it loads the graph).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A named size ("K").
    Named(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Named(s) => f.write_str(s),
        }
    }
}

/// Shape formatted as `[a, b, K]`.
pub(crate) fn shape_string(shape: &[Dim]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// A reference to one file of the package.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRef {
    /// File name inside the package.
    pub file: String,
}

/// Hash and size of one package file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

impl Manifest {
    /// Parse and check the manifest; on failure, the reason (the caller adds the package and file).
    pub fn parse(text: &str) -> Result<(Manifest, Geometry), String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        match value.get("format").and_then(|v| v.as_str()) {
            Some(FORMAT) => {}
            Some(other) => return Err(format!("format is {other:?}, expected {FORMAT:?}")),
            None => {
                return Err(format!(
                    "no \"format\": {FORMAT:?} field (not a ps3rt package manifest)"
                ));
            }
        }
        match value.get("format_version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(format!(
                    "format_version {v} is not supported by this runtime (reads version {FORMAT_VERSION}); re-export the package with a matching tools/export"
                ));
            }
            None => return Err("format_version is missing or not a number".into()),
        }
        let m: Manifest =
            serde_json::from_value(value).map_err(|e| format!("invalid manifest: {e}"))?;
        let geometry = m.check()?;
        Ok((m, geometry))
    }

    /// Cross-check every section; returns the geometry.
    fn check(&self) -> Result<Geometry, String> {
        let g = &self.geometry;
        let geometry = Geometry::new(g.patch, g.scales.clone(), g.hrsel_input, g.hrsel_grid)
            .map_err(|e| e.to_string())?;
        // Scales are bounded by Geometry::new; the selection branch's input is bounded here, so
        // every size computed from the geometry fits in a usize.
        if g.hrsel_input > 16_384 {
            return Err(format!(
                "geometry.hrsel_input {} exceeds 16384",
                g.hrsel_input
            ));
        }
        let grids: Vec<usize> = g.scales.iter().map(|s| s / g.patch).collect();
        if grids != g.grids {
            return Err(format!(
                "geometry.grids {:?} do not match scales / patch = {grids:?}",
                g.grids
            ));
        }
        if g.input_size != geometry.input_size() {
            return Err(format!(
                "geometry.input_size {} is not the largest scale {}",
                g.input_size,
                geometry.input_size()
            ));
        }
        if g.budget == 0 || g.budget > geometry.total_high_patches() {
            return Err(format!(
                "geometry.budget {} outside 1..={}",
                g.budget,
                geometry.total_high_patches()
            ));
        }
        let split = geometry.budget_split(g.budget);
        if split != g.budget_split {
            return Err(format!(
                "geometry.budget_split {:?} differs from the split of {} ({split:?})",
                g.budget_split, g.budget
            ));
        }
        let m = &self.model;
        if m.width == 0
            || m.heads == 0
            || m.depth == 0
            || m.hrsel_dim == 0
            || m.width > 65_536
            || m.depth > 1024
        {
            return Err(format!(
                "model sizes out of range: width {}, heads {}, depth {}, hrsel_dim {}",
                m.width, m.heads, m.depth, m.hrsel_dim
            ));
        }
        if m.heads.checked_mul(m.head_dim) != Some(m.width) {
            return Err(format!(
                "model.heads {} x head_dim {} != width {}",
                m.heads, m.head_dim, m.width
            ));
        }
        if m.selection_layers.is_empty() || m.selection_layers.iter().any(|&l| l >= m.depth) {
            return Err(format!(
                "model.selection_layers {:?} must be non-empty and below depth {}",
                m.selection_layers, m.depth
            ));
        }
        if m.precision != "fp32" && m.precision != "fp16" {
            return Err(format!(
                "model.precision {:?} is not fp32 or fp16",
                m.precision
            ));
        }
        if self
            .normalization
            .std
            .iter()
            .any(|&s| !(s.is_finite() && s > 0.0))
            || self.normalization.mean.iter().any(|m| !m.is_finite())
        {
            return Err(format!(
                "normalization {:?} needs finite means and positive stds",
                self.normalization
            ));
        }
        for (role, spec) in [
            ("lowres", &self.graphs.lowres),
            ("hrsel", &self.graphs.hrsel),
            ("hrenc", &self.graphs.hrenc),
        ] {
            let expected = self.expected_io(role, &geometry);
            let actual: Vec<&TensorSpec> = spec.inputs.iter().chain(&spec.outputs).collect();
            let expected_all: Vec<&TensorSpec> = expected.0.iter().chain(&expected.1).collect();
            if spec.inputs.len() != expected.0.len() || spec.outputs.len() != expected.1.len() {
                return Err(format!(
                    "graphs.{role}: {} inputs and {} outputs, expected {} and {}",
                    spec.inputs.len(),
                    spec.outputs.len(),
                    expected.0.len(),
                    expected.1.len()
                ));
            }
            for (a, e) in actual.iter().zip(expected_all) {
                if *a != e {
                    return Err(format!(
                        "graphs.{role}: {} {} {} does not fit the geometry and widths (expected {} {} {})",
                        a.name,
                        a.dtype,
                        shape_string(&a.shape),
                        e.name,
                        e.dtype,
                        shape_string(&e.shape)
                    ));
                }
            }
        }
        self.check_optional()?;
        for file in [
            &self.graphs.lowres.file,
            &self.graphs.hrsel.file,
            &self.graphs.hrenc.file,
            &self.weights.file,
            &self.tables.file,
        ] {
            if !self.files.contains_key(file) {
                return Err(format!(
                    "{file} is used but not listed in \"files\" (no hash to check it against)"
                ));
            }
        }
        for (name, entry) in &self.files {
            check_file_name(name)?;
            if entry.sha256.len() != 64 || !entry.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("files.{name}.sha256 is not a 64-digit hex SHA-256"));
            }
        }
        Ok(geometry)
    }

    /// Check the optional sections (pool and text graphs, label bank, text spec) when present.
    fn check_optional(&self) -> Result<(), String> {
        let c = self.model.width;
        let t = |name: &str, dtype: &str, shape: Vec<Dim>| TensorSpec {
            name: name.into(),
            dtype: dtype.into(),
            shape,
        };
        let f = Dim::Fixed;
        let n = || Dim::Named("N".into());
        let mut used: Vec<&str> = Vec::new();
        if let Some(pool) = &self.graphs.pool {
            let r = match pool.outputs.first().and_then(|o| o.shape.first()) {
                Some(Dim::Fixed(r)) if (1..=MAX_POOL_REGIONS).contains(r) => *r,
                _ => {
                    return Err(format!(
                        "graphs.pool: the first output must be [R, {c}] with a fixed R in 1..={MAX_POOL_REGIONS}"
                    ));
                }
            };
            let inputs = [
                t("tokens", "float32", vec![n(), f(c)]),
                t("mask", "float32", vec![f(r), n()]),
            ];
            let outputs = [t("embeddings", "float32", vec![f(r), f(c)])];
            check_io("pool", pool, &inputs, &outputs)?;
            used.push(&pool.file);
            used.extend(pool.weights.as_deref());
        }
        match (&self.graphs.text, &self.text) {
            (Some(graph), Some(text)) => {
                if text.context_length == 0 || text.context_length > 4096 {
                    return Err(format!(
                        "text.context_length {} outside 1..=4096",
                        text.context_length
                    ));
                }
                if !["canonicalize", "lower", "whitespace"].contains(&text.clean.as_str()) {
                    return Err(format!(
                        "text.clean {:?} is not canonicalize, lower or whitespace",
                        text.clean
                    ));
                }
                if text.prompt_dim != c || text.embedding_dim != c {
                    return Err(format!(
                        "text: embedding_dim {} and prompt_dim {} must both equal the vision width {c}",
                        text.embedding_dim, text.prompt_dim
                    ));
                }
                let inputs = [t("ids", "int64", vec![f(1), f(text.context_length)])];
                let outputs = [
                    t("embedding", "float32", vec![f(c)]),
                    t("prompt", "float32", vec![f(c)]),
                ];
                check_io("text", graph, &inputs, &outputs)?;
                used.push(&graph.file);
                used.extend(graph.weights.as_deref());
                used.push(&text.tokenizer);
            }
            (None, None) => {}
            (Some(_), None) => return Err("graphs.text without a \"text\" section".into()),
            (None, Some(_)) => return Err("a \"text\" section without graphs.text".into()),
        }
        if let Some(labels) = &self.labels {
            if labels.dim != c {
                return Err(format!(
                    "labels.dim {} differs from the vision width {c} (bank and image embeddings must share one space)",
                    labels.dim
                ));
            }
            if labels.count == 0 || labels.count > MAX_LABELS {
                return Err(format!(
                    "labels.count {} outside 1..={MAX_LABELS}",
                    labels.count
                ));
            }
            used.push(&labels.file);
            used.push(&labels.embeddings);
        }
        for file in used {
            if !self.files.contains_key(file) {
                return Err(format!(
                    "{file} is used but not listed in \"files\" (no hash to check it against)"
                ));
            }
        }
        Ok(())
    }

    /// The interface each graph must have for this geometry and these widths.
    pub(crate) fn expected_io(
        &self,
        role: &str,
        g: &Geometry,
    ) -> (Vec<TensorSpec>, Vec<TensorSpec>) {
        let m = &self.model;
        let t = |name: &str, shape: Vec<Dim>| TensorSpec {
            name: name.into(),
            dtype: "float32".into(),
            shape,
        };
        let f = Dim::Fixed;
        let n = g.lowres_tokens();
        let kv = vec![f(m.depth), f(2), f(m.heads), f(n), f(m.head_dim)];
        match role {
            "lowres" => (
                vec![t(
                    "pixels",
                    vec![f(1), f(3), f(g.lowres_size()), f(g.lowres_size())],
                )],
                vec![
                    t("hidden", vec![f(n), f(m.width)]),
                    t("kv_cache", kv),
                    t("sel_feat", vec![f(n), f(m.width)]),
                ],
            ),
            "hrsel" => (
                vec![t(
                    "pixels",
                    vec![f(1), f(3), f(g.hrsel_input()), f(g.hrsel_input())],
                )],
                vec![t(
                    "hr_feat",
                    vec![f(g.hrsel_grid() * g.hrsel_grid()), f(m.hrsel_dim)],
                )],
            ),
            _ => {
                let k = || Dim::Named("K".into());
                (
                    vec![
                        t("patches", vec![k(), f(3 * g.patch() * g.patch())]),
                        t("pos", vec![k(), f(m.width)]),
                        t("kv_cache", kv),
                    ],
                    vec![t("features", vec![k(), f(m.width)])],
                )
            }
        }
    }
}

/// Most regions one pool-graph run may take (the exporter's `--max-regions` limit).
pub const MAX_POOL_REGIONS: usize = 256;
/// Most labels a bank may hold.
pub const MAX_LABELS: usize = 100_000;

/// An optional graph's interface must be exactly the expected one.
fn check_io(
    role: &str,
    spec: &GraphSpec,
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
) -> Result<(), String> {
    if spec.inputs.len() != inputs.len() || spec.outputs.len() != outputs.len() {
        return Err(format!(
            "graphs.{role}: {} inputs and {} outputs, expected {} and {}",
            spec.inputs.len(),
            spec.outputs.len(),
            inputs.len(),
            outputs.len()
        ));
    }
    for (a, e) in spec
        .inputs
        .iter()
        .chain(&spec.outputs)
        .zip(inputs.iter().chain(outputs))
    {
        if a != e {
            return Err(format!(
                "graphs.{role}: {} {} {} does not fit the widths (expected {} {} {})",
                a.name,
                a.dtype,
                shape_string(&a.shape),
                e.name,
                e.dtype,
                shape_string(&e.shape)
            ));
        }
    }
    Ok(())
}

/// Package files are plain names inside the package directory: no separators, no `..`, no hidden
/// tricks, so a manifest can never point outside its package.
pub(crate) fn check_file_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "file name {name:?} is not a plain file name inside the package (letters, digits, '.', '_', '-')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_stay_inside_the_package() {
        for ok in [
            "lowres.onnx",
            "weights.bin",
            "tables.safetensors",
            "a-b_c.1",
        ] {
            assert!(check_file_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "../x",
            "/etc/passwd",
            "a/b",
            "..",
            ".",
            ".hidden",
            "",
            "a\\b",
            "x\0",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad}");
        }
    }
}
