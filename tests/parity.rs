//! Parity with the official PS3 implementation (ps3-torch), on golden fixtures made by
//! tools/parity/make_fixtures.py from the tiny package's own checkpoint.
//!
//! - tensor input: the same number of selected patches in every 27x27 cell (per scale, all steps) as
//!   the reference, the same probability map, and for the reference's own selection the same features
//!   within 1e-4 relative (max abs error / max |ref|);
//! - image input (our preprocessing vs PIL + torch): selection overlap and feature cosine, reported and
//!   bounded.

mod common;

use std::collections::HashSet;

use ps3rt::{EncodeOptions, Encoder, Frame, Input, Model, PixelFormat, TensorImage, TokenPos};
use serde_json::Value;

struct Case {
    name: String,
    input: String,
    budget: usize,
    steps: usize,
    selection: Vec<Vec<TokenPos>>,
    prob_map: Vec<f32>,
    features: Vec<f32>,
    feature_rows: usize,
}

fn cases() -> Vec<Case> {
    let dir = common::fixtures();
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("fixtures.json")).unwrap()).unwrap();
    index["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let files = &c["files"];
            let steps = c["steps"].as_u64().unwrap() as usize;
            let selection = (0..steps)
                .map(|s| {
                    let (shape, v) = common::npy_i32(
                        &dir.join(files[format!("selection_step{s}")].as_str().unwrap()),
                    );
                    assert_eq!(shape[1], 3);
                    v.chunks(3)
                        .map(|t| TokenPos {
                            scale: t[0] as u8,
                            row: t[1] as u16,
                            col: t[2] as u16,
                        })
                        .collect()
                })
                .collect();
            let (_, prob_map) = common::npy_f32(&dir.join(files["prob_map"].as_str().unwrap()));
            let (shape, features) = common::npy_f32(&dir.join(files["features"].as_str().unwrap()));
            Case {
                name: c["name"].as_str().unwrap().to_string(),
                input: c["input"].as_str().unwrap().to_string(),
                budget: c["budget"].as_u64().unwrap() as usize,
                steps,
                selection,
                prob_map,
                features,
                feature_rows: shape[0],
            }
        })
        .collect()
}

fn model() -> Model {
    Model::load(common::tiny_package()).expect("tiny package loads")
}

/// Selected patches per (scale, low-res cell).
fn cell_counts(model: &Model, tokens: &[TokenPos]) -> Vec<usize> {
    let g = model.geometry();
    let n = g.lowres_tokens();
    let mut counts = vec![0; n * g.high_scales().len()];
    for &t in tokens {
        let (r, c) = g.lowres_cell(t);
        counts[t.scale as usize * n + r * g.lowres_grid() + c] += 1;
    }
    counts
}

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let max_ref = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / max_ref
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn tensor_input_matches_the_official_implementation() {
    let model = model();
    let size = model.geometry().input_size();
    let pixels = common::parity_tensor(size);
    let tensor = TensorImage::new(size, &pixels).unwrap();
    let width = model.width();
    for case in cases().into_iter().filter(|c| c.input == "tensor") {
        let mut enc = Encoder::new(
            &model,
            EncodeOptions {
                budget: Some(case.budget),
                steps: case.steps,
            },
        )
        .unwrap();

        // 1. Our own selection: same probability map, same patch count in every cell.
        let out = enc.encode_tensor(&tensor).unwrap();
        let p_err = out
            .prob_map()
            .iter()
            .zip(&case.prob_map)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            p_err < 1e-4,
            "{}: probability map differs by {p_err}",
            case.name
        );
        let reference: Vec<TokenPos> = case.selection.iter().flatten().copied().collect();
        assert_eq!(out.selected().len(), reference.len(), "{}", case.name);
        let ours = cell_counts(&model, out.selected());
        let theirs = cell_counts(&model, &reference);
        let differing = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
        assert_eq!(
            differing, 0,
            "{}: {differing} (scale, cell) pairs select a different number of patches",
            case.name
        );
        assert_eq!(out.token_count(), case.feature_rows, "{}", case.name);

        // 2. The reference's own selection: same features.
        let out = enc
            .encode_with_selection(Input::Tensor(tensor), &case.selection)
            .unwrap();
        let mut sorted = reference.clone();
        sorted.sort();
        assert_eq!(
            out.selected(),
            &sorted[..],
            "{}: token order is (scale, raster)",
            case.name
        );
        let err = rel_err(out.features(), &case.features);
        println!(
            "{}: max|diff|/max|ref| = {err:.2e} over {} x {width} features",
            case.name, case.feature_rows
        );
        assert!(
            err <= 1e-4,
            "{}: features differ from the reference by {err:.2e} (relative)",
            case.name
        );
    }
}

#[test]
fn image_input_stays_close_to_pil_and_torchvision_preprocessing() {
    let model = model();
    let (w, h, rgb) = common::rgb_image(&common::root().join("tests/fixtures/road-1280x720.png"));
    let frame = Frame::packed(w, h, PixelFormat::Rgb8, &rgb).unwrap();
    let width = model.width();
    let n_low = model.geometry().lowres_tokens();
    for case in cases().into_iter().filter(|c| c.input == "image") {
        let mut enc = Encoder::new(
            &model,
            EncodeOptions {
                budget: Some(case.budget),
                steps: case.steps,
            },
        )
        .unwrap();
        let out = enc.encode(&frame).unwrap();
        let reference: HashSet<TokenPos> = case.selection.iter().flatten().copied().collect();
        let overlap = out
            .selected()
            .iter()
            .filter(|t| reference.contains(t))
            .count() as f64
            / reference.len() as f64;
        let ours = cell_counts(&model, out.selected());
        let theirs = cell_counts(&model, &reference.iter().copied().collect::<Vec<_>>());
        let cells_equal =
            ours.iter().zip(&theirs).filter(|(a, b)| a == b).count() as f64 / ours.len() as f64;
        let p_err = out
            .prob_map()
            .iter()
            .zip(&case.prob_map)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));

        let out = enc
            .encode_with_selection(Input::Frame(frame), &case.selection)
            .unwrap();
        let cos: Vec<f64> = out
            .features()
            .chunks(width)
            .zip(case.features.chunks(width))
            .map(|(a, b)| cosine(a, b))
            .collect();
        let low_min = cos[..n_low].iter().cloned().fold(f64::MAX, f64::min);
        let high_min = cos[n_low..].iter().cloned().fold(f64::MAX, f64::min);
        let mean = cos.iter().sum::<f64>() / cos.len() as f64;
        println!(
            "{}: selection overlap {:.1}%, equal (scale, cell) counts {:.1}%, prob map max diff {p_err:.4}; \
             feature cosine mean {mean:.5}, min low-res {low_min:.5}, min high-res {high_min:.5}",
            case.name,
            overlap * 100.0,
            cells_equal * 100.0
        );
        assert!(
            overlap >= 0.95,
            "{}: only {:.1}% of the reference selection",
            case.name,
            overlap * 100.0
        );
        assert!(
            p_err < 0.01,
            "{}: probability map differs by {p_err}",
            case.name
        );
        assert!(
            mean >= 0.9995 && low_min >= 0.999 && high_min >= 0.99,
            "{}: features drift from the reference",
            case.name
        );
    }
}

#[test]
fn the_prior_prompt_given_explicitly_reproduces_bottom_up_selection() {
    let model = model();
    let (w, h, rgb) = common::rgb_image(&common::root().join("tests/fixtures/road-1280x720.png"));
    let frame = Frame::packed(w, h, PixelFormat::Rgb8, &rgb).unwrap();
    let mut enc = Encoder::new(
        &model,
        EncodeOptions {
            budget: Some(500),
            steps: 1,
        },
    )
    .unwrap();
    let bottom_up = enc.encode(&frame).unwrap().prob_map().to_vec();
    let prior = common::tables_tensor("prior_prompt");
    enc.set_prompt(Some(&prior)).unwrap();
    let explicit = enc.encode(&frame).unwrap().prob_map().to_vec();
    let diff = bottom_up
        .iter()
        .zip(&explicit)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff < 1e-5,
        "prior prompt through the projection differs by {diff}"
    );
    // A different prompt changes the ranking; wrong sizes are refused.
    let other: Vec<f32> = prior
        .iter()
        .enumerate()
        .map(|(i, v)| if i % 2 == 0 { -v } else { *v })
        .collect();
    enc.set_prompt(Some(&other)).unwrap();
    let top_down = enc.encode(&frame).unwrap().prob_map().to_vec();
    assert!(
        top_down
            .iter()
            .zip(&bottom_up)
            .any(|(a, b)| (a - b).abs() > 1e-3)
    );
    assert!(enc.set_prompt(Some(&prior[..5])).is_err());
    assert!(enc.set_prompt(Some(&vec![0.0; prior.len()])).is_err());
    enc.set_prompt(None).unwrap();
    let again = enc.encode(&frame).unwrap().prob_map().to_vec();
    assert_eq!(again, bottom_up);
}

// --- Region labels and text prompts (docs/labels.md) ---------------------------------------------

fn index() -> Value {
    serde_json::from_slice(&std::fs::read(common::fixtures().join("fixtures.json")).unwrap())
        .unwrap()
}

fn npy_i64(path: &std::path::Path) -> (Vec<usize>, Vec<i64>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<i64>().unwrap())
}

fn selection_file(name: &str) -> Vec<TokenPos> {
    let (shape, v) = common::npy_i32(&common::fixtures().join(name));
    assert_eq!(shape[1], 3);
    v.chunks(3)
        .map(|t| TokenPos {
            scale: t[0] as u8,
            row: t[1] as u16,
            col: t[2] as u16,
        })
        .collect()
}

#[test]
fn text_tower_and_tokenizer_match_the_official_text_model() {
    let model = model();
    let dir = common::fixtures();
    let text = &index()["text"];
    let files = &text["files"];
    let (shape, ids) = npy_i64(&dir.join(files["ids"].as_str().unwrap()));
    let (_, embeddings) = common::npy_f32(&dir.join(files["embeddings"].as_str().unwrap()));
    let (_, prompts) = common::npy_f32(&dir.join(files["prompts"].as_str().unwrap()));
    let l = shape[1];
    let c = model.width();
    for (i, s) in text["strings"].as_array().unwrap().iter().enumerate() {
        let s = s.as_str().unwrap();
        let ours = model.labels().tokenize(model.origin(), s).unwrap();
        assert_eq!(ours, &ids[i * l..(i + 1) * l], "token ids of {s:?}");
        let e = model.encode_text(s).unwrap();
        assert_eq!(e.ids, ours);
        let e_err = rel_err(&e.embedding, &embeddings[i * c..(i + 1) * c]);
        let p_err = rel_err(&e.prompt, &prompts[i * c..(i + 1) * c]);
        println!("text {s:?}: embedding {e_err:.2e}, prompt {p_err:.2e} (relative)");
        assert!(
            e_err <= 1e-4 && p_err <= 1e-4,
            "{s:?}: {e_err:.2e} {p_err:.2e}"
        );
    }
}

#[test]
fn region_embeddings_and_scores_match_the_official_pool_head() {
    let model = model();
    let dir = common::fixtures();
    let pool = &index()["pool"];
    let files = &pool["files"];
    let size = model.geometry().input_size();
    let pixels = common::parity_tensor(size);
    let tensor = TensorImage::new(size, &pixels).unwrap();
    let mut enc = Encoder::new(
        &model,
        EncodeOptions {
            budget: Some(pool["budget"].as_u64().unwrap() as usize),
            steps: 1,
        },
    )
    .unwrap();
    let selection = selection_file(files["selection_step0"].as_str().unwrap());
    enc.encode_with_selection(Input::Tensor(tensor), &[selection])
        .unwrap();
    // Boxes on the finest grid -> frame pixels (the tensor is the frame: one cell = 14 px).
    let grid = pool["grid"].as_u64().unwrap() as f32;
    let cell = size as f32 / grid;
    let boxes: Vec<ps3rt::FrameBox> = pool["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let v: Vec<f32> = b
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            ps3rt::FrameBox {
                x: v[1] * cell,
                y: v[0] * cell,
                w: (v[3] - v[1]) * cell,
                h: (v[2] - v[0]) * cell,
            }
        })
        .collect();
    let m = pool["labels"].as_u64().unwrap() as usize;
    let options = ps3rt::LabelOptions {
        top_k: m,
        ..Default::default()
    };
    let results = enc.label_boxes(&boxes, &options).unwrap().to_vec();
    let (_, embeddings) = common::npy_f32(&dir.join(files["embeddings"].as_str().unwrap()));
    let (mshape, masks) = common::npy_f32(&dir.join(files["masks"].as_str().unwrap()));
    let (_, logits) = common::npy_f32(&dir.join(files["logits"].as_str().unwrap()));
    let c = model.width();
    assert_eq!(results.len(), boxes.len());
    for (r, res) in results.iter().enumerate() {
        let in_box = masks[r * mshape[1]..(r + 1) * mshape[1]]
            .iter()
            .filter(|&&v| v != 0.0)
            .count();
        assert_eq!(res.tokens as usize, in_box, "box {r}: tokens in the region");
        let err = rel_err(&res.embedding, &embeddings[r * c..(r + 1) * c]);
        let mut worst = 0f32;
        assert_eq!(res.labels.len(), m);
        for l in &res.labels {
            worst = worst.max((l.logit - logits[r * m + l.index]).abs());
            assert!((l.score - 1.0 / (1.0 + (-l.logit).exp())).abs() < 1e-6);
        }
        println!(
            "region {r} ({in_box} tokens): embedding {err:.2e} relative, logits within {worst:.1e}"
        );
        assert!(err <= 1e-4, "box {r}: embedding differs by {err:.2e}");
        assert!(worst <= 1e-3, "box {r}: logits differ by {worst:.1e}");
    }
}

#[test]
fn top_down_selection_matches_the_official_prompt() {
    let model = model();
    let dir = common::fixtures();
    let size = model.geometry().input_size();
    let pixels = common::parity_tensor(size);
    let tensor = TensorImage::new(size, &pixels).unwrap();
    for case in index()["topdown_cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let files = &case["files"];
        let steps = case["steps"].as_u64().unwrap() as usize;
        let (_, prompt) = common::npy_f32(&dir.join(files["prompt"].as_str().unwrap()));
        let (_, prob_map) = common::npy_f32(&dir.join(files["prob_map"].as_str().unwrap()));
        let (_, features) = common::npy_f32(&dir.join(files["features"].as_str().unwrap()));
        let selection: Vec<Vec<TokenPos>> = (0..steps)
            .map(|s| selection_file(files[format!("selection_step{s}")].as_str().unwrap()))
            .collect();
        // Our text tower gives the reference's prompt.
        let ours = model.encode_text(case["text"].as_str().unwrap()).unwrap();
        let prompt_err = rel_err(&ours.prompt, &prompt);
        assert!(
            prompt_err <= 1e-4,
            "{name}: prompt differs by {prompt_err:.2e}"
        );

        let mut enc = Encoder::new(
            &model,
            EncodeOptions {
                budget: Some(case["budget"].as_u64().unwrap() as usize),
                steps,
            },
        )
        .unwrap();
        enc.set_prompt(Some(&prompt)).unwrap();
        let out = enc.encode_tensor(&tensor).unwrap();
        let p_err = out
            .prob_map()
            .iter()
            .zip(&prob_map)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(p_err < 1e-4, "{name}: probability map differs by {p_err}");
        let reference: Vec<TokenPos> = selection.iter().flatten().copied().collect();
        let differing = cell_counts(&model, out.selected())
            .iter()
            .zip(&cell_counts(&model, &reference))
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differing, 0,
            "{name}: {differing} cells select a different count"
        );
        let out = enc
            .encode_with_selection(Input::Tensor(tensor), &selection)
            .unwrap();
        let err = rel_err(out.features(), &features);
        println!("{name}: prompt {prompt_err:.2e}, prob map {p_err:.1e}, features {err:.2e}");
        assert!(err <= 1e-4, "{name}: features differ by {err:.2e}");
    }
}
