//! Fan-out of [`ClusterEvent`]s to subscribers, without losing any.
//!
//! Each subscriber has its own unbounded queue, so a lifecycle event (fork, exit, gave-up…)
//! never waits and is never dropped. User messages from workers are the only events that can
//! come in floods; each takes one of the subscriber's `event_buffer` credits, given back when
//! the subscriber receives it. A worker's IPC reader that finds no credit waits, which stops it
//! reading the socket: backpressure reaches the worker instead of memory growing without end.
//!
//! A subscriber that only watches the lifecycle (the control socket's log ring, systemd
//! notification, log files, metrics, a reload's drain watch) subscribes with
//! [`EventBus::subscribe_lifecycle`]: user messages are neither cloned for it nor wait for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use crate::api::events::ClusterEvent;
use crate::api::events::credits::Credits;

/// What goes down a subscriber's queue.
enum Delivery<R> {
    /// A lifecycle event (takes no credit).
    Event(ClusterEvent<R>),
    /// User messages from one slot, in the order it sent them, each holding one credit until
    /// it is read.
    Messages { slot: usize, messages: Vec<(R, tracing::Span)> },
}

/// The most user messages delivered as one batch (and credits taken at once).
const MESSAGE_BATCH: usize = 64;

struct Subscriber<R> {
    tx: mpsc::UnboundedSender<Delivery<R>>,
    credits: Arc<Credits>,
    /// Whether it receives user messages (lifecycle events go to every subscriber).
    messages: bool,
}

impl<R> Clone for Subscriber<R> {
    fn clone(&self) -> Self {
        Subscriber { tx: self.tx.clone(), credits: self.credits.clone(), messages: self.messages }
    }
}

/// The shared list of subscribers (copy-on-write, so that message senders can keep a snapshot
/// and check a version number instead of locking per message).
pub(crate) struct EventBus<R> {
    subscribers: Mutex<Arc<Vec<Subscriber<R>>>>,
    version: AtomicU64,
    buffer: usize,
}

/// A sender's cached view of the subscribers that take user messages, for
/// [`EventBus::emit_message`].
pub(crate) struct BusSnapshot<R> {
    version: u64,
    subscribers: Vec<Subscriber<R>>,
}

impl<R> Default for BusSnapshot<R> {
    fn default() -> Self {
        BusSnapshot { version: u64::MAX, subscribers: Vec::new() }
    }
}

impl<R: Clone + Send + 'static> EventBus<R> {
    pub(crate) fn new(buffer: usize) -> Self {
        EventBus { subscribers: Mutex::new(Arc::new(Vec::new())), version: AtomicU64::new(0), buffer }
    }

    fn with_list<T>(&self, f: impl FnOnce(&mut Arc<Vec<Subscriber<R>>>) -> T) -> T {
        // A panic while holding this lock cannot leave the list half-updated (every update
        // replaces the Arc whole), so a poisoned lock is safe to keep using.
        let mut guard = self.subscribers.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// A new subscriber that sees every event from now on.
    pub(crate) fn subscribe(&self) -> EventStream<R> {
        self.add(true)
    }

    /// A new subscriber that sees every event from now on except user messages
    /// ([`ClusterEvent::Message`]).
    pub(crate) fn subscribe_lifecycle(&self) -> EventStream<R> {
        self.add(false)
    }

    fn add(&self, messages: bool) -> EventStream<R> {
        let (tx, rx) = mpsc::unbounded_channel();
        let credits = Arc::new(Credits::new(self.buffer, self.max_batch()));
        let sub = Subscriber { tx, credits: credits.clone(), messages };
        self.with_list(|list| {
            let mut next: Vec<_> = list.iter().filter(|s| !s.tx.is_closed()).cloned().collect();
            next.push(sub);
            *list = Arc::new(next);
        });
        self.version.fetch_add(1, Ordering::Release);
        EventStream { rx, ended: false, credits, slot: 0, batch: Vec::new().into_iter() }
    }

    /// Delivers a lifecycle event to every subscriber, at once.
    pub(crate) fn emit(&self, event: ClusterEvent<R>) {
        let list = self.with_list(|list| list.clone());
        let mut closed = false;
        for sub in list.iter() {
            closed |= sub.tx.send(Delivery::Event(event.clone())).is_err();
        }
        if closed {
            self.prune();
        }
    }

    fn prune(&self) {
        self.with_list(|list| {
            let next: Vec<_> = list.iter().filter(|s| !s.tx.is_closed()).cloned().collect();
            *list = Arc::new(next);
        });
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The most messages one [`emit_messages`](EventBus::emit_messages) takes.
    pub(crate) fn max_batch(&self) -> usize {
        MESSAGE_BATCH.min(self.buffer).max(1)
    }

    /// Delivers user messages of `slot`, in order, to every subscriber that takes them,
    /// waiting for a credit per message from each. At most [`max_batch`](EventBus::max_batch)
    /// at a time; they go down each queue as one batch.
    pub(crate) async fn emit_messages(
        &self,
        snapshot: &mut BusSnapshot<R>,
        slot: usize,
        messages: Vec<(R, tracing::Span)>,
    ) {
        debug_assert!(messages.len() <= self.max_batch());
        if messages.is_empty() {
            return;
        }
        let version = self.version.load(Ordering::Acquire);
        if version != snapshot.version {
            let list = self.with_list(|list| list.clone());
            snapshot.subscribers = list.iter().filter(|s| s.messages).cloned().collect();
            snapshot.version = version;
        }
        let subs = &snapshot.subscribers;
        let Some((last, rest)) = subs.split_last() else {
            return; // Nobody listens: dropped, as Node drops a message with no listener.
        };
        let mut closed = false;
        for sub in rest {
            closed |= !deliver(sub, slot, messages.clone()).await;
        }
        closed |= !deliver(last, slot, messages).await;
        if closed {
            self.prune();
        }
    }
}

/// Sends a batch of messages to one subscriber once it has a credit for each; false when the
/// subscriber is gone.
async fn deliver<R>(sub: &Subscriber<R>, slot: usize, messages: Vec<(R, tracing::Span)>) -> bool {
    let n = messages.len();
    if !sub.credits.try_take(n) {
        tokio::select! {
            () = sub.credits.take(n) => {}
            () = sub.tx.closed() => return false,
        }
    }
    sub.tx.send(Delivery::Messages { slot, messages }).is_ok()
}

/// A subscriber's stream of [`ClusterEvent`]s. Drop it to unsubscribe.
///
/// Lifecycle events are never dropped; user messages are held back at the workers (not
/// dropped) while more than `event_buffer` of them wait here unread, so keep reading.
pub struct EventStream<R> {
    rx: mpsc::UnboundedReceiver<Delivery<R>>,
    ended: bool,
    credits: Arc<Credits>,
    /// The rest of the batch of messages being read, and the slot they came from.
    slot: usize,
    batch: std::vec::IntoIter<(R, tracing::Span)>,
}

impl<R> EventStream<R> {
    /// The next event; `None` after [`ClusterEvent::Stopped`] (the last event).
    pub async fn recv(&mut self) -> Option<ClusterEvent<R>> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(message) = self.next_message() {
                return Some(message);
            }
            let delivery = self.rx.recv().await;
            if let Some(event) = self.open(delivery) {
                return self.note(event);
            }
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<ClusterEvent<R>> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(message) = self.next_message() {
                return Some(message);
            }
            let delivery = match self.rx.try_recv() {
                Ok(delivery) => Some(delivery),
                Err(mpsc::error::TryRecvError::Empty) => return None,
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
            if let Some(event) = self.open(delivery) {
                return self.note(event);
            }
        }
    }

    /// The next message of the batch being read; its credit goes back to the senders.
    fn next_message(&mut self) -> Option<ClusterEvent<R>> {
        let (message, span) = self.batch.next()?;
        self.credits.give_back();
        Some(ClusterEvent::Message { slot: self.slot, message, span })
    }

    /// `Some(event)` to return (a lifecycle event, or the queue's end as `Some(None)`), or
    /// `None` after a batch of messages became the one being read.
    fn open(&mut self, delivery: Option<Delivery<R>>) -> Option<Option<ClusterEvent<R>>> {
        match delivery {
            None => Some(None),
            Some(Delivery::Event(event)) => Some(Some(event)),
            Some(Delivery::Messages { slot, messages }) => {
                self.slot = slot;
                self.batch = messages.into_iter();
                None
            }
        }
    }

    fn note(&mut self, event: Option<ClusterEvent<R>>) -> Option<ClusterEvent<R>> {
        if matches!(event, None | Some(ClusterEvent::Stopped { .. })) {
            self.ended = true;
        }
        event
    }
}

impl<R> std::fmt::Debug for EventStream<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").field("queued", &self.rx.len()).field("batch", &self.batch.len()).finish()
    }
}
