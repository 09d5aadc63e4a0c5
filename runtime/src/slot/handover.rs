//! What a slot hands over to the primary's next image in an upgrade, and what a slot of the
//! next image takes over (see `upgrade.rs`).

use std::time::Duration;

use crate::process::{AdoptSpec, HandedProcess};

/// What a slot hands over.
pub(crate) struct HandedSlot {
    pub slot: usize,
    pub generation: u64,
    pub restarts: u64,
    /// Its ready worker: the process, its generation, its uptime.
    pub worker: Option<(HandedProcess, u64, Duration)>,
    /// Processes it killed instead (not ready, or that could not stop at a boundary).
    pub reap: Vec<u32>,
}

/// What a slot of the new image takes over.
pub(crate) struct Adoption {
    pub generation: u64,
    pub restarts: u64,
    pub worker: Option<AdoptedWorker>,
}

/// A worker to take over.
pub(crate) struct AdoptedWorker {
    pub spec: AdoptSpec,
    pub uptime: Duration,
    /// The addresses it asked for and its registration ids (round robin, least connections).
    pub listens: Vec<(String, u64)>,
}

impl std::fmt::Debug for HandedSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandedSlot")
            .field("slot", &self.slot)
            .field("generation", &self.generation)
            .field("pid", &self.worker.as_ref().map(|(p, _, _)| p.pid))
            .field("reap", &self.reap)
            .finish()
    }
}
