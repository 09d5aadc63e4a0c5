//! A worker that breaks the protocol is replaced; the primary and the other workers carry on.

mod common;

use common::*;
use corral::ClusterEvent;
use corral::protocol::ProtocolError;
use corral::supervision::Escalation;

/// Slot 1's first process misbehaves as `mode` says; checks it is reported and replaced while
/// slot 0 keeps its process and keeps answering.
async fn replaced_after(mode: &str, expected: fn(&ProtocolError) -> bool) {
    let config = config(2)
        .env_var("TESTBED_MODE", mode)
        .env_var("TESTBED_FAULT_SLOT", "1")
        .env_var("TESTBED_FAULT_GEN", "1")
        .max_frame_length(64 * 1024);
    let (cluster, mut events) = spawn(config).await;
    let ready0 = events.seen_or_wait("slot 0 ready", |e| matches!(e, ClusterEvent::Ready { slot: 0, .. })).await;
    let ClusterEvent::Ready { pid: pid0, .. } = ready0 else { unreachable!() };

    let err = events.seen_or_wait("protocol error", |e| matches!(e, ClusterEvent::ProtocolError { slot: 1, .. })).await;
    let ClusterEvent::ProtocolError { error, .. } = err else { unreachable!() };
    assert!(expected(&error), "{mode}: unexpected error {error:?}");
    events.seen_or_wait("replacement ready", |e| matches!(e, ClusterEvent::Ready { slot: 1, generation: 2, .. })).await;

    // The replacement and the untouched worker both work.
    for slot in 0..2 {
        cluster.send_to(slot, TestCmd::Ping(slot as u64)).await.expect("send");
        events
            .wait_for(
                "pong",
                |e| matches!(e, ClusterEvent::Message { slot: s, message: TestReport::Pong { .. }, .. } if *s == slot),
            )
            .await;
    }
    let status = cluster.status().await.expect("status");
    assert_eq!(status[0].pid, Some(pid0), "{mode}: slot 0 kept its process");
    assert_eq!(status[0].generation, 1);
    assert!(!events.seen.iter().any(|e| matches!(e, ClusterEvent::Exit { slot: 0, .. })));
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes() {
    replaced_after("garbage", |e| matches!(e, ProtocolError::Decode(_))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_prefix_over_the_limit() {
    replaced_after("oversized", |e| matches!(e, ProtocolError::FrameTooLarge { max: 65536, .. })).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame() {
    replaced_after("truncated", |e| matches!(e, ProtocolError::Truncated { .. })).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_variant() {
    replaced_after("unknown_variant", |e| matches!(e, ProtocolError::Decode(_))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_hello_within_the_listen_timeout() {
    let config = config(1)
        .env_var("TESTBED_MODE", "silent")
        .env_var("TESTBED_FAULT_GEN", "1")
        .listen_timeout(std::time::Duration::from_millis(500));
    let (cluster, mut events) = spawn(config).await;
    let err = events.wait_for("protocol error", |e| matches!(e, ClusterEvent::ProtocolError { .. })).await;
    assert!(
        matches!(err, ClusterEvent::ProtocolError { ref error, .. } if matches!(**error, ProtocolError::NoHello { timeout_ms: 500 })),
        "{err:?}"
    );
    events.wait_for("replacement ready", |e| matches!(e, ClusterEvent::Ready { generation: 2, .. })).await;
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_protocol_version_is_not_restarted() {
    let config = config(2)
        .env_var("TESTBED_MODE", "bad_version")
        .env_var("TESTBED_FAULT_SLOT", "1")
        .escalation(Escalation::Degraded);
    let (cluster, mut events) = spawn(config).await;
    let err = events.wait_for("protocol error", |e| matches!(e, ClusterEvent::ProtocolError { slot: 1, .. })).await;
    assert!(
        matches!(err, ClusterEvent::ProtocolError { ref error, .. } if matches!(**error, ProtocolError::VersionMismatch { ours: 1, theirs: 99 })),
        "{err:?}"
    );
    events.wait_for("gave up", |e| matches!(e, ClusterEvent::GaveUp { slot: 1, .. })).await;
    assert!(
        !events.seen.iter().any(|e| matches!(e, ClusterEvent::Restarting { slot: 1, .. })),
        "no restart for a version mismatch"
    );
    // Slot 0 is unaffected.
    events.seen_or_wait("slot 0 ready", |e| matches!(e, ClusterEvent::Ready { slot: 0, .. })).await;
    cluster.send_to(0, TestCmd::Ping(1)).await.expect("send");
    events
        .wait_for("pong", |e| matches!(e, ClusterEvent::Message { slot: 0, message: TestReport::Pong { .. }, .. }))
        .await;
    cluster.stop().await.expect("clean stop");
}
