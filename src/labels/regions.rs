//! Region embeddings: which high-res tokens lie in a region, the pool head over them, the bank's scores.

use crate::backend::PoolSession;
use crate::error::{Error, Result};
use crate::geometry::FrameBox;
use crate::model::Model;
use crate::output::Output;

use super::{LabelOptions, LabelScore, RegionLabel};

/// Edges closer than this (in units of the frame side) count as touching, not overlapping: regions
/// are built from token boxes, whose edges carry f32 rounding; distinct grid lines of PS3's scales are
/// at least 1/540 of the frame apart.
const EDGE_EPS: f64 = 1e-6;

/// One encoder's pool session, masks and results, reused from frame to frame.
#[derive(Default)]
pub(crate) struct RegionLabeler {
    session: Option<(usize, Box<dyn PoolSession>)>,
    boxes: Vec<(FrameBox, u32, f32)>,
    results: Vec<RegionLabel>,
    scores: Vec<LabelScore>,
}

impl std::fmt::Debug for RegionLabeler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionLabeler")
            .field("results", &self.results.len())
            .finish()
    }
}

impl RegionLabeler {
    /// The results of the last labeling.
    pub fn results(&self) -> &[RegionLabel] {
        &self.results
    }

    /// Embed and label `boxes` (frame pixels), or else the best selected regions of `output`.
    pub fn label(
        &mut self,
        model: &Model,
        output: &Output,
        boxes: Option<&[FrameBox]>,
        options: &LabelOptions,
    ) -> Result<&[RegionLabel]> {
        self.results.clear();
        let labels = model.labels();
        let max_regions = labels.max_regions().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "model {}: the package has no region pool head (graphs.pool), so regions cannot be embedded or labelled; re-export it with tools/export/ps3_export.py",
                model.origin()
            ))
        })?;
        let g = model.geometry();
        let width = model.width();
        let n_low = g.lowres_tokens();
        let n = output.selected().len();
        if n == 0 || output.features().len() != (n_low + n) * width {
            return Err(Error::InvalidArgument(
                "no encoded frame to label: encode a frame first".into(),
            ));
        }
        let (fw, fh) = output.frame_size();
        self.boxes.clear();
        match boxes {
            Some(list) => {
                for b in list {
                    if ![b.x, b.y, b.w, b.h].iter().all(|v| v.is_finite())
                        || b.w <= 0.0
                        || b.h <= 0.0
                    {
                        return Err(Error::InvalidArgument(format!(
                            "box {b:?} must have finite coordinates and a positive size"
                        )));
                    }
                    self.boxes.push((*b, 0, 0.0));
                }
            }
            None => {
                let limit = if options.max_regions == 0 {
                    max_regions
                } else {
                    options.max_regions
                };
                self.boxes.extend(
                    output
                        .regions()
                        .iter()
                        .filter(|r| r.patches >= options.min_patches)
                        .take(limit)
                        .map(|r| (r.bbox, r.scale, r.score)),
                );
            }
        }
        if self.boxes.is_empty() {
            return Ok(&self.results);
        }
        let session = match &mut self.session {
            Some((tokens, s)) if *tokens == n => s,
            slot => {
                let s = model.inner().backend.new_pool_session(n)?;
                &mut slot.insert((n, s)).1
            }
        };
        let r_max = session.max_regions();
        let bank = labels.bank();
        for chunk in self.boxes.chunks(r_max) {
            let (tokens, mask) = session.pool_inputs()?;
            tokens.copy_from_slice(&output.features()[n_low * width..]);
            mask.fill(0.0);
            let mut counts = [0u32; 256];
            for (row, (b, _, _)) in chunk.iter().enumerate() {
                let x0 = b.x as f64 / fw as f64;
                let x1 = (b.x + b.w) as f64 / fw as f64;
                let y0 = b.y as f64 / fh as f64;
                let y1 = (b.y + b.h) as f64 / fh as f64;
                let m = &mut mask[row * n..(row + 1) * n];
                for (k, tok) in output.selected().iter().enumerate() {
                    let grid = g.grid(tok.scale as usize) as f64;
                    let (c, r) = (tok.col as f64, tok.row as f64);
                    let inside = (c + 1.0) / grid > x0 + EDGE_EPS
                        && c / grid < x1 - EDGE_EPS
                        && (r + 1.0) / grid > y0 + EDGE_EPS
                        && r / grid < y1 - EDGE_EPS;
                    if inside {
                        m[k] = 1.0;
                        counts[row] += 1;
                    }
                }
            }
            session.run_pool()?;
            let emb = session.embeddings()?;
            for (row, &(bbox, scale, score)) in chunk.iter().enumerate() {
                let e = &emb[row * width..(row + 1) * width];
                if let Some(i) = e.iter().position(|v| !v.is_finite()) {
                    return Err(Error::NonFinite(format!(
                        "region embedding {row} (channel {i})"
                    )));
                }
                let mut label = RegionLabel {
                    bbox,
                    scale,
                    region_score: score,
                    tokens: counts[row],
                    embedding: e.to_vec(),
                    labels: Vec::new(),
                };
                if let Some(bank) = bank {
                    bank.score_into(e, options.top_k, &mut self.scores)
                        .map_err(Error::InvalidArgument)?;
                    label.labels.extend_from_slice(&self.scores);
                }
                self.results.push(label);
            }
        }
        Ok(&self.results)
    }
}
