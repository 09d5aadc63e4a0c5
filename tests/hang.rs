//! Hang diagnosis: a worker that misses its heartbeats is diagnosed (threads from `/proc`, a
//! backtrace of its event loop) just before the SIGKILL, which still comes on time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use corral::ClusterEvent;
use corral::status::{HangReport, ThreadActivity};

const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(500);

/// Makes slot 0 hang with `cmd`; returns its hang report and how long after the hang began
/// it was killed.
async fn hang_with(cmd: TestCmd) -> (Arc<HangReport>, Duration) {
    let config = config(1).heartbeat_interval(Duration::from_millis(100)).heartbeat_timeout(HEARTBEAT_TIMEOUT);
    let (cluster, mut events) = spawn(config).await;
    let pids = events.all_ready(1).await;
    let started = tokio::time::Instant::now();
    cluster.send_to(0, cmd).await.expect("send");
    let hung = events.wait_for("hang report", |e| matches!(e, ClusterEvent::Hung { slot: 0, .. })).await;
    let ClusterEvent::Hung { pid, report, .. } = hung else { unreachable!() };
    assert_eq!(pid, pids[0]);
    let exit = events.wait_for("hung worker killed", |e| matches!(e, ClusterEvent::Exit { slot: 0, .. })).await;
    let killed_after = started.elapsed();
    assert!(matches!(exit, ClusterEvent::Exit { status, .. } if status.signal == Some(9)), "{exit:?}");
    events.wait_for("replacement ready", |e| matches!(e, ClusterEvent::Ready { slot: 0, generation: 2, .. })).await;
    cluster.stop().await.expect("clean stop");
    (report, killed_after)
}

/// The kill comes within the heartbeat timeout (plus a heartbeat interval and its checks),
/// plus the diagnosis's bound.
fn assert_on_time(report: &HangReport, killed_after: Duration) {
    let limit = HEARTBEAT_TIMEOUT + Duration::from_millis(300) + Duration::from_millis(1500);
    assert!(killed_after < limit, "killed {killed_after:?} after the hang began (limit {limit:?}); {report}");
    assert!(report.took <= Duration::from_millis(1100), "the diagnosis took {:?}", report.took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_busy_in_a_loop_is_reported_busy_and_killed_on_time() {
    let (report, killed_after) = hang_with(TestCmd::Spin(30_000)).await;
    eprintln!("killed after {killed_after:?}\n{report}");
    let main = report.event_loop().unwrap_or_else(|| panic!("no event-loop thread in {report}"));
    assert_eq!(main.activity, ThreadActivity::Busy, "{report}");
    assert_on_time(&report, killed_after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_busy_in_a_loop_is_reported_with_the_function() {
    let (report, killed_after) = hang_with(TestCmd::Spin(30_000)).await;
    eprintln!("killed after {killed_after:?}\n{report}");
    let main = report.event_loop().unwrap_or_else(|| panic!("no event-loop thread in {report}"));
    assert_eq!(main.activity, ThreadActivity::Busy, "{report}");
    let backtrace = report.backtrace.as_deref().unwrap_or_else(|| panic!("no backtrace in {report}"));
    assert!(backtrace.contains("testbed_busy_loop"), "{report}");
    assert_on_time(&report, killed_after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_blocked_in_a_sleep_is_reported_with_the_syscall() {
    let (report, killed_after) = hang_with(TestCmd::Block(30_000)).await;
    eprintln!("killed after {killed_after:?}\n{report}");
    let main = report.event_loop().unwrap_or_else(|| panic!("no event-loop thread in {report}"));
    assert!(
        matches!(main.activity, ThreadActivity::Blocked { name: Some("clock_nanosleep" | "nanosleep"), .. }),
        "{report}"
    );
    assert!(report.to_string().contains("nanosleep"), "{report}");
    assert_on_time(&report, killed_after);
}
