//! Lifecycle spans: `fork`, `restart`, `reload`, `replace`, `shutdown`, `drain`.
//!
//! Every span has the target [`TARGET`] and level INFO, so one filter directive
//! (`corral::lifecycle=info`) turns them all on; bridged to OpenTelemetry (for instance by
//! `tracing-opentelemetry`) they form one trace per lifecycle operation. Spans cross actor
//! boundaries as `tracing::Span` values inside the actor messages and end when their last
//! handle is dropped. With tracing off, creating one is a disabled-callsite check and nothing
//! is formatted.
//!
//! | span       | opened by                                   | ends when                                  |
//! |------------|---------------------------------------------|--------------------------------------------|
//! | `fork`     | a supervisor starting a process             | the worker said hello, or the start failed |
//! | `restart`  | a supervisor deciding to restart its slot   | the new process is online                  |
//! | `reload`   | the cluster starting a rolling reload       | the reload finished                        |
//! | `replace`  | a supervisor starting a replacement         | the old process exited, or it failed       |
//! | `shutdown` | the cluster beginning to stop               | the cluster stopped                        |
//! | `drain`    | a supervisor telling a process to drain     | the process exited                         |
//!
//! A worker killed for a missed heartbeat records its hang report (see
//! [`HangReport`](crate::sys::hang::HangReport)) as `corral.hang` on the spans it holds open and on the
//! `restart` that follows.
//!
//! Children: `restart` → `fork`; `reload` → `replace` → `fork`, `drain` (of the old
//! process); `shutdown` → `drain`.

use std::fmt::Display;
use std::time::Duration;

use tracing::Span;
use tracing::field::Empty;

/// The target of every lifecycle span.
pub const TARGET: &str = "corral::lifecycle";

/// Marks `span` as failed (OpenTelemetry status ERROR) with `error` as its message.
pub(crate) fn fail(span: &Span, error: impl Display) {
    span.record("otel.status_code", "ERROR");
    span.record("error.message", tracing::field::display(error));
}

/// `fork`: a supervisor starting a process (child of `parent`: a `restart` or `replace`).
pub(crate) fn fork(parent: &Span, slot: usize, generation: u64, role: &'static str) -> Span {
    tracing::info_span!(
        target: TARGET,
        parent: parent,
        "fork",
        corral.slot = slot,
        corral.generation = generation,
        corral.role = role,
        process.pid = Empty,
        corral.hang = Empty,
        otel.status_code = Empty,
        error.message = Empty,
    )
}

/// `restart`: a supervisor deciding to restart its slot (a root span).
pub(crate) fn restart(slot: usize, attempt: u32, delay: Duration, exit: &dyn Display) -> Span {
    tracing::info_span!(
        target: TARGET,
        parent: None,
        "restart",
        corral.slot = slot,
        corral.restart.attempt = attempt,
        corral.restart.delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        corral.exit = %exit,
        corral.hang = Empty,
        otel.status_code = Empty,
        error.message = Empty,
    )
}

/// `replace`: a supervisor starting a replacement (child of `parent`, the `reload`).
pub(crate) fn replace(parent: &Span, slot: usize, reason: &'static str) -> Span {
    tracing::info_span!(
        target: TARGET,
        parent: parent,
        "replace",
        corral.slot = slot,
        corral.replace.reason = reason,
        corral.replace.old_pid = Empty,
        corral.replace.new_pid = Empty,
        corral.hang = Empty,
        otel.status_code = Empty,
        error.message = Empty,
    )
}

/// `drain`: a supervisor telling a process to drain (child of `parent`: `shutdown` or
/// `replace`).
pub(crate) fn drain(parent: &Span, slot: usize, generation: u64, pid: u32) -> Span {
    tracing::info_span!(
        target: TARGET,
        parent: parent,
        "drain",
        corral.slot = slot,
        corral.generation = generation,
        process.pid = pid,
        corral.killed = Empty,
        corral.exit = Empty,
        corral.hang = Empty,
    )
}

/// `reload`: the cluster starting a rolling reload (a root span).
pub(crate) fn reload(slots: usize) -> Span {
    tracing::info_span!(
        target: TARGET,
        parent: None,
        "reload",
        corral.slots = slots,
        corral.replaced = Empty,
        otel.status_code = Empty,
        error.message = Empty,
    )
}

/// `shutdown`: the cluster beginning to stop (a root span).
pub(crate) fn shutdown(slots: usize) -> Span {
    tracing::info_span!(
        target: TARGET,
        parent: None,
        "shutdown",
        corral.slots = slots,
        otel.status_code = Empty,
        error.message = Empty,
    )
}
