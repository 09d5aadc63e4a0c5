//! `Cluster`: the actor at the top of a corral cluster.
//!
//! It spawns one linked slot supervisor per worker slot, answers status, reload, scale and
//! stop requests, and applies the escalation policy when a slot gives up. It is an ordinary
//! ractor actor: spawn it under your own supervisor with [`Cluster::spawn_linked`] and it
//! fails (as an Erlang supervisor does) when the policy says the cluster must stop.
//!
//! | file        | what                                                       |
//! |-------------|------------------------------------------------------------|
//! | `msg.rs`    | the mailbox: users' [`ClusterMsg`]s and private signals    |
//! | `state.rs`  | slots, reload and stop state                               |
//! | `reload.rs` | rolling reload                                             |
//! | `scale.rs`  | scaling, spawning slot supervisors                         |
//! | `autoscale/`| the scaler: samples the load, asks for steps               |
//! | `stop.rs`   | stopping, escalation, how the cluster ended                |
//! | `operate.rs`| one slot: restart (replacement first), signal              |
//! | `upgrade.rs`| upgrading the primary in place: hand over, exec, take over |

mod autoscale;
#[cfg(feature = "cluster")]
pub(crate) mod local_messages;
mod msg;
#[cfg(feature = "cluster")]
mod node_answers;
mod operate;
mod reload;
mod scale;
mod state;
mod stop;
pub mod tree;
mod upgrade;

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

pub use msg::ClusterSignal;
use msg::Signal;
pub use state::{ClusterArgs, ClusterState};

use crate::api::autoscale::AutoscaleBook;
use crate::api::error::ClusterError;
use crate::api::events::bus::{EventBus, EventStream};
use crate::api::handle::ClusterHandle;
use crate::api::msg::ClusterMsg;
use crate::api::outcome::Outcome;
use crate::api::reports::{Scale, ScaleReason};
use crate::config::cluster::ClusterConfig;
use crate::config::command::WorkerCommand;
use crate::operator::{control, logfile, systemd};
use crate::routing::balance::Listeners;
use crate::routing::messages::Routes;
use crate::slot::{SlotMsg, SlotReport};

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

static NEXT_CLUSTER_ID: AtomicU64 = AtomicU64::new(1);

/// How long a status request waits for one slot.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

impl<M, R> Cluster<M, R>
where
    M: Serialize + crate::config::node::NodeMessage + Clone + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Validates `config`, then spawns the cluster actor (unsupervised) and starts its workers.
    ///
    /// Returns the handle and an event stream subscribed before the first worker was forked,
    /// so that no event is missed.
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo() -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, _events) = Cluster::<String, String>::spawn(ClusterConfig::default().workers(2)).await?;
    /// cluster.stop().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClusterError::Config`] for a bad configuration, [`ClusterError::Listen`] when a foreign
    /// cluster's listener cannot be bound, [`ClusterError::Spawn`] when the actor cannot be
    /// spawned.
    pub async fn spawn(config: ClusterConfig) -> Result<(ClusterHandle<M, R>, EventStream<R>), ClusterError> {
        Self::spawn_inner(config, None).await
    }

    /// As [`spawn`](Self::spawn), linked under `supervisor`, which then receives
    /// `SupervisionEvent::ActorFailed` if the cluster escalates (a slot gave up under
    /// [`Escalation::Stop`](crate::supervision::escalation::Escalation::Stop)) and `ActorTerminated` after a clean stop.
    ///
    /// ```no_run
    /// use corral_runtime::{Cluster, ClusterConfig};
    ///
    /// # async fn demo(parent: ractor::ActorCell) -> Result<(), corral_runtime::ClusterError> {
    /// let (cluster, _events) = Cluster::<String, String>::spawn_linked(ClusterConfig::default(), parent).await?;
    /// # Ok(()) }
    /// ```
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
        if crate::upgrade::answer_check() {
            // An upgrade's preflight: the configuration is valid; nothing else may happen.
            std::process::exit(0);
        }
        let mut config = config;
        let handover = crate::upgrade::inherited();
        if let Some(handover) = &handover {
            if config.scheduling != handover.scheduling {
                tracing::warn!(
                    was = ?handover.scheduling,
                    configured = ?config.scheduling,
                    "scheduling cannot change in an upgrade; keeping the running one"
                );
                config.scheduling = handover.scheduling;
            }
            // A scaled cluster stays scaled (its spares, as configured, among the slots).
            config.workers = handover.slots.len().saturating_sub(config.spares).max(1);
        }
        let bus = Arc::new(EventBus::new(config.event_buffer));
        let events = bus.subscribe();
        let routes = Arc::new(Routes::new(config.workers + config.spares));
        let (done, done_rx) = watch::channel(None);
        let id = NEXT_CLUSTER_ID.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{}-{id}", config.name, std::process::id());
        let listeners = Arc::new(Listeners::new(config.scheduling, config.sticky_key));
        if config.steer_by_client {
            listeners.steer_by_client();
        }
        let mut fds = crate::upgrade::state::Fds::default();
        let (inherited, control_fd) = match handover {
            Some(handover) => {
                let (inherited, control_fd) = take_over(handover, &listeners, &mut fds);
                (Some(inherited), control_fd)
            }
            None => (None, None),
        };
        if let Some(foreign) = config.exec.foreign()
            && inherited.is_none()
        {
            // Bound before anything forks: a bad address fails the start, naming it.
            listeners.bind_activated(&foreign.listen)?;
        }
        let upgrading = inherited.is_some();
        // Bound before anything forks: an address in use fails the start, naming it.
        let metrics = match config.metrics {
            Some(addr) => {
                let listener =
                    crate::operator::metrics::bind(addr).map_err(|source| ClusterError::Metrics { addr, source })?;
                let bound = listener.local_addr().map_err(|source| ClusterError::Metrics { addr, source })?;
                if !bound.ip().is_loopback() {
                    tracing::warn!(addr = %bound, "metrics endpoint on a non-loopback address: whoever reaches it sees pids, memory and traffic");
                }
                // Subscribed before the first fork, so that no exit is missed.
                Some((listener, bound, bus.subscribe_lifecycle()))
            }
            None => None,
        };
        let control_path = config.control.path(&config.name);
        let (log_files, log_name) = (config.log_files.clone(), config.name.clone());
        let recycle_concurrency = config.recycle_concurrency;
        let autoscale_book = Arc::new(AutoscaleBook::new(config.autoscale.clone(), config.workers));
        #[cfg(feature = "cluster")]
        let (node, group) = (config.node.clone(), config.name.clone());
        let args = ClusterArgs {
            config: Arc::new(config),
            bus: bus.clone(),
            routes: routes.clone(),
            listeners: listeners.clone(),
            done,
            id,
            inherited,
            recycling: crate::slot::RecycleTurns::new(recycle_concurrency),
            spares: Arc::new(crate::slot::Spares::default()),
            autoscale: autoscale_book.clone(),
        };
        let spawned = match supervisor {
            None => Actor::spawn(Some(name), Cluster::<M, R>::default(), args).await,
            Some(sup) => Actor::spawn_linked(Some(name), Cluster::<M, R>::default(), args, sup).await,
        };
        let (actor, _join) = spawned.map_err(ClusterError::Spawn)?;
        let metrics_addr = metrics.as_ref().map(|(_, bound, _)| *bound);
        let handle =
            ClusterHandle::new(actor.get_derived(), bus, routes, listeners, done_rx, metrics_addr, autoscale_book);
        #[cfg(feature = "cluster")]
        if let Some(node) = node {
            match crate::node::start(node, group, Arc::new(handle.clone())).await {
                Ok(set) => handle.set_node_set(set),
                Err(e) => {
                    let _ = handle.stop().await;
                    return Err(ClusterError::Node(e));
                }
            }
        }
        if let Some((listener, bound, events)) = metrics {
            let recorder = Arc::new(crate::operator::metrics::Recorder::default());
            tokio::spawn(recorder.clone().record(events));
            tokio::spawn(crate::operator::metrics::serve(listener, handle.clone(), recorder, log_name.clone()));
            tracing::info!(addr = %bound, "metrics endpoint");
        }
        if let Some(path) = control_path {
            tokio::spawn(control::serve(path, handle.clone(), control_fd));
        }
        if let Some(files) = log_files {
            tokio::spawn(logfile::write(handle.clone(), files, log_name));
        }
        // A program of a tree: the tree speaks to the service manager for all of them.
        if systemd::wanted() && !tree::in_tree() {
            tokio::spawn(systemd::notify(handle.clone(), upgrading));
        }
        if upgrading {
            // The handlers of whoever runs us are installed by now (`corral::run` installs
            // them first): signals sent during the exec are delivered from here on.
            crate::upgrade::exec::unblock_signals();
            // The spawner thread may have been made while they were blocked; workers reset
            // their mask anyway, but no thread keeps them blocked.
            let _ = crate::process::on_spawner_thread_with(crate::upgrade::exec::unblock_signals).await;
        }
        Ok((handle, events))
    }
}

impl<M, R> Actor for Cluster<M, R>
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Msg = ClusterSignal;
    type State = ClusterState<M, R>;
    type Arguments = ClusterArgs<M, R>;

    async fn pre_start(
        &self,
        myself: ActorRef<ClusterSignal>,
        args: ClusterArgs<M, R>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let workers = args.config.workers;
        let spares = args.config.spares;
        let command = Arc::new(WorkerCommand::new(&args.config.exec));
        let mut args = args;
        let inherited = args.inherited.take();
        let mut st = ClusterState {
            args,
            myself,
            command,
            slots: Vec::with_capacity(workers + spares),
            stopping: false,
            reload: None,
            reload_queued: None,
            failure: None,
            waiters: Vec::new(),
            shutdown_span: None,
            upgrade: None,
            upgrade_reload: false,
            upgrades: inherited.as_ref().map_or(0, |i| i.upgrades),
        };
        let (mut adoptions, reap) = match inherited {
            Some(i) => (i.adoptions.into_iter().map(Some).collect::<Vec<_>>(), Some(i.reap)),
            None => (Vec::new(), None),
        };
        // The spares are the last slots at first; they move as they take workers' places.
        for slot in 0..workers + spares {
            let adoption = adoptions.get_mut(slot).and_then(Option::take);
            let new = st.spawn_slot_adopting(slot, adoption, slot >= workers).await?;
            st.slots.push(new);
        }
        if let Some(reap) = reap {
            st.finish_upgrade(reap).await;
        }
        if st.args.config.autoscale.is_some() {
            autoscale::start(st.myself.clone(), st.args.listeners.clone(), st.args.autoscale.clone());
        }
        Ok(st)
    }

    async fn handle(
        &self,
        _myself: ActorRef<ClusterSignal>,
        ClusterSignal(signal): ClusterSignal,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match signal {
            Signal::Request(ClusterMsg::Status(reply)) => {
                let _ = reply.send(status(st).await);
                return Ok(());
            }
            Signal::Request(ClusterMsg::Stop(reply)) => {
                st.waiters.extend(reply);
                st.begin_stop().await;
            }
            Signal::Request(ClusterMsg::Reload(reply)) => st.request_reload(reply).await,
            Signal::Request(ClusterMsg::Scale(request, reply)) => {
                let result = st.scale(request, ScaleReason::Asked).await;
                if let Err(error) = &result {
                    tracing::warn!(%error, "scale refused");
                }
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
                return Ok(());
            }
            Signal::Autoscale(to, reason, reply) => {
                let _ = reply.send(st.scale(Scale::To(to), reason).await);
                return Ok(());
            }
            Signal::Request(ClusterMsg::Config(reply)) => {
                let _ = reply.send(st.args.config.clone());
                return Ok(());
            }
            Signal::Request(ClusterMsg::Restart(slot, reply)) => {
                st.restart(slot, reply);
                return Ok(());
            }
            Signal::Request(ClusterMsg::Signal(slot, signal, reply)) => {
                st.signal(slot, signal, reply);
                return Ok(());
            }
            Signal::Request(ClusterMsg::Upgrade(reply)) => {
                st.start_upgrade(reply).await;
                return Ok(());
            }
            Signal::PreflightDone(result) => {
                st.preflight_done(result).await;
                return Ok(());
            }
            Signal::ReloadFinished(report, replies) => {
                st.upgrade_reloaded(&report);
                st.reload_finished(report, replies).await;
                return Ok(());
            }
            Signal::Slot(SlotReport::ListenFailed { slot, refusal }) => st.listen_failed(slot, refusal).await,
            Signal::Slot(SlotReport::Ended { slot, outcome }) => st.slot_ended(slot, outcome).await,
        }
        st.maybe_finish()
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<ClusterSignal>,
        event: SupervisionEvent,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, reason) => {
                st.supervisor_failed(&cell, reason).await;
                st.maybe_finish()
            }
            // Started and terminated slot supervisors need nothing: a slot's end arrives as
            // its report, and a stopped supervisor has reported already.
            _ => Ok(()),
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ClusterSignal>,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Stopped from outside (e.g. by a parent) while workers were running: their
        // supervisors are linked children; stop them so their processes are killed.
        for sup in st.supervisors() {
            sup.stop(Some("cluster stopped".into()));
        }
        if st.args.done.borrow().is_none() {
            st.args.done.send_replace(Some(Outcome::Clean));
        }
        Ok(())
    }
}

/// Every slot's status, in slot order (ended slots without asking their gone supervisors).
async fn status<M, R>(st: &ClusterState<M, R>) -> Vec<crate::api::status::WorkerStatus>
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    let mut out = Vec::with_capacity(st.slots.len());
    for (i, slot) in st.slots.iter().enumerate() {
        let live = match &slot.supervisor {
            Some(sup) => ractor::call_t!(sup, SlotMsg::Status, STATUS_TIMEOUT.as_millis() as u64).ok(),
            None => None,
        };
        out.push(live.unwrap_or_else(|| ClusterState::<M, R>::ended_status(i, slot.outcome.as_ref())));
    }
    out
}

/// Takes over what the previous image handed over: the listeners (accepting again), the
/// activated sockets, the control socket, and per slot what its supervisor adopts.
fn take_over(
    handover: crate::upgrade::state::Handover,
    listeners: &Listeners,
    fds: &mut crate::upgrade::state::Fds,
) -> (state::Inherited, Option<std::os::fd::OwnedFd>) {
    use crate::process::{AdoptChannel, AdoptSpec};
    use crate::upgrade::state::ChannelRecord;
    // The handed-over workers are this image's children from the start: the reaper must
    // leave them to their waiters (it starts once this has run).
    for pid in
        handover.slots.iter().filter_map(|r| r.worker.as_ref().map(|w| w.pid)).chain(handover.reap.iter().copied())
    {
        crate::sys::children::register(pid);
    }
    let registrations = listeners.adopt(handover.listeners, handover.activated, fds);
    let control = handover.control.and_then(|c| fds.take(c.fd).ok());
    let mut adoptions = Vec::with_capacity(handover.slots.len());
    for record in handover.slots {
        let slot = record.slot;
        let worker = record.worker.and_then(|w| {
            let channel = match w.channel {
                ChannelRecord::Corral { ipc, leftover, handles } => AdoptChannel::Corral {
                    ipc: fds.take(ipc).ok()?,
                    leftover,
                    handles: fds.take(handles).ok()?,
                    // Absent from a block of an image that did not carry it: numbered from 0.
                    handles_sent: handover.handles_sent.get(&w.pid).copied().unwrap_or(0),
                },
                ChannelRecord::Foreign { notify } => AdoptChannel::Foreign { notify: fds.take(notify).ok()? },
            };
            let mut pipe =
                |p: Option<crate::upgrade::state::PipeRecord>| p.and_then(|p| Some((fds.take(p.fd).ok()?, p.leftover)));
            let (stdout, stderr) = (pipe(w.stdout), pipe(w.stderr));
            let listens = registrations
                .iter()
                .filter(|(_, t)| t.slot == slot && t.generation == w.generation)
                .map(|(key, t)| (key.clone(), t.listen_id))
                .collect();
            Some(crate::slot::AdoptedWorker {
                spec: AdoptSpec { slot, generation: w.generation, pid: w.pid, channel, stdout, stderr },
                uptime: Duration::from_millis(w.uptime_ms),
                listens,
            })
        });
        adoptions.push(crate::slot::Adoption { generation: record.generation, restarts: record.restarts, worker });
    }
    tracing::info!(upgrades = handover.upgrades, slots = adoptions.len(), "taking over from the previous image");
    (state::Inherited { adoptions, reap: handover.reap, upgrades: handover.upgrades }, control)
}
