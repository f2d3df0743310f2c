//! [`Model`]: a verified package plus its backend, shared (cheaply cloned) by any number of encoders.

use std::path::Path;
use std::sync::Arc;

use crate::backend::tract::TractModel;
use crate::backend::{BackendKind, BackendModel, BackendOptions};
use crate::error::Result;
use crate::geometry::Geometry;
use crate::package::{Manifest, Package, Tables};

/// A loaded model. Cloning is cheap (a reference count); clones share the compiled graphs.
#[derive(Clone)]
pub struct Model {
    inner: Arc<ModelInner>,
}

pub(crate) struct ModelInner {
    pub origin: String,
    pub manifest: Manifest,
    pub geometry: Geometry,
    pub tables: Tables,
    pub backend: Box<dyn BackendModel>,
    pub package_bytes: u64,
    /// Why this backend (e.g. the reason `Auto` fell back to tract), or what it runs on.
    pub backend_note: Option<String>,
    /// Label bank, pool head size, text tower (issue 10; each optional in the package).
    pub labels: crate::labels::ModelLabels,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("origin", &self.inner.origin)
            .field("name", &self.inner.manifest.name)
            .field("backend", &self.inner.backend.name())
            .finish()
    }
}

impl Model {
    /// Load the package at `path` with the default backend choice.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Model::load_with(path, &BackendOptions::default())
    }

    /// Load the package at `path` with the given backend options.
    ///
    /// Files of 64 KiB and more (the weights) are mapped, not read: do not rewrite them in place
    /// while the model lives (write a new package directory instead); `PS3RT_PACKAGE_MMAP=0` reads
    /// them into memory ([`crate::package::MAP_ENV`]).
    pub fn load_with(path: impl AsRef<Path>, options: &BackendOptions) -> Result<Model> {
        Model::from_package(&Package::open(path)?, options)
    }

    /// The tiny random-weight package compiled into the library.
    #[cfg(feature = "embedded-model")]
    pub fn embedded() -> Result<Model> {
        Model::embedded_with(&BackendOptions::default())
    }

    /// The embedded package with the given backend options.
    #[cfg(feature = "embedded-model")]
    pub fn embedded_with(options: &BackendOptions) -> Result<Model> {
        Model::from_package(&Package::embedded()?, options)
    }

    /// Build the backend for an already verified package.
    pub fn from_package(package: &Package, options: &BackendOptions) -> Result<Model> {
        crate::allocator::configure_heap();
        let _heap = crate::allocator::returning_freed_memory();
        let tables = package.tables()?;
        let labels = crate::labels::ModelLabels::load(package)?;
        let (backend, backend_note) = choose_backend(package, options)?;
        // Whatever read the mapped files (tables, labels, the backend's graphs) holds its own
        // copies now; the pages leave the resident set, and fault back in if something reads them.
        package.release_pages();
        Ok(Model {
            inner: Arc::new(ModelInner {
                origin: package.origin().to_string(),
                manifest: package.manifest().clone(),
                geometry: package.geometry().clone(),
                tables,
                backend,
                package_bytes: package.total_bytes(),
                backend_note,
                labels,
            }),
        })
    }

    /// The package's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    /// The model's geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.inner.geometry
    }

    /// Where the package came from.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// Name of the backend running the graphs.
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// Why this backend was chosen or what it runs on: for `Auto` on tract, the reasons TensorRT
    /// and ONNX Runtime were not used (not compiled in, library missing, version, no GPU, engine
    /// build failed); on TensorRT, the library, GPU, precision and engines; on ONNX Runtime, its
    /// version and library. None for an explicit tract choice.
    pub fn backend_note(&self) -> Option<&str> {
        self.inner.backend_note.as_deref()
    }

    /// Token width C.
    pub fn width(&self) -> usize {
        self.inner.manifest.model.width
    }

    /// The package's default budget K.
    pub fn default_budget(&self) -> usize {
        self.inner.manifest.geometry.budget
    }

    /// Size of the package files in bytes.
    pub fn package_bytes(&self) -> u64 {
        self.inner.package_bytes
    }

    /// The package's label parts: bank, region pool head, text tower (docs/labels.md).
    pub fn labels(&self) -> &crate::labels::ModelLabels {
        &self.inner.labels
    }

    /// Encode `text` with the package's text tower: token ids, text embedding and selection prompt.
    /// An error when the package has no text tower.
    pub fn encode_text(&self, text: &str) -> Result<crate::labels::TextEmbedding> {
        self.inner.labels.encode_text(&self.inner.origin, text)
    }

    pub(crate) fn inner(&self) -> &ModelInner {
        &self.inner
    }
}

// --- TensorRT backend (issue 6): backend choice. ---

type Chosen = (Box<dyn BackendModel>, Option<String>);

/// The backend for `options`: `Tract`; `TensorRt` or `OnnxRuntime` (an error if it cannot run
/// here); `Auto`: TensorRT when it is usable here, else ONNX Runtime when a library opens and loads
/// the graphs, else tract, logging why.
fn choose_backend(package: &Package, options: &BackendOptions) -> Result<Chosen> {
    let tract = |note: Option<String>| -> Result<Chosen> {
        Ok((Box::new(TractModel::load(package, options.threads)?), note))
    };
    match options.kind {
        BackendKind::Tract => tract(None),
        BackendKind::TensorRt => tensorrt_backend(package, options, false),
        BackendKind::OnnxRuntime => onnxruntime_backend(package, options),
        BackendKind::Auto => {
            let reason = |e: crate::Error| match e {
                crate::Error::Backend { message, .. } => message,
                e => e.to_string(),
            };
            let trt = match tensorrt_backend(package, options, true) {
                Ok(chosen) => return Ok(chosen),
                Err(e) => reason(e),
            };
            match onnxruntime_backend(package, options) {
                Ok((model, note)) => {
                    let note = format!(
                        "{}; TensorRT not used: {trt}",
                        note.unwrap_or_else(|| "ONNX Runtime on the CPU".into())
                    );
                    Ok((model, Some(note)))
                }
                Err(e) => {
                    let why = format!(
                        "tract on the CPU; TensorRT not used: {trt}; ONNX Runtime not used: {}",
                        reason(e)
                    );
                    log::info!("backend: {why}");
                    tract(Some(why))
                }
            }
        }
    }
}

#[cfg(feature = "onnxruntime")]
fn onnxruntime_backend(package: &Package, options: &BackendOptions) -> Result<Chosen> {
    use crate::backend::onnxruntime::{OnnxRuntimeModel, OnnxRuntimeOptions};
    let ort = OnnxRuntimeOptions {
        library: options.onnxruntime_library.clone(),
    };
    let model = OnnxRuntimeModel::load(package, &ort, options.threads)?;
    let note = format!(
        "ONNX Runtime {} ({}) on the CPU",
        model.version(),
        model.library().display()
    );
    log::info!("backend: {note}");
    Ok((Box::new(model), Some(note)))
}

#[cfg(not(feature = "onnxruntime"))]
fn onnxruntime_backend(_package: &Package, _options: &BackendOptions) -> Result<Chosen> {
    Err(crate::Error::Backend {
        backend: "onnxruntime",
        stage: "load".into(),
        message: "ONNX Runtime is not compiled into this build (cargo feature `onnxruntime`)"
            .into(),
    })
}

#[cfg(feature = "tensorrt")]
fn tensorrt_backend(package: &Package, options: &BackendOptions, auto: bool) -> Result<Chosen> {
    use crate::backend::tensorrt::TensorRtModel;
    if auto {
        // Cheap check first, so a machine without TensorRT or a GPU does not pay for more.
        let probe = crate::backend::tensorrt::probe(&options.tensorrt);
        if let Some((_, why)) = probe.unusable {
            return Err(crate::Error::Backend {
                backend: "tensorrt",
                stage: "load".into(),
                message: why,
            });
        }
    }
    let model = TensorRtModel::load(package, &options.tensorrt)?;
    let note = model.note();
    log::info!("backend: {note}");
    Ok((Box::new(model), Some(note)))
}

#[cfg(not(feature = "tensorrt"))]
fn tensorrt_backend(_package: &Package, _options: &BackendOptions, _auto: bool) -> Result<Chosen> {
    Err(crate::Error::Backend {
        backend: "tensorrt",
        stage: "load".into(),
        message: "TensorRT is not compiled into this build (cargo feature `tensorrt`)".into(),
    })
}
