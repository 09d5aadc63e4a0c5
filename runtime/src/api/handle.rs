//! `ClusterHandle`: the typed API of a running cluster.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use corral_protocol::{Body, CallError, Outgoing, ReplyTo, TraceContext, spans};
use ractor::DerivedActorRef;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::Instrument;

use crate::api::autoscale::AutoscaleBook;
use crate::api::error::ClusterError;
use crate::api::events::bus::{EventBus, EventStream};
use crate::api::msg::ClusterMsg;
use crate::api::outcome::Outcome;
use crate::api::reports::{ReloadReport, Replaced, Scale, ScaleReport};
use crate::api::status::WorkerStatus;
use crate::config::foreign::ListenAddr;
use crate::routing::balance::Listeners;
use crate::routing::messages::{Route, Routes};
use crate::routing::rendezvous::KeyHash;

/// A cheap, cloneable handle to a running [`Cluster`](crate::cluster::Cluster).
///
/// Typed messages go straight to each worker's writer queue (no hop through an actor), so they
/// keep their order per worker and wait when a worker's queue is full (backpressure).
///
/// # Example
///
/// ```no_run
/// use corral_runtime::{Cluster, ClusterConfig};
///
/// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
/// let (cluster, _events) = Cluster::<u64, u64>::spawn(ClusterConfig::default().workers(2)).await?;
/// cluster.send_to(0, 42).await?;
/// let sent = cluster.broadcast(7).await;
/// println!("broadcast reached {sent} workers");
/// for w in cluster.status().await? {
///     println!("slot {} pid {:?} {:?}", w.slot, w.pid, w.state);
/// }
/// cluster.stop().await?;
/// # Ok(()) }
/// ```
pub struct ClusterHandle<M, R> {
    actor: DerivedActorRef<ClusterMsg>,
    pub(super) bus: Arc<EventBus<R>>,
    routes: Arc<Routes<M>>,
    listeners: Arc<Listeners>,
    done: watch::Receiver<Option<Outcome>>,
    metrics: Option<std::net::SocketAddr>,
    autoscale: Arc<AutoscaleBook>,
    /// The node set, once joined (`ClusterConfig::node`).
    #[cfg(feature = "cluster")]
    pub(super) node_set: Arc<std::sync::OnceLock<crate::node::NodeSet>>,
}

impl<M, R> Clone for ClusterHandle<M, R> {
    fn clone(&self) -> Self {
        ClusterHandle {
            actor: self.actor.clone(),
            bus: self.bus.clone(),
            routes: self.routes.clone(),
            listeners: self.listeners.clone(),
            done: self.done.clone(),
            metrics: self.metrics,
            autoscale: self.autoscale.clone(),
            #[cfg(feature = "cluster")]
            node_set: self.node_set.clone(),
        }
    }
}

impl<M, R> std::fmt::Debug for ClusterHandle<M, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHandle").field("actor", &self.actor.get_id()).finish()
    }
}

impl<M, R> ClusterHandle<M, R>
where
    M: Serialize + Clone + Send + 'static,
    R: Clone + Send + 'static,
{
    pub(crate) fn new(
        actor: DerivedActorRef<ClusterMsg>,
        bus: Arc<EventBus<R>>,
        routes: Arc<Routes<M>>,
        listeners: Arc<Listeners>,
        done: watch::Receiver<Option<Outcome>>,
        metrics: Option<std::net::SocketAddr>,
        autoscale: Arc<AutoscaleBook>,
    ) -> Self {
        ClusterHandle {
            actor,
            bus,
            routes,
            listeners,
            done,
            metrics,
            autoscale,
            #[cfg(feature = "cluster")]
            node_set: Arc::default(),
        }
    }

    /// The address the metrics endpoint listens on (its port resolved), when
    /// [`ClusterConfig::metrics`](crate::config::cluster::ClusterConfig::metrics) turned it on.
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let config = ClusterConfig::default().metrics(Some("127.0.0.1:0".parse().unwrap()));
    /// let (cluster, _events) = Cluster::<String, String>::spawn(config).await?;
    /// println!("metrics on http://{}/metrics", cluster.metrics_addr().unwrap());
    /// # Ok(()) }
    /// ```
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics
    }

    /// The autoscaler's state, when [`ClusterConfig::autoscale`](crate::ClusterConfig::autoscale)
    /// is set (what `corral status` shows: `workers 3 (auto 2..8: queue 14)`; see
    /// [`AutoscaleStatus`](crate::api::autoscale::AutoscaleStatus) for an example).
    pub fn autoscale(&self) -> Option<crate::api::autoscale::AutoscaleStatus> {
        self.autoscale.status()
    }

    /// Every listener's connection counters, by address: what the primary's acceptor did
    /// (zero where the workers accept themselves: shared, reuse-port and foreign clusters).
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// for l in cluster.connection_counts() {
    ///     println!("{}: {} accepted, {} re-dispatched", l.addr, l.accepted, l.redispatched);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn connection_counts(&self) -> Vec<crate::routing::balance::ListenerCounts> {
        self.listeners.connection_counts()
    }

    /// A foreign cluster's listeners ([`ForeignWorker::listen`](crate::config::foreign::ForeignWorker::listen)):
    /// each name and the address it is bound to (port 0 resolved), in order. Empty for a
    /// cluster of corral workers, whose listeners are bound on the workers' request.
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig, ForeignWorker, Scheduling, WorkerExec};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let app = ForeignWorker::new("python3").arg("app.py").listen("127.0.0.1:0".parse().unwrap());
    /// let config = ClusterConfig::default().exec(WorkerExec::Foreign(app)).scheduling(Scheduling::ReusePort);
    /// let (cluster, _events) = Cluster::<(), ()>::spawn(config).await?;
    /// for (name, addr) in cluster.activated_listeners() {
    ///     println!("{name} listens on {addr}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn activated_listeners(&self) -> Vec<(String, ListenAddr)> {
        self.listeners.activated()
    }

    /// The cluster actor, as a reference that takes [`ClusterMsg`]s (its cell, through
    /// `Deref`, to link or monitor it).
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig, ClusterMsg};
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default()).await?;
    /// println!("cluster actor {}", cluster.actor().get_id());
    /// cluster.actor().send_message(ClusterMsg::Stop(None))?;
    /// # Ok(()) }
    /// ```
    pub fn actor(&self) -> &DerivedActorRef<ClusterMsg> {
        &self.actor
    }

    /// The number of worker slots, warm spares ([`ClusterConfig::spares`](crate::ClusterConfig::spares))
    /// included.
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// assert_eq!(cluster.workers(), 2);
    /// # let _ = &mut events;
    /// # Ok(()) }
    /// ```
    pub fn workers(&self) -> usize {
        self.routes.len()
    }

    /// Sends `message` to the worker in `slot`, waiting while its queue is full.
    ///
    /// Backpressure runs both ways: a worker that answers every message stops reading while
    /// its answers wait unread in your event stream. So do not send a long burst from the same
    /// task that reads the events; send from another task (or raise `event_buffer`).
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// cluster.send_to(0, "reload your cache".to_string()).await?;
    /// # let _ = &mut events;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoSuchSlot`] for a slot out of range; [`ClusterError::NotConnected`]
    /// when the slot has no live process (it is restarting, or gave up).
    pub async fn send_to(&self, slot: usize, message: M) -> Result<(), ClusterError> {
        let route = self.route(slot)?;
        deliver(slot, &route, message).await.map_err(|_| ClusterError::NotConnected { slot })
    }

    fn route(&self, slot: usize) -> Result<Route<M>, ClusterError> {
        self.routes
            .get(slot)
            .ok_or(ClusterError::NoSuchSlot { slot, workers: self.workers() })?
            .ok_or(ClusterError::NotConnected { slot })
    }

    /// Sends `message` to the worker that owns `key`, waiting while its queue is full; returns
    /// its slot.
    ///
    /// The owner is chosen by rendezvous hashing over the slots that have a live process
    /// (the same hashing as [`Scheduling::Sticky`](corral_protocol::Scheduling::Sticky)): one key always
    /// reaches the same slot, so a primary can shard work or state across its workers. While
    /// a slot restarts, its keys go to their next-best slots, and come back with it; the keys
    /// of the other slots never move. Hashing uses the key's [`Hash`] with a fixed hasher, the
    /// same in every build.
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(4)).await?;
    /// let a = cluster.send_keyed("user:42", "invalidate".to_string()).await?;
    /// let b = cluster.send_keyed("user:42", "invalidate again".to_string()).await?;
    /// assert_eq!(a, b); // user 42's state lives on one worker
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoLiveWorker`] when no slot has a live process;
    /// [`ClusterError::NotConnected`] when the owner's went away as the message was queued.
    pub async fn send_keyed<K: Hash + ?Sized>(&self, key: &K, message: M) -> Result<usize, ClusterError> {
        let (slot, route) = self.owner(key).ok_or(ClusterError::NoLiveWorker)?;
        deliver(slot, &route, message).await.map_err(|_| ClusterError::NotConnected { slot })?;
        Ok(slot)
    }

    /// The slot that owns `key` now (see [`send_keyed`](Self::send_keyed)); `None` when no
    /// slot has a live process.
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(4)).await?;
    /// if let Some(slot) = cluster.owner_of(&42u64) {
    ///     println!("key 42 lives on slot {slot}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn owner_of<K: Hash + ?Sized>(&self, key: &K) -> Option<usize> {
        self.owner(key).map(|(slot, _)| slot)
    }

    fn owner<K: Hash + ?Sized>(&self, key: &K) -> Option<(usize, Route<M>)> {
        KeyHash::of(key).owner(self.routes.all(), |(slot, _)| *slot)
    }

    /// Calls the worker in `slot`: sends it the request `make` builds around a
    /// [`ReplyTo<T>`](ReplyTo) and waits, at most `timeout`, for the `T` it replies — the reply
    /// type is the one the request's `ReplyTo` names, checked at compile time. Any number of
    /// calls may be in flight, to one worker or many; each reply finds its own caller.
    ///
    /// The worker answers with [`ReplyTo::send`] (or [`ReplyTo::fail`]) where it handles the
    /// message; a request it drops unanswered fails at once.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use corral_protocol::ReplyTo;
    /// use corral_runtime::{CallError, Cluster, ClusterConfig};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Clone, Serialize, Deserialize)]
    /// enum Cmd {
    ///     /// How many entries does your cache hold?
    ///     CacheSize(ReplyTo<u64>),
    /// }
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, _events) = Cluster::<Cmd, ()>::spawn(ClusterConfig::default().workers(2)).await?;
    /// match cluster.call(0, Cmd::CacheSize, Duration::from_secs(1)).await {
    ///     Ok(entries) => println!("slot 0 caches {entries} entries"),
    ///     Err(CallError::Timeout { .. }) => eprintln!("slot 0 is slow to answer"),
    ///     Err(CallError::PeerGone) => eprintln!("slot 0 died before it answered"),
    ///     Err(e) => eprintln!("no answer: {e}"),
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`CallError::NoSuchSlot`], [`CallError::NotConnected`] (no live process in the slot),
    /// [`CallError::Timeout`], [`CallError::PeerGone`] (the worker died or disconnected
    /// before it replied), [`CallError::Failed`] (its handler failed or dropped the request),
    /// [`CallError::BadReply`].
    pub async fn call<T: DeserializeOwned>(
        &self,
        slot: usize,
        make: impl FnOnce(ReplyTo<T>) -> M,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let route = self.route(slot).map_err(|e| match e {
            ClusterError::NoSuchSlot { slot, workers } => CallError::NoSuchSlot { slot, workers },
            _ => CallError::NotConnected { slot },
        })?;
        let (reply_to, pending) = route.calls.open::<T>()?;
        // The timeout covers the wait for room in the queue too.
        let deadline = tokio::time::Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, deliver(slot, &route, make(reply_to))).await {
            Err(_elapsed) => return Err(CallError::Timeout { timeout }),
            Ok(Err(())) => return Err(CallError::PeerGone),
            Ok(Ok(())) => {}
        }
        pending.wait(deadline.saturating_duration_since(tokio::time::Instant::now())).await.map_err(|e| match e {
            CallError::Timeout { .. } => CallError::Timeout { timeout },
            other => other,
        })
    }

    /// Calls in flight from this cluster to its workers' current processes (a call whose
    /// worker died, timed out or was given up is not counted: none is ever left behind).
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// assert_eq!(cluster.pending_calls(), 0);
    /// # Ok(()) }
    /// ```
    pub fn pending_calls(&self) -> usize {
        self.routes.all().iter().map(|(_, r)| r.calls.len()).sum()
    }

    /// Sends `message` to every worker that has a live process; returns how many it reached.
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// let reached = cluster.broadcast("flush".to_string()).await;
    /// println!("{reached} workers got it");
    /// # let _ = &mut events;
    /// # Ok(()) }
    /// ```
    pub async fn broadcast(&self, message: M) -> usize {
        let mut reached = 0;
        for (slot, route) in self.routes.all() {
            if deliver(slot, &route, message.clone()).await.is_ok() {
                reached += 1;
            }
        }
        reached
    }

    /// A new event stream, from now on.
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// let mut more = cluster.subscribe();
    /// tokio::spawn(async move {
    ///     while let Some(event) = more.recv().await {
    ///         println!("{event:?}");
    ///     }
    /// });
    /// # let _ = &mut events;
    /// # Ok(()) }
    /// ```
    pub fn subscribe(&self) -> EventStream<R> {
        self.bus.subscribe()
    }

    /// A new event stream, from now on, of everything but the workers' user messages
    /// ([`ClusterEvent::Message`](crate::api::events::ClusterEvent::Message)): for a task that watches the lifecycle (forks, exits,
    /// reloads, output lines). Messages are not cloned for it, and a flood of them never
    /// waits for it to read.
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// let mut lifecycle = cluster.subscribe_lifecycle();
    /// while let Some(event) = lifecycle.recv().await {
    ///     if let ClusterEvent::Exit { slot, status, .. } = event {
    ///         eprintln!("slot {slot} exited: {status}");
    ///     }
    /// }
    /// # let _ = &mut events;
    /// # Ok(()) }
    /// ```
    pub fn subscribe_lifecycle(&self) -> EventStream<R> {
        self.bus.subscribe_lifecycle()
    }

    /// Every slot's status, in slot order.
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// for w in cluster.status().await? {
    ///     println!("slot {} pid {:?} {:?} restarts {}", w.slot, w.pid, w.state, w.restarts);
    /// }
    /// # let _ = &mut events;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClusterError::Stopped`] when the cluster actor has stopped.
    pub async fn status(&self) -> Result<Vec<WorkerStatus>, ClusterError> {
        ractor::call!(self.actor, ClusterMsg::Status).map_err(|_| ClusterError::Stopped)
    }

    /// Rolling reload: replaces the workers one slot at a time, each replacement (a new
    /// generation, running the executable as it is on disk now) ready before the old process
    /// drains, so capacity never drops. A replacement that crashes or is not ready within
    /// `listen_timeout` aborts the reload; the remaining workers keep serving. The report says
    /// what was replaced and why it stopped, if it did. A slot that is restarting, starting or
    /// being recycled holds its replacement until it has a ready worker (at most
    /// `listen_timeout`); a reload asked for while another runs starts once that one ends
    /// (requests meanwhile make that one reload, and each gets its report).
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// let report = cluster.reload().await?;
    /// match &report.error {
    ///     None => println!("replaced {} workers", report.replaced.len()),
    ///     Some(why) => eprintln!("reload stopped: {why}; the old workers keep serving"),
    /// }
    /// # let _ = &mut events;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClusterError::Stopped`] when the cluster actor has stopped.
    pub async fn reload(&self) -> Result<ReloadReport, ClusterError> {
        let (tx, rx) = ractor::concurrency::oneshot();
        self.actor.send_message(ClusterMsg::Reload(Some(tx.into()))).map_err(|_| ClusterError::Stopped)?;
        rx.await.map_err(|_| ClusterError::Stopped)
    }

    /// Adds or removes workers (removed ones drain first). Refused below 1 worker, during a
    /// reload, while stopping, or while an earlier scale-down drains; capped at
    /// [`MAX_WORKERS`](crate::config::limits::MAX_WORKERS) (the report notes it). An
    /// autoscaled cluster's count is pinned by a scale inside its range (one outside it is
    /// refused) until [`Scale::Auto`].
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// use corral_runtime::Scale;
    /// let report = cluster.scale(Scale::By(1)).await?;
    /// assert_eq!((report.from, report.to), (2, 3));
    /// # let _ = &mut events;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClusterError::Scale`] with why it was refused; [`ClusterError::Stopped`] when the
    /// cluster actor has stopped.
    pub async fn scale(&self, request: Scale) -> Result<ScaleReport, ClusterError> {
        let (tx, rx) = ractor::concurrency::oneshot();
        self.actor.send_message(ClusterMsg::Scale(request, Some(tx.into()))).map_err(|_| ClusterError::Stopped)?;
        rx.await.map_err(|_| ClusterError::Stopped)?.map_err(ClusterError::Scale)
    }

    /// The effective configuration: as started, with the worker count of the last scale and
    /// what the last reload re-read.
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig, Scale};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// cluster.scale(Scale::To(3)).await?;
    /// assert_eq!(cluster.config().await?.workers, 3);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClusterError::Stopped`] when the cluster actor has stopped.
    pub async fn config(&self) -> Result<Arc<crate::config::cluster::ClusterConfig>, ClusterError> {
        ractor::call!(self.actor, ClusterMsg::Config).map_err(|_| ClusterError::Stopped)
    }

    /// Replaces one slot's process, replacement first (it runs the same image; the old one
    /// drains once the new one is ready), as `corral restart SLOT`.
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// let replaced = cluster.restart(1).await?;
    /// println!("slot 1: pid {} → {}", replaced.old_pid, replaced.new_pid);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoSuchSlot`]; [`ClusterError::Replace`] when the slot has no ready
    /// process, is being replaced, or the replacement failed (the old process serves on);
    /// [`ClusterError::Stopped`].
    pub async fn restart(&self, slot: usize) -> Result<Replaced, ClusterError> {
        let (tx, rx) = ractor::concurrency::oneshot();
        self.actor.send_message(ClusterMsg::Restart(slot, tx.into())).map_err(|_| ClusterError::Stopped)?;
        rx.await.map_err(|_| ClusterError::Stopped)?
    }

    /// Upgrades the primary in place (as SIGUSR2 and `corral upgrade` do): runs the
    /// executable now on disk in check mode, then hands the listening sockets, the workers
    /// and the counters over and execs it — the same pid. The new image takes the workers
    /// over and replaces them with its own generation ([`ClusterEvent::Upgraded`] there).
    ///
    /// Returns only when the upgrade was refused, with why; the primary and its workers go
    /// on untouched. On success this process image is replaced and the call never returns.
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// match cluster.upgrade().await {
    ///     Ok(never) => match never {},
    ///     Err(refused) => eprintln!("not upgraded: {refused}"),
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// [`ClusterEvent::Upgraded`]: crate::api::events::ClusterEvent::Upgraded
    ///
    /// # Errors
    ///
    /// Why it was refused: another upgrade or a reload runs, a slot is not ready, the new
    /// executable failed its check, or the cluster is stopping.
    pub async fn upgrade(&self) -> Result<std::convert::Infallible, crate::api::error::UpgradeError> {
        let (tx, rx) = ractor::concurrency::oneshot();
        self.actor
            .send_message(ClusterMsg::Upgrade(Some(tx.into())))
            .map_err(|_| crate::api::error::UpgradeError::Stopping)?;
        match rx.await {
            Ok(refused) => Err(refused),
            // The reply port went with the image only if the exec failed and the process is
            // ending; a stopped cluster drops it too.
            Err(_) => Err(crate::api::error::UpgradeError::Stopping),
        }
    }

    /// Sends `signal` to one slot's current process; returns its pid.
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// let pid = cluster.signal(0, nix::sys::signal::Signal::SIGUSR1).await?;
    /// println!("told pid {pid} to reopen its logs");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoSuchSlot`]; [`ClusterError::NotConnected`] when the slot has no
    /// process; [`ClusterError::Stopped`].
    pub async fn signal(&self, slot: usize, signal: nix::sys::signal::Signal) -> Result<u32, ClusterError> {
        let (tx, rx) = ractor::concurrency::oneshot();
        self.actor.send_message(ClusterMsg::Signal(slot, signal, tx.into())).map_err(|_| ClusterError::Stopped)?;
        rx.await.map_err(|_| ClusterError::Stopped)?
    }

    /// Stops the cluster gracefully (every worker drains, stragglers are killed at
    /// `kill_timeout`) and waits until it has stopped; returns how it ended.
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// cluster.stop().await?; // every worker drained; Err if some had to be killed
    /// assert!(cluster.is_stopped());
    /// # let _ = &mut events;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub async fn stop(&self) -> Result<(), ClusterError> {
        let _ = self.actor.send_message(ClusterMsg::Stop(None));
        self.wait().await
    }

    /// Waits until the cluster has stopped.
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// // Returns when the cluster stops: asked to, or because a slot gave up.
    /// if let Err(e) = cluster.wait().await {
    ///     eprintln!("cluster ended: {e}");
    /// }
    /// # let _ = &mut events;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClusterError::GaveUp`] when a slot gave up and the escalation policy stopped the
    /// cluster; [`ClusterError::Listen`], [`ClusterError::Killed`], [`ClusterError::SupervisorFailed`] or
    /// [`ClusterError::Vanished`] when it ended otherwise.
    pub async fn wait(&self) -> Result<(), ClusterError> {
        let mut done = self.done.clone();
        let outcome = match done.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            // The actor is gone without saying how: it was killed.
            Err(_) => Some(Outcome::Vanished),
        };
        outcome.unwrap_or(Outcome::Clean).into_result()
    }

    /// Whether the cluster has stopped.
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// assert!(!cluster.is_stopped());
    /// # let _ = &mut events;
    /// # Ok(()) }
    /// ```
    pub fn is_stopped(&self) -> bool {
        self.done.borrow().is_some()
    }
}

/// Queues one message on a worker's route, waiting for room, under a `send` span when
/// tracing is on; `Err` when the process is gone.
async fn deliver<M>(slot: usize, route: &Route<M>, message: M) -> Result<(), ()> {
    let sent = if spans::enabled() {
        let span = spans::send(spans::worker_destination(slot), slot);
        let out = Outgoing { trace: TraceContext::of_span(&span).map(Box::new), body: Body::User(message) };
        corral_protocol::enqueue(&route.tx, out).instrument(span).await
    } else {
        corral_protocol::enqueue(&route.tx, Outgoing::user(message)).await
    };
    sent.map_err(drop)
}
