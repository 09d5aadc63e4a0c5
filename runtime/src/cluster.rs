//! `Cluster`: the actor at the top of a corral cluster.
//!
//! It spawns one linked [`WorkerSupervisor`] per slot, answers status and stop requests, and
//! applies the escalation policy when a slot gives up. It is an ordinary ractor actor: spawn
//! it under your own supervisor with [`Cluster::spawn_linked`] and it fails (as an Erlang
//! supervisor does) when the policy says the cluster must stop.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::watch;
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::events::EventBus;
use crate::lifecycle::{self, TARGET};
use crate::listener::Listeners;
use crate::reload::{ReloadReport, ScaleReport};
use crate::routes::Routes;
use crate::supervisor::{ReplaceReason, SupervisorArgs, SupervisorMsg, WorkerCommand, WorkerSupervisor};
use crate::{
    ClusterConfig, ClusterError, ClusterEvent, ClusterHandle, Escalation, EventStream, MAX_WORKERS, WorkerState,
    WorkerStatus,
};

/// How a slot ended, as its supervisor reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotOutcome {
    /// Stopped on the cluster's request.
    Stopped {
        /// Pids of the slot's processes that did not drain within `kill_timeout` and were
        /// killed.
        killed: Vec<u32>,
    },
    /// Its worker exited and the restart type says not to restart it.
    Finished,
    /// It exceeded its restart intensity.
    GaveUp {
        /// Restarts within the window.
        restarts: usize,
    },
}

/// A scale request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Exactly this many workers.
    To(usize),
    /// This many more (positive) or fewer (negative) workers.
    By(i64),
}

/// Messages of the [`Cluster`] actor.
///
/// Typed user messages go through a [`ClusterHandle`], which writes straight to each worker's
/// queue; this enum is the actor's own protocol.
#[derive(Debug)]
pub enum ClusterMsg {
    /// Every slot's status, in slot order.
    Status(RpcReplyPort<Vec<WorkerStatus>>),
    /// Stop gracefully: drain every worker, then stop the actor. The reply (if any) comes
    /// once every worker has exited.
    Stop(Option<RpcReplyPort<()>>),
    /// Rolling reload: replace the workers one slot at a time, each replacement ready before
    /// its old process drains. Refused (the report says why) while another reload runs or
    /// the cluster stops.
    Reload(Option<RpcReplyPort<ReloadReport>>),
    /// Add or remove workers. Refused below 1 worker, during a reload, while the cluster stops
    /// or while an earlier scale-down still drains; capped at [`MAX_WORKERS`].
    Scale(Scale, Option<RpcReplyPort<Result<ScaleReport, String>>>),
    /// Sent by the reload task when it is done.
    ReloadFinished(ReloadReport),
    /// Sent by a slot's supervisor when its worker asked for an address that cannot be
    /// listened on: the cluster stops with [`ClusterError::Listen`].
    ListenFailed {
        /// The slot.
        slot: usize,
        /// What failed, naming the address.
        error: String,
    },
    /// Sent by a slot's supervisor when the slot has ended.
    SlotEnded {
        /// The slot.
        slot: usize,
        /// How it ended.
        outcome: SlotOutcome,
    },
}

/// How a cluster ended, as [`ClusterHandle::wait`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Clean,
    GaveUp { slot: usize, restarts: usize, period_ms: u128 },
    Listen(String),
    Killed(String),
    Failed(String),
}

impl Outcome {
    pub(crate) fn into_result(self) -> Result<(), ClusterError> {
        match self {
            Outcome::Clean => Ok(()),
            Outcome::GaveUp { slot, restarts, period_ms } => Err(ClusterError::GaveUp { slot, restarts, period_ms }),
            Outcome::Listen(reason) => Err(ClusterError::Listen(reason)),
            Outcome::Killed(which) => Err(ClusterError::Killed(which)),
            Outcome::Failed(reason) => Err(ClusterError::Failed(reason)),
        }
    }
}

/// The cluster actor. `M` is the type of messages primary → worker, `R` worker → primary.
///
/// # Example
///
/// ```no_run
/// use corral_runtime::{Cluster, ClusterConfig, ClusterEvent};
///
/// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
/// let (cluster, mut events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
/// while let Some(event) = events.recv().await {
///     if let ClusterEvent::Ready { slot, .. } = event {
///         cluster.send_to(slot, "hello".to_string()).await?;
///     }
/// }
/// # Ok(()) }
/// ```
pub struct Cluster<M, R> {
    _types: PhantomData<fn(M) -> R>,
}

impl<M, R> Default for Cluster<M, R> {
    fn default() -> Self {
        Cluster { _types: PhantomData }
    }
}

/// What the cluster actor is started with.
pub struct ClusterArgs<M, R> {
    config: Arc<ClusterConfig>,
    bus: Arc<EventBus<R>>,
    routes: Arc<Routes<M>>,
    listeners: Arc<Listeners>,
    done: watch::Sender<Option<Outcome>>,
    id: u64,
}

/// One worker slot, as the cluster sees it.
struct Slot {
    supervisor: Option<ActorRef<SupervisorMsg>>,
    outcome: Option<SlotOutcome>,
    /// Being removed by a scale-down: its worker drains, then the slot goes.
    removing: bool,
}

/// The cluster actor's state.
pub struct ClusterState<M, R> {
    args: ClusterArgs<M, R>,
    command: Arc<WorkerCommand>,
    slots: Vec<Slot>,
    stopping: bool,
    reloading: bool,
    failure: Option<Outcome>,
    waiters: Vec<RpcReplyPort<()>>,
    /// The `reload` span, while a rolling reload runs.
    reload_span: Option<Span>,
    /// The `shutdown` span, from the beginning of the stop until the cluster stopped.
    shutdown_span: Option<Span>,
}

static NEXT_CLUSTER_ID: AtomicU64 = AtomicU64::new(1);

/// How long a status request waits for one supervisor.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

impl<M, R> Cluster<M, R>
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Validates `config`, then spawns the cluster actor (unsupervised) and starts its workers.
    ///
    /// Returns the handle and an event stream subscribed before the first worker was forked,
    /// so that no event is missed.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Config`] for a bad configuration, [`ClusterError::Spawn`] when the actor
    /// cannot be spawned.
    pub async fn spawn(config: ClusterConfig) -> Result<(ClusterHandle<M, R>, EventStream<R>), ClusterError> {
        Self::spawn_inner(config, None).await
    }

    /// As [`spawn`](Self::spawn), linked under `supervisor`, which then receives
    /// `SupervisionEvent::ActorFailed` if the cluster escalates (a slot gave up under
    /// [`Escalation::Stop`]) and `ActorTerminated` after a clean stop.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn).
    pub async fn spawn_linked(
        config: ClusterConfig,
        supervisor: ActorCell,
    ) -> Result<(ClusterHandle<M, R>, EventStream<R>), ClusterError> {
        Self::spawn_inner(config, Some(supervisor)).await
    }

    async fn spawn_inner(
        config: ClusterConfig,
        supervisor: Option<ActorCell>,
    ) -> Result<(ClusterHandle<M, R>, EventStream<R>), ClusterError> {
        config.validate()?;
        let bus = Arc::new(EventBus::new(config.event_buffer));
        let events = bus.subscribe();
        let routes = Arc::new(Routes::new(config.workers));
        let (done, done_rx) = watch::channel(None);
        let id = NEXT_CLUSTER_ID.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{}-{id}", config.name, std::process::id());
        let listeners = Arc::new(Listeners::new(config.scheduling));
        let args =
            ClusterArgs { config: Arc::new(config), bus: bus.clone(), routes: routes.clone(), listeners, done, id };
        let spawned = match supervisor {
            None => Actor::spawn(Some(name), Cluster::<M, R>::default(), args).await,
            Some(sup) => Actor::spawn_linked(Some(name), Cluster::<M, R>::default(), args, sup).await,
        };
        let (actor, _join) = spawned.map_err(|e| ClusterError::Spawn(e.to_string()))?;
        Ok((ClusterHandle::new(actor, bus, routes, done_rx), events))
    }

    async fn spawn_slot(
        myself: &ActorRef<ClusterMsg>,
        args: &ClusterArgs<M, R>,
        command: &Arc<WorkerCommand>,
        slot: usize,
    ) -> Result<Slot, ActorProcessingErr> {
        let sup_args = SupervisorArgs {
            slot,
            config: args.config.clone(),
            cluster: myself.clone(),
            bus: args.bus.clone(),
            routes: args.routes.clone(),
            listeners: args.listeners.clone(),
            command: command.clone(),
        };
        let name = format!("{}-{}-{}-slot-{slot}", args.config.name, std::process::id(), args.id);
        let (sup, _) =
            Actor::spawn_linked(Some(name), WorkerSupervisor::<M, R>::default(), sup_args, myself.get_cell()).await?;
        Ok(Slot { supervisor: Some(sup), outcome: None, removing: false })
    }

    async fn begin_stop(&self, st: &mut ClusterState<M, R>) {
        if st.stopping {
            return;
        }
        st.stopping = true;
        let span = tracing::info_span!(
            target: TARGET,
            parent: None,
            "shutdown",
            corral.slots = st.slots.len(),
            otel.status_code = Empty,
            error.message = Empty,
        );
        span.in_scope(|| tracing::info!("cluster stopping: draining every worker"));
        st.shutdown_span = Some(span.clone());
        st.args.bus.emit(ClusterEvent::Stopping);
        // Stop accepting first: what is already queued goes to the workers before they drain.
        st.args.listeners.close_all().instrument(span.clone()).await;
        for sup in st.slots.iter().filter_map(|s| s.supervisor.as_ref()) {
            let _ = sup.send_message(SupervisorMsg::Stop(span.clone()));
        }
    }

    /// Ends the actor once every slot has ended.
    fn maybe_finish(
        &self,
        myself: &ActorRef<ClusterMsg>,
        st: &mut ClusterState<M, R>,
    ) -> Result<(), ActorProcessingErr> {
        if st.slots.iter().any(|s| s.outcome.is_none()) {
            return Ok(());
        }
        let killed: Vec<String> = st
            .slots
            .iter()
            .enumerate()
            .flat_map(|(slot, s)| match &s.outcome {
                Some(SlotOutcome::Stopped { killed }) => {
                    killed.iter().map(|pid| format!("slot {slot} (pid {pid})")).collect()
                }
                _ => Vec::new(),
            })
            .collect();
        if !killed.is_empty() {
            let timeout = st.args.config.kill_timeout;
            st.failure.get_or_insert(Outcome::Killed(format!(
                "{} did not drain within {timeout:?} and had to be killed",
                killed.join(", ")
            )));
        }
        let outcome = st.failure.clone().unwrap_or(Outcome::Clean);
        let error = match &outcome {
            Outcome::Clean => None,
            other => other.clone().into_result().err().map(|e| e.to_string()),
        };
        let span = st.shutdown_span.take().unwrap_or_else(Span::none);
        if let Some(error) = &error {
            lifecycle::fail(&span, error);
        }
        span.in_scope(|| tracing::info!(?error, "cluster stopped"));
        drop(span);
        st.args.bus.emit(ClusterEvent::Stopped { error });
        for waiter in st.waiters.drain(..) {
            let _ = waiter.send(());
        }
        st.args.done.send_replace(Some(outcome.clone()));
        match outcome.into_result() {
            Ok(()) => {
                myself.stop(None);
                Ok(())
            }
            Err(e) => Err(Box::new(e)),
        }
    }

    fn ended_status(slot: usize, outcome: Option<&SlotOutcome>) -> WorkerStatus {
        let state = match outcome {
            Some(SlotOutcome::GaveUp { .. }) => WorkerState::GaveUp,
            _ => WorkerState::Stopped,
        };
        WorkerStatus::without_process(slot, state)
    }

    /// Replaces every slot in turn, in a task (the cluster keeps answering meanwhile).
    fn start_reload(
        &self,
        myself: &ActorRef<ClusterMsg>,
        st: &mut ClusterState<M, R>,
        reply: Option<RpcReplyPort<ReloadReport>>,
    ) {
        let refused = if st.stopping {
            Some("the cluster is stopping")
        } else if st.reloading {
            Some("a rolling reload is already running")
        } else {
            None
        };
        if let Some(why) = refused {
            tracing::warn!(why, "reload refused");
            if let Some(reply) = reply {
                let _ = reply.send(ReloadReport { replaced: Vec::new(), error: Some(why.to_string()) });
            }
            return;
        }
        st.reloading = true;
        let supervisors: Vec<(usize, ActorRef<SupervisorMsg>)> = st
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.removing)
            .filter_map(|(i, s)| s.supervisor.clone().map(|sup| (i, sup)))
            .collect();
        // A replacement has listen_timeout to become ready; allow for the spawn itself.
        let patience = st.args.config.listen_timeout + Duration::from_secs(5);
        let cluster = myself.clone();
        let span = tracing::info_span!(
            target: TARGET,
            parent: None,
            "reload",
            corral.slots = supervisors.len(),
            corral.replaced = Empty,
            otel.status_code = Empty,
            error.message = Empty,
        );
        span.in_scope(|| tracing::info!(slots = supervisors.len(), "rolling reload started"));
        st.reload_span = Some(span.clone());
        let parent = span.clone();
        let task = async move {
            let mut report = ReloadReport::default();
            for (slot, sup) in supervisors {
                let replace = |port| SupervisorMsg::Replace {
                    reason: ReplaceReason::Reload,
                    parent: parent.clone(),
                    reply: Some(port),
                };
                let call = sup.call(replace, Some(patience)).await;
                match call {
                    Ok(ractor::rpc::CallResult::Success(Ok(replaced))) => report.replaced.push(replaced),
                    Ok(ractor::rpc::CallResult::Success(Err(why))) => {
                        report.error = Some(why);
                        break;
                    }
                    Ok(_) | Err(_) => {
                        report.error = Some(format!("slot {slot} did not answer the reload in {patience:?}"));
                        break;
                    }
                }
            }
            match &report.error {
                None => tracing::info!(replaced = report.replaced.len(), "rolling reload done"),
                Some(error) => {
                    tracing::error!(replaced = report.replaced.len(), %error, "rolling reload aborted; the remaining workers keep serving")
                }
            }
            if let Some(reply) = reply {
                let _ = reply.send(report.clone());
            }
            let _ = cluster.send_message(ClusterMsg::ReloadFinished(report));
        };
        tokio::spawn(task.instrument(span));
    }

    async fn scale(
        &self,
        myself: &ActorRef<ClusterMsg>,
        st: &mut ClusterState<M, R>,
        request: Scale,
    ) -> Result<ScaleReport, String> {
        if st.stopping {
            return Err("the cluster is stopping".into());
        }
        if st.reloading {
            return Err("a rolling reload is running; scale once it is done".into());
        }
        if st.slots.iter().any(|s| s.removing) {
            return Err("an earlier scale-down is still draining; try again once it is done".into());
        }
        let from = st.slots.len();
        let wanted = match request {
            Scale::To(n) => n as i64,
            Scale::By(delta) => from as i64 + delta,
        };
        if wanted < 1 {
            return Err(format!("cannot scale to {wanted} workers: at least 1 (stop the cluster instead)"));
        }
        let mut note = None;
        let to = if wanted as usize > MAX_WORKERS {
            note = Some(format!("{wanted} workers asked; capped at {MAX_WORKERS}"));
            MAX_WORKERS
        } else {
            wanted as usize
        };
        tracing::info!(from, to, "scaling");
        if to > from {
            st.args.routes.resize(to);
            for slot in from..to {
                match Self::spawn_slot(myself, &st.args, &st.command, slot).await {
                    Ok(new) => st.slots.push(new),
                    Err(e) => {
                        st.args.routes.resize(st.slots.len());
                        return Err(format!("cannot start slot {slot}: {e}"));
                    }
                }
            }
        } else {
            for slot in st.slots.iter_mut().skip(to) {
                slot.removing = true;
                if let Some(sup) = &slot.supervisor {
                    let _ = sup.send_message(SupervisorMsg::Stop(Span::none()));
                }
            }
        }
        Ok(ScaleReport { from, to, note })
    }

    /// Drops slots at the end that a scale-down removed and that have ended.
    fn trim_removed(&self, st: &mut ClusterState<M, R>) {
        while st.slots.last().is_some_and(|s| s.removing && s.outcome.is_some()) {
            st.slots.pop();
        }
        st.args.routes.resize(st.slots.len());
    }
}

impl<M, R> Actor for Cluster<M, R>
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Msg = ClusterMsg;
    type State = ClusterState<M, R>;
    type Arguments = ClusterArgs<M, R>;

    async fn pre_start(
        &self,
        myself: ActorRef<ClusterMsg>,
        args: ClusterArgs<M, R>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let command = Arc::new(WorkerCommand::new(&args.config.exec));
        let mut slots = Vec::with_capacity(args.config.workers);
        for slot in 0..args.config.workers {
            slots.push(Self::spawn_slot(&myself, &args, &command, slot).await?);
        }
        Ok(ClusterState {
            args,
            command,
            slots,
            stopping: false,
            reloading: false,
            failure: None,
            waiters: Vec::new(),
            reload_span: None,
            shutdown_span: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ClusterMsg>,
        msg: ClusterMsg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ClusterMsg::Status(reply) => {
                let mut out = Vec::with_capacity(st.slots.len());
                for (i, slot) in st.slots.iter().enumerate() {
                    let live = match &slot.supervisor {
                        Some(sup) => {
                            ractor::call_t!(sup, SupervisorMsg::Status, STATUS_TIMEOUT.as_millis() as u64).ok()
                        }
                        None => None,
                    };
                    out.push(live.unwrap_or_else(|| Self::ended_status(i, slot.outcome.as_ref())));
                }
                let _ = reply.send(out);
            }
            ClusterMsg::Stop(reply) => {
                if let Some(reply) = reply {
                    st.waiters.push(reply);
                }
                self.begin_stop(st).await;
                return self.maybe_finish(&myself, st);
            }
            ClusterMsg::Reload(reply) => self.start_reload(&myself, st, reply),
            ClusterMsg::ReloadFinished(report) => {
                st.reloading = false;
                if let Some(span) = st.reload_span.take() {
                    span.record("corral.replaced", report.replaced.len());
                    if let Some(error) = &report.error {
                        lifecycle::fail(&span, error);
                    }
                }
                st.args.bus.emit(ClusterEvent::Reloaded { replaced: report.replaced.len(), error: report.error });
            }
            ClusterMsg::Scale(request, reply) => {
                let result = self.scale(&myself, st, request).await;
                if let Err(why) = &result {
                    tracing::warn!(%why, "scale refused");
                }
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            ClusterMsg::ListenFailed { slot, error } => {
                tracing::error!(slot, %error, "stopping the cluster");
                st.failure.get_or_insert(Outcome::Listen(error));
                self.begin_stop(st).await;
                return self.maybe_finish(&myself, st);
            }
            ClusterMsg::SlotEnded { slot, outcome } => {
                let Some(entry) = st.slots.get_mut(slot) else { return Ok(()) };
                let Some(sup) = entry.supervisor.take() else { return Ok(()) };
                sup.stop(None);
                entry.outcome = Some(outcome.clone());
                if entry.removing {
                    self.trim_removed(st);
                    return Ok(());
                }
                if let SlotOutcome::GaveUp { restarts } = outcome {
                    match st.args.config.escalation {
                        Escalation::Stop => {
                            tracing::error!(slot, "slot gave up; stopping the cluster (escalation: Stop)");
                            st.failure.get_or_insert(Outcome::GaveUp {
                                slot,
                                restarts,
                                period_ms: st.args.config.period.as_millis(),
                            });
                            self.begin_stop(st).await;
                        }
                        Escalation::Degraded => {
                            tracing::error!(slot, "slot gave up; running degraded (escalation: Degraded)");
                        }
                    }
                }
                return self.maybe_finish(&myself, st);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<ClusterMsg>,
        event: SupervisionEvent,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                // A supervisor failing is a bug of ours, not a worker crash: treat the slot as
                // lost and escalate as if it had given up.
                let Some(slot) =
                    st.slots.iter().position(|s| s.supervisor.as_ref().is_some_and(|s| s.get_id() == cell.get_id()))
                else {
                    return Ok(());
                };
                tracing::error!(slot, %error, "worker supervisor failed");
                st.slots[slot].supervisor = None;
                st.slots[slot].outcome = Some(SlotOutcome::GaveUp { restarts: 0 });
                st.failure.get_or_insert(Outcome::Failed(format!("supervisor of slot {slot} failed: {error}")));
                self.begin_stop(st).await;
                self.maybe_finish(&myself, st)
            }
            _ => Ok(()),
        }
    }

    async fn post_stop(&self, _myself: ActorRef<ClusterMsg>, st: &mut Self::State) -> Result<(), ActorProcessingErr> {
        // Stopped from outside (e.g. by a parent) while workers were running: their
        // supervisors are linked children; stop them so their processes are killed.
        for sup in st.slots.iter().filter_map(|s| s.supervisor.as_ref()) {
            sup.stop(Some("cluster stopped".into()));
        }
        if st.args.done.borrow().is_none() {
            st.args.done.send_replace(Some(Outcome::Clean));
        }
        Ok(())
    }
}
