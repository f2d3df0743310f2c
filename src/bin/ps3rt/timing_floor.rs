//! The timing floor of `ps3rt bench`: the tail latency the machine itself adds to work split over
//! several threads, measured with a fixed job that has nothing of ps3rt in it.
//!
//! Why: on a shared virtual machine one of two virtual cores can be away for a few milliseconds (the
//! host runs something else), and waking a thread that sleeps on an idle virtual core can take as
//! long; any stage split over both threads then waits for it. A frame's p99/p50 on two threads can
//! be the machine's, not the pipeline's; this measures the machine's share so the bench can print
//! it beside the target. Each round, every thread spins on the same fixed arithmetic (calibrated to
//! [`STEP_MS`] on one thread) and the round ends when the last one is done, as a parallel stage
//! does. Between rounds the threads either spin ([`Between::Spin`]: only the cores' availability
//! is in the numbers) or sleep on a [`std::sync::Barrier`] ([`Between::Sleep`]: as a thread pool's
//! idle workers do, so each round also pays the wake-ups).

use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::bench::percentile;

/// What the threads do between rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Between {
    /// Spin on an atomic counter: always running.
    Spin,
    /// Wait on a barrier (the OS puts them to sleep and wakes them).
    Sleep,
}

/// Length of one thread's job in a round, in milliseconds (about a pipeline stage's length on the
/// tiny package).
pub const STEP_MS: f64 = 2.5;

/// Per-round wall times of the fixed job, summarized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Threads the job ran on.
    pub threads: usize,
    /// What the threads did between rounds.
    pub between: Between,
    /// Rounds timed.
    pub rounds: usize,
    /// Median round, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile round (nearest rank), milliseconds.
    pub p99_ms: f64,
}

impl Spread {
    /// `p99 / p50`: the tail ratio the bench's target bounds.
    pub fn tail(&self) -> f64 {
        self.p99_ms / self.p50_ms
    }
}

/// Spin through `iters` steps of a dependent floating-point chain (one core busy, no memory
/// traffic), returning the chain's value so the work cannot be optimized away.
fn spin(iters: u64) -> f64 {
    let mut a = 1.0f64;
    for _ in 0..iters {
        a = std::hint::black_box(a * 1.000_000_1 + 1e-9);
    }
    a
}

/// Iterations of [`spin`] that take about `ms` milliseconds on this core: the fastest of three
/// timed runs of a fixed count, scaled.
fn calibrate(ms: f64) -> u64 {
    const PROBE: u64 = 1 << 20;
    let fastest = (0..3)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(spin(PROBE));
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
        .max(1e-6);
    ((ms / fastest) * PROBE as f64).max(1.0) as u64
}

/// Wall time of each of `rounds` rounds in which each of `threads` threads spins for `iters`
/// iterations; a round ends when every thread is done. The calling thread is one of them.
fn rounds_ms(threads: usize, rounds: usize, iters: u64, between: Between) -> Vec<f64> {
    debug_assert!(threads >= 1);
    match between {
        Between::Spin => spinning_rounds_ms(threads, rounds, iters),
        Between::Sleep => sleeping_rounds_ms(threads, rounds, iters),
    }
}

/// [`rounds_ms`] with the threads waiting on two barriers: one that starts a round, one that ends
/// it (the calling thread times from the first to the second).
fn sleeping_rounds_ms(threads: usize, rounds: usize, iters: u64) -> Vec<f64> {
    let (start, end) = (Barrier::new(threads), Barrier::new(threads));
    let mut times = Vec::with_capacity(rounds);
    std::thread::scope(|s| {
        for _ in 1..threads {
            let (start, end) = (&start, &end);
            s.spawn(move || {
                for _ in 0..rounds {
                    start.wait();
                    std::hint::black_box(spin(iters));
                    end.wait();
                }
            });
        }
        for _ in 0..rounds {
            let t = Instant::now();
            start.wait();
            std::hint::black_box(spin(iters));
            end.wait();
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    });
    times
}

/// [`rounds_ms`] with the threads spinning on atomic counters between rounds.
fn spinning_rounds_ms(threads: usize, rounds: usize, iters: u64) -> Vec<f64> {
    spin_synced_rounds_ms(threads, rounds, |_| {
        std::hint::black_box(spin(iters));
    })
}

/// Wall time of each of `rounds` rounds in which `work(i)` runs on thread `i` of `threads` (the
/// calling thread is thread 0); a round ends when every thread is done. The helper threads are
/// started once and spin on atomic counters between rounds, so no thread's wake-up is in the
/// times (on a virtual machine waking a sleeping thread can take longer than the work). Shared by
/// the timing floor and the bench's memory floor.
pub fn spin_synced_rounds_ms(
    threads: usize,
    rounds: usize,
    work: impl Fn(usize) + Sync,
) -> Vec<f64> {
    let helpers = threads.max(1) - 1;
    let (started, finished) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut times = Vec::with_capacity(rounds);
    std::thread::scope(|s| {
        for i in 1..=helpers {
            let (started, finished, work) = (&started, &finished, &work);
            s.spawn(move || {
                for round in 1..=rounds {
                    while started.load(Ordering::Acquire) < round {
                        std::hint::spin_loop();
                    }
                    work(i);
                    finished.fetch_add(1, Ordering::Release);
                }
            });
        }
        for round in 1..=rounds {
            let t = Instant::now();
            started.store(round, Ordering::Release);
            work(0);
            while finished.load(Ordering::Acquire) < round * helpers {
                std::hint::spin_loop();
            }
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    });
    times
}

/// `rounds` rounds of a [`STEP_MS`] job on each of `threads` threads (after two untimed rounds),
/// summarized; None for no rounds.
pub fn measure(threads: usize, rounds: usize, between: Between) -> Option<Spread> {
    if rounds == 0 {
        return None;
    }
    let threads = threads.clamp(1, 256);
    let iters = calibrate(STEP_MS);
    let mut times = rounds_ms(threads, rounds + 2, iters, between);
    times.drain(..2);
    times.sort_by(f64::total_cmp);
    Some(Spread {
        threads,
        between,
        rounds,
        p50_ms: percentile(&times, 50.0),
        p99_ms: percentile(&times, 99.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_lasts_about_the_step_and_no_round_is_shorter_than_the_work() {
        for between in [Between::Spin, Between::Sleep] {
            let s = measure(2, 20, between).expect("rounds");
            assert_eq!((s.threads, s.rounds, s.between), (2, 20, between));
            // Calibrated on one core: a round is at least most of the step (a faster core later,
            // or a turbo clock, shortens it a little).
            assert!(s.p50_ms > 0.3 * STEP_MS, "{s:?}");
            assert!(s.p99_ms >= s.p50_ms && s.tail() >= 1.0, "{s:?}");
        }
        assert!(measure(1, 0, Between::Spin).is_none());
        // The thread count is clamped to at least one.
        assert_eq!(measure(0, 3, Between::Sleep).expect("rounds").threads, 1);
    }

    #[test]
    fn more_iterations_take_longer_and_every_round_is_timed() {
        for between in [Between::Spin, Between::Sleep] {
            for threads in [1, 3] {
                let short = rounds_ms(threads, 3, 1_000, between);
                let long = rounds_ms(threads, 3, 4_000_000, between);
                assert_eq!((short.len(), long.len()), (3, 3));
                let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
                assert!(min(&long) > min(&short), "{short:?} {long:?}");
            }
        }
    }
}
