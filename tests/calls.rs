//! Typed request/response across real processes: primary → worker calls (10,000 at once,
//! matched to their ids), each failure typed (timeout, worker killed, handler failed), worker →
//! primary calls, and no call left behind.

mod common;

use std::time::Duration;

use common::*;
use corral::ClusterEvent;
use corral::worker::CallError;
use nix::sys::signal::Signal;

/// Waits (bounded) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_calls_are_each_answered_with_their_own_reply() {
    let (cluster, mut events) = spawn(config(2)).await;
    events.all_ready(2).await;
    let calls: Vec<_> = (0..10_000u64)
        .map(|i| {
            let cluster = cluster.clone();
            tokio::spawn(async move { (i, cluster.call((i % 2) as usize, |r| TestCmd::Double(i, r), TIMEOUT).await) })
        })
        .collect();
    for call in calls {
        let (i, reply) = call.await.expect("call task");
        assert_eq!(reply, Ok(i * 2), "call {i}");
    }
    assert_eq!(cluster.pending_calls(), 0);
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_of_a_call_is_typed_and_leaves_nothing_pending() {
    let (cluster, mut events) = spawn(config(2)).await;
    let pids = events.all_ready(2).await;

    let timeout = Duration::from_millis(200);
    assert_eq!(cluster.call(0, TestCmd::Hold, timeout).await, Err(CallError::Timeout { timeout }));
    let refused = cluster.call(0, TestCmd::Refuse, TIMEOUT).await;
    assert_eq!(refused, Err(CallError::Failed { said: "refused on purpose".into() }));
    let forgotten = cluster.call(0, TestCmd::Forget, TIMEOUT).await;
    assert!(matches!(forgotten, Err(CallError::Failed { .. })), "{forgotten:?}");
    assert!(matches!(cluster.call(7, TestCmd::Hold, TIMEOUT).await, Err(CallError::NoSuchSlot { slot: 7, .. })));
    assert_eq!(cluster.pending_calls(), 0);

    // A worker killed with calls in flight: each fails at once, not at its timeout.
    let held: Vec<_> = (0..50)
        .map(|_| {
            let cluster = cluster.clone();
            tokio::spawn(async move { cluster.call(1, TestCmd::Hold, TIMEOUT).await })
        })
        .collect();
    eventually("50 calls are in flight", || cluster.pending_calls() == 50).await;
    let killed_at = tokio::time::Instant::now();
    kill(pids[1], Signal::SIGKILL);
    for call in held {
        assert_eq!(call.await.expect("call task"), Err(CallError::PeerGone));
    }
    assert!(killed_at.elapsed() < TIMEOUT / 2, "the calls failed when the worker died, not at their timeout");
    assert_eq!(cluster.pending_calls(), 0);

    // The restarted worker answers again.
    events.wait_for("restarted", |e| matches!(e, ClusterEvent::Ready { slot: 1, generation: 2, .. })).await;
    assert_eq!(cluster.call(1, |r| TestCmd::Double(21, r), TIMEOUT).await, Ok(42));
    assert_eq!(cluster.pending_calls(), 0);
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_calls_the_primary_many_times_at_once() {
    let (cluster, mut events) = spawn(config(1)).await;
    events.all_ready(1).await;
    // 1,000 calls from the worker at once, answered n + 1 by this primary.
    cluster.send_to(0, TestCmd::Ask(1000, 10_000)).await.expect("send");
    let asked = loop {
        match events.wait_for("asks", |e| matches!(e, ClusterEvent::Message { .. })).await {
            ClusterEvent::Message { message: TestReport::Ask(n, reply), .. } => {
                reply.send(n + 1).await.expect("reply");
            }
            ClusterEvent::Message { message: asked @ TestReport::Asked { .. }, .. } => break asked,
            _ => {}
        }
    };
    assert_eq!(asked, TestReport::Asked { matched: 1000, errors: Vec::new(), pending_after: 0 });

    // Unanswered (the request is kept, not dropped): the worker's call times out.
    cluster.send_to(0, TestCmd::Ask(1, 200)).await.expect("send");
    let mut kept = Vec::new();
    let asked = loop {
        match events.wait_for("ask", |e| matches!(e, ClusterEvent::Message { .. })).await {
            ClusterEvent::Message { message: TestReport::Ask(_, reply), .. } => kept.push(reply),
            ClusterEvent::Message { message: asked @ TestReport::Asked { .. }, .. } => break asked,
            _ => {}
        }
    };
    let TestReport::Asked { matched: 0, errors, pending_after: 0 } = asked else { panic!("{asked:?}") };
    assert_eq!(errors, vec!["no reply within 200ms".to_string()]);

    // Dropped unanswered (every copy: the event log keeps one of each event): the worker's
    // call fails at once.
    drop(kept);
    cluster.send_to(0, TestCmd::Ask(1, 10_000)).await.expect("send");
    let asked = loop {
        match events.wait_for("ask", |e| matches!(e, ClusterEvent::Message { .. })).await {
            ClusterEvent::Message { message: TestReport::Ask(_, reply), .. } => {
                drop(reply);
                events.seen.clear();
            }
            ClusterEvent::Message { message: asked @ TestReport::Asked { .. }, .. } => break asked,
            _ => {}
        }
    };
    let TestReport::Asked { matched: 0, errors, .. } = asked else { panic!("{asked:?}") };
    assert!(errors[0].starts_with("the handler failed"), "{errors:?}");
    cluster.stop().await.expect("clean stop");
}
