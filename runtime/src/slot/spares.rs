//! Warm spares: which slots hold a spare (started, ready, idle) and the swap that puts one
//! in a leaving worker's place.
//!
//! A cluster with `spares = N` runs `workers + N` slots; N of them are **standby**: their
//! process starts and becomes ready but is not accepting (the acceptor dispatches nothing to
//! it, a reuse-port group steers its socket out). When an active slot's worker leaves (dies,
//! is recycled, fails its probe), the slot calls [`Spares::claim`]: a ready standby slot
//! becomes active and is told to take connections ([`SlotMsg::Activate`]); the leaving slot
//! becomes standby, so the worker it starts next (a restart, a recycle's replacement) is the
//! new spare. The book is shared by the cluster and its slots, so the swap takes one lock
//! and one message, not a round trip through the cluster actor.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ractor::ActorRef;

use super::msg::SlotMsg;

/// The cluster's book of spares (see the module docs).
#[derive(Default)]
pub(crate) struct Spares {
    book: Mutex<Vec<Entry>>,
}

#[derive(Default)]
struct Entry {
    /// The slot holds a spare.
    standby: bool,
    /// Its current process's flag "connections may be dispatched to it", while that process
    /// is ready: the claim sets it, so the acceptor dispatches to the spare at once.
    ready: Option<Arc<AtomicBool>>,
    /// Being removed (a scale-down): it neither gives nor takes a spare.
    removing: bool,
    actor: Option<ActorRef<SlotMsg>>,
}

impl Spares {
    fn with<T>(&self, f: impl FnOnce(&mut Vec<Entry>) -> T) -> T {
        // Every update writes whole fields of one entry, so a poisoned lock is still consistent.
        f(&mut self.book.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A new slot, standby or not, before its supervisor starts (so its first process already
    /// knows which it is).
    pub(crate) fn add(&self, slot: usize, standby: bool) {
        self.with(|book| {
            if book.len() <= slot {
                book.resize_with(slot + 1, Entry::default);
            }
            book[slot] = Entry { standby, ..Entry::default() };
        });
    }

    /// The supervisor of `slot`, once spawned: a spare is activated through it.
    pub(crate) fn set_actor(&self, slot: usize, actor: ActorRef<SlotMsg>) {
        self.with(|book| {
            if let Some(entry) = book.get_mut(slot) {
                entry.actor = Some(actor);
            }
        });
    }

    /// `slot` is being removed: it takes no spare, and is no spare.
    pub(crate) fn remove(&self, slot: usize) {
        self.with(|book| {
            if let Some(entry) = book.get_mut(slot) {
                entry.removing = true;
                entry.standby = false;
            }
        });
    }

    /// Forgets slots from `len` on (removed ones that have ended).
    pub(crate) fn truncate(&self, len: usize) {
        self.with(|book| book.truncate(len));
    }

    /// Whether `slot` holds a spare now.
    pub(crate) fn is_standby(&self, slot: usize) -> bool {
        self.with(|book| book.get(slot).is_some_and(|e| e.standby))
    }

    /// `slot`'s current process is ready (`Some`: its accepting flag; a standby slot then
    /// holds a ready spare), or not (`None`).
    pub(crate) fn set_ready(&self, slot: usize, ready: Option<Arc<AtomicBool>>) {
        self.with(|book| {
            if let Some(entry) = book.get_mut(slot) {
                entry.ready = ready;
            }
        });
    }

    /// `slot`'s worker leaves: a ready spare (the lowest slot that holds one) becomes active
    /// and `slot` becomes standby. Returns the spare's slot and supervisor, to be told
    /// [`SlotMsg::Activate`]; `None` when `slot` is a spare itself, is being removed, or no
    /// spare is ready.
    pub(crate) fn claim(&self, slot: usize) -> Option<(usize, ActorRef<SlotMsg>)> {
        self.with(|book| {
            let me = book.get(slot)?;
            if me.standby || me.removing {
                return None;
            }
            let (spare, entry) = book
                .iter_mut()
                .enumerate()
                .find(|(i, e)| *i != slot && e.standby && e.ready.is_some() && !e.removing && e.actor.is_some())?;
            let actor = entry.actor.clone()?;
            entry.standby = false;
            // Dispatched to from now on; its slot steers its sockets in when it is told.
            if let Some(accepting) = &entry.ready {
                accepting.store(true, Ordering::Release);
            }
            book[slot].standby = true;
            Some((spare, actor))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Spares;

    #[test]
    fn a_spare_is_claimed_only_when_ready_and_the_slots_swap() {
        let spares = Spares::default();
        spares.add(0, false);
        spares.add(1, false);
        spares.add(2, true);
        assert!(spares.claim(0).is_none(), "no supervisor registered, nothing to activate");
        assert!(!spares.is_standby(0));
        assert!(spares.is_standby(2));
        spares.remove(1);
        assert!(spares.claim(1).is_none(), "a slot being removed takes no spare");
        assert!(!spares.is_standby(1));
    }
}
