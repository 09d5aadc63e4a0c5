//! `GET /metrics`: the Prometheus exposition of one snapshot, encoded by `prometheus-client`.
//!
//! The figures of the present (per-slot gauges and the counters the workers and the primary
//! keep) are read from the snapshot into a registry made for this scrape; the counters fed by
//! events live in the [`Recorder`] and are registered by reference. Every name is documented
//! in README.md ("Metrics").

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::recorder::{Recorder, SlotLabels};
use crate::api::status::{WorkerState, WorkerStatus};
use crate::routing::balance::ListenerCounts;

/// What one scrape shows.
pub(crate) struct Snapshot {
    pub workers: Vec<WorkerStatus>,
    pub listeners: Vec<ListenerCounts>,
    pub autoscale: Option<crate::api::autoscale::AutoscaleStatus>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    slot: String,
    /// `in` (worker → primary) or `out` (primary → worker).
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    slot: String,
    /// `done`, `panicked`, `rejected` or `skipped`.
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type FloatCounter = Counter<f64, AtomicU64>;

/// A per-slot family, filled from the snapshot.
struct PerSlot<M> {
    family: Family<SlotLabels, M>,
}

impl<M: Default + Clone + prometheus_client::metrics::TypedMetric + prometheus_client::encoding::EncodeMetric>
    PerSlot<M>
{
    fn new() -> Self {
        PerSlot { family: Family::default() }
    }

    fn of(&self, w: &WorkerStatus) -> M {
        self.family.get_or_create(&SlotLabels { slot: w.slot.to_string() }).clone()
    }
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The exposition of `snapshot`: OpenMetrics text (which a Prometheus text parser reads too;
/// [`as_prometheus_text`] drops the two lines only OpenMetrics knows).
pub(crate) fn render(snapshot: &Snapshot, recorder: &Recorder) -> String {
    let mut registry = Registry::default();
    slots(&mut registry, &snapshot.workers);
    cluster(&mut registry, snapshot, recorder);
    if let Some(status) = &snapshot.autoscale {
        autoscale(&mut registry, status);
    }
    primary(&mut registry);
    let mut text = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail, and every metric above encodes.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::warn!(error = %e, "metrics exposition failed");
    }
    text
}

/// The OpenMetrics text as Prometheus' text format 0.0.4: without `# EOF` and `# UNIT`, and
/// a counter's `# HELP` and `# TYPE` named as its sample (`x_total`), as 0.0.4 parsers expect.
pub(crate) fn as_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .filter(|name| !name.ends_with("_total"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta.and_then(|(p, rest)| Some((p, rest.split_once(' ')?))) {
            Some((prefix, (name, tail))) if counters.contains(name) => {
                out.push_str(prefix);
                out.push_str(name);
                out.push_str("_total ");
                out.push_str(tail);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn slots(registry: &mut Registry, workers: &[WorkerStatus]) {
    let up = PerSlot::<Gauge>::new();
    let ready = PerSlot::<Gauge>::new();
    let pid = PerSlot::<Gauge>::new();
    let generation = PerSlot::<Gauge>::new();
    let uptime = PerSlot::<FloatGauge>::new();
    let restarts = PerSlot::<Counter>::new();
    let rss = PerSlot::<Gauge>::new();
    let cpu = PerSlot::<FloatCounter>::new();
    let open = PerSlot::<Gauge>::new();
    let handled = PerSlot::<Counter>::new();
    let messages: Family<DirectionLabels, Counter> = Family::default();
    let heartbeat = PerSlot::<FloatGauge>::new();
    let pool_threads = PerSlot::<Gauge>::new();
    let pool_queued = PerSlot::<Gauge>::new();
    let pool_running = PerSlot::<Gauge>::new();
    let pool_tasks: Family<PoolLabels, Counter> = Family::default();
    let steered_in = PerSlot::<Gauge>::new();
    let spare = PerSlot::<Gauge>::new();
    let accept_queue = PerSlot::<Gauge>::new();
    let hz = crate::sys::procfs::ticks_per_second();
    for w in workers {
        let slot = w.slot.to_string();
        up.of(w).set(i64::from(w.pid.is_some()));
        ready.of(w).set(i64::from(w.state == WorkerState::Ready));
        generation.of(w).set(int(w.generation));
        spare.of(w).set(i64::from(w.spare));
        restarts.of(w).inc_by(w.restarts);
        messages.get_or_create(&DirectionLabels { slot: slot.clone(), direction: "in" }).inc_by(w.messages_in);
        messages.get_or_create(&DirectionLabels { slot: slot.clone(), direction: "out" }).inc_by(w.messages_out);
        if let Some(p) = w.pid {
            pid.of(w).set(i64::from(p));
            if let Some(ticks) = crate::sys::procfs::cpu_ticks(p) {
                cpu.of(w).inc_by(ticks as f64 / hz);
            }
        }
        if let Some(u) = w.uptime {
            uptime.of(w).set(u.as_secs_f64());
        }
        if let Some(b) = w.rss_bytes {
            rss.of(w).set(int(b));
        }
        if let Some(l) = w.heartbeat_latency {
            heartbeat.of(w).set(l.as_secs_f64());
        }
        if let Some(s) = w.steering {
            steered_in.of(w).set(i64::from(s.steered_in));
            accept_queue.of(w).set(i64::from(s.queued));
        }
        if let Some(stats) = w.stats {
            open.of(w).set(int(stats.in_flight));
            handled.of(w).inc_by(stats.handled);
            if let Some(pool) = stats.pool {
                pool_threads.of(w).set(int(pool.threads));
                pool_queued.of(w).set(int(pool.queued));
                pool_running.of(w).set(int(pool.running));
                for (outcome, n) in [
                    ("done", pool.done),
                    ("panicked", pool.panicked),
                    ("rejected", pool.rejected),
                    ("skipped", pool.skipped),
                ] {
                    pool_tasks.get_or_create(&PoolLabels { slot: slot.clone(), outcome }).inc_by(n);
                }
            }
        }
    }
    let r = registry;
    r.register("corral_worker_up", "Whether the slot has a running process (1) or not (0)", up.family);
    r.register("corral_worker_ready", "Whether the slot's worker is ready and gets work", ready.family);
    r.register("corral_worker_pid", "The slot's current process id", pid.family);
    r.register(
        "corral_worker_spare",
        "Whether the slot holds a warm spare (1: ready and idle) or serves (0)",
        spare.family,
    );
    r.register(
        "corral_worker_steered_in",
        "Reuse-port: whether new connections are steered to the slot's socket (1) or not (0)",
        steered_in.family,
    );
    r.register(
        "corral_worker_accept_queue",
        "Reuse-port: connections waiting in the slot's accept queue",
        accept_queue.family,
    );
    r.register("corral_worker_generation", "The slot's generation (bumped by each replacement)", generation.family);
    r.register("corral_worker_uptime_seconds", "How long the slot's current process has been up", uptime.family);
    r.register("corral_worker_restarts", "Restarts of the slot since the cluster started", restarts.family);
    r.register("corral_worker_resident_memory_bytes", "RSS of the slot's process, read from /proc", rss.family);
    r.register("corral_worker_cpu_seconds", "User and system CPU time of the slot's current process", cpu.family);
    r.register("corral_worker_open_connections", "Requests or connections the worker is handling now", open.family);
    r.register(
        "corral_worker_connections_handled",
        "Requests or connections the slot's current process handled",
        handled.family,
    );
    r.register("corral_worker_ipc_messages", "User messages over the slot's IPC channel, by direction", messages);
    r.register(
        "corral_worker_heartbeat_latency_seconds",
        "Round trip of the slot's last heartbeat ping",
        heartbeat.family,
    );
    r.register("corral_worker_pool_threads", "Threads of the worker's CPU pool", pool_threads.family);
    r.register("corral_worker_pool_queued", "Tasks waiting in the worker's CPU pool", pool_queued.family);
    r.register("corral_worker_pool_running", "Tasks running in the worker's CPU pool", pool_running.family);
    r.register("corral_worker_pool_tasks", "CPU pool tasks that ended, by outcome", pool_tasks);
}

/// An autoscaled cluster's range, count, pin and the load its scaler saw last.
fn autoscale(r: &mut Registry, status: &crate::api::autoscale::AutoscaleStatus) {
    let int = |n: usize| {
        let g: Gauge = Gauge::default();
        g.set(i64::try_from(n).unwrap_or(i64::MAX));
        g
    };
    let float = |x: f64| {
        let g: FloatGauge = FloatGauge::default();
        g.set(x);
        g
    };
    let load = status.load;
    r.register("corral_autoscale_min", "The fewest workers autoscaling keeps", int(status.config.min));
    r.register("corral_autoscale_max", "The most workers autoscaling starts", int(status.config.max));
    r.register("corral_autoscale_workers", "Active workers now", int(status.workers));
    r.register(
        "corral_autoscale_target",
        "The count autoscaling aims at: the pinned one, or the current",
        int(status.pinned.unwrap_or(status.workers)),
    );
    r.register("corral_autoscale_pinned", "1 while a scale pins the count", int(usize::from(status.pinned.is_some())));
    r.register(
        "corral_autoscale_queue",
        "Connections waiting, on average over the scaler's last window",
        float(load.map_or(0.0, |l| l.queue)),
    );
    r.register(
        "corral_autoscale_cpu_ratio",
        "The ready workers' CPU use over the scaler's last window, as a fraction of their share",
        float(load.map_or(0.0, |l| l.cpu)),
    );
}

fn cluster(registry: &mut Registry, snapshot: &Snapshot, recorder: &Recorder) {
    let workers: Gauge = Gauge::default();
    workers.set(snapshot.workers.len() as i64);
    let gave_up: Gauge = Gauge::default();
    gave_up.set(snapshot.workers.iter().filter(|w| w.state == WorkerState::GaveUp).count() as i64);
    let accepted: Family<ListenerLabels, Counter> = Family::default();
    let dispatched: Family<ListenerLabels, Counter> = Family::default();
    let redispatched: Family<ListenerLabels, Counter> = Family::default();
    for l in &snapshot.listeners {
        let labels = ListenerLabels { listener: l.addr.to_string() };
        accepted.get_or_create(&labels).inc_by(l.accepted);
        dispatched.get_or_create(&labels).inc_by(l.dispatched);
        redispatched.get_or_create(&labels).inc_by(l.redispatched);
    }
    let r = registry;
    r.register("corral_cluster_workers", "Worker slots", workers);
    r.register("corral_cluster_gave_up_slots", "Slots that exceeded their restart intensity", gave_up);
    r.register(
        "corral_cluster_generation",
        "Rolling reloads (and upgrades) completed since this primary started",
        recorder.generation.clone(),
    );
    r.register("corral_cluster_reloads", "Rolling reloads that ended, by outcome", recorder.reloads.clone());
    r.register(
        "corral_cluster_reload_duration_seconds",
        "How long rolling reloads took",
        recorder.reload_seconds.clone(),
    );
    r.register("corral_cluster_upgrades", "Upgrades in place this primary has been through", recorder.upgrades.clone());
    r.register("corral_cluster_gave_up", "Slots that gave up", recorder.gave_up.clone());
    r.register(
        "corral_cluster_scaled",
        "Changes of the worker count, by direction and reason",
        recorder.scaled.clone(),
    );
    r.register("corral_worker_exits", "Worker process exits, by slot and reason", recorder.exits.clone());
    r.register("corral_worker_hangs", "Workers killed for a missed heartbeat", recorder.hangs.clone());
    r.register(
        "corral_worker_probe_duration_seconds",
        "How long health probes of workers took, by check and purpose (ready, live)",
        recorder.probe_seconds.clone(),
    );
    r.register(
        "corral_worker_probe_failures",
        "Health probes of workers that failed, by check and purpose (ready, live)",
        recorder.probe_failures.clone(),
    );
    r.register(
        "corral_worker_probe_condemned",
        "Workers steered out and replaced for failing their liveness probe (MissedProbe), by slot",
        recorder.probe_condemned.clone(),
    );
    r.register(
        "corral_worker_protocol_errors",
        "Workers killed for breaking the IPC protocol",
        recorder.protocol_errors.clone(),
    );
    r.register("corral_listener_connections_accepted", "Connections the primary accepted on the listener", accepted);
    r.register(
        "corral_listener_connections_dispatched",
        "Hand-offs of the listener's connections to workers",
        dispatched,
    );
    r.register(
        "corral_listener_connections_redispatched",
        "Connections handed out again because their worker died before taking them",
        redispatched,
    );
}

/// The primary's own process figures, under the names every Prometheus client library uses.
fn primary(registry: &mut Registry) {
    let me = std::process::id();
    if let Some(b) = crate::sys::procfs::rss_bytes(me) {
        let rss: Gauge = Gauge::default();
        rss.set(int(b));
        registry.register("process_resident_memory_bytes", "The primary's RSS", rss);
    }
    if let Some(ticks) = crate::sys::procfs::cpu_ticks(me) {
        let cpu: FloatCounter = Counter::default();
        cpu.inc_by(ticks as f64 / crate::sys::procfs::ticks_per_second());
        registry.register("process_cpu_seconds", "The primary's user and system CPU time", cpu);
    }
}

#[cfg(test)]
mod tests {
    use super::as_prometheus_text;

    #[test]
    fn prometheus_text_names_counters_as_their_samples() {
        let om = "# HELP a_restarts Restarts.\n# TYPE a_restarts counter\n# UNIT a_restarts x\na_restarts_total 3\n\
                  # HELP b Up.\n# TYPE b gauge\nb 1\n# EOF\n";
        assert_eq!(
            as_prometheus_text(om),
            "# HELP a_restarts_total Restarts.\n# TYPE a_restarts_total counter\na_restarts_total 3\n\
             # HELP b Up.\n# TYPE b gauge\nb 1\n"
        );
    }
}
