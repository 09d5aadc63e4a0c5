//! Draining and stopping: a process told to drain has `kill_timeout` to exit before it is
//! killed; a stopping slot drains all its processes and restarts none.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Span;

use super::life::Life;
use super::msg::SlotMsg;
use super::state::{DrainCause, Phase, SlotState};
use crate::api::error::ReplaceError;
use crate::api::events::lifecycle;
use crate::supervision::kill::KillReason;

/// How often a retired process's own queue is read until it is empty.
const EMPTY_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// After its queue is empty, how long a retired process goes on before it is told to drain.
const EMPTIED_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

impl<M, R> SlotState<M, R>
where
    M: Serialize + Send + 'static,
    R: DeserializeOwned + Clone + Send + 'static,
{
    /// `Stop`: drains every process, restarts none; the slot ends once they have exited.
    pub(crate) fn stop(&mut self, parent: &Span) {
        if !self.is_live() {
            return;
        }
        let slot = self.slot();
        // A restart waiting for its delay will not happen (its span ends); a replacement
        // under way fails.
        if let Ok(Life::Replacing(pending)) = self.transition(Life::Stopping { killed: Vec::new() }) {
            let error = ReplaceError::Stopping { slot };
            lifecycle::fail(&pending.span, &error);
            if let Some(reply) = pending.reply {
                let _ = reply.send(Err(error));
            }
        }
        let live: Vec<u64> = self.procs.iter().filter(|p| !p.is_draining()).map(|p| p.generation).collect();
        for generation in live {
            self.drain(generation, DrainCause::Stop, parent);
        }
        self.maybe_stopped();
    }

    /// `Draining`: the worker began draining on its own; it gets no more connections.
    pub(crate) fn draining_on_its_own(&mut self, generation: u64) {
        if let Some(proc) = self.proc_mut(generation)
            && !proc.is_draining()
        {
            proc.phase = Phase::Draining(DrainCause::OwnAccord);
            proc.set_accepting(false);
            self.publish_accepting();
        }
    }

    /// Tells a process to drain (shutdown frame, or SIGTERM without a channel) and arms its
    /// kill timer. Its `drain` span (child of `parent`) lasts until it exits.
    pub(crate) fn drain(&mut self, generation: u64, cause: DrainCause, parent: &Span) {
        let slot = self.slot();
        let timeout = self.args.config.kill_timeout;
        let Some(proc) = self.proc_mut(generation) else { return };
        proc.phase = Phase::Draining(cause);
        // A draining process is not probed: it takes no new connection.
        proc.probes.stop();
        proc.spans.drain = Some(lifecycle::drain(parent, slot, generation, proc.pid()));
        proc.set_accepting(false);
        self.publish_accepting();
        let Some(proc) = self.proc_mut(generation) else { return };
        let deadline_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        proc.process.ask_to_drain(deadline_ms);
        self.myself.send_after(timeout, move || SlotMsg::KillTimeout { generation });
    }

    /// A retired process whose own reuse-port sockets were just steered out keeps taking what
    /// is queued there until the queue is empty (at most `kill_timeout`), and [`EMPTIED_GRACE`]
    /// more, so that the requests of the last connections it accepted have arrived; then it
    /// is told to drain. (A server that closes connections it accepted but has not read yet
    /// when it stops — uvicorn, hypercorn — loses nothing this way.)
    pub(crate) fn drain_once_emptied(&mut self, generation: u64) {
        let (slot, listeners, myself) = (self.slot(), self.args.listeners.clone(), self.myself.clone());
        let deadline = tokio::time::Instant::now() + self.args.config.kill_timeout;
        tokio::spawn(async move {
            while listeners.queued_on(slot, generation) > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(EMPTY_POLL).await;
            }
            tokio::time::sleep(EMPTIED_GRACE).await;
            let _ = myself.send_message(SlotMsg::Emptied { generation });
        });
    }

    /// `Emptied`: the retired process drains (unless a stop drained it already).
    pub(crate) fn emptied(&mut self, generation: u64) {
        let Some(proc) = self.proc(generation) else { return };
        if proc.is_draining() {
            return;
        }
        let span = proc.spans.replace.clone().unwrap_or_else(Span::none);
        self.drain(generation, DrainCause::Retired, &span);
    }

    /// `KillTimeout`: a process still alive `kill_timeout` after it was told to drain is killed.
    pub(crate) fn kill_timed_out(&mut self, generation: u64) {
        let (slot, timeout) = (self.slot(), self.args.config.kill_timeout);
        let Some(proc) = self.proc_mut(generation) else { return };
        let scope = proc.spans.drain.clone().unwrap_or_else(Span::none);
        scope.record("corral.killed", true);
        scope.in_scope(|| tracing::warn!(slot, pid = proc.pid(), ?timeout, "worker did not drain in time; killing it"));
        proc.kill(KillReason::DrainTimeout { timeout });
        let pid = proc.pid();
        if let Life::Stopping { killed } = self.life() {
            let killed = killed.iter().copied().chain([pid]).collect();
            let _ = self.transition(Life::Stopping { killed });
        }
    }
}

impl<M, R> SlotState<M, R> {
    /// `Signal`: sends `signal` to the current process (through its waiter); its pid.
    pub(crate) fn signal_current(&self, signal: nix::sys::signal::Signal) -> Option<u32> {
        let proc = self.current()?;
        tracing::info!(slot = self.slot(), pid = proc.pid(), signal = signal.as_str(), "signalling worker");
        proc.process.signal(signal);
        Some(proc.pid())
    }
}
