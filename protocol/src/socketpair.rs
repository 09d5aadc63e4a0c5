//! Creating the socketpairs that join a primary to a worker: [`stream_pair`] for the frame
//! stream, [`seqpacket_pair`] for the handle channel, each a [`SocketPair`].

use std::os::fd::OwnedFd;

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};

use crate::error::ProtocolError;

/// Two connected ends of a Unix socketpair: one for the primary, one for the worker.
///
/// Both ends are created close-on-exec; the spawner moves the worker's end to its fixed fd
/// number in the child (`dup2` clears close-on-exec on the copy only).
#[derive(Debug)]
pub struct SocketPair {
    /// The primary's end.
    pub primary: OwnedFd,
    /// The worker's end.
    pub worker: OwnedFd,
}

/// A `SOCK_STREAM` socketpair for the frame channel.
///
/// # Errors
///
/// [`ProtocolError::Io`] when the kernel refuses (out of fds).
///
/// ```
/// let pair = corral_protocol::stream_pair().unwrap();
/// drop(pair);
/// ```
pub fn stream_pair() -> Result<SocketPair, ProtocolError> {
    pair(SockType::Stream)
}

/// A `SOCK_SEQPACKET` socketpair for the handle channel (fd passing).
///
/// # Errors
///
/// [`ProtocolError::Io`] when the kernel refuses (out of fds).
///
/// ```
/// let pair = corral_protocol::seqpacket_pair().unwrap();
/// drop(pair);
/// ```
pub fn seqpacket_pair() -> Result<SocketPair, ProtocolError> {
    pair(SockType::SeqPacket)
}

fn pair(kind: SockType) -> Result<SocketPair, ProtocolError> {
    let (primary, worker) =
        socketpair(AddressFamily::Unix, kind, None, SockFlag::SOCK_CLOEXEC).map_err(|e| ProtocolError::Io(e.into()))?;
    Ok(SocketPair { primary, worker })
}
