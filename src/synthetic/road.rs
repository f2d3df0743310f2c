//! A procedurally generated road scene: the synthetic test frame of ps3rt.
//!
//! [`road_scene`] paints a dashcam-style view down a four-lane road: sky with
//! soft clouds, hills and a distant skyline on the horizon, grass verges,
//! asphalt in perspective with lane markings, buildings with windows (some
//! with shop names), trees, cars with licence plates, a box truck lettered
//! `ACME FREIGHT 24/7`, and eight road signs on poles whose faces shrink from
//! about 8 % of the frame height (a STOP sign close by) to about 1.2 % (a
//! `SPEED LIMIT 30` sign far away, ~27 px at 2160 lines). That fine detail is
//! what the PS3 encoder's patch selection has to find, so every object comes
//! back with its box in pixels.
//!
//! The layout is defined in metres on a ground plane seen through a pinhole
//! camera whose scale is tied to the frame size, so the picture is the same at
//! 1280x720, 3840x2160 or 7680x4320, only sharper when larger. Frames wider
//! than 16:9 show more verge at the sides, taller ones more sky.
//!
//! Determinism is part of the contract: the same `(width, height, seed)` gives
//! the same bytes on every platform and with every version of the
//! dependencies, because tests and golden files pin them. The module therefore
//! uses its own splitmix64 generator, only IEEE-754 operations that are exactly
//! rounded everywhere (`+ - * /`, `sqrt`, `floor`, `round`, conversions), its
//! own polynomial sine instead of the platform's libm, and no threads.

use std::ops::Range;

use font8x8::UnicodeFonts;
// `::image` is the image crate; the leading `::` keeps it apart from ps3rt's own
// `crate::image` module.
use ::image::RgbImage;

// ------------------------------------------------------------------ public API

/// One object drawn into the scene, with its box in image pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SceneObject {
    /// What the object is.
    pub kind: ObjectKind,
    /// The text painted on it: the sign legend, the truck lettering, a licence
    /// plate or a shop name; empty when it carries none.
    pub text: String,
    /// Left edge of the box, in pixels from the left of the image.
    pub x: u32,
    /// Top edge of the box, in pixels from the top of the image.
    pub y: u32,
    /// Box width in pixels: at least 1, and `x + width <= image width`.
    pub width: u32,
    /// Box height in pixels: at least 1, and `y + height <= image height`.
    pub height: u32,
}

/// What a [`SceneObject`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A road sign; its box covers the sign face only, not the pole.
    Sign,
    /// The box truck; its box covers the trailer, the cab and the wheels.
    Truck,
    /// A car.
    Vehicle,
    /// A building beside the road (front and side walls).
    Building,
}

/// A rendered frame and the objects drawn into it.
#[derive(Debug, Clone)]
pub struct RoadScene {
    /// The frame, RGB, of the requested size.
    pub image: RgbImage,
    /// Every sign, the truck, the cars and the buildings, far to near (the
    /// order they were painted in); trees are scenery and not listed. Boxes
    /// are clipped to the image; they are not reduced where a nearer object
    /// hides part of a farther one. Objects smaller than about a pixel at this
    /// resolution are not drawn, and those not drawn or wholly outside the
    /// frame are not listed.
    pub objects: Vec<SceneObject>,
}

/// Render the scene at any size (e.g. 3840x2160, 1280x720, 7680x4320); same
/// (width, height, seed) -> same pixels.
///
/// The seed moves clouds, hills, buildings, trees and cars and varies the
/// colours and the pixel noise; the signs and the truck keep their places
/// (within a few percent) so every seed has the same range of sign sizes.
/// Any size is accepted: a zero width or height gives an empty image, and tiny
/// frames simply hold fewer objects. Frames too large to address in memory
/// (more than `isize::MAX` bytes) come back as a 0x0 image with no objects
/// instead of panicking.
#[must_use]
pub fn road_scene(width: u32, height: u32, seed: u64) -> RoadScene {
    render(width, height, seed).0
}

// ------------------------------------------------------------------ renderer

/// Colours a sign face is made of, for tests: its background and its legend.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(test), allow(dead_code))]
struct SignInk {
    /// Index of the sign in `RoadScene::objects`.
    object: usize,
    /// Background colour of the face, as painted (after haze).
    bg: [u8; 3],
    /// Colour of the legend (text or symbol), as painted (after haze).
    fg: [u8; 3],
}

fn render(width: u32, height: u32, seed: u64) -> (RoadScene, Vec<SignInk>) {
    let len = u64::from(width)
        .checked_mul(u64::from(height))
        .and_then(|n| n.checked_mul(3))
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n <= isize::MAX as usize);
    let Some(len) = len else {
        let scene = RoadScene {
            image: RgbImage::new(0, 0),
            objects: Vec::new(),
        };
        return (scene, Vec::new());
    };
    let mut image = RgbImage::new(width, height);
    let mut objects = Vec::new();
    let mut inks = Vec::new();
    if len > 0 {
        let view = View::new(width, height);
        let mut cv = Canvas {
            px: &mut image,
            w: width as usize,
            h: height as usize,
        };
        paint(&mut cv, &view, seed, &mut objects, &mut inks);
    }
    (RoadScene { image, objects }, inks)
}

fn paint(
    cv: &mut Canvas,
    v: &View,
    seed: u64,
    objects: &mut Vec<SceneObject>,
    inks: &mut Vec<SignInk>,
) {
    paint_sky(cv, v, &mut stream(seed, 1));
    paint_hills(cv, v, &mut stream(seed, 2));
    paint_ground(cv, v, &mut stream(seed, 3));

    let mut items = Vec::new();
    place_buildings(&mut items, &mut stream(seed, 4));
    place_trees(&mut items, &mut stream(seed, 5));
    place_signs(&mut items, &mut stream(seed, 6));
    place_traffic(&mut items, &mut stream(seed, 7));
    // Painter's algorithm: far (small t) first. The sort is stable and the
    // keys are plain floats, so the order is the same everywhere.
    items.sort_by(|a, b| a.depth().total_cmp(&b.depth()));

    for item in &items {
        let (kind, drawn) = match item {
            Item::Tree(t) => {
                // Scenery, not listed.
                draw_tree(cv, v, t);
                continue;
            }
            Item::Building(b) => (
                ObjectKind::Building,
                draw_building(cv, v, b).map(|r| (r, None)),
            ),
            Item::Sign(s) => (
                ObjectKind::Sign,
                draw_sign(cv, v, s).map(|(r, ink)| (r, Some(ink))),
            ),
            Item::Car(c) => (ObjectKind::Vehicle, draw_car(cv, v, c).map(|r| (r, None))),
            Item::Truck(t) => (ObjectKind::Truck, draw_truck(cv, v, t).map(|r| (r, None))),
        };
        let Some((rect, ink)) = drawn else { continue };
        let Some((x, y, width, height)) = pixel_box(rect, cv.w, cv.h) else {
            continue;
        };
        if let Some((bg, fg)) = ink {
            inks.push(SignInk {
                object: objects.len(),
                bg: to_u8(bg),
                fg: to_u8(fg),
            });
        }
        objects.push(SceneObject {
            kind,
            text: item.text(),
            x,
            y,
            width,
            height,
        });
    }

    add_noise(cv, seed);
}

// ------------------------------------------------------------------ randomness

/// splitmix64 (Steele, Lea & Flood 2014), written out here on purpose.
///
/// Tests and golden files pin the exact pixels of the scene, so the random
/// stream must be bit-identical on every platform and with every version of
/// every crate, forever. A generator from a crate may change its algorithm,
/// seeding or float conversion in a new release; these few lines of wrapping
/// integer arithmetic cannot.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in [0, 1): the top 24 bits, exactly representable in f32.
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / 16_777_216.0)
    }

    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in 0..n (0 when n is 0).
    fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 32).wrapping_mul(n as u64) >> 32) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T], fallback: T) -> T {
        items
            .get(self.below(items.len()))
            .copied()
            .unwrap_or(fallback)
    }
}

/// The splitmix64 output function: a strong 64-bit mixer, also used as a
/// per-pixel hash.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An independent stream per purpose, so that changing how many numbers one
/// part of the scene draws does not move everything after it.
fn stream(seed: u64, purpose: u64) -> SplitMix64 {
    SplitMix64(mix64(seed ^ purpose.wrapping_mul(0xA076_1D64_78BD_642F)))
}

/// sin(x) from `+ - * /` and `floor` only: the platform's libm `sin` may differ
/// in the last bit between systems, which would change hill outlines.
/// Absolute error below 1e-5, plenty for drawing.
fn det_sin(x: f32) -> f32 {
    use std::f32::consts::{FRAC_PI_2, PI, TAU};
    if !x.is_finite() {
        return 0.0;
    }
    let mut r = x - TAU * (x / TAU + 0.5).floor();
    if r > FRAC_PI_2 {
        r = PI - r;
    } else if r < -FRAC_PI_2 {
        r = -PI - r;
    }
    let r2 = r * r;
    r * (1.0 + r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 / 362_880.0))))
}

// ------------------------------------------------------------------ colour

type Col = [f32; 3];

const HAZE: Col = [198.0, 212.0, 228.0];
const SKY_TOP: Col = [58.0, 104.0, 178.0];
const SKY_HORIZON: Col = [192.0, 210.0, 230.0];
const GRASS_NEAR: Col = [64.0, 112.0, 40.0];
const GRASS_FAR: Col = [108.0, 140.0, 78.0];
const ASPHALT: Col = [84.0, 85.0, 90.0];
const GRAVEL: Col = [128.0, 121.0, 106.0];
const PAINT_WHITE: Col = [232.0, 232.0, 226.0];
const PAINT_YELLOW: Col = [226.0, 184.0, 40.0];
const WHITE: Col = [246.0, 246.0, 242.0];
const BLACK: Col = [22.0, 22.0, 24.0];
const RED: Col = [198.0, 22.0, 32.0];
const SIGN_GREEN: Col = [0.0, 112.0, 68.0];
const SIGN_YELLOW: Col = [250.0, 204.0, 24.0];
const POLE: Col = [138.0, 140.0, 146.0];
const TYRE: Col = [26.0, 26.0, 28.0];
const GLASS: Col = [52.0, 64.0, 78.0];
const NAVY: Col = [22.0, 40.0, 112.0];

fn mix(a: Col, b: Col, t: f32) -> Col {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn scale(c: Col, f: f32) -> Col {
    [c[0] * f, c[1] * f, c[2] * f]
}

fn to_u8(c: Col) -> [u8; 3] {
    c.map(|v| (v.clamp(0.0, 255.0) + 0.5) as u8)
}

/// Aerial perspective: how much of the haze colour covers something at depth
/// `t` (1 at the bottom of the frame, 0 at the horizon).
fn fog(t: f32) -> f32 {
    let q = (1.0 - t).clamp(0.0, 1.0);
    let q2 = q * q;
    let q4 = q2 * q2;
    0.42 * q4 * q4
}

fn hazed(c: Col, t: f32) -> Col {
    mix(c, HAZE, fog(t))
}

// ------------------------------------------------------------------ geometry

/// Distance in metres from the camera to the ground seen on the bottom row.
const D0: f32 = 10.0;
/// Lateral position of the camera (metres, road centre line at 0): the
/// middle of the right-hand inner lane.
const CAM_X: f32 = 1.75;
/// Pixels per metre at the bottom row (depth t = 1), as a fraction of the
/// frame's size unit.
const PX_PER_M: f32 = 0.095;
/// Half the asphalt width in metres (four 3.5 m lanes).
const ROAD_HALF: f32 = 7.0;

/// The camera. Depth is written as `t = D0 / z` (z in metres ahead): t = 1 on
/// the bottom row of the frame and t -> 0 at the horizon, and every size on
/// screen is proportional to t.
struct View {
    /// Frame height in pixels.
    h: f32,
    /// Size unit in pixels: the height of the largest 16:9 frame that fits.
    unit: f32,
    /// Horizon row (40 % from the top in a 16:9 or wider frame).
    hy: f32,
    /// Pixels from the horizon to the bottom of the frame.
    gh: f32,
    /// Vanishing point column.
    vx: f32,
    /// Pixels per metre at t = 1.
    k: f32,
}

impl View {
    fn new(width: u32, height: u32) -> View {
        let w = width as f32;
        let h = height as f32;
        let unit = h.min(w * (9.0 / 16.0));
        View {
            h,
            unit,
            // The ground fills the bottom 60 % of the 16:9 picture; a frame
            // taller than 16:9 shows more sky rather than a higher camera.
            hy: h - 0.6 * unit,
            gh: 0.6 * unit,
            vx: 0.5 * w,
            k: PX_PER_M * unit,
        }
    }

    fn ppm(&self, t: f32) -> f32 {
        self.k * t
    }

    /// Screen column of lateral position `xm` (metres) at depth `t`.
    fn x(&self, xm: f32, t: f32) -> f32 {
        self.vx + (xm - CAM_X) * self.k * t
    }

    /// Screen row of height `hm` (metres above the road) at depth `t`.
    fn y(&self, hm: f32, t: f32) -> f32 {
        self.hy + t * self.gh - hm * self.k * t
    }

    /// Number of rows that belong to the sky (pixel centre on or above the
    /// horizon); the ground starts at this row.
    fn sky_rows(&self, rows: usize) -> usize {
        let n = ((self.hy - 0.5).floor() + 1.0).clamp(0.0, self.h);
        (n as usize).min(rows)
    }
}

/// Depth parameter of a point `z` metres ahead.
fn t_at(z: f32) -> f32 {
    D0 / z
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Rect {
    x0: f32,
    y0: f32,
    x1: f32,
    y1: f32,
}

impl Rect {
    fn centred(cx: f32, cy: f32, w: f32, h: f32) -> Rect {
        Rect {
            x0: cx - 0.5 * w,
            y0: cy - 0.5 * h,
            x1: cx + 0.5 * w,
            y1: cy + 0.5 * h,
        }
    }

    fn bounding(xs: &[f32], ys: &[f32]) -> Rect {
        let lo = |v: &[f32]| v.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = |v: &[f32]| v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        Rect {
            x0: lo(xs),
            y0: lo(ys),
            x1: hi(xs),
            y1: hi(ys),
        }
    }

    fn w(&self) -> f32 {
        self.x1 - self.x0
    }

    fn h(&self) -> f32 {
        self.y1 - self.y0
    }

    fn cx(&self) -> f32 {
        0.5 * (self.x0 + self.x1)
    }

    fn cy(&self) -> f32 {
        0.5 * (self.y0 + self.y1)
    }

    fn union(self, o: Rect) -> Rect {
        Rect {
            x0: self.x0.min(o.x0),
            y0: self.y0.min(o.y0),
            x1: self.x1.max(o.x1),
            y1: self.y1.max(o.y1),
        }
    }

    fn grow(self, d: f32) -> Rect {
        Rect {
            x0: self.x0 - d,
            y0: self.y0 - d,
            x1: self.x1 + d,
            y1: self.y1 + d,
        }
    }

    /// A centred box of fractions `fw` x `fh` of this one, centred at height
    /// fraction `fy`.
    fn sub(self, fy: f32, fw: f32, fh: f32) -> Rect {
        Rect::centred(
            self.cx(),
            self.y0 + fy * self.h(),
            fw * self.w(),
            fh * self.h(),
        )
    }
}

/// Integer pixel box of `r`, clipped to the image; `None` if nothing is left.
fn pixel_box(r: Rect, w: usize, h: usize) -> Option<(u32, u32, u32, u32)> {
    let xs = clamp_range(r.x0, r.x1, w);
    let ys = clamp_range(r.y0, r.y1, h);
    if xs.is_empty() || ys.is_empty() {
        return None;
    }
    let x = u32::try_from(xs.start).ok()?;
    let y = u32::try_from(ys.start).ok()?;
    let bw = u32::try_from(xs.len()).ok()?;
    let bh = u32::try_from(ys.len()).ok()?;
    Some((x, y, bw, bh))
}

/// The pixels touched by the interval `a..b`, clipped to `0..n`. NaN ends
/// give an empty range.
fn clamp_range(a: f32, b: f32, n: usize) -> Range<usize> {
    let nf = n as f32;
    if a.is_nan() || b.is_nan() || a >= b {
        return 0..0;
    }
    let lo = a.floor().clamp(0.0, nf) as usize;
    let hi = (b.ceil().clamp(0.0, nf) as usize).min(n);
    lo.min(hi)..hi
}

/// Length of the overlap of `a0..a1` and `b0..b1`.
fn overlap(a0: f32, a1: f32, b0: f32, b1: f32) -> f32 {
    (a1.min(b1) - a0.max(b0)).max(0.0)
}

/// A convex shape in pixel coordinates, given by a signed distance.
enum Shape {
    /// Intersection of half-planes `nx*x + ny*y <= c`, with unit normals.
    Poly(Vec<[f32; 3]>),
    Circle {
        cx: f32,
        cy: f32,
        r: f32,
    },
}

impl Shape {
    /// Convex polygon through `pts` (either winding).
    fn poly(pts: &[(f32, f32)]) -> Shape {
        let n = pts.len().max(1) as f32;
        let cx = pts.iter().map(|p| p.0).sum::<f32>() / n;
        let cy = pts.iter().map(|p| p.1).sum::<f32>() / n;
        let mut planes = Vec::with_capacity(pts.len());
        for (i, &(ax, ay)) in pts.iter().enumerate() {
            let Some(&(bx, by)) = pts.get((i + 1) % pts.len()) else {
                continue;
            };
            let (ex, ey) = (bx - ax, by - ay);
            let len = (ex * ex + ey * ey).sqrt();
            if len.is_nan() || len <= 1e-6 {
                continue;
            }
            let (mut nx, mut ny) = (ey / len, -ex / len);
            let mut c = nx * ax + ny * ay;
            if nx * cx + ny * cy > c {
                (nx, ny, c) = (-nx, -ny, -c);
            }
            planes.push([nx, ny, c]);
        }
        Shape::Poly(planes)
    }

    fn rect(r: Rect) -> Shape {
        Shape::poly(&[(r.x0, r.y0), (r.x1, r.y0), (r.x1, r.y1), (r.x0, r.y1)])
    }

    /// Regular octagon with flat sides at distance `apothem` from the centre.
    fn octagon(cx: f32, cy: f32, apothem: f32) -> Shape {
        let sq2 = 2.0f32.sqrt();
        let c = (2.0 + sq2).sqrt() * 0.5; // cos 22.5 degrees
        let s = (2.0 - sq2).sqrt() * 0.5; // sin 22.5 degrees
        let r = apothem / c;
        let unit = [
            (c, s),
            (s, c),
            (-s, c),
            (-c, s),
            (-c, -s),
            (-s, -c),
            (s, -c),
            (c, -s),
        ];
        let pts: Vec<(f32, f32)> = unit
            .iter()
            .map(|&(ux, uy)| (cx + r * ux, cy + r * uy))
            .collect();
        Shape::poly(&pts)
    }

    /// Signed distance in pixels (negative inside). Exact for circles and
    /// near polygon edges, which is all anti-aliasing needs.
    fn sdf(&self, x: f32, y: f32) -> f32 {
        match self {
            Shape::Poly(planes) if planes.len() >= 3 => planes
                .iter()
                .fold(f32::NEG_INFINITY, |m, p| m.max(p[0] * x + p[1] * y - p[2])),
            Shape::Poly(_) => f32::INFINITY,
            Shape::Circle { cx, cy, r } => {
                let (dx, dy) = (x - cx, y - cy);
                (dx * dx + dy * dy).sqrt() - r
            }
        }
    }

    /// The shape shrunk by `d` pixels on every side.
    fn inset(&self, d: f32) -> Shape {
        match self {
            Shape::Poly(planes) => {
                Shape::Poly(planes.iter().map(|p| [p[0], p[1], p[2] - d]).collect())
            }
            Shape::Circle { cx, cy, r } => Shape::Circle {
                cx: *cx,
                cy: *cy,
                r: r - d,
            },
        }
    }
}

// ------------------------------------------------------------------ canvas

struct Canvas<'a> {
    px: &'a mut [u8],
    w: usize,
    h: usize,
}

impl Canvas<'_> {
    /// Blend colour `c` over pixel (x, y) with opacity `a` (clamped to 0..1).
    #[inline]
    fn blend(&mut self, x: usize, y: usize, c: Col, a: f32) {
        if a.is_nan() || a <= 0.0 || x >= self.w || y >= self.h {
            return;
        }
        let a = a.min(1.0);
        let i = (y * self.w + x) * 3;
        if let Some(p) = self.px.get_mut(i..i + 3) {
            for (dst, &src) in p.iter_mut().zip(c.iter()) {
                let old = f32::from(*dst);
                *dst = ((old + (src - old) * a).clamp(0.0, 255.0) + 0.5) as u8;
            }
        }
    }

    /// Anti-aliased horizontal span on row `y`.
    fn hspan(&mut self, y: usize, xa: f32, xb: f32, c: Col, alpha: f32) {
        for x in clamp_range(xa, xb, self.w) {
            let xf = x as f32;
            self.blend(x, y, c, alpha * overlap(xf, xf + 1.0, xa, xb));
        }
    }

    /// Anti-aliased axis-aligned rectangle.
    fn fill_rect(&mut self, r: Rect, c: Col, alpha: f32) {
        for y in clamp_range(r.y0, r.y1, self.h) {
            let yf = y as f32;
            let cy = overlap(yf, yf + 1.0, r.y0, r.y1);
            for x in clamp_range(r.x0, r.x1, self.w) {
                let xf = x as f32;
                self.blend(x, y, c, alpha * cy * overlap(xf, xf + 1.0, r.x0, r.x1));
            }
        }
    }

    /// Anti-aliased convex shape, searched for within `bbox`.
    fn fill_shape(&mut self, s: &Shape, bbox: Rect, c: Col, alpha: f32) {
        let b = bbox.grow(1.0);
        for y in clamp_range(b.y0, b.y1, self.h) {
            let py = y as f32 + 0.5;
            for x in clamp_range(b.x0, b.x1, self.w) {
                let d = s.sdf(x as f32 + 0.5, py);
                self.blend(x, y, c, alpha * (0.5 - d).clamp(0.0, 1.0));
            }
        }
    }
}

/// Glyphs at or above this many pixels per font bit are drawn at an integer
/// scale on the pixel grid (crisp); smaller ones are box-filtered 4x4.
const CRISP_SCALE: f32 = 3.0;

/// Draw one line of 8x8 bitmap text as large as fits in `area`, centred.
fn draw_text(cv: &mut Canvas, text: &str, area: Rect, col: Col) {
    let glyphs: Vec<[u8; 8]> = text
        .chars()
        .map(|ch| font8x8::BASIC_FONTS.get(ch).unwrap_or([0; 8]))
        .collect();
    if glyphs.is_empty() {
        return;
    }
    // Capitals and digits use columns 0..7 and rows 0..7 of their cell; the
    // last column and row are spacing, so centre on the inked part.
    let bits_w = 8.0 * glyphs.len() as f32 - 1.0;
    let bits_h = 7.0;
    let mut g = (area.w() / bits_w).min(area.h() / bits_h);
    if g.is_nan() || g < 0.15 {
        return;
    }
    let crisp = g >= CRISP_SCALE;
    let mut ox = area.cx() - 0.5 * bits_w * g;
    let mut oy = area.cy() - 0.5 * bits_h * g;
    if crisp {
        g = g.floor();
        ox = area.cx() - 0.5 * bits_w * g;
        oy = area.cy() - 0.5 * bits_h * g;
        ox = ox.round();
        oy = oy.round();
    }
    let ss: u16 = if crisp { 1 } else { 4 };
    let inv = 1.0 / f32::from(ss);
    let weight = inv * inv;
    let right = ox + 8.0 * glyphs.len() as f32 * g;
    for y in clamp_range(oy, oy + 8.0 * g, cv.h) {
        for x in clamp_range(ox, right, cv.w) {
            let mut hits = 0u16;
            for sy in 0..ss {
                let py = y as f32 + (f32::from(sy) + 0.5) * inv;
                let row = ((py - oy) / g).floor();
                if !(0.0..8.0).contains(&row) {
                    continue;
                }
                let row = row as usize;
                for sx in 0..ss {
                    let px = x as f32 + (f32::from(sx) + 0.5) * inv;
                    let bit = ((px - ox) / g).floor();
                    if bit.is_nan() || bit < 0.0 {
                        continue;
                    }
                    let bit = bit as usize;
                    let on = glyphs
                        .get(bit / 8)
                        .and_then(|gl| gl.get(row))
                        .is_some_and(|r| (r >> (bit % 8)) & 1 == 1);
                    hits += u16::from(on);
                }
            }
            cv.blend(x, y, col, f32::from(hits) * weight);
        }
    }
}

/// Is font bit (`col`, `row`) of `text` set? Columns run along the text, 8 per
/// character; rows 0..8 from the top.
fn text_bit(text: &[[u8; 8]], col: usize, row: usize) -> bool {
    text.get(col / 8)
        .and_then(|g| g.get(row))
        .is_some_and(|r| (r >> (col % 8)) & 1 == 1)
}

fn glyphs_of(text: &str) -> Vec<[u8; 8]> {
    text.chars()
        .map(|ch| font8x8::BASIC_FONTS.get(ch).unwrap_or([0; 8]))
        .collect()
}

/// A wall parallel to the road (the plane x = `xm`), from depth `t_near` to
/// `t_far` and heights `h0..h1` metres.
struct SideWall {
    xm: f32,
    t_near: f32,
    t_far: f32,
    h0: f32,
    h1: f32,
}

/// Paint a [`SideWall`] by inverse perspective mapping: `shade(u, v, t)` gets
/// metres along the wall from its near end, metres above `h0`, and the depth,
/// and returns the colour there (or `None` for a hole). `ss` x `ss` samples per
/// pixel. Returns the wall's screen bounding box.
fn paint_side_wall(
    cv: &mut Canvas,
    v: &View,
    wall: &SideWall,
    ss: u16,
    shade: impl Fn(f32, f32, f32) -> Option<Col>,
) -> Rect {
    let (tn, tf) = (wall.t_near, wall.t_far);
    let bbox = Rect::bounding(
        &[v.x(wall.xm, tn), v.x(wall.xm, tf)],
        &[
            v.y(wall.h0, tn),
            v.y(wall.h1, tn),
            v.y(wall.h0, tf),
            v.y(wall.h1, tf),
        ],
    );
    let denom = (wall.xm - CAM_X) * v.k;
    if !(denom.abs() > 1e-6 && tf > 0.0 && tn > tf) {
        return bbox;
    }
    let z_near = D0 / tn;
    let ss = ss.max(1);
    let inv = 1.0 / f32::from(ss);
    let weight = inv * inv;
    for y in clamp_range(bbox.y0, bbox.y1, cv.h) {
        for x in clamp_range(bbox.x0, bbox.x1, cv.w) {
            let mut acc = [0.0f32; 3];
            let mut cover = 0.0f32;
            for sx in 0..ss {
                let px = x as f32 + (f32::from(sx) + 0.5) * inv;
                let t = (px - v.vx) / denom;
                if !(t >= tf && t <= tn) {
                    continue;
                }
                let ground = v.hy + t * v.gh;
                let ppm = v.k * t;
                let u = D0 / t - z_near;
                for sy in 0..ss {
                    let py = y as f32 + (f32::from(sy) + 0.5) * inv;
                    let hm = (ground - py) / ppm;
                    if !(hm >= wall.h0 && hm <= wall.h1) {
                        continue;
                    }
                    if let Some(c) = shade(u, hm - wall.h0, t) {
                        for (a, ch) in acc.iter_mut().zip(c) {
                            *a += ch * weight;
                        }
                        cover += weight;
                    }
                }
            }
            if cover > 0.0 {
                cv.blend(x, y, scale(acc, 1.0 / cover), cover);
            }
        }
    }
    bbox
}

/// A wall facing the camera (constant depth `t`), from lateral `x0m` to
/// `x1m` (x0m < x1m) and heights `h0..h1` metres.
struct FrontWall {
    t: f32,
    x0m: f32,
    x1m: f32,
    h0: f32,
    h1: f32,
}

/// Paint a [`FrontWall`]: `shade(u, v)` gets metres from its left edge and
/// metres above `h0`. Returns the wall's screen rectangle.
fn paint_front_wall(
    cv: &mut Canvas,
    v: &View,
    wall: &FrontWall,
    ss: u16,
    shade: impl Fn(f32, f32) -> Col,
) -> Rect {
    let r = Rect {
        x0: v.x(wall.x0m, wall.t),
        x1: v.x(wall.x1m, wall.t),
        y0: v.y(wall.h1, wall.t),
        y1: v.y(wall.h0, wall.t),
    };
    let ppm = v.ppm(wall.t);
    if ppm.is_nan() || ppm <= 0.0 {
        return r;
    }
    let ss = ss.max(1);
    let inv = 1.0 / f32::from(ss);
    let weight = inv * inv;
    for y in clamp_range(r.y0, r.y1, cv.h) {
        for x in clamp_range(r.x0, r.x1, cv.w) {
            let mut acc = [0.0f32; 3];
            let mut cover = 0.0f32;
            for sy in 0..ss {
                let py = y as f32 + (f32::from(sy) + 0.5) * inv;
                if !(py >= r.y0 && py <= r.y1) {
                    continue;
                }
                let vm = (r.y1 - py) / ppm;
                for sx in 0..ss {
                    let px = x as f32 + (f32::from(sx) + 0.5) * inv;
                    if !(px >= r.x0 && px <= r.x1) {
                        continue;
                    }
                    let c = shade((px - r.x0) / ppm, vm);
                    for (a, ch) in acc.iter_mut().zip(c) {
                        *a += ch * weight;
                    }
                    cover += weight;
                }
            }
            if cover > 0.0 {
                cv.blend(x, y, scale(acc, 1.0 / cover), cover);
            }
        }
    }
    r
}

/// Screen outline of a flat rectangle in the world, given by its corners as
/// (lateral m, height m, distance m), in order around the rectangle. Returns
/// it as a shape with its bounding box; perspective keeps it convex.
fn world_quad(v: &View, corners: [(f32, f32, f32); 4]) -> (Shape, Rect) {
    let pts = corners.map(|(xm, hm, z)| {
        let t = t_at(z);
        (v.x(xm, t), v.y(hm, t))
    });
    let xs = pts.map(|p| p.0);
    let ys = pts.map(|p| p.1);
    (Shape::poly(&pts), Rect::bounding(&xs, &ys))
}

/// Screen outline of the horizontal rectangle `x0m..x1m` x `z0..z1` at
/// height `hm`.
fn flat_quad(v: &View, x0m: f32, x1m: f32, hm: f32, z0: f32, z1: f32) -> (Shape, Rect) {
    world_quad(
        v,
        [(x0m, hm, z0), (x1m, hm, z0), (x1m, hm, z1), (x0m, hm, z1)],
    )
}

// ------------------------------------------------------------------ backdrop

fn paint_sky(cv: &mut Canvas, v: &View, rng: &mut SplitMix64) {
    let rows = v.sky_rows(cv.h);
    let hy = v.hy.max(1.0);
    for y in 0..rows {
        let s = ((y as f32 + 0.5) / hy).clamp(0.0, 1.0);
        let c = to_u8(mix(SKY_TOP, SKY_HORIZON, s * (0.3 + 0.7 * s)));
        let start = y * cv.w * 3;
        if let Some(row) = cv.px.get_mut(start..start + cv.w * 3) {
            for p in row.chunks_exact_mut(3) {
                p.copy_from_slice(&c);
            }
        }
    }

    // Soft cumulus: clusters of elliptical blobs, brighter on top.
    let clouds = 4 + rng.below(3);
    for _ in 0..clouds {
        let cx = v.vx + v.unit * rng.range(-1.0, 1.0);
        let cy = v.hy * rng.range(0.12, 0.6);
        let size = v.unit * rng.range(0.045, 0.1);
        let blobs = 5 + rng.below(4);
        for _ in 0..blobs {
            let bx = cx + size * rng.range(-1.3, 1.3);
            let by = cy + size * rng.range(-0.3, 0.12);
            let rx = size * rng.range(0.45, 0.85);
            let ry = rx * rng.range(0.42, 0.6);
            let opacity = rng.range(0.55, 0.85);
            let bbox = Rect::centred(bx, by, 2.0 * rx, 2.0 * ry);
            if !(rx > 0.0 && ry > 0.0) {
                continue;
            }
            for y in clamp_range(bbox.y0, bbox.y1, rows) {
                let dy = (y as f32 + 0.5 - by) / ry;
                let shade = mix([255.0, 255.0, 255.0], [206.0, 214.0, 228.0], 0.5 + 0.5 * dy);
                for x in clamp_range(bbox.x0, bbox.x1, cv.w) {
                    let dx = (x as f32 + 0.5 - bx) / rx;
                    let d2 = dx * dx + dy * dy;
                    if d2 < 1.0 {
                        let a = 1.0 - d2;
                        cv.blend(x, y, shade, a * a * opacity);
                    }
                }
            }
        }
    }
}

/// One layer of hills: a sum of three sines over the frame width.
struct Ridge {
    base: f32,
    amp: [f32; 3],
    freq: [f32; 3],
    phase: [f32; 3],
    colour: Col,
}

impl Ridge {
    fn new(rng: &mut SplitMix64, base: f32, amp: f32, colour: Col) -> Ridge {
        Ridge {
            base,
            amp: [amp, 0.5 * amp, 0.22 * amp],
            freq: [
                rng.range(1.6, 2.8),
                rng.range(4.5, 7.5),
                rng.range(12.0, 19.0),
            ],
            phase: [
                rng.range(0.0, 6.3),
                rng.range(0.0, 6.3),
                rng.range(0.0, 6.3),
            ],
            colour,
        }
    }

    fn paint(&self, cv: &mut Canvas, v: &View) {
        let rows = v.sky_rows(cv.h);
        let unit = v.unit.max(1e-3);
        for x in 0..cv.w {
            let xc = (x as f32 + 0.5 - v.vx) / unit;
            let mut hgt = self.base;
            for i in 0..3 {
                hgt += self.amp[i] * det_sin(self.freq[i] * xc + self.phase[i]);
            }
            let top = v.hy - unit * hgt.max(0.002);
            for y in clamp_range(top, rows as f32, rows) {
                let cover = (y as f32 + 1.0 - top).clamp(0.0, 1.0);
                cv.blend(x, y, self.colour, cover);
            }
        }
    }
}

fn paint_hills(cv: &mut Canvas, v: &View, rng: &mut SplitMix64) {
    let far = Ridge::new(rng, 0.042, 0.016, [152.0, 170.0, 194.0]);
    let near = Ridge::new(rng, 0.016, 0.009, [116.0, 140.0, 122.0]);
    far.paint(cv, v);

    // A distant town on the horizon, on one side of the road.
    let rows = v.sky_rows(cv.h) as f32;
    let side = if rng.unit() < 0.5 { -1.0 } else { 1.0 };
    let centre = v.vx + side * v.unit * rng.range(0.25, 0.6);
    let towers = 14 + rng.below(10);
    for _ in 0..towers {
        let x = centre + v.unit * rng.range(-0.2, 0.2);
        let w = v.unit * rng.range(0.006, 0.02);
        let h = v.unit * rng.range(0.01, 0.045);
        let tint = rng.range(-8.0, 8.0);
        let c = [146.0 + tint, 156.0 + tint, 176.0 + tint];
        let r = Rect {
            x0: x,
            x1: x + w,
            y0: v.hy - h,
            y1: rows,
        };
        cv.fill_rect(r, c, 1.0);
    }
    near.paint(cv, v);
}

/// Integral over `0..z` of the indicator of a dash pattern with period `p`
/// and `on` metres painted per period.
fn dash_integral(z: f32, p: f32, on: f32) -> f32 {
    let n = (z / p).floor();
    n * on + (z - n * p).min(on)
}

fn paint_ground(cv: &mut Canvas, v: &View, rng: &mut SplitMix64) {
    const DASH_PERIOD: f32 = 12.0;
    const DASH_ON: f32 = 3.5;
    let phase = rng.range(0.0, DASH_PERIOD);
    let tex_seed = rng.next_u64();
    let first = v.sky_rows(cv.h);
    let gh = v.gh.max(1e-3);
    for y in first..cv.h {
        let yf = y as f32;
        let t = (yf + 0.5 - v.hy) / gh;
        if t.is_nan() || t <= 0.0 {
            continue;
        }
        let ppm = v.ppm(t);
        let fog_t = fog(t);
        let grass = mix(mix(GRASS_FAR, GRASS_NEAR, t.min(1.0)), HAZE, fog_t);
        let amp = 5.0 + 12.0 * t.min(1.0);

        // Grass everywhere the asphalt does not fully cover.
        let road_a = v.x(-ROAD_HALF, t);
        let road_b = v.x(ROAD_HALF, t);
        let inner = clamp_range(road_a.ceil(), road_b.floor(), cv.w);
        let row_key = tex_seed ^ ((y as u64) << 32);
        for x in 0..cv.w {
            if inner.contains(&x) {
                continue;
            }
            let hsh = mix64(row_key ^ x as u64);
            let d = ((hsh & 0xff) as f32 - 127.5) * (amp / 255.0);
            let dg = (((hsh >> 8) & 0xff) as f32 - 127.5) * (amp / 255.0);
            let c = [grass[0] + d, grass[1] + d + dg, grass[2] + d];
            cv.blend(x, y, c, 1.0);
        }

        let span = |cv: &mut Canvas, x0m: f32, x1m: f32, c: Col, a: f32| {
            cv.hspan(y, v.x(x0m, t), v.x(x1m, t), mix(c, HAZE, fog_t), a);
        };
        span(cv, -ROAD_HALF - 0.9, -ROAD_HALF, GRAVEL, 1.0);
        span(cv, ROAD_HALF, ROAD_HALF + 0.9, GRAVEL, 1.0);
        span(cv, -ROAD_HALF, ROAD_HALF, ASPHALT, 1.0);
        // Solid edge lines: yellow on the left, white on the right, as on a
        // divided highway (all four lanes run away from the camera).
        span(cv, -6.8, -6.65, PAINT_YELLOW, 0.95);
        span(cv, 6.65, 6.8, PAINT_WHITE, 0.95);
        // Dashed lane lines: the share of this row's depth range that is
        // painted, so far dashes fade out instead of aliasing.
        let ta = ((yf - v.hy) / gh).max(1e-4);
        let tb = ((yf + 1.0 - v.hy) / gh).max(ta * 1.0001);
        let (za, zb) = (D0 / tb + phase, D0 / ta + phase);
        let painted =
            dash_integral(zb, DASH_PERIOD, DASH_ON) - dash_integral(za, DASH_PERIOD, DASH_ON);
        let dash = (painted / (zb - za)).clamp(0.0, 1.0);
        if dash > 0.0 && ppm > 0.0 {
            for lane_line in [-3.5, 0.0, 3.5] {
                let (a, b) = (lane_line - 0.075, lane_line + 0.075);
                span(cv, a, b, PAINT_WHITE, 0.95 * dash);
            }
        }
    }
}

// ------------------------------------------------------------------ objects

enum Item {
    Building(Building),
    Tree(Tree),
    Sign(Sign),
    Car(Car),
    Truck(Truck),
}

impl Item {
    /// Painter's key: the depth of the part that must be drawn over
    /// everything farther.
    fn depth(&self) -> f32 {
        match self {
            // The far end: a tree or sign standing in front of a building's
            // side wall must be drawn after it.
            Item::Building(b) => t_at(b.z0 + b.depth),
            Item::Tree(t) => t.t,
            Item::Sign(s) => s.t,
            Item::Car(c) => c.t,
            Item::Truck(t) => t.t,
        }
    }

    fn text(&self) -> String {
        match self {
            Item::Building(b) => b.name.unwrap_or("").to_string(),
            Item::Tree(_) => String::new(),
            Item::Sign(s) => s.style.lines().join(" "),
            Item::Car(c) => c.plate.clone(),
            Item::Truck(_) => TRUCK_TEXT.to_string(),
        }
    }
}

// ---- buildings

struct Building {
    /// Lateral position of the wall facing the road.
    x_near: f32,
    /// Lateral position of the far wall.
    x_far: f32,
    /// Distance of the front wall.
    z0: f32,
    /// Length along the road.
    depth: f32,
    height: f32,
    wall: Col,
    seed: u64,
    name: Option<&'static str>,
}

const WALLS: [Col; 6] = [
    [182.0, 160.0, 132.0],
    [150.0, 92.0, 74.0],
    [196.0, 190.0, 178.0],
    [120.0, 124.0, 132.0],
    [168.0, 140.0, 104.0],
    [204.0, 176.0, 150.0],
];

const SHOP_NAMES: [&str; 8] = [
    "HOTEL", "PHARMACY", "GARAGE", "BAKERY", "MOTEL", "DINER", "BANK", "CINEMA",
];

fn place_buildings(items: &mut Vec<Item>, rng: &mut SplitMix64) {
    for side in [-1.0f32, 1.0] {
        let mut z = rng.range(50.0, 64.0);
        let mut count = 0;
        while z < 260.0 && count < 8 {
            let lateral = rng.range(9.0, 18.0);
            let depth = rng.range(10.0, 22.0);
            let height = rng.range(8.0, 21.0);
            let x_near = side * rng.range(17.5, 21.0);
            let wall = rng.pick(&WALLS, WALLS[0]);
            let tint = rng.range(0.9, 1.08);
            let named = rng.unit() < 0.45;
            let name = rng.pick(&SHOP_NAMES, "HOTEL");
            items.push(Item::Building(Building {
                x_near,
                x_far: x_near + side * lateral,
                z0: z,
                depth,
                height,
                wall: scale(wall, tint),
                seed: rng.next_u64(),
                name: named.then_some(name),
            }));
            z += depth + rng.range(8.0, 34.0);
            count += 1;
        }
    }
}

/// Wall colour at (`u`, `v`) metres on a facade `width` metres wide: a grid of
/// windows, some lit.
fn facade(b: &Building, face: u64, width: f32, u: f32, v: f32) -> Col {
    const FLOOR: f32 = 3.3;
    const BAY: f32 = 2.8;
    if v > b.height - 0.45 {
        return scale(b.wall, 0.72);
    }
    if v < 0.35 {
        return scale(b.wall, 0.55);
    }
    let bays = (width / BAY).floor();
    let u = u - 0.5 * (width - bays * BAY);
    let col = (u / BAY).floor();
    let fu = u - col * BAY;
    let floor = (v / FLOOR).floor();
    let fv = v - floor * FLOOR;
    let in_window = col >= 0.0
        && col < bays
        && fu > 0.6
        && fu < 2.2
        && fv > 0.95
        && fv < 2.65
        && v < b.height - 0.9;
    if !in_window {
        return b.wall;
    }
    let hsh = mix64(
        b.seed
            ^ face
            ^ (floor as u64).wrapping_mul(0x9E37_79B9)
            ^ (col as u64).wrapping_mul(0x85EB_CA6B_0000),
    );
    if hsh.is_multiple_of(6) {
        [236.0, 212.0, 142.0]
    } else {
        let d = ((hsh >> 8) % 24) as f32;
        [GLASS[0] + d, GLASS[1] + d, GLASS[2] + 1.2 * d]
    }
}

fn draw_building(cv: &mut Canvas, v: &View, b: &Building) -> Option<Rect> {
    let t_near = t_at(b.z0);
    let t_far = t_at(b.z0 + b.depth);
    if b.height * v.ppm(t_near) < 1.0 {
        return None;
    }
    let side = SideWall {
        xm: b.x_near,
        t_near,
        t_far,
        h0: 0.0,
        h1: b.height,
    };
    let side_box = paint_side_wall(cv, v, &side, 2, |u, hm, t| {
        Some(hazed(scale(facade(b, 1, b.depth, u, hm), 0.78), t))
    });
    let (x0m, x1m) = (b.x_near.min(b.x_far), b.x_near.max(b.x_far));
    let front = FrontWall {
        t: t_near,
        x0m,
        x1m,
        h0: 0.0,
        h1: b.height,
    };
    let width = x1m - x0m;
    let front_box = paint_front_wall(cv, v, &front, 2, |u, hm| {
        hazed(facade(b, 2, width, u, hm), t_near)
    });
    if let Some(name) = b.name {
        // A shop sign over the ground floor.
        let ppm = v.ppm(t_near);
        let band = Rect::centred(
            front_box.cx(),
            v.y(3.85, t_near),
            0.62 * width * ppm,
            0.95 * ppm,
        );
        cv.fill_rect(band, hazed([128.0, 26.0, 30.0], t_near), 1.0);
        draw_text(cv, name, band.grow(-0.15 * ppm), hazed(WHITE, t_near));
    }
    Some(side_box.union(front_box))
}

// ---- trees

struct Tree {
    xm: f32,
    t: f32,
    size: f32,
    green: Col,
}

fn place_trees(items: &mut Vec<Item>, rng: &mut SplitMix64) {
    for side in [-1.0f32, 1.0] {
        for _ in 0..6 {
            let z = rng.range(22.0, 190.0);
            items.push(Item::Tree(Tree {
                xm: side * rng.range(14.0, 16.0),
                t: t_at(z),
                size: rng.range(0.8, 1.2),
                green: [
                    rng.range(34.0, 56.0),
                    rng.range(76.0, 100.0),
                    rng.range(34.0, 48.0),
                ],
            }));
        }
    }
}

fn draw_tree(cv: &mut Canvas, v: &View, tree: &Tree) {
    let t = tree.t;
    let ppm = v.ppm(t);
    let s = tree.size;
    if 6.0 * s * ppm < 1.0 {
        return;
    }
    let trunk = Rect {
        x0: v.x(tree.xm - 0.17 * s, t),
        x1: v.x(tree.xm + 0.17 * s, t),
        y0: v.y(3.2 * s, t),
        y1: v.y(0.0, t),
    };
    cv.fill_rect(trunk, hazed([84.0, 62.0, 44.0], t), 1.0);
    let blobs = [
        (0.0, 4.4, 1.9, 1.0),
        (-0.95, 3.7, 1.45, 0.92),
        (0.95, 3.8, 1.5, 0.96),
        (-0.35, 4.9, 1.1, 1.18),
    ];
    for (dx, hm, r, light) in blobs {
        let cx = v.x(tree.xm + dx * s, t);
        let cy = v.y(hm * s, t);
        let rp = r * s * ppm;
        let shape = Shape::Circle { cx, cy, r: rp };
        let bbox = Rect::centred(cx, cy, 2.0 * rp, 2.0 * rp);
        cv.fill_shape(&shape, bbox, hazed(scale(tree.green, light), t), 1.0);
    }
}

// ---- signs

#[derive(Debug, Clone, Copy, PartialEq)]
enum Style {
    Stop,
    SpeedLimit(&'static str),
    Yield,
    Exit,
    NoEntry,
    Slow,
    OneWay,
}

impl Style {
    fn lines(self) -> Vec<&'static str> {
        match self {
            Style::Stop => vec!["STOP"],
            Style::SpeedLimit(n) => vec!["SPEED", "LIMIT", n],
            Style::Yield => vec!["YIELD"],
            Style::Exit => vec!["EXIT 12", "AIRPORT"],
            Style::NoEntry => vec!["NO", "ENTRY"],
            Style::Slow => vec!["SLOW"],
            Style::OneWay => vec!["ONE WAY"],
        }
    }
}

struct Sign {
    style: Style,
    /// Lateral position of the pole.
    xm: f32,
    t: f32,
    /// Face size in metres.
    w: f32,
    h: f32,
    /// Height of the bottom of the face above the ground.
    bottom: f32,
}

fn place_signs(items: &mut Vec<Item>, rng: &mut SplitMix64) {
    const RIGHT: f32 = 8.3;
    const LEFT: f32 = -8.6;
    // (style, side, depth, width m, height m, clearance m). Face heights on
    // screen run from ~8 % of the frame (STOP) to ~1.2 % (SPEED LIMIT 30).
    let table = [
        (Style::Stop, RIGHT, 0.58, 1.4, 1.4, 2.0),
        (Style::SpeedLimit("60"), LEFT, 0.42, 1.1, 1.45, 2.0),
        (Style::Yield, RIGHT, 0.31, 1.4, 1.4 * 0.866, 2.1),
        (Style::Exit, LEFT - 1.0, 0.25, 3.6, 2.0, 2.6),
        (Style::NoEntry, RIGHT, 0.205, 1.2, 1.2, 2.0),
        (Style::Slow, LEFT, 0.19, 1.3, 1.3, 2.0),
        (Style::OneWay, LEFT, 0.15, 2.4, 0.8, 2.3),
        (Style::SpeedLimit("30"), RIGHT, 0.10, 1.0, 1.3, 2.0),
    ];
    for (style, xm, t, w, h, bottom) in table {
        items.push(Item::Sign(Sign {
            style,
            xm: xm + rng.range(-0.3, 0.3),
            t: t * rng.range(0.975, 1.025),
            w,
            h,
            bottom,
        }));
    }
}

/// Draw a sign; returns its face box and its (background, legend) colours.
fn draw_sign(cv: &mut Canvas, v: &View, s: &Sign) -> Option<(Rect, (Col, Col))> {
    let t = s.t;
    let ppm = v.ppm(t);
    let face = Rect {
        x0: v.x(s.xm, t) - 0.5 * s.w * ppm,
        x1: v.x(s.xm, t) + 0.5 * s.w * ppm,
        y0: v.y(s.bottom + s.h, t),
        y1: v.y(s.bottom, t),
    };
    if face.w() < 1.0 || face.h() < 1.0 {
        return None;
    }
    let ground = v.y(0.0, t);
    let poles: &[(f32, f32)] = if s.style == Style::Exit {
        &[(-0.3, 0.12), (0.3, 0.12)]
    } else {
        &[(0.0, 0.08)]
    };
    for &(at, width) in poles {
        let x = face.cx() + at * face.w();
        let pw = (width * ppm).max(0.6);
        let pole = Rect {
            x0: x - 0.5 * pw,
            x1: x + 0.5 * pw,
            y0: face.cy(),
            y1: ground,
        };
        cv.fill_rect(pole, hazed(POLE, t), 1.0);
    }
    let inks = draw_face(cv, s.style, face, t);
    Some((face, (hazed(inks.0, t), hazed(inks.1, t))))
}

/// Paint a sign face into `r`; returns its (background, legend) colours
/// before haze.
fn draw_face(cv: &mut Canvas, style: Style, r: Rect, t: f32) -> (Col, Col) {
    let f = |c: Col| hazed(c, t);
    let (w, h) = (r.w(), r.h());
    let (cx, cy) = (r.cx(), r.cy());
    let m = w.min(h);
    match style {
        Style::Stop => {
            let oct = Shape::octagon(cx, cy, 0.5 * m);
            cv.fill_shape(&oct, r, f(WHITE), 1.0);
            cv.fill_shape(&oct.inset(0.045 * m), r, f(RED), 1.0);
            draw_text(cv, "STOP", r.sub(0.5, 0.78, 0.34), f(WHITE));
            (RED, WHITE)
        }
        Style::SpeedLimit(n) => {
            let plate = Shape::rect(r);
            cv.fill_shape(&plate, r, f(WHITE), 1.0);
            cv.fill_shape(&plate.inset(0.035 * m), r, f(BLACK), 1.0);
            cv.fill_shape(&plate.inset(0.065 * m), r, f(WHITE), 1.0);
            draw_text(cv, "SPEED", r.sub(0.2, 0.74, 0.14), f(BLACK));
            draw_text(cv, "LIMIT", r.sub(0.37, 0.74, 0.14), f(BLACK));
            draw_text(cv, n, r.sub(0.69, 0.76, 0.4), f(BLACK));
            (WHITE, BLACK)
        }
        Style::Yield => {
            let tri = Shape::poly(&[(r.x0, r.y0), (r.x1, r.y0), (cx, r.y1)]);
            cv.fill_shape(&tri, r, f(WHITE), 1.0);
            cv.fill_shape(&tri.inset(0.02 * w), r, f(RED), 1.0);
            cv.fill_shape(&tri.inset(0.1 * w), r, f(WHITE), 1.0);
            draw_text(cv, "YIELD", r.sub(0.26, 0.42, 0.12), f(RED));
            (WHITE, RED)
        }
        Style::Exit => {
            let board = Shape::rect(r);
            cv.fill_shape(&board, r, f(SIGN_GREEN), 1.0);
            cv.fill_shape(&board.inset(0.035 * m), r, f(WHITE), 1.0);
            cv.fill_shape(&board.inset(0.065 * m), r, f(SIGN_GREEN), 1.0);
            draw_text(cv, "EXIT 12", r.sub(0.31, 0.8, 0.3), f(WHITE));
            draw_text(cv, "AIRPORT", r.sub(0.7, 0.8, 0.3), f(WHITE));
            (SIGN_GREEN, WHITE)
        }
        Style::NoEntry => {
            let disc = Shape::Circle { cx, cy, r: 0.5 * m };
            cv.fill_shape(&disc, r, f(WHITE), 1.0);
            cv.fill_shape(&disc.inset(0.035 * m), r, f(RED), 1.0);
            let bar = Rect::centred(cx, cy, 0.74 * m, 0.19 * m);
            cv.fill_rect(bar, f(WHITE), 1.0);
            draw_text(
                cv,
                "NO",
                Rect::centred(cx, cy - 0.24 * m, 0.22 * m, 0.15 * m),
                f(WHITE),
            );
            draw_text(
                cv,
                "ENTRY",
                Rect::centred(cx, cy + 0.245 * m, 0.52 * m, 0.15 * m),
                f(WHITE),
            );
            (RED, WHITE)
        }
        Style::Slow => {
            let diamond = Shape::poly(&[(cx, r.y0), (r.x1, cy), (cx, r.y1), (r.x0, cy)]);
            cv.fill_shape(&diamond, r, f(SIGN_YELLOW), 1.0);
            cv.fill_shape(&diamond.inset(0.03 * m), r, f(BLACK), 1.0);
            cv.fill_shape(&diamond.inset(0.055 * m), r, f(SIGN_YELLOW), 1.0);
            draw_text(cv, "SLOW", r.sub(0.5, 0.56, 0.2), f(BLACK));
            (SIGN_YELLOW, BLACK)
        }
        Style::OneWay => {
            let board = Shape::rect(r);
            cv.fill_shape(&board, r, f(BLACK), 1.0);
            // A white arrow pointing right, lettered in black.
            let body = Rect {
                x0: r.x0 + 0.05 * w,
                x1: r.x0 + 0.8 * w,
                y0: cy - 0.27 * h,
                y1: cy + 0.27 * h,
            };
            cv.fill_rect(body, f(WHITE), 1.0);
            let head = Shape::poly(&[
                (r.x0 + 0.78 * w, cy - 0.42 * h),
                (r.x0 + 0.96 * w, cy),
                (r.x0 + 0.78 * w, cy + 0.42 * h),
            ]);
            cv.fill_shape(&head, r, f(WHITE), 1.0);
            draw_text(cv, "ONE WAY", body.grow(-0.06 * h), f(BLACK));
            (BLACK, WHITE)
        }
    }
}

// ---- cars and the truck

struct Car {
    /// Lane centre.
    xm: f32,
    t: f32,
    paint: Col,
    plate: String,
}

struct Truck {
    xm: f32,
    t: f32,
}

const TRUCK_TEXT: &str = "ACME FREIGHT 24/7";

const CAR_PAINTS: [Col; 7] = [
    [178.0, 24.0, 30.0],
    [28.0, 60.0, 140.0],
    [224.0, 224.0, 220.0],
    [40.0, 42.0, 46.0],
    [140.0, 144.0, 150.0],
    [196.0, 150.0, 30.0],
    [30.0, 110.0, 70.0],
];

fn plate_text(rng: &mut SplitMix64) -> String {
    const LETTERS: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ";
    let mut s = String::new();
    for _ in 0..2 {
        s.push(char::from(rng.pick(LETTERS, b'A')));
    }
    s.push(' ');
    for _ in 0..4 {
        s.push(char::from(b'0' + (rng.below(10) as u8)));
    }
    s
}

fn place_traffic(items: &mut Vec<Item>, rng: &mut SplitMix64) {
    // (lane centre, depth)
    let cars = [
        (5.25, 0.55),
        (1.75, 0.21),
        (-5.25, 0.7),
        (5.25, 0.13),
        (-5.25, 0.075),
    ];
    for (xm, t) in cars {
        items.push(Item::Car(Car {
            xm: xm + rng.range(-0.25, 0.25),
            t: t * rng.range(0.96, 1.04),
            paint: scale(rng.pick(&CAR_PAINTS, CAR_PAINTS[0]), rng.range(0.9, 1.05)),
            plate: plate_text(rng),
        }));
    }
    items.push(Item::Truck(Truck {
        xm: -1.75 + rng.range(-0.15, 0.15),
        t: 0.45 * rng.range(0.98, 1.02),
    }));
}

fn draw_car(cv: &mut Canvas, v: &View, car: &Car) -> Option<Rect> {
    const HALF: f32 = 0.9;
    const LEN: f32 = 4.3;
    /// Top of the body (boot lid and bonnet).
    const BELT: f32 = 0.97;
    const ROOF: f32 = 1.42;
    /// The cabin: half width and its span from the rear of the car.
    const CABIN_HALF: f32 = 0.78;
    const CABIN: (f32, f32) = (0.75, 3.05);
    let t = car.t;
    let ppm = v.ppm(t);
    if 2.0 * HALF * ppm < 1.0 {
        return None;
    }
    let f = |c: Col| hazed(c, t);
    let z0 = D0 / t;
    let rect = |t: f32, x0: f32, x1: f32, h0: f32, h1: f32| Rect {
        x0: v.x(car.xm + x0, t),
        x1: v.x(car.xm + x1, t),
        y0: v.y(h1, t),
        y1: v.y(h0, t),
    };
    let (xl, xr) = (car.xm - HALF, car.xm + HALF);

    let (shadow, sbox) = flat_quad(v, xl - 0.1, xr + 0.1, 0.0, z0, z0 + LEN);
    cv.fill_shape(&shadow, sbox, [10.0, 10.0, 12.0], 0.45);

    let mut bbox = rect(t, -HALF, HALF, 0.0, BELT);
    let flank_dir = (car.xm - CAM_X).signum();
    let side_paint = scale(car.paint, 0.78);
    // The flank facing the camera, unless the camera is right behind.
    if (car.xm - CAM_X).abs() > HALF {
        let flank = SideWall {
            xm: car.xm - flank_dir * HALF,
            t_near: t,
            t_far: t_at(z0 + LEN),
            h0: 0.0,
            h1: BELT,
        };
        bbox = bbox.union(paint_side_wall(cv, v, &flank, 2, |u, hm, tt| {
            let dv = (hm - 0.33) / 0.33;
            let wheel = |c: f32| {
                let du = (u - c) / 0.33;
                du * du + dv * dv < 1.0
            };
            if wheel(0.85) || wheel(3.45) {
                Some(hazed(TYRE, tt))
            } else if hm >= 0.28 {
                Some(hazed(side_paint, tt))
            } else {
                None
            }
        }));
    }
    // Boot lid and bonnet, seen from above.
    let (deck, deck_box) = flat_quad(v, xl, xr, BELT, z0, z0 + LEN);
    cv.fill_shape(&deck, deck_box, f(scale(car.paint, 1.06)), 1.0);
    bbox = bbox.union(deck_box);
    // Cabin: side windows, roof, rear window.
    let (c0, c1) = (z0 + CABIN.0, z0 + CABIN.1);
    if (car.xm - CAM_X).abs() > CABIN_HALF {
        let flank = SideWall {
            xm: car.xm - flank_dir * CABIN_HALF,
            t_near: t_at(c0),
            t_far: t_at(c1),
            h0: BELT,
            h1: ROOF,
        };
        let len = CABIN.1 - CABIN.0;
        bbox = bbox.union(paint_side_wall(cv, v, &flank, 2, |u, hm, tt| {
            let pillar = u < 0.12 || u > len - 0.12 || (1.1..1.2).contains(&u);
            let c = if pillar || hm > ROOF - BELT - 0.07 {
                side_paint
            } else {
                GLASS
            };
            Some(hazed(c, tt))
        }));
    }
    let (roof, roof_box) = flat_quad(v, car.xm - CABIN_HALF, car.xm + CABIN_HALF, ROOF, c0, c1);
    cv.fill_shape(&roof, roof_box, f(scale(car.paint, 1.04)), 1.0);
    bbox = bbox.union(roof_box);
    let tc = t_at(c0);
    let rear_cabin = rect(tc, -CABIN_HALF, CABIN_HALF, BELT, ROOF);
    cv.fill_rect(rear_cabin, f(scale(car.paint, 0.92)), 1.0);
    cv.fill_rect(
        rect(tc, -0.68, 0.68, BELT + 0.05, ROOF - 0.07),
        f(GLASS),
        1.0,
    );

    // The rear.
    cv.fill_rect(rect(t, -0.88, -0.6, 0.0, 0.45), f(TYRE), 1.0);
    cv.fill_rect(rect(t, 0.6, 0.88, 0.0, 0.45), f(TYRE), 1.0);
    cv.fill_rect(rect(t, -HALF, HALF, 0.28, BELT), f(car.paint), 1.0);
    cv.fill_rect(rect(t, -HALF, HALF, 0.26, 0.38), f([36.0, 36.0, 38.0]), 1.0);
    let lamp = [206.0, 28.0, 26.0];
    cv.fill_rect(rect(t, -0.86, -0.58, 0.68, 0.86), f(lamp), 1.0);
    cv.fill_rect(rect(t, 0.58, 0.86, 0.68, 0.86), f(lamp), 1.0);
    let plate = rect(t, -0.27, 0.27, 0.42, 0.57);
    cv.fill_rect(plate, f([238.0, 238.0, 230.0]), 1.0);
    draw_text(cv, &car.plate, plate.grow(-0.012 * ppm), f(BLACK));
    Some(bbox)
}

fn draw_truck(cv: &mut Canvas, v: &View, truck: &Truck) -> Option<Rect> {
    const HALF: f32 = 1.25;
    const LEN: f32 = 13.6;
    const FLOOR: f32 = 1.15;
    const ROOF: f32 = 4.0;
    let t = truck.t;
    let ppm = v.ppm(t);
    if 2.5 * ppm < 1.0 {
        return None;
    }
    let f = |c: Col| hazed(c, t);
    let (xl, xr) = (truck.xm - HALF, truck.xm + HALF);
    let z_rear = D0 / t;
    let t_front = t_at(z_rear + LEN);
    let cab_near = t_at(z_rear + LEN + 0.4);
    let cab_far = t_at(z_rear + LEN + 6.2);
    // The side facing the camera, and which way its lettering must run.
    let left_of_camera = truck.xm < CAM_X;
    let side_x = if left_of_camera { xr } else { xl };

    let (shadow, sbox) = flat_quad(v, xl - 0.1, xr + 0.1, 0.0, z_rear, z_rear + LEN + 6.2);
    cv.fill_shape(&shadow, sbox, [10.0, 10.0, 12.0], 0.5);

    // Cab (mostly hidden behind the trailer).
    let cab = SideWall {
        xm: side_x - if left_of_camera { 0.05 } else { -0.05 },
        t_near: cab_near,
        t_far: cab_far,
        h0: 0.45,
        h1: 3.4,
    };
    let cab_red = [168.0, 30.0, 34.0];
    let cab_box = paint_side_wall(cv, v, &cab, 2, |u, hm, tt| {
        let c = if u > 3.9 && hm > 1.5 && hm < 2.5 {
            GLASS
        } else {
            cab_red
        };
        Some(hazed(c, tt))
    });
    let cab_top = flat_quad(
        v,
        xl + 0.05,
        xr - 0.05,
        3.4,
        z_rear + LEN + 0.4,
        z_rear + LEN + 6.2,
    );
    cv.fill_shape(&cab_top.0, cab_top.1, f(scale(cab_red, 1.1)), 1.0);

    // Trailer side: white panel, navy stripe, lettering along its length.
    let glyphs = glyphs_of(TRUCK_TEXT);
    let cell = 0.09;
    let text_len = 8.0 * glyphs.len() as f32 * cell;
    let text_u0 = 0.5 * (LEN - text_len);
    let text_top = 1.95;
    let side = SideWall {
        xm: side_x,
        t_near: t,
        t_far: t_front,
        h0: FLOOR,
        h1: ROOF,
    };
    let side_box = paint_side_wall(cv, v, &side, 3, |u, hm, tt| {
        let along = if left_of_camera { u } else { LEN - u };
        let col = ((along - text_u0) / cell).floor();
        let row = ((text_top - hm) / cell).floor();
        let lettered = col >= 0.0
            && (0.0..8.0).contains(&row)
            && text_bit(&glyphs, col as usize, row as usize);
        let c = if lettered || (0.18..0.42).contains(&hm) {
            NAVY
        } else if hm > ROOF - FLOOR - 0.08 || (u % 1.7) < 0.05 {
            [196.0, 198.0, 202.0]
        } else {
            [226.0, 228.0, 230.0]
        };
        Some(hazed(c, tt))
    });
    let (roof, roof_box) = flat_quad(v, xl, xr, ROOF, z_rear, z_rear + LEN);
    cv.fill_shape(&roof, roof_box, f([206.0, 208.0, 212.0]), 1.0);
    // Under the trailer: chassis rail and the rear axles.
    let under = SideWall {
        xm: side_x,
        t_near: t,
        t_far: t_front,
        h0: 0.0,
        h1: FLOOR,
    };
    let under_box = paint_side_wall(cv, v, &under, 3, |u, hm, tt| {
        let wheel = |c: f32| {
            let (du, dv) = ((u - c) / 0.52, (hm - 0.52) / 0.52);
            du * du + dv * dv < 1.0
        };
        if hm > FLOOR - 0.2 {
            Some(hazed([40.0, 40.0, 44.0], tt))
        } else if wheel(1.2) || wheel(2.35) || wheel(3.5) {
            Some(hazed(TYRE, tt))
        } else {
            None
        }
    });

    // Rear doors.
    let rect = |x0: f32, x1: f32, h0: f32, h1: f32| Rect {
        x0: v.x(x0, t),
        x1: v.x(x1, t),
        y0: v.y(h1, t),
        y1: v.y(h0, t),
    };
    let wheels_l = rect(xl + 0.08, xl + 0.74, 0.0, 1.05);
    let wheels_r = rect(xr - 0.74, xr - 0.08, 0.0, 1.05);
    cv.fill_rect(wheels_l, f(TYRE), 1.0);
    cv.fill_rect(wheels_r, f(TYRE), 1.0);
    cv.fill_rect(
        rect(xl + 0.12, xr - 0.12, 0.42, 0.56),
        f([150.0, 150.0, 154.0]),
        1.0,
    );
    let doors = rect(xl, xr, FLOOR, ROOF);
    cv.fill_rect(doors, f([188.0, 190.0, 194.0]), 1.0);
    cv.fill_rect(
        rect(xl + 0.06, xr - 0.06, FLOOR + 0.06, ROOF - 0.06),
        f([238.0, 238.0, 240.0]),
        1.0,
    );
    cv.fill_rect(
        rect(truck.xm - 0.015, truck.xm + 0.015, FLOOR, ROOF),
        f([150.0, 152.0, 158.0]),
        1.0,
    );
    for bar in [-0.62, 0.62] {
        let x = truck.xm + bar;
        cv.fill_rect(
            rect(x - 0.02, x + 0.02, FLOOR + 0.1, ROOF - 0.1),
            f([170.0, 172.0, 178.0]),
            1.0,
        );
    }
    let lamp = [206.0, 28.0, 26.0];
    cv.fill_rect(
        rect(xl + 0.08, xl + 0.36, FLOOR + 0.1, FLOOR + 0.28),
        f(lamp),
        1.0,
    );
    cv.fill_rect(
        rect(xr - 0.36, xr - 0.08, FLOOR + 0.1, FLOOR + 0.28),
        f(lamp),
        1.0,
    );
    let text_area = |h0: f32, h1: f32| rect(xl + 0.2, xr - 0.2, h0, h1);
    draw_text(cv, "ACME", text_area(2.95, 3.7), f(NAVY));
    draw_text(cv, "FREIGHT", text_area(2.45, 2.85), f(NAVY));
    draw_text(cv, "24/7", text_area(1.75, 2.3), f(NAVY));

    Some(
        doors
            .union(wheels_l)
            .union(wheels_r)
            .union(side_box)
            .union(under_box)
            .union(cab_box)
            .union(roof_box),
    )
}

// ------------------------------------------------------------------ noise

/// Sensor-like noise: every channel of every pixel moves by -2..=2 levels.
fn add_noise(cv: &mut Canvas, seed: u64) {
    let key = mix64(seed ^ 0x6E6F_6973_6500_0000);
    for (i, p) in cv.px.chunks_exact_mut(3).enumerate() {
        let hsh = mix64(key ^ i as u64);
        for (c, ch) in p.iter_mut().enumerate() {
            let d = ((hsh >> (16 * c)) & 0xffff) % 5;
            *ch = ch.saturating_add_signed(d as i8 - 2);
        }
    }
}

// ------------------------------------------------------------------ tests

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a over the raw bytes: stable, dependency-free.
    fn fnv1a(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    #[test]
    fn same_seed_same_pixels() {
        let a = road_scene(480, 270, 7);
        let b = road_scene(480, 270, 7);
        assert_eq!(fnv1a(a.image.as_raw()), fnv1a(b.image.as_raw()));
        assert_eq!(a.objects, b.objects);
    }

    /// Pins the exact bytes of one frame. If this fails after a deliberate
    /// change to the picture, update the value (and regenerate any golden
    /// files made from this scene); if it fails on one platform only, some
    /// arithmetic here has stopped being platform-independent.
    #[test]
    fn pinned_frame_hash() {
        let scene = road_scene(640, 360, 1);
        assert_eq!(fnv1a(scene.image.as_raw()), 0x90aa_9494_2506_c6e7);
        assert_eq!(scene.objects.len(), 26);
    }

    #[test]
    fn different_seeds_differ() {
        let a = road_scene(480, 270, 1);
        let b = road_scene(480, 270, 2);
        assert_ne!(fnv1a(a.image.as_raw()), fnv1a(b.image.as_raw()));
    }

    #[test]
    fn any_size_renders() {
        for (w, h) in [
            (0, 0),
            (0, 9),
            (9, 0),
            (1, 1),
            (2, 2),
            (17, 9),
            (16, 16),
            (3, 300),
            (300, 3),
            (64, 36),
            (1280, 720),
        ] {
            let scene = road_scene(w, h, 3);
            assert_eq!(scene.image.dimensions(), (w, h), "{w}x{h}");
            assert_eq!(scene.image.as_raw().len(), (w * h * 3) as usize);
        }
    }

    #[test]
    fn huge_size_does_not_panic() {
        let scene = road_scene(u32::MAX, u32::MAX, 0);
        assert_eq!(scene.image.dimensions(), (0, 0));
        assert!(scene.objects.is_empty());
    }

    #[test]
    fn boxes_inside_image() {
        for (w, h) in [
            (1, 1),
            (17, 9),
            (16, 16),
            (200, 500),
            (1280, 720),
            (1920, 1080),
        ] {
            let scene = road_scene(w, h, 11);
            for o in &scene.objects {
                assert!(o.width >= 1 && o.height >= 1, "{o:?}");
                assert!(o.x + o.width <= w && o.y + o.height <= h, "{w}x{h}: {o:?}");
            }
        }
    }

    #[test]
    fn full_scene_lists_every_kind() {
        let scene = road_scene(1280, 720, 5);
        let count = |k| scene.objects.iter().filter(|o| o.kind == k).count();
        assert_eq!(count(ObjectKind::Sign), 8);
        assert_eq!(count(ObjectKind::Truck), 1);
        assert!(count(ObjectKind::Vehicle) >= 4);
        assert!(count(ObjectKind::Building) >= 4);
        let truck = scene.objects.iter().find(|o| o.kind == ObjectKind::Truck);
        assert_eq!(truck.map(|o| o.text.as_str()), Some(TRUCK_TEXT));
    }

    fn dist2(a: [u8; 3], b: [u8; 3]) -> i32 {
        a.iter()
            .zip(b)
            .map(|(&x, y)| (i32::from(x) - i32::from(y)).pow(2))
            .sum()
    }

    /// Every sign face holds its background colour and more than a couple of
    /// distinct colours (edges, anti-aliased legend); faces at least
    /// `legible` pixels tall also hold pixels in the full legend colour.
    fn check_sign_inks(w: u32, h: u32, seed: u64, legible: u32) {
        let (scene, inks) = render(w, h, seed);
        let signs = scene
            .objects
            .iter()
            .filter(|o| o.kind == ObjectKind::Sign)
            .count();
        assert_eq!(inks.len(), signs);
        for ink in &inks {
            let o = &scene.objects[ink.object];
            let (mut bg, mut fg) = (0, 0);
            let mut colours = std::collections::HashSet::new();
            for y in o.y..o.y + o.height {
                for x in o.x..o.x + o.width {
                    let p = scene.image.get_pixel(x, y).0;
                    colours.insert(p.map(|c| c >> 3));
                    if dist2(p, ink.bg) <= 3 * 12 * 12 {
                        bg += 1;
                    }
                    if dist2(p, ink.fg) <= 3 * 12 * 12 {
                        fg += 1;
                    }
                }
            }
            assert!(bg >= 3, "{w}x{h} {o:?}: bg {bg}");
            if o.height >= legible {
                assert!(fg >= 3, "{w}x{h} {o:?}: fg {fg}");
            }
            assert!(
                colours.len() >= 4,
                "{w}x{h} {o:?}: {} colours",
                colours.len()
            );
        }
    }

    #[test]
    fn sign_faces_hold_background_and_legend_720p() {
        check_sign_inks(1280, 720, 1, 30);
    }

    #[test]
    fn sign_faces_hold_background_and_legend_4k() {
        check_sign_inks(3840, 2160, 1, 0);
    }

    #[test]
    fn signs_at_4k_span_large_to_tiny() {
        let scene = road_scene(3840, 2160, 1);
        let heights: Vec<u32> = scene
            .objects
            .iter()
            .filter(|o| o.kind == ObjectKind::Sign)
            .map(|o| o.height)
            .collect();
        assert!(heights.len() >= 6, "{heights:?}");
        let min = heights.iter().copied().min().unwrap_or(u32::MAX);
        let max = heights.iter().copied().max().unwrap_or(0);
        assert!((min as f32) < 0.02 * 2160.0, "smallest sign {min} px");
        assert!((max as f32) > 0.07 * 2160.0, "largest sign {max} px");
    }

    #[test]
    fn det_sin_is_accurate() {
        for i in -400..400 {
            let x = i as f32 * 0.05;
            assert!((det_sin(x) - x.sin()).abs() < 2e-5, "{x}");
        }
    }
}
