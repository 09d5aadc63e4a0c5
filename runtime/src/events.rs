//! Fan-out of [`ClusterEvent`]s to subscribers, without losing any.
//!
//! Each subscriber has its own unbounded queue, so a lifecycle event (fork, exit, gave-up…)
//! never waits and is never dropped. User messages from workers are the only events that can
//! come in floods; each takes one of the subscriber's `event_buffer` credits, given back when
//! the subscriber receives it. A worker's IPC reader that finds no credit waits, which stops it
//! reading the socket: backpressure reaches the worker instead of memory growing without end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::ClusterEvent;

struct Delivery<R> {
    event: ClusterEvent<R>,
    _credit: Option<OwnedSemaphorePermit>,
}

struct Subscriber<R> {
    tx: mpsc::UnboundedSender<Delivery<R>>,
    credits: Arc<Semaphore>,
}

impl<R> Clone for Subscriber<R> {
    fn clone(&self) -> Self {
        Subscriber { tx: self.tx.clone(), credits: self.credits.clone() }
    }
}

/// The shared list of subscribers (copy-on-write, so that message senders can keep a snapshot
/// and check a version number instead of locking per message).
pub(crate) struct EventBus<R> {
    subscribers: Mutex<Arc<Vec<Subscriber<R>>>>,
    version: AtomicU64,
    buffer: usize,
}

/// A sender's cached view of the subscribers, for [`EventBus::emit_message`].
pub(crate) struct BusSnapshot<R> {
    version: u64,
    subscribers: Arc<Vec<Subscriber<R>>>,
}

impl<R> Default for BusSnapshot<R> {
    fn default() -> Self {
        BusSnapshot { version: u64::MAX, subscribers: Arc::new(Vec::new()) }
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
        let (tx, rx) = mpsc::unbounded_channel();
        let sub = Subscriber { tx, credits: Arc::new(Semaphore::new(self.buffer)) };
        self.with_list(|list| {
            let mut next: Vec<_> = list.iter().filter(|s| !s.tx.is_closed()).cloned().collect();
            next.push(sub);
            *list = Arc::new(next);
        });
        self.version.fetch_add(1, Ordering::Release);
        EventStream { rx, ended: false }
    }

    /// Delivers a lifecycle event to every subscriber, at once.
    pub(crate) fn emit(&self, event: ClusterEvent<R>) {
        let list = self.with_list(|list| list.clone());
        let mut closed = false;
        for sub in list.iter() {
            closed |= sub.tx.send(Delivery { event: event.clone(), _credit: None }).is_err();
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

    /// Delivers a user message to every subscriber, waiting for a credit from each.
    pub(crate) async fn emit_message(
        &self,
        snapshot: &mut BusSnapshot<R>,
        slot: usize,
        message: R,
        span: tracing::Span,
    ) {
        let version = self.version.load(Ordering::Acquire);
        if version != snapshot.version {
            snapshot.subscribers = self.with_list(|list| list.clone());
            snapshot.version = version;
        }
        let subs = &snapshot.subscribers;
        let Some((last, rest)) = subs.split_last() else {
            return; // Nobody listens: dropped, as Node drops a message with no listener.
        };
        let mut closed = false;
        for sub in rest {
            closed |= !deliver(sub, slot, message.clone(), span.clone()).await;
        }
        closed |= !deliver(last, slot, message, span).await;
        if closed {
            self.prune();
        }
    }
}

/// Sends one message to one subscriber; false when the subscriber is gone.
async fn deliver<R>(sub: &Subscriber<R>, slot: usize, message: R, span: tracing::Span) -> bool {
    let credit = match sub.credits.clone().try_acquire_owned() {
        Ok(credit) => credit,
        Err(_) => {
            tokio::select! {
                credit = sub.credits.clone().acquire_owned() => match credit {
                    Ok(credit) => credit,
                    Err(_) => return false,
                },
                () = sub.tx.closed() => return false,
            }
        }
    };
    sub.tx.send(Delivery { event: ClusterEvent::Message { slot, message, span }, _credit: Some(credit) }).is_ok()
}

/// A subscriber's stream of [`ClusterEvent`]s. Drop it to unsubscribe.
///
/// Lifecycle events are never dropped; user messages are held back at the workers (not
/// dropped) while more than `event_buffer` of them wait here unread, so keep reading.
pub struct EventStream<R> {
    rx: mpsc::UnboundedReceiver<Delivery<R>>,
    ended: bool,
}

impl<R> EventStream<R> {
    /// The next event; `None` after [`ClusterEvent::Stopped`] (the last event).
    pub async fn recv(&mut self) -> Option<ClusterEvent<R>> {
        if self.ended {
            return None;
        }
        let event = self.rx.recv().await.map(|d| d.event);
        self.note(event)
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<ClusterEvent<R>> {
        if self.ended {
            return None;
        }
        let event = self.rx.try_recv().ok().map(|d| d.event);
        self.note(event)
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
        f.debug_struct("EventStream").field("queued", &self.rx.len()).finish()
    }
}
