//! The slot's own state: one [`Life`], each variant holding the data of that state, so that no
//! impossible combination (a restart waiting while a replacement is under way, a recycle
//! queued in a stopped slot) can be written. Which moves are legal is [`Life::may_become`],
//! a table; the one door every move goes through is `state/transition.rs`.
//!
//! The processes keep their own facts (`Role`, `Phase`, in `state.rs`): a slot being replaced
//! has two of them, each in its phase. The slot's status is derived from both.

use std::time::Duration;

use tracing::Span;

use super::msg::{RecycleTurn, ReplaceReason, ReplaceReply};

/// The slot's state.
#[derive(Debug)]
pub(crate) enum Life {
    /// About to start its first process (or taking over one from the previous image).
    Starting,
    /// Serving with its current process, whatever that process's phase; nothing under way.
    Running,
    /// Serving; the current process is due for recycling and waits for a turn.
    RecycleQueued(Queued),
    /// Serving; a candidate is on its way to replace the current process.
    Replacing(Pending),
    /// No current process: a restart waits for its backoff delay, then `Start`.
    Restarting(Restart),
    /// Told to stop: draining its processes, restarting none.
    Stopping {
        /// Pids killed at `kill_timeout`.
        killed: Vec<u32>,
    },
    /// Stopped on the cluster's request; the cluster was told.
    Stopped {
        /// Pids killed at `kill_timeout` while it stopped.
        killed: Vec<u32>,
    },
    /// Its worker exited and the restart type says not to restart it; the cluster was told.
    Finished,
    /// Gave up (restart intensity, or an exit no restart can fix); the cluster was told.
    GaveUp {
        /// Restarts counted in the intensity window.
        restarts: usize,
    },
    /// Handed its worker over to the primary's next image; inert.
    HandedOver,
}

/// A replacement under way.
#[derive(Debug)]
pub(crate) struct Pending {
    /// The candidate's generation.
    pub generation: u64,
    pub old_pid: u32,
    pub reason: ReplaceReason,
    pub reply: Option<ReplaceReply>,
    /// The `replace` span: moves to the old process once the new one took over.
    pub span: Span,
    /// The recycling turn a recycle holds: moves to the old process once the new one took
    /// over, and is given back when that process has exited.
    pub turn: Option<RecycleTurn>,
}

/// A recycle waiting for its turn.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Queued {
    /// The process that is due (a later process of the slot is not).
    pub generation: u64,
    pub reason: ReplaceReason,
}

/// A restart waiting for its delay.
#[derive(Debug)]
pub(crate) struct Restart {
    /// The `restart` span: open until the new process is online (or failed to start).
    pub span: Span,
    pub delay: Duration,
    /// Consecutive early deaths so far.
    pub attempt: u32,
}

/// The name of a [`Life`], without its data: what the table of legal moves speaks of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LifeKind {
    Starting,
    Running,
    RecycleQueued,
    Replacing,
    Restarting,
    Stopping,
    Stopped,
    Finished,
    GaveUp,
    HandedOver,
}

impl LifeKind {
    /// Every kind, for tests and tables.
    #[cfg(test)]
    pub(crate) const ALL: [LifeKind; 10] = [
        LifeKind::Starting,
        LifeKind::Running,
        LifeKind::RecycleQueued,
        LifeKind::Replacing,
        LifeKind::Restarting,
        LifeKind::Stopping,
        LifeKind::Stopped,
        LifeKind::Finished,
        LifeKind::GaveUp,
        LifeKind::HandedOver,
    ];

    /// Whether a slot in `self` may move to `to`: the table of the slot's life.
    pub(crate) fn may_become(self, to: LifeKind) -> bool {
        use LifeKind::*;
        // Every live state may be told to stop or to hand over.
        let live = matches!(self, Starting | Running | RecycleQueued | Replacing | Restarting);
        if live && matches!(to, Stopping | HandedOver) {
            return true;
        }
        match (self, to) {
            // The process is started (or taken over); or its start failed and the decision
            // restarts, gives up, or does not restart.
            (Starting, Running | Restarting | GaveUp | Finished) => true,
            // Due for recycling; replaced; the current process died.
            (Running, RecycleQueued | Replacing | Restarting | GaveUp | Finished) => true,
            // The turn came (or the process is no longer due); a reload replaces it anyway;
            // the current process died.
            (RecycleQueued, Running | Replacing | Restarting | GaveUp | Finished) => true,
            // Promoted, or failed: the slot serves on with whichever process is current.
            (Replacing, Running) => true,
            // The delay is over: the new process starts.
            (Restarting, Starting) => true,
            // Another process killed at `kill_timeout`; the last process exited.
            (Stopping, Stopping | Stopped | HandedOver) => true,
            _ => false,
        }
    }
}

impl Life {
    pub(crate) fn kind(&self) -> LifeKind {
        match self {
            Life::Starting => LifeKind::Starting,
            Life::Running => LifeKind::Running,
            Life::RecycleQueued(_) => LifeKind::RecycleQueued,
            Life::Replacing(_) => LifeKind::Replacing,
            Life::Restarting(_) => LifeKind::Restarting,
            Life::Stopping { .. } => LifeKind::Stopping,
            Life::Stopped { .. } => LifeKind::Stopped,
            Life::Finished => LifeKind::Finished,
            Life::GaveUp { .. } => LifeKind::GaveUp,
            Life::HandedOver => LifeKind::HandedOver,
        }
    }

    /// Whether the slot serves (restarting as the policy says): not told to stop, not ended.
    pub(crate) fn is_live(&self) -> bool {
        matches!(
            self,
            Life::Starting | Life::Running | Life::RecycleQueued(_) | Life::Replacing(_) | Life::Restarting(_)
        )
    }

    /// The replacement under way, if there is one.
    pub(crate) fn replacing(&self) -> Option<&Pending> {
        match self {
            Life::Replacing(pending) => Some(pending),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LifeKind::{self, *};

    /// Every legal move of a slot's life; any other is refused.
    const LEGAL: &[(LifeKind, &[LifeKind])] = &[
        (Starting, &[Running, Restarting, GaveUp, Finished, Stopping, HandedOver]),
        (Running, &[RecycleQueued, Replacing, Restarting, GaveUp, Finished, Stopping, HandedOver]),
        (RecycleQueued, &[Running, Replacing, Restarting, GaveUp, Finished, Stopping, HandedOver]),
        (Replacing, &[Running, Stopping, HandedOver]),
        (Restarting, &[Starting, Stopping, HandedOver]),
        (Stopping, &[Stopping, Stopped, HandedOver]),
        (Stopped, &[]),
        (Finished, &[]),
        (GaveUp, &[]),
        (HandedOver, &[]),
    ];

    #[test]
    fn the_table_of_legal_moves_is_the_one_the_slot_follows() {
        for from in LifeKind::ALL {
            let legal = LEGAL.iter().find(|(f, _)| *f == from).map(|(_, to)| *to).unwrap_or_default();
            for to in LifeKind::ALL {
                assert_eq!(from.may_become(to), legal.contains(&to), "{from:?} → {to:?}");
            }
        }
    }

    #[test]
    fn illegal_moves_are_refused() {
        // A replacement does not turn into a restart: it fails (or succeeds) first.
        assert!(!Replacing.may_become(Restarting));
        // A restart does not skip its start.
        assert!(!Restarting.may_become(Running));
        // An ended slot stays ended.
        assert!(!GaveUp.may_become(Starting));
        assert!(!Stopped.may_become(Stopping));
        // A stopping slot restarts nothing.
        assert!(!Stopping.may_become(Restarting));
    }
}
