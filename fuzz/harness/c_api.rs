//! C API call sequences: a small interpreter that runs the fuzzer's bytes as a program of calls to
//! the `extern "C"` functions of `ps3rt::ffi`, with NULLs in every pointer position, handles of the
//! wrong type, uninitialized and foreign option structs, bad enum values, frames of any description
//! and prompts, tensors and JPEGs of any content.
//!
//! What is checked after every call: the status is a defined code; a failure leaves a message that
//! names the function and leaves out-parameters untouched; a success gives outputs that agree with
//! the request (token count, frame size, finite features). Frame planes are allocated with exactly
//! the bytes docs/c-api.md says the description needs, so a read past them is caught by the
//! sanitizer; planes a format does not use are dangling pointers that must never be read.
//!
//! What the harness never does, because the C contract makes it the caller's fault and nothing can
//! detect it: pass a pointer to fewer bytes than a call is told, use a destroyed handle, or forge a
//! handle's type tag (fake handles here never carry a valid tag).

use std::ffi::{CStr, c_char, c_void};
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use ps3rt::ffi::*;

use super::Bytes;

/// Largest plane the harness allocates for a frame (bigger descriptions are not encoded).
const MAX_PLANE: usize = 1 << 20;
/// Encode calls per input that may run the graphs (each takes a while).
const MAX_ENCODES: usize = 2;
/// The embedded tiny model's width and low-res tokens.
const WIDTH: usize = 32;
const LOWRES_TOKENS: usize = 729;
const TOTAL_HIGH: usize = 87_480;

/// The model all inputs share (loading takes seconds): created once, never destroyed.
fn model() -> *mut ps3rt_model {
    static MODEL: OnceLock<usize> = OnceLock::new();
    let addr = *MODEL.get_or_init(|| {
        let mut options = ps3rt_model_options {
            struct_size: 0,
            backend: 0,
            threads: 0,
        };
        // SAFETY: `options` is a live struct of the size passed.
        let s = unsafe { ps3rt_model_options_init(&mut options, size_of_val(&options)) };
        assert_eq!(s, ps3rt_status::Ok);
        options.backend = ps3rt_backend::Tract as i32;
        options.threads = 1;
        let mut model = ptr::null_mut();
        // SAFETY: valid options and out-pointer.
        let s = unsafe { ps3rt_model_load_embedded(&options, &mut model) };
        assert_eq!(s, ps3rt_status::Ok, "{}", last_error());
        model as usize
    });
    addr as *mut ps3rt_model
}

/// Initialize the model before the first input (so its allocations are not charged to an input).
pub fn init() {
    model();
}

fn last_error() -> String {
    // SAFETY: ps3rt_last_error never returns NULL; the string lives until the next failure here.
    unsafe { CStr::from_ptr(ps3rt_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Check the result of a call of `function`.
fn check(function: &str, status: ps3rt_status) -> bool {
    let code = status as i32;
    assert!((0..=10).contains(&code), "{function}: status {code}");
    if status == ps3rt_status::Ok {
        return true;
    }
    let message = last_error();
    assert!(
        message.starts_with(&format!("{function}: ")) && message.len() > function.len() + 2,
        "{function} failed with {status:?} but left the message {message:?}"
    );
    assert_ne!(
        status,
        ps3rt_status::Internal,
        "{function}: a panic inside ps3rt: {message}"
    );
    false
}

static LOG_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Successful encodes so far (the corpus replay checks that its seeds reach the graphs).
pub static ENCODED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn count_logs(_: ps3rt_log_level, message: *const c_char, _: *mut c_void) {
    if !message.is_null() {
        LOG_CALLS.fetch_add(1, Ordering::Relaxed);
    }
}

/// A buffer that is not a handle: its first 8 bytes are never a valid tag.
#[repr(C, align(8))]
struct Fake([u8; 64]);

struct Enc {
    handle: *mut ps3rt_encoder,
    budget: usize,
    steps: usize,
}

struct State {
    encoders: Vec<Enc>,
    encodes: usize,
    fake: Box<Fake>,
}

impl State {
    /// An encoder argument: one of ours, NULL, the model (wrong type) or a fake.
    fn encoder(&mut self, pick: u8) -> (*mut ps3rt_encoder, Option<usize>) {
        match pick % 8 {
            5 => (ptr::null_mut(), None),
            6 => (model().cast(), None),
            7 => ((&raw mut *self.fake).cast(), None),
            i if !self.encoders.is_empty() => {
                let i = usize::from(i) % self.encoders.len();
                (self.encoders[i].handle, Some(i))
            }
            _ => (ptr::null_mut(), None),
        }
    }
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let mut input = Bytes::new(data);
    let mut state = State {
        encoders: Vec::new(),
        encodes: 0,
        fake: Box::new(Fake([0x5a; 64])),
    };
    state.fake.0[0] = 0; // never a tag: the tags start with b'p'
    let mut ops = 0;
    while !input.is_empty() && ops < 64 {
        ops += 1;
        step(&mut state, &mut input);
    }
    for e in state.encoders.drain(..) {
        // SAFETY: a live encoder created by this input, destroyed once.
        unsafe { ps3rt_encoder_destroy(e.handle) };
    }
    // SAFETY: NULL stops logging; nothing else is passed.
    let s = unsafe { ps3rt_set_log_callback(None, ptr::null_mut(), 0) };
    assert_eq!(s, ps3rt_status::Ok);
}

fn step(state: &mut State, input: &mut Bytes<'_>) {
    match input.u8() % 14 {
        0 => create(state, input),
        1 => destroy(state, input),
        2 | 3 => encode(state, input),
        4 => encode_tensor(state, input),
        5 => encode_jpeg(state, input),
        6 => set_prompt(state, input),
        7 => {
            let (enc, _) = state.encoder(input.u8());
            let (matrix, range) = (i32::from(input.u8() as i8), i32::from(input.u8() as i8));
            // SAFETY: `enc` is a live encoder, NULL, or a pointer to 8+ readable bytes of another
            // type (the tag check reads only those).
            let s = unsafe { ps3rt_encoder_set_yuv_color(enc, matrix, range) };
            let ok = check("ps3rt_encoder_set_yuv_color", s);
            assert_eq!(
                ok,
                (0..=1).contains(&matrix)
                    && (0..=1).contains(&range)
                    && state.encoders.iter().any(|e| e.handle == enc)
            );
        }
        8 => get_info(state, input),
        9 => options_init(input),
        10 => model_load(input),
        11 => {
            let level = i32::from(input.u8() as i8) % 8;
            let callback: ps3rt_log_callback = if input.u8() & 1 == 0 {
                None
            } else {
                Some(count_logs)
            };
            // SAFETY: count_logs may be called from any thread; it ignores user_data.
            let s = unsafe { ps3rt_set_log_callback(callback, ptr::null_mut(), level) };
            assert_eq!(check("ps3rt_set_log_callback", s), (0..=5).contains(&level));
        }
        12 => {
            let destroy_model = input.u8();
            // Never the shared model: NULL, an encoder (wrong type) or a fake.
            let target: *mut ps3rt_model = match destroy_model % 3 {
                0 => ptr::null_mut(),
                1 => match state.encoders.first() {
                    Some(e) => e.handle.cast(),
                    None => ptr::null_mut(),
                },
                _ => (&raw mut *state.fake).cast(),
            };
            // SAFETY: NULL, or a pointer to 8+ readable bytes that carry another tag: refused.
            unsafe { ps3rt_model_destroy(target) };
            // The model is still usable.
            let mut info = ptr::null();
            // SAFETY: the live shared model and a valid out-pointer.
            let s = unsafe { ps3rt_model_get_info(model(), &mut info) };
            assert_eq!(s, ps3rt_status::Ok);
        }
        _ => {
            let code = input.u32() as i32;
            // SAFETY: these return static NUL-terminated strings.
            let s = unsafe { CStr::from_ptr(ps3rt_status_string(code)) };
            assert!(!s.to_bytes().is_empty());
            // SAFETY: as above.
            let v = unsafe { CStr::from_ptr(ps3rt_version()) };
            assert_eq!(v.to_str().ok(), Some(ps3rt::VERSION));
            assert_eq!(ps3rt_abi_version(), PS3RT_ABI_VERSION);
            let _ = last_error();
        }
    }
}

/// An options struct in any state: NULL, initialized, uninitialized, too small, from a newer header
/// (zero or non-zero tail).
#[repr(C, align(8))]
struct OptionsBuf([u8; 64]);

fn create(state: &mut State, input: &mut Bytes<'_>) {
    let mode = input.u8() % 7;
    let budget = match input.u8() % 6 {
        0 => 0,
        1 => TOTAL_HIGH + 1,
        2 => usize::MAX,
        _ => usize::from(input.u8() % 48) + 1,
    };
    let steps = match input.u8() % 5 {
        0 => 0,
        1 => usize::MAX / 2,
        2 => 40_000,
        n => usize::from(n) - 2,
    };
    let model_pick = input.u8();
    let out_null = input.u8().is_multiple_of(16);
    if state.encoders.len() >= 3 {
        return;
    }
    let mut buf = OptionsBuf([0; 64]);
    let known = size_of::<ps3rt_encoder_options>();
    let options: *const ps3rt_encoder_options = if mode == 0 {
        ptr::null()
    } else {
        let o = ps3rt_encoder_options {
            struct_size: match mode {
                1 | 2 => known,
                3 => 0,
                4 => known - 1,
                _ => known + 16,
            },
            budget,
            steps,
        };
        // SAFETY: the buffer holds 64 bytes, more than the struct, and is 8-aligned.
        unsafe { (&raw mut buf).cast::<ps3rt_encoder_options>().write(o) };
        if mode == 6 {
            buf.0[known + 3] = 1; // a field this version does not know, set
        }
        (&raw const buf).cast()
    };
    let model = match model_pick % 8 {
        0 => ptr::null_mut(),
        1 => (&raw mut *state.fake).cast(),
        _ => model(),
    };
    let sentinel = ptr::dangling_mut::<ps3rt_encoder>();
    let mut encoder = sentinel;
    let out: *mut *mut ps3rt_encoder = if out_null {
        ptr::null_mut()
    } else {
        &mut encoder
    };
    // SAFETY: `model` is the live model, NULL or a fake (refused by its tag); `options` NULL or 64
    // readable bytes; `out` NULL or a live variable.
    let s = unsafe { ps3rt_encoder_create(model, options, out) };
    let ok = check("ps3rt_encoder_create", s);
    if !ok {
        assert_eq!(encoder, sentinel, "an out-parameter was written on failure");
        return;
    }
    let (budget, steps) = match mode {
        0 => (2560, 1),
        _ => (if budget == 0 { 2560 } else { budget }, steps.max(1)),
    };
    assert!(model_pick % 8 >= 2 && !out_null && budget <= TOTAL_HIGH);
    assert!(
        steps.checked_mul(budget).is_some_and(|n| n <= TOTAL_HIGH),
        "{steps} steps x budget {budget} accepted"
    );
    state.encoders.push(Enc {
        handle: encoder,
        budget,
        steps,
    });
}

fn destroy(state: &mut State, input: &mut Bytes<'_>) {
    let (enc, index) = state.encoder(input.u8());
    // SAFETY: one of our live encoders (removed from the list: never used again), NULL, or a
    // pointer to 8+ readable bytes of another type (refused by its tag, not freed).
    unsafe { ps3rt_encoder_destroy(enc) };
    if let Some(i) = index {
        state.encoders.swap_remove(i);
    }
}

/// A frame description from the fuzzer, with planes of exactly the documented size when it is
/// valid.
fn encode(state: &mut State, input: &mut Bytes<'_>) {
    let (enc, index) = state.encoder(input.u8());
    let format = i32::from(input.u8() % 14) - 1;
    let big = input.u8();
    let w = if big == 255 {
        40_000
    } else {
        u32::from(input.u16() % 700)
    };
    let h = if big == 254 {
        40_000
    } else {
        u32::from(input.u16() % 500)
    };
    let stride_modes = [input.u8(), input.u8(), input.u8()];
    let pads = [input.u16(), input.u16(), input.u16()];
    let nulls = input.u8();
    let frame_null = nulls & 0x80 != 0 && nulls & 0x40 != 0;
    let out_null = nulls & 0x40 != 0 && !frame_null;
    let fill = input.take(256).to_vec();

    let layout = ps3rt_layout(format, w as usize, h as usize);
    let mut desc = ps3rt_frame {
        width: w,
        height: h,
        format,
        planes: [ptr::dangling(); PS3RT_MAX_PLANES],
        strides: [0; PS3RT_MAX_PLANES],
    };
    let mut buffers: Vec<Vec<u8>> = Vec::new();
    let mut valid = layout.is_some() && (1..=32_768).contains(&w) && (1..=32_768).contains(&h);
    let mut total = 0usize;
    for (p, &(row, rows)) in layout.iter().flatten().enumerate() {
        let stride = match stride_modes[p] % 4 {
            0 => 0,
            1 => row,
            2 => row + usize::from(pads[p] % 64),
            _ => usize::from(pads[p]),
        };
        desc.strides[p] = stride;
        let effective = if stride == 0 { row } else { stride };
        if nulls & (1 << p) != 0 {
            desc.planes[p] = ptr::null();
            valid = false;
            continue;
        }
        if effective < row || !valid {
            valid = false;
            continue;
        }
        let len = effective * (rows - 1) + row;
        total += len;
        if len > MAX_PLANE || total > 3 * MAX_PLANE {
            return; // too big to allocate here: not called
        }
        let mut plane = vec![0u8; len];
        for (i, b) in plane.iter_mut().enumerate() {
            *b = fill.get(i % fill.len().max(1)).copied().unwrap_or(128) ^ (i as u8);
        }
        desc.planes[p] = plane.as_ptr();
        buffers.push(plane);
    }
    let will_run = valid && !frame_null && !out_null && index.is_some();
    if will_run {
        if state.encodes >= MAX_ENCODES {
            return;
        }
        state.encodes += 1;
    }
    let sentinel = ptr::dangling::<ps3rt_output>();
    let mut out = sentinel;
    let out_ptr: *mut *const ps3rt_output = if out_null { ptr::null_mut() } else { &mut out };
    let frame_ptr: *const ps3rt_frame = if frame_null { ptr::null() } else { &desc };
    // SAFETY: `enc` is live, NULL or refused by its tag; every plane the description makes ps3rt
    // read points to exactly the documented number of bytes (the `buffers`, alive until the end of
    // this function); unused planes are dangling and must not be read; `out_ptr` NULL or live.
    let s = unsafe { ps3rt_encoder_encode(enc, frame_ptr, out_ptr) };
    let ok = check("ps3rt_encoder_encode", s);
    if !ok {
        assert_eq!(out, sentinel, "an out-parameter was written on failure");
        assert!(
            !will_run,
            "a frame described as docs/c-api.md says was refused: {}",
            last_error()
        );
        return;
    }
    assert!(will_run, "an invalid call succeeded: {desc:?}");
    let e = &state.encoders[index.unwrap_or_default()];
    check_output(out, e, w, h);
    drop(buffers);
}

/// Row bytes and rows of every plane of a C frame description, from the table in docs/c-api.md
/// (None for a format value that is not a format).
fn ps3rt_layout(format: i32, w: usize, h: usize) -> Option<Vec<(usize, usize)>> {
    let (hw, hh) = (w.div_ceil(2), h.div_ceil(2));
    Some(match format {
        1 | 2 => vec![(3 * w, h)],
        3 | 4 => vec![(4 * w, h)],
        5 => vec![(w, h)],
        6 | 7 => vec![(4 * hw, h)],
        8 | 9 => vec![(w, h), (2 * hw, hh)],
        10 => vec![(w, h), (hw, hh), (hw, hh)],
        _ => return None,
    })
}

fn check_output(out: *const ps3rt_output, e: &Enc, w: u32, h: u32) {
    assert!(!out.is_null());
    ENCODED.fetch_add(1, Ordering::Relaxed);
    // SAFETY: a successful encode points `out` to the encoder's live output.
    let o = unsafe { &*out };
    assert_eq!(o.token_count, LOWRES_TOKENS + e.steps * e.budget);
    assert_eq!((o.width, o.lowres_token_count), (WIDTH, LOWRES_TOKENS));
    assert_eq!((o.budget, o.steps), (e.budget, e.steps));
    assert_eq!((o.frame_width, o.frame_height), (w, h));
    // SAFETY: features holds token_count * width floats, valid until the next encode.
    let f = unsafe { std::slice::from_raw_parts(o.features, o.token_count * o.width) };
    assert!(f.iter().all(|v| v.is_finite()));
    // SAFETY: tokens holds token_count entries.
    let t = unsafe { std::slice::from_raw_parts(o.tokens, o.token_count) };
    assert!(
        t.iter()
            .all(|t| t.bbox.x >= 0.0 && t.bbox.x + t.bbox.w <= w as f32 * 1.001)
    );
}

fn encode_tensor(state: &mut State, input: &mut Bytes<'_>) {
    let (enc, _) = state.encoder(input.u8());
    let side = usize::from(input.u8() % 40);
    let null = input.u8().is_multiple_of(8);
    let values: Vec<f32> = (0..3 * side * side)
        .map(|i| f32::from_bits(u32::from(input.u8()) << 24 | i as u32))
        .collect();
    let mut out = ptr::dangling::<ps3rt_output>();
    let tensor = if null { ptr::null() } else { values.as_ptr() };
    // SAFETY: `tensor` NULL or 3 * side * side readable floats; `enc` live, NULL or refused.
    let s = unsafe { ps3rt_encoder_encode_tensor(enc, tensor, side, &mut out) };
    // The model's input is 3780: no side here is right.
    assert!(!check("ps3rt_encoder_encode_tensor", s));
}

fn encode_jpeg(state: &mut State, input: &mut Bytes<'_>) {
    let (enc, index) = state.encoder(input.u8());
    let len = usize::from(input.u16() % 2048);
    let null = input.u8().is_multiple_of(8);
    let bytes = input.take(len).to_vec();
    if index.is_some() {
        if state.encodes >= MAX_ENCODES {
            return;
        }
        state.encodes += 1;
    }
    let mut out = ptr::dangling::<ps3rt_output>();
    let data = if null { ptr::null() } else { bytes.as_ptr() };
    // SAFETY: `data` NULL or `bytes.len()` readable bytes; `enc` live, NULL or refused.
    let s = unsafe { ps3rt_encoder_encode_jpeg(enc, data, bytes.len(), &mut out) };
    if check("ps3rt_encoder_encode_jpeg", s) {
        let e = &state.encoders[index.unwrap_or_default()];
        // SAFETY: success: `out` points to the encoder's output.
        let (w, h) = unsafe { ((*out).frame_width, (*out).frame_height) };
        check_output(out, e, w, h);
    }
}

fn set_prompt(state: &mut State, input: &mut Bytes<'_>) {
    let (enc, index) = state.encoder(input.u8());
    let len = match input.u8() % 4 {
        0 => WIDTH,
        1 => 0,
        _ => usize::from(input.u8() % 64),
    };
    let null = input.u8().is_multiple_of(4);
    let values: Vec<f32> = (0..len).map(|_| f32::from_bits(input.u32())).collect();
    let p = if null { ptr::null() } else { values.as_ptr() };
    // SAFETY: `p` NULL or `len` readable floats (an empty Vec's dangling pointer with length 0 is
    // never read); `enc` live, NULL or refused.
    let s = unsafe { ps3rt_encoder_set_prompt(enc, p, len) };
    let ok = check("ps3rt_encoder_set_prompt", s);
    let valid_values = len == WIDTH
        && !null
        && values.iter().all(|v| v.is_finite())
        && values.iter().any(|&v| v != 0.0);
    let restore = null && len == 0;
    assert_eq!(
        ok,
        index.is_some() && (valid_values || restore),
        "len {len} null {null}"
    );
}

fn get_info(state: &mut State, input: &mut Bytes<'_>) {
    let pick = input.u8();
    let m: *const ps3rt_model = match pick % 4 {
        0 => ptr::null(),
        1 => match state.encoders.first() {
            Some(e) => e.handle.cast_const().cast(),
            None => ptr::null(),
        },
        _ => model(),
    };
    let mut info = ptr::dangling::<ps3rt_model_info>();
    let out: *mut *const ps3rt_model_info = if pick & 0x10 != 0 {
        ptr::null_mut()
    } else {
        &mut info
    };
    // SAFETY: `m` live, NULL or refused by its tag; `out` NULL or live.
    let s = unsafe { ps3rt_model_get_info(m, out) };
    if check("ps3rt_model_get_info", s) {
        // SAFETY: success: `info` points to the model's description.
        let i = unsafe { &*info };
        assert_eq!(
            (i.width, i.input_size, i.total_high_patches),
            (WIDTH, 3780, TOTAL_HIGH)
        );
    } else {
        assert_eq!(info, ptr::dangling());
    }
}

fn options_init(input: &mut Bytes<'_>) {
    let which = input.u8();
    let size = match input.u8() % 6 {
        0 => 0,
        1 => 4,
        2 => size_of::<ps3rt_model_options>(),
        3 => size_of::<ps3rt_encoder_options>(),
        4 => 48,
        _ => 64,
    };
    let null = input.u8().is_multiple_of(8);
    let mut buf = OptionsBuf([0xee; 64]);
    let p: *mut OptionsBuf = if null { ptr::null_mut() } else { &mut buf };
    let size = size.min(64);
    if which & 1 == 0 {
        // SAFETY: `p` NULL or 64 writable bytes, at least `size`.
        let s = unsafe { ps3rt_model_options_init(p.cast(), size) };
        assert_eq!(
            check("ps3rt_model_options_init", s),
            !null && size >= size_of::<ps3rt_model_options>()
        );
    } else {
        // SAFETY: as above.
        let s = unsafe { ps3rt_encoder_options_init(p.cast(), size) };
        assert_eq!(
            check("ps3rt_encoder_options_init", s),
            !null && size >= size_of::<ps3rt_encoder_options>()
        );
    }
}

fn model_load(input: &mut Bytes<'_>) {
    let which = input.u8();
    let path: Option<&CStr> = match which % 6 {
        0 => None,
        1 => Some(c""),
        2 => Some(c"/nonexistent/ps3rt-package"),
        3 => Some(c"/dev/null"),
        4 => Some(c"/proc/self"),
        _ => Some(c"/"),
    };
    let sentinel = ptr::dangling_mut::<ps3rt_model>();
    let mut m = sentinel;
    let out: *mut *mut ps3rt_model = if which & 0x40 != 0 {
        ptr::null_mut()
    } else {
        &mut m
    };
    let p = path.map_or(ptr::null(), CStr::as_ptr);
    // SAFETY: `p` NULL or NUL-terminated; options NULL; `out` NULL or live.
    let s = unsafe { ps3rt_model_load(p, ptr::null(), out) };
    // None of these paths is a package.
    assert!(!check("ps3rt_model_load", s));
    assert_eq!(m, sentinel);
    // The embedded model with options that are refused before anything is loaded.
    let mut buf = OptionsBuf([0; 64]);
    let o = ps3rt_model_options {
        struct_size: if which & 0x80 != 0 {
            0
        } else {
            size_of::<ps3rt_model_options>()
        },
        backend: 3 + i32::from(which & 0x1f),
        threads: 0,
    };
    // SAFETY: 64 aligned bytes hold the struct.
    unsafe { (&raw mut buf).cast::<ps3rt_model_options>().write(o) };
    // SAFETY: options point to 64 readable bytes; `out` NULL or live.
    let s = unsafe { ps3rt_model_load_embedded((&raw const buf).cast(), out) };
    assert!(!check("ps3rt_model_load_embedded", s));
    assert_eq!(m, sentinel);
}
