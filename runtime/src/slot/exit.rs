//! What follows the end of a process: its reader's end (a protocol error kills it), its exit,
//! and for the current process the restart decision of [`policy`](crate::supervision::decision).

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_protocol::ProtocolError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Span;

use super::life::{Life, Restart};
use super::state::{Proc, ProcSpans, Role, SlotState};
use crate::api::error::{ReplaceError, StartFailure};
use crate::api::events::{ClusterEvent, lifecycle};
use crate::supervision::decision::{Decision, Done, Exit, Launch, ProtocolFault};
use crate::supervision::exit::ExitStatus;
use crate::supervision::kill::KillReason;

/// How long after its worker's exit a slot that holds the standby (it handed its place to a
/// spare, or its spare died) starts the next spare (at least; the restart policy's backoff
/// may say longer).
const NEXT_SPARE_AFTER: Duration = Duration::from_millis(50);

impl<M, R> SlotState<M, R>
where
    M: Serialize + Send + 'static,
    R: DeserializeOwned + Clone + Send + 'static,
{
    /// `ReaderEnded`: EOF needs nothing (the exit follows); a protocol error kills the process.
    pub(crate) fn reader_ended(&mut self, generation: u64, error: Option<ProtocolError>) {
        let Some(error) = error else { return };
        let slot = self.slot();
        let Some(proc) = self.proc_mut(generation) else { return };
        let pid = proc.pid();
        tracing::error!(slot, pid, %error, "worker broke the protocol; killing it");
        let error = Arc::new(error);
        proc.kill(KillReason::Protocol(error.clone()));
        self.args.bus.emit(ClusterEvent::ProtocolError { slot, pid, error });
    }

    /// `Exited`: forgets the process and acts by its role.
    pub(crate) fn exited(&mut self, generation: u64, status: ExitStatus) {
        let slot = self.slot();
        let Some(index) = self.procs.iter().position(|p| p.generation == generation) else { return };
        let mut proc = self.procs.remove(index);
        proc.set_accepting(false);
        self.publish_accepting();
        self.args.listeners.process_gone(slot, generation);
        self.args.listeners.unregister(slot, generation);
        // The process is gone whether or not a listener knew it (it may have died before it
        // asked to listen, or its listener is passed on or reuse-port): its handle channel's
        // watcher ends here, and with it the primary's end of the channel.
        proc.process.untaken.worker_gone();
        let uptime = proc.started.elapsed();
        let stopping = !self.is_live();
        let spans = std::mem::take(&mut proc.spans);
        let none = Span::none();
        let scope = spans.drain.as_ref().or(spans.fork.as_ref()).unwrap_or(&none);
        scope.in_scope(|| tracing::info!(slot, pid = proc.pid(), %status, ?uptime, role = ?proc.role, "worker exited"));
        close_spans(&proc, spans, status, stopping);
        self.args.bus.emit(ClusterEvent::Exit {
            slot,
            pid: proc.pid(),
            status,
            exited_after_disconnect: proc.is_draining() || stopping,
        });
        if proc.role == Role::Current {
            self.last_hang = proc.hang.take();
        }
        match proc.role {
            Role::Retiring => {}
            Role::Candidate => self.candidate_failed(&proc, status),
            Role::Current => {
                self.args.routes.clear(slot, generation);
                self.args.spares.set_ready(slot, None);
                self.hand_to_spare();
                if self.candidate_takes_over() {
                    return;
                }
                if self.life().replacing().is_some() {
                    // A candidate that had taken over died before it was ready.
                    self.candidate_failed(&proc, status);
                }
                let protocol = match &proc.killed {
                    Some(why) if why.rules_out_restart() => ProtocolFault::Fatal,
                    Some(KillReason::Protocol(_)) => ProtocolFault::Recoverable,
                    _ => ProtocolFault::None,
                };
                let exit = Exit {
                    requested: stopping,
                    status,
                    uptime,
                    was_ready: proc.ready_at.is_some(),
                    protocol,
                    launch: Launch::Started,
                    condemned: matches!(proc.killed, Some(KillReason::MissedProbe { .. })),
                };
                self.after_exit(exit);
            }
        }
        self.maybe_stopped();
    }

    /// The current process died while a candidate was on its way: the candidate becomes
    /// current at once (promoted when ready). Returns whether there was one.
    fn candidate_takes_over(&mut self) -> bool {
        let slot = self.slot();
        let Some(candidate) = self.procs.iter_mut().find(|p| p.role == Role::Candidate) else { return false };
        candidate.role = Role::Current;
        let (generation, route, ready) =
            (candidate.generation, candidate.process.route(candidate.generation), candidate.ready_at.is_some());
        self.args.routes.set(slot, route);
        if ready {
            self.promote(generation);
        }
        true
    }

    /// A candidate died before it was promoted: its replacement failed; the old process serves
    /// on, if it is still there.
    fn candidate_failed(&mut self, proc: &Proc<M>, status: ExitStatus) {
        if self.life().replacing().is_none() {
            return;
        }
        let Ok(Life::Replacing(pending)) = self.transition(Life::Running) else { return };
        let slot = self.slot();
        let cause = match &proc.killed {
            Some(why) => StartFailure::Killed(why.clone()),
            None => StartFailure::Exited(status),
        };
        let error = ReplaceError::Failed { slot, pid: proc.pid(), cause };
        lifecycle::fail(&pending.span, &error);
        pending.span.in_scope(|| match proc.role {
            Role::Candidate => tracing::error!(slot, %error, "replacement failed; the old worker keeps serving"),
            // It had taken over from an old process that died: the slot restarts as it says.
            Role::Current | Role::Retiring => tracing::error!(slot, %error, "replacement failed"),
        });
        if let Some(reply) = pending.reply {
            let _ = reply.send(Err(error));
        }
    }

    /// Applies the restart policy to the exit of the current process.
    pub(crate) fn after_exit(&mut self, exit: Exit) {
        let slot = self.slot();
        match self.policy.decide(&exit, Instant::now(), rand::random()) {
            Decision::Done(Done::Requested) => {}
            Decision::Done(Done::NotRestarted) => {
                let restart = self.args.config.restart;
                tracing::info!(slot, status = %exit.status, ?restart, "worker not restarted");
                let _ = self.transition(Life::Finished);
            }
            Decision::GiveUp { restarts } => self.give_up(restarts),
            Decision::Restart { delay, attempt } => self.schedule_restart(exit.status, delay, attempt),
        }
    }

    /// Into `Restarting`: the `restart` span opens now; the door counts the restart, emits
    /// `Restarting` and sends `Start` after the delay.
    fn schedule_restart(&mut self, status: ExitStatus, delay: Duration, attempt: u32) {
        let slot = self.slot();
        // The slot holds the standby now (a spare took its place, or its own standby spare
        // died): what starts now is a spare, which nobody waits for. Started a moment later,
        // it does not take the CPU from a just promoted spare as it serves its first requests
        // (a worker's start is milliseconds of CPU) — unless connections wait on the slot's
        // own reuse-port sockets, which only its next process takes.
        let waited_for = self.args.listeners.queued(slot) > 0;
        let delay = if self.standby() && !waited_for { delay.max(NEXT_SPARE_AFTER) } else { delay };
        let restart = lifecycle::restart(slot, attempt, delay, &status);
        if let Some(report) = self.last_hang.take() {
            restart.record("corral.hang", tracing::field::display(&report));
        }
        restart.in_scope(|| tracing::warn!(slot, %status, ?delay, attempt, "restarting worker"));
        let _ = self.transition(Life::Restarting(Restart { span: restart, delay, attempt }));
    }

    /// The slot will not be restarted again; the cluster decides what follows (the door
    /// emits `GaveUp` and tells the cluster).
    fn give_up(&mut self, restarts: usize) {
        let slot = self.slot();
        tracing::error!(slot, restarts, period = ?self.args.config.period, "worker slot gave up");
        let _ = self.transition(Life::GaveUp { restarts });
    }

    /// While stopping: once no process is left, the slot has ended.
    pub(crate) fn maybe_stopped(&mut self) {
        if let Life::Stopping { killed } = self.life()
            && self.procs.is_empty()
        {
            let killed = killed.clone();
            let _ = self.transition(Life::Stopped { killed });
        }
    }
}

/// Ends the lifecycle spans an exited process held: a start that had not come online failed
/// (unless the process was told to drain), a drain is over, a replace is complete.
fn close_spans<M>(proc: &Proc<M>, spans: ProcSpans, status: ExitStatus, stopping: bool) {
    let ProcSpans { fork, restart, drain, replace } = spans;
    if !proc.is_draining() && !stopping {
        for span in fork.iter().chain(restart.iter()) {
            match &proc.killed {
                Some(why) => lifecycle::fail(span, why),
                None => lifecycle::fail(span, format_args!("it {status} before it was online")),
            }
        }
    }
    if let Some(drain) = &drain {
        drain.record("corral.exit", tracing::field::display(status));
    }
    drop((fork, restart, drain, replace));
}
