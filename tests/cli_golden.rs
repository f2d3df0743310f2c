//! Golden-file tests of what people and tools read: `ps3rt info` (text, embedded model) and
//! `ps3rt run --format json` on the road fixture.
//!
//! Volatile parts are normalized before comparing: the machine section of `info`, and the timings,
//! input path and version of the JSON. Numbers in the JSON are compared with a relative tolerance of
//! 1e-5 (the backend's float results may differ in the last bits between CPUs).
//! `PS3RT_UPDATE_GOLDEN=1 cargo test --test cli_golden` rewrites the golden files.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn golden(name: &str) -> PathBuf {
    root().join("tests/golden").join(name)
}

fn update() -> bool {
    std::env::var_os("PS3RT_UPDATE_GOLDEN").is_some_and(|v| v != "0" && !v.is_empty())
}

fn ps3rt(args: &[&str]) -> std::process::Output {
    assert_cmd::cargo::cargo_bin_cmd!("ps3rt")
        .args(args)
        .output()
        .expect("ps3rt runs")
}

/// Compare `actual` with the golden file, or rewrite it under PS3RT_UPDATE_GOLDEN=1.
fn check_text(name: &str, actual: &str) {
    let path = golden(name);
    if update() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (PS3RT_UPDATE_GOLDEN=1 writes it)", path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output at line {}:\n  golden: {:?}\n  actual: {:?}\n\
             (PS3RT_UPDATE_GOLDEN=1 rewrites it if the change is intended)\n--- actual ---\n{actual}",
            path.display(),
            first + 1,
            expected.lines().nth(first).unwrap_or("<end>"),
            actual.lines().nth(first).unwrap_or("<end>"),
        );
    }
}

/// Replace the machine-dependent end of `ps3rt info` (cores, memory, GPU facts).
fn normalize_info(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("          onnxruntime ") {
            // Which ONNX Runtime library (if any) this machine has.
            out.push_str("          onnxruntime <this machine: available, or why not>\n");
            continue;
        }
        if line.starts_with("          gpu         ") {
            // Whether this machine has an NVIDIA driver, a GPU and NVRTC for `--preprocess gpu`.
            out.push_str("          gpu         <this machine: available, or why not>\n");
            continue;
        }
        if line.starts_with("machine ") {
            out.push_str("machine   <this machine: cores, memory, NVIDIA driver, libnvinfer>\n");
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn info_text_of_the_embedded_model() {
    let o = ps3rt(&["info"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).expect("UTF-8 output");
    // The machine section exists and states facts, whatever they are here.
    assert!(stdout.contains("\nmachine   "), "{stdout}");
    assert!(stdout.contains("libnvinfer: "), "{stdout}");
    check_text("info-embedded.txt", &normalize_info(&stdout));
}

fn normalize_run_json(doc: &mut Value, input: &Path) {
    if let Some(t) = doc["timing_ms"].as_object_mut() {
        for v in t.values_mut() {
            *v = Value::from(0.0);
        }
    }
    let path = doc["input"]["path"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(path, input.display().to_string());
    doc["input"]["path"] = Value::from("tests/fixtures/road-1280x720.png");
    doc["ps3rt_version"] = Value::from("<version>");
}

/// Structural equality with a relative tolerance on non-integer numbers; the path of the first
/// difference on failure.
fn same(expected: &Value, actual: &Value, at: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::Number(e), Value::Number(a)) => {
            if e.is_f64() || a.is_f64() {
                let (e, a) = (e.as_f64().unwrap(), a.as_f64().unwrap());
                if (e - a).abs() <= 1e-5 * e.abs().max(1.0) {
                    return Ok(());
                }
            } else if e == a {
                return Ok(());
            }
            Err(format!("{at}: golden {e}, actual {a}"))
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!(
                    "{at}: golden has {} items, actual {}",
                    e.len(),
                    a.len()
                ));
            }
            for (i, (x, y)) in e.iter().zip(a).enumerate() {
                same(x, y, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Object(e), Value::Object(a)) => {
            let (ek, ak): (Vec<_>, Vec<_>) = (e.keys().collect(), a.keys().collect());
            if ek != ak {
                return Err(format!("{at}: golden keys {ek:?}, actual {ak:?}"));
            }
            for (k, v) in e {
                same(v, &a[k], &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        _ if expected == actual => Ok(()),
        _ => Err(format!("{at}: golden {expected}, actual {actual}")),
    }
}

#[test]
fn run_json_on_the_road_fixture() {
    let input = root().join("tests/fixtures/road-1280x720.png");
    let o = ps3rt(&[
        "run",
        "--input",
        input.to_str().unwrap(),
        "--budget",
        "256",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // stdout is exactly one JSON document, nothing else.
    let mut doc: Value = serde_json::from_slice(&o.stdout).expect("stdout is one JSON document");
    normalize_run_json(&mut doc, &input);
    let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    let path = golden("run-road-1280x720-k256.json");
    if update() {
        check_text("run-road-1280x720-k256.json", &text);
        return;
    }
    let expected: Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (PS3RT_UPDATE_GOLDEN=1 writes it)", path.display())
        }))
        .expect("the golden file is JSON");
    if let Err(diff) = same(&expected, &doc, "$") {
        panic!(
            "{} differs: {diff}\n(PS3RT_UPDATE_GOLDEN=1 rewrites it if the change is intended)",
            path.display()
        );
    }
}

#[test]
fn the_tolerant_comparison_catches_real_differences() {
    let a: Value = serde_json::json!({"x": [1, 2.5, {"y": "z"}], "n": 3});
    assert!(same(&a, &a, "$").is_ok());
    let b: Value = serde_json::json!({"x": [1, 2.5000001, {"y": "z"}], "n": 3});
    assert!(same(&a, &b, "$").is_ok());
    let c: Value = serde_json::json!({"x": [1, 2.6, {"y": "z"}], "n": 3});
    assert_eq!(
        same(&a, &c, "$").unwrap_err(),
        "$.x[1]: golden 2.5, actual 2.6"
    );
    let d: Value = serde_json::json!({"x": [1, 2.5, {"y": "w"}], "n": 3});
    assert!(same(&a, &d, "$").is_err());
    let e: Value = serde_json::json!({"x": [1, 2.5], "n": 3});
    assert!(same(&a, &e, "$").is_err());
    let f: Value = serde_json::json!({"x": [1, 2.5, {"y": "z"}], "n": 4});
    assert!(same(&a, &f, "$").is_err());
}
