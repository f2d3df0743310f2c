//! The boundary of every exported function: panics are caught and mapped to a status, failures leave
//! a thread-local message.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::status::{Failure, ps3rt_status};

thread_local! {
    /// Message of the last failed call on this thread ("" before any failure).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Run the body of the exported function `function`: `Ok` is `PS3RT_STATUS_OK`; a failure or a caught
/// panic sets this thread's last error to `"<function>: <message>"` and returns its status.
pub(crate) fn guard(function: &str, body: impl FnOnce() -> Result<(), Failure>) -> ps3rt_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => ps3rt_status::Ok,
        Ok(Err(failure)) => {
            set_last_error(function, &failure.message);
            failure.status
        }
        Err(payload) => {
            let message = format!("internal error (panic): {}", panic_message(&payload));
            // Dropping a panic payload can itself panic; keep that inside too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            set_last_error(function, &message);
            ps3rt_status::Internal
        }
    }
}

/// Run an infallible body (a getter, a destructor): a caught panic gives `fallback` and sets the last
/// error.
pub(crate) fn guard_value<T>(function: &str, fallback: T, body: impl FnOnce() -> T) -> T {
    let mut value = None;
    let status = guard(function, || {
        value = Some(body());
        Ok(())
    });
    match (status, value) {
        (ps3rt_status::Ok, Some(v)) => v,
        _ => fallback,
    }
}

fn panic_message(payload: &Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

fn set_last_error(function: &str, message: &str) {
    let text = format!("{function}: {message}").replace('\0', " ");
    let text = CString::new(text).unwrap_or_default();
    // During thread teardown the slot may be gone; the status still tells the caller what happened.
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = text;
        }
    });
}

/// The message of the last failed ps3rt call on the calling thread, naming the function and what was
/// wrong (e.g. `"ps3rt_encoder_encode: invalid frame: stride 10 is smaller than one rgb8 row ..."`),
/// or `""` if no call has failed on this thread. Successful calls leave it unchanged. Never NULL. The
/// string is owned by ps3rt and stays valid until the next failing ps3rt call on this thread or the
/// thread's exit; copy it to keep it.
#[unsafe(no_mangle)]
pub extern "C" fn ps3rt_last_error() -> *const c_char {
    guard_value("ps3rt_last_error", c"".as_ptr(), || {
        LAST_ERROR
            .try_with(|slot| match slot.try_borrow() {
                // The CString's heap buffer stays put until the slot is next replaced.
                Ok(s) => s.as_ptr(),
                Err(_) => c"".as_ptr(),
            })
            .unwrap_or(c"".as_ptr())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> String {
        // SAFETY: ps3rt_last_error returns a NUL-terminated string valid until the next failure here.
        unsafe { std::ffi::CStr::from_ptr(ps3rt_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn panics_become_internal_errors_with_their_message() {
        let status = guard("ps3rt_test", || panic!("boom {}", 7));
        assert_eq!(status, ps3rt_status::Internal);
        assert_eq!(last(), "ps3rt_test: internal error (panic): boom 7");
        assert_eq!(guard_value("ps3rt_test", -1, || panic!("static")), -1);
        assert_eq!(last(), "ps3rt_test: internal error (panic): static");
    }

    #[test]
    fn failures_set_the_message_and_successes_keep_it() {
        let status = guard("ps3rt_test", || Err(Failure::invalid("x is NULL\0!")));
        assert_eq!(status, ps3rt_status::InvalidArgument);
        assert_eq!(last(), "ps3rt_test: x is NULL !");
        assert_eq!(guard("ps3rt_test", || Ok(())), ps3rt_status::Ok);
        assert_eq!(last(), "ps3rt_test: x is NULL !");
        // The message is per thread.
        let other = std::thread::spawn(last).join().unwrap();
        assert_eq!(other, "");
    }
}
