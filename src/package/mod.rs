//! Model packages: loading a package directory (or the embedded tiny package), checking every file
//! against the manifest's SHA-256 and sizes, and handing out the graphs and tables.
//!
//! A package is untrusted input: file names are confined to the package directory, symbolic links are
//! refused, sizes are bounded and checked before reading, and graph interfaces are checked against the
//! manifest before any backend sees them.

mod bytes;
mod graph;
use bytes::FileBytes;
pub use bytes::MAP_ENV;
#[cfg_attr(not(feature = "onnxruntime"), allow(unused_imports))]
pub(crate) use bytes::switch_on;
pub use graph::{GraphRole, OptionalGraph};
pub mod manifest;
pub(crate) mod tables;

use std::collections::BTreeMap;
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
    files: BTreeMap<String, FileBytes>,
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
        let manifest_bytes = read_confined(dir, MANIFEST_FILE, MAX_MANIFEST_BYTES, &origin, false)?;
        let (manifest, geometry) = parse_manifest(&origin, &manifest_bytes)?;
        let mut files = BTreeMap::new();
        let map = bytes::mapping_enabled();
        for (name, entry) in &manifest.files {
            if entry.bytes > MAX_FILE_BYTES {
                return Err(Error::package(
                    &origin,
                    name,
                    format!("declared size {} exceeds the 64 GiB limit", entry.bytes),
                ));
            }
            let bytes = read_confined(dir, name, entry.bytes, &origin, map)?;
            files.insert(name.clone(), bytes);
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
        let (manifest, geometry) = parse_manifest(origin, &manifest_bytes)?;
        for name in manifest.files.keys() {
            if !files.contains_key(name) {
                return Err(Error::package(
                    origin,
                    name,
                    "listed in the manifest but missing",
                ));
            }
        }
        let files = files
            .into_iter()
            .filter(|(k, _)| manifest.files.contains_key(k))
            .map(|(k, v)| (k, FileBytes::Heap(v)))
            .collect();
        Package::verified(origin, manifest, geometry, files)
    }

    /// A package of files already in memory (no directory), once every file checks out.
    fn verified(
        origin: &str,
        manifest: Manifest,
        geometry: Geometry,
        files: BTreeMap<String, FileBytes>,
    ) -> Result<Package> {
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
        // Copied into the heap rather than used in place: used in place, the two-thread soak test
        // (tests/cli_soak.rs) first-touched ~1.9 MB after its warm-up (1.57 page faults a frame)
        // in 2 of 4 fresh-clone CI runs; the heap layout the copy leaves behind never did. Cause not
        // established (docs/performance.md, finding 35).
        let manifest = EMBEDDED
            .iter()
            .find(|(name, _)| *name == MANIFEST_FILE)
            .map(|&(_, bytes)| bytes)
            .ok_or_else(|| Error::package(EMBEDDED_ORIGIN, MANIFEST_FILE, "missing"))?;
        let (manifest, geometry) = parse_manifest(EMBEDDED_ORIGIN, manifest)?;
        let files = EMBEDDED
            .iter()
            .filter(|(name, _)| manifest.files.contains_key(*name))
            .map(|&(name, bytes)| (name.to_string(), FileBytes::Heap(Arc::from(bytes))))
            .collect();
        Package::verified(EMBEDDED_ORIGIN, manifest, geometry, files)
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

    /// Drop the pages of the package's mapped files from this process's resident set: what a
    /// backend calls once it has built its own copies of the weights. The bytes stay readable
    /// (pages fault back in from the file when read again); files held in memory are untouched.
    /// Returns how many bytes of mappings were released.
    pub(crate) fn release_pages(&self) -> u64 {
        let released: u64 = self
            .files
            .values()
            .filter(|b| b.release_pages())
            .map(|b| b.len() as u64)
            .sum();
        if released > 0 {
            log::debug!(
                "{}: released {released} bytes of mapped package files from the resident set",
                self.origin
            );
        }
        released
    }

    /// Whether the file `name` is mapped from the package directory (rather than in memory).
    pub fn is_mapped(&self, name: &str) -> bool {
        self.files.get(name).is_some_and(FileBytes::is_mapped)
    }

    /// Check sizes and SHA-256 of every file against the manifest. Mapped files are hashed in
    /// chunks whose pages are released once hashed, so verifying keeps at most one chunk of a
    /// large file resident.
    fn verify_files(&self) -> Result<()> {
        for (name, entry) in &self.manifest.files {
            let file = self
                .files
                .get(name)
                .ok_or_else(|| Error::package(&self.origin, name, "not in the package"))?;
            let bytes: &[u8] = file;
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
            let mut hasher = Sha256::new();
            for (i, chunk) in bytes.chunks(bytes::HASH_CHUNK).enumerate() {
                hasher.update(chunk);
                let start = i * bytes::HASH_CHUNK;
                file.release_range(start..start + chunk.len());
            }
            let digest = hex(&hasher.finalize());
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

/// Parse and check `manifest.json`'s bytes.
fn parse_manifest(origin: &str, bytes: &[u8]) -> Result<(Manifest, Geometry)> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Error::package(origin, MANIFEST_FILE, "not UTF-8 text"))?;
    Manifest::parse(text).map_err(|r| Error::package(origin, MANIFEST_FILE, r))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Read (or, with `map`, map when large) `name` from `dir`, refusing anything but a regular file (no
/// symlinks) of at most `limit` bytes.
fn read_confined(dir: &Path, name: &str, limit: u64, origin: &str, map: bool) -> Result<FileBytes> {
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
    let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    // What was opened is what was checked: a file swapped for something else between the check
    // and the open (a FIFO or a device would block or never end a read, and cannot be mapped) is
    // refused, and the size bounds the read and the mapping.
    let opened = file.metadata().map_err(|e| Error::io(&path, e))?;
    if !opened.is_file() {
        return Err(Error::package(origin, name, "is not a regular file"));
    }
    if opened.len() > limit {
        return Err(Error::package(
            origin,
            name,
            format!("{} bytes, more than the {limit} expected", opened.len()),
        ));
    }
    FileBytes::load(file, opened.len(), map).map_err(|e| Error::io(&path, e))
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// How many bytes of the mapping that holds `bytes` are resident in this process, from
    /// `/proc/self/smaps` (the `Rss:` line of the mapping whose range holds the slice's start).
    fn resident(bytes: &[u8]) -> u64 {
        let addr = bytes.as_ptr() as u64;
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = range.split_once('-')
                && let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&addr);
            } else if inside && let Some(kb) = line.strip_prefix("Rss:") {
                let kb = kb.trim().trim_end_matches("kB").trim();
                return kb.parse::<u64>().expect("Rss value") * 1024;
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    fn tiny_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ps3-tiny-4k")
    }

    /// Large files are mapped, verifying leaves none of them resident, reading faults them in,
    /// releasing drops them again, and the bytes read back after a release are the file's.
    #[test]
    fn mapped_weights_leave_the_resident_set_and_read_back_unchanged() {
        let pkg = Package::open(tiny_dir()).expect("tiny package");
        if !bytes::mapping_enabled() {
            eprintln!("skipped: {MAP_ENV} turns mapping off in this environment");
            return;
        }
        let name = "weights.bin";
        assert!(pkg.is_mapped(name), "{name} is not mapped");
        assert!(!pkg.is_mapped("lowres.onnx"), "a small file was mapped");
        let weights = pkg.file(name).expect("weights");
        assert!(weights.len() as u64 >= bytes::MAP_THRESHOLD);
        assert_eq!(resident(weights), 0, "verification left pages resident");

        let sum: u64 = weights.iter().map(|&b| u64::from(b)).sum();
        assert!(
            resident(weights) >= weights.len() as u64,
            "{} of {} bytes resident after reading them all",
            resident(weights),
            weights.len()
        );
        assert!(pkg.release_pages() >= weights.len() as u64);
        assert_eq!(resident(weights), 0, "release_pages left pages resident");

        // Read again after the release: the same bytes, which still hash to the manifest's value.
        assert_eq!(weights.iter().map(|&b| u64::from(b)).sum::<u64>(), sum);
        assert!(pkg.verify_files().is_ok());
    }

    /// With mapping off, the same files are read into memory and verify the same.
    #[test]
    fn files_read_into_memory_equal_mapped_ones() {
        let dir = tiny_dir();
        let mapped = Package::open(&dir).expect("tiny package");
        for (name, entry) in &mapped.manifest().files {
            let read = read_confined(&dir, name, entry.bytes, "test", false).expect("read");
            assert!(!read.is_mapped());
            assert_eq!(&*read, mapped.file(name).expect("file"), "{name} differs");
        }
    }

    #[test]
    fn on_by_default_switches_parse() {
        for (value, on) in [
            (None, true),
            (Some("1"), true),
            (Some(""), true),
            (Some("0"), false),
            (Some(" Off "), false),
            (Some("no"), false),
            (Some("false"), false),
        ] {
            assert_eq!(bytes::switch_allows(value), on, "{value:?}");
        }
    }
}
