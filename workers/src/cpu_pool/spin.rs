//! When an awaited task spins (re-polls itself) instead of letting its runtime park.
//!
//! Spinning wins when the result comes within the budget: the runtime is never parked, so
//! the pool thread's wake-up (an `eventfd` write and an inter-processor interrupt) is off the
//! critical path. It loses in two cases, which this policy detects and avoids:
//!
//! - **Long tasks**: the pool threads keep a moving average of the tasks' run time; while it
//!   is over the budget, nobody spins.
//! - **No free core**: when every other core is busy, the scheduler may queue the woken pool
//!   thread on the spinning caller's own core, where it waits for the spin to end — spinning
//!   then only adds the budget to the round trip. A spin that ran out without a result is a
//!   failure; after one, the next `n` tasks do not spin, with `n` doubling at each failure
//!   (up to [`MAX_SKIP`]) and the count reset by the first success. Under lasting contention
//!   one task in [`MAX_SKIP`] probes; once a core is free again, spinning resumes at the next
//!   probe.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The longest run of tasks that do not spin after failures.
pub(super) const MAX_SKIP: u32 = 1024;

#[derive(Debug)]
pub(super) struct SpinPolicy {
    /// [`CpuPoolConfig::spin`](super::CpuPoolConfig::spin); zero: never spin.
    budget: Duration,
    /// Moving average of the tasks' run time in ns (weight 1/8).
    task_time_ns: AtomicU64,
    /// Tasks still to submit without spinning.
    skip: AtomicU32,
    /// The skip after the next failure.
    backoff: AtomicU32,
}

impl SpinPolicy {
    pub fn new(budget: Duration) -> SpinPolicy {
        SpinPolicy { budget, task_time_ns: AtomicU64::new(0), skip: AtomicU32::new(0), backoff: AtomicU32::new(1) }
    }

    /// Whether spinning is configured at all (the threads then time their tasks).
    pub fn enabled(&self) -> bool {
        !self.budget.is_zero()
    }

    /// Until when a task submitted now spins, or `None`.
    pub fn deadline(&self) -> Option<Instant> {
        if !self.enabled() || u128::from(self.task_time_ns.load(Ordering::Relaxed)) >= self.budget.as_nanos() {
            return None;
        }
        if self.skip.load(Ordering::Relaxed) > 0
            && self.skip.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
        {
            return None;
        }
        Some(Instant::now() + self.budget)
    }

    /// Folds one task's run time into the moving average. The updates of two threads may race
    /// and lose a sample: fine for a hint.
    pub fn record_task_time(&self, elapsed: Duration) {
        let sample = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let old = self.task_time_ns.load(Ordering::Relaxed);
        self.task_time_ns.store(old - old / 8 + sample / 8, Ordering::Relaxed);
    }

    /// A spin got its result in time.
    pub fn succeeded(&self) {
        // Read first: the common case writes nothing, so the line stays shared.
        if self.backoff.load(Ordering::Relaxed) != 1 {
            self.backoff.store(1, Ordering::Relaxed);
        }
    }

    /// A spin ran out without a result.
    pub fn failed(&self) {
        let backoff = self.backoff.load(Ordering::Relaxed);
        self.skip.store(backoff, Ordering::Relaxed);
        self.backoff.store(backoff.saturating_mul(2).min(MAX_SKIP), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_when_the_budget_is_zero() {
        let p = SpinPolicy::new(Duration::ZERO);
        assert!(!p.enabled());
        assert!(p.deadline().is_none());
    }

    #[test]
    fn long_tasks_stop_the_spinning_and_short_ones_bring_it_back() {
        let p = SpinPolicy::new(Duration::from_micros(20));
        assert!(p.deadline().is_some());
        p.record_task_time(Duration::from_millis(1));
        assert!(p.deadline().is_none(), "average 125 µs");
        for _ in 0..40 {
            p.record_task_time(Duration::from_micros(1));
        }
        assert!(p.deadline().is_some());
    }

    #[test]
    fn failures_back_off_exponentially_and_a_success_resets() {
        let p = SpinPolicy::new(Duration::from_micros(20));
        let skipped_after_failure = |p: &SpinPolicy| {
            p.failed();
            let mut skipped = 0;
            while p.deadline().is_none() {
                skipped += 1;
                assert!(skipped <= MAX_SKIP, "skips forever");
            }
            skipped
        };
        assert_eq!(skipped_after_failure(&p), 1);
        assert_eq!(skipped_after_failure(&p), 2);
        assert_eq!(skipped_after_failure(&p), 4);
        for _ in 0..20 {
            p.failed();
        }
        assert_eq!(skipped_after_failure(&p), MAX_SKIP);
        p.succeeded();
        assert_eq!(skipped_after_failure(&p), 1);
    }
}
