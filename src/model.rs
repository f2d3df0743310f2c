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
        let tables = package.tables()?;
        let backend: Box<dyn BackendModel> = match options.kind {
            BackendKind::Auto | BackendKind::Tract => {
                if options.kind == BackendKind::Auto {
                    log::info!(
                        "backend: tract on the CPU (no GPU backend compiled into this build)"
                    );
                }
                Box::new(TractModel::load(package, options.threads)?)
            }
        };
        Ok(Model {
            inner: Arc::new(ModelInner {
                origin: package.origin().to_string(),
                manifest: package.manifest().clone(),
                geometry: package.geometry().clone(),
                tables,
                backend,
                package_bytes: package.total_bytes(),
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

    pub(crate) fn inner(&self) -> &ModelInner {
        &self.inner
    }
}
