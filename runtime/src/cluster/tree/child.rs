//! One program of a running tree: what it should be ([`Want`], and whether it is being
//! cycled or removed), what it is ([`Phase`]), and the cluster configuration it starts from
//! ([`Desired`]), shared with its cluster's reload hook.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::api::handle::ClusterHandle;
use crate::config::cluster::ClusterConfig;
use crate::config::cluster::reconfigure::Reconfigure;
use crate::config::control_socket::ControlSocket;
use crate::config::foreign::ListenAddr;
use crate::supervision::escalation::Escalation;
use crate::supervision::restart::Restart;

use super::spec::{Kind, ProgramSpec};

/// What the operator (or the file) wants of a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// Running (a oneshot: run to completion once).
    Up,
    /// Stopped (`corral stop NAME`).
    Down,
}

/// Where a program is.
#[derive(Debug)]
pub(crate) enum Phase<M, R> {
    /// Nothing runs: not started yet (maybe waiting for its dependencies), or stopped.
    Down,
    /// Its cluster is being spawned.
    Spawning,
    /// Its cluster runs; `ready` once every worker has been ready.
    Up { cluster: ClusterHandle<M, R>, ready: bool },
    /// A oneshot that exited 0.
    Completed,
    /// A service whose processes ended in a way its restart type does not restart.
    Finished,
    /// Its cluster is stopping.
    Stopping,
}

impl<M, R> Phase<M, R> {
    /// Whether processes of it may be alive.
    pub(crate) fn running(&self) -> bool {
        matches!(self, Phase::Spawning | Phase::Up { .. } | Phase::Stopping)
    }
}

/// The configuration a program starts from, and the listener addresses its first cluster
/// resolved (port 0), kept for the clusters that replace it.
#[derive(Debug)]
pub(crate) struct Desired {
    pub config: ClusterConfig,
    pub kind: Kind,
    /// `(name, address)` of each activated listener, as first bound.
    pub pins: Vec<(String, ListenAddr)>,
}

impl Desired {
    /// The configuration a cluster of this program is spawned (or reloaded) with: its
    /// listeners pinned, no control socket of its own (the tree's serves it), and the tree's
    /// reading of its kind: a oneshot is transient (exit 0 ends it); a singleton service's
    /// process is the program, so its exit is the tree's to handle (temporary in its
    /// cluster).
    pub(crate) fn effective(&self, name: &str) -> ClusterConfig {
        let mut c = self.config.clone();
        c.name = name.to_string();
        c.program = Some(name.to_string());
        c.control = ControlSocket::Off;
        c.escalation = Escalation::Stop;
        if let crate::config::cluster::WorkerExec::Foreign(f) = &mut c.exec {
            for spec in &mut f.listen {
                if let Some((_, addr)) = self.pins.iter().find(|(n, _)| *n == spec.name) {
                    spec.addr = addr.clone();
                }
            }
        }
        match self.kind {
            Kind::Oneshot if c.restart == Restart::Permanent => c.restart = Restart::Transient,
            Kind::Service if singleton(&self.config) => c.restart = Restart::Temporary,
            _ => {}
        }
        c
    }
}

/// A service of one worker: its process is the program.
pub(crate) fn singleton(config: &ClusterConfig) -> bool {
    config.workers == 1
}

/// One program of the tree.
#[derive(Debug)]
pub(crate) struct Child<M, R> {
    pub spec: ProgramSpec,
    pub want: Want,
    /// To be stopped and started again (a strategy's restart, a change it cannot roll).
    pub cycling: bool,
    /// Gone from the file: stopped, then forgotten.
    pub removing: bool,
    pub phase: Phase<M, R>,
    /// Counts spawns; what a task reports about an older cluster is ignored.
    pub epoch: u64,
    pub desired: Arc<Mutex<Desired>>,
    /// Its process ended for good (its restart type): once stopped, it is finished.
    pub finishing: bool,
    /// Restarts the tree made of it.
    pub restarts: u32,
    /// How it last died.
    pub last_death: Option<String>,
    /// When its current cluster was spawned.
    pub since: Option<Instant>,
}

impl<M, R> Child<M, R> {
    pub(crate) fn new(spec: ProgramSpec) -> Self {
        let desired = Arc::new(Mutex::new(Desired { config: spec.config.clone(), kind: spec.kind, pins: Vec::new() }));
        Child {
            spec,
            want: Want::Up,
            cycling: false,
            removing: false,
            phase: Phase::Down,
            epoch: 0,
            desired,
            finishing: false,
            restarts: 0,
            last_death: None,
            since: None,
        }
    }

    /// Whether it should not be running now.
    pub(crate) fn should_be_down(&self) -> bool {
        self.want == Want::Down || self.cycling || self.removing
    }

    /// The desired configuration (the lock only guards whole replacements).
    pub(crate) fn desired(&self) -> std::sync::MutexGuard<'_, Desired> {
        self.desired.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The configuration of its next cluster, with a reload hook that reads what is desired
    /// at the time of the reload.
    pub(crate) fn spawn_config(&self) -> ClusterConfig {
        let name = self.spec.name.clone();
        let mut c = self.desired().effective(&name);
        let desired = self.desired.clone();
        c.reconfigure =
            Some(Reconfigure::new(move || Ok(desired.lock().unwrap_or_else(PoisonError::into_inner).effective(&name))));
        c
    }

    /// Its state, as status shows it.
    pub(crate) fn state(&self, waiting: bool) -> ProgramState {
        match &self.phase {
            _ if self.removing => ProgramState::Stopping,
            Phase::Down if self.want == Want::Down => ProgramState::Stopped,
            Phase::Down if self.cycling => ProgramState::Restarting,
            Phase::Down if waiting => ProgramState::Waiting,
            Phase::Down => ProgramState::Starting,
            Phase::Spawning | Phase::Up { ready: false, .. } => ProgramState::Starting,
            Phase::Up { ready: true, .. } => ProgramState::Running,
            Phase::Completed => ProgramState::Completed,
            Phase::Finished => ProgramState::Finished,
            Phase::Stopping => ProgramState::Stopping,
        }
    }
}

/// A program's state in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramState {
    /// Waiting for its dependencies.
    Waiting,
    /// Started, not every worker ready yet.
    Starting,
    /// Every worker has been ready.
    Running,
    /// A oneshot that exited 0.
    Completed,
    /// A service that ended and is not restarted (its restart type).
    Finished,
    /// Being stopped.
    Stopping,
    /// Stopped by the operator.
    Stopped,
    /// Stopped by the tree's strategy, to be started again.
    Restarting,
}

impl std::fmt::Display for ProgramState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProgramState::Waiting => "waiting",
            ProgramState::Starting => "starting",
            ProgramState::Running => "running",
            ProgramState::Completed => "completed",
            ProgramState::Finished => "finished",
            ProgramState::Stopping => "stopping",
            ProgramState::Stopped => "stopped",
            ProgramState::Restarting => "restarting",
        })
    }
}
