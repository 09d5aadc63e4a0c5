//! The `tracing` spans of IPC, shared by both sides so that their names and fields agree.
//!
//! They follow OpenTelemetry's messaging conventions: span kind producer / consumer,
//! `messaging.system = "corral"`, `messaging.operation.type` (`send`; `receive` where a message
//! is handed on, `process` where a handler runs in the span), `messaging.destination.name`
//! (`worker.<slot>` for messages to a worker, `primary` for a worker's reports), and on the
//! receiving side `messaging.message.id` (the frame's sequence number). The span name is the
//! operation (`send` / `receive`); `corral.slot` names the worker at the other end. Fields are
//! kept few: each costs an attribute per message when the spans are exported.
//! Their target is `corral::ipc` at `DEBUG` level, so a filter such as `corral::ipc=debug`
//! turns them on without the rest of corral's debug output; when they are filtered out (or no
//! subscriber is installed) creating them costs one branch.

use std::sync::OnceLock;

use tracing::Span;

use crate::trace::TraceContext;

/// The tracing target of the IPC spans.
pub const IPC_TARGET: &str = "corral::ipc";
/// The destination name of messages to the primary.
pub const PRIMARY_DESTINATION: &str = "primary";
/// Slots with a named destination of their own; higher ones share `worker`.
const NAMED_SLOTS: usize = 1024;

/// Whether IPC spans can be on at all: a quick check (one atomic load) of the most verbose
/// level any subscriber wants, so that the per-message code can skip making spans, carrying
/// them and wrapping futures in them when tracing is off.
///
/// ```
/// // No subscriber in this example.
/// assert!(!corral_protocol::spans::enabled());
/// ```
#[inline]
pub fn enabled() -> bool {
    tracing::level_enabled!(tracing::Level::DEBUG)
}

/// The destination name of messages to the worker in `slot`: `worker.<slot>`.
///
/// ```
/// assert_eq!(corral_protocol::spans::worker_destination(3), "worker.3");
/// ```
pub fn worker_destination(slot: usize) -> &'static str {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        // Built once per process, only when a span is recorded: a fixed set of small strings
        // that live as long as the process (no allocation per message).
        (0..NAMED_SLOTS).map(|slot| &*Box::leak(format!("worker.{slot}").into_boxed_str())).collect()
    });
    names.get(slot).copied().unwrap_or("worker")
}

/// The span of sending one message to `destination` (`corral.slot` is the worker at the other
/// end, or the sender when a worker reports). Its context goes into the frame; see
/// [`TraceContext::of_span`].
///
/// ```
/// let span = corral_protocol::spans::send("primary", 2);
/// assert!(span.is_disabled()); // no subscriber in this example
/// ```
pub fn send(destination: &'static str, slot: usize) -> Span {
    tracing::debug_span!(
        target: IPC_TARGET,
        "send",
        otel.kind = "producer",
        messaging.system = "corral",
        messaging.operation.type = "send",
        messaging.destination.name = destination,
        corral.slot = slot,
    )
}

/// The span of receiving one message (frame `seq`) from the other side, the child of the
/// sender's span when the frame carries its context. `operation` is `receive` where the
/// message is handed on (the primary's event stream) and `process` where the handler runs in
/// it (a worker's `handle`).
///
/// ```
/// let span = corral_protocol::spans::receive("worker.0", 0, 1, "process", None);
/// assert!(span.is_disabled());
/// ```
pub fn receive(
    destination: &'static str,
    slot: usize,
    seq: u64,
    operation: &'static str,
    parent: Option<&TraceContext>,
) -> Span {
    let span = tracing::debug_span!(
        target: IPC_TARGET,
        "receive",
        otel.kind = "consumer",
        messaging.system = "corral",
        messaging.operation.type = operation,
        messaging.destination.name = destination,
        messaging.message.id = seq,
        corral.slot = slot,
    );
    if let Some(parent) = parent {
        parent.set_parent_of(&span);
    }
    span
}
