//! Where the replies to one connection's requests go ([`ReplySink`]), and how a request's
//! [`ReplyTo`](crate::ReplyTo) learns it while its frame is decoded.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::control::Answer;

/// Where the replies of one connection go: its outgoing frame queue.
pub trait ReplySink: Send + Sync {
    /// Queues a [`Control::Reply`](crate::Control::Reply), waiting for room; `false` when the connection is closed.
    fn reply(&self, id: u64, answer: Answer) -> Pin<Box<dyn Future<Output = bool> + Send + '_>>;
    /// Queues a reply without waiting (used on drop): when the queue is full, a task sends it.
    fn reply_soon(&self, id: u64, answer: Answer);
}

thread_local! {
    /// Where the `ReplyTo`s decoded right now on this thread reply (set by the codec around
    /// one frame's decoding).
    static DECODING_FOR: std::cell::RefCell<Option<Arc<dyn ReplySink>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `decode` with `sink` as the way back of every `ReplyTo` it decodes.
pub(crate) fn decoding_with<T>(sink: Option<&Arc<dyn ReplySink>>, decode: impl FnOnce() -> T) -> T {
    let Some(sink) = sink else { return decode() };
    let previous = DECODING_FOR.with(|d| d.replace(Some(sink.clone())));
    let out = decode();
    DECODING_FOR.with(|d| *d.borrow_mut() = previous);
    out
}

/// The sink of the frame being decoded on this thread, if its codec has one.
pub(crate) fn decoding_for() -> Option<Arc<dyn ReplySink>> {
    DECODING_FOR.with(|s| s.borrow().clone())
}
