//! The cluster as an ordinary actor in a user's ractor tree.

mod common;

use std::time::Duration;

use common::*;
use corral::config::ConfigError;
use corral::supervision::Escalation;
use corral::{Cluster, ClusterError};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::mpsc;

/// A user's supervisor: reports what happens to its children.
struct Parent;

/// What the parent heard.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    /// A child failed; for a cluster whose slot gave up, which slot after how many restarts.
    Failed {
        gave_up: Option<(usize, usize)>,
    },
    Terminated,
}

impl Actor for Parent {
    type Msg = ();
    type State = mpsc::UnboundedSender<Heard>;
    type Arguments = mpsc::UnboundedSender<Heard>;

    async fn pre_start(&self, _: ActorRef<()>, tx: Self::Arguments) -> Result<Self::State, ActorProcessingErr> {
        Ok(tx)
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<()>,
        event: SupervisionEvent,
        tx: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _ = match event {
            SupervisionEvent::ActorFailed(_, error) => {
                let gave_up = match error.downcast_ref::<ClusterError>() {
                    Some(ClusterError::GaveUp { slot, restarts, .. }) => Some((*slot, *restarts)),
                    _ => None,
                };
                tx.send(Heard::Failed { gave_up })
            }
            SupervisionEvent::ActorTerminated(..) => tx.send(Heard::Terminated),
            _ => Ok(()),
        };
        Ok(())
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Heard>) -> Heard {
    tokio::time::timeout(TIMEOUT, rx.recv()).await.expect("parent hears in time").expect("parent alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parent_sees_the_cluster_fail_when_a_slot_gives_up() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (parent, _) = Actor::spawn(None, Parent, tx).await.expect("parent");
    let config = config(2)
        .env_var("TESTBED_MODE", "crash_start")
        .env_var("TESTBED_FAULT_SLOT", "0")
        .max_restarts(2)
        .period(Duration::from_secs(60))
        .escalation(Escalation::Stop);
    let (cluster, _events) =
        Cluster::<TestCmd, TestReport>::spawn_linked(config, parent.get_cell()).await.expect("spawn");
    let heard = next(&mut rx).await;
    assert_eq!(heard, Heard::Failed { gave_up: Some((0, 2)) });
    assert!(cluster.is_stopped());
    parent.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_terminates_the_cluster_actor_normally() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (parent, _) = Actor::spawn(None, Parent, tx).await.expect("parent");
    let (cluster, events) =
        Cluster::<TestCmd, TestReport>::spawn_linked(config(1), parent.get_cell()).await.expect("spawn");
    Events::new(events).all_ready(1).await;
    cluster.stop().await.expect("clean stop");
    assert_eq!(next(&mut rx).await, Heard::Terminated);
    parent.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_refused_naming_the_field() {
    let err = Cluster::<TestCmd, TestReport>::spawn(config(0)).await.expect_err("0 workers");
    assert!(matches!(err, ClusterError::Config(ConfigError::Invalid { field: "workers", .. })), "{err:?}");
    let base = corral::supervision::Backoff {
        base: Duration::from_secs(2),
        max: Duration::from_secs(1),
        ..Default::default()
    };
    let err = Cluster::<TestCmd, TestReport>::spawn(config(1).backoff(base)).await.expect_err("max below base");
    assert!(matches!(err, ClusterError::Config(ConfigError::Invalid { field: "backoff.max", .. })), "{err:?}");
    // Client steering is for reuse-port groups only.
    let err = Cluster::<TestCmd, TestReport>::spawn(config(1).steer_by_client(true)).await.expect_err("round robin");
    assert!(matches!(err, ClusterError::Config(ConfigError::Invalid { field: "steer_by_client", .. })), "{err:?}");
    assert!(err.to_string().contains("reuseport"), "{err}");
}
