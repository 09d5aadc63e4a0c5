//! Listening inside a worker: `WorkerContext::listen` and the [`Listener`] it returns.
//!
//! Whatever the cluster's scheduling, a worker gets a [`Listener`] that yields accepted
//! [`Connection`]s (a `tokio::net::TcpStream` that counts itself while open):
//!
//! * round robin / least connections: the primary accepts and passes each connection's fd
//!   over the handle channel; the listener yields them;
//! * shared: the primary passes the listening socket; the listener accepts on it;
//! * reuse-port: the worker binds its own `SO_REUSEPORT` socket to the granted address.
//!
//! Inside, `ListenRegistry` is the worker's side of its listen requests: it routes the
//! primary's answers and the fds it passes on the handle channel to the waiting request or
//! listener.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use corral_protocol::{
    HandleAck, HandleChannel, HandleHeader, HandleKind, ListenGrant, ListenRefusal, ProtocolError, Scheduling,
    TraceContext,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tracing::Span;

use crate::counters::Counters;

/// A connection passed by the primary: the stream, its peer, and its `connection` span.
type Accepted = (TcpStream, SocketAddr, Span);

/// The tracing target of connection spans.
const NET_TARGET: &str = "corral::net";

/// The span of one connection in this worker (target `corral::net`): a child of the primary's
/// `dispatch` span when the connection was passed with a trace context, a root otherwise.
/// The `connection` span of one connection; without `local`, its server fields are left for
/// the caller to record.
fn connection_span(peer: &SocketAddr, local: Option<&SocketAddr>, parent: Option<&TraceContext>) -> Span {
    let span = tracing::debug_span!(
        target: NET_TARGET,
        "connection",
        otel.kind = "consumer",
        server.address = tracing::field::Empty,
        server.port = tracing::field::Empty,
        client.address = %peer.ip(),
        client.port = peer.port(),
    );
    if let Some(local) = local {
        span.record("server.address", tracing::field::display(local.ip()));
        span.record("server.port", local.port());
    }
    if let Some(parent) = parent {
        parent.set_parent_of(&span);
    }
    span
}

/// The worker's side of its listeners: requests waiting for the primary's answer, and where
/// passed fds go.
#[derive(Default)]
pub(crate) struct ListenRegistry {
    next_id: AtomicU64,
    inner: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    acks: HashMap<u64, oneshot::Sender<Result<ListenGrant, ListenRefusal>>>,
    sockets: HashMap<u64, oneshot::Sender<OwnedFd>>,
    connections: HashMap<u64, mpsc::UnboundedSender<Accepted>>,
}

impl ListenRegistry {
    fn with<T>(&self, f: impl FnOnce(&mut Pending) -> T) -> T {
        // Each update is a single map operation, so a poisoned lock still guards valid maps.
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A new request: its id, and where its answer, socket and connections will arrive.
    /// Registered before the request is sent, so nothing that follows can be missed.
    pub(crate) fn open(&self) -> (u64, PendingListen) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (ack_tx, ack) = oneshot::channel();
        let (socket_tx, socket) = oneshot::channel();
        let (conn_tx, connections) = mpsc::unbounded_channel();
        self.with(|p| {
            p.acks.insert(id, ack_tx);
            p.sockets.insert(id, socket_tx);
            p.connections.insert(id, conn_tx);
        });
        (id, PendingListen { ack, socket, connections })
    }

    /// Drops whatever the registry keeps for `id` that the listener will not use.
    pub(crate) fn settle(&self, id: u64, scheduling: Option<Scheduling>) {
        self.with(|p| {
            p.acks.remove(&id);
            p.sockets.remove(&id);
            if !scheduling.is_some_and(Scheduling::primary_accepts) {
                p.connections.remove(&id);
            }
        });
    }

    /// The primary's answer to request `id`.
    pub(crate) fn acked(&self, id: u64, result: Result<ListenGrant, ListenRefusal>) {
        if let Some(tx) = self.with(|p| p.acks.remove(&id)) {
            let _ = tx.send(result);
        }
    }

    /// Reads the handle channel until it closes, routing each fd to its listener.
    ///
    /// Takes what is queued as one batch, acknowledges the batch to the primary (which keeps
    /// its copy of each connection until then, to hand it to another worker should this one
    /// die first), and only then routes it: a connection this worker may have started to
    /// read is always one the primary has let go of.
    pub(crate) async fn run_handle_reader(self: Arc<Self>, channel: HandleChannel) {
        let mut ack = HandleAck::default();
        let mut batch = Vec::with_capacity(ACK_BATCH);
        loop {
            let mut ended = false;
            let mut first_refusal = None;
            let mut next = Some(channel.recv().await);
            while let Some(received) = next.take() {
                match received {
                    Ok(None) => ended = true,
                    Ok(Some(datagram)) => {
                        ack.taken += 1;
                        batch.push(datagram);
                    }
                    Err(ProtocolError::Io(e)) => {
                        tracing::debug!(error = %e, "handle channel closed");
                        ended = true;
                    }
                    // Its fd did not arrive (out of fds: the kernel dropped it), or it is
                    // malformed: refused, so that the primary, which still holds the
                    // connection, hands it to a worker again. The channel goes on.
                    Err(e) => {
                        if ack.refused.is_empty() {
                            first_refusal = Some(e);
                        }
                        ack.refused.push(ack.taken);
                        ack.taken += 1;
                    }
                }
                if !ended && batch.len() + ack.refused.len() < ACK_BATCH {
                    next = channel.try_recv();
                }
            }
            if let Some(e) = first_refusal.take() {
                // Once per batch: a worker out of fds may refuse many in a row.
                tracing::warn!(error = %e, refused = ack.refused.len(), "could not take connections from the primary; refusing them (it hands them to a worker again)");
            }
            if !ended && channel.send_ack(&ack).await.is_err() {
                ended = true;
            }
            ack.refused.clear();
            for (header, fd) in batch.drain(..) {
                self.route(header, fd);
            }
            if ended {
                return;
            }
        }
    }

    /// Routes one fd from the handle channel to its listener.
    fn route(&self, header: HandleHeader, fd: OwnedFd) {
        match header.kind {
            HandleKind::Connection { listener, peer } => {
                let Some(tx) = self.with(|p| p.connections.get(&listener).cloned()) else {
                    tracing::warn!(listener, "connection for an unknown listener; closing it");
                    return;
                };
                match to_tokio_stream(fd, &peer) {
                    Ok((stream, peer)) => {
                        let span = connection_span(&peer, None, header.trace.as_ref());
                        // The local address costs a system call: asked only for a span that
                        // records it.
                        if !span.is_disabled() {
                            let local = stream.local_addr().unwrap_or(peer);
                            span.record("server.address", tracing::field::display(local.ip()));
                            span.record("server.port", local.port());
                        }
                        let _ = tx.send((stream, peer, span));
                    }
                    Err(e) => tracing::warn!(error = %e, "bad connection fd from the primary"),
                }
            }
            HandleKind::Listener { .. } => {
                if let Some(tx) = self.with(|p| p.sockets.remove(&header.id)) {
                    let _ = tx.send(fd);
                }
            }
        }
    }
}

/// At most this many datagrams are taken (or refused) before they are acknowledged (and
/// served); no more refusals than one acknowledgement may carry.
const ACK_BATCH: usize = corral_protocol::MAX_REFUSED_PER_ACK;

/// What a listen request waits on.
pub(crate) struct PendingListen {
    pub ack: oneshot::Receiver<Result<ListenGrant, ListenRefusal>>,
    pub socket: oneshot::Receiver<OwnedFd>,
    pub connections: mpsc::UnboundedReceiver<Accepted>,
}

fn to_tokio_stream(fd: OwnedFd, peer: &str) -> io::Result<(TcpStream, SocketAddr)> {
    let std_stream = std::net::TcpStream::from(fd);
    std_stream.set_nonblocking(true)?;
    let peer =
        peer.parse().or_else(|_| std_stream.peer_addr()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((TcpStream::from_std(std_stream)?, peer))
}

enum Source {
    /// Connections passed by the primary.
    Passed(mpsc::UnboundedReceiver<Accepted>),
    /// A listening socket of our own (shared by the primary, or bound with SO_REUSEPORT).
    Socket(tokio::net::TcpListener),
}

/// A listener on the cluster's shared port, made by
/// [`WorkerContext::listen`](crate::WorkerContext::listen). Yields [`Connection`]s; with the
/// default `axum` feature it implements `axum::serve::Listener`, so `axum::serve(listener,
/// app)` works.
///
/// # Examples
///
/// With axum (for a drain that loses no request, prefer [`crate::http::serve`]):
///
/// ```no_run
/// # async fn demo(cx: corral_workers::WorkerContext<()>) -> Result<(), corral_workers::BoxError> {
/// use axum::{Router, routing::get};
///
/// let listener = cx.listen("127.0.0.1:3000").await?;
/// let app = Router::new().route("/", get(|| async { "hello" }));
/// axum::serve(listener, app).with_graceful_shutdown(cx.shutdown_token().cancelled_owned()).await?;
/// # Ok(()) }
/// ```
pub struct Listener {
    source: Source,
    local: SocketAddr,
    scheduling: Scheduling,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("local", &self.local).field("scheduling", &self.scheduling).finish()
    }
}

impl Listener {
    pub(crate) fn new(
        grant: &ListenGrant,
        pending: PendingListen,
        socket: Option<tokio::net::TcpListener>,
        counters: Arc<Counters>,
    ) -> io::Result<Self> {
        let local = grant.addr.parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let source = match socket {
            Some(s) => Source::Socket(s),
            None => Source::Passed(pending.connections),
        };
        Ok(Listener { source, local, scheduling: grant.scheduling, counters })
    }

    /// The next connection.
    ///
    /// # Errors
    ///
    /// The accept error of an own socket (shared / reuse-port), or `NotConnected` once the
    /// primary has gone and no more connections will be passed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(cx: corral_workers::WorkerContext<()>) -> Result<(), corral_workers::BoxError> {
    /// use tokio::io::AsyncWriteExt;
    ///
    /// let mut listener = cx.listen("127.0.0.1:7000").await?;
    /// loop {
    ///     let (mut connection, peer) = listener.accept().await?;
    ///     cx.spawn_tracked(async move {
    ///         let _ = connection.write_all(format!("hello, {peer}\n").as_bytes()).await;
    ///     });
    /// }
    /// # }
    /// ```
    pub async fn accept(&mut self) -> io::Result<(Connection, SocketAddr)> {
        let (stream, peer, span) = match &mut self.source {
            Source::Passed(rx) => rx
                .recv()
                .await
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the primary passes no more connections"))?,
            Source::Socket(listener) => {
                let (stream, peer) = listener.accept().await?;
                (stream, peer, connection_span(&peer, Some(&self.local), None))
            }
        };
        Ok((Connection::new(stream, self.counters.clone(), span), peer))
    }

    /// The shared address (port 0 resolved by the primary, once for every worker).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(cx: corral_workers::WorkerContext<()>) -> Result<(), corral_workers::BoxError> {
    /// let listener = cx.listen("127.0.0.1:0").await?;
    /// println!("serving on http://{}", listener.local_addr());
    /// # Ok(()) }
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// How this listener gets its connections (the cluster's scheduling; see the module docs).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(cx: corral_workers::WorkerContext<()>) -> Result<(), corral_workers::BoxError> {
    /// use corral_protocol::Scheduling;
    ///
    /// let listener = cx.listen("127.0.0.1:0").await?;
    /// match listener.scheduling() {
    ///     Scheduling::RoundRobin | Scheduling::LeastConnections | Scheduling::Sticky => {
    ///         println!("the primary accepts")
    ///     }
    ///     Scheduling::Shared | Scheduling::ReusePort => println!("this worker accepts"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn scheduling(&self) -> Scheduling {
        self.scheduling
    }
}

#[cfg(feature = "axum")]
impl axum::serve::Listener for Listener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        loop {
            match Listener::accept(self).await {
                Ok(accepted) => return accepted,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    // No connection will ever come again: park this accept loop for good.
                    std::future::pending::<()>().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// An accepted connection: a `tokio::net::TcpStream` (it derefs to one, and is
/// `AsyncRead + AsyncWrite` like one) that is counted as open, for draining and
/// least-connections balancing, until it is dropped.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(mut listener: corral_workers::Listener) -> std::io::Result<()> {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let (mut connection, _peer) = listener.accept().await?;
/// connection.set_nodelay(true)?; // a `TcpStream` method, through `Deref`
/// let mut buf = [0u8; 1024];
/// let n = connection.read(&mut buf).await?;
/// connection.write_all(&buf[..n]).await?; // echo
/// # Ok(()) }
/// ```
pub struct Connection {
    stream: TcpStream,
    counters: Arc<Counters>,
    span: Span,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.stream.fmt(f)
    }
}

impl Connection {
    fn new(stream: TcpStream, counters: Arc<Counters>, span: Span) -> Self {
        counters.connection_opened();
        Connection { stream, counters, span }
    }

    /// This connection's `connection` span (target `corral::net`, disabled when tracing is
    /// off). With round robin or least connections it is the child of the primary's
    /// `dispatch` span, so serving the connection inside it (as [`crate::http::serve`] does)
    /// puts accept → worker → handler in one trace.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut listener: corral_workers::Listener) -> std::io::Result<()> {
    /// use tracing::Instrument;
    /// let (connection, _peer) = listener.accept().await?;
    /// let span = connection.span().clone();
    /// tokio::spawn(async move { drop(connection) }.instrument(span));
    /// # Ok(()) }
    /// ```
    pub fn span(&self) -> &Span {
        &self.span
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.counters.connection_closed();
    }
}

impl Deref for Connection {
    type Target = TcpStream;

    fn deref(&self) -> &TcpStream {
        &self.stream
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A listening socket passed by the primary, as a tokio listener.
pub(crate) fn from_passed_socket(fd: OwnedFd) -> io::Result<tokio::net::TcpListener> {
    let listener = std::net::TcpListener::from(fd);
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}
