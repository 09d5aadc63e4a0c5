//! The slot's message vocabulary: commands to a slot, the events of its processes, and what
//! a slot reports to its cluster. Every module that talks to a slot imports this file, never
//! the slot actor itself.

use corral_protocol::ListenRefusal;
use ractor::RpcReplyPort;
use tracing::Span;

use std::sync::Arc;

use crate::api::error::ReplaceError;
use crate::api::reports::Replaced;
use crate::api::status::WorkerStatus;
use crate::config::cluster::ClusterConfig;
use crate::config::command::WorkerCommand;
use crate::process::ProcessEvent;
use crate::process::probe::{ProbeResult, Purpose};

/// Why a slot's process is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplaceReason {
    /// A rolling reload: the replacement runs the executable as it is on disk now.
    Reload,
    /// Recycling over `max_memory`: the replacement runs the same image.
    MaxMemory,
    /// Recycling after `max_requests`: the replacement runs the same image.
    MaxRequests,
    /// Asked for (`corral restart`): the replacement runs the same image.
    Restart,
}

impl ReplaceReason {
    /// The reason as the `replace` span's `corral.replace.reason` says it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ReplaceReason::Reload => "reload",
            ReplaceReason::MaxMemory => "max_memory",
            ReplaceReason::MaxRequests => "max_requests",
            ReplaceReason::Restart => "restart",
        }
    }
}

pub(crate) use super::turns::RecycleTurn;

/// Where a replacement's result goes.
pub(crate) type ReplaceReply = RpcReplyPort<Result<Replaced, ReplaceError>>;

/// Messages of a slot's supervisor.
#[derive(Debug)]
pub(crate) enum SlotMsg {
    /// Start the slot's current process (first start, and every restart after its delay).
    Start,
    /// This slot held a spare and takes a leaving worker's place: its ready process takes
    /// connections from now on (see `spares.rs`).
    Activate,
    /// Start a replacement, make it current once ready, then drain the old process. The reply
    /// comes once the replacement is ready, or with why it failed (the old process then keeps
    /// serving).
    Replace {
        /// Why.
        reason: ReplaceReason,
        /// Parent of the `replace` span (the `reload` span); `Span::none()` for a root span.
        parent: Span,
        /// Where to answer.
        reply: Option<ReplaceReply>,
    },
    /// Stop the slot: drain its processes, do not restart. The span (the cluster's `shutdown`
    /// span, or `Span::none()`) is the parent of the processes' `drain` spans.
    Stop(Span),
    /// The slot's status.
    Status(RpcReplyPort<WorkerStatus>),
    /// The configuration and command the slot's next processes start from (a reload re-read
    /// them).
    Reconfigure {
        /// The new configuration.
        config: Arc<ClusterConfig>,
        /// The program it names.
        command: Arc<WorkerCommand>,
    },
    /// Send a signal to the current process; the reply is its pid, if there is one.
    Signal(nix::sys::signal::Signal, RpcReplyPort<Option<u32>>),
    /// Whether the slot can be handed over to the primary's next image now (an upgrade).
    CanHandOver(RpcReplyPort<Result<(), crate::api::error::UpgradeError>>),
    /// Hand the slot's worker over to the primary's next image; the slot is inert afterwards.
    HandOver(RpcReplyPort<super::handover::HandedSlot>),
    /// Time to ping (and to check the last ping was answered, and the memory limit).
    Heartbeat,
    /// The slot's queued recycle may start now (`recycle_concurrency`).
    RecycleTurn(RecycleTurn),
    /// Timer: the process of this generation had `listen_timeout` to become ready.
    StartTimeout {
        /// The process's generation.
        generation: u64,
    },
    /// A retired process has taken what was queued on its own reuse-port sockets: it drains.
    Emptied {
        /// The process's generation.
        generation: u64,
    },
    /// Timer: the process of this generation had `kill_timeout` to drain.
    KillTimeout {
        /// The process's generation.
        generation: u64,
    },
    /// A health probe of the process of this generation ended (`slot/probe.rs`).
    Probed {
        /// The process's generation.
        generation: u64,
        /// Readiness or liveness.
        purpose: Purpose,
        /// What it found.
        result: ProbeResult,
    },
    /// Something happened to one of the slot's processes.
    Process(ProcessEvent),
}

impl From<ProcessEvent> for SlotMsg {
    fn from(event: ProcessEvent) -> Self {
        SlotMsg::Process(event)
    }
}

/// Gives a process event back when the slot's mailbox refused it (the slot is gone).
impl TryFrom<SlotMsg> for ProcessEvent {
    type Error = ();

    fn try_from(msg: SlotMsg) -> Result<Self, ()> {
        match msg {
            SlotMsg::Process(event) => Ok(event),
            _ => Err(()),
        }
    }
}

/// How a slot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SlotOutcome {
    /// Stopped on the cluster's request.
    Stopped {
        /// Pids of the slot's processes that did not drain within `kill_timeout` and were
        /// killed.
        killed: Vec<u32>,
    },
    /// Its worker exited and the restart type says not to restart it.
    Finished,
    /// It gave up (restart intensity, or a worker restarting cannot fix).
    GaveUp {
        /// Restarts within the window.
        restarts: usize,
    },
}

/// What a slot tells its cluster.
#[derive(Debug, Clone)]
pub(crate) enum SlotReport {
    /// The slot has ended.
    Ended {
        /// The slot.
        slot: usize,
        /// How.
        outcome: SlotOutcome,
    },
    /// A worker asked for an address that cannot be listened on: the cluster stops rather
    /// than restart into the same error.
    ListenFailed {
        /// The slot.
        slot: usize,
        /// Why.
        refusal: ListenRefusal,
    },
}
