//! The TensorRT backend's Rust side: the engine cache (keys, layout, validation, atomic writes,
//! rebuild of bad entries) with fake engine bytes, and the backend choice and fallback reasons, with
//! real libraries where the `tensorrt` feature is built (scripts/test-tensorrt.sh: the runtime-only
//! TensorRT 11.4 dispatch library and the CUDA 13 runtime from PyPI, on a machine without a GPU).
//!
//! No test here runs TensorRT on a GPU: that needs one (cross/jetson-smoke.sh).

use std::path::Path;
#[cfg(feature = "tensorrt")]
use std::path::PathBuf;

use ps3rt::backend::tensorrt::cache::{EngineCache, EngineKey, Lookup, RECIPE, TimingKey};
use ps3rt::backend::tensorrt::{self, TensorRtOptions, UnusableKind};
use ps3rt::{BackendKind, BackendOptions, Model, Package};

fn key() -> EngineKey {
    EngineKey {
        recipe: RECIPE,
        graph: "hrenc".into(),
        graph_sha256: "0d194ee056ac77a40085b4c4b7c6a4fcca916fc41ad26b52c7d442da60f87098".into(),
        weights_sha256: "6300b36908a1ec0f20232daa35b196ae69704023d60fd79cfa94d8263ab96255".into(),
        tensorrt: "10.3.0.30".into(),
        gpu: "Orin (nvgpu)".into(),
        sm: "8.7".into(),
        precision: "fp16".into(),
        budget: Some(2560),
        builder_flags: "tf32=1;opt=-1;workspace=0".into(),
    }
}

fn fake_engine(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

fn hit(l: Lookup) -> Vec<u8> {
    match l {
        Lookup::Hit(b) => b,
        other => panic!("expected a hit, got {other:?}"),
    }
}

fn invalid(l: Lookup) -> String {
    match l {
        Lookup::Invalid(why) => why,
        other => panic!("expected an invalid entry, got {other:?}"),
    }
}

#[test]
fn cache_round_trip_writes_one_file_and_no_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let cache = EngineCache::new(dir.path().join("engines"));
    assert!(matches!(cache.load_engine(&key()), Lookup::Miss));
    let engine = fake_engine(100_003, 7);
    let path = cache.store_engine(&key(), &engine).unwrap();
    assert_eq!(path, cache.engine_path(&key()));
    assert!(path.starts_with(dir.path().join("engines")));
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("hrenc-k2560-fp16-") && name.ends_with(".engine"),
        "{name}"
    );
    assert_eq!(hit(cache.load_engine(&key())), engine);
    assert!(temporaries(cache.dir()).is_empty());
    // The file holds the whole key, readable by people.
    let bytes = std::fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&bytes[..400]);
    assert!(text.contains("\"gpu\":\"Orin (nvgpu)\""), "{text}");
}

#[test]
fn every_key_field_changes_the_entry() {
    let base = key();
    type Change = Box<dyn Fn(&mut EngineKey)>;
    let variants: Vec<(&str, Change)> = vec![
        ("recipe", Box::new(|k| k.recipe += 1)),
        ("graph", Box::new(|k| k.graph = "lowres".into())),
        (
            "graph sha",
            Box::new(|k| k.graph_sha256.replace_range(0..1, "1")),
        ),
        (
            "weights sha",
            Box::new(|k| k.weights_sha256.replace_range(0..1, "7")),
        ),
        ("tensorrt", Box::new(|k| k.tensorrt = "10.3.0.31".into())),
        ("gpu", Box::new(|k| k.gpu = "NVIDIA H100".into())),
        ("sm", Box::new(|k| k.sm = "9.0".into())),
        ("precision", Box::new(|k| k.precision = "fp32".into())),
        ("budget", Box::new(|k| k.budget = Some(1024))),
        ("no budget", Box::new(|k| k.budget = None)),
        ("flags", Box::new(|k| k.builder_flags = "tf32=0".into())),
    ];
    let mut names = std::collections::HashSet::new();
    names.insert(base.file_name());
    for (what, change) in &variants {
        let mut k = base.clone();
        change(&mut k);
        assert_ne!(k.digest(), base.digest(), "{what}");
        assert!(names.insert(k.file_name()), "{what}: file name collides");
    }
}

#[test]
fn an_entry_of_another_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = EngineCache::new(dir.path());
    let a = key();
    let mut b = key();
    b.tensorrt = "10.3.0.31".into();
    cache.store_engine(&a, &fake_engine(1000, 1)).unwrap();
    // Someone renamed an engine built by another TensorRT to b's name: the full key inside says so.
    std::fs::copy(cache.engine_path(&a), cache.engine_path(&b)).unwrap();
    let why = invalid(cache.load_engine(&b));
    assert!(why.contains("built for another configuration"), "{why}");
    assert!(why.contains("10.3.0.30"), "{why}");
}

#[test]
fn corrupted_truncated_and_extended_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = EngineCache::new(dir.path());
    let engine = fake_engine(50_000, 3);
    let path = cache.store_engine(&key(), &engine).unwrap();
    let good = std::fs::read(&path).unwrap();

    let mut bad = good.clone();
    let last = bad.len() - 10;
    bad[last] ^= 0x40;
    std::fs::write(&path, &bad).unwrap();
    assert!(invalid(cache.load_engine(&key())).contains("SHA-256 mismatch"));

    std::fs::write(&path, &good[..good.len() - 1]).unwrap();
    assert!(invalid(cache.load_engine(&key())).contains("truncated"));

    let mut longer = good.clone();
    longer.push(0);
    std::fs::write(&path, &longer).unwrap();
    assert!(invalid(cache.load_engine(&key())).contains("appended"));

    std::fs::write(&path, &good[..10]).unwrap();
    assert!(invalid(cache.load_engine(&key())).contains("truncated header"));

    let mut magic = good.clone();
    magic[0] = b'X';
    std::fs::write(&path, &magic).unwrap();
    assert!(invalid(cache.load_engine(&key())).contains("bad magic"));

    let mut format = good.clone();
    format[8] = 99;
    std::fs::write(&path, &format).unwrap();
    assert!(invalid(cache.load_engine(&key())).contains("format 99"));

    // A TensorRT engine file (not ours) under our name.
    std::fs::write(&path, b"ftrt\x00\x00\x00\x00 a serialized plan").unwrap();
    assert!(invalid(cache.load_engine(&key())).contains("bad magic"));

    // Rebuilding overwrites the bad entry atomically.
    let rebuilt = fake_engine(60_000, 9);
    cache.store_engine(&key(), &rebuilt).unwrap();
    assert_eq!(hit(cache.load_engine(&key())), rebuilt);
}

#[test]
fn a_timing_cache_is_not_an_engine() {
    let dir = tempfile::tempdir().unwrap();
    let cache = EngineCache::new(dir.path());
    let t = TimingKey {
        tensorrt: "10.3.0.30".into(),
        gpu: "Orin (nvgpu)".into(),
        sm: "8.7".into(),
    };
    let path = cache.store_timing(&t, b"timing cache bytes").unwrap();
    assert!(
        path.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("timing-trt10.3.0.30-sm87-")
    );
    assert_eq!(hit(cache.load_timing(&t)), b"timing cache bytes");
    std::fs::copy(&path, cache.engine_path(&key())).unwrap();
    assert!(invalid(cache.load_engine(&key())).contains("different kind"));
}

#[test]
fn concurrent_writers_leave_one_complete_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cache = EngineCache::new(dir.path());
    let payloads: Vec<Vec<u8>> = (0..8).map(|i| fake_engine(200_000 + i, i as u8)).collect();
    std::thread::scope(|s| {
        for p in &payloads {
            let cache = cache.clone();
            s.spawn(move || {
                for _ in 0..5 {
                    cache.store_engine(&key(), p).unwrap();
                }
            });
        }
        // Readers never see a partial file: a hit is always one of the payloads.
        let cache = cache.clone();
        let payloads = &payloads;
        s.spawn(move || {
            for _ in 0..50 {
                match cache.load_engine(&key()) {
                    Lookup::Hit(b) => assert!(payloads.contains(&b)),
                    Lookup::Miss => {}
                    Lookup::Invalid(why) => panic!("reader saw a partial entry: {why}"),
                }
            }
        });
    });
    assert!(payloads.contains(&hit(cache.load_engine(&key()))));
    assert!(temporaries(cache.dir()).is_empty());
}

#[test]
fn failed_writes_leave_nothing_and_stale_temporaries_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    // The cache "directory" is a file: the write fails with an error, not a panic.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    assert!(
        EngineCache::new(&file)
            .store_engine(&key(), b"engine")
            .is_err()
    );

    let cache = EngineCache::new(dir.path().join("c"));
    cache.store_engine(&key(), b"engine").unwrap();
    let stale = cache.dir().join(".hrenc.engine.1234.0.tmp");
    let fresh = cache.dir().join(".hrenc.engine.1234.1.tmp");
    std::fs::write(&stale, b"partial").unwrap();
    std::fs::write(&fresh, b"partial").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(cache.remove_stale_temporaries(), 1);
    assert!(!stale.exists());
    assert!(fresh.exists(), "a write in progress (recent) is left alone");
    assert_eq!(hit(cache.load_engine(&key())), b"engine");
    cache.remove_engine(&key()).unwrap();
    assert!(matches!(cache.load_engine(&key()), Lookup::Miss));
    cache.remove_engine(&key()).unwrap();
}

// ------------------------------------------------------------------ backend choice and fallback

fn options_with(kind: BackendKind, trt: TensorRtOptions) -> BackendOptions {
    BackendOptions {
        kind,
        threads: 1,
        tensorrt: trt,
        // Whatever ONNX Runtime the environment names, Auto's fallback here must be tract.
        onnxruntime_library: Some("/nonexistent/libonnxruntime.so".into()),
    }
}

#[cfg(feature = "tensorrt")]
fn cache_in(dir: &Path) -> TensorRtOptions {
    TensorRtOptions {
        cache_dir: Some(dir.to_path_buf()),
        ..TensorRtOptions::default()
    }
}

/// Auto falls back to tract with the probe's reason; TensorRt fails with it.
fn check_fallback(trt: TensorRtOptions, reason: &str) {
    let package = Package::embedded().unwrap();
    let model =
        Model::from_package(&package, &options_with(BackendKind::Auto, trt.clone())).unwrap();
    assert_eq!(model.backend_name(), "tract");
    let note = model.backend_note().unwrap_or_default();
    assert!(note.contains("TensorRT not used"), "{note}");
    assert!(note.contains(reason), "note {note:?} lacks {reason:?}");
    let err = Model::from_package(&package, &options_with(BackendKind::TensorRt, trt))
        .expect_err("the tensorrt backend cannot load here");
    match &err {
        ps3rt::Error::Backend {
            backend, message, ..
        } => {
            assert_eq!(*backend, "tensorrt");
            assert!(message.contains(reason), "{message}");
        }
        e => panic!("expected a backend error, got {e:?}"),
    }
    // An explicit tract choice has nothing to explain.
    let model = Model::from_package(
        &package,
        &options_with(BackendKind::Tract, TensorRtOptions::default()),
    )
    .unwrap();
    assert_eq!(model.backend_note(), None);
}

#[test]
fn backend_names_parse() {
    assert_eq!(BackendKind::parse("tensorrt"), Some(BackendKind::TensorRt));
    assert_eq!(BackendKind::parse("trt"), Some(BackendKind::TensorRt));
    assert_eq!(BackendKind::parse("auto"), Some(BackendKind::Auto));
    assert_eq!(BackendKind::parse("cuda"), None);
    assert_eq!(
        tensorrt::Precision::parse("fp16"),
        Some(tensorrt::Precision::Fp16)
    );
    assert_eq!(tensorrt::Precision::parse("int8"), None);
}

#[cfg(not(feature = "tensorrt"))]
#[test]
fn without_the_feature_auto_is_tract_and_says_why() {
    let probe = tensorrt::probe(&TensorRtOptions::default());
    assert_eq!(
        probe.unusable.as_ref().map(|u| u.0),
        Some(UnusableKind::NotCompiled)
    );
    assert_eq!(tensorrt::header_version(), None);
    check_fallback(TensorRtOptions::default(), "cargo feature `tensorrt`");
}

/// Where scripts/test-tensorrt.sh put the fetched SDK (headers, dispatch library, CUDA runtime).
#[cfg(feature = "tensorrt")]
fn sdk() -> Option<PathBuf> {
    let dir = std::env::var_os("PS3RT_TENSORRT_SDK")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tensorrt-sdk"));
    let complete = dir.join("dispatch/libnvinfer_dispatch.so.11").is_file()
        && dir.join("cuda/lib/libcudart.so.13").is_file();
    if !complete && std::env::var_os("PS3RT_TEST_REQUIRE_SDK").is_some() {
        panic!(
            "{} lacks the test libraries: run tools/tensorrt/fetch-headers.sh --dispatch",
            dir.display()
        );
    }
    complete.then_some(dir)
}

#[cfg(feature = "tensorrt")]
#[test]
fn a_missing_library_is_reported_and_auto_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = cache_in(dir.path());
    o.libraries.nvinfer = Some(PathBuf::from("/nonexistent/libnvinfer.so.10"));
    let probe = tensorrt::probe(&o);
    let (kind, why) = probe.unusable.clone().unwrap();
    assert_eq!(kind, UnusableKind::LibraryMissing);
    assert!(why.contains("TensorRT library not found"), "{why}");
    assert!(why.contains("/nonexistent/libnvinfer.so.10"), "{why}");
    assert!(probe.headers.is_some());
    check_fallback(o, "TensorRT library not found");
}

#[cfg(feature = "tensorrt")]
#[test]
fn a_library_that_is_not_tensorrt_is_refused() {
    let mut o = TensorRtOptions::default();
    o.libraries.nvinfer = Some(PathBuf::from("libc.so.6"));
    let probe = tensorrt::probe(&o);
    let (kind, why) = probe.unusable.unwrap();
    assert_eq!(kind, UnusableKind::MissingEntryPoint);
    assert!(why.contains("not a TensorRT library"), "{why}");
}

#[cfg(feature = "tensorrt")]
#[test]
fn the_runtime_only_dispatch_library_loads_and_is_refused_truthfully() {
    let Some(sdk) = sdk() else {
        eprintln!("skipped: no target/tensorrt-sdk (tools/tensorrt/fetch-headers.sh --dispatch)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut o = cache_in(dir.path());
    o.libraries.nvinfer = Some(sdk.join("dispatch/libnvinfer_dispatch.so.11"));
    o.libraries.cudart = Some(sdk.join("cuda/lib/libcudart.so.13"));
    let probe = tensorrt::probe(&o);
    let lib = probe.library.clone().expect("the dispatch library opens");
    assert_eq!(lib.version, "11.4.0.106");
    assert!(
        lib.path.ends_with("libnvinfer_dispatch.so.11"),
        "{}",
        lib.path
    );
    let headers = tensorrt::header_version().unwrap();
    let (kind, why) = probe.unusable.clone().unwrap();
    if headers.starts_with("11.") {
        // Same major as the headers: the version is fine; the missing builder is the reason.
        assert_eq!(kind, UnusableKind::MissingEntryPoint, "{why}");
        assert!(why.contains("runtime-only TensorRT library"), "{why}");
        assert!(!lib.has_builder);
        check_fallback(o.clone(), "runtime-only TensorRT library");
    } else {
        // Built against 10.x headers: an 11.x library is refused before anything is called.
        assert_eq!(kind, UnusableKind::VersionMismatch, "{why}");
        assert!(why.contains("does not match the TensorRT 10."), "{why}");
        check_fallback(o.clone(), "does not match");
    }
    // The CUDA side is probed too, with the real CUDA 13 runtime: no driver, no GPU here.
    let (path, version) = probe.cuda_runtime.clone().expect("libcudart.so.13 loads");
    assert!(path.ends_with("libcudart.so.13"), "{path}");
    assert!(version.starts_with("13."), "{version}");
    let cuda = probe.cuda_problem.clone().unwrap();
    assert!(cuda.contains("no usable GPU"), "{cuda}");
    assert!(probe.gpu.is_none());
}

#[cfg(feature = "tensorrt")]
#[test]
fn without_a_cuda_runtime_the_reason_says_so() {
    let mut o = TensorRtOptions::default();
    o.libraries.nvinfer = Some(PathBuf::from("/nonexistent/libnvinfer.so"));
    o.libraries.cudart = Some(PathBuf::from("/nonexistent/libcudart.so.12"));
    let probe = tensorrt::probe(&o);
    let cuda = probe.cuda_problem.unwrap();
    assert!(cuda.contains("CUDA runtime library not found"), "{cuda}");
    assert!(cuda.contains("/nonexistent/libcudart.so.12"), "{cuda}");
}

#[test]
fn the_c_abi_takes_the_tensorrt_backend_and_reports_why_not() {
    use ps3rt::ffi::{
        ps3rt_last_error, ps3rt_model_load_embedded, ps3rt_model_options, ps3rt_model_options_init,
        ps3rt_status,
    };
    let mut options = ps3rt_model_options {
        struct_size: 0,
        backend: 0,
        threads: 0,
    };
    // SAFETY: a live options struct of the size passed.
    let s = unsafe { ps3rt_model_options_init(&mut options, size_of_val(&options)) };
    assert_eq!(s, ps3rt_status::Ok);
    options.backend = 2;
    let mut model = std::ptr::null_mut();
    // SAFETY: valid options and out-pointer.
    let s = unsafe { ps3rt_model_load_embedded(&options, &mut model) };
    // No TensorRT on this machine (or not compiled in): a backend failure, with the reason.
    assert_eq!(s, ps3rt_status::Backend);
    assert!(model.is_null());
    // SAFETY: the thread's last error is a NUL-terminated string.
    let msg = unsafe { std::ffi::CStr::from_ptr(ps3rt_last_error()) }
        .to_string_lossy()
        .into_owned();
    assert!(msg.contains("tensorrt"), "{msg}");
}
