//! What the metrics endpoint learns from the cluster's events: exits by reason, hangs,
//! protocol errors, reloads and their duration. Counted as the events arrive (they are not in
//! the status snapshot, which only knows the present).

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::api::events::ClusterEvent;
use crate::api::events::bus::EventStream;
use crate::supervision::exit::ExitStatus;

/// A slot's label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SlotLabels {
    pub slot: String,
}

/// A worker exit's labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ExitLabels {
    pub slot: String,
    /// `requested` (the cluster asked it to stop), `success` (code 0 unasked), `exit_code`
    /// (another code) or `signal` (killed by a signal unasked).
    pub reason: &'static str,
}

/// A reload's label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    /// `ok` or `failed`.
    pub outcome: &'static str,
}

/// A probe's labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProbeLabels {
    /// The check as configured (`http:/healthz`, `tcp`, `exec:…`).
    pub check: String,
    /// `ready` (a starting worker's ready check) or `live` (a liveness probe).
    pub purpose: &'static str,
}

/// A change of the worker count's labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ScaleLabels {
    /// `up` or `down`.
    pub direction: &'static str,
    /// `saturated`, `idle` (the autoscaler), `asked` (a scale) or `reconfigured` (a reload).
    pub reason: &'static str,
}

/// The probe duration histogram's buckets, in seconds: from a local round trip to a timeout.
const PROBE_BUCKETS: [f64; 11] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// The reload duration histogram's buckets, in seconds: a reload takes a worker start per
/// slot, from under a second to minutes.
const RELOAD_BUCKETS: [f64; 12] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0];

/// Counters fed by the cluster's events (relaxed atomics behind `Arc`s: registering them in a
/// scrape's registry shares them).
pub(crate) struct Recorder {
    pub exits: Family<ExitLabels, Counter>,
    pub hangs: Family<SlotLabels, Counter>,
    pub protocol_errors: Family<SlotLabels, Counter>,
    pub gave_up: Counter,
    pub reloads: Family<OutcomeLabels, Counter>,
    pub reload_seconds: Histogram,
    /// Health probes' durations, by check and purpose.
    pub probe_seconds: Family<ProbeLabels, Histogram>,
    /// Failed health probes, by check and purpose.
    pub probe_failures: Family<ProbeLabels, Counter>,
    /// Workers condemned by their liveness probe, by slot.
    pub probe_condemned: Family<SlotLabels, Counter>,
    /// Rolling reloads (and upgrades) completed since this primary's image started.
    pub generation: Gauge,
    /// Upgrades in place this primary (this pid) has been through.
    pub upgrades: Gauge,
    /// Changes of the worker count, by direction and reason.
    pub scaled: Family<ScaleLabels, Counter>,
}

impl Default for Recorder {
    fn default() -> Self {
        let reloads: Family<OutcomeLabels, Counter> = Family::default();
        // Both outcomes are shown from the start, at 0, so that a rate over them is defined.
        for outcome in ["ok", "failed"] {
            let _ = reloads.get_or_create(&OutcomeLabels { outcome });
        }
        Recorder {
            exits: Family::default(),
            hangs: Family::default(),
            protocol_errors: Family::default(),
            gave_up: Counter::default(),
            reloads,
            reload_seconds: Histogram::new(RELOAD_BUCKETS),
            probe_seconds: Family::new_with_constructor(|| Histogram::new(PROBE_BUCKETS)),
            probe_failures: Family::default(),
            probe_condemned: Family::default(),
            generation: Gauge::default(),
            upgrades: Gauge::default(),
            scaled: Family::default(),
        }
    }
}

/// The `reason` of a worker exit, as the metrics label it: `requested` (the cluster asked it
/// to stop), `success` (code 0, unasked), `exit_code` (another code) or `signal`.
///
/// ```
/// use corral_runtime::ExitStatus;
/// use corral_runtime::metrics::exit_reason;
/// assert_eq!(exit_reason(&ExitStatus { code: None, signal: Some(9) }, false), "signal");
/// ```
pub fn exit_reason(status: &ExitStatus, exited_after_disconnect: bool) -> &'static str {
    match (exited_after_disconnect, status.code, status.signal) {
        (true, _, _) => "requested",
        (false, Some(0), _) => "success",
        (false, Some(_), _) => "exit_code",
        (false, None, _) => "signal",
    }
}

impl Recorder {
    /// Counts one event.
    fn count<R>(&self, event: &ClusterEvent<R>, reload_started: &mut Option<Instant>) {
        let slot = |slot: &usize| SlotLabels { slot: slot.to_string() };
        match event {
            ClusterEvent::Exit { slot, status, exited_after_disconnect, .. } => {
                let reason = exit_reason(status, *exited_after_disconnect);
                self.exits.get_or_create(&ExitLabels { slot: slot.to_string(), reason }).inc();
            }
            ClusterEvent::Hung { slot: s, .. } => {
                self.hangs.get_or_create(&slot(s)).inc();
            }
            ClusterEvent::ProtocolError { slot: s, .. } => {
                self.protocol_errors.get_or_create(&slot(s)).inc();
            }
            ClusterEvent::Probed { check, live, took, error, .. } => {
                let labels = ProbeLabels { check: check.to_string(), purpose: if *live { "live" } else { "ready" } };
                self.probe_seconds.get_or_create(&labels).observe(took.as_secs_f64());
                let failures = self.probe_failures.get_or_create(&labels);
                if error.is_some() {
                    failures.inc();
                }
            }
            ClusterEvent::ProbeFailed { slot: s, .. } => {
                self.probe_condemned.get_or_create(&slot(s)).inc();
            }
            ClusterEvent::GaveUp { .. } => {
                self.gave_up.inc();
            }
            ClusterEvent::Scaled { from, to, reason } => {
                use crate::api::reports::ScaleReason;
                let reason = match reason {
                    ScaleReason::Saturated(_) => "saturated",
                    ScaleReason::Idle(_) => "idle",
                    ScaleReason::Asked => "asked",
                    ScaleReason::Reconfigured => "reconfigured",
                };
                let direction = if to > from { "up" } else { "down" };
                self.scaled.get_or_create(&ScaleLabels { direction, reason }).inc();
            }
            ClusterEvent::Reloading { .. } => *reload_started = Some(Instant::now()),
            ClusterEvent::Reloaded { error, .. } => self.reload_ended(error.is_none(), reload_started),
            ClusterEvent::Upgraded { upgrades, error, .. } => {
                self.upgrades.set(i64::try_from(*upgrades).unwrap_or(i64::MAX));
                if reload_started.is_some() {
                    self.reload_ended(error.is_none(), reload_started);
                }
            }
            _ => {}
        }
    }

    fn reload_ended(&self, ok: bool, reload_started: &mut Option<Instant>) {
        if let Some(started) = reload_started.take() {
            self.reload_seconds.observe(started.elapsed().as_secs_f64());
        }
        self.reloads.get_or_create(&OutcomeLabels { outcome: if ok { "ok" } else { "failed" } }).inc();
        if ok {
            self.generation.inc();
        }
    }

    /// Counts the cluster's events until it stops.
    pub(crate) async fn record<R: Clone + Send + 'static>(self: Arc<Self>, mut events: EventStream<R>) {
        let mut reload_started = None;
        while let Some(event) = events.recv().await {
            self.count(&event, &mut reload_started);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reasons() {
        let code = |c| ExitStatus { code: Some(c), signal: None };
        let killed = ExitStatus { code: None, signal: Some(9) };
        assert_eq!(exit_reason(&killed, false), "signal");
        assert_eq!(exit_reason(&killed, true), "requested");
        assert_eq!(exit_reason(&code(0), false), "success");
        assert_eq!(exit_reason(&code(3), false), "exit_code");
    }

    #[test]
    fn a_reload_is_timed_and_counted_once() {
        let recorder = Recorder::default();
        let mut started = None;
        recorder.count::<()>(&ClusterEvent::Reloading { slots: 2 }, &mut started);
        assert!(started.is_some());
        recorder.count::<()>(&ClusterEvent::Reloaded { replaced: 2, error: None }, &mut started);
        assert_eq!(recorder.generation.get(), 1);
        assert_eq!(recorder.reloads.get_or_create(&OutcomeLabels { outcome: "ok" }).get(), 1);
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("reload_duration_seconds", "t", recorder.reload_seconds.clone());
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("reload_duration_seconds_count 1"), "{text}");
    }
}
