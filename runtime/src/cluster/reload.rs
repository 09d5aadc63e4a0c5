//! Rolling reload: every slot replaced in turn, each replacement ready before its old process
//! drains, in a task so that the cluster keeps answering meanwhile.

use std::collections::HashSet;
use std::sync::PoisonError;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::msg::{ClusterSignal, Signal};
use super::state::ClusterState;
use crate::slot::{ReplaceReason, SlotMsg};
use std::sync::Arc;

use crate::api::error::ReloadError;
use crate::api::events::bus::EventStream;
use crate::api::events::{ClusterEvent, lifecycle};
use crate::api::reports::{ReloadReport, Scale, ScaleReason};
use crate::config::cluster::reconfigure::{ReconfigureError, Unchangeable};
use crate::config::command::WorkerCommand;

impl<M, R> ClusterState<M, R>
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// `Reload`: starts a rolling reload; one asked for while another runs is queued and runs
    /// once that one ends (every request queued meanwhile makes that one reload). Refused (in
    /// the report) while the cluster stops.
    pub(crate) async fn request_reload(&mut self, reply: Option<RpcReplyPort<ReloadReport>>) {
        if self.reload.is_some() && !self.stopping {
            let queued = self.reload_queued.get_or_insert_with(Vec::new);
            queued.extend(reply);
            tracing::info!(
                requests = queued.len(),
                "reload asked for while a rolling reload runs: it runs once that one ends (requests meanwhile are merged into one)"
            );
            return;
        }
        self.start_reload(reply.into_iter().collect()).await;
    }

    /// Starts a rolling reload for `replies`, or refuses it (in the report) while the cluster
    /// stops or another runs.
    pub(crate) async fn start_reload(&mut self, replies: Vec<RpcReplyPort<ReloadReport>>) {
        let refused = if self.stopping {
            Some(ReloadError::Stopping)
        } else if self.reload.is_some() {
            Some(ReloadError::AlreadyRunning)
        } else {
            self.reconfigure().err()
        };
        if let Some(error) = refused {
            // The requester hears it in the report, and says it (the primary of
            // `corral::main` logs a refused SIGHUP; `corral reload` prints it).
            tracing::debug!(%error, "reload request refused");
            for reply in replies {
                let _ = reply.send(ReloadReport { replaced: Vec::new(), error: Some(error.clone()) });
            }
            return;
        }
        // A re-read configuration with fewer workers: the extra slots drain first, and are
        // not replaced only to go.
        let wanted = self.args.config.workers;
        if wanted < self.active_slots()
            && let Err(error) = self.scale(Scale::To(wanted), ScaleReason::Reconfigured).await
        {
            tracing::warn!(%error, "not scaled down to the new configuration");
        }
        let supervisors: Vec<(usize, ActorRef<SlotMsg>)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.removing)
            .filter_map(|(i, s)| s.supervisor.clone().map(|sup| (i, sup)))
            .collect();
        // A slot that restarts or is being recycled holds the reload's replacement up to
        // `listen_timeout` before it starts it.
        let patience = self.replacement_patience().saturating_add(self.args.config.listen_timeout);
        let span = lifecycle::reload(supervisors.len());
        span.in_scope(|| tracing::info!(slots = supervisors.len(), "rolling reload started"));
        self.args.bus.emit(ClusterEvent::Reloading { slots: supervisors.len() });
        self.reload = Some(span.clone());
        let cluster = self.myself.clone();
        let parent = span.clone();
        // Exits are watched from the start: the first slots' old processes drain while the
        // later slots are replaced.
        let drains = DrainWatch::start(self.args.bus.subscribe_lifecycle());
        let drain_bound = self.args.config.kill_timeout + DRAIN_LOG_GRACE;
        let started = tokio::time::Instant::now();
        let task = async move {
            let report = replace_in_turn(supervisors, patience, &parent).await;
            match &report.error {
                None => {
                    // "Done" once the old processes are gone too (each drains, or is killed
                    // after `kill_timeout`): logged apart, the report is not held back.
                    let old: Vec<u32> = report.replaced.iter().map(|r| r.old_pid).collect();
                    let replaced = report.replaced.len();
                    tokio::spawn(
                        async move {
                            let drained = drains.wait_for(old, drain_bound).await;
                            let took_ms = started.elapsed().as_millis();
                            if drained {
                                tracing::info!(replaced, took_ms, "rolling reload done: the old workers have drained");
                            } else {
                                tracing::warn!(
                                    replaced,
                                    took_ms,
                                    "rolling reload done, but an old worker has not exited yet"
                                );
                            }
                        }
                        .instrument(parent.clone()),
                    );
                }
                Some(error) => {
                    drains.abort();
                    tracing::error!(replaced = report.replaced.len(), %error, "rolling reload aborted; the remaining workers keep serving")
                }
            }
            // Answered once the cluster has taken the report in: a reload asked for right
            // after this one returned is not refused as still running.
            let _ = cluster.send_message(ClusterSignal(Signal::ReloadFinished(report, replies)));
        };
        tokio::spawn(task.instrument(span));
    }

    /// Re-reads the configuration (when there is a hook) and hands it to every slot, whose
    /// next processes start from it; the cluster-wide settings (`sticky_key`,
    /// `recycle_concurrency`) take effect at once.
    fn reconfigure(&mut self) -> Result<(), ReloadError> {
        let Some(hook) = self.args.config.reconfigure.clone() else { return Ok(()) };
        let refused = |e: ReconfigureError| ReloadError::Reconfigure(Arc::from(e));
        let mut new = hook.load().map_err(refused)?;
        new.validate().map_err(|e| refused(Box::new(e)))?;
        let old = &self.args.config;
        if new.scheduling != old.scheduling {
            return Err(refused(Box::new(Unchangeable { what: "scheduling" })));
        }
        if new.exec.foreign().map(|f| &f.listen) != old.exec.foreign().map(|f| &f.listen) {
            return Err(refused(Box::new(Unchangeable { what: "listen" })));
        }
        // Autoscaled: the count stays where the scaler (or a pin) has it, inside the new range.
        self.args.autoscale.reconfigure(new.autoscale.clone());
        if let Some(a) = &new.autoscale {
            new.workers = a.clamp(self.args.autoscale.pinned().unwrap_or_else(|| self.active_slots()));
            super::autoscale::start(self.myself.clone(), self.args.listeners.clone(), self.args.autoscale.clone());
        }
        // Names and the control socket stay: they identify this running cluster.
        new.name = old.name.clone();
        new.control = old.control.clone();
        new.reconfigure = Some(hook);
        let config = Arc::new(new);
        let command = Arc::new(WorkerCommand::new(&config.exec));
        tracing::info!(workers = config.workers, "configuration re-read for the reload");
        // Cluster-wide, from now on: connections accepted later are placed by the new sticky
        // key, and recycles started later count against the new limit.
        self.args.listeners.set_sticky_key(config.sticky_key);
        if self.args.recycling.at_once() != config.recycle_concurrency {
            tracing::info!(
                old = self.args.recycling.at_once(),
                new = config.recycle_concurrency,
                "recycle_concurrency changed"
            );
            self.args.recycling.resize(config.recycle_concurrency);
        }
        for sup in self.supervisors() {
            let _ = sup.send_message(SlotMsg::Reconfigure { config: config.clone(), command: command.clone() });
        }
        self.args.config = config;
        self.command = command;
        Ok(())
    }

    /// `ReloadFinished`: the reload task is done; its requesters hear it now. A reload asked
    /// for meanwhile starts.
    pub(crate) async fn reload_finished(&mut self, report: ReloadReport, replies: Vec<RpcReplyPort<ReloadReport>>) {
        if let Some(span) = self.reload.take() {
            span.record("corral.replaced", report.replaced.len());
            if let Some(error) = &report.error {
                lifecycle::fail(&span, error);
            }
        }
        let complete = report.is_complete();
        self.args.bus.emit(ClusterEvent::Reloaded { replaced: report.replaced.len(), error: report.error.clone() });
        // A re-read configuration may ask for another number of workers.
        let wanted = self.args.config.workers;
        let active = self.active_slots();
        if complete && wanted != active {
            match self.scale(Scale::To(wanted), ScaleReason::Reconfigured).await {
                Ok(report) => tracing::info!(from = report.from, to = report.to, "scaled to the new configuration"),
                Err(error) => tracing::warn!(%error, "not scaled to the new configuration"),
            }
        }
        for reply in replies {
            let _ = reply.send(report.clone());
        }
        if let Some(queued) = self.reload_queued.take() {
            tracing::info!(requests = queued.len(), "running the reload asked for during the last one");
            self.start_reload(queued).await;
        }
    }
}

/// How much longer than `kill_timeout` the "reload done" line waits for the old processes.
const DRAIN_LOG_GRACE: Duration = Duration::from_secs(2);

/// The process exits seen since a reload started, to say when its old processes are gone.
struct DrainWatch {
    exited: Arc<std::sync::Mutex<HashSet<u32>>>,
    changed: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl DrainWatch {
    /// Records every exit on `events` (read on, so that no message waits for this reader).
    fn start<R: Clone + Send + 'static>(mut events: EventStream<R>) -> Self {
        let exited = Arc::new(std::sync::Mutex::new(HashSet::new()));
        let changed = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn({
            let (exited, changed) = (exited.clone(), changed.clone());
            async move {
                while let Some(event) = events.recv().await {
                    if let ClusterEvent::Exit { pid, .. } = event {
                        exited.lock().unwrap_or_else(PoisonError::into_inner).insert(pid);
                        changed.notify_waiters();
                    }
                }
            }
        });
        DrainWatch { exited, changed, task }
    }

    /// Waits until every one of `pids` has exited, at most `bound`; whether they all have.
    async fn wait_for(self, pids: Vec<u32>, bound: Duration) -> bool {
        let all_gone = || {
            let exited = self.exited.lock().unwrap_or_else(PoisonError::into_inner);
            pids.iter().all(|pid| exited.contains(pid))
        };
        let gone = tokio::time::timeout(bound, async {
            loop {
                let changed = self.changed.notified();
                if all_gone() {
                    return;
                }
                changed.await;
            }
        })
        .await
        .is_ok();
        self.task.abort();
        gone
    }

    fn abort(self) {
        self.task.abort();
    }
}

/// Replaces each slot in turn; stops at the first failure.
async fn replace_in_turn(
    supervisors: Vec<(usize, ActorRef<SlotMsg>)>,
    patience: Duration,
    parent: &tracing::Span,
) -> ReloadReport {
    let mut report = ReloadReport::default();
    for (slot, sup) in supervisors {
        let replace =
            |port| SlotMsg::Replace { reason: ReplaceReason::Reload, parent: parent.clone(), reply: Some(port) };
        match sup.call(replace, Some(patience)).await {
            Ok(CallResult::Success(Ok(replaced))) => report.replaced.push(replaced),
            Ok(CallResult::Success(Err(error))) => {
                report.error = Some(ReloadError::Replace(error));
                break;
            }
            Ok(CallResult::Timeout | CallResult::SenderError) | Err(_) => {
                report.error = Some(ReloadError::NoAnswer { slot, waited: patience });
                break;
            }
        }
    }
    report
}
