//! The wire between the primary and its workers (the `corral-protocol` crate): postcard
//! [`Envelope`]s in length-prefixed frames ([`FrameCodec`]) over a socketpair, the [`Hello`]
//! that opens a connection ([`PROTOCOL_VERSION`]), the [`Control`] messages and their
//! [`Answer`]s, the handle channel that passes listening sockets and connections
//! ([`HandleHeader`], [`HandleAck`]), the trace context carried across
//! ([`TraceContext`]), and how a worker finds its ends ([`bootstrap`]). Most programs never
//! touch it: it is for tools that speak to workers directly, such as test doubles and the
//! fuzz targets.
//!
//! # Example
//!
//! ```
//! use bytes::BytesMut;
//! use corral::protocol::{Body, Envelope, FrameCodec};
//! use tokio_util::codec::{Decoder, Encoder};
//!
//! let mut codec: FrameCodec<String, String> = FrameCodec::new(1 << 20);
//! let mut buf = BytesMut::new();
//! let sent = Envelope { seq: 1, trace: None, body: Body::User("hi".to_string()) };
//! codec.encode(sent, &mut buf).unwrap();
//! let got = codec.decode(&mut buf).unwrap().unwrap();
//! assert!(matches!(got.body, Body::User(ref s) if s == "hi"));
//! ```

pub use corral_protocol::{
    Answer, BACKLOG, BindMode, Body, BootstrapFault, Control, DEFAULT_MAX_FRAME_LENGTH, Envelope, FrameCodec,
    HandleAck, HandleChannel, HandleFault, HandleHeader, HandleKind, Hello, ListenGrant, LogLevel, MAX_HANDLE_HEADER,
    MAX_REFUSED_PER_ACK, MAX_TRACESTATE, Outgoing, PROTOCOL_VERSION, PendingCall, PendingCalls, ProtocolError,
    QueuedAcks, ReplySink, SocketPair, TraceContext, bind, bind_first, enqueue, reply_sink, seqpacket_pair,
    stream_pair, write_frames, write_frames_until,
};
pub use corral_protocol::{bootstrap, spans};
