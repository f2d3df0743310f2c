//! Progress bars and spinners: drawn on stderr, and only when both stdout and stderr are terminals and
//! `-q` was not given, so pipes, files and tests see clean output.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// A spinner only appears when its task takes longer than this.
const SPINNER_DELAY: Duration = Duration::from_millis(400);

/// Decide once, at start-up, whether progress is drawn.
pub fn init(quiet: bool) {
    let tty = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    ENABLED.store(tty && !quiet, Ordering::Relaxed);
}

/// Whether progress is drawn.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A spinner with a message, shown once its task has run for [`SPINNER_DELAY`], cleared when done.
pub struct Spinner {
    bar: ProgressBar,
    done: Arc<Mutex<bool>>,
}

impl Spinner {
    /// Start a spinner for `message` (e.g. "loading package models/x").
    pub fn start(message: impl Into<String>) -> Spinner {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_message(message.into());
        let done = Arc::new(Mutex::new(false));
        if enabled() {
            let (bar, done) = (bar.clone(), Arc::clone(&done));
            std::thread::spawn(move || {
                std::thread::sleep(SPINNER_DELAY);
                // Holding the lock while showing keeps `finish` from racing with the first draw.
                if let Ok(done) = done.lock()
                    && !*done
                {
                    bar.set_draw_target(ProgressDrawTarget::stderr());
                    bar.enable_steady_tick(Duration::from_millis(100));
                }
            });
        }
        Spinner { bar, done }
    }

    /// Stop and clear the spinner.
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Ok(mut done) = self.done.lock() {
            *done = true;
        }
        self.bar.finish_and_clear();
    }
}

/// Run `f` under a spinner showing `message`.
pub fn with_spinner<T>(message: impl Into<String>, f: impl FnOnce() -> T) -> T {
    let spinner = Spinner::start(message);
    let out = f();
    spinner.finish();
    out
}

/// A progress bar over `len` items with rate and ETA (hidden when progress is off).
pub fn bar(len: u64) -> ProgressBar {
    if !enabled() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:32.cyan/blue} {pos}/{len} {per_sec:1} ETA {eta} {wide_msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Write `text` to stdout. When the reader has gone (`ps3rt ... | head`), end quietly with exit code
/// 0, as the reader asked for no more; any other write error ends with exit code 1.
pub fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        err(&format!("error: cannot write to stdout: {e}\n"));
        std::process::exit(1);
    }
}

/// Write `text` to stderr, ignoring failures (there is nowhere left to report them).
pub fn err(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
