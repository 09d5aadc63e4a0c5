//! Health probes of one worker, made by the primary: readiness (`--ready http:/healthz`,
//! [`ClusterConfig::ready_check`](crate::ClusterConfig::ready_check)) and liveness
//! (`--probe`, [`ClusterConfig::probe`](crate::ClusterConfig::probe)).
//!
//! An HTTP or TCP probe reaches **one** worker through the listener its clients use: the
//! connection is pinned to that worker's own socket in the listener's reuse-port group
//! ([`Listeners::connect_to`](crate::routing::balance::Listeners)), so the program changes
//! nothing and what the probe sees is what a client of that worker sees. An exec probe runs a
//! shell command with the worker's slot, pid and listener address in its environment.
//!
//! | file          | what                                                       |
//! |---------------|------------------------------------------------------------|
//! | `http.rs`     | `GET PATH`: 2xx/3xx passes                                 |
//! | `tcp.rs`      | the connection is taken off the worker's socket            |
//! | `exec.rs`     | `sh -c COMMAND` in its own process group, with a timeout   |
//! | `schedule.rs` | when probes are made: until ready, then every `every`      |
//!
//! The probes only report; what follows a result (a worker ready, a worker condemned after
//! `failures` in a row) is the slot's decision (`slot/probe.rs`).

mod exec;
mod http;
mod schedule;
mod tcp;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::error::ProbeError;
pub(crate) use schedule::{Purpose, liveness, readiness};

use crate::config::probe::Check;
use crate::routing::balance::Listeners;

/// The worker a probe is for.
#[derive(Clone)]
pub(crate) struct ProbeTarget {
    pub listeners: Arc<Listeners>,
    /// The listener to reach it through (`--probe-listener`); `None`: the first.
    pub listener: Option<String>,
    pub slot: usize,
    pub generation: u64,
    pub pid: u32,
}

/// The result of one probe: how long it took, and whether it passed.
#[derive(Debug, Clone)]
pub(crate) struct ProbeResult {
    pub took: Duration,
    pub outcome: Result<(), Arc<ProbeError>>,
}

/// Makes one probe of `target` with `check`, within `timeout`.
pub(crate) async fn probe_once(target: &ProbeTarget, check: &Check, timeout: Duration) -> ProbeResult {
    let started = Instant::now();
    let outcome = match check {
        // Exec ends its own command's process group at the timeout.
        Check::Exec { command } => exec::check(target, command, timeout).await,
        Check::Http { path } => within(timeout, http::check(target, path, timeout)).await,
        Check::Tcp => within(timeout, tcp::check(target, timeout)).await,
    };
    ProbeResult { took: started.elapsed(), outcome: outcome.map_err(Arc::new) }
}

async fn within(timeout: Duration, probe: impl Future<Output = Result<(), ProbeError>>) -> Result<(), ProbeError> {
    tokio::time::timeout(timeout, probe).await.unwrap_or(Err(ProbeError::Timeout(timeout)))
}
