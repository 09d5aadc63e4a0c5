//! An in-test OTLP trace collector: receives spans over both OTLP transports — `http/protobuf`
//! (`POST /v1/traces`) and `grpc` (`TraceService/Export`) — on `127.0.0.1:0`, and keeps them
//! for the test to inspect.
//!
//! The servers run on a thread of their own with their own tokio runtime, so the collector
//! works from sync tests and from `#[tokio::test]` tests of either flavour.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::http::{StatusCode, header};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use tokio_util::sync::CancellationToken;

/// Bounds the start of the servers, and their graceful shutdown when the collector is dropped.
const SERVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Which of the collector's servers received a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `http/protobuf`: `POST /v1/traces`.
    Http,
    /// `grpc`: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
    Grpc,
}

/// A span's kind, as OTLP encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
    /// A value this collector does not know.
    Other(i32),
}

impl Kind {
    fn from_otlp(kind: i32) -> Kind {
        match kind {
            0 => Kind::Unspecified,
            1 => Kind::Internal,
            2 => Kind::Server,
            3 => Kind::Client,
            4 => Kind::Producer,
            5 => Kind::Consumer,
            other => Kind::Other(other),
        }
    }
}

/// One span as the collector received it.
#[derive(Debug, Clone)]
pub struct CollectedSpan {
    pub name: String,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// `None` for a root span (OTLP sends an empty parent span id).
    pub parent_span_id: Option<[u8; 8]>,
    pub kind: Kind,
    /// The span's attributes, values rendered as strings (arrays as `[a, b]`, bytes in hex).
    pub attributes: HashMap<String, String>,
    /// The attributes of the resource the span came with (`service.name`, `process.pid`, …).
    pub resource: HashMap<String, String>,
    /// The name of the instrumentation scope (the tracer) that made the span.
    pub scope: String,
    pub transport: Transport,
}

/// Lower-case hex of `bytes`, for messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Received spans, and a condition variable notified after every export.
#[derive(Default)]
struct Shared {
    spans: Mutex<Vec<CollectedSpan>>,
    arrived: Condvar,
}

impl Shared {
    /// The span list; a panic elsewhere (a test's predicate) must not hide what was received.
    fn lock(&self) -> MutexGuard<'_, Vec<CollectedSpan>> {
        self.spans.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores the spans of one export request. Malformed ids are reported, not stored.
    fn record(&self, request: ExportTraceServiceRequest, transport: Transport) -> Result<(), String> {
        let mut collected = Vec::new();
        for resource_spans in request.resource_spans {
            let resource = resource_spans.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                let scope = scope_spans.scope.map(|s| s.name).unwrap_or_default();
                for span in scope_spans.spans {
                    let name = span.name;
                    let bad = |field: &str, bytes: &[u8]| format!("span {name:?}: bad {field} {:?}", hex(bytes));
                    let trace_id = span.trace_id.as_slice().try_into().map_err(|_| bad("trace id", &span.trace_id))?;
                    let span_id = span.span_id.as_slice().try_into().map_err(|_| bad("span id", &span.span_id))?;
                    let parent_span_id = match span.parent_span_id.as_slice() {
                        [] => None,
                        id => Some(id.try_into().map_err(|_| bad("parent span id", id))?),
                    };
                    collected.push(CollectedSpan {
                        trace_id,
                        span_id,
                        parent_span_id,
                        kind: Kind::from_otlp(span.kind),
                        attributes: attributes(&span.attributes),
                        resource: resource.clone(),
                        scope: scope.clone(),
                        transport,
                        name,
                    });
                }
            }
        }
        self.lock().extend(collected);
        self.arrived.notify_all();
        Ok(())
    }
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), render(kv.value.as_ref()))).collect()
}

fn render(value: Option<&AnyValue>) -> String {
    use any_value::Value;
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(bytes)) => hex(bytes),
        Some(Value::ArrayValue(array)) => {
            let items: Vec<String> = array.values.iter().map(|v| render(Some(v))).collect();
            format!("[{}]", items.join(", "))
        }
        Some(Value::KvlistValue(list)) => {
            let items: Vec<String> =
                list.values.iter().map(|kv| format!("{}: {}", kv.key, render(kv.value.as_ref()))).collect();
            format!("{{{}}}", items.join(", "))
        }
        Some(other) => format!("{other:?}"),
    }
}

/// The gRPC side.
struct GrpcTraces(Arc<Shared>);

#[tonic::async_trait]
impl TraceService for GrpcTraces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.record(request.into_inner(), Transport::Grpc).map_err(tonic::Status::invalid_argument)?;
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The HTTP side: `POST /v1/traces` with an `ExportTraceServiceRequest` protobuf body.
async fn http_export(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    const PROTOBUF: &str = "application/x-protobuf";
    let text = |status, message: String| (status, [(header::CONTENT_TYPE, "text/plain")], message.into_bytes());
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type != PROTOBUF {
        let message = format!("this collector takes {PROTOBUF} only, not {content_type:?}");
        return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, message);
    }
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("content-encoding {encoding:?} is not supported"));
    }
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(error) => return text(StatusCode::BAD_REQUEST, format!("bad ExportTraceServiceRequest: {error}")),
    };
    match shared.record(request, Transport::Http) {
        Ok(()) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, PROTOBUF)], ExportTraceServiceResponse::default().encode_to_vec())
        }
        Err(error) => text(StatusCode::BAD_REQUEST, error),
    }
}

/// An OTLP trace collector on `127.0.0.1` (HTTP and gRPC). Dropping it stops both servers.
pub struct Collector {
    shared: Arc<Shared>,
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    shutdown: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    /// Starts both servers, each on `127.0.0.1:0`.
    pub fn start() -> Collector {
        let shared = Arc::new(Shared::default());
        let shutdown = CancellationToken::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let shared = shared.clone();
            let shutdown = shutdown.clone();
            std::thread::Builder::new()
                .name("otlp-collector".into())
                .spawn(move || serve(shared, shutdown, ready_tx))
                .expect("spawn the OTLP collector thread")
        };
        let (http_addr, grpc_addr) = match ready_rx.recv_timeout(SERVER_TIMEOUT) {
            Ok(Ok(addrs)) => addrs,
            Ok(Err(error)) => panic!("OTLP collector failed to start: {error}"),
            Err(error) => panic!("OTLP collector did not start within {SERVER_TIMEOUT:?}: {error}"),
        };
        Collector { shared, http_addr, grpc_addr, shutdown, thread: Some(thread) }
    }

    /// The base URL of the HTTP server, e.g. `http://127.0.0.1:PORT`: what
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` takes (the exporter appends `/v1/traces` to it).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The full traces URL of the HTTP server: what `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` and the
    /// HTTP exporter builder's `with_endpoint` take (they use it as is).
    pub fn http_traces_endpoint(&self) -> String {
        format!("{}/v1/traces", self.http_endpoint())
    }

    /// The URL of the gRPC server, e.g. `http://127.0.0.1:PORT`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// Everything received so far, in order of arrival.
    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.shared.lock().clone()
    }

    /// Waits until `pred` holds for the spans received so far (checked after every export),
    /// and returns them; panics after `timeout`, naming `what` and listing what did arrive.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[CollectedSpan]) -> bool,
    ) -> Vec<CollectedSpan> {
        let deadline = Instant::now() + timeout;
        let mut spans = self.shared.lock();
        loop {
            if pred(&spans) {
                return spans.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                let received = dump(&spans);
                drop(spans);
                panic!("timed out after {timeout:?} waiting for {what}; the collector received {received}");
            }
            spans = self.shared.arrived.wait_timeout(spans, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

/// The received spans, one a line, for failure messages.
fn dump(spans: &[CollectedSpan]) -> String {
    if spans.is_empty() {
        return "no spans".to_owned();
    }
    let mut out = format!("{} spans:", spans.len());
    for span in spans {
        let parent = span.parent_span_id.map(|p| hex(&p)).unwrap_or_else(|| "-".to_owned());
        let service = span.resource.get("service.name").map(String::as_str).unwrap_or("?");
        out.push_str(&format!(
            "\n  {:?} {:?} trace {} span {} parent {parent} service {service} ({:?})",
            span.name,
            span.kind,
            hex(&span.trace_id),
            hex(&span.span_id),
            span.transport
        ));
    }
    out
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            // The thread bounds its own shutdown, so this join is bounded too.
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("the OTLP collector thread panicked");
            }
        }
    }
}

type Ready = Result<(SocketAddr, SocketAddr), String>;

/// The collector thread: binds both servers, reports their addresses, serves until `shutdown`,
/// then gives them `SERVER_TIMEOUT` to finish before the runtime is dropped.
fn serve(shared: Arc<Shared>, shutdown: CancellationToken, ready: std::sync::mpsc::Sender<Ready>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(format!("tokio runtime: {error}")));
            return;
        }
    };
    runtime.block_on(async move {
        let bind = || tokio::net::TcpListener::bind(("127.0.0.1", 0));
        let listeners = async {
            let (http, grpc) = (bind().await?, bind().await?);
            let addrs = (http.local_addr()?, grpc.local_addr()?);
            std::io::Result::Ok((http, grpc, addrs))
        };
        let (http, grpc) = match listeners.await {
            Ok((http, grpc, addrs)) => {
                let _ = ready.send(Ok(addrs));
                (http, grpc)
            }
            Err(error) => {
                let _ = ready.send(Err(format!("bind 127.0.0.1:0: {error}")));
                return;
            }
        };

        let app = axum::Router::new().route("/v1/traces", axum::routing::post(http_export)).with_state(shared.clone());
        let http_server = tokio::spawn(
            axum::serve(http, app).with_graceful_shutdown(shutdown.clone().cancelled_owned()).into_future(),
        );
        let grpc_server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(GrpcTraces(shared)))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(grpc),
                    shutdown.clone().cancelled_owned(),
                ),
        );

        shutdown.cancelled().await;
        let stopped = tokio::time::timeout(SERVER_TIMEOUT, async {
            let http = http_server.await;
            let grpc = grpc_server.await;
            (http, grpc)
        })
        .await;
        match stopped {
            Err(_) => eprintln!("OTLP collector: servers did not stop within {SERVER_TIMEOUT:?}; dropping them"),
            Ok((http, grpc)) => {
                if let Err(error) = http.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
                    eprintln!("OTLP collector: HTTP server: {error}");
                }
                if let Err(error) = grpc.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
                    eprintln!("OTLP collector: gRPC server: {error}");
                }
            }
        }
    });
    // Whatever is left (connections still open) is cancelled with the runtime.
    runtime.shutdown_timeout(SERVER_TIMEOUT);
}
