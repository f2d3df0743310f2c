//! Forwarding the library's log records (the `log` crate) to a C callback.

use std::cell::Cell;
use std::ffi::{CString, c_char, c_void};
use std::sync::{OnceLock, RwLock};

use log::{LevelFilter, Log, Metadata, Record};

use super::call::guard;
use super::status::{Failure, ps3rt_status};

/// Severity of a log message (and the most verbose level a callback receives).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ps3rt_log_level {
    /// No messages (as `max_level`).
    Off = 0,
    /// Failures.
    Error = 1,
    /// Suspicious conditions.
    Warn = 2,
    /// What the library chose (e.g. the backend).
    Info = 3,
    /// Details for debugging.
    Debug = 4,
    /// Very detailed tracing.
    Trace = 5,
}

/// Receives one log message: `level` (a `ps3rt_log_level`), `message` (NUL-terminated UTF-8, valid
/// only during the call) and the `user_data` given to `ps3rt_set_log_callback`. It may be called from
/// any thread, also concurrently, and must not unwind (throw) or call `ps3rt_set_log_callback`.
pub type ps3rt_log_callback = Option<
    unsafe extern "C" fn(level: ps3rt_log_level, message: *const c_char, user_data: *mut c_void),
>;

type Callback = unsafe extern "C" fn(ps3rt_log_level, *const c_char, *mut c_void);

struct Sink {
    callback: Callback,
    user_data: *mut c_void,
    max: LevelFilter,
}

// SAFETY: the caller of ps3rt_set_log_callback promises that the callback may be called from any
// thread with its user_data; ps3rt never dereferences user_data itself.
unsafe impl Send for Sink {}
// SAFETY: as above; the sink is only read (to make the call) under the read lock.
unsafe impl Sync for Sink {}

/// The current callback. Calls hold the read lock, so once `ps3rt_set_log_callback` returns, the old
/// callback is not running and will not be called again.
static SINK: RwLock<Option<Sink>> = RwLock::new(None);

thread_local! {
    /// Set while this thread is inside the callback: records logged meanwhile are dropped (no
    /// recursion, and no nested read lock that a waiting writer could deadlock).
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

struct CallbackLogger;

static LOGGER: CallbackLogger = CallbackLogger;

/// Whether our logger is the process's `log` logger (installed on the first callback).
static INSTALLED: OnceLock<bool> = OnceLock::new();

fn level(l: log::Level) -> ps3rt_log_level {
    match l {
        log::Level::Error => ps3rt_log_level::Error,
        log::Level::Warn => ps3rt_log_level::Warn,
        log::Level::Info => ps3rt_log_level::Info,
        log::Level::Debug => ps3rt_log_level::Debug,
        log::Level::Trace => ps3rt_log_level::Trace,
    }
}

impl Log for CallbackLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if IN_CALLBACK.try_with(Cell::get).unwrap_or(true) {
            return;
        }
        let sink = SINK.read().unwrap_or_else(|e| e.into_inner());
        let Some(sink) = sink.as_ref() else { return };
        if record.level() > sink.max {
            return;
        }
        let text = format!("{}", record.args()).replace('\0', " ");
        let Ok(text) = CString::new(text) else { return };
        IN_CALLBACK.with(|c| c.set(true));
        // SAFETY: the callback and user_data were registered together by ps3rt_set_log_callback,
        // whose caller promises the callback accepts them from any thread; `text` outlives the call.
        unsafe { (sink.callback)(level(record.level()), text.as_ptr(), sink.user_data) };
        IN_CALLBACK.with(|c| c.set(false));
    }

    fn flush(&self) {}
}

fn level_filter(max_level: i32) -> Result<LevelFilter, Failure> {
    Ok(match max_level {
        0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        5 => LevelFilter::Trace,
        v => {
            return Err(Failure::invalid(format!(
                "max_level {v} is not a ps3rt_log_level (0 off ..= 5 trace)"
            )));
        }
    })
}

/// Send the library's log messages up to `max_level` (a `ps3rt_log_level`) to `callback` with
/// `user_data`, process-wide, replacing any earlier callback; `callback` NULL (or `max_level`
/// `PS3RT_LOG_LEVEL_OFF`) stops logging. Safe to call from any thread at any time, except from inside
/// the callback (refused with `PS3RT_STATUS_BUSY`); when it returns, the previous callback is no longer
/// running and will not be called again, so its user_data may be freed. By default nothing is logged.
/// Fails with `PS3RT_STATUS_UNSUPPORTED` if the host process (a Rust program linking ps3rt) installed
/// its own `log` logger.
///
/// # Safety
/// `callback`, if not NULL, must be callable from any thread with `user_data` until it is replaced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_set_log_callback(
    callback: ps3rt_log_callback,
    user_data: *mut c_void,
    max_level: i32,
) -> ps3rt_status {
    guard("ps3rt_set_log_callback", || {
        let max = level_filter(max_level)?;
        if IN_CALLBACK.try_with(Cell::get).unwrap_or(false) {
            return Err(Failure::new(
                ps3rt_status::Busy,
                "called from inside the log callback",
            ));
        }
        let sink = match callback {
            Some(cb) if max != LevelFilter::Off => {
                if !*INSTALLED.get_or_init(|| log::set_logger(&LOGGER).is_ok()) {
                    return Err(Failure::new(
                        ps3rt_status::Unsupported,
                        "another `log` logger is installed in this process; its records go there",
                    ));
                }
                Some(Sink {
                    callback: cb,
                    user_data,
                    max,
                })
            }
            _ => None,
        };
        let max = if sink.is_some() {
            max
        } else {
            LevelFilter::Off
        };
        let mut slot = SINK.write().unwrap_or_else(|e| e.into_inner());
        *slot = sink;
        // Only our logger is installed (checked above) or none is: the global filter is ours to set.
        if INSTALLED.get().copied().unwrap_or(false) {
            log::set_max_level(max);
        }
        Ok(())
    })
}
