//! Model packages: loading a package directory (or the embedded tiny package), checking every file
//! against the manifest's SHA-256 and sizes, and handing out the graphs and tables.
//!
//! A package is untrusted input: file names are confined to the package directory, symbolic links are
//! refused, sizes are bounded and checked before reading, and graph interfaces are checked against the
//! manifest before any backend sees them.

mod graph;
pub use graph::{GraphRole, OptionalGraph};
pub mod manifest;
pub(crate) mod tables;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use manifest::Manifest;
pub(crate) use tables::Tables;

use crate::error::{Error, Result};
use crate::geometry::Geometry;

/// Name of the manifest file in every package.
pub const MANIFEST_FILE: &str = "manifest.json";
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
const MAX_FILE_BYTES: u64 = 64 << 30;

/// A loaded and verified model package.
#[derive(Clone)]
pub struct Package {
    origin: String,
    dir: Option<PathBuf>,
    manifest: Manifest,
    geometry: Geometry,
    files: BTreeMap<String, Arc<[u8]>>,
}

impl std::fmt::Debug for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Package")
            .field("origin", &self.origin)
            .field("name", &self.manifest.name)
            .finish()
    }
}

impl Package {
    /// Load the package in directory `dir` and verify every file it lists.
    pub fn open(dir: impl AsRef<Path>) -> Result<Package> {
        let dir = dir.as_ref();
        let origin = dir.display().to_string();
        let meta = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
        if !meta.is_dir() {
            return Err(Error::package(
                &origin,
                ".",
                "not a directory (a package is a directory holding manifest.json)",
            ));
        }
        let manifest_bytes = read_confined(dir, MANIFEST_FILE, MAX_MANIFEST_BYTES, &origin)?;
        let text = std::str::from_utf8(&manifest_bytes)
            .map_err(|_| Error::package(&origin, MANIFEST_FILE, "not UTF-8 text"))?;
        let (manifest, geometry) =
            Manifest::parse(text).map_err(|r| Error::package(&origin, MANIFEST_FILE, r))?;
        let mut files = BTreeMap::new();
        for (name, entry) in &manifest.files {
            if entry.bytes > MAX_FILE_BYTES {
                return Err(Error::package(
                    &origin,
                    name,
                    format!("declared size {} exceeds the 64 GiB limit", entry.bytes),
                ));
            }
            let bytes = read_confined(dir, name, entry.bytes, &origin)?;
            files.insert(name.clone(), Arc::from(bytes));
        }
        let pkg = Package {
            origin,
            dir: Some(dir.to_path_buf()),
            manifest,
            geometry,
            files,
        };
        pkg.verify_files()?;
        Ok(pkg)
    }

    /// Load a package from in-memory files (`name -> bytes`, `manifest.json` among them).
    pub fn from_files(origin: &str, mut files: BTreeMap<String, Arc<[u8]>>) -> Result<Package> {
        let manifest_bytes = files
            .remove(MANIFEST_FILE)
            .ok_or_else(|| Error::package(origin, MANIFEST_FILE, "missing"))?;
        let text = std::str::from_utf8(&manifest_bytes)
            .map_err(|_| Error::package(origin, MANIFEST_FILE, "not UTF-8 text"))?;
        let (manifest, geometry) =
            Manifest::parse(text).map_err(|r| Error::package(origin, MANIFEST_FILE, r))?;
        for name in manifest.files.keys() {
            if !files.contains_key(name) {
                return Err(Error::package(
                    origin,
                    name,
                    "listed in the manifest but missing",
                ));
            }
        }
        files.retain(|k, _| manifest.files.contains_key(k));
        let pkg = Package {
            origin: origin.to_string(),
            dir: None,
            manifest,
            geometry,
            files,
        };
        pkg.verify_files()?;
        Ok(pkg)
    }

    /// The tiny random-weight package compiled into the library (`models/ps3-tiny-4k`).
    #[cfg(feature = "embedded-model")]
    pub fn embedded() -> Result<Package> {
        let files = EMBEDDED
            .iter()
            .map(|&(name, bytes)| (name.to_string(), Arc::<[u8]>::from(bytes)))
            .collect();
        Package::from_files(EMBEDDED_ORIGIN, files)
    }

    /// Where the package came from (its directory, or `embedded:<name>`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The package directory, if it was loaded from disk.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The model's geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// The bytes of one package file.
    pub fn file(&self, name: &str) -> Result<&[u8]> {
        self.files
            .get(name)
            .map(|b| &**b)
            .ok_or_else(|| Error::package(&self.origin, name, "not in the package"))
    }

    /// The same package holding only the files `names` (the others are released): what a part that
    /// loads later (the text tower) keeps alive.
    pub(crate) fn subset(&self, names: &[&str]) -> Package {
        Package {
            origin: self.origin.clone(),
            dir: self.dir.clone(),
            manifest: self.manifest.clone(),
            geometry: self.geometry.clone(),
            files: self
                .files
                .iter()
                .filter(|(k, _)| names.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Total size of the package files in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|b| b.len() as u64).sum()
    }

    /// Check sizes and SHA-256 of every file against the manifest.
    fn verify_files(&self) -> Result<()> {
        for (name, entry) in &self.manifest.files {
            let bytes = self.file(name)?;
            if bytes.len() as u64 != entry.bytes {
                return Err(Error::package(
                    &self.origin,
                    name,
                    format!(
                        "size {} bytes, the manifest says {} (truncated or replaced file)",
                        bytes.len(),
                        entry.bytes
                    ),
                ));
            }
            let digest = hex(&Sha256::digest(bytes));
            if !digest.eq_ignore_ascii_case(&entry.sha256) {
                return Err(Error::package(
                    &self.origin,
                    name,
                    format!(
                        "SHA-256 {digest} does not match the manifest's {} (corrupted or modified file)",
                        entry.sha256
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Parse the tables file and check it against the geometry and widths, as loading a model does
    /// before it builds a backend: a cheap way to validate a package (and what the package fuzz
    /// target runs).
    pub fn check_tables(&self) -> Result<()> {
        self.tables().map(|_| ())
    }

    /// The tables (position rows, prompts), checked against the geometry and widths.
    pub(crate) fn tables(&self) -> Result<Tables> {
        let file = &self.manifest.tables.file;
        Tables::parse(self.file(file)?, &self.manifest, &self.geometry)
            .map_err(|reason| Error::package(&self.origin, file, reason))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Read `name` from `dir`, refusing anything but a regular file (no symlinks) of at most `limit` bytes.
fn read_confined(dir: &Path, name: &str, limit: u64, origin: &str) -> Result<Vec<u8>> {
    manifest::check_file_name(name).map_err(|r| Error::package(origin, name, r))?;
    let path = dir.join(name);
    let meta = std::fs::symlink_metadata(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::package(origin, name, "missing"),
        _ => Error::io(&path, e),
    })?;
    if meta.file_type().is_symlink() {
        return Err(Error::package(
            origin,
            name,
            "is a symbolic link; package files must be regular files",
        ));
    }
    if !meta.is_file() {
        return Err(Error::package(origin, name, "is not a regular file"));
    }
    if meta.len() > limit {
        return Err(Error::package(
            origin,
            name,
            format!("{} bytes, more than the {limit} expected", meta.len()),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(&path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
        .map_err(|e| Error::io(&path, e))?;
    Ok(bytes)
}

#[cfg(feature = "embedded-model")]
const EMBEDDED_ORIGIN: &str = "embedded:ps3-tiny-4k";

#[cfg(feature = "embedded-model")]
macro_rules! embed {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/models/ps3-tiny-4k/", $name)) as &[u8])),*]
    };
}

#[cfg(feature = "embedded-model")]
static EMBEDDED: &[(&str, &[u8])] = embed!(
    "manifest.json",
    "lowres.onnx",
    "hrsel.onnx",
    "hrenc.onnx",
    "weights.bin",
    "tables.safetensors",
    "pool.onnx",
    "pool_weights.bin",
    "labels.json",
    "labels.safetensors",
    "text.onnx",
    "text_weights.bin",
    "tokenizer.json"
);
