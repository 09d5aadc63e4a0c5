//! The status snapshot as JSON, the shape `corral status --json` prints and the metrics
//! endpoint's `/status.json` serves.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde_json::{Value, json};

use crate::api::autoscale::AutoscaleStatus;
use crate::api::status::WorkerStatus;

/// The last CPU sample per pid, to turn CPU ticks into a percentage between two looks.
#[derive(Default)]
pub(crate) struct CpuMeter {
    samples: Mutex<HashMap<u32, (u64, Instant)>>,
}

impl CpuMeter {
    /// CPU use of the worker's process since the last look (or since it started), in percent
    /// of one CPU, to one decimal.
    pub(crate) fn percent(&self, w: &WorkerStatus) -> Option<f64> {
        let pid = w.pid?;
        let ticks = crate::sys::procfs::cpu_ticks(pid)?;
        let now = Instant::now();
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let hz = crate::sys::procfs::ticks_per_second();
        let percent = match samples.get(&pid) {
            Some(&(before, at)) if now > at => {
                (ticks.saturating_sub(before)) as f64 / hz / now.duration_since(at).as_secs_f64() * 100.0
            }
            _ => w.uptime.filter(|u| !u.is_zero()).map_or(0.0, |u| ticks as f64 / hz / u.as_secs_f64() * 100.0),
        };
        samples.insert(pid, (ticks, now));
        // Forget processes that are gone (bounded by the live ones).
        if samples.len() > 4 * crate::config::cluster::MAX_WORKERS {
            samples.clear();
        }
        Some((percent * 10.0).round() / 10.0)
    }
}

/// Every worker's row, as `{"workers": [...], "orphans_adopted": N}` (orphaned processes
/// the primary adopted as PID 1 or subreaper since it started), and an autoscaled cluster's
/// `"autoscale"`.
pub(crate) fn status_json(workers: &[WorkerStatus], cpu: &CpuMeter, autoscale: Option<&AutoscaleStatus>) -> Value {
    let rows: Vec<Value> = workers.iter().map(|w| status_row(w, cpu.percent(w))).collect();
    let mut status = json!({ "workers": rows, "orphans_adopted": crate::process::reaper::orphans_adopted() });
    if let Some(a) = autoscale {
        status["autoscale"] = autoscale_json(a);
    }
    status
}

/// An autoscaled cluster's scaler, as `corral status --json` prints it; `summary` is the
/// line `corral status` shows.
pub(crate) fn autoscale_json(a: &AutoscaleStatus) -> Value {
    json!({
        "min": a.config.min,
        "max": a.config.max,
        "workers": a.workers,
        "pinned": a.pinned,
        "signal": a.config.signal.to_string(),
        "queue": a.load.map(|l| (l.queue * 10.0).round() / 10.0),
        "cpu_percent": a.load.map(|l| (l.cpu * 1000.0).round() / 10.0),
        "summary": a.to_string(),
    })
}

/// A worker's row, as `corral status --json` prints it (and `status --all`, with its node).
pub(crate) fn status_row(w: &WorkerStatus, cpu_percent: Option<f64>) -> Value {
    json!({
        "slot": w.slot,
        "pid": w.pid,
        "generation": w.generation,
        "state": state_name(w.state),
        "spare": w.spare,
        "uptime_ms": w.uptime.map(|u| u.as_millis() as u64),
        "restarts": w.restarts,
        "rss_bytes": w.rss_bytes,
        "cpu_percent": cpu_percent,
        "in_flight": w.stats.map(|s| s.in_flight),
        "handled": w.stats.map(|s| s.handled),
        "messages_in": w.messages_in,
        "messages_out": w.messages_out,
        "status": w.status_text,
        "steered_in": w.steering.map(|s| s.steered_in),
        "queued": w.steering.map(|s| s.queued),
        "heartbeat_ms": w.heartbeat_latency.map(|l| l.as_secs_f64() * 1000.0),
        "probe": w.probe.as_ref().map(|p| json!({
            "check": p.check.to_string(),
            "passed": p.passed,
            "age_ms": p.age.as_millis() as u64,
            "took_ms": p.took.as_secs_f64() * 1000.0,
            "failures": p.failures,
            "error": p.error,
        })),
    })
}

/// A state's name in JSON, metrics labels and the status page: `ready`, `gaveup`, …
pub(crate) fn state_name(state: crate::api::status::WorkerState) -> String {
    format!("{state:?}").to_lowercase()
}
