//! `ps3rt run` on folders and globs: JSON Lines, overlays and features per file, failures counted,
//! `--fail-fast`, the summary table, exit codes, and no progress output when not on a terminal.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ps3rt(args: &[&str]) -> std::process::Output {
    assert_cmd::cargo::cargo_bin_cmd!("ps3rt")
        .args(args)
        .output()
        .expect("ps3rt runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A folder with two copies of the road fixture (one in a subfolder), a file that is not an image
/// but is named like one, a text file and a hidden image.
fn frames() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let road = root().join("tests/fixtures/road-1280x720.png");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::copy(&road, dir.path().join("a.png")).unwrap();
    std::fs::copy(&road, dir.path().join("sub/c.png")).unwrap();
    std::fs::copy(&road, dir.path().join(".hidden.png")).unwrap();
    std::fs::write(dir.path().join("b.jpg"), b"not a jpeg").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
    dir
}

fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_folder_run_writes_json_lines_overlays_and_features() {
    let input = frames();
    let out = tempfile::tempdir().unwrap();
    let jsonl = out.path().join("results.jsonl");
    let overlays = out.path().join("overlays");
    let feats = out.path().join("features");
    let o = ps3rt(&[
        "run",
        "--input",
        s(input.path()),
        "--recursive",
        "--budget",
        "64",
        "--json",
        s(&jsonl),
        "--overlay",
        s(&overlays),
        "--overlay-width",
        "320",
        "--features",
        s(&feats),
    ]);
    // b.jpg cannot be decoded: the run goes on, then exits 4 (bad input).
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    let stderr = text(&o.stderr);
    assert!(
        stdout.contains("summary  3 files: 2 ok, 1 failed; 1 other file skipped"),
        "{stdout}"
    );
    for stage in [
        "total",
        "preprocess",
        "lowres",
        "hrsel",
        "select",
        "gather",
        "hrenc",
    ] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(stage)),
            "summary lacks {stage}: {stdout}"
        );
    }
    assert!(stdout.contains("FAIL  b.jpg"), "{stdout}");
    assert!(stdout.contains("ok    sub/c.png"), "{stdout}");
    assert!(
        stderr.contains("b.jpg") && stderr.contains("1 of 3 files failed"),
        "{stderr}"
    );
    // Not a terminal: no progress bar, no escape codes.
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}'),
        "{stderr:?}"
    );

    let lines = json_lines(&jsonl);
    assert_eq!(lines.len(), 3);
    let paths: Vec<&str> = lines
        .iter()
        .map(|l| l["input"]["path"].as_str().unwrap())
        .collect();
    assert!(
        paths[0].ends_with("a.png")
            && paths[1].ends_with("b.jpg")
            && paths[2].ends_with("sub/c.png")
    );
    assert_eq!(lines[0]["tokens"], 729 + 64);
    assert_eq!(lines[0]["selected"].as_array().unwrap().len(), 64);
    assert_eq!(lines[1]["error"]["code"], 4);
    assert!(
        lines[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("b.jpg")
    );
    assert!(lines[1].get("tokens").is_none());
    // One encoder for all files: the same frame gives the same selection.
    assert_eq!(lines[0]["selected"], lines[2]["selected"]);

    for (stem, line) in [("a", &lines[0]), ("sub/c", &lines[2])] {
        let png = overlays.join(format!("{stem}.png"));
        assert_eq!(line["outputs"]["overlay"], png.display().to_string());
        let img = image::open(&png).expect("an overlay per file").to_rgb8();
        assert_eq!(img.width(), 320);
        let npy = feats.join(format!("{stem}.npy"));
        assert_eq!(line["outputs"]["features"], npy.display().to_string());
        let bytes = std::fs::read(&npy).unwrap();
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(npy.shape(), &[729 + 64, 32]);
    }
    assert!(!overlays.join("b.png").exists());
    assert!(!overlays.join(".hidden.png").exists());
}

#[test]
fn without_recursive_subfolders_are_left_out_and_fail_fast_stops() {
    let input = frames();
    let out = tempfile::tempdir().unwrap();
    let jsonl = out.path().join("r.jsonl");
    let o = ps3rt(&[
        "run",
        "--input",
        s(input.path()),
        "--budget",
        "64",
        "--json",
        s(&jsonl),
        "--fail-fast",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    // a.png, then b.jpg fails; sub/ is not walked.
    assert!(
        stdout.contains("summary  2 files: 1 ok, 1 failed, 0 not run (--fail-fast)"),
        "{stdout}"
    );
    assert!(
        text(&o.stderr).contains("--fail-fast"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(json_lines(&jsonl).len(), 2);

    // Sorted so the bad file comes first: nothing else runs.
    std::fs::rename(input.path().join("b.jpg"), input.path().join("0-bad.png")).unwrap();
    let o = ps3rt(&[
        "run",
        "--input",
        s(input.path()),
        "--budget",
        "64",
        "--fail-fast",
    ]);
    assert_eq!(o.status.code(), Some(4));
    assert!(
        text(&o.stdout).contains("2 files: 0 ok, 1 failed, 1 not run (--fail-fast)"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn a_glob_with_json_format_streams_json_lines_on_stdout() {
    let input = frames();
    let pattern = format!("{}/*.png", input.path().display());
    let o = ps3rt(&[
        "run", "--input", &pattern, "--budget", "64", "--format", "json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    let docs: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("stdout is JSON Lines only"))
        .collect();
    // Only a.png matches (the hidden file does not, b.jpg and sub/ are not *.png here).
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["budget"], 64);
    // The summary goes to stderr; -q silences it.
    assert!(
        text(&o.stderr).contains("summary  1 file: 1 ok"),
        "{}",
        text(&o.stderr)
    );
    let o = ps3rt(&[
        "-q", "run", "--input", &pattern, "--budget", "64", "--format", "json",
    ]);
    assert!(o.status.success());
    assert!(o.stderr.is_empty(), "{}", text(&o.stderr));

    // A glob over every level below.
    let deep = format!("{}/**/*.png", input.path().display());
    let o = ps3rt(&[
        "run", "--input", &deep, "--budget", "64", "--format", "json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).lines().count(), 2);
}

#[test]
fn batch_usage_and_input_errors() {
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("readme.txt"), b"x").unwrap();
    let o = ps3rt(&["run", "--input", s(empty.path())]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("no images or tensors found") && err.contains("1 other file skipped"),
        "{err}"
    );

    let o = ps3rt(&[
        "run",
        "--input",
        &format!("{}/*.png", empty.path().display()),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));

    let input = frames();
    let sel = empty.path().join("sel.json");
    std::fs::write(&sel, br#"{"steps": [[]]}"#).unwrap();
    let o = ps3rt(&["run", "--input", s(input.path()), "--selection", s(&sel)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));

    // A bad model fails before any file is read.
    let o = ps3rt(&[
        "run",
        "--input",
        s(input.path()),
        "--model",
        s(empty.path()),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
}

#[test]
fn overlays_written_inside_the_input_folder_are_not_inputs_next_time() {
    let input = frames();
    std::fs::remove_file(input.path().join("b.jpg")).unwrap();
    let overlays = input.path().join("overlays");
    let args = [
        "run",
        "--input",
        s(input.path()),
        "--recursive",
        "--budget",
        "64",
        "--overlay",
        s(&overlays),
        "--overlay-width",
        "128",
    ];
    let first = ps3rt(&args);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(overlays.join("a.png").exists() && overlays.join("sub/c.png").exists());
    let second = ps3rt(&args);
    assert!(second.status.success(), "{}", text(&second.stderr));
    let stdout = text(&second.stdout);
    assert!(
        stdout.contains("summary  2 files: 2 ok, 0 failed; 3 other files skipped"),
        "{stdout}"
    );
}
