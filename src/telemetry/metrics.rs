//! OTLP metrics of the primary (cargo feature `telemetry`): the figures of the metrics
//! endpoint (docs/src/observability.md, "Metrics endpoint"), pushed by the OpenTelemetry SDK's
//! periodic reader whenever `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`) is set.
//! `corral::run` and `corral::run_primary` start it; [`export`] starts it for a cluster of
//! your own.
//!
//! Names follow the OpenTelemetry semantic conventions where one exists: `process.memory.usage`,
//! `process.cpu.time`, `process.uptime` per worker (attributes `corral.slot`, `process.pid`);
//! `messaging.client.sent.messages` and `messaging.client.consumed.messages` for the IPC user
//! messages (`messaging.system` = `corral`, `messaging.destination.name` = `worker.<slot>`);
//! the rest are `corral.*`, named as their Prometheus twins with dots (`corral.worker.restarts`,
//! `corral.cluster.reload.duration`, `corral.listener.connections.accepted`, …).
//!
//! | variable | meaning |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` | where to send; export is on only when one is set |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL` | `http/protobuf` (default) or `grpc` |
//! | `OTEL_METRIC_EXPORT_INTERVAL` | milliseconds between exports (default 60000) |
//! | `OTEL_SDK_DISABLED=true`, `OTEL_METRICS_EXPORTER=none` | export off |
//!
//! ```no_run
//! use corral::{Cluster, ClusterConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
//! // Kept while the cluster runs; dropping it sends the last figures.
//! let _metrics = corral::telemetry::metrics::export(&cluster)?;
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use corral_runtime::{ClusterEvent, ClusterHandle, ListenerCounts, WorkerState, WorkerStatus};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Counter, Histogram, Meter, MeterProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use serde::Serialize;

use super::TelemetryError;

/// How often the cluster is sampled for the observable instruments, at most.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// How long dropping an [`Export`] waits for the last figures to leave.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the environment asks for metrics export: an OTLP endpoint is set, and neither
/// `OTEL_SDK_DISABLED=true` nor `OTEL_METRICS_EXPORTER=none` turns it off.
///
/// ```
/// # if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() && std::env::var_os("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").is_none() {
/// assert!(!corral::telemetry::metrics::export_requested());
/// # }
/// ```
pub fn export_requested() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let no_exporter = std::env::var("OTEL_METRICS_EXPORTER").is_ok_and(|v| v.trim().eq_ignore_ascii_case("none"));
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")) && !disabled && !no_exporter
}

/// A running metrics export; dropping it sends the last figures and stops.
pub struct Export {
    provider: SdkMeterProvider,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export").finish_non_exhaustive()
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Err(e) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::debug!(error = %e, "shutting down the metrics exporter failed");
        }
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime inside an async context panics; this never blocks.
            runtime.shutdown_background();
        }
    }
}

/// The metric exporter, built as the span exporter is (see `exporter_on_own_thread`).
fn exporter() -> Result<(opentelemetry_otlp::MetricExporter, Option<tokio::runtime::Runtime>), TelemetryError> {
    super::exporter_on_own_thread(
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        "corral-otlp-metrics",
        || opentelemetry_otlp::MetricExporter::builder().with_tonic().build(),
        || opentelemetry_otlp::MetricExporter::builder().with_http().with_protocol(Protocol::HttpBinary).build(),
    )
}

/// What the observable instruments read: the last sample of the cluster.
#[derive(Default)]
struct Sample {
    workers: Vec<WorkerStatus>,
    listeners: Vec<ListenerCounts>,
    /// CPU seconds per slot's current process.
    cpu: Vec<Option<f64>>,
}

type Shared = Arc<Mutex<Sample>>;

fn read<T>(shared: &Shared, f: impl FnOnce(&Sample) -> T) -> T {
    // The sample is replaced whole: a poisoned lock is still consistent.
    f(&shared.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Observes `value` of every worker in the last sample that has one, with its slot's attributes.
fn observe_each_worker<T>(shared: &Shared, value: fn(&WorkerStatus) -> Option<T>, o: &dyn AsyncInstrument<T>) {
    read(shared, |s| {
        for w in &s.workers {
            if let Some(v) = value(w) {
                o.observe(v, &slot_attrs(w));
            }
        }
    });
}

fn slot_attrs(w: &WorkerStatus) -> Vec<KeyValue> {
    let mut attrs = vec![KeyValue::new("corral.slot", w.slot as i64)];
    if let Some(pid) = w.pid {
        attrs.push(KeyValue::new("process.pid", i64::from(pid)));
    }
    attrs
}

/// Starts exporting `cluster`'s metrics over OTLP when the environment asks for it
/// ([`export_requested`]); `Ok(None)` when it does not. Call it inside the primary's tokio
/// runtime (it spawns the sampling task there).
///
/// # Errors
///
/// [`TelemetryError`] for an unsupported protocol or an exporter that cannot be built.
pub fn export<M, R>(cluster: &ClusterHandle<M, R>) -> Result<Option<Export>, TelemetryError>
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    if !export_requested() {
        return Ok(None);
    }
    let (exporter, runtime) = exporter()?;
    let reader = PeriodicReader::builder(exporter).build();
    let provider = SdkMeterProvider::builder().with_reader(reader).with_resource(super::resource()).build();
    let meter = provider.meter("corral");
    let shared: Shared = Arc::default();
    let generation = Arc::new(AtomicU64::new(0));
    observe(&meter, &shared, &generation);
    let events = Events::new(&meter, generation);
    let sampling = tokio::spawn(sample(cluster.clone(), shared, sample_interval()));
    let counting = tokio::spawn(events.count(cluster.subscribe_lifecycle()));
    Ok(Some(Export { provider, tasks: vec![sampling, counting], runtime }))
}

/// The sampling period: the export interval, at most [`SAMPLE_INTERVAL`].
fn sample_interval() -> Duration {
    let export = std::env::var("OTEL_METRIC_EXPORT_INTERVAL")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(SAMPLE_INTERVAL, Duration::from_millis);
    export.min(SAMPLE_INTERVAL)
}

async fn sample<M, R>(cluster: ClusterHandle<M, R>, shared: Shared, every: Duration)
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Ok(Ok(workers)) = tokio::time::timeout(Duration::from_secs(3), cluster.status()).await else {
            continue;
        };
        let cpu = workers.iter().map(|w| w.pid.and_then(corral_runtime::metrics::process_cpu_seconds)).collect();
        let sample = Sample { workers, listeners: cluster.connection_counts(), cpu };
        *shared.lock().unwrap_or_else(PoisonError::into_inner) = sample;
    }
}

/// Registers the observable instruments, each reading the last sample.
fn observe(meter: &Meter, shared: &Shared, generation: &Arc<AtomicU64>) {
    let per_worker =
        |name: &'static str, unit: &'static str, description: &'static str, value: fn(&WorkerStatus) -> Option<f64>| {
            let shared = shared.clone();
            meter
                .f64_observable_gauge(name)
                .with_unit(unit)
                .with_description(description)
                .with_callback(move |o| observe_each_worker(&shared, value, o))
                .build();
        };
    per_worker("corral.worker.up", "1", "1 while the slot has a process", |w| {
        Some(f64::from(u8::from(w.pid.is_some())))
    });
    per_worker("corral.worker.ready", "1", "1 while the worker is ready", |w| {
        Some(f64::from(u8::from(w.state == WorkerState::Ready)))
    });
    per_worker("process.uptime", "s", "Uptime of the slot's process", |w| w.uptime.map(|u| u.as_secs_f64()));
    per_worker("corral.worker.heartbeat.latency", "s", "Round trip of the last heartbeat ping", |w| {
        w.heartbeat_latency.map(|l| l.as_secs_f64())
    });
    per_worker("corral.worker.pool.queued", "{task}", "Tasks waiting in the CPU pool", |w| {
        w.stats.and_then(|s| s.pool).map(|p| p.queued as f64)
    });
    per_worker("corral.worker.pool.running", "{task}", "Tasks running in the CPU pool", |w| {
        w.stats.and_then(|s| s.pool).map(|p| p.running as f64)
    });

    let per_worker_sum =
        |name: &'static str, unit: &'static str, description: &'static str, value: fn(&WorkerStatus) -> Option<u64>| {
            let shared = shared.clone();
            meter
                .u64_observable_counter(name)
                .with_unit(unit)
                .with_description(description)
                .with_callback(move |o| observe_each_worker(&shared, value, o))
                .build();
        };
    per_worker_sum("corral.worker.restarts", "{restart}", "Restarts of the slot", |w| Some(w.restarts));
    per_worker_sum("corral.worker.connections.handled", "{connection}", "Connections the process handled", |w| {
        w.stats.map(|s| s.handled)
    });
    let shared_open = shared.clone();
    meter
        .i64_observable_up_down_counter("corral.worker.connections.open")
        .with_unit("{connection}")
        .with_description("Requests or connections in flight")
        .with_callback(move |o| {
            read(&shared_open, |s| {
                for w in &s.workers {
                    if let Some(stats) = w.stats {
                        o.observe(i64::try_from(stats.in_flight).unwrap_or(i64::MAX), &slot_attrs(w));
                    }
                }
            })
        })
        .build();
    let shared_rss = shared.clone();
    meter
        .i64_observable_up_down_counter("process.memory.usage")
        .with_unit("By")
        .with_description("RSS of the slot's process")
        .with_callback(move |o| {
            read(&shared_rss, |s| {
                for w in &s.workers {
                    if let Some(b) = w.rss_bytes {
                        o.observe(i64::try_from(b).unwrap_or(i64::MAX), &slot_attrs(w));
                    }
                }
            })
        })
        .build();
    let shared_cpu = shared.clone();
    meter
        .f64_observable_counter("process.cpu.time")
        .with_unit("s")
        .with_description("User and system CPU time of the slot's process")
        .with_callback(move |o| {
            read(&shared_cpu, |s| {
                for (w, cpu) in s.workers.iter().zip(&s.cpu) {
                    if let Some(cpu) = cpu {
                        o.observe(*cpu, &slot_attrs(w));
                    }
                }
            })
        })
        .build();
    let shared_msgs = shared.clone();
    meter
        .u64_observable_counter("messaging.client.sent.messages")
        .with_unit("{message}")
        .with_description("User messages the primary sent to the slot's workers")
        .with_callback(move |o| {
            read(&shared_msgs, |s| {
                for w in &s.workers {
                    o.observe(w.messages_out, &messaging_attrs(w));
                }
            })
        })
        .build();
    let shared_msgs = shared.clone();
    meter
        .u64_observable_counter("messaging.client.consumed.messages")
        .with_unit("{message}")
        .with_description("User messages the primary received from the slot's workers")
        .with_callback(move |o| {
            read(&shared_msgs, |s| {
                for w in &s.workers {
                    o.observe(w.messages_in, &messaging_attrs(w));
                }
            })
        })
        .build();
    let shared_cluster = shared.clone();
    meter
        .u64_observable_gauge("corral.cluster.workers")
        .with_unit("{worker}")
        .with_description("Worker slots")
        .with_callback(move |o| read(&shared_cluster, |s| o.observe(s.workers.len() as u64, &[])))
        .build();
    let shared_gave_up = shared.clone();
    meter
        .u64_observable_gauge("corral.cluster.gave_up_slots")
        .with_unit("{worker}")
        .with_description("Slots that exceeded their restart intensity")
        .with_callback(move |o| {
            read(&shared_gave_up, |s| {
                o.observe(s.workers.iter().filter(|w| w.state == WorkerState::GaveUp).count() as u64, &[])
            })
        })
        .build();
    let generation = generation.clone();
    meter
        .u64_observable_gauge("corral.cluster.generation")
        .with_description("Rolling reloads (and upgrades) completed since this primary started")
        .with_callback(move |o| o.observe(generation.load(Ordering::Relaxed), &[]))
        .build();
    for (name, description, value) in [
        (
            "corral.listener.connections.accepted",
            "Connections the primary accepted",
            (|l: &ListenerCounts| l.accepted) as fn(&ListenerCounts) -> u64,
        ),
        ("corral.listener.connections.dispatched", "Hand-offs of connections to workers", |l| l.dispatched),
        ("corral.listener.connections.redispatched", "Connections handed out again", |l| l.redispatched),
    ] {
        let shared = shared.clone();
        meter
            .u64_observable_counter(name)
            .with_unit("{connection}")
            .with_description(description)
            .with_callback(move |o| {
                read(&shared, |s| {
                    for l in &s.listeners {
                        o.observe(value(l), &[KeyValue::new("corral.listener", l.addr.to_string())]);
                    }
                })
            })
            .build();
    }
}

fn messaging_attrs(w: &WorkerStatus) -> Vec<KeyValue> {
    let mut attrs = slot_attrs(w);
    attrs.push(KeyValue::new("messaging.system", "corral"));
    attrs.push(KeyValue::new("messaging.destination.name", format!("worker.{}", w.slot)));
    attrs
}

/// The instruments fed by the cluster's events.
struct Events {
    exits: Counter<u64>,
    hangs: Counter<u64>,
    protocol_errors: Counter<u64>,
    gave_up: Counter<u64>,
    reloads: Counter<u64>,
    reload_duration: Histogram<f64>,
    generation: Arc<AtomicU64>,
}

impl Events {
    fn new(meter: &Meter, generation: Arc<AtomicU64>) -> Self {
        let counter = |name: &'static str, unit: &'static str, description: &'static str| {
            meter.u64_counter(name).with_unit(unit).with_description(description).build()
        };
        Events {
            exits: counter("corral.worker.exits", "{exit}", "Worker process exits, by reason"),
            hangs: counter("corral.worker.hangs", "{worker}", "Workers killed for a missed heartbeat"),
            protocol_errors: counter(
                "corral.worker.protocol_errors",
                "{worker}",
                "Workers killed for breaking the protocol",
            ),
            gave_up: counter("corral.cluster.gave_up", "{worker}", "Slots that gave up"),
            reloads: counter("corral.cluster.reloads", "{reload}", "Rolling reloads that ended, by outcome"),
            reload_duration: meter
                .f64_histogram("corral.cluster.reload.duration")
                .with_unit("s")
                .with_description("How long rolling reloads took")
                .with_boundaries(vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0])
                .build(),
            generation,
        }
    }

    async fn count<R: Clone + Send + 'static>(self, mut events: corral_runtime::EventStream<R>) {
        let mut reload_started: Option<Instant> = None;
        let slot = |s: usize| KeyValue::new("corral.slot", s as i64);
        while let Some(event) = events.recv().await {
            match event {
                ClusterEvent::Exit { slot: s, status, exited_after_disconnect, .. } => {
                    let reason = corral_runtime::metrics::exit_reason(&status, exited_after_disconnect);
                    self.exits.add(1, &[slot(s), KeyValue::new("reason", reason)]);
                }
                ClusterEvent::Hung { slot: s, .. } => self.hangs.add(1, &[slot(s)]),
                ClusterEvent::ProtocolError { slot: s, .. } => self.protocol_errors.add(1, &[slot(s)]),
                ClusterEvent::GaveUp { .. } => self.gave_up.add(1, &[]),
                ClusterEvent::Reloading { .. } => reload_started = Some(Instant::now()),
                ClusterEvent::Reloaded { error, .. } => self.reload_ended(error.is_none(), &mut reload_started),
                ClusterEvent::Upgraded { error, .. } if reload_started.is_some() => {
                    self.reload_ended(error.is_none(), &mut reload_started)
                }
                _ => {}
            }
        }
    }

    fn reload_ended(&self, ok: bool, started: &mut Option<Instant>) {
        if let Some(started) = started.take() {
            self.reload_duration.record(started.elapsed().as_secs_f64(), &[]);
        }
        self.reloads.add(1, &[KeyValue::new("outcome", if ok { "ok" } else { "failed" })]);
        if ok {
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
    }
}
