//! MJPEG frames: decoded (with `zune-jpeg`, the JPEG decoder the `image` crate already uses) into an
//! RGB8 buffer that is reused from frame to frame.
//!
//! A JPEG has to be entropy-decoded in full before any pixel is known (the DC coefficients are
//! coded as differences along the scan), so decoding only the rows and columns the encoder reads is
//! not possible; the whole frame is decoded once, then encoded as an RGB8 frame.

use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

use super::frame::{Frame, MAX_FRAME_SIDE, PixelFormat};
use crate::error::{Error, Result};

/// Decodes JPEG/MJPEG frames into a buffer it owns and reuses: after the first frame of a size,
/// decoding does not allocate the output again.
///
/// MJPEG streams from UVC cameras often leave out the Huffman tables (the "AVI1" convention): the
/// standard tables of JPEG's Annex K are used when a frame defines none.
#[derive(Debug, Default)]
pub struct MjpegDecoder {
    rgb: Vec<u8>,
    patched: Vec<u8>,
}

/// An APP0 segment marking the stream as AVI1 MJPEG, which makes the decoder fill in the standard
/// Huffman tables for the tables a frame does not define.
const AVI1_APP0: [u8; 9] = [0xFF, 0xE0, 0x00, 0x07, b'A', b'V', b'I', b'1', 0x00];

/// Whether the JPEG's headers (up to its first scan) define no Huffman table and carry no AVI1
/// marker, so the standard tables must be supplied. A malformed header answers `false`: the decoder
/// then reports the problem.
fn lacks_huffman_tables(jpeg: &[u8]) -> bool {
    if jpeg.len() < 4 || jpeg[0] != 0xFF || jpeg[1] != 0xD8 {
        return false;
    }
    let mut i = 2;
    while i + 1 < jpeg.len() {
        if jpeg[i] != 0xFF {
            return false;
        }
        let marker = jpeg[i + 1];
        match marker {
            0xFF => i += 1, // fill byte
            0x01 | 0xD0..=0xD7 => i += 2,
            0xC4 => return false,
            0xDA => return true,
            _ => {
                let Some(len) = jpeg.get(i + 2..i + 4) else {
                    return false;
                };
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                if marker == 0xE0 && jpeg.get(i + 4..i + 8) == Some(b"AVI1") {
                    return false;
                }
                i += 2 + len;
            }
        }
    }
    false
}

impl MjpegDecoder {
    /// A decoder with no buffer yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decode one JPEG image into the decoder's buffer and return it as an RGB8 frame (valid until
    /// the next call). Gray JPEGs come back as RGB with equal channels; the JPEG's own full-range
    /// BT.601 colour conversion is applied by the decoder.
    pub fn decode(&mut self, jpeg: &[u8]) -> Result<Frame<'_>> {
        let bad = |what: String| Error::InvalidFrame(format!("MJPEG frame: {what}"));
        let data: &[u8] = if lacks_huffman_tables(jpeg) {
            self.patched.clear();
            self.patched.extend_from_slice(&jpeg[..2]);
            self.patched.extend_from_slice(&AVI1_APP0);
            self.patched.extend_from_slice(&jpeg[2..]);
            &self.patched
        } else {
            jpeg
        };
        let options = DecoderOptions::default()
            .jpeg_set_out_colorspace(ColorSpace::RGB)
            .set_max_width(MAX_FRAME_SIDE as usize)
            .set_max_height(MAX_FRAME_SIDE as usize);
        let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(data), options);
        decoder.decode_headers().map_err(|e| {
            bad(format!(
                "cannot read the JPEG headers ({} bytes): {e}",
                jpeg.len()
            ))
        })?;
        let (w, h) = decoder
            .dimensions()
            .ok_or_else(|| bad("the JPEG headers give no size".into()))?;
        // A JPEG's entropy-coded data spends at least one bit on every 8x8 block of its first
        // component (a Huffman code is at least one bit long; zune-jpeg decodes no arithmetic-coded
        // JPEGs), so `n` bytes cannot describe more than 8n blocks. A header claiming more is
        // refused before anything the size of the image is allocated: a few hundred bytes must not
        // make the decoder reserve gigabytes.
        let blocks = w.div_ceil(8).saturating_mul(h.div_ceil(8));
        if blocks > jpeg.len().saturating_mul(8) {
            return Err(bad(format!(
                "the headers claim {w}x{h} pixels ({blocks} blocks of 8x8), more than {} bytes can encode (truncated or forged frame)",
                jpeg.len()
            )));
        }
        let needed = w * h * 3;
        match decoder.output_buffer_size() {
            Some(n) if n == needed => {}
            other => {
                return Err(bad(format!(
                    "the decoder would write {other:?} bytes for a {w}x{h} RGB image ({needed})"
                )));
            }
        }
        if self.rgb.len() < needed {
            self.rgb.resize(needed, 0);
        }
        decoder
            .decode_into(&mut self.rgb[..needed])
            .map_err(|e| bad(format!("cannot decode the {w}x{h} JPEG: {e}")))?;
        Frame::packed(w as u32, h as u32, PixelFormat::Rgb8, &self.rgb[..needed])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = ::image::RgbImage::from_fn(w, h, |x, y| {
            ::image::Rgb([(x * 9) as u8, (y * 7) as u8, ((x + y) * 3) as u8])
        });
        let mut out = Vec::new();
        ::image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
            .encode_image(&img)
            .unwrap();
        out
    }

    /// The same JPEG with its DHT segments removed (as UVC cameras send MJPEG).
    fn strip_dht(jpeg: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        let mut i = 2;
        loop {
            let marker = jpeg[i + 1];
            if marker == 0xDA {
                out.extend_from_slice(&jpeg[i..]);
                return out;
            }
            let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
            if marker != 0xC4 {
                out.extend_from_slice(&jpeg[i..i + 2 + len]);
            }
            i += 2 + len;
        }
    }

    #[test]
    fn decodes_into_a_reused_buffer_with_or_without_huffman_tables() {
        let full = jpeg(37, 21);
        let mut d = MjpegDecoder::new();
        let (w, h, a) = {
            let f = d.decode(&full).unwrap();
            (f.width(), f.height(), f.plane(0).to_vec())
        };
        assert_eq!((w, h, a.len()), (37, 21, 37 * 21 * 3));
        // Close to the source colours (quality 95).
        assert!((i32::from(a[3 * 10]) - 90).abs() < 12, "{}", a[30]);
        let stripped = strip_dht(&full);
        assert!(stripped.len() < full.len() && lacks_huffman_tables(&stripped));
        assert!(!lacks_huffman_tables(&full));
        let ptr = d.rgb.as_ptr();
        let b = d.decode(&stripped).unwrap().plane(0).to_vec();
        // The encoder's tables are the standard ones, so the pixels are identical.
        assert_eq!(a, b);
        assert_eq!(d.rgb.as_ptr(), ptr, "the buffer was reallocated");
        let e = d.decode(&full[..full.len() / 3]).unwrap_err().to_string();
        assert!(e.contains("MJPEG frame"), "{e}");
        assert!(d.decode(b"not a jpeg").is_err());
    }
}
