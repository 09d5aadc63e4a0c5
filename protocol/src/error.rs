//! The protocol's error type.

use std::io;

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
    BadHandle(String),
    /// A bootstrap environment variable is missing or malformed.
    #[error("bad worker environment: {0}")]
    Bootstrap(String),
}
