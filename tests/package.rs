//! Model packages are untrusted input: every corruption gets a named error, never a panic.

mod common;

use std::path::Path;

use ps3rt::{Error, Model, Package};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn copy_package() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(common::tiny_package()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn write_manifest(dir: &Path, m: &Value) {
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(m).unwrap(),
    )
    .unwrap();
}

/// Rewrite `file` and update its hash and size in the manifest, so only the check under test fires.
fn replace_file(dir: &Path, file: &str, bytes: &[u8]) {
    std::fs::write(dir.join(file), bytes).unwrap();
    let mut m = manifest(dir);
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    m["files"][file]["sha256"] = Value::from(hex);
    m["files"][file]["bytes"] = Value::from(bytes.len());
    write_manifest(dir, &m);
}

fn open_err(dir: &Path) -> String {
    let err = Package::open(dir)
        .and_then(|p| Model::from_package(&p, &Default::default()))
        .unwrap_err();
    assert!(
        matches!(err, Error::Package { .. }),
        "expected a package error, got {err:?}"
    );
    err.to_string()
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error {msg:?} does not mention {p:?}");
    }
}

#[test]
fn the_committed_and_embedded_packages_load() {
    let p = Package::open(common::tiny_package()).unwrap();
    assert_eq!(p.manifest().name, "ps3-tiny-4k");
    assert_eq!(p.geometry().scales(), &[378, 756, 1512, 3780]);
    assert_eq!(p.manifest().geometry.budget_split, vec![85, 341, 2134]);
    let e = Package::embedded().unwrap();
    assert_eq!(e.manifest().files.len(), p.manifest().files.len());
    for (name, entry) in &p.manifest().files {
        assert_eq!(
            e.manifest().files[name].sha256,
            entry.sha256,
            "{name}: embedded copy differs from models/"
        );
    }
}

#[test]
fn missing_and_unreadable_manifests() {
    let dir = copy_package();
    std::fs::remove_file(dir.path().join("manifest.json")).unwrap();
    assert_mentions(&open_err(dir.path()), &["manifest.json", "missing"]);

    std::fs::write(dir.path().join("manifest.json"), b"{ not json").unwrap();
    assert_mentions(&open_err(dir.path()), &["manifest.json", "not valid JSON"]);

    std::fs::write(dir.path().join("manifest.json"), b"{\"hello\": 1}").unwrap();
    assert_mentions(
        &open_err(dir.path()),
        &["manifest.json", "not a ps3rt package manifest"],
    );

    let err = Package::open(dir.path().join("nope")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}

#[test]
fn format_version_is_checked() {
    let dir = copy_package();
    let mut m = manifest(dir.path());
    m["format_version"] = Value::from(2);
    write_manifest(dir.path(), &m);
    assert_mentions(
        &open_err(dir.path()),
        &["format_version 2", "not supported"],
    );
}

#[test]
fn corrupted_truncated_and_missing_files_are_named() {
    let dir = copy_package();
    let mut bytes = std::fs::read(dir.path().join("weights.bin")).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(dir.path().join("weights.bin"), &bytes).unwrap();
    assert_mentions(
        &open_err(dir.path()),
        &["weights.bin", "SHA-256", "does not match"],
    );

    let dir = copy_package();
    let bytes = std::fs::read(dir.path().join("hrenc.onnx")).unwrap();
    std::fs::write(dir.path().join("hrenc.onnx"), &bytes[..bytes.len() / 2]).unwrap();
    assert_mentions(&open_err(dir.path()), &["hrenc.onnx", "truncated"]);

    let dir = copy_package();
    std::fs::remove_file(dir.path().join("tables.safetensors")).unwrap();
    assert_mentions(&open_err(dir.path()), &["tables.safetensors", "missing"]);

    let dir = copy_package();
    let mut bytes = std::fs::read(dir.path().join("lowres.onnx")).unwrap();
    bytes.extend_from_slice(b"junk");
    std::fs::write(dir.path().join("lowres.onnx"), &bytes).unwrap();
    assert_mentions(&open_err(dir.path()), &["lowres.onnx", "bytes, more than"]);
}

#[test]
fn garbage_graphs_and_tables_are_rejected_after_the_hash_check() {
    let dir = copy_package();
    replace_file(
        dir.path(),
        "hrsel.onnx",
        b"this is not protobuf at all \xff\xff\xff\xff",
    );
    assert_mentions(&open_err(dir.path()), &["hrsel.onnx"]);

    let dir = copy_package();
    replace_file(
        dir.path(),
        "tables.safetensors",
        b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ",
    );
    assert_mentions(&open_err(dir.path()), &["tables.safetensors", "missing"]);
}

#[test]
fn paths_outside_the_package_and_symlinks_are_refused() {
    let dir = copy_package();
    let mut m = manifest(dir.path());
    let entry = m["files"]["weights.bin"].clone();
    m["files"]["../weights.bin"] = entry;
    write_manifest(dir.path(), &m);
    assert_mentions(
        &open_err(dir.path()),
        &["../weights.bin", "not a plain file name"],
    );

    let dir = copy_package();
    let outside = tempfile::tempdir().unwrap();
    std::fs::rename(
        dir.path().join("weights.bin"),
        outside.path().join("weights.bin"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("weights.bin"),
        dir.path().join("weights.bin"),
    )
    .unwrap();
    assert_mentions(&open_err(dir.path()), &["weights.bin", "symbolic link"]);
}

#[test]
fn inconsistent_geometry_and_shapes_are_refused() {
    let dir = copy_package();
    let mut m = manifest(dir.path());
    m["geometry"]["budget_split"] = serde_json::json!([85, 341, 2133]);
    write_manifest(dir.path(), &m);
    assert_mentions(&open_err(dir.path()), &["budget_split", "differs"]);

    let dir = copy_package();
    let mut m = manifest(dir.path());
    m["geometry"]["grids"] = serde_json::json!([27, 54, 108, 271]);
    write_manifest(dir.path(), &m);
    assert_mentions(&open_err(dir.path()), &["grids"]);

    // The manifest claims a different width everywhere; the graphs disagree.
    let dir = copy_package();
    let mut m = manifest(dir.path());
    m["model"]["width"] = Value::from(64);
    m["model"]["head_dim"] = Value::from(32);
    for g in ["lowres", "hrenc", "pool"] {
        for io in ["inputs", "outputs"] {
            for t in m["graphs"][g][io].as_array_mut().unwrap() {
                let n = t["shape"].as_array().unwrap().len();
                for (i, d) in t["shape"].as_array_mut().unwrap().iter_mut().enumerate() {
                    if d.as_u64() == Some(32) && i == n - 1 {
                        *d = Value::from(64); // width
                    } else if d.as_u64() == Some(16) && i == n - 1 {
                        *d = Value::from(32); // head_dim of the KV cache
                    }
                }
            }
        }
    }
    // The optional label parts are sized by the width too (their own checks are in tests/labels.rs).
    m["text"]["embedding_dim"] = Value::from(64);
    m["text"]["prompt_dim"] = Value::from(64);
    m["labels"]["dim"] = Value::from(64);
    for t in m["graphs"]["text"]["outputs"].as_array_mut().unwrap() {
        t["shape"] = serde_json::json!([64]);
    }
    write_manifest(dir.path(), &m);
    assert_mentions(
        &open_err(dir.path()),
        &["tables.safetensors", "pos.756", "[2916, 64]"],
    );
    let pkg = Package::open(dir.path()).unwrap();
    let err = pkg
        .graph_proto(ps3rt::package::GraphRole::LowRes)
        .unwrap_err()
        .to_string();
    assert_mentions(
        &err,
        &[
            "lowres.onnx",
            "output hidden [729, 32] differs from the manifest's hidden [729, 64]",
        ],
    );

    let dir = copy_package();
    let mut m = manifest(dir.path());
    m["graphs"]["hrenc"]["inputs"][0]["shape"] = serde_json::json!(["K", 589]);
    write_manifest(dir.path(), &m);
    assert_mentions(&open_err(dir.path()), &["graphs.hrenc", "patches"]);
}

#[test]
fn external_weights_must_stay_inside_the_weights_file() {
    // A weights file shorter than the graphs' external ranges (hash updated so only the range check fires).
    let dir = copy_package();
    let bytes = std::fs::read(dir.path().join("weights.bin")).unwrap();
    replace_file(dir.path(), "weights.bin", &bytes[..1024]);
    assert_mentions(&open_err(dir.path()), &["outside weights.bin"]);
}
