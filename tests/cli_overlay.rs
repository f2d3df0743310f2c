//! `--overlay`: the PNG's size, and the scale colours where the selected patches are.
//!
//! Colours (docs/cli.md): 756 px red (255, 48, 48), 1512 px cyan (0, 224, 255), 3780 px white.
//! At 3840 px wide on the 1280x720 fixture the 756 and 1512 px patches are large enough to be
//! outlined one by one (756: the box's own edge, 3 px lines; 1512: 4 px inside its box); at the
//! default 1280 px every scale is drawn as the contour of its selected area (756: the outermost
//! 2 px ring).

use std::path::{Path, PathBuf};

use serde_json::Value;

const RED: [u8; 3] = [255, 48, 48];
const CYAN: [u8; 3] = [0, 224, 255];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ps3rt(args: &[&str]) -> std::process::Output {
    assert_cmd::cargo::cargo_bin_cmd!("ps3rt")
        .args(args)
        .output()
        .expect("ps3rt runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run on the road fixture with an overlay `width` px wide; the JSON document and the decoded PNG.
fn overlay_of_the_fixture(dir: &Path, width: u32) -> (Value, image::RgbImage) {
    let img = root().join("tests/fixtures/road-1280x720.png");
    let json = dir.join(format!("out-{width}.json"));
    let png = dir.join(format!("overlay-{width}.png"));
    let o = ps3rt(&[
        "run",
        "--input",
        img.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--overlay",
        png.to_str().unwrap(),
        "--overlay-width",
        &width.to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains(&format!("overlay  {}", png.display())),
        "{stdout}"
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let decoded = image::open(&png).expect("the overlay is a PNG").to_rgb8();
    (doc, decoded)
}

/// Selected tokens of one scale as (row, col).
fn selected(doc: &Value, scale: u64) -> Vec<(u64, u64)> {
    doc["selected"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["scale"] == scale)
        .map(|t| (t["row"].as_u64().unwrap(), t["col"].as_u64().unwrap()))
        .collect()
}

/// A token's box in overlay pixels as the overlay rounds it: [x0, y0, x1, y1], inclusive.
fn pixel_box(scale: u64, row: u64, col: u64, frame: (f64, f64), width: f64) -> [i64; 4] {
    let f = width / frame.0;
    let (sx, sy) = (
        14.0 * frame.0 / scale as f64 * f,
        14.0 * frame.1 / scale as f64 * f,
    );
    [
        (col as f64 * sx).round() as i64,
        (row as f64 * sy).round() as i64,
        ((col + 1) as f64 * sx).round() as i64,
        ((row + 1) as f64 * sy).round() as i64,
    ]
}

/// Pixels of the `line`-wide ring just inside `r`.
fn ring(r: [i64; 4], line: i64) -> Vec<(i64, i64)> {
    let mut v = Vec::new();
    for y in r[1]..=r[3] {
        for x in r[0]..=r[2] {
            let inside =
                x >= r[0] + line && x <= r[2] - line && y >= r[1] + line && y <= r[3] - line;
            if !inside {
                v.push((x, y));
            }
        }
    }
    v
}

fn colour_fraction(img: &image::RgbImage, pixels: &[(i64, i64)], colour: [u8; 3]) -> f64 {
    let hits = pixels
        .iter()
        .filter(|&&(x, y)| {
            x >= 0
                && y >= 0
                && (x as u32) < img.width()
                && (y as u32) < img.height()
                && img.get_pixel(x as u32, y as u32).0 == colour
        })
        .count();
    hits as f64 / pixels.len().max(1) as f64
}

#[test]
fn patches_are_outlined_in_their_scale_colour() {
    let dir = tempfile::tempdir().unwrap();
    let (doc, img) = overlay_of_the_fixture(dir.path(), 3840);
    // 1280x720 scaled to 3840 wide is 3840x2160; the legend band follows.
    assert_eq!(img.width(), 3840);
    assert!(
        img.height() > 2160 && img.height() < 2160 + 400,
        "{}",
        img.height()
    );
    let frame = (1280.0, 720.0);
    for (scale, colour, inset, count) in [(756u64, RED, 0i64, 85usize), (1512, CYAN, 4, 341)] {
        let tokens = selected(&doc, scale);
        assert_eq!(tokens.len(), count);
        let fractions: Vec<f64> = tokens
            .iter()
            .map(|&(r, c)| {
                let b = pixel_box(scale, r, c, frame, 3840.0);
                let b = [b[0] + inset, b[1] + inset, b[2] - inset, b[3] - inset];
                colour_fraction(&img, &ring(b, 3), colour)
            })
            .collect();
        // Region boxes and their labels may cover a few outlines; nearly all must be intact.
        let intact = fractions.iter().filter(|&&f| f >= 0.9).count();
        assert!(
            intact * 10 >= tokens.len() * 9,
            "{scale} px: {intact} of {} outlines carry the scale colour; fractions {fractions:?}",
            tokens.len()
        );
        // And the colour is not everywhere: the middle of a patch shows the frame.
        let (r, c) = tokens[0];
        let b = pixel_box(scale, r, c, frame, 3840.0);
        let centre = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2);
        assert_ne!(
            img.get_pixel(centre.0 as u32, centre.1 as u32).0,
            colour,
            "{scale} px patch centre"
        );
    }
}

#[test]
fn the_default_overlay_outlines_the_selected_area() {
    let dir = tempfile::tempdir().unwrap();
    let (doc, img) = overlay_of_the_fixture(dir.path(), 1280);
    assert_eq!(img.width(), 1280);
    assert!(
        img.height() > 720 && img.height() < 720 + 200,
        "{}",
        img.height()
    );
    // 756 px patches whose upper neighbour is not selected: the top 2 px rows of their box are the
    // outermost ring of the selected area, the red contour (coarsest scale outermost, on top).
    let tokens = selected(&doc, 756);
    let set: std::collections::HashSet<(u64, u64)> = tokens.iter().copied().collect();
    let mut checked = 0;
    let mut red = 0;
    for &(r, c) in &tokens {
        let top = r == 0 || !set.contains(&(r - 1, c));
        if !top {
            continue;
        }
        let b = pixel_box(756, r, c, (1280.0, 720.0), 1280.0);
        let pixels: Vec<(i64, i64)> = (b[0]..b[2])
            .flat_map(|x| [(x, b[1]), (x, b[1] + 1)])
            .collect();
        checked += 1;
        if colour_fraction(&img, &pixels, RED) >= 0.9 {
            red += 1;
        }
    }
    assert!(checked >= 10, "only {checked} 756 px patches to check");
    assert!(
        red * 10 >= checked * 8,
        "{red} of {checked} contour edges are red"
    );
    // The legend band below the frame is drawn on its dark background.
    let legend = img.get_pixel(img.width() - 2, img.height() - 2).0;
    assert_eq!(legend, [22, 22, 26]);
}

#[test]
fn demo_writes_an_overlay_too() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("demo.png");
    let o = ps3rt(&[
        "demo",
        "--out-dir",
        dir.path().to_str().unwrap(),
        "--size",
        "960x540",
        "--budget",
        "256",
        "--overlay",
        png.to_str().unwrap(),
        "--overlay-width",
        "640",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(png.to_str().unwrap()));
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.width(), 640);
    assert!(img.height() > 360, "{}", img.height());
}

#[test]
fn overlay_errors_exit_with_a_reason() {
    let img = root().join("tests/fixtures/road-1280x720.png");
    // Width out of range: usage.
    let o = ps3rt(&[
        "run",
        "--input",
        img.to_str().unwrap(),
        "--overlay",
        "/tmp/x.png",
        "--overlay-width",
        "10",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    // Unwritable destination: exit 1, naming the file.
    let o = ps3rt(&[
        "run",
        "--input",
        img.to_str().unwrap(),
        "--budget",
        "64",
        "--overlay",
        "/nonexistent-dir/overlay.png",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("/nonexistent-dir/overlay.png"),
        "{}",
        text(&o.stderr)
    );
}
