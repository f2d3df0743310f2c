//! Region labels, the label bank and top-down prompts on the tiny package (random weights: the
//! labels are noise, the mechanics are what is tested). Parity with the official code is in
//! tests/parity.rs.

mod common;

use std::path::Path;

use ps3rt::{
    EncodeOptions, Encoder, Error, Frame, FrameBox, LabelOptions, Model, Package, PixelFormat,
};

fn model() -> Model {
    Model::load(common::tiny_package()).expect("tiny package loads")
}

fn road() -> (u32, u32, Vec<u8>) {
    common::rgb_image(&common::root().join("tests/fixtures/road-1280x720.png"))
}

fn encoder(model: &Model) -> Encoder {
    Encoder::new(
        model,
        EncodeOptions {
            budget: Some(256),
            steps: 1,
        },
    )
    .unwrap()
}

/// A copy of the tiny package with `edit` applied to its manifest (file hashes kept).
fn edited_package(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let src = common::tiny_package();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let path = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut m);
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

/// The tiny package as format-1 packages were before labels: no pool, text tower or bank.
fn strip_labels(m: &mut serde_json::Value) {
    let graphs = m["graphs"].as_object_mut().unwrap();
    graphs.remove("pool");
    graphs.remove("text");
    let top = m.as_object_mut().unwrap();
    top.remove("labels");
    top.remove("text");
    let files = m["files"].as_object_mut().unwrap();
    for f in [
        "pool.onnx",
        "pool_weights.bin",
        "text.onnx",
        "text_weights.bin",
        "tokenizer.json",
        "labels.json",
        "labels.safetensors",
    ] {
        files.remove(f);
    }
}

#[test]
fn the_tiny_package_has_a_pool_head_a_bank_and_a_text_tower() {
    let model = model();
    let labels = model.labels();
    assert_eq!(labels.max_regions(), Some(16));
    assert!(labels.has_text_tower());
    let bank = labels.bank().expect("bank");
    assert_eq!(bank.len(), 50);
    assert_eq!(bank.label(0), Some("stop sign"));
    assert_eq!(bank.index_of("speed limit 60"), Some(8));
    assert!(bank.calibrated());
    assert!((bank.logit_scale() - 10.0).abs() < 1e-5);
    assert!((bank.logit_bias() + 10.0).abs() < 1e-6);
    for i in 0..bank.len() {
        let e = bank.embedding(i).unwrap();
        let norm: f32 = e.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-5,
            "bank embedding {i} is unit length"
        );
        assert_eq!(bank.prompt(i).unwrap().len(), model.width());
    }
    // The embedded package is the same package.
    let embedded = Model::embedded().unwrap();
    assert_eq!(embedded.labels().bank().unwrap().labels(), bank.labels());
}

#[test]
fn regions_are_embedded_and_scored_with_the_calibrated_sigmoid() {
    let model = model();
    let mut enc = encoder(&model);
    let (w, h, rgb) = road();
    enc.encode(&Frame::packed(w, h, PixelFormat::Rgb8, &rgb).unwrap())
        .unwrap();
    let n_regions = enc.output().regions().len();
    let results = enc
        .label_regions(&LabelOptions::default())
        .unwrap()
        .to_vec();
    assert_eq!(results.len(), n_regions.min(16));
    let bank = model.labels().bank().unwrap();
    for (r, region) in results.iter().zip(enc.output().regions()) {
        assert_eq!(r.bbox, region.bbox);
        assert_eq!(r.scale, region.scale);
        assert!(
            r.tokens >= region.patches,
            "the region's own patches are pooled"
        );
        assert_eq!(r.embedding.len(), model.width());
        assert_eq!(r.labels.len(), 3);
        assert!(r.labels.windows(2).all(|p| p[0].score >= p[1].score));
        for l in &r.labels {
            // score = sigmoid(t * cos + b), recomputed here from the bank.
            let e = &r.embedding;
            let norm = e.iter().map(|v| v * v).sum::<f32>().sqrt();
            let cos: f32 = bank
                .embedding(l.index)
                .unwrap()
                .iter()
                .zip(e)
                .map(|(a, b)| a * b)
                .sum::<f32>()
                / norm;
            let logit = bank.logit_scale() * cos + bank.logit_bias();
            assert!((l.logit - logit).abs() < 1e-4);
            assert!((l.score - 1.0 / (1.0 + (-logit).exp())).abs() < 1e-6);
        }
    }
    // Deterministic, and `top_k`/`max_regions` are honoured.
    let again = enc
        .label_regions(&LabelOptions {
            max_regions: 2,
            top_k: 5,
            min_patches: 1,
        })
        .unwrap()
        .to_vec();
    assert_eq!(again.len(), 2.min(n_regions));
    assert_eq!(again[0].embedding, results[0].embedding);
    assert_eq!(again[0].labels.len(), 5);
    assert_eq!(enc.region_labels().len(), again.len());
}

#[test]
fn more_boxes_than_one_pool_run_takes_are_labelled_in_chunks() {
    let model = model();
    let mut enc = encoder(&model);
    let (w, h, rgb) = road();
    enc.encode(&Frame::packed(w, h, PixelFormat::Rgb8, &rgb).unwrap())
        .unwrap();
    let whole = FrameBox {
        x: 0.0,
        y: 0.0,
        w: w as f32,
        h: h as f32,
    };
    let boxes = vec![whole; 20];
    let out = enc.label_boxes(&boxes, &LabelOptions::default()).unwrap();
    assert_eq!(out.len(), 20);
    assert!(
        out.iter()
            .all(|r| r.tokens == 256 && r.embedding == out[0].embedding)
    );
}

#[test]
fn a_box_without_selected_tokens_pools_every_token_as_ps3_does() {
    let model = model();
    let mut enc = encoder(&model);
    let (w, h, rgb) = road();
    enc.encode(&Frame::packed(w, h, PixelFormat::Rgb8, &rgb).unwrap())
        .unwrap();
    // A box on one 3780-grid cell that no selected token of any scale overlaps.
    let g = model.geometry();
    let selected = enc.output().selected().to_vec();
    let empty = (0..270u32 * 270)
        .map(|i| (i / 270, i % 270))
        .find(|&(r, c)| {
            !selected.iter().any(|t| {
                let f = 270.0 / g.grid(t.scale as usize) as f64;
                let (r0, c0) = (t.row as f64 * f, t.col as f64 * f);
                (r as f64) < r0 + f
                    && (r + 1) as f64 > r0
                    && (c as f64) < c0 + f
                    && (c + 1) as f64 > c0
            })
        })
        .expect("a free cell");
    let cell = (w as f32 / 270.0, h as f32 / 270.0);
    let boxes = [
        FrameBox {
            x: empty.1 as f32 * cell.0,
            y: empty.0 as f32 * cell.1,
            w: cell.0,
            h: cell.1,
        },
        FrameBox {
            x: 0.0,
            y: 0.0,
            w: w as f32,
            h: h as f32,
        },
    ];
    let out = enc.label_boxes(&boxes, &LabelOptions::default()).unwrap();
    assert_eq!(out[0].tokens, 0);
    assert_eq!(out[1].tokens, 256);
    let diff = out[0]
        .embedding
        .iter()
        .zip(&out[1].embedding)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-5, "empty region = all tokens ({diff})");
}

#[test]
fn prompts_from_text_label_and_floats_replace_the_prior() {
    let model = model();
    let (w, h, rgb) = road();
    let frame = Frame::packed(w, h, PixelFormat::Rgb8, &rgb).unwrap();
    let prob = |enc: &mut Encoder| enc.encode(&frame).unwrap().prob_map().to_vec();
    let mut enc = encoder(&model);
    let bottom_up = prob(&mut enc);

    enc.set_prompt_label("stop sign").unwrap();
    let by_label = prob(&mut enc);
    let bank_prompt = model.labels().bank().unwrap().prompt(0).unwrap().to_vec();
    enc.set_prompt(Some(&bank_prompt)).unwrap();
    assert_eq!(
        prob(&mut enc),
        by_label,
        "a bank label is its stored prompt"
    );
    assert_ne!(by_label, bottom_up, "a prompt changes the selection map");

    enc.set_prompt_text("speed limit sign").unwrap();
    let by_text = prob(&mut enc);
    let e = model.encode_text("speed limit sign").unwrap();
    assert_eq!(e.ids.len(), 64);
    enc.set_prompt(Some(&e.prompt)).unwrap();
    assert_eq!(prob(&mut enc), by_text);

    // The bank was encoded by the same text tower: "stop sign" by text = the bank's entry.
    let stop = model.encode_text("stop sign").unwrap();
    let err = stop
        .prompt
        .iter()
        .zip(&bank_prompt)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err < 1e-4, "text tower vs bank prompt: {err}");

    enc.set_prompt(None).unwrap();
    assert_eq!(prob(&mut enc), bottom_up);

    let e = enc.set_prompt_label("no such sign").unwrap_err();
    assert!(e.to_string().contains("not a label of the bank"), "{e}");
    let e = enc.set_prompt_text("   ").unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
}

#[test]
fn packages_without_the_new_sections_load_and_say_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    edited_package(dir.path(), strip_labels);
    for f in ["pool.onnx", "text.onnx", "labels.json"] {
        std::fs::remove_file(dir.path().join(f)).unwrap();
    }
    let model = Model::load(dir.path()).expect("a package without labels still loads");
    assert!(model.labels().bank().is_none());
    assert_eq!(model.labels().max_regions(), None);
    assert!(!model.labels().has_text_tower());
    let mut enc = encoder(&model);
    let (w, h, rgb) = road();
    enc.encode(&Frame::packed(w, h, PixelFormat::Rgb8, &rgb).unwrap())
        .unwrap();
    let e = enc.label_regions(&LabelOptions::default()).unwrap_err();
    assert!(e.to_string().contains("graphs.pool"), "{e}");
    let e = enc.set_prompt_text("stop sign").unwrap_err();
    assert!(e.to_string().contains("no text tower"), "{e}");
    let e = enc.set_prompt_label("stop sign").unwrap_err();
    assert!(e.to_string().contains("no label bank"), "{e}");
    // A labelling before any encode is refused too.
    let mut fresh = encoder(&Model::load(common::tiny_package()).unwrap());
    let e = fresh.label_regions(&LabelOptions::default()).unwrap_err();
    assert!(e.to_string().contains("encode a frame first"), "{e}");
}

#[test]
fn inconsistent_label_sections_are_refused_with_the_reason() {
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit); 4] = [
        ("labels.dim 31 differs", |m| m["labels"]["dim"] = 31.into()),
        ("50 labels, the manifest says 7", |m| {
            m["labels"]["count"] = 7.into()
        }),
        ("graphs.text without", |m| {
            m.as_object_mut().unwrap().remove("text");
        }),
        ("graphs.pool: mask", |m| {
            m["graphs"]["pool"]["inputs"][1]["shape"][0] = 8.into()
        }),
    ];
    for (want, edit) in cases {
        let dir = tempfile::tempdir().unwrap();
        edited_package(dir.path(), edit);
        let e = Package::open(dir.path())
            .and_then(|p| Model::from_package(&p, &Default::default()).map(|_| ()))
            .unwrap_err();
        assert!(e.to_string().contains(want), "want {want:?} in: {e}");
    }
    // A modified bank file is caught by its hash.
    let dir = tempfile::tempdir().unwrap();
    edited_package(dir.path(), |_| {});
    std::fs::write(dir.path().join("labels.json"), b"{}").unwrap();
    let e = Package::open(dir.path()).unwrap_err();
    assert!(e.to_string().contains("labels.json"), "{e}");
}
