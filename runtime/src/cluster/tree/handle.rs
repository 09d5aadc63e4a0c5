//! [`TreeHandle`]: what a program (or the control socket) may ask of a running tree.

use ractor::{ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::sync::watch;

use crate::api::handle::ClusterHandle;
use crate::api::reports::{ReloadReport, Replaced, Scale, ScaleReport};
use crate::config::cluster::ClusterConfig;

use super::error::TreeError;
use super::events::{Subscribers, TreeEvents};
use super::msg::TreeMsg;
use super::spec::{TreeConfig, TreeReconfigure};
use super::status::{ApplyReport, ProgramInfo};

/// A running tree: ask it, operate one program, stop it, wait for it.
pub struct TreeHandle<M, R> {
    actor: ActorRef<TreeMsg<M, R>>,
    reconfigure: Option<TreeReconfigure>,
    done: watch::Receiver<Option<Result<(), TreeError>>>,
    subscribers: Subscribers<R>,
}

impl<M, R> Clone for TreeHandle<M, R> {
    fn clone(&self) -> Self {
        TreeHandle {
            actor: self.actor.clone(),
            reconfigure: self.reconfigure.clone(),
            done: self.done.clone(),
            subscribers: self.subscribers.clone(),
        }
    }
}

impl<M, R> std::fmt::Debug for TreeHandle<M, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeHandle").field("actor", &self.actor.get_id()).finish()
    }
}

impl<M, R> TreeHandle<M, R>
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(
        actor: ActorRef<TreeMsg<M, R>>,
        reconfigure: Option<TreeReconfigure>,
        done: watch::Receiver<Option<Result<(), TreeError>>>,
        subscribers: Subscribers<R>,
    ) -> Self {
        TreeHandle { actor, reconfigure, done, subscribers }
    }

    /// The tree actor (to link or monitor it).
    pub fn actor(&self) -> &ActorRef<TreeMsg<M, R>> {
        &self.actor
    }

    /// A new stream of the tree's events, from now on.
    pub fn subscribe(&self) -> TreeEvents<R> {
        self.subscribers.subscribe()
    }

    async fn ask<T: Send + 'static>(&self, msg: impl FnOnce(RpcReplyPort<T>) -> TreeMsg<M, R>) -> Result<T, TreeError> {
        let (tx, rx) = ractor::concurrency::oneshot();
        self.actor.send_message(msg(tx.into())).map_err(|_| TreeError::Gone)?;
        rx.await.map_err(|_| TreeError::Gone)
    }

    /// Every program, in start order, with its state and (while it runs) its cluster.
    ///
    /// # Errors
    ///
    /// [`TreeError::Gone`] once the tree has stopped.
    pub async fn status(&self) -> Result<Vec<ProgramInfo<M, R>>, TreeError> {
        self.ask(TreeMsg::Status).await
    }

    /// The cluster of program `name`, while it runs.
    ///
    /// # Errors
    ///
    /// No such program, or it is not running.
    pub async fn program(&self, name: &str) -> Result<ClusterHandle<M, R>, TreeError> {
        let programs = self.status().await?;
        let p = programs.into_iter().find(|p| p.name == name).ok_or_else(|| TreeError::NoSuchProgram(name.into()))?;
        p.cluster.ok_or_else(|| TreeError::NotRunning { program: name.into(), state: p.state.to_string() })
    }

    /// Stops program `name` (its cluster drains as a cluster's stop does); it stays stopped
    /// until [`start_program`](Self::start_program). Answered at once.
    ///
    /// # Errors
    ///
    /// No such program, or the tree is stopping.
    pub async fn stop_program(&self, name: &str) -> Result<(), TreeError> {
        self.ask(|r| TreeMsg::StopProgram(name.to_string(), r)).await?
    }

    /// Starts program `name` again (once what it depends on holds). Answered at once.
    ///
    /// # Errors
    ///
    /// No such program, it runs already, or the tree is stopping.
    pub async fn start_program(&self, name: &str) -> Result<(), TreeError> {
        self.ask(|r| TreeMsg::StartProgram(name.to_string(), r)).await?
    }

    /// A rolling restart of program `name` (replacement first, slot by slot), or of one slot.
    ///
    /// # Errors
    ///
    /// No such program, not running, or its cluster refused (a reload running, no such slot).
    pub async fn restart_program(&self, name: &str, slot: Option<usize>) -> Result<Vec<Replaced>, TreeError> {
        let cluster = self.program(name).await?;
        let program = |source: crate::api::error::ClusterError| TreeError::Program {
            program: name.to_string(),
            source: source.into(),
        };
        match slot {
            Some(slot) => cluster.restart(slot).await.map(|r| vec![r]).map_err(program),
            None => cluster.reload().await.map(|r| r.replaced).map_err(program),
        }
    }

    /// A rolling reload of program `name`, with `config` from now on when given.
    ///
    /// # Errors
    ///
    /// No such program, not running, or its cluster refused the reload.
    pub async fn reload_program(&self, name: &str, config: Option<ClusterConfig>) -> Result<ReloadReport, TreeError> {
        let cluster = self.program(name).await?;
        if let Some(config) = config {
            self.ask(|r| TreeMsg::SetConfig(name.to_string(), Box::new(config), r)).await??;
        }
        cluster.reload().await.map_err(|source| TreeError::Program { program: name.to_string(), source: source.into() })
    }

    /// Scales program `name`.
    ///
    /// # Errors
    ///
    /// No such program, not running, or its cluster refused.
    pub async fn scale(&self, name: &str, request: Scale) -> Result<ScaleReport, TreeError> {
        let cluster = self.program(name).await?;
        cluster
            .scale(request)
            .await
            .map_err(|source| TreeError::Program { program: name.to_string(), source: source.into() })
    }

    /// Adds, removes and changes programs to match `config`, touching only those that
    /// changed: added ones start in order, removed ones stop, changed ones roll. A bad
    /// configuration is refused whole and changes nothing.
    ///
    /// # Errors
    ///
    /// A refused configuration, or the tree is stopping.
    pub async fn apply(&self, config: TreeConfig) -> Result<ApplyReport, TreeError> {
        self.ask(|r| TreeMsg::Apply(Box::new(config), r)).await?
    }

    /// The configuration anew, from [`TreeConfig::reconfigure`] (the file re-read).
    ///
    /// # Errors
    ///
    /// No hook, or the hook refused.
    pub fn reread(&self) -> Result<TreeConfig, TreeError> {
        let hook = self.reconfigure.as_ref().ok_or(TreeError::NoReconfigure)?;
        hook.load().map_err(|e| TreeError::Reconfigure(e.to_string().into()))
    }

    /// Reloads the whole tree: the configuration re-read ([`reread`](Self::reread)), then
    /// [`apply`](Self::apply)'d.
    ///
    /// # Errors
    ///
    /// As [`reread`](Self::reread) and [`apply`](Self::apply); nothing changed then.
    pub async fn reload(&self) -> Result<ApplyReport, TreeError> {
        let mut config = self.reread()?;
        config.reconfigure = self.reconfigure.clone();
        self.apply(config).await
    }

    /// Stops every program, dependents first, and waits until the tree has stopped.
    ///
    /// # Errors
    ///
    /// How the tree ended, if it failed.
    pub async fn stop(&self) -> Result<(), TreeError> {
        let _ = self.actor.send_message(TreeMsg::Stop(None));
        self.wait().await
    }

    /// Waits until the tree has stopped: `Ok` after a stop, the reason when it gave up.
    ///
    /// # Errors
    ///
    /// [`TreeError::GaveUp`] and the like.
    pub async fn wait(&self) -> Result<(), TreeError> {
        let mut done = self.done.clone();
        loop {
            if let Some(outcome) = done.borrow_and_update().clone() {
                return outcome;
            }
            if done.changed().await.is_err() {
                return Err(TreeError::Gone);
            }
        }
    }

    /// Whether the tree has stopped.
    pub fn is_stopped(&self) -> bool {
        self.done.borrow().is_some()
    }
}
