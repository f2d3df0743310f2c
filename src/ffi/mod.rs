//! The C ABI: what `include/ps3rt.h` declares (generated from this module by cbindgen).
//!
//! Every exported function is `ps3rt_`-prefixed, catches panics (mapped to
//! [`ps3rt_status::Internal`]), checks every pointer and size it is given, writes its out-parameters
//! only on success and records a thread-local message on failure ([`ps3rt_last_error`]).
//!
//! - [`ps3rt_model`]: a loaded model, shared by any number of encoders on any threads.
//! - [`ps3rt_encoder`]: one encoder, used by one thread at a time (concurrent calls on one encoder are
//!   refused with [`ps3rt_status::Busy`]); its [`ps3rt_output`] views borrow from it and stay valid
//!   until its next encode or its destruction.
//! - [`ps3rt_frame`]: a caller-filled descriptor of the caller's pixels (never copied).
//!
//! `unsafe` code of the crate lives here only; each block states the invariant it relies on.
//! `docs/c-api.md` is the user-facing reference.

#![allow(non_camel_case_types)]

mod call;
mod encoder;
mod frame;
mod handle;
mod labels;
mod log_sink;
mod model;
mod options;
mod output;
mod pinned;
mod status;
mod version;

pub use call::ps3rt_last_error;
pub use encoder::{
    ps3rt_encoder, ps3rt_encoder_create, ps3rt_encoder_destroy, ps3rt_encoder_encode,
    ps3rt_encoder_encode_jpeg, ps3rt_encoder_encode_tensor, ps3rt_encoder_options,
    ps3rt_encoder_options_init, ps3rt_encoder_set_prompt, ps3rt_encoder_set_yuv_color,
};
pub use frame::{
    PS3RT_MAX_PLANES, ps3rt_frame, ps3rt_pixel_format, ps3rt_yuv_matrix, ps3rt_yuv_range,
};
pub use labels::{
    ps3rt_encoder_label_boxes, ps3rt_encoder_label_regions, ps3rt_encoder_set_prompt_label,
    ps3rt_encoder_set_prompt_text, ps3rt_label_options, ps3rt_label_options_init,
    ps3rt_label_score, ps3rt_labels_info, ps3rt_model_get_labels_info, ps3rt_model_label_name,
    ps3rt_region_label, ps3rt_region_labels,
};
pub use log_sink::{ps3rt_log_callback, ps3rt_log_level, ps3rt_set_log_callback};
pub use model::{
    ps3rt_backend, ps3rt_model, ps3rt_model_destroy, ps3rt_model_get_info, ps3rt_model_info,
    ps3rt_model_load, ps3rt_model_load_embedded, ps3rt_model_options, ps3rt_model_options_init,
};
pub use output::{ps3rt_box, ps3rt_output, ps3rt_region, ps3rt_timings, ps3rt_token};
pub use pinned::{ps3rt_pinned_alloc, ps3rt_pinned_free};
pub use status::{ps3rt_status, ps3rt_status_string};
pub use version::{
    PS3RT_ABI_VERSION, PS3RT_VERSION_MAJOR, PS3RT_VERSION_MINOR, PS3RT_VERSION_PATCH,
    ps3rt_abi_version, ps3rt_version,
};
