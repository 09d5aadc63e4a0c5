//! Scaling: slots added at the end start; slots removed from the end drain, then go.

use ractor::Actor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Span;

use super::state::{ClusterState, Slot};
use crate::api::error::ScaleError;
use crate::api::events::ClusterEvent;
use crate::api::reports::{Scale, ScaleReason, ScaleReport};
use crate::config::cluster::MAX_WORKERS;
use crate::slot::{SlotArgs, SlotMsg, WorkerSupervisor};

/// How often a removed slot's queue is read until it is empty.
const QUEUE_POLL: std::time::Duration = std::time::Duration::from_millis(10);

impl<M, R> ClusterState<M, R>
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Spawns the supervisor of `slot`, linked to the cluster.
    pub(crate) async fn spawn_slot(&self, slot: usize) -> Result<Slot, ractor::SpawnErr> {
        self.spawn_slot_adopting(slot, None, false).await
    }

    /// As [`spawn_slot`](Self::spawn_slot), taking over a worker of the primary's previous
    /// image (an upgrade) when there is one.
    pub(crate) async fn spawn_slot_adopting(
        &self,
        slot: usize,
        adopt: Option<crate::slot::Adoption>,
        standby: bool,
    ) -> Result<Slot, ractor::SpawnErr> {
        // In the book before the supervisor starts: its first process knows whether it is a spare.
        self.args.spares.add(slot, standby);
        let args = SlotArgs {
            adopt,
            slot,
            config: self.args.config.clone(),
            cluster: self.myself.get_derived(),
            bus: self.args.bus.clone(),
            routes: self.args.routes.clone(),
            listeners: self.args.listeners.clone(),
            command: self.command.clone(),
            recycling: self.args.recycling.clone(),
            spares: self.args.spares.clone(),
        };
        let name = format!("{}-{}-{}-slot-{slot}", self.args.config.name, std::process::id(), self.args.id);
        let supervisor = WorkerSupervisor::<M, R>::default();
        let (sup, _) = Actor::spawn_linked(Some(name), supervisor, args, self.myself.get_cell()).await?;
        self.args.spares.set_actor(slot, sup.clone());
        Ok(Slot { supervisor: Some(sup), outcome: None, removing: false })
    }

    /// `Scale`: adds or removes slots, for `reason`. Refused while stopping, during a reload,
    /// while an earlier scale-down drains (the autoscaler's steps down excepted: they drain
    /// side by side), and below one worker; capped at [`MAX_WORKERS`]. With autoscaling, a
    /// scale asked for pins the count inside the range (refused outside it), `Scale::Auto`
    /// lifts the pin, and the autoscaler's steps are refused while pinned.
    pub(crate) async fn scale(&mut self, request: Scale, reason: ScaleReason) -> Result<ScaleReport, ScaleError> {
        if self.stopping {
            return Err(ScaleError::Stopping);
        }
        if self.reload.is_some() {
            return Err(ScaleError::Reloading);
        }
        let auto = self.args.autoscale.config();
        // Spares are not counted: scaling adds or removes serving workers.
        let from = self.active_slots();
        if request == Scale::Auto {
            if auto.is_none() {
                return Err(ScaleError::NotAutoscaled);
            }
            self.args.autoscale.pin(None);
            tracing::info!(workers = from, "autoscaling resumed: the pin is lifted");
            return Ok(ScaleReport { from, to: from, note: Some("autoscaling resumed".into()) });
        }
        let stepping = matches!(reason, ScaleReason::Saturated(_) | ScaleReason::Idle(_));
        if stepping && self.args.autoscale.is_pinned() {
            return Err(ScaleError::Pinned);
        }
        // (A removed slot that has ended stays in place until the slots after it go: spares
        // move, so the removed ones are not always the last.)
        let draining = self.slots.iter().any(|s| s.removing && s.outcome.is_none());
        if draining && !matches!(reason, ScaleReason::Idle(_)) {
            return Err(ScaleError::Draining);
        }
        let wanted = request.target(from);
        if wanted < 1 {
            return Err(ScaleError::TooFew { wanted });
        }
        if let Some(a) = auto.as_ref().filter(|_| reason == ScaleReason::Asked)
            && !usize::try_from(wanted).is_ok_and(|n| a.contains(n))
        {
            return Err(ScaleError::OutsideRange { wanted, min: a.min, max: a.max });
        }
        let (to, note) = match usize::try_from(wanted) {
            Ok(n) if n <= MAX_WORKERS => (n, None),
            _ => (MAX_WORKERS, Some(format!("{wanted} workers asked; capped at {MAX_WORKERS}"))),
        };
        if auto.is_some() && reason == ScaleReason::Asked {
            tracing::info!(workers = to, "the worker count is pinned until `corral scale auto`");
            self.args.autoscale.pin(Some(to));
        }
        if to != from {
            tracing::info!(from, to, %reason, "scaling");
            self.args.bus.emit(ClusterEvent::Scaled { from, to, reason });
            self.args.autoscale.scaled(to);
        }
        if to > from {
            let (first, last) = (self.slots.len(), self.slots.len() + (to - from));
            self.args.routes.resize(last);
            for slot in first..last {
                match self.spawn_slot(slot).await {
                    Ok(new) => self.slots.push(new),
                    Err(source) => {
                        self.args.routes.resize(self.slots.len());
                        return Err(ScaleError::Spawn { slot, source });
                    }
                }
            }
        } else {
            // The serving slots with the highest numbers go (a spare is never removed).
            let spares = self.args.spares.clone();
            let mut going: Vec<usize> =
                (0..self.slots.len()).filter(|&i| !self.slots[i].removing && !spares.is_standby(i)).collect();
            going.drain(..to.min(going.len()));
            for index in going {
                let slot = &mut self.slots[index];
                slot.removing = true;
                spares.remove(index);
                // Steered out first, so no new connection waits on a socket nobody will take
                // it from; the worker takes what is queued there already, then drains.
                self.args.listeners.steer_out_removed(index);
                if let Some(sup) = slot.supervisor.clone() {
                    let (listeners, patience) = (self.args.listeners.clone(), self.args.config.kill_timeout);
                    tokio::spawn(async move {
                        let deadline = tokio::time::Instant::now() + patience;
                        while listeners.queued(index) > 0 && tokio::time::Instant::now() < deadline {
                            tokio::time::sleep(QUEUE_POLL).await;
                        }
                        let _ = sup.send_message(SlotMsg::Stop(Span::none()));
                    });
                }
            }
        }
        // The configuration says how many workers there are now (`corral config`).
        let mut config = (*self.args.config).clone();
        config.workers = to;
        self.args.config = std::sync::Arc::new(config);
        Ok(ScaleReport { from, to, note })
    }

    /// Drops slots at the end that a scale-down removed and that have ended.
    pub(crate) fn trim_removed(&mut self) {
        while self.slots.last().is_some_and(|s| s.removing && s.outcome.is_some()) {
            self.slots.pop();
            self.args.listeners.close_slot(self.slots.len());
        }
        self.args.routes.resize(self.slots.len());
        self.args.spares.truncate(self.slots.len());
    }
}
