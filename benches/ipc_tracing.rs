//! What tracing costs IPC: worker → primary throughput (the `ipc` benchmark's flood) with
//! tracing off, on without export, and on with OTLP export, side by side in one run.
//!
//! ```text
//! cargo bench --features telemetry --bench ipc_tracing                       # 5 repetitions, medians
//! BENCH_REPS=3 cargo bench --features telemetry --bench ipc_tracing
//! IPC_BASELINE=/path/to/ipc-bench-binary cargo bench --features telemetry --bench ipc_tracing
//! BENCH_MODES=baseline,otel cargo bench --features telemetry --bench ipc_tracing   # `off` and these only
//! IPC_WORKLOAD=rtt cargo bench --features telemetry --bench ipc_tracing   # round trips instead of the flood
//! ```
//!
//! Modes (both processes, primary and worker, set up the same way):
//! - `off`: no subscriber at all;
//! - `logging`: `corral::init_tracing()` without an OTLP endpoint (a fmt subscriber at
//!   `info`: corral's per-message spans, at `debug`, stay off) — how a service runs with
//!   tracing off;
//! - `otel`: the OpenTelemetry layer as `corral::telemetry` configures it, every span sampled
//!   (`AlwaysOn`), no exporter: the cost of making the spans and carrying their context;
//! - `otel-1%`: the same with one trace in a hundred sampled (`TraceIdRatioBased(0.01)`);
//! - `export`: `corral::init_tracing()` with `OTEL_EXPORTER_OTLP_ENDPOINT` set to an OTLP/HTTP
//!   sink this benchmark runs on 127.0.0.1 (it decodes every request and counts the spans),
//!   every span sampled, default batch processor settings (a 2,048-span queue: what does not
//!   fit is dropped, as the SDK does under overload);
//! - `export-all`: the same with a queue and batches big enough that every span is exported;
//! - `baseline` (when `IPC_BASELINE` names the `ipc` benchmark binary built from a commit
//!   before tracing existed): the plain figure, in the same run.
//!
//! Every measurement runs in a fresh process (this binary re-executes itself), unpinned.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use corral::ClusterConfig;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use prost::Message as _;
use tracing_subscriber::prelude::*;

mod support;
use support::env::env_u64;
use support::ipc::{BenchWorker, Flood, flood, round_trips, until_ready};
use support::json_line;
use support::stats::upper_median;

/// Messages measured per run (`IPC_COUNT`, default 1,000,000: long enough to average out
/// scheduling noise), after [`WARMUP`] unmeasured ones.
fn count() -> u64 {
    std::env::var("IPC_COUNT").ok().and_then(|c| c.parse().ok()).unwrap_or(1_000_000)
}
const WARMUP: u64 = 10_000;
/// The environment variable that tells both processes which mode they run in.
const MODE_ENV: &str = "IPC_TRACING_MODE";

/// Sets up this process's tracing for `mode`; the returned provider must live as long as the
/// process records spans.
fn setup_tracing(mode: &str) -> Option<SdkTracerProvider> {
    match mode {
        "logging" | "export" => {
            corral::init_tracing();
            None
        }
        "otel" | "otel-1%" => {
            // `otel-1%`: one trace in a hundred sampled; the others' spans are still made.
            let sampler = if mode == "otel" { Sampler::AlwaysOn } else { Sampler::TraceIdRatioBased(0.01) };
            let provider = SdkTracerProvider::builder().with_sampler(sampler).build();
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("corral"))
                .with_threads(false)
                .with_location(false)
                .with_tracked_inactivity(false)
                .with_filter(tracing_subscriber::EnvFilter::new(corral::telemetry::DEFAULT_FILTER));
            tracing_subscriber::registry().with(layer).init();
            Some(provider)
        }
        _ => None,
    }
}

/// Round trips measured per run of the `rtt` workload, after [`RTT_WARMUP`] (the `ipc`
/// benchmark's figures, so the baseline binary does the same).
const RTT_COUNT: u64 = 20_000;
const RTT_WARMUP: u64 = 2_000;

/// One measurement in this process (the primary): prints one JSON line.
fn child(workload: &str) -> Result<(), corral::Error> {
    let rtt = workload == "rtt";
    corral::run_primary::<<BenchWorker as corral::Worker>::Msg, <BenchWorker as corral::Worker>::Report, _, _>(
        ClusterConfig::default().workers(1),
        move |cluster, mut events| async move {
            until_ready(&mut events).await?;
            if rtt {
                // One message in flight: primary → worker → primary, each handled in its span.
                let samples = round_trips(&cluster, &mut events, RTT_WARMUP, RTT_COUNT).await?;
                let mean = samples.iter().sum::<f64>() / samples.len() as f64;
                println!(r#"{{"p50_us":{:.2},"mean_us":{mean:.2}}}"#, upper_median(samples));
                return Ok(());
            }
            let Flood { elapsed_s: elapsed, traced } = flood(&cluster, &mut events, WARMUP, count()).await?;
            println!(
                r#"{{"msgs_per_sec":{:.0},"elapsed_s":{elapsed:.4},"traced":{traced}}}"#,
                count() as f64 / elapsed
            );
            Ok(())
        },
    )
}

/// An OTLP/HTTP sink on 127.0.0.1: answers every export, counts the spans it decodes.
struct Sink {
    endpoint: String,
    spans: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl Sink {
    fn start() -> Sink {
        use axum::body::Bytes;
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        // Its own thread runs it while this one waits for the measurements.
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("sink runtime");
        let spans = Arc::new(AtomicU64::new(0));
        let counted = spans.clone();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind sink");
        let endpoint = format!("http://{}", listener.local_addr().expect("sink addr"));
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let counted = counted.clone();
                async move {
                    if let Ok(request) = ExportTraceServiceRequest::decode(body) {
                        let n: usize =
                            request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
                        counted.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
                }
            }),
        );
        runtime.spawn(async move { axum::serve(listener, app).await });
        Sink { endpoint, spans, _runtime: runtime }
    }
}

fn run_child(program: &str, args: &[&str], env: &[(&str, &str)]) -> Option<serde_json::Value> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("RUST_LOG", "off")
        .env("IPC_COUNT", count().to_string())
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let line = json_line::run(&mut cmd);
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        eprintln!("{args:?} {env:?}: {}", line.as_ref().map(ToString::to_string).unwrap_or_default());
    }
    line
}

fn main() -> Result<(), corral::Error> {
    let mode = std::env::var(MODE_ENV).unwrap_or_default();
    let _provider = setup_tracing(&mode);
    corral::run_if_worker(BenchWorker);
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        return child(args.get(i + 1).map_or("flood", String::as_str));
    }
    // IPC_WORKLOAD=rtt: one message in flight (round trips) instead of the flood.
    let workload = std::env::var("IPC_WORKLOAD").unwrap_or_else(|_| "flood".into());
    let rtt = workload == "rtt";
    let reps = env_u64("BENCH_REPS", 5) as usize;
    let exe = std::env::current_exe().map_err(corral::Error::Setup)?.to_string_lossy().to_string();
    let baseline = std::env::var("IPC_BASELINE").ok();
    let sink = Sink::start();

    let mut modes: Vec<&str> = Vec::new();
    if baseline.is_some() {
        modes.push("baseline");
    }
    modes.extend(["off", "logging", "otel", "otel-1%", "export", "export-all"]);
    // BENCH_MODES=off,otel measures a subset.
    let only = std::env::var("BENCH_MODES").unwrap_or_default();
    if !only.is_empty() {
        modes.retain(|m| *m == "off" || only.split(',').any(|o| o == *m));
    }
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut exported: Vec<Vec<u64>> = vec![Vec::new(); modes.len()];
    let mut p50s: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let export = [
        (MODE_ENV, "export"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "ipc-bench"),
    ];
    // Interleaved: every repetition measures every mode once, so drift hits all alike.
    for _ in 0..reps {
        for (i, mode) in modes.iter().enumerate() {
            let before = sink.spans.load(Ordering::Relaxed);
            let line = match *mode {
                "baseline" => run_child(
                    baseline.as_deref().unwrap_or_default(),
                    &["--child-mode", if rtt { "rtt" } else { "throughput" }],
                    &[],
                ),
                "export" => run_child(&exe, &["--child", &workload], &export),
                // A queue and batches big enough that no span is dropped.
                "export-all" => run_child(
                    &exe,
                    &["--child", &workload],
                    &[
                        &export[..],
                        &[
                            ("OTEL_BSP_MAX_QUEUE_SIZE", "4194304"),
                            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "16384"),
                            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
                        ],
                    ]
                    .concat(),
                ),
                other => run_child(&exe, &["--child", &workload], &[(MODE_ENV, other)]),
            };
            if let Some(j) = line {
                // Round trips per second from the mean round trip (the baseline's JSON has it).
                let rate = if rtt {
                    1e6 / j["mean_us"].as_f64().unwrap_or(f64::NAN)
                } else {
                    j["msgs_per_sec"].as_f64().unwrap_or(f64::NAN)
                };
                results[i].push(rate);
                if rtt {
                    p50s[i].push(j["p50_us"].as_f64().unwrap_or(f64::NAN));
                }
                if mode.starts_with("export") {
                    exported[i].push(sink.spans.load(Ordering::Relaxed) - before);
                }
            }
        }
    }
    if rtt {
        println!(
            "IPC tracing benchmark: primary → worker → primary round trips, one in flight, {RTT_COUNT} per run, {reps} repetitions, medians"
        );
    } else {
        println!("IPC tracing benchmark: worker → primary flood of {} messages, {reps} repetitions, medians", count());
    }
    let unit = if rtt { "trips/s" } else { "msgs/s" };
    println!("{:<11} {:>12} {:>10} {:>10} {:>14}", "mode", unit, "vs off", "rtt p50", "spans exported");
    let off = upper_median(results[modes.iter().position(|m| *m == "off").unwrap_or(0)].clone());
    for (((mode, tp), sent), p50) in modes.iter().zip(&results).zip(&exported).zip(&p50s) {
        let tp = upper_median(tp.clone());
        let sent = if sent.is_empty() {
            String::new()
        } else {
            format!("{:.0}", upper_median(sent.iter().map(|&n| n as f64).collect()))
        };
        let p50 = if p50.is_empty() { String::new() } else { format!("{:.1}µs", upper_median(p50.clone())) };
        println!("{mode:<11} {tp:>12.0} {:>9.1}% {p50:>10} {sent:>14}", (tp / off - 1.0) * 100.0);
    }
    let spans = if rtt { (RTT_WARMUP + RTT_COUNT) * 4 } else { (WARMUP + count()) * 2 };
    println!("(≈ {spans} spans are made per run with tracing on: a send and a receive per message)");
    Ok(())
}
