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
    // 200 fps camera, 30 ms "encoder": most frames are stale and dropped; every frame taken is
    // fresh (captured at most one frame interval plus scheduling before it was taken).
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
        std::thread::sleep(Duration::from_millis(30));
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
        *worst < Duration::from_millis(25),
        "a stale frame was delivered: {ages:?}"
    );
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
