//! corral's wire protocol: what the primary and its worker processes say to each other.
//!
//! This crate holds no actors and no policy, only the shapes on the wire and the code that
//! moves them:
//!
//! * [`Envelope`]: one frame, with a sequence number, an optional W3C [`TraceContext`] and a
//!   [`Body`] that is either a [`Control`] message of corral's own or a user message `M`.
//! * [`FrameCodec`]: u32 big-endian length prefix + postcard body, with a maximum frame length;
//!   plugs into `tokio_util::codec::{FramedRead, FramedWrite}`.
//! * [`Hello`] and [`PROTOCOL_VERSION`]: the first frame a worker sends.
//! * [`HandleChannel`]: file descriptors (listening or accepted sockets) passed with
//!   `SCM_RIGHTS` over a separate `SOCK_SEQPACKET` socketpair, each with a small [`HandleHeader`].
//! * [`spans`]: the IPC `tracing` spans (messaging conventions); [`TraceContext::of_span`]
//!   and [`TraceContext::set_parent_of`] carry their OpenTelemetry context inside frames.
//! * [`call`]: typed request/response ([`ReplyTo`], [`PendingCalls`], [`CallError`]).
//! * [`bootstrap`]: how a worker process finds its ends of the socketpairs (fixed fd numbers,
//!   named in the environment).
//! * [`hang_record`]: the raw backtrace a hung worker's signal handler writes for the primary
//!   to name.
//!
//! Linux only.
//!
//! # Example
//!
//! ```
//! use corral_protocol::{Body, Control, Envelope, FrameCodec};
//! use bytes::BytesMut;
//! use tokio_util::codec::{Decoder, Encoder};
//!
//! let mut codec: FrameCodec<String, String> = FrameCodec::new(1024);
//! let mut buf = BytesMut::new();
//! codec.encode(Envelope::user(7, "hi".to_string()), &mut buf).unwrap();
//! codec.encode(Envelope::control(8, Control::Ready), &mut buf).unwrap();
//! let first = codec.decode(&mut buf).unwrap().unwrap();
//! assert_eq!(first.seq, 7);
//! assert!(matches!(first.body, Body::User(ref s) if s == "hi"));
//! let second = codec.decode(&mut buf).unwrap().unwrap();
//! assert!(matches!(second.body.as_control(), Some(Control::Ready)));
//! ```
#![warn(missing_docs)]
#![deny(unnameable_types)]

pub mod bootstrap;
pub mod call;
mod codec;
mod control;
pub mod death_notice;
mod envelope;
mod error;
mod handle;
mod handshake;
pub mod hang_record;
mod listen;
mod outgoing;
mod propagation;
mod reply_sink;
mod socketpair;
pub mod spans;
mod trace;

pub use call::{CallError, PendingCall, PendingCalls, ReplyError, ReplySink, ReplyTo, reply_sink};
pub use codec::{DEFAULT_MAX_FRAME_LENGTH, FrameCodec};
pub use control::{Answer, Control, ListenGrant, LogLevel, PoolStats, Scheduling, WorkerStats};
pub use envelope::{Body, Envelope};
pub use error::{BootstrapFault, HandleFault, ProtocolError};
pub use handle::{
    HandleAck, HandleChannel, HandleHeader, HandleKind, MAX_HANDLE_HEADER, MAX_REFUSED_PER_ACK, QueuedAcks,
};
pub use handshake::{Hello, PROTOCOL_VERSION};
pub use listen::{BACKLOG, BindMode, ListenRefusal, bind, bind_first};
pub use outgoing::{Outgoing, enqueue, write_frames, write_frames_until};
pub use propagation::MAX_TRACESTATE;
pub use socketpair::{SocketPair, seqpacket_pair, stream_pair};
pub use trace::TraceContext;
