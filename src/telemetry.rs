//! OpenTelemetry export (cargo feature `telemetry`, opt-in). Metrics: the primary's figures
//! as OTLP metrics, see [`metrics`]. Traces: corral's spans — IPC
//! `send`/`receive`, connection `dispatch`/`connection`, lifecycle `fork`, `restart`,
//! `reload`, `shutdown` — and your own, sent over OTLP from the primary and from every worker,
//! configured by the standard `OTEL_*` environment variables (workers inherit them):
//!
//! | variable | meaning |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) | where to send; export is on only when one is set |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` (or `…_TRACES_PROTOCOL`) | `http/protobuf` (default) or `grpc` |
//! | `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` | the resource; the service name defaults to the executable's name |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | sampling (default `parentbased_always_on`) |
//! | `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`, … | the batch span processor |
//! | `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` | turn export off |
//! | `CORRAL_OTEL_FILTER` | which spans are exported, as a `RUST_LOG`-style filter; default [`DEFAULT_FILTER`] |
//!
//! Each process's resource carries `service.name`, `service.instance.id`
//! (`worker.<slot>.<generation>@<host>:<primary pid>` in a worker, `primary@<host>:<pid>` in
//! the primary), `process.pid`, `host.name`, and `corral.role`, `corral.slot`,
//! `corral.generation`.
//!
//! [`crate::init_tracing`] installs all this; use [`layer`] to add the exporting layer to a
//! subscriber of your own. corral flushes the spans before a worker exits and when
//! [`crate::run`] returns; call [`shutdown`] yourself if the primary exits another way. (A
//! tracer provider you install yourself is yours to flush: do it in [`crate::Worker::stop`],
//! which runs before the worker exits.) A worker killed at its drain deadline loses the spans
//! still queued.
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! let otel = corral::telemetry::layer().unwrap_or_else(|e| {
//!     eprintln!("no trace export: {e}");
//!     None
//! });
//! tracing_subscriber::registry().with(tracing_subscriber::fmt::layer()).with(otel).init();
//! ```

pub mod metrics;

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use corral_protocol::bootstrap::WorkerBootstrap;

/// Which spans are exported unless `CORRAL_OTEL_FILTER` says otherwise: everything at `info`
/// and above, plus corral's per-message (`corral::ipc`) and per-connection (`corral::net`)
/// spans, which are at `debug` so that a plain `RUST_LOG=debug` does not turn them on.
pub const DEFAULT_FILTER: &str = "info,ractor=warn,corral::ipc=debug,corral::net=debug";

/// The environment variable holding the export filter.
pub const FILTER_ENV: &str = "CORRAL_OTEL_FILTER";

/// How long [`shutdown`] waits for the last spans to leave.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why trace export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` names a protocol this build does not speak.
    #[error("unsupported OTLP protocol {0:?} (expected `grpc` or `http/protobuf`)")]
    Protocol(String),
    /// `CORRAL_OTEL_FILTER` is not a valid filter.
    #[error("bad {FILTER_ENV}: {0}")]
    Filter(#[source] tracing_subscriber::filter::ParseError),
    /// The exporter could not be built (e.g. a malformed endpoint).
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The exporter's set-up panicked.
    #[error("cannot build the OTLP exporter: the exporter's set-up panicked")]
    ExporterPanicked,
    /// The gRPC exporter's runtime could not start.
    #[error("cannot start the OTLP exporter's runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// The installed provider, kept for [`shutdown`], with the runtime the gRPC client needs.
struct Installed {
    provider: SdkTracerProvider,
    runtime: Option<tokio::runtime::Runtime>,
}

static INSTALLED: Mutex<Option<Installed>> = Mutex::new(None);

fn installed() -> std::sync::MutexGuard<'static, Option<Installed>> {
    // The guarded value is replaced whole, never left half-updated: a poisoned lock is usable.
    INSTALLED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether the environment asks for export: an OTLP endpoint is set, and neither
/// `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` turns it off.
///
/// ```
/// // Nothing set in this doctest's environment.
/// # if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() && std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none() {
/// assert!(!corral::telemetry::export_requested());
/// # }
/// ```
pub fn export_requested() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let no_exporter = std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim().eq_ignore_ascii_case("none"));
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) && !disabled && !no_exporter
}

/// The OpenTelemetry resource of this process (see the module docs for its attributes).
///
/// ```
/// let resource = corral::telemetry::resource();
/// let pid = resource.get(&opentelemetry::Key::new("process.pid"));
/// assert_eq!(pid, Some(opentelemetry::Value::I64(i64::from(std::process::id()))));
/// ```
pub fn resource() -> Resource {
    let pid = std::process::id();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let mut attributes = vec![KeyValue::new("process.pid", i64::from(pid)), KeyValue::new("host.name", host.clone())];
    match WorkerBootstrap::from_env() {
        Ok(Some(boot)) => {
            let id = format!("worker.{}.{}@{host}:{}", boot.slot, boot.generation, boot.primary_pid);
            attributes.extend([
                KeyValue::new("service.instance.id", id),
                KeyValue::new("corral.role", "worker"),
                KeyValue::new("corral.slot", i64::from(boot.slot)),
                KeyValue::new("corral.generation", i64::try_from(boot.generation).unwrap_or(i64::MAX)),
                KeyValue::new("corral.primary.pid", i64::from(boot.primary_pid)),
            ]);
        }
        _ => attributes.extend([
            KeyValue::new("service.instance.id", format!("primary@{host}:{pid}")),
            KeyValue::new("corral.role", "primary"),
        ]),
    }
    let mut builder = Resource::builder();
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    if !named && let Some(name) = executable_name() {
        builder = builder.with_service_name(name);
    }
    builder.with_attributes(attributes).build()
}

fn executable_name() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.file_stem()?.to_string_lossy().into_owned())
}

/// The export filter: `CORRAL_OTEL_FILTER`, or [`DEFAULT_FILTER`].
fn export_filter() -> Result<EnvFilter, TelemetryError> {
    let filter = match std::env::var(FILTER_ENV) {
        Ok(directives) if !directives.trim().is_empty() => {
            EnvFilter::builder().parse(directives).map_err(TelemetryError::Filter)?
        }
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    // A worker's identity span (slot and pid on its log lines) lasts as long as the process
    // and is no operation: never exported, and never any span's parent.
    let identity = format!("{}=off", corral_workers::WORKER_SPAN_TARGET);
    Ok(filter.add_directive(identity.parse().map_err(TelemetryError::Filter)?))
}

/// The OTLP protocol for one signal: `signal_var` (e.g. `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`),
/// else `OTEL_EXPORTER_OTLP_PROTOCOL`, else HTTP with protobuf.
fn protocol(signal_var: &str) -> Result<Protocol, TelemetryError> {
    let value = std::env::var(signal_var).or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL")).unwrap_or_default();
    match value.trim() {
        "" | "http/protobuf" => Ok(Protocol::HttpBinary),
        "grpc" => Ok(Protocol::Grpc),
        other => Err(TelemetryError::Protocol(other.to_string())),
    }
}

/// Builds an exporter (endpoint, timeout and headers come from the environment) on a thread
/// of its own: the HTTP client must not be built inside an async runtime, and the gRPC
/// client needs one of its own, named `thread_name`, which is returned to be kept alive.
/// `grpc` and `http` build the exporter for their protocol.
fn exporter_on_own_thread<E, X>(
    signal_var: &str,
    thread_name: &'static str,
    grpc: fn() -> Result<E, X>,
    http: fn() -> Result<E, X>,
) -> Result<(E, Option<tokio::runtime::Runtime>), TelemetryError>
where
    E: Send + 'static,
    X: std::error::Error + Send + Sync + 'static,
{
    let protocol = protocol(signal_var)?;
    let built = std::thread::spawn(move || match protocol {
        Protocol::Grpc => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(thread_name)
                .enable_all()
                .build()?;
            let exporter = {
                let _entered = runtime.enter();
                grpc()
            };
            exporter.map(|e| (e, Some(runtime))).map_err(|e| TelemetryError::Exporter(Box::new(e)))
        }
        _ => http().map(|e| (e, None)).map_err(|e| TelemetryError::Exporter(Box::new(e))),
    })
    .join();
    built.unwrap_or(Err(TelemetryError::ExporterPanicked))
}

/// The span exporter, as [`exporter_on_own_thread`] builds it.
fn exporter() -> Result<(opentelemetry_otlp::SpanExporter, Option<tokio::runtime::Runtime>), TelemetryError> {
    exporter_on_own_thread(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "corral-otlp",
        || opentelemetry_otlp::SpanExporter::builder().with_tonic().build(),
        || opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(Protocol::HttpBinary).build(),
    )
}

/// Installs an OTLP-exporting tracer provider (globally too, for code that uses the
/// OpenTelemetry API directly) and returns a `tracing` layer feeding it, filtered by
/// `CORRAL_OTEL_FILTER`; `Ok(None)` when the environment does not ask for export.
///
/// The layer records no thread or source-location attributes and no busy/idle times, to keep
/// per-span cost down (corral makes a span per IPC message).
///
/// # Errors
///
/// [`TelemetryError`] for an unsupported protocol, a bad filter or an exporter that cannot be
/// built. Nothing is installed then.
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
/// let otel = corral::telemetry::layer().ok().flatten();
/// tracing_subscriber::registry().with(otel).init();
/// ```
pub fn layer<S>() -> Result<Option<impl Layer<S>>, TelemetryError>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    if !export_requested() {
        return Ok(None);
    }
    let filter = export_filter()?;
    let (exporter, runtime) = exporter()?;
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource()).build();
    let tracer: SdkTracer = provider.tracer("corral");
    opentelemetry::global::set_tracer_provider(provider.clone());
    let replaced = installed().replace(Installed { provider, runtime });
    if let Some(old) = replaced {
        let _ = old.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
        if let Some(runtime) = old.runtime {
            runtime.shutdown_background();
        }
    }
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_location(false)
        .with_tracked_inactivity(false)
        .with_filter(filter);
    Ok(Some(layer))
}

/// Sends every span recorded so far (waits at most a few seconds); the provider keeps
/// running. corral calls it when [`crate::run`] returns.
///
/// ```
/// corral::telemetry::flush(); // nothing installed: nothing to do
/// ```
pub fn flush() {
    if let Some(installed) = installed().as_ref()
        && let Err(e) = installed.provider.force_flush()
    {
        tracing::debug!(error = %e, "flushing spans failed");
    }
}

/// Sends every span recorded so far and stops exporting (waits at most a few seconds).
/// corral calls it before a worker process exits.
///
/// ```
/// corral::telemetry::shutdown(); // nothing installed: nothing to do
/// ```
pub fn shutdown() {
    let taken = installed().take();
    if let Some(installed) = taken {
        if let Err(e) = installed.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::debug!(error = %e, "shutting down the span exporter failed");
        }
        // Dropping a runtime inside an async context panics; this never blocks.
        if let Some(runtime) = installed.runtime {
            runtime.shutdown_background();
        }
    }
}
