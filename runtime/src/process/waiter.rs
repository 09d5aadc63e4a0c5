//! The waiter: the task that owns a worker's `Child`, signals it and reports its exit.

use std::time::Duration;

use nix::unistd::Pid;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::event::{ProcessEvent, ProcessEventKind, Reports};
use crate::ExitStatus;

/// A request to the task that owns a worker's `Child`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ProcessCommand {
    /// Send this signal to the process.
    Signal(nix::sys::signal::Signal),
    /// Send this signal to the process's whole group (it leads its own).
    SignalGroup(nix::sys::signal::Signal),
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
    mut child: Child,
    mut commands: mpsc::UnboundedReceiver<ProcessCommand>,
    after: AfterExit,
    reports: Reports,
    generation: u64,
) {
    let pid = child.id().unwrap_or(0);
    let mut commands_open = true;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
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
                None => {
                    // The slot is gone: nobody watches this process any more.
                    commands_open = false;
                    let _ = child.start_kill();
                }
            },
        }
    };
    let status = match status {
        Ok(status) => ExitStatus::from(status),
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
