//! Passing file descriptors (`SCM_RIGHTS`) over a `SOCK_SEQPACKET` socketpair.
//!
//! Never mixed into the frame stream: a plain read on a stream socket silently drops attached
//! fds. Each datagram carries one fd and a small postcard [`HandleHeader`] saying what it is.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, PoisonError};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::error::{HandleFault, ProtocolError};
use crate::trace::TraceContext;

/// The largest header accepted, in bytes. SEQPACKET datagrams are capped by `SO_SNDBUF`, so
/// only small headers travel here; large payloads stay on the frame stream.
pub const MAX_HANDLE_HEADER: usize = 4096;

/// Room for this many fds in the receive buffer; a datagram carrying more is refused.
const MAX_FDS_PER_DATAGRAM: usize = 4;

/// What a passed fd is, sent in the same datagram.
///
/// ```
/// use corral_protocol::{HandleHeader, HandleKind};
///
/// let h = HandleHeader { id: 1, kind: HandleKind::Listener { addr: "127.0.0.1:8080".into() }, trace: None };
/// assert_eq!(h.id, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleHeader {
    /// Correlates the handle with a request on the frame stream (e.g. a listen request).
    pub id: u64,
    /// What the fd is.
    pub kind: HandleKind,
    /// Trace context of the span that handed the fd over (e.g. the primary's accept span).
    pub trace: Option<TraceContext>,
}

impl HandleHeader {
    /// The header as it travels in a datagram (postcard), at most [`MAX_HANDLE_HEADER`] bytes.
    ///
    /// ```
    /// use corral_protocol::{HandleHeader, HandleKind};
    ///
    /// let h = HandleHeader { id: 2, kind: HandleKind::Connection { listener: 1, peer: "127.0.0.1:9".into() }, trace: None };
    /// let bytes = h.encode().unwrap();
    /// assert_eq!(HandleHeader::decode(&bytes).unwrap(), h);
    /// ```
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Encode`] when postcard refuses it, [`ProtocolError::FrameTooLarge`] for
    /// a header over [`MAX_HANDLE_HEADER`] (e.g. a very long address).
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let bytes = postcard::to_stdvec(self).map_err(ProtocolError::Encode)?;
        if bytes.len() > MAX_HANDLE_HEADER {
            return Err(ProtocolError::FrameTooLarge { len: bytes.len(), max: MAX_HANDLE_HEADER });
        }
        Ok(bytes)
    }

    /// Decodes the data of a received datagram: exactly one postcard header, nothing after it.
    ///
    /// ```
    /// use corral_protocol::{HandleFault, HandleHeader, ProtocolError};
    ///
    /// let err = HandleHeader::decode(&[0xff]).unwrap_err();
    /// assert!(matches!(err, ProtocolError::BadHandle(HandleFault::HeaderDecode(_))));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ProtocolError::BadHandle`] with [`HandleFault::HeaderTooLong`] for data over
    /// [`MAX_HANDLE_HEADER`], [`HandleFault::HeaderDecode`] for data that is not a header,
    /// [`HandleFault::TrailingBytes`] for bytes left after it.
    pub fn decode(data: &[u8]) -> Result<HandleHeader, ProtocolError> {
        if data.len() > MAX_HANDLE_HEADER {
            return Err(HandleFault::HeaderTooLong { max: MAX_HANDLE_HEADER }.into());
        }
        let (header, rest): (HandleHeader, _) = postcard::take_from_bytes(data).map_err(HandleFault::HeaderDecode)?;
        if !rest.is_empty() {
            return Err(HandleFault::TrailingBytes { extra: rest.len() }.into());
        }
        Ok(header)
    }
}

/// The kinds of fd that travel between primary and worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandleKind {
    /// A listening socket, bound to `addr` (shared scheduling: the worker accepts on it).
    Listener {
        /// The address the socket is bound to.
        addr: String,
    },
    /// An accepted connection, from the listener registered under `listener` (round robin:
    /// the primary accepted it).
    Connection {
        /// The id of the listen request the connection belongs to.
        listener: u64,
        /// The peer's address, as the primary saw it.
        peer: String,
    },
}

/// One end of the SEQPACKET handle channel.
///
/// The worker's end ([`new`](Self::new)) is registered with the tokio reactor: it waits for
/// datagrams. The primary's end ([`unwatched`](Self::unwatched)) is not: the primary sends
/// without waiting while there is room and reads acknowledgements when it chooses
/// ([`drain_acks`](Self::drain_acks)), so that neither an acknowledgement arriving nor the
/// worker freeing room (each datagram it reads) wakes the primary's event loop; it registers
/// for a moment only when it must wait.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use corral_protocol::{HandleChannel, HandleHeader, HandleKind, seqpacket_pair};
/// use std::os::fd::AsFd;
///
/// let pair = seqpacket_pair().unwrap();
/// let a = HandleChannel::new(pair.primary).unwrap();
/// let b = HandleChannel::new(pair.worker).unwrap();
/// let file = std::fs::File::open("/dev/null").unwrap();
/// let header = HandleHeader { id: 5, kind: HandleKind::Listener { addr: "x".into() }, trace: None };
/// a.send(&header, file.as_fd()).await.unwrap();
/// let (got, _fd) = b.recv().await.unwrap().unwrap();
/// assert_eq!(got, header);
/// # }
/// ```
#[derive(Debug)]
pub struct HandleChannel {
    fd: Watch,
    /// Datagrams sent so far; held across each `sendmsg`, so that a datagram's number is its
    /// place in the channel even when several tasks send at once.
    sent: Mutex<u64>,
}

/// A worker's acknowledgement on the handle channel: it has received the first `taken`
/// datagrams the primary sent on it, and took every one of them but those in `refused`. A
/// datagram without fds; cumulative, so one acknowledges a whole batch (SEQPACKET keeps
/// datagrams in order).
///
/// A datagram is refused when its fd did not arrive: the worker is out of file descriptors
/// (`EMFILE`: the kernel drops the fd and truncates the control data), or the datagram was
/// malformed. The primary still holds its copy of such a connection and hands it to a worker
/// again, after a short backoff.
///
/// On the wire: `taken` as a postcard varint, then, only when some were refused, the postcard
/// `Vec<u64>` of their numbers; an acknowledgement without refusals is the same bytes as
/// before refusals existed.
///
/// ```
/// use corral_protocol::HandleAck;
///
/// let ack = HandleAck { taken: 5, refused: vec![3] };
/// assert_eq!(HandleAck::decode(&ack.encode().unwrap()).unwrap(), ack);
/// assert_eq!(HandleAck::taken(3).encode().unwrap(), [3]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandleAck {
    /// How many datagrams the worker has received on the channel since it started.
    pub taken: u64,
    /// The numbers of those it received without taking, in increasing order (at most
    /// [`MAX_REFUSED_PER_ACK`], each below `taken`).
    pub refused: Vec<u64>,
}

/// The most refusals one [`HandleAck`] carries (a worker acknowledges at most this many
/// datagrams at once).
pub const MAX_REFUSED_PER_ACK: usize = 64;

impl HandleAck {
    /// An acknowledgement of the first `taken` datagrams, all taken.
    pub fn taken(taken: u64) -> Self {
        HandleAck { taken, refused: Vec::new() }
    }

    /// The datagram's bytes (see the type's docs).
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Encode`] if postcard fails (it does not for these types).
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let mut bytes = postcard::to_stdvec(&self.taken).map_err(ProtocolError::Encode)?;
        if !self.refused.is_empty() {
            bytes.extend(postcard::to_stdvec(&self.refused).map_err(ProtocolError::Encode)?);
        }
        Ok(bytes)
    }

    /// Reads an acknowledgement, with or without refusals.
    ///
    /// ```
    /// use corral_protocol::{HandleAck, HandleFault, ProtocolError};
    ///
    /// // Refusing datagram 7 of the first 5 makes no sense.
    /// let bad = HandleAck { taken: 5, refused: vec![7] }.encode().unwrap();
    /// assert!(matches!(HandleAck::decode(&bad), Err(ProtocolError::BadHandle(HandleFault::BadRefusal))));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ProtocolError::BadHandle`]: [`HandleFault::HeaderDecode`] for bytes that do not
    /// decode, [`HandleFault::TrailingBytes`] for bytes left over, [`HandleFault::BadRefusal`]
    /// for more than [`MAX_REFUSED_PER_ACK`] refusals, or ones not below `taken` or not in
    /// increasing order.
    pub fn decode(data: &[u8]) -> Result<HandleAck, ProtocolError> {
        let (taken, rest): (u64, _) = postcard::take_from_bytes(data).map_err(HandleFault::HeaderDecode)?;
        if rest.is_empty() {
            return Ok(HandleAck::taken(taken));
        }
        // Bounded before it is read: a count over the limit is refused without allocating.
        let (count, _): (u64, _) = postcard::take_from_bytes(rest).map_err(HandleFault::HeaderDecode)?;
        if count > MAX_REFUSED_PER_ACK as u64 {
            return Err(HandleFault::BadRefusal.into());
        }
        let (refused, rest): (Vec<u64>, _) = postcard::take_from_bytes(rest).map_err(HandleFault::HeaderDecode)?;
        if !rest.is_empty() {
            return Err(HandleFault::TrailingBytes { extra: rest.len() }.into());
        }
        let ordered = refused.windows(2).all(|w| w[0] < w[1]);
        if refused.is_empty() || !ordered || refused.iter().any(|&n| n >= taken) {
            return Err(HandleFault::BadRefusal.into());
        }
        Ok(HandleAck { taken, refused })
    }

    /// Folds a later acknowledgement into this one: the highest count, every refusal.
    pub fn merge(&mut self, later: HandleAck) {
        self.taken = self.taken.max(later.taken);
        self.refused.extend(later.refused);
        self.refused.sort_unstable();
        self.refused.dedup();
    }
}

/// How a [`HandleChannel`] learns that its socket is ready.
#[derive(Debug)]
enum Watch {
    /// Registered with the reactor for as long as it lives.
    Reactor(AsyncFd<OwnedFd>),
    /// Not registered: a wait registers a duplicate of the fd for its own duration.
    OnDemand(OwnedFd),
}

impl Watch {
    fn raw(&self) -> RawFd {
        match self {
            Watch::Reactor(fd) => fd.get_ref().as_raw_fd(),
            Watch::OnDemand(fd) => fd.as_raw_fd(),
        }
    }

    /// Runs the non-blocking `op` until it does not fail with `EAGAIN`, waiting for
    /// `interest` in between.
    async fn io<T>(&self, interest: Interest, mut op: impl FnMut(RawFd) -> io::Result<T>) -> io::Result<T> {
        match self {
            Watch::Reactor(fd) => loop {
                let mut guard = fd.ready(interest).await?;
                match guard.try_io(|inner| op(inner.get_ref().as_raw_fd())) {
                    Ok(result) => return result,
                    Err(_would_block) => continue,
                }
            },
            Watch::OnDemand(fd) => loop {
                match op(fd.as_raw_fd()) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_once(fd, interest).await?,
                    result => return result,
                }
            },
        }
    }

    /// The non-blocking `op` once: `WouldBlock` when the reactor knows the socket is not
    /// ready (no system call then) or the call found it so.
    fn try_io<T>(&self, interest: Interest, mut op: impl FnMut(RawFd) -> io::Result<T>) -> io::Result<T> {
        match self {
            Watch::Reactor(fd) => fd.try_io(interest, |inner| op(inner.as_raw_fd())),
            Watch::OnDemand(fd) => op(fd.as_raw_fd()),
        }
    }
}

/// Waits until `fd` is ready for `interest`, registering a duplicate of it with the reactor
/// for the wait (a registration reports the socket's current state at once).
async fn wait_once(fd: &OwnedFd, interest: Interest) -> io::Result<()> {
    let dup = fd.try_clone()?;
    // SAFETY: `dup` is an `OwnedFd` we just created, so it is open; the `AsyncFd` takes
    // ownership of it and it stays open and unchanged until the `AsyncFd` is dropped at the
    // end of this function.
    let watched = unsafe { AsyncFd::register_with_interest(dup, interest) }.map_err(io::Error::from)?;
    watched.ready(interest).await.map(drop)
}

impl std::os::fd::AsFd for HandleChannel {
    /// The socket, e.g. to keep it open across the primary's own `execve` (an upgrade).
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd is owned by `self` (inside the `Watch`) and stays open for as long
        // as the borrow of `self` that this returns lives.
        unsafe { BorrowedFd::borrow_raw(self.fd.raw()) }
    }
}

impl HandleChannel {
    /// Wraps a SEQPACKET socket (one end of [`seqpacket_pair`](crate::seqpacket_pair)), making
    /// it non-blocking. Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Io`] when the fd cannot be made non-blocking or registered.
    pub fn new(fd: OwnedFd) -> Result<Self, ProtocolError> {
        Self::resume(fd, 0)
    }

    /// As [`new`](Self::new), for a channel on which `sent` datagrams were sent already (by
    /// the primary's previous image, before an upgrade): the next datagram is number `sent`,
    /// as the worker's acknowledgements count it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use corral_protocol::{HandleChannel, HandleHeader, HandleKind, seqpacket_pair};
    /// use std::os::fd::AsFd;
    ///
    /// let pair = seqpacket_pair().unwrap();
    /// let primary = HandleChannel::resume(pair.primary, 41).unwrap();
    /// let file = std::fs::File::open("/dev/null").unwrap();
    /// let header = HandleHeader { id: 1, kind: HandleKind::Listener { addr: "x".into() }, trace: None };
    /// assert_eq!(primary.send_counted(&header, file.as_fd()).await.unwrap(), 41);
    /// assert_eq!(primary.sent(), 42);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn resume(fd: OwnedFd, sent: u64) -> Result<Self, ProtocolError> {
        set_nonblocking(&fd)?;
        // SAFETY: `fd` is an `OwnedFd`, so it is open; the `AsyncFd` takes ownership of it and
        // it stays open and unchanged until the `AsyncFd` is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
            .map_err(io::Error::from)?;
        Ok(HandleChannel { fd: Watch::Reactor(fd), sent: Mutex::new(sent) })
    }

    /// The primary's end, on which `sent` datagrams were sent already (0 for a new channel):
    /// not registered with the reactor (see the type's documentation). Sends and
    /// [`recv_ack`](Self::recv_ack) still wait when they must; [`drain_acks`](Self::drain_acks)
    /// reads what is queued.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use corral_protocol::{HandleAck, HandleChannel, HandleHeader, HandleKind, seqpacket_pair};
    /// use std::os::fd::AsFd;
    ///
    /// let pair = seqpacket_pair().unwrap();
    /// let primary = HandleChannel::unwatched(pair.primary, 0).unwrap();
    /// let worker = HandleChannel::new(pair.worker).unwrap();
    /// let file = std::fs::File::open("/dev/null").unwrap();
    /// let header = HandleHeader { id: 1, kind: HandleKind::Listener { addr: "x".into() }, trace: None };
    /// assert_eq!(primary.send_counted(&header, file.as_fd()).await.unwrap(), 0);
    /// worker.recv().await.unwrap();
    /// assert_eq!(primary.drain_acks(), None);
    /// worker.send_ack(&HandleAck::taken(1)).await.unwrap();
    /// assert_eq!(primary.recv_ack().await.unwrap(), Some(HandleAck::taken(1)));
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Io`] when the fd cannot be made non-blocking.
    pub fn unwatched(fd: OwnedFd, sent: u64) -> Result<Self, ProtocolError> {
        set_nonblocking(&fd)?;
        Ok(HandleChannel { fd: Watch::OnDemand(fd), sent: Mutex::new(sent) })
    }

    /// How many datagrams have been sent on the channel (the next one's number).
    pub fn sent(&self) -> u64 {
        // Every update is one increment: a poisoned lock still holds the right count.
        *self.sent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `fd` with its header as one datagram. The caller keeps its own copy of `fd` and
    /// may close it once this returns.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Encode`] / [`ProtocolError::FrameTooLarge`] for a header that cannot be
    /// encoded or is over [`MAX_HANDLE_HEADER`]; [`ProtocolError::Io`] when the socket fails
    /// (e.g. `EPIPE` once the peer is gone).
    pub async fn send(&self, header: &HandleHeader, fd: BorrowedFd<'_>) -> Result<(), ProtocolError> {
        self.send_counted(header, fd).await.map(|_| ())
    }

    /// As [`send`](Self::send), returning the datagram's number on this channel (0 for the
    /// first): the worker's [`HandleAck`]s count the datagrams it has taken in the same order.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use corral_protocol::{HandleChannel, HandleHeader, HandleKind, seqpacket_pair};
    /// use std::os::fd::AsFd;
    ///
    /// let pair = seqpacket_pair().unwrap();
    /// let primary = HandleChannel::new(pair.primary).unwrap();
    /// let worker = HandleChannel::new(pair.worker).unwrap();
    /// let file = std::fs::File::open("/dev/null").unwrap();
    /// let header = HandleHeader { id: 1, kind: HandleKind::Listener { addr: "x".into() }, trace: None };
    /// assert_eq!(primary.send_counted(&header, file.as_fd()).await.unwrap(), 0);
    /// assert_eq!(primary.send_counted(&header, file.as_fd()).await.unwrap(), 1);
    /// worker.recv().await.unwrap();
    /// worker.send_ack(&corral_protocol::HandleAck::taken(1)).await.unwrap();
    /// assert_eq!(primary.recv_ack().await.unwrap(), Some(corral_protocol::HandleAck::taken(1)));
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn send_counted(&self, header: &HandleHeader, fd: BorrowedFd<'_>) -> Result<u64, ProtocolError> {
        let bytes = header.encode()?;
        let raw = [fd.as_raw_fd()];
        let number = self
            .fd
            .io(Interest::WRITABLE, |socket| {
                let iov = [IoSlice::new(&bytes)];
                let cmsg = [ControlMessage::ScmRights(&raw)];
                // Every update is one increment after a successful send: a poisoned lock
                // still holds the right count.
                let mut count = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
                sendmsg::<()>(socket, &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None).map_err(io::Error::from)?;
                let number = *count;
                *count += 1;
                Ok(number)
            })
            .await?;
        Ok(number)
    }

    /// Receives one datagram: its header and the fd it carried (close-on-exec).
    /// `Ok(None)` when the peer has closed its end.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::BadHandle`] for a datagram without exactly one fd, with truncated data
    /// or control data, or whose header does not decode (the [`HandleFault`] says which; any
    /// fds it carried are closed);
    /// [`ProtocolError::Io`] when the socket fails.
    pub async fn recv(&self) -> Result<Option<(HandleHeader, OwnedFd)>, ProtocolError> {
        let mut data = vec![0u8; MAX_HANDLE_HEADER];
        let mut cmsg_buf = nix::cmsg_space!([RawFd; MAX_FDS_PER_DATAGRAM]);
        let received = self
            .fd
            .io(Interest::READABLE, |socket| receive_one(socket, &mut data, &mut cmsg_buf).map_err(io::Error::from))
            .await?;
        match received? {
            None => Ok(None),
            Some((len, fds)) => decode_datagram(&data[..len], fds).map(Some),
        }
    }

    /// As [`recv`](Self::recv) without waiting: `None` when no datagram is queued (as far as
    /// the reactor knows), e.g. to take a whole batch before acknowledging it.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv); `Ok(Some(None))` is the end of the channel.
    pub fn try_recv(&self) -> Option<Result<Option<(HandleHeader, OwnedFd)>, ProtocolError>> {
        let mut data = vec![0u8; MAX_HANDLE_HEADER];
        let mut cmsg_buf = nix::cmsg_space!([RawFd; MAX_FDS_PER_DATAGRAM]);
        let received = self.fd.try_io(Interest::READABLE, |socket| {
            receive_one(socket, &mut data, &mut cmsg_buf).map_err(io::Error::from)
        });
        match received {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => Some(Err(e.into())),
            Ok(Err(e)) => Some(Err(e)),
            Ok(Ok(None)) => Some(Ok(None)),
            Ok(Ok(Some((len, fds)))) => Some(decode_datagram(&data[..len], fds).map(Some)),
        }
    }

    /// The worker's side: acknowledges the datagrams it has received (see [`HandleAck`];
    /// example at [`send_counted`](Self::send_counted)).
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Io`] when the socket fails (e.g. `EPIPE` once the primary is gone).
    pub async fn send_ack(&self, ack: &HandleAck) -> Result<(), ProtocolError> {
        let bytes = ack.encode()?;
        self.fd
            .io(Interest::WRITABLE, |socket| {
                let iov = [IoSlice::new(&bytes)];
                sendmsg::<()>(socket, &iov, &[], MsgFlags::MSG_NOSIGNAL, None).map_err(io::Error::from)
            })
            .await?;
        Ok(())
    }

    /// The primary's side: the next [`HandleAck`]; `Ok(None)` once the worker's end
    /// is closed (every acknowledgement it sent has been read by then). Example at
    /// [`send_counted`](Self::send_counted).
    ///
    /// # Errors
    ///
    /// [`ProtocolError::BadHandle`] for a datagram that is not an acknowledgement (any fds it
    /// carried are closed); [`ProtocolError::Io`] when the socket fails.
    pub async fn recv_ack(&self) -> Result<Option<HandleAck>, ProtocolError> {
        let mut data = [0u8; MAX_ACK];
        let mut cmsg_buf = nix::cmsg_space!([RawFd; MAX_FDS_PER_DATAGRAM]);
        let received = self
            .fd
            .io(Interest::READABLE, |socket| receive_one(socket, &mut data, &mut cmsg_buf).map_err(io::Error::from))
            .await?;
        received?.map(|(len, fds)| decode_ack(&data[..len], fds)).transpose()
    }

    /// The primary's side: the acknowledgements queued right now, merged (read with real
    /// `recvmsg` calls, not the reactor's view), `None` if there is none. For a last look once
    /// the worker has died.
    pub fn drain_acks(&self) -> Option<HandleAck> {
        self.take_acks().ack
    }

    /// The primary's side: the acknowledgements queued right now, merged (read with real
    /// `recvmsg` calls until `EAGAIN`), and whether the worker's end is closed (or the socket
    /// failed). A datagram that is not an acknowledgement is logged and skipped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use corral_protocol::{HandleAck, HandleChannel, seqpacket_pair};
    ///
    /// let pair = seqpacket_pair().unwrap();
    /// let primary = HandleChannel::unwatched(pair.primary, 0).unwrap();
    /// let worker = HandleChannel::new(pair.worker).unwrap();
    /// worker.send_ack(&HandleAck::taken(2)).await.unwrap();
    /// worker.send_ack(&HandleAck::taken(3)).await.unwrap();
    /// drop(worker);
    /// let queued = primary.take_acks();
    /// assert_eq!(queued.ack, Some(HandleAck::taken(3)));
    /// assert!(queued.ended);
    /// # }
    /// ```
    pub fn take_acks(&self) -> QueuedAcks {
        let mut data = [0u8; MAX_ACK];
        let mut cmsg_buf = nix::cmsg_space!([RawFd; MAX_FDS_PER_DATAGRAM]);
        let mut queued = QueuedAcks { ack: None, ended: false };
        // The socket is non-blocking: `EAGAIN` or the end stops the loop.
        loop {
            match receive_one(self.fd.raw(), &mut data, &mut cmsg_buf) {
                Ok(Ok(Some((len, fds)))) => match decode_ack(&data[..len], fds) {
                    Ok(ack) => match &mut queued.ack {
                        None => queued.ack = Some(ack),
                        Some(merged) => merged.merge(ack),
                    },
                    Err(e) => tracing::warn!(error = %e, "bad acknowledgement on the handle channel"),
                },
                Ok(Err(e)) => tracing::warn!(error = %e, "bad acknowledgement on the handle channel"),
                Ok(Ok(None)) => {
                    queued.ended = true;
                    break;
                }
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => {}
                Err(_) => {
                    queued.ended = true;
                    break;
                }
            }
        }
        queued
    }
}

/// What [`HandleChannel::take_acks`] found queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedAcks {
    /// The acknowledgements, merged ([`HandleAck::merge`]); `None` if there was none.
    pub ack: Option<HandleAck>,
    /// The worker's end is closed (or the socket failed): no acknowledgement will follow.
    pub ended: bool,
}

/// Room for an acknowledgement (postcard varints are at most 10 bytes: the count, the number of
/// refusals and each refusal), and a little more, so that a longer datagram is seen as
/// truncated.
const MAX_ACK: usize = 10 * (2 + MAX_REFUSED_PER_ACK) + 16;

fn decode_ack(data: &[u8], fds: Vec<OwnedFd>) -> Result<HandleAck, ProtocolError> {
    if !fds.is_empty() {
        return Err(HandleFault::FdCount { got: fds.len() }.into());
    }
    HandleAck::decode(data)
}

/// What one `recvmsg` produced: the data length and the fds it carried, or `None` at EOF.
type Datagram = Option<(usize, Vec<OwnedFd>)>;

fn set_nonblocking(fd: &OwnedFd) -> Result<(), ProtocolError> {
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(())
}

fn receive_one(fd: RawFd, data: &mut [u8], cmsg_buf: &mut [u8]) -> Result<Result<Datagram, ProtocolError>, Errno> {
    let mut iov = [IoSliceMut::new(data)];
    let msg = recvmsg::<()>(fd, &mut iov, Some(cmsg_buf), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    let cmsgs = match msg.cmsgs() {
        Ok(cmsgs) => cmsgs,
        // MSG_CTRUNC: more fds than the buffer holds. The kernel installed those that fit,
        // but nix will not walk a truncated list, so they cannot be reached to close them.
        Err(_) => {
            return Ok(Err(HandleFault::TooManyFds.into()));
        }
    };
    for cmsg in cmsgs {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            for r in raw {
                // SAFETY: the kernel just installed `r` in this process for us (SCM_RIGHTS);
                // nothing else owns it, so wrapping it makes it closed exactly once.
                fds.push(unsafe { OwnedFd::from_raw_fd(r) });
            }
        }
    }
    if msg.bytes == 0 && fds.is_empty() {
        return Ok(Ok(None));
    }
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return Ok(Err(HandleFault::HeaderTooLong { max: MAX_HANDLE_HEADER }.into()));
    }
    Ok(Ok(Some((msg.bytes, fds))))
}

fn decode_datagram(data: &[u8], mut fds: Vec<OwnedFd>) -> Result<(HandleHeader, OwnedFd), ProtocolError> {
    if fds.len() != 1 {
        return Err(HandleFault::FdCount { got: fds.len() }.into());
    }
    let header = HandleHeader::decode(data)?;
    // Exactly one element, checked above.
    let fd = fds.remove(0);
    Ok((header, fd))
}
