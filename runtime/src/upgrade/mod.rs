//! Upgrading the primary in place: the same pid execs the executable now on disk, keeping
//! every listening socket (never closed, never re-bound: the accept queues stay) and every
//! worker, which the new image takes over and then replaces with a generation of its own.
//!
//! HAProxy's master-worker way, for the pid's sake (systemd's `MAINPID`, pid files, parents
//! need no update), with nginx's and gunicorn's rule that the new code starts fresh workers:
//!
//! 1. **Preflight** ([`preflight`]): the new executable runs in check mode
//!    (`CORRAL_UPGRADE_CHECK`): it loads and validates its configuration, says so on a pipe,
//!    and exits. A missing file, one that cannot run, crashes, refuses its configuration or
//!    does not answer aborts the upgrade; nothing was touched.
//! 2. **Handover** (`cluster/upgrade.rs`): the acceptors hand out their backlog and stop
//!    (new connections wait in the kernel's backlog); each slot's tasks stop at a frame
//!    boundary and give back their fds ([`state`]); a postcard block describing them is
//!    written to a memfd.
//! 3. **Exec** ([`exec`]): on the thread that forked the workers (so their
//!    `PR_SET_PDEATHSIG` does not fire), with the primary's signals blocked (a SIGTERM during
//!    the exec waits, pending, for the new image's handlers), close-on-exec cleared on the
//!    kept fds, `CORRAL_UPGRADE_FD` naming the block.
//! 4. **Take over** ([`inherited`]): the new image adopts the listeners and the workers as
//!    they were (ready, serving), then runs a rolling reload: a new generation, each new
//!    worker ready before its old one drains. If the new workers do not become ready, the
//!    reload aborts and the old workers go on serving (the worker generation rolls back).

pub(crate) mod error;
pub(crate) mod exec;
pub(crate) mod preflight;
pub(crate) mod state;

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, OnceLock, PoisonError};

/// Names the memfd holding the handover block, in the new image's environment.
pub const UPGRADE_FD_ENV: &str = "CORRAL_UPGRADE_FD";

/// Set (to the number of a pipe's write end) when the executable is run as an upgrade's
/// preflight check.
pub const UPGRADE_CHECK_ENV: &str = "CORRAL_UPGRADE_CHECK";

/// What a primary in check mode writes to the pipe once its configuration is valid.
pub(crate) const CHECK_ANSWER: &str = "corral-upgrade-check ok v1";

/// Variables for the primary alone, never for its workers.
pub(crate) const PRIMARY_ONLY_ENV: [&str; 2] = [UPGRADE_FD_ENV, UPGRADE_CHECK_ENV];

/// The handover block this image was started with, taken by the first cluster that asks
/// (once per process).
pub(crate) fn inherited() -> Option<state::Handover> {
    static INHERITED: OnceLock<Mutex<Option<state::Handover>>> = OnceLock::new();
    let cell = INHERITED.get_or_init(|| {
        let raw = std::env::var(UPGRADE_FD_ENV).ok().and_then(|v| v.parse::<RawFd>().ok());
        Mutex::new(raw.and_then(read_block))
    });
    // Taken whole, so a poisoned lock holds a consistent Option still.
    cell.lock().unwrap_or_else(PoisonError::into_inner).take()
}

fn read_block(raw: RawFd) -> Option<state::Handover> {
    let mut fds = state::Fds::default();
    let block = match fds.take(raw) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!(fd = raw, error = %e, "{UPGRADE_FD_ENV} names no open fd; starting afresh");
            return None;
        }
    };
    match state::read(block) {
        Ok(handover) => Some(handover),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the upgrade's handover block; starting afresh");
            None
        }
    }
}

/// In check mode (an upgrade's preflight), answers the waiting primary: this executable is
/// a corral primary whose configuration is valid. The caller exits right after.
///
/// Returns `false` when this process is not in check mode.
pub(crate) fn answer_check() -> bool {
    let Some(raw) = std::env::var(UPGRADE_CHECK_ENV).ok().and_then(|v| v.parse::<RawFd>().ok()) else {
        return false;
    };
    // SAFETY: F_GETFD only reads the fd's flags; it fails for an fd that is not open.
    if raw < 0 || unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return false;
    }
    // SAFETY: the upgrading primary opened this pipe's write end for us and named it in the
    // environment; nothing else in this process uses it.
    let mut pipe = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    let _ = writeln!(pipe, "{CHECK_ANSWER}");
    true
}
