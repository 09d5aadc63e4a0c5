//! A tree of programs behind one control socket: the same protocol as a cluster's, every
//! worker tagged with its program, a `programs` list in the status, and the commands that
//! name a program (`reload / restart / scale / stop / start / logs NAME`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{ProgramInfo, TreeError, TreeEvent, TreeHandle};
use crate::api::error::ClusterError;
use crate::api::events::ClusterEvent;
use crate::api::reports::Replaced;
use crate::operator::control::protocol::{Command, ErrorKind, scale_request};
use crate::operator::control::{ControlFailure, LogRing, Target, serve_target};
use crate::operator::status_json::{CpuMeter, status_row};

/// A tree, as its control socket serves it.
struct TreeTarget<M, R> {
    tree: TreeHandle<M, R>,
    cpu: CpuMeter,
}

/// Serves the tree's control socket at `path` until the tree stops.
pub(crate) async fn serve_tree<M, R>(path: PathBuf, tree: TreeHandle<M, R>)
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    let logs = Arc::new(Mutex::new(LogRing::new()));
    let mut events = tree.subscribe();
    let ring = logs.clone();
    let collect = async move {
        while let Some(event) = events.recv().await {
            if let TreeEvent::Program { program, event: ClusterEvent::Output { slot, pid, stream, line } } = event {
                ring.lock().unwrap_or_else(PoisonError::into_inner).push(Some(program), slot, pid, stream, line);
            }
        }
    };
    serve_target(path, TreeTarget { tree, cpu: CpuMeter::default() }, logs, collect, None).await;
}

fn tree_failure(e: TreeError) -> ControlFailure {
    let kind = match &e {
        TreeError::Program { source, .. } if matches!(**source, ClusterError::NoSuchSlot { .. }) => {
            ErrorKind::NoSuchSlot
        }
        _ => ErrorKind::Refused,
    };
    ControlFailure::Tree { kind, error: Box::new(e) }
}

fn replaced_json(replaced: &[Replaced]) -> Vec<Value> {
    replaced
        .iter()
        .map(|r| json!({"slot": r.slot, "old_pid": r.old_pid, "new_pid": r.new_pid, "generation": r.generation}))
        .collect()
}

impl<M, R> Target for TreeTarget<M, R>
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    async fn answer(&self, command: Command) -> Result<Value, ControlFailure> {
        let tree = &self.tree;
        match command {
            Command::Status => {
                let programs = tree.status().await.map_err(tree_failure)?;
                Ok(self.status(&programs).await)
            }
            Command::Reload => {
                let report = tree.reload().await.map_err(tree_failure)?;
                Ok(serde_json::to_value(&report).unwrap_or(Value::Null))
            }
            Command::ReloadProgram { program } => {
                // The file re-read for this program's configuration, when there is a file.
                let config = match tree.reread() {
                    Ok(new) => Some(
                        new.programs
                            .into_iter()
                            .find(|p| p.name == program)
                            .ok_or_else(|| tree_failure(TreeError::NoSuchProgram(program.clone())))?
                            .config,
                    ),
                    Err(TreeError::NoReconfigure) => None,
                    Err(e) => return Err(tree_failure(e)),
                };
                let report = tree.reload_program(&program, config).await.map_err(tree_failure)?;
                let replaced = replaced_json(&report.replaced);
                match report.error {
                    None => Ok(json!({ "program": program, "replaced": replaced })),
                    Some(source) => Err(ControlFailure::Reload { source, replaced: replaced.len() }),
                }
            }
            Command::RestartProgram { program, slot } => {
                let replaced = tree.restart_program(&program, slot).await.map_err(tree_failure)?;
                Ok(json!({ "program": program, "replaced": replaced_json(&replaced) }))
            }
            Command::ScaleProgram { program, to, by, auto } => {
                let report = tree.scale(&program, scale_request(to, by, auto)?).await.map_err(tree_failure)?;
                Ok(json!({"program": program, "from": report.from, "to": report.to, "note": report.note}))
            }
            Command::StopProgram { program } => {
                tree.stop_program(&program).await.map_err(tree_failure)?;
                Ok(json!({ "program": program, "stopping": true }))
            }
            Command::StartProgram { program } => {
                tree.start_program(&program).await.map_err(tree_failure)?;
                Ok(json!({ "program": program, "starting": true }))
            }
            Command::Stop => {
                let tree = tree.clone();
                // Answered at once; the client watches the tree go.
                tokio::spawn(async move {
                    let _ = tree.stop().await;
                });
                Ok(json!({"stopping": true}))
            }
            Command::Config => {
                let mut out = serde_json::Map::new();
                for p in tree.status().await.map_err(tree_failure)? {
                    let config = match &p.cluster {
                        Some(c) => c.config().await.ok().map(|c| crate::operator::control::describe(&c)),
                        None => None,
                    };
                    out.insert(
                        p.name.clone(),
                        json!({"kind": p.kind.to_string(), "state": p.state.to_string(), "config": config}),
                    );
                }
                Ok(json!({ "programs": out }))
            }
            Command::Restart { .. } => Err(ControlFailure::IsATree("name the program: corral restart NAME [--slot N]")),
            Command::Scale { .. } => Err(ControlFailure::IsATree("name the program: corral scale NAME N")),
            Command::SignalProgram { program, slot, signal } => {
                let signal =
                    nix::sys::signal::Signal::try_from(signal).map_err(|_| ControlFailure::NotASignal(signal))?;
                let cluster = tree.program(&program).await.map_err(tree_failure)?;
                let program_failure = |e: ClusterError| {
                    tree_failure(TreeError::Program { program: program.clone(), source: Arc::new(e) })
                };
                let slots = match slot {
                    Some(slot) => vec![slot],
                    None => {
                        let workers = cluster.status().await.map_err(program_failure)?;
                        workers.iter().filter(|w| w.pid.is_some()).map(|w| w.slot).collect()
                    }
                };
                let mut sent = Vec::new();
                for s in slots {
                    match cluster.signal(s, signal).await {
                        Ok(pid) => sent.push(json!({"slot": s, "pid": pid})),
                        // A slot named must take it; of every worker, one that went between
                        // the status and the signal is skipped.
                        Err(e) if slot.is_some() => return Err(program_failure(e)),
                        Err(e) => tracing::debug!(program, slot = s, error = %e, "not signalled"),
                    }
                }
                if sent.is_empty() {
                    return Err(tree_failure(TreeError::NotRunning {
                        program,
                        state: "no worker has a process".into(),
                    }));
                }
                Ok(json!({ "program": program, "signal": signal.as_str(), "sent": sent }))
            }
            Command::Signal { .. } => Err(ControlFailure::IsATree(
                "name the program: corral signal NAME SIGNAL [--slot N] (every worker of it, or slot N)",
            )),
            Command::Upgrade => Err(ControlFailure::IsATree(
                "an in-place upgrade hands one cluster over to the new image; a tree's programs are replaced with corral restart NAME (or corral reload)",
            )),
            Command::StatusAll | Command::ReloadAll | Command::Broadcast { .. } => {
                Err(ControlFailure::IsATree("node-set commands are for a single cluster"))
            }
            // Answered by the server from its ring.
            Command::Logs { .. } => Err(ControlFailure::IsATree("logs are answered by the server")),
        }
    }

    async fn stopped(&self) {
        let _ = self.tree.wait().await;
    }
}

impl<M, R> TreeTarget<M, R>
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    /// Every worker of every running program, each with its `program`, and the `programs`.
    async fn status(&self, programs: &[ProgramInfo<M, R>]) -> Value {
        let mut workers = Vec::new();
        let mut list = Vec::new();
        for p in programs {
            let ws = match &p.cluster {
                Some(c) => c.status().await.unwrap_or_default(),
                None => Vec::new(),
            };
            let ready = ws.iter().filter(|w| w.state == crate::api::status::WorkerState::Ready).count();
            for w in &ws {
                let mut row = status_row(w, self.cpu.percent(w));
                row["program"] = json!(p.name);
                workers.push(row);
            }
            let deps: serde_json::Map<String, Value> =
                p.depends_on.iter().map(|(n, c)| (n.clone(), json!(c.to_string()))).collect();
            let autoscale = p.cluster.as_ref().and_then(|c| c.autoscale());
            list.push(json!({
                "name": p.name,
                "kind": p.kind.to_string(),
                "state": p.state.to_string(),
                "workers": autoscale.as_ref().map_or(p.workers, |a| a.workers),
                "ready": ready,
                "restarts": p.restarts,
                "depends_on": deps,
                "last_death": p.last_death,
                "autoscale": autoscale.as_ref().map(crate::operator::status_json::autoscale_json),
            }));
        }
        json!({ "workers": workers, "programs": list, "orphans_adopted": crate::process::reaper::orphans_adopted() })
    }
}
