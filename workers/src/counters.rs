//! [`Counters`]: what a worker counts about itself. One set per worker process, shared by its
//! [`WorkerContext`](crate::WorkerContext), its listeners' connections, the frame reader (which
//! reports them in every pong) and the load reporter (least-connections balancing).
//!
//! A leaf module: it imports nothing else of the crate, so `context` and `listen` can both use
//! it without importing each other back.

use std::sync::atomic::{AtomicU64, Ordering};

use corral_protocol::{PoolStats, WorkerStats};
use tokio::sync::Notify;

/// Counters a worker reports to the primary in every pong.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    /// Connections open now.
    pub in_flight: AtomicU64,
    /// Connections closed so far.
    pub handled: AtomicU64,
    /// Woken when a connection opens or closes (the load reporter sleeps until then).
    pub connections_changed: Notify,
}

impl Counters {
    /// A connection opened on one of the worker's listeners.
    pub fn connection_opened(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.connections_changed.notify_one();
    }

    /// A connection opened with [`connection_opened`](Self::connection_opened) closed.
    pub fn connection_closed(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.connections_changed.notify_one();
        self.handled.fetch_add(1, Ordering::Relaxed);
    }

    /// The connections open now and those closed so far.
    pub fn connections(&self) -> (u64, u64) {
        (self.in_flight.load(Ordering::Relaxed), self.handled.load(Ordering::Relaxed))
    }

    /// The counters as they travel in a pong, with the CPU pool's.
    pub fn stats(&self, pool: PoolStats) -> WorkerStats {
        let (in_flight, handled) = self.connections();
        WorkerStats {
            in_flight,
            handled,
            messages_in: self.messages_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
            pool: Some(pool),
        }
    }
}
