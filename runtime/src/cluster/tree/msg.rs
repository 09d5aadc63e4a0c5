//! What the tree actor handles: reports of the tasks that run its programs' clusters, and
//! requests from its [`TreeHandle`](super::TreeHandle).

use ractor::RpcReplyPort;

use crate::api::error::ClusterError;
use crate::api::handle::ClusterHandle;
use crate::config::cluster::ClusterConfig;

use super::error::TreeError;
use super::spec::TreeConfig;
use super::status::{ApplyReport, ProgramInfo};

/// A message to the tree actor.
#[derive(Debug)]
#[non_exhaustive]
pub enum TreeMsg<M, R> {
    /// A program's cluster was spawned (or could not be).
    Spawned {
        /// The program.
        program: String,
        /// Its spawn count.
        epoch: u64,
        /// The cluster, or why not.
        result: Result<ClusterHandle<M, R>, ClusterError>,
    },
    /// Every worker of a program has been ready.
    Ready {
        /// The program.
        program: String,
        /// Its spawn count.
        epoch: u64,
    },
    /// A oneshot's workers exited 0.
    Completed {
        /// The program.
        program: String,
        /// Its spawn count.
        epoch: u64,
    },
    /// A singleton's process ended: `died` when its restart type would restart it.
    Exited {
        /// The program.
        program: String,
        /// Its spawn count.
        epoch: u64,
        /// Whether that is a death (else the program finished).
        died: bool,
        /// How it ended.
        cause: String,
    },
    /// A program's cluster has stopped.
    Ended {
        /// The program.
        program: String,
        /// Its spawn count.
        epoch: u64,
        /// How.
        result: Result<(), ClusterError>,
    },
    /// Every program's state.
    Status(RpcReplyPort<Vec<ProgramInfo<M, R>>>),
    /// Stop every program, dependents first; the reply comes once all have stopped.
    Stop(Option<RpcReplyPort<()>>),
    /// Stop one program.
    StopProgram(String, RpcReplyPort<Result<(), TreeError>>),
    /// Start a stopped program (once its dependencies hold).
    StartProgram(String, RpcReplyPort<Result<(), TreeError>>),
    /// Replace a program's configuration (its next reload and restart use it).
    SetConfig(String, Box<ClusterConfig>, RpcReplyPort<Result<(), TreeError>>),
    /// Add, remove and change programs to match a new configuration.
    Apply(Box<TreeConfig>, RpcReplyPort<Result<ApplyReport, TreeError>>),
}

// Under ractor's `cluster` feature, the tree's messages stay in this process, as the
// cluster's own do (see `cluster::local_messages`).
#[cfg(feature = "cluster")]
impl<M: Send + 'static, R: Send + 'static> ractor::Message for TreeMsg<M, R> {}
