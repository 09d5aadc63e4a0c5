//! Recycling that never bunches: with every worker over its limit at once, at most
//! `recycle_concurrency` are replaced at a time; a reload that re-reads the configuration
//! changes that limit.

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
    let most = most_replacing(&mut events, HashMap::new(), workers, 2).await;
    cluster.stop().await.expect("clean stop");
    most
}

/// Follows the events until every one of `workers` slots has a ready process of
/// `generation` or later; returns the most slots seen with two processes at once (`alive`: the
/// pids of each slot when it starts).
async fn most_replacing(
    events: &mut Events,
    mut alive: HashMap<usize, Vec<u32>>,
    workers: usize,
    generation: u64,
) -> usize {
    let mut recycled = vec![false; workers];
    let mut most = 0;
    while recycled.iter().any(|r| !r) {
        match events.wait_for("recycling", |_| true).await {
            ClusterEvent::Fork { slot, pid, .. } => alive.entry(slot).or_default().push(pid),
            ClusterEvent::Exit { slot, pid, .. } => alive.entry(slot).or_default().retain(|p| *p != pid),
            ClusterEvent::Ready { slot, generation: g, .. } if g >= generation => recycled[slot] = true,
            _ => {}
        }
        most = most.max(alive.values().filter(|pids| pids.len() >= 2).count());
    }
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

/// Starts `workers` workers recycled `from` at a time, reloads to a config file that says `to`,
/// then makes every worker go over `max_memory` at once; returns the most slots seen
/// replacing at once until every slot was recycled. The recycled processes (generation 3:
/// the reload made generation 2) take 2.5 s to start, so that the recycles under way overlap
/// whenever the limit lets them.
async fn most_at_once_after_a_reload(workers: usize, from: usize, to: usize) -> usize {
    let dir = scratch_dir(&format!("recycle-reload-{from}-{to}"));
    let file = dir.join("corral.toml");
    std::fs::write(&file, format!("recycle_concurrency = {from}\n")).expect("write config");
    let base = config(workers)
        .max_memory(Some(64 << 20))
        .recycle_concurrency(from)
        .heartbeat_interval(Duration::from_millis(50))
        .heartbeat_timeout(Duration::from_secs(10))
        .env_var("TESTBED_MODE", "slow_start")
        .env_var("TESTBED_FAULT_GEN", "3")
        .env_var("TESTBED_START_DELAY_MS", "2500");
    let (cluster, mut events) = spawn(reloaded_from_file(base, file.clone())).await;
    let first = events.all_ready(workers).await;

    std::fs::write(&file, format!("recycle_concurrency = {to}\n")).expect("write config");
    let report = cluster.reload().await.expect("reload");
    assert!(report.is_complete(), "{report:?}");
    // The reload's own replacements are over (their old processes gone) before any recycle.
    let mut exited = Vec::new();
    while first.iter().any(|pid| !exited.contains(pid)) {
        if let ClusterEvent::Exit { pid, .. } =
            events.wait_for("the first processes exit", |e| matches!(e, ClusterEvent::Exit { .. })).await
        {
            exited.push(pid);
        }
    }
    let mut alive: HashMap<usize, Vec<u32>> = HashMap::new();
    for w in cluster.status().await.expect("status") {
        assert_eq!(w.generation, 2, "slot {} after the reload", w.slot);
        alive.insert(w.slot, w.pid.into_iter().collect());
    }

    // Every worker over its limit at once.
    for slot in 0..workers {
        cluster.send_to(slot, TestCmd::Alloc(96)).await.expect("send");
    }
    let most = most_replacing(&mut events, alive, workers, 3).await;
    cluster.stop().await.expect("clean stop");
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_raises_recycle_concurrency_and_the_waiting_workers_go_together() {
    let most = most_at_once_after_a_reload(4, 1, 3).await;
    assert!((2..=3).contains(&most), "{most} slots replaced at once under a limit raised from 1 to 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_lowers_recycle_concurrency_to_one_at_a_time() {
    assert_eq!(most_at_once_after_a_reload(4, 4, 1).await, 1, "one at a time after the limit was lowered from 4");
}
