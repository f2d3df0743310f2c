//! `ps3rt info`: budgets, JSON, damaged packages, exit codes; `--help` and `completions`.

use std::path::PathBuf;

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

/// A copy of the tiny package in a temporary directory.
fn package_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root().join("models/ps3-tiny-4k")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

#[test]
fn a_second_budget_gets_its_own_column() {
    let o = ps3rt(&["info", "--budget", "1024"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    // Both columns, and the high-res trunk cost by hand at K = 1024 for the tiny model:
    // per block 6*1024*32^2 + 4*1024*1753*32 + 2*1024*32^2 + 4*1024*32*128 = 254,935,040, times 4
    // blocks, plus the patch embed 2*1024*588*32 = 38,535,168 -> 1,058,275,328 = 1.1 GFLOP.
    assert_eq!(
        out.lines()
            .filter(|l| l.trim() == "K = 2560        K = 1024")
            .count(),
        2,
        "a header over the compute and the memory table:\n{out}"
    );
    let hrenc = out
        .lines()
        .find(|l| l.contains("high-res trunk"))
        .expect("a high-res trunk row");
    assert!(hrenc.ends_with("4.7 GFLOP       1.1 GFLOP"), "{hrenc}");
}

#[test]
fn json_carries_flops_memory_and_backends() {
    let o = ps3rt(&[
        "info", "--budget", "1024", "--steps", "2", "--format", "json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let doc: Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    assert_eq!(doc["package"]["name"], "ps3-tiny-4k");
    assert_eq!(doc["package"]["verified"], true);
    assert_eq!(doc["source"]["random_weights"], true);
    assert_eq!(
        doc["geometry"]["budget_split"],
        serde_json::json!([85, 341, 2134])
    );
    let flops = doc["flops"].as_array().unwrap();
    assert_eq!(flops.len(), 2);
    assert_eq!(flops[1]["budget"], 1024);
    assert_eq!(flops[1]["steps"], 2);
    // The low-res trunk of the tiny model: 371,195,136 FLOPs (see src/flops.rs).
    assert_eq!(flops[0]["lowres"], 371_195_136.0);
    let step = flops[1]["hrenc_step"].as_f64().unwrap();
    assert_eq!(step, 1_058_275_328.0);
    assert_eq!(flops[1]["hrenc"].as_f64().unwrap(), 2.0 * step);
    let memory = doc["memory"].as_array().unwrap();
    assert_eq!(memory[0]["estimate"]["weights"], 869_376);
    assert_eq!(memory[0]["estimate"]["kv_cache"], 4 * 2 * 729 * 32 * 4);
    let backends = doc["backends"].as_array().unwrap();
    assert_eq!(backends[0]["name"], "tract");
    assert_eq!(backends[0]["available"], true);
    assert_eq!(backends[1]["name"], "tensorrt");
    assert_eq!(backends[1]["available"], false);
    assert_eq!(backends[2]["name"], "onnxruntime");
    assert_eq!(backends[2]["device"], "cpu");
    // Available exactly when the probe found a library; otherwise the reason says what was tried.
    match backends[2]["available"].as_bool().unwrap() {
        true => assert!(backends[2]["library"]["version"].is_string()),
        false => assert!(
            backends[2]["reason"]
                .as_str()
                .unwrap()
                .contains("libonnxruntime"),
            "{}",
            backends[2]
        ),
    }
    // GPU preprocessing: where it would run, or the missing driver, device or NVRTC.
    let gpu = &doc["preprocessing"]["gpu"];
    assert_eq!(doc["preprocessing"]["cpu"]["available"], true);
    match gpu["available"].as_bool().unwrap() {
        true => assert!(gpu["name"].is_string() && gpu["nvrtc"].is_string(), "{gpu}"),
        false => {
            let reason = gpu["reason"].as_str().unwrap();
            assert!(
                reason.contains("libcuda.so.1")
                    || reason.contains("NVRTC")
                    || reason.contains("CUDA device")
                    || reason.contains("cargo feature `cuda`"),
                "{gpu}"
            );
        }
    }
    assert!(doc["machine"]["cpus"].as_u64().unwrap() >= 1);
}

#[test]
fn a_package_directory_is_described_from_its_manifest() {
    let pkg = package_copy();
    let o = ps3rt(&["info", pkg.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("manifest.json"), "{out}");
    assert!(out.contains("sizes checked, hashes not"), "{out}");
    let o = ps3rt(&["info", "--verify", "--model", pkg.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("SHA-256 of every file checked"));
}

#[test]
fn damaged_packages_exit_3_and_name_the_file() {
    let pkg = package_copy();
    let p = pkg.path().to_str().unwrap();
    // Same size, one byte changed: only --verify notices.
    let weights = pkg.path().join("weights.bin");
    let mut bytes = std::fs::read(&weights).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&weights, &bytes).unwrap();
    let o = ps3rt(&["info", p]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = ps3rt(&["info", "--verify", p]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("weights.bin"),
        "{}",
        text(&o.stderr)
    );
    assert!(text(&o.stderr).contains("SHA-256"), "{}", text(&o.stderr));

    // Missing and truncated files: described, marked, then exit 3.
    std::fs::remove_file(&weights).unwrap();
    std::fs::write(pkg.path().join("hrsel.onnx"), b"short").unwrap();
    let o = ps3rt(&["info", p]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let line = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().any(|w| w == name))
            .unwrap_or_else(|| panic!("no {name} line in {out}"))
            .to_string()
    };
    assert!(line("weights.bin").ends_with("MISSING"), "{out}");
    assert!(
        line("hrsel.onnx").contains("SIZE DIFFERS: 5 on disk"),
        "{out}"
    );
    let err = text(&o.stderr);
    assert!(
        err.contains("hrsel.onnx (size differs)") && err.contains("weights.bin (missing)"),
        "{err}"
    );

    // Not a package at all.
    let empty = tempfile::tempdir().unwrap();
    let o = ps3rt(&["info", empty.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("manifest.json"),
        "{}",
        text(&o.stderr)
    );
    let o = ps3rt(&["info", "/nonexistent/package"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
}

#[test]
fn budgets_the_model_cannot_take_are_usage_errors() {
    for args in [
        &["info", "--budget", "0"][..],
        &["info", "--budget", "87481"],
        &["info", "--budget", "50000", "--steps", "2"],
        &["info", "--steps", "0"],
        &["info", "--format", "yaml"],
    ] {
        let o = ps3rt(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn every_subcommand_has_examples_in_its_help() {
    for sub in ["run", "info", "demo", "completions"] {
        let o = ps3rt(&[sub, "--help"]);
        assert!(o.status.success(), "{sub}");
        let help = text(&o.stdout);
        assert!(help.contains("Examples:"), "{sub} --help:\n{help}");
        assert!(
            help.contains(&format!("ps3rt {sub}")),
            "{sub} --help:\n{help}"
        );
    }
    let o = ps3rt(&["--help"]);
    let help = text(&o.stdout);
    for word in ["run", "info", "demo", "completions", "Exit codes"] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let run_help = text(&ps3rt(&["run", "--help"]).stdout);
    for flag in [
        "--overlay",
        "--format",
        "--recursive",
        "--fail-fast",
        "Exit codes",
    ] {
        assert!(run_help.contains(flag), "run --help lacks {flag}");
    }
}

#[test]
fn completions_for_every_shell() {
    for (shell, marker) in [
        ("bash", "_ps3rt()"),
        ("zsh", "#compdef ps3rt"),
        ("fish", "complete -c ps3rt"),
        ("elvish", "ps3rt"),
        ("powershell", "ps3rt"),
    ] {
        let o = ps3rt(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", text(&o.stderr));
        let script = text(&o.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("overlay"), "{shell} completes run's flags");
    }
    let o = ps3rt(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
}
