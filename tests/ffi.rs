//! The C ABI seen from Rust: what `ps3rt_encoder_encode` hands out through `ps3rt_output` is exactly
//! what the Rust API returns for the same frame (every feature, token, region, probability), and the
//! handles behave as include/ps3rt.h says. The C-side tests are in tests/c (scripts/test-ffi.sh).

use std::ffi::CStr;
use std::ptr;

use ps3rt::ffi::*;
use ps3rt::{EncodeOptions, Encoder, Frame, Model, PixelFormat, TensorImage};

const BUDGET: usize = 128;

struct Handles {
    model: *mut ps3rt_model,
    encoder: *mut ps3rt_encoder,
}

impl Handles {
    fn new(budget: usize, steps: usize) -> Handles {
        let mut model = ptr::null_mut();
        let mut options = ps3rt_model_options {
            struct_size: 0,
            backend: 0,
            threads: 0,
        };
        // SAFETY: `options` is a live ps3rt_model_options of the size passed.
        let s = unsafe { ps3rt_model_options_init(&mut options, size_of_val(&options)) };
        assert_eq!(s, ps3rt_status::Ok);
        options.threads = 2;
        // SAFETY: valid options and out-pointer.
        let s = unsafe { ps3rt_model_load_embedded(&options, &mut model) };
        assert_eq!(s, ps3rt_status::Ok, "{}", last_error());
        let eo = ps3rt_encoder_options {
            struct_size: size_of::<ps3rt_encoder_options>(),
            budget,
            steps,
        };
        let mut encoder = ptr::null_mut();
        // SAFETY: a live model, valid options and out-pointer.
        let s = unsafe { ps3rt_encoder_create(model, &eo, &mut encoder) };
        assert_eq!(s, ps3rt_status::Ok, "{}", last_error());
        Handles { model, encoder }
    }
}

impl Drop for Handles {
    fn drop(&mut self) {
        // SAFETY: handles created in Handles::new, destroyed once here.
        unsafe {
            ps3rt_encoder_destroy(self.encoder);
            ps3rt_model_destroy(self.model);
        }
    }
}

fn last_error() -> String {
    // SAFETY: ps3rt_last_error returns a NUL-terminated string valid until the next failure here.
    unsafe { CStr::from_ptr(ps3rt_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// The arrays of a C output view as slices.
///
/// # Safety
/// `out` is a view just returned by an encode of a live encoder.
unsafe fn view(out: &ps3rt_output) -> (&[f32], &[ps3rt_token], &[ps3rt_region], &[f32]) {
    // SAFETY: the header's contract on ps3rt_output: each pointer holds the stated count.
    unsafe {
        (
            std::slice::from_raw_parts(out.features, out.token_count * out.width),
            std::slice::from_raw_parts(out.tokens, out.token_count),
            if out.region_count == 0 {
                &[]
            } else {
                std::slice::from_raw_parts(out.regions, out.region_count)
            },
            std::slice::from_raw_parts(out.prob_map, out.prob_grid * out.prob_grid),
        )
    }
}

fn assert_same(c: &ps3rt_output, rust: &ps3rt::Output) {
    // SAFETY: `c` was just returned by an encode whose encoder is still alive and untouched.
    let (features, tokens, regions, prob) = unsafe { view(c) };
    assert_eq!(features, rust.features());
    assert_eq!(c.width, rust.width());
    assert_eq!(prob, rust.prob_map());
    assert_eq!(c.prob_grid, rust.prob_grid());
    assert_eq!(c.lowres_token_count, rust.prob_grid() * rust.prob_grid());
    assert_eq!((c.budget, c.steps), (rust.budget(), rust.steps()));
    assert_eq!((c.frame_width, c.frame_height), rust.frame_size());
    assert_eq!(tokens.len(), rust.tokens().len());
    for (t, r) in tokens.iter().zip(rust.tokens()) {
        assert_eq!((t.scale, t.row, t.col), (r.scale, r.row, r.col));
        let b = r.bbox;
        assert_eq!(
            (t.bbox.x, t.bbox.y, t.bbox.w, t.bbox.h),
            (b.x, b.y, b.w, b.h)
        );
    }
    assert_eq!(regions.len(), rust.regions().len());
    for (g, r) in regions.iter().zip(rust.regions()) {
        assert_eq!(
            (g.scale, g.patches, g.score, g.mean_score),
            (r.scale, r.patches, r.score, r.mean_score)
        );
        let b = r.bbox;
        assert_eq!(
            (g.bbox.x, g.bbox.y, g.bbox.w, g.bbox.h),
            (b.x, b.y, b.w, b.h)
        );
    }
    assert!(c.timings.total_ms > 0.0 && c.timings.total_ms >= c.timings.hrenc_ms);
}

#[test]
fn frame_views_hold_what_the_rust_api_returns() {
    let scene = ps3rt::synthetic::road_scene(1280, 720, 1);
    let (w, h) = scene.image.dimensions();
    let rgb = scene.image.as_raw();
    // BGR with padded rows in the C descriptor, RGB packed for the Rust API: the same pixels.
    let stride = w as usize * 3 + 16;
    let mut bgr = vec![0u8; stride * h as usize];
    for y in 0..h as usize {
        for x in 0..w as usize {
            let (s, d) = (3 * (y * w as usize + x), y * stride + 3 * x);
            bgr[d..d + 3].copy_from_slice(&[rgb[s + 2], rgb[s + 1], rgb[s]]);
        }
    }
    let handles = Handles::new(BUDGET, 1);
    let frame = ps3rt_frame {
        width: w,
        height: h,
        format: ps3rt_pixel_format::Bgr8 as i32,
        planes: [bgr.as_ptr(), ptr::null(), ptr::null(), ptr::null()],
        strides: [stride, 0, 0, 0],
    };
    let mut out: *const ps3rt_output = ptr::null();
    // SAFETY: a live encoder, a descriptor of `bgr` (alive for the call) and an out-pointer.
    let s = unsafe { ps3rt_encoder_encode(handles.encoder, &frame, &mut out) };
    assert_eq!(s, ps3rt_status::Ok, "{}", last_error());

    let model = Model::embedded().unwrap();
    let mut encoder = Encoder::new(
        &model,
        EncodeOptions {
            budget: Some(BUDGET),
            steps: 1,
        },
    )
    .unwrap();
    let rust = encoder
        .encode(&Frame::packed(w, h, PixelFormat::Rgb8, rgb).unwrap())
        .unwrap();
    // SAFETY: `out` is the view just returned; the encoder is alive and not used meanwhile.
    assert_same(unsafe { &*out }, rust);
    assert!(!rust.regions().is_empty());
}

#[test]
fn tensor_views_and_prompts_match_the_rust_api() {
    let handles = Handles::new(32, 2);
    let model = Model::embedded().unwrap();
    let s = model.geometry().input_size();
    let tensor: Vec<f32> = (0..3 * s * s)
        .map(|i| ((i / s / 60 + i % s / 60) % 9) as f32 / 4.0 - 1.0)
        .collect();
    let prompt: Vec<f32> = (0..model.width()).map(|i| (i as f32 * 0.7).sin()).collect();
    let mut encoder = Encoder::new(
        &model,
        EncodeOptions {
            budget: Some(32),
            steps: 2,
        },
    )
    .unwrap();
    encoder.set_prompt(Some(&prompt)).unwrap();
    let rust = encoder
        .encode_tensor(&TensorImage::new(s, &tensor).unwrap())
        .unwrap();

    // SAFETY: a live encoder and `prompt.len()` floats.
    let st = unsafe { ps3rt_encoder_set_prompt(handles.encoder, prompt.as_ptr(), prompt.len()) };
    assert_eq!(st, ps3rt_status::Ok, "{}", last_error());
    let mut out: *const ps3rt_output = ptr::null();
    // SAFETY: a live encoder, 3 * s * s floats and an out-pointer.
    let st = unsafe { ps3rt_encoder_encode_tensor(handles.encoder, tensor.as_ptr(), s, &mut out) };
    assert_eq!(st, ps3rt_status::Ok, "{}", last_error());
    // SAFETY: the view just returned.
    let c = unsafe { &*out };
    assert_eq!(c.token_count, 729 + 64);
    assert_same(c, rust);
}

#[test]
fn model_info_describes_the_model() {
    let handles = Handles::new(16, 1);
    let mut info: *const ps3rt_model_info = ptr::null();
    // SAFETY: a live model and an out-pointer.
    let s = unsafe { ps3rt_model_get_info(handles.model, &mut info) };
    assert_eq!(s, ps3rt_status::Ok);
    // SAFETY: owned by the model, alive until it is destroyed (after this test's last use).
    let info = unsafe { &*info };
    let model = Model::embedded().unwrap();
    // SAFETY: NUL-terminated strings owned by the model.
    let text = |p| unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
    assert_eq!(text(info.name), model.manifest().name);
    assert_eq!(text(info.origin), model.origin());
    assert_eq!(text(info.backend), model.backend_name());
    assert_eq!(info.width, model.width());
    assert_eq!(info.default_budget, model.default_budget());
    // SAFETY: high_scale_count values owned by the model.
    let scales = unsafe { std::slice::from_raw_parts(info.high_scales, info.high_scale_count) };
    let want: Vec<u32> = model
        .geometry()
        .high_scales()
        .iter()
        .map(|&s| s as u32)
        .collect();
    assert_eq!(scales, want);
    assert_eq!(info.input_size, model.geometry().input_size());
    assert_eq!(
        info.total_high_patches,
        model.geometry().total_high_patches()
    );
    assert_eq!(info.package_bytes, model.package_bytes());
}

#[test]
fn failures_leave_out_parameters_alone_and_name_the_problem() {
    let handles = Handles::new(16, 1);
    let sentinel = 0x10 as *const ps3rt_output;
    let mut out = sentinel;
    let frame = ps3rt_frame {
        width: 8,
        height: 8,
        format: ps3rt_pixel_format::Rgb8 as i32,
        planes: [ptr::null(); PS3RT_MAX_PLANES],
        strides: [0; PS3RT_MAX_PLANES],
    };
    // SAFETY: a live encoder; the descriptor's NULL plane is refused before any read.
    let s = unsafe { ps3rt_encoder_encode(handles.encoder, &frame, &mut out) };
    assert_eq!(s, ps3rt_status::InvalidFrame);
    assert_eq!(out, sentinel);
    assert_eq!(
        last_error(),
        "ps3rt_encoder_encode: invalid frame: planes[0] is NULL"
    );
    // SAFETY: a model handle passed where an encoder is expected: refused by its type tag.
    let s = unsafe { ps3rt_encoder_encode(handles.model.cast(), &frame, &mut out) };
    assert_eq!(s, ps3rt_status::InvalidArgument);
    assert!(
        last_error().contains("not a live ps3rt_encoder"),
        "{}",
        last_error()
    );
}
