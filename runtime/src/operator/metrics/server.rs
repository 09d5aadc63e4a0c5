//! The endpoint's HTTP/1 server (hyper), in tasks of its own: a slow or hostile client costs
//! one bounded task and never delays the cluster or another client.
//!
//! Every connection is bounded: [`MAX_CONNECTIONS`] at once (more are closed at once), the
//! request head within [`HEADER_TIMEOUT`] and [`MAX_HEAD_BYTES`], the whole connection (keep-
//! alive included) within [`CONNECTION_LIFETIME`]. Only `GET` and `HEAD` are answered; request
//! bodies are never read.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::sync::Semaphore;

use super::exposition::{self, Snapshot};
use super::history::{History, SAMPLE_INTERVAL};
use super::page::{self, Page};
use super::recorder::Recorder;
use crate::api::handle::ClusterHandle;
use crate::operator::status_json::CpuMeter;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a request's head once connected (or between keep-alive requests).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The longest a connection stays open.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// How long a scrape waits for the cluster's status before it shows the last sample's.
const STATUS_PATIENCE: Duration = Duration::from_secs(3);
/// A status this recent answers a request without asking the cluster again: however many
/// clients scrape, the cluster actor is asked at most this often.
const STATUS_REUSE: Duration = Duration::from_millis(250);

/// Binds the endpoint's socket (`SO_REUSEADDR`, so that a restarted primary rebinds at once).
///
/// # Errors
///
/// The address cannot be bound.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

/// What every connection task shares.
struct Endpoint<M, R> {
    cluster: ClusterHandle<M, R>,
    recorder: Arc<Recorder>,
    history: History,
    cpu: CpuMeter,
    name: String,
    /// The last status asked for requests, and when; held across the asking, so that
    /// concurrent requests share one.
    fresh: tokio::sync::Mutex<Option<(Instant, Vec<crate::api::status::WorkerStatus>)>>,
}

impl<M, R> Endpoint<M, R>
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    /// The cluster's status now, or the last sample's if the cluster does not answer in time.
    async fn workers(&self) -> Vec<crate::api::status::WorkerStatus> {
        let mut fresh = self.fresh.lock().await;
        if let Some((at, workers)) = fresh.as_ref()
            && at.elapsed() < STATUS_REUSE
        {
            return workers.clone();
        }
        let workers = match tokio::time::timeout(STATUS_PATIENCE, self.cluster.status()).await {
            Ok(Ok(workers)) => {
                self.history.remember(&workers);
                workers
            }
            // Too busy or stopped: the last known status, reused for a while like a fresh one.
            _ => self.history.latest(),
        };
        *fresh = Some((Instant::now(), workers.clone()));
        workers
    }

    async fn snapshot(&self) -> Snapshot {
        Snapshot {
            workers: self.workers().await,
            listeners: self.cluster.connection_counts(),
            autoscale: self.cluster.autoscale(),
        }
    }

    async fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
            response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let mut response = match request.uri().path() {
            "/metrics" => {
                let openmetrics = request
                    .headers()
                    .get_all(hyper::header::ACCEPT)
                    .iter()
                    .any(|v| v.to_str().is_ok_and(|v| v.contains("application/openmetrics-text")));
                let body = exposition::render(&self.snapshot().await, &self.recorder);
                if openmetrics {
                    with_type(body, "application/openmetrics-text; version=1.0.0; charset=utf-8")
                } else {
                    with_type(exposition::as_prometheus_text(&body), "text/plain; version=0.0.4; charset=utf-8")
                }
            }
            "/status.json" => {
                let workers = self.workers().await;
                let body =
                    crate::operator::status_json::status_json(&workers, &self.cpu, self.cluster.autoscale().as_ref())
                        .to_string();
                with_type(body, "application/json")
            }
            "/healthz" => {
                if super::health::alive(&self.cluster).await {
                    text(StatusCode::OK, "ok\n")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "the cluster actor does not answer\n")
                }
            }
            "/readyz" => {
                let (workers, needed) = tokio::join!(self.workers(), super::health::ready_needed(&self.cluster));
                let status =
                    crate::operator::status_json::status_json(&workers, &self.cpu, self.cluster.autoscale().as_ref());
                let (ready, body) = super::health::readiness(&workers, needed, status);
                let mut response = with_type(body.to_string(), "application/json");
                if !ready {
                    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                }
                response
            }
            "/" => {
                let workers = self.workers().await;
                let rows: Vec<_> = workers.into_iter().map(|w| (w.clone(), self.history.slot(w.slot))).collect();
                let body = page::render(&Page {
                    name: &self.name,
                    primary_pid: std::process::id(),
                    generation: self.recorder.generation.get(),
                    workers: &rows,
                    listeners: &self.cluster.connection_counts(),
                });
                with_type(body, "text/html; charset=utf-8")
            }
            _ => text(StatusCode::NOT_FOUND, "not found: try /, /metrics, /status.json, /healthz or /readyz\n"),
        };
        response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if request.method() == Method::HEAD {
            *response.body_mut() = Full::new(Bytes::new());
        }
        response
    }

    /// Samples the cluster every [`SAMPLE_INTERVAL`] for the sparklines.
    async fn sample(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Ok(Ok(workers)) = tokio::time::timeout(STATUS_PATIENCE, self.cluster.status()).await {
                self.history.sample(&workers, Instant::now());
            }
        }
    }
}

fn with_type(body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = with_type(body.to_string(), "text/plain; charset=utf-8");
    *response.status_mut() = status;
    response
}

/// Serves the endpoint on `listener` until the cluster stops.
pub(crate) async fn serve<M, R>(
    listener: std::net::TcpListener,
    cluster: ClusterHandle<M, R>,
    recorder: Arc<Recorder>,
    name: String,
) where
    M: Serialize + Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(error = %e, "metrics endpoint cannot accept; the cluster runs without it");
            return;
        }
    };
    let endpoint = Arc::new(Endpoint {
        cluster: cluster.clone(),
        recorder,
        history: History::default(),
        cpu: CpuMeter::default(),
        name,
        fresh: tokio::sync::Mutex::new(None),
    });
    let sampler = tokio::spawn(endpoint.clone().sample());
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let accept = async {
        loop {
            let Ok((stream, _peer)) = listener.accept().await else {
                // EMFILE and the like: wait instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let Ok(place) = places.clone().try_acquire_owned() else {
                tracing::debug!("metrics endpoint busy; closing a connection");
                continue;
            };
            tokio::spawn(connection(stream, endpoint.clone(), place));
        }
    };
    tokio::select! {
        () = accept => {}
        _ = cluster.wait() => {}
    }
    sampler.abort();
}

async fn connection<M, R>(
    stream: tokio::net::TcpStream,
    endpoint: Arc<Endpoint<M, R>>,
    _place: tokio::sync::OwnedSemaphorePermit,
) where
    M: Serialize + Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let endpoint = endpoint.clone();
        async move { Ok::<_, Infallible>(endpoint.answer(&request).await) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).max_buf_size(MAX_HEAD_BYTES);
    let served = http.serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_LIFETIME, served).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "metrics client"),
        Err(_) => tracing::debug!("metrics client outlived its connection lifetime; closed"),
    }
}
