//! Traces across real processes, shown through a real exporter: an OTLP collector on
//! 127.0.0.1 in this test (`corral_testkit::otlp`) receives what the primary (this test
//! process, or `http_cluster`) and its workers export with `opentelemetry-otlp`.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::{TIMEOUT, TestCmd, TestReport, config, example, spawn};
use corral::ClusterEvent;
use corral_testkit::otlp::{CollectedSpan, Collector, Kind, Transport, hex};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::prelude::*;

/// This test process's own tracing: the primary side exports to the collector too.
struct Tracing {
    collector: Collector,
    provider: SdkTracerProvider,
}

/// Installed once for the whole test binary (the tests tell their traces apart by trace id).
fn tracing() -> &'static Tracing {
    static TRACING: OnceLock<Tracing> = OnceLock::new();
    TRACING.get_or_init(|| {
        let collector = Collector::start();
        let endpoint = collector.http_traces_endpoint();
        // reqwest's blocking client must be built outside any async runtime.
        let exporter = std::thread::spawn(move || {
            opentelemetry_otlp::SpanExporter::builder().with_http().with_endpoint(endpoint).build()
        })
        .join()
        .expect("exporter thread")
        .expect("exporter");
        let batch = BatchConfigBuilder::default().with_scheduled_delay(Duration::from_millis(50)).build();
        let processor = BatchSpanProcessor::builder(exporter).with_batch_config(batch).build();
        let resource = opentelemetry_sdk::Resource::builder_empty().with_service_name("corral-tests").build();
        let provider = SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("corral-tests"))
            .with_filter(tracing_subscriber::EnvFilter::new(corral::telemetry::DEFAULT_FILTER));
        tracing_subscriber::registry().with(layer).init();
        Tracing { collector, provider }
    })
}

fn trace_id_of(span: &tracing::Span) -> [u8; 16] {
    span.context().span().span_context().trace_id().to_bytes()
}

fn span_id_of(span: &tracing::Span) -> [u8; 8] {
    span.context().span().span_context().span_id().to_bytes()
}

/// The span of `trace` named `name` that matches `pred`, if it arrived.
fn find<'a>(
    spans: &'a [CollectedSpan],
    trace: [u8; 16],
    name: &str,
    pred: impl Fn(&CollectedSpan) -> bool,
) -> Option<&'a CollectedSpan> {
    spans.iter().find(|s| s.trace_id == trace && s.name == name && pred(s))
}

fn attr<'a>(span: &'a CollectedSpan, key: &str) -> &'a str {
    span.attributes.get(key).map(String::as_str).unwrap_or("")
}

fn res<'a>(span: &'a CollectedSpan, key: &str) -> &'a str {
    span.resource.get(key).map(String::as_str).unwrap_or("")
}

fn in_worker(span: &CollectedSpan) -> bool {
    res(span, "corral.role") == "worker"
}

/// Sends a ping inside a root span and waits for the pong, handling it inside the pong's
/// receive span; returns the root span's trace id and span id and the worker's pid.
async fn ping_round_trip(protocol: &str, endpoint: String, service: &str) -> ([u8; 16], [u8; 8], u32) {
    let t = tracing();
    let config = config(1)
        .env_var("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env_var("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        .env_var("OTEL_BSP_SCHEDULE_DELAY", "50")
        .env_var("OTEL_SERVICE_NAME", service);
    let (cluster, mut events) = spawn(config).await;
    let pid = events.all_ready(1).await[0];

    let root = tracing::info_span!("test-root");
    let (trace, root_id) = (trace_id_of(&root), span_id_of(&root));
    assert_ne!(trace, [0; 16], "the test's own spans are recorded");
    cluster.send_to(0, TestCmd::Ping(4242)).instrument(root.clone()).await.expect("send");
    let pong = events
        .wait_for("pong", |e| matches!(e, ClusterEvent::Message { message: TestReport::Pong { n: 4242, .. }, .. }))
        .await;
    let ClusterEvent::Message { span, .. } = pong else { unreachable!() };
    assert!(!span.is_disabled(), "the pong's receive span is recorded");
    span.in_scope(|| tracing::info!("pong handled"));
    drop(span);
    drop(root);
    // The worker flushes when it exits; the primary's own spans are flushed here.
    cluster.stop().await.expect("clean stop");
    let provider = t.provider.clone();
    tokio::task::spawn_blocking(move || provider.force_flush()).await.expect("flush").expect("flushed");
    (trace, root_id, pid)
}

/// The worker's receive span is the child of the primary's send span, in the same trace;
/// the worker's report continues it, and so does the primary's receive span.
fn assert_round_trip(collector: &Collector, trace: [u8; 16], root: [u8; 8], pid: u32, transport: Transport) {
    let spans = collector.wait_for("the four IPC spans of the round trip", TIMEOUT, |spans| {
        ["send", "receive"].iter().all(|name| {
            find(spans, trace, name, in_worker).is_some() && find(spans, trace, name, |s| !in_worker(s)).is_some()
        })
    });
    let dump = || spans.iter().filter(|s| s.trace_id == trace).map(|s| format!("{s:?}")).collect::<Vec<_>>().join("\n");
    let sent = find(&spans, trace, "send", |s| !in_worker(s)).expect("primary send");
    let received = find(&spans, trace, "receive", in_worker).expect("worker receive");
    let reported = find(&spans, trace, "send", in_worker).expect("worker send");
    let back = find(&spans, trace, "receive", |s| !in_worker(s)).expect("primary receive");

    assert_eq!(sent.parent_span_id, Some(root), "the send span is the child of the caller's span\n{}", dump());
    assert_eq!(sent.kind, Kind::Producer);
    assert_eq!(attr(sent, "messaging.system"), "corral");
    assert_eq!(attr(sent, "messaging.operation.type"), "send");
    assert_eq!(attr(sent, "messaging.destination.name"), "worker.0");

    assert_eq!(
        received.parent_span_id,
        Some(sent.span_id),
        "worker receive span {} must be the child of primary send span {}\n{}",
        hex(&received.span_id),
        hex(&sent.span_id),
        dump()
    );
    assert_eq!(received.trace_id, sent.trace_id);
    assert_eq!(received.kind, Kind::Consumer);
    assert_eq!(received.scope, "corral", "exported by corral::telemetry in the worker");
    assert_eq!(received.transport, transport, "the worker exported over the configured protocol");
    assert_eq!(attr(received, "messaging.operation.type"), "process");
    assert_eq!(attr(received, "messaging.destination.name"), "worker.0");
    assert_eq!(res(received, "process.pid"), pid.to_string());
    assert_eq!(res(received, "corral.slot"), "0");
    assert_eq!(res(received, "corral.generation"), "1");
    assert!(
        res(received, "service.instance.id").starts_with("worker.0.1@"),
        "service.instance.id names slot and generation: {:?}",
        res(received, "service.instance.id")
    );

    assert_eq!(reported.parent_span_id, Some(received.span_id), "the report was sent while handling the ping");
    assert_eq!(reported.kind, Kind::Producer);
    assert_eq!(attr(reported, "messaging.destination.name"), "primary");
    assert_eq!(back.parent_span_id, Some(reported.span_id), "the primary's receive continues the worker's trace");
    assert_eq!(back.kind, Kind::Consumer);
    assert_eq!(res(back, "service.name"), "corral-tests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_round_trip_is_one_trace_across_processes_over_http() {
    let collector = &tracing().collector;
    let (trace, root, pid) = ping_round_trip("http/protobuf", collector.http_endpoint(), "corral-testbed-http").await;
    assert_round_trip(collector, trace, root, pid, Transport::Http);
    let spans = collector.spans();
    let worker = find(&spans, trace, "receive", in_worker).expect("worker receive");
    assert_eq!(res(worker, "service.name"), "corral-testbed-http");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_round_trip_is_one_trace_across_processes_over_grpc() {
    let collector = &tracing().collector;
    let (trace, root, pid) = ping_round_trip("grpc", collector.grpc_endpoint(), "corral-testbed-grpc").await;
    assert_round_trip(collector, trace, root, pid, Transport::Grpc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_spans_of_the_primary_are_exported() {
    let collector = &tracing().collector;
    let (cluster, mut events) = spawn(config(1)).await;
    let pid = events.all_ready(1).await[0];
    cluster.stop().await.expect("clean stop");
    let provider = tracing().provider.clone();
    tokio::task::spawn_blocking(move || provider.force_flush()).await.expect("flush").expect("flushed");
    let pid = pid.to_string();
    let spans = collector.wait_for("fork and drain spans of this worker", TIMEOUT, |spans| {
        ["fork", "drain"].iter().all(|name| spans.iter().any(|s| s.name == *name && attr(s, "process.pid") == pid))
    });
    let drain = spans.iter().find(|s| s.name == "drain" && attr(s, "process.pid") == pid).expect("drain");
    let shutdown = spans
        .iter()
        .find(|s| s.name == "shutdown" && s.trace_id == drain.trace_id)
        .expect("the drain belongs to a shutdown trace");
    assert_eq!(drain.parent_span_id, Some(shutdown.span_id));
}

/// Whether process `pid` runs an OpenTelemetry batch span processor (its thread's name, as
/// the kernel keeps it: 15 bytes).
fn has_exporter_thread(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("comm")).is_ok_and(|name| name.trim() == "OpenTelemetry.T")
    })
}

/// Starts `http_cluster` with `env`, waits for its address, makes `requests` GETs of `/`
/// (one connection each), then stops it with SIGTERM and waits for a clean exit (every
/// process flushes its spans on the way out). Returns, per process that served or started
/// (primary first), whether it ran an exporter.
async fn run_http_cluster(env: &[(&str, String)], requests: usize) -> Vec<(u32, bool)> {
    run_http_cluster_with(env, requests, None).await
}

/// As [`run_http_cluster`], plus one request with this `traceparent` header.
async fn run_http_cluster_with(env: &[(&str, String)], requests: usize, traceparent: Option<&str>) -> Vec<(u32, bool)> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut cmd = tokio::process::Command::new(example("http_cluster"));
    cmd.args(["--workers", "2", "--port", "0"]).env("RUST_LOG", "off").env("OTEL_BSP_SCHEDULE_DELAY", "50");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut primary = cmd.stdout(std::process::Stdio::piped()).kill_on_drop(true).spawn().expect("start http_cluster");
    let mut lines = BufReader::new(primary.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(TIMEOUT, lines.next_line()).await.expect("announced").expect("read").expect("line");
    let addr: std::net::SocketAddr =
        line.strip_prefix("listening on http://").expect("listening line").parse().expect("host:port");
    let primary_pid = primary.id().expect("pid");
    let mut pids = vec![primary_pid];
    for _ in 0..requests {
        let (status, body) = common::http_get(addr, "/").await.expect("GET /");
        assert_eq!(status, 200);
        // "Handled by worker N (pid P)"
        let pid: u32 = body
            .split("(pid ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("pid in {body:?}"));
        if !pids.contains(&pid) {
            pids.push(pid);
        }
    }
    if let Some(traceparent) = traceparent {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request =
            format!("GET / HTTP/1.1\r\nHost: test\r\ntraceparent: {traceparent}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut answer)).await.expect("answered").expect("read");
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    }
    let exporters: Vec<(u32, bool)> = pids.iter().map(|&pid| (pid, has_exporter_thread(pid))).collect();
    let pid = nix::unistd::Pid::from_raw(primary_pid as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = tokio::time::timeout(TIMEOUT, primary.wait()).await.expect("exits").expect("wait");
    assert!(status.success(), "http_cluster exits 0 after SIGTERM: {status:?}");
    exporters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_cluster_exports_accept_worker_handler_as_one_trace() {
    let collector = &tracing().collector;
    let service = "http-cluster-traced";
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", collector.http_endpoint()), ("OTEL_SERVICE_NAME", service.into())];
    // A caller's trace (W3C traceparent) continues into the request span.
    let caller_trace = [0x4b; 16];
    let caller_span = [0x0f; 8];
    let traceparent = format!("00-{}-{}-01", hex(&caller_trace), hex(&caller_span));
    let exporters = run_http_cluster_with(&env, 3, Some(&traceparent)).await;
    assert!(exporters.len() >= 2 && exporters.iter().all(|(_, on)| *on), "every process exports: {exporters:?}");
    let ours = |s: &CollectedSpan| res(s, "service.name") == service;
    let spans = collector.wait_for("3 request spans from http_cluster", TIMEOUT, |spans| {
        spans.iter().filter(|s| ours(s) && s.kind == Kind::Server).count() >= 4
    });
    let dump = || spans.iter().filter(|s| ours(s)).map(|s| format!("{s:?}")).collect::<Vec<_>>().join("\n");
    let continued = spans
        .iter()
        .find(|s| ours(s) && s.kind == Kind::Server && s.trace_id == caller_trace)
        .unwrap_or_else(|| panic!("the request with a traceparent continues the caller's trace\n{}", dump()));
    assert_eq!(continued.parent_span_id, Some(caller_span), "its parent is the caller's span");
    for request in spans.iter().filter(|s| ours(s) && s.kind == Kind::Server && s.trace_id != caller_trace) {
        assert_eq!(request.name, "GET", "HTTP server spans are named by their method");
        assert_eq!(attr(request, "http.request.method"), "GET");
        assert_eq!(attr(request, "url.path"), "/");
        assert_eq!(attr(request, "http.response.status_code"), "200");
        assert_eq!(res(request, "corral.role"), "worker");
        let connection = spans
            .iter()
            .find(|s| Some(s.span_id) == request.parent_span_id && s.trace_id == request.trace_id)
            .unwrap_or_else(|| panic!("the request's parent arrived\n{}", dump()));
        assert_eq!(connection.name, "connection");
        assert_eq!(res(connection, "process.pid"), res(request, "process.pid"));
        let dispatch = spans
            .iter()
            .find(|s| Some(s.span_id) == connection.parent_span_id && s.trace_id == request.trace_id)
            .unwrap_or_else(|| panic!("the connection's parent arrived\n{}", dump()));
        assert_eq!(dispatch.name, "dispatch", "accept → worker → handler");
        assert_eq!(dispatch.kind, Kind::Producer);
        assert_eq!(res(dispatch, "corral.role"), "primary");
        assert_eq!(
            attr(dispatch, "corral.slot"),
            res(request, "corral.slot"),
            "dispatched to the worker that served it"
        );
        assert!(dispatch.parent_span_id.is_none(), "the dispatch span is the trace's root");
    }
    // Both workers and the primary describe themselves.
    let instances: std::collections::HashSet<&str> =
        spans.iter().filter(|s| ours(s)).map(|s| res(s, "service.instance.id")).collect();
    assert!(instances.iter().any(|i| i.starts_with("primary@")), "{instances:?}");
    assert!(instances.iter().any(|i| i.starts_with("worker.0.1@")), "{instances:?}");
    assert!(instances.iter().any(|i| i.starts_with("worker.1.1@")), "{instances:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_cluster_exports_nothing_when_told_not_to() {
    let collector = &tracing().collector;
    let service = "http-cluster-disabled";
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.http_endpoint()),
        ("OTEL_SERVICE_NAME", service.into()),
        ("OTEL_SDK_DISABLED", "true".into()),
    ];
    // Every process has exited (and would have flushed) when this returns.
    let exporters = run_http_cluster(&env, 2).await;
    assert!(exporters.iter().all(|(_, on)| !on), "no exporter runs: {exporters:?}");
    let leaked = collector.spans().into_iter().filter(|s| res(s, "service.name") == service).count();
    assert_eq!(leaked, 0, "OTEL_SDK_DISABLED=true turns export off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_cluster_runs_no_exporter_without_an_endpoint() {
    // No OTEL_EXPORTER_OTLP_ENDPOINT in this environment (unless the person running the
    // tests set one, in which case this test has nothing to show).
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
    {
        return;
    }
    let exporters = run_http_cluster(&[], 4).await;
    assert!(exporters.len() >= 2, "the primary and at least one worker: {exporters:?}");
    assert!(exporters.iter().all(|(_, on)| !on), "no exporter runs without an endpoint: {exporters:?}");
}
