//! Shared listening sockets and the dispatch of connections to workers.
//!
//! The primary owns one socket per address: the first `listen` binds it (port 0 resolves
//! once), every later one, from any worker or restarted worker, shares it, so restarts never
//! hit `EADDRINUSE`. How the connections reach workers depends on the [`Scheduling`]:
//!
//! * `RoundRobin` / `LeastConnections`: an acceptor task accepts each connection and passes
//!   its fd to a **ready** worker (the next in turn, or the one with the fewest open
//!   connections). A hand-off that fails (the worker just died) goes to another worker; while
//!   no worker is ready the acceptor waits, and connections wait in the kernel's backlog.
//! * `Shared`: the listening fd itself is passed; workers accept.
//! * `ReusePort`: each worker binds its own `SO_REUSEPORT` socket; the primary keeps one bound
//!   but not listening (so the kernel never queues a connection on it) to hold the port.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use corral_protocol::{HandleChannel, HandleHeader, HandleKind, Scheduling, TraceContext};
use socket2::{Domain, Socket, Type};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Backlog of every listening socket the primary creates.
const BACKLOG: i32 = 1024;

/// A worker's registration on a listener.
pub(crate) struct Target {
    pub slot: usize,
    pub generation: u64,
    /// The worker's listen request id (named in every connection's header).
    pub listen_id: u64,
    pub channel: Arc<HandleChannel>,
    /// Shared with the supervisor: set once the worker is ready, cleared when it drains.
    pub ready: Arc<AtomicBool>,
    /// Shared with the supervisor: the worker's last reported open connections.
    pub load: Arc<Load>,
}

/// A worker's load, as least-connections sees it: the open connections it last reported,
/// plus those dispatched to it that its report did not count yet.
#[derive(Debug, Default)]
pub(crate) struct Load {
    open: AtomicU64,
    accepted: AtomicU64,
    dispatched: AtomicU64,
}

impl Load {
    fn estimate(&self) -> u64 {
        let unseen = self.dispatched.load(Ordering::Relaxed).saturating_sub(self.accepted.load(Ordering::Relaxed));
        self.open.load(Ordering::Relaxed) + unseen
    }

    fn dispatched_one(&self) {
        self.dispatched.fetch_add(1, Ordering::Relaxed);
    }

    /// The worker's report: `open` connections now, `accepted` since it started.
    pub(crate) fn report(&self, open: u64, accepted: u64) {
        self.open.store(open, Ordering::Relaxed);
        self.accepted.store(accepted, Ordering::Relaxed);
    }
}

/// The target a connection goes to.
struct Pick {
    slot: usize,
    generation: u64,
    listen_id: u64,
    channel: Arc<HandleChannel>,
    load: Arc<Load>,
}

/// One address the primary listens on.
pub(crate) struct SharedListener {
    pub addr: SocketAddr,
    socket: Socket,
    targets: Mutex<Vec<Target>>,
    /// Woken when a target becomes ready (or is added).
    changed: Notify,
    next: AtomicUsize,
}

impl SharedListener {
    fn with_targets<T>(&self, f: impl FnOnce(&mut Vec<Target>) -> T) -> T {
        // Every update leaves the vector consistent, so a poisoned lock is still usable.
        f(&mut self.targets.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The next ready target in turn (round robin) or by least load; `None` if none is ready.
    fn pick(&self, scheduling: Scheduling) -> Option<Pick> {
        self.with_targets(|targets| {
            let ready: Vec<&Target> = targets.iter().filter(|t| t.ready.load(Ordering::Acquire)).collect();
            if ready.is_empty() {
                return None;
            }
            let chosen = match scheduling {
                Scheduling::LeastConnections => {
                    let start = self.next.fetch_add(1, Ordering::Relaxed);
                    // Ties broken in turn, so equal loads still spread.
                    (0..ready.len()).map(|i| ready[(start + i) % ready.len()]).min_by_key(|t| t.load.estimate())?
                }
                _ => ready[self.next.fetch_add(1, Ordering::Relaxed) % ready.len()],
            };
            Some(Pick {
                slot: chosen.slot,
                generation: chosen.generation,
                listen_id: chosen.listen_id,
                channel: chosen.channel.clone(),
                load: chosen.load.clone(),
            })
        })
    }

    fn remove(&self, slot: usize, generation: u64) {
        self.with_targets(|targets| targets.retain(|t| !(t.slot == slot && t.generation == generation)));
    }
}

/// Every listener of a cluster, by requested and by resolved address.
pub(crate) struct Listeners {
    scheduling: Scheduling,
    by_addr: Mutex<HashMap<String, Arc<SharedListener>>>,
    /// Cancelled when the cluster stops: acceptors hand out their backlog, then close.
    closing: CancellationToken,
    acceptors: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Listeners {
    pub(crate) fn new(scheduling: Scheduling) -> Self {
        Listeners {
            scheduling,
            by_addr: Mutex::new(HashMap::new()),
            closing: CancellationToken::new(),
            acceptors: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn scheduling(&self) -> Scheduling {
        self.scheduling
    }

    /// The listener for `requested`, bound now if it is the first request for it.
    ///
    /// # Errors
    ///
    /// The address does not resolve, or binding fails (in use, not permitted); the message
    /// names the address.
    pub(crate) fn listen(&self, requested: &str) -> Result<Arc<SharedListener>, String> {
        let mut map = self.by_addr.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = map.get(requested) {
            return Ok(existing.clone());
        }
        let addr = requested
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {requested}: {e}"))?
            .next()
            .ok_or_else(|| format!("{requested} resolves to no address"))?;
        // A second request for the resolved address (e.g. "127.0.0.1:41234" after
        // "127.0.0.1:0" bound it) shares the same socket.
        if addr.port() != 0
            && let Some(existing) = map.values().find(|l| l.addr == addr)
        {
            let existing = existing.clone();
            map.insert(requested.to_string(), existing.clone());
            return Ok(existing);
        }
        let socket = bind(addr, self.scheduling).map_err(|e| format!("cannot listen on {requested}: {e}"))?;
        let bound = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or_else(|| format!("cannot listen on {requested}: no local address"))?;
        let listener = Arc::new(SharedListener {
            addr: bound,
            socket,
            targets: Mutex::new(Vec::new()),
            changed: Notify::new(),
            next: AtomicUsize::new(0),
        });
        if matches!(self.scheduling, Scheduling::RoundRobin | Scheduling::LeastConnections) {
            let std_listener: std::net::TcpListener =
                listener.socket.try_clone().map_err(|e| format!("cannot listen on {requested}: {e}"))?.into();
            let acceptor = tokio::net::TcpListener::from_std(std_listener)
                .map_err(|e| format!("cannot listen on {requested}: {e}"))?;
            let task = tokio::spawn(accept_loop(acceptor, listener.clone(), self.scheduling, self.closing.clone()));
            self.acceptors.lock().unwrap_or_else(PoisonError::into_inner).push(task);
        }
        map.insert(requested.to_string(), listener.clone());
        tracing::info!(%requested, addr = %bound, scheduling = ?self.scheduling, "listening");
        Ok(listener)
    }

    /// Stops listening: every acceptor hands the connections already in its backlog to the
    /// workers (still accepting at this point), then every listening socket closes, so that
    /// later connection attempts are refused instead of queued and reset.
    pub(crate) async fn close_all(&self) {
        self.closing.cancel();
        let acceptors = std::mem::take(&mut *self.acceptors.lock().unwrap_or_else(PoisonError::into_inner));
        for task in acceptors {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        self.by_addr.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Registers a worker on a listener (it gets connections once `ready` is set).
    pub(crate) fn register(&self, listener: &SharedListener, target: Target) {
        listener.with_targets(|t| t.push(target));
        listener.changed.notify_waiters();
    }

    /// Tells every acceptor that some worker's readiness changed.
    pub(crate) fn readiness_changed(&self) {
        for l in self.all() {
            l.changed.notify_waiters();
        }
    }

    /// Forgets a worker process on every listener.
    pub(crate) fn unregister(&self, slot: usize, generation: u64) {
        for l in self.all() {
            l.remove(slot, generation);
        }
    }

    fn all(&self) -> Vec<Arc<SharedListener>> {
        self.by_addr.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    /// Sends the listening socket itself to a worker (shared scheduling).
    pub(crate) async fn send_listener(
        &self,
        listener: &SharedListener,
        channel: &HandleChannel,
        id: u64,
    ) -> io::Result<()> {
        let header = HandleHeader { id, kind: HandleKind::Listener { addr: listener.addr.to_string() }, trace: None };
        channel.send(&header, listener.socket.as_fd()).await.map_err(io::Error::other)
    }
}

fn bind(addr: SocketAddr, scheduling: Scheduling) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None)?;
    socket.set_reuse_address(true)?;
    if scheduling == Scheduling::ReusePort {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    if scheduling != Scheduling::ReusePort {
        socket.listen(BACKLOG)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// How long an accepted connection may wait for a ready worker before it is closed.
const DISPATCH_PATIENCE: Duration = Duration::from_secs(30);

/// The tracing target of connection spans.
const NET_TARGET: &str = "corral::net";

/// Accepts connections and hands each to a ready worker, until `closing`; then hands out the
/// backlog and returns (closing the socket).
async fn accept_loop(
    acceptor: tokio::net::TcpListener,
    listener: Arc<SharedListener>,
    scheduling: Scheduling,
    closing: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = closing.cancelled() => break,
            accepted = acceptor.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => dispatch(&listener, scheduling, stream, peer).await,
            Err(e) => {
                // EMFILE and the like: back off a little instead of spinning.
                tracing::warn!(addr = %listener.addr, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // A zero timeout still polls once: it takes exactly what is queued now.
    while let Ok(Ok((stream, peer))) = tokio::time::timeout(Duration::ZERO, acceptor.accept()).await {
        dispatch(&listener, scheduling, stream, peer).await;
    }
    tracing::debug!(addr = %listener.addr, "listener closed");
}

/// Passes one accepted connection to a ready worker, trying others if a hand-off fails.
///
/// The hand-off is a `dispatch` span (target `corral::net`); its OpenTelemetry context travels
/// with the fd, so the worker's span for the connection is its child.
async fn dispatch(listener: &SharedListener, scheduling: Scheduling, stream: tokio::net::TcpStream, peer: SocketAddr) {
    let span = tracing::debug_span!(
        target: NET_TARGET,
        "dispatch",
        otel.kind = "producer",
        server.address = %listener.addr.ip(),
        server.port = listener.addr.port(),
        client.address = %peer.ip(),
        client.port = peer.port(),
        corral.scheduling = ?scheduling,
        corral.slot = tracing::field::Empty,
    );
    let trace = TraceContext::of_span(&span);
    dispatch_in(listener, scheduling, stream, peer, trace).instrument(span).await;
}

async fn dispatch_in(
    listener: &SharedListener,
    scheduling: Scheduling,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    trace: Option<TraceContext>,
) {
    let deadline = tokio::time::Instant::now() + DISPATCH_PATIENCE;
    loop {
        let changed = listener.changed.notified();
        tokio::pin!(changed);
        // Registered before looking, so a worker that becomes ready in between still wakes us.
        changed.as_mut().enable();
        if let Some(Pick { slot, generation, listen_id, channel, load }) = listener.pick(scheduling) {
            let header = HandleHeader {
                id: listen_id,
                kind: HandleKind::Connection { listener: listen_id, peer: peer.to_string() },
                trace: trace.clone(),
            };
            tracing::Span::current().record("corral.slot", slot);
            match channel.send(&header, stream.as_fd()).await {
                Ok(()) => {
                    load.dispatched_one();
                    return; // The worker has its own copy; ours closes here.
                }
                Err(e) => {
                    tracing::debug!(slot, error = %e, "hand-off failed; trying another worker");
                    listener.remove(slot, generation);
                    continue;
                }
            }
        }
        // No ready worker: wait for one (the connection waits with us, later ones in the
        // kernel's backlog).
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            tracing::warn!(addr = %listener.addr, %peer, "no worker became ready in time; closing the connection");
            return;
        }
    }
}
