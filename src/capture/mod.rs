//! Frames in from cameras and files: the [`FrameSource`] trait, its sources, and the live loop.
//!
//! - [`V4l2Source`] (Linux, cargo feature `v4l2`, on by default): a V4L2 camera through the `v4l`
//!   crate, mmap streaming, format/size/rate negotiation, reconnect after an unplug.
//! - [`ImageSource`]: still images, one file or every image of a folder.
//! - [`Y4mSource`] and [`RawVideoSource`]: uncompressed video files (YUV4MPEG2, and raw frames of a
//!   given format and size back to back).
//! - [`SyntheticSource`]: a moving road scene in any pixel format, for tests and benchmarks.
//! - [`Live`]: capture on its own thread into a latest-frame-wins slot, so the encoder always takes
//!   the newest frame and the latency from capture to features stays constant (stale frames are
//!   dropped and counted).
//!
//! Frames arrive in [`CapturedFrame`]s, buffers that are reused from frame to frame. A frame is raw
//! pixels in any [`PixelFormat`] or a compressed MJPEG image, which [`CapturedFrame::frame`] decodes
//! (into the caller's reusable [`MjpegDecoder`]) only when the frame is actually encoded.
//! `docs/camera.md` describes the behaviour, `docs/formats.md` the pixel formats.

mod files;
mod live;
mod synthetic;
#[cfg(all(feature = "v4l2", target_os = "linux"))]
mod v4l2;
mod video;

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::image::{ColorSpec, Frame, MjpegDecoder, PixelFormat};

pub use files::ImageSource;
pub use live::{Live, LiveFrame, LiveOptions, LiveStats, LiveStopper, STOP_WAIT};
pub use synthetic::{SyntheticSource, rgb8_to_format};
#[cfg(all(feature = "v4l2", target_os = "linux"))]
pub use v4l2::{V4l2Options, V4l2Source};
pub use video::{RawVideoSource, Y4mSource};

/// What the bytes of a [`CapturedFrame`] are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    /// Uncompressed pixels, laid out as [`Frame::new`] describes (planes one after the other).
    Raw(PixelFormat),
    /// One JPEG image (a frame of an MJPEG stream).
    Mjpeg,
}

impl SourceFormat {
    /// `"nv12"`, `"mjpeg"`, ...
    pub fn name(&self) -> &'static str {
        match self {
            SourceFormat::Raw(f) => f.name(),
            SourceFormat::Mjpeg => "mjpeg",
        }
    }

    /// Parse a [`PixelFormat`] name or alias, or `mjpeg`/`mjpg`/`jpeg`.
    pub fn from_name(name: &str) -> Option<SourceFormat> {
        match name.to_ascii_lowercase().as_str() {
            "mjpeg" | "mjpg" | "jpeg" | "jpg" => Some(SourceFormat::Mjpeg),
            n => PixelFormat::from_name(n).map(SourceFormat::Raw),
        }
    }
}

impl std::fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One captured frame in a buffer a source fills and the live loop reuses.
///
/// Raw frames may be captured into page-locked memory for GPU preprocessing
/// ([`CapturedFrame::pin_to_gpu`], [`LiveOptions::pinned_device`]): the pixels are then in that
/// memory, not in `data`; [`CapturedFrame::bytes`] and [`CapturedFrame::frame`] read them wherever
/// they are. A clone is always an ordinary heap copy.
#[derive(Debug)]
pub struct CapturedFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// What `data` holds.
    pub format: SourceFormat,
    /// Row stride of the first plane in bytes (raw formats; ignored for MJPEG).
    pub stride: usize,
    /// How YUV samples map to RGB (raw YUV formats).
    pub color: ColorSpec,
    /// The pixels (raw: every plane, as [`Frame::new`] lays them out) or the JPEG bytes; empty for
    /// a raw frame captured into page-locked memory ([`CapturedFrame::bytes`] reads either).
    pub data: Vec<u8>,
    /// Frame number given by the source, counting from 0 (gaps: frames the source lost).
    pub sequence: u64,
    /// When the frame was captured (V4L2: dequeued from the driver; files: read).
    pub captured_at: Instant,
    /// Page-locked memory raw frames are captured into when asked for
    /// ([`CapturedFrame::pin_to_gpu`]); opaque, empty by default.
    pub pinned: PinnedPixels,
}

/// Page-locked memory a [`CapturedFrame`] captures raw frames into ([`CapturedFrame::pin_to_gpu`]).
/// Opaque; the default holds none.
#[derive(Debug, Default)]
pub struct PinnedPixels {
    #[cfg(feature = "cuda")]
    inner: Option<PinnedInner>,
}

#[cfg(feature = "cuda")]
#[derive(Debug)]
struct PinnedInner {
    device: i32,
    /// Grown (reallocated) only when a larger frame arrives.
    buffer: Option<crate::PinnedBuffer>,
    /// Bytes of `buffer` the current frame occupies.
    len: usize,
}

impl Clone for CapturedFrame {
    fn clone(&self) -> Self {
        CapturedFrame {
            width: self.width,
            height: self.height,
            format: self.format,
            stride: self.stride,
            color: self.color,
            data: self.bytes().to_vec(),
            sequence: self.sequence,
            captured_at: self.captured_at,
            pinned: PinnedPixels::default(),
        }
    }
}

impl Default for CapturedFrame {
    fn default() -> Self {
        CapturedFrame {
            width: 0,
            height: 0,
            format: SourceFormat::Raw(PixelFormat::Rgb8),
            stride: 0,
            color: ColorSpec::default(),
            data: Vec::new(),
            sequence: 0,
            captured_at: Instant::now(),
            pinned: PinnedPixels::default(),
        }
    }
}

impl CapturedFrame {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the description of a raw frame and size `data` for it (packed rows when `stride` is 0);
    /// the allocation is kept when it is large enough. Returns the bytes to fill.
    pub fn prepare_raw(
        &mut self,
        width: u32,
        height: u32,
        format: PixelFormat,
        stride: usize,
        color: ColorSpec,
    ) -> Result<&mut [u8]> {
        let stride = if stride == 0 {
            format.plane_row_bytes(0, width)
        } else {
            stride
        };
        let len = raw_frame_len(width, height, format, stride)?;
        self.width = width;
        self.height = height;
        self.format = SourceFormat::Raw(format);
        self.stride = stride;
        self.color = color;
        #[cfg(feature = "cuda")]
        if let Some(pinned) = self.pinned.inner.as_mut() {
            if pinned.buffer.as_ref().is_none_or(|b| b.len() < len) {
                pinned.buffer = None;
                match crate::PinnedBuffer::new(pinned.device, len) {
                    Ok(b) => pinned.buffer = Some(b),
                    Err(e) => log::warn!(
                        "cannot capture into page-locked memory ({e}); frames stay in pageable memory"
                    ),
                }
            }
            if pinned.buffer.is_none() {
                self.pinned.inner = None;
            }
        }
        #[cfg(feature = "cuda")]
        if let Some(PinnedInner {
            buffer: Some(buffer),
            len: used,
            ..
        }) = self.pinned.inner.as_mut()
        {
            *used = len;
            self.data.clear();
            return Ok(&mut buffer[..len]);
        }
        self.data.resize(len, 0);
        Ok(&mut self.data)
    }

    /// Capture raw frames into page-locked memory of CUDA device `device` from the next
    /// [`CapturedFrame::prepare_raw`] on (allocated then, and again only for a larger frame), so
    /// that GPU preprocessing copies them with one DMA (on a Jetson, reads them in place). Where
    /// that memory cannot be had (no GPU, the page-locking limit) a warning is logged and frames
    /// stay in `data`. MJPEG frames always stay in `data`.
    #[cfg(feature = "cuda")]
    pub fn pin_to_gpu(&mut self, device: i32) {
        if self
            .pinned
            .inner
            .as_ref()
            .is_none_or(|p| p.device != device)
        {
            self.pinned.inner = Some(PinnedInner {
                device,
                buffer: None,
                len: 0,
            });
        }
    }

    /// Whether the current frame's pixels lie in page-locked memory.
    pub fn is_pinned(&self) -> bool {
        self.pinned_bytes().is_some()
    }

    /// The frame's bytes: the raw pixels wherever they are, or the JPEG bytes.
    pub fn bytes(&self) -> &[u8] {
        self.pinned_bytes().unwrap_or(&self.data)
    }

    /// The raw pixels in page-locked memory, if that is where the current frame is: filled through
    /// `prepare_raw` (which empties `data`), not written into `data` by a source since.
    fn pinned_bytes(&self) -> Option<&[u8]> {
        #[cfg(feature = "cuda")]
        if let (SourceFormat::Raw(_), true, Some(p)) = (
            self.format,
            self.data.is_empty(),
            self.pinned.inner.as_ref(),
        ) {
            return p.buffer.as_ref().map(|b| &b[..p.len.min(b.len())]);
        }
        None
    }

    /// A view of the pixels for the encoder: raw frames as they are, MJPEG frames decoded into
    /// `decoder`'s reused buffer.
    pub fn frame<'a>(&'a self, decoder: &'a mut MjpegDecoder) -> Result<Frame<'a>> {
        match self.format {
            SourceFormat::Raw(format) => {
                Ok(
                    Frame::new(self.width, self.height, format, self.stride, self.bytes())?
                        .with_color(self.color),
                )
            }
            SourceFormat::Mjpeg => {
                let frame = decoder.decode(&self.data)?;
                if (frame.width(), frame.height()) != (self.width, self.height) && self.width != 0 {
                    log::debug!(
                        "MJPEG frame is {}x{}, the stream was negotiated at {}x{}",
                        frame.width(),
                        frame.height(),
                        self.width,
                        self.height
                    );
                }
                Ok(frame)
            }
        }
    }
}

/// Bytes a raw frame of this size, format and first-plane stride (0: packed rows) occupies, all
/// planes, as [`Frame::new`] lays them out.
pub fn raw_frame_len(width: u32, height: u32, format: PixelFormat, stride: usize) -> Result<usize> {
    // The layout of Frame::new (PixelFormat::contiguous_strides).
    if width == 0 || height == 0 {
        return Err(Error::InvalidFrame(format!(
            "size {width}x{height} is empty"
        )));
    }
    let row = format.plane_row_bytes(0, width);
    let stride = if stride == 0 { row } else { stride };
    if stride < row {
        return Err(Error::InvalidFrame(format!(
            "stride {stride} is smaller than one {format} row of {width} pixels ({row} bytes)"
        )));
    }
    let n = format.plane_count();
    let strides = format.contiguous_strides(stride);
    let mut total = 0usize;
    for (p, &s) in strides.iter().enumerate().take(n) {
        let rows = format.plane_rows(p, height);
        let len = if p + 1 < n {
            s.checked_mul(rows)
        } else {
            s.checked_mul(rows - 1)
                .and_then(|v| v.checked_add(format.plane_row_bytes(p, width)))
        };
        total = len.and_then(|l| total.checked_add(l)).ok_or_else(|| {
            Error::InvalidFrame(format!("a {width}x{height} {format} frame overflows"))
        })?;
    }
    Ok(total)
}

/// What kind of capture failure happened: lets callers tell a missing camera from a busy one, and a
/// recoverable unplug from a configuration error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CaptureErrorKind {
    /// The device or file does not exist.
    NotFound,
    /// The process may not open it (V4L2: not in the `video` group).
    PermissionDenied,
    /// Another process is using the device.
    Busy,
    /// The device cannot deliver what was asked (format, size), or is not a capture device.
    Unsupported,
    /// The device went away while streaming (unplugged); a reconnect may bring it back.
    Disconnected,
    /// No frame arrived within the timeout.
    Timeout,
    /// The data is not what it claims to be (a malformed file or frame).
    InvalidData,
    /// Any other I/O failure.
    Io,
}

/// A capture failure: what failed (the device or file) and why, in words a user can act on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct CaptureError {
    /// The kind of failure.
    pub kind: CaptureErrorKind,
    /// The device or file.
    pub source_name: String,
    /// What went wrong and, where known, what to do about it.
    pub message: String,
}

impl CaptureError {
    /// A new error.
    pub fn new(
        kind: CaptureErrorKind,
        source_name: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        CaptureError {
            kind,
            source_name: source_name.into(),
            message: message.into(),
        }
    }

    /// An error from an I/O failure on `source_name` while doing `what`, classified by its kind.
    pub fn from_io(source_name: impl Into<String>, what: &str, e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match (e.kind(), e.raw_os_error()) {
            (K::NotFound, _) => CaptureErrorKind::NotFound,
            (K::PermissionDenied, _) => CaptureErrorKind::PermissionDenied,
            (K::TimedOut, _) => CaptureErrorKind::Timeout,
            (_, Some(16)) => CaptureErrorKind::Busy, // EBUSY
            (_, Some(19)) | (_, Some(6)) => CaptureErrorKind::Disconnected, // ENODEV, ENXIO
            (K::UnexpectedEof | K::InvalidData, _) => CaptureErrorKind::InvalidData,
            _ => CaptureErrorKind::Io,
        };
        CaptureError::new(kind, source_name, format!("{what}: {e}"))
    }

    /// Whether reopening the source may help (unplug, stall).
    pub fn is_recoverable(&self) -> bool {
        matches!(
            self.kind,
            CaptureErrorKind::Disconnected | CaptureErrorKind::Timeout
        )
    }
}

impl From<CaptureError> for Error {
    fn from(e: CaptureError) -> Error {
        Error::Input {
            path: e.source_name.into(),
            reason: e.message,
        }
    }
}

/// Something frames come from: a camera, a file, a generator.
///
/// Sources run on the live loop's capture thread, so they are `Send`. They write each frame into
/// the [`CapturedFrame`] they are given (reusing its buffer) and should not allocate per frame in
/// steady state.
pub trait FrameSource: Send {
    /// What the source is, for logs and status lines: e.g. `/dev/video0 (yuyv 1920x1080 @ 30 fps)`.
    fn describe(&self) -> String;

    /// Write the next frame into `frame`; `Ok(false)` at the end of a finite source (files).
    fn next_frame(&mut self, frame: &mut CapturedFrame) -> std::result::Result<bool, CaptureError>;

    /// Reopen the source after a recoverable error (a camera unplugged and plugged back in). The
    /// default cannot.
    fn reconnect(&mut self) -> std::result::Result<(), CaptureError> {
        Err(CaptureError::new(
            CaptureErrorKind::Unsupported,
            self.describe(),
            "this source cannot reconnect",
        ))
    }

    /// Whether the source delivers frames at its own pace (a camera), as opposed to as fast as it
    /// is asked (files and generators, unless paced).
    fn is_live(&self) -> bool {
        false
    }
}

impl<S: FrameSource + ?Sized> FrameSource for Box<S> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn next_frame(&mut self, frame: &mut CapturedFrame) -> std::result::Result<bool, CaptureError> {
        (**self).next_frame(frame)
    }
    fn reconnect(&mut self) -> std::result::Result<(), CaptureError> {
        (**self).reconnect()
    }
    fn is_live(&self) -> bool {
        (**self).is_live()
    }
}

/// Paces a file or generator source like a camera: frame `n` is released at `start + n / fps`.
/// When the reader falls behind, frames are released at once (never bunched later).
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    interval: Option<Duration>,
    next_due: Option<Instant>,
}

impl Pacer {
    pub(crate) fn new(fps: Option<f64>) -> Self {
        Pacer {
            interval: fps
                .filter(|f| f.is_finite() && *f > 0.0)
                .map(|f| Duration::from_secs_f64(1.0 / f)),
            next_due: None,
        }
    }

    pub(crate) fn fps(&self) -> Option<f64> {
        self.interval.map(|i| 1.0 / i.as_secs_f64())
    }

    /// Sleep until the next frame is due.
    pub(crate) fn wait(&mut self) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = Instant::now();
        let due = self.next_due.unwrap_or(now);
        if due > now {
            std::thread::sleep(due - now);
        }
        // A reader that fell behind does not get a burst of frames to catch up.
        self.next_due = Some(due.max(now) + interval);
    }
}
