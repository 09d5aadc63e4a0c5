//! The waiter: the task that owns a worker's `Child`, signals it and reports its exit.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use nix::unistd::Pid;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::event::{ProcessEvent, ProcessEventKind, Reports};
use super::handover::{Giver, Part};
use crate::supervision::exit::ExitStatus;
use crate::sys::children::Known;

/// A request to the task that owns a worker's `Child`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ProcessCommand {
    /// Send this signal to the process.
    Signal(nix::sys::signal::Signal),
    /// Send this signal to the process's whole group (it leads its own).
    SignalGroup(nix::sys::signal::Signal),
    /// Diagnose what the process is doing ([`ProcessEventKind::Hung`]), then SIGKILL it (its
    /// whole group if `group`).
    DiagnoseThenKill {
        /// Kill the process's group, not only the process.
        group: bool,
    },
    /// Diagnose what the process is doing ([`ProcessEventKind::Hung`]) and leave it running
    /// (it is drained next: a failed liveness probe).
    Diagnose,
    /// It is dying unasked: put it under `SCHED_IDLE`, so that its teardown yields to the
    /// processes serving in its place.
    YieldToTheLiving,
}

/// What the waiter does once the process has exited.
pub(crate) struct AfterExit {
    /// Wait (a little) for the frame reader, so that every message comes before the exit.
    pub reader_done: Option<oneshot::Receiver<()>>,
    /// SIGKILL what is left of the process's group: its children die with it.
    pub kill_group: bool,
    /// Cancelled once the process has exited (ends a foreign worker's notify reader).
    pub exited: CancellationToken,
}

/// How long the exit report waits for the reader to finish: a worker that forked a child
/// holding its socket keeps the reader open.
const READER_GRACE: Duration = Duration::from_secs(1);

/// Owns the child: waits for it to exit, signals it on request (so that no signal can reach a
/// reaped pid that was reused), and reports the exit once the reader has finished, so that
/// every message the worker sent is delivered before its exit event.
pub(crate) async fn run_waiter(
    mut child: Waitee,
    mut commands: mpsc::UnboundedReceiver<ProcessCommand>,
    after: AfterExit,
    reports: Reports,
    generation: u64,
    giver: Giver,
    mut hang: Option<tokio::net::unix::pipe::Receiver>,
) {
    let pid = child.id().unwrap_or(0);
    let mut commands_open = true;
    let mut diagnosed = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            () = giver.token.cancelled() => {
                // Handed over: neither reaped nor killed; the next image waits for it.
                giver.give(Part::Waiter { child: child.into_child() });
                return;
            }
            cmd = commands.recv(), if commands_open => match cmd {
                Some(ProcessCommand::Signal(sig)) => {
                    if let Some(pid) = child.id() {
                        let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), sig);
                    }
                }
                Some(ProcessCommand::SignalGroup(sig)) => {
                    if let Some(pid) = child.id() {
                        let _ = nix::sys::signal::killpg(Pid::from_raw(pid as i32), sig);
                    }
                }
                Some(ProcessCommand::YieldToTheLiving) => {
                    if let Some(pid) = child.id() {
                        // SAFETY: this task alone reaps the child, and has not yet (`id` is
                        // `Some` until it has): the pid is still that process's.
                        unsafe { super::notice::yield_to_the_living(pid) };
                    }
                }
                Some(ProcessCommand::Diagnose) => {
                    if let Some(pid) = child.id() && !diagnosed {
                        // Not reaped while this runs (this task is the reaper): bounded by
                        // hang::BUDGET. Commands sent meanwhile (the drain) wait for it.
                        diagnosed = true;
                        let report = crate::sys::hang::diagnose(pid, hang.as_mut()).await;
                        let kind = ProcessEventKind::Hung(Box::new(report));
                        let _ = reports.send_message(ProcessEvent { generation, kind });
                    }
                }
                Some(ProcessCommand::DiagnoseThenKill { group }) => {
                    if let Some(pid) = child.id() {
                        // Not reaped while this runs (this task is the reaper), so the pid
                        // stays ours; bounded by hang::BUDGET.
                        if !diagnosed {
                            diagnosed = true;
                            let report = crate::sys::hang::diagnose(pid, hang.as_mut()).await;
                            let kind = ProcessEventKind::Hung(Box::new(report));
                            let _ = reports.send_message(ProcessEvent { generation, kind });
                        }
                        let target = Pid::from_raw(pid as i32);
                        let kill = nix::sys::signal::Signal::SIGKILL;
                        let _ = if group { nix::sys::signal::killpg(target, kill) } else { nix::sys::signal::kill(target, kill) };
                    }
                }
                None => {
                    // The slot is gone: nobody watches this process any more.
                    commands_open = false;
                    child.start_kill();
                }
            },
        }
    };
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            tracing::error!(error = %e, "waiting for a worker process failed");
            ExitStatus { code: None, signal: None }
        }
    };
    if after.kill_group && pid > 0 {
        // The group outlives its leader while a child of it lives; its id is not reused
        // until the last member is gone, so this reaches only the worker's own tree.
        let _ = nix::sys::signal::killpg(Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    }
    after.exited.cancel();
    if let Some(reader_done) = after.reader_done {
        let _ = tokio::time::timeout(READER_GRACE, reader_done).await;
    }
    let _ = reports.send_message(ProcessEvent { generation, kind: ProcessEventKind::Exited(status) });
}

/// The process a waiter waits for: one this image forked, or one it took over from the
/// previous image (its parent all the same: the pid did not change), watched by a pidfd.
///
/// Either holds the child's place in the book of known children ([`Known`]): the reaper
/// leaves it alone until the waitee is dropped.
pub(crate) enum Waitee {
    Child(Child, Known),
    Adopted { pid: u32, pidfd: AsyncFd<OwnedFd>, reaped: bool, known: Known },
}

impl Waitee {
    /// Takes over `pid`, a child of this process.
    ///
    /// # Errors
    ///
    /// `pidfd_open` fails (`ESRCH`: it was reaped already).
    pub(crate) fn adopt(pid: u32) -> io::Result<Self> {
        crate::sys::children::register(pid);
        let known = Known::new(pid);
        let raw_pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is
        // passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw_pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        // SAFETY: the syscall just returned this fd (close-on-exec, as pidfds are); we own it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: `fd` is an open OwnedFd moved into the AsyncFd, which keeps it open and
        // unchanged until it is dropped.
        let pidfd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        Ok(Waitee::Adopted { pid, pidfd, reaped: false, known })
    }

    pub(crate) fn id(&self) -> Option<u32> {
        match self {
            Waitee::Child(child, _) => child.id(),
            Waitee::Adopted { reaped: true, .. } => None,
            Waitee::Adopted { pid, .. } => Some(*pid),
        }
    }

    pub(crate) fn start_kill(&mut self) {
        match self {
            Waitee::Child(child, _) => {
                let _ = child.start_kill();
            }
            Waitee::Adopted { pid, reaped: false, .. } => {
                let _ = nix::sys::signal::kill(Pid::from_raw(*pid as i32), nix::sys::signal::Signal::SIGKILL);
            }
            Waitee::Adopted { .. } => {}
        }
    }

    /// The child, for the primary's next image (its pid stays in this image's book).
    fn into_child(self) -> Option<Child> {
        match self {
            Waitee::Child(child, known) => {
                known.keep();
                Some(child)
            }
            Waitee::Adopted { known, .. } => {
                known.keep();
                None
            }
        }
    }

    /// Waits for the exit and reaps the process.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        match self {
            Waitee::Child(child, _) => child.wait().await.map(ExitStatus::from),
            Waitee::Adopted { pid, pidfd, reaped, .. } => loop {
                if *reaped {
                    return std::future::pending().await;
                }
                let mut guard = pidfd.readable().await?;
                match waitpid(Pid::from_raw(*pid as i32), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => guard.clear_ready(),
                    Ok(WaitStatus::Exited(_, code)) => {
                        *reaped = true;
                        return Ok(ExitStatus { code: Some(code), signal: None });
                    }
                    Ok(WaitStatus::Signaled(_, signal, _)) => {
                        *reaped = true;
                        return Ok(ExitStatus { code: None, signal: Some(signal as i32) });
                    }
                    Ok(_) => guard.clear_ready(),
                    Err(e) => {
                        *reaped = true;
                        return Err(io::Error::from(e));
                    }
                }
            },
        }
    }
}
