//! The cluster as an ordinary actor in a user's ractor tree.

mod common;

use std::time::Duration;

use common::*;
use corral::{Cluster, Escalation};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::mpsc;

/// A user's supervisor: reports what happens to its children.
struct Parent;

impl Actor for Parent {
    type Msg = ();
    type State = mpsc::UnboundedSender<String>;
    type Arguments = mpsc::UnboundedSender<String>;

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
            SupervisionEvent::ActorFailed(_, error) => tx.send(format!("failed: {error}")),
            SupervisionEvent::ActorTerminated(..) => tx.send("terminated".into()),
            _ => Ok(()),
        };
        Ok(())
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
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
    assert!(heard.starts_with("failed:") && heard.contains("worker slot 0 gave up after 2 restarts"), "{heard}");
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
    assert_eq!(next(&mut rx).await, "terminated");
    parent.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_refused_naming_the_field() {
    let err = Cluster::<TestCmd, TestReport>::spawn(config(0)).await.expect_err("0 workers");
    assert_eq!(err.to_string(), "invalid cluster config: workers: must be at least 1");
    let base = corral::Backoff { base: Duration::from_secs(2), max: Duration::from_secs(1), ..Default::default() };
    let err = Cluster::<TestCmd, TestReport>::spawn(config(1).backoff(base)).await.expect_err("max below base");
    assert!(err.to_string().contains("backoff.max"), "{err}");
}
