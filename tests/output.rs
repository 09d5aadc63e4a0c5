//! Captured worker output (Node's `silent`): every line arrives tagged with slot and pid.

mod common;

use common::*;
use corral::ClusterEvent;
use corral::config::WorkerOutput;
use corral::events::OutputStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_output_arrives_tagged_with_slot_and_pid() {
    let config = config(2).output(WorkerOutput::Capture).env_var("TESTBED_SAY", "hello");
    let (cluster, mut events) = spawn(config).await;
    let (mut lines, mut pids) = (Vec::new(), [0u32; 2]);
    while lines.len() < 4 || pids.contains(&0) {
        match events
            .wait_for("output and readiness", |e| matches!(e, ClusterEvent::Output { .. } | ClusterEvent::Ready { .. }))
            .await
        {
            ClusterEvent::Output { slot, pid, stream, line } => lines.push((slot, pid, stream, line)),
            ClusterEvent::Ready { slot, pid, .. } => pids[slot] = pid,
            _ => {}
        }
    }
    for (slot, &pid) in pids.iter().enumerate() {
        for (stream, name) in [(OutputStream::Stdout, "stdout"), (OutputStream::Stderr, "stderr")] {
            let want = format!("hello from slot {slot} on {name}");
            assert!(
                lines.iter().any(|(s, p, st, l)| *s == slot && *p == pid && *st == stream && *l == want),
                "missing {want:?} in {lines:?}"
            );
        }
    }
    cluster.stop().await.expect("clean stop");
}
