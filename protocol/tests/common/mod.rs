//! Helpers shared by the integration tests: a user message type with several kinds of
//! variant, proptest strategies for everything that travels in an `Envelope`, and a
//! deterministic proptest configuration.
#![allow(dead_code)]

use std::time::Duration;

use bytes::BytesMut;
use corral_protocol::{
    Answer, Body, Control, Envelope, FrameCodec, Hello, LogLevel, PoolStats, ProtocolError, TraceContext, WorkerStats,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder};

/// Upper bound for any single await in the async tests.
pub const STEP: Duration = Duration::from_secs(5);

/// A user message with unit, newtype, tuple and struct variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserMsg {
    Unit,
    Text(String),
    Bytes(Vec<u8>),
    Num(u64),
    Mixed(String, Vec<u8>, u64),
    Request { id: u32, path: String, headers: Vec<(String, String)>, body: Option<Vec<u8>>, signed: i64, ok: bool },
}

/// Proptest configuration: a fixed seed (the run is the same every time) and no failure
/// persistence files written next to the sources.
pub fn config(cases: u32) -> Config {
    Config { cases, rng_seed: RngSeed::Fixed(0x636f_7272_616c), failure_persistence: None, ..Config::default() }
}

pub fn user_msg() -> impl Strategy<Value = UserMsg> {
    prop_oneof![
        Just(UserMsg::Unit),
        any::<String>().prop_map(UserMsg::Text),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(UserMsg::Bytes),
        any::<u64>().prop_map(UserMsg::Num),
        (any::<String>(), prop::collection::vec(any::<u8>(), 0..64), any::<u64>())
            .prop_map(|(s, b, n)| UserMsg::Mixed(s, b, n)),
        (
            any::<u32>(),
            "[a-z/]{0,40}",
            prop::collection::vec((any::<String>(), any::<String>()), 0..4),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
            any::<i64>(),
            any::<bool>(),
        )
            .prop_map(|(id, path, headers, body, signed, ok)| UserMsg::Request {
                id,
                path,
                headers,
                body,
                signed,
                ok,
            }),
    ]
}

pub fn trace_context() -> impl Strategy<Value = TraceContext> {
    (any::<[u8; 16]>(), any::<[u8; 8]>(), any::<u8>(), any::<String>())
        .prop_map(|(trace_id, span_id, flags, tracestate)| TraceContext { trace_id, span_id, flags, tracestate })
}

pub fn log_level() -> impl Strategy<Value = LogLevel> {
    prop_oneof![Just(LogLevel::Error), Just(LogLevel::Warn), Just(LogLevel::Info), Just(LogLevel::Debug),]
}

pub fn pool_stats() -> impl Strategy<Value = PoolStats> {
    any::<[u64; 8]>().prop_map(|[threads, queue_capacity, queued, running, done, rejected, panicked, skipped]| {
        PoolStats { threads, queue_capacity, queued, running, done, rejected, panicked, skipped }
    })
}

pub fn worker_stats() -> impl Strategy<Value = WorkerStats> {
    (any::<[u64; 4]>(), proptest::option::of(pool_stats())).prop_map(
        |([in_flight, handled, messages_in, messages_out], pool)| WorkerStats {
            in_flight,
            handled,
            messages_in,
            messages_out,
            pool,
        },
    )
}

pub fn control() -> impl Strategy<Value = Control> {
    prop_oneof![
        (any::<u32>(), any::<u32>(), any::<u64>(), any::<u32>())
            .prop_map(|(version, slot, generation, pid)| Control::Hello(Hello { version, slot, generation, pid })),
        Just(Control::Ready),
        any::<u64>().prop_map(|nonce| Control::Ping { nonce }),
        (any::<u64>(), worker_stats()).prop_map(|(nonce, stats)| Control::Pong { nonce, stats }),
        any::<u64>().prop_map(|deadline_ms| Control::Shutdown { deadline_ms }),
        Just(Control::Disconnect),
        (log_level(), any::<String>()).prop_map(|(level, message)| Control::Log { level, message }),
        any::<String>().prop_map(|message| Control::Error { message }),
        (any::<u64>(), any::<Vec<u8>>()).prop_map(|(id, v)| Control::Reply { id, answer: Answer::Value(v) }),
        (any::<u64>(), any::<String>()).prop_map(|(id, why)| Control::Reply { id, answer: Answer::Failed(why) }),
        (proptest::option::of(any::<u32>()), any::<Vec<u8>>()).prop_map(|(to, message)| Control::Relay { to, message }),
        (any::<u32>(), any::<Vec<u8>>()).prop_map(|(from, message)| Control::Relayed { from, message }),
    ]
}

pub fn envelope() -> impl Strategy<Value = Envelope<UserMsg>> {
    let body = prop_oneof![control().prop_map(Body::from), user_msg().prop_map(Body::User)];
    (any::<u64>(), prop::option::of(trace_context()), body).prop_map(|(seq, trace, body)| Envelope {
        seq,
        trace: trace.map(Box::new),
        body,
    })
}

/// Encodes every envelope, in order, into one buffer.
pub fn encode_all(codec: &mut FrameCodec<UserMsg, UserMsg>, envs: &[Envelope<UserMsg>]) -> BytesMut {
    let mut buf = BytesMut::new();
    for env in envs {
        codec.encode(env.clone(), &mut buf).expect("encode");
    }
    buf
}

/// Feeds `wire` to `codec` cut at `cuts` (sorted offsets), decoding as much as possible after
/// every chunk, then calls `decode_eof` at the end. Returns every decoded envelope.
pub fn decode_in_chunks(
    codec: &mut FrameCodec<UserMsg, UserMsg>,
    wire: &[u8],
    cuts: &[usize],
) -> Result<Vec<Envelope<UserMsg>>, ProtocolError> {
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&wire.len())) {
        buf.extend_from_slice(&wire[start..end]);
        start = end;
        while let Some(env) = codec.decode(&mut buf)? {
            out.push(env);
        }
    }
    while let Some(env) = codec.decode_eof(&mut buf)? {
        out.push(env);
    }
    Ok(out)
}

/// The frame a well-behaved encoder produces for `env`: u32 BE length, then postcard.
pub fn expected_frame<M: Serialize>(env: &Envelope<M>) -> Vec<u8> {
    let body = postcard::to_stdvec(env).expect("postcard");
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// A frame with the given raw body and a correct length prefix.
pub fn raw_frame(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}
