//! The primary's side of a worker's death notice
//! ([`corral_protocol::death_notice`]): one small thread per online corral worker, blocked
//! until the worker's event-loop thread starts to exit, that then tells the slot
//! ([`ProcessEventKind::Dying`]) — about 0.05 ms after a `SIGKILL`, where the exit itself
//! (pidfd, EOF) is seen 0.4–1 ms later, once the kernel has torn the process down.
//!
//! A thread, because a futex is no fd the event loop could poll. It lives as long as the
//! worker, blocked in the kernel (no CPU), with a small stack; it ends with the worker, or
//! with this image when the primary execs an upgrade (the next image sees those workers'
//! deaths at their exits).

use corral_protocol::death_notice::{DeathNotice, Notice};

use super::event::{ProcessEvent, ProcessEventKind, Reports};

/// The watcher thread's stack: it calls one blocking libc function and sends one message.
const STACK_BYTES: usize = 64 * 1024;

/// A death notice for a worker of `slot` about to be started; `None` (with a warning) when
/// one cannot be made: the worker's death is then seen at its exit, as for any process.
pub(crate) fn make(slot: usize) -> Option<DeathNotice> {
    DeathNotice::new()
        .inspect_err(
            |e| tracing::warn!(slot, error = %e, "no death notice for this worker; its death is seen at its exit"),
        )
        .ok()
}

/// Watches `notice`, which the worker `pid` (slot `slot`, generation `generation`) holds, on
/// a thread of its own; reports [`ProcessEventKind::Dying`] when the worker's thread exits.
pub(crate) fn watch(notice: DeathNotice, reports: Reports, slot: usize, generation: u64, pid: u32) {
    let spawned = std::thread::Builder::new().name("corral-notice".into()).stack_size(STACK_BYTES).spawn(move || {
        match notice.wait() {
            Notice::OwnerDied => {
                // The slot may be gone already (its cluster stopped): nobody to tell.
                let _ = reports.send_message(ProcessEvent { generation, kind: ProcessEventKind::Dying });
                // This thread's own end (the page's unmapping, its exit) yields to the event
                // loop it just woke, instead of running first on their shared core.
                // SAFETY: 0 names the calling thread.
                unsafe { yield_to_the_living(0) };
                tracing::debug!(slot, pid, "death notice: the worker is dying");
            }
            Notice::NotHeld => tracing::debug!(slot, pid, "the worker does not hold its death notice"),
            Notice::Failed(code) => {
                let error = std::io::Error::from_raw_os_error(code);
                tracing::warn!(slot, pid, %error, "watching the worker's death notice failed");
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(slot, pid, error = %e, "cannot watch the worker's death notice; its death is seen at its exit");
    }
}

/// Puts thread `pid` (0: the calling one) under `SCHED_IDLE`: it runs only when no other
/// thread wants the CPU. For a worker that died unasked (the waiter does it, on the slot's
/// word): the kernel frees its memory (0.4–1 ms of CPU for a worker, more for a big one)
/// after, not before, the spare that takes its place has answered (on 2 vCPUs, perf showed
/// the spare's first answer waiting behind that teardown on their shared core). For this
/// thread: its own end does not delay the event loop it has just woken. Best effort: a
/// failure (a worker of another user, without `CAP_SYS_NICE`) changes nothing else.
///
/// # Safety
///
/// `pid` is 0 or a child of the caller that is not reaped (no other process can have that
/// pid): the waiter, which alone reaps it, calls this between two polls of its exit.
pub(super) unsafe fn yield_to_the_living(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads `param` (a live local) and takes integers; the caller
    // vouches that `pid` names the process meant (see above).
    if unsafe { libc::sched_setscheduler(pid, libc::SCHED_IDLE, &param) } < 0 {
        tracing::debug!(pid, error = %std::io::Error::last_os_error(), "cannot lower the dying worker's priority");
    }
}
