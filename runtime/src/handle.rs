//! `ClusterHandle`: the typed API of a running cluster.

use std::sync::Arc;

use corral_protocol::{Body, Outgoing, TraceContext, spans};
use ractor::DerivedActorRef;
use serde::Serialize;
use tokio::sync::watch;
use tracing::Instrument;

use crate::balance::Listeners;
use crate::events::EventBus;
use crate::outcome::Outcome;
use crate::routes::Routes;
use crate::{
    ClusterError, ClusterMsg, EventStream, ListenAddr, ReloadReport, Replaced, Scale, ScaleReport, WorkerStatus,
};

/// A cheap, cloneable handle to a running [`Cluster`](crate::Cluster).
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
    bus: Arc<EventBus<R>>,
    routes: Arc<Routes<M>>,
    listeners: Arc<Listeners>,
    done: watch::Receiver<Option<Outcome>>,
    /// The node set, once joined (`ClusterConfig::node`).
    #[cfg(feature = "cluster")]
    node_set: Arc<std::sync::OnceLock<crate::node::NodeSet>>,
}

impl<M, R> Clone for ClusterHandle<M, R> {
    fn clone(&self) -> Self {
        ClusterHandle {
            actor: self.actor.clone(),
            bus: self.bus.clone(),
            routes: self.routes.clone(),
            listeners: self.listeners.clone(),
            done: self.done.clone(),
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
    ) -> Self {
        ClusterHandle {
            actor,
            bus,
            routes,
            listeners,
            done,
            #[cfg(feature = "cluster")]
            node_set: Arc::default(),
        }
    }

    /// The node set this primary joined ([`ClusterConfig::node`](crate::ClusterConfig::node)),
    /// for `status_all`, `reload_all` and `broadcast` across hosts.
    ///
    /// ```no_run
    /// # async fn demo(cluster: corral_runtime::ClusterHandle<String, String>) {
    /// if let Some(nodes) = cluster.node_set() {
    ///     let all = nodes.status_all().await;
    ///     println!("{} workers on {} nodes", all.workers.len(), all.nodes.len());
    ///     nodes.broadcast(&"flush".to_string()).await.ok();
    /// }
    /// # }
    /// ```
    #[cfg(feature = "cluster")]
    pub fn node_set(&self) -> Option<&crate::node::NodeSet> {
        self.node_set.get()
    }

    /// Emits `event` to every subscriber (the node set's up / down).
    #[cfg(feature = "cluster")]
    pub(crate) fn emit(&self, event: crate::ClusterEvent<R>) {
        self.bus.emit(event);
    }

    #[cfg(feature = "cluster")]
    pub(crate) fn set_node_set(&self, set: crate::node::NodeSet) {
        let _ = self.node_set.set(set);
    }

    /// A foreign cluster's listeners ([`ForeignWorker::listen`](crate::ForeignWorker::listen)):
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

    /// The number of worker slots.
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
        let route = self
            .routes
            .get(slot)
            .ok_or(ClusterError::NoSuchSlot { slot, workers: self.workers() })?
            .ok_or(ClusterError::NotConnected { slot })?;
        let sent = if spans::enabled() {
            let span = spans::send(spans::worker_destination(slot), slot);
            let out = Outgoing { trace: TraceContext::of_span(&span), body: Body::User(message) };
            route.tx.send(out).instrument(span).await
        } else {
            route.tx.send(Outgoing::user(message)).await
        };
        sent.map_err(|_| ClusterError::NotConnected { slot })
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
            let sent = if spans::enabled() {
                let span = spans::send(spans::worker_destination(slot), slot);
                let out = Outgoing { trace: TraceContext::of_span(&span), body: Body::User(message.clone()) };
                route.tx.send(out).instrument(span).await
            } else {
                route.tx.send(Outgoing::user(message.clone())).await
            };
            if sent.is_ok() {
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
    /// what was replaced and why it stopped, if it did; a reload asked for while another runs
    /// is refused in the report.
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
    /// [`MAX_WORKERS`](crate::MAX_WORKERS) (the report notes it).
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
    pub async fn config(&self) -> Result<Arc<crate::ClusterConfig>, ClusterError> {
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
    /// [`ClusterEvent::Upgraded`]: crate::ClusterEvent::Upgraded
    ///
    /// # Errors
    ///
    /// Why it was refused: another upgrade or a reload runs, a slot is not ready, the new
    /// executable failed its check, or the cluster is stopping.
    pub async fn upgrade(&self) -> Result<std::convert::Infallible, crate::UpgradeError> {
        let (tx, rx) = ractor::concurrency::oneshot();
        self.actor.send_message(ClusterMsg::Upgrade(Some(tx.into()))).map_err(|_| crate::UpgradeError::Stopping)?;
        match rx.await {
            Ok(refused) => Err(refused),
            // The reply port went with the image only if the exec failed and the process is
            // ending; a stopped cluster drops it too.
            Err(_) => Err(crate::UpgradeError::Stopping),
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
