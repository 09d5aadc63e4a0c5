//! A slot in an upgrade of the primary: handing its worker over (the old image) and taking
//! it over (the new image).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::handover::{AdoptedWorker, Adoption, HandedSlot};
use super::life::Life;
use super::msg::SlotMsg;
use super::state::{Phase, Proc, ProcSpans, Role, SlotState};
use crate::api::error::UpgradeError;
use crate::process;
use crate::routing::balance::Target;

/// How long a process's tasks have to reach a boundary (a writer blocked on a worker that
/// reads nothing is the slow case).
const HANDOVER_PATIENCE: Duration = Duration::from_secs(2);

impl<M, R> SlotState<M, R>
where
    M: Serialize + Send + 'static,
    R: DeserializeOwned + Clone + Send + 'static,
{
    /// Whether the slot can be handed over now: one process, current and ready, nothing
    /// being replaced (or no process at all, waiting for a restart).
    pub(crate) fn can_hand_over(&self) -> Result<(), UpgradeError> {
        let ok = match (self.life(), self.procs.as_slice()) {
            (Life::Restarting(_), []) => true,
            (Life::Running | Life::RecycleQueued(_), [only]) => {
                only.role == Role::Current && only.phase == Phase::Ready
            }
            _ => false,
        };
        if ok { Ok(()) } else { Err(UpgradeError::SlotBusy { slot: self.slot(), state: self.state() }) }
    }

    /// `HandOver`: stops the current process's tasks and gives back its fds; the slot is inert
    /// from now on (the image is about to be replaced).
    pub(crate) async fn hand_over(&mut self) -> HandedSlot {
        let mut worker = None;
        let mut reap = Vec::new();
        for mut proc in std::mem::take(&mut self.procs) {
            let pid = proc.pid();
            if worker.is_none() && proc.role == Role::Current && proc.phase == Phase::Ready {
                match proc.process.hand_over(HANDOVER_PATIENCE).await {
                    Ok(handed) => {
                        worker = Some((handed, proc.generation, proc.started.elapsed()));
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(slot = self.slot(), pid, error = %e, "cannot hand the worker over; it is killed")
                    }
                }
            }
            proc.process.kill();
            reap.push(pid);
        }
        let _ = self.transition(Life::HandedOver);
        HandedSlot { slot: self.slot(), generation: self.generation, restarts: self.restarts, worker, reap }
    }

    /// Takes over the worker the previous image handed over, as the slot's current, ready
    /// process; without one (or when it is gone), starts one.
    pub(crate) fn adopt(&mut self, adoption: Adoption) {
        self.generation = adoption.generation;
        self.restarts = adoption.restarts;
        let Some(AdoptedWorker { spec, uptime, listens }) = adoption.worker else {
            let _ = self.myself.send_message(SlotMsg::Start);
            return;
        };
        let (slot, generation, pid) = (self.slot(), spec.generation, spec.pid);
        self.generation = self.generation.max(generation);
        let config = self.args.config.clone();
        let (process, io) = match process::adopt::<M>(spec, &config) {
            Ok(adopted) => adopted,
            Err(e) => {
                tracing::warn!(slot, pid, error = %e, "cannot take the worker over; starting a new one");
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
                let _ = self.myself.send_message(SlotMsg::Start);
                return;
            }
        };
        self.args.routes.set(slot, process.route(generation));
        let accepting = Arc::new(AtomicBool::new(true));
        if let Some(channel) = &process.handles {
            for (key, listen_id) in listens {
                let target = Target {
                    slot,
                    generation,
                    listen_id,
                    channel: channel.clone(),
                    accepting: accepting.clone(),
                    load: process.load.clone(),
                    untaken: process.untaken.clone(),
                };
                self.args.listeners.register_adopted(&key, target);
            }
        }
        let now = Instant::now();
        self.procs.push(Proc {
            role: Role::Current,
            phase: Phase::Ready,
            generation,
            started: now.checked_sub(uptime).unwrap_or(now),
            ready_at: Some(now),
            process,
            accepting,
            killed: None,
            ping: None,
            over_memory: 0,
            request_limit: super::start::request_limit(&config),
            status_text: None,
            hang: None,
            spans: ProcSpans::default(),
            recycle_turn: None,
            dying: false,
            // Ready already (it was, to be handed over): only its liveness is probed.
            probes: super::state::probes::ProbeBook::passed(),
        });
        tracing::info!(slot, generation, pid, "worker taken over from the previous image");
        self.start_liveness(generation);
        io.run(self.myself.get_derived(), &self.args.bus, &self.counters, &self.args.routes);
        self.args.listeners.readiness_changed();
        self.publish_accepting();
        let _ = self.transition(Life::Running);
    }
}
