//! Shared ports and load balancing across real worker processes.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use corral::config::Scheduling;
use corral::worker::ListenRefusal;
use corral::{ClusterError, ClusterEvent};
use nix::sys::signal::Signal;

async fn serves_from_every_worker(scheduling: Scheduling) {
    let (cluster, mut events) = spawn(http_config(4, scheduling)).await;
    let addr = events.http_ready(4).await;
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0, "port 0 resolved");
    // Every worker listened on the same resolved address.
    let listening: Vec<_> = events
        .seen
        .iter()
        .filter_map(|e| match e {
            ClusterEvent::Listening { addr, .. } => Some(*addr),
            _ => None,
        })
        .collect();
    assert_eq!(listening, vec![addr; 4]);
    let mut seen = HashMap::new();
    // Concurrent connections, so that even the kernel's choice (shared, reuse-port) spreads.
    for _round in 0..50 {
        let batch: Vec<_> = (0..16).map(|_| tokio::spawn(http_get(addr, "/slow?ms=5"))).collect();
        for request in batch {
            let (status, body) = request.await.expect("task").expect("request");
            assert_eq!(status, 200);
            *seen.entry(answered_by(&body).0).or_insert(0) += 1;
        }
        if seen.len() == 4 {
            break;
        }
    }
    assert_eq!(seen.len(), 4, "{scheduling:?}: every worker served: {seen:?}");
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_serves_from_every_worker() {
    serves_from_every_worker(Scheduling::RoundRobin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_serves_from_every_worker() {
    serves_from_every_worker(Scheduling::LeastConnections).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_socket_serves_from_every_worker() {
    serves_from_every_worker(Scheduling::Shared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_port_serves_from_every_worker() {
    serves_from_every_worker(Scheduling::ReusePort).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_1000_requests_evenly() {
    let (cluster, mut events) = spawn(http_config(4, Scheduling::RoundRobin)).await;
    let addr = events.http_ready(4).await;
    let mut counts = [0u32; 4];
    for _ in 0..1000 {
        let (status, body) = http_get(addr, "/").await.expect("request");
        assert_eq!(status, 200);
        counts[answered_by(&body).0] += 1;
    }
    for (slot, &n) in counts.iter().enumerate() {
        assert!((200..=300).contains(&n), "slot {slot} served {n} of 1000: {counts:?}");
    }
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_steers_away_from_a_busy_worker() {
    // Slot 1 takes 1.5 s to start, after it has asked to listen: the slow requests all land
    // on slot 0 meanwhile; once slot 1 is ready, least connections sends new work there.
    let config = http_config(2, Scheduling::LeastConnections)
        .env_var("TESTBED_MODE", "slow_start")
        .env_var("TESTBED_START_DELAY_MS", "1500")
        .env_var("TESTBED_FAULT_SLOT", "1");
    let (cluster, mut events) = spawn(config).await;
    events.seen_or_wait("slot 0 ready", |e| matches!(e, ClusterEvent::Ready { slot: 0, .. })).await;
    let listening = events.seen_or_wait("listening", |e| matches!(e, ClusterEvent::Listening { .. })).await;
    let ClusterEvent::Listening { addr, .. } = listening else { unreachable!() };
    let slow: Vec<_> = (0..8).map(|_| tokio::spawn(http_get(addr, "/slow?ms=4000"))).collect();
    events.seen_or_wait("slot 1 ready", |e| matches!(e, ClusterEvent::Ready { slot: 1, .. })).await;
    let mut to_idle = 0;
    for _ in 0..10 {
        let (status, body) = http_get(addr, "/").await.expect("request");
        assert_eq!(status, 200);
        if answered_by(&body).0 == 1 {
            to_idle += 1;
        }
    }
    assert!(to_idle >= 9, "least connections sent {to_idle} of 10 quick requests to the idle worker");
    for request in slow {
        let (status, body) = request.await.expect("task").expect("slow request");
        assert_eq!((status, answered_by(&body).0), (200, 0), "slow requests waited for slot 0");
    }
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_routed_to_a_worker_before_it_is_ready() {
    let config = http_config(2, Scheduling::RoundRobin)
        .env_var("TESTBED_MODE", "slow_start")
        .env_var("TESTBED_START_DELAY_MS", "1000")
        .env_var("TESTBED_FAULT_SLOT", "1");
    let (cluster, mut events) = spawn(config).await;
    events.seen_or_wait("slot 0 ready", |e| matches!(e, ClusterEvent::Ready { slot: 0, .. })).await;
    let listening = events.seen_or_wait("listening", |e| matches!(e, ClusterEvent::Listening { slot: 1, .. })).await;
    let ClusterEvent::Listening { addr, .. } = listening else { unreachable!() };
    // Slot 1 has asked to listen but is not ready: everything goes to slot 0.
    for _ in 0..20 {
        let (_, body) = http_get(addr, "/").await.expect("request");
        assert_eq!(answered_by(&body).0, 0);
    }
    assert!(
        !events.seen.iter().any(|e| matches!(e, ClusterEvent::Ready { slot: 1, .. })),
        "slot 1 became ready during the check"
    );
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_keeps_the_port() {
    let (cluster, mut events) = spawn(http_config(2, Scheduling::RoundRobin)).await;
    let addr = events.http_ready(2).await;
    let pids = cluster.status().await.expect("status").iter().map(|w| w.pid.expect("pid")).collect::<Vec<_>>();
    kill(pids[0], Signal::SIGKILL);
    // The replacement listens (during its start, so before it is ready) on the same port.
    let relisten = events.wait_for("listening again", |e| matches!(e, ClusterEvent::Listening { slot: 0, .. })).await;
    let ClusterEvent::Listening { addr: again, .. } = relisten else { unreachable!() };
    assert_eq!(again, addr, "the replacement shares the same port");
    events.wait_for("slot 0 back", |e| matches!(e, ClusterEvent::Ready { slot: 0, generation: 2, .. })).await;
    let mut served_by_new = false;
    for _ in 0..10 {
        let (status, body) = http_get(addr, "/").await.expect("request");
        assert_eq!(status, 200);
        let (slot, pid) = answered_by(&body);
        served_by_new |= slot == 0 && pid != pids[0];
    }
    assert!(served_by_new);
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_waiting_while_the_only_worker_restarts_are_all_served() {
    // One worker; its replacement takes 500 ms to start. Requests made while it is down wait
    // in the primary (and the kernel's backlog), then are all served by the replacement.
    let config = http_config(1, Scheduling::RoundRobin)
        .env_var("TESTBED_MODE", "slow_start")
        .env_var("TESTBED_START_DELAY_MS", "500")
        .env_var("TESTBED_FAULT_GEN", "2");
    let (cluster, mut events) = spawn(config).await;
    let addr = events.http_ready(1).await;
    let old = cluster.status().await.expect("status")[0].pid.expect("pid");
    kill(old, Signal::SIGKILL);
    events.wait_for("exit", |e| matches!(e, ClusterEvent::Exit { .. })).await;
    let waiting: Vec<_> = (0..20).map(|_| tokio::spawn(http_get(addr, "/"))).collect();
    for request in waiting {
        let (status, body) = request.await.expect("task").expect("no connection lost");
        assert_eq!(status, 200);
        assert_ne!(answered_by(&body).1, old);
    }
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_in_use_stops_the_cluster_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let config = config(2).env_var("TESTBED_HTTP", addr.to_string());
    let (cluster, mut events) = spawn(config).await;
    let outcome = tokio::time::timeout(TIMEOUT, cluster.wait()).await.expect("cluster stops");
    let err = outcome.expect_err("listen fails");
    let in_use = nix::errno::Errno::EADDRINUSE as i32;
    assert!(
        matches!(err, ClusterError::Listen(ListenRefusal::Bind { addr: ref a, errno }) if *a == addr.to_string() && errno == in_use),
        "{err:?}"
    );
    events.wait_for("stopped", |e| matches!(e, ClusterEvent::Stopped { .. })).await;
    let pids: Vec<u32> = events
        .seen
        .iter()
        .filter_map(|e| match e {
            ClusterEvent::Fork { pid, .. } => Some(*pid),
            _ => None,
        })
        .collect();
    assert!(wait_gone(&pids, Duration::from_secs(2)).await.is_empty(), "no worker left behind");
    assert!(!events.seen.iter().any(|e| matches!(e, ClusterEvent::Restarting { .. })), "no restart storm");
}
