//! Upgrading the primary in place (see [`crate::upgrade`]): the old image's half (preflight,
//! handover, exec) and the new image's (take over, replace the workers).

use std::os::fd::OwnedFd;
use std::time::Duration;

use ractor::RpcReplyPort;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::msg::{ClusterSignal, Signal};
use super::state::{ClusterState, UpgradeRun};
use crate::api::error::UpgradeError;
use crate::api::events::ClusterEvent;
use crate::api::reports::ReloadReport;
use crate::operator::{control, systemd};
use crate::process::on_spawner_thread_with;
use crate::slot::{HandedSlot, SlotMsg};
use crate::upgrade::error::PreflightError;
use crate::upgrade::state::{ChannelRecord, ControlRecord, Handover, Kept, PipeRecord, SlotRecord, WorkerRecord};
use crate::upgrade::{exec, preflight, state};

/// How long a slot may take to answer a handover question.
const SLOT_PATIENCE: Duration = Duration::from_secs(5);

impl<M, R> ClusterState<M, R>
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// `Upgrade`: refused while stopping, reloading, upgrading, or while a slot is not ready;
    /// else the preflight starts (off the actor).
    pub(crate) async fn start_upgrade(&mut self, reply: Option<RpcReplyPort<UpgradeError>>) {
        let refused = if self.stopping {
            Some(UpgradeError::Stopping)
        } else if self.upgrade.is_some() || self.upgrade_reload {
            Some(UpgradeError::AlreadyRunning)
        } else if self.reload.is_some() {
            Some(UpgradeError::Reloading)
        } else {
            self.check_slots().await.err()
        };
        if let Some(error) = refused {
            tracing::warn!(%error, "upgrade refused");
            if let Some(reply) = reply {
                let _ = reply.send(error);
            }
            return;
        }
        let path = preflight::target();
        tracing::info!(path = %path.display(), "upgrade: checking the new executable");
        systemd::reloading();
        self.upgrade = Some(UpgradeRun { reply, path: path.clone() });
        let myself = self.myself.clone();
        tokio::spawn(async move {
            let result = preflight::check(&path, preflight::PATIENCE).await;
            let _ = myself.send_message(ClusterSignal(Signal::PreflightDone(result)));
        });
    }

    /// Every slot must be ready and idle (or waiting for a restart).
    async fn check_slots(&self) -> Result<(), UpgradeError> {
        for sup in self.supervisors() {
            match ractor::call_t!(sup, SlotMsg::CanHandOver, SLOT_PATIENCE.as_millis() as u64) {
                Ok(answer) => answer?,
                Err(_) => return Err(UpgradeError::Stopping),
            }
        }
        Ok(())
    }

    /// `PreflightDone`: refused, or on to the handover and the exec (this returns only if
    /// the upgrade was refused).
    pub(crate) async fn preflight_done(&mut self, result: Result<(), PreflightError>) {
        let Some(run) = self.upgrade.take() else { return };
        let refused = match result {
            Err(e) => Some(UpgradeError::Preflight(e)),
            Ok(()) if self.stopping => Some(UpgradeError::Stopping),
            Ok(()) if self.reload.is_some() => Some(UpgradeError::Reloading),
            Ok(()) => self.check_slots().await.err(),
        };
        let refused = match refused {
            Some(refused) => refused,
            None => match self.hand_over_and_exec(&run.path).await {
                // The exec failed, and so did the fallback to this image: nothing can
                // take the fds over. The workers drain on their own once we are gone.
                Err(e) => {
                    tracing::error!(error = %e, "upgrade failed after the handover; exiting");
                    std::process::exit(1);
                }
                Ok(refused) => refused,
            },
        };
        tracing::error!(error = %refused, "upgrade refused; the primary and its workers go on");
        systemd::ready();
        if let Some(reply) = run.reply {
            let _ = reply.send(refused);
        }
    }

    /// Hands everything over and execs `path`. `Ok(refusal)` when nothing was handed over
    /// yet; `Err` when the exec failed after the handover.
    async fn hand_over_and_exec(&mut self, path: &std::path::Path) -> Result<UpgradeError, std::io::Error> {
        let handover_error = |e: std::io::Error| UpgradeError::Handover(std::sync::Arc::new(e));
        // Made before the point of no return, so that writing it later cannot fail for want of
        // an fd.
        let block = match state::write(&Handover::empty()) {
            Ok(fd) => fd,
            Err(e) => return Ok(handover_error(e)),
        };
        // Signals blocked on the spawner thread first, then here: one sent from now on waits
        // for the new image's handlers.
        let _ = on_spawner_thread_with(exec::block_signals).await;
        exec::block_signals();
        tracing::info!(path = %path.display(), "upgrade: handing over");
        let mut kept = Kept::default();
        let (listeners, activated) = match self.args.listeners.hand_over(&mut kept).await {
            Ok(records) => records,
            Err(e) => {
                tracing::error!(error = %e, "cannot hand a listener over; the new image binds it afresh");
                (Vec::new(), Vec::new())
            }
        };
        let mut slots = Vec::with_capacity(self.slots.len());
        let mut reap = Vec::new();
        let mut children = Vec::new();
        let mut handles_sent = std::collections::BTreeMap::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(sup) = &slot.supervisor else { continue };
            match ractor::call_t!(sup, SlotMsg::HandOver, SLOT_PATIENCE.as_millis() as u64) {
                Ok(handed) => {
                    reap.extend(handed.reap.iter().copied());
                    if let Some((process, _, _)) = &handed.worker {
                        handles_sent.insert(process.pid, process.handles_sent);
                    }
                    let (record, child) = record_slot(handed, &mut kept);
                    children.extend(child);
                    slots.push(record);
                }
                Err(e) => {
                    tracing::error!(slot = i, error = %e, "slot did not hand over; the new image starts it afresh");
                    slots.push(SlotRecord { slot: i, generation: 0, restarts: 0, worker: None });
                }
            }
        }
        let control = self.args.config.control.path(&self.args.config.name).and_then(|path| {
            let fd = control::listening_fd(&path)?;
            Some(ControlRecord { path, fd: kept.keep(fd) })
        });
        let handover = Handover {
            version: state::VERSION,
            name: self.args.config.name.clone(),
            scheduling: self.args.config.scheduling,
            slots,
            listeners,
            activated,
            control,
            reap,
            upgrades: self.upgrades + 1,
            handles_sent,
        };
        let block = rewrite(block, &handover)?;
        // The children must never be dropped (a drop kills): the image is replaced anyway.
        std::mem::forget(children);
        let path = path.to_path_buf();
        tracing::info!(path = %path.display(), "upgrade: exec");
        let error = on_spawner_thread_with(move || exec::exec(&path, block, kept)).await?;
        Err(error)
    }

    /// The new image's half, after every slot took its worker over: the processes the old
    /// image killed are reaped, and a rolling reload replaces the workers.
    pub(crate) async fn finish_upgrade(&mut self, reap: Vec<u32>) {
        for pid in reap {
            tokio::spawn(reap_one(pid));
        }
        tracing::info!(upgrades = self.upgrades, "upgrade: the new image took over; replacing the workers");
        self.upgrade_reload = true;
        self.start_reload(Vec::new()).await;
    }

    /// After a reload: when it was the upgrade's, says how the upgrade ended.
    pub(crate) fn upgrade_reloaded(&mut self, report: &ReloadReport) {
        if !std::mem::take(&mut self.upgrade_reload) {
            return;
        }
        match &report.error {
            None => tracing::info!(upgrades = self.upgrades, replaced = report.replaced.len(), "upgrade complete"),
            Some(e) => tracing::error!(
                replaced = report.replaced.len(),
                error = %e,
                "upgrade: the new workers did not all take over; the old ones keep serving those slots"
            ),
        }
        self.args.bus.emit(ClusterEvent::Upgraded {
            upgrades: self.upgrades,
            replaced: report.replaced.len(),
            error: report.error.clone(),
        });
    }
}

/// A slot's record, its fds kept; and the `Child` that must outlive the exec.
fn record_slot(handed: HandedSlot, kept: &mut Kept) -> (SlotRecord, Option<tokio::process::Child>) {
    let HandedSlot { slot, generation, restarts, worker, reap: _ } = handed;
    let mut child = None;
    let worker = worker.and_then(|(process, generation, uptime)| {
        let mut parts = process.parts;
        child = parts.child.take();
        let channel = match (parts.ipc.take(), process.handles, parts.notify.take()) {
            (Some((ipc, leftover)), Some(handles), _) => {
                ChannelRecord::Corral { ipc: kept.keep(OwnedFd::from(ipc)), leftover, handles: kept.keep(handles) }
            }
            (None, None, Some(notify)) => ChannelRecord::Foreign { notify: kept.keep(OwnedFd::from(notify)) },
            _ => return None,
        };
        let mut pipe =
            |p: Option<(OwnedFd, Vec<u8>)>| p.map(|(fd, leftover)| PipeRecord { fd: kept.keep(fd), leftover });
        let stdout = pipe(parts.stdout.take());
        let stderr = pipe(parts.stderr.take());
        Some(WorkerRecord {
            pid: process.pid,
            generation,
            uptime_ms: u64::try_from(uptime.as_millis()).unwrap_or(u64::MAX),
            channel,
            stdout,
            stderr,
        })
    });
    (SlotRecord { slot, generation, restarts, worker }, child)
}

/// Writes the block into the memfd made earlier.
fn rewrite(block: OwnedFd, handover: &Handover) -> std::io::Result<OwnedFd> {
    use std::io::{Seek, Write};
    let bytes = state::encode(handover)?;
    let mut file = std::fs::File::from(block);
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(&bytes)?;
    file.rewind()?;
    Ok(OwnedFd::from(file))
}

/// Reaps a process the old image killed during the handover.
async fn reap_one(pid: u32) {
    match crate::process::Waitee::adopt(pid) {
        Ok(mut waitee) => {
            waitee.start_kill();
            let _ = waitee.wait().await;
        }
        Err(e) => tracing::debug!(pid, error = %e, "nothing to reap"),
    }
}
