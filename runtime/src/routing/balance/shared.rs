//! One address the primary listens on, and the worker processes registered on it.

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
}

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
        self.with_targets(|targets| {
            let ready: Vec<&Target> = targets.iter().filter(|t| t.is_accepting()).collect();
            // A worker that has stopped taking its connections is skipped until it catches
            // up, unless every ready worker has (then they all share the wait).
            let fed: Vec<&Target> = ready.iter().copied().filter(|t| !t.untaken.is_stalled()).collect();
            let turn = self.turn.fetch_add(1, Ordering::Relaxed);
            strategy.pick(if fed.is_empty() { &ready } else { &fed }, turn, peer, self.sticky_key.get()).cloned()
        })
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
