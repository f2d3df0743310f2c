//! The Rust-side heap: mimalloc as the global allocator (feature `mimalloc`, on by default) and the
//! one policy ps3rt sets on it.
//!
//! Why mimalloc: tract allocates every graph run's intermediates afresh, up to hundreds of MB for the
//! high-res stage, and glibc's malloc serves blocks that large with mmap/munmap, page-faulting them in
//! on every frame (the high-res stage of the tiny package ran 3x slower, measured with `ps3rt bench`).
//! Only Rust-side allocations use it; a C or C++ host's own malloc is untouched.
//!
//! Why a policy: mimalloc returns ("purges") freed memory to the OS after a delay (1 s by default in
//! mimalloc 3). A frame's intermediates are freed at the end of the frame and allocated again a few
//! ms later, so whenever a purge falls between two frames the next frame page-faults its whole working
//! set back in (28,273 minor faults over 640 frames of the tiny package at K = 256, against 1,057
//! with purging off, all at start-up), and the resident set sampled at any moment depends on where
//! the last purge fell: it wandered between -5.8 and +3.3 MB around its baseline in soaks of 4,000 to
//! 10,000 frames with no live memory growing (docs/reliability.md, "Soak"). With purging
//! off, the memory a frame frees stays mapped and is reused by the next frame: a one-encoder soak of
//! 10,000 frames takes no page faults after the warm-up and ends where it started (+0.000 MB). The cost is that memory
//! freed by ps3rt (a dropped model's weights included) stays with ps3rt's heap for reuse, at the
//! process's high-water mark, instead of going back to the OS; hosts that unload models to give the
//! memory to something else set `MIMALLOC_PURGE_DELAY` (milliseconds; mimalloc's default is 1000),
//! which ps3rt then leaves alone, or build without the `mimalloc` feature.
//!
//! One exception: while a model loads ([`returning_freed_memory`], held by `Model::from_package`),
//! freed memory is marked for purging, and the heap gives it back when the load ends. A load's
//! transient copies of the weights are the largest thing ps3rt ever frees (SO400M: the resident set
//! after loading and two frames went from 8,275 to 6,122 MB, docs/performance.md finding 26).

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL_ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (include/mimalloc.h): the 16th enumerator in
/// both mimalloc 2.x and 3.x (`mi_version()` 2xxyy and 3xxyy). `libmimalloc-sys` does not name it,
/// so it is spelled out here;
/// [`configure_heap`] checks the major version before using it.
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The environment variables mimalloc reads for the purge delay (the second is its legacy name).
#[cfg(feature = "mimalloc")]
const PURGE_DELAY_VARIABLES: [&str; 2] = ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"];

/// What [`configure_heap`] left the allocator with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapPolicy {
    /// ps3rt's heap keeps freed memory for reuse and never purges it (the default).
    KeepFreedMemory,
    /// The user set the purge delay through the environment; this many ms (-1: never purge).
    UserPurgeDelay(i64),
    /// Not mimalloc (the `mimalloc` feature is off), or a mimalloc version whose options are not
    /// known: the allocator's own behaviour.
    AllocatorDefault,
}

impl std::fmt::Display for HeapPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeapPolicy::KeepFreedMemory => write!(f, "mimalloc, freed memory kept for reuse"),
            HeapPolicy::UserPurgeDelay(-1) => {
                write!(f, "mimalloc, never purged (MIMALLOC_PURGE_DELAY)")
            }
            HeapPolicy::UserPurgeDelay(ms) => {
                write!(
                    f,
                    "mimalloc, freed memory purged after {ms} ms (MIMALLOC_PURGE_DELAY)"
                )
            }
            HeapPolicy::AllocatorDefault if cfg!(feature = "mimalloc") => {
                write!(f, "mimalloc, its own defaults")
            }
            HeapPolicy::AllocatorDefault => write!(f, "the system allocator"),
        }
    }
}

/// Set ps3rt's heap policy once per process (later calls return the first call's result): turn off
/// mimalloc's purging of freed memory unless the user chose a purge delay in the environment.
/// Called by every way of loading a model, before the first frame.
pub fn configure_heap() -> HeapPolicy {
    static POLICY: std::sync::OnceLock<HeapPolicy> = std::sync::OnceLock::new();
    *POLICY.get_or_init(apply_policy)
}

#[cfg(feature = "mimalloc")]
fn apply_policy() -> HeapPolicy {
    // SAFETY: mi_version takes no arguments and only returns a constant.
    let version = unsafe { libmimalloc_sys::mi_version() };
    if !(20_000..40_000).contains(&version) {
        log::debug!("mimalloc version {version}: its purge option is not known, left as it is");
        return HeapPolicy::AllocatorDefault;
    }
    if PURGE_DELAY_VARIABLES
        .iter()
        .any(|name| std::env::var_os(name).is_some())
    {
        // SAFETY: the option index is valid for mimalloc 2.x and 3.x (checked above); reading an
        // option is thread-safe in mimalloc (options are plain longs initialised at process start).
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        log::debug!("mimalloc purge delay {delay} ms, set in the environment");
        return HeapPolicy::UserPurgeDelay(delay as i64);
    }
    // SAFETY: as above; mi_option_set stores a long that mimalloc reads on each free, so setting it
    // while other threads allocate only decides which frees schedule a purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    HeapPolicy::KeepFreedMemory
}

#[cfg(not(feature = "mimalloc"))]
fn apply_policy() -> HeapPolicy {
    HeapPolicy::AllocatorDefault
}

/// The purge delay while a model loads: long enough that nothing is purged (and then faulted back
/// in when the load allocates again) in the middle of a load, while every range freed is marked
/// for the forced purge at its end (with purging off, mimalloc marks nothing, and a forced collect
/// finds nothing to give back).
#[cfg(feature = "mimalloc")]
const LOAD_PURGE_DELAY_MS: std::ffi::c_long = 60_000;

/// Loads in progress that asked for freed memory to go back to the OS ([`returning_freed_memory`]).
#[cfg(feature = "mimalloc")]
static LOADS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

/// While alive, memory ps3rt frees is marked for return to the OS instead of kept for reuse; when
/// the last one drops, the heap gives back every marked page still unused and goes back to keeping
/// freed memory. See [`returning_freed_memory`].
#[must_use = "freed memory is returned only while the guard lives"]
pub struct ReturningFreedMemory {
    active: bool,
}

/// For the span of a model load. Loading a package makes transient copies of its weights (the
/// decoded ONNX graph, the tensors before tract packs them: several GB at the SO400M size) that are
/// freed before the first frame. Under the policy of [`configure_heap`] (freed memory kept, never
/// purged) they would stay resident for the life of the process; with this guard held they are
/// marked as they are freed and returned when the load ends. A frame encoded on another thread
/// meanwhile may have its freed intermediates returned too and page-fault them back in once, which
/// costs time, not correctness. Does nothing when the policy is
/// not ps3rt's own (the user's `MIMALLOC_PURGE_DELAY`, or another allocator).
pub fn returning_freed_memory() -> ReturningFreedMemory {
    #[cfg(feature = "mimalloc")]
    if configure_heap() == HeapPolicy::KeepFreedMemory {
        let mut loads = LOADS.lock().unwrap_or_else(|e| e.into_inner());
        if *loads == 0 {
            // SAFETY: the option index was checked against the linked version by configure_heap
            // (KeepFreedMemory is only returned after that check).
            unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, LOAD_PURGE_DELAY_MS) };
        }
        *loads += 1;
        return ReturningFreedMemory { active: true };
    }
    ReturningFreedMemory { active: false }
}

impl Drop for ReturningFreedMemory {
    fn drop(&mut self) {
        #[cfg(feature = "mimalloc")]
        if self.active {
            let mut loads = LOADS.lock().unwrap_or_else(|e| e.into_inner());
            *loads = loads.saturating_sub(1);
            if *loads == 0 {
                // SAFETY: mi_collect(true) frees the calling thread's empty pages and purges the
                // ranges marked while the load's delay was set (only free ones: a range allocated
                // again meanwhile is skipped); the option index is valid (see above).
                unsafe {
                    libmimalloc_sys::mi_collect(true);
                    libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
                }
            }
        }
        #[cfg(not(feature = "mimalloc"))]
        let _ = self.active;
    }
}

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    use super::*;

    /// Both tests read the process-wide purge delay and one changes it for a while: they take turns.
    static DELAY_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn purging_is_off_unless_the_environment_sets_a_delay() {
        let _turn = DELAY_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let user_set = PURGE_DELAY_VARIABLES
            .iter()
            .any(|name| std::env::var_os(name).is_some());
        let policy = configure_heap();
        // SAFETY: the index was checked against the linked version by configure_heap.
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        if user_set {
            assert_eq!(policy, HeapPolicy::UserPurgeDelay(delay as i64));
        } else {
            assert_eq!(policy, HeapPolicy::KeepFreedMemory);
            assert_eq!(delay, -1);
        }
        assert_eq!(configure_heap(), policy, "the policy is set once");
    }

    /// Reads the process-wide purge delay, so it assumes no other test in this binary loads a model
    /// meanwhile (none of the library's unit tests does; the other delay test takes turns with it).
    #[test]
    fn loads_return_freed_memory_and_the_last_one_restores_the_policy() {
        let _turn = DELAY_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let policy = configure_heap();
        // SAFETY (all reads below): the index was checked against the linked version.
        let delay = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        let before = delay();
        {
            let outer = returning_freed_memory();
            let inner = returning_freed_memory();
            if policy == HeapPolicy::KeepFreedMemory {
                assert!(outer.active && inner.active);
                assert_eq!(delay(), LOAD_PURGE_DELAY_MS);
                drop(inner);
                assert_eq!(
                    delay(),
                    LOAD_PURGE_DELAY_MS,
                    "another load is still running"
                );
            } else {
                // The user's (or the allocator's) policy is left alone.
                assert!(!outer.active && !inner.active);
                assert_eq!(delay(), before);
            }
        }
        assert_eq!(delay(), before);
    }
}
