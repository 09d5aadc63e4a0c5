//! OTLP metrics of the primary (feature `telemetry`): `http_cluster` with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pushes its figures to an in-test collector (`POST /v1/metrics`,
//! decoded with the OTLP protobuf messages); they follow a SIGKILL of a worker.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TIMEOUT, example, http_get};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message;

/// One data point as received: attributes, value (histograms: their count).
#[derive(Debug, Clone)]
struct Point {
    attributes: HashMap<String, String>,
    value: f64,
}

#[derive(Default)]
struct Received {
    /// The points of the latest export, by metric.
    latest: HashMap<String, Vec<Point>>,
    /// `service.instance.id` of the exporting resource.
    instances: Vec<String>,
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn number(p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => f64::NAN,
    }
}

fn record(received: &Mutex<Received>, request: ExportMetricsServiceRequest) {
    let mut received = received.lock().expect("collector lock");
    for rm in request.resource_metrics {
        if let Some(resource) = &rm.resource
            && let Some(id) = attrs(&resource.attributes).remove("service.instance.id")
        {
            received.instances.push(id);
        }
        for sm in rm.scope_metrics {
            for m in sm.metrics {
                let mut points = Vec::new();
                let point = |attributes: &[KeyValue], value| Point { attributes: attrs(attributes), value };
                match &m.data {
                    Some(metric::Data::Gauge(g)) => {
                        points.extend(g.data_points.iter().map(|p| point(&p.attributes, number(p))))
                    }
                    Some(metric::Data::Sum(s)) => {
                        points.extend(s.data_points.iter().map(|p| point(&p.attributes, number(p))))
                    }
                    Some(metric::Data::Histogram(h)) => {
                        points.extend(h.data_points.iter().map(|p| point(&p.attributes, p.count as f64)))
                    }
                    _ => {}
                }
                received.latest.insert(m.name.clone(), points);
            }
        }
    }
}

/// A collector of OTLP metrics over `http/protobuf` on `127.0.0.1:0`, on the test's runtime.
async fn collector() -> (SocketAddr, Arc<Mutex<Received>>) {
    let received = Arc::new(Mutex::new(Received::default()));
    let shared = received.clone();
    let app = axum::Router::new().route(
        "/v1/metrics",
        axum::routing::post(move |body: axum::body::Bytes| {
            let shared = shared.clone();
            async move {
                match ExportMetricsServiceRequest::decode(body) {
                    Ok(request) => {
                        record(&shared, request);
                        (axum::http::StatusCode::OK, ExportMetricsServiceResponse::default().encode_to_vec())
                    }
                    Err(e) => (axum::http::StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the collector");
    let addr = listener.local_addr().expect("collector address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

/// Waits (bounded) until the latest export satisfies `ok`.
async fn until(received: &Mutex<Received>, what: &str, ok: impl Fn(&HashMap<String, Vec<Point>>) -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if ok(&received.lock().expect("collector lock").latest) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let latest = &received.lock().expect("collector lock").latest;
            panic!("{what}: not exported within {TIMEOUT:?}; last export {latest:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn slot_value(latest: &HashMap<String, Vec<Point>>, metric: &str, slot: usize) -> Option<f64> {
    latest.get(metric)?.iter().find(|p| p.attributes.get("corral.slot") == Some(&slot.to_string())).map(|p| p.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_cluster_exports_its_metrics_over_otlp() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let (addr, received) = collector().await;
    let mut primary = tokio::process::Command::new(example("http_cluster"))
        .args(["--workers", "2", "--port", "0"])
        .env("RUST_LOG", "off")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
        .env("OTEL_TRACES_EXPORTER", "none")
        .env("OTEL_SERVICE_NAME", "otlp-metrics-test")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start http_cluster");
    let mut lines = BufReader::new(primary.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(TIMEOUT, lines.next_line()).await.expect("announced").expect("read").expect("line");
    let http: SocketAddr = line.strip_prefix("listening on http://").expect("listening line").parse().expect("address");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    for _ in 0..5 {
        assert_eq!(http_get(http, "/").await.expect("GET /").0, 200);
    }

    until(&received, "both workers' memory and readiness", |m| {
        (0..2).all(|s| slot_value(m, "process.memory.usage", s).is_some_and(|b| b > 0.0))
            && (0..2).all(|s| slot_value(m, "corral.worker.ready", s) == Some(1.0))
            && m.get("corral.cluster.workers").is_some_and(|p| p.first().is_some_and(|p| p.value == 2.0))
            && m.contains_key("process.cpu.time")
            && m.contains_key("messaging.client.sent.messages")
            && m.contains_key("corral.listener.connections.accepted")
    })
    .await;
    let instances = received.lock().expect("lock").instances.clone();
    assert!(instances.iter().all(|i| i.starts_with("primary@")), "exported by the primary only: {instances:?}");

    // A SIGKILL: the slot's restarts reach 1, its exit is counted by reason, a new pid shows.
    let victim: u32 = {
        let latest = &received.lock().expect("lock").latest;
        let point = latest["process.memory.usage"].iter().find(|p| p.attributes["corral.slot"] == "0").expect("slot 0");
        point.attributes["process.pid"].parse().expect("pid")
    };
    common::kill(victim, nix::sys::signal::Signal::SIGKILL);
    until(&received, "the restart of slot 0", |m| {
        slot_value(m, "corral.worker.restarts", 0) == Some(1.0)
            && m.get("corral.worker.exits").is_some_and(|points| {
                points
                    .iter()
                    .any(|p| p.attributes.get("reason").map(String::as_str) == Some("signal") && p.value == 1.0)
            })
            && m["process.memory.usage"]
                .iter()
                .any(|p| p.attributes["corral.slot"] == "0" && p.attributes["process.pid"] != victim.to_string())
    })
    .await;

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(primary.id().expect("pid") as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = tokio::time::timeout(TIMEOUT, primary.wait()).await.expect("exits").expect("wait");
    assert!(status.success(), "{status:?}");
}
