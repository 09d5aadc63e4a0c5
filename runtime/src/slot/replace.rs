//! Replacement: a candidate is started beside the current process, promoted once ready, and
//! the old process retires (drains). Rolling reloads and recycling both go through here.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Span;

use super::life::{Life, Pending};
use super::msg::{RecycleTurn, ReplaceReason, ReplaceReply};
use super::state::{DrainCause, Phase, Role, SlotState};
use crate::api::error::ReplaceError;
use crate::api::events::lifecycle;
use crate::api::reports::Replaced;

impl<M, R> SlotState<M, R>
where
    M: Serialize + Send + 'static,
    R: DeserializeOwned + Clone + Send + 'static,
{
    /// `Replace`: starts a candidate for the current process, under a `replace` span (child of
    /// `parent`) that lasts until the old process has exited or the candidate failed.
    pub(crate) async fn replace(&mut self, reason: ReplaceReason, parent: &Span, reply: Option<ReplaceReply>) {
        self.start_replacement(reason, parent, reply, None).await;
    }

    /// As [`replace`](Self::replace); a recycle passes its `turn`, held until the old process
    /// has exited (or given back at once if the replacement does not start).
    pub(crate) async fn start_replacement(
        &mut self,
        reason: ReplaceReason,
        parent: &Span,
        reply: Option<ReplaceReply>,
        turn: Option<RecycleTurn>,
    ) {
        let slot = self.slot();
        let span = lifecycle::replace(parent, slot, reason.as_str());
        let refuse = |reply: Option<ReplaceReply>, error: ReplaceError| {
            lifecycle::fail(&span, &error);
            span.in_scope(|| tracing::warn!(slot, %error, "replacement refused"));
            if let Some(reply) = reply {
                let _ = reply.send(Err(error));
            }
        };
        if !self.is_live() {
            return refuse(reply, ReplaceError::Stopping { slot });
        }
        if self.life().replacing().is_some() {
            return refuse(reply, ReplaceError::Busy { slot });
        }
        let Some(old_pid) = self.current().filter(|p| p.phase == Phase::Ready).map(|p| p.pid()) else {
            return refuse(reply, ReplaceError::NoReadyWorker { slot });
        };
        span.record("corral.replace.old_pid", old_pid);
        let program = match reason {
            ReplaceReason::Reload => self.args.command.reload_program.clone(),
            ReplaceReason::MaxMemory | ReplaceReason::MaxRequests | ReplaceReason::Restart => {
                self.args.command.start_program()
            }
        };
        match self.launch(Role::Candidate, program.clone(), &span).await {
            Ok(generation) => {
                if let Some(new) = self.proc(generation) {
                    span.record("corral.replace.new_pid", new.pid());
                }
                let pending = Pending { generation, old_pid, reason, reply, span: span.clone(), turn };
                if let Err(refused) = self.transition(Life::Replacing(pending)) {
                    // Not reached: the slot was live and not replacing, and the actor handles one
                    // message at a time, so it still is.
                    tracing::error!(slot, %refused, "replacement not recorded");
                }
            }
            Err(e) => refuse(reply, ReplaceError::Spawn { slot, program, source: Arc::new(e) }),
        }
    }

    /// The candidate is ready: it becomes current; the old process retires.
    pub(crate) fn promote(&mut self, generation: u64) {
        let slot = self.slot();
        let old =
            self.procs.iter().find(|p| p.role == Role::Current && p.generation != generation).map(|p| p.generation);
        let standby = self.standby();
        let Some(new) = self.proc_mut(generation) else { return };
        new.role = Role::Current;
        // A spare's replacement (a rolling reload) is the spare now: ready, idle.
        new.set_accepting(!standby);
        let ready = (new.phase == Phase::Ready).then(|| new.accepting.clone());
        let (new_pid, route) = (new.pid(), new.process.route(generation));
        self.args.spares.set_ready(slot, ready);
        self.publish_accepting();
        self.args.routes.set(slot, route);
        let mut pending = match self.life() {
            Life::Replacing(_) => match self.transition(Life::Running) {
                Ok(Life::Replacing(pending)) => Some(pending),
                _ => None,
            },
            _ => None,
        };
        // The `replace` span goes on until the old process has exited (or ends here without
        // one); so does a recycle's turn.
        let span = pending.as_ref().map_or_else(Span::none, |p| p.span.clone());
        // New connections go to the new process's own sockets from here on; the old one
        // first takes what is queued on its own (so nothing waits where nobody will accept).
        let emptying = self.args.listeners.promote(slot, generation);
        if let Some(old) = old
            && let Some(proc) = self.proc_mut(old)
        {
            proc.role = Role::Retiring;
            proc.spans.replace = Some(span.clone());
            proc.recycle_turn = pending.as_mut().and_then(|p| p.turn.take());
            if emptying {
                self.drain_once_emptied(old);
            } else {
                self.drain(old, DrainCause::Retired, &span);
            }
        }
        self.args.listeners.readiness_changed();
        if let Some(pending) = pending {
            pending.span.in_scope(|| {
                tracing::info!(slot, old_pid = pending.old_pid, new_pid, generation, reason = ?pending.reason, "worker replaced");
            });
            if let Some(reply) = pending.reply {
                let _ = reply.send(Ok(Replaced { slot, old_pid: pending.old_pid, new_pid, generation }));
            }
        }
    }
}
