//! A worker process registered on a listener, and its load as least connections sees it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use corral_protocol::HandleChannel;

use super::untaken::Untaken;

/// A worker's registration on a listener.
#[derive(Clone)]
pub(crate) struct Target {
    pub slot: usize,
    pub generation: u64,
    /// The worker's listen request id (named in every connection's header).
    pub listen_id: u64,
    pub channel: Arc<HandleChannel>,
    /// Shared with the supervisor: set once the worker is ready, cleared when it drains.
    pub accepting: Arc<AtomicBool>,
    /// Shared with the process's reader: the worker's reported load.
    pub load: Arc<Load>,
    /// Shared with the process: the connections handed to it that it has not taken yet.
    pub untaken: Arc<Untaken>,
}

impl Target {
    pub(crate) fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }
}

/// A worker's load, as least-connections sees it: the open connections it last reported,
/// plus those dispatched to it that its report did not count yet.
#[derive(Debug, Default)]
pub(crate) struct Load {
    open: AtomicU64,
    accepted: AtomicU64,
    dispatched: AtomicU64,
}

impl Load {
    pub(crate) fn estimate(&self) -> u64 {
        let unseen = self.dispatched.load(Ordering::Relaxed).saturating_sub(self.accepted.load(Ordering::Relaxed));
        self.open.load(Ordering::Relaxed) + unseen
    }

    /// Connections dispatched to the worker since it started.
    pub(crate) fn dispatched(&self) -> u64 {
        self.dispatched.load(Ordering::Relaxed)
    }

    pub(crate) fn dispatched_one(&self) {
        self.dispatched.fetch_add(1, Ordering::Relaxed);
    }

    /// The worker's report: `open` connections now, `accepted` since it started.
    pub(crate) fn report(&self, open: u64, accepted: u64) {
        self.open.store(open, Ordering::Relaxed);
        self.accepted.store(accepted, Ordering::Relaxed);
    }
}
