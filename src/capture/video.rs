//! Uncompressed video files: YUV4MPEG2 (`.y4m`) and raw frames of a given format and size.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::{CaptureError, CaptureErrorKind, CapturedFrame, FrameSource, Pacer, raw_frame_len};
use crate::image::{ColorSpec, PixelFormat, YuvRange};

fn open(path: &Path) -> Result<File, CaptureError> {
    File::open(path)
        .map_err(|e| CaptureError::from_io(path.display().to_string(), "cannot open", &e))
}

/// Read exactly `buf.len()` bytes; `Ok(false)` at a clean end of file (nothing read).
fn read_frame(r: &mut impl Read, buf: &mut [u8], name: &str) -> Result<bool, CaptureError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(CaptureError::new(
                    CaptureErrorKind::InvalidData,
                    name,
                    format!(
                        "the file ends inside a frame ({got} of {} bytes)",
                        buf.len()
                    ),
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CaptureError::from_io(name, "cannot read", &e)),
        }
    }
    Ok(true)
}

/// A YUV4MPEG2 file (what `ffmpeg -f yuv4mpegpipe` and GStreamer's `y4menc` write): 4:2:0 (`C420`,
/// `C420jpeg`, `C420paldv`, `C420mpeg2`; read as I420) and `Cmono` (gray). The range comes from the
/// `XCOLORRANGE=FULL|LIMITED` extension when present (default limited); the matrix is not recorded
/// in the format, so it is the given [`ColorSpec`]'s (BT.601 by default).
#[derive(Debug)]
pub struct Y4mSource {
    path: PathBuf,
    name: String,
    reader: BufReader<File>,
    width: u32,
    height: u32,
    format: PixelFormat,
    color: ColorSpec,
    fps: Option<f64>,
    frame_len: usize,
    next: u64,
    pacer: Pacer,
    line: Vec<u8>,
}

impl Y4mSource {
    /// Open `path` and read its header; frames are not paced.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let name = path.display().to_string();
        let mut reader = BufReader::new(open(path)?);
        let bad = |m: String| CaptureError::new(CaptureErrorKind::InvalidData, name.clone(), m);
        let mut header = Vec::new();
        reader
            .by_ref()
            .take(4096)
            .read_until(b'\n', &mut header)
            .map_err(|e| CaptureError::from_io(name.clone(), "cannot read", &e))?;
        let text = std::str::from_utf8(&header)
            .ok()
            .filter(|t| t.ends_with('\n'))
            .ok_or_else(|| bad("not a YUV4MPEG2 file (no header line)".into()))?;
        let mut fields = text.trim_end().split(' ');
        if fields.next() != Some("YUV4MPEG2") {
            return Err(bad(
                "not a YUV4MPEG2 file (it must start with \"YUV4MPEG2 \")".into(),
            ));
        }
        let (mut w, mut h, mut fps) = (None, None, None);
        let mut format = PixelFormat::I420;
        let mut range = None;
        for f in fields {
            let (key, value) = f.split_at(f.len().min(1));
            match key {
                "W" => w = value.parse::<u32>().ok(),
                "H" => h = value.parse::<u32>().ok(),
                "F" => {
                    fps = value.split_once(':').and_then(|(n, d)| {
                        let (n, d) = (n.parse::<f64>().ok()?, d.parse::<f64>().ok()?);
                        (n > 0.0 && d > 0.0).then(|| n / d)
                    })
                }
                "I" if value != "p" && value != "?" => {
                    log::warn!("{name}: interlaced y4m ({value}); frames are read as progressive");
                }
                "C" => {
                    format = match value {
                        "420" | "420jpeg" | "420paldv" | "420mpeg2" => PixelFormat::I420,
                        "mono" => PixelFormat::Gray8,
                        other => {
                            return Err(CaptureError::new(
                                CaptureErrorKind::Unsupported,
                                name.clone(),
                                format!(
                                    "y4m colour space C{other} is not supported (only 4:2:0 and mono, 8 bits); convert with e.g. ffmpeg -pix_fmt yuv420p"
                                ),
                            ));
                        }
                    }
                }
                "X" => match value {
                    "COLORRANGE=FULL" => range = Some(YuvRange::Full),
                    "COLORRANGE=LIMITED" => range = Some(YuvRange::Limited),
                    _ => {}
                },
                _ => {}
            }
        }
        let (Some(width), Some(height)) = (w, h) else {
            return Err(bad("the y4m header has no valid W and H".into()));
        };
        let frame_len = raw_frame_len(width, height, format, 0)
            .map_err(|e| bad(format!("frame size {width}x{height}: {e}")))?;
        let mut color = ColorSpec::default();
        if let Some(r) = range {
            color.range = r;
        }
        Ok(Y4mSource {
            path: path.to_path_buf(),
            name,
            reader,
            width,
            height,
            format,
            color,
            fps,
            frame_len,
            next: 0,
            pacer: Pacer::new(None),
            line: Vec::with_capacity(64),
        })
    }

    /// Use `color` for the YUV -> RGB conversion (the file's range flag, if any, is replaced).
    #[must_use]
    pub fn with_color(mut self, color: ColorSpec) -> Self {
        self.color = color;
        self
    }

    /// Release frames at `fps` (or the file's rate with `Some(0.0)`) like a camera; `None`: as fast
    /// as asked.
    #[must_use]
    pub fn paced(mut self, fps: Option<f64>) -> Self {
        let fps = match fps {
            Some(0.0) => self.fps.or(Some(30.0)),
            other => other,
        };
        self.pacer = Pacer::new(fps);
        self
    }

    /// Frame size in pixels.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The frame rate the header states.
    pub fn fps(&self) -> Option<f64> {
        self.fps
    }

    /// The pixel format of the frames (I420 or gray).
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl FrameSource for Y4mSource {
    fn describe(&self) -> String {
        format!(
            "{} (y4m {} {}x{}{})",
            self.name,
            self.format,
            self.width,
            self.height,
            self.fps
                .map(|f| format!(" @ {f:.3} fps"))
                .unwrap_or_default()
        )
    }

    fn next_frame(&mut self, frame: &mut CapturedFrame) -> Result<bool, CaptureError> {
        self.line.clear();
        self.reader
            .by_ref()
            .take(1024)
            .read_until(b'\n', &mut self.line)
            .map_err(|e| CaptureError::from_io(self.name.clone(), "cannot read", &e))?;
        if self.line.is_empty() {
            return Ok(false);
        }
        if !self.line.starts_with(b"FRAME") || !self.line.ends_with(b"\n") {
            return Err(CaptureError::new(
                CaptureErrorKind::InvalidData,
                self.name.clone(),
                format!("frame {}: expected a FRAME header", self.next),
            ));
        }
        self.pacer.wait();
        let data = frame
            .prepare_raw(self.width, self.height, self.format, 0, self.color)
            .map_err(|e| {
                CaptureError::new(
                    CaptureErrorKind::InvalidData,
                    self.name.clone(),
                    e.to_string(),
                )
            })?;
        debug_assert_eq!(data.len(), self.frame_len);
        if !read_frame(&mut self.reader, data, &self.name)? {
            return Err(CaptureError::new(
                CaptureErrorKind::InvalidData,
                self.name.clone(),
                format!("frame {}: the file ends after its FRAME header", self.next),
            ));
        }
        frame.sequence = self.next;
        frame.captured_at = std::time::Instant::now();
        self.next += 1;
        Ok(true)
    }
}

/// A file of raw frames back to back, each `width` x `height` in `format` with packed rows (what
/// `ffmpeg -f rawvideo` and GStreamer's `filesink` after `videoconvert` write).
#[derive(Debug)]
pub struct RawVideoSource {
    name: String,
    reader: BufReader<File>,
    width: u32,
    height: u32,
    format: PixelFormat,
    color: ColorSpec,
    frames: u64,
    next: u64,
    pacer: Pacer,
}

impl RawVideoSource {
    /// Open `path`; its size must be a whole number of frames.
    pub fn open(
        path: &Path,
        width: u32,
        height: u32,
        format: PixelFormat,
    ) -> Result<Self, CaptureError> {
        let name = path.display().to_string();
        let frame_len = raw_frame_len(width, height, format, 0).map_err(|e| {
            CaptureError::new(CaptureErrorKind::InvalidData, name.clone(), e.to_string())
        })?;
        let file = open(path)?;
        let len = file
            .metadata()
            .map_err(|e| CaptureError::from_io(name.clone(), "cannot stat", &e))?
            .len();
        let frames = len / frame_len as u64;
        if frames == 0 || len % frame_len as u64 != 0 {
            return Err(CaptureError::new(
                CaptureErrorKind::InvalidData,
                name,
                format!(
                    "{len} bytes is not a whole number of {width}x{height} {format} frames ({frame_len} bytes each{}); check the format and size",
                    if frames > 0 {
                        format!(
                            ", {} bytes left over after {frames}",
                            len % frame_len as u64
                        )
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        Ok(RawVideoSource {
            name,
            reader: BufReader::with_capacity(1 << 20, file),
            width,
            height,
            format,
            color: ColorSpec::default(),
            frames,
            next: 0,
            pacer: Pacer::new(None),
        })
    }

    /// Use `color` for the YUV -> RGB conversion.
    #[must_use]
    pub fn with_color(mut self, color: ColorSpec) -> Self {
        self.color = color;
        self
    }

    /// Release frames at `fps` like a camera (`None`: as fast as asked).
    #[must_use]
    pub fn paced(mut self, fps: Option<f64>) -> Self {
        self.pacer = Pacer::new(fps);
        self
    }

    /// Number of frames in the file.
    pub fn frames(&self) -> u64 {
        self.frames
    }
}

impl FrameSource for RawVideoSource {
    fn describe(&self) -> String {
        format!(
            "{} (raw {} {}x{}, {} frame{})",
            self.name,
            self.format,
            self.width,
            self.height,
            self.frames,
            if self.frames == 1 { "" } else { "s" }
        )
    }

    fn next_frame(&mut self, frame: &mut CapturedFrame) -> Result<bool, CaptureError> {
        if self.next >= self.frames {
            return Ok(false);
        }
        self.pacer.wait();
        let data = frame
            .prepare_raw(self.width, self.height, self.format, 0, self.color)
            .map_err(|e| {
                CaptureError::new(
                    CaptureErrorKind::InvalidData,
                    self.name.clone(),
                    e.to_string(),
                )
            })?;
        if !read_frame(&mut self.reader, data, &self.name)? {
            return Ok(false);
        }
        frame.sequence = self.next;
        frame.captured_at = std::time::Instant::now();
        self.next += 1;
        Ok(true)
    }
}
