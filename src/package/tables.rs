//! `tables.safetensors`: what the glue between the graphs needs, converted to f32 once at load.
//!
//! - `pos.<S>` `[g*g, C]` for each high-res scale S: the 27x27 position table resampled to the scale's
//!   grid exactly as PS3 does it, plus PS3's learned per-scale residual;
//! - `prior_prompt` `[C]`, the learned bottom-up prompt, and `prior_prompt_hr` `[D]`, its projection for
//!   the high-res selection branch;
//! - `prompt_proj_hr.weight` `[D, C]` and `.bias` `[D]`, that projection, for top-down prompts.

use safetensors::{Dtype, SafeTensors};

use super::Manifest;
use crate::geometry::Geometry;

/// The glue tables of a package, in f32.
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    /// Position rows per high-res scale, `[g*g * C]` each.
    pub pos: Vec<Vec<f32>>,
    /// Bottom-up prompt `[C]`.
    pub prior_prompt: Vec<f32>,
    /// Bottom-up prompt projected for the high-res branch `[D]`.
    pub prior_prompt_hr: Vec<f32>,
    /// Prompt projection weight `[D, C]` (top-down prompts).
    pub prompt_proj_hr_weight: Vec<f32>,
    /// Prompt projection bias `[D]`.
    pub prompt_proj_hr_bias: Vec<f32>,
}

impl Tables {
    pub fn parse(bytes: &[u8], manifest: &Manifest, geometry: &Geometry) -> Result<Tables, String> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| format!("not a valid safetensors file: {e}"))?;
        let c = manifest.model.width;
        let d = manifest.model.hrsel_dim;
        let read = |name: &str, shape: &[usize]| read_f32(&st, name, shape);
        let mut pos = Vec::new();
        for (i, &s) in geometry.high_scales().iter().enumerate() {
            let g = geometry.grid(i);
            pos.push(read(&format!("pos.{s}"), &[g * g, c])?);
        }
        Ok(Tables {
            pos,
            prior_prompt: read("prior_prompt", &[c])?,
            prior_prompt_hr: read("prior_prompt_hr", &[d])?,
            prompt_proj_hr_weight: read("prompt_proj_hr.weight", &[d, c])?,
            prompt_proj_hr_bias: read("prompt_proj_hr.bias", &[d])?,
        })
    }
}

/// A tensor `name` of exactly `shape`, F32 or F16, as finite f32 values (the package tables and the
/// label bank).
pub(crate) fn read_f32(
    st: &SafeTensors<'_>,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>, String> {
    let t = st
        .tensor(name)
        .map_err(|_| format!("tensor {name} is missing"))?;
    if t.shape() != shape {
        return Err(format!(
            "tensor {name} has shape {:?}, expected {shape:?}",
            t.shape()
        ));
    }
    let values: Vec<f32> = match t.dtype() {
        Dtype::F32 => t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => t
            .data()
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(format!(
                "tensor {name} has dtype {other:?}; F32 or F16 expected"
            ));
        }
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "tensor {name} holds a non-finite value at flat index {i}"
        ));
    }
    Ok(values)
}
