//! Moving an OpenTelemetry span context into a frame and out of it again, through
//! `tracing-opentelemetry`: the sender injects the context of its `send` span, the receiver
//! makes its own span a child of it, so one trace crosses the process boundary.
//!
//! Both directions cost one branch when the span is disabled (no subscriber, or a filter that
//! leaves corral's spans out): nothing is built or copied.
//!
//! Holds the `impl` blocks of [`TraceContext`] that touch `tracing` (`of_span`,
//! `set_parent_of`, `from_headers` …) and [`MAX_TRACESTATE`].

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::trace::TraceContext;

/// The longest `tracestate` carried. W3C lets a propagator drop a `tracestate` over 512
/// characters; dropping it keeps every frame and fd-passing header small (the latter must fit
/// one datagram), while the trace and span ids always travel.
pub const MAX_TRACESTATE: usize = 512;

fn bounded_tracestate(header: String) -> String {
    if header.len() > MAX_TRACESTATE { String::new() } else { header }
}

impl TraceContext {
    /// The OpenTelemetry context of `span`, to put in a frame; `None` when `span` is disabled
    /// or no OpenTelemetry layer records it (so the frame carries nothing).
    ///
    /// ```
    /// use corral_protocol::TraceContext;
    /// // No subscriber here: the span is disabled and nothing is injected.
    /// let span = tracing::info_span!("send");
    /// assert!(TraceContext::of_span(&span).is_none());
    /// ```
    pub fn of_span(span: &tracing::Span) -> Option<TraceContext> {
        if span.is_disabled() {
            return None;
        }
        let context = span.context();
        let otel_span = context.span();
        let sc = otel_span.span_context();
        if !sc.is_valid() {
            return None;
        }
        Some(TraceContext {
            trace_id: sc.trace_id().to_bytes(),
            span_id: sc.span_id().to_bytes(),
            flags: sc.trace_flags().to_u8(),
            tracestate: bounded_tracestate(sc.trace_state().header()),
        })
    }

    /// This context as a remote OpenTelemetry parent (invalid when the ids are all zero; a
    /// malformed `tracestate` is dropped, the ids are kept).
    ///
    /// ```
    /// use corral_protocol::TraceContext;
    /// use opentelemetry::trace::TraceContextExt;
    /// let cx = TraceContext { trace_id: [1; 16], span_id: [2; 8], flags: 1, tracestate: String::new() };
    /// let otel = cx.to_otel();
    /// assert!(otel.span().span_context().is_remote());
    /// assert!(otel.span().span_context().is_sampled());
    /// ```
    pub fn to_otel(&self) -> opentelemetry::Context {
        let state = if self.tracestate.is_empty() {
            TraceState::default()
        } else {
            self.tracestate.parse().unwrap_or_default()
        };
        let sc = SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            TraceFlags::new(self.flags),
            true,
            state,
        );
        opentelemetry::Context::new().with_remote_span_context(sc)
    }

    /// Makes `span` a child of this remote context. Call it before the span is first entered
    /// (OpenTelemetry fixes a span's parent when the span starts); returns whether the parent
    /// was set (`false` when the span is disabled, has no OpenTelemetry layer, or had started).
    ///
    /// ```
    /// use corral_protocol::TraceContext;
    /// let cx = TraceContext { trace_id: [1; 16], span_id: [2; 8], flags: 1, tracestate: String::new() };
    /// let span = tracing::info_span!("receive");
    /// assert!(!cx.set_parent_of(&span)); // no subscriber: nothing to parent
    /// ```
    pub fn set_parent_of(&self, span: &tracing::Span) -> bool {
        self.set_parent_linking(span, None)
    }

    /// As [`set_parent_of`](Self::set_parent_of), and links `span` to the OpenTelemetry
    /// context of `link` (when it has one): for a span that continues a caller's trace but
    /// also belongs to a local one, e.g. an HTTP request carrying `traceparent` on a connection
    /// that has its own `connection` span.
    ///
    /// ```
    /// use corral_protocol::TraceContext;
    /// let cx = TraceContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    /// let span = tracing::info_span!("request");
    /// assert!(!cx.set_parent_linking(&span, Some(&tracing::Span::current())));
    /// ```
    pub fn set_parent_linking(&self, span: &tracing::Span, link: Option<&tracing::Span>) -> bool {
        if span.is_disabled() || self.trace_id == [0; 16] || self.span_id == [0; 8] {
            return false;
        }
        if let Some(link) = link.filter(|l| !l.is_disabled()) {
            let linked = link.context().span().span_context().clone();
            span.add_link(linked); // Ignored when not valid.
        }
        span.set_parent(self.to_otel()).is_ok()
    }

    /// The context a caller sent in W3C headers: a `traceparent` value (required) and a
    /// `tracestate` value (dropped when over [`MAX_TRACESTATE`]).
    ///
    /// ```
    /// use corral_protocol::TraceContext;
    /// let cx = TraceContext::from_headers("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Some("v=1")).unwrap();
    /// assert_eq!(cx.tracestate, "v=1");
    /// assert!(TraceContext::from_headers("nonsense", None).is_none());
    /// ```
    pub fn from_headers(traceparent: &str, tracestate: Option<&str>) -> Option<TraceContext> {
        let mut cx = TraceContext::from_traceparent(traceparent)?;
        cx.tracestate = bounded_tracestate(tracestate.unwrap_or_default().trim().to_string());
        Some(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_tracestate_is_dropped_a_short_one_kept() {
        assert_eq!(bounded_tracestate("a=1,b=2".into()), "a=1,b=2");
        assert_eq!(bounded_tracestate("k=".to_string() + &"v".repeat(MAX_TRACESTATE)), "");
    }

    #[test]
    fn the_remote_parent_keeps_ids_flags_and_state() {
        let cx = TraceContext { trace_id: [7; 16], span_id: [9; 8], flags: 1, tracestate: "vendor=x".into() };
        let otel = cx.to_otel();
        let sc = otel.span().span_context().clone();
        assert_eq!(sc.trace_id().to_bytes(), [7; 16]);
        assert_eq!(sc.span_id().to_bytes(), [9; 8]);
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(sc.trace_state().header(), "vendor=x");
    }

    #[test]
    fn a_malformed_tracestate_keeps_the_ids() {
        let cx = TraceContext { trace_id: [7; 16], span_id: [9; 8], flags: 0, tracestate: "not a tracestate".into() };
        let sc = cx.to_otel().span().span_context().clone();
        assert!(sc.is_valid());
        assert!(!sc.is_sampled());
        assert_eq!(sc.trace_state().header(), "");
    }
}
