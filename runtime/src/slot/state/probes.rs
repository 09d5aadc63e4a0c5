//! What a slot knows of one process's health probes (`slot/probe.rs` acts on them).

use std::time::Instant;

use tokio_util::task::AbortOnDropHandle;

use crate::api::status::LastProbe;
use crate::config::probe::Check;
use crate::process::probe::ProbeResult;

/// A process's probes: the task making them, and what they found.
#[derive(Default)]
pub(crate) struct ProbeBook {
    /// The task probing the process (aborted when dropped: a process that is gone, condemned
    /// or ready is not probed by it any more).
    task: Option<AbortOnDropHandle<()>>,
    /// Its ready check passed.
    pub ready_passed: bool,
    /// Liveness failures in a row.
    pub failures: u32,
    /// The last result, and when it came.
    last: Option<(Instant, Check, ProbeResult)>,
}

impl ProbeBook {
    /// The book of a process that is ready already (taken over from the previous image).
    pub(crate) fn passed() -> Self {
        ProbeBook { ready_passed: true, ..ProbeBook::default() }
    }

    /// Whether a task probes the process.
    pub(crate) fn probing(&self) -> bool {
        self.task.is_some()
    }

    /// Probes the process with `task` (the one before, if any, is aborted).
    pub(crate) fn start(&mut self, task: AbortOnDropHandle<()>) {
        self.task = Some(task);
    }

    /// Keeps `result`, a probe of `check`, as the last one.
    pub(crate) fn record(&mut self, check: Check, result: ProbeResult) {
        self.last = Some((Instant::now(), check, result));
    }

    /// Stops probing (the process is ready, condemned or draining).
    pub(crate) fn stop(&mut self) {
        self.task = None;
    }

    /// The last probe, as the status shows it.
    pub(crate) fn last(&self) -> Option<LastProbe> {
        let (at, check, result) = self.last.as_ref()?;
        Some(LastProbe {
            check: check.clone(),
            passed: result.outcome.is_ok(),
            age: at.elapsed(),
            took: result.took,
            failures: self.failures,
            error: result.outcome.as_ref().err().map(ToString::to_string),
        })
    }
}
