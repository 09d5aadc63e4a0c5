//! What an autoscaled cluster shows of its scaler ([`AutoscaleStatus`]), and the book the
//! scaler, the cluster and its handle share to say it.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use crate::api::reports::Load;
use crate::config::autoscale::Autoscale;

/// The autoscaler of a cluster, as `corral status` shows it: `workers 3 (auto 2..8: queue 14)`.
///
/// ```
/// use corral_runtime::{Autoscale, AutoscaleStatus, Load};
///
/// let status = AutoscaleStatus {
///     config: Autoscale::new(2, 8),
///     workers: 3,
///     pinned: None,
///     load: Some(Load { queue: 14.0, cpu: 0.9, over: Default::default() }),
/// };
/// assert_eq!(status.to_string(), "workers 3 (auto 2..8: queue 14, cpu 90%)");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscaleStatus {
    /// The range, timings and signal in force (a reload may change them).
    pub config: Autoscale,
    /// Active workers now (spares not counted).
    pub workers: usize,
    /// The count a scale asked for pinned, until [`Scale::Auto`](crate::Scale::Auto).
    pub pinned: Option<usize>,
    /// The load over the scaler's last window (`None` before its first).
    pub load: Option<Load>,
}

impl std::fmt::Display for AutoscaleStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "workers {} (", self.workers)?;
        if let Some(n) = self.pinned {
            write!(f, "pinned at {n} until `corral scale auto`; ")?;
        }
        write!(f, "auto {}", self.config.workers())?;
        if let Some(load) = self.load {
            use crate::config::autoscale::ScaleSignal;
            let (queue, cpu) = (format!("queue {:.0}", load.queue), format!("cpu {:.0}%", load.cpu * 100.0));
            match self.config.signal {
                ScaleSignal::Auto => write!(f, ": {queue}, {cpu}")?,
                ScaleSignal::Queue => write!(f, ": {queue}")?,
                ScaleSignal::Cpu => write!(f, ": {cpu}")?,
            }
        }
        f.write_str(")")
    }
}

/// The scaler's book: its configuration, the pin, the last load it saw and when the count
/// last changed. Shared by the scaler task (writes the load), the cluster actor (the rest)
/// and the handle (reads it all).
pub(crate) struct AutoscaleBook {
    inner: Mutex<Book>,
}

struct Book {
    config: Option<Autoscale>,
    workers: usize,
    pinned: Option<usize>,
    load: Option<Load>,
    changed: Option<Instant>,
    /// The scaler task runs (it outlives a reload that turns autoscaling off, idle).
    started: bool,
}

impl AutoscaleBook {
    /// A cluster of `workers`, autoscaled by `config` (or not).
    pub(crate) fn new(config: Option<Autoscale>, workers: usize) -> Self {
        AutoscaleBook {
            inner: Mutex::new(Book { config, workers, pinned: None, load: None, changed: None, started: false }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Book) -> T) -> T {
        // Every update writes whole fields, so a poisoned lock is still consistent.
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The autoscaling in force, if any.
    pub(crate) fn config(&self) -> Option<Autoscale> {
        self.with(|b| b.config.clone())
    }

    /// A reload's configuration: autoscaled by `config` (or no more).
    pub(crate) fn reconfigure(&self, config: Option<Autoscale>) {
        self.with(|b| {
            // A pin outside the new range (or without one) no longer holds.
            if !config.as_ref().is_some_and(|c| b.pinned.is_some_and(|p| c.contains(p))) {
                b.pinned = None;
            }
            b.config = config;
        });
    }

    /// The count changed to `workers` (any reason): the next step waits its cooldown from now.
    pub(crate) fn scaled(&self, workers: usize) {
        self.with(|b| {
            b.workers = workers;
            b.changed = Some(Instant::now());
        });
    }

    /// Active workers, as the cluster last counted them.
    pub(crate) fn workers(&self) -> usize {
        self.with(|b| b.workers)
    }

    /// The count a scale pinned, if any.
    pub(crate) fn pinned(&self) -> Option<usize> {
        self.with(|b| b.pinned)
    }

    /// Marks the scaler task started; `false` when it was already.
    pub(crate) fn start_once(&self) -> bool {
        self.with(|b| !std::mem::replace(&mut b.started, true))
    }

    /// When the count last changed.
    pub(crate) fn changed(&self) -> Option<Instant> {
        self.with(|b| b.changed)
    }

    /// Pins the count (`Some`), or lets the scaler move it again (`None`).
    pub(crate) fn pin(&self, pinned: Option<usize>) {
        self.with(|b| b.pinned = pinned);
    }

    /// Whether a scale pins the count.
    pub(crate) fn is_pinned(&self) -> bool {
        self.with(|b| b.pinned.is_some())
    }

    /// The scaler's last window.
    pub(crate) fn observed(&self, load: Load) {
        self.with(|b| b.load = Some(load));
    }

    /// What `corral status` shows; `None` for a cluster that does not autoscale.
    pub(crate) fn status(&self) -> Option<AutoscaleStatus> {
        self.with(|b| {
            Some(AutoscaleStatus { config: b.config.clone()?, workers: b.workers, pinned: b.pinned, load: b.load })
        })
    }
}
