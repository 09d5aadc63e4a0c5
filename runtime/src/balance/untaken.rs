//! The connections handed to one worker process that it has not taken yet: the primary keeps
//! its copy of each until the worker acknowledges it (a [`HandleAck`](corral_protocol::HandleAck)
//! on the handle channel), and hands the rest to another worker if this one dies first.
//!
//! The same count tells the strategy to skip a worker that has stopped taking its
//! connections (stopped, stuck, overloaded) until it catches up.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use corral_protocol::{HandleChannel, ProtocolError, TraceContext};
use tokio_util::sync::CancellationToken;

/// Where a kept connection came from, to hand it out again (the listener; a trait, so that
/// this module imports neither the listener nor the acceptor, which import it).
pub(crate) trait Redispatch: Send + Sync {
    /// Hands `kept` to another worker.
    fn again(self: Arc<Self>, kept: Kept) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

/// More untaken connections than this is falling behind: a worker that is serving takes each
/// within microseconds of its arrival, so even a busy one rarely has more than a few queued.
pub(crate) const STALL_BOUND: usize = 8;

/// ...for this long: longer than a scheduling hiccup or a short GC-like pause, far shorter
/// than any heartbeat timeout (seconds), so a stopped worker is skipped well before it is
/// killed.
pub(crate) const STALL_AFTER: Duration = Duration::from_millis(200);

/// One connection handed over and not yet taken.
pub(crate) struct Kept {
    /// Its datagram's number on the worker's handle channel.
    pub seq: u64,
    pub stream: tokio::net::TcpStream,
    pub peer: SocketAddr,
    pub trace: Option<TraceContext>,
    /// Where it came from, to be handed out again (weak: listeners own their targets).
    pub listener: Weak<dyn Redispatch>,
}

/// A worker process's untaken connections, in the order they were handed over.
#[derive(Default)]
pub(crate) struct Untaken {
    inner: Mutex<Inner>,
    /// Cancelled when the process is gone (exited, or its channel refused a hand-off).
    gone: CancellationToken,
}

#[derive(Default)]
struct Inner {
    /// Datagrams the worker has acknowledged.
    taken: u64,
    kept: VecDeque<Kept>,
    /// Since when more than [`STALL_BOUND`] have been waiting.
    over_since: Option<Instant>,
    /// The worker is gone and its untaken connections were handed out again (or dropped, for
    /// a handover to the primary's next image).
    closed: bool,
}

impl Inner {
    fn update_stall(&mut self) {
        if self.kept.len() > STALL_BOUND {
            self.over_since.get_or_insert_with(Instant::now);
        } else {
            self.over_since = None;
        }
    }
}

impl Untaken {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // Every update leaves the queue and counters consistent, so a poisoned lock is usable.
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Keeps a connection just handed over. Gives it back if the worker is already gone, for
    /// the caller to hand to another worker.
    pub(crate) fn keep(&self, kept: Kept) -> Option<Kept> {
        self.with(|inner| {
            if inner.closed {
                return Some(kept);
            }
            if kept.seq < inner.taken {
                return None; // Already taken (its acknowledgement came first); ours closes here.
            }
            // Concurrent hand-offs (two listeners) may finish out of order: keep the queue sorted.
            let at = inner.kept.iter().rposition(|k| k.seq < kept.seq).map_or(0, |i| i + 1);
            inner.kept.insert(at, kept);
            inner.update_stall();
            None
        })
    }

    /// The worker has taken its first `taken` datagrams: our copies of those close.
    fn acked(&self, taken: u64) {
        let released: Vec<Kept> = self.with(|inner| {
            inner.taken = inner.taken.max(taken);
            let n = inner.kept.iter().take_while(|k| k.seq < inner.taken).count();
            let released = inner.kept.drain(..n).collect();
            inner.update_stall();
            released
        });
        drop(released); // Closed outside the lock.
    }

    /// Whether the strategy should skip this worker: it has left more than [`STALL_BOUND`]
    /// connections untaken for [`STALL_AFTER`], or it is gone.
    pub(crate) fn is_stalled(&self) -> bool {
        self.with(|inner| inner.closed || inner.over_since.is_some_and(|t| t.elapsed() >= STALL_AFTER))
    }

    /// The process is gone: its watcher hands the untaken connections out again.
    pub(crate) fn worker_gone(&self) {
        self.gone.cancel();
    }

    /// The process is handed over to the primary's next image: the watcher stops, our copies
    /// close (the next image has none; the worker still takes them from its channel).
    pub(crate) fn stop(&self) {
        let dropped = self.with(|inner| {
            inner.closed = true;
            std::mem::take(&mut inner.kept)
        });
        drop(dropped);
        self.gone.cancel();
    }

    /// Reads the worker's acknowledgements until it is gone, then hands every connection it
    /// never took to another worker of the same listener, in their original order.
    pub(crate) async fn watch(self: Arc<Self>, channel: Arc<HandleChannel>) {
        loop {
            let ack = tokio::select! {
                biased;
                () = self.gone.cancelled() => break,
                ack = channel.recv_ack() => ack,
            };
            match ack {
                Ok(Some(taken)) => self.acked(taken),
                Ok(None) | Err(ProtocolError::Io(_)) => break,
                Err(e) => tracing::warn!(error = %e, "bad acknowledgement on the handle channel"),
            }
        }
        // The worker is gone: whatever it acknowledged before dying is queued by now.
        if let Some(taken) = channel.drain_acks() {
            self.acked(taken);
        }
        let orphans = self.with(|inner| {
            if inner.closed {
                return VecDeque::new();
            }
            inner.closed = true;
            std::mem::take(&mut inner.kept)
        });
        if !orphans.is_empty() {
            tracing::info!(
                connections = orphans.len(),
                "a worker died before taking its connections; handing them to another"
            );
        }
        for kept in orphans {
            if let Some(listener) = kept.listener.upgrade() {
                listener.again(kept).await;
            }
        }
    }
}
