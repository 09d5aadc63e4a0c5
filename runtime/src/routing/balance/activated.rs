//! The sockets of a foreign cluster: bound by the primary before any worker starts, passed to
//! every worker by socket activation, never accepted on by the primary.
//!
//! Shared scheduling: one socket per listener, the same for every worker. Reuse-port: one
//! `SO_REUSEPORT` socket per listener **per slot**, which the primary keeps open, so that a
//! restarted or reloaded slot's replacement inherits the same accept queue and no queued
//! connection is reset. (Unix sockets have no reuse-port groups: they are always shared.)

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use corral_protocol::{BindMode, ListenRefusal};
use socket2::{Domain, SockAddr, Socket, Type};

use super::inherited;
use super::targeted::{PinnedGroup, Pinning, TargetError};
use crate::config::foreign::{ListenAddr, ListenSpec};
use crate::routing::steer::Steering;
use crate::routing::steer::group::{Group, Member};
use crate::upgrade::state::{ActivatedRecord, Fds, Kept};

/// One listener: its name, where it is bound, and its sockets.
struct Activated {
    name: String,
    /// The bound address (port 0 resolved), as `listening on` prints it.
    bound: ListenAddr,
    /// Shared: the one socket, slot 0's. Reuse-port: one per slot, in the kernel's order.
    group: Group,
    per_slot: bool,
}

impl Activated {
    fn shared(name: String, bound: ListenAddr, socket: Arc<Socket>) -> Self {
        let mut group = Group::default();
        group.joined(Member { slot: 0, generation: 0 }, socket, true);
        Activated { name, bound, group, per_slot: false }
    }
}

/// Every listener of a foreign cluster; its reuse-port groups are steered by the cluster's
/// [`Steering`].
pub(crate) struct ActivatedSockets {
    listeners: Mutex<Vec<Activated>>,
    steering: Arc<Mutex<Steering>>,
}

impl ActivatedSockets {
    /// Binds every listener (slot 0's socket, for reuse-port), so that a bad address stops the
    /// cluster before anything is forked.
    pub(crate) fn bind(
        specs: &[ListenSpec],
        reuse_port: bool,
        steering: Arc<Mutex<Steering>>,
    ) -> Result<Self, ListenRefusal> {
        let mut listeners = Vec::with_capacity(specs.len());
        if specs.is_empty() {
            // Given sockets and told of none: every passed socket is a listener.
            for passed in inherited::inherited() {
                let bound = passed.addr.clone().unwrap_or(ListenAddr::Unix("?".into()));
                listeners.push(Activated::shared(passed.name.clone(), bound, passed.socket.clone()));
            }
        }
        for spec in specs {
            if let Some(passed) = inherited::find(Some(&spec.name), &spec.addr) {
                let bound = passed.addr.clone().unwrap_or_else(|| spec.addr.clone());
                if reuse_port {
                    tracing::info!(addr = %bound, "a passed socket is shared by every slot (it is no reuse-port group)");
                }
                listeners.push(Activated::shared(spec.name.clone(), bound, passed.socket.clone()));
                continue;
            }
            let per_slot = reuse_port && matches!(spec.addr, ListenAddr::Tcp(_));
            let (socket, bound) =
                bind_one(&spec.addr, per_slot, true).map_err(|e| ListenRefusal::bind(&spec.addr.to_string(), &e))?;
            tracing::info!(name = %spec.name, addr = %bound, per_slot, "listening (socket activation)");
            let mut l = Activated::shared(spec.name.clone(), bound, Arc::new(socket));
            l.per_slot = per_slot;
            listeners.push(l);
        }
        Ok(Self::new(listeners, steering))
    }

    fn new(listeners: Vec<Activated>, steering: Arc<Mutex<Steering>>) -> Self {
        let sockets = ActivatedSockets { listeners: Mutex::new(listeners), steering };
        sockets.steer();
        sockets
    }

    /// Every listener's name and bound address, in order.
    pub(crate) fn bound(&self) -> Vec<(String, ListenAddr)> {
        self.lock().iter().map(|l| (l.name.clone(), l.bound.clone())).collect()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Activated>> {
        // Every update pushes or removes whole sockets, so a poisoned lock is still consistent.
        self.listeners.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn steering(&self) -> MutexGuard<'_, Steering> {
        // Every update replaces whole sets, so a poisoned lock is still consistent.
        self.steering.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every socket, kept open for the primary's next image (an upgrade).
    pub(crate) fn hand_over(&self, kept: &mut Kept) -> io::Result<Vec<ActivatedRecord>> {
        let mut records = Vec::new();
        for l in self.lock().iter() {
            let (mut fds, mut slots, mut generations) = (Vec::new(), Vec::new(), Vec::new());
            for (member, socket) in l.group.iter() {
                fds.push(kept.keep(socket.as_fd().try_clone_to_owned()?));
                slots.push(member.slot);
                generations.push(member.generation);
            }
            let (tcp, unix) = match &l.bound {
                ListenAddr::Tcp(addr) => (Some(*addr), None),
                ListenAddr::Unix(path) => (None, Some(path.clone())),
            };
            records.push(ActivatedRecord {
                name: l.name.clone(),
                tcp,
                unix,
                fds,
                slots,
                generations,
                per_slot: l.per_slot,
            });
        }
        Ok(records)
    }

    /// The sockets the previous image handed over (an upgrade), in the kernel's order.
    pub(crate) fn adopt(records: Vec<ActivatedRecord>, fds: &mut Fds, steering: Arc<Mutex<Steering>>) -> Self {
        let mut listeners = Vec::with_capacity(records.len());
        for record in records {
            let bound = match (record.tcp, record.unix) {
                (Some(addr), _) => ListenAddr::Tcp(addr),
                (None, Some(path)) => ListenAddr::Unix(path),
                (None, None) => continue,
            };
            let (mut sockets, mut members) = (Vec::with_capacity(record.fds.len()), Vec::new());
            for (i, raw) in record.fds.into_iter().enumerate() {
                match fds.take(raw) {
                    Ok(fd) => {
                        sockets.push(Arc::new(Socket::from(fd)));
                        let slot = record.slots.get(i).copied().unwrap_or(i);
                        members.push(Member { slot, generation: record.generations.get(i).copied().unwrap_or(0) });
                    }
                    Err(e) => tracing::error!(addr = %bound, error = %e, "a handed-over socket is missing"),
                }
            }
            if sockets.is_empty() {
                continue;
            }
            tracing::info!(name = %record.name, addr = %bound, "listening (taken over from the previous image)");
            let group = Group::from_parts(sockets, members);
            listeners.push(Activated { name: record.name, bound, group, per_slot: record.per_slot });
        }
        Self::new(listeners, steering)
    }

    /// Duplicates of the sockets of process `generation` of `slot`, in listener order, and
    /// `LISTEN_FDNAMES`. A reuse-port socket is bound the first time a slot starts (a
    /// scale-up adds slots) and taken over by each next process of the slot, except a
    /// replacement started `beside` a running one: it gets a socket of its own, current once
    /// it takes over ([`promote`](Self::promote)).
    pub(crate) fn for_process(&self, slot: usize, generation: u64, beside: bool) -> io::Result<(Vec<OwnedFd>, String)> {
        let me = Member { slot, generation };
        let mut listeners = self.lock();
        let mut fds = Vec::with_capacity(listeners.len());
        let mut joined = false;
        for l in listeners.iter_mut() {
            let socket = if l.per_slot {
                let bound = &l.bound;
                let (socket, new) = l.group.socket_for(me, beside, || bind_one(bound, true, false).map(|(s, _)| s))?;
                joined |= new;
                socket
            } else {
                // Every listener has its socket: the shared one since `bind`.
                l.group.any().cloned().ok_or_else(|| io::Error::other("a listener without its socket"))?
            };
            fds.push(socket.as_fd().try_clone_to_owned()?);
        }
        drop(listeners);
        if joined {
            // A new member must not get connections before its worker is ready.
            self.steer();
        }
        let names = self.lock().iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(":");
        Ok((fds, names))
    }

    /// Process `generation` of `slot` took over: its sockets become the slot's current ones;
    /// returns whether an older process's own sockets are now steered out (to be emptied).
    pub(crate) fn promote(&self, slot: usize, generation: u64) -> bool {
        let mut retired = false;
        let mut closed = Vec::new();
        for l in self.lock().iter_mut().filter(|l| l.per_slot) {
            let (running, orphan) = l.group.promote(Member { slot, generation });
            retired |= running;
            // An old process that died before the replacement was ready: what waits on its
            // socket is reset when it closes.
            closed.extend(orphan);
        }
        drop(closed);
        self.steer();
        retired
    }

    /// Process `generation` of `slot` is gone: its own sockets close unless they are the
    /// slot's current ones (which the slot's next process takes over, queue and all).
    pub(crate) fn process_gone(&self, slot: usize, generation: u64) {
        let me = Member { slot, generation };
        let migrate = super::migrate::tcp_migrate_req() == Some(true);
        let closed: Vec<_> =
            self.lock().iter_mut().filter(|l| l.per_slot).filter_map(|l| l.group.process_gone(me, migrate)).collect();
        if !closed.is_empty() {
            drop(closed);
            // Closed first, then the programs index the groups as they now are.
            self.steer();
        }
    }

    /// The group of the listener named `name` (or the first) that `member`'s socket is in,
    /// for a connection pinned to it.
    ///
    /// # Errors
    ///
    /// No such listener, one that is not per slot (shared, Unix), or no socket of `member`.
    pub(crate) fn pinned_group(&self, name: Option<&str>, member: Member) -> Result<PinnedGroup, TargetError> {
        let listeners = self.lock();
        let found = match name {
            Some(name) => listeners.iter().find(|l| l.name == name),
            None => listeners.first(),
        };
        let Some(l) = found else { return Err(TargetError::NoListener(name.unwrap_or_default().to_string())) };
        let (ListenAddr::Tcp(addr), true) = (&l.bound, l.per_slot) else {
            return Err(TargetError::NotPerWorker(l.bound.to_string()));
        };
        if l.group.index_of(member).is_none() {
            return Err(TargetError::NoSocket {
                slot: member.slot,
                generation: member.generation,
                addr: l.bound.to_string(),
            });
        }
        Ok(PinnedGroup { pinning: Pinning::Steered { key: l.bound.to_string() }, addr: *addr })
    }

    /// Connections queued on process `generation` of `slot`'s own sockets.
    pub(crate) fn queued_on(&self, slot: usize, generation: u64) -> u32 {
        crate::routing::steer::queued_on(self.lock().iter().map(|l| &l.group), Member { slot, generation })
    }

    /// The cluster has stopped (its workers are gone): every socket closes here, so that the
    /// address is free for whoever binds it next (a tree restarting this program).
    pub(crate) fn close_all(&self) {
        let closed: Vec<Activated> = std::mem::take(&mut *self.lock());
        drop(closed);
    }

    /// Connections queued on every socket (every listener, every slot).
    pub(crate) fn waiting(&self) -> u32 {
        crate::routing::steer::queued_in_all(self.lock().iter().map(|l| &l.group))
    }

    /// Connections queued on any socket of `slot`.
    pub(crate) fn queued_in_slot(&self, slot: usize) -> u32 {
        crate::routing::steer::queued_in_slot(self.lock().iter().filter(|l| l.per_slot).map(|l| &l.group), slot)
    }

    /// A removed slot's worker is gone: its sockets leave their groups and close (what was
    /// still queued on them is reset: steered out before its worker drained, a socket keeps
    /// nothing unless that worker stopped taking connections). The caller steers again
    /// after: until then the old program's last index is out of range and the kernel picks.
    pub(crate) fn close_slot(&self, slot: usize) {
        for l in self.lock().iter_mut().filter(|l| l.per_slot && l.group.len() > 1) {
            drop(l.group.leave_slot(slot));
        }
    }

    /// The connections queued on each slot's reuse-port sockets.
    pub(crate) fn queued(&self) -> std::collections::BTreeMap<usize, u32> {
        crate::routing::steer::queued_by_slot(self.lock().iter().filter(|l| l.per_slot).map(|l| &l.group))
    }

    /// Whether this cluster has reuse-port groups to steer.
    pub(crate) fn steers(&self) -> bool {
        self.lock().iter().any(|l| l.per_slot)
    }

    /// Attaches each reuse-port group's program for the slots chosen now.
    pub(crate) fn steer(&self) {
        let listeners = self.lock();
        self.steer_locked(&listeners);
    }

    fn steer_locked(&self, listeners: &[Activated]) {
        let mut steering = self.steering();
        for l in listeners.iter().filter(|l| l.per_slot) {
            let v6 = matches!(&l.bound, ListenAddr::Tcp(a) if a.is_ipv6());
            steering.attach(&l.group, v6, &l.bound.to_string());
        }
    }
}

/// A listening socket for `addr`, **blocking** (the file status flag is shared with every
/// worker that inherits it, and programs expect systemd's blocking sockets), and the address
/// it is bound to. The `first` socket of an address is refused when another process
/// listens there already (`corral_protocol::bind_first`); later slots join its group.
fn bind_one(addr: &ListenAddr, reuse_port: bool, first: bool) -> io::Result<(Socket, ListenAddr)> {
    let socket = match addr {
        ListenAddr::Tcp(tcp) => {
            let mode = if reuse_port { BindMode::ReusePortListen } else { BindMode::Listen };
            let socket =
                if first { corral_protocol::bind_first(*tcp, mode)? } else { corral_protocol::bind(*tcp, mode)? };
            let bound = socket.local_addr()?.as_socket().map(ListenAddr::Tcp).unwrap_or_else(|| addr.clone());
            socket.set_nonblocking(false)?;
            return Ok((socket, bound));
        }
        ListenAddr::Unix(path) => {
            // A socket file left by an earlier run is replaced; anything else is refused.
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                use std::os::unix::fs::FileTypeExt;
                if meta.file_type().is_socket() {
                    std::fs::remove_file(path)?;
                }
            }
            let socket = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)?;
            socket.bind(&SockAddr::unix(path)?)?;
            socket.listen(corral_protocol::BACKLOG)?;
            socket
        }
    };
    Ok((socket, addr.clone()))
}
