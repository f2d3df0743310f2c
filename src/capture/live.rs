//! The live loop: capture on its own thread, a latest-frame-wins slot, buffers recycled.
//!
//! The capture thread reads frame after frame from its [`FrameSource`] into buffers from a small
//! pool and puts each into a one-frame slot. A frame still in the slot when the next one arrives is
//! stale: it is dropped (counted) and its buffer reused. The encoder takes whatever is in the slot
//! when it is ready for the next frame, so it always encodes the newest frame and the time from
//! capture to features is one capture plus one encode, whatever the camera's rate. At most three
//! buffers exist (one being filled, one in the slot, one being encoded): no allocation in steady
//! state.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{CaptureError, CaptureErrorKind, CapturedFrame, FrameSource};

/// How the live loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveOptions {
    /// Reopen the source after a recoverable error (a camera unplugged or stalled).
    pub reconnect: bool,
    /// Time between reconnect attempts.
    pub reconnect_interval: Duration,
    /// Give up reconnecting after this long (`None`: keep trying until stopped).
    pub reconnect_timeout: Option<Duration>,
    /// Capture raw frames into page-locked memory of this CUDA device (set it to the device the
    /// encoder preprocesses on, [`crate::Preprocess::Gpu`]): each frame then reaches the GPU with
    /// one DMA, or none on a Jetson ([`CapturedFrame::pin_to_gpu`]). Where that memory cannot be
    /// had, or in builds without the `cuda` feature, frames stay in ordinary memory (a warning is
    /// logged). Default `None`.
    pub pinned_device: Option<i32>,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            reconnect: true,
            reconnect_interval: Duration::from_millis(500),
            reconnect_timeout: None,
            pinned_device: None,
        }
    }
}

/// Counters of a live loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Frames the source delivered.
    pub captured: u64,
    /// Frames handed to the consumer.
    pub delivered: u64,
    /// Frames replaced by a newer one before the consumer took them.
    pub dropped: u64,
    /// Successful reconnects.
    pub reconnects: u64,
    /// Buffers allocated (at most 3).
    pub buffers: u64,
}

#[derive(Default)]
struct State {
    latest: Option<CapturedFrame>,
    pool: Vec<CapturedFrame>,
    stats: LiveStats,
    /// The capture thread has ended (end of the source, stop, or an error).
    finished: bool,
    error: Option<CaptureError>,
    stop: bool,
    /// The capture thread has returned (its source dropped), normally or by a panic.
    exited: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain counters and buffers: still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Asks a live loop to stop from anywhere (e.g. a Ctrl-C handler); cheap to clone.
#[derive(Clone)]
pub struct LiveStopper(Arc<Shared>);

impl LiveStopper {
    /// Stop capturing; the consumer's [`Live::next`] then returns `Ok(None)`.
    pub fn stop(&self) {
        self.0.lock().stop = true;
        self.0.changed.notify_all();
    }
}

impl std::fmt::Debug for LiveStopper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveStopper")
    }
}

/// How long [`Live::stop`] (and dropping a [`Live`]) waits for the capture thread: a source blocked
/// in a read longer than this (one without a timeout, or with a longer one) is left to finish on its
/// own, so stopping never hangs.
pub const STOP_WAIT: Duration = Duration::from_secs(10);

/// Marks the capture thread as gone when it returns or unwinds.
struct ExitGuard(Arc<Shared>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.exited = true;
        st.finished = true;
        drop(st);
        self.0.changed.notify_all();
    }
}

/// A running live loop (see the module docs). Dropping it stops the capture thread and waits for it
/// (at most [`STOP_WAIT`]).
pub struct Live {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    describe: String,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("source", &self.describe)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A frame taken from the live loop; its buffer goes back to the loop's pool when dropped.
pub struct LiveFrame {
    frame: Option<CapturedFrame>,
    shared: Arc<Shared>,
}

impl std::ops::Deref for LiveFrame {
    type Target = CapturedFrame;
    fn deref(&self) -> &CapturedFrame {
        // Always Some until drop.
        self.frame
            .as_ref()
            .unwrap_or_else(|| unreachable!("frame taken before drop"))
    }
}

impl Drop for LiveFrame {
    fn drop(&mut self) {
        if let Some(f) = self.frame.take() {
            self.shared.lock().pool.push(f);
        }
    }
}

impl std::fmt::Debug for LiveFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveFrame")
            .field("sequence", &self.sequence)
            .field("format", &self.format)
            .finish()
    }
}

impl Live {
    /// Start capturing from `source` on a new thread.
    pub fn start<S: FrameSource + 'static>(source: S, options: LiveOptions) -> Live {
        let shared = Arc::new(Shared::default());
        let describe = source.describe();
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("ps3rt-capture".into())
            .spawn(move || {
                let guard = ExitGuard(Arc::clone(&s));
                capture_loop(source, options, &s);
                drop(guard);
            });
        match thread {
            Ok(t) => Live {
                shared,
                thread: Some(t),
                describe,
            },
            Err(e) => {
                {
                    let mut st = shared.lock();
                    st.finished = true;
                    st.error = Some(CaptureError::from_io(
                        describe.clone(),
                        "cannot start the capture thread",
                        &e,
                    ));
                }
                Live {
                    shared,
                    thread: None,
                    describe,
                }
            }
        }
    }

    /// What the source is.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// The newest frame, waiting for one up to `timeout` (`None`: as long as it takes).
    ///
    /// `Ok(None)` once the source has ended (after its last frame) or the loop was stopped; an error
    /// of the source (after reconnecting failed, where enabled) is returned once, then `Ok(None)`;
    /// a timeout is an error of kind [`CaptureErrorKind::Timeout`].
    pub fn next(&self, timeout: Option<Duration>) -> Result<Option<LiveFrame>, CaptureError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.shared.lock();
        loop {
            if st.stop {
                return Ok(None);
            }
            if let Some(frame) = st.latest.take() {
                st.stats.delivered += 1;
                return Ok(Some(LiveFrame {
                    frame: Some(frame),
                    shared: Arc::clone(&self.shared),
                }));
            }
            if let Some(e) = st.error.take() {
                return Err(e);
            }
            if st.finished {
                return Ok(None);
            }
            st = match deadline {
                None => self
                    .shared
                    .changed
                    .wait(st)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(CaptureError::new(
                            CaptureErrorKind::Timeout,
                            self.describe.clone(),
                            format!(
                                "no frame within {:.1} s",
                                timeout.unwrap_or_default().as_secs_f64()
                            ),
                        ));
                    }
                    self.shared
                        .changed
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> LiveStats {
        self.shared.lock().stats
    }

    /// A handle that stops this loop from another thread.
    pub fn stopper(&self) -> LiveStopper {
        LiveStopper(Arc::clone(&self.shared))
    }

    /// Stop capturing and wait for the capture thread to end, at most [`STOP_WAIT`] (a V4L2 read
    /// returns within its timeout).
    pub fn stop(&mut self) {
        self.stop_within(STOP_WAIT);
    }

    /// Stop capturing and wait up to `limit` for the capture thread to end. Returns whether it ended;
    /// if not (its source is blocked in a read that ignores the stop), the thread is detached: it
    /// ends, dropping its source, when that read returns. Never blocks longer than `limit`.
    pub fn stop_within(&mut self, limit: Duration) -> bool {
        self.stopper().stop();
        let Some(t) = self.thread.take() else {
            return true;
        };
        let st = self.shared.lock();
        let (st, _) = self
            .shared
            .changed
            .wait_timeout_while(st, limit, |s| !s.exited)
            .unwrap_or_else(|p| p.into_inner());
        let exited = st.exited;
        drop(st);
        if !exited {
            log::error!(
                "{}: the capture thread did not stop within {:.1} s (a read that ignores its timeout?); leaving it to end on its own",
                self.describe,
                limit.as_secs_f64()
            );
            return false;
        }
        if t.join().is_err() {
            log::error!("{}: the capture thread panicked", self.describe);
        }
        true
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Run a call of the source named `name`, turning a panic inside it into an error (a source is the
/// caller's code: its panic must end the loop with a message, not leave the consumer waiting).
fn catch_panic<T>(
    name: &str,
    call: impl FnOnce() -> Result<T, CaptureError>,
) -> Result<T, CaptureError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        Err(CaptureError::new(
            CaptureErrorKind::Io,
            name,
            format!("the source panicked: {msg}"),
        ))
    })
}

/// A new capture buffer, in page-locked memory of `pinned_device` when asked.
fn new_buffer(pinned_device: Option<i32>) -> CapturedFrame {
    #[allow(unused_mut)]
    let mut frame = CapturedFrame::new();
    match pinned_device {
        #[cfg(feature = "cuda")]
        Some(device) => frame.pin_to_gpu(device),
        #[cfg(not(feature = "cuda"))]
        Some(device) => log::warn!(
            "frames stay in pageable memory: this build has no CUDA support for device {device}"
        ),
        None => {}
    }
    frame
}

fn capture_loop<S: FrameSource>(mut source: S, options: LiveOptions, shared: &Shared) {
    let name = source.describe();
    let end = |error: Option<CaptureError>| {
        let mut st = shared.lock();
        st.finished = true;
        if error.is_some() {
            st.error = error;
        }
        drop(st);
        shared.changed.notify_all();
    };
    loop {
        let mut buf = {
            let mut st = shared.lock();
            if st.stop {
                break;
            }
            match st.pool.pop() {
                Some(b) => b,
                None => {
                    st.stats.buffers += 1;
                    new_buffer(options.pinned_device)
                }
            }
        };
        match catch_panic(&name, || source.next_frame(&mut buf)) {
            Ok(true) => {
                let mut st = shared.lock();
                st.stats.captured += 1;
                if let Some(stale) = st.latest.replace(buf) {
                    st.stats.dropped += 1;
                    st.pool.push(stale);
                }
                drop(st);
                shared.changed.notify_all();
            }
            Ok(false) => {
                shared.lock().pool.push(buf);
                break;
            }
            Err(e) => {
                shared.lock().pool.push(buf);
                if options.reconnect && e.is_recoverable() {
                    log::warn!("{e}; reconnecting");
                    match reconnect(&mut source, &options, shared, &e) {
                        Ok(true) => continue,
                        Ok(false) => break,
                        Err(e) => return end(Some(e)),
                    }
                }
                return end(Some(e));
            }
        }
    }
    end(None);
}

/// Try to reopen `source` until it works (`Ok(true)`), the loop is stopped (`Ok(false)`) or the
/// timeout passes or a non-recoverable error occurs (`Err`).
fn reconnect<S: FrameSource>(
    source: &mut S,
    options: &LiveOptions,
    shared: &Shared,
    cause: &CaptureError,
) -> Result<bool, CaptureError> {
    let name = source.describe();
    let start = Instant::now();
    let mut attempts = 0u64;
    loop {
        {
            let st = shared.lock();
            if st.stop {
                return Ok(false);
            }
            // Sleep between attempts, waking early when stopped.
            if attempts > 0 {
                let (st, _) = shared
                    .changed
                    .wait_timeout_while(st, options.reconnect_interval, |s| !s.stop)
                    .unwrap_or_else(|p| p.into_inner());
                if st.stop {
                    return Ok(false);
                }
            }
        }
        attempts += 1;
        match catch_panic(&name, || source.reconnect()) {
            Ok(()) => {
                log::warn!(
                    "{}: reconnected after {:.1} s ({attempts} attempt{})",
                    source.describe(),
                    start.elapsed().as_secs_f64(),
                    if attempts == 1 { "" } else { "s" }
                );
                shared.lock().stats.reconnects += 1;
                return Ok(true);
            }
            Err(e)
                if e.is_recoverable()
                    || e.kind == CaptureErrorKind::NotFound
                    || e.kind == CaptureErrorKind::Busy =>
            {
                log::debug!("reconnect attempt {attempts}: {e}");
            }
            Err(e) => return Err(e),
        }
        if let Some(t) = options.reconnect_timeout
            && start.elapsed() >= t
        {
            return Err(CaptureError::new(
                cause.kind,
                cause.source_name.clone(),
                format!(
                    "{}; not back after {:.1} s of reconnect attempts",
                    cause.message,
                    t.as_secs_f64()
                ),
            ));
        }
    }
}
