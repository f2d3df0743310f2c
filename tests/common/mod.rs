//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The committed tiny package.
pub fn tiny_package() -> PathBuf {
    root().join("models/ps3-tiny-4k")
}

/// The parity fixtures directory.
pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures/parity")
}

/// The `[3, size, size]` tensor of tools/parity/make_fixtures.py `parity_tensor`, bit for bit.
pub fn parity_tensor(size: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(3 * size * size);
    for c in 0..3u32 {
        for y in 0..size as u32 {
            for x in 0..size as u32 {
                let key = (y / 90)
                    .wrapping_mul(73)
                    .wrapping_add((x / 90).wrapping_mul(151))
                    .wrapping_add(c.wrapping_mul(29));
                let coarse = (key.wrapping_mul(2_654_435_761) >> 24) & 255;
                let fine = (x
                    .wrapping_mul(7)
                    .wrapping_add(y.wrapping_mul(3))
                    .wrapping_add(c.wrapping_mul(11)))
                    & 31;
                let u8v = (coarse * 3 / 4 + fine) & 255;
                v.push((u8v as f32 / 255.0 - 0.5) / 0.5);
            }
        }
    }
    v
}

/// Read a float32 `.npy` (shape, values).
pub fn npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<f32>().unwrap())
}

/// Read an int32 `.npy` (shape, values).
pub fn npy_i32(path: &Path) -> (Vec<usize>, Vec<i32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<i32>().unwrap())
}

/// Decode an image file to packed RGB8.
pub fn rgb_image(path: &Path) -> (u32, u32, Vec<u8>) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    let (w, h) = img.dimensions();
    (w, h, img.into_raw())
}

/// A tensor of the tiny package's tables.safetensors, as f32.
pub fn tables_tensor(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(tiny_package().join("tables.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
