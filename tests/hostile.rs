//! Hostile and broken workers: each is handled, and the others keep serving. Real worker
//! processes (the testbed's hostile modes), real signals, bounded waits.

mod common;

use std::time::Duration;

use common::*;
use corral::config::{Scheduling, WorkerOutput};
use corral::{ClusterError, ClusterEvent};
use nix::sys::signal::Signal;

/// `n` requests on fresh connections; how many were answered 200.
async fn answered(addr: std::net::SocketAddr, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        if let Ok((200, _)) = http_get(addr, "/").await {
            ok += 1;
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_flooding_stdout_does_not_stop_the_others() {
    let config = http_config(2, Scheduling::RoundRobin)
        .output(WorkerOutput::Capture)
        .env_var("TESTBED_MODE", "flood_stdout")
        .env_var("TESTBED_FAULT_SLOT", "0");
    let (cluster, mut events) = spawn(config).await;
    let addr = events.http_ready(2).await;
    // Lines keep coming while both serve.
    events.wait_for("flood output", |e| matches!(e, ClusterEvent::Output { slot: 0, .. })).await;
    let ok = tokio::time::timeout(TIMEOUT, answered(addr, 100)).await.expect("answers in time");
    assert_eq!(ok, 100);
    let status = cluster.status().await.expect("status");
    assert!(status.iter().all(|w| w.state == corral::status::WorkerState::Ready), "{status:?}");
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_flooding_messages_does_not_stop_the_others() {
    let (cluster, mut events) = spawn(http_config(2, Scheduling::RoundRobin)).await;
    let addr = events.http_ready(2).await;
    cluster.send_to(0, corral_test_flood()).await.expect("send");
    let ok = tokio::time::timeout(TIMEOUT, answered(addr, 100)).await.expect("answers in time");
    assert_eq!(ok, 100);
    // The primary is still answering its own API promptly.
    tokio::time::timeout(Duration::from_secs(5), cluster.status()).await.expect("status in time").expect("status");
    // The flooding worker may still be busy flooding when asked to drain: it is killed at
    // kill_timeout; the other drains cleanly.
    match cluster.stop().await {
        Ok(()) => {}
        Err(ClusterError::Killed { workers, .. }) => {
            assert!(workers.iter().all(|k| k.slot == 0), "{workers:?}")
        }
        Err(other) => panic!("{other}"),
    }
}

fn corral_test_flood() -> TestCmd {
    TestCmd::Flood(200_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_ignores_sigterm_is_killed_at_kill_timeout_and_named() {
    let config = config(2)
        .env_var("TESTBED_MODE", "ignore_term")
        .env_var("TESTBED_FAULT_SLOT", "0")
        .kill_timeout(Duration::from_millis(800));
    let (cluster, mut events) = spawn(config).await;
    let pids = events.all_ready(2).await;
    let started = std::time::Instant::now();
    let stopped = cluster.stop().await;
    let waited = started.elapsed();
    match stopped {
        Err(ClusterError::Killed { workers, .. }) => {
            assert_eq!(workers.iter().map(|k| k.pid).collect::<Vec<_>>(), vec![pids[0]], "{workers:?}")
        }
        other => panic!("expected the deaf worker named as killed, got {other:?}"),
    }
    assert!(waited < Duration::from_secs(5), "the stop took {waited:?}");
    assert!(wait_gone(&pids, TIMEOUT).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigstopped_worker_is_replaced_after_its_heartbeat_timeout() {
    let config = config(2).heartbeat_interval(Duration::from_millis(100)).heartbeat_timeout(Duration::from_millis(600));
    let (cluster, mut events) = spawn(config).await;
    let pids = events.all_ready(2).await;
    kill(pids[0], Signal::SIGSTOP);
    events
        .wait_for(
            "the stopped worker killed",
            |e| matches!(e, ClusterEvent::Exit { slot: 0, pid, .. } if *pid == pids[0]),
        )
        .await;
    events.wait_for("its replacement ready", |e| matches!(e, ClusterEvent::Ready { slot: 0, generation: 2, .. })).await;
    // The other slot was not touched.
    let status = cluster.status().await.expect("status");
    assert_eq!(status[1].pid, Some(pids[1]));
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_closes_its_ipc_is_replaced() {
    let config = config(2).env_var("TESTBED_MODE", "close_ipc").env_var("TESTBED_FAULT_GEN", "1");
    let (cluster, mut events) = spawn(config).await;
    // In either order.
    events.seen_or_wait("slot 0 replaced", |e| matches!(e, ClusterEvent::Ready { slot: 0, generation: 2, .. })).await;
    events.seen_or_wait("slot 1 replaced", |e| matches!(e, ClusterEvent::Ready { slot: 1, generation: 2, .. })).await;
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_forked_by_a_worker_does_not_outlive_it() {
    let dir = std::env::temp_dir().join(format!("corral-hostile-fork-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pid_file = dir.join("child.pid");
    let config = config(1)
        .env_var("TESTBED_MODE", "fork_child")
        .env_var("TESTBED_FAULT_GEN", "1")
        .env_var("TESTBED_CHILD_PID_FILE", pid_file.display().to_string());
    let (cluster, mut events) = spawn(config).await;
    events.wait_for("the worker exited", |e| matches!(e, ClusterEvent::Exit { slot: 0, .. })).await;
    let child: u32 = std::fs::read_to_string(&pid_file).expect("the child's pid").trim().parse().expect("pid");
    assert!(wait_gone(&[child], TIMEOUT).await.is_empty(), "the worker's child {child} outlived it");
    events.wait_for("the replacement ready", |e| matches!(e, ClusterEvent::Ready { generation: 2, .. })).await;
    cluster.stop().await.expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_may_listen_only_where_the_configuration_allows() {
    // Allowed: any port of 127.0.0.1.
    let (cluster, mut events) =
        spawn(http_config(1, Scheduling::RoundRobin).listen_allow(Some(vec!["127.0.0.1:0".into()]))).await;
    let addr = events.http_ready(1).await;
    assert_eq!(answered(addr, 5).await, 5);
    cluster.stop().await.expect("clean stop");

    // Not allowed: the request is refused to the worker (its start fails), nothing is bound,
    // and the cluster itself is not stopped by it.
    let config = http_config(1, Scheduling::RoundRobin)
        .listen_allow(Some(vec!["127.0.0.2:8080".into()]))
        .escalation(corral::supervision::Escalation::Degraded);
    let (cluster, mut events) = spawn(config).await;
    events.wait_for("the worker exited", |e| matches!(e, ClusterEvent::Exit { slot: 0, .. })).await;
    assert!(!events.seen.iter().any(|e| matches!(e, ClusterEvent::Listening { .. })), "it listened anyway");
    tokio::time::timeout(Duration::from_secs(5), cluster.status()).await.expect("still answers").expect("status");
    cluster.stop().await.expect("stops");
}
