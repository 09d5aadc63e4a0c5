//! W3C `traceparent` rendering and parsing.

mod common;

use corral_protocol::TraceContext;
use proptest::prelude::*;
use proptest::sample::Index;

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn non_zero_ids() -> impl Strategy<Value = ([u8; 16], [u8; 8])> {
    (any::<[u8; 16]>(), any::<[u8; 8]>())
        .prop_filter("all-zero ids are invalid", |(t, s)| *t != [0; 16] && *s != [0; 8])
}

#[test]
fn w3c_example_parses() {
    let cx = TraceContext::from_traceparent(VALID).unwrap();
    assert_eq!(
        cx.trace_id,
        [0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36]
    );
    assert_eq!(cx.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
    assert_eq!(cx.flags, 1);
    assert!(cx.is_sampled());
    assert_eq!(cx.tracestate, "");
    assert_eq!(cx.traceparent(), VALID);
}

#[test]
fn unsampled_flags() {
    let cx = TraceContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
    assert_eq!(cx.flags, 0);
    assert!(!cx.is_sampled());
    // Other flag bits are kept but do not mean sampled.
    let cx = TraceContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe").unwrap();
    assert_eq!(cx.flags, 0xfe);
    assert!(!cx.is_sampled());
}

#[test]
fn surrounding_whitespace_is_ignored() {
    let cx = TraceContext::from_traceparent(&format!("  {VALID}\t\n")).unwrap();
    assert_eq!(cx.traceparent(), VALID);
}

#[test]
fn default_renders_all_zero_and_is_rejected_when_parsed() {
    let text = TraceContext::default().traceparent();
    assert_eq!(text, "00-00000000000000000000000000000000-0000000000000000-00");
    assert_eq!(TraceContext::from_traceparent(&text), None);
}

#[test]
fn malformed_headers_are_rejected() {
    let cases = [
        "",
        "garbage",
        "00",
        "00-4bf92f3577b34da6a3ce929d0e0e4736",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-001",
        // Version ff is forbidden; versions are two characters.
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "000-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        // Wrong id lengths.
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b77-01",
        // Non-hex digits.
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
        "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa 0ba902b-01",
        // All-zero ids are invalid.
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        // Other separators.
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736--00f067aa0ba902b7-01",
        // Multi-byte characters of the right byte length.
        "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
    ];
    for case in cases {
        assert_eq!(TraceContext::from_traceparent(case), None, "{case:?} was accepted");
    }
}

/// A version is two lowercase hex digits (W3C trace-context, `version = 2HEXDIGLC`).
#[test]
fn non_hex_version_is_rejected() {
    for version in ["0g", "zz", "--", "0 ", "G0"] {
        let text = format!("{version}{}", &VALID[2..]);
        assert_eq!(TraceContext::from_traceparent(&text), None, "{text:?} was accepted");
    }
}

/// Ids and flags are lowercase hex (`HEXDIGLC`); a header with uppercase digits is invalid.
#[test]
fn uppercase_hex_is_rejected() {
    for text in [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
    ] {
        assert_eq!(TraceContext::from_traceparent(text), None, "{text:?} was accepted");
    }
}

/// A version-00 header is exactly the four fields (55 characters); anything after them makes
/// it invalid.
#[test]
fn version_00_with_extra_fields_is_rejected() {
    for text in [format!("{VALID}-extra"), format!("{VALID}-"), format!("{VALID}-00")] {
        assert_eq!(TraceContext::from_traceparent(&text), None, "{text:?} was accepted");
    }
}

/// Later versions may append fields; the first four are read as version 00's.
#[test]
fn future_version_with_extra_fields_is_accepted() {
    let text = format!("01{}-what-ever", &VALID[2..]);
    let cx = TraceContext::from_traceparent(&text).expect("future version");
    assert_eq!(cx.traceparent(), VALID);
}

proptest! {
    #![proptest_config(common::config(512))]

    /// Rendering then parsing gives back the ids and flags (tracestate does not travel in
    /// the traceparent header).
    #[test]
    fn traceparent_round_trips((trace_id, span_id) in non_zero_ids(), flags in any::<u8>(), state in ".*") {
        let cx = TraceContext { trace_id, span_id, flags, tracestate: state };
        let text = cx.traceparent();
        prop_assert_eq!(text.len(), 55);
        prop_assert!(text.starts_with("00-"));
        prop_assert!(text.bytes().all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        let parsed = TraceContext::from_traceparent(&text).expect("rendered header parses");
        prop_assert_eq!(parsed, TraceContext { tracestate: String::new(), ..cx });
    }

    /// Parsing then rendering a valid lowercase header gives back the same text.
    #[test]
    fn valid_header_text_round_trips(
        trace in "[0-9a-f]{32}",
        span in "[0-9a-f]{16}",
        flags in "[0-9a-f]{2}",
    ) {
        prop_assume!(trace.bytes().any(|b| b != b'0') && span.bytes().any(|b| b != b'0'));
        let text = format!("00-{trace}-{span}-{flags}");
        let cx = TraceContext::from_traceparent(&text).expect("valid header");
        prop_assert_eq!(cx.traceparent(), text);
    }

    /// Replacing any character after the version of a valid header with a character that is
    /// neither a hex digit nor a dash makes it invalid (the version field has its own test).
    #[test]
    fn corrupting_one_character_is_rejected(
        (trace_id, span_id) in non_zero_ids(),
        pos in any::<Index>(),
        bad in "[g-zG-Z!_.+ /]",
    ) {
        let text = TraceContext { trace_id, span_id, flags: 1, tracestate: String::new() }.traceparent();
        let pos = 2 + pos.index(text.len() - 2);
        let mut corrupted = text.clone();
        corrupted.replace_range(pos..=pos, &bad);
        // A space at the end is trimmed away, which leaves the flags one character short.
        prop_assert_eq!(TraceContext::from_traceparent(&corrupted), None, "{:?}", corrupted);
    }

    /// Deleting any one character makes it invalid.
    #[test]
    fn deleting_one_character_is_rejected((trace_id, span_id) in non_zero_ids(), pos in any::<Index>()) {
        let text = TraceContext { trace_id, span_id, flags: 1, tracestate: String::new() }.traceparent();
        let pos = pos.index(text.len());
        let mut shorter = text.clone();
        shorter.remove(pos);
        prop_assert_eq!(TraceContext::from_traceparent(&shorter), None, "{:?}", shorter);
    }

    /// Arbitrary input never panics, and whatever is accepted renders to a well-formed header.
    #[test]
    fn arbitrary_input_never_panics(text in ".{0,80}") {
        if let Some(cx) = TraceContext::from_traceparent(&text) {
            prop_assert_ne!(cx.trace_id, [0; 16]);
            prop_assert_ne!(cx.span_id, [0; 8]);
            prop_assert_eq!(cx.traceparent().len(), 55);
        }
    }

    /// Near-valid input (the right shape, random content) never panics either.
    #[test]
    fn near_valid_input_never_panics(
        version in "[0-9a-zA-Z]{2}",
        trace in "[0-9a-fA-Z]{32}",
        span in "[0-9a-fA-Z]{16}",
        flags in "[0-9a-fA-Z]{2}",
    ) {
        let text = format!("{version}-{trace}-{span}-{flags}");
        if let Some(cx) = TraceContext::from_traceparent(&text) {
            prop_assert_eq!(cx.traceparent()[3..].to_ascii_lowercase(), text[3..].to_ascii_lowercase());
        }
    }
}
