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

use corral_protocol::{HandleAck, HandleChannel, TraceContext};
use tokio::sync::Notify;
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

/// How often the worker's acknowledgements are read while it has connections to take.
pub(crate) const ACK_POLL: Duration = Duration::from_millis(5);

/// A refused connection is handed out again after this long, doubled for each time it was
/// refused (up to [`REFUSAL_BACKOFF_MAX`]): a worker out of fds gets time to recover, and a
/// cluster whose workers all are keeps the connection instead of bouncing it between them.
pub(crate) const REFUSAL_BACKOFF: Duration = Duration::from_millis(25);

/// The longest wait between two hand-offs of a refused connection.
pub(crate) const REFUSAL_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A connection refused this many times is closed: with the backoff, about 30 s of workers
/// that cannot take it (the same patience as waiting for a ready worker).
pub(crate) const MAX_REFUSALS: u32 = 35;

/// How long after a refusal the strategy skips the worker that refused (unless every ready
/// worker is skipped).
const REFUSING_FOR: Duration = Duration::from_millis(500);

/// How long to wait before handing a connection out again after its `refusals`-th refusal.
pub(crate) fn refusal_backoff(refusals: u32) -> Duration {
    REFUSAL_BACKOFF.saturating_mul(1 << refusals.saturating_sub(1).min(10)).min(REFUSAL_BACKOFF_MAX)
}

/// Refusals remembered for connections not kept yet, at most.
const REFUSED_EARLY_MAX: usize = 1024;

/// What [`Untaken::keep`] gives back instead of keeping a connection.
pub(crate) enum Keep {
    /// The worker is gone: hand it to another worker now.
    Gone(Kept),
    /// The worker refused it before it was kept: hand it out again after the backoff.
    Refused(Kept),
}

/// One connection handed over and not yet taken.
pub(crate) struct Kept {
    /// Its datagram's number on the worker's handle channel.
    pub seq: u64,
    /// The accepted socket (not registered with the event loop: the primary never reads it).
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub trace: Option<TraceContext>,
    /// Where it came from, to be handed out again (weak: listeners own their targets).
    pub listener: Weak<dyn Redispatch>,
    /// How many times a worker has refused it (its fd did not reach the worker).
    pub refusals: u32,
}

/// A worker process's untaken connections, in the order they were handed over.
#[derive(Default)]
pub(crate) struct Untaken {
    inner: Mutex<Inner>,
    /// Cancelled when the process is gone (exited, or its channel refused a hand-off).
    gone: CancellationToken,
    /// Told when a connection is kept while none was: the watcher reads acknowledgements only
    /// while some are kept.
    kept_some: Notify,
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
    /// When the worker last refused a connection (out of fds, most likely).
    refused_at: Option<Instant>,
    /// Refused datagrams whose connection was not kept yet: the acknowledgement can overtake
    /// the [`Untaken::keep`] that follows each send. Such a connection is handed out again
    /// when it is kept, not closed as taken.
    refused_early: Vec<u64>,
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
    /// For a worker taken over from the primary's previous image, which had sent it `sent`
    /// datagrams: those are the worker's (it takes them from its channel), and the next
    /// hand-off is number `sent`.
    pub(crate) fn resumed(sent: u64) -> Self {
        let untaken = Untaken::default();
        untaken.with(|inner| inner.taken = sent);
        untaken
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // Every update leaves the queue and counters consistent, so a poisoned lock is usable.
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Keeps a connection just handed over. Gives it back if the worker is already gone, for
    /// the caller to hand to another worker.
    pub(crate) fn keep(&self, kept: Kept) -> Option<Keep> {
        self.with(|inner| {
            if inner.closed {
                return Some(Keep::Gone(kept));
            }
            if kept.seq < inner.taken {
                if let Some(at) = inner.refused_early.iter().position(|&n| n == kept.seq) {
                    // Refused before we kept it: handed out again, after the backoff.
                    inner.refused_early.swap_remove(at);
                    return Some(Keep::Refused(kept));
                }
                return None; // Already taken (its acknowledgement came first); ours closes here.
            }
            // Concurrent hand-offs (two listeners) may finish out of order: keep the queue sorted.
            let at = inner.kept.iter().rposition(|k| k.seq < kept.seq).map_or(0, |i| i + 1);
            inner.kept.insert(at, kept);
            inner.update_stall();
            if inner.kept.len() == 1 {
                // A permit is stored if the watcher is not waiting yet: it cannot be missed.
                self.kept_some.notify_one();
            }
            None
        })
    }

    /// The worker has received its first `ack.taken` datagrams: our copies of those it took
    /// close; those it refused are returned, to be handed out again.
    fn acked(&self, ack: HandleAck) -> Vec<Kept> {
        let (released, refused): (Vec<Kept>, Vec<Kept>) = self.with(|inner| {
            inner.taken = inner.taken.max(ack.taken);
            if !ack.refused.is_empty() {
                inner.refused_at = Some(Instant::now());
            }
            let n = inner.kept.iter().take_while(|k| k.seq < inner.taken).count();
            let done: Vec<Kept> = inner.kept.drain(..n).collect();
            inner.update_stall();
            for &seq in &ack.refused {
                if !done.iter().any(|k| k.seq == seq) {
                    inner.refused_early.push(seq);
                }
            }
            // Bounded: each entry is matched by the `keep` right after its send; a stray one
            // (its send failed) must not pile up.
            if inner.refused_early.len() > REFUSED_EARLY_MAX {
                let excess = inner.refused_early.len() - REFUSED_EARLY_MAX;
                inner.refused_early.drain(..excess);
            }
            done.into_iter().partition(|k| ack.refused.binary_search(&k.seq).is_err())
        });
        drop(released); // Closed outside the lock.
        refused
    }

    /// How many connections handed to the worker it has not taken yet.
    pub(crate) fn len(&self) -> usize {
        self.with(|inner| inner.kept.len())
    }

    /// Whether the strategy should skip this worker: it has left more than [`STALL_BOUND`]
    /// connections untaken for [`STALL_AFTER`], or it is gone.
    /// Also skipped for a while after it refused a connection.
    pub(crate) fn is_stalled(&self) -> bool {
        self.with(|inner| {
            inner.closed
                || inner.over_since.is_some_and(|t| t.elapsed() >= STALL_AFTER)
                || inner.refused_at.is_some_and(|t| t.elapsed() < REFUSING_FOR)
        })
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
    /// never took to another worker of the same listener, in their original order. A
    /// connection the worker refused is handed out again after a backoff.
    ///
    /// The acknowledgements are read every [`ACK_POLL`] while connections are kept, not as
    /// each arrives: the channel is not registered with the event loop, so a worker taking
    /// connections does not wake the primary once per connection. Our copies close up to
    /// [`ACK_POLL`] later; the worker serves each as soon as it has acknowledged it.
    pub(crate) async fn watch(self: Arc<Self>, channel: Arc<HandleChannel>) {
        loop {
            let idle = self.with(|inner| inner.kept.is_empty());
            if idle {
                tokio::select! {
                    biased;
                    () = self.gone.cancelled() => break,
                    () = self.kept_some.notified() => {}
                }
            }
            tokio::select! {
                biased;
                () = self.gone.cancelled() => break,
                () = tokio::time::sleep(ACK_POLL) => {}
            }
            let queued = channel.take_acks();
            if let Some(ack) = queued.ack {
                for kept in self.acked(ack) {
                    refused(kept);
                }
            }
            if queued.ended {
                // The worker is dying. Its slot is told the same moment (its frame stream
                // closes too) and says `gone` once it has acted: it takes the worker out and
                // puts a warm spare in its place first, so what is handed out below can go to
                // that spare rather than to whoever was next before.
                self.gone.cancelled().await;
                break;
            }
        }
        // The worker is gone: whatever it acknowledged before dying is queued by now.
        let mut orphans: VecDeque<Kept> = match channel.drain_acks() {
            Some(ack) => self.acked(ack).into(),
            None => VecDeque::new(),
        };
        let rest = self.with(|inner| {
            if inner.closed {
                return VecDeque::new();
            }
            inner.closed = true;
            std::mem::take(&mut inner.kept)
        });
        orphans.extend(rest);
        orphans.make_contiguous().sort_by_key(|k| k.seq);
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

/// A worker refused `kept` (its fd did not arrive: the worker is out of fds): it is handed
/// out again after a backoff, or closed once it has been refused [`MAX_REFUSALS`] times.
pub(crate) fn refused(mut kept: Kept) {
    kept.refusals += 1;
    if kept.refusals >= MAX_REFUSALS {
        tracing::warn!(peer = %kept.peer, refusals = kept.refusals, "every worker refused a connection for too long; closing it");
        return;
    }
    let Some(listener) = kept.listener.upgrade() else { return };
    let wait = refusal_backoff(kept.refusals);
    tracing::debug!(peer = %kept.peer, refusals = kept.refusals, ?wait, "a worker refused a connection; handing it out again");
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        listener.again(kept).await;
    });
}
