//! `ps3rt bench` end to end: the table, the JSON's shape, the plot, both measuring orders, and
//! usage errors that name what was wrong.

use std::process::{Command, Output};

use serde_json::Value;

fn ps3rt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ps3rt"))
        .args(args)
        .output()
        .expect("ps3rt runs")
}

fn bench(extra: &[&str], json: &std::path::Path) -> Value {
    let mut args = vec![
        "bench",
        "--resolutions",
        "320x240,640x360",
        "--formats",
        "rgb8,nv12",
        "--budget",
        "64,256",
        "--frames",
        "3",
        "--warmup",
        "1",
        "--threads",
        "2",
        "--timing-floor-rounds",
        "30",
        "-q",
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = ps3rt(&args);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // One row per configuration in the main table and in the per-stage table, and the
    // constant-latency summary per budget and format.
    assert_eq!(
        stdout.lines().filter(|l| l.contains("  640x360 ")).count(),
        8
    );
    let stage_table = stdout
        .split("per stage, p50 / p99 ms:")
        .nth(1)
        .expect("the per-stage table");
    assert!(
        stage_table
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("preprocess") && l.contains("hrenc")),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("constant latency, K=").count(),
        4,
        "{stdout}"
    );
    // Under each, the memory floor of the largest frame against what the target leaves.
    assert_eq!(
        stdout.matches("  memory floor: reading a 640x360 ").count(),
        4,
        "{stdout}"
    );
    assert!(
        stdout.contains(" frame (0.7 MB) takes ") && stdout.contains(" frame (0.3 MB) takes "),
        "{stdout}"
    );
    assert!(
        stdout.contains(" on 2 threads (") && stdout.contains(" adds >= "),
        "{stdout}"
    );
    assert!(
        stdout.contains("resident set: after the model load ")
            && stdout.matches(" encoders warm ").count() == 2,
        "{stdout}"
    );
    // The machine's own tail for work split over the two threads, three ways.
    assert!(
        stdout.contains("timing floor: a fixed 2.5 ms job on each of 2 threads, 30 rounds (")
            && stdout.contains(" with the threads spinning between rounds, ")
            && stdout.contains(" with them sleeping between rounds ")
            && stdout.contains(" on 1 thread\n"),
        "{stdout}"
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    let floor = &doc["machine"]["timing_floor"];
    assert_eq!(floor["step_ms"], 2.5);
    assert_eq!(floor["rounds"], 30);
    for (key, threads) in [("spinning", 2), ("sleeping", 2), ("one_thread", 1)] {
        let s = &floor[key];
        assert_eq!(s["threads"], threads, "{floor}");
        let (p50, p99) = (s["p50_ms"].as_f64().unwrap(), s["p99_ms"].as_f64().unwrap());
        assert!(0.0 < p50 && p50 <= p99, "{floor}");
        assert!((s["p99_over_p50"].as_f64().unwrap() - p99 / p50).abs() < 1e-9);
    }
    doc
}

#[test]
fn bench_measures_every_configuration_and_writes_json_and_a_plot() {
    let dir = tempfile::tempdir().unwrap();
    let (json, png) = (dir.path().join("b.json"), dir.path().join("b.png"));
    let doc = bench(&["--plot", png.to_str().unwrap()], &json);
    assert_eq!(doc["order"], "interleaved");
    assert!(doc["machine"]["cpu"].is_string());
    assert_eq!(doc["machine"]["backend"], "tract");
    // The resident set after the load and with each budget's encoders warm, under the peak.
    let peak = doc["machine"]["peak_rss_bytes"].as_u64().expect("peak RSS");
    let loaded = doc["machine"]["rss_after_load_bytes"]
        .as_u64()
        .expect("RSS after the load");
    assert!(0 < loaded && loaded <= peak, "{}", doc["machine"]);
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), 8);
    for r in results {
        assert_eq!(r["frames"], 3);
        let warm = r["rss_bytes"].as_u64().expect("RSS with the encoders warm");
        assert!(0 < warm && warm <= peak, "{r}");
        assert_eq!(r["preprocess"], "cpu");
        assert!(r.get("gpu_preprocess").is_none(), "{r}");
        let p = |k: &str| r[k].as_f64().unwrap();
        assert!(0.0 < p("p50_ms") && p("p50_ms") <= p("p90_ms"), "{r}");
        assert!(
            p("p90_ms") <= p("p99_ms") && p("p99_ms") <= p("max_ms"),
            "{r}"
        );
        assert!(p("fps") > 0.0);
        for stage in [
            "preprocess_ms",
            "lowres_ms",
            "hrsel_ms",
            "gather_ms",
            "hrenc_ms",
        ] {
            assert!(r["stages"][stage].as_f64().unwrap() > 0.0, "{stage} in {r}");
            // The same stage's distribution: ordered percentiles, and its mean is the "stages" one.
            let name = stage.trim_end_matches("_ms");
            let st = &r["stage_percentiles"][name];
            let q = |k: &str| {
                st[k]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{k} of {name} in {r}"))
            };
            assert!(
                0.0 < q("p50_ms") && q("p50_ms") <= q("p90_ms"),
                "{name} in {r}"
            );
            assert!(
                q("p90_ms") <= q("p99_ms") && q("p99_ms") <= q("max_ms"),
                "{name} in {r}"
            );
            assert!((q("mean_ms") - r["stages"][stage].as_f64().unwrap()).abs() < 1e-9);
            assert!(
                q("max_ms") <= p("max_ms"),
                "a stage cannot take longer than its frame"
            );
        }
    }
    let checks = doc["constant_latency"].as_array().unwrap();
    assert_eq!(checks.len(), 4);
    for c in checks {
        assert!(c["largest_over_smallest_p50"].as_f64().unwrap() > 0.0);
        // The worst tail names its configuration and the stage that widened most.
        let worst = &c["worst_tail"];
        assert!(["320x240", "640x360"].contains(&worst["resolution"].as_str().unwrap()));
        assert!(
            ["preprocess", "lowres", "hrsel", "select", "gather", "hrenc"]
                .contains(&worst["widest_stage"].as_str().unwrap()),
            "{c}"
        );
        assert!(worst["stage_p99_minus_p50_ms"].as_f64().unwrap() >= 0.0);
        let framed = &c["preprocess_and_gather_ms"];
        assert!(framed["smallest"].as_f64().unwrap() > 0.0);
        assert!(framed["largest"].as_f64().unwrap() > 0.0);
        // The target's allowance is 15% of the smallest frame's p50; the floor is the largest
        // frame's extra bytes at the bandwidth measured reading the largest frame.
        let smallest = results
            .iter()
            .find(|r| {
                r["resolution"] == "320x240"
                    && r["format"] == c["format"]
                    && r["budget"] == c["budget"]
            })
            .unwrap();
        let allowance = c["allowance_ms"].as_f64().unwrap();
        assert!((allowance - 0.15 * smallest["p50_ms"].as_f64().unwrap()).abs() < 1e-9);
        let floor = &c["memory_floor"];
        let (big, small) = if c["format"] == "rgb8" {
            (640 * 360 * 3, 320 * 240 * 3)
        } else {
            (640 * 360 * 3 / 2, 320 * 240 * 3 / 2)
        };
        assert_eq!(floor["largest_frame_bytes"], big, "{c}");
        assert_eq!(floor["threads"], 2);
        let read = floor["read_ms"].as_f64().unwrap();
        assert!(read > 0.0 && read.is_finite(), "{c}");
        let extra = floor["extra_read_ms"].as_f64().unwrap();
        assert!(
            (extra - read * f64::from(big - small) / f64::from(big)).abs() < 1e-9,
            "{c}"
        );
        assert_eq!(floor["target_reachable"], extra <= allowance);
    }
    let plot = std::fs::read(&png).unwrap();
    assert_eq!(&plot[..8], b"\x89PNG\r\n\x1a\n");
}

/// One configuration, one frame, and the timing floor's options: on one thread it has only the
/// spinning variant (nothing to sleep between), and no rounds leave it out.
fn small_bench(threads: &str, rounds: &str, json: &std::path::Path) -> (String, Value) {
    let o = ps3rt(&[
        "bench",
        "--resolutions",
        "320x240",
        "--budget",
        "16",
        "--frames",
        "1",
        "--warmup",
        "1",
        "--threads",
        threads,
        "--timing-floor-rounds",
        rounds,
        "-q",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    (String::from_utf8_lossy(&o.stdout).into_owned(), doc)
}

#[test]
fn the_timing_floor_follows_the_thread_count_and_can_be_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("b.json");
    let (stdout, doc) = small_bench("1", "10", &json);
    assert!(
        stdout.contains("timing floor: a fixed 2.5 ms job on each of 1 thread, 10 rounds (")
            && !stdout.contains("sleeping"),
        "{stdout}"
    );
    let floor = &doc["machine"]["timing_floor"];
    assert_eq!(floor["spinning"]["threads"], 1);
    assert!(floor["sleeping"].is_null() && floor["one_thread"].is_null());
    let (stdout, doc) = small_bench("2", "0", &json);
    assert!(!stdout.contains("timing floor"), "{stdout}");
    assert!(doc["machine"]["timing_floor"].is_null());
}

#[test]
fn sequential_order_measures_the_same_configurations() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("b.json");
    let doc = bench(&["--sequential"], &json);
    assert_eq!(doc["order"], "sequential");
    let configs: Vec<(String, String, u64)> = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["resolution"].as_str().unwrap().to_string(),
                r["format"].as_str().unwrap().to_string(),
                r["budget"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(configs.len(), 8);
    assert!(configs.contains(&("640x360".into(), "nv12".into(), 64)));
    assert!(configs.contains(&("320x240".into(), "rgb8".into(), 256)));
}

#[test]
fn bad_arguments_are_usage_errors_naming_the_argument() {
    for (args, needle) in [
        (&["bench", "--frames", "0"][..], "--frames"),
        (&["bench", "--resolutions", "640by360"][..], "--resolutions"),
        (&["bench", "--resolutions", "0x360"][..], "--resolutions"),
        (&["bench", "--formats", "rgb9"][..], "rgb9"),
        (&["bench", "--preprocess", "tpu"][..], "--preprocess"),
        (&["bench", "--preprocess", "gpu:-1"][..], "--preprocess"),
        (&["bench", "--frame-memory", "heap"][..], "--frame-memory"),
    ] {
        let o = ps3rt(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// `--preprocess gpu`, frames in pageable and in pinned memory: on a machine with an NVIDIA GPU the
/// bench reports the GPU's parts per configuration and how the frames were brought over (`pinned`
/// for pinned frames); elsewhere it stops with the backend exit code and names what is missing.
#[test]
fn gpu_preprocessing_is_measured_or_its_absence_named() {
    for memory in ["pageable", "pinned"] {
        gpu_bench(memory);
    }
}

fn gpu_bench(memory: &str) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("g.json");
    let o = ps3rt(&[
        "bench",
        "--frame-memory",
        memory,
        "--preprocess",
        "gpu",
        "--resolutions",
        "320x240",
        "--formats",
        "nv12",
        "--budget",
        "64",
        "--frames",
        "2",
        "--warmup",
        "1",
        "-q",
        "--json",
        json.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() {
        assert_eq!(o.status.code(), Some(5), "{err}");
        assert!(
            err.contains("cuda")
                && (err.contains("libcuda.so.1")
                    || err.contains("NVRTC")
                    || err.contains("CUDA device")),
            "{err}"
        );
        return;
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("GPU preprocessing (gpu:0)"), "{stdout}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let r = &doc["results"][0];
    assert_eq!(r["preprocess"], "gpu:0");
    assert_eq!(r["frame_memory"], memory);
    for part in ["upload_p50_ms", "kernels_p50_ms", "download_p50_ms"] {
        assert!(r["gpu_preprocess"][part].as_f64().unwrap() > 0.0, "{r}");
    }
    let upload = r["gpu_preprocess"]["upload"].as_str().unwrap_or_default();
    if memory == "pinned" {
        assert_eq!(upload, "pinned", "{r}");
    } else {
        assert!(["staged", "mapped"].contains(&upload), "{r}");
    }
}
