//! Shared listening sockets and the distribution of connections to workers.
//!
//! The primary owns one socket per address: the first `listen` binds it (port 0 resolves
//! once), every later one, from any worker or restarted worker, shares it, so restarts never
//! hit `EADDRINUSE`. The cluster's [`Scheduling`] is read once, into a [`Distribution`]
//! (the sticky key is not: a reload may change it, for the connections accepted after it):
//!
//! * `Accept(strategy)` (round robin, least connections, sticky): [`accept_loop`] accepts
//!   each connection and passes its fd to a **ready** worker the [`Strategy`] picks (sticky:
//!   the ready worker whose slot owns the client's [`StickyKey`](crate::config::sticky_key::StickyKey), by
//!   rendezvous hashing; the key in force is a `LiveKey`). A hand-off
//!   that fails (the worker just died) goes to another worker; while no worker is ready the
//!   acceptor waits, and connections wait in the kernel's backlog.
//! * `PassListener` (shared): the listening fd itself is passed; workers accept.
//! * `ReusePort`: each worker binds its own `SO_REUSEPORT` socket; the primary keeps one bound
//!   but not listening (so the kernel never queues a connection on it) to hold the port.
//!
//! One connection, one hop per room: `accept.rs` (accept, pick, pass the fd) → the worker's
//! handle channel (`corral-protocol`) → the worker's `Listener` (`corral-workers`).

mod accept;
mod activated;
mod counts;
mod inherited;
mod live_key;
mod migrate;
mod shared;
mod strategy;
mod target;
pub(crate) mod targeted;
mod untaken;

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use corral_protocol::{HandleHeader, HandleKind, ListenGrant, ListenRefusal, ProtocolError, Scheduling};
use tokio_util::sync::CancellationToken;

use crate::config::foreign::{ListenAddr, ListenSpec};
use crate::routing::steer::group::Member;
use crate::routing::steer::{self, MONITOR_EVERY, Steering};
use crate::upgrade::state::{ActivatedRecord, Fds, Kept, ListenerRecord, TargetRecord};

use accept::accept_loop;
use activated::ActivatedSockets;
pub use counts::ListenerCounts;
use live_key::LiveKey;
use shared::SharedListener;
use strategy::Distribution;
pub(crate) use target::{Load, Target};
pub(crate) use untaken::Untaken;

/// Every listener of a cluster, by requested and by resolved address.
pub(crate) struct Listeners {
    scheduling: Scheduling,
    distribution: Distribution,
    by_addr: Arc<Mutex<HashMap<String, Arc<SharedListener>>>>,
    /// Whether the accept queues are being watched.
    watching: std::sync::atomic::AtomicBool,
    /// Cancelled when the cluster stops: acceptors hand out their backlog, then close.
    closing: CancellationToken,
    acceptors: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// A foreign cluster's sockets (socket activation).
    activated: std::sync::OnceLock<Arc<ActivatedSockets>>,
    /// The sticky key in force, shared by every listener (a reload may change it).
    sticky_key: Arc<LiveKey>,
    /// Which slots the reuse-port groups steer new connections to.
    steering: Arc<Mutex<Steering>>,
}

impl Listeners {
    pub(crate) fn new(scheduling: Scheduling, sticky_key: crate::config::sticky_key::StickyKey) -> Self {
        Listeners {
            scheduling,
            distribution: Distribution::of(scheduling),
            sticky_key: Arc::new(LiveKey::new(sticky_key)),
            by_addr: Arc::new(Mutex::new(HashMap::new())),
            watching: std::sync::atomic::AtomicBool::new(false),
            closing: CancellationToken::new(),
            acceptors: Mutex::new(Vec::new()),
            activated: std::sync::OnceLock::new(),
            steering: Arc::new(Mutex::new(Steering::default())),
        }
    }

    /// Steers the reuse-port groups by the client's address (the sticky key) rather than the
    /// flow hash (a library cluster's `steer_by_client`).
    pub(crate) fn steer_by_client(&self) {
        let port_bits = self.sticky_key.get().port_bits();
        self.steer_with(|s| {
            s.set_client_key(Some(port_bits));
            true
        });
    }

    /// Places connections accepted from now on by `key` (sticky scheduling; a reload's new
    /// configuration). Connections already handed out stay with their workers.
    pub(crate) fn set_sticky_key(&self, key: crate::config::sticky_key::StickyKey) {
        let old = self.sticky_key.get();
        if old != key {
            self.sticky_key.set(key);
            if self.lock_steering().by_client() {
                self.steer_with(|s| {
                    s.set_client_key(Some(key.port_bits()));
                    true
                });
            }
            tracing::info!(%old, new = %key, "sticky key changed; new connections are placed by it");
        }
    }

    /// Binds a foreign cluster's listeners, before any worker starts.
    ///
    /// # Errors
    ///
    /// The first listener that cannot be bound, named.
    pub(crate) fn bind_activated(&self, specs: &[ListenSpec]) -> Result<(), ListenRefusal> {
        // A foreign program accepts itself: sticky is a steered reuse-port group, by client.
        let sticky = self.scheduling == Scheduling::Sticky;
        if sticky {
            self.lock_steering().set_client_key(Some(self.sticky_key.get().port_bits()));
        }
        let reuse_port = sticky || self.distribution == Distribution::ReusePort;
        let sockets = ActivatedSockets::bind(specs, reuse_port, self.steering.clone())?;
        self.set_activated(sockets);
        Ok(())
    }

    /// Keeps a foreign cluster's sockets (bound once, by the cluster before its slots exist,
    /// or taken over).
    fn set_activated(&self, sockets: ActivatedSockets) {
        let steers = sockets.steers();
        let _ = self.activated.set(Arc::new(sockets));
        if steers {
            self.watch_queues();
        }
    }

    /// Reads every reuse-port group's accept queues every [`MONITOR_EVERY`] (once per
    /// cluster), until the cluster stops or hands over.
    fn watch_queues(&self) {
        if self.watching.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let (steering, closing) = (self.steering.clone(), self.closing.clone());
        let (activated, map) = (self.activated.get().cloned(), Arc::downgrade(&self.by_addr));
        tokio::spawn(async move {
            let mut every = tokio::time::interval(MONITOR_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = closing.cancelled() => return,
                    _ = every.tick() => {}
                }
                let shared = map.upgrade().map(|m| groups_of(&m)).unwrap_or_default();
                let mut queued = activated.as_ref().map(|a| a.queued()).unwrap_or_default();
                for listener in &shared {
                    for (slot, n) in steer::queued_by_slot(std::iter::once(&*listener.group())) {
                        *queued.entry(slot).or_insert(0) += n;
                    }
                }
                let changed =
                    steering.lock().unwrap_or_else(PoisonError::into_inner).sample(&queued, std::time::Instant::now());
                if changed {
                    resteer(&steering, activated.as_deref(), &shared);
                }
            }
        });
    }

    fn lock_steering(&self) -> std::sync::MutexGuard<'_, Steering> {
        // Every update replaces whole sets, so a poisoned lock is still consistent.
        self.steering.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the steering state; when `change` says it changed, every group is steered again.
    fn steer_with(&self, change: impl FnOnce(&mut Steering) -> bool) {
        if change(&mut self.lock_steering()) {
            resteer(&self.steering, self.activated.get().map(|a| &**a), &groups_of(&self.by_addr));
        }
    }

    /// Whether a worker of `slot` takes new connections: a reuse-port group steers its
    /// sockets in or out.
    pub(crate) fn steer_accepting(&self, slot: usize, accepting: bool) {
        self.steer_with(|s| s.set_accepting(slot, accepting));
    }

    /// `slot` is being removed (a scale-down): its sockets get no new connection.
    pub(crate) fn steer_out_removed(&self, slot: usize) {
        self.steer_with(|s| s.set_removed(slot, true));
    }

    /// Connections that wait, over every socket the primary owns: in accept queues, and
    /// handed to a worker that has not taken them yet (primary-accept). What the autoscaler
    /// reads as saturation.
    pub(crate) fn waiting(&self) -> u32 {
        let mut listeners = self.all();
        // One listener may be in the map under several keys (asked-for and bound address).
        listeners.sort_by_key(Arc::as_ptr);
        listeners.dedup_by(|a, b| Arc::ptr_eq(a, b));
        let activated = self.activated.get().map_or(0, |a| a.waiting());
        activated.saturating_add(listeners.iter().map(|l| l.waiting()).fold(0, u32::saturating_add))
    }

    /// Connections queued on `slot`'s own reuse-port sockets (0 where it has none).
    pub(crate) fn queued(&self, slot: usize) -> u32 {
        let mut n = self.activated.get().map_or(0, |a| a.queued_in_slot(slot));
        for listener in groups_of(&self.by_addr) {
            n += steer::queued_in_slot(std::iter::once(&*listener.group()), slot);
        }
        n
    }

    /// `slot`'s steering (reuse-port groups only).
    pub(crate) fn steering_of(&self, slot: usize) -> Option<crate::routing::steer::SlotSteering> {
        let mut groups: Vec<crate::routing::steer::SlotSteering> = Vec::new();
        let steering = self.lock_steering();
        if let Some(activated) = self.activated.get() {
            groups.extend(steering.report_counts(&activated.queued()));
        }
        for listener in groups_of(&self.by_addr) {
            groups.extend(steering.report_counts(&steer::queued_by_slot(std::iter::once(&*listener.group()))));
        }
        let mine: Vec<_> = groups.into_iter().filter(|s| s.slot == slot).collect();
        let first = mine.first()?;
        Some(crate::routing::steer::SlotSteering {
            slot,
            steered_in: first.steered_in,
            queued: mine.iter().map(|s| s.queued).sum(),
        })
    }

    /// A removed slot has ended: its own reuse-port sockets close, then every group is
    /// steered again.
    pub(crate) fn close_slot(&self, slot: usize) {
        if let Some(sockets) = self.activated.get() {
            sockets.close_slot(slot);
        }
        for listener in groups_of(&self.by_addr) {
            let mut group = listener.group();
            if group.len() > 1 {
                drop(group.leave_slot(slot));
            }
        }
        self.steer_with(|s| {
            s.set_removed(slot, false);
            true
        });
    }

    /// A foreign worker's sockets (process `generation` of `slot`, started `beside` a running
    /// process of the slot when it replaces one), in order, and their `LISTEN_FDNAMES`.
    ///
    /// # Errors
    ///
    /// A slot's own reuse-port socket cannot be bound or a socket cannot be duplicated.
    pub(crate) fn activation(
        &self,
        slot: usize,
        generation: u64,
        beside: bool,
    ) -> std::io::Result<(Vec<std::os::fd::OwnedFd>, String)> {
        match self.activated.get() {
            Some(sockets) => sockets.for_process(slot, generation, beside),
            None => Ok((Vec::new(), String::new())),
        }
    }

    /// Process `generation` of `slot` took over from an older one: its own reuse-port sockets
    /// get the slot's new connections; `true` when the older process had sockets of its own,
    /// now steered out, which it should empty before it is told to drain.
    pub(crate) fn promote(&self, slot: usize, generation: u64) -> bool {
        let mut retired = self.activated.get().is_some_and(|a| a.promote(slot, generation));
        let groups = groups_of(&self.by_addr);
        if !groups.is_empty() {
            let mut closed = Vec::new();
            for listener in &groups {
                let (running, orphan) = listener.group().promote(Member { slot, generation });
                retired |= running;
                closed.extend(orphan);
            }
            drop(closed);
            self.steer_with(|_| true);
        }
        retired
    }

    /// Process `generation` of `slot` is gone: its own reuse-port sockets close, unless its
    /// slot's next process takes them over.
    pub(crate) fn process_gone(&self, slot: usize, generation: u64) {
        if let Some(activated) = self.activated.get() {
            activated.process_gone(slot, generation);
        }
        let me = Member { slot, generation };
        let migrate = migrate::tcp_migrate_req() == Some(true);
        let closed: Vec<_> =
            groups_of(&self.by_addr).iter().filter_map(|l| l.group().process_gone(me, migrate)).collect();
        if !closed.is_empty() {
            drop(closed);
            // Closed first, then the programs index the groups as they now are.
            self.steer_with(|_| true);
        }
    }

    /// Connections queued on the own reuse-port sockets of process `generation` of `slot`.
    pub(crate) fn queued_on(&self, slot: usize, generation: u64) -> u32 {
        let me = Member { slot, generation };
        let groups = groups_of(&self.by_addr);
        self.activated.get().map_or(0, |a| a.queued_on(slot, generation))
            + groups.iter().map(|l| steer::queued_on(std::iter::once(&*l.group()), me)).sum::<u32>()
    }

    /// A foreign cluster's listeners: names and bound addresses, in order.
    pub(crate) fn activated(&self) -> Vec<(String, ListenAddr)> {
        self.activated.get().map(|s| s.bound()).unwrap_or_default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SharedListener>>> {
        // Every update inserts or clears whole entries, so a poisoned lock is still usable.
        self.by_addr.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Grants a worker's listen request: binds (or shares) the address and gives the worker
    /// its connections as the distribution requires. Returns the bound address and the grant
    /// to send back.
    ///
    /// # Errors
    ///
    /// The refusal to send back: the address does not resolve, binding fails (in use, not
    /// permitted), or the socket cannot be passed to the worker.
    pub(crate) async fn grant(
        &self,
        requested: &str,
        target: Target,
    ) -> Result<(SocketAddr, ListenGrant), ListenRefusal> {
        let listener = self.listener(requested)?;
        if self.distribution == Distribution::ReusePort && !listener.passed {
            migrate::hint_once();
        }
        let (distribution, scheduling) = match self.distribution {
            Distribution::ReusePort if listener.passed => (Distribution::PassListener, Scheduling::Shared),
            other => (other, self.scheduling),
        };
        match distribution {
            Distribution::Accept(_) => listener.register(target),
            Distribution::PassListener => {
                let header = HandleHeader {
                    id: target.listen_id,
                    kind: HandleKind::Listener { addr: listener.addr.to_string() },
                    trace: None,
                };
                target.channel.send(&header, listener.socket.as_fd()).await.map_err(|e| ListenRefusal::Pass {
                    addr: requested.to_string(),
                    errno: match &e {
                        ProtocolError::Io(io) => io.raw_os_error().unwrap_or(libc::EIO),
                        _ => libc::EIO,
                    },
                })?;
            }
            Distribution::ReusePort => {
                let member = Member { slot: target.slot, generation: target.generation };
                let (socket, joined) = listener.socket_for(member).map_err(|e| ListenRefusal::bind(requested, &e))?;
                if joined {
                    // A new member gets no connection before its worker is ready.
                    self.steer_with(|_| true);
                    self.watch_queues();
                }
                let header = HandleHeader {
                    id: target.listen_id,
                    kind: HandleKind::Listener { addr: listener.addr.to_string() },
                    trace: None,
                };
                target.channel.send(&header, socket.as_fd()).await.map_err(|e| ListenRefusal::Pass {
                    addr: requested.to_string(),
                    errno: match &e {
                        ProtocolError::Io(io) => io.raw_os_error().unwrap_or(libc::EIO),
                        _ => libc::EIO,
                    },
                })?;
            }
        }
        Ok((listener.addr, ListenGrant { addr: listener.addr.to_string(), scheduling }))
    }

    /// The listener for `requested`, bound now if it is the first request for it.
    fn listener(&self, requested: &str) -> Result<Arc<SharedListener>, ListenRefusal> {
        let mut map = self.map();
        if let Some(existing) = map.get(requested) {
            return Ok(existing.clone());
        }
        let addr = resolve(requested)?;
        // A second request for the resolved address (e.g. "127.0.0.1:41234" after
        // "127.0.0.1:0" bound it) shares the same socket.
        if addr.port() != 0
            && let Some(existing) = map.values().find(|l| l.addr == addr)
        {
            let existing = existing.clone();
            map.insert(requested.to_string(), existing.clone());
            return Ok(existing);
        }
        let refused = |e: std::io::Error| ListenRefusal::bind(requested, &e);
        let passed = inherited::find(None, &ListenAddr::Tcp(addr));
        let socket = match passed {
            // A socket passed by the service manager: adopted, not bound (it has no
            // reuse-port group, so reuse-port workers share it).
            Some(passed) => {
                let socket = passed.socket.try_clone().map_err(refused)?;
                socket.set_nonblocking(true).map_err(refused)?;
                socket
            }
            // The cluster's first socket on it: refused when another process listens there.
            None => corral_protocol::bind_first(addr, self.distribution.bind_mode()).map_err(refused)?,
        };
        let bound = socket
            .local_addr()
            .map_err(refused)?
            .as_socket()
            .ok_or(ListenRefusal::NoAddress { addr: requested.to_string() })?;
        let listener = Arc::new(SharedListener::new(bound, socket, passed.is_some(), self.sticky_key.clone()));
        if let Distribution::Accept(strategy) = self.distribution {
            let std_listener: std::net::TcpListener = listener.socket.try_clone().map_err(refused)?.into();
            let acceptor = tokio::net::TcpListener::from_std(std_listener).map_err(refused)?;
            let task = tokio::spawn(accept_loop(acceptor, listener.clone(), strategy, self.closing.clone()));
            self.acceptors.lock().unwrap_or_else(PoisonError::into_inner).push(task);
        }
        map.insert(requested.to_string(), listener.clone());
        tracing::info!(%requested, addr = %bound, scheduling = ?self.scheduling, "listening");
        Ok(listener)
    }

    /// Stops listening: every acceptor hands the connections already in its backlog to the
    /// workers (still accepting at this point), then every listening socket closes, so that
    /// later connection attempts are refused instead of queued and reset.
    pub(crate) async fn close_all(&self) {
        self.closing.cancel();
        let acceptors = std::mem::take(&mut *self.acceptors.lock().unwrap_or_else(PoisonError::into_inner));
        for task in acceptors {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        self.map().clear();
    }

    /// The cluster has stopped and its workers are gone: a foreign cluster's sockets close
    /// too (the listening sockets of the primary-accept modes closed at [`close_all`](Self::close_all)),
    /// whoever still holds this `Listeners` (a handle kept by a task), so the addresses are free.
    pub(crate) fn release(&self) {
        if let Some(activated) = self.activated.get() {
            activated.close_all();
        }
        self.map().clear();
    }

    /// Hands every listener over to the primary's next image (an upgrade): the acceptors hand
    /// the connections already queued to the workers and stop (later ones wait in the
    /// kernel's backlog); the sockets stay open, kept in `kept`, described by the records.
    ///
    /// # Errors
    ///
    /// A socket cannot be duplicated.
    pub(crate) async fn hand_over(
        &self,
        kept: &mut Kept,
    ) -> std::io::Result<(Vec<ListenerRecord>, Vec<ActivatedRecord>)> {
        self.closing.cancel();
        let acceptors = std::mem::take(&mut *self.acceptors.lock().unwrap_or_else(PoisonError::into_inner));
        for task in acceptors {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        let mut records: Vec<(Arc<SharedListener>, ListenerRecord)> = Vec::new();
        for (key, listener) in self.map().iter() {
            if let Some((_, record)) = records.iter_mut().find(|(l, _)| Arc::ptr_eq(l, listener)) {
                record.keys.push(key.clone());
                continue;
            }
            let fd = kept.keep(listener.socket.as_fd().try_clone_to_owned()?);
            let (mut group_fds, mut group_slots, mut group_generations) = (Vec::new(), Vec::new(), Vec::new());
            for (member, socket) in listener.group().iter() {
                group_fds.push(kept.keep(socket.as_fd().try_clone_to_owned()?));
                group_slots.push(member.slot);
                group_generations.push(member.generation);
            }
            let record = ListenerRecord {
                keys: vec![key.clone()],
                addr: listener.addr,
                fd,
                passed: listener.passed,
                targets: listener.target_records(),
                group_fds,
                group_slots,
                group_generations,
            };
            records.push((listener.clone(), record));
        }
        let activated = match self.activated.get() {
            Some(sockets) => sockets.hand_over(kept)?,
            None => Vec::new(),
        };
        Ok((records.into_iter().map(|(_, r)| r).collect(), activated))
    }

    /// Takes over the listeners the previous image handed over: the same sockets, accepting
    /// again. Returns, per registered worker, the address it had asked for and its
    /// registration, for its slot to register it again once it has taken the process over.
    pub(crate) fn adopt(
        &self,
        records: Vec<ListenerRecord>,
        activated: Vec<ActivatedRecord>,
        fds: &mut Fds,
    ) -> Vec<(String, TargetRecord)> {
        let mut registrations = Vec::new();
        for record in records {
            let socket = match fds.take(record.fd) {
                Ok(fd) => socket2::Socket::from(fd),
                Err(e) => {
                    tracing::error!(addr = %record.addr, error = %e, "a handed-over listener is missing; it will be bound afresh");
                    continue;
                }
            };
            let _ = socket.set_nonblocking(true);
            let listener = Arc::new(SharedListener::new(record.addr, socket, record.passed, self.sticky_key.clone()));
            let (mut sockets, mut slots) = (Vec::new(), Vec::new());
            for (i, (raw, slot)) in record.group_fds.iter().zip(&record.group_slots).enumerate() {
                match fds.take(*raw) {
                    Ok(fd) => {
                        sockets.push(Arc::new(socket2::Socket::from(fd)));
                        let generation = record.group_generations.get(i).copied().unwrap_or(0);
                        slots.push(Member { slot: *slot, generation });
                    }
                    Err(e) => {
                        tracing::error!(addr = %record.addr, slot, error = %e, "a slot's handed-over socket is missing")
                    }
                }
            }
            *listener.group() = crate::routing::steer::group::Group::from_parts(sockets, slots);
            if let Distribution::Accept(strategy) = self.distribution {
                match listener
                    .socket
                    .try_clone()
                    .map(std::net::TcpListener::from)
                    .and_then(tokio::net::TcpListener::from_std)
                {
                    Ok(acceptor) => {
                        let task =
                            tokio::spawn(accept_loop(acceptor, listener.clone(), strategy, self.closing.clone()));
                        self.acceptors.lock().unwrap_or_else(PoisonError::into_inner).push(task);
                    }
                    Err(e) => {
                        tracing::error!(addr = %record.addr, error = %e, "cannot accept on a handed-over listener")
                    }
                }
            }
            tracing::info!(addr = %record.addr, keys = ?record.keys, "listening (taken over from the previous image)");
            let key = record.keys.first().cloned().unwrap_or_else(|| record.addr.to_string());
            registrations.extend(record.targets.iter().map(|t| (key.clone(), *t)));
            let mut map = self.map();
            for key in record.keys {
                map.insert(key, listener.clone());
            }
        }
        if !activated.is_empty() {
            self.set_activated(ActivatedSockets::adopt(activated, fds, self.steering.clone()));
        }
        if !groups_of(&self.by_addr).is_empty() {
            self.steer_with(|_| true);
            self.watch_queues();
        }
        registrations
    }

    /// Registers a taken-over worker process again on the listener it had asked for.
    pub(crate) fn register_adopted(&self, key: &str, target: Target) {
        if let Some(listener) = self.map().get(key).cloned() {
            listener.register(target);
        }
    }

    /// Tells every acceptor that some worker's readiness changed.
    pub(crate) fn readiness_changed(&self) {
        for l in self.all() {
            l.changed.notify_waiters();
        }
    }

    /// Forgets a worker process on every listener.
    pub(crate) fn unregister(&self, slot: usize, generation: u64) {
        for l in self.all() {
            l.remove(slot, generation);
        }
    }

    /// Every listener's connection counters (zero where workers accept themselves), by
    /// address.
    pub(crate) fn connection_counts(&self) -> Vec<ListenerCounts> {
        let mut counts: Vec<ListenerCounts> = Vec::new();
        for l in self.all() {
            if !counts.iter().any(|c| c.addr == l.addr) {
                counts.push(l.counts.read(l.addr));
            }
        }
        counts.sort_by_key(|c| c.addr);
        counts
    }

    fn all(&self) -> Vec<Arc<SharedListener>> {
        self.map().values().cloned().collect()
    }
}

/// The first address `requested` resolves to.
fn resolve(requested: &str) -> Result<SocketAddr, ListenRefusal> {
    requested
        .to_socket_addrs()
        .map_err(|_| ListenRefusal::Unresolvable { addr: requested.to_string() })?
        .next()
        .ok_or_else(|| ListenRefusal::NoAddress { addr: requested.to_string() })
}

/// The listeners that have reuse-port groups (each counted once).
fn groups_of(map: &Mutex<HashMap<String, Arc<SharedListener>>>) -> Vec<Arc<SharedListener>> {
    let map = map.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out: Vec<Arc<SharedListener>> = Vec::new();
    for listener in map.values() {
        if listener.group().len() > 0 && !out.iter().any(|l| Arc::ptr_eq(l, listener)) {
            out.push(listener.clone());
        }
    }
    out
}

/// Attaches every reuse-port group's program for the slots `steering` chooses now.
fn resteer(steering: &Mutex<Steering>, activated: Option<&ActivatedSockets>, shared: &[Arc<SharedListener>]) {
    if let Some(activated) = activated {
        activated.steer();
    }
    let mut steering = steering.lock().unwrap_or_else(PoisonError::into_inner);
    for listener in shared {
        steering.attach(&listener.group(), listener.addr.is_ipv6(), &listener.addr.to_string());
    }
}
