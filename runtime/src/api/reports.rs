//! What rolling reloads and scaling report, and how a scale is asked for.

use crate::api::error::ReloadError;

/// One slot replaced by a rolling reload or a recycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    /// The slot.
    pub slot: usize,
    /// The process that was replaced (now draining).
    pub old_pid: u32,
    /// The process that replaced it.
    pub new_pid: u32,
    /// The new process's generation.
    pub generation: u64,
}

/// The result of a rolling reload ([`ClusterHandle::reload`](crate::api::handle::ClusterHandle::reload)).
///
/// Slots are replaced one at a time, each replacement ready before its old process drains. A
/// replacement that fails (crashes, or is not ready within `listen_timeout`) aborts the reload:
/// that slot and the ones after it keep their old processes.
#[derive(Debug, Clone, Default)]
pub struct ReloadReport {
    /// The slots replaced, in order.
    pub replaced: Vec<Replaced>,
    /// Why the reload was refused or stopped early, if it was.
    pub error: Option<ReloadError>,
}

impl ReloadReport {
    /// Whether every slot was replaced.
    ///
    /// ```
    /// assert!(corral_runtime::ReloadReport::default().is_complete());
    /// ```
    pub fn is_complete(&self) -> bool {
        self.error.is_none()
    }
}

/// The result of a scale request ([`ClusterHandle::scale`](crate::api::handle::ClusterHandle::scale)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleReport {
    /// Slots before.
    pub from: usize,
    /// Slots after (workers being added start; workers being removed drain).
    pub to: usize,
    /// Set when the request was changed: capped at the maximum, for instance.
    pub note: Option<String>,
}

/// A scale request ([`ClusterHandle::scale`](crate::api::handle::ClusterHandle::scale)).
///
/// ```
/// use corral_runtime::Scale;
/// assert_eq!(Scale::By(-1).target(4), 3);
/// assert_eq!(Scale::To(2).target(4), 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Exactly this many workers.
    To(usize),
    /// This many more (positive) or fewer (negative) workers.
    By(i64),
    /// An autoscaled cluster ([`ClusterConfig::autoscale`](crate::ClusterConfig::autoscale)):
    /// back to autoscaling after a scale pinned the count (`corral scale auto`).
    Auto,
}

impl Scale {
    /// The number of workers asked for, from `current` (may be below 1 or above the cap).
    pub fn target(self, current: usize) -> i64 {
        let current = i64::try_from(current).unwrap_or(i64::MAX);
        match self {
            Scale::To(n) => i64::try_from(n).unwrap_or(i64::MAX),
            Scale::By(delta) => current.saturating_add(delta),
            Scale::Auto => current,
        }
    }
}

/// Why a cluster's worker count changed ([`ClusterEvent::Scaled`](crate::ClusterEvent::Scaled)).
///
/// ```
/// use std::time::Duration;
/// use corral_runtime::{Load, ScaleReason};
///
/// let load = Load { queue: 13.5, cpu: 0.97, over: Duration::from_secs(2) };
/// assert_eq!(ScaleReason::Saturated(load).to_string(), "saturated for 2.0s: queue 13.5, cpu 97% of the workers' share");
/// assert_eq!(ScaleReason::Asked.to_string(), "asked for");
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScaleReason {
    /// The autoscaler: connections waited or the CPU was busy, for `up_after` (or `cooldown`
    /// after its last step).
    Saturated(Load),
    /// The autoscaler: nothing waited and the CPU was quiet, for `down_after` (or
    /// `cooldown` after its last step).
    Idle(Load),
    /// A scale asked for ([`ClusterHandle::scale`](crate::api::handle::ClusterHandle::scale),
    /// `corral scale N`); it pins an autoscaled cluster's count.
    Asked,
    /// A rolling reload re-read a configuration with another count.
    Reconfigured,
}

/// What the autoscaler saw: means over its sampling window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Connections waiting (accept queues, and handed to a worker but not taken), on average.
    pub queue: f64,
    /// The ready workers' CPU use, as a fraction of their share of the CPUs (1.0: all of it).
    pub cpu: f64,
    /// How long the condition lasted when the step was taken.
    pub over: std::time::Duration,
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "queue {:.1}, cpu {:.0}% of the workers' share", self.queue, self.cpu * 100.0)
    }
}

impl std::fmt::Display for ScaleReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScaleReason::Saturated(load) => write!(f, "saturated for {:.1}s: {load}", load.over.as_secs_f64()),
            ScaleReason::Idle(load) => write!(f, "idle for {:.1}s: {load}", load.over.as_secs_f64()),
            ScaleReason::Asked => f.write_str("asked for"),
            ScaleReason::Reconfigured => f.write_str("the reloaded configuration says so"),
        }
    }
}
