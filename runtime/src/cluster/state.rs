//! What the cluster actor knows: its slots, and whether it reloads or stops.

use std::sync::Arc;

use ractor::{ActorRef, RpcReplyPort};
use tokio::sync::watch;
use tracing::Span;

use super::msg::ClusterSignal;
use crate::api::events::bus::EventBus;
use crate::api::outcome::Outcome;
use crate::config::cluster::ClusterConfig;
use crate::config::command::WorkerCommand;
use crate::routing::balance::Listeners;
use crate::routing::messages::Routes;
use crate::slot::{SlotMsg, SlotOutcome};

/// What the cluster actor is started with (built by [`Cluster::spawn`](crate::cluster::Cluster::spawn)).
pub struct ClusterArgs<M, R> {
    pub(crate) config: Arc<ClusterConfig>,
    pub(crate) bus: Arc<EventBus<R>>,
    pub(crate) routes: Arc<Routes<M>>,
    pub(crate) listeners: Arc<Listeners>,
    pub(crate) done: watch::Sender<Option<Outcome>>,
    /// Makes actor names unique among clusters of one process.
    pub(crate) id: u64,
    /// What this image took over from the previous one (an upgrade).
    pub(crate) inherited: Option<Inherited>,
    /// The recycling turns the slots share (`recycle_concurrency`).
    pub(crate) recycling: Arc<crate::slot::RecycleTurns>,
    /// The book of warm spares the slots share (`spares`).
    pub(crate) spares: Arc<crate::slot::Spares>,
    /// The autoscaler's book, shared with the scaler task and the handle (`autoscale`).
    pub(crate) autoscale: Arc<crate::api::autoscale::AutoscaleBook>,
}

/// One worker slot, as the cluster sees it.
/// An upgrade under way in the old image: its preflight runs.
pub(crate) struct UpgradeRun {
    pub(crate) reply: Option<RpcReplyPort<crate::api::error::UpgradeError>>,
    pub(crate) path: std::path::PathBuf,
}

/// What the new image took over, for the cluster to finish the upgrade.
pub(crate) struct Inherited {
    pub adoptions: Vec<crate::slot::Adoption>,
    pub reap: Vec<u32>,
    pub upgrades: u64,
}

pub(crate) struct Slot {
    pub supervisor: Option<ActorRef<SlotMsg>>,
    pub outcome: Option<SlotOutcome>,
    /// Being removed by a scale-down: its worker drains, then the slot goes.
    pub removing: bool,
}

/// The cluster actor's state.
pub struct ClusterState<M, R> {
    pub(crate) args: ClusterArgs<M, R>,
    pub(crate) myself: ActorRef<ClusterSignal>,
    pub(crate) command: Arc<WorkerCommand>,
    pub(crate) slots: Vec<Slot>,
    pub(crate) stopping: bool,
    /// The `reload` span, while a rolling reload runs.
    pub(crate) reload: Option<Span>,
    /// Reloads asked for while one ran: they make one more, once it ends (their requesters
    /// hear that one's report).
    pub(crate) reload_queued: Option<Vec<RpcReplyPort<crate::api::reports::ReloadReport>>>,
    pub(crate) failure: Option<Outcome>,
    pub(crate) waiters: Vec<RpcReplyPort<()>>,
    /// The `shutdown` span, from the beginning of the stop until the cluster stopped.
    pub(crate) shutdown_span: Option<Span>,
    /// An upgrade's preflight, while it runs (the old image).
    pub(crate) upgrade: Option<UpgradeRun>,
    /// Whether the running reload is an upgrade's (the new image replacing the workers).
    pub(crate) upgrade_reload: bool,
    /// How many upgrades this primary (this pid) has been through.
    pub(crate) upgrades: u64,
}

/// Time a slot's supervisor may take beyond `listen_timeout` to answer a replacement (the
/// spawn itself).
const SPAWN_ALLOWANCE: std::time::Duration = std::time::Duration::from_secs(5);

/// `listen_timeout` plus [`SPAWN_ALLOWANCE`], saturating: `ClusterConfig::validate` accepts
/// any non-zero `listen_timeout` (a config file may say `"18446744073709551615s"`), and a
/// reload or restart must not panic on it (RELIABILITY.md, fuzzing findings).
fn replacement_patience(listen_timeout: std::time::Duration) -> std::time::Duration {
    listen_timeout.saturating_add(SPAWN_ALLOWANCE)
}

impl<M, R> ClusterState<M, R> {
    /// How long a replacement (reload, restart) may take before the slot counts as not
    /// answering.
    pub(crate) fn replacement_patience(&self) -> std::time::Duration {
        replacement_patience(self.args.config.listen_timeout)
    }

    /// Slots that serve: neither being removed nor holding a spare (what `workers` counts).
    pub(crate) fn active_slots(&self) -> usize {
        (0..self.slots.len()).filter(|&i| !self.slots[i].removing && !self.args.spares.is_standby(i)).count()
    }

    pub(crate) fn supervisors(&self) -> impl Iterator<Item = &ActorRef<SlotMsg>> {
        self.slots.iter().filter_map(|s| s.supervisor.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{SPAWN_ALLOWANCE, replacement_patience};

    #[test]
    fn replacement_patience_saturates_for_a_huge_listen_timeout() {
        assert_eq!(replacement_patience(Duration::from_secs(3)), Duration::from_secs(3) + SPAWN_ALLOWANCE);
        assert_eq!(replacement_patience(Duration::MAX), Duration::MAX);
        assert_eq!(replacement_patience(Duration::from_secs(u64::MAX)), Duration::MAX);
    }
}
