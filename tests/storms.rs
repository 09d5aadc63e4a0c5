//! Kill storms that land while workers are still starting, in every scheduling mode: under
//! load, SIGKILLs of random workers 5–25 ms apart (restart limit lifted, restarts immediate),
//! so that many land before a worker has asked to listen, while its listener is being passed,
//! or while its first connections are on their way. The primary (this test process: the only
//! test in this file) ends where it started after a warm-up — fds ± 2, no more threads — with
//! no zombie child, and every slot serves. RSS is held to ± 2 MiB here, where the test's own
//! clients share the process (a debug build); `benches/storm.py` holds a release primary of
//! its own to ± 1 MiB over 10,000 kills (RELIABILITY.md).
//!
//! (The primary used to keep, for every worker that died before a listener knew it — and in
//! the shared and reuse-port modes for every worker — its end of the worker's handle channel:
//! a Unix seqpacket socket "established" with its peer gone.)

mod common;

use std::time::Duration;

use common::*;
use corral::config::Scheduling;
use corral::supervision::Backoff;
use nix::sys::signal::Signal;

/// What RSS may grow by (see the module docs).
const RSS_SLACK_KIB: u64 = 2048;

/// Kills per mode (`STORM_KILLS` raises it, as a longer run would).
fn kills() -> usize {
    std::env::var("STORM_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(250)
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    fds: usize,
    threads: u64,
    rss_kib: u64,
}

fn sample() -> Figures {
    Figures { fds: fds(), threads: status_field("Threads:"), rss_kib: status_field("VmRSS:") }
}

/// The least of a few samples: a connection being passed, a blocking thread about to retire,
/// only ever add.
async fn settled() -> Figures {
    let mut best = sample();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = sample();
        best = Figures {
            fds: best.fds.min(s.fds),
            threads: best.threads.min(s.threads),
            rss_kib: best.rss_kib.min(s.rss_kib),
        };
    }
    best
}

fn grown(base: Figures, now: Figures) -> bool {
    now.fds > base.fds + 2 || now.threads > base.threads || now.rss_kib > base.rss_kib + RSS_SLACK_KIB
}

/// A small xorshift generator, seeded from the clock: which worker, how long a pause.
struct Dice(u64);

impl Dice {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos());
        Dice(nanos as u64 | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// `n` SIGKILLs of random live workers, 5–25 ms apart, whatever their state.
async fn storm(cluster: &Handle, n: usize) {
    let started = tokio::time::Instant::now();
    let mut dice = Dice::new();
    let mut sent = 0;
    while sent < n {
        assert!(started.elapsed() < Duration::from_secs(120), "only {sent} of {n} kills in 120 s");
        let pids: Vec<u32> = cluster.status().await.expect("status").iter().filter_map(|w| w.pid).collect();
        let victim = pids.get(dice.below(pids.len() as u64) as usize).copied();
        let pause = 5 + dice.below(21);
        if let Some(pid) = victim
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok()
        {
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

async fn one_mode(scheduling: Scheduling) -> String {
    const WORKERS: usize = 3;
    let config = http_config(WORKERS, scheduling)
        .backoff(Backoff { base: Duration::from_millis(1), factor: 1.5, max: Duration::from_millis(5), jitter: 0.0 })
        .min_uptime(Duration::from_millis(1))
        .max_restarts(u32::MAX)
        .period(Duration::from_secs(1));
    let (cluster, mut events) = spawn(config).await;
    let addr = events.http_ready(WORKERS).await;
    // Warm-up: the runtime's lazily made state (threads, buffers, the listener's sockets).
    let stop = tokio_util::sync::CancellationToken::new();
    let warm = tokio::spawn(load(addr, 2, "/", stop.clone()));
    storm(&cluster, 150).await;
    all_serving(&cluster, WORKERS).await;
    stop.cancel();
    warm.await.expect("load");
    let base = settled().await;

    let stop = tokio_util::sync::CancellationToken::new();
    let under = tokio::spawn(load(addr, 2, "/", stop.clone()));
    let n = kills();
    let started = std::time::Instant::now();
    storm(&cluster, n).await;
    let took = started.elapsed();
    all_serving(&cluster, WORKERS).await;
    stop.cancel();
    let report = under.await.expect("load");
    let mut pids = std::collections::HashSet::new();
    for _ in 0..30 {
        let (status, body) = http_get(addr, "/").await.expect("served after the storm");
        assert_eq!(status, 200);
        pids.insert(answered_by(&body).1);
    }
    // (Sticky sends every connection from 127.0.0.1 to one worker; with a shared socket the
    // kernel wakes whichever worker it likes: every slot ready, checked above, is what counts.)
    if !matches!(scheduling, Scheduling::Sticky | Scheduling::Shared) {
        assert_eq!(pids.len(), WORKERS, "{scheduling:?}: every slot serves: {pids:?}");
    }

    // Transients go within moments (tokio's idle blocking threads within 10 s): waited for,
    // bounded, so a count taken mid-close does not read as a leak.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut now = settled().await;
    while grown(base, now) && tokio::time::Instant::now() < deadline {
        now = settled().await;
    }
    assert!(now.fds <= base.fds + 2, "{scheduling:?}: fds {} -> {}", base.fds, now.fds);
    assert!(now.threads <= base.threads, "{scheduling:?}: threads {} -> {}", base.threads, now.threads);
    assert!(now.rss_kib <= base.rss_kib + RSS_SLACK_KIB, "{scheduling:?}: RSS {} -> {} KiB", base.rss_kib, now.rss_kib);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !zombies().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "{scheduling:?}: zombies {:?}", zombies());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.stop().await.expect("clean stop");
    format!(
        "{scheduling:?}: {n} kills in {took:?}, {} served / {} failed; fds {} -> {}, threads {} -> {}, RSS {} -> {} KiB",
        report.ok,
        report.failed.len(),
        base.fds,
        now.fds,
        base.threads,
        now.threads,
        base.rss_kib,
        now.rss_kib
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_storms_while_workers_start_leave_nothing_behind_in_every_scheduling_mode() {
    for scheduling in [
        Scheduling::RoundRobin,
        Scheduling::LeastConnections,
        Scheduling::Sticky,
        Scheduling::Shared,
        Scheduling::ReusePort,
    ] {
        let line = one_mode(scheduling).await;
        eprintln!("kill storm {line}");
    }
}
