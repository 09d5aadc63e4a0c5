//! What a worker process's I/O tasks report to its slot.

use corral_protocol::{ProtocolError, WorkerStats};
use ractor::DerivedActorRef;

use crate::supervision::exit::ExitStatus;

/// Where a process's tasks report: the slot's mailbox, seen as a sink of [`ProcessEvent`]s.
pub(crate) type Reports = DerivedActorRef<ProcessEvent>;

/// Something that happened to one process of a slot.
#[derive(Debug)]
pub(crate) struct ProcessEvent {
    /// The process's generation (a slot may have two processes during a replacement).
    pub generation: u64,
    /// What happened.
    pub kind: ProcessEventKind,
}

/// What happened to a process, in the order it can happen.
#[derive(Debug)]
pub(crate) enum ProcessEventKind {
    /// It said a valid hello.
    Online,
    /// It is ready for work.
    Ready,
    /// It answered a ping.
    Pong {
        /// The ping's nonce.
        nonce: u64,
        /// Its counters.
        stats: WorkerStats,
    },
    /// It asks to listen on an address.
    Listen {
        /// The request's id.
        id: u64,
        /// The address asked for.
        addr: String,
    },
    /// It began draining on its own (`Disconnect`, or `STOPPING=1` from a foreign worker).
    Draining,
    /// A foreign worker's `STATUS=` line.
    Status(String),
    /// A foreign worker's `WATCHDOG=1`: it is alive.
    Watchdog,
    /// It missed its heartbeat and was diagnosed; the SIGKILL follows.
    Hung(Box<crate::sys::hang::HangReport>),
    /// It is dying: its event-loop thread has begun to exit (its death notice), before the
    /// kernel has torn it down; its channel's close and its exit follow.
    Dying,
    /// Its frame reader ended: EOF (`None`) or a protocol error.
    ReaderEnded(Option<ProtocolError>),
    /// It exited (reported after the reader ended, so its last messages come first).
    Exited(ExitStatus),
}
