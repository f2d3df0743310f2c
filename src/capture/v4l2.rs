//! V4L2 cameras through the `v4l` crate: open, negotiate, mmap streaming, reconnect.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use v4l::buffer::{Flags as BufFlags, Type};
use v4l::capability::Flags as CapFlags;
use v4l::format::{Colorspace, Quantization};
use v4l::framesize::FrameSizeEnum;
use v4l::io::traits::CaptureStream;
use v4l::prelude::{Device, MmapStream};
use v4l::video::Capture;
use v4l::video::capture::Parameters;
use v4l::{Format, FourCC};

use super::{CaptureError, CaptureErrorKind, CapturedFrame, FrameSource, SourceFormat};
use crate::image::{ColorSpec, PixelFormat, YuvMatrix, YuvRange};

/// What to ask a V4L2 camera for. Unset fields are chosen by [`V4l2Source::open`]: the format and
/// size with the most pixels that reach `fps` (default 30 fps, else the fastest), MJPEG or raw.
#[derive(Debug, Clone, PartialEq)]
pub struct V4l2Options {
    /// The device node, e.g. `/dev/video0`.
    pub device: PathBuf,
    /// Pixel format (`None`: the best mode, see above).
    pub format: Option<SourceFormat>,
    /// Frame size (`None`: the largest the format offers at the rate).
    pub size: Option<(u32, u32)>,
    /// Frame rate (`None`: 30 if the mode offers it, else its fastest).
    pub fps: Option<u32>,
    /// Driver buffers for mmap streaming (2..=32).
    pub buffers: u32,
    /// How long to wait for a frame before reporting a stall.
    pub timeout: Duration,
    /// YUV -> RGB conversion (`None`: from what the driver reports; BT.601 limited when it reports
    /// nothing).
    pub color: Option<ColorSpec>,
}

impl V4l2Options {
    /// Defaults for `device`: best mode, 4 buffers, 2 s timeout.
    pub fn new(device: impl Into<PathBuf>) -> Self {
        V4l2Options {
            device: device.into(),
            format: None,
            size: None,
            fps: None,
            buffers: 4,
            timeout: Duration::from_secs(2),
            color: None,
        }
    }
}

/// What the device and ps3rt agreed on.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Mode {
    fourcc: [u8; 4],
    format: SourceFormat,
    width: u32,
    height: u32,
    stride: usize,
    fps: Option<f64>,
    color: ColorSpec,
}

/// A V4L2 capture device streaming through mmap buffers. Each frame is copied out of the driver's
/// buffer into the [`CapturedFrame`] (reused), so the driver gets its buffer back at once.
pub struct V4l2Source {
    options: V4l2Options,
    name: String,
    // Field order: the stream (its mmap buffers) is dropped before the device.
    stream: Option<MmapStream<'static>>,
    device: Option<Device>,
    mode: Mode,
    card: String,
    next: u64,
    corrupted: u64,
}

impl std::fmt::Debug for V4l2Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

const FOURCCS: [([u8; 4], SourceFormat); 11] = [
    (*b"MJPG", SourceFormat::Mjpeg),
    (*b"JPEG", SourceFormat::Mjpeg),
    (*b"YUYV", SourceFormat::Raw(PixelFormat::Yuyv)),
    (*b"UYVY", SourceFormat::Raw(PixelFormat::Uyvy)),
    (*b"NV12", SourceFormat::Raw(PixelFormat::Nv12)),
    (*b"NV21", SourceFormat::Raw(PixelFormat::Nv21)),
    (*b"YU12", SourceFormat::Raw(PixelFormat::I420)),
    (*b"RGB3", SourceFormat::Raw(PixelFormat::Rgb8)),
    (*b"BGR3", SourceFormat::Raw(PixelFormat::Bgr8)),
    (*b"GREY", SourceFormat::Raw(PixelFormat::Gray8)),
    (*b"AR24", SourceFormat::Raw(PixelFormat::Bgra8)),
];

fn fourcc_text(f: [u8; 4]) -> String {
    f.iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

/// Run `f`, turning a panic inside the `v4l` crate (it unwraps in a few places) into an error.
fn no_panic<T>(
    name: &str,
    what: &str,
    f: impl FnOnce() -> Result<T, CaptureError>,
) -> Result<T, CaptureError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("panic");
        Err(CaptureError::new(
            CaptureErrorKind::Io,
            name,
            format!("{what}: the v4l crate failed: {msg}"),
        ))
    })
}

fn io_err(name: &str, what: &str, e: &std::io::Error) -> CaptureError {
    let mut err = CaptureError::from_io(name, what, e);
    err.message = match err.kind {
        CaptureErrorKind::NotFound => format!(
            "{what}: no such device (is the camera plugged in? `ls /dev/video*` lists the devices)"
        ),
        CaptureErrorKind::PermissionDenied => format!(
            "{what}: permission denied (add the user to the device's group, usually `video`: sudo usermod -aG video $USER, then log in again)"
        ),
        CaptureErrorKind::Busy => {
            format!("{what}: the device is busy (another program is streaming from it)")
        }
        CaptureErrorKind::Disconnected => {
            format!("{what}: the device is gone (unplugged?) ({e})")
        }
        _ => err.message,
    };
    err
}

/// Colour spec from what the driver reports (V4L2's default mapping: Rec.709 colorspace -> BT.709,
/// others -> BT.601; JPEG colorspace or full-range quantization -> full range).
fn driver_color(f: &Format) -> ColorSpec {
    let matrix = match f.colorspace {
        Colorspace::Rec709 => YuvMatrix::Bt709,
        _ => YuvMatrix::Bt601,
    };
    let range = match (f.quantization, f.colorspace) {
        (Quantization::FullRange, _) | (Quantization::Default, Colorspace::JPEG) => YuvRange::Full,
        _ => YuvRange::Limited,
    };
    ColorSpec { matrix, range }
}

impl V4l2Source {
    /// Open the device and start streaming in the negotiated mode. Errors name the device and the
    /// cause: missing device, no permission, busy, not a capture device, a format or size the
    /// device does not offer (with what it offers).
    pub fn open(options: V4l2Options) -> Result<Self, CaptureError> {
        let name = options.device.display().to_string();
        if !(2..=32).contains(&options.buffers) {
            return Err(CaptureError::new(
                CaptureErrorKind::Unsupported,
                name,
                format!("{} buffers: use 2 to 32", options.buffers),
            ));
        }
        // poll(2) takes the timeout in whole milliseconds as an int; 0 would never wait.
        if options.timeout < Duration::from_millis(1)
            || options.timeout.as_millis() > i32::MAX as u128
        {
            return Err(CaptureError::new(
                CaptureErrorKind::Unsupported,
                name,
                format!(
                    "timeout {:?}: use 1 ms to {} days",
                    options.timeout,
                    i32::MAX / 86_400_000
                ),
            ));
        }
        let n = name.clone();
        no_panic(&n, "open", move || {
            let (device, mode, card) = negotiate(&options, &name)?;
            let mut source = V4l2Source {
                options,
                name,
                stream: None,
                device: Some(device),
                mode,
                card,
                next: 0,
                corrupted: 0,
            };
            source.start_stream()?;
            Ok(source)
        })
    }

    fn start_stream(&mut self) -> Result<(), CaptureError> {
        let device = self.device.as_ref().ok_or_else(|| {
            CaptureError::new(CaptureErrorKind::Io, self.name.clone(), "device not open")
        })?;
        let mut stream = MmapStream::with_buffers(device, Type::VideoCapture, self.options.buffers)
            .map_err(|e| io_err(&self.name, "cannot allocate mmap buffers", &e))?;
        stream.set_timeout(self.options.timeout);
        self.stream = Some(stream);
        Ok(())
    }

    /// The negotiated pixel format.
    pub fn format(&self) -> SourceFormat {
        self.mode.format
    }

    /// The negotiated frame size.
    pub fn size(&self) -> (u32, u32) {
        (self.mode.width, self.mode.height)
    }

    /// The negotiated frame rate, if the driver reports one.
    pub fn fps(&self) -> Option<f64> {
        self.mode.fps
    }

    /// Frames the driver flagged as corrupted and that were skipped.
    pub fn corrupted_frames(&self) -> u64 {
        self.corrupted
    }

    /// Close the stream and the device. The `v4l` crate panics when stopping a stream fails with
    /// anything but "no device"; that is caught here.
    fn close(&mut self) {
        let stream = self.stream.take();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(stream)));
        self.device = None;
    }
}

impl Drop for V4l2Source {
    fn drop(&mut self) {
        self.close();
    }
}

/// Every (width, height) the device offers for `fourcc` (stepwise ranges: their largest size and,
/// when it lies inside, the asked one).
fn sizes(device: &Device, fourcc: FourCC, wanted: Option<(u32, u32)>) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for fs in device.enum_framesizes(fourcc).unwrap_or_default() {
        match fs.size {
            FrameSizeEnum::Discrete(d) => out.push((d.width, d.height)),
            FrameSizeEnum::Stepwise(s) => {
                out.push((s.max_width, s.max_height));
                if let Some((w, h)) = wanted {
                    let fits = |v: u32, lo: u32, hi: u32, step: u32| {
                        v >= lo && v <= hi && (step == 0 || (v - lo).is_multiple_of(step))
                    };
                    if fits(w, s.min_width, s.max_width, s.step_width)
                        && fits(h, s.min_height, s.max_height, s.step_height)
                    {
                        out.push((w, h));
                    }
                }
            }
        }
    }
    out
}

/// The fastest rate (frames per second) of a mode, and whether `fps` is offered.
fn rates(device: &Device, fourcc: FourCC, w: u32, h: u32, fps: u32) -> (f64, bool) {
    let mut best = 0f64;
    let mut offered = false;
    for fi in device.enum_frameintervals(fourcc, w, h).unwrap_or_default() {
        let (lo, hi) = match fi.interval {
            v4l::frameinterval::FrameIntervalEnum::Discrete(f) => (f, f),
            v4l::frameinterval::FrameIntervalEnum::Stepwise(s) => (s.min, s.max),
        };
        let rate = |f: v4l::Fraction| {
            if f.numerator == 0 {
                0.0
            } else {
                f64::from(f.denominator) / f64::from(f.numerator)
            }
        };
        let (fast, slow) = (rate(lo), rate(hi));
        best = best.max(fast);
        if f64::from(fps) <= fast + 0.01 && f64::from(fps) >= slow - 0.01 {
            offered = true;
        }
    }
    (best, offered)
}

fn negotiate(options: &V4l2Options, name: &str) -> Result<(Device, Mode, String), CaptureError> {
    if !options.device.exists() {
        return Err(CaptureError::new(
            CaptureErrorKind::NotFound,
            name,
            "no such device (is the camera plugged in? `ls /dev/video*` lists the devices)",
        ));
    }
    let device = Device::with_path(&options.device).map_err(|e| io_err(name, "cannot open", &e))?;
    let caps = device
        .query_caps()
        .map_err(|e| io_err(name, "not a V4L2 device (VIDIOC_QUERYCAP failed)", &e))?;
    if !caps.capabilities.contains(CapFlags::VIDEO_CAPTURE) {
        return Err(CaptureError::new(
            CaptureErrorKind::Unsupported,
            name,
            format!(
                "{} ({}) is not a video capture node (UVC cameras also create metadata nodes; try the other /dev/video* of the camera)",
                caps.card, caps.driver
            ),
        ));
    }
    if !caps.capabilities.contains(CapFlags::STREAMING) {
        return Err(CaptureError::new(
            CaptureErrorKind::Unsupported,
            name,
            format!("{} does not support streaming I/O", caps.card),
        ));
    }
    let offered: Vec<([u8; 4], SourceFormat)> = device
        .enum_formats()
        .map_err(|e| io_err(name, "cannot list formats", &e))?
        .iter()
        .filter_map(|d| FOURCCS.iter().find(|(f, _)| *f == d.fourcc.repr).copied())
        .collect();
    let all: Vec<String> = device
        .enum_formats()
        .unwrap_or_default()
        .iter()
        .map(|d| fourcc_text(d.fourcc.repr))
        .collect();
    let target_fps = options.fps.unwrap_or(30);
    // Candidate modes: (fourcc, format, w, h, fastest fps, offers target fps).
    let mut modes = Vec::new();
    for &(fcc, fmt) in &offered {
        if options.format.is_some_and(|f| f != fmt) {
            continue;
        }
        for (w, h) in sizes(&device, FourCC::new(&fcc), options.size) {
            if options.size.is_some_and(|s| s != (w, h)) {
                continue;
            }
            let (fast, ok) = rates(&device, FourCC::new(&fcc), w, h, target_fps);
            modes.push((fcc, fmt, w, h, fast, ok));
        }
    }
    if let Some(want) = options.format
        && !offered.iter().any(|(_, f)| *f == want)
    {
        return Err(CaptureError::new(
            CaptureErrorKind::Unsupported,
            name,
            format!(
                "the device does not offer {want}; it offers {} (ps3rt reads {})",
                all.join(", "),
                offered
                    .iter()
                    .map(|(_, f)| f.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if offered.is_empty() {
        return Err(CaptureError::new(
            CaptureErrorKind::Unsupported,
            name,
            format!(
                "none of the device's formats ({}) is one ps3rt reads (MJPG, YUYV, UYVY, NV12, NV21, YU12, RGB3, BGR3, GREY, AR24)",
                all.join(", ")
            ),
        ));
    }
    // Best: offers the rate, then most pixels, then fastest, then raw before MJPEG (no decoding).
    modes.sort_by(|a, b| {
        (b.5, u64::from(b.2) * u64::from(b.3))
            .cmp(&(a.5, u64::from(a.2) * u64::from(a.3)))
            .then(b.4.total_cmp(&a.4))
            .then((a.1 == SourceFormat::Mjpeg).cmp(&(b.1 == SourceFormat::Mjpeg)))
    });
    let (fcc, fmt, w, h) = match (modes.first(), options.size) {
        (Some(m), _) => (m.0, m.1, m.2, m.3),
        // The device enumerates no sizes (some drivers): ask for what the user wants and see.
        (None, Some((w, h))) => {
            let (fcc, fmt) = offered
                .iter()
                .find(|(_, f)| options.format.is_none_or(|want| want == *f))
                .copied()
                .unwrap_or(offered[0]);
            (fcc, fmt, w, h)
        }
        (None, None) => {
            let current = device
                .format()
                .map_err(|e| io_err(name, "cannot read the current format", &e))?;
            let (fcc, fmt) = offered
                .iter()
                .find(|(f, _)| *f == current.fourcc.repr)
                .copied()
                .unwrap_or(offered[0]);
            (fcc, fmt, current.width, current.height)
        }
    };
    let actual = device
        .set_format(&Format::new(w, h, FourCC::new(&fcc)))
        .map_err(|e| {
            io_err(
                name,
                &format!("cannot set {} {w}x{h}", fourcc_text(fcc)),
                &e,
            )
        })?;
    if actual.fourcc.repr != fcc {
        return Err(CaptureError::new(
            CaptureErrorKind::Unsupported,
            name,
            format!(
                "asked for {} {w}x{h}, the driver chose {} {}x{}",
                fourcc_text(fcc),
                fourcc_text(actual.fourcc.repr),
                actual.width,
                actual.height
            ),
        ));
    }
    if (actual.width, actual.height) != (w, h) {
        let msg = format!(
            "asked for {w}x{h}, the driver chose {}x{}",
            actual.width, actual.height
        );
        if options.size.is_some() {
            log::warn!("{name}: {msg}");
        } else {
            log::info!("{name}: {msg}");
        }
    }
    // The rate: the asked one, or 30 when offered, else the mode's fastest.
    let fps = match options.fps {
        Some(f) => Some(f),
        None => {
            let (fast, ok) = rates(&device, FourCC::new(&fcc), actual.width, actual.height, 30);
            if ok {
                Some(30)
            } else if fast >= 1.0 {
                Some(fast.floor() as u32)
            } else {
                None
            }
        }
    };
    let mut got_fps = None;
    if let Some(f) = fps {
        match device.set_params(&Parameters::with_fps(f.max(1))) {
            Ok(p) if p.interval.numerator > 0 => {
                let r = f64::from(p.interval.denominator) / f64::from(p.interval.numerator);
                if options.fps.is_some() && (r - f64::from(f)).abs() > 0.5 {
                    log::warn!("{name}: asked for {f} fps, the driver chose {r:.2}");
                }
                got_fps = Some(r);
            }
            Ok(_) => {}
            Err(e) => log::warn!("{name}: cannot set the frame rate to {f} fps: {e}"),
        }
    }
    let color = options.color.unwrap_or_else(|| driver_color(&actual));
    let stride = match fmt {
        SourceFormat::Raw(p) => (actual.stride as usize).max(p.plane_row_bytes(0, actual.width)),
        SourceFormat::Mjpeg => 0,
    };
    let mode = Mode {
        fourcc: fcc,
        format: fmt,
        width: actual.width,
        height: actual.height,
        stride,
        fps: got_fps,
        color,
    };
    log::info!(
        "{name}: {} ({}), {} {}x{}{}, stride {stride}, {}",
        caps.card,
        caps.driver,
        fourcc_text(fcc),
        mode.width,
        mode.height,
        got_fps
            .map(|f| format!(" @ {f:.2} fps"))
            .unwrap_or_default(),
        color
    );
    Ok((device, mode, caps.card))
}

/// Frames skipped while waiting for a usable one: skipping goes on only until the timeout, so a
/// driver that keeps sending corrupted or short frames (a stalled sensor, a format changed under the
/// stream) gives a recoverable `Timeout` instead of a read that never returns.
struct BadFrames {
    started: Instant,
    timeout: Duration,
}

impl BadFrames {
    fn new(timeout: Duration) -> Self {
        BadFrames {
            started: Instant::now(),
            timeout,
        }
    }

    /// One more skipped frame (`what` says why); an error once the timeout has passed.
    fn skip(&mut self, name: &str, what: &str) -> Result<(), CaptureError> {
        if self.started.elapsed() > self.timeout {
            return Err(CaptureError::new(
                CaptureErrorKind::Timeout,
                name,
                format!("only {what} within {:.1} s", self.timeout.as_secs_f64()),
            ));
        }
        Ok(())
    }
}

impl FrameSource for V4l2Source {
    fn describe(&self) -> String {
        format!(
            "{} ({}, {} {}x{}{})",
            self.name,
            self.card,
            fourcc_text(self.mode.fourcc),
            self.mode.width,
            self.mode.height,
            self.mode
                .fps
                .map(|f| format!(" @ {f:.2} fps"))
                .unwrap_or_default()
        )
    }

    fn next_frame(&mut self, frame: &mut CapturedFrame) -> Result<bool, CaptureError> {
        let name = self.name.clone();
        let mode = self.mode;
        let Some(stream) = self.stream.as_mut() else {
            return Err(CaptureError::new(
                CaptureErrorKind::Disconnected,
                name,
                "the stream is closed (reconnecting failed earlier)",
            ));
        };
        let mut bad = BadFrames::new(self.options.timeout);
        loop {
            let (buf, meta) = match stream.next() {
                Ok(v) => v,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    let gone = !Path::new(&self.options.device).exists();
                    return Err(CaptureError::new(
                        if gone {
                            CaptureErrorKind::Disconnected
                        } else {
                            CaptureErrorKind::Timeout
                        },
                        name,
                        if gone {
                            "the device disappeared (unplugged?)".to_string()
                        } else {
                            format!(
                                "no frame within {:.1} s (the camera stalled?)",
                                self.options.timeout.as_secs_f64()
                            )
                        },
                    ));
                }
                Err(e) => return Err(io_err(&name, "cannot dequeue a frame", &e)),
            };
            let used = (meta.bytesused as usize).min(buf.len());
            if meta.flags.contains(BufFlags::ERROR) || used == 0 {
                self.corrupted += 1;
                log::debug!(
                    "{name}: frame {} flagged as corrupted, skipped",
                    meta.sequence
                );
                bad.skip(&name, "corrupted frames")?;
                continue;
            }
            match mode.format {
                SourceFormat::Raw(p) => {
                    let data = frame
                        .prepare_raw(mode.width, mode.height, p, mode.stride, mode.color)
                        .map_err(|e| {
                            CaptureError::new(
                                CaptureErrorKind::InvalidData,
                                name.clone(),
                                e.to_string(),
                            )
                        })?;
                    if used < data.len() {
                        self.corrupted += 1;
                        log::debug!(
                            "{name}: frame {} has {used} bytes, a {} {}x{} frame needs {}; skipped",
                            meta.sequence,
                            p,
                            mode.width,
                            mode.height,
                            data.len()
                        );
                        // A driver that switched to a smaller format sends only such frames: give
                        // up at the timeout (recoverable: a reconnect negotiates again).
                        bad.skip(
                            &name,
                            &format!(
                                "frames shorter than the negotiated {p} {}x{} (did the format change?)",
                                mode.width, mode.height
                            ),
                        )?;
                        continue;
                    }
                    let n = data.len();
                    data.copy_from_slice(&buf[..n]);
                }
                SourceFormat::Mjpeg => {
                    frame.data.clear();
                    frame.data.extend_from_slice(&buf[..used]);
                    frame.width = mode.width;
                    frame.height = mode.height;
                    frame.format = SourceFormat::Mjpeg;
                    frame.stride = 0;
                    frame.color = ColorSpec::BT601_FULL;
                }
            }
            frame.sequence = self.next;
            frame.captured_at = Instant::now();
            self.next += 1;
            return Ok(true);
        }
    }

    /// Close and reopen the device with the same options; the negotiated mode may change if the
    /// device plugged back in offers other modes.
    fn reconnect(&mut self) -> Result<(), CaptureError> {
        self.close();
        let name = self.name.clone();
        let options = self.options.clone();
        let (device, mode, card) = no_panic(&name, "reopen", || negotiate(&options, &name))?;
        self.device = Some(device);
        self.mode = mode;
        self.card = card;
        no_panic(&name, "restart streaming", || self.start_stream())
    }

    fn is_live(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipping_bad_frames_ends_at_the_timeout() {
        let mut bad = BadFrames::new(Duration::from_millis(20));
        assert!(bad.skip("/dev/video9", "corrupted frames").is_ok());
        std::thread::sleep(Duration::from_millis(30));
        let e = bad
            .skip(
                "/dev/video9",
                "frames shorter than the negotiated nv12 640x480",
            )
            .unwrap_err();
        assert_eq!(e.kind, CaptureErrorKind::Timeout);
        assert!(e.is_recoverable());
        assert_eq!(
            e.to_string(),
            "/dev/video9: only frames shorter than the negotiated nv12 640x480 within 0.0 s"
        );
    }
}
