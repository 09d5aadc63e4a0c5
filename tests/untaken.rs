//! Connections handed to a worker but not yet taken by it (round robin, least connections):
//! none is lost when the worker dies, and a worker that stops taking them stops being fed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use corral::ClusterEvent;
use corral::config::Scheduling;
use nix::sys::signal::Signal;
use tokio::task::JoinHandle;

type Answer = std::io::Result<(u16, String)>;

/// The pids of slots 0 and 1 of a running two-worker cluster.
async fn pids(cluster: &Handle) -> (u32, u32) {
    let status = cluster.status().await.expect("status");
    (status[0].pid.expect("pid 0"), status[1].pid.expect("pid 1"))
}

/// Starts `n` concurrent requests; each sends its answer on the returned channel.
fn concurrent(addr: std::net::SocketAddr, n: usize) -> tokio::sync::mpsc::UnboundedReceiver<Answer> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..n {
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(http_get(addr, "/").await);
        });
    }
    rx
}

/// Waits (bounded) for `n` more answers; returns how many of them were a 200.
async fn answers(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Answer>, n: usize, bodies: &mut Vec<String>) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        let answer = tokio::time::timeout(TIMEOUT, rx.recv()).await.expect("an answer in time").expect("sender");
        match answer {
            Ok((200, body)) => {
                ok += 1;
                bodies.push(body);
            }
            Ok((status, _)) => eprintln!("answered {status}"),
            Err(e) => eprintln!("lost: {e}"),
        }
    }
    ok
}

async fn none_lost_when_a_stopped_worker_is_killed(scheduling: Scheduling) {
    let (cluster, mut events) = spawn(http_config(2, scheduling)).await;
    let addr = events.http_ready(2).await;
    let (_, stopped) = pids(&cluster).await;
    kill(stopped, Signal::SIGSTOP);
    let mut rx = concurrent(addr, 20);
    let mut bodies = Vec::new();
    // The running worker answers its share; the rest are queued on the stopped one's channel.
    let mut ok = answers(&mut rx, 10, &mut bodies).await;
    kill(stopped, Signal::SIGKILL);
    ok += answers(&mut rx, 10, &mut bodies).await;
    eprintln!("{scheduling:?}: {ok} of 20 answered");
    assert_eq!(ok, 20, "{scheduling:?}: every connection answered");
    assert!(bodies.iter().all(|b| answered_by(b).1 != stopped), "the stopped worker answered nothing");
    events.wait_for("the replacement", |e| matches!(e, ClusterEvent::Ready { slot: 1, .. })).await;
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_loses_no_connection_a_killed_worker_never_took() {
    none_lost_when_a_stopped_worker_is_killed(Scheduling::RoundRobin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_loses_no_connection_a_killed_worker_never_took() {
    none_lost_when_a_stopped_worker_is_killed(Scheduling::LeastConnections).await;
}

/// How long one sequential request may take before it counts as stuck on the stopped worker.
const PROMPT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_stops_taking_connections_stops_being_fed() {
    // The heartbeat would kill the stopped worker only after the test's own bound: nothing
    // below may wait for it.
    let config = http_config(2, Scheduling::RoundRobin)
        .heartbeat_interval(Duration::from_secs(1))
        .heartbeat_timeout(TIMEOUT + Duration::from_secs(10));
    let (cluster, mut events) = spawn(config).await;
    let addr = events.http_ready(2).await;
    let (running, stopped) = pids(&cluster).await;
    kill(stopped, Signal::SIGSTOP);
    // A burst: the stopped worker's share stays queued on its channel, untaken.
    let mut burst = concurrent(addr, 20);
    let mut bodies = Vec::new();
    let mut ok = answers(&mut burst, 10, &mut bodies).await;
    // Sequential requests: all answered promptly by the running worker. Only while the
    // primary has not yet seen the stopped worker fall behind may one be routed to it.
    let started = Instant::now();
    let mut stuck: Vec<JoinHandle<Answer>> = Vec::new();
    let mut served = 0;
    while served < 50 {
        assert!(stuck.len() <= 2, "the stopped worker is still fed after {} requests", served + stuck.len());
        let mut request = tokio::spawn(http_get(addr, "/"));
        match tokio::time::timeout(PROMPT, &mut request).await {
            Ok(answer) => {
                let (status, body) = answer.expect("task").expect("answered");
                assert_eq!(status, 200);
                assert_eq!(answered_by(&body).1, running);
                served += 1;
            }
            Err(_) => stuck.push(request),
        }
    }
    let took = started.elapsed();
    eprintln!("50 sequential requests in {took:?}, {} routed to the stopped worker", stuck.len());
    assert!(took < TIMEOUT, "answered promptly: {took:?}");
    // The stopped worker dies: everything it never took is answered by someone else.
    kill(stopped, Signal::SIGKILL);
    ok += answers(&mut burst, 10, &mut bodies).await;
    assert_eq!(ok, 20, "every connection of the burst answered");
    for request in stuck {
        let (status, _) =
            tokio::time::timeout(TIMEOUT, request).await.expect("in time").expect("task").expect("answered");
        assert_eq!(status, 200);
    }
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_out_of_fds_refuses_its_connections_and_another_serves_them() {
    let (cluster, mut events) = spawn(http_config(2, Scheduling::RoundRobin)).await;
    let addr = events.http_ready(2).await;
    let (running, starved) = pids(&cluster).await;
    cluster.send_to(1, TestCmd::HoldFds).await.expect("send");
    let held = events
        .wait_for("fds held", |e| matches!(e, ClusterEvent::Message { message: TestReport::FdsHeld { .. }, .. }))
        .await;
    eprintln!("{held:?}");
    // Every connection handed to the starved worker arrives without its fd: the worker
    // refuses it, and the primary, which still holds it, hands it to the other worker.
    let mut rx = concurrent(addr, 20);
    let mut bodies = Vec::new();
    let ok = answers(&mut rx, 20, &mut bodies).await;
    assert_eq!(ok, 20, "every connection answered while a worker is out of fds");
    assert!(bodies.iter().all(|b| answered_by(b).1 == running), "the starved worker answered nothing");
    // With fds again, it serves again.
    cluster.send_to(1, TestCmd::ReleaseFds).await.expect("send");
    events
        .wait_for("fds released", |e| {
            matches!(e, ClusterEvent::Message { message: TestReport::FdsReleased { .. }, .. })
        })
        .await;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (status, body) = http_get(addr, "/").await.expect("answered");
        assert_eq!(status, 200);
        if answered_by(&body).1 == starved {
            break;
        }
        assert!(Instant::now() < deadline, "the worker never served again after its fds came back");
    }
    let status = cluster.status().await.expect("status");
    assert_eq!(status[1].pid, Some(starved), "the starved worker was kept, not replaced");
    assert_eq!(status[0].pid, Some(running));
    cluster.stop().await.expect("clean stop");
}
