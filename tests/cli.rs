//! `ps3rt run` end to end: outputs, contract fields, exit codes.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn ps3rt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ps3rt"))
        .args(args)
        .output()
        .expect("ps3rt runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_npy(path: &Path, shape: &[u64], values: &[f32]) {
    use npyz::WriterBuilder;
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(file)
        .begin_nd()
        .unwrap();
    w.extend(values.iter().copied()).unwrap();
    w.finish().unwrap();
}

#[test]
fn run_on_an_image_writes_the_contract_json_and_features() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let feats = dir.path().join("feats.npy");
    let img = common::root().join("tests/fixtures/road-1280x720.png");
    let o = ps3rt(&[
        "run",
        "--input",
        img.to_str().unwrap(),
        "--budget",
        "1000",
        "--json",
        json.to_str().unwrap(),
        "--features",
        feats.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("K = 1000") && stdout.contains("1729 tokens x 32"),
        "{stdout}"
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(doc["tokens"], 1729);
    assert_eq!(doc["width"], 32);
    assert_eq!(doc["budget"], 1000);
    assert_eq!(doc["steps"], 1);
    assert_eq!(doc["budget_split"], serde_json::json!([33, 133, 834]));
    let selected = doc["selected"].as_array().unwrap();
    assert_eq!(selected.len(), 1000);
    assert_eq!(selected[0]["scale"], 756);
    assert_eq!(selected[999]["scale"], 3780);
    let prob = doc["prob_map"].as_array().unwrap();
    assert_eq!(prob.len(), 27);
    assert!(prob.iter().all(|r| r.as_array().unwrap().len() == 27));
    assert!(!doc["regions"].as_array().unwrap().is_empty());
    let r0 = &doc["regions"][0];
    for key in ["scale", "box", "patches", "score"] {
        assert!(!r0[key].is_null(), "region lacks {key}");
    }
    assert!(doc["timing_ms"]["total_ms"].as_f64().unwrap() > 0.0);
    let (shape, values) = common::npy_f32(&feats);
    assert_eq!(shape, vec![1729, 32]);
    assert!(values.iter().all(|v| v.is_finite()));
}

#[test]
fn run_on_a_tensor_matches_the_reference_selection_per_cell() {
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("pixels.npy");
    write_npy(&npy, &[3, 3780, 3780], &common::parity_tensor(3780));
    let json = dir.path().join("out.json");
    let o = ps3rt(&[
        "run",
        "--input",
        npy.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(doc["input"]["kind"], "tensor");
    let (_, reference) =
        common::npy_i32(&common::fixtures().join("tensor-k2560-s1.selection0.npy"));
    let scales = [756u64, 1512, 3780];
    let count = |tokens: &mut dyn Iterator<Item = (u64, u64, u64)>| {
        let mut c = std::collections::BTreeMap::new();
        for (s, r, col) in tokens {
            let f = scales[s as usize] / 14 / 27;
            *c.entry((s, r / f, col / f)).or_insert(0) += 1;
        }
        c
    };
    let ours = count(&mut doc["selected"].as_array().unwrap().iter().map(|t| {
        let s = scales
            .iter()
            .position(|&x| x == t["scale"].as_u64().unwrap())
            .unwrap() as u64;
        (s, t["row"].as_u64().unwrap(), t["col"].as_u64().unwrap())
    }));
    let theirs = count(
        &mut reference
            .chunks(3)
            .map(|t| (t[0] as u64, t[1] as u64, t[2] as u64)),
    );
    assert_eq!(ours, theirs);
}

#[test]
fn exit_codes_name_what_went_wrong() {
    let dir = tempfile::tempdir().unwrap();
    // bad input: not an image
    let junk = dir.path().join("junk.png");
    std::fs::write(&junk, b"definitely not a png").unwrap();
    let o = ps3rt(&["run", "--input", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("junk.png"), "{}", stderr(&o));

    // bad input: tensor of the wrong size
    let npy = dir.path().join("small.npy");
    write_npy(&npy, &[3, 8, 8], &[0.0; 192]);
    let o = ps3rt(&["run", "--input", npy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("[3, 3780, 3780]"), "{}", stderr(&o));

    // bad model package
    let o = ps3rt(&[
        "run",
        "--model",
        dir.path().to_str().unwrap(),
        "--input",
        junk.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "input is checked first: {}",
        stderr(&o)
    );
    let img = common::root().join("tests/fixtures/road-1280x720.png");
    let o = ps3rt(&[
        "run",
        "--model",
        dir.path().to_str().unwrap(),
        "--input",
        img.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("manifest.json"), "{}", stderr(&o));

    // usage: budget out of range, steps too many, unknown flag
    let o = ps3rt(&["run", "--input", img.to_str().unwrap(), "--budget", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = ps3rt(&[
        "run",
        "--input",
        img.to_str().unwrap(),
        "--budget",
        "50000",
        "--steps",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("exceeds the 87480"), "{}", stderr(&o));
    let o = ps3rt(&["run", "--bogus"]);
    assert_eq!(o.status.code(), Some(2));

    // missing file
    let o = ps3rt(&["run", "--input", "/nonexistent/x.png"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent/x.png"), "{}", stderr(&o));
}
