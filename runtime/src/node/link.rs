//! Outgoing node connections: corral dials its seeds and the peers it learns of itself, and
//! hands each stream to ractor_cluster (`client_connect_external`) with TCP keep-alive and
//! `TCP_USER_TIMEOUT` set, so that a peer that vanished (power cut, partition) fails the
//! stream in bounded time even when no heartbeat is due. A target that is not connected is
//! redialled with exponential backoff, until it answers again.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ractor::ActorRef;
use ractor_cluster::{ClusterBidiStream, NodeServerMessage};
use tokio::net::TcpStream;

/// The first redial delay.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// The longest redial delay: a healed partition is rejoined within about this (plus a
/// heartbeat), however long it lasted.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long one dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// A TCP stream to a peer's node server, as ractor_cluster takes it.
struct Stream {
    tcp: TcpStream,
    peer: SocketAddr,
    local: Option<SocketAddr>,
}

impl ClusterBidiStream for Stream {
    fn split(self: Box<Self>) -> (ractor_cluster::BoxRead, ractor_cluster::BoxWrite) {
        let (read, write) = self.tcp.into_split();
        (Box::new(read), Box::new(write))
    }

    fn peer_label(&self) -> Option<String> {
        Some(self.peer.to_string())
    }

    fn local_label(&self) -> Option<String> {
        self.local.map(|a| a.to_string())
    }
}

/// When to dial a target next.
#[derive(Debug, Clone, Copy)]
struct Redial {
    at: Instant,
    delay: Duration,
}

/// The addresses this node keeps connections to.
#[derive(Clone)]
pub(crate) struct Links {
    targets: Arc<Mutex<HashMap<SocketAddr, Redial>>>,
    own: SocketAddr,
}

impl Links {
    pub(crate) fn new(own: SocketAddr, seeds: &[SocketAddr]) -> Self {
        let links = Links { targets: Arc::default(), own };
        for seed in seeds {
            links.add(*seed);
        }
        links
    }

    fn targets(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Redial>> {
        // Entries are replaced whole: a poisoned lock is still consistent.
        self.targets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps a connection to `addr` from now on (not to this node itself).
    pub(crate) fn add(&self, addr: SocketAddr) {
        if addr != self.own {
            self.targets().entry(addr).or_insert(Redial { at: Instant::now(), delay: BACKOFF_BASE });
        }
    }

    /// A heartbeat came from the node server at `addr`: its next redial starts from the
    /// shortest delay again.
    pub(crate) fn healthy(&self, addr: SocketAddr) {
        if let Some(redial) = self.targets().get_mut(&addr) {
            redial.delay = BACKOFF_BASE;
        }
    }

    /// Dials, every `every`, each target no session reaches, until the node server stops.
    pub(crate) async fn maintain(self, server: ActorRef<NodeServerMessage>, every: Duration, user_timeout: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Ok(sessions) = ractor::call_t!(server, NodeServerMessage::GetSessions, 2000) else {
                if server.get_status() == ractor::ActorStatus::Stopped {
                    return;
                }
                continue;
            };
            let connected: HashSet<String> = sessions
                .values()
                .flat_map(|s| [Some(s.peer_addr.clone()), s.peer_name.as_ref().map(|n| n.connection_string.clone())])
                .flatten()
                .collect();
            let now = Instant::now();
            let due: Vec<SocketAddr> = {
                let mut targets = self.targets();
                let mut due = Vec::new();
                for (addr, redial) in targets.iter_mut() {
                    if connected.contains(&addr.to_string()) {
                        // A session (perhaps still authenticating) is there: no dial now. The
                        // delay is reset only by a heartbeat (`healthy`), so that a peer that
                        // refuses us (another cookie) is redialled ever more slowly.
                        redial.at = redial.at.max(now + BACKOFF_BASE);
                    } else if now >= redial.at {
                        due.push(*addr);
                        redial.at = now + jittered(redial.delay);
                        redial.delay = (redial.delay * 2).min(BACKOFF_MAX);
                    }
                }
                due
            };
            for addr in due {
                let server = server.clone();
                tokio::spawn(async move {
                    if let Err(e) = dial(&server, addr, user_timeout).await {
                        tracing::debug!(%addr, error = %e, "node dial failed; retrying with backoff");
                    }
                });
            }
        }
    }
}

/// `delay` ± 20 %.
fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(rand::random_range(0.8..1.2))
}

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("connect: {0}")]
    Connect(#[from] std::io::Error),
    #[error("connect: timed out")]
    Timeout,
    #[error("the node server is gone: {0}")]
    Server(#[from] ractor_cluster::ClientConnectErr),
}

/// Connects to `addr` and hands the stream to the node server.
async fn dial(server: &ActorRef<NodeServerMessage>, addr: SocketAddr, user_timeout: Duration) -> Result<(), DialError> {
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await.map_err(|_| DialError::Timeout)??;
    tcp.set_nodelay(true)?;
    harden(&tcp, user_timeout)?;
    let local = tcp.local_addr().ok();
    ractor_cluster::client_connect_external(server, Box::new(Stream { tcp, peer: addr, local })).await?;
    Ok(())
}

/// Keep-alive probes after a second of silence, and `TCP_USER_TIMEOUT`: unacknowledged data
/// (or probes) fail the connection after `user_timeout`.
fn harden(tcp: &TcpStream, user_timeout: Duration) -> std::io::Result<()> {
    let sock = socket2::SockRef::from(tcp);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(1))
        .with_interval(Duration::from_secs(1))
        .with_retries(3);
    sock.set_tcp_keepalive(&keepalive)?;
    sock.set_tcp_user_timeout(Some(user_timeout))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dialled_streams_have_keepalive_and_a_user_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        harden(&tcp, Duration::from_millis(2500)).unwrap();
        let sock = socket2::SockRef::from(&tcp);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_user_timeout().unwrap(), Some(Duration::from_millis(2500)));
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(1));
    }

    #[test]
    fn a_node_never_dials_itself() {
        let own: SocketAddr = "127.0.0.1:4370".parse().unwrap();
        let links = Links::new(own, &[own, "127.0.0.2:4370".parse().unwrap()]);
        links.add(own);
        assert_eq!(links.targets().len(), 1);
    }
}
