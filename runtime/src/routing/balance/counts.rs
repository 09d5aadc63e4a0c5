//! Connection counters of one listener, for the metrics endpoint: relaxed atomics bumped on
//! the accept path, read only when someone looks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the primary's acceptor did with the connections of one listener.
#[derive(Debug, Default)]
pub(crate) struct ConnectionCounts {
    accepted: AtomicU64,
    dispatched: AtomicU64,
    redispatched: AtomicU64,
}

impl ConnectionCounts {
    /// A connection was accepted.
    pub(crate) fn accepted_one(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was handed to a worker.
    pub(crate) fn dispatched_one(&self) {
        self.dispatched.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection a worker died without taking was handed out again.
    pub(crate) fn redispatched_one(&self) {
        self.redispatched.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn read(&self, addr: SocketAddr) -> ListenerCounts {
        ListenerCounts {
            addr,
            accepted: self.accepted.load(Ordering::Relaxed),
            dispatched: self.dispatched.load(Ordering::Relaxed),
            redispatched: self.redispatched.load(Ordering::Relaxed),
        }
    }
}

/// One listener's connection counters, read at one moment
/// ([`ClusterHandle::connection_counts`](crate::api::handle::ClusterHandle::connection_counts)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerCounts {
    /// The bound address.
    pub addr: SocketAddr,
    /// Connections the primary accepted.
    pub accepted: u64,
    /// Hand-offs to a worker (a connection handed out again counts again).
    pub dispatched: u64,
    /// Connections handed out again because their worker died before taking them.
    pub redispatched: u64,
}
