//! Health probes (issue 28): readiness and liveness checks of one worker at a time, through
//! the port its clients use, for `corral run` and for library clusters.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{CORRAL, CorralRun, http_pids, python, until_pids};
use common::{TIMEOUT, http_config, http_get, kill, process_gone, scratch_dir, spawn};
use corral::ClusterEvent;
use corral::config::Scheduling;
use corral::config::{Check, ProbeConfig};
use nix::sys::signal::Signal;
use tokio_util::sync::CancellationToken;

/// Fresh connections, one every 20 ms, until `stop`: (answered, failures).
fn client(addr: SocketAddr, stop: CancellationToken) -> tokio::task::JoinHandle<(u64, Vec<String>)> {
    tokio::spawn(async move {
        let (mut ok, mut failed) = (0, Vec::new());
        let deadline = Instant::now() + TIMEOUT * 3;
        while !stop.is_cancelled() && Instant::now() < deadline {
            match http_get(addr, "/").await {
                Ok((200, _)) => ok += 1,
                other => failed.push(format!("{other:?}")),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (ok, failed)
    })
}

/// The probe flags of the liveness tests: 2 failures of 300 ms apart condemn a worker.
const PROBE: [&str; 10] = [
    "--ready",
    "http:/healthz",
    "--probe",
    "http:/healthz",
    "--probe-every",
    "300ms",
    "--probe-timeout",
    "300ms",
    "--probe-failures",
    "2",
];

/// A worker whose `/healthz` turns bad (`signal`: SIGUSR1 answers 500, SIGUSR2 hangs) is
/// replaced; the other is left alone, and no client request fails meanwhile.
async fn a_sick_worker_is_replaced(signal: Signal) {
    let mut args = vec!["--workers", "2", "--listen", "127.0.0.1:0", "--sched", "reuseport", "--no-control"];
    args.extend(PROBE);
    let run = CorralRun::start(&args, &python(), &[], 1).await;
    let addr = run.addrs[0];
    let pids = until_pids(addr, "both workers answer", |p| p.len() == 2).await;
    let mut sorted: Vec<u32> = pids.iter().copied().collect();
    sorted.sort_unstable();
    let (victim, other) = (sorted[0], sorted[1]);
    let stop = CancellationToken::new();
    let load = client(addr, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let flipped = Instant::now();
    kill(victim, signal);
    let deadline = Instant::now() + TIMEOUT;
    while !process_gone(victim) {
        assert!(Instant::now() < deadline, "worker {victim} still there {TIMEOUT:?} after its /healthz went bad");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gone = flipped.elapsed();
    let now = until_pids(addr, "a replacement answers", |p| p.len() == 2 && !p.contains(&victim)).await;
    assert!(now.contains(&other), "the healthy worker {other} was replaced too: {now:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    let (ok, failed) = load.await.expect("client");
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
    // 2 failures 300 ms apart, a 300 ms timeout, the hang report and the drain: well under 5 s.
    assert!(gone < Duration::from_secs(10), "replaced only {gone:?} after the switch");
    assert!(failed.is_empty(), "{} of {} client requests failed: {:?}", failed.len(), ok + failed.len() as u64, failed);
    assert!(ok > 0, "the client got no answer");
    assert!(
        stderr.lines().any(|l| l.contains("MissedProbe") && l.contains(&victim.to_string())),
        "no MissedProbe line for {victim}:\n{stderr}"
    );
    assert!(stderr.contains("worker hung; what it was doing"), "no hang report:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_healthz_answers_500_is_replaced() {
    a_sick_worker_is_replaced(Signal::SIGUSR1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_healthz_hangs_is_replaced() {
    a_sick_worker_is_replaced(Signal::SIGUSR2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_tcp_probes_are_refused_with_shared_scheduling() {
    for check in ["http:/healthz", "tcp"] {
        let out = tokio::process::Command::new(CORRAL)
            .args(["run", "--workers", "1", "--listen", "127.0.0.1:0", "--sched", "shared", "--no-control"])
            .args(["--probe", check, "--"])
            .args(python())
            .output();
        let out = tokio::time::timeout(TIMEOUT, out).await.expect("in time").expect("run corral");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--probe {check} with shared: {stderr}");
        assert!(stderr.contains("reuseport"), "the refusal does not name reuseport: {stderr}");
    }
    // An exec check needs no connection to one worker.
    let args = ["--workers", "1", "--listen", "127.0.0.1:0", "--sched", "shared", "--no-control"];
    let mut args = args.to_vec();
    args.extend(["--probe", "exec:true", "--probe-every", "100ms"]);
    let run = CorralRun::start(&args, &python(), &[], 1).await;
    assert_eq!(http_get(run.addrs[0], "/").await.expect("answer").0, 200);
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
}

/// A worker that answers `/healthz` only once its file says so counts as ready only then, and
/// a reload to workers that never do is aborted with the old ones serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ready_check_gates_start_and_reloads() {
    let dir = scratch_dir("probes-ready");
    let sick = dir.join("sick");
    let check = format!("exec:test ! -e {}", sick.display());
    let args = [
        "--workers",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--no-control",
        "--ready",
        check.as_str(),
        "--listen-timeout",
        "2s",
    ];
    let run = CorralRun::start(&args, &python(), &[], 1).await;
    let addr = run.addrs[0];
    let old = until_pids(addr, "both workers answer", |p| p.len() == 2).await;
    // The new build never passes its ready check: the reload is aborted, the old serve on.
    std::fs::write(&sick, b"").expect("sick file");
    run.signal(Signal::SIGHUP);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = http_pids(addr, 20).await;
    assert_eq!(after, old, "the old workers must serve on after an aborted reload");
    // Healthy again: the next reload replaces both.
    std::fs::remove_file(&sick).expect("remove");
    run.signal(Signal::SIGHUP);
    let new = until_pids(addr, "the reload replaced both", |p| p.len() == 2 && p.is_disjoint(&old)).await;
    assert_eq!(new.len(), 2);
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.to_lowercase().contains("abort"), "the aborted reload is not logged:\n{stderr}");
}

/// The primary's open fds, by `/proc`.
fn fds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_leave_no_fd_behind() {
    let args = [
        "--workers",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--sched",
        "reuseport",
        "--no-control",
        "--probe",
        "http:/healthz",
        "--probe-every",
        "10ms",
    ];
    let run = CorralRun::start(&args, &python(), &[], 1).await;
    until_pids(run.addrs[0], "both workers answer", |p| p.len() == 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = fds_of(run.pid());
    // About 2 × 100 probes a second.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = fds_of(run.pid());
    let pids = http_pids(run.addrs[0], 10).await;
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(after.abs_diff(before) <= 2, "the primary's fds went {before} -> {after} over hundreds of probes");
    assert_eq!(pids.len(), 2, "a healthy worker was replaced: {stderr}");
    assert!(!stderr.contains("MissedProbe"), "{stderr}");
}

/// Library clusters: an exec probe condemns the one slot it fails for (reuse-port), and HTTP
/// probes reach each worker of a round-robin cluster through the primary's own accept loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_clusters_are_probed_per_worker() {
    let dir = scratch_dir("probes-library");
    let check: Check = format!("exec:test ! -e {}/sick-$CORRAL_SLOT", dir.display()).parse().expect("check");
    let probe = ProbeConfig::new(check).every(Duration::from_millis(200)).failures(2);
    let config = http_config(2, Scheduling::ReusePort).probe(Some(probe));
    let (cluster, mut events) = spawn(config).await;
    let pids = events.all_ready(2).await;
    std::fs::write(dir.join("sick-0"), b"").expect("sick file");
    let failed = events.wait_for("ProbeFailed", |e| matches!(e, ClusterEvent::ProbeFailed { .. })).await;
    let ClusterEvent::ProbeFailed { slot, pid, .. } = failed else { unreachable!() };
    assert_eq!(slot, 0);
    std::fs::remove_file(dir.join("sick-0")).expect("remove");
    events.wait_for("slot 0 ready again", |e| matches!(e, ClusterEvent::Ready { slot: 0, .. })).await;
    let status = cluster.status().await.expect("status");
    assert!(!status.iter().any(|w| w.pid == Some(pid)), "condemned {pid} still there");
    assert!(pids.iter().any(|p| status.iter().any(|w| w.slot == 1 && w.pid == Some(*p))), "slot 1 was replaced");
    cluster.stop().await.expect("stop");

    // Round robin: every worker's probes pass, each through the accept loop to that worker.
    let http: Check = "http:/".parse().expect("check");
    let config = http_config(2, Scheduling::RoundRobin)
        .ready_check(Some(http.clone()))
        .probe(Some(ProbeConfig::new(http).every(Duration::from_millis(100))));
    let (cluster, mut events) = spawn(config).await;
    let pids: HashSet<u32> = events.all_ready(2).await.into_iter().collect();
    let mut probed = HashSet::new();
    while probed != pids {
        let event = events
            .wait_for("a passed liveness probe", |e| matches!(e, ClusterEvent::Probed { live: true, error: None, .. }))
            .await;
        if let ClusterEvent::Probed { pid, .. } = event {
            probed.insert(pid);
        }
    }
    let status = cluster.status().await.expect("status");
    assert!(status.iter().all(|w| w.probe.as_ref().is_some_and(|p| p.passed)), "{status:?}");
    cluster.stop().await.expect("stop");
}
