//! `WorkerContext`: what a behaviour can reach inside its worker process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use corral_protocol::Outgoing;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::WorkerError;

/// Counters a worker reports to the primary in every pong.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub in_flight: AtomicU64,
    pub handled: AtomicU64,
}

struct Inner<R> {
    slot: usize,
    generation: u64,
    outbox: mpsc::Sender<Outgoing<R>>,
    shutdown: CancellationToken,
    counters: Arc<Counters>,
}

/// The worker's view of itself and its way to the primary. Cheap to clone.
///
/// ```no_run
/// # use corral_workers::WorkerContext;
/// # async fn demo(cx: WorkerContext<String>) -> Result<(), corral_workers::WorkerError> {
/// println!("slot {} generation {}", cx.slot(), cx.generation());
/// cx.report(format!("hello from {}", std::process::id())).await?;
/// # Ok(()) }
/// ```
pub struct WorkerContext<R> {
    inner: Arc<Inner<R>>,
}

impl<R> Clone for WorkerContext<R> {
    fn clone(&self) -> Self {
        WorkerContext {
            inner: self.inner.clone(),
        }
    }
}

impl<R> std::fmt::Debug for WorkerContext<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerContext")
            .field("slot", &self.inner.slot)
            .field("generation", &self.inner.generation)
            .finish()
    }
}

impl<R: Serialize + Send + 'static> WorkerContext<R> {
    pub(crate) fn new(
        slot: usize,
        generation: u64,
        outbox: mpsc::Sender<Outgoing<R>>,
        shutdown: CancellationToken,
        counters: Arc<Counters>,
    ) -> Self {
        WorkerContext {
            inner: Arc::new(Inner {
                slot,
                generation,
                outbox,
                shutdown,
                counters,
            }),
        }
    }

    /// The slot this worker fills (0-based, as `cluster.worker.id - 1` in Node).
    pub fn slot(&self) -> usize {
        self.inner.slot
    }

    /// The slot's generation: 1 for the first process, bumped at every restart.
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }

    /// Sends a message to the primary, waiting while the outgoing queue is full.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Disconnected`] when the channel to the primary is closed.
    pub async fn report(&self, message: R) -> Result<(), WorkerError> {
        self.inner
            .outbox
            .send(Outgoing::user(message))
            .await
            .map_err(|_| WorkerError::Disconnected)?;
        self.inner
            .counters
            .messages_out
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sends a message to the primary if the queue has room.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Busy`] when the queue is full, [`WorkerError::Disconnected`] when it is
    /// closed.
    pub fn try_report(&self, message: R) -> Result<(), WorkerError> {
        self.inner
            .outbox
            .try_send(Outgoing::user(message))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => WorkerError::Busy,
                mpsc::error::TrySendError::Closed(_) => WorkerError::Disconnected,
            })?;
        self.inner
            .counters
            .messages_out
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A token cancelled when the worker is told to drain: hand it to your servers'
    /// graceful-shutdown hooks.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Asks this worker to stop on its own, as if the primary had told it to: the behaviour's
    /// `stop` runs and the process exits with code 0 (a permanent worker is restarted).
    pub fn request_stop(&self) {
        self.inner.shutdown.cancel();
    }

    /// Records the start of a request (reported to the primary as in-flight).
    pub fn request_started(&self) {
        self.inner
            .counters
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Records the end of a request started with [`request_started`](Self::request_started).
    pub fn request_finished(&self) {
        self.inner
            .counters
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
        self.inner.counters.handled.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn outbox(&self) -> &mpsc::Sender<Outgoing<R>> {
        &self.inner.outbox
    }
}
