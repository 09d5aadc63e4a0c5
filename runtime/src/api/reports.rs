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
}

impl Scale {
    /// The number of workers asked for, from `current` (may be below 1 or above the cap).
    pub fn target(self, current: usize) -> i64 {
        let current = i64::try_from(current).unwrap_or(i64::MAX);
        match self {
            Scale::To(n) => i64::try_from(n).unwrap_or(i64::MAX),
            Scale::By(delta) => current.saturating_add(delta),
        }
    }
}
