//! A warm spare takes a leaving worker's place (see `spares.rs`): the leaving slot hands its
//! place over ([`SlotState::hand_to_spare`]), the spare's slot takes connections
//! ([`SlotState::activate`]).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::msg::SlotMsg;
use super::state::{Phase, Role, SlotState};
use crate::api::events::ClusterEvent;

impl<M, R> SlotState<M, R>
where
    M: Serialize + Send + 'static,
    R: DeserializeOwned + Clone + Send + 'static,
{
    /// This slot's current worker is leaving (it died, is recycled, or failed its probe): a
    /// ready spare, if the cluster has one, takes the slot's place at once, and this slot
    /// becomes the spare — the process it starts next (its restart, or the replacement a
    /// recycle starts) waits, ready and idle. Nothing happens for a slot that is a spare
    /// itself, stops, or when no spare is ready.
    ///
    /// The one entry point for every path on which a worker leaves: the exit of the current
    /// process, its death notice or the close of its channel (both earlier than the exit:
    /// [`dying`](Self::dying)), a recycle, and a liveness
    /// probe that condemns it (`probe.rs`: called as it is steered out, before it drains).
    pub(crate) fn hand_to_spare(&mut self) {
        if !self.is_live() {
            return;
        }
        let slot = self.slot();
        let Some((spare, actor)) = self.args.spares.claim(slot) else { return };
        // The claim made the acceptor dispatch to the spare; steer its reuse-port sockets in
        // now too, and wake hand-offs waiting for a ready worker, instead of when the spare's
        // slot handles `Activate`: that slot's actor shares this thread and may be behind
        // other work (this slot's own exit, a fork's bookkeeping) for milliseconds.
        self.args.listeners.steer_accepting(spare, true);
        self.args.listeners.readiness_changed();
        // The spare's slot takes connections as soon as it handles this; this slot's processes
        // that still run (a recycled worker until its replacement is ready) serve on.
        if actor.send_message(SlotMsg::Activate).is_err() {
            tracing::warn!(slot, spare, "the spare's slot is gone; restarting in place");
            return;
        }
        tracing::info!(slot, spare, "a warm spare takes the worker's place; this slot starts the next spare");
        self.args.bus.emit(ClusterEvent::SpareTookOver { slot: spare, replaced: slot });
    }

    /// Process `generation` (a corral worker) is dying while it serves: its death notice
    /// fired (its event-loop thread began to exit) or its channel closed (a worker closes it
    /// only by exiting), whichever came first. Its exit comes later, once the kernel has torn
    /// the process down and the waiter has reaped it. Acted on now, once: it gets no new
    /// connection, those passed to it that it never took go to another worker at once, and
    /// a spare takes its place.
    pub(crate) fn dying(&mut self, generation: u64) {
        let slot = self.slot();
        let Some(proc) = self.proc_mut(generation) else { return };
        if !proc.process.speaks_corral() || proc.is_draining() || proc.dying {
            // A draining worker's end is its exit, handled there; a foreign program's
            // notification socket says nothing about its life; the second sign of the same
            // death changes nothing.
            return;
        }
        proc.dying = true;
        // Before the spare is woken below: the dead worker's teardown yields to it.
        proc.process.yield_to_the_living();
        let current = proc.role == Role::Current;
        proc.set_accepting(false);
        self.publish_accepting();
        if current {
            self.args.spares.set_ready(slot, None);
            self.hand_to_spare();
        }
        // After the spare took the place: what the worker never took is handed out again
        // (by its watcher, on `gone`), and may go to that spare.
        self.args.listeners.unregister(slot, generation);
    }

    /// `Activate`: this slot held a spare and is active now; its ready process takes
    /// connections (a process still starting does once it is ready).
    pub(crate) fn activate(&mut self) {
        let slot = self.slot();
        let Some(proc) = self.current_mut() else { return };
        if proc.phase != Phase::Ready || proc.role != Role::Current {
            return;
        }
        proc.set_accepting(true);
        let pid = proc.pid();
        self.publish_accepting();
        self.args.listeners.readiness_changed();
        tracing::info!(slot, pid, "spare promoted: taking connections");
    }
}
