//! A foreign worker's `NOTIFY_SOCKET`, read as systemd reads its own (man sd_notify): one
//! `AF_UNIX` datagram socket per process, at a filesystem path in a private directory of the
//! primary's ([`dir`]), like systemd's `/run/systemd/notify`.
//!
//! `READY=1`, `STATUS=…`, `STOPPING=1`, `WATCHDOG=1` and `ERRNO=…` become process events; fds
//! passed along (`BARRIER=1`) are closed at once; other keys are ignored ([`datagram`]). A
//! datagram is taken only from the worker itself or a process of its process group
//! (`SO_PASSCRED` tells the sender); others are logged and dropped.

mod datagram;
mod dir;
mod socket;
mod stray;

use std::io;
use std::sync::Arc;

use tokio::io::Interest;
use tokio::net::UnixDatagram;
use tokio_util::sync::CancellationToken;

pub(crate) use socket::NotifySocket;

use super::event::{ProcessEvent, ProcessEventKind, Reports};
use super::handover::{Giver, Part};
use crate::api::events::ClusterEvent;
use crate::api::events::bus::EventBus;
use crate::config::foreign::Readiness;

/// Which process a notify socket belongs to.
pub(crate) struct Who {
    pub slot: usize,
    pub generation: u64,
    pub pid: u32,
    /// Taken over from the primary's previous image: online and ready already.
    pub adopted: bool,
    /// The inodes of the listening sockets corral gave it (empty when adopted: not looked at).
    pub given: Arc<[u64]>,
}

/// The largest datagram read (systemd's own limit is larger; status lines are short).
const MAX_DATAGRAM: usize = 4096;

/// Reads notifications for the process `pid` until `exited`; in delay mode, reports it ready
/// once the delay has passed.
pub(crate) async fn run_notify<R: Clone + Send + 'static>(
    socket: NotifySocket,
    who: Who,
    ready: Readiness,
    reports: Reports,
    bus: Arc<EventBus<R>>,
    exited: CancellationToken,
    giver: Giver,
) {
    let Who { slot, generation, pid, adopted, given } = who;
    // Once ready, a look for ports it listens on that corral did not give it.
    let mut strays = (!adopted).then(|| stray::watch(slot, pid, given, exited.clone()));
    // The slot hears first, so that whoever reacts to the event finds it up to date.
    let mut report = |kind: ProcessEventKind| {
        let event = match kind {
            ProcessEventKind::Online => Some(ClusterEvent::Online { slot, generation, pid }),
            ProcessEventKind::Ready => {
                if let Some(watch) = strays.take() {
                    tokio::spawn(watch);
                }
                // The slot announces `Ready` once it has acted on it.
                None
            }
            _ => None,
        };
        let _ = reports.send_message(ProcessEvent { generation, kind });
        if let Some(event) = event {
            bus.emit(event);
        }
    };
    // No hello: a foreign worker is online once it runs (one taken over from the previous
    // image is ready already).
    if !adopted {
        report(ProcessEventKind::Online);
    }
    let NotifySocket { socket, file, .. } = socket;
    let socket = match UnixDatagram::from_std(socket) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::error!(pid, error = %e, "cannot watch the worker's NOTIFY_SOCKET");
            return;
        }
    };
    let delay = async {
        match &ready {
            Readiness::Delay(d) => tokio::time::sleep(*d).await,
            // Started is all the process itself says: the slot's ready check decides.
            Readiness::Check(_) => {}
            Readiness::Notify => std::future::pending().await,
        }
    };
    tokio::pin!(delay);
    let mut delay_done = adopted;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            () = exited.cancelled() => return,
            () = giver.token.cancelled() => {
                if let Ok(socket) = socket.into_std() {
                    // The file stays for the next image, which removes it in the end.
                    if let Some(file) = file {
                        file.keep();
                    }
                    giver.give(Part::Notify { socket });
                }
                return;
            }
            () = &mut delay, if !delay_done => {
                delay_done = true;
                report(ProcessEventKind::Ready);
            }
            readable = socket.readable() => {
                if readable.is_err() {
                    return;
                }
                match socket.try_io(Interest::READABLE, || datagram::receive(&socket, &mut buf)) {
                    Ok(received) => {
                        if !from_worker(received.sender, pid) {
                            tracing::warn!(pid, sender = ?received.sender, "NOTIFY_SOCKET datagram from another process; dropped");
                            continue;
                        }
                        for kind in datagram::parse(&buf[..received.len], received.fds.len(), &ready, pid) {
                            report(kind);
                        }
                        // Its fds close here, after what it said is reported: a barrier's sender
                        // sees every message before it handled.
                        drop(received);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => tracing::debug!(pid, error = %e, "NOTIFY_SOCKET read failed"),
                }
            }
        }
    }
}

/// Whether a datagram came from the worker `pid` or a process of its group.
fn from_worker(sender: Option<i32>, pid: u32) -> bool {
    let Some(sender) = sender else { return false };
    if u32::try_from(sender) == Ok(pid) {
        return true;
    }
    process_group(sender).is_some_and(|pgrp| u32::try_from(pgrp) == Ok(pid))
}

/// A process's group, from `/proc/PID/stat`.
fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces): state, ppid, pgrp.
    stat.get(stat.rfind(')')? + 2..)?.split_whitespace().nth(2)?.parse().ok()
}
