//! The fuzz harness: one function per target, each taking libFuzzer's raw input and returning
//! the frame limit it ran under (for the allocation budget of `corral_fuzz::peak::within_budget`).
//!
//! Shared by the libFuzzer targets (`fuzz/fuzz_targets/`, nightly) and by the stable replay
//! test `tests/fuzz_corpus.rs`, which runs every saved corpus file and every crash found
//! through these same functions. A function panics itself only when a property is broken (a
//! decoded frame over the limit, a value that does not survive a round trip, a buffer grown
//! past the limit, a hello check that lets the wrong frame through); any other panic comes
//! from the code under test, and is a finding.
//!
//! Every target is in [`TARGETS`], by the name of its corpus directory.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use bytes::{BufMut, BytesMut};
use corral::config_file::{ConfigFile, ConfigFileError};
use corral::control::{MAX_REQUEST, MAX_RESPONSE, Request, Response, read_frame};
use corral::protocol::{
    Body, Control, DEFAULT_MAX_FRAME_LENGTH, Envelope, FrameCodec, HandleAck, HandleHeader, HandleKind,
    MAX_REFUSED_PER_ACK, PROTOCOL_VERSION, ProtocolError, TraceContext,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::{Decoder, Encoder};

/// A fuzz target: the raw input in, the frame limit it ran under out.
pub type Target = fn(&[u8]) -> usize;

/// Every target, by name (the name of its libFuzzer binary and of its corpus directory).
pub const TARGETS: &[(&str, Target)] = &[
    ("frame_decoder", frame_decoder),
    ("control", control),
    ("handle_header", handle_header),
    ("control_request", control_request),
    ("config_file", config_file),
];

/// Width of a frame's length prefix.
const PREFIX: usize = 4;

/// Chunk sizes, drawn from a seed in the input (xorshift32): how the bytes of a stream arrive.
struct Chunks {
    state: u32,
    limit: usize,
}

impl Chunks {
    /// Chunks of 1 to `limit` bytes, `limit` chosen by `class` (0 – 7).
    fn new(seed: u16, class: u8) -> Self {
        let limit = [1, 2, 3, 5, 16, 100, 1024, 65536][usize::from(class & 7)];
        Chunks { state: u32::from(seed) | 0x1_0000, limit }
    }

    fn next(&mut self) -> usize {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        1 + (x as usize % self.limit)
    }
}

/// A user message type with most of serde's data model in it, for the frame decoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FuzzMessage {
    /// No data.
    Unit,
    /// Integers of every width, a bool, a char.
    Small(u8, i16, u32, i64, u128, bool, char),
    /// A string.
    Text(String),
    /// Bytes, as a sequence.
    Bytes(Vec<u8>),
    /// A sequence of tuples.
    Pairs(Vec<(u16, String)>),
    /// A map.
    Map(BTreeMap<String, u32>),
    /// Options and a fixed array.
    Fixed(Option<String>, [u8; 4], Option<()>),
    /// A struct variant.
    Record {
        /// An id.
        id: u64,
        /// A name.
        name: String,
        /// Tags.
        tags: Vec<String>,
    },
}

/// Target `frame_decoder`: a byte stream through [`FrameCodec`]'s `Decoder`, fed in chunks
/// of random sizes as a socket would deliver them, then `decode_eof`.
///
/// Input: a selector byte (frame limit in bits 0–2, chunk sizes in bits 3–5, the user message
/// type in bits 6–7), two bytes of chunk seed, then the stream. Checks: no frame over the limit
/// is ever returned; every frame consumes its prefix and body; the buffer stays within twice
/// the limit plus a chunk; every decoded frame encodes again and decodes to itself.
pub fn frame_decoder(data: &[u8]) -> usize {
    let [select, seed_lo, seed_hi, stream @ ..] = data else {
        return 0;
    };
    let max = [DEFAULT_MAX_FRAME_LENGTH, 0, 1, 8, 64, 255, 1024, 65536][usize::from(select & 7)];
    let chunks = Chunks::new(u16::from_le_bytes([*seed_lo, *seed_hi]), select >> 3);
    match select >> 6 {
        0 => decode_stream::<Vec<u8>>(stream, max, chunks),
        1 => decode_stream::<String>(stream, max, chunks),
        2 => decode_stream::<FuzzMessage>(stream, max, chunks),
        _ => decode_stream::<()>(stream, max, chunks),
    }
    max
}

fn decode_stream<M>(stream: &[u8], max: usize, mut chunks: Chunks)
where
    M: Serialize + DeserializeOwned + PartialEq + Clone + Debug,
{
    let mut codec: FrameCodec<M, M> = FrameCodec::new(max);
    let mut buf = BytesMut::new();
    let mut rest = stream;
    let mut largest_chunk = 0;
    while !rest.is_empty() {
        let n = chunks.next().min(rest.len());
        largest_chunk = largest_chunk.max(n);
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => check_frame(&mut codec, before - buf.len(), frame),
                Ok(None) => break,
                // Any error closes the connection: nothing more is read.
                Err(e) => {
                    check_error(&e, max);
                    return;
                }
            }
        }
        let bound = 2 * (PREFIX + max + largest_chunk) + (128 << 10);
        assert!(buf.capacity() <= bound, "buffer of {} bytes for a frame limit of {max}", buf.capacity());
    }
    loop {
        let before = buf.len();
        match codec.decode_eof(&mut buf) {
            Ok(Some(frame)) => check_frame(&mut codec, before - buf.len(), frame),
            Ok(None) => {
                assert!(buf.is_empty(), "decode_eof ended with {} bytes unread", buf.len());
                return;
            }
            Err(e) => {
                check_error(&e, max);
                return;
            }
        }
    }
}

/// A decoded frame: within the limit, and the same once encoded and decoded again.
fn check_frame<M>(codec: &mut FrameCodec<M, M>, consumed: usize, frame: Envelope<M>)
where
    M: Serialize + DeserializeOwned + PartialEq + Clone + Debug,
{
    let max = codec.max_frame_length();
    assert!(consumed >= PREFIX, "a frame consumed {consumed} bytes");
    assert!(consumed - PREFIX <= max, "decoded a frame of {} bytes, over the limit of {max}", consumed - PREFIX);
    if let Some(trace) = &frame.trace {
        check_trace(trace);
    }
    if let Body::Control(control) = &frame.body {
        check_control(control);
    }
    let mut again = BytesMut::new();
    if let Err(e) = codec.encode(frame.clone(), &mut again) {
        panic!("a decoded frame does not encode again: {e}: {frame:?}");
    }
    assert!(again.len() <= consumed, "re-encoded as {} bytes, read from {consumed}", again.len());
    match codec.decode(&mut again) {
        Ok(Some(back)) => assert_eq!(back, frame, "a frame changed in a round trip"),
        other => panic!("a re-encoded frame does not decode: {other:?}"),
    }
    assert!(again.is_empty());
}

fn check_error(e: &ProtocolError, max: usize) {
    if let ProtocolError::FrameTooLarge { len, max: said } = e {
        assert!(*len > max && *said == max, "{e} for a limit of {max}");
    }
    let _ = e.to_string();
}

/// A received trace context: its text form parses back, and it converts to an
/// OpenTelemetry parent without panicking (whatever its `tracestate`).
fn check_trace(trace: &TraceContext) {
    let text = trace.traceparent();
    match TraceContext::from_traceparent(&text) {
        Some(back) => {
            assert_eq!((back.trace_id, back.span_id, back.flags), (trace.trace_id, trace.span_id, trace.flags));
        }
        None => assert!(trace.trace_id == [0; 16] || trace.span_id == [0; 8], "{text} does not parse back"),
    }
    let _ = trace.is_sampled();
    drop(trace.to_otel());
    check_text(&trace.tracestate);
}

/// What the receiving side does with the strings of a control message.
fn check_control(control: &Control) {
    let _ = control.name();
    match control {
        Control::Listen { addr, .. } => check_text(addr),
        Control::ListenAck { result: Ok(grant), .. } => {
            check_text(&grant.addr);
            let _ = grant.scheduling.primary_accepts();
        }
        Control::ListenAck { result: Err(refusal), .. } => {
            let _ = refusal.to_string();
            let _ = refusal.io_error();
            check_text(refusal.addr());
        }
        Control::Log { message, .. } | Control::Error { message } => check_text(message),
        _ => {}
    }
}

/// Strings from the wire are parsed as addresses and as W3C trace headers in places.
fn check_text(text: &str) {
    let _ = text.parse::<SocketAddr>();
    if let Some(cx) = TraceContext::from_headers(text, Some(text)) {
        assert!(cx.trace_id != [0; 16] && cx.span_id != [0; 8]);
        drop(cx.to_otel());
    }
}

/// Target `control`: one frame as a worker's first frame, through [`FrameCodec`] and
/// [`Envelope::check_hello`] (the primary's handshake).
///
/// Input: a mode byte (bit 0 clear: the body is a [`Control`] message, the harness adds the
/// envelope's sequence number, no trace and the control tag; set: the body is a whole
/// envelope), then, when at least 12 bytes follow, the expected slot (u32 LE) and generation
/// (u64 LE), then the body. Checks: the check passes exactly for a hello of this version, slot
/// and generation, with the right error otherwise; the frame survives a round trip.
pub fn control(data: &[u8]) -> usize {
    let [mode, rest @ ..] = data else {
        return 0;
    };
    let (slot, generation, body) = match rest.split_first_chunk::<12>() {
        Some((head, body)) => {
            let (slot, generation) = head.split_at(4);
            let slot = u32::from_le_bytes(slot.try_into().unwrap_or_default());
            let generation = u64::from_le_bytes(generation.try_into().unwrap_or_default());
            (slot, generation, body)
        }
        None => (0, 0, rest),
    };
    // seq 1, no trace context, Body::Control.
    let prelude: &[u8] = if mode & 1 == 0 { &[1, 0, 0] } else { &[] };
    let max = DEFAULT_MAX_FRAME_LENGTH;
    let Ok(len) = u32::try_from(prelude.len() + body.len()) else {
        return max;
    };
    let mut frame = BytesMut::with_capacity(PREFIX + len as usize);
    frame.put_u32(len);
    frame.extend_from_slice(prelude);
    frame.extend_from_slice(body);
    let mut codec: FrameCodec<Vec<u8>, Vec<u8>> = FrameCodec::new(max);
    let consumed = frame.len();
    let envelope = match codec.decode(&mut frame) {
        Ok(Some(envelope)) => envelope,
        Ok(None) => panic!("a whole frame of {len} bytes (limit {max}) was not decoded"),
        Err(e) => {
            check_error(&e, max);
            return max;
        }
    };
    let checked = envelope.check_hello(slot, generation);
    match (envelope.body.as_control(), &checked) {
        (Some(Control::Hello(hello)), Ok(got)) => {
            assert_eq!(hello, got);
            assert_eq!((hello.version, hello.slot, hello.generation), (PROTOCOL_VERSION, slot, generation));
        }
        (Some(Control::Hello(hello)), Err(ProtocolError::VersionMismatch { ours, theirs })) => {
            assert_eq!((*ours, *theirs), (PROTOCOL_VERSION, hello.version));
            assert_ne!(hello.version, PROTOCOL_VERSION);
        }
        (Some(Control::Hello(hello)), Err(ProtocolError::WrongPeer { .. })) => {
            assert_eq!(hello.version, PROTOCOL_VERSION);
            assert!(hello.slot != slot || hello.generation != generation);
        }
        (_, Ok(hello)) => panic!("{hello:?} passed the check, from a frame that is not a hello"),
        (Some(Control::Hello(_)), Err(e)) => panic!("unexpected error for a hello: {e}"),
        (_, Err(e)) => assert!(matches!(e, ProtocolError::HelloNotFirst), "unexpected error for another frame: {e}"),
    }
    if let Err(e) = &checked {
        let _ = e.to_string();
    }
    check_frame(&mut codec, consumed, envelope);
    max
}

/// A datagram read as a worker's acknowledgement: a typed error, or one within its bounds
/// that survives a round trip.
fn handle_ack(data: &[u8]) {
    match HandleAck::decode(data) {
        Ok(ack) => {
            assert!(ack.refused.len() <= MAX_REFUSED_PER_ACK, "{} refusals", ack.refused.len());
            assert!(ack.refused.iter().all(|&n| n < ack.taken), "a refusal beyond the count: {ack:?}");
            let bytes = match ack.encode() {
                Ok(bytes) => bytes,
                Err(e) => panic!("a decoded acknowledgement does not encode again: {e}: {ack:?}"),
            };
            match HandleAck::decode(&bytes) {
                Ok(back) => assert_eq!(back, ack, "an acknowledgement changed in a round trip"),
                Err(e) => panic!("a re-encoded acknowledgement does not decode: {e}"),
            }
        }
        Err(e) => assert!(matches!(e, ProtocolError::BadHandle(_)), "unexpected error: {e}"),
    }
}

/// Target `handle_header`: the data of an fd-passing datagram through
/// [`HandleHeader::decode`], as `HandleChannel::recv` decodes it, then what the worker does
/// with it (the peer address parsed, the trace context converted).
///
/// Input: the datagram's data (over `MAX_HANDLE_HEADER` is refused). Checks: a decoded header
/// encodes again, within the limit, and decodes to itself.
pub fn handle_header(data: &[u8]) -> usize {
    // The same channel carries the workers' acknowledgements back: the same bytes as one.
    handle_ack(data);
    let max = corral::protocol::MAX_HANDLE_HEADER;
    let header = match HandleHeader::decode(data) {
        Ok(header) => header,
        Err(e) => {
            assert!(matches!(e, ProtocolError::BadHandle(_)), "unexpected error: {e}");
            let _ = e.to_string();
            return max;
        }
    };
    assert!(data.len() <= max);
    match &header.kind {
        HandleKind::Listener { addr } => check_text(addr),
        HandleKind::Connection { peer, .. } => check_text(peer),
    }
    if let Some(trace) = &header.trace {
        check_trace(trace);
    }
    let bytes = match header.encode() {
        Ok(bytes) => bytes,
        Err(e) => panic!("a decoded header does not encode again: {e}: {header:?}"),
    };
    assert!(bytes.len() <= data.len(), "re-encoded as {} bytes, read from {}", bytes.len(), data.len());
    match HandleHeader::decode(&bytes) {
        Ok(back) => assert_eq!(back, header, "a header changed in a round trip"),
        Err(e) => panic!("a re-encoded header does not decode: {e}"),
    }
    max
}

/// A reader that hands out its bytes in chunks, with a `Pending` before each (its waker
/// woken at once), as a socket does.
struct Trickle<'a> {
    data: &'a [u8],
    chunks: Chunks,
    ready: bool,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.ready && !this.data.is_empty() {
            this.ready = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.ready = false;
        let n = this.chunks.next().min(this.data.len()).min(buf.remaining());
        buf.put_slice(&this.data[..n]);
        this.data = &this.data[n..];
        Poll::Ready(Ok(()))
    }
}

/// Polls `future` to its end; it must need no more polls than `bound` (every `Pending` of a
/// [`Trickle`] is followed by progress, so a future that takes more is spinning).
fn finish<F: Future>(future: F, bound: usize) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..bound {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
    panic!("the read did not finish within {bound} polls");
}

/// Target `control_request`: a control-socket client's byte stream through
/// [`read_frame`] (4-byte big-endian length, JSON body), one request after another until the
/// first error, as the server reads them; or (mode bit 0 set) a server's stream of responses,
/// as the `corral` client reads them.
///
/// Input: a mode byte (bit 0: requests or responses; bits 1–3: chunk sizes), a chunk seed
/// byte, then the stream. Checks: each read ends within a bounded number of polls (no hang);
/// each decoded request serializes and reads back to itself.
pub fn control_request(data: &[u8]) -> usize {
    let [mode, seed, stream @ ..] = data else {
        return 0;
    };
    let mut reader = Trickle { data: stream, chunks: Chunks::new(u16::from(*seed), mode >> 1), ready: false };
    let bound = 2 * stream.len() + 8;
    if mode & 1 == 0 {
        while let Ok(request) = finish(read_frame::<Request>(&mut reader, MAX_REQUEST), bound) {
            check_request(&request);
        }
        MAX_REQUEST
    } else {
        while let Ok(response) = finish(read_frame::<Response>(&mut reader, MAX_RESPONSE), bound) {
            if let Err(e) = serde_json::to_vec(&response) {
                panic!("a decoded response does not serialize: {e}: {response:?}");
            }
        }
        MAX_RESPONSE
    }
}

fn check_request(request: &Request) {
    let json = match serde_json::to_vec(request) {
        Ok(json) => json,
        Err(e) => panic!("a decoded request does not serialize: {e}: {request:?}"),
    };
    match serde_json::from_slice::<Request>(&json) {
        Ok(back) => assert_eq!(&back, request, "a request changed in a round trip"),
        Err(e) => panic!("a serialized request does not read back: {e}: {}", String::from_utf8_lossy(&json)),
    }
}

/// Target `config_file`: text through [`ConfigFile::parse`] and
/// [`ConfigFile::cluster_config`], as `corral run --config` reads a file.
///
/// Input: the file (not UTF-8: skipped, as reading it would fail first). Checks: an error's
/// line is within the file; an accepted configuration validates, and its backoff stays within
/// its bounds for any attempt.
pub fn config_file(data: &[u8]) -> usize {
    let Ok(text) = std::str::from_utf8(data) else {
        return 0;
    };
    let file = match ConfigFile::parse("fuzz.toml", text) {
        Ok(file) => file,
        Err(e) => {
            check_config_error(&e, text);
            return 0;
        }
    };
    let config = match file.cluster_config() {
        Ok(config) => config,
        Err(e) => {
            check_config_error(&e, text);
            return 0;
        }
    };
    if let Err(e) = config.validate() {
        panic!("an accepted configuration does not validate: {e}");
    }
    // The runtime turns these into deadlines: `now + d` (a heartbeat interval's next tick,
    // `listen_timeout` plus the spawn allowance of a replacement). None may overflow.
    let foreign = config.exec.foreign();
    let durations = [
        config.min_uptime,
        config.period,
        config.kill_timeout,
        config.listen_timeout,
        config.heartbeat_interval,
        config.heartbeat_timeout,
        config.backoff.base,
        config.backoff.max,
    ];
    let now = std::time::Instant::now();
    for d in durations.into_iter().chain(foreign.and_then(|f| f.watchdog)) {
        let later = d.checked_add(std::time::Duration::from_secs(60)).and_then(|d| now.checked_add(d));
        assert!(later.is_some(), "an accepted duration of {d:?} overflows a deadline");
    }
    let backoff = config.backoff;
    for attempt in [0, 1, 2, 7, 31, 32, 63, 64, 1000, u32::MAX] {
        let nominal = backoff.nominal(attempt);
        assert!(nominal <= backoff.max, "{nominal:?} over the cap {:?}", backoff.max);
        for draw in [0.0, 0.5, 1.0] {
            assert!(backoff.delay_with(attempt, draw) <= nominal);
        }
    }
    let _ = format!("{config:?}");
    0
}

fn check_config_error(e: &ConfigFileError, text: &str) {
    let _ = e.to_string();
    if let Some(line) = e.line {
        let lines = text.matches('\n').count() + 1;
        assert!((1..=lines).contains(&line), "error on line {line} of a file of {lines} lines: {e}");
    }
}
