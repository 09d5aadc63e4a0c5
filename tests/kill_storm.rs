//! Kill storms and churn, bounded: under load, many SIGKILLs of random workers (restart limit
//! lifted), then rolling reloads in a row and scale churn. The primary (this test process: the
//! only test in this file, so nothing else shares its fds and threads) lives, every slot
//! serves at the end, its fd count, thread count and RSS do not grow, and no child is left a
//! zombie.

mod common;

use std::time::Duration;

use common::*;
use corral::config::Scheduling;
use corral::control::Scale;
use corral::supervision::Backoff;
use nix::sys::signal::Signal;

/// How many kills (`KILL_STORM_KILLS` raises it for a longer run, as a script would).
fn kills() -> usize {
    std::env::var("KILL_STORM_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(150)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_survives_kill_storms_reloads_and_scale_churn_without_growing() {
    let config = http_config(2, Scheduling::RoundRobin)
        .backoff(Backoff { base: Duration::from_millis(10), factor: 1.5, max: Duration::from_millis(100), jitter: 0.0 })
        .min_uptime(Duration::from_millis(1))
        .max_restarts(u32::MAX)
        .period(Duration::from_secs(1));
    let (cluster, mut events) = spawn(config).await;
    let addr = events.http_ready(2).await;
    // Warm up, then take the baseline (the runtime's own threads and fds exist by now).
    let stop = tokio_util::sync::CancellationToken::new();
    let load = tokio::spawn(load(addr, 2, "/", stop.clone()));
    all_serving(&cluster, 2).await;
    let (fds_before, threads_before, rss_before) = (fds(), status_field("Threads:"), status_field("VmRSS:"));

    let started = std::time::Instant::now();
    let n = kills();
    for i in 0..n {
        let pids = all_serving(&cluster, 2).await;
        kill(pids[i % 2], Signal::SIGKILL);
        // The next round waits for the replacement (all_serving), bounded.
        let victim = pids[i % 2];
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while cluster.status().await.expect("status").iter().any(|w| w.pid == Some(victim)) {
            assert!(tokio::time::Instant::now() < deadline, "kill {i}: pid {victim} never replaced");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let storm = started.elapsed();
    for _ in 0..20 {
        // The last kill's replacement may still be starting: a reload needs every slot ready.
        all_serving(&cluster, 2).await;
        let report = cluster.reload().await.expect("reload");
        assert!(report.is_complete(), "{:?}", report.error);
    }
    for _ in 0..10 {
        cluster.scale(Scale::To(4)).await.expect("scale up");
        all_serving(&cluster, 4).await;
        cluster.scale(Scale::To(2)).await.expect("scale down");
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while cluster.status().await.expect("status").len() != 2 {
            assert!(tokio::time::Instant::now() < deadline, "scale-down did not finish");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    all_serving(&cluster, 2).await;
    stop.cancel();
    let report = load.await.expect("load");
    assert!(report.ok > 0);
    // Every slot serves at the end.
    let mut pids = std::collections::HashSet::new();
    for _ in 0..20 {
        let (status, body) = http_get(addr, "/").await.expect("served");
        assert_eq!(status, 200);
        pids.insert(answered_by(&body).1);
    }
    assert_eq!(pids.len(), 2, "both slots serve: {pids:?}");

    // Nothing grew (a little slack for lazily made runtime state), and no zombies.
    // The fds of the last connections and processes close within moments of the churn's end:
    // waited for (bounded), so a count taken mid-close does not read as a leak.
    let settle = tokio::time::Instant::now() + TIMEOUT;
    while fds() > fds_before + 4 && tokio::time::Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (fds_after, threads_after, rss_after) = (fds(), status_field("Threads:"), status_field("VmRSS:"));
    assert!(fds_after <= fds_before + 4, "fds {fds_before} -> {fds_after}");
    assert!(threads_after <= threads_before + 4, "threads {threads_before} -> {threads_after}");
    assert!(rss_after <= rss_before + 32 * 1024, "RSS {rss_before} kB -> {rss_after} kB");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !zombies().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "zombies: {:?}", zombies());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "kill storm: {n} kills in {storm:?}, 20 reloads, 10 scale cycles; {} requests ok, {} failed; fds {fds_before}->{fds_after}, threads {threads_before}->{threads_after}, RSS {rss_before}->{rss_after} kB (requests to a worker killed mid-request are lost, as expected)",
        report.ok,
        report.failed.len()
    );
    cluster.stop().await.expect("clean stop");
}
