//! The last few minutes of each slot, for the status page's sparklines: a ring of samples
//! (RSS, requests per second) taken every [`SAMPLE_INTERVAL`], and the latest status snapshot,
//! served when the cluster actor is too busy to answer in time.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::api::status::WorkerStatus;

/// How often the endpoint samples the cluster.
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Samples kept per slot: five minutes.
pub(crate) const SAMPLES: usize = 60;

/// One slot's recent past.
#[derive(Debug, Default, Clone)]
pub(crate) struct SlotHistory {
    /// RSS in bytes, oldest first (`None`: no process then).
    pub rss: VecDeque<Option<f64>>,
    /// Requests (connections) handled per second since the sample before, oldest first
    /// (`None`: no process, or a worker that reports no counts).
    pub rate: VecDeque<Option<f64>>,
    /// The process and its handled count at the last sample.
    last: Option<(u32, u64, Instant)>,
}

impl SlotHistory {
    fn push(&mut self, w: &WorkerStatus, now: Instant) {
        let handled = w.stats.map(|s| s.handled);
        let rate = match (w.pid, handled, self.last) {
            (Some(pid), Some(n), Some((last_pid, before, at))) if pid == last_pid && now > at => {
                Some(n.saturating_sub(before) as f64 / now.duration_since(at).as_secs_f64())
            }
            _ => None,
        };
        self.last = match (w.pid, handled) {
            (Some(pid), Some(n)) => Some((pid, n, now)),
            _ => None,
        };
        push_bounded(&mut self.rss, w.rss_bytes.map(|b| b as f64));
        push_bounded(&mut self.rate, rate);
    }
}

fn push_bounded(ring: &mut VecDeque<Option<f64>>, value: Option<f64>) {
    if ring.len() == SAMPLES {
        ring.pop_front();
    }
    ring.push_back(value);
}

/// Every slot's recent past, and the latest snapshot.
#[derive(Default)]
pub(crate) struct History {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    slots: BTreeMap<usize, SlotHistory>,
    latest: Vec<WorkerStatus>,
}

impl History {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // Every update replaces whole values: a poisoned lock is still consistent.
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Records a sample of every slot (slots gone by a scale-down are forgotten).
    pub(crate) fn sample(&self, workers: &[WorkerStatus], now: Instant) {
        self.with(|inner| {
            inner.slots.retain(|slot, _| workers.iter().any(|w| w.slot == *slot));
            for w in workers {
                inner.slots.entry(w.slot).or_default().push(w, now);
            }
            inner.latest = workers.to_vec();
        });
    }

    /// Keeps `workers` as the latest snapshot (a scrape's fresher one).
    pub(crate) fn remember(&self, workers: &[WorkerStatus]) {
        self.with(|inner| inner.latest = workers.to_vec());
    }

    /// The latest snapshot.
    pub(crate) fn latest(&self) -> Vec<WorkerStatus> {
        self.with(|inner| inner.latest.clone())
    }

    /// One slot's recent past.
    pub(crate) fn slot(&self, slot: usize) -> SlotHistory {
        self.with(|inner| inner.slots.get(&slot).cloned().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::status::WorkerState;
    use corral_protocol::WorkerStats;

    fn worker(pid: u32, handled: u64) -> WorkerStatus {
        let mut w = WorkerStatus::without_process(0, WorkerState::Ready);
        w.pid = Some(pid);
        w.rss_bytes = Some(1000);
        w.stats = Some(WorkerStats { handled, ..WorkerStats::default() });
        w
    }

    #[test]
    fn rate_is_the_handled_delta_over_time_and_restarts_with_the_pid() {
        let history = History::default();
        let t0 = Instant::now();
        history.sample(&[worker(10, 100)], t0);
        history.sample(&[worker(10, 150)], t0 + Duration::from_secs(5));
        history.sample(&[worker(11, 3)], t0 + Duration::from_secs(10));
        let s = history.slot(0);
        assert_eq!(s.rate, [None, Some(10.0), None]);
        assert_eq!(s.rss, [Some(1000.0); 3]);
    }

    #[test]
    fn the_ring_is_bounded() {
        let history = History::default();
        let t0 = Instant::now();
        for i in 0..(SAMPLES as u64 + 10) {
            history.sample(&[worker(10, i)], t0 + Duration::from_secs(i));
        }
        assert_eq!(history.slot(0).rss.len(), SAMPLES);
        assert_eq!(history.slot(0).rate.back(), Some(&Some(1.0)));
    }
}
