//! Message counters of one slot, shared by its processes' I/O tasks and read by the status.

use std::sync::atomic::AtomicU64;

/// User messages in and out of one slot (over all its processes).
#[derive(Debug, Default)]
pub(crate) struct SlotCounters {
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
}
