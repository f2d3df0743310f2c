//! Frame sources and the live loop: synthetic and file sources, latest-frame-wins dropping,
//! shutdown, errors; V4L2 against a real camera when `PS3RT_TEST_CAMERA=/dev/videoN` is set.

use std::io::Write;
use std::time::{Duration, Instant};

use ps3rt::capture::{
    CaptureError, CaptureErrorKind, CapturedFrame, FrameSource, ImageSource, Live, LiveOptions,
    RawVideoSource, SourceFormat, SyntheticSource, Y4mSource, raw_frame_len,
};
use ps3rt::{MjpegDecoder, PixelFormat};

fn drain(source: &mut dyn FrameSource) -> Vec<CapturedFrame> {
    let mut out = Vec::new();
    let mut f = CapturedFrame::new();
    while source.next_frame(&mut f).unwrap() {
        out.push(f.clone());
    }
    out
}

#[test]
fn synthetic_frames_move_and_reuse_their_buffer() {
    let mut s = SyntheticSource::new(64, 36, SourceFormat::Raw(PixelFormat::Nv12))
        .unwrap()
        .limited(Some(3));
    let mut f = CapturedFrame::new();
    assert!(s.next_frame(&mut f).unwrap());
    let first = f.data.clone();
    let ptr = f.data.as_ptr();
    assert!(s.next_frame(&mut f).unwrap());
    assert_eq!(f.data.as_ptr(), ptr, "the frame buffer was reallocated");
    assert_ne!(f.data, first, "the picture does not move");
    assert_eq!((f.sequence, f.data.len()), (1, 64 * 36 * 3 / 2));
    assert!(s.next_frame(&mut f).unwrap());
    assert!(!s.next_frame(&mut f).unwrap(), "the limit of 3 frames");
    // The scrolled frame is the scene rotated by 8 px per frame.
    let mut d = MjpegDecoder::new();
    let mut rgb = Vec::new();
    f.frame(&mut d).unwrap().to_rgb8(&mut rgb);
    let mut want = Vec::new();
    s.rgb_frame(2, &mut want);
    // 4:2:0 chroma differs on sharp edges only.
    let err = rgb
        .iter()
        .zip(&want)
        .map(|(a, b)| f64::from((i32::from(*a) - i32::from(*b)).abs()))
        .sum::<f64>()
        / rgb.len() as f64;
    assert!(err < 4.0, "mean error {err}");
    let mut frame0 = Vec::new();
    s.rgb_frame(0, &mut frame0);
    let moved = frame0.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert!(moved > rgb.len() / 10, "frame 2 is not frame 0 scrolled");
}

#[test]
fn the_live_loop_drops_stale_frames_and_keeps_latency_constant() {
    // 200 fps camera, 100 ms "encoder": most frames are stale and dropped; every frame taken is
    // fresh (captured at most one frame interval plus scheduling before it was taken). A stale frame
    // would be at least the encoder's 100 ms old; the 60 ms limit leaves 55 ms for a busy machine's
    // scheduling (with a 30 ms encoder and a 25 ms limit, 20 ms was all the slack there was).
    let source = SyntheticSource::new(32, 18, SourceFormat::Raw(PixelFormat::Yuyv))
        .unwrap()
        .paced(Some(200.0));
    let live = Live::start(source, LiveOptions::default());
    let mut last = None;
    let mut ages = Vec::new();
    for _ in 0..8 {
        let f = live.next(Some(Duration::from_secs(5))).unwrap().unwrap();
        ages.push(f.captured_at.elapsed());
        if let Some(prev) = last {
            assert!(f.sequence > prev, "frames go forward");
        }
        last = Some(f.sequence);
        drop(f);
        std::thread::sleep(Duration::from_millis(100));
    }
    let stats = live.stats();
    assert!(stats.dropped >= 8, "{stats:?}");
    assert_eq!(stats.delivered, 8);
    assert!(stats.buffers <= 3, "{stats:?}");
    assert!(
        stats.captured >= stats.dropped + stats.delivered,
        "{stats:?}"
    );
    let worst = ages.iter().max().unwrap();
    assert!(
        *worst < Duration::from_millis(60),
        "a stale frame was delivered: {ages:?}"
    );
}

/// `LiveOptions::pinned_device`: raw frames go into page-locked memory where a GPU gives it (there
/// `is_pinned`, `data` empty, `bytes` the pixels); without one (this machine in CI) the loop logs a
/// warning and delivers the same frames from ordinary memory. Either way a clone is a heap copy of
/// the same pixels, and the frame encodes the same.
#[test]
fn the_live_loop_captures_into_pinned_memory_when_it_can() {
    let take = |pinned_device| {
        // One frame, so both loops deliver the same one (the scene scrolls).
        let source = SyntheticSource::new(64, 36, SourceFormat::Raw(PixelFormat::Nv12))
            .unwrap()
            .limited(Some(1));
        let live = Live::start(
            source,
            LiveOptions {
                pinned_device,
                ..LiveOptions::default()
            },
        );
        let f = live.next(Some(Duration::from_secs(5))).unwrap().unwrap();
        let copy: CapturedFrame = (*f).clone();
        assert!(!copy.is_pinned() && copy.data == f.bytes());
        assert_eq!(f.bytes().len(), 64 * 36 * 3 / 2);
        (f.is_pinned(), f.data.is_empty(), copy)
    };
    let (plain_pinned, _, plain) = take(None);
    assert!(!plain_pinned);
    let (pinned, data_empty, copy) = take(Some(0));
    assert_eq!(pinned, data_empty, "pinned pixels are not in data");
    assert_eq!(copy.data, plain.data, "the same pixels, pinned or not");
    let mut decoder = ps3rt::MjpegDecoder::new();
    let frame = copy.frame(&mut decoder).unwrap();
    assert_eq!((frame.width(), frame.height()), (64, 36));
}

#[test]
fn the_live_loop_ends_with_the_source_and_stops_on_request() {
    let source = SyntheticSource::new(16, 16, SourceFormat::Raw(PixelFormat::Rgb8))
        .unwrap()
        .limited(Some(5));
    let live = Live::start(source, LiveOptions::default());
    let mut n = 0;
    while let Some(f) = live.next(Some(Duration::from_secs(5))).unwrap() {
        n += 1;
        drop(f);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!((1..=5).contains(&n));
    assert_eq!(live.stats().captured, 5);

    // An endless paced source stops promptly on request, from another thread too.
    let source = SyntheticSource::new(16, 16, SourceFormat::Raw(PixelFormat::Gray8))
        .unwrap()
        .paced(Some(50.0));
    let mut live = Live::start(source, LiveOptions::default());
    assert!(live.next(Some(Duration::from_secs(5))).unwrap().is_some());
    let stopper = live.stopper();
    let t = Instant::now();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        stopper.stop();
    });
    while live.next(Some(Duration::from_secs(5))).unwrap().is_some() {}
    live.stop();
    assert!(t.elapsed() < Duration::from_secs(2));
}

/// A source that fails after a few frames, recoverably or not.
struct Flaky {
    frames: u64,
    fail_at: u64,
    kind: CaptureErrorKind,
    reconnects: u64,
    refuse_reconnects: u64,
}

impl FrameSource for Flaky {
    fn describe(&self) -> String {
        "flaky".into()
    }
    fn next_frame(&mut self, frame: &mut CapturedFrame) -> Result<bool, CaptureError> {
        if self.frames == self.fail_at {
            self.fail_at = u64::MAX;
            return Err(CaptureError::new(self.kind, "flaky", "unplugged"));
        }
        std::thread::sleep(Duration::from_millis(2));
        frame
            .prepare_raw(4, 4, PixelFormat::Gray8, 0, Default::default())
            .unwrap()
            .fill(self.frames as u8);
        frame.sequence = self.frames;
        frame.captured_at = Instant::now();
        self.frames += 1;
        Ok(self.frames < 40)
    }
    fn reconnect(&mut self) -> Result<(), CaptureError> {
        self.reconnects += 1;
        if self.reconnects <= self.refuse_reconnects {
            return Err(CaptureError::new(
                CaptureErrorKind::NotFound,
                "flaky",
                "not back yet",
            ));
        }
        Ok(())
    }
}

#[test]
fn errors_surface_and_unplugs_reconnect() {
    // A recoverable error with reconnect: the loop reconnects (after two refused attempts) and goes on.
    let flaky = Flaky {
        frames: 0,
        fail_at: 5,
        kind: CaptureErrorKind::Disconnected,
        reconnects: 0,
        refuse_reconnects: 2,
    };
    let options = LiveOptions {
        reconnect_interval: Duration::from_millis(5),
        ..LiveOptions::default()
    };
    let live = Live::start(flaky, options);
    let mut seen = 0;
    while let Some(f) = live.next(Some(Duration::from_secs(5))).unwrap() {
        seen = seen.max(f.sequence);
    }
    assert!(seen >= 30, "{seen}");
    assert_eq!(live.stats().reconnects, 1);

    // Without reconnect, or for a non-recoverable error, the error reaches the consumer once.
    for (kind, reconnect) in [
        (CaptureErrorKind::Disconnected, false),
        (CaptureErrorKind::InvalidData, true),
    ] {
        let flaky = Flaky {
            frames: 0,
            fail_at: 3,
            kind,
            reconnects: 0,
            refuse_reconnects: 0,
        };
        let live = Live::start(
            flaky,
            LiveOptions {
                reconnect,
                ..LiveOptions::default()
            },
        );
        let err = loop {
            match live.next(Some(Duration::from_secs(5))) {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("no error"),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind, kind);
        assert!(err.to_string().contains("flaky: unplugged"), "{err}");
        assert!(live.next(Some(Duration::from_secs(1))).unwrap().is_none());
    }

    // Reconnecting gives up after its timeout.
    let flaky = Flaky {
        frames: 0,
        fail_at: 1,
        kind: CaptureErrorKind::Disconnected,
        reconnects: 0,
        refuse_reconnects: u64::MAX,
    };
    let live = Live::start(
        flaky,
        LiveOptions {
            reconnect: true,
            reconnect_interval: Duration::from_millis(5),
            reconnect_timeout: Some(Duration::from_millis(50)),
            pinned_device: None,
        },
    );
    let _ = live.next(Some(Duration::from_secs(5)));
    let e = live.next(Some(Duration::from_secs(5))).unwrap_err();
    assert!(e.message.contains("not back after"), "{e}");
}

#[test]
fn y4m_and_raw_files() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (7u32, 5u32);
    let len = raw_frame_len(w, h, PixelFormat::I420, 0).unwrap();
    let y4m = dir.path().join("clip.y4m");
    {
        let mut f = std::fs::File::create(&y4m).unwrap();
        writeln!(
            f,
            "YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg XCOLORRANGE=FULL"
        )
        .unwrap();
        for i in 0..3u8 {
            f.write_all(b"FRAME\n").unwrap();
            f.write_all(&vec![i * 50; len]).unwrap();
        }
    }
    let mut s = Y4mSource::open(&y4m).unwrap();
    assert_eq!(
        (s.size(), s.fps(), s.format()),
        ((7, 5), Some(25.0), PixelFormat::I420)
    );
    let frames = drain(&mut s);
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[2].data[0], 100);
    assert_eq!(frames[0].color, ps3rt::ColorSpec::BT601_FULL);

    // Truncated, wrong magic, unsupported chroma.
    let bad = dir.path().join("bad.y4m");
    std::fs::write(&bad, b"YUV4MPEG2 W7 H5 C420\nFRAME\nshort").unwrap();
    let mut s = Y4mSource::open(&bad).unwrap();
    let e = s.next_frame(&mut CapturedFrame::new()).unwrap_err();
    assert!(e.message.contains("ends inside a frame"), "{e}");
    std::fs::write(&bad, b"P6\n").unwrap();
    assert!(
        Y4mSource::open(&bad)
            .unwrap_err()
            .message
            .contains("not a YUV4MPEG2")
    );
    std::fs::write(&bad, b"YUV4MPEG2 W7 H5 C444\n").unwrap();
    let e = Y4mSource::open(&bad).unwrap_err();
    assert_eq!(e.kind, CaptureErrorKind::Unsupported);
    let e = Y4mSource::open(&dir.path().join("missing.y4m")).unwrap_err();
    assert_eq!(e.kind, CaptureErrorKind::NotFound);

    // Raw NV12: two frames, and a file that is not a whole number of frames.
    let raw = dir.path().join("clip.nv12");
    let len = raw_frame_len(w, h, PixelFormat::Nv12, 0).unwrap();
    std::fs::write(&raw, vec![9u8; 2 * len]).unwrap();
    let mut s = RawVideoSource::open(&raw, w, h, PixelFormat::Nv12).unwrap();
    assert_eq!(s.frames(), 2);
    assert_eq!(drain(&mut s).len(), 2);
    let e = RawVideoSource::open(&raw, w, h, PixelFormat::Yuyv).unwrap_err();
    assert!(e.message.contains("not a whole number"), "{e}");
}

#[test]
fn image_folders_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    for (i, name) in ["b.png", "a.png", "c.jpg"].iter().enumerate() {
        let img = image::RgbImage::from_pixel(9, 4, image::Rgb([i as u8 * 60, 0, 0]));
        img.save(dir.path().join(name)).unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    let mut s = ImageSource::open(dir.path()).unwrap();
    assert_eq!(s.files().len(), 3);
    let frames = drain(&mut s);
    assert_eq!(frames[0].data[0], 60); // a.png
    assert_eq!(frames[2].format, SourceFormat::Mjpeg); // c.jpg, decoded when encoded
    let mut d = MjpegDecoder::new();
    assert_eq!(frames[2].frame(&mut d).unwrap().width(), 9);
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        ImageSource::open(empty.path()).unwrap_err().kind,
        CaptureErrorKind::NotFound
    );
}

#[cfg(all(feature = "v4l2", target_os = "linux"))]
#[test]
fn v4l2_missing_device_is_a_clear_error() {
    use ps3rt::capture::{V4l2Options, V4l2Source};
    let e = V4l2Source::open(V4l2Options::new("/dev/video-ps3rt-missing")).unwrap_err();
    assert_eq!(e.kind, CaptureErrorKind::NotFound);
    assert!(
        e.to_string()
            .contains("/dev/video-ps3rt-missing: no such device"),
        "{e}"
    );
    // A file that is not a V4L2 device.
    let e = V4l2Source::open(V4l2Options::new("/dev/null")).unwrap_err();
    assert!(e.to_string().contains("/dev/null"), "{e}");
}

/// Runs against a real camera: `PS3RT_TEST_CAMERA=/dev/video0 cargo test --test capture v4l2`.
#[cfg(all(feature = "v4l2", target_os = "linux"))]
#[test]
fn v4l2_real_camera() {
    use ps3rt::capture::{V4l2Options, V4l2Source};
    let Some(device) = std::env::var_os("PS3RT_TEST_CAMERA") else {
        eprintln!(
            "skipped: v4l2_real_camera needs a camera: PS3RT_TEST_CAMERA=/dev/videoN (CI machines have none, and v4l2loopback needs kernel modules)"
        );
        return;
    };
    let source = V4l2Source::open(V4l2Options::new(device)).unwrap();
    eprintln!("camera: {}", source.describe());
    let live = Live::start(source, LiveOptions::default());
    let mut decoder = MjpegDecoder::new();
    for _ in 0..10 {
        let f = live.next(Some(Duration::from_secs(5))).unwrap().unwrap();
        let frame = f.frame(&mut decoder).unwrap();
        assert!(frame.width() > 0 && frame.height() > 0);
    }
    eprintln!("{:?}", live.stats());
}

// ---------------------------------------------------------------------------------- the CLI

fn ps3rt(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ps3rt"))
        .args(args)
        .output()
        .expect("ps3rt runs")
}

#[test]
fn cli_camera_on_the_synthetic_scene_prints_json_lines_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let overlays = dir.path().join("ov");
    let o = ps3rt(&[
        "camera",
        "--synthetic",
        "96x54",
        "--format",
        "nv21",
        "--fps",
        "100",
        "--frames",
        "3",
        "--budget",
        "64",
        "--output",
        "json",
        "--overlay-every",
        "2",
        overlays.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    for (i, l) in lines[..3].iter().enumerate() {
        assert_eq!(l["frame"], i as u64);
        assert_eq!(l["format"], "nv21");
        assert!(l["latency_ms"].as_f64().unwrap() >= l["encode_ms"].as_f64().unwrap() * 0.99);
        assert!(!l["regions"].as_array().unwrap().is_empty());
    }
    let s = &lines[3]["summary"];
    assert_eq!(s["frames_encoded"], 3);
    assert!(s["frames_captured"].as_u64().unwrap() >= 3);
    // Frames 0 and 2 got overlays.
    assert!(overlays.join("frame-000000.png").is_file());
    assert!(overlays.join("frame-000002.png").is_file());
    assert!(!overlays.join("frame-000001.png").exists());
}

#[test]
fn cli_camera_and_run_read_video_files_and_report_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (33u32, 19u32);
    let len = raw_frame_len(w, h, PixelFormat::Yuyv, 0).unwrap();
    let raw = dir.path().join("clip.yuyv");
    let mut data = Vec::new();
    for i in 0..4u8 {
        data.extend((0..len).map(|j| (j as u8).wrapping_mul(7).wrapping_add(i * 30)));
    }
    std::fs::write(&raw, &data).unwrap();
    let raw = raw.to_str().unwrap();
    // The whole file through the live loop, unpaced: every frame is read, some encoded.
    let o = ps3rt(&[
        "camera",
        "--input",
        raw,
        "--raw-format",
        "yuyv",
        "--raw-size",
        "33x19",
        "--fps",
        "0",
        "--budget",
        "16",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("raw yuyv 33x19, 4 frames") && out.contains("captured 4"),
        "{out}"
    );
    // `run` encodes one frame of it: the same features as its RGB8 copy written as PPM.
    let json = dir.path().join("yuv.json");
    let o = ps3rt(&[
        "run",
        "--input",
        raw,
        "--raw-format",
        "yuyv",
        "--raw-size",
        "33x19",
        "--frame",
        "2",
        "--budget",
        "16",
        "--color",
        "bt709-full",
        "--features",
        dir.path().join("yuv.npy").to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let frame = ps3rt::Frame::packed(w, h, PixelFormat::Yuyv, &data[2 * len..3 * len])
        .unwrap()
        .with_color(ps3rt::ColorSpec::BT709_FULL);
    let mut rgb = Vec::new();
    frame.to_rgb8(&mut rgb);
    let ppm = dir.path().join("rgb.ppm");
    image::RgbImage::from_raw(w, h, rgb)
        .unwrap()
        .save(&ppm)
        .unwrap();
    let o = ps3rt(&[
        "run",
        "--input",
        ppm.to_str().unwrap(),
        "--budget",
        "16",
        "--features",
        dir.path().join("rgb.npy").to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert_eq!(
        std::fs::read(dir.path().join("yuv.npy")).unwrap(),
        std::fs::read(dir.path().join("rgb.npy")).unwrap()
    );
    // Errors: a size that does not divide the file (4, bad input), a frame past the end (4), a
    // format name that does not exist (2), raw options for a folder (2), a missing camera (4).
    for (args, code, needle) in [
        (
            vec![
                "run",
                "--input",
                raw,
                "--raw-format",
                "yuyv",
                "--raw-size",
                "32x19",
            ],
            4,
            "not a whole number",
        ),
        (
            vec![
                "run",
                "--input",
                raw,
                "--raw-format",
                "yuyv",
                "--raw-size",
                "33x19",
                "--frame",
                "9",
            ],
            4,
            "the video has 4 frames",
        ),
        (
            vec![
                "run",
                "--input",
                raw,
                "--raw-format",
                "yuv9",
                "--raw-size",
                "33x19",
            ],
            2,
            "unknown pixel format",
        ),
        (
            vec![
                "run",
                "--input",
                dir.path().to_str().unwrap(),
                "--raw-format",
                "nv12",
                "--raw-size",
                "2x2",
            ],
            2,
            "one --input file",
        ),
        (
            vec![
                "camera",
                "--device",
                "/dev/video-ps3rt-missing",
                "--frames",
                "1",
            ],
            4,
            "no such device",
        ),
        (
            vec!["camera", "--synthetic", "8x8", "--format", "h264"],
            2,
            "--format \"h264\"",
        ),
    ] {
        let o = ps3rt(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// Wraps a source and records the buffer each frame was written into.
struct Recording<S> {
    inner: S,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(usize, usize)>>>,
}

impl<S: FrameSource> FrameSource for Recording<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn next_frame(&mut self, frame: &mut CapturedFrame) -> Result<bool, CaptureError> {
        let more = self.inner.next_frame(frame)?;
        if more {
            self.seen
                .lock()
                .unwrap()
                .push((frame.data.as_ptr() as usize, frame.data.capacity()));
        }
        Ok(more)
    }
}

#[test]
fn the_live_loop_recycles_three_buffers() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let source = Recording {
        inner: SyntheticSource::new(48, 30, SourceFormat::Raw(PixelFormat::I420))
            .unwrap()
            .limited(Some(300)),
        seen: seen.clone(),
    };
    let live = Live::start(source, LiveOptions::default());
    let mut n = 0;
    while let Some(f) = live.next(Some(Duration::from_secs(5))).unwrap() {
        n += 1;
        if n % 3 == 0 {
            std::thread::sleep(Duration::from_micros(200)); // let frames go stale now and then
        }
        drop(f);
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 300);
    let mut buffers: Vec<usize> = seen.iter().map(|s| s.0).collect();
    buffers.sort_unstable();
    buffers.dedup();
    assert!(buffers.len() <= 3, "{} distinct buffers", buffers.len());
    // Each buffer was sized once: the capacity never changed after the first frame written into it.
    for &b in &buffers {
        let caps: Vec<usize> = seen.iter().filter(|s| s.0 == b).map(|s| s.1).collect();
        assert!(
            caps.iter().all(|&c| c == caps[0]),
            "buffer {b:x} was reallocated"
        );
    }
    assert_eq!(live.stats().buffers, buffers.len() as u64);
}
