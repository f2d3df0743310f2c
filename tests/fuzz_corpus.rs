//! The committed fuzz corpus as regression tests: every file of `fuzz/corpus/<target>/` (the seeds
//! and every finding kept there) goes through the same harness function the cargo-fuzz target runs
//! (`fuzz/harness/`), here without sanitizers but with every assertion. `scripts/fuzz.sh` runs the
//! fuzzers themselves; docs/reliability.md says what each target checks.

#[path = "../fuzz/harness/mod.rs"]
mod harness;

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no corpus files", dir.display());
    files
}

fn replay(target: &str) {
    let (_, run) = harness::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a known target");
    for file in corpus(target) {
        let data = std::fs::read(&file).expect("readable");
        let result = std::panic::catch_unwind(|| run(&data));
        assert!(
            result.is_ok(),
            "{} (fuzz target {target}) fails: replay it with `cargo fuzz run {target} {}`",
            file.display(),
            file.display()
        );
    }
}

#[test]
fn manifest_corpus() {
    replay("manifest");
}

#[test]
fn package_corpus() {
    replay("package");
}

#[test]
fn frame_corpus() {
    replay("frame");
}

#[test]
fn c_api_corpus() {
    harness::c_api::init();
    replay("c_api");
    // The seeds reach the graphs, not only the error paths.
    let encoded = harness::c_api::ENCODED.load(std::sync::atomic::Ordering::Relaxed);
    assert!(encoded >= 2, "{encoded} successful encodes");
}
