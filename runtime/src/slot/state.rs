//! What a slot knows: its processes, each in one [`Phase`], and the slot's own [`Life`]
//! (`life.rs`), which only `state/transition.rs` writes.
//!
//! A slot may briefly have three processes: the **current** one, a **candidate** started to
//! replace it (rolling reload, recycling) that takes over only once it is ready, and the
//! **retiring** one it replaced, draining. Capacity never drops while a slot is replaced.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use corral_protocol::WorkerStats;
use ractor::{ActorRef, DerivedActorRef};
use tracing::Span;

use self::probes::ProbeBook;
use super::life::Life;
use super::msg::{RecycleTurn, ReplaceReason, ReplaceReply, SlotMsg, SlotReport};
use crate::api::events::bus::EventBus;
use crate::api::status::{WorkerState, WorkerStatus};
use crate::config::cluster::ClusterConfig;
use crate::config::command::WorkerCommand;
use crate::process::{Process, SlotCounters};
use crate::routing::balance::Listeners;
use crate::routing::messages::Routes;
use crate::supervision::decision::RestartPolicy;
use crate::supervision::kill::KillReason;
use crate::sys::hang::HangReport;
use crate::sys::procfs::rss_bytes;

/// What a process is to its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Serves the slot.
    Current,
    /// Started to replace the current process; takes over once ready.
    Candidate,
    /// Replaced; draining.
    Retiring,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Current => "current",
            Role::Candidate => "candidate",
            Role::Retiring => "retiring",
        }
    }
}

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Forked; no hello yet.
    Starting,
    /// Said hello; its behaviour is starting.
    Online,
    /// Ready for work.
    Ready,
    /// Draining: no new work, exits when done (or is killed at `kill_timeout`).
    Draining(DrainCause),
}

/// Why a process drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DrainCause {
    /// The slot is stopping (cluster stop, scale-down).
    Stop,
    /// A replacement took over.
    Retired,
    /// The worker began draining on its own.
    OwnAccord,
    /// It failed its liveness probe: the restart policy replaces it once it has exited.
    Condemned,
}

/// The lifecycle spans a process holds open (see [`lifecycle`](crate::api::events::lifecycle)); each ends
/// when dropped.
#[derive(Default)]
pub(crate) struct ProcSpans {
    /// `fork`: until the hello arrives or the start fails.
    pub fork: Option<Span>,
    /// The `restart` that started this process: until it is online.
    pub restart: Option<Span>,
    /// `drain`: from the drain request until the process exits.
    pub drain: Option<Span>,
    /// The `replace` that retired this process: until it exits.
    pub replace: Option<Span>,
}

/// One process of the slot.
pub(crate) struct Proc<M> {
    pub role: Role,
    pub phase: Phase,
    pub generation: u64,
    pub started: Instant,
    /// When it became ready, if it did.
    pub ready_at: Option<Instant>,
    pub process: Process<M>,
    /// Shared with the listeners: whether connections may be dispatched to it.
    pub accepting: Arc<AtomicBool>,
    /// Why the slot killed it, if it did.
    pub killed: Option<KillReason>,
    /// When the unanswered ping was sent, and its nonce.
    pub ping: Option<(u64, Instant)>,
    /// Consecutive heartbeats with RSS over `max_memory`.
    pub over_memory: u32,
    /// Handled requests after which this process is recycled (`max_requests` + jitter).
    pub request_limit: Option<u64>,
    /// A foreign worker's last `STATUS=` line.
    pub status_text: Option<String>,
    /// What it was doing when it missed its heartbeat, if it did.
    pub hang: Option<Arc<HangReport>>,
    pub spans: ProcSpans,
    /// The recycling turn a retired process holds until it has exited.
    pub recycle_turn: Option<RecycleTurn>,
    /// It was seen dying (its death notice, or its channel's close) and taken out of service.
    pub dying: bool,
    /// Its health probes.
    pub probes: ProbeBook,
}

impl<M> Proc<M> {
    pub(crate) fn pid(&self) -> u32 {
        self.process.pid
    }

    pub(crate) fn is_draining(&self) -> bool {
        matches!(self.phase, Phase::Draining(_))
    }

    pub(crate) fn set_accepting(&self, accepting: bool) {
        self.accepting.store(accepting, Ordering::Release);
    }

    pub(crate) fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// Kills the process (SIGKILL) for `reason`; the first reason is kept, except that a
    /// protocol error, which decides the restart, always is.
    pub(crate) fn kill(&mut self, reason: KillReason) {
        if self.killed.is_none() || matches!(reason, KillReason::Protocol(_)) {
            self.killed = Some(reason);
        }
        self.process.kill();
    }

    /// As [`kill`](Self::kill), after a diagnosis of what it is doing (a `Hung` report).
    pub(crate) fn diagnose_and_kill(&mut self, reason: KillReason) {
        if self.killed.is_none() {
            self.killed = Some(reason);
        }
        self.process.diagnose_and_kill();
    }
}

/// A reload's replacement held until its slot can take it (`wait.rs`).
pub(crate) struct Waiting {
    /// Matches the timer's [`SlotMsg::WaitTimeout`] to this wait.
    pub id: u64,
    pub reason: ReplaceReason,
    pub parent: Span,
    pub reply: Option<ReplaceReply>,
    /// Why it could not run at once (what it is refused with if the wait runs out).
    pub busy: bool,
}

/// The door of [`Life`]: declared here, as a child of this module, so that it alone may write
/// the private `life` field.
pub(crate) mod transition;

/// A process's health probes, as [`Proc::probes`] holds them.
pub(crate) mod probes;

/// Everything a slot is started with (built by the cluster).
pub(crate) struct SlotArgs<M, R> {
    pub slot: usize,
    pub config: Arc<ClusterConfig>,
    pub cluster: DerivedActorRef<SlotReport>,
    pub bus: Arc<EventBus<R>>,
    pub routes: Arc<Routes<M>>,
    pub listeners: Arc<Listeners>,
    pub command: Arc<WorkerCommand>,
    /// What to take over from the primary's previous image (an upgrade) instead of starting.
    pub adopt: Option<super::handover::Adoption>,
    /// The cluster's recycling turns (`recycle_concurrency`).
    pub recycling: Arc<super::turns::RecycleTurns>,
    /// The cluster's book of warm spares.
    pub spares: Arc<super::spares::Spares>,
}

/// The slot supervisor's state.
pub(crate) struct SlotState<M, R> {
    pub args: SlotArgs<M, R>,
    pub myself: ActorRef<SlotMsg>,
    pub counters: Arc<SlotCounters>,
    /// The last generation started.
    pub generation: u64,
    pub procs: Vec<Proc<M>>,
    /// The slot's state: private, written only by [`transition`](Self::transition).
    life: Life,
    pub policy: RestartPolicy,
    pub restarts: u64,
    pub next_nonce: u64,
    pub last_stats: Option<WorkerStats>,
    pub last_latency: Option<Duration>,
    /// The hang report of the current process that exited last, for its `restart` span.
    pub last_hang: Option<Arc<HangReport>>,
    /// A reload's replacement held until the slot can take it.
    pub waiting: Option<Waiting>,
    /// The last hold's id.
    pub next_wait: u64,
}

impl<M, R> SlotState<M, R> {
    pub(crate) fn new(args: SlotArgs<M, R>, myself: ActorRef<SlotMsg>) -> Self {
        let policy = restart_policy(&args.config);
        SlotState {
            args,
            myself,
            counters: Arc::new(SlotCounters::default()),
            generation: 0,
            procs: Vec::new(),
            life: Life::Starting,
            policy,
            restarts: 0,
            next_nonce: 0,
            last_stats: None,
            last_latency: None,
            last_hang: None,
            waiting: None,
            next_wait: 0,
        }
    }

    /// `Reconfigure`: the next processes start from `config` and `command`.
    pub(crate) fn reconfigure(&mut self, config: Arc<ClusterConfig>, command: Arc<WorkerCommand>) {
        self.policy = restart_policy(&config);
        self.args.config = config;
        self.args.command = command;
    }

    pub(crate) fn slot(&self) -> usize {
        self.args.slot
    }

    /// Whether this slot holds a warm spare now: its ready process takes no connection.
    pub(crate) fn standby(&self) -> bool {
        self.args.spares.is_standby(self.args.slot)
    }

    /// Tells the listeners whether any process of the slot takes new connections now: a
    /// reuse-port group steers the slot's sockets in or out by it.
    pub(crate) fn publish_accepting(&self) {
        let accepting = self.procs.iter().any(Proc::is_accepting);
        self.args.listeners.steer_accepting(self.slot(), accepting);
    }

    /// The slot's state.
    pub(crate) fn life(&self) -> &Life {
        &self.life
    }

    /// Whether the slot serves (restarting as the policy says): not told to stop, not ended.
    pub(crate) fn is_live(&self) -> bool {
        self.life.is_live()
    }

    /// Whether the slot is being recycled, or waits for its turn: a retired process holds
    /// the turn until it has exited.
    pub(crate) fn recycling(&self) -> bool {
        matches!(&self.life, Life::RecycleQueued(_))
            || self.life.replacing().is_some_and(|p| p.turn.is_some())
            || self.procs.iter().any(|p| p.recycle_turn.is_some())
    }

    pub(crate) fn proc(&self, generation: u64) -> Option<&Proc<M>> {
        self.procs.iter().find(|p| p.generation == generation)
    }

    pub(crate) fn proc_mut(&mut self, generation: u64) -> Option<&mut Proc<M>> {
        self.procs.iter_mut().find(|p| p.generation == generation)
    }

    pub(crate) fn current(&self) -> Option<&Proc<M>> {
        self.procs.iter().find(|p| p.role == Role::Current)
    }

    pub(crate) fn current_mut(&mut self) -> Option<&mut Proc<M>> {
        self.procs.iter_mut().find(|p| p.role == Role::Current)
    }

    /// The slot's state as status reports it, derived from its life and its current process.
    pub(crate) fn state(&self) -> WorkerState {
        match &self.life {
            Life::GaveUp { .. } => WorkerState::GaveUp,
            Life::Stopped { .. } | Life::Finished | Life::HandedOver => WorkerState::Stopped,
            Life::Stopping { .. } if self.procs.is_empty() => WorkerState::Stopped,
            Life::Stopping { .. } => WorkerState::Stopping,
            Life::Restarting(_) => WorkerState::Restarting,
            Life::Starting | Life::Running | Life::RecycleQueued(_) | Life::Replacing(_) => {
                match self.current().map(|p| p.phase) {
                    Some(Phase::Starting) | None => WorkerState::Starting,
                    Some(Phase::Online) => WorkerState::Online,
                    Some(Phase::Ready) => WorkerState::Ready,
                    Some(Phase::Draining(_)) => WorkerState::Stopping,
                }
            }
        }
    }

    pub(crate) fn status(&self) -> WorkerStatus {
        let proc = self.current().or_else(|| self.procs.first());
        WorkerStatus {
            slot: self.slot(),
            pid: proc.map(Proc::pid),
            generation: proc.map_or(self.generation, |p| p.generation),
            state: self.state(),
            uptime: proc.map(|p| p.started.elapsed()),
            restarts: self.restarts,
            rss_bytes: proc.and_then(|p| rss_bytes(p.pid())),
            messages_in: self.counters.messages_in.load(Ordering::Relaxed),
            messages_out: self.counters.messages_out.load(Ordering::Relaxed),
            stats: self.last_stats,
            heartbeat_latency: self.last_latency,
            status_text: proc.and_then(|p| p.status_text.clone()),
            spare: self.standby(),
            steering: self
                .args
                .listeners
                .steering_of(self.slot())
                .map(|s| crate::api::status::Steered { steered_in: s.steered_in, queued: s.queued }),
            probe: proc.and_then(|p| p.probes.last()),
        }
    }
}

/// The restart decision's parameters, as the cluster's configuration sets them.
pub(crate) fn restart_policy(config: &ClusterConfig) -> RestartPolicy {
    RestartPolicy::new(config.restart, config.backoff, config.min_uptime, config.max_restarts, config.period)
}
