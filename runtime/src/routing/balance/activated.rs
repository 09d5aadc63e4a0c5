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
use crate::config::foreign::{ListenAddr, ListenSpec};
use crate::routing::steer::group::Group;
use crate::routing::steer::{SlotSteering, Steering};
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
        group.joined(0, socket);
        Activated { name, bound, group, per_slot: false }
    }
}

/// Every listener of a foreign cluster, and the steering of its reuse-port groups.
pub(crate) struct ActivatedSockets {
    listeners: Mutex<Vec<Activated>>,
    steering: Mutex<Steering>,
}

impl ActivatedSockets {
    /// Binds every listener (slot 0's socket, for reuse-port), so that a bad address stops the
    /// cluster before anything is forked.
    pub(crate) fn bind(specs: &[ListenSpec], reuse_port: bool) -> Result<Self, ListenRefusal> {
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
        Ok(Self::new(listeners))
    }

    fn new(listeners: Vec<Activated>) -> Self {
        let sockets = ActivatedSockets { listeners: Mutex::new(listeners), steering: Mutex::new(Steering::default()) };
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
            let (mut fds, mut slots) = (Vec::with_capacity(l.group.len()), Vec::with_capacity(l.group.len()));
            for (slot, socket) in l.group.iter() {
                fds.push(kept.keep(socket.as_fd().try_clone_to_owned()?));
                slots.push(slot);
            }
            let (tcp, unix) = match &l.bound {
                ListenAddr::Tcp(addr) => (Some(*addr), None),
                ListenAddr::Unix(path) => (None, Some(path.clone())),
            };
            records.push(ActivatedRecord { name: l.name.clone(), tcp, unix, fds, slots, per_slot: l.per_slot });
        }
        Ok(records)
    }

    /// The sockets the previous image handed over (an upgrade), in the kernel's order.
    pub(crate) fn adopt(records: Vec<ActivatedRecord>, fds: &mut Fds) -> Self {
        let mut listeners = Vec::with_capacity(records.len());
        for record in records {
            let bound = match (record.tcp, record.unix) {
                (Some(addr), _) => ListenAddr::Tcp(addr),
                (None, Some(path)) => ListenAddr::Unix(path),
                (None, None) => continue,
            };
            let (mut sockets, mut slots) = (Vec::with_capacity(record.fds.len()), Vec::new());
            for (i, raw) in record.fds.into_iter().enumerate() {
                match fds.take(raw) {
                    Ok(fd) => {
                        sockets.push(Arc::new(Socket::from(fd)));
                        slots.push(record.slots.get(i).copied().unwrap_or(i));
                    }
                    Err(e) => tracing::error!(addr = %bound, error = %e, "a handed-over socket is missing"),
                }
            }
            if sockets.is_empty() {
                continue;
            }
            tracing::info!(name = %record.name, addr = %bound, "listening (taken over from the previous image)");
            let group = Group::from_parts(sockets, slots);
            listeners.push(Activated { name: record.name, bound, group, per_slot: record.per_slot });
        }
        Self::new(listeners)
    }

    /// Duplicates of `slot`'s sockets, in listener order, and `LISTEN_FDNAMES`. A slot's
    /// reuse-port sockets are bound the first time it starts (a scale-up adds slots).
    pub(crate) fn for_slot(&self, slot: usize) -> io::Result<(Vec<OwnedFd>, String)> {
        let mut listeners = self.lock();
        let mut fds = Vec::with_capacity(listeners.len());
        let mut joined = false;
        for l in listeners.iter_mut() {
            let socket = if l.per_slot {
                if l.group.socket(slot).is_none() {
                    let (socket, _) = bind_one(&l.bound, true, false)?;
                    l.group.joined(slot, Arc::new(socket));
                    joined = true;
                }
                l.group.socket(slot)
            } else {
                l.group.any()
            };
            // Every listener has its socket: bound above, or the shared one since `bind`.
            let Some(socket) = socket else { return Err(io::Error::other("a listener without its socket")) };
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

    /// Whether any worker of `slot` takes new connections: its sockets are steered in or out.
    pub(crate) fn set_accepting(&self, slot: usize, accepting: bool) {
        if self.steering().set_accepting(slot, accepting) {
            self.steer();
        }
    }

    /// Steers by the client's address (sticky; `Some(port bits)`) or by the flow hash.
    pub(crate) fn set_client_key(&self, port_bits: Option<u8>) {
        self.steering().set_client_key(port_bits);
        self.steer();
    }

    /// `slot` is being removed (a scale-down): no new connection goes to its sockets.
    pub(crate) fn remove_slot(&self, slot: usize) {
        if self.steering().set_removed(slot, true) {
            self.steer();
        }
    }

    /// A removed slot's worker is gone: its sockets leave their groups (what was still
    /// queued on them is reset: steered out before its worker drained, a socket keeps nothing
    /// unless that worker stopped taking connections).
    pub(crate) fn close_slot(&self, slot: usize) {
        let mut closed = Vec::new();
        {
            let mut listeners = self.lock();
            for l in listeners.iter_mut().filter(|l| l.per_slot && l.group.len() > 1) {
                if let Some(socket) = l.group.leave(slot) {
                    closed.push(socket);
                }
            }
            // The programs must index the groups as they are after the close: replaced first
            // (nothing chose this slot's socket already), then the sockets close.
            self.steering().set_removed(slot, false);
            self.steer_locked(&listeners);
        }
        drop(closed);
    }

    /// The slots steered out now, and every slot's queued connections (reuse-port).
    pub(crate) fn queues(&self) -> Vec<SlotSteering> {
        let listeners = self.lock();
        let steering = self.steering();
        steering.report(listeners.iter().filter(|l| l.per_slot).map(|l| &l.group))
    }

    /// Reads every reuse-port socket's accept queue: a slot whose queue stays non-empty is
    /// steered out until it empties (called every [`MONITOR_EVERY`](crate::routing::steer::MONITOR_EVERY)).
    pub(crate) fn monitor(&self) {
        let changed = {
            let listeners = self.lock();
            let mut steering = self.steering();
            steering.sample(listeners.iter().filter(|l| l.per_slot).map(|l| &l.group), std::time::Instant::now())
        };
        if changed {
            self.steer();
        }
    }

    /// Whether this cluster has reuse-port groups to steer.
    pub(crate) fn steers(&self) -> bool {
        self.lock().iter().any(|l| l.per_slot)
    }

    /// Attaches each reuse-port group's program for the slots chosen now.
    fn steer(&self) {
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
