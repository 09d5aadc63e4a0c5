//! Health probes of the slot's processes, as the slot acts on them: a ready check gates
//! `Ready`, and liveness failures in a row condemn the current process.
//!
//! The probing runs in a task per process (`crate::process::probe::schedule`), which only reports;
//! every decision is made here, in the slot actor, one result at a time:
//!
//! * **readiness**: a process that said it is ready (a foreign worker with
//!   `--ready http:/…`, `tcp` or `exec:…` says so as soon as it runs) counts as ready only
//!   once a probe passes; until then it is `Online`, and `listen_timeout` kills it;
//! * **liveness**: from `grace` after ready, every `every`; a pass resets the count, and the
//!   `failures`-th failure in a row condemns the process: it is steered out at once (no new
//!   connection reaches it), diagnosed (a `Hung` report, as for a missed heartbeat), drained,
//!   and replaced by the restart policy when it exits (kill reason `MissedProbe`, a failure
//!   whatever its exit status).

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::task::AbortOnDropHandle;
use tracing::Span;

use super::msg::SlotMsg;
use super::state::{DrainCause, Phase, SlotState};
use crate::api::error::ProbeError;
use crate::api::events::ClusterEvent;
use crate::config::probe::Check;
use crate::process::probe::{ProbeResult, ProbeTarget, Purpose};
use crate::supervision::kill::KillReason;

impl<M, R> SlotState<M, R>
where
    M: Serialize + Send + 'static,
    R: DeserializeOwned + Clone + Send + 'static,
{
    /// The check a new process must pass to be ready: the foreign program's `--ready` check,
    /// or the cluster's [`ready_check`](crate::ClusterConfig::ready_check).
    pub(crate) fn ready_check(&self) -> Option<Check> {
        let config = &self.args.config;
        match config.exec.foreign().map(|f| &f.ready) {
            Some(crate::config::foreign::Readiness::Check(check)) => Some(check.clone()),
            _ => config.ready_check.clone(),
        }
    }

    /// Whether process `generation` still waits for its ready check; starts probing it if
    /// nothing does yet.
    pub(crate) fn awaits_ready_check(&mut self, generation: u64) -> bool {
        let Some(check) = self.ready_check() else { return false };
        let timeout =
            self.args.config.probe.as_ref().map_or(crate::config::probe::ProbeConfig::DEFAULT_TIMEOUT, |p| p.timeout);
        let Some(target) = self.probe_target(generation) else { return false };
        let report = self.reporter(generation, Purpose::Ready);
        let Some(proc) = self.proc_mut(generation) else { return false };
        if proc.probes.ready_passed {
            return false;
        }
        if !proc.probes.probing() {
            let task = tokio::spawn(crate::process::probe::readiness(target, check, timeout, report));
            proc.probes.start(AbortOnDropHandle::new(task));
        }
        true
    }

    /// Starts the liveness probes of process `generation`, now ready, if the cluster has them.
    pub(crate) fn start_liveness(&mut self, generation: u64) {
        let Some(probe) = self.args.config.probe.clone() else { return };
        let Some(target) = self.probe_target(generation) else { return };
        let report = self.reporter(generation, Purpose::Live);
        let Some(proc) = self.proc_mut(generation) else { return };
        let task = tokio::spawn(crate::process::probe::liveness(target, probe, report));
        proc.probes.start(AbortOnDropHandle::new(task));
    }

    fn probe_target(&self, generation: u64) -> Option<ProbeTarget> {
        let proc = self.proc(generation)?;
        Some(ProbeTarget {
            listeners: self.args.listeners.clone(),
            listener: self.args.config.probe_listener.clone(),
            slot: self.slot(),
            generation,
            pid: proc.pid(),
        })
    }

    /// Sends each result to this slot; `false` once the slot is gone.
    fn reporter(&self, generation: u64, purpose: Purpose) -> impl Fn(ProbeResult) -> bool + Send + 'static {
        let myself = self.myself.clone();
        move |result| myself.send_message(SlotMsg::Probed { generation, purpose, result }).is_ok()
    }

    /// `Probed`: one probe's result.
    pub(crate) fn probed(&mut self, generation: u64, purpose: Purpose, result: ProbeResult) {
        let slot = self.slot();
        let check = match purpose {
            Purpose::Ready => self.ready_check(),
            Purpose::Live => self.args.config.probe.as_ref().map(|p| p.check.clone()),
        };
        let (Some(check), Some(proc)) = (check, self.proc_mut(generation)) else { return };
        let pid = proc.pid();
        self.args.bus.emit(ClusterEvent::Probed {
            slot,
            pid,
            check: check.clone(),
            live: purpose == Purpose::Live,
            took: result.took,
            error: result.outcome.as_ref().err().cloned(),
        });
        let Some(proc) = self.proc_mut(generation) else { return };
        let outcome = result.outcome.clone();
        proc.probes.record(check.clone(), result);
        match (purpose, outcome) {
            (Purpose::Ready, Ok(())) => {
                if matches!(proc.phase, Phase::Starting | Phase::Online) {
                    tracing::debug!(slot, pid, %check, "ready check passed");
                    proc.probes.ready_passed = true;
                    proc.probes.stop();
                    self.ready(generation);
                }
            }
            (Purpose::Ready, Err(error)) => tracing::debug!(slot, pid, %check, %error, "not ready yet"),
            (Purpose::Live, _) if proc.phase != Phase::Ready => {}
            (Purpose::Live, Ok(())) => {
                if proc.probes.failures > 0 {
                    tracing::info!(slot, pid, %check, after = proc.probes.failures, "liveness probe passed again");
                }
                proc.probes.failures = 0;
            }
            (Purpose::Live, Err(error)) => {
                proc.probes.failures += 1;
                let (failures, limit) =
                    (proc.probes.failures, self.args.config.probe.as_ref().map_or(1, |p| p.failures));
                if failures >= limit {
                    self.condemn(generation, check, failures, error);
                } else {
                    tracing::warn!(slot, pid, %check, %error, failures, limit, "worker failed a liveness probe");
                }
            }
        }
    }

    /// The current process failed `failures` liveness probes in a row: steered out now,
    /// diagnosed, drained, and replaced by the restart policy once it has exited.
    fn condemn(&mut self, generation: u64, check: Check, failures: u32, error: Arc<ProbeError>) {
        let slot = self.slot();
        let Some(proc) = self.proc_mut(generation) else { return };
        let pid = proc.pid();
        tracing::error!(
            slot,
            pid,
            %check,
            failures,
            %error,
            reason = "MissedProbe",
            "worker {pid} failed its liveness probe {failures} times in a row (MissedProbe); steering it out, draining and replacing it"
        );
        proc.probes.stop();
        if proc.killed.is_none() {
            proc.killed = Some(KillReason::MissedProbe { check: check.to_string(), failures, error: error.clone() });
        }
        // No new connection reaches it from now on.
        proc.set_accepting(false);
        proc.process.diagnose();
        self.publish_accepting();
        self.args.listeners.readiness_changed();
        self.args.bus.emit(ClusterEvent::ProbeFailed { slot, pid, check, error });
        // A warm spare, if one is ready, takes the slot's place now; the replacement started
        // once the condemned worker has exited is the next spare.
        self.hand_to_spare();
        self.drain(generation, DrainCause::Condemned, &Span::none());
    }
}
