//! An exec check: `sh -c COMMAND`, passed by exit code 0.
//!
//! The command runs in a process group of its own, with `CORRAL_SLOT`, `CORRAL_PID` and
//! `CORRAL_LISTEN` (the address of the listener probes go through) in its environment; at
//! the timeout, or when the probe is abandoned, the whole group is killed. Its output is not
//! shown: the last line of its stderr goes into the error.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;

use super::ProbeTarget;
use crate::api::error::ProbeError;
use crate::supervision::exit::ExitStatus;
use crate::sys::children::{Known, spawn_known};

/// The most of a check's stderr kept for its error.
const MAX_STDERR: u64 = 4096;

/// How long a killed check's group is waited for.
const REAP_PATIENCE: Duration = Duration::from_secs(1);

/// Kills the check's process group when dropped (a timeout, or the probe abandoned).
struct Group(Option<Pid>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = killpg(pid, Signal::SIGKILL);
        }
    }
}

pub(super) async fn check(target: &ProbeTarget, command: &str, timeout: Duration) -> Result<(), ProbeError> {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .env("CORRAL_SLOT", target.slot.to_string())
        .env("CORRAL_PID", target.pid.to_string())
        .env("CORRAL_LISTEN", target.listeners.address_of(target.listener.as_deref()).unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = spawn_known(|| cmd.spawn()).map_err(ProbeError::Spawn)?;
    let pid = child.id().unwrap_or(0);
    // Its exit status is ours: the reaper leaves it alone until this is dropped.
    let _known = Known::new(pid);
    let mut group = Group(i32::try_from(pid).ok().filter(|p| *p > 0).map(Pid::from_raw));
    let mut stderr = Vec::new();
    let reading = async {
        if let Some(err) = child.stderr.take() {
            let _ = err.take(MAX_STDERR).read_to_end(&mut stderr).await;
        }
        child.wait().await
    };
    match tokio::time::timeout(timeout, reading).await {
        Ok(Ok(status)) => {
            // It exited: what is left of its group goes with it.
            if let Some(pid) = group.0.take() {
                let _ = killpg(pid, Signal::SIGKILL);
            }
            let status = ExitStatus::from(status);
            if status.code == Some(0) {
                return Ok(());
            }
            let last = String::from_utf8_lossy(&stderr).lines().last().unwrap_or_default().trim().to_string();
            Err(ProbeError::Exec { status, stderr: last })
        }
        Ok(Err(e)) => Err(ProbeError::Spawn(e)),
        Err(_) => {
            drop(group);
            let _ = tokio::time::timeout(REAP_PATIENCE, child.wait()).await;
            Err(ProbeError::Timeout(timeout))
        }
    }
}
