//! The one door of a slot's [`Life`]: [`SlotState::transition`], systemd's
//! `service_set_state()`. It is the only code that writes the slot's state (the field is
//! private to `state.rs`, whose child this file is): it refuses a move the table of
//! [`LifeKind::may_become`] does not allow, logs every move at debug with the slot, the pid
//! of its current process, from and to, and does what entering the new state implies:
//!
//! | entering     | emits and does                                                      |
//! |--------------|---------------------------------------------------------------------|
//! | `Restarting` | counts the restart, emits `Restarting`, sends `Start` after the delay |
//! | `GaveUp`     | emits `GaveUp`, reports `Ended { GaveUp }` to the cluster            |
//! | `Finished`   | reports `Ended { Finished }` to the cluster                          |
//! | `Stopped`    | reports `Ended { Stopped { killed } }` to the cluster                |
//!
//! What leaving a state implies (a replacement's answer, a restart's span) depends on why it
//! is left; the caller gets the state left behind and settles it.

use crate::api::events::ClusterEvent;
// Named from the crate: this file is `state`'s child (see the module docs).
use crate::slot::life::{Life, LifeKind, Restart};
use crate::slot::msg::{SlotMsg, SlotOutcome, SlotReport};
use crate::slot::state::{Proc, SlotState};

/// A move the slot's life does not allow; the state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("slot state cannot go from {from:?} to {to:?}")]
pub(crate) struct Refused {
    pub from: LifeKind,
    pub to: LifeKind,
}

impl<M, R: Clone + Send + 'static> SlotState<M, R> {
    /// Moves the slot to `to`, if the move is legal; returns the state left behind.
    pub(crate) fn transition(&mut self, to: Life) -> Result<Life, Refused> {
        let (slot, pid) = (self.slot(), self.current().map(Proc::pid));
        let (from, next) = (self.life.kind(), to.kind());
        if !from.may_become(next) {
            tracing::error!(slot, ?pid, ?from, to = ?next, "illegal slot transition refused");
            return Err(Refused { from, to: next });
        }
        tracing::debug!(slot, ?pid, ?from, to = ?next, "slot transition");
        let left = std::mem::replace(&mut self.life, to);
        self.entered();
        Ok(left)
    }

    /// What entering the current state implies.
    fn entered(&mut self) {
        let slot = self.slot();
        let outcome = match &self.life {
            Life::Restarting(Restart { delay, attempt, .. }) => {
                let (delay, attempt) = (*delay, *attempt);
                self.restarts += 1;
                self.args.bus.emit(ClusterEvent::Restarting { slot, delay, attempt });
                if delay.is_zero() {
                    let _ = self.myself.send_message(SlotMsg::Start);
                } else {
                    self.myself.send_after(delay, || SlotMsg::Start);
                }
                return;
            }
            Life::GaveUp { restarts } => {
                let restarts = *restarts;
                self.args.bus.emit(ClusterEvent::GaveUp { slot, restarts });
                SlotOutcome::GaveUp { restarts }
            }
            Life::Finished => SlotOutcome::Finished,
            Life::Stopped { killed } => SlotOutcome::Stopped { killed: killed.clone() },
            Life::Starting
            | Life::Running
            | Life::RecycleQueued(_)
            | Life::Replacing(_)
            | Life::Stopping { .. }
            | Life::HandedOver => return,
        };
        let _ = self.args.cluster.send_message(SlotReport::Ended { slot, outcome });
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The door is the only writer: no other file assigns, swaps or borrows mutably the
    /// slot's `life` (the compiler already keeps other files from the private field; this
    /// keeps `state.rs`, where it is declared, honest too).
    #[test]
    fn no_other_file_writes_the_slot_state() {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        assert!(files.len() > 50, "the crate's sources were found");
        let writes = [".life =", ".life=", "&mut self.life", "&mut st.life", "life: Life::"];
        let offenders: Vec<String> = files
            .iter()
            .filter(|f| !f.ends_with("slot/state/transition.rs"))
            .filter_map(|f| {
                let text = std::fs::read_to_string(f).ok()?;
                let hits: Vec<&str> = writes.iter().copied().filter(|w| text.contains(w)).collect();
                // The one initial value, where the state is built.
                let allowed = f.ends_with("slot/state.rs") && hits == ["life: Life::"];
                (!hits.is_empty() && !allowed).then(|| format!("{}: {hits:?}", f.display()))
            })
            .collect();
        assert!(offenders.is_empty(), "the slot's state is written outside slot/state/transition.rs: {offenders:?}");
    }
}
