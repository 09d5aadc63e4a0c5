//! Listening sockets: the one `bind` both sides use, and the typed refusal of a listen
//! request that travels on the wire.

use std::io;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use socket2::{Domain, Socket, Type};

/// Backlog of every listening socket corral creates.
pub const BACKLOG: i32 = 1024;

/// How [`bind`] prepares a socket.
///
/// ```
/// use corral_protocol::BindMode;
/// assert_ne!(BindMode::Listen, BindMode::ReusePortHold);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// One listening socket (the primary's, for round robin, least connections and shared
    /// scheduling).
    Listen,
    /// A listening member of an `SO_REUSEPORT` group (a worker's own socket).
    ReusePortListen,
    /// A bound, **not listening**, member of an `SO_REUSEPORT` group: it holds the port for
    /// the cluster without the kernel ever queueing a connection on it.
    ReusePortHold,
}

/// Binds a non-blocking, close-on-exec TCP socket to `addr` as `mode` asks
/// (`SO_REUSEADDR` always, `SO_REUSEPORT` for the reuse-port modes, `listen(BACKLOG)` unless
/// holding) and `TCP_NODELAY`, which every connection it accepts inherits.
///
/// ```
/// use corral_protocol::{BindMode, bind};
/// let socket = bind("127.0.0.1:0".parse().unwrap(), BindMode::Listen).unwrap();
/// let addr = socket.local_addr().unwrap().as_socket().unwrap();
/// assert_ne!(addr.port(), 0);
/// // A connection accepted from it has TCP_NODELAY without anyone setting it.
/// let _client = std::net::TcpStream::connect(addr).unwrap();
/// socket.set_nonblocking(false).unwrap();
/// let (accepted, _) = socket.accept().unwrap();
/// assert!(accepted.tcp_nodelay().unwrap());
/// ```
///
/// # Errors
///
/// The socket calls' own errors (`EADDRINUSE`, `EACCES`, `EADDRNOTAVAIL`, …).
pub fn bind(addr: SocketAddr, mode: BindMode) -> io::Result<Socket> {
    let socket = bound(addr, mode)?;
    if mode != BindMode::ReusePortHold {
        socket.listen(BACKLOG)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// As [`bind`], for the **first** socket of a cluster on `addr`: refused with `EADDRINUSE`
/// when another process already listens there, even in an `SO_REUSEPORT` group it could
/// join (the kernel lets every socket of the same user join one, and the two clusters
/// would silently split the traffic). Later sockets of the cluster's own group use [`bind`].
///
/// A probe socket without `SO_REUSEPORT` is bound first: that fails while anyone listens
/// on the address, and, while it stays bound, nobody else can start listening there, so the
/// cluster's own socket is bound before the probe closes. (A process that has bound a
/// reuse-port socket but not yet listened on it is not seen; nor is the cluster by such a
/// process during the same instant of its own start.) Port 0 needs no probe.
///
/// ```
/// use corral_protocol::{BindMode, bind, bind_first};
/// let first = bind_first("127.0.0.1:0".parse().unwrap(), BindMode::ReusePortListen).unwrap();
/// let addr = first.local_addr().unwrap().as_socket().unwrap();
/// // Another cluster is refused; the cluster's own group still grows.
/// let refused = bind_first(addr, BindMode::ReusePortListen).unwrap_err();
/// assert_eq!(refused.kind(), std::io::ErrorKind::AddrInUse);
/// assert!(bind(addr, BindMode::ReusePortListen).is_ok());
/// ```
///
/// # Errors
///
/// As [`bind`]; `EADDRINUSE` when something listens on `addr`.
pub fn bind_first(addr: SocketAddr, mode: BindMode) -> io::Result<Socket> {
    if mode == BindMode::Listen || addr.port() == 0 {
        // A plain listening socket conflicts with every other listener by itself.
        return bind(addr, mode);
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None)?;
    // SO_REUSEADDR, as every corral socket: connections of an earlier run in TIME_WAIT
    // do not count as "in use".
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())?;
    let socket = bound(addr, mode)?;
    // The probe must go before the group listens: a listener conflicts with it.
    drop(probe);
    if mode != BindMode::ReusePortHold {
        socket.listen(BACKLOG)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A close-on-exec TCP socket bound to `addr` with the options `mode` asks for, not listening.
fn bound(addr: SocketAddr, mode: BindMode) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None)?;
    socket.set_reuse_address(true)?;
    if mode != BindMode::Listen {
        socket.set_reuse_port(true)?;
    }
    // Linux copies TCP_NODELAY from a listener to every connection it accepts, so the program
    // serving them answers without Nagle's delay, even one that never sets it itself (uvicorn
    // on an inherited fd: 44 ms per keep-alive request instead of 0.5).
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Why the primary refused a worker's listen request (the error half of
/// [`Control::ListenAck`](crate::Control::ListenAck)).
///
/// ```
/// use corral_protocol::ListenRefusal;
/// let refusal = ListenRefusal::Bind { addr: "127.0.0.1:80".into(), errno: 13 };
/// assert_eq!(refusal.to_string(), "cannot listen on 127.0.0.1:80: Permission denied (os error 13)");
/// assert_eq!(refusal.io_error().unwrap().kind(), std::io::ErrorKind::PermissionDenied);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ListenRefusal {
    /// The address is not `host:port`, or its host does not resolve.
    #[error("cannot resolve {addr}: not a valid host:port, or an unknown host")]
    Unresolvable {
        /// The address asked for.
        addr: String,
    },
    /// The address resolved to nothing.
    #[error("{addr} resolves to no address")]
    NoAddress {
        /// The address asked for.
        addr: String,
    },
    /// Binding or listening failed (in use, not permitted, not a local address).
    #[error("cannot listen on {addr}: {}", io::Error::from_raw_os_error(*errno))]
    Bind {
        /// The address asked for.
        addr: String,
        /// The `errno` of the failed call.
        errno: i32,
    },
    /// The cluster's configuration does not allow workers to listen there (its listen
    /// allow-list).
    #[error("listening on {addr} is not allowed by the cluster's configuration")]
    NotAllowed {
        /// The address asked for.
        addr: String,
    },
    /// The socket was bound, but passing it to the worker failed.
    #[error("cannot pass the socket for {addr} to the worker: {}", io::Error::from_raw_os_error(*errno))]
    Pass {
        /// The address asked for.
        addr: String,
        /// The `errno` of the failed send.
        errno: i32,
    },
}

impl ListenRefusal {
    /// A [`Bind`](ListenRefusal::Bind) (or, for an error without an errno, `EINVAL`) refusal.
    pub fn bind(addr: &str, error: &io::Error) -> Self {
        ListenRefusal::Bind { addr: addr.to_string(), errno: error.raw_os_error().unwrap_or(libc_einval()) }
    }

    /// The address the worker asked for.
    pub fn addr(&self) -> &str {
        match self {
            ListenRefusal::Unresolvable { addr }
            | ListenRefusal::NoAddress { addr }
            | ListenRefusal::Bind { addr, .. }
            | ListenRefusal::NotAllowed { addr }
            | ListenRefusal::Pass { addr, .. } => addr,
        }
    }

    /// The operating system's error, for the refusals that have one.
    pub fn io_error(&self) -> Option<io::Error> {
        match self {
            ListenRefusal::Bind { errno, .. } | ListenRefusal::Pass { errno, .. } => {
                Some(io::Error::from_raw_os_error(*errno))
            }
            ListenRefusal::Unresolvable { .. } | ListenRefusal::NoAddress { .. } | ListenRefusal::NotAllowed { .. } => {
                None
            }
        }
    }
}

fn libc_einval() -> i32 {
    nix::errno::Errno::EINVAL as i32
}
