//! One address the primary listens on, and the worker processes registered on it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use socket2::Socket;
use tokio::sync::Notify;

use super::counts::ConnectionCounts;
use super::live_key::LiveKey;
use super::strategy::Strategy;
use super::target::Target;
use crate::routing::steer::group::{Group, Member};
use crate::routing::steer::pins::PinsFull;

/// One bound address, shared by every worker of the cluster.
pub(crate) struct SharedListener {
    pub addr: SocketAddr,
    pub socket: Socket,
    /// Passed by the service manager (adopted, not bound by us).
    pub passed: bool,
    targets: Mutex<Vec<Target>>,
    /// Woken when a target becomes ready (or is added).
    pub changed: Notify,
    turn: AtomicUsize,
    /// The acceptor's strategy (round robin, least connections, sticky), set when it starts.
    pub strategy: std::sync::OnceLock<Strategy>,
    /// What the acceptor did with the connections.
    pub counts: ConnectionCounts,
    /// The cluster's sticky key in force (sticky scheduling).
    sticky_key: Arc<LiveKey>,
    /// Reuse-port: each slot's own listening socket, owned here and passed to the slot's
    /// workers, so a restarted process inherits the queue; a replacement started beside a
    /// running process has its own until it takes over (in the kernel's order, for steering).
    group: Mutex<Group>,
    /// Primary-accept: connections the primary itself opened to one chosen worker (health
    /// probes), by their source address, each dispatched to that worker whatever the
    /// strategy says.
    pinned: Mutex<HashMap<SocketAddr, Member>>,
    /// How many are pinned (read on every accept without the lock).
    pinned_count: AtomicUsize,
}

/// The most probe connections pinned on one primary-accept listener at once.
const MAX_PINNED_PEERS: usize = 256;

impl SharedListener {
    pub(crate) fn new(addr: SocketAddr, socket: Socket, passed: bool, sticky_key: Arc<LiveKey>) -> Self {
        SharedListener {
            addr,
            socket,
            passed,
            targets: Mutex::new(Vec::new()),
            changed: Notify::new(),
            turn: AtomicUsize::new(0),
            strategy: std::sync::OnceLock::new(),
            counts: ConnectionCounts::default(),
            sticky_key,
            group: Mutex::new(Group::default()),
            pinned: Mutex::new(HashMap::new()),
            pinned_count: AtomicUsize::new(0),
        }
    }

    /// The reuse-port sockets, by slot (a poisoned lock still holds whole sockets).
    pub(crate) fn group(&self) -> std::sync::MutexGuard<'_, Group> {
        self.group.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The reuse-port socket of process `member` (bound and joined to the group when it is
    /// new: the slot's first process, or a replacement started beside a running one; `true`
    /// then). A restarted process takes its slot's socket over, queue and all.
    ///
    /// # Errors
    ///
    /// The socket cannot be bound.
    pub(crate) fn socket_for(&self, member: Member) -> std::io::Result<(Arc<Socket>, bool)> {
        let mut group = self.group();
        let beside = group.runs_beside(member);
        group
            .socket_for(member, beside, || corral_protocol::bind(self.addr, corral_protocol::BindMode::ReusePortListen))
    }

    fn with_targets<T>(&self, f: impl FnOnce(&mut Vec<Target>) -> T) -> T {
        // Every update leaves the vector consistent, so a poisoned lock is still usable.
        f(&mut self.targets.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The target for the next connection, from `peer`, by `strategy`; `None` if no target
    /// is ready.
    pub(crate) fn pick(&self, strategy: Strategy, peer: SocketAddr) -> Option<Target> {
        if self.pinned_count.load(Ordering::Acquire) > 0
            && let Some(member) = self.take_pin(peer)
        {
            // A probe of one worker: that worker, ready or not.
            let target = self.with_targets(|targets| {
                targets.iter().find(|t| t.slot == member.slot && t.generation == member.generation).cloned()
            });
            if target.is_some() {
                return target;
            }
        }
        self.with_targets(|targets| {
            let ready: Vec<&Target> = targets.iter().filter(|t| t.is_accepting()).collect();
            // A worker that has stopped taking its connections is skipped until it catches
            // up, unless every ready worker has (then they all share the wait).
            let fed: Vec<&Target> = ready.iter().copied().filter(|t| !t.untaken.is_stalled()).collect();
            let turn = self.turn.fetch_add(1, Ordering::Relaxed);
            strategy.pick(if fed.is_empty() { &ready } else { &fed }, turn, peer, self.sticky_key.get()).cloned()
        })
    }

    /// Pins the connection the primary opens from `source` to `member` (primary-accept):
    /// the accept loop hands it to that worker.
    ///
    /// # Errors
    ///
    /// [`PinsFull`] when too many are pinned already.
    pub(crate) fn pin_peer(&self, source: SocketAddr, member: Member) -> Result<(), PinsFull> {
        let mut pinned = self.lock_pinned();
        if pinned.len() >= MAX_PINNED_PEERS {
            return Err(PinsFull);
        }
        pinned.insert(source, member);
        self.pinned_count.store(pinned.len(), Ordering::Release);
        Ok(())
    }

    /// Forgets the pin of `source` (its connection failed, or was never made).
    pub(crate) fn unpin_peer(&self, source: SocketAddr) {
        let _ = self.take_pin(source);
    }

    fn take_pin(&self, source: SocketAddr) -> Option<Member> {
        let mut pinned = self.lock_pinned();
        let member = pinned.remove(&source);
        self.pinned_count.store(pinned.len(), Ordering::Release);
        member
    }

    fn lock_pinned(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Member>> {
        // Whole entries are inserted and removed: a poisoned map is still consistent.
        self.pinned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections that wait: in this listener's accept queues (its own socket and every
    /// reuse-port socket of its group), and handed to a worker that has not taken them yet.
    pub(crate) fn waiting(&self) -> u32 {
        use std::os::fd::AsFd;
        let own = crate::routing::steer::queue::accept_queue(self.socket.as_fd()).unwrap_or(0);
        let group = crate::routing::steer::queued_in_all(std::iter::once(&*self.group()));
        let untaken: usize = self.with_targets(|targets| targets.iter().map(|t| t.untaken.len()).sum());
        own + group + u32::try_from(untaken).unwrap_or(u32::MAX)
    }

    /// Registers a worker process (it gets connections once it is accepting).
    pub(crate) fn register(&self, target: Target) {
        self.with_targets(|t| t.push(target));
        self.changed.notify_waiters();
    }

    /// Who is registered, for an upgrade's handover.
    pub(crate) fn target_records(&self) -> Vec<crate::upgrade::state::TargetRecord> {
        self.with_targets(|targets| {
            targets
                .iter()
                .map(|t| crate::upgrade::state::TargetRecord {
                    slot: t.slot,
                    generation: t.generation,
                    listen_id: t.listen_id,
                })
                .collect()
        })
    }

    /// Forgets a worker process that is gone: the connections it never took are handed out
    /// again.
    pub(crate) fn remove(&self, slot: usize, generation: u64) {
        self.with_targets(|targets| {
            targets.retain(|t| {
                let gone = t.slot == slot && t.generation == generation;
                if gone {
                    t.untaken.worker_gone();
                }
                !gone
            })
        });
    }
}
