//! The protocol's error types: [`ProtocolError`], and the typed reasons it carries for a
//! malformed handle datagram ([`HandleFault`]) and a bad worker environment
//! ([`BootstrapFault`]).
//!
//! This module imports nothing else of the crate, so every other module can use it.

use std::io;
use std::num::ParseIntError;
use std::os::fd::RawFd;

use nix::errno::Errno;

/// Everything that can go wrong on the wire.
///
/// Every variant is final for its connection: the peer that sees one closes the connection,
/// and the primary replaces the worker.
///
/// # Example
///
/// ```
/// use corral_protocol::ProtocolError;
///
/// let err = ProtocolError::FrameTooLarge { len: 10_000, max: 4096 };
/// assert_eq!(err.to_string(), "frame of 10000 bytes exceeds the maximum of 4096 bytes");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The socket failed.
    #[error("i/o error on the IPC channel: {0}")]
    Io(#[from] io::Error),
    /// A length prefix (received) or an encoded body (sent) is over the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// The frame's length in bytes.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A frame's body is not a valid postcard encoding of the expected type (garbage,
    /// truncated body, unknown enum variant).
    #[error("malformed frame body: {0}")]
    Decode(#[source] postcard::Error),
    /// A message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(#[source] postcard::Error),
    /// A frame's body decoded, but bytes were left over after it.
    #[error("malformed frame body: {extra} bytes after the message")]
    TrailingBytes {
        /// How many bytes were left.
        extra: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("connection closed in the middle of a frame ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes of the incomplete frame that had arrived.
        buffered: usize,
    },
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: we speak {ours}, the peer speaks {theirs}")]
    VersionMismatch {
        /// Our [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).
        ours: u32,
        /// The peer's.
        theirs: u32,
    },
    /// The hello names another slot or generation than the connection was made for.
    #[error(
        "hello from slot {slot} generation {generation}, expected slot {expected_slot} generation {expected_generation}"
    )]
    WrongPeer {
        /// Slot the connection was made for.
        expected_slot: u32,
        /// Generation the connection was made for.
        expected_generation: u64,
        /// Slot in the hello.
        slot: u32,
        /// Generation in the hello.
        generation: u64,
    },
    /// No hello arrived within the time allowed for it.
    #[error("no hello within {timeout_ms} ms")]
    NoHello {
        /// The time allowed, in milliseconds.
        timeout_ms: u64,
    },
    /// The first frame was not a hello.
    #[error("unexpected frame: the first frame is not a hello")]
    HelloNotFirst,
    /// The peer sent a control message that only the other side may send (e.g. a worker
    /// sending `Shutdown`).
    #[error("unexpected frame: {control} from the {peer}")]
    UnexpectedControl {
        /// The control message's name ([`Control::name`](crate::Control::name)).
        control: &'static str,
        /// Who sent it: `"worker"` or `"primary"`.
        peer: &'static str,
    },
    /// The connection closed before an expected frame arrived.
    #[error("connection closed")]
    Closed,
    /// A handle datagram is malformed (no fd, too many fds, truncated control data, bad header).
    #[error("malformed handle datagram: {0}")]
    BadHandle(#[from] HandleFault),
    /// A bootstrap environment variable is missing or malformed, or an inherited fd is not
    /// the socket it should be.
    #[error("bad worker environment: {0}")]
    Bootstrap(#[from] BootstrapFault),
}

/// What is wrong with a handle datagram ([`ProtocolError::BadHandle`]). Whatever fds the
/// datagram carried are closed; the channel goes on with the next datagram.
///
/// ```
/// use corral_protocol::{HandleFault, ProtocolError};
///
/// let err = ProtocolError::from(HandleFault::FdCount { got: 2 });
/// assert_eq!(err.to_string(), "malformed handle datagram: expected exactly one fd, got 2");
/// assert!(matches!(err, ProtocolError::BadHandle(HandleFault::FdCount { got: 2 })));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandleFault {
    /// The control data was truncated, so the datagram's fds did not arrive: the receiver is
    /// out of file descriptors (`EMFILE`: the kernel drops the fd), or the datagram carried
    /// more fds than the receive buffer holds.
    #[error("control data truncated: its fds did not arrive (out of fds, or too many sent)")]
    TooManyFds,
    /// The header is longer than [`MAX_HANDLE_HEADER`](crate::MAX_HANDLE_HEADER).
    #[error("header over {max} bytes")]
    HeaderTooLong {
        /// The maximum, in bytes.
        max: usize,
    },
    /// The datagram did not carry exactly one fd.
    #[error("expected exactly one fd, got {got}")]
    FdCount {
        /// How many fds it carried.
        got: usize,
    },
    /// The header is not a valid postcard encoding of a [`HandleHeader`](crate::HandleHeader).
    #[error("header does not decode: {0}")]
    HeaderDecode(#[source] postcard::Error),
    /// The header decoded, but bytes were left over after it.
    #[error("{extra} bytes after the header")]
    TrailingBytes {
        /// How many bytes were left.
        extra: usize,
    },
    /// An acknowledgement's refusals are too many, out of order, or name datagrams it does
    /// not acknowledge.
    #[error("bad refusals in an acknowledgement")]
    BadRefusal,
}

/// What is wrong with a worker's environment ([`ProtocolError::Bootstrap`]): the process
/// was started with the worker marker, but not (or not correctly) by a corral primary.
///
/// ```
/// use corral_protocol::bootstrap::{SLOT_ENV, WORKER_ENV, WorkerBootstrap};
/// use corral_protocol::{BootstrapFault, ProtocolError};
///
/// let env = [(WORKER_ENV.to_string(), "1".to_string())].into_iter().collect();
/// let err = WorkerBootstrap::from_vars(&env).unwrap_err();
/// assert!(matches!(err, ProtocolError::Bootstrap(BootstrapFault::Missing { var: SLOT_ENV })));
/// assert_eq!(err.to_string(), "bad worker environment: CORRAL_SLOT is not set");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapFault {
    /// A variable is not set.
    #[error("{var} is not set")]
    Missing {
        /// The variable's name.
        var: &'static str,
    },
    /// A variable is not a valid number (or out of range for its type).
    #[error("{var}={value:?} is not a valid number")]
    Invalid {
        /// The variable's name.
        var: &'static str,
        /// Its value.
        value: String,
        /// Why it does not parse.
        #[source]
        source: ParseIntError,
    },
    /// An inherited fd is not open.
    #[error("fd {fd} is not open: {errno}")]
    FdNotOpen {
        /// The fd number.
        fd: RawFd,
        /// The error of `fstat`.
        #[source]
        errno: Errno,
    },
    /// An inherited fd is open but not a socket.
    #[error("fd {fd} is not a socket")]
    FdNotSocket {
        /// The fd number.
        fd: RawFd,
    },
    /// An inherited fd cannot be made close-on-exec.
    #[error("fd {fd}: cannot set close-on-exec: {errno}")]
    Cloexec {
        /// The fd number.
        fd: RawFd,
        /// The error of `fcntl`.
        #[source]
        errno: Errno,
    },
}
