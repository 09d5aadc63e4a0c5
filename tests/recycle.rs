//! Recycling that never bunches: with every worker over its limit at once, at most
//! `recycle_concurrency` are replaced at a time.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use corral::ClusterEvent;

/// Runs `workers` workers that are all over `max_memory` from the start (1 byte), until every
/// slot was recycled; returns the most slots seen replacing at once (a slot replaces from its
/// replacement's fork until its old process exited).
async fn most_at_once(workers: usize, at_once: usize) -> usize {
    let config = config(workers)
        .max_memory(Some(1))
        .recycle_concurrency(at_once)
        .heartbeat_interval(Duration::from_millis(50))
        .heartbeat_timeout(Duration::from_secs(10));
    let (cluster, mut events) = spawn(config).await;
    let mut alive: HashMap<usize, Vec<u32>> = HashMap::new();
    let mut recycled = vec![false; workers];
    let mut most = 0;
    while recycled.iter().any(|r| !r) {
        match events.wait_for("recycling", |_| true).await {
            ClusterEvent::Fork { slot, pid, .. } => alive.entry(slot).or_default().push(pid),
            ClusterEvent::Exit { slot, pid, .. } => alive.entry(slot).or_default().retain(|p| *p != pid),
            ClusterEvent::Ready { slot, generation, .. } if generation >= 2 => recycled[slot] = true,
            _ => {}
        }
        most = most.max(alive.values().filter(|pids| pids.len() >= 2).count());
    }
    cluster.stop().await.expect("clean stop");
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_over_its_limit_at_once_is_recycled_one_at_a_time() {
    assert_eq!(most_at_once(4, 1).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recycle_concurrency_bounds_the_replacements_under_way() {
    let most = most_at_once(4, 2).await;
    assert!((1..=2).contains(&most), "{most} slots replaced at once");
}
