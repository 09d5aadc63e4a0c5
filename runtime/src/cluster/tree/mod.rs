//! Supervision trees of programs: several clusters (corral workers or foreign programs) run
//! as one [`Tree`] actor, which starts them in dependency order (each when what it
//! `depends_on` holds, independent ones together), stops them in reverse order, and, when
//! one dies as a whole, restarts by an OTP strategy ([`Strategy`]) within a restart intensity
//! of its own. A worker restart inside a cluster stays that cluster's business.
//!
//! ```
//! use std::time::Duration;
//! use corral_runtime::{ClusterConfig, ForeignWorker, Scheduling, WorkerExec};
//! use corral_runtime::tree::{Condition, ProgramSpec, Strategy, Tree, TreeConfig};
//!
//! # async fn demo() -> Result<(), corral_runtime::tree::TreeError> {
//! let program = |args: &[&str]| {
//!     let w = args[1..].iter().fold(ForeignWorker::new(args[0]), |w, a| w.arg(*a));
//!     ClusterConfig::default().exec(WorkerExec::Foreign(w)).scheduling(Scheduling::ReusePort)
//! };
//! let config = TreeConfig::default()
//!     .strategy(Strategy::RestForOne)
//!     .intensity(3, Duration::from_secs(60))
//!     .program(ProgramSpec::oneshot("migrate", program(&["python3", "migrate.py"]).workers(1)))
//!     .program(ProgramSpec::service("api", program(&["python3", "api.py"]).workers(2))
//!         .depends_on("migrate", Condition::Completed));
//! let (tree, mut events) = Tree::<(), ()>::spawn(config).await?;
//! while let Some(event) = events.recv().await {
//!     println!("{event:?}");
//! }
//! tree.wait().await
//! # }
//! ```

mod child;
mod control;
mod decision;
mod error;
mod events;
mod graph;
mod handle;
mod msg;
mod spec;
mod state;
mod status;

use std::marker::PhantomData;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

pub use child::ProgramState;
pub use error::{TreeConfigError, TreeError};
pub use events::{TreeEvent, TreeEvents};
pub use graph::{Graph, valid_name};
pub use handle::TreeHandle;
pub use msg::TreeMsg;
pub use spec::{Condition, Kind, NotOneOf, ProgramSpec, Strategy, TreeConfig, TreeReconfigure};
pub use state::TreeState;
pub use status::{ApplyReport, ProgramInfo};

use crate::supervision::intensity::RestartIntensity;
use child::Child;
use decision::Decider;
use events::Subscribers;

tokio::task_local! {
    /// Set while a tree spawns one of its programs' clusters.
    static IN_TREE: ();
}

/// Whether the cluster being spawned is a program of a tree (which then notifies the
/// service manager for the whole tree, not each cluster for itself).
pub(crate) fn in_tree() -> bool {
    IN_TREE.try_with(|()| ()).is_ok()
}

/// The tree actor: one [`TreeState`] machine over its programs' clusters, each spawned linked
/// under it.
#[derive(Debug)]
pub struct Tree<M, R>(PhantomData<fn() -> (M, R)>);

impl<M, R> Default for Tree<M, R> {
    fn default() -> Self {
        Tree(PhantomData)
    }
}

/// What the tree actor starts from.
#[derive(Debug)]
pub struct TreeArgs<R> {
    config: TreeConfig,
    graph: Graph,
    subscribers: Subscribers<R>,
    done: watch::Sender<Option<Result<(), TreeError>>>,
}

impl<M, R> Tree<M, R>
where
    M: Serialize + crate::config::node::NodeMessage + Clone + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Checks `config`, starts the tree and its control socket; programs start in order from
    /// here on. The events stream is subscribed before the first program starts.
    ///
    /// # Errors
    ///
    /// A refused configuration ([`TreeError::Config`]), or an actor that cannot be spawned
    /// ([`TreeError::Gone`]).
    pub async fn spawn(config: TreeConfig) -> Result<(TreeHandle<M, R>, TreeEvents<R>), TreeError> {
        Self::spawn_inner(config, None).await
    }

    /// As [`spawn`](Self::spawn), linked under `supervisor` (embedded in a user's own tree).
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn).
    pub async fn spawn_linked(
        config: TreeConfig,
        supervisor: ActorCell,
    ) -> Result<(TreeHandle<M, R>, TreeEvents<R>), TreeError> {
        Self::spawn_inner(config, Some(supervisor)).await
    }

    async fn spawn_inner(
        config: TreeConfig,
        supervisor: Option<ActorCell>,
    ) -> Result<(TreeHandle<M, R>, TreeEvents<R>), TreeError> {
        let graph = Graph::of(&config.programs)?;
        let subscribers = Subscribers::new();
        let events = subscribers.subscribe();
        let (done, done_rx) = watch::channel(None);
        let control = config.control.path(&config.name);
        let reconfigure = config.reconfigure.clone();
        let args = TreeArgs { config, graph, subscribers: subscribers.clone(), done };
        let spawned = match supervisor {
            None => Actor::spawn(None, Tree::<M, R>::default(), args).await,
            Some(sup) => Actor::spawn_linked(None, Tree::<M, R>::default(), args, sup).await,
        };
        let (actor, _join) = spawned.map_err(|e| {
            tracing::error!(error = %e, "cannot spawn the tree actor");
            TreeError::Gone
        })?;
        let handle = TreeHandle::new(actor, reconfigure, done_rx, subscribers);
        if let Some(path) = control {
            tokio::spawn(control::serve_tree(path, handle.clone()));
        }
        // The tree speaks to the service manager for all its programs (they do not): its
        // watchdog beats while its event loop runs, as a cluster's does.
        if crate::operator::systemd::wanted() {
            let tree = handle.clone();
            tokio::spawn(crate::operator::systemd::watchdog(async move {
                let _ = tree.wait().await;
            }));
        }
        Ok((handle, events))
    }
}

impl<M, R> Actor for Tree<M, R>
where
    M: Serialize + crate::config::node::NodeMessage + Clone + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Msg = TreeMsg<M, R>;
    type State = TreeState<M, R>;
    type Arguments = TreeArgs<R>;

    async fn pre_start(
        &self,
        myself: ActorRef<TreeMsg<M, R>>,
        args: TreeArgs<R>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let TreeArgs { config, graph, subscribers, done } = args;
        let children = config.programs.into_iter().map(|p| (p.name.clone(), Child::new(p))).collect();
        Ok(TreeState {
            myself,
            graph,
            decider: Decider {
                strategy: config.strategy,
                intensity: RestartIntensity::new(config.max_restarts, config.period),
            },
            period: config.period,
            max_restarts: config.max_restarts,
            children,
            stopping: false,
            failure: None,
            announced: false,
            subscribers,
            done,
            stop_waiters: Vec::new(),
            finished: false,
        })
    }

    async fn post_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.reconcile();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.handle(msg);
        Ok(())
    }

    /// The programs' clusters are linked children; how each ended comes from the task that
    /// watches it ([`TreeMsg::Ended`]), so their supervision events change nothing (ractor's
    /// default would stop the tree at the first one).
    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, error) = event {
            tracing::debug!(actor = %cell.get_id(), %error, "a program's cluster failed");
        }
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if !state.finished {
            // Killed, not stopped: whoever waits learns the tree is gone.
            let _ = state.done.send(Some(Err(TreeError::Gone)));
        }
        Ok(())
    }
}
