//! The state block the primary hands to its next image: what every fd it keeps open across
//! `execve` is, in a postcard record written to a memfd whose number is in
//! [`UPGRADE_FD_ENV`](super::UPGRADE_FD_ENV).
//!
//! Fds are plain numbers here: they keep their numbers across `execve` (close-on-exec
//! cleared). The next image takes each exactly once ([`Fds::take`]) and sets close-on-exec
//! again, so that the workers it forks inherit none of them.

use std::collections::HashSet;
use std::io::{self, Read, Seek, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use std::collections::BTreeMap;

use corral_protocol::Scheduling;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use serde::{Deserialize, Serialize};

use crate::upgrade::error::HandoverVersion;

/// The format of the block; a primary refuses a block of another version.
pub(crate) const VERSION: u32 = 3;

/// Everything handed over.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Handover {
    pub version: u32,
    /// The cluster's name (its control socket's, its logs').
    pub name: String,
    /// Listeners cannot change their scheduling in an upgrade: the next image keeps this.
    pub scheduling: Scheduling,
    pub slots: Vec<SlotRecord>,
    pub listeners: Vec<ListenerRecord>,
    pub activated: Vec<ActivatedRecord>,
    pub control: Option<ControlRecord>,
    /// Processes the old image had killed (a candidate, a draining one): the next image reaps
    /// them.
    pub reap: Vec<u32>,
    /// How many upgrades this primary (this pid) has been through, this one included.
    pub upgrades: u64,
    /// Datagrams sent on each corral worker's handle channel, by pid: the next image numbers
    /// its hand-offs on from there, as the worker's acknowledgements count them. Carried in
    /// the [`Trailer`], so that the block keeps its format.
    #[serde(skip)]
    pub handles_sent: BTreeMap<u32, u64>,
}

/// What follows the block: newer than the block's format, and read only when present.
///
/// An image that knows only the block reads it and ignores these bytes (postcard's
/// `from_bytes` leaves trailing bytes alone); this image reads a block without them as "no
/// trailer". So primaries of either kind upgrade into each other.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Trailer {
    handles_sent: Vec<(u32, u64)>,
}

/// The bytes of the block and its trailer.
///
/// # Errors
///
/// Postcard fails to encode (it does not for these types).
pub(crate) fn encode(handover: &Handover) -> io::Result<Vec<u8>> {
    let mut bytes = postcard::to_stdvec(handover).map_err(io::Error::other)?;
    let trailer = Trailer { handles_sent: handover.handles_sent.iter().map(|(&pid, &n)| (pid, n)).collect() };
    bytes.extend(postcard::to_stdvec(&trailer).map_err(io::Error::other)?);
    Ok(bytes)
}

/// The block (and its trailer, if there is one) from its bytes.
///
/// # Errors
///
/// The block does not decode, or it is of another version. A trailer that does not decode is
/// ignored: it only refines what the block says.
pub(crate) fn decode(bytes: &[u8]) -> io::Result<Handover> {
    let (mut handover, rest): (Handover, _) =
        postcard::take_from_bytes(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if handover.version != VERSION {
        let version = HandoverVersion { got: handover.version, ours: VERSION };
        return Err(io::Error::new(io::ErrorKind::InvalidData, version));
    }
    if let Ok(trailer) = postcard::from_bytes::<Trailer>(rest) {
        handover.handles_sent = trailer.handles_sent.into_iter().collect();
    }
    Ok(handover)
}

impl Handover {
    /// A block with nothing in it (a placeholder, to make the memfd early).
    pub(crate) fn empty() -> Self {
        Handover {
            version: VERSION,
            name: String::new(),
            scheduling: Scheduling::RoundRobin,
            slots: Vec::new(),
            listeners: Vec::new(),
            activated: Vec::new(),
            control: None,
            reap: Vec::new(),
            upgrades: 0,
            handles_sent: BTreeMap::new(),
        }
    }
}

/// One slot: its counters and, if it had one, its ready worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SlotRecord {
    pub slot: usize,
    /// The last generation started in the slot.
    pub generation: u64,
    pub restarts: u64,
    pub worker: Option<WorkerRecord>,
}

/// A running, ready worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerRecord {
    pub pid: u32,
    pub generation: u64,
    pub uptime_ms: u64,
    pub channel: ChannelRecord,
    pub stdout: Option<PipeRecord>,
    pub stderr: Option<PipeRecord>,
}

/// How the worker talks to the primary.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ChannelRecord {
    /// A corral worker: the IPC stream, what was read of its next frame, the handle channel.
    Corral { ipc: RawFd, leftover: Vec<u8>, handles: RawFd },
    /// A foreign worker: its notify socket.
    Foreign { notify: RawFd },
}

/// A captured output pipe and the start of an unfinished line.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PipeRecord {
    pub fd: RawFd,
    pub leftover: Vec<u8>,
}

/// One listening socket of a corral cluster, and who was registered on it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ListenerRecord {
    /// The addresses workers asked for that share this socket (`127.0.0.1:0`, the resolved one).
    pub keys: Vec<String>,
    pub addr: SocketAddr,
    pub fd: RawFd,
    /// Given by the service manager rather than bound.
    pub passed: bool,
    pub targets: Vec<TargetRecord>,
    /// Reuse-port: each slot's own listening socket, in the kernel's group order.
    pub group_fds: Vec<RawFd>,
    /// The slot of each socket in `group_fds`.
    pub group_slots: Vec<usize>,
    /// The process generation each socket in `group_fds` was bound for.
    pub group_generations: Vec<u64>,
}

/// A worker process registered on a listener (round robin, least connections).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct TargetRecord {
    pub slot: usize,
    pub generation: u64,
    pub listen_id: u64,
}

/// One listener of a foreign cluster (socket activation).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ActivatedRecord {
    pub name: String,
    pub tcp: Option<SocketAddr>,
    pub unix: Option<PathBuf>,
    /// One socket, or one per slot (reuse-port), in the order of the kernel's reuse-port
    /// group (which a steering program indexes).
    pub fds: Vec<RawFd>,
    /// Reuse-port: the slot of each socket in `fds`.
    pub slots: Vec<usize>,
    /// Reuse-port: the process generation each socket was bound for.
    pub generations: Vec<u64>,
    pub per_slot: bool,
}

/// The control socket's listening fd.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ControlRecord {
    pub path: PathBuf,
    pub fd: RawFd,
}

/// The fds that must cross the `execve`, kept open (and owned) until it happens.
#[derive(Default)]
pub(crate) struct Kept {
    fds: Vec<OwnedFd>,
}

impl Kept {
    /// Keeps `fd`; returns the number it will have in the next image.
    pub(crate) fn keep(&mut self, fd: OwnedFd) -> RawFd {
        let raw = fd.as_raw_fd();
        self.fds.push(fd);
        raw
    }

    /// Clears close-on-exec on every kept fd and gives up ownership: from here on the fds
    /// belong to the next image.
    ///
    /// # Errors
    ///
    /// `fcntl` fails on one of them.
    pub(crate) fn release_for_exec(self) -> io::Result<Vec<RawFd>> {
        for fd in &self.fds {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map_err(io::Error::from)?;
        }
        Ok(self.fds.into_iter().map(IntoRawFd::into_raw_fd).collect())
    }
}

/// Writes the block to a fresh memfd, positioned at its start (close-on-exec still set).
///
/// # Errors
///
/// The memfd cannot be made or written.
pub(crate) fn write(handover: &Handover) -> io::Result<OwnedFd> {
    let bytes = encode(handover)?;
    let name = c"corral-upgrade";
    // SAFETY: memfd_create takes a NUL-terminated name (a C string literal) and flags; it
    // returns a new fd or -1.
    let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create just returned this fd; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut file = std::fs::File::from(fd);
    file.write_all(&bytes)?;
    file.rewind()?;
    Ok(OwnedFd::from(file))
}

/// Reads the block from `fd` (and closes it).
///
/// # Errors
///
/// The fd cannot be read, the block does not decode, or it is of another version.
pub(crate) fn read(fd: OwnedFd) -> io::Result<Handover> {
    let mut file = std::fs::File::from(fd);
    let mut bytes = Vec::new();
    file.rewind()?;
    file.read_to_end(&mut bytes)?;
    decode(&bytes)
}

/// The next image's side: each fd the block names taken once, close-on-exec set again.
#[derive(Default)]
pub(crate) struct Fds {
    taken: HashSet<RawFd>,
}

impl Fds {
    /// Takes ownership of `raw`, which the block names.
    ///
    /// # Errors
    ///
    /// `EBADF` when it is not open or was taken already (a corrupt block).
    pub(crate) fn take(&mut self, raw: RawFd) -> io::Result<OwnedFd> {
        if raw < 0 || !self.taken.insert(raw) {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        // SAFETY: F_GETFD only reads the fd's flags; an fd that is not open gives EBADF.
        if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the previous image kept `raw` open across execve for us and named it in the
        // block; the set above makes sure it is owned once.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
        Ok(fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_round_trips_and_each_fd_is_taken_once() {
        let file = std::fs::File::open("/dev/null").expect("open");
        let raw = file.as_raw_fd();
        let mut handover = Handover::empty();
        handover.name = "web".into();
        handover.listeners.push(ListenerRecord {
            keys: vec!["127.0.0.1:0".into()],
            addr: "127.0.0.1:8080".parse().expect("addr"),
            fd: raw,
            passed: false,
            targets: vec![TargetRecord { slot: 1, generation: 4, listen_id: 7 }],
            group_fds: Vec::new(),
            group_slots: Vec::new(),
            group_generations: Vec::new(),
        });
        let back = read(write(&handover).expect("write")).expect("read");
        assert_eq!(back.name, "web");
        assert_eq!(back.listeners[0].targets[0].listen_id, 7);

        let mut fds = Fds::default();
        let owned = fds.take(OwnedFd::from(file).into_raw_fd()).expect("taken");
        assert_eq!(owned.as_raw_fd(), raw);
        let flags = fcntl(&owned, FcntlArg::F_GETFD).expect("flags");
        assert!(FdFlag::from_bits_retain(flags).contains(FdFlag::FD_CLOEXEC), "close-on-exec set again");
        // A corrupt block naming it twice does not get a second owner.
        assert!(fds.take(raw).is_err());
        assert!(fds.take(-1).is_err());
        std::mem::forget(owned);
        // SAFETY (test): `raw` is owned by nobody now; close it.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
    }

    #[test]
    fn another_version_or_garbage_is_refused() {
        let mut handover = Handover::empty();
        handover.version = VERSION + 1;
        assert!(read(write(&handover).expect("write")).is_err());
        let mut garbage = std::fs::File::from(write(&Handover::empty()).expect("write"));
        garbage.set_len(0).expect("truncate");
        garbage.write_all(&[0xff; 3]).expect("write");
        assert!(read(OwnedFd::from(garbage)).is_err());
    }

    #[test]
    fn the_trailer_is_read_when_present_and_ignored_by_an_image_that_does_not_know_it() {
        let mut handover = Handover::empty();
        handover.name = "web".into();
        handover.handles_sent.insert(4242, 17);
        let bytes = encode(&handover).expect("encode");
        assert_eq!(decode(&bytes).expect("decode").handles_sent.get(&4242), Some(&17));
        // What an image without the trailer does: `from_bytes` of the block alone.
        let old: Handover = postcard::from_bytes(&bytes).expect("an older image reads the block");
        assert_eq!(old.name, "web");
        assert!(old.handles_sent.is_empty());
        // What an older image writes: the block alone, read here as "no trailer".
        let block_only = postcard::to_stdvec(&handover).expect("block");
        let back = decode(&block_only).expect("decode");
        assert_eq!(back.name, "web");
        assert!(back.handles_sent.is_empty());
    }
}
