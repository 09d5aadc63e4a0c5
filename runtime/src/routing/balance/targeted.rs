//! A connection to **one chosen worker** through the port its clients use: the primary binds
//! a socket of its own, pins its source address and port to the worker's socket in the
//! listener's reuse-port group (the steering program's [`Pins`](crate::routing::steer::program::Pins)
//! prefix), connects, and unpins once the handshake is done. The program, not the worker,
//! changes nothing: what a probe sees is what a client of that worker sees.
//!
//! Only reuse-port groups can be targeted: with `shared` scheduling every worker accepts on
//! one socket, and which of them takes a connection is the kernel's choice.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};

use super::Listeners;
use super::shared::SharedListener;
use crate::routing::steer::group::Member;
use crate::routing::steer::pins::PinsFull;

/// Why a connection to one chosen worker (a health probe's) could not be made.
///
/// ```
/// use corral_runtime::TargetError;
/// let e = TargetError::NoListener("admin".into());
/// assert_eq!(e.to_string(), "no listener \"admin\" to reach the worker through");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// No listener of that name (or address), or none at all.
    #[error("no listener {0:?} to reach the worker through")]
    NoListener(String),
    /// The listener is not a reuse-port group (shared scheduling, a Unix socket).
    #[error(
        "{0}: every worker accepts on one socket (shared scheduling); one worker cannot be reached alone: use reuseport"
    )]
    NotPerWorker(String),
    /// The worker has no socket in the group (it has not asked for the listener yet, or it
    /// is gone).
    #[error("slot {slot} (generation {generation}) has no socket on {addr}")]
    NoSocket {
        /// The slot.
        slot: usize,
        /// The process's generation.
        generation: u64,
        /// The listener.
        addr: String,
    },
    /// The groups are not steered (`CORRAL_STEER=off`, or the kernel refused the program).
    #[error("reuse-port groups are not steered here, so one worker cannot be reached alone")]
    NotSteered,
    /// Too many connections pinned at once.
    #[error(transparent)]
    Pins(#[from] PinsFull),
    /// The connection failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The connection took longer than the timeout.
    #[error("connecting to {addr}: no connection within {timeout:?}")]
    Timeout {
        /// Where.
        addr: SocketAddr,
        /// How long it waited.
        timeout: Duration,
    },
}

/// How a connection reaches its worker, and the address to connect to.
pub(crate) struct PinnedGroup {
    pub pinning: Pinning,
    pub addr: SocketAddr,
}

/// How a connection reaches its worker.
pub(crate) enum Pinning {
    /// The kernel puts it on the worker's socket in the reuse-port group with this steering
    /// key.
    Steered {
        /// The group's key in the steering.
        key: String,
    },
    /// The primary accepts it and hands it to the worker (primary-accept scheduling).
    Dispatched(Arc<SharedListener>),
}

impl Listeners {
    /// Opens a connection that lands on the socket of process `generation` of `slot`, on the
    /// listener named (or requested as) `listener`, or the first one (by name order for a
    /// foreign cluster, by address otherwise). A listener bound to a wildcard address is
    /// reached on the loopback address of its family. The connection is pinned only while
    /// its handshake takes; what the worker does with it afterwards is the caller's.
    ///
    /// # Errors
    ///
    /// [`TargetError`]: no such listener or socket, a listener that is not per worker,
    /// steering off, too many pinned, or the connection failed or timed out.
    pub(crate) async fn connect_to(
        &self,
        listener: Option<&str>,
        slot: usize,
        generation: u64,
        timeout: Duration,
    ) -> Result<TcpStream, TargetError> {
        let member = Member { slot, generation };
        let group = self.pinned_group(listener, member)?;
        let dest = match group.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), group.addr.port()),
            IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), group.addr.port()),
            _ => group.addr,
        };
        let connect_error = |source| TargetError::Connect { addr: dest, source };
        // Our own address and port: what the program recognises.
        let socket =
            Socket::new(Domain::for_address(dest), Type::STREAM, Some(Protocol::TCP)).map_err(connect_error)?;
        socket.set_nonblocking(true).map_err(connect_error)?;
        socket.bind(&SocketAddr::new(dest.ip(), 0).into()).map_err(connect_error)?;
        let port = socket.local_addr().ok().and_then(|a| a.as_socket()).map_or(0, |a| a.port());
        let key = match group.pinning {
            Pinning::Steered { key } => key,
            Pinning::Dispatched(listener) => {
                let source = SocketAddr::new(dest.ip(), port);
                listener.pin_peer(source, member)?;
                let socket = TcpSocket::from_std_stream(socket.into());
                let connected = match tokio::time::timeout(timeout, socket.connect(dest)).await {
                    Ok(Ok(stream)) => return Ok(stream),
                    Ok(Err(e)) => Err(connect_error(e)),
                    Err(_) => Err(TargetError::Timeout { addr: dest, timeout }),
                };
                // Never accepted: the pin goes (an accepted one is taken by its dispatch).
                listener.unpin_peer(source);
                return connected;
            }
        };
        {
            let mut steering = self.lock_steering();
            if !steering.is_on() {
                return Err(TargetError::NotSteered);
            }
            steering.pin(&key, dest.ip(), port, member)?;
        }
        self.steer_with(|_| true);
        let connected = if self.lock_steering().is_on() {
            let socket = TcpSocket::from_std_stream(socket.into());
            match tokio::time::timeout(timeout, socket.connect(dest)).await {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(e)) => Err(connect_error(e)),
                Err(_) => Err(TargetError::Timeout { addr: dest, timeout }),
            }
        } else {
            // Attaching the program with the pin failed (and turned steering off).
            Err(TargetError::NotSteered)
        };
        // The handshake is done (or abandoned): the socket was chosen at the SYN.
        self.steer_with(|s| {
            s.unpin(&key, port);
            true
        });
        connected
    }

    /// The address of the listener named (or requested as) `listener`, or of the first: what
    /// an exec probe is told in `CORRAL_LISTEN`.
    pub(crate) fn address_of(&self, listener: Option<&str>) -> Option<String> {
        if self.activated.get().is_some() {
            let bound = self.activated();
            let found = match listener {
                Some(name) => bound.into_iter().find(|(n, _)| n == name),
                None => bound.into_iter().next(),
            };
            return found.map(|(_, addr)| addr.to_string());
        }
        let map = self.map();
        match listener {
            Some(name) => map.get(name).map(|l| l.addr.to_string()),
            None => map.values().map(|l| l.addr).min().map(|a| a.to_string()),
        }
    }

    /// The group `member`'s socket is in, on the listener `listener` (or the first).
    fn pinned_group(&self, listener: Option<&str>, member: Member) -> Result<PinnedGroup, TargetError> {
        let no_socket = |addr: String| TargetError::NoSocket { slot: member.slot, generation: member.generation, addr };
        if let Some(activated) = self.activated.get() {
            return activated.pinned_group(listener, member);
        }
        let map = self.map();
        let found = match listener {
            Some(name) => map.get(name).cloned(),
            None => map.values().min_by_key(|l| l.addr).cloned(),
        };
        drop(map);
        let Some(found) = found else { return Err(TargetError::NoListener(listener.unwrap_or_default().to_string())) };
        let group = found.group();
        if group.len() == 0 {
            drop(group);
            // Primary-accept: the accept loop runs with a strategy.
            if found.strategy.get().is_some() {
                return Ok(PinnedGroup { pinning: Pinning::Dispatched(found.clone()), addr: found.addr });
            }
            return Err(TargetError::NotPerWorker(found.addr.to_string()));
        }
        if group.index_of(member).is_none() {
            return Err(no_socket(found.addr.to_string()));
        }
        Ok(PinnedGroup { pinning: Pinning::Steered { key: found.addr.to_string() }, addr: found.addr })
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::os::fd::OwnedFd;

    use corral_protocol::Scheduling;

    use super::*;
    use crate::config::foreign::ListenSpec;
    use crate::config::sticky_key::StickyKey;

    /// The listener each of `fds` is (one per slot), and which one takes the next connection.
    fn accepted_by(workers: &[TcpListener]) -> Option<usize> {
        for _ in 0..2000 {
            if let Some(i) = workers.iter().position(|l| l.accept().is_ok()) {
                return Some(i);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    }

    fn listener_of(fds: Vec<OwnedFd>) -> TcpListener {
        let l = TcpListener::from(fds.into_iter().next().expect("one socket"));
        l.set_nonblocking(true).expect("nonblocking");
        l
    }

    #[tokio::test]
    async fn a_pinned_connection_lands_on_the_chosen_worker_even_one_not_ready() {
        let listeners = Listeners::new(Scheduling::ReusePort, StickyKey::Ip);
        let spec: ListenSpec = "127.0.0.1:0".parse().expect("spec");
        listeners.bind_activated(std::slice::from_ref(&spec)).expect("bind");
        let addr = match &listeners.activated()[0].1 {
            crate::config::foreign::ListenAddr::Tcp(a) => *a,
            other => panic!("{other:?}"),
        };
        // Three slots, generation 1; only slot 0 is ready (steered in).
        let workers: Vec<TcpListener> =
            (0..3).map(|slot| listener_of(listeners.activation(slot, 1, false).expect("sockets").0)).collect();
        listeners.steer_accepting(0, true);
        for target in [2usize, 1, 2, 0] {
            let stream = listeners.connect_to(None, target, 1, Duration::from_secs(2)).await.expect("connect");
            assert_eq!(stream.peer_addr().expect("peer"), addr);
            assert_eq!(accepted_by(&workers), Some(target));
        }
        // Clients still go by the steering: slot 0 only.
        for _ in 0..10 {
            let _client = std::net::TcpStream::connect(addr).expect("connect");
            assert_eq!(accepted_by(&workers), Some(0));
        }
        // Nothing that is not there.
        assert!(matches!(
            listeners.connect_to(None, 7, 1, Duration::from_secs(1)).await,
            Err(TargetError::NoSocket { slot: 7, .. })
        ));
        assert!(matches!(
            listeners.connect_to(Some("nope"), 0, 1, Duration::from_secs(1)).await,
            Err(TargetError::NoListener(_))
        ));
    }

    #[tokio::test]
    async fn shared_listeners_cannot_be_targeted() {
        let listeners = Listeners::new(Scheduling::Shared, StickyKey::Ip);
        let spec: ListenSpec = "127.0.0.1:0".parse().expect("spec");
        listeners.bind_activated(std::slice::from_ref(&spec)).expect("bind");
        assert!(matches!(
            listeners.connect_to(None, 0, 1, Duration::from_secs(1)).await,
            Err(TargetError::NotPerWorker(_))
        ));
    }
}
