//! Supervision across real processes: workers come online, one-for-one restarts, backoff,
//! restart intensity and escalation, restart types.

mod common;

use std::time::Duration;

use common::*;
use corral::status::WorkerState;
use corral::supervision::{Escalation, Restart};
use corral::{ClusterError, ClusterEvent};
use nix::sys::signal::Signal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_come_online_and_ready() {
    let (cluster, mut events) = spawn(config(3)).await;
    let pids = events.all_ready(3).await;
    let mut distinct = pids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "three distinct worker processes: {pids:?}");
    // Each slot went fork → online → ready, in that order.
    for slot in 0..3 {
        let kinds: Vec<&str> = events
            .seen
            .iter()
            .filter(|e| e.slot() == Some(slot))
            .filter_map(|e| match e {
                ClusterEvent::Fork { .. } => Some("fork"),
                ClusterEvent::Online { .. } => Some("online"),
                ClusterEvent::Ready { .. } => Some("ready"),
                _ => None,
            })
            .collect();
        assert_eq!(kinds, ["fork", "online", "ready"], "slot {slot}");
    }
    let status = cluster.status().await.expect("status");
    assert_eq!(status.len(), 3);
    for (slot, w) in status.iter().enumerate() {
        assert_eq!(w.state, WorkerState::Ready);
        assert_eq!(w.pid, Some(pids[slot]));
        assert_eq!(w.generation, 1);
        assert!(w.rss_bytes.unwrap_or(0) > 0, "the primary reads the worker's RSS");
    }
    cluster.stop().await.expect("clean stop");
    assert!(wait_gone(&pids, TIMEOUT).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_restarts_only_that_slot() {
    let (cluster, mut events) = spawn(config(3)).await;
    let pids = events.all_ready(3).await;
    kill(pids[1], Signal::SIGKILL);

    let exit = events.wait_for("exit of slot 1", |e| matches!(e, ClusterEvent::Exit { slot: 1, .. })).await;
    let ClusterEvent::Exit { pid, status, exited_after_disconnect, .. } = exit else { unreachable!() };
    assert_eq!(pid, pids[1]);
    assert_eq!(status.signal, Some(9));
    assert!(!exited_after_disconnect, "a crash is not a requested exit");
    let ready = events.wait_for("slot 1 ready again", |e| matches!(e, ClusterEvent::Ready { slot: 1, .. })).await;
    let ClusterEvent::Ready { generation, pid: new_pid, .. } = ready else { unreachable!() };
    assert_eq!(generation, 2);
    assert_ne!(new_pid, pids[1]);

    // Nothing happened to the other slots.
    assert!(events.seen.iter().all(|e| !matches!(e, ClusterEvent::Exit { slot, .. } if *slot != 1)));
    let status = cluster.status().await.expect("status");
    assert_eq!(status[0].pid, Some(pids[0]));
    assert_eq!(status[2].pid, Some(pids[2]));
    assert_eq!((status[0].generation, status[1].generation, status[2].generation), (1, 2, 1));
    assert_eq!(status[1].restarts, 1);
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_backs_off_then_gives_up_and_stops_the_cluster() {
    let config = config(2)
        .env_var("TESTBED_MODE", "crash_start")
        .env_var("TESTBED_FAULT_SLOT", "1")
        .max_restarts(4)
        .period(Duration::from_secs(60))
        .escalation(Escalation::Stop);
    let (cluster, mut events) = spawn(config).await;
    let seen = events.until("slot 1 gives up", |e| matches!(e, ClusterEvent::GaveUp { slot: 1, .. })).await;
    let delays: Vec<Duration> = seen
        .iter()
        .filter_map(|e| match e {
            ClusterEvent::Restarting { slot: 1, delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    // base 50 ms, factor 2, no jitter: the delays grow 50, 100, 200, 400 ms.
    let expected: Vec<Duration> = [50, 100, 200, 400].into_iter().map(Duration::from_millis).collect();
    assert_eq!(delays, expected);
    // The crash loop exits with code 1 each time (start failed).
    let codes: Vec<Option<i32>> = seen
        .iter()
        .filter_map(|e| match e {
            ClusterEvent::Exit { slot: 1, status, .. } => Some(status.code),
            _ => None,
        })
        .collect();
    assert_eq!(codes, vec![Some(1); 5]);

    // Escalation::Stop: the healthy slot is drained and the cluster fails.
    let outcome = tokio::time::timeout(TIMEOUT, cluster.wait()).await.expect("cluster stops");
    match outcome {
        Err(ClusterError::GaveUp { slot: 1, restarts: 4, .. }) => {}
        other => panic!("expected GaveUp for slot 1, got {other:?}"),
    }
    events
        .wait_for("slot 0 drained", |e| matches!(e, ClusterEvent::Exit { slot: 0, exited_after_disconnect: true, .. }))
        .await;
    events.wait_for("stopped", |e| matches!(e, ClusterEvent::Stopped { error: Some(_) })).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degraded_escalation_keeps_the_other_workers() {
    let config = config(2)
        .env_var("TESTBED_MODE", "crash_start")
        .env_var("TESTBED_FAULT_SLOT", "0")
        .max_restarts(2)
        .escalation(Escalation::Degraded);
    let (cluster, mut events) = spawn(config).await;
    events.wait_for("slot 0 gives up", |e| matches!(e, ClusterEvent::GaveUp { slot: 0, .. })).await;
    let status = cluster.status().await.expect("cluster still answers");
    assert_eq!(status[0].state, WorkerState::GaveUp);
    assert_eq!(status[1].state, WorkerState::Ready);
    assert!(!cluster.is_stopped());
    // The healthy worker still works.
    cluster.send_to(1, TestCmd::Ping(7)).await.expect("send");
    events
        .wait_for("pong", |e| {
            matches!(e, ClusterEvent::Message { slot: 1, message: TestReport::Pong { n: 7, .. }, .. })
        })
        .await;
    assert!(matches!(cluster.send_to(0, TestCmd::Ping(1)).await, Err(ClusterError::NotConnected { slot: 0 })));
    cluster.stop().await.expect("a degraded cluster still stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_death_backoff_resets_after_min_uptime() {
    let (cluster, mut events) = spawn(config(1).min_uptime(Duration::from_millis(300))).await;
    let pids = events.all_ready(1).await;
    // Up longer than min_uptime: restarted at once.
    tokio::time::sleep(Duration::from_millis(400)).await;
    kill(pids[0], Signal::SIGKILL);
    let restarting = events.wait_for("restart", |e| matches!(e, ClusterEvent::Restarting { .. })).await;
    assert!(
        matches!(restarting, ClusterEvent::Restarting { delay, attempt: 0, .. } if delay.is_zero()),
        "{restarting:?}"
    );
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_worker_exiting_zero_is_not_restarted() {
    let config = config(2)
        .restart(Restart::Transient)
        .env_var("TESTBED_MODE", "exit_after_ready")
        .env_var("TESTBED_FAULT_SLOT", "0");
    let (cluster, mut events) = spawn(config).await;
    let exit = events.wait_for("slot 0 exits", |e| matches!(e, ClusterEvent::Exit { slot: 0, .. })).await;
    assert!(matches!(exit, ClusterEvent::Exit { status, .. } if status.code == Some(0)));
    // Slot 1 is a plain worker; make it crash: transient restarts an abnormal exit.
    events.seen_or_wait("slot 1 ready", |e| matches!(e, ClusterEvent::Ready { slot: 1, .. })).await;
    cluster.send_to(1, TestCmd::Exit(3)).await.expect("send");
    events.wait_for("slot 1 restarting", |e| matches!(e, ClusterEvent::Restarting { slot: 1, .. })).await;
    events.wait_for("slot 1 ready again", |e| matches!(e, ClusterEvent::Ready { slot: 1, generation: 2, .. })).await;
    assert!(
        !events.seen.iter().any(|e| matches!(e, ClusterEvent::Restarting { slot: 0, .. })),
        "slot 0 was restarted: {:#?}",
        events.seen
    );
    let status = cluster.status().await.expect("status");
    assert_eq!(status[0].state, WorkerState::Stopped);
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_worker_is_never_restarted_and_the_cluster_ends_with_it() {
    let (cluster, mut events) = spawn(config(1).restart(Restart::Temporary)).await;
    let pids = events.all_ready(1).await;
    kill(pids[0], Signal::SIGKILL);
    events.wait_for("stopped", |e| matches!(e, ClusterEvent::Stopped { error: None })).await;
    assert!(!events.seen.iter().any(|e| matches!(e, ClusterEvent::Restarting { .. })));
    tokio::time::timeout(TIMEOUT, cluster.wait()).await.expect("ends").expect("cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_drains_every_worker_with_exit_zero() {
    let (cluster, mut events) = spawn(config(2)).await;
    let pids = events.all_ready(2).await;
    cluster.stop().await.expect("clean stop");
    let exits: Vec<_> = events
        .until("stopped", |e| matches!(e, ClusterEvent::Stopped { .. }))
        .await
        .into_iter()
        .filter_map(|e| match e {
            ClusterEvent::Exit { status, exited_after_disconnect, .. } => Some((status.code, exited_after_disconnect)),
            _ => None,
        })
        .collect();
    assert_eq!(exits, vec![(Some(0), true); 2]);
    assert!(wait_gone(&pids, Duration::from_secs(2)).await.is_empty());
}
