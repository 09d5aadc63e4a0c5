//! The sockets of a foreign cluster: bound by the primary before any worker starts, passed to
//! every worker by socket activation, never accepted on by the primary.
//!
//! Shared scheduling: one socket per listener, the same for every worker. Reuse-port: one
//! `SO_REUSEPORT` socket per listener **per slot**, which the primary keeps open, so that a
//! restarted or reloaded slot's replacement inherits the same accept queue and no queued
//! connection is reset. (Unix sockets have no reuse-port groups: they are always shared.)

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};

use corral_protocol::{BindMode, ListenRefusal};
use socket2::{Domain, SockAddr, Socket, Type};

use super::inherited;
use crate::config::foreign::{ListenAddr, ListenSpec};
use crate::upgrade::state::{ActivatedRecord, Fds, Kept};

/// One listener: its name, where it is bound, and its sockets.
struct Activated {
    name: String,
    /// The bound address (port 0 resolved), as `listening on` prints it.
    bound: ListenAddr,
    /// Shared: the one socket. Reuse-port: one per slot, by slot index.
    sockets: Vec<Arc<Socket>>,
    per_slot: bool,
}

/// Every listener of a foreign cluster.
pub(crate) struct ActivatedSockets {
    listeners: Mutex<Vec<Activated>>,
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
                listeners.push(Activated {
                    name: passed.name.clone(),
                    bound,
                    sockets: vec![passed.socket.clone()],
                    per_slot: false,
                });
            }
        }
        for spec in specs {
            if let Some(passed) = inherited::find(Some(&spec.name), &spec.addr) {
                let bound = passed.addr.clone().unwrap_or_else(|| spec.addr.clone());
                if reuse_port {
                    tracing::info!(addr = %bound, "a passed socket is shared by every slot (it is no reuse-port group)");
                }
                listeners.push(Activated {
                    name: spec.name.clone(),
                    bound,
                    sockets: vec![passed.socket.clone()],
                    per_slot: false,
                });
                continue;
            }
            let per_slot = reuse_port && matches!(spec.addr, ListenAddr::Tcp(_));
            let (socket, bound) =
                bind_one(&spec.addr, per_slot, true).map_err(|e| ListenRefusal::bind(&spec.addr.to_string(), &e))?;
            tracing::info!(name = %spec.name, addr = %bound, per_slot, "listening (socket activation)");
            listeners.push(Activated { name: spec.name.clone(), bound, sockets: vec![Arc::new(socket)], per_slot });
        }
        Ok(ActivatedSockets { listeners: Mutex::new(listeners) })
    }

    /// Every listener's name and bound address, in order.
    pub(crate) fn bound(&self) -> Vec<(String, ListenAddr)> {
        self.lock().iter().map(|l| (l.name.clone(), l.bound.clone())).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Activated>> {
        // Every update pushes whole sockets, so a poisoned lock is still consistent.
        self.listeners.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Duplicates of `slot`'s sockets, in listener order, and `LISTEN_FDNAMES`. A slot's
    /// reuse-port sockets are bound the first time it starts (a scale-up adds slots).
    /// Every socket, kept open for the primary's next image (an upgrade).
    pub(crate) fn hand_over(&self, kept: &mut Kept) -> io::Result<Vec<ActivatedRecord>> {
        let mut records = Vec::new();
        for l in self.lock().iter() {
            let mut fds = Vec::with_capacity(l.sockets.len());
            for socket in &l.sockets {
                fds.push(kept.keep(socket.as_fd().try_clone_to_owned()?));
            }
            let (tcp, unix) = match &l.bound {
                ListenAddr::Tcp(addr) => (Some(*addr), None),
                ListenAddr::Unix(path) => (None, Some(path.clone())),
            };
            records.push(ActivatedRecord { name: l.name.clone(), tcp, unix, fds, per_slot: l.per_slot });
        }
        Ok(records)
    }

    /// The sockets the previous image handed over (an upgrade).
    pub(crate) fn adopt(records: Vec<ActivatedRecord>, fds: &mut Fds) -> Self {
        let mut listeners = Vec::with_capacity(records.len());
        for record in records {
            let bound = match (record.tcp, record.unix) {
                (Some(addr), _) => ListenAddr::Tcp(addr),
                (None, Some(path)) => ListenAddr::Unix(path),
                (None, None) => continue,
            };
            let mut sockets = Vec::with_capacity(record.fds.len());
            for raw in record.fds {
                match fds.take(raw) {
                    Ok(fd) => sockets.push(Arc::new(Socket::from(fd))),
                    Err(e) => tracing::error!(addr = %bound, error = %e, "a handed-over socket is missing"),
                }
            }
            if sockets.is_empty() {
                continue;
            }
            tracing::info!(name = %record.name, addr = %bound, "listening (taken over from the previous image)");
            listeners.push(Activated { name: record.name, bound, sockets, per_slot: record.per_slot });
        }
        ActivatedSockets { listeners: Mutex::new(listeners) }
    }

    pub(crate) fn for_slot(&self, slot: usize) -> io::Result<(Vec<OwnedFd>, String)> {
        let mut listeners = self.lock();
        let mut fds = Vec::with_capacity(listeners.len());
        for l in listeners.iter_mut() {
            let socket = if l.per_slot {
                while l.sockets.len() <= slot {
                    let (socket, _) = bind_one(&l.bound, true, false)?;
                    l.sockets.push(Arc::new(socket));
                }
                &l.sockets[slot]
            } else {
                &l.sockets[0]
            };
            fds.push(socket.as_fd().try_clone_to_owned()?);
        }
        let names = listeners.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(":");
        Ok((fds, names))
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
