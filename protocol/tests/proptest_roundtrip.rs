//! Property tests: anything that can be put in an `Envelope` comes back out of the codec
//! unchanged, however the bytes are chunked on the way.

mod common;

use bytes::BytesMut;
use common::{UserMsg, config, decode_in_chunks, encode_all, envelope, expected_frame};
use corral_protocol::{Envelope, FrameCodec, ProtocolError};
use proptest::prelude::*;
use proptest::sample::Index;
use tokio_util::codec::{Decoder, Encoder};

/// Turns proptest indices into sorted cut offsets inside `0..=len`.
fn cut_points(len: usize, picks: &[Index]) -> Vec<usize> {
    let mut cuts: Vec<usize> = picks.iter().map(|i| i.index(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

proptest! {
    #![proptest_config(config(512))]

    /// encode → decode gives back the same envelope, and the bytes on the wire are exactly a
    /// u32 big-endian length followed by the postcard body.
    #[test]
    fn envelope_round_trips(env in envelope()) {
        let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
        let mut buf = BytesMut::new();
        codec.encode(env.clone(), &mut buf).unwrap();
        prop_assert_eq!(&buf[..], &expected_frame(&env)[..]);
        let decoded = codec.decode(&mut buf).unwrap();
        prop_assert_eq!(decoded, Some(env));
        prop_assert!(buf.is_empty());
        prop_assert!(codec.decode(&mut buf).unwrap().is_none());
        prop_assert!(codec.decode_eof(&mut buf).unwrap().is_none());
    }

    /// The same through `decode_eof`, which must return a complete frame like `decode`.
    #[test]
    fn envelope_round_trips_through_decode_eof(env in envelope()) {
        let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
        let mut buf = BytesMut::new();
        codec.encode(env.clone(), &mut buf).unwrap();
        prop_assert_eq!(codec.decode_eof(&mut buf).unwrap(), Some(env));
        prop_assert!(codec.decode_eof(&mut buf).unwrap().is_none());
    }

    /// Several frames back to back, delivered in arbitrary chunks (including empty ones and a
    /// cut right after a length prefix), decode to the same sequence, with the default
    /// maximum frame length.
    #[test]
    fn concatenated_frames_decode_in_arbitrary_chunks(
        envs in prop::collection::vec(envelope(), 1..12),
        picks in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
        let wire = encode_all(&mut codec, &envs);
        let cuts = cut_points(wire.len(), &picks);
        let decoded = decode_in_chunks(&mut codec, &wire, &cuts);
        prop_assert!(decoded.is_ok(), "decoding failed: {:?} (cuts {:?})", decoded.err(), cuts);
        prop_assert_eq!(decoded.unwrap(), envs);
    }

    /// As above, with a maximum too large for any u32 length prefix to exceed.
    #[test]
    fn concatenated_frames_decode_in_arbitrary_chunks_unbounded_max(
        envs in prop::collection::vec(envelope(), 1..12),
        picks in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::new(u32::MAX as usize);
        let wire = encode_all(&mut codec, &envs);
        let cuts = cut_points(wire.len(), &picks);
        let decoded = decode_in_chunks(&mut codec, &wire, &cuts);
        prop_assert!(decoded.is_ok(), "decoding failed: {:?} (cuts {:?})", decoded.err(), cuts);
        prop_assert_eq!(decoded.unwrap(), envs);
    }

    /// One byte at a time is the worst case of chunking.
    #[test]
    fn frames_decode_when_fed_one_byte_at_a_time(envs in prop::collection::vec(envelope(), 1..4)) {
        let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
        let wire = encode_all(&mut codec, &envs);
        let cuts: Vec<usize> = (1..wire.len()).collect();
        let decoded = decode_in_chunks(&mut codec, &wire, &cuts);
        prop_assert!(decoded.is_ok(), "decoding failed: {:?}", decoded.err());
        prop_assert_eq!(decoded.unwrap(), envs);
    }

    /// A stream that ends anywhere inside a frame is reported as truncated at EOF.
    #[test]
    fn stream_ending_inside_a_frame_is_truncated(env in envelope(), pick in any::<Index>()) {
        let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::default();
        let frame = expected_frame(&env);
        // Anywhere from 1 byte to all but the last byte of the frame.
        let cut = 1 + pick.index(frame.len() - 1);
        let mut buf = BytesMut::from(&frame[..cut]);
        let result = codec.decode_eof(&mut buf);
        prop_assert!(
            matches!(result, Err(ProtocolError::Truncated { .. })),
            "cut at {} of {}: {:?}", cut, frame.len(), result
        );
    }

    /// Arbitrary bytes never make the decoder panic, and every frame it does accept has a
    /// correct length prefix and a body under the maximum.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        picks in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let mut codec: FrameCodec<UserMsg, UserMsg> = FrameCodec::new(128);
        let cuts = cut_points(bytes.len(), &picks);
        match decode_in_chunks(&mut codec, &bytes, &cuts) {
            Ok(envs) => {
                // Everything decoded re-encodes to at most the bytes we fed in.
                let total: usize = envs.iter().map(|e| expected_frame(e).len()).sum();
                prop_assert!(total <= bytes.len());
            }
            Err(
                ProtocolError::Decode(_)
                | ProtocolError::TrailingBytes { .. }
                | ProtocolError::Truncated { .. }
                | ProtocolError::FrameTooLarge { .. },
            ) => {}
            Err(other) => prop_assert!(false, "unexpected error variant: {other:?}"),
        }
    }

    /// Envelopes whose user type is a plain `String` round trip too (the codec is generic).
    #[test]
    fn string_envelopes_round_trip(seq in any::<u64>(), text in any::<String>()) {
        let mut codec: FrameCodec<String, String> = FrameCodec::default();
        let mut buf = BytesMut::new();
        let env = Envelope::user(seq, text);
        codec.encode(env.clone(), &mut buf).unwrap();
        prop_assert_eq!(codec.decode(&mut buf).unwrap(), Some(env));
    }
}
