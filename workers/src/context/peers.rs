//! Messages to other workers, through the primary: [`WorkerContext::send_to_worker`],
//! [`broadcast_workers`](WorkerContext::broadcast_workers) and their non-blocking `try_`
//! variants.

use std::sync::atomic::Ordering;

use corral_protocol::{Control, Outgoing};
use serde::Serialize;
use tokio::sync::mpsc;

use super::WorkerContext;
use crate::error::WorkerError;

impl<R: Serialize + Send + 'static> WorkerContext<R> {
    /// Sends `message` to the worker in `slot`, through the primary, waiting while the queue to
    /// the primary is full (and the primary waits while the receiver's is: backpressure end to
    /// end). The receiver handles it as any message, in its [`Worker::handle`](crate::Worker::handle).
    ///
    /// `message` must be of the receiving workers' `Msg` type (the same behaviour's, in a
    /// cluster of one program); one that does not decode as it is logged and dropped there. A
    /// slot without a live process drops it too (logged in the primary). The receiver's
    /// [`origin`](Self::origin) is this worker's slot.
    ///
    /// # Deadlock hazard: handlers that send to each other
    ///
    /// Every queue on the way is bounded, and a worker handles one message at a time. When
    /// two workers' handlers send to each other at once (or along a longer cycle: A → B → C
    /// → A), each may wait for room in the other's inbox while the other, inside its own
    /// `handle`, waits for room in its: neither handler returns to take its next message, and
    /// both wait for ever, as two Erlang `gen_server`s that `call` each other do. It happens
    /// once more messages are in flight in each direction than the queues hold (some
    /// thousands; two handlers sending 50,000 each deadlock, tested). A stalled worker also
    /// stops answering heartbeats, so after `heartbeat_timeout` the primary kills and
    /// replaces one (or both), and the messages in flight to it are lost.
    ///
    /// Break the cycle: send from a task the handler spawns (below), so that the handler
    /// returns and its inbox keeps draining while the task waits; or, in the handler, use
    /// [`try_send_to_worker`](Self::try_send_to_worker), which never waits, and on
    /// [`WorkerError::Busy`] return and send the rest later. Sends that form no cycle (A → B,
    /// B only reporting to the primary) do not deadlock this way.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Encode`] when `message` cannot be encoded;
    /// [`WorkerError::NoSuchSlot`] for a slot number no cluster has;
    /// [`WorkerError::Disconnected`] when the channel to the primary is closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// enum Msg { Invalidate(String) }
    ///
    /// # async fn demo(cx: corral_workers::WorkerContext<()>) -> Result<(), corral_workers::WorkerError> {
    /// // Tell the worker that owns the key's shard to drop it.
    /// cx.send_to_worker(2, &Msg::Invalidate("user:42".into())).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// A handler that sends much to a peer that may be sending to it: from a task, so that
    /// the handler never waits on the peer.
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)]
    /// # enum Msg { Invalidate(String) }
    /// # fn demo(cx: &corral_workers::WorkerContext<()>, keys: Vec<String>) {
    /// let sender = cx.clone();
    /// cx.spawn_tracked(async move {
    ///     for key in keys {
    ///         if sender.send_to_worker(1, &Msg::Invalidate(key)).await.is_err() {
    ///             break; // the primary is gone
    ///         }
    ///     }
    /// });
    /// # }
    /// ```
    pub async fn send_to_worker<T: Serialize>(&self, slot: usize, message: &T) -> Result<(), WorkerError> {
        let to = u32::try_from(slot).map_err(|_| WorkerError::NoSuchSlot { slot })?;
        self.relay(Some(to), message).await
    }

    /// Sends `message` to every other worker of the cluster, through the primary, as
    /// [`send_to_worker`](Self::send_to_worker) does (the same type, the same backpressure,
    /// the same deadlock hazard when handlers broadcast to each other).
    ///
    /// # Errors
    ///
    /// As [`send_to_worker`](Self::send_to_worker).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// enum Msg { Flush }
    ///
    /// # async fn demo(cx: corral_workers::WorkerContext<()>) -> Result<(), corral_workers::WorkerError> {
    /// cx.broadcast_workers(&Msg::Flush).await?;
    /// # Ok(()) }
    /// ```
    pub async fn broadcast_workers<T: Serialize>(&self, message: &T) -> Result<(), WorkerError> {
        self.relay(None, message).await
    }

    /// Sends `message` to the worker in `slot`, through the primary, if the queue to the
    /// primary has room; never waits. The non-blocking [`send_to_worker`](Self::send_to_worker),
    /// for a handler that must not wait on another worker (see the deadlock hazard there):
    /// on [`WorkerError::Busy`] it can return and send the rest later, so that its own inbox
    /// drains meanwhile.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Busy`] when the queue to the primary is full (the message is not sent;
    /// the receivers' backpressure reaches the sender this way);
    /// [`WorkerError::Encode`], [`WorkerError::NoSuchSlot`] and
    /// [`WorkerError::Disconnected`] as for [`send_to_worker`](Self::send_to_worker).
    ///
    /// # Examples
    ///
    /// Sending a batch from a handler without ever waiting: what does not fit is sent by a
    /// later message (here the worker's own `Resume`, asked of the primary through a report).
    ///
    /// ```no_run
    /// use corral_workers::WorkerError;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// enum Msg { Apply(u64) }
    ///
    /// # async fn demo(cx: corral_workers::WorkerContext<u64>, batch: &mut std::collections::VecDeque<u64>) -> Result<(), WorkerError> {
    /// while let Some(&n) = batch.front() {
    ///     match cx.try_send_to_worker(1, &Msg::Apply(n)) {
    ///         Ok(()) => {
    ///             batch.pop_front();
    ///         }
    ///         // Slot 1 is behind: stop here, keep the rest, handle the next message.
    ///         Err(WorkerError::Busy) => break,
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn try_send_to_worker<T: Serialize>(&self, slot: usize, message: &T) -> Result<(), WorkerError> {
        let to = u32::try_from(slot).map_err(|_| WorkerError::NoSuchSlot { slot })?;
        self.try_relay(Some(to), message)
    }

    /// Sends `message` to every other worker, through the primary, if the queue to the
    /// primary has room; never waits. The non-blocking
    /// [`broadcast_workers`](Self::broadcast_workers), as
    /// [`try_send_to_worker`](Self::try_send_to_worker) is for one worker.
    ///
    /// # Errors
    ///
    /// As [`try_send_to_worker`](Self::try_send_to_worker).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use corral_workers::WorkerError;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// enum Msg { Flush }
    ///
    /// # fn demo(cx: corral_workers::WorkerContext<()>) -> Result<(), WorkerError> {
    /// match cx.try_broadcast_workers(&Msg::Flush) {
    ///     Ok(()) => {}
    ///     Err(WorkerError::Busy) => tracing::debug!("peers are behind; flushing next round"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn try_broadcast_workers<T: Serialize>(&self, message: &T) -> Result<(), WorkerError> {
        self.try_relay(None, message)
    }

    async fn relay<T: Serialize>(&self, to: Option<u32>, message: &T) -> Result<(), WorkerError> {
        let message = postcard::to_stdvec(message).map_err(WorkerError::Encode)?;
        let relay = Outgoing::control(Control::Relay { to, message });
        self.inner.outbox.send(relay).await.map_err(|_| WorkerError::Disconnected)?;
        self.inner.counters.messages_out.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn try_relay<T: Serialize>(&self, to: Option<u32>, message: &T) -> Result<(), WorkerError> {
        let message = postcard::to_stdvec(message).map_err(WorkerError::Encode)?;
        let relay = Outgoing::control(Control::Relay { to, message });
        self.inner.outbox.try_send(relay).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => WorkerError::Busy,
            mpsc::error::TrySendError::Closed(_) => WorkerError::Disconnected,
        })?;
        self.inner.counters.messages_out.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
