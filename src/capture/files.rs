//! Still images as a source: one file, or every image of a folder in name order.

use std::path::{Path, PathBuf};

use super::{CaptureError, CaptureErrorKind, CapturedFrame, FrameSource, Pacer, SourceFormat};
use crate::image::{ColorSpec, PixelFormat};

/// Extensions an [`ImageSource`] picks up in a folder (case-insensitive).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "ppm", "pgm", "pnm", "pam", "pbm"];

/// Still images: a file, or the images of a folder (sorted by name, hidden files skipped). JPEG
/// files are handed on compressed (decoded only when encoded, like MJPEG); other images are decoded
/// to RGB8 when read.
#[derive(Debug)]
pub struct ImageSource {
    name: String,
    files: Vec<PathBuf>,
    next: usize,
    repeat: bool,
    pacer: Pacer,
}

fn is_jpeg(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
}

impl ImageSource {
    /// One image file, or every image in a folder (not its subfolders).
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let name = path.display().to_string();
        let meta = std::fs::metadata(path)
            .map_err(|e| CaptureError::from_io(name.clone(), "cannot open", &e))?;
        let files = if meta.is_dir() {
            let mut files = Vec::new();
            let entries = std::fs::read_dir(path)
                .map_err(|e| CaptureError::from_io(name.clone(), "cannot list", &e))?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| CaptureError::from_io(name.clone(), "cannot list", &e))?;
                let p = entry.path();
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                let image = p
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)));
                if !hidden && image && p.is_file() {
                    files.push(p);
                }
            }
            files.sort();
            if files.is_empty() {
                return Err(CaptureError::new(
                    CaptureErrorKind::NotFound,
                    name,
                    format!(
                        "no images in the folder (looked for {})",
                        IMAGE_EXTENSIONS.join(", ")
                    ),
                ));
            }
            files
        } else {
            vec![path.to_path_buf()]
        };
        Ok(ImageSource {
            name,
            files,
            next: 0,
            repeat: false,
            pacer: Pacer::new(None),
        })
    }

    /// Start again from the first image after the last one (an endless source).
    #[must_use]
    pub fn repeat(mut self, repeat: bool) -> Self {
        self.repeat = repeat;
        self
    }

    /// Release frames at `fps` like a camera (`None`: as fast as asked).
    #[must_use]
    pub fn paced(mut self, fps: Option<f64>) -> Self {
        self.pacer = Pacer::new(fps);
        self
    }

    /// The images, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl FrameSource for ImageSource {
    fn describe(&self) -> String {
        format!(
            "{} ({} image{})",
            self.name,
            self.files.len(),
            if self.files.len() == 1 { "" } else { "s" }
        )
    }

    fn next_frame(&mut self, frame: &mut CapturedFrame) -> Result<bool, CaptureError> {
        let n = self.files.len();
        let index = self.next;
        if index >= n && !self.repeat {
            return Ok(false);
        }
        let path = &self.files[index % n];
        let pname = path.display().to_string();
        let bytes = std::fs::read(path)
            .map_err(|e| CaptureError::from_io(pname.clone(), "cannot read", &e))?;
        self.pacer.wait();
        if is_jpeg(path) {
            frame.data.clear();
            frame.data.extend_from_slice(&bytes);
            frame.format = SourceFormat::Mjpeg;
            frame.width = 0;
            frame.height = 0;
            frame.stride = 0;
            frame.color = ColorSpec::BT601_FULL;
        } else {
            let bad =
                |m: String| CaptureError::new(CaptureErrorKind::InvalidData, pname.clone(), m);
            let img = ::image::ImageReader::new(std::io::Cursor::new(&bytes))
                .with_guessed_format()
                .map_err(|e| bad(format!("cannot read: {e}")))?
                .decode()
                .map_err(|e| bad(format!("cannot decode: {e}")))?
                .to_rgb8();
            let (w, h) = img.dimensions();
            let data = frame
                .prepare_raw(w, h, PixelFormat::Rgb8, 0, ColorSpec::default())
                .map_err(|e| bad(e.to_string()))?;
            data.copy_from_slice(img.as_raw());
        }
        frame.sequence = index as u64;
        frame.captured_at = std::time::Instant::now();
        self.next += 1;
        Ok(true)
    }
}
