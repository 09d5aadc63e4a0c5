//! The tree actor's state and its one state machine: every report and request changes what
//! the programs should be ([`Child::want`], `cycling`, `removing`) or what they are
//! ([`Phase`]); then [`TreeState::reconcile`] moves each program one step toward what it
//! should be, in order: stop what must stop (dependents first), end a strategy's cycle once
//! all its programs are down, forget removed programs, finish a stopping tree, start what may
//! start (each when its conditions hold, independent ones together), and say once when
//! everything is up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use ractor::{ActorRef, RpcReplyPort};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::api::error::ClusterError;
use crate::api::events::ClusterEvent;
use crate::api::handle::ClusterHandle;
use crate::cluster::Cluster;
use crate::supervision::restart::Restart;

use super::child::{Child, Phase, Want, singleton};
use super::decision::{Decider, Verdict};
use super::error::TreeError;
use super::events::{Subscribers, TreeEvent};
use super::graph::Graph;
use super::msg::TreeMsg;
use super::spec::{Condition, Kind, TreeConfig};
use super::status::{ApplyReport, ProgramInfo};

/// The tree actor's state.
pub struct TreeState<M, R> {
    pub(crate) myself: ActorRef<TreeMsg<M, R>>,
    pub(crate) graph: Graph,
    pub(crate) decider: Decider,
    pub(crate) period: std::time::Duration,
    pub(crate) max_restarts: u32,
    pub(crate) children: BTreeMap<String, Child<M, R>>,
    /// Stopping as a whole (asked, or given up).
    pub(crate) stopping: bool,
    pub(crate) failure: Option<TreeError>,
    pub(crate) announced: bool,
    pub(crate) subscribers: Subscribers<R>,
    pub(crate) done: watch::Sender<Option<Result<(), TreeError>>>,
    pub(crate) stop_waiters: Vec<RpcReplyPort<()>>,
    pub(crate) finished: bool,
}

impl<M, R> TreeState<M, R>
where
    M: Serialize + crate::config::node::NodeMessage + Clone + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Handles one message, then reconciles.
    pub(crate) fn handle(&mut self, msg: TreeMsg<M, R>) {
        match msg {
            TreeMsg::Spawned { program, epoch, result } => self.spawned(&program, epoch, result),
            TreeMsg::Ready { program, epoch } => {
                if let Some(c) = self.current(&program, epoch)
                    && let Phase::Up { ready, .. } = &mut c.phase
                    && !*ready
                {
                    *ready = true;
                    tracing::info!(program, "program ready");
                    self.emit(TreeEvent::Ready { program: program.as_str().into() });
                }
            }
            TreeMsg::Completed { program, epoch } => {
                if let Some(c) = self.current(&program, epoch)
                    && let Phase::Up { cluster, .. } = std::mem::replace(&mut c.phase, Phase::Completed)
                {
                    // Nothing runs any more; its cluster goes, unwatched (its end is ignored).
                    tokio::spawn(async move { cluster.stop().await });
                    tracing::info!(program, "program completed");
                    self.emit(TreeEvent::Completed { program: program.as_str().into() });
                }
            }
            TreeMsg::Exited { program, epoch, died, cause } => {
                let Some(c) = self.current(&program, epoch) else { return self.reconcile() };
                if !matches!(c.phase, Phase::Up { .. }) {
                    return self.reconcile();
                }
                let asked = c.should_be_down();
                if let Phase::Up { cluster, .. } = std::mem::replace(&mut c.phase, Phase::Stopping) {
                    tokio::spawn(async move { cluster.stop().await });
                }
                if died && !asked {
                    self.death(&program, cause);
                } else if !died {
                    tracing::info!(program, %cause, "program finished (its restart type does not restart it)");
                    // Down once its cluster has stopped; then it stays down.
                    if let Some(c) = self.children.get_mut(&program) {
                        c.finishing = true;
                    }
                }
            }
            TreeMsg::Ended { program, epoch, result } => self.ended(&program, epoch, result),
            TreeMsg::Status(reply) => {
                let _ = reply.send(self.status());
            }
            TreeMsg::Stop(reply) => {
                if !self.stopping {
                    tracing::info!("stopping the tree, dependents first");
                    crate::operator::systemd::stopping("stopping");
                }
                self.stopping = true;
                if let Some(reply) = reply {
                    self.stop_waiters.push(reply);
                }
            }
            TreeMsg::StopProgram(name, reply) => {
                let answer = self.operate(&name).map(|c| c.want = Want::Down);
                let _ = reply.send(answer);
            }
            TreeMsg::StartProgram(name, reply) => {
                let answer = self.operate(&name).and_then(|c| {
                    if c.want == Want::Up && !matches!(c.phase, Phase::Finished | Phase::Completed) {
                        return Err(TreeError::AlreadyRunning(name.clone()));
                    }
                    c.want = Want::Up;
                    if matches!(c.phase, Phase::Finished | Phase::Completed) {
                        c.phase = Phase::Down;
                    }
                    Ok(())
                });
                let _ = reply.send(answer);
            }
            TreeMsg::SetConfig(name, config, reply) => {
                let answer = self.operate(&name).map(|c| c.desired().config = *config);
                let _ = reply.send(answer);
            }
            TreeMsg::Apply(config, reply) => {
                let answer = self.apply(*config);
                let _ = reply.send(answer);
            }
        }
        self.reconcile();
    }

    /// The program `name`, for an operator's request (refused while the tree stops).
    fn operate(&mut self, name: &str) -> Result<&mut Child<M, R>, TreeError> {
        if self.stopping {
            return Err(TreeError::Stopping);
        }
        self.children.get_mut(name).filter(|c| !c.removing).ok_or_else(|| TreeError::NoSuchProgram(name.to_string()))
    }

    /// The program, if `epoch` is its current spawn.
    fn current(&mut self, name: &str, epoch: u64) -> Option<&mut Child<M, R>> {
        self.children.get_mut(name).filter(|c| c.epoch == epoch)
    }

    fn emit(&self, event: TreeEvent<R>) {
        self.subscribers.emit(event);
    }

    fn spawned(&mut self, name: &str, epoch: u64, result: Result<ClusterHandle<M, R>, ClusterError>) {
        let Some(c) = self.current(name, epoch) else { return };
        match result {
            Ok(cluster) => {
                {
                    let mut desired = c.desired();
                    if desired.pins.is_empty() {
                        // Port 0 resolved once: the clusters that replace this one bind the same.
                        desired.pins = cluster.activated_listeners();
                    }
                }
                c.phase = Phase::Up { cluster, ready: false };
                c.since = Some(Instant::now());
                tracing::info!(program = name, "program started");
                self.emit(TreeEvent::Started { program: name.into() });
            }
            Err(e) => {
                c.phase = Phase::Down;
                tracing::error!(program = name, error = %e, "program could not start");
                self.death(name, format!("it could not start: {e}"));
            }
        }
    }

    fn ended(&mut self, name: &str, epoch: u64, result: Result<(), ClusterError>) {
        let stopping = self.stopping;
        let Some(c) = self.current(name, epoch) else { return };
        match c.phase {
            Phase::Completed | Phase::Finished | Phase::Down => {}
            Phase::Stopping => {
                c.phase = if std::mem::take(&mut c.finishing) { Phase::Finished } else { Phase::Down };
                if let Err(e) = &result {
                    tracing::warn!(program = name, error = %e, "program stopped with an error");
                }
                tracing::info!(program = name, "program stopped");
                self.emit(TreeEvent::Stopped { program: name.into() });
            }
            Phase::Spawning | Phase::Up { .. } => {
                c.phase = Phase::Down;
                let asked = stopping || c.should_be_down();
                self.emit(TreeEvent::Stopped { program: name.into() });
                match result {
                    Err(e) if !asked => self.death(name, e.to_string()),
                    Err(e) => tracing::warn!(program = name, error = %e, "program stopped with an error"),
                    Ok(()) if !asked => c_finish(self, name),
                    Ok(()) => {}
                }
            }
        }
    }

    /// `name` died as a whole: the strategy, within the tree's intensity, says what restarts.
    fn death(&mut self, name: &str, cause: String) {
        tracing::error!(program = name, %cause, "program died");
        let cause: Arc<str> = cause.into();
        self.emit(TreeEvent::Died { program: name.into(), cause: cause.clone() });
        if let Some(c) = self.children.get_mut(name) {
            c.last_death = Some(cause.to_string());
        }
        if self.stopping {
            return;
        }
        let children = &self.children;
        let eligible = |n: &str| children.get(n).is_some_and(|c| c.want == Want::Up && !c.removing);
        match self.decider.on_death(&self.graph, name, eligible, Instant::now()) {
            Verdict::GiveUp { restarts } => {
                tracing::error!(program = name, restarts, "the tree gives up: too many program restarts");
                self.failure = Some(TreeError::GaveUp {
                    program: name.to_string(),
                    cause,
                    restarts,
                    period_ms: self.period.as_millis(),
                });
                self.stopping = true;
                crate::operator::systemd::stopping(&format!("program {name} gave up"));
                self.emit(TreeEvent::GaveUp { program: name.into() });
            }
            Verdict::Restart(set) => {
                let programs: Vec<String> = self.graph.order().iter().filter(|n| set.contains(*n)).cloned().collect();
                tracing::warn!(program = name, ?programs, strategy = ?self.decider.strategy, "restarting");
                for n in &programs {
                    if let Some(c) = self.children.get_mut(n) {
                        c.cycling = true;
                    }
                }
                if let Some(c) = self.children.get_mut(name) {
                    c.restarts += 1;
                }
                self.emit(TreeEvent::Restarting { program: name.into(), programs });
            }
        }
    }

    /// Stop order: removed programs (nothing depends on them any more), then the graph's
    /// order reversed.
    fn stop_order(&self) -> Vec<String> {
        let gone = self.children.keys().filter(|n| !self.graph.order().contains(n)).cloned();
        gone.chain(self.graph.order().iter().rev().cloned()).collect()
    }

    /// Moves every program one step toward what it should be.
    pub(crate) fn reconcile(&mut self) {
        if self.finished {
            return;
        }
        // 1. Stop what must stop, once no program that depends on it and stops too runs.
        for name in self.stop_order() {
            let Some(c) = self.children.get(&name) else { continue };
            if !(self.stopping || c.should_be_down()) {
                continue;
            }
            let waiting_for_dependent = self.graph.dependents(&name).any(|d| {
                self.children.get(d).is_some_and(|d| d.phase.running() && (self.stopping || d.should_be_down()))
            });
            let Some(c) = self.children.get_mut(&name) else { continue };
            match &c.phase {
                Phase::Up { cluster, .. } if !waiting_for_dependent => {
                    let cluster = cluster.clone();
                    c.phase = Phase::Stopping;
                    tracing::info!(program = name, "stopping program");
                    tokio::spawn(async move { cluster.stop().await });
                }
                // A oneshot that ran (or a finished service) in a strategy's restart runs again.
                Phase::Completed | Phase::Finished if c.cycling && !self.stopping => c.phase = Phase::Down,
                _ => {}
            }
        }
        // 2. A strategy's cycle ends once every program in it is down: they start again.
        let cycling: Vec<&Child<M, R>> = self.children.values().filter(|c| c.cycling).collect();
        if !cycling.is_empty() && cycling.iter().all(|c| matches!(c.phase, Phase::Down)) {
            for c in self.children.values_mut() {
                c.cycling = false;
            }
        }
        // 3. Removed programs that have stopped are forgotten.
        self.children.retain(|_, c| !c.removing || c.phase.running());
        // 4. A stopping tree is done once nothing runs.
        if self.stopping {
            if self.children.values().all(|c| !c.phase.running()) {
                self.finish();
            }
            return;
        }
        // 5. Start, in order, what should run and whose conditions hold.
        let order = self.graph.order().to_vec();
        for name in order {
            let may = self.children.get(&name).is_some_and(|c| !c.should_be_down() && matches!(c.phase, Phase::Down))
                && self.conditions_hold(&name);
            if may {
                self.spawn(&name);
            }
        }
        // 6. Everything up, the first time: say it.
        if !self.announced
            && self.children.values().all(|c| match c.phase {
                Phase::Up { ready, .. } => ready,
                Phase::Completed | Phase::Finished => true,
                _ => c.want == Want::Down,
            })
        {
            self.announced = true;
            tracing::info!("every program is up");
            crate::operator::systemd::ready();
            crate::operator::systemd::status(&format!("{} programs up", self.children.len()));
            self.emit(TreeEvent::Up);
        }
    }

    /// Whether what `name` waits for holds.
    fn conditions_hold(&self, name: &str) -> bool {
        self.graph.deps(name).iter().all(|(dep, condition)| {
            let Some(d) = self.children.get(dep) else { return false };
            if d.should_be_down() {
                return false;
            }
            match (condition, &d.phase) {
                (_, Phase::Completed) => true,
                (Condition::Started, Phase::Up { .. } | Phase::Finished) => true,
                (Condition::Ready, Phase::Up { ready, .. }) => *ready,
                (Condition::Ready, Phase::Finished) => true,
                _ => false,
            }
        })
    }

    /// Spawns `name`'s cluster, linked under the tree, and the task that watches it.
    fn spawn(&mut self, name: &str) {
        let Some(c) = self.children.get_mut(name) else { return };
        c.epoch += 1;
        c.phase = Phase::Spawning;
        let config = c.spawn_config();
        let (epoch, kind) = (c.epoch, c.spec.kind);
        // A singleton's exit is the tree's: does its own restart type restart it?
        let restart = {
            let desired = c.desired();
            (kind == Kind::Service && singleton(&desired.config)).then_some(desired.config.restart)
        };
        let myself = self.myself.clone();
        let subscribers = self.subscribers.clone();
        let program: Arc<str> = name.into();
        tracing::info!(program = name, workers = config.workers, "starting program");
        tokio::spawn(async move {
            let workers = config.workers;
            let spawned = super::IN_TREE.scope((), Cluster::<M, R>::spawn_linked(config, myself.get_cell())).await;
            let name = program.to_string();
            let (cluster, events) = match spawned {
                Ok((cluster, events)) => (cluster, events),
                Err(e) => {
                    let _ = myself.send_message(TreeMsg::Spawned { program: name, epoch, result: Err(e) });
                    return;
                }
            };
            let _ = myself.send_message(TreeMsg::Spawned { program: name.clone(), epoch, result: Ok(cluster.clone()) });
            watch_program(program, epoch, kind, restart, workers, cluster.clone(), events, &myself, &subscribers).await;
            let result = cluster.wait().await;
            let _ = myself.send_message(TreeMsg::Ended { program: name, epoch, result });
        });
    }

    fn finish(&mut self) {
        self.finished = true;
        let outcome = match self.failure.clone() {
            Some(e) => Err(e),
            None => Ok(()),
        };
        tracing::info!(ok = outcome.is_ok(), "the tree has stopped");
        let _ = self.done.send(Some(outcome));
        for w in self.stop_waiters.drain(..) {
            let _ = w.send(());
        }
        self.subscribers.close();
        self.myself.stop(None);
    }

    fn status(&self) -> Vec<ProgramInfo<M, R>> {
        let mut names: Vec<&String> = self.graph.order().iter().collect();
        names.extend(self.children.keys().filter(|n| !self.graph.order().contains(n)));
        names
            .into_iter()
            .filter_map(|n| {
                let c = self.children.get(n)?;
                let waiting = matches!(c.phase, Phase::Down) && !self.conditions_hold(n);
                Some(ProgramInfo {
                    name: n.clone(),
                    kind: c.spec.kind,
                    state: c.state(waiting),
                    depends_on: c.spec.depends_on.clone(),
                    workers: c.desired().config.workers,
                    restarts: c.restarts,
                    last_death: c.last_death.clone(),
                    cluster: match &c.phase {
                        Phase::Up { cluster, .. } => Some(cluster.clone()),
                        _ => None,
                    },
                })
            })
            .collect()
    }

    /// A new configuration: refused whole when bad; else added programs start (in order),
    /// removed ones stop, changed ones roll (or, when their listeners or kind changed, stop
    /// and start again); unchanged ones are not touched.
    fn apply(&mut self, config: TreeConfig) -> Result<ApplyReport, TreeError> {
        if self.stopping {
            return Err(TreeError::Stopping);
        }
        let graph = Graph::of(&config.programs)?;
        let mut report = ApplyReport::default();
        for name in self.children.keys() {
            if !config.programs.iter().any(|p| p.name == *name) {
                report.removed.push(name.clone());
            }
        }
        for name in &report.removed {
            if let Some(c) = self.children.get_mut(name) {
                c.removing = true;
            }
        }
        // A oneshot that changed (its table, or the env files it reads) and has run, or is
        // running, runs again; what waits for it to complete stops first and starts after.
        let changed_oneshots: Vec<String> = config
            .programs
            .iter()
            .filter(|spec| {
                spec.kind == Kind::Oneshot
                    && self.children.get(&spec.name).is_some_and(|c| {
                        !c.removing
                            && c.want == Want::Up
                            && c.spec.kind == Kind::Oneshot
                            && !matches!(c.phase, Phase::Down)
                            && format!("{:?}", c.desired().config) != format!("{:?}", spec.config)
                    })
            })
            .map(|spec| spec.name.clone())
            .collect();
        let rerun = graph.awaiting_completion(changed_oneshots.iter().map(String::as_str));
        for spec in config.programs {
            let name = spec.name.clone();
            let Some(c) = self.children.get_mut(&name) else {
                report.added.push(name.clone());
                self.children.insert(name, Child::new(spec));
                continue;
            };
            if c.removing {
                continue;
            }
            let old = c.desired().config.clone();
            // ClusterConfig has no equality (it holds hooks); its Debug form shows every
            // setting, the same for the same settings.
            let same = format!("{old:?}") == format!("{:?}", spec.config);
            let kind_changed = c.spec.kind != spec.kind;
            if c.spec.depends_on != spec.depends_on && same && !kind_changed {
                report.rewired.push(name.clone());
            }
            let relisten = old.exec.foreign().map(|f| &f.listen) != spec.config.exec.foreign().map(|f| &f.listen)
                || old.scheduling != spec.config.scheduling;
            {
                let mut desired = c.desired();
                desired.config = spec.config.clone();
                desired.kind = spec.kind;
                if relisten {
                    desired.pins.clear();
                }
            }
            c.spec = spec;
            if rerun.contains(&name) {
                if !matches!(c.phase, Phase::Down) {
                    c.cycling = true;
                    if c.spec.kind == Kind::Oneshot && changed_oneshots.contains(&name) {
                        report.rerun.push(name.clone());
                    } else {
                        report.restarted.push(name.clone());
                    }
                }
                continue;
            }
            if same && !kind_changed {
                continue;
            }
            match &c.phase {
                Phase::Up { cluster, .. } if !relisten && !kind_changed => {
                    report.rolled.push(name.clone());
                    let cluster = cluster.clone();
                    let program = name.clone();
                    tokio::spawn(async move {
                        match cluster.reload().await {
                            Ok(r) if r.error.is_none() => {
                                tracing::info!(program, replaced = r.replaced.len(), "program rolled")
                            }
                            Ok(r) => tracing::warn!(program, error = ?r.error, "program's rolling reload stopped"),
                            Err(e) => tracing::warn!(program, error = %e, "program's rolling reload refused"),
                        }
                    });
                }
                Phase::Up { .. } | Phase::Spawning => {
                    report.restarted.push(name.clone());
                    c.cycling = true;
                }
                // Not running: it starts from the new configuration when it starts.
                _ => {}
            }
        }
        self.graph = graph;
        self.decider.strategy = config.strategy;
        if (self.period, self.max_restarts) != (config.period, config.max_restarts) {
            self.decider.intensity =
                crate::supervision::intensity::RestartIntensity::new(config.max_restarts, config.period);
            (self.period, self.max_restarts) = (config.period, config.max_restarts);
        }
        tracing::info!(?report, "configuration applied");
        Ok(report)
    }
}

/// A program that ended in a way its restart type does not restart: it stays down.
fn c_finish<M, R>(st: &mut TreeState<M, R>, name: &str) {
    if let Some(c) = st.children.get_mut(name) {
        c.phase = Phase::Finished;
    }
}

/// Reads a program's cluster events until the cluster stops: forwards each, tagged, to the
/// tree's subscribers; tells the tree when every worker has been ready, when a oneshot's
/// workers have all exited 0, and when a singleton's process ended on its own.
#[allow(clippy::too_many_arguments)]
async fn watch_program<M, R>(
    program: Arc<str>,
    epoch: u64,
    kind: Kind,
    singleton_restart: Option<Restart>,
    workers: usize,
    cluster: ClusterHandle<M, R>,
    mut events: crate::api::events::bus::EventStream<R>,
    tree: &ActorRef<TreeMsg<M, R>>,
    subscribers: &Subscribers<R>,
) where
    M: Serialize + Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    let name = program.to_string();
    let mut ready_said = false;
    let mut completed = 0usize;
    while let Some(event) = events.recv().await {
        match &event {
            ClusterEvent::Ready { .. } if !ready_said => {
                let all = match cluster.status().await {
                    Ok(ws) => {
                        ws.iter().filter(|w| w.state == crate::api::status::WorkerState::Ready).count()
                            >= cluster.workers()
                    }
                    Err(_) => false,
                };
                if all {
                    ready_said = true;
                    let _ = tree.send_message(TreeMsg::Ready { program: name.clone(), epoch });
                }
            }
            ClusterEvent::Exit { status, exited_after_disconnect: false, .. } => {
                if kind == Kind::Oneshot && status.success() {
                    completed += 1;
                    if completed >= workers {
                        let _ = tree.send_message(TreeMsg::Completed { program: name.clone(), epoch });
                    }
                } else if let Some(restart) = singleton_restart {
                    let died = match restart {
                        Restart::Permanent => true,
                        Restart::Transient => !status.success(),
                        Restart::Temporary => false,
                    };
                    let cause = format!("its process {status}");
                    let _ = tree.send_message(TreeMsg::Exited { program: name.clone(), epoch, died, cause });
                }
            }
            _ => {}
        }
        subscribers.emit(TreeEvent::Program { program: program.clone(), event });
    }
}
