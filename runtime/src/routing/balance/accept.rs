//! The primary's accept loop: each accepted connection goes to a worker the [`Strategy`]
//! picks, its fd passed on the worker's handle channel.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::{Arc, Weak};
use std::time::Duration;

use corral_protocol::{HandleHeader, HandleKind, TraceContext};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::shared::SharedListener;
use super::strategy::Strategy;
use super::untaken::{self, Keep, Kept, Redispatch};

/// How long an accepted connection may wait for a ready worker before it is closed.
const DISPATCH_PATIENCE: Duration = Duration::from_secs(30);

/// How long to wait after a failed `accept` (`EMFILE` and the like) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The tracing target of connection spans.
const NET_TARGET: &str = "corral::net";

/// The most connections taken in one wake-up before the loop lets other tasks run (the
/// socket stays ready, so it goes on at once after).
const ACCEPT_BATCH: usize = 64;

/// Accepts connections and hands each to a ready worker, until `closing`; then hands out the
/// backlog and returns (closing the socket).
///
/// Each wake-up takes every connection queued (`accept` until `EAGAIN`, at most
/// [`ACCEPT_BATCH`] before yielding). The accepted sockets are plain fds: the primary never
/// reads them, so they are not registered with its event loop (that would cost two
/// `epoll_ctl` calls per connection).
pub(crate) async fn accept_loop(
    acceptor: tokio::net::TcpListener,
    listener: Arc<SharedListener>,
    strategy: Strategy,
    closing: CancellationToken,
) {
    let _ = listener.strategy.set(strategy);
    let watched = acceptor.into_std().and_then(|socket| {
        // SAFETY: the `TcpListener` owns its fd, so it is open; the `AsyncFd` takes ownership
        // of the listener and the fd stays open and unchanged until the `AsyncFd` is dropped.
        unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }.map_err(std::io::Error::from)
    });
    let acceptor = match watched {
        Ok(acceptor) => acceptor,
        Err(e) => {
            tracing::error!(addr = %listener.addr, error = %e, "cannot watch the listening socket; not accepting");
            return;
        }
    };
    'wake_ups: loop {
        let ready = tokio::select! {
            biased;
            () = closing.cancelled() => break,
            ready = acceptor.readable() => ready,
        };
        let mut guard = match ready {
            Ok(guard) => guard,
            Err(e) => {
                tracing::warn!(addr = %listener.addr, error = %e, "listening socket failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        for _ in 0..ACCEPT_BATCH {
            if closing.is_cancelled() {
                break 'wake_ups;
            }
            match guard.try_io(|socket| socket.get_ref().accept()) {
                Ok(Ok((stream, peer))) => {
                    listener.counts.accepted_one();
                    dispatch(&listener, strategy, stream, peer).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(addr = %listener.addr, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue 'wake_ups;
                }
                // `EAGAIN`: the queue is empty, and the readiness cleared.
                Err(_would_block) => continue 'wake_ups,
            }
        }
        drop(guard);
        tokio::task::yield_now().await;
    }
    // Exactly what is queued now (the socket is non-blocking).
    while let Ok((stream, peer)) = acceptor.get_ref().accept() {
        listener.counts.accepted_one();
        dispatch(&listener, strategy, stream, peer).await;
    }
    tracing::debug!(addr = %listener.addr, "listener closed");
}

/// Passes one accepted connection to a ready worker, trying others if a hand-off fails.
///
/// The hand-off is a `dispatch` span (target `corral::net`); its OpenTelemetry context travels
/// with the fd, so the worker's span for the connection is its child.
async fn dispatch(listener: &Arc<SharedListener>, strategy: Strategy, stream: std::net::TcpStream, peer: SocketAddr) {
    let span = dispatch_span(listener, strategy, peer);
    let trace = TraceContext::of_span(&span);
    hand_off(listener, strategy, stream, peer, trace, 0, span.clone()).instrument(span).await;
}

impl Redispatch for SharedListener {
    fn again(self: Arc<Self>, kept: Kept) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move { redispatch(&self, kept).await })
    }
}

/// Hands a connection a worker died without taking to another worker (a new `dispatch`
/// span, linked to the first by the trace context it still carries).
async fn redispatch(listener: &Arc<SharedListener>, kept: Kept) {
    // Set when the acceptor started, before any connection was kept.
    let strategy = match listener.strategy.get().copied().unwrap_or(Strategy::RoundRobin) {
        // It has waited on a dead worker already: to the least busy worker, not the next in
        // turn — a spare promoted in that worker's place takes it first. A sticky client
        // stays with its key's owner.
        Strategy::RoundRobin | Strategy::LeastConnections => Strategy::Redispatch,
        other => other,
    };
    let span = dispatch_span(listener, strategy, kept.peer);
    span.record("corral.redispatched", true);
    listener.counts.redispatched_one();
    hand_off(listener, strategy, kept.stream, kept.peer, kept.trace, kept.refusals, span.clone())
        .instrument(span)
        .await;
}

/// The `dispatch` span of one hand-off (target `corral::net`).
fn dispatch_span(listener: &SharedListener, strategy: Strategy, peer: SocketAddr) -> tracing::Span {
    tracing::debug_span!(
        target: NET_TARGET,
        "dispatch",
        otel.kind = "producer",
        server.address = %listener.addr.ip(),
        server.port = listener.addr.port(),
        client.address = %peer.ip(),
        client.port = peer.port(),
        corral.scheduling = ?strategy,
        corral.redispatched = tracing::field::Empty,
        corral.slot = tracing::field::Empty,
    )
}

async fn hand_off(
    listener: &Arc<SharedListener>,
    strategy: Strategy,
    mut stream: std::net::TcpStream,
    peer: SocketAddr,
    mut trace: Option<TraceContext>,
    refusals: u32,
    // The `dispatch` span this runs in: recorded into directly (`Span::current()` would look
    // it up in the subscriber's registry for every connection).
    span: tracing::Span,
) {
    let deadline = tokio::time::Instant::now() + DISPATCH_PATIENCE;
    loop {
        let changed = listener.changed.notified();
        tokio::pin!(changed);
        // A ready worker is the common case: look first. Only when there is none, register
        // for the change (which takes the notifier's lock) and look again, so that a worker
        // that becomes ready in between still wakes us.
        let mut picked = listener.pick(strategy, peer);
        if picked.is_none() {
            changed.as_mut().enable();
            picked = listener.pick(strategy, peer);
        }
        if let Some(target) = picked {
            let header = HandleHeader {
                id: target.listen_id,
                kind: HandleKind::Connection { listener: target.listen_id, peer: peer.to_string() },
                trace: trace.clone(),
            };
            span.record("corral.slot", target.slot);
            match target.channel.send_counted(&header, stream.as_fd()).await {
                Ok(seq) => {
                    target.load.dispatched_one();
                    listener.counts.dispatched_one();
                    let origin = Arc::downgrade(listener) as Weak<dyn Redispatch>;
                    let kept = Kept { seq, stream, peer, trace, listener: origin, refusals };
                    // Ours stays open until the worker has taken it (or is handed out again).
                    match target.untaken.keep(kept) {
                        None => return,
                        Some(Keep::Refused(kept)) => {
                            untaken::refused(kept);
                            return;
                        }
                        Some(Keep::Gone(back)) => {
                            // The worker is gone (its channel outlived it): try another.
                            (stream, trace) = (back.stream, back.trace);
                            listener.remove(target.slot, target.generation);
                            continue;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(slot = target.slot, error = %e, "hand-off failed; trying another worker");
                    listener.remove(target.slot, target.generation);
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
