//! Autoscaling ([`ClusterConfig::autoscale`](crate::ClusterConfig::autoscale)): a task beside
//! the cluster actor samples the load every 250 ms ([`sample`]), decides ([`decide`]) and
//! asks the actor for a step, which scales as `corral scale` does (ready-gated up, the
//! youngest slot drained down) unless a scale pinned the count.
//!
//! | file        | what                                                        |
//! |-------------|-------------------------------------------------------------|
//! | `sample.rs` | connections waiting, the ready workers' CPU against their share |
//! | `decide.rs` | the verdict over a sliding window, and when it makes a step |

mod decide;
mod sample;

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use ractor::rpc::CallResult;
use tracing::Instrument;

use super::msg::{ClusterSignal, Signal};
use crate::api::autoscale::AutoscaleBook;
use crate::api::msg::ClusterMsg;
use crate::api::status::WorkerState;
use crate::routing::balance::Listeners;

/// How long the status of the slots may take before the sample is skipped.
const STATUS_PATIENCE: Duration = Duration::from_secs(2);

/// How long a step may take to be taken (spawning its slots), before the next is tried.
const STEP_PATIENCE: Duration = Duration::from_secs(10);

/// The ready workers' pids are read from the slots' status every this many samples (and
/// whenever the count changed): they rarely change, and the status asks every slot actor,
/// which is most of what the scaler costs the primary.
const ROSTER_EVERY: u32 = 4;

/// Starts the scaler of `cluster` (once: `book` remembers). It ends when the cluster does.
pub(crate) fn start(cluster: ActorRef<ClusterSignal>, listeners: Arc<Listeners>, book: Arc<AutoscaleBook>) {
    if book.start_once() {
        tokio::spawn(run(cluster, listeners, book).instrument(tracing::info_span!("autoscale")));
    }
}

async fn run(cluster: ActorRef<ClusterSignal>, listeners: Arc<Listeners>, book: Arc<AutoscaleBook>) {
    let mut ticks = tokio::time::interval(decide::TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut sampler, mut decider) = (sample::Sampler::new(), decide::Decider::default());
    // The ready, active workers' pids, the count they were read at, and samples since.
    let (mut pids, mut read_at, mut age): (Vec<u32>, usize, u32) = (Vec::new(), 0, ROSTER_EVERY);
    loop {
        ticks.tick().await;
        let Some(config) = book.config() else { continue };
        if age >= ROSTER_EVERY || read_at != book.workers() {
            read_at = book.workers();
            let status =
                cluster.call(|reply| ClusterSignal::from(ClusterMsg::Status(reply)), Some(STATUS_PATIENCE)).await;
            match status {
                Ok(CallResult::Success(workers)) => {
                    pids = workers
                        .iter()
                        .filter(|w| w.state == WorkerState::Ready && !w.spare)
                        .filter_map(|w| w.pid)
                        .collect();
                    age = 0;
                }
                Ok(_) => continue,
                Err(_) => return, // The cluster is gone.
            }
        }
        age += 1;
        let sample = sampler.sample(&listeners, &pids);
        let load = decider.observe(sample, config.signal);
        book.observed(load);
        if book.is_pinned() {
            continue;
        }
        let Some(step) = decider.decide(&config, sample.at, book.workers(), book.changed(), load) else { continue };
        match cluster
            .call(|reply| ClusterSignal(Signal::Autoscale(step.to, step.reason, reply)), Some(STEP_PATIENCE))
            .await
        {
            Ok(CallResult::Success(Ok(_))) => {}
            // Refused for now (a reload, a drain, a pin): the condition still holds at the
            // next sample if it lasts.
            Ok(CallResult::Success(Err(error))) => tracing::debug!(%error, to = step.to, "autoscale step not taken"),
            Ok(_) => {}
            Err(_) => return,
        }
    }
}
