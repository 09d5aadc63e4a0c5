//! The exec itself: replacing this process's image, same pid, with the kept fds open.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

use super::UPGRADE_FD_ENV;
use super::state::Kept;

/// The primary's signals: blocked across the exec, so that one sent meanwhile waits, pending,
/// for the new image's handlers instead of meeting the default action (or being taken by
/// this image's handlers and lost with it).
fn primary_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
    ] {
        set.add(signal);
    }
    set
}

/// Blocks the primary's signals in the calling thread.
pub(crate) fn block_signals() {
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&primary_signals()), None);
}

/// Unblocks them in the calling thread: the new image, once its handlers are installed
/// (signals sent during the exec are delivered now).
pub(crate) fn unblock_signals() {
    let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&primary_signals()), None);
}

/// Replaces this process's image with `path` (the same arguments, the same environment but
/// for socket activation's variables, which described fds now in the block, and
/// [`UPGRADE_FD_ENV`] naming `block`). Returns only if both `path` and, as a fallback, this
/// image (`/proc/self/exe`) could not be executed; the error is `path`'s.
///
/// Must run on the thread that forked the workers (the spawner thread).
pub(crate) fn exec(path: &Path, block: OwnedFd, mut kept: Kept) -> io::Error {
    block_signals();
    let block_raw = block.as_raw_fd();
    kept.keep(block);
    let released = match kept.release_for_exec() {
        Ok(fds) => fds,
        Err(e) => return e,
    };
    // The arguments the primary was started with, not its title.
    let argv: Vec<CString> =
        crate::sys::title::original_args().iter().filter_map(|a| CString::new(a.as_bytes()).ok()).collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            !matches!(k.as_ref(), "LISTEN_FDS" | "LISTEN_FDNAMES" | "LISTEN_PID" | UPGRADE_FD_ENV)
        })
        .filter_map(|(k, v)| {
            let mut pair = k;
            pair.push("=");
            pair.push(v);
            CString::new(pair.as_bytes()).ok()
        })
        .collect();
    env.extend(CString::new(format!("{UPGRADE_FD_ENV}={block_raw}")).ok());
    let first = match CString::new(path.as_os_str().as_bytes()) {
        Ok(program) => nix::unistd::execve(&program, &argv, &env).err().map(io::Error::from),
        Err(e) => Some(io::Error::new(io::ErrorKind::InvalidInput, e)),
    };
    let error = first.unwrap_or_else(|| io::Error::other("execve returned"));
    tracing::error!(path = %path.display(), %error, "cannot exec the new executable; re-executing the running one");
    let own = PathBuf::from("/proc/self/exe");
    if let Ok(program) = CString::new(own.as_os_str().as_bytes()) {
        let _ = nix::unistd::execve(&program, &argv, &env);
    }
    // Neither image runs: the fds stay open (they are the workers' lifelines) and the caller
    // decides.
    let _ = released;
    error
}
