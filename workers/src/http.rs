//! Serving an axum app on a [`Listener`] with a drain that loses no request.
//!
//! `axum::serve(..).with_graceful_shutdown(..)` (like hyper's `graceful_shutdown` and Node's
//! `server.close()`) closes idle keep-alive connections at once, which races a request the
//! client has already put on the wire: the client sees a reset or a silent close (Node 20's
//! `server.close()`, measured under a keep-alive load, broke 64 of 64 connections). [`serve`]
//! drains instead:
//!
//! 1. stop accepting, after taking every connection already handed to this worker (passed by
//!    the primary); a listening socket of its own is shared with the primary, which keeps its
//!    queue for the other workers or the slot's replacement, so the worker stops at once;
//! 2. answer each connection's next request with `Connection: close` (the client reconnects,
//!    to another worker);
//! 3. close only connections still idle after [`DrainOptions::idle_grace`]; in-flight
//!    requests always finish.
//!
//! Each connection is served inside its [`Connection::span`](crate::Connection::span) and each
//! request in a `request` span (target `corral::net`, `DEBUG`), so with round robin one trace
//! runs from the primary's `dispatch` to your handler's own spans. A request that carries a
//! W3C `traceparent` header continues the caller's trace instead, linked to the connection's.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Request, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::Instrument;

use crate::listen::{Connection, Listener};

/// How [`serve`] drains.
#[derive(Debug, Clone, Copy)]
pub struct DrainOptions {
    /// Connections still idle this long after the drain began are closed. Default: 1 s.
    pub idle_grace: Duration,
    /// Once the drain began, connections the primary already passed to this worker are still
    /// taken until none has come for this long. Default: 50 ms. (A worker accepting on a
    /// socket takes nothing more: the socket is shared, and under a steady load a settle
    /// would never come; the drain would last until the stop timeout killed it with what it
    /// had taken.)
    pub handoff_settle: Duration,
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions { idle_grace: Duration::from_secs(1), handoff_settle: Duration::from_millis(50) }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains (see the module
/// docs) and returns once every connection has closed.
///
/// ```no_run
/// # async fn demo(cx: corral_workers::WorkerContext<()>) -> Result<(), corral_workers::BoxError> {
/// use axum::{Router, routing::get};
/// let listener = cx.listen("127.0.0.1:3000").await?;
/// let app = Router::new().route("/", get(|| async { "hello" }));
/// tokio::spawn(corral_workers::http::serve(listener, app, cx.shutdown_token(), Default::default()));
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// None today; the `Result` leaves room for listener failures that end serving.
pub async fn serve(
    mut listener: Listener,
    app: Router,
    shutdown: CancellationToken,
    options: DrainOptions,
) -> io::Result<()> {
    let draining = Arc::new(AtomicBool::new(false));
    let close_idle = Arc::new(CloseIdle::default());
    let tracker = TaskTracker::new();
    let spawn = |stream: Connection| {
        let span = stream.span().clone();
        tracker.spawn(serve_connection(stream, app.clone(), draining.clone(), close_idle.clone()).instrument(span));
    };
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => spawn(stream),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
    // From here on every response says `Connection: close`.
    draining.store(true, Ordering::Release);
    // Take what the primary already passed to us (fds in flight). A socket we accept on
    // ourselves is shared with the primary: what is queued on it stays for the others.
    if listener.scheduling().primary_accepts() {
        while let Ok(Ok((stream, _))) = tokio::time::timeout(options.handoff_settle, listener.accept()).await {
            spawn(stream);
        }
    }
    drop(listener);
    let grace = options.idle_grace;
    let closer = close_idle.clone();
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        closer.close();
    });
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// The trace context a caller sent in W3C `traceparent` / `tracestate` headers, if valid.
fn remote_context(headers: &axum::http::HeaderMap) -> Option<corral_protocol::TraceContext> {
    let traceparent = headers.get("traceparent")?.to_str().ok()?;
    let tracestate = headers.get("tracestate").and_then(|v| v.to_str().ok());
    corral_protocol::TraceContext::from_headers(traceparent, tracestate)
}

/// The end of the drain's grace: every connection still open is told to close once idle.
///
/// Not a `CancellationToken`: a connection polled with `select!` on `cancelled()` takes the
/// token's lock at every wake-up, i.e. for every request of a keep-alive connection (measured:
/// about 1 % of a worker's time under load). Here a connection registers its waker once
/// (again only if it changes), checks one flag per wake-up, and leaves when it ends.
#[derive(Default)]
struct CloseIdle {
    closed: AtomicBool,
    next: std::sync::atomic::AtomicU64,
    wakers: Mutex<std::collections::HashMap<u64, Waker>>,
}

impl CloseIdle {
    fn wakers(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Waker>> {
        // Each update inserts or removes whole entries: a poisoned lock still holds valid wakers.
        self.wakers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut *self.wakers());
        for waker in wakers.into_values() {
            waker.wake();
        }
    }
}

/// A connection's future until the idle close: `Ok` with its result, or `Err` (the connection
/// itself, still open) once [`CloseIdle::close`] was called.
struct UntilClose<'a, F> {
    connection: Pin<&'a mut F>,
    close: &'a CloseIdle,
    /// This connection's key among the wakers, and the waker it registered.
    registered: Option<(u64, Waker)>,
}

impl<F> Drop for UntilClose<'_, F> {
    fn drop(&mut self) {
        if let Some((key, _)) = self.registered.take() {
            self.close.wakers().remove(&key);
        }
    }
}

impl<F: Future> Future for UntilClose<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(done) = this.connection.as_mut().poll(cx) {
            return Poll::Ready(Some(done));
        }
        if this.close.closed.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        if !this.registered.as_ref().is_some_and(|(_, w)| w.will_wake(cx.waker())) {
            let key = match &this.registered {
                Some((key, _)) => *key,
                None => this.close.next.fetch_add(1, Ordering::Relaxed),
            };
            this.close.wakers().insert(key, cx.waker().clone());
            this.registered = Some((key, cx.waker().clone()));
            // Closed while registering: the waker may have been drained before it was pushed.
            if this.close.closed.load(Ordering::Acquire) {
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    }
}

async fn serve_connection(stream: Connection, app: Router, draining: Arc<AtomicBool>, close_idle: Arc<CloseIdle>) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let app = app.clone();
        let draining = draining.clone();
        async move {
            let result = if corral_protocol::spans::enabled() {
                // One `request` span per request (target `corral::net`, HTTP server
                // conventions), inside the connection's span: accept → worker → handler in
                // one trace.
                let span = tracing::debug_span!(
                    target: "corral::net",
                    "request",
                    otel.kind = "server",
                    otel.name = %request.method(),
                    http.request.method = %request.method(),
                    url.path = request.uri().path(),
                    http.response.status_code = tracing::field::Empty,
                );
                // A caller's W3C `traceparent` continues its trace here; the connection's
                // own trace (dispatch → connection) is kept as a link.
                if let Some(remote) = remote_context(request.headers()) {
                    remote.set_parent_linking(&span, Some(&tracing::Span::current()));
                }
                let response = app.oneshot(request).instrument(span.clone()).await;
                if let Ok(response) = &response {
                    span.record("http.response.status_code", response.status().as_u16());
                }
                response
            } else {
                app.oneshot(request).await
            };
            let mut response = match result {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if draining.load(Ordering::Acquire) {
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response)
        }
    });
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let until = UntilClose { connection: connection.as_mut(), close: &close_idle, registered: None };
    match until.await {
        Some(result) => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        None => {
            // Idle connections close now; one in the middle of a request finishes it first.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
