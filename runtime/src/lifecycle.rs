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
//! Children: `restart` → `fork`; `reload` → `replace` → `fork`, `drain` (of the old
//! process); `shutdown` → `drain`.

use std::fmt::Display;

use tracing::Span;

/// The target of every lifecycle span.
pub const TARGET: &str = "corral::lifecycle";

/// Marks `span` as failed (OpenTelemetry status ERROR) with `error` as its message.
pub(crate) fn fail(span: &Span, error: impl Display) {
    span.record("otel.status_code", "ERROR");
    span.record("error.message", tracing::field::display(error));
}
