//! Files ps3rt writes are never left half-written: each is written under a temporary name next to
//! its final one and renamed into place (docs/reliability.md, "Atomic writes"). The engine cache has
//! its own tests (src/backend/tensorrt/cache.rs); the exporter's directory swap is tested by
//! tools/export/test_atomic_dir.py, run from here.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn ps3rt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ps3rt"))
        .args(args)
        .output()
        .expect("ps3rt runs")
}

/// Names in `dir` that look like temporary files of a write in progress.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

fn inputs(dir: &Path, n: usize) {
    let road = common::root().join("tests/fixtures/road-1280x720.png");
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        std::fs::copy(&road, dir.join(format!("frame-{i:02}.png"))).unwrap();
    }
}

#[test]
fn json_lines_replace_the_old_file_only_when_the_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    inputs(&frames, 3);
    let out = dir.path().join("results.jsonl");
    std::fs::write(&out, "old\n").unwrap();
    let o = ps3rt(&[
        "run",
        "--input",
        frames.to_str().unwrap(),
        "--budget",
        "16",
        "--json",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    for line in text.lines() {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(doc["budget"], 16);
    }
    assert!(temporaries(dir.path()).is_empty());
}

#[test]
fn a_killed_batch_run_leaves_the_old_json_lines_file() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    inputs(&frames, 40);
    let out = dir.path().join("results.jsonl");
    std::fs::write(&out, "old\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ps3rt"))
        .args([
            "run",
            "--input",
            frames.to_str().unwrap(),
            "--budget",
            "16",
            "--json",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first lines are in the temporary file, then kill the run mid-way.
    let tmp = dir
        .path()
        .join(format!(".results.jsonl.tmp-{}", child.id()));
    let started = Instant::now();
    loop {
        let lines = std::fs::read_to_string(&tmp).map_or(0, |t| t.lines().count());
        if lines >= 1 {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before it could be killed");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no line in {}",
            tmp.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The final name still holds the old file; what the run did is in the temporary one.
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "old\n");
    assert!(tmp.exists());
}

#[test]
fn a_json_lines_file_in_a_missing_folder_is_an_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    inputs(&frames, 2);
    let out = dir.path().join("missing/results.jsonl");
    let o = ps3rt(&[
        "run",
        "--input",
        frames.to_str().unwrap(),
        "--budget",
        "16",
        "--json",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("missing/results.jsonl"), "{stderr}");
    assert!(!out.exists());
    assert!(temporaries(dir.path()).is_empty());
}

#[test]
fn demo_outputs_are_complete_and_no_temporary_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let o = ps3rt(&[
        "demo",
        "--out-dir",
        dir.path().to_str().unwrap(),
        "--size",
        "320x180",
        "--budget",
        "16",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let png = image::open(dir.path().join("road-320x180.png")).unwrap();
    assert_eq!((png.width(), png.height()), (320, 180));
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("result.json")).unwrap()).unwrap();
    assert_eq!(doc["budget"], 16);
    assert!(dir.path().join("features.npy").is_file());
    assert!(temporaries(dir.path()).is_empty());
}

#[test]
fn the_exporters_directory_swap() {
    let script = common::root().join("tools/export/test_atomic_dir.py");
    let Ok(o) = Command::new("python3").arg(&script).output() else {
        eprintln!("python3 not found: tools/export/test_atomic_dir.py not run");
        return;
    };
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
