//! The package loader over corrupted files: the tiny package with edits applied to its files in
//! memory, loaded with `Package::from_files`, then every graph decoded (`graph_proto`: protobuf,
//! external weights, interface) and the tables parsed (`check_tables`). No backend is built (tract's
//! graph optimization takes seconds); everything before it runs.
//!
//! Input: a flags byte, then edits `[file][kind][offset u32][n][n bytes]`. Flag bit 0 rewrites the
//! manifest's SHA-256 and sizes after the edits, so the edited bytes get past the hash check and
//! reach the parsers behind it; without it the hash and size checks are what is tested.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use ps3rt::package::GraphRole;
use ps3rt::{Error, Package};
use sha2::{Digest, Sha256};

use super::Bytes;

const MANIFEST: &str = include_str!("../../models/ps3-tiny-4k/manifest.json");

/// File names in package order, and each file's bytes.
type PackageFiles = (Vec<String>, BTreeMap<String, Arc<[u8]>>);

/// The tiny package's files, `manifest.json` first, then the files its manifest lists (from the
/// embedded copy, which the main test suite checks equals `models/ps3-tiny-4k`).
fn pristine() -> &'static PackageFiles {
    static FILES: OnceLock<PackageFiles> = OnceLock::new();
    FILES.get_or_init(|| {
        let p = Package::embedded().expect("the embedded package loads");
        let mut names = vec!["manifest.json".to_string()];
        let mut files = BTreeMap::new();
        files.insert(
            "manifest.json".to_string(),
            Arc::<[u8]>::from(MANIFEST.as_bytes()),
        );
        for name in p.manifest().files.keys() {
            files.insert(
                name.clone(),
                Arc::<[u8]>::from(p.file(name).expect("listed")),
            );
            names.push(name.clone());
        }
        (names, files)
    })
}

fn apply(bytes: &mut Vec<u8>, kind: u8, offset: u32, patch: &[u8]) {
    let at = if bytes.is_empty() {
        0
    } else {
        offset as usize % (bytes.len() + 1)
    };
    match kind % 4 {
        // Overwrite (extending past the end if needed).
        0 => {
            let end = at + patch.len();
            if end > bytes.len() {
                bytes.resize(end, 0);
            }
            bytes[at..end].copy_from_slice(patch);
        }
        // Insert.
        1 => {
            bytes.splice(at..at, patch.iter().copied());
        }
        // Truncate.
        2 => bytes.truncate(at),
        // Delete up to n bytes.
        _ => {
            let end = (at + patch.len().max(1)).min(bytes.len());
            bytes.drain(at..end);
        }
    }
}

/// Write the real SHA-256 and size of every file into the manifest's "files" table (where the
/// manifest is still JSON with such a table).
fn fix_hashes(files: &mut BTreeMap<String, Arc<[u8]>>) {
    let Some(manifest) = files.get("manifest.json") else {
        return;
    };
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(manifest) else {
        return;
    };
    let Some(table) = value.get_mut("files").and_then(|f| f.as_object_mut()) else {
        return;
    };
    for (name, entry) in table.iter_mut() {
        let Some(bytes) = files.get(name) else {
            continue;
        };
        if let Some(entry) = entry.as_object_mut() {
            let hex: String = Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            entry.insert("sha256".into(), hex.into());
            entry.insert("bytes".into(), bytes.len().into());
        }
    }
    if let Ok(text) = serde_json::to_vec(&value) {
        files.insert("manifest.json".into(), text.into());
    }
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let mut input = Bytes::new(data);
    let flags = input.u8();
    let (names, pristine_files) = pristine();
    let mut files = pristine_files.clone();
    let mut edited: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    let mut edits = 0;
    while !input.is_empty() && edits < 16 {
        let name = names[usize::from(input.u8()) % names.len()].as_str();
        let kind = input.u8();
        let offset = input.u32();
        let n = usize::from(input.u8() % 64);
        let patch = input.take(n);
        let bytes = edited
            .entry(name)
            .or_insert_with(|| files.get(name).map(|b| b.to_vec()).unwrap_or_default());
        apply(bytes, kind, offset, patch);
        edits += 1;
    }
    // Flag bit 1 removes a file altogether.
    if flags & 2 != 0 {
        files.remove(&names[usize::from(flags >> 4) % names.len()]);
    }
    for (name, bytes) in edited {
        if files.contains_key(name) {
            files.insert(name.to_string(), bytes.into());
        }
    }
    if flags & 1 != 0 {
        fix_hashes(&mut files);
    }
    let package = match Package::from_files("fuzz", files) {
        Ok(p) => p,
        Err(Error::Package { .. }) => return,
        Err(e) => panic!("a corrupted package must give a package error, got {e:?}"),
    };
    for role in GraphRole::ALL {
        match package.graph_proto(role) {
            Ok(proto) => assert!(proto.graph.is_some()),
            Err(Error::Package { .. }) => {}
            Err(e) => panic!("{}: expected a package error, got {e:?}", role.name()),
        }
    }
    match package.check_tables() {
        Ok(()) | Err(Error::Package { .. }) => {}
        Err(e) => panic!("tables: expected a package error, got {e:?}"),
    }
}
