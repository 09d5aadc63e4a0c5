//! What a tree reports: each program's state ([`ProgramInfo`]) and what a new configuration
//! changed ([`ApplyReport`]).

use crate::api::handle::ClusterHandle;

use super::child::ProgramState;
use super::spec::{Condition, Kind};

/// One program of a running tree.
#[derive(Debug, Clone)]
pub struct ProgramInfo<M, R> {
    /// Its name.
    pub name: String,
    /// Service or oneshot.
    pub kind: Kind,
    /// Where it is.
    pub state: ProgramState,
    /// What it waits for.
    pub depends_on: Vec<(String, Condition)>,
    /// Its configured worker count.
    pub workers: usize,
    /// How many times the tree restarted it.
    pub restarts: u32,
    /// How it last died, if it did.
    pub last_death: Option<String>,
    /// Its cluster, while one runs.
    pub cluster: Option<ClusterHandle<M, R>>,
}

/// What [`TreeHandle::apply`](super::TreeHandle::apply) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApplyReport {
    /// Programs added (started in order).
    pub added: Vec<String>,
    /// Programs removed (stopped).
    pub removed: Vec<String>,
    /// Programs changed and rolled (a rolling reload with the new configuration).
    pub rolled: Vec<String>,
    /// Programs changed in a way a rolling reload cannot carry (listeners, kind): stopped
    /// and started again.
    pub restarted: Vec<String>,
    /// Programs whose place in the tree changed only (dependencies).
    pub rewired: Vec<String>,
    /// Oneshots changed (their table or env files) that had run or were running: run again
    /// with the new configuration; the programs that wait for one of them to complete are
    /// stopped first and started again once it has (they are in `restarted`).
    pub rerun: Vec<String>,
}
