//! Recycling that never bunches: at most `recycle_concurrency` slots of a cluster replace a
//! worker for `max_memory` or `max_requests` at a time; a slot that is due while the others
//! hold every turn queues (first come, first served) and recycles when a turn frees up.
//!
//! A turn is held from the start of the replacement until the retired process has exited (or
//! the replacement failed), so a worker's replacement and its old process's drain never
//! overlap another's beyond the limit.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Span;

use super::life::{Life, Queued};
use super::msg::{RecycleTurn, ReplaceReason, SlotMsg};
use super::state::{Phase, SlotState};

impl<M, R> SlotState<M, R>
where
    M: Serialize + Send + 'static,
    R: DeserializeOwned + Clone + Send + 'static,
{
    /// The current process is due for recycling: replaced now if a turn is free, else queued.
    /// Only a slot running with nothing under way recycles.
    pub(crate) async fn recycle(&mut self, reason: ReplaceReason) {
        if !matches!(self.life(), Life::Running) || self.recycling() {
            return; // Being recycled or replaced, or waiting for its turn already.
        }
        let Some(generation) = self.current().map(|p| p.generation) else { return };
        // Never jumps the queue: a turn is free only while no slot waits for one.
        match self.args.recycling.try_take() {
            Some(turn) => self.recycle_now(turn, reason).await,
            None => {
                let slot = self.slot();
                tracing::info!(slot, ?reason, "recycling queued: other workers are being recycled");
                let _ = self.transition(Life::RecycleQueued(Queued { generation, reason }));
                let (turns, myself) = (self.args.recycling.clone(), self.myself.clone());
                tokio::spawn(async move {
                    if let Some(turn) = turns.take().await {
                        // A slot that is gone drops the message, and the turn with it.
                        let _ = myself.send_message(SlotMsg::RecycleTurn(turn));
                    }
                });
            }
        }
    }

    /// `RecycleTurn`: the queued recycle may go, if the process that was due still serves.
    /// In any other state (the process died, was replaced, the slot stops) the turn is given
    /// back at once.
    pub(crate) async fn recycle_turn(&mut self, turn: RecycleTurn) {
        let Life::RecycleQueued(queued) = self.life() else { return };
        let queued = *queued;
        let _ = self.transition(Life::Running);
        let due = self.current().is_some_and(|p| p.generation == queued.generation && p.phase == Phase::Ready);
        if due {
            self.recycle_now(turn, queued.reason).await;
        }
    }

    async fn recycle_now(&mut self, turn: RecycleTurn, reason: ReplaceReason) {
        // A spare takes the slot's place at once; the replacement started here is the new
        // spare, and the old process retires once it is ready.
        self.hand_to_spare();
        self.start_replacement(reason, &Span::none(), None, Some(turn)).await;
    }
}
