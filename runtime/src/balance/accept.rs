//! The primary's accept loop: each accepted connection goes to a worker the [`Strategy`]
//! picks, its fd passed on the worker's handle channel.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::{Arc, Weak};
use std::time::Duration;

use corral_protocol::{HandleHeader, HandleKind, TraceContext};
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

/// Accepts connections and hands each to a ready worker, until `closing`; then hands out the
/// backlog and returns (closing the socket).
pub(crate) async fn accept_loop(
    acceptor: tokio::net::TcpListener,
    listener: Arc<SharedListener>,
    strategy: Strategy,
    closing: CancellationToken,
) {
    let _ = listener.strategy.set(strategy);
    loop {
        let accepted = tokio::select! {
            biased;
            () = closing.cancelled() => break,
            accepted = acceptor.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                listener.counts.accepted_one();
                dispatch(&listener, strategy, stream, peer).await
            }
            Err(e) => {
                tracing::warn!(addr = %listener.addr, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    // A zero timeout still polls once: it takes exactly what is queued now.
    while let Ok(Ok((stream, peer))) = tokio::time::timeout(Duration::ZERO, acceptor.accept()).await {
        listener.counts.accepted_one();
        dispatch(&listener, strategy, stream, peer).await;
    }
    tracing::debug!(addr = %listener.addr, "listener closed");
}

/// Passes one accepted connection to a ready worker, trying others if a hand-off fails.
///
/// The hand-off is a `dispatch` span (target `corral::net`); its OpenTelemetry context travels
/// with the fd, so the worker's span for the connection is its child.
async fn dispatch(listener: &Arc<SharedListener>, strategy: Strategy, stream: tokio::net::TcpStream, peer: SocketAddr) {
    let span = dispatch_span(listener, strategy, peer);
    let trace = TraceContext::of_span(&span);
    hand_off(listener, strategy, stream, peer, trace, 0).instrument(span).await;
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
    let strategy = listener.strategy.get().copied().unwrap_or(Strategy::RoundRobin);
    let span = dispatch_span(listener, strategy, kept.peer);
    span.record("corral.redispatched", true);
    listener.counts.redispatched_one();
    hand_off(listener, strategy, kept.stream, kept.peer, kept.trace, kept.refusals).instrument(span).await;
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
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    mut trace: Option<TraceContext>,
    refusals: u32,
) {
    let deadline = tokio::time::Instant::now() + DISPATCH_PATIENCE;
    loop {
        let changed = listener.changed.notified();
        tokio::pin!(changed);
        // Registered before looking, so a worker that becomes ready in between still wakes us.
        changed.as_mut().enable();
        if let Some(target) = listener.pick(strategy, peer) {
            let header = HandleHeader {
                id: target.listen_id,
                kind: HandleKind::Connection { listener: target.listen_id, peer: peer.to_string() },
                trace: trace.clone(),
            };
            tracing::Span::current().record("corral.slot", target.slot);
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
