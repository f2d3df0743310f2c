//! `--overlay OUT.png`: the frame as people look at it, with what PS3 chose to look at closely.
//!
//! - The frame, scaled to the overlay width (area average when shrinking, nearest when enlarging);
//!   tensor inputs are un-normalized with the package's mean and std.
//! - The 27x27 selection probability as a heatmap (viridis, nearest cells, blended at
//!   [`HEAT_ALPHA`]), stretched over the frame's range of p; the legend's colour bar gives the values.
//! - Selected patches, a colour per scale ([`SCALE_COLOURS`]: 756 px red, 1512 px cyan, 3780 px white).
//!   Patches that are at least [`PER_PATCH_MIN_PX`] on the overlay are outlined one by one; smaller
//!   ones (too small for a box each) are outlined as the contour of the scale's selected area. Each
//!   scale's lines sit a few pixels further inside the selected area than the coarser scale's, so a
//!   cell picked at all three scales shows three nested outlines.
//! - The best regions (deduplicated when several scales share a box) as black boxes just outside the
//!   selection's outlines, labelled `#rank p` with the region's highest selection probability.
//! - A legend band below the frame: model, backend, input, budget and K per scale with the colours,
//!   the heatmap's colour bar, the region key and the latency per stage.

use std::path::Path;

use font8x8::UnicodeFonts;
use image::{ImageBuffer, ImageEncoder, Rgb, RgbImage};
use ps3rt::{Encoder, Error, FrameBox, Output};

use crate::inputs::LoadedInput;
use crate::report;

/// Outline colour of each high-res scale, in scale order (PS3-4K: 756, 1512, 3780 px).
pub const SCALE_COLOURS: [[u8; 3]; 5] = [
    [255, 48, 48],   // 756 px: red
    [0, 224, 255],   // 1512 px: cyan
    [255, 255, 255], // 3780 px: white
    [255, 160, 0],   // a fourth scale: orange
    [160, 255, 64],  // a fifth scale: green
];
/// Colour name of each entry of [`SCALE_COLOURS`], for the docs and the text output.
pub const SCALE_COLOUR_NAMES: [&str; 5] = ["red", "cyan", "white", "orange", "green"];
/// Opacity of the heatmap.
pub const HEAT_ALPHA: f32 = 0.4;
/// Patches at least this many overlay pixels wide and high are outlined one by one.
pub const PER_PATCH_MIN_PX: f32 = 16.0;
/// Default overlay width in pixels.
pub const DEFAULT_WIDTH: u32 = 1280;

const BLACK: [u8; 3] = [0, 0, 0];
const WHITE: [u8; 3] = [255, 255, 255];
const LEGEND_BG: [u8; 3] = [22, 22, 26];
const LEGEND_TEXT: [u8; 3] = [235, 235, 235];
const LEGEND_DIM: [u8; 3] = [160, 160, 168];

/// What to draw.
#[derive(Debug, Clone, Copy)]
pub struct OverlayOptions {
    /// Overlay width in pixels (the height follows the frame's aspect ratio, plus the legend).
    pub width: u32,
    /// How many regions to draw (best first, after merging boxes shared by several scales).
    pub regions: usize,
}

/// Colour of high-res scale `index`.
pub fn scale_colour(index: usize) -> [u8; 3] {
    SCALE_COLOURS[index % SCALE_COLOURS.len()]
}

/// Outline width in pixels for an overlay `width` pixels wide: 1 below 960, 2 below 1920, then 3.
fn line_width(width: u32) -> i64 {
    (i64::from(width) / 960 + 1).min(3)
}

/// Text scale (pixels per font bit) for an overlay `width` pixels wide: one per 640 pixels, 1..=4.
fn text_scale(width: u32) -> i64 {
    (i64::from(width) / 640).clamp(1, 4)
}

/// Colour name of high-res scale `index`.
pub fn scale_colour_name(index: usize) -> &'static str {
    SCALE_COLOUR_NAMES[index % SCALE_COLOUR_NAMES.len()]
}

/// Viridis, five stops, linear in between; `t` in 0..=1.
fn viridis(t: f32) -> [f32; 3] {
    const STOPS: [[f32; 3]; 5] = [
        [68.0, 1.0, 84.0],
        [59.0, 82.0, 139.0],
        [33.0, 145.0, 140.0],
        [94.0, 201.0, 98.0],
        [253.0, 231.0, 37.0],
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * 4.0;
    let i = (x.floor() as usize).min(3);
    let f = x - i as f32;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    [
        a[0] + (b[0] - a[0]) * f,
        a[1] + (b[1] - a[1]) * f,
        a[2] + (b[2] - a[2]) * f,
    ]
}

/// Render the overlay of `out` (the last encode of `encoder` on `input`); `label` names the input.
pub fn render(
    input: &LoadedInput,
    encoder: &Encoder,
    out: &Output,
    label: &str,
    options: &OverlayOptions,
) -> Result<RgbImage, String> {
    let (fw, fh) = out.frame_size();
    if fw == 0 || fh == 0 {
        return Err("the frame is empty".into());
    }
    let width = options.width.max(16);
    let height = ((fh as f64 * width as f64 / fw as f64).round() as u32).max(1);
    if u64::from(width) * u64::from(height) > 64 << 20 {
        return Err(format!(
            "an overlay of {width}x{height} pixels is too large (at most 64 megapixels)"
        ));
    }
    let mut frame = base_image(input, encoder, width, height)?;
    draw_heatmap(&mut frame, out);
    let sx = width as f32 / fw as f32;
    let sy = height as f32 / fh as f32;
    let to_overlay = |b: FrameBox| [b.x * sx, b.y * sy, (b.x + b.w) * sx, (b.y + b.h) * sy];
    let line = line_width(width);
    let g = encoder.model().geometry();
    let n_scales = g.high_scales().len();
    let mut contoured = false;
    // Finest scale first, so the sparse coarse outlines stay on top.
    for s in (0..n_scales).rev() {
        let boxes: Vec<[f32; 4]> = out
            .selected()
            .iter()
            .filter(|t| t.scale as usize == s)
            .map(|&t| to_overlay(g.token_box(t, fw, fh)))
            .collect();
        let Some(first) = boxes.first() else {
            continue;
        };
        let inset = s as i64 * (line + 1);
        let colour = scale_colour(s);
        if first[2] - first[0] >= PER_PATCH_MIN_PX && first[3] - first[1] >= PER_PATCH_MIN_PX {
            for b in &boxes {
                let r = pixel_rect(b);
                stroke_rect(
                    &mut frame,
                    [r[0] + inset, r[1] + inset, r[2] - inset, r[3] - inset],
                    line,
                    colour,
                );
            }
        } else {
            draw_contour(&mut frame, &boxes, inset, line, colour);
            contoured = true;
        }
    }
    let drawn = draw_regions(&mut frame, out, &to_overlay, options.regions, line);
    let legend = legend_items(encoder, out, label, drawn, contoured);
    let text_scale = text_scale(width);
    let legend_height = layout(&legend, width, text_scale, None);
    let mut img = RgbImage::from_pixel(width, height + legend_height, Rgb(LEGEND_BG));
    image::imageops::replace(&mut img, &frame, 0, 0);
    layout(&legend, width, text_scale, Some((&mut img, height)));
    Ok(img)
}

/// Write `img` as PNG (through a temporary file and a rename).
pub fn write_png(path: &Path, img: &RgbImage) -> Result<(), Error> {
    report::write_atomic(path, |w| {
        image::codecs::png::PngEncoder::new_with_quality(
            w,
            image::codecs::png::CompressionType::Fast,
            image::codecs::png::FilterType::Adaptive,
        )
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(std::io::Error::other)
    })
}

/// The frame at `width` x `height`.
fn base_image(
    input: &LoadedInput,
    encoder: &Encoder,
    width: u32,
    height: u32,
) -> Result<RgbImage, String> {
    match input {
        LoadedInput::Image {
            width: w,
            height: h,
            rgb,
        } => {
            let view: ImageBuffer<Rgb<u8>, &[u8]> =
                ImageBuffer::from_raw(*w, *h, rgb.as_slice())
                    .ok_or("the decoded image is smaller than its size says")?;
            Ok(if width < *w {
                image::imageops::thumbnail(&view, width, height)
            } else {
                image::imageops::resize(&view, width, height, image::imageops::FilterType::Nearest)
            })
        }
        LoadedInput::Tensor { size, values } => {
            let norm = encoder.model().manifest().normalization;
            let s = *size;
            if values.len() < 3 * s * s {
                return Err("the tensor is smaller than its shape says".into());
            }
            let mut img = RgbImage::new(width, height);
            for (x, y, px) in img.enumerate_pixels_mut() {
                // Average the tensor over the output pixel's footprint.
                let x0 = x as usize * s / width as usize;
                let x1 = ((x as usize + 1) * s / width as usize).max(x0 + 1).min(s);
                let y0 = y as usize * s / height as usize;
                let y1 = ((y as usize + 1) * s / height as usize).max(y0 + 1).min(s);
                let n = ((x1 - x0) * (y1 - y0)) as f32;
                for c in 0..3 {
                    let plane = &values[c * s * s..(c + 1) * s * s];
                    let mut sum = 0.0f32;
                    for yy in y0..y1 {
                        sum += plane[yy * s + x0..yy * s + x1].iter().sum::<f32>();
                    }
                    let v = (sum / n) * norm.std[c] + norm.mean[c];
                    px.0[c] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
            Ok(img)
        }
    }
}

/// The range of the probability map, (lo, hi).
fn prob_range(out: &Output) -> (f32, f32) {
    out.prob_map()
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)))
}

fn draw_heatmap(img: &mut RgbImage, out: &Output) {
    let n = out.prob_grid();
    let p = out.prob_map();
    if n == 0 || p.len() < n * n {
        return;
    }
    let (lo, hi) = prob_range(out);
    let (w, h) = img.dimensions();
    for (x, y, px) in img.enumerate_pixels_mut() {
        let cx = (x as usize * n / w as usize).min(n - 1);
        let cy = (y as usize * n / h as usize).min(n - 1);
        let v = p[cy * n + cx];
        let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        let heat = viridis(t);
        for (v, h) in px.0.iter_mut().zip(heat) {
            *v = (*v as f32 * (1.0 - HEAT_ALPHA) + h * HEAT_ALPHA).round() as u8;
        }
    }
}

/// A box in overlay coordinates as whole pixels, [x0, y0, x1, y1] inclusive: edges are rounded, so
/// adjacent patches share their border line.
fn pixel_rect(b: &[f32; 4]) -> [i64; 4] {
    let x0 = b[0].round() as i64;
    let y0 = b[1].round() as i64;
    [
        x0,
        y0,
        (b[2].round() as i64).max(x0),
        (b[3].round() as i64).max(y0),
    ]
}

pub(crate) fn fill_rect(img: &mut RgbImage, r: [i64; 4], colour: [u8; 3]) {
    let x0 = r[0].max(0);
    let y0 = r[1].max(0);
    let x1 = r[2].min(i64::from(img.width()) - 1);
    let y1 = r[3].min(i64::from(img.height()) - 1);
    for y in y0..=y1 {
        for x in x0..=x1 {
            img.put_pixel(x as u32, y as u32, Rgb(colour));
        }
    }
}

/// Outline `r` (inclusive) with lines `line` pixels wide, drawn inwards.
fn stroke_rect(img: &mut RgbImage, r: [i64; 4], line: i64, colour: [u8; 3]) {
    let [x0, y0, x1, y1] = r;
    if x1 < x0 || y1 < y0 {
        return;
    }
    let l = line - 1;
    fill_rect(img, [x0, y0, x1, (y0 + l).min(y1)], colour);
    fill_rect(img, [x0, (y1 - l).max(y0), x1, y1], colour);
    fill_rect(img, [x0, y0, (x0 + l).min(x1), y1], colour);
    fill_rect(img, [(x1 - l).max(x0), y0, x1, y1], colour);
}

/// Outline the union of `boxes`: the pixels `inset + 1 ..= inset + line` pixels inside its border
/// (Chebyshev distance to the nearest unselected pixel; the image edge counts as unselected).
fn draw_contour(img: &mut RgbImage, boxes: &[[f32; 4]], inset: i64, line: i64, colour: [u8; 3]) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let cap = (inset + line + 1).clamp(1, 250) as u8;
    let mut dist = vec![0u8; w * h];
    for b in boxes {
        let r = pixel_rect(b);
        let x0 = r[0].clamp(0, w as i64) as usize;
        let x1 = r[2].clamp(0, w as i64) as usize;
        let y0 = r[1].clamp(0, h as i64) as usize;
        let y1 = r[3].clamp(0, h as i64) as usize;
        for y in y0..y1 {
            dist[y * w + x0..y * w + x1].fill(cap);
        }
    }
    // Two-pass chamfer transform with unit weights on all eight neighbours: Chebyshev distance.
    let at = |d: &[u8], x: i64, y: i64| -> u8 {
        if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 {
            0
        } else {
            d[y as usize * w + x as usize]
        }
    };
    for y in 0..h as i64 {
        for x in 0..w as i64 {
            let i = y as usize * w + x as usize;
            if dist[i] == 0 {
                continue;
            }
            let m = [(-1, -1), (0, -1), (1, -1), (-1, 0)]
                .iter()
                .map(|&(dx, dy)| at(&dist, x + dx, y + dy))
                .min()
                .unwrap_or(0);
            dist[i] = dist[i].min(m.saturating_add(1));
        }
    }
    for y in (0..h as i64).rev() {
        for x in (0..w as i64).rev() {
            let i = y as usize * w + x as usize;
            if dist[i] == 0 {
                continue;
            }
            let m = [(1, 1), (0, 1), (-1, 1), (1, 0)]
                .iter()
                .map(|&(dx, dy)| at(&dist, x + dx, y + dy))
                .min()
                .unwrap_or(0);
            dist[i] = dist[i].min(m.saturating_add(1));
        }
    }
    let (lo, hi) = (inset + 1, inset + line);
    for (i, &d) in dist.iter().enumerate() {
        let d = i64::from(d);
        if d >= lo && d <= hi {
            img.put_pixel((i % w) as u32, (i / w) as u32, Rgb(colour));
        }
    }
}

/// Draw up to `max` regions, best first, skipping boxes that mostly repeat one already drawn (the
/// same cells picked at several scales). Returns how many were drawn.
fn draw_regions(
    img: &mut RgbImage,
    out: &Output,
    to_overlay: &dyn Fn(FrameBox) -> [f32; 4],
    max: usize,
    line: i64,
) -> usize {
    let mut drawn: Vec<[f32; 4]> = Vec::new();
    let mut labels = Vec::new();
    for r in out.regions() {
        if drawn.len() >= max {
            break;
        }
        let b = to_overlay(r.bbox);
        if drawn.iter().any(|d| iou(d, &b) > 0.6) {
            continue;
        }
        drawn.push(b);
        let p = pixel_rect(&b);
        // A black box just outside the selection's outlines.
        let outer = line + 1;
        stroke_rect(
            img,
            [p[0] - outer, p[1] - outer, p[2] + outer, p[3] + outer],
            outer,
            BLACK,
        );
        labels.push((
            format!("#{} {:.3}", drawn.len(), r.score),
            p[0] - outer,
            p[1] - outer,
        ));
    }
    // Labels last, so no box covers one.
    let scale = text_scale(img.width());
    let label_scale = if drawn.len() <= 12 {
        scale
    } else {
        (scale / 2).max(1)
    };
    for (text, x, y) in labels {
        let th = 8 * label_scale + 2;
        let ty = if y - th >= 0 { y - th } else { y + 1 };
        let tw = text_width(&text, label_scale) + 3;
        fill_rect(img, [x, ty, x + tw, ty + th - 1], BLACK);
        draw_text(img, x + 2, ty + 1, &text, label_scale, WHITE);
    }
    drawn.len()
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let area = |r: &[f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

// ------------------------------------------------------------------ text

/// Advance of one character at `scale`.
fn advance(scale: i64) -> i64 {
    8 * scale
}

pub(crate) fn text_width(text: &str, scale: i64) -> i64 {
    text.chars().count() as i64 * advance(scale)
}

/// Draw `text` with the font8x8 glyphs, each bit a `scale` x `scale` square; unknown characters are
/// drawn as '?'.
pub(crate) fn draw_text(
    img: &mut RgbImage,
    x: i64,
    y: i64,
    text: &str,
    scale: i64,
    colour: [u8; 3],
) {
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS
            .get(ch)
            .or_else(|| font8x8::BASIC_FONTS.get('?'))
            .unwrap_or([0; 8]);
        let gx = x + i as i64 * advance(scale);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    let px = gx + col * scale;
                    let py = y + row as i64 * scale;
                    fill_rect(img, [px, py, px + scale - 1, py + scale - 1], colour);
                }
            }
        }
    }
}

// ------------------------------------------------------------------ legend

/// One piece of a legend item.
enum Piece {
    /// Text in a colour.
    Text(String, [u8; 3]),
    /// A square outline in a colour (a scale).
    Outline([u8; 3]),
    /// The region key: a black box.
    RegionKey,
    /// The heatmap's colour bar (its ends are labelled by the text next to it).
    ColourBar,
}

/// Items are laid out left to right and wrap as a whole.
type Item = Vec<Piece>;

/// Each word of `text` as its own item, so a long sentence wraps.
fn words(text: &str, colour: [u8; 3]) -> Vec<Item> {
    text.split(' ')
        .map(|w| vec![Piece::Text(format!("{w} "), colour)])
        .collect()
}

fn legend_items(
    encoder: &Encoder,
    out: &Output,
    label: &str,
    regions_drawn: usize,
    contoured: bool,
) -> Vec<Item> {
    let model = encoder.model();
    let m = model.manifest();
    let scales = model.geometry().high_scales();
    let (fw, fh) = out.frame_size();
    let text = |s: String| Piece::Text(s, LEGEND_TEXT);
    let dim = |s: String| Piece::Text(s, LEGEND_DIM);
    let mut items: Vec<Item> = vec![
        vec![
            text(format!("{}  ", m.name)),
            dim(format!("{}  ", model.backend_name())),
        ],
        vec![text(format!("{label} ")), dim(format!("{fw}x{fh}"))],
        vec![Piece::Text(String::new(), LEGEND_TEXT)], // line break
        vec![text(format!(
            "budget K = {}{}: ",
            out.budget(),
            if out.steps() > 1 {
                format!(" x {} steps", out.steps())
            } else {
                String::new()
            }
        ))],
    ];
    let per_scale = out.selected_per_scale(scales.len());
    for (i, (s, n)) in scales.iter().zip(&per_scale).enumerate() {
        items.push(vec![
            Piece::Outline(scale_colour(i)),
            text(format!(" {s} px: {n}   ")),
        ]);
    }
    if contoured {
        items.push(vec![dim(format!(
            "(patches under {PER_PATCH_MIN_PX} px: contour of the selection, nested coarse to fine)"
        ))]);
    }
    items.push(vec![Piece::Text(String::new(), LEGEND_TEXT)]);
    let (lo, hi) = prob_range(out);
    items.push(vec![
        text("p ".into()),
        Piece::ColourBar,
        text(format!(" {lo:.3}..{hi:.3}   ")),
    ]);
    items.push(vec![
        Piece::RegionKey,
        text(format!(
            " best {} of {} regions (max p)",
            regions_drawn,
            out.regions().len()
        )),
    ]);
    items.push(vec![Piece::Text(String::new(), LEGEND_TEXT)]);
    let t = out.timings();
    let other = (t.total_ms - t.lowres_ms - t.hrsel_ms - t.hrenc_ms).max(0.0);
    items.push(vec![text(format!("latency {:.1} ms: ", t.total_ms))]);
    items.push(vec![dim(format!(
        "lowres {:.1}, hrsel {:.1}, hrenc {:.1}, other {:.1}",
        t.lowres_ms, t.hrsel_ms, t.hrenc_ms, other
    ))]);
    if m.source.checkpoint.starts_with("random-") {
        items.push(vec![Piece::Text(String::new(), LEGEND_TEXT)]);
        items.extend(words(
            "random weights: the selection shows the pipeline working, not what a trained PS3 would pick",
            LEGEND_DIM,
        ));
    }
    items
}

fn piece_width(p: &Piece, scale: i64) -> i64 {
    match p {
        Piece::Text(s, _) => text_width(s, scale),
        Piece::Outline(_) | Piece::RegionKey => 8 * scale,
        Piece::ColourBar => 48 * scale,
    }
}

/// Lay out `items` in rows within `width`; draw them into `target` (image, top of the band) when
/// given. Returns the band's height. An item made of one empty text ends the row.
fn layout(items: &[Item], width: u32, scale: i64, mut target: Option<(&mut RgbImage, u32)>) -> u32 {
    let pad = 6 * scale;
    let row_h = 8 * scale + 4 * scale;
    let (mut x, mut y) = (pad, pad);
    let mut row_used = false;
    for item in items {
        if let [Piece::Text(s, _)] = item.as_slice()
            && s.is_empty()
        {
            if row_used {
                x = pad;
                y += row_h;
                row_used = false;
            }
            continue;
        }
        let w: i64 = item.iter().map(|p| piece_width(p, scale)).sum();
        if row_used && x + w > i64::from(width) - pad {
            x = pad;
            y += row_h;
        }
        if let Some((img, top)) = target.as_mut() {
            let mut px = x;
            let py = y + i64::from(*top);
            for p in item {
                draw_piece(img, px, py, p, scale);
                px += piece_width(p, scale);
            }
        }
        x += w;
        row_used = true;
    }
    if row_used {
        y += row_h;
    }
    (y + pad - 4 * scale).max(0) as u32
}

fn draw_piece(img: &mut RgbImage, x: i64, y: i64, p: &Piece, scale: i64) {
    let size = 8 * scale;
    match p {
        Piece::Text(s, c) => draw_text(img, x, y, s, scale, *c),
        Piece::Outline(c) => {
            stroke_rect(img, [x, y - 1, x + size - 1, y + size - 2], scale, *c);
        }
        Piece::RegionKey => {
            // A black outline reads on the dark legend with a grey square behind it.
            fill_rect(img, [x, y - 1, x + size - 1, y + size - 2], [150, 150, 150]);
            stroke_rect(img, [x, y - 1, x + size - 1, y + size - 2], scale, BLACK);
        }
        Piece::ColourBar => {
            let w = 48 * scale - 2 * scale;
            for i in 0..w {
                let c = viridis(i as f32 / (w - 1).max(1) as f32);
                fill_rect(
                    img,
                    [x + i, y, x + i, y + size - 2],
                    [c[0] as u8, c[1] as u8, c[2] as u8],
                );
            }
        }
    }
}
