//! Deterministic tests of `FrameCodec`: the exact wire format, buffer handling and the
//! maximum frame length on both sides.

mod common;

use bytes::BytesMut;
use common::{UserMsg, expected_frame, raw_frame};
use corral_protocol::{
    Body, Control, DEFAULT_MAX_FRAME_LENGTH, Envelope, FrameCodec, Hello, LogLevel, PROTOCOL_VERSION, ProtocolError,
    TraceContext, WorkerStats,
};
use tokio_util::codec::{Decoder, Encoder};

fn sample_envelopes() -> Vec<Envelope<UserMsg>> {
    let trace = TraceContext { trace_id: [0xab; 16], span_id: [0xcd; 8], flags: 1, tracestate: "k=v".into() };
    vec![
        Envelope::control(1, Control::Hello(Hello::new(3, 9, 4242))),
        Envelope::control(2, Control::Ready),
        Envelope::control(3, Control::Ping { nonce: u64::MAX }),
        Envelope::control(
            4,
            Control::Pong {
                nonce: 17,
                stats: WorkerStats { in_flight: 2, handled: 3, messages_in: 4, messages_out: 5, pool: None },
            },
        ),
        Envelope::control(5, Control::Shutdown { deadline_ms: 30_000 }),
        Envelope::control(6, Control::Disconnect),
        Envelope::control(7, Control::Log { level: LogLevel::Warn, message: "disk ½ full".into() }),
        Envelope::control(8, Control::Error { message: String::new() }),
        Envelope::user(9, UserMsg::Unit),
        Envelope::user(10, UserMsg::Text("héllo wörld".into())).with_trace(Some(trace.clone())),
        Envelope::user(11, UserMsg::Bytes(vec![0, 1, 2, 255])),
        Envelope::user(12, UserMsg::Num(0)),
        Envelope::user(13, UserMsg::Mixed("m".into(), vec![9; 1000], 1 << 63)),
        Envelope::user(
            0,
            UserMsg::Request {
                id: 1,
                path: "/a/b".into(),
                headers: vec![("host".into(), "example".into())],
                body: None,
                signed: -5,
                ok: true,
            },
        )
        .with_trace(Some(trace)),
    ]
}

#[test]
fn every_sample_round_trips_in_one_buffer() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    let envs = sample_envelopes();
    let mut buf = common::encode_all(&mut codec, &envs);
    let mut decoded = Vec::new();
    while let Some(env) = codec.decode(&mut buf).unwrap() {
        decoded.push(env);
    }
    assert_eq!(decoded, envs);
    assert!(buf.is_empty());
}

#[test]
fn wire_format_of_ready_is_pinned() {
    // seq 1, no trace, Body::Control (variant 0), Control::Ready (variant 1).
    let mut codec: FrameCodec<(), ()> = FrameCodec::default();
    let mut buf = BytesMut::new();
    codec.encode(Envelope::control(1, Control::Ready), &mut buf).unwrap();
    assert_eq!(&buf[..], &[0, 0, 0, 4, 0x01, 0x00, 0x00, 0x01]);
}

#[test]
fn wire_format_of_user_unit_is_pinned() {
    // seq 2, no trace, Body::User (variant 1), `()` is zero bytes.
    let mut codec: FrameCodec<(), ()> = FrameCodec::default();
    let mut buf = BytesMut::new();
    codec.encode(Envelope::user(2, ()), &mut buf).unwrap();
    assert_eq!(&buf[..], &[0, 0, 0, 3, 0x02, 0x00, 0x01]);
}

#[test]
fn wire_format_of_hello_is_pinned() {
    // The hello must stay decodable across protocol versions, or the version check could
    // never report a mismatch: seq 0, no trace, Control (0), Hello (0), version, slot,
    // generation, pid (1000 = varint e8 07).
    assert_eq!(PROTOCOL_VERSION, 1, "update this test when the version changes");
    let mut codec: FrameCodec<(), ()> = FrameCodec::default();
    let mut buf = BytesMut::new();
    codec.encode(Envelope::control(0, Control::Hello(Hello::new(3, 5, 1000))), &mut buf).unwrap();
    assert_eq!(&buf[..], &[0, 0, 0, 9, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x05, 0xe8, 0x07]);
}

#[test]
fn wire_format_with_trace_context() {
    let trace = TraceContext { trace_id: [1; 16], span_id: [2; 8], flags: 1, tracestate: "a".into() };
    let env: Envelope<()> = Envelope::control(1, Control::Ready).with_trace(Some(trace));
    let mut codec: FrameCodec<(), ()> = FrameCodec::default();
    let mut buf = BytesMut::new();
    codec.encode(env.clone(), &mut buf).unwrap();
    let mut body = vec![0x01, 0x01];
    body.extend_from_slice(&[1; 16]);
    body.extend_from_slice(&[2; 8]);
    body.extend_from_slice(&[0x01, 0x01, b'a', 0x00, 0x01]);
    assert_eq!(&buf[..], &raw_frame(&body)[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(env));
}

#[test]
fn encode_appends_after_existing_bytes() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    let mut buf = BytesMut::from(&b"xyz"[..]);
    let env = Envelope::user(5, UserMsg::Text("after".into()));
    codec.encode(env.clone(), &mut buf).unwrap();
    assert_eq!(&buf[..3], b"xyz");
    assert_eq!(&buf[3..], &expected_frame(&env)[..]);
}

#[test]
fn length_prefix_is_big_endian_for_multi_byte_lengths() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    let env = Envelope::user(1, UserMsg::Bytes(vec![7; 70_000]));
    let mut buf = BytesMut::new();
    codec.encode(env.clone(), &mut buf).unwrap();
    let body_len = postcard::to_stdvec(&env).unwrap().len();
    assert!(body_len > 65_536);
    assert_eq!(&buf[..4], &(body_len as u32).to_be_bytes());
    assert_eq!(buf.len(), 4 + body_len);
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(env));
}

#[test]
fn default_max_frame_length() {
    assert_eq!(DEFAULT_MAX_FRAME_LENGTH, 8 * 1024 * 1024);
    let codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    assert_eq!(codec.max_frame_length(), DEFAULT_MAX_FRAME_LENGTH);
    assert_eq!(FrameCodec::<(), ()>::new(77).max_frame_length(), 77);
    assert!(format!("{codec:?}").contains("8388608"));
}

#[test]
fn frame_of_exactly_max_length_passes_both_ways() {
    let env = Envelope::user(1, UserMsg::Bytes(vec![1; 200]));
    let len = postcard::to_stdvec(&env).unwrap().len();
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::new(len);
    let mut buf = BytesMut::new();
    codec.encode(env.clone(), &mut buf).unwrap();
    assert_eq!(buf.len(), 4 + len);
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(env));
}

#[test]
fn incomplete_frames_wait_for_more_bytes() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    let env = Envelope::user(1, UserMsg::Text("wait".into()));
    let frame = expected_frame(&env);
    let mut buf = BytesMut::new();
    assert!(codec.decode(&mut buf).unwrap().is_none());
    buf.extend_from_slice(&frame[..2]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    buf.extend_from_slice(&frame[2..frame.len() - 1]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    buf.extend_from_slice(&frame[frame.len() - 1..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(env));
    assert!(buf.is_empty());
}

/// A frame whose length prefix arrives in one read and whose body arrives in the next (the
/// common case on a socket) must decode. The body's first four bytes here (seq 300 =
/// varint `ac 02`, ...) read as a big-endian u32 are far over the 8 MiB maximum.
#[test]
fn frame_split_right_after_length_prefix_decodes() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    let env = Envelope::user(300, UserMsg::Text("split".into()));
    let frame = expected_frame(&env);
    let mut buf = BytesMut::from(&frame[..4]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    buf.extend_from_slice(&frame[4..]);
    let result = codec.decode(&mut buf);
    assert!(matches!(result, Ok(Some(ref got)) if *got == env), "{result:?}");
}

/// The same with a small maximum: a frame under the maximum, split inside its body.
#[test]
fn frame_split_inside_body_decodes_with_small_max() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::new(64);
    let env = Envelope::user(1, UserMsg::Text("0123456789".into()));
    let frame = expected_frame(&env);
    assert!(frame.len() - 4 <= 64);
    let mut buf = BytesMut::from(&frame[..6]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    buf.extend_from_slice(&frame[6..]);
    let result = codec.decode(&mut buf);
    assert!(matches!(result, Ok(Some(ref got)) if *got == env), "{result:?}");
}

#[test]
fn decode_eof_on_empty_buffer_is_clean_end() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    let mut buf = BytesMut::new();
    assert!(codec.decode_eof(&mut buf).unwrap().is_none());
}

#[test]
fn decode_eof_returns_remaining_complete_frames() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    let envs = sample_envelopes();
    let mut buf = common::encode_all(&mut codec, &envs);
    let mut decoded = Vec::new();
    while let Some(env) = codec.decode_eof(&mut buf).unwrap() {
        decoded.push(env);
    }
    assert_eq!(decoded, envs);
}

#[test]
fn decoding_with_another_user_type_is_a_decode_error() {
    // The primary and the worker disagree on the user type: the receiver expects a bool
    // where the sender wrote `UserMsg::Num`'s variant index (3).
    let mut tx: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    let mut rx: FrameCodec<(), bool> = FrameCodec::default();
    let mut buf = BytesMut::new();
    tx.encode(Envelope::user(1, UserMsg::Num(7)), &mut buf).unwrap();
    let err = rx.decode(&mut buf).unwrap_err();
    assert!(matches!(err, ProtocolError::Decode(_)), "{err:?}");
}

#[test]
fn body_helpers() {
    let env = Envelope::user(4, UserMsg::Unit);
    assert_eq!(env.seq, 4);
    assert!(env.trace.is_none());
    assert_eq!(env.body, Body::User(UserMsg::Unit));
    let env: Envelope<UserMsg> = Envelope::control(5, Control::Disconnect).with_trace(Some(TraceContext::default()));
    assert_eq!(env.trace, Some(Box::new(TraceContext::default())));
    assert_eq!(env.body, Body::from(Control::Disconnect));
    assert_eq!(env.with_trace(None).trace, None);
}
