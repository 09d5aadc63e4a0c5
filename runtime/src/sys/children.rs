//! The children corral forked itself, so that the reaper (`process/reaper.rs`) never takes a
//! worker's exit status from the task that waits for it.
//!
//! A pid is put in the book while the lock is held across the fork ([`spawn_known`]), so the
//! reaper, which looks under the same lock, cannot see an unknown child that is in fact a
//! worker whose fork has not returned yet. It leaves the book when the one who waits for it
//! is done with it ([`Known`] dropped).

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Pids of the children whose exit status belongs to someone in this process.
static KNOWN: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

fn book() -> MutexGuard<'static, Option<HashSet<u32>>> {
    // A set of pids stays consistent whatever panicked while holding it.
    KNOWN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `fork` (which starts a child) with the book locked, and puts the child in it.
///
/// # Errors
///
/// What `fork` returns.
pub(crate) fn spawn_known(
    fork: impl FnOnce() -> std::io::Result<tokio::process::Child>,
) -> std::io::Result<tokio::process::Child> {
    let mut known = book();
    let child = fork()?;
    if let Some(pid) = child.id() {
        known.get_or_insert_with(HashSet::new).insert(pid);
    }
    Ok(child)
}

/// Puts `pid` (a child this process already has: a worker handed over by the previous image)
/// in the book.
pub(crate) fn register(pid: u32) {
    book().get_or_insert_with(HashSet::new).insert(pid);
}

/// Whether the book can be read now (`None` while a fork holds it: look again soon), and if
/// so, the children in `pids` that are not in it.
pub(crate) fn unknown_among(pids: &[u32]) -> Option<Vec<u32>> {
    let known = match KNOWN.try_lock() {
        Ok(known) => known,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return None,
    };
    Some(pids.iter().copied().filter(|pid| !known.as_ref().is_some_and(|k| k.contains(pid))).collect())
}

/// A child's place in the book, given up on drop (once its exit status has been taken, or
/// nobody waits for it any more).
#[derive(Debug)]
pub(crate) struct Known(u32);

impl Known {
    /// The place of `pid`, which [`spawn_known`] or [`register`] put in the book.
    pub(crate) fn new(pid: u32) -> Self {
        Known(pid)
    }

    /// Keeps the pid in the book for good: the process goes to the primary's next image,
    /// whose own book has it from the handover, and this image must not reap it meanwhile.
    pub(crate) fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Known {
    fn drop(&mut self) {
        if let Some(known) = book().as_mut() {
            known.remove(&self.0);
        }
    }
}
