//! Where each slot's outgoing frames go: the writer queue of the slot's current process.

use std::sync::{Arc, PoisonError, RwLock};

use corral_protocol::{Outgoing, PendingCalls};
use tokio::sync::mpsc;

/// The writer queue of a slot's current process, and the calls in flight to it.
pub(crate) struct Route<M> {
    pub generation: u64,
    pub tx: mpsc::Sender<Outgoing<M>>,
    /// Calls to this process awaiting its reply (failed by its reader when it ends).
    pub calls: Arc<PendingCalls>,
}

impl<M> Clone for Route<M> {
    fn clone(&self) -> Self {
        Route { generation: self.generation, tx: self.tx.clone(), calls: self.calls.clone() }
    }
}

/// One optional route per slot, shared by the supervisors (which set and clear them) and the
/// cluster handles (which send through them without a hop through any actor).
pub(crate) struct Routes<M> {
    slots: RwLock<Vec<Option<Route<M>>>>,
}

impl<M> Routes<M> {
    pub(crate) fn new(workers: usize) -> Self {
        Routes { slots: RwLock::new((0..workers).map(|_| None).collect()) }
    }

    // Every writer replaces or clears one whole entry, so a lock poisoned by a panic
    // elsewhere still guards a consistent vector.
    fn read<T>(&self, f: impl FnOnce(&[Option<Route<M>>]) -> T) -> T {
        f(&self.slots.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write<T>(&self, f: impl FnOnce(&mut Vec<Option<Route<M>>>) -> T) -> T {
        f(&mut self.slots.write().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn len(&self) -> usize {
        self.read(|s| s.len())
    }

    pub(crate) fn get(&self, slot: usize) -> Option<Option<Route<M>>> {
        self.read(|s| s.get(slot).cloned())
    }

    pub(crate) fn all(&self) -> Vec<(usize, Route<M>)> {
        self.read(|s| s.iter().enumerate().filter_map(|(i, r)| r.clone().map(|r| (i, r))).collect())
    }

    /// Grows (new slots start without a route) or shrinks to `workers` slots.
    pub(crate) fn resize(&self, workers: usize) {
        self.write(|s| s.resize_with(workers, || None));
    }

    pub(crate) fn set(&self, slot: usize, route: Route<M>) {
        self.write(|s| {
            if let Some(entry) = s.get_mut(slot) {
                *entry = Some(route);
            }
        });
    }

    /// Clears the slot's route if it still belongs to `generation`.
    pub(crate) fn clear(&self, slot: usize, generation: u64) {
        self.write(|s| {
            if let Some(entry) = s.get_mut(slot)
                && entry.as_ref().is_some_and(|r| r.generation == generation)
            {
                *entry = None;
            }
        });
    }
}
