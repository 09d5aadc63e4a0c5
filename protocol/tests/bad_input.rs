//! Malformed input gives the right typed `ProtocolError`, on both sides of the codec and in
//! the hello check.

mod common;

use bytes::BytesMut;
use common::{UserMsg, expected_frame, raw_frame};
use corral_protocol::{
    Control, Envelope, FrameCodec, HandleFault, HandleHeader, HandleKind, Hello, MAX_HANDLE_HEADER, PROTOCOL_VERSION,
    ProtocolError,
};
use serde::ser::{Error as _, Serialize, Serializer};
use tokio_util::codec::{Decoder, Encoder};

fn decode_one(
    codec: &mut FrameCodec<UserMsg, UserMsg>,
    bytes: &[u8],
) -> Result<Option<Envelope<UserMsg>>, ProtocolError> {
    let mut buf = BytesMut::from(bytes);
    codec.decode(&mut buf)
}

fn assert_decode_error(body: &[u8]) {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    let result = decode_one(&mut codec, &raw_frame(body));
    assert!(matches!(result, Err(ProtocolError::Decode(_))), "body {body:02x?}: {result:?}");
}

// ---- garbage bodies --------------------------------------------------------------------

#[test]
fn garbage_after_valid_length_prefix_is_decode_error() {
    // An unterminated varint for seq.
    assert_decode_error(&[0xff, 0xff, 0xff, 0xff]);
    // seq 1, then 5 is not an Option tag.
    assert_decode_error(&[0x01, 0x05, 0x00, 0x01]);
    // Body ends right after the trace tag.
    assert_decode_error(&[0x01, 0x00]);
    // User message variant with nothing after it (UserMsg::Text needs a string).
    assert_decode_error(&[0x01, 0x00, 0x01, 0x01]);
    // UserMsg::Text with invalid UTF-8.
    assert_decode_error(&[0x01, 0x00, 0x01, 0x01, 0x02, 0xff, 0xfe]);
    // A string length far past the end of the frame.
    assert_decode_error(&[0x01, 0x00, 0x01, 0x01, 0xff, 0xff, 0x03, b'a']);
    // A bool that is neither 0 nor 1 (UserMsg::Request { ok }).
    assert_decode_error(&[0x01, 0x00, 0x01, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00, 0x07]);
}

#[test]
fn zero_length_frame_is_decode_error() {
    assert_decode_error(&[]);
}

#[test]
fn unknown_enum_variant_is_decode_error() {
    // Body has two variants (Control = 0, User = 1).
    assert_decode_error(&[0x01, 0x00, 0x02]);
    // Control has eleven variants (Hello = 0 ... Error = 10).
    assert_decode_error(&[0x01, 0x00, 0x00, 0x0b]);
    // A huge variant index.
    assert_decode_error(&[0x01, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    // LogLevel has four variants: Control::Log (9) with level 4.
    assert_decode_error(&[0x01, 0x00, 0x00, 0x09, 0x04, 0x00]);
    // UserMsg has six variants.
    assert_decode_error(&[0x01, 0x00, 0x01, 0x06]);
}

#[test]
fn valid_neighbours_of_the_unknown_variants_decode() {
    // The same bytes with in-range indices, so the tests above fail for the right reason.
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    let ready = decode_one(&mut codec, &raw_frame(&[0x01, 0x00, 0x00, 0x0a, 0x00])).unwrap();
    assert_eq!(ready, Some(Envelope::control(1, Control::Error { message: String::new() })));
    let unit = decode_one(&mut codec, &raw_frame(&[0x01, 0x00, 0x01, 0x00])).unwrap();
    assert_eq!(unit, Some(Envelope::user(1, UserMsg::Unit)));
}

#[test]
fn trailing_bytes_after_valid_body() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    // Control::Ready, then two extra bytes inside the frame.
    let result = decode_one(&mut codec, &raw_frame(&[0x01, 0x00, 0x00, 0x01, 0xaa, 0xbb]));
    assert!(matches!(result, Err(ProtocolError::TrailingBytes { extra: 2 })), "{result:?}");

    // A real encoded user message with one byte appended inside the frame.
    let env = Envelope::user(77, UserMsg::Mixed("x".into(), vec![1, 2], 3));
    let mut body = postcard::to_stdvec(&env).unwrap();
    body.push(0);
    let result = decode_one(&mut codec, &raw_frame(&body));
    assert!(matches!(result, Err(ProtocolError::TrailingBytes { extra: 1 })), "{result:?}");
}

// ---- frames over the maximum -----------------------------------------------------------

#[test]
fn length_prefix_over_max_fails_before_the_body_arrives() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::new(1024);
    // Only the prefix is there; no body bytes at all.
    let result = decode_one(&mut codec, &1025u32.to_be_bytes());
    assert!(matches!(result, Err(ProtocolError::FrameTooLarge { len: 1025, max: 1024 })), "{result:?}");

    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    let result = decode_one(&mut codec, &u32::MAX.to_be_bytes());
    assert!(
        matches!(result, Err(ProtocolError::FrameTooLarge { len, max }) if len == u32::MAX as usize && max == 8 << 20),
        "{result:?}"
    );
}

#[test]
fn length_prefix_over_max_arriving_in_pieces() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::new(16);
    let mut buf = BytesMut::from(&[0u8, 0][..]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    buf.extend_from_slice(&[0]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    buf.extend_from_slice(&[17]);
    let result = codec.decode(&mut buf);
    assert!(matches!(result, Err(ProtocolError::FrameTooLarge { len: 17, max: 16 })), "{result:?}");
}

#[test]
fn length_prefix_at_max_waits_for_the_body() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::new(1024);
    let mut buf = BytesMut::from(&1024u32.to_be_bytes()[..]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
}

#[test]
fn oversized_frame_after_a_valid_one() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::new(64);
    let env = Envelope::user(1, UserMsg::Num(5));
    let mut bytes = expected_frame(&env);
    bytes.extend_from_slice(&65u32.to_be_bytes());
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(env));
    let result = codec.decode(&mut buf);
    assert!(matches!(result, Err(ProtocolError::FrameTooLarge { len: 65, max: 64 })), "{result:?}");
}

#[test]
fn frame_encoded_by_a_larger_codec_is_refused_by_a_smaller_one() {
    let env = Envelope::user(1, UserMsg::Bytes(vec![0; 100]));
    let len = postcard::to_stdvec(&env).unwrap().len();
    let mut big: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    let mut small: FrameCodec<UserMsg, UserMsg> = FrameCodec::new(len - 1);
    let mut buf = BytesMut::new();
    big.encode(env, &mut buf).unwrap();
    let result = small.decode(&mut buf);
    assert!(
        matches!(result, Err(ProtocolError::FrameTooLarge { len: l, max }) if l == len && max == len - 1),
        "{result:?}"
    );
}

#[test]
fn encoding_over_max_fails_and_leaves_the_buffer_unchanged() {
    let env = Envelope::user(1, UserMsg::Bytes(vec![0xee; 500]));
    let len = postcard::to_stdvec(&env).unwrap().len();
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::new(len - 1);

    // Empty buffer stays empty.
    let mut buf = BytesMut::new();
    let err = codec.encode(env.clone(), &mut buf).unwrap_err();
    assert!(matches!(err, ProtocolError::FrameTooLarge { len: l, max } if l == len && max == len - 1), "{err:?}");
    assert!(buf.is_empty());

    // A buffer already holding a frame keeps exactly that frame.
    let small = Envelope::user(2, UserMsg::Text("small".into()));
    codec.encode(small.clone(), &mut buf).unwrap();
    let before = buf.clone();
    let err = codec.encode(env, &mut buf).unwrap_err();
    assert!(matches!(err, ProtocolError::FrameTooLarge { .. }), "{err:?}");
    assert_eq!(buf, before);

    // The codec still works, and the buffer holds two clean frames.
    let after = Envelope::user(3, UserMsg::Unit);
    codec.encode(after.clone(), &mut buf).unwrap();
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(small));
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(after));
    assert!(buf.is_empty());
}

/// A user type whose `Serialize` fails.
#[derive(Debug)]
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(S::Error::custom("refused"))
    }
}

/// A user type postcard cannot encode: a sequence of unknown length.
#[derive(Debug)]
struct UnknownLengthSeq;

impl Serialize for UnknownLengthSeq {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(None)?;
        seq.serialize_element(&1u8)?;
        seq.end()
    }
}

#[test]
fn unencodable_message_is_encode_error_and_leaves_the_buffer_unchanged() {
    let mut codec: FrameCodec<Unserializable, ()> = FrameCodec::default();
    let mut buf = BytesMut::from(&b"keep"[..]);
    let err = codec.encode(Envelope::user(9, Unserializable), &mut buf).unwrap_err();
    assert!(matches!(err, ProtocolError::Encode(_)), "{err:?}");
    assert_eq!(&buf[..], b"keep");

    let mut codec: FrameCodec<UnknownLengthSeq, ()> = FrameCodec::default();
    let err = codec.encode(Envelope::user(9, UnknownLengthSeq), &mut buf).unwrap_err();
    assert!(matches!(err, ProtocolError::Encode(_)), "{err:?}");
    assert_eq!(&buf[..], b"keep");
}

// ---- end of stream ---------------------------------------------------------------------

#[test]
fn eof_inside_the_length_prefix_is_truncated() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    let mut buf = BytesMut::from(&[0u8, 0][..]);
    let result = codec.decode_eof(&mut buf);
    assert!(matches!(result, Err(ProtocolError::Truncated { buffered: 2 })), "{result:?}");
}

#[test]
fn eof_inside_the_body_is_truncated() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    let mut buf = BytesMut::from(&[0u8, 0, 0, 10, 1, 2, 3][..]);
    let result = codec.decode_eof(&mut buf);
    assert!(matches!(result, Err(ProtocolError::Truncated { .. })), "{result:?}");
}

#[test]
fn eof_after_complete_frame_and_partial_next_is_frame_then_truncated() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    let env = Envelope::user(1, UserMsg::Num(1));
    let mut bytes = expected_frame(&env);
    bytes.extend_from_slice(&[0, 0]);
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(codec.decode_eof(&mut buf).unwrap(), Some(env));
    let result = codec.decode_eof(&mut buf);
    assert!(matches!(result, Err(ProtocolError::Truncated { buffered: 2 })), "{result:?}");
}

/// A stream that ends right after a length prefix announcing a non-empty body has lost a
/// frame; that must not look like a clean end of stream.
#[test]
fn eof_right_after_the_length_prefix_is_truncated() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    let mut buf = BytesMut::from(&[0u8, 0, 0, 10][..]);
    let result = codec.decode_eof(&mut buf);
    assert!(matches!(result, Err(ProtocolError::Truncated { .. })), "{result:?}");
}

/// The same when `decode` saw the prefix first (what `FramedRead` does: `decode` on every
/// read, `decode_eof` once the socket reports EOF).
#[test]
fn eof_after_decode_saw_only_the_length_prefix_is_truncated() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    let mut buf = BytesMut::from(&[0u8, 0, 0, 10][..]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    let result = codec.decode_eof(&mut buf);
    assert!(matches!(result, Err(ProtocolError::Truncated { .. })), "{result:?}");
}

/// `buffered` counts the bytes of the incomplete frame that had arrived, prefix included.
#[test]
fn truncated_counts_every_buffered_byte_of_the_frame() {
    let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
    let mut buf = BytesMut::from(&[0u8, 0, 0, 10, 1, 2, 3][..]);
    let result = codec.decode_eof(&mut buf);
    assert!(matches!(result, Err(ProtocolError::Truncated { buffered: 7 })), "{result:?}");
}

// ---- hello ------------------------------------------------------------------------------

#[test]
fn hello_for_the_expected_peer_passes() {
    let hello = Hello::new(3, 7, 1234);
    assert_eq!(hello.version, PROTOCOL_VERSION);
    assert_eq!((hello.slot, hello.generation, hello.pid), (3, 7, 1234));
    hello.check(3, 7).unwrap();
}

#[test]
fn hello_with_another_version_is_version_mismatch() {
    for theirs in [0, PROTOCOL_VERSION + 1, u32::MAX] {
        let hello = Hello { version: theirs, ..Hello::new(3, 7, 1234) };
        let err = hello.check(3, 7).unwrap_err();
        assert!(
            matches!(err, ProtocolError::VersionMismatch { ours, theirs: t } if ours == PROTOCOL_VERSION && t == theirs),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(&theirs.to_string()), "{text}");
    }
}

#[test]
fn version_is_checked_before_the_peer() {
    let hello = Hello { version: PROTOCOL_VERSION + 1, ..Hello::new(99, 99, 1) };
    assert!(matches!(hello.check(3, 7), Err(ProtocolError::VersionMismatch { .. })));
}

#[test]
fn hello_from_another_slot_or_generation_is_wrong_peer() {
    let err = Hello::new(4, 7, 1).check(3, 7).unwrap_err();
    assert!(
        matches!(err, ProtocolError::WrongPeer { expected_slot: 3, expected_generation: 7, slot: 4, generation: 7 }),
        "{err:?}"
    );
    let err = Hello::new(3, 6, 1).check(3, 7).unwrap_err();
    assert!(
        matches!(err, ProtocolError::WrongPeer { expected_slot: 3, expected_generation: 7, slot: 3, generation: 6 }),
        "{err:?}"
    );
    let err = Hello::new(0, u64::MAX, 1).check(1, 0).unwrap_err();
    assert!(
        matches!(
            err,
            ProtocolError::WrongPeer { expected_slot: 1, expected_generation: 0, slot: 0, generation: u64::MAX }
        ),
        "{err:?}"
    );
}

#[test]
fn hello_pid_is_not_checked() {
    Hello::new(1, 1, 1).check(1, 1).unwrap();
    Hello::new(1, 1, u32::MAX).check(1, 1).unwrap();
}

#[test]
fn error_messages_name_the_numbers() {
    let err = ProtocolError::FrameTooLarge { len: 10_000, max: 4096 };
    assert_eq!(err.to_string(), "frame of 10000 bytes exceeds the maximum of 4096 bytes");
    let err = ProtocolError::TrailingBytes { extra: 3 };
    assert!(err.to_string().contains('3'));
    let err = ProtocolError::Truncated { buffered: 12 };
    assert!(err.to_string().contains("12"));
    let err = Hello::new(4, 8, 1).check(3, 7).unwrap_err();
    let text = err.to_string();
    for n in ["4", "8", "3", "7"] {
        assert!(text.contains(n), "{text}");
    }
}

// ---- the first frame and the fd-passing header, as pure functions ------------------------

#[test]
fn only_a_hello_for_the_peer_passes_as_first_frame() {
    let hello: Envelope<UserMsg> = Envelope::control(1, Control::Hello(Hello::new(3, 7, 10)));
    assert_eq!(hello.check_hello(3, 7).unwrap(), Hello::new(3, 7, 10));
    assert!(matches!(hello.check_hello(3, 8), Err(ProtocolError::WrongPeer { .. })));
    let user: Envelope<UserMsg> = Envelope::user(1, UserMsg::Num(1));
    assert!(matches!(user.check_hello(3, 7), Err(ProtocolError::HelloNotFirst)));
    let ready: Envelope<UserMsg> = Envelope::control(1, Control::Ready);
    assert!(matches!(ready.check_hello(3, 7), Err(ProtocolError::HelloNotFirst)));
}

#[test]
fn handle_header_decode_refuses_long_trailing_and_garbage_data() {
    let header = HandleHeader { id: 9, kind: HandleKind::Listener { addr: "127.0.0.1:1".into() }, trace: None };
    let mut bytes = header.encode().unwrap();
    assert_eq!(HandleHeader::decode(&bytes).unwrap(), header);
    bytes.extend([0, 0]);
    let err = HandleHeader::decode(&bytes).unwrap_err();
    assert!(matches!(err, ProtocolError::BadHandle(HandleFault::TrailingBytes { extra: 2 })), "{err}");
    let err = HandleHeader::decode(&[0u8; MAX_HANDLE_HEADER + 1]).unwrap_err();
    assert!(matches!(err, ProtocolError::BadHandle(HandleFault::HeaderTooLong { .. })), "{err}");
    let err = HandleHeader::decode(&[]).unwrap_err();
    assert!(matches!(err, ProtocolError::BadHandle(HandleFault::HeaderDecode(_))), "{err}");
}

#[test]
fn handle_header_encode_refuses_a_header_over_the_limit() {
    let addr = "x".repeat(MAX_HANDLE_HEADER);
    let header = HandleHeader { id: 1, kind: HandleKind::Listener { addr }, trace: None };
    let err = header.encode().unwrap_err();
    assert!(matches!(err, ProtocolError::FrameTooLarge { max: MAX_HANDLE_HEADER, .. }), "{err}");
}
