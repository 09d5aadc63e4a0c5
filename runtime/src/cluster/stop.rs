//! Stopping the cluster, and what a slot's end means for it: the escalation policy.

use std::sync::Arc;

use corral_protocol::ListenRefusal;
use ractor::{ActorCell, ActorProcessingErr};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{Instrument, Span};

use super::state::ClusterState;
use crate::api::error::KilledWorker;
use crate::api::events::{ClusterEvent, lifecycle};
use crate::api::outcome::Outcome;
use crate::api::status::{WorkerState, WorkerStatus};
use crate::slot::{SlotMsg, SlotOutcome};
use crate::supervision::escalation::Escalation;

impl<M, R> ClusterState<M, R>
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Begins a graceful stop: listeners hand out their backlog and close, every slot drains.
    pub(crate) async fn begin_stop(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        let span = lifecycle::shutdown(self.slots.len());
        span.in_scope(|| tracing::info!("cluster stopping: draining every worker"));
        self.shutdown_span = Some(span.clone());
        self.args.bus.emit(ClusterEvent::Stopping);
        // Stop accepting first: what is already queued goes to the workers before they drain.
        self.args.listeners.close_all().instrument(span.clone()).await;
        for sup in self.supervisors() {
            let _ = sup.send_message(SlotMsg::Stop(span.clone()));
        }
    }

    /// A worker asked for an address that cannot be listened on: stop rather than restart
    /// into the same error. The refusal is the cluster's result (`wait` returns it; `corral::main` prints it once):
    /// logged here without it, and only for the first slot that hit it.
    pub(crate) async fn listen_failed(&mut self, slot: usize, refusal: ListenRefusal) {
        if self.failure.is_some() {
            tracing::debug!(slot, error = %refusal, "listen failed while the cluster stops");
        } else {
            tracing::warn!(slot, "a worker cannot listen; stopping the cluster");
            self.failure = Some(Outcome::Listen(refusal));
        }
        self.begin_stop().await;
    }

    /// A slot has ended: forget its supervisor, and escalate if it gave up.
    pub(crate) async fn slot_ended(&mut self, slot: usize, outcome: SlotOutcome) {
        let Some(entry) = self.slots.get_mut(slot) else { return };
        let Some(sup) = entry.supervisor.take() else { return };
        sup.stop(None);
        entry.outcome = Some(outcome.clone());
        if entry.removing {
            self.trim_removed();
            return;
        }
        let SlotOutcome::GaveUp { restarts } = outcome else { return };
        match self.args.config.escalation {
            Escalation::Stop => {
                tracing::error!(slot, "slot gave up; stopping the cluster (escalation: Stop)");
                let period_ms = self.args.config.period.as_millis();
                self.failure.get_or_insert(Outcome::GaveUp { slot, restarts, period_ms });
                self.begin_stop().await;
            }
            Escalation::Degraded => tracing::error!(slot, "slot gave up; running degraded (escalation: Degraded)"),
        }
    }

    /// A supervisor actor failed: a bug of ours, not a worker crash. The slot is lost and the
    /// cluster stops.
    pub(crate) async fn supervisor_failed(&mut self, cell: &ActorCell, reason: ActorProcessingErr) {
        let Some(slot) =
            self.slots.iter().position(|s| s.supervisor.as_ref().is_some_and(|s| s.get_id() == cell.get_id()))
        else {
            return;
        };
        tracing::error!(slot, error = %reason, "worker supervisor failed");
        self.slots[slot].supervisor = None;
        self.slots[slot].outcome = Some(SlotOutcome::GaveUp { restarts: 0 });
        self.failure.get_or_insert(Outcome::SupervisorFailed { slot, reason: Arc::from(reason) });
        self.begin_stop().await;
    }

    /// Once every slot has ended: reports how the cluster ended and stops the actor (failing
    /// it, as an Erlang supervisor does, when the cluster did not end cleanly).
    pub(crate) fn maybe_finish(&mut self) -> Result<(), ActorProcessingErr> {
        if self.slots.iter().any(|s| s.outcome.is_none()) {
            return Ok(());
        }
        let killed: Vec<KilledWorker> = self
            .slots
            .iter()
            .enumerate()
            .flat_map(|(slot, s)| match &s.outcome {
                Some(SlotOutcome::Stopped { killed }) => killed.iter().map(|&pid| KilledWorker { slot, pid }).collect(),
                _ => Vec::new(),
            })
            .collect();
        if !killed.is_empty() {
            let timeout = self.args.config.kill_timeout;
            self.failure.get_or_insert(Outcome::Killed { workers: killed, timeout });
        }
        let outcome = self.failure.clone().unwrap_or(Outcome::Clean);
        let error = outcome.clone().into_result().err().map(Arc::new);
        let span = self.shutdown_span.take().unwrap_or_else(Span::none);
        // Why it failed is the cluster's result (`wait` returns it, `corral::main` prints it):
        // not said here too. The span carries it, for trace export, once this line is out.
        span.in_scope(|| tracing::info!(failed = error.is_some(), "cluster stopped"));
        if let Some(error) = &error {
            lifecycle::fail(&span, error);
        }
        drop(span);
        // Every worker is gone: the addresses are free before anyone hears of the stop (a
        // tree restarting this program binds them again at once).
        self.args.listeners.release();
        self.args.bus.emit(ClusterEvent::Stopped { error: error.clone() });
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(());
        }
        self.args.done.send_replace(Some(outcome.clone()));
        match outcome.into_result() {
            Ok(()) => {
                self.myself.stop(None);
                Ok(())
            }
            Err(e) => Err(Box::new(e)),
        }
    }

    /// The status of a slot that has no supervisor any more.
    pub(crate) fn ended_status(slot: usize, outcome: Option<&SlotOutcome>) -> WorkerStatus {
        let state = match outcome {
            Some(SlotOutcome::GaveUp { .. }) => WorkerState::GaveUp,
            _ => WorkerState::Stopped,
        };
        WorkerStatus::without_process(slot, state)
    }
}
