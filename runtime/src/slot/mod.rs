//! One worker slot: the [`WorkerSupervisor`] actor and what it knows.
//!
//! The actor is a thin, exhaustive match: every [`SlotMsg`] (commands from the cluster,
//! timers, and the events of the slot's processes) is one method on [`SlotState`], each in
//! the file of its idea. The slot's own state is one value, a `Life` (`life.rs`), written
//! only by `SlotState::transition` (`state/transition.rs`), systemd's `service_set_state()`: it
//! refuses an illegal move, logs every move, and emits what the move implies. Each process
//! keeps its own `Role` and `Phase` (`state.rs`); the status is derived from both.
//!
//! | file            | what                                                              |
//! |-----------------|-------------------------------------------------------------------|
//! | `msg.rs`        | the vocabulary: commands, process events, reports to the cluster  |
//! | `life.rs`       | the slot's state, one `Life`; the table of legal moves            |
//! | `state/transition.rs` | the one door of `Life`: checks, logs, emits (`Restarting`, `GaveUp`, `Ended`) |
//! | `state.rs`      | processes (`Phase`, `Role`), the slot's books, derived status     |
//! | `start.rs`      | starting processes; online, ready, start timeout                  |
//! | `exit.rs`       | a process's end; the restart decision applied                     |
//! | `replace.rs`    | candidate → promoted → old retired                                |
//! | `spares.rs`     | warm spares: the book of standby slots, the swap on a worker's leave |
//! | `promote.rs`    | a spare takes a leaving worker's place                            |
//! | `wait.rs`       | a reload's replacement held while the slot restarts or is replaced |
//! | `health.rs`     | heartbeats, memory and request recycling                          |
//! | `probe.rs`      | health probes: the ready check, liveness failures condemn         |
//! | `recycle.rs`    | recycling turns: at most `recycle_concurrency` at a time          |
//! | `turns.rs`      | the turns themselves, shared by the slots; a reload resizes them  |
//! | `grant.rs`      | listen requests                                                   |
//! | `stop.rs`       | draining, stopping, kill timeouts                                 |
//! | `handover.rs`   | what a slot hands over in an upgrade, and takes over              |
//! | `upgrade.rs`    | handing the worker over (old image), taking it over (new image)   |
//!
//! The restart decision itself lives in `supervision/decision.rs`: clock-free, randomness
//! passed in ([`RestartPolicy::decide`] takes `now` and the jitter draw, and keeps the
//! backoff and intensity state), tested case by case in `supervision/decision/tests.rs`.
//!
//! One restart after SIGKILL, in 6 files: the process's waiter reaps it and reports `Exited`
//! (`process/waiter.rs`) → [`SlotState::exited`] builds the `Exit` (`slot/exit.rs`) →
//! [`RestartPolicy::decide`] answers `Restart { delay, attempt }` (`supervision/decision.rs`)
//! → `SlotState::transition` into `Restarting`, which emits `Restarting` and sends `Start`
//! after the delay (`slot/state/transition.rs`) → [`SlotState::start_current`] moves to `Starting`
//! and launches, then emits `Fork` (`slot/start.rs`) → the fork itself, which `process::start`
//! hands to the spawner thread (`process/spawn.rs`).
//!
//! [`RestartPolicy::decide`]: crate::supervision::decision::RestartPolicy::decide

mod exit;
mod grant;
mod handover;
mod health;
mod life;
mod msg;
mod probe;
mod promote;
mod recycle;
mod replace;
mod spares;
mod start;
mod state;
mod stop;
mod turns;
mod upgrade;
mod wait;

use std::marker::PhantomData;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) use handover::{AdoptedWorker, Adoption, HandedSlot};
pub(crate) use msg::{ReplaceReason, SlotMsg, SlotOutcome, SlotReport};
pub(crate) use spares::Spares;
pub(crate) use state::SlotArgs;
use state::SlotState;
pub(crate) use turns::RecycleTurns;

use crate::process::{ProcessEvent, ProcessEventKind};

/// The actor supervising one worker slot, spawned (linked) by the cluster; `M` and `R` are
/// the user's message types primary → worker and worker → primary.
pub(crate) struct WorkerSupervisor<M, R> {
    _types: PhantomData<fn(M) -> R>,
}

impl<M, R> Default for WorkerSupervisor<M, R> {
    fn default() -> Self {
        WorkerSupervisor { _types: PhantomData }
    }
}

impl<M, R> Actor for WorkerSupervisor<M, R>
where
    M: Serialize + Send + 'static,
    R: DeserializeOwned + Clone + Send + 'static,
{
    type Msg = SlotMsg;
    type State = SlotState<M, R>;
    type Arguments = SlotArgs<M, R>;

    async fn pre_start(
        &self,
        myself: ActorRef<SlotMsg>,
        args: SlotArgs<M, R>,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.config.heartbeat_interval, || SlotMsg::Heartbeat);
        let mut args = args;
        let adoption = args.adopt.take();
        let mut st = SlotState::new(args, myself.clone());
        match adoption {
            Some(adoption) => st.adopt(adoption),
            None => {
                let _ = myself.send_message(SlotMsg::Start);
            }
        }
        Ok(st)
    }

    async fn handle(
        &self,
        _myself: ActorRef<SlotMsg>,
        msg: SlotMsg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SlotMsg::Start => st.start_current().await,
            SlotMsg::Activate => st.activate(),
            SlotMsg::Replace { reason, parent, reply } => st.replace(reason, &parent, reply).await,
            SlotMsg::Stop(parent) => st.stop(&parent),
            SlotMsg::Status(reply) => {
                let _ = reply.send(st.status());
            }
            SlotMsg::Reconfigure { config, command } => st.reconfigure(config, command),
            SlotMsg::Signal(signal, reply) => {
                let _ = reply.send(st.signal_current(signal));
            }
            SlotMsg::CanHandOver(reply) => {
                let _ = reply.send(st.can_hand_over());
            }
            SlotMsg::HandOver(reply) => {
                let handed = st.hand_over().await;
                if let Err(unsent) = reply.send(handed) {
                    // Nobody waits any more (the upgrade gave up on this slot): its process
                    // must not be killed by a drop.
                    std::mem::forget(unsent);
                }
            }
            SlotMsg::Heartbeat => st.heartbeat().await,
            SlotMsg::RecycleTurn(turn) => st.recycle_turn(turn).await,
            SlotMsg::StartTimeout { generation } => st.start_timed_out(generation),
            SlotMsg::WaitTimeout { id } => st.wait_timed_out(id),
            SlotMsg::KillTimeout { generation } => st.kill_timed_out(generation),
            SlotMsg::Emptied { generation } => st.emptied(generation),
            SlotMsg::Probed { generation, purpose, result } => st.probed(generation, purpose, result),
            SlotMsg::Process(ProcessEvent { generation, kind }) => match kind {
                ProcessEventKind::Online => st.online(generation),
                ProcessEventKind::Ready => st.ready(generation),
                ProcessEventKind::Pong { nonce, stats } => st.pong(generation, nonce, stats).await,
                ProcessEventKind::Listen { id, addr } => st.listen(generation, id, &addr).await,
                ProcessEventKind::Draining => st.draining_on_its_own(generation),
                ProcessEventKind::Status(text) => st.status_line(generation, text),
                ProcessEventKind::Watchdog => st.watchdog(generation),
                ProcessEventKind::Hung(report) => st.hung(generation, *report),
                ProcessEventKind::Dying => st.dying(generation),
                ProcessEventKind::ReaderEnded(error) => {
                    if error.is_none() {
                        st.dying(generation);
                    }
                    st.reader_ended(generation, error)
                }
                ProcessEventKind::Exited(status) => st.exited(generation, status),
            },
        }
        // A reload's replacement held for this slot runs as soon as the slot can take it.
        st.resume_waiting().await;
        Ok(())
    }
}
