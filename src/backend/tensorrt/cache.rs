//! The on-disk cache of TensorRT engines and timing caches (pure Rust: no TensorRT needed to use or
//! test it).
//!
//! An engine is only valid for the graph and weights it was built from, the TensorRT version that
//! built it, the GPU (name and compute capability), the precision, the budget K of the high-res graph
//! and the builder settings; all of these form its [`EngineKey`]. The file name carries a short digest
//! of the key, and the file itself carries the whole key and a SHA-256 of its payload, so a renamed,
//! truncated, corrupted or foreign file is recognized on load and rebuilt, never handed to TensorRT.
//!
//! Layout (`<dir>` is [`default_dir`] unless given):
//!
//! ```text
//! <dir>/hrenc-k2560-fp16-<16 hex>.engine     header + key JSON + serialized engine
//! <dir>/lowres-fp16-<16 hex>.engine
//! <dir>/timing-trt10.3.0-sm87-<16 hex>.cache  header + key JSON + TensorRT timing cache
//! <dir>/.<name>.<pid>.<n>.tmp                 a write in progress (renamed into place when complete)
//! ```
//!
//! Writes are atomic: a temporary file in the same directory is written, flushed to disk (fsync),
//! renamed over the final name, and the directory is synced; a reader sees the old entry or the new
//! one, never a partial file. Concurrent builders of the same entry each write a complete file and the
//! last rename wins.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// First bytes of every cache file.
pub const MAGIC: &[u8; 8] = b"PS3RTTRT";
/// Version of the cache file format (bumped when the header changes).
pub const FILE_FORMAT: u32 = 1;
/// Version of ps3rt's engine recipe (how the shim turns a graph into a network: profiles, flags);
/// part of every engine key, bumped when it changes so old engines are rebuilt.
pub const RECIPE: u32 = 1;
/// Largest key JSON accepted in a header.
const MAX_KEY_BYTES: u32 = 64 << 10;
/// Temporary files older than this are someone's crashed write and are removed.
const STALE_TEMP: Duration = Duration::from_secs(24 * 3600);

/// What a cache file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A serialized TensorRT engine.
    Engine,
    /// A serialized TensorRT timing cache.
    TimingCache,
}

impl EntryKind {
    fn tag(self) -> u32 {
        match self {
            EntryKind::Engine => 1,
            EntryKind::TimingCache => 2,
        }
    }
}

/// Everything an engine depends on. Two engines with equal keys are interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineKey {
    /// [`RECIPE`] at the time the engine was built.
    pub recipe: u32,
    /// Graph role: "lowres", "hrsel" or "hrenc".
    pub graph: String,
    /// SHA-256 of the graph file (from the package manifest).
    pub graph_sha256: String,
    /// SHA-256 of the shared weights file the graph points into.
    pub weights_sha256: String,
    /// TensorRT library version that builds and runs the engine, e.g. "10.3.0.30".
    pub tensorrt: String,
    /// GPU name, e.g. "Orin (nvgpu)".
    pub gpu: String,
    /// Compute capability, e.g. "8.7".
    pub sm: String,
    /// Precision: "fp16", "tf32" or "fp32".
    pub precision: String,
    /// The high-res graph's budget K (None for the other graphs).
    pub budget: Option<usize>,
    /// The remaining builder settings, canonical (`name=value;...`).
    pub builder_flags: String,
}

impl EngineKey {
    /// The key's canonical JSON (field order fixed by the struct).
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// SHA-256 of the canonical JSON.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.canonical().as_bytes()).into()
    }

    /// The cache file name: readable prefix plus 16 hex digits of the digest.
    pub fn file_name(&self) -> String {
        let k = self.budget.map(|k| format!("-k{k}")).unwrap_or_default();
        format!(
            "{}{k}-{}-{}.engine",
            sanitize(&self.graph),
            sanitize(&self.precision),
            &hex(&self.digest())[..16]
        )
    }
}

/// What a timing cache depends on (TensorRT version and GPU; it is shared by every graph).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimingKey {
    /// TensorRT library version.
    pub tensorrt: String,
    /// GPU name.
    pub gpu: String,
    /// Compute capability.
    pub sm: String,
}

impl TimingKey {
    /// The key's canonical JSON.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The cache file name.
    pub fn file_name(&self) -> String {
        let digest = hex(&Sha256::digest(self.canonical().as_bytes()));
        format!(
            "timing-trt{}-sm{}-{}.cache",
            sanitize(&self.tensorrt),
            sanitize(&self.sm.replace('.', "")),
            &digest[..16]
        )
    }
}

/// The result of looking an entry up.
#[derive(Debug)]
pub enum Lookup {
    /// A valid entry: its payload.
    Hit(Vec<u8>),
    /// No entry.
    Miss,
    /// An entry exists but cannot be used (why); it should be rebuilt and overwritten.
    Invalid(String),
}

/// A directory of cached engines and timing caches.
#[derive(Debug, Clone)]
pub struct EngineCache {
    dir: PathBuf,
}

/// The default cache directory: `$PS3RT_ENGINE_CACHE`, else `$XDG_CACHE_HOME/ps3rt/engines`, else
/// `$HOME/.cache/ps3rt/engines`; None if none of these is set.
pub fn default_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("PS3RT_ENGINE_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("ps3rt/engines")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/ps3rt/engines")))
}

impl EngineCache {
    /// A cache in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> EngineCache {
        EngineCache { dir: dir.into() }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the engine of `key` is (or would be) stored.
    pub fn engine_path(&self, key: &EngineKey) -> PathBuf {
        self.dir.join(key.file_name())
    }

    /// Where the timing cache of `key` is (or would be) stored.
    pub fn timing_path(&self, key: &TimingKey) -> PathBuf {
        self.dir.join(key.file_name())
    }

    /// Look the engine of `key` up, checking the header, the full key and the payload's SHA-256.
    pub fn load_engine(&self, key: &EngineKey) -> Lookup {
        read_entry(&self.engine_path(key), EntryKind::Engine, &key.canonical())
    }

    /// Store the engine of `key` atomically; returns its path.
    pub fn store_engine(&self, key: &EngineKey, payload: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.engine_path(key);
        self.write_atomic(&path, EntryKind::Engine, &key.canonical(), payload)?;
        Ok(path)
    }

    /// Look the timing cache of `key` up.
    pub fn load_timing(&self, key: &TimingKey) -> Lookup {
        read_entry(
            &self.timing_path(key),
            EntryKind::TimingCache,
            &key.canonical(),
        )
    }

    /// Store the timing cache of `key` atomically; returns its path.
    pub fn store_timing(&self, key: &TimingKey, payload: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.timing_path(key);
        self.write_atomic(&path, EntryKind::TimingCache, &key.canonical(), payload)?;
        Ok(path)
    }

    /// Remove the engine of `key` (if any).
    pub fn remove_engine(&self, key: &EngineKey) -> std::io::Result<()> {
        match std::fs::remove_file(self.engine_path(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Remove temporary files of writes that never finished (older than a day); returns how many.
    pub fn remove_stale_temporaries(&self) -> usize {
        self.remove_temporaries_older_than(STALE_TEMP)
    }

    fn remove_temporaries_older_than(&self, age: Duration) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with('.') && name.ends_with(".tmp")) {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|d| d >= age);
            if old && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Write header + key + payload to a temporary file, fsync, rename over `path`, fsync the
    /// directory. The temporary file is removed on failure.
    fn write_atomic(
        &self,
        path: &Path,
        kind: EntryKind,
        key: &str,
        payload: &[u8],
    ) -> std::io::Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        create_cache_dir(&self.dir)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = self.dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            let mut writer = std::io::BufWriter::with_capacity(1 << 20, &mut file);
            writer.write_all(&header(kind, key, payload))?;
            writer.write_all(payload)?;
            writer.flush()?;
            drop(writer);
            file.sync_all()?;
            drop(file);
            std::fs::rename(&tmp, path)?;
            // The rename is durable once the directory is synced (best effort where unsupported).
            if let Ok(d) = std::fs::File::open(&self.dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// magic | format u32 | kind u32 | key length u32 | key JSON | payload length u64 | payload SHA-256.
fn header(kind: EntryKind, key: &str, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(64 + key.len());
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&FILE_FORMAT.to_le_bytes());
    h.extend_from_slice(&kind.tag().to_le_bytes());
    h.extend_from_slice(&(key.len() as u32).to_le_bytes());
    h.extend_from_slice(key.as_bytes());
    h.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    h.extend_from_slice(&Sha256::digest(payload));
    h
}

fn read_entry(path: &Path, kind: EntryKind, key: &str) -> Lookup {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
        Err(e) => return Lookup::Invalid(format!("{}: cannot open: {e}", path.display())),
    };
    match parse_entry(&mut file, kind, key) {
        Ok(payload) => Lookup::Hit(payload),
        Err(why) => Lookup::Invalid(format!("{}: {why}", path.display())),
    }
}

fn parse_entry(file: &mut std::fs::File, kind: EntryKind, key: &str) -> Result<Vec<u8>, String> {
    let size = file
        .metadata()
        .map_err(|e| format!("cannot stat: {e}"))?
        .len();
    let mut fixed = [0u8; 20];
    file.read_exact(&mut fixed)
        .map_err(|_| format!("truncated header ({size} bytes)"))?;
    if &fixed[..8] != MAGIC {
        return Err("not a ps3rt TensorRT cache file (bad magic)".into());
    }
    let u32_at =
        |i: usize| u32::from_le_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
    let format = u32_at(8);
    if format != FILE_FORMAT {
        return Err(format!(
            "cache file format {format}, this ps3rt writes {FILE_FORMAT}"
        ));
    }
    if u32_at(12) != kind.tag() {
        return Err(format!("holds a different kind of entry than {kind:?}"));
    }
    let key_len = u32_at(16);
    if key_len > MAX_KEY_BYTES {
        return Err(format!("key of {key_len} bytes"));
    }
    let mut stored_key = vec![0u8; key_len as usize];
    file.read_exact(&mut stored_key)
        .map_err(|_| "truncated key".to_string())?;
    if stored_key != key.as_bytes() {
        return Err(format!(
            "built for another configuration: {} (wanted {key})",
            String::from_utf8_lossy(&stored_key)
        ));
    }
    let mut tail = [0u8; 40];
    file.read_exact(&mut tail)
        .map_err(|_| "truncated header".to_string())?;
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&tail[..8]);
    let len = u64::from_le_bytes(len_bytes);
    let header_len = 20 + u64::from(key_len) + 40;
    if header_len.checked_add(len) != Some(size) {
        return Err(format!(
            "payload of {len} bytes announced, the file holds {} (truncated or appended to)",
            size.saturating_sub(header_len)
        ));
    }
    let mut payload = Vec::new();
    payload
        .try_reserve_exact(len as usize)
        .map_err(|_| format!("cannot allocate {len} bytes"))?;
    file.read_to_end(&mut payload)
        .map_err(|e| format!("read: {e}"))?;
    if payload.len() as u64 != len {
        return Err("changed while reading".into());
    }
    if Sha256::digest(&payload)[..] != tail[8..] {
        return Err("payload SHA-256 mismatch (corrupted)".into());
    }
    Ok(payload)
}

#[cfg(unix)]
fn create_cache_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
}

#[cfg(not(unix))]
fn create_cache_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> EngineKey {
        EngineKey {
            recipe: RECIPE,
            graph: "hrenc".into(),
            graph_sha256: "aa".repeat(32),
            weights_sha256: "bb".repeat(32),
            tensorrt: "10.3.0.30".into(),
            gpu: "Orin (nvgpu)".into(),
            sm: "8.7".into(),
            precision: "fp16".into(),
            budget: Some(2560),
            builder_flags: "tf32=1;opt=-1;workspace=0".into(),
        }
    }

    #[test]
    fn file_names_are_readable_and_safe() {
        assert!(key().file_name().starts_with("hrenc-k2560-fp16-"));
        assert!(key().file_name().ends_with(".engine"));
        let t = TimingKey {
            tensorrt: "10.3.0.30".into(),
            gpu: "Orin (nvgpu)".into(),
            sm: "8.7".into(),
        };
        assert!(t.file_name().starts_with("timing-trt10.3.0.30-sm87-"));
        let mut k = key();
        k.graph = "../../etc/passwd".into();
        assert!(!k.file_name().contains('/'));
    }

    #[test]
    fn header_layout() {
        let h = header(EntryKind::Engine, "{}", b"abc");
        assert_eq!(h.len(), 20 + 2 + 40);
        assert_eq!(&h[..8], MAGIC);
    }
}
