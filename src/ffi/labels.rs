//! Region labels and top-down prompts in the C ABI (docs/labels.md): the label bank of a model,
//! labeling the regions (or given boxes) of the last encode, and prompts from text or a bank label.

use std::ffi::c_char;
use std::time::Instant;

use crate::geometry::FrameBox;
use crate::labels::{LabelOptions, RegionLabel};

use super::call::guard;
use super::encoder::ps3rt_encoder;
use super::handle::{c_str, handle, out_param, slice, write_out};
use super::model::ps3rt_model;
use super::options::{self, SizedOptions};
use super::output::ps3rt_box;
use super::status::{Failure, ps3rt_status};

/// What to label. Start from `ps3rt_label_default_options()` (or `ps3rt_label_options_init`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ps3rt_label_options {
    /// `sizeof(ps3rt_label_options)` as the caller's header defines it (set by the init functions).
    pub struct_size: usize,
    /// Most regions to label, best first (0, the default: the pool graph's region count,
    /// `ps3rt_labels_info.max_regions`). Ignored by `ps3rt_encoder_label_boxes`.
    pub max_regions: usize,
    /// Labels kept per region, best first (default 3).
    pub top_k: usize,
    /// Skip regions with fewer selected patches (default 1). Ignored by `ps3rt_encoder_label_boxes`.
    pub min_patches: u32,
}

impl SizedOptions for ps3rt_label_options {
    const NAME: &'static str = "ps3rt_label_options";
    const DEFAULT_FN: &'static str = "ps3rt_label_default_options";
    fn defaults() -> Self {
        let d = LabelOptions::default();
        ps3rt_label_options {
            struct_size: size_of::<Self>(),
            max_regions: d.max_regions,
            top_k: d.top_k,
            min_patches: d.min_patches,
        }
    }
}

/// Fill `options` (of `struct_size` bytes, `sizeof(ps3rt_label_options)`) with the defaults.
///
/// # Safety
/// `options` is NULL or points to `struct_size` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_label_options_init(
    options: *mut ps3rt_label_options,
    struct_size: usize,
) -> ps3rt_status {
    guard("ps3rt_label_options_init", || {
        // SAFETY: the caller guarantees struct_size writable bytes at options (or NULL, refused).
        unsafe { options::init(options, struct_size, "options") }
    })
}

/// One label of one region.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ps3rt_label_score {
    /// Index in the model's bank (`ps3rt_model_label_name`).
    pub index: usize,
    /// `sigmoid(logit)`: SigLIP's probability that the label describes the region (calibrated when
    /// `ps3rt_labels_info.calibrated`).
    pub score: f32,
    /// `logit_scale * cos(region, label) + logit_bias`.
    pub logit: f32,
    /// The label (NUL-terminated UTF-8, owned by the model).
    pub label: *const c_char,
}

/// One labelled region.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ps3rt_region_label {
    /// The region in frame pixels.
    pub bbox: ps3rt_box,
    /// The region's scale in pixels (756, 1512, 3780); 0 for a box given by the caller.
    pub scale: u32,
    /// High-res tokens pooled (overlapping the box); 0: none did, and all were pooled (as PS3 does).
    pub tokens: u32,
    /// The region's selection score (0 for a box given by the caller).
    pub region_score: f32,
    /// The best labels, best first (`label_count` entries; NULL when 0).
    pub labels: *const ps3rt_label_score,
    /// Number of labels.
    pub label_count: usize,
    /// The region embedding (`embedding_dim` floats, PS3's pooled output, not normalized).
    pub embedding: *const f32,
    /// Width of the embedding (the model's width C).
    pub embedding_dim: usize,
}

/// The result of one labeling, owned by the encoder: valid until its next labeling or encode call or
/// its destruction. Later versions may append fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ps3rt_region_labels {
    /// The labelled regions, best first (NULL when `region_count` is 0).
    pub regions: *const ps3rt_region_label,
    /// Number of regions.
    pub region_count: usize,
    /// 1 when the scores are calibrated probabilities (the checkpoint's logit scale and bias), else 0.
    pub calibrated: i32,
    /// Time the labeling took (mask, pool head, scores), milliseconds.
    pub label_ms: f64,
}

/// The C view of an encoder's last labeling.
#[derive(Debug)]
pub(crate) struct LabelsView {
    view: ps3rt_region_labels,
    regions: Vec<ps3rt_region_label>,
    scores: Vec<ps3rt_label_score>,
}

impl Default for LabelsView {
    fn default() -> Self {
        LabelsView {
            view: ps3rt_region_labels {
                regions: std::ptr::null(),
                region_count: 0,
                calibrated: 0,
                label_ms: 0.0,
            },
            regions: Vec::new(),
            scores: Vec::new(),
        }
    }
}

impl LabelsView {
    fn refresh(
        &mut self,
        results: &[RegionLabel],
        bank: Option<&crate::labels::LabelBank>,
        ms: f64,
    ) -> &ps3rt_region_labels {
        self.scores.clear();
        for r in results {
            self.scores.extend(r.labels.iter().map(|l| {
                ps3rt_label_score {
                    index: l.index,
                    score: l.score,
                    logit: l.logit,
                    label: bank
                        .and_then(|b| b.c_label(l.index))
                        .map_or(std::ptr::null(), |c| c.as_ptr()),
                }
            }));
        }
        self.regions.clear();
        let mut at = 0;
        for r in results {
            let n = r.labels.len();
            self.regions.push(ps3rt_region_label {
                bbox: r.bbox.into(),
                scale: r.scale,
                tokens: r.tokens,
                region_score: r.region_score,
                // In bounds: `scores` holds every region's labels in order (no reallocation after).
                labels: if n == 0 {
                    std::ptr::null()
                } else {
                    self.scores[at..].as_ptr()
                },
                label_count: n,
                embedding: r.embedding.as_ptr(),
                embedding_dim: r.embedding.len(),
            });
            at += n;
        }
        self.view = ps3rt_region_labels {
            regions: if self.regions.is_empty() {
                std::ptr::null()
            } else {
                self.regions.as_ptr()
            },
            region_count: self.regions.len(),
            calibrated: i32::from(bank.is_some_and(|b| b.calibrated())),
            label_ms: ms,
        };
        &self.view
    }
}

fn label_options(o: &ps3rt_label_options) -> Result<LabelOptions, Failure> {
    if o.top_k > 100_000 {
        return Err(Failure::invalid(format!(
            "options->top_k {} is out of range",
            o.top_k
        )));
    }
    Ok(LabelOptions {
        max_regions: o.max_regions,
        top_k: o.top_k,
        min_patches: o.min_patches,
    })
}

/// Label `boxes` (or the regions when None) of the encoder's last encode and publish the view.
fn label(
    encoder: *mut ps3rt_encoder,
    boxes: Option<Vec<FrameBox>>,
    options: *const ps3rt_label_options,
    out: *mut *const ps3rt_region_labels,
) -> Result<(), Failure> {
    // SAFETY: the caller guarantees a live handle or NULL.
    let h = unsafe { handle(encoder.cast_const(), "encoder") }?;
    // SAFETY: the caller guarantees NULL or readable options.
    let o = label_options(&unsafe { options::read(options, "options") }?)?;
    let out = out_param(out, "labels")?;
    let ex = h.lock()?;
    let state = &mut *ex.state;
    let t = Instant::now();
    state.poisoned = true;
    let result = match &boxes {
        Some(b) => state.encoder.label_boxes(b, &o).map(|_| ()),
        None => state.encoder.label_regions(&o).map(|_| ()),
    };
    state.poisoned = false;
    result?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let model = state.encoder.model().clone();
    let view = state
        .labels
        .refresh(state.encoder.region_labels(), model.labels().bank(), ms);
    // SAFETY: checked out-parameter. The view lives in the boxed handle; its arrays point into the
    // encoder's results and the model's bank (kept alive by the encoder), unchanged until the next call.
    unsafe { write_out(out, std::ptr::from_ref(view)) };
    Ok(())
}

/// Embed the best selected regions of the encoder's last encode with the model's region pool head
/// and score them against its label bank. On success `*labels` points to the result, owned by the
/// encoder until its next labeling or encode call or its destruction. `options` NULL: the defaults.
/// Fails with `PS3RT_STATUS_INVALID_ARGUMENT` when the package has no pool head or nothing was encoded.
///
/// # Safety
/// `encoder` is NULL or a live encoder handle; `options` is NULL or initialized options; `labels` is
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_encoder_label_regions(
    encoder: *mut ps3rt_encoder,
    options: *const ps3rt_label_options,
    labels: *mut *const ps3rt_region_labels,
) -> ps3rt_status {
    guard("ps3rt_encoder_label_regions", || {
        label(encoder, None, options, labels)
    })
}

/// Like `ps3rt_encoder_label_regions`, for `count` boxes in frame pixels given by the caller.
///
/// # Safety
/// As `ps3rt_encoder_label_regions`; `boxes` is NULL or points to `count` boxes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_encoder_label_boxes(
    encoder: *mut ps3rt_encoder,
    boxes: *const ps3rt_box,
    count: usize,
    options: *const ps3rt_label_options,
    labels: *mut *const ps3rt_region_labels,
) -> ps3rt_status {
    guard("ps3rt_encoder_label_boxes", || {
        if count == 0 {
            return Err(Failure::invalid("count is 0: no boxes to label"));
        }
        // SAFETY: the caller guarantees `count` readable boxes at `boxes`.
        let b = unsafe { slice(boxes, count, "boxes") }?;
        let list = b
            .iter()
            .map(|b| FrameBox {
                x: b.x,
                y: b.y,
                w: b.w,
                h: b.h,
            })
            .collect();
        label(encoder, Some(list), options, labels)
    })
}

/// Select top-down with a free-text prompt (NUL-terminated UTF-8), encoded by the package's text
/// tower as PS3 does (`text_model(tokenizer(text)).prompt`); the text tower is built on the first
/// call. Fails with `PS3RT_STATUS_INVALID_ARGUMENT` when the package has no text tower.
///
/// # Safety
/// `encoder` is NULL or a live encoder handle; `text` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_encoder_set_prompt_text(
    encoder: *mut ps3rt_encoder,
    text: *const c_char,
) -> ps3rt_status {
    guard("ps3rt_encoder_set_prompt_text", || {
        // SAFETY: the caller guarantees a live handle or NULL.
        let h = unsafe { handle(encoder.cast_const(), "encoder") }?;
        // SAFETY: the caller guarantees NULL or a NUL-terminated string.
        let text = unsafe { c_str(text, "text") }?
            .to_str()
            .map_err(|_| Failure::invalid("text is not UTF-8"))?;
        let ex = h.lock()?;
        ex.state.encoder.set_prompt_text(text)?;
        Ok(())
    })
}

/// Select top-down with the prompt of the bank label spelled exactly `label`.
///
/// # Safety
/// `encoder` is NULL or a live encoder handle; `label` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_encoder_set_prompt_label(
    encoder: *mut ps3rt_encoder,
    label: *const c_char,
) -> ps3rt_status {
    guard("ps3rt_encoder_set_prompt_label", || {
        // SAFETY: the caller guarantees a live handle or NULL.
        let h = unsafe { handle(encoder.cast_const(), "encoder") }?;
        // SAFETY: the caller guarantees NULL or a NUL-terminated string.
        let label = unsafe { c_str(label, "label") }?
            .to_str()
            .map_err(|_| Failure::invalid("label is not UTF-8"))?;
        let ex = h.lock()?;
        ex.state.encoder.set_prompt_label(label)?;
        Ok(())
    })
}

/// What a model offers for labels and prompts.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ps3rt_labels_info {
    /// `sizeof(ps3rt_labels_info)` as the caller's header defines it (set by the caller).
    pub struct_size: usize,
    /// Labels in the bank (0: no bank).
    pub label_count: usize,
    /// Regions per pool run (0: no region pool head, so no region embeddings or labels).
    pub max_regions: usize,
    /// 1 when the package carries the text tower (free-text prompts), else 0.
    pub has_text_tower: i32,
    /// 1 when the bank's scores are calibrated (the checkpoint's logit scale and bias), else 0.
    pub calibrated: i32,
    /// SigLIP logit scale t (0 without a bank).
    pub logit_scale: f32,
    /// SigLIP logit bias b (0 without a bank).
    pub logit_bias: f32,
}

/// Describe the model's label parts into `*info`, whose `struct_size` the caller sets to
/// `sizeof(ps3rt_labels_info)` (a larger struct from a newer header gets its extra bytes zeroed).
///
/// # Safety
/// `model` is NULL or a live model handle; `info` is NULL or points to `info->struct_size` writable
/// bytes with `struct_size` set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_model_get_labels_info(
    model: *const ps3rt_model,
    info: *mut ps3rt_labels_info,
) -> ps3rt_status {
    guard("ps3rt_model_get_labels_info", || {
        // SAFETY: the caller guarantees a live handle or NULL.
        let m = unsafe { handle(model, "model") }?;
        if info.is_null() {
            return Err(Failure::invalid("info is NULL"));
        }
        // SAFETY: non-NULL; the caller guarantees its struct_size field is readable.
        let size = unsafe { info.cast::<usize>().read_unaligned() };
        let known = size_of::<ps3rt_labels_info>();
        if size < known || size > 1 << 16 {
            return Err(Failure::invalid(format!(
                "info->struct_size is {size}; set it to sizeof(ps3rt_labels_info) ({known} with this library)"
            )));
        }
        let labels = m.model.labels();
        let bank = labels.bank();
        let value = ps3rt_labels_info {
            struct_size: size,
            label_count: bank.map_or(0, |b| b.len()),
            max_regions: labels.max_regions().unwrap_or(0),
            has_text_tower: i32::from(labels.has_text_tower()),
            calibrated: i32::from(bank.is_some_and(|b| b.calibrated())),
            logit_scale: bank.map_or(0.0, |b| b.logit_scale()),
            logit_bias: bank.map_or(0.0, |b| b.logit_bias()),
        };
        // SAFETY: the caller guarantees `size` >= known writable bytes at info; the part a newer
        // header appended is zeroed.
        unsafe {
            info.write_unaligned(value);
            std::ptr::write_bytes(info.cast::<u8>().add(known), 0, size - known);
        }
        Ok(())
    })
}

/// The bank label `index` (NUL-terminated UTF-8, owned by the model, valid until
/// `ps3rt_model_destroy`).
///
/// # Safety
/// `model` is NULL or a live model handle; `label` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_model_label_name(
    model: *const ps3rt_model,
    index: usize,
    label: *mut *const c_char,
) -> ps3rt_status {
    guard("ps3rt_model_label_name", || {
        // SAFETY: the caller guarantees a live handle or NULL.
        let m = unsafe { handle(model, "model") }?;
        let out = out_param(label, "label")?;
        let bank = m
            .model
            .labels()
            .bank()
            .ok_or_else(|| Failure::invalid("the model's package has no label bank"))?;
        let name = bank.c_label(index).ok_or_else(|| {
            Failure::invalid(format!(
                "index {index} is outside the bank's {} labels",
                bank.len()
            ))
        })?;
        // SAFETY: checked out-parameter; the string lives in the model's bank.
        unsafe { write_out(out, name.as_ptr()) };
        Ok(())
    })
}
