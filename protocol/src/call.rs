//! Typed request/response over the IPC stream: a request is an ordinary message that carries
//! a [`ReplyTo<T>`]; the reply travels back as a [`Control::Reply`] and the caller gets a `T`
//! (the type the request named, checked at compile time) or a [`CallError`].
//!
//! * The caller's side keeps its calls in flight in [`PendingCalls`] (one table per
//!   connection): [`PendingCalls::open`] numbers a call and gives the [`ReplyTo`] to put in
//!   the request and the [`PendingCall`] to wait on. A call that times out or is given up
//!   removes itself; a connection that ends fails every call still in it
//!   ([`CallError::PeerGone`]). Nothing is left behind.
//! * The answering side decodes the request with a [`FrameCodec`](crate::FrameCodec) that
//!   knows where replies go ([`FrameCodec::with_replies`](crate::FrameCodec::with_replies)):
//!   the `ReplyTo` inside it can then [`send`](ReplyTo::send) the reply, or
//!   [`fail`](ReplyTo::fail). One dropped without either (every copy of it) fails the call, so
//!   a handler that forgets or crashes never leaves its caller waiting for the timeout.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use corral_protocol::{Answer, CallError, PendingCalls, ReplyTo};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! enum Cmd {
//!     /// Asks for the length of a string: the reply is a `usize`.
//!     Len(String, ReplyTo<usize>),
//! }
//!
//! let calls = PendingCalls::new();
//! let (reply_to, pending) = calls.open::<usize>().unwrap();
//! let request = Cmd::Len("hello".into(), reply_to);
//! // ... the request travels; the other side answers with the reply's bytes:
//! let Cmd::Len(text, reply_to) = request;
//! calls.answer(reply_to.id(), Answer::Value(postcard::to_stdvec(&text.len()).unwrap()));
//! assert_eq!(pending.wait(Duration::from_secs(1)).await.unwrap(), 5);
//!
//! let (_, pending) = calls.open::<usize>().unwrap();
//! let err = pending.wait(Duration::from_millis(10)).await.unwrap_err();
//! assert!(matches!(err, CallError::Timeout { .. }));
//! assert_eq!(calls.len(), 0, "a call that timed out leaves nothing behind");
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::{mpsc, oneshot};

use crate::control::{Answer, Control};
use crate::outgoing::Outgoing;
pub use crate::reply_sink::ReplySink;
use crate::reply_sink::decoding_for;

/// Why a call got no reply of its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No reply came within the call's timeout.
    #[error("no reply within {timeout:?}")]
    Timeout {
        /// The call's timeout.
        timeout: Duration,
    },
    /// The other side went away before it replied: the worker died (or, for a worker's call,
    /// the primary did), or its connection closed.
    #[error("the other side went away before it replied (the worker died or disconnected)")]
    PeerGone,
    /// The handler failed: it answered with [`ReplyTo::fail`], or dropped the request
    /// without answering.
    #[error("the handler failed: {said}")]
    Failed {
        /// What the handler said: the Display of its error, as the wire carries it
        /// ([`Answer::Failed`]) from the other process.
        said: String,
    },
    /// The reply does not decode as the request's reply type (the two sides were built
    /// from different message types).
    #[error("the reply does not decode as the expected type: {source}")]
    BadReply {
        /// The decoder's complaint.
        #[source]
        source: postcard::Error,
    },
    /// There is no such worker slot.
    #[error("slot {slot} does not exist (the cluster has {workers})")]
    NoSuchSlot {
        /// The slot asked for.
        slot: usize,
        /// How many slots there are.
        workers: usize,
    },
    /// The slot has no live worker process right now (restarting, or gave up), or no worker
    /// at all is live (a keyed call).
    #[error("slot {slot} has no live worker to call")]
    NotConnected {
        /// The slot.
        slot: usize,
    },
}

/// Why a reply could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// This request was answered already (by another copy of its `ReplyTo`).
    #[error("the request was answered already")]
    AlreadyAnswered,
    /// The caller's process is gone (its connection closed).
    #[error("the caller is gone")]
    CallerGone,
    /// This `ReplyTo` did not arrive in a request (it was made or decoded elsewhere), so it
    /// knows no way back.
    #[error("this ReplyTo did not come with a request; it has nowhere to reply")]
    Unroutable,
    /// The reply cannot be encoded.
    #[error("the reply cannot be encoded: {source}")]
    Encode {
        /// The encoder's complaint.
        #[source]
        source: postcard::Error,
    },
}

/// A connection's queue, held weakly: a reply handle kept by a user never keeps the
/// connection open.
struct QueueSink<M>(mpsc::WeakSender<Outgoing<M>>);

impl<M: Send + 'static> ReplySink for QueueSink<M> {
    fn reply(&self, id: u64, answer: Answer) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            match self.0.upgrade() {
                Some(tx) => tx.send(Outgoing::control(Control::Reply { id, answer })).await.is_ok(),
                None => false,
            }
        })
    }

    fn reply_soon(&self, id: u64, answer: Answer) {
        let Some(tx) = self.0.upgrade() else { return };
        if let Err(mpsc::error::TrySendError::Full(out)) = tx.try_send(Outgoing::control(Control::Reply { id, answer }))
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = tx.send(out).await;
            });
        }
    }
}

/// The sink for replies on a connection whose frames are queued on `tx`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use corral_protocol::{FrameCodec, Outgoing, reply_sink};
/// let (tx, _rx) = tokio::sync::mpsc::channel::<Outgoing<u8>>(8);
/// let codec: FrameCodec<u8, u8> = FrameCodec::new(1024).with_replies(reply_sink(&tx));
/// # let _ = codec;
/// # }
/// ```
pub fn reply_sink<M: Send + 'static>(tx: &mpsc::Sender<Outgoing<M>>) -> Arc<dyn ReplySink> {
    Arc::new(QueueSink(tx.downgrade()))
}

struct ReplyInner {
    id: u64,
    sink: Option<Arc<dyn ReplySink>>,
    answered: AtomicBool,
}

impl Drop for ReplyInner {
    fn drop(&mut self) {
        if let Some(sink) = &self.sink
            && !self.answered.swap(true, Ordering::AcqRel)
        {
            sink.reply_soon(self.id, Answer::Failed("the handler dropped the request without replying".into()));
        }
    }
}

/// The way back of one request, whose reply is a `T`: put it in a message to make the
/// message a request (see the [module docs](self)). On the wire it is the call's number.
///
/// Clones share one answer: the first [`send`](Self::send) or [`fail`](Self::fail) counts,
/// and the call fails only once every clone is dropped unanswered.
pub struct ReplyTo<T> {
    inner: Arc<ReplyInner>,
    _reply: PhantomData<fn(T)>,
}

impl<T> Clone for ReplyTo<T> {
    fn clone(&self) -> Self {
        ReplyTo { inner: self.inner.clone(), _reply: PhantomData }
    }
}

impl<T> std::fmt::Debug for ReplyTo<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyTo").field("id", &self.inner.id).finish()
    }
}

impl<T> PartialEq for ReplyTo<T> {
    fn eq(&self, other: &Self) -> bool {
        self.inner.id == other.inner.id
    }
}

impl<T> ReplyTo<T> {
    fn new(id: u64, sink: Option<Arc<dyn ReplySink>>) -> Self {
        ReplyTo { inner: Arc::new(ReplyInner { id, sink, answered: AtomicBool::new(false) }), _reply: PhantomData }
    }

    /// The call's number on its connection.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Whether the request was answered already.
    pub fn is_answered(&self) -> bool {
        self.inner.answered.load(Ordering::Acquire)
    }

    async fn answer(&self, answer: Answer) -> Result<(), ReplyError> {
        let Some(sink) = &self.inner.sink else { return Err(ReplyError::Unroutable) };
        if self.inner.answered.swap(true, Ordering::AcqRel) {
            return Err(ReplyError::AlreadyAnswered);
        }
        if sink.reply(self.inner.id, answer).await { Ok(()) } else { Err(ReplyError::CallerGone) }
    }

    /// Fails the call: the caller gets [`CallError::Failed`] with `why`.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn fail(self, why: impl std::fmt::Display) -> Result<(), ReplyError> {
        self.answer(Answer::Failed(why.to_string())).await
    }
}

impl<T: Serialize> ReplyTo<T> {
    /// Sends the reply, waiting while the connection's queue is full (backpressure).
    ///
    /// # Errors
    ///
    /// [`ReplyError::AlreadyAnswered`] when a clone answered first, [`ReplyError::CallerGone`]
    /// when the caller's connection is closed, [`ReplyError::Unroutable`] for a `ReplyTo` that
    /// did not come in a request, [`ReplyError::Encode`] when `value` cannot be encoded (the
    /// caller then gets [`CallError::Failed`]).
    pub async fn send(self, value: T) -> Result<(), ReplyError> {
        match postcard::to_stdvec(&value) {
            Ok(bytes) => self.answer(Answer::Value(bytes)).await,
            Err(e) => {
                let error = ReplyError::Encode { source: e };
                // The caller gets this error's Display (the wire carries text).
                let _ = self.answer(Answer::Failed(error.to_string())).await;
                Err(error)
            }
        }
    }
}

impl<T> Serialize for ReplyTo<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.inner.id.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for ReplyTo<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let id = u64::deserialize(d)?;
        let sink = decoding_for();
        Ok(ReplyTo::new(id, sink))
    }
}

type Slot = oneshot::Sender<Answer>;

#[derive(Default)]
struct Table {
    next: u64,
    calls: HashMap<u64, Slot>,
    closed: bool,
}

/// The calls one side has in flight on one connection (see the [module docs](self)).
#[derive(Default)]
pub struct PendingCalls {
    table: Mutex<Table>,
}

impl std::fmt::Debug for PendingCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCalls").field("in_flight", &self.len()).finish()
    }
}

impl PendingCalls {
    /// An empty table.
    pub fn new() -> Arc<Self> {
        Arc::new(PendingCalls::default())
    }

    fn with<T>(&self, f: impl FnOnce(&mut Table) -> T) -> T {
        // Every update inserts or removes whole entries: a poisoned lock is still consistent.
        f(&mut self.table.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Opens a call: the `ReplyTo` to put in the request, and the call to wait on.
    ///
    /// # Errors
    ///
    /// [`CallError::PeerGone`] when the connection has ended already.
    pub fn open<T>(self: &Arc<Self>) -> Result<(ReplyTo<T>, PendingCall<T>), CallError> {
        let (tx, rx) = oneshot::channel();
        let id = self.with(|t| {
            if t.closed {
                return None;
            }
            t.next += 1;
            t.calls.insert(t.next, tx);
            Some(t.next)
        });
        let id = id.ok_or(CallError::PeerGone)?;
        let pending = PendingCall { id, calls: self.clone(), rx, _reply: PhantomData };
        Ok((ReplyTo::new(id, None), pending))
    }

    /// An answer arrived (a [`Control::Reply`]): the call, if it still waits, gets it.
    pub fn answer(&self, id: u64, answer: Answer) {
        if let Some(waiting) = self.with(|t| t.calls.remove(&id)) {
            let _ = waiting.send(answer);
        }
    }

    /// The connection ended: every call in flight fails with [`CallError::PeerGone`], and
    /// later ones fail at once.
    pub fn close(&self) {
        let calls = self.with(|t| {
            t.closed = true;
            std::mem::take(&mut t.calls)
        });
        drop(calls); // Each waiter sees its sender dropped.
    }

    /// Calls in flight.
    pub fn len(&self) -> usize {
        self.with(|t| t.calls.len())
    }

    /// Whether no call is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One call in flight; dropping it (a caller that gave up) removes it from its table.
pub struct PendingCall<T> {
    id: u64,
    calls: Arc<PendingCalls>,
    rx: oneshot::Receiver<Answer>,
    _reply: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for PendingCall<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCall").field("id", &self.id).finish()
    }
}

impl<T> Drop for PendingCall<T> {
    fn drop(&mut self) {
        self.calls.with(|t| t.calls.remove(&self.id));
    }
}

impl<T: DeserializeOwned> PendingCall<T> {
    /// The call's number.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits for the reply, at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`CallError::Timeout`], [`CallError::PeerGone`], [`CallError::Failed`] or
    /// [`CallError::BadReply`].
    pub async fn wait(mut self, timeout: Duration) -> Result<T, CallError> {
        let answer = match tokio::time::timeout(timeout, &mut self.rx).await {
            Err(_elapsed) => return Err(CallError::Timeout { timeout }),
            Ok(Err(_closed)) => return Err(CallError::PeerGone),
            Ok(Ok(answer)) => answer,
        };
        match answer {
            Answer::Value(bytes) => postcard::from_bytes(&bytes).map_err(|source| CallError::BadReply { source }),
            Answer::Failed(said) => Err(CallError::Failed { said }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply_sink::decoding_with;

    #[tokio::test]
    async fn a_closed_table_fails_calls_in_flight_and_later() {
        let calls = PendingCalls::new();
        let (_reply, pending) = calls.open::<u8>().unwrap();
        calls.close();
        assert_eq!(pending.wait(Duration::from_secs(5)).await.unwrap_err(), CallError::PeerGone);
        assert!(matches!(calls.open::<u8>(), Err(CallError::PeerGone)));
        assert!(calls.is_empty());
    }

    #[tokio::test]
    async fn a_decoded_reply_to_answers_through_its_sink_and_fails_when_dropped() {
        let (tx, mut rx) = mpsc::channel::<Outgoing<()>>(4);
        let sink = reply_sink(&tx);
        let bytes = postcard::to_stdvec(&7u64).unwrap();
        let reply: ReplyTo<u32> = decoding_with(Some(&sink), || postcard::from_bytes(&bytes)).unwrap();
        let copy = reply.clone();
        reply.send(5).await.unwrap();
        assert_eq!(copy.clone().send(6).await, Err(ReplyError::AlreadyAnswered));
        drop(copy);
        let out = rx.recv().await.unwrap();
        let Some(Control::Reply { id: 7, answer: Answer::Value(v) }) = out.body.as_control() else { panic!() };
        assert_eq!(postcard::from_bytes::<u32>(v).unwrap(), 5);
        assert!(rx.try_recv().is_err(), "answered once");

        let dropped: ReplyTo<u32> = decoding_with(Some(&sink), || postcard::from_bytes(&bytes)).unwrap();
        drop(dropped);
        let out = rx.recv().await.unwrap();
        assert!(matches!(out.body.as_control(), Some(Control::Reply { id: 7, answer: Answer::Failed(_) })));
    }

    #[tokio::test]
    async fn a_reply_to_from_nowhere_cannot_reply() {
        let bytes = postcard::to_stdvec(&1u64).unwrap();
        let reply: ReplyTo<u8> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(reply.send(1).await, Err(ReplyError::Unroutable));
    }

    #[tokio::test]
    async fn a_reply_of_another_type_is_a_bad_reply() {
        let calls = PendingCalls::new();
        let (reply, pending) = calls.open::<String>().unwrap();
        calls.answer(reply.id(), Answer::Value(vec![0xff, 0xff]));
        assert!(matches!(pending.wait(Duration::from_secs(5)).await, Err(CallError::BadReply { .. })));
    }
}
