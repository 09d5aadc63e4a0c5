//! A foreign worker's `NOTIFY_SOCKET`: one `AF_UNIX` datagram socket per process, in the
//! abstract namespace, read as systemd reads its own (man sd_notify).
//!
//! `READY=1`, `STATUS=…`, `STOPPING=1`, `WATCHDOG=1` and `ERRNO=…` become process events;
//! unknown keys are ignored. A datagram is taken only from the worker itself or a process of
//! its process group (`SO_PASSCRED` tells the sender); others are logged and dropped.

use std::io::{self, IoSliceMut};
use std::os::fd::AsRawFd;
use std::os::unix::net::SocketAddr as UnixAddr;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixCredentials, recvmsg, setsockopt, sockopt};
use tokio::io::Interest;
use tokio::net::UnixDatagram;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

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
}

/// The largest datagram read (systemd's own limit is larger; status lines are short).
const MAX_DATAGRAM: usize = 4096;

/// A worker's notify socket, bound before the fork.
pub(crate) struct NotifySocket {
    socket: std::os::unix::net::UnixDatagram,
    /// What `NOTIFY_SOCKET` says: `@` and the abstract name.
    pub env_value: String,
}

impl NotifySocket {
    /// The socket of a process taken over from the previous image.
    pub(crate) fn adopt(socket: std::os::unix::net::UnixDatagram) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(NotifySocket { socket, env_value: String::new() })
    }

    /// Binds a fresh abstract-namespace socket for one process of `slot`.
    pub(crate) fn bind(slot: usize, generation: u64) -> io::Result<Self> {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("corral/{}/{slot}/{generation}/{:016x}", std::process::id(), rand::random::<u64>());
        let addr = UnixAddr::from_abstract_name(name.as_bytes())?;
        let socket = std::os::unix::net::UnixDatagram::bind_addr(&addr)?;
        setsockopt(&socket, sockopt::PassCred, &true).map_err(io::Error::from)?;
        socket.set_nonblocking(true)?;
        Ok(NotifySocket { socket, env_value: format!("@{name}") })
    }
}

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
    let Who { slot, generation, pid, adopted } = who;
    // The slot hears first, so that whoever reacts to the event finds it up to date.
    let report = |kind: ProcessEventKind| {
        let event = match kind {
            ProcessEventKind::Online => Some(ClusterEvent::Online { slot, generation, pid }),
            ProcessEventKind::Ready => Some(ClusterEvent::Ready { slot, generation, pid }),
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
    let socket = match UnixDatagram::from_std(socket.socket) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::error!(pid, error = %e, "cannot watch the worker's NOTIFY_SOCKET");
            return;
        }
    };
    let delay = async {
        match ready {
            Readiness::Delay(d) => tokio::time::sleep(d).await,
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
                match socket.try_io(Interest::READABLE, || receive(&socket, &mut buf)) {
                    Ok((len, sender)) => {
                        if !from_worker(sender, pid) {
                            tracing::warn!(pid, sender = ?sender, "NOTIFY_SOCKET datagram from another process; dropped");
                            continue;
                        }
                        for kind in parse(&buf[..len], ready, pid) {
                            report(kind);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => tracing::debug!(pid, error = %e, "NOTIFY_SOCKET read failed"),
                }
            }
        }
    }
}

/// One datagram and its sender's pid (0 when the kernel attached no credentials).
fn receive(socket: &UnixDatagram, buf: &mut [u8]) -> io::Result<(usize, Option<i32>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(UnixCredentials);
    let msg = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    let mut sender = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmCredentials(cred) = c {
            sender = Some(cred.pid());
        }
    }
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "datagram over 4 KiB"));
    }
    Ok((msg.bytes, sender))
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

/// The events a datagram says.
fn parse(datagram: &[u8], ready: Readiness, pid: u32) -> Vec<ProcessEventKind> {
    let text = String::from_utf8_lossy(datagram);
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else { continue };
        match key {
            "READY" if value == "1" && ready == Readiness::Notify => out.push(ProcessEventKind::Ready),
            "STATUS" => out.push(ProcessEventKind::Status(value.chars().take(256).collect())),
            "STOPPING" if value == "1" => out.push(ProcessEventKind::Draining),
            "WATCHDOG" if value == "1" => out.push(ProcessEventKind::Watchdog),
            "ERRNO" => tracing::warn!(pid, errno = value, "worker reports ERRNO"),
            _ => {}
        }
    }
    out
}
