//! One `sd_notify` datagram: read with its sender's credentials and any fds passed along,
//! and what its `KEY=VALUE` lines say (man sd_notify).
//!
//! Used: `READY=1`, `STATUS=…`, `STOPPING=1`, `WATCHDOG=1`, `ERRNO=…`, `BUSERROR=…`
//! (logged). `BARRIER=1` comes with a pipe's write end that the sender waits to see closed:
//! every fd passed with a datagram is closed once the datagram is read, so barriers return at
//! once. Understood and ignored without harm: `MAINPID=` (corral supervises the process it
//! started), `RELOADING=1`, `MONOTONIC_USEC=`, `EXTEND_TIMEOUT_USEC=`, `WATCHDOG_USEC=`,
//! `WATCHDOG=trigger` (logged), `FDSTORE=1` and its fds (corral keeps no fd store: closed,
//! logged), `FDNAME=`, `FDSTOREREMOVE=`, `FDPOLL=`; any other key is ignored.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixCredentials, recvmsg};

use crate::config::foreign::Readiness;
use crate::process::event::ProcessEventKind;

/// The most fds one datagram can carry (`SCM_MAX_FD`): room for all of them, so the kernel
/// never truncates the control data and every fd is ours to close.
const SCM_MAX_FD: usize = 253;

/// A datagram as read.
pub(super) struct Datagram {
    pub len: usize,
    /// The sender's pid (`None` when the kernel attached no credentials).
    pub sender: Option<i32>,
    /// The fds passed along: closed when this is dropped.
    pub fds: Vec<OwnedFd>,
}

/// Reads one datagram into `buf`.
///
/// # Errors
///
/// The read's own error; `InvalidData` for a datagram larger than `buf` (its fds are closed).
pub(super) fn receive(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(UnixCredentials, [std::os::fd::RawFd; SCM_MAX_FD]);
    let msg = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    let mut datagram = Datagram { len: msg.bytes, sender: None, fds: Vec::new() };
    for c in msg.cmsgs().map_err(io::Error::from)? {
        match c {
            ControlMessageOwned::ScmCredentials(cred) => datagram.sender = Some(cred.pid()),
            ControlMessageOwned::ScmRights(fds) => {
                // SAFETY: the kernel just installed these fds in this process for us (SCM_RIGHTS)
                // and nothing else knows them: each is owned exactly once, here.
                datagram.fds.extend(fds.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
            _ => {}
        }
    }
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "datagram over 4 KiB"));
    }
    Ok(datagram)
}

/// What a datagram says, for the worker `pid`.
pub(super) fn parse(datagram: &[u8], fds: usize, ready: &Readiness, pid: u32) -> Vec<ProcessEventKind> {
    let text = String::from_utf8_lossy(datagram);
    let mut out = Vec::new();
    let mut fd_store = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else { continue };
        match (key, value) {
            ("READY", "1") if *ready == Readiness::Notify => out.push(ProcessEventKind::Ready),
            ("STATUS", _) => out.push(ProcessEventKind::Status(value.chars().take(256).collect())),
            ("STOPPING", "1") => out.push(ProcessEventKind::Draining),
            ("WATCHDOG", "1") => out.push(ProcessEventKind::Watchdog),
            ("WATCHDOG", "trigger") => {
                tracing::warn!(
                    pid,
                    "worker sent WATCHDOG=trigger; corral replaces a worker only on a missed WATCHDOG=1"
                )
            }
            ("ERRNO", _) => tracing::warn!(pid, errno = value, "worker reports ERRNO"),
            ("BUSERROR", _) => tracing::warn!(pid, error = value, "worker reports BUSERROR"),
            ("MAINPID", _) => {
                tracing::debug!(pid, mainpid = value, "MAINPID ignored: corral supervises the process it started")
            }
            ("FDSTORE", "1") => fd_store = true,
            ("BARRIER", "1") => tracing::trace!(pid, "notify barrier: its fd is closed"),
            _ => {}
        }
    }
    if fd_store && fds > 0 {
        tracing::info!(pid, fds, "FDSTORE=1: corral keeps no fd store; the fds are closed");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn the_fds_of_a_barrier_are_closed_once_read() {
        use nix::sys::socket::{ControlMessage, sendmsg};
        let (a, b) = UnixDatagram::pair().unwrap();
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        let iov = [std::io::IoSlice::new(b"BARRIER=1")];
        let fds = [write_end.as_raw_fd()];
        sendmsg::<()>(a.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None).unwrap();
        drop(write_end);
        let mut buf = [0u8; 64];
        let datagram = receive(&b, &mut buf).unwrap();
        assert_eq!(&buf[..datagram.len], b"BARRIER=1");
        assert_eq!(datagram.fds.len(), 1);
        assert!(parse(&buf[..datagram.len], 1, &Readiness::Notify, 1).is_empty());
        drop(datagram);
        // Every write end closed: the reader sees end of file, as the barrier's sender waits to.
        let mut byte = [0u8; 1];
        assert_eq!(nix::unistd::read(&read_end, &mut byte).unwrap(), 0);
    }

    #[test]
    fn every_field_is_used_or_ignored() {
        let kinds = parse(
            b"READY=1\nSTATUS=serving\nMAINPID=4242\nRELOADING=1\nMONOTONIC_USEC=1\nEXTEND_TIMEOUT_USEC=5\nWATCHDOG=1\nnonsense\nX-CUSTOM=1\nSTOPPING=1",
            0,
            &Readiness::Notify,
            1,
        );
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert!(matches!(kinds[0], ProcessEventKind::Ready));
        assert!(matches!(&kinds[1], ProcessEventKind::Status(s) if s == "serving"));
        assert!(matches!(kinds[2], ProcessEventKind::Watchdog));
        assert!(matches!(kinds[3], ProcessEventKind::Draining));
        // In delay mode READY=1 means nothing.
        assert!(parse(b"READY=1", 0, &Readiness::Delay(std::time::Duration::ZERO), 1).is_empty());
    }
}
