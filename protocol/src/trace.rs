//! [`TraceContext`]: W3C trace context as it travels inside a frame, and its `traceparent`
//! text form. Moving it in and out of `tracing` spans is in `propagation`.

use serde::{Deserialize, Serialize};

/// A W3C trace context (`traceparent` fields plus `tracestate`), carried by an [`Envelope`]
/// so that a trace crosses the process boundary as parent → child.
///
/// The fields are stored in binary form; [`TraceContext::traceparent`] renders the
/// `traceparent` header and [`TraceContext::from_traceparent`] parses one.
///
/// [`Envelope`]: crate::Envelope
///
/// # Example
///
/// ```
/// use corral_protocol::TraceContext;
///
/// let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let cx = TraceContext::from_traceparent(header).unwrap();
/// assert!(cx.is_sampled());
/// assert_eq!(cx.traceparent(), header);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// The 16-byte trace id.
    pub trace_id: [u8; 16],
    /// The 8-byte id of the parent span.
    pub span_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
    /// The `tracestate` header, empty when there is none.
    pub tracestate: String,
}

impl TraceContext {
    /// Whether the sampled flag is set.
    ///
    /// ```
    /// # use corral_protocol::TraceContext;
    /// assert!(!TraceContext::default().is_sampled());
    /// ```
    pub fn is_sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// Renders the W3C `traceparent` header (version 00).
    ///
    /// ```
    /// # use corral_protocol::TraceContext;
    /// let cx = TraceContext { trace_id: [1; 16], span_id: [2; 8], flags: 1, tracestate: String::new() };
    /// assert_eq!(cx.traceparent(), "00-01010101010101010101010101010101-0202020202020202-01");
    /// ```
    pub fn traceparent(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        push_hex(&mut out, &self.trace_id);
        out.push('-');
        push_hex(&mut out, &self.span_id);
        out.push('-');
        push_hex(&mut out, &[self.flags]);
        out
    }

    /// Parses a W3C `traceparent` header; `None` when it is malformed or names the all-zero
    /// (invalid) trace or span id.
    ///
    /// ```
    /// # use corral_protocol::TraceContext;
    /// assert!(TraceContext::from_traceparent("garbage").is_none());
    /// ```
    pub fn from_traceparent(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        let mut v = [0u8; 1];
        parse_hex(version, &mut v)?;
        // Version ff is invalid; version 00 has exactly four fields; later versions may add
        // fields after the flags.
        if v[0] == 0xff || (v[0] == 0 && parts.next().is_some()) {
            return None;
        }
        if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        let mut cx = TraceContext::default();
        parse_hex(trace, &mut cx.trace_id)?;
        parse_hex(span, &mut cx.span_id)?;
        let mut f = [0u8; 1];
        parse_hex(flags, &mut f)?;
        cx.flags = f[0];
        if cx.trace_id == [0; 16] || cx.span_id == [0; 8] {
            return None;
        }
        Some(cx)
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
}

fn parse_hex(text: &str, out: &mut [u8]) -> Option<()> {
    let bytes = text.as_bytes();
    if bytes.len() != out.len() * 2 {
        return None;
    }
    // W3C trace context allows lowercase hex only.
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(u32::from(b - b'0')),
        b'a'..=b'f' => Some(u32::from(b - b'a' + 10)),
        _ => None,
    };
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = digit(pair[0])?;
        let lo = digit(pair[1])?;
        // Two hex digits always fit a byte.
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(())
}
