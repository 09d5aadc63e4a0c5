//! What rolling reloads and scaling report.

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

/// The result of a rolling reload ([`ClusterHandle::reload`](crate::ClusterHandle::reload)).
///
/// Slots are replaced one at a time, each replacement ready before its old process drains. A
/// replacement that fails (crashes, or is not ready within `listen_timeout`) aborts the reload:
/// that slot and the ones after it keep their old processes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReloadReport {
    /// The slots replaced, in order.
    pub replaced: Vec<Replaced>,
    /// Why the reload stopped early, if it did.
    pub error: Option<String>,
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

/// The result of a scale request ([`ClusterHandle::scale`](crate::ClusterHandle::scale)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleReport {
    /// Slots before.
    pub from: usize,
    /// Slots after (workers being added start; workers being removed drain).
    pub to: usize,
    /// Set when the request was changed: capped at the maximum, for instance.
    pub note: Option<String>,
}
