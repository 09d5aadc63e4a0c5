//! Graceful shutdown, rolling reload, scaling, heartbeats and recycling, under load.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use corral::config::Scheduling;
use corral::control::{ReloadError, ReplaceError, Scale, ScaleError};
use corral::supervision::{ExitStatus, KilledWorker, StartFailure};
use corral::{ClusterError, ClusterEvent};
use tokio_util::sync::CancellationToken;

/// Waits until the load has made some progress (bounded), without a fixed sleep.
async fn until_requests_flow(addr: std::net::SocketAddr) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !matches!(http_get(addr, "/").await, Ok((200, _))) {
        assert!(tokio::time::Instant::now() < deadline, "no request succeeded");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_reload_under_load_fails_no_request_and_replaces_every_pid() {
    let (cluster, mut events) = spawn(http_config(2, Scheduling::RoundRobin)).await;
    let addr = events.http_ready(2).await;
    let before = cluster.status().await.expect("status");
    let old: HashSet<u32> = before.iter().filter_map(|w| w.pid).collect();
    let stop = CancellationToken::new();
    let load = tokio::spawn(load(addr, 4, "/slow?ms=20", stop.clone()));
    until_requests_flow(addr).await;

    let report = cluster.reload().await.expect("reload");
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.replaced.len(), 2);
    for r in &report.replaced {
        assert!(old.contains(&r.old_pid));
        assert!(!old.contains(&r.new_pid));
        assert_eq!(r.generation, 2);
    }
    // Keep the load on a little past the reload, then collect.
    until_requests_flow(addr).await;
    stop.cancel();
    let seen = load.await.expect("load");
    assert!(seen.failed.is_empty(), "{} requests failed during the reload: {:?}", seen.failed.len(), seen.failed);
    assert!(seen.ok > 0);
    let after = cluster.status().await.expect("status");
    for w in &after {
        assert_eq!(w.generation, 2, "slot {} has a new generation", w.slot);
        assert!(!old.contains(&w.pid.expect("pid")));
    }
    assert!(
        wait_gone(&old.into_iter().collect::<Vec<_>>(), TIMEOUT).await.is_empty(),
        "the old workers drained and exited"
    );
    events.wait_for("reloaded", |e| matches!(e, ClusterEvent::Reloaded { replaced: 2, error: None })).await;
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_onto_a_crashing_build_aborts_and_the_old_workers_keep_serving() {
    let flag = std::env::temp_dir().join(format!("corral-bad-deploy-{}", std::process::id()));
    let _ = std::fs::remove_file(&flag);
    let config = http_config(2, Scheduling::RoundRobin).env_var("TESTBED_CRASH_IF_EXISTS", &flag);
    let (cluster, mut events) = spawn(config).await;
    let addr = events.http_ready(2).await;
    let old: Vec<u32> = cluster.status().await.expect("status").iter().filter_map(|w| w.pid).collect();
    std::fs::write(&flag, b"bad deploy").expect("flag");
    let report = cluster.reload().await.expect("reload answers");
    std::fs::remove_file(&flag).expect("unflag");
    assert!(report.replaced.is_empty(), "{report:?}");
    let error = report.error.expect("the reload reports its failure");
    assert!(
        matches!(
            error,
            ReloadError::Replace(ReplaceError::Failed {
                slot: 0,
                cause: StartFailure::Exited(ExitStatus { code: Some(1), .. }),
                ..
            })
        ),
        "{error:?}"
    );
    // Nothing changed for the users.
    let now: Vec<u32> = cluster.status().await.expect("status").iter().filter_map(|w| w.pid).collect();
    assert_eq!(now, old);
    for _ in 0..10 {
        let (status, body) = http_get(addr, "/").await.expect("served");
        assert_eq!(status, 200);
        assert!(old.contains(&answered_by(&body).1));
    }
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_runs_the_executable_as_it_is_on_disk_now() {
    // The workers run a copy of the testbed; a "deploy" replaces that file.
    let dir = std::env::temp_dir().join(format!("corral-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let exe = dir.join("worker");
    std::fs::copy(example("testbed"), &exe).expect("copy");
    let config = config(1).exec(corral::config::WorkerExec::Program { path: exe.clone(), args: Vec::new() });
    let (cluster, mut events) = spawn(config).await;
    events.all_ready(1).await;
    let old = cluster.status().await.expect("status")[0].pid.expect("pid");
    let staged = dir.join("worker.new");
    std::fs::copy(example("testbed"), &staged).expect("stage");
    std::fs::rename(&staged, &exe).expect("deploy");
    let running = std::fs::read_link(format!("/proc/{old}/exe")).expect("exe link");
    assert!(running.to_string_lossy().ends_with("(deleted)"), "the old worker runs the replaced file: {running:?}");

    let report = cluster.reload().await.expect("reload");
    assert!(report.is_complete(), "{report:?}");
    let new = report.replaced[0].new_pid;
    let running = std::fs::read_link(format!("/proc/{new}/exe")).expect("exe link");
    assert_eq!(running, exe, "the replacement runs the deployed file");
    cluster.stop().await.expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_and_scale_requests_at_strange_moments_get_defined_answers() {
    let config = http_config(1, Scheduling::RoundRobin)
        .env_var("TESTBED_MODE", "slow_start")
        .env_var("TESTBED_START_DELAY_MS", "500")
        .env_var("TESTBED_FAULT_GEN", "2");
    let (cluster, mut events) = spawn(config).await;
    events.http_ready(1).await;
    // A reload while one runs waits for it and runs after it; scaling is refused meanwhile.
    let first = tokio::spawn({
        let cluster = cluster.clone();
        async move { cluster.reload().await }
    });
    events.wait_for("replacement forked", |e| matches!(e, ClusterEvent::Fork { generation: 2, .. })).await;
    let second = tokio::spawn({
        let cluster = cluster.clone();
        async move { cluster.reload().await }
    });
    let scaled = cluster.scale(Scale::To(3)).await;
    assert!(matches!(scaled, Err(ClusterError::Scale(ScaleError::Reloading))), "{scaled:?}");
    let first = first.await.expect("task").expect("reload");
    assert!(first.is_complete(), "{first:?}");
    let second = second.await.expect("task").expect("reload");
    assert!(second.is_complete(), "{second:?}");
    assert!(
        second.replaced[0].generation > first.replaced[0].generation,
        "the queued reload replaced the first one's worker: {first:?} then {second:?}"
    );
    events.wait_for("reloaded twice", |e| matches!(e, ClusterEvent::Reloaded { .. })).await;

    // Scale to 0: refused. Scale to a huge number: capped.
    let zero = cluster.scale(Scale::To(0)).await;
    assert!(matches!(zero, Err(ClusterError::Scale(ScaleError::TooFew { wanted: 0 }))), "{zero:?}");
    let down = cluster.scale(Scale::By(-5)).await;
    assert!(matches!(down, Err(ClusterError::Scale(ScaleError::TooFew { wanted: -4 }))), "{down:?}");
    assert_eq!(cluster.workers(), 1);
    cluster.stop().await.expect("clean stop");
    // After the stop: refused, not hung.
    let late = cluster.scale(Scale::To(2)).await;
    assert!(late.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_two_to_four_to_one() {
    let (cluster, mut events) = spawn(http_config(2, Scheduling::RoundRobin)).await;
    let addr = events.http_ready(2).await;
    let report = cluster.scale(Scale::To(4)).await.expect("scale up");
    assert_eq!((report.from, report.to), (2, 4));
    for slot in 2..4 {
        events.seen_or_wait("new slot ready", |e| matches!(e, ClusterEvent::Ready { slot: s, .. } if *s == slot)).await;
    }
    assert_eq!(cluster.status().await.expect("status").len(), 4);
    let mut served = HashSet::new();
    for _ in 0..40 {
        served.insert(answered_by(&http_get(addr, "/").await.expect("GET").1).0);
    }
    assert_eq!(served.len(), 4, "every new worker serves: {served:?}");

    let gone: Vec<u32> = cluster.status().await.expect("status")[1..].iter().filter_map(|w| w.pid).collect();
    let report = cluster.scale(Scale::To(1)).await.expect("scale down");
    assert_eq!((report.from, report.to), (4, 1));
    assert!(wait_gone(&gone, TIMEOUT).await.is_empty(), "removed workers drained and exited");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while cluster.workers() != 1 {
        assert!(tokio::time::Instant::now() < deadline, "slots never trimmed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..10 {
        assert_eq!(answered_by(&http_get(addr, "/").await.expect("GET").1).0, 0);
    }
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_worker_is_killed_and_replaced_within_the_heartbeat_timeout() {
    let config = config(2).heartbeat_interval(Duration::from_millis(100)).heartbeat_timeout(Duration::from_millis(500));
    let (cluster, mut events) = spawn(config).await;
    let pids = events.all_ready(2).await;
    let started = tokio::time::Instant::now();
    // Blocks the worker's only event loop thread for 30 s: it cannot answer pings.
    cluster.send_to(1, TestCmd::Block(30_000)).await.expect("send");
    let exit = events.wait_for("hung worker killed", |e| matches!(e, ClusterEvent::Exit { slot: 1, .. })).await;
    assert!(
        matches!(exit, ClusterEvent::Exit { pid, status, .. } if pid == pids[1] && status.signal == Some(9)),
        "{exit:?}"
    );
    events.wait_for("replacement ready", |e| matches!(e, ClusterEvent::Ready { slot: 1, generation: 2, .. })).await;
    assert!(started.elapsed() < Duration::from_secs(5), "replaced after {:?}", started.elapsed());
    assert_eq!(cluster.status().await.expect("status")[0].pid, Some(pids[0]));
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_over_max_memory_is_recycled_replacement_first() {
    let config = config(1)
        .max_memory(Some(96 << 20))
        .heartbeat_interval(Duration::from_millis(100))
        .heartbeat_timeout(Duration::from_secs(5));
    let (cluster, mut events) = spawn(config).await;
    let pids = events.all_ready(1).await;
    cluster.send_to(0, TestCmd::Alloc(160)).await.expect("send");
    // The replacement is ready before the old one exits.
    events.wait_for("replacement ready", |e| matches!(e, ClusterEvent::Ready { generation: 2, .. })).await;
    let exit = events.wait_for("old exits", |e| matches!(e, ClusterEvent::Exit { .. })).await;
    assert!(
        matches!(exit, ClusterEvent::Exit { pid, exited_after_disconnect: true, .. } if pid == pids[0]),
        "{exit:?}"
    );
    let status = &cluster.status().await.expect("status")[0];
    assert_eq!(status.generation, 2);
    assert!(status.rss_bytes.unwrap_or(u64::MAX) < 96 << 20);
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_recycled_after_max_requests() {
    let config = http_config(1, Scheduling::RoundRobin)
        .max_requests(Some(20))
        .max_requests_jitter(5)
        .heartbeat_interval(Duration::from_millis(50));
    let (cluster, mut events) = spawn(config).await;
    let addr = events.http_ready(1).await;
    for _ in 0..26 {
        assert_eq!(http_get(addr, "/").await.expect("GET").0, 200);
    }
    events.wait_for("recycled", |e| matches!(e, ClusterEvent::Ready { generation: 2, .. })).await;
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_accepted_request_and_exits_zero() {
    let (mut primary, addr) = start_http_cluster(&["--workers", "2"]).await;

    // Clients: half keep-alive, half one request per connection, on a slow route. A client
    // stops once a new connection is refused (the primary stopped listening); any request
    // sent on an accepted connection must be answered.
    let stop = CancellationToken::new();
    // Answers the clients have had: the SIGTERM comes once every client is under way (on a
    // loaded machine a client task may start late).
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut clients = Vec::new();
    for i in 0..8 {
        let (stop, served) = (stop.clone(), served.clone());
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut closes) = (0u32, Vec::new(), 0u32);
            let mut keep_alive = HttpClient::new(addr);
            let deadline = tokio::time::Instant::now() + TIMEOUT;
            while !stop.is_cancelled() && tokio::time::Instant::now() < deadline {
                if i % 2 == 1 || closes > 0 {
                    // Would a new connection still be accepted?
                    match tokio::net::TcpStream::connect(addr).await {
                        Ok(probe) => drop(probe),
                        Err(_) => break,
                    }
                }
                let result = if i % 2 == 0 {
                    keep_alive.get("/slow?ms=30").await
                } else {
                    http_get(addr, "/slow?ms=30").await.map(|(s, b)| (s, b, true))
                };
                match result {
                    Ok((200, _, close)) => {
                        ok += 1;
                        if ok == 1 {
                            served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        closes += u32::from(close && i % 2 == 0);
                    }
                    Ok((status, body, _)) => failed.push(format!("status {status}: {body}")),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed, closes)
        }));
    }
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while served.load(std::sync::atomic::Ordering::Relaxed) < 8 {
        assert!(tokio::time::Instant::now() < deadline, "every client answered once");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    kill(primary.id().expect("pid"), nix::sys::signal::Signal::SIGTERM);
    let status = tokio::time::timeout(TIMEOUT, primary.wait()).await.expect("exits in time").expect("status");
    stop.cancel();
    let (mut ok, mut failed, mut closes) = (0, Vec::new(), 0);
    for client in clients {
        let (o, f, c) = client.await.expect("client");
        ok += o;
        failed.extend(f);
        closes += c;
    }
    assert_eq!(status.code(), Some(0));
    assert!(ok > 0);
    assert!(failed.is_empty(), "{} accepted requests failed: {failed:?}", failed.len());
    assert!(closes > 0, "keep-alive clients were told `Connection: close`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_had_to_kill_says_which_worker() {
    let (cluster, mut events) = spawn(config(2).kill_timeout(Duration::from_millis(300))).await;
    let pids = events.all_ready(2).await;
    // Slot 1's event loop is blocked: it cannot drain.
    cluster.send_to(1, TestCmd::Block(5_000)).await.expect("send");
    let err = cluster.stop().await.expect_err("a kill is not a clean stop");
    match err {
        // Slot 0 drained; only slot 1 was killed.
        ClusterError::Killed { workers, .. } => assert_eq!(workers, vec![KilledWorker { slot: 1, pid: pids[1] }]),
        other => panic!("expected Killed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_defers_readiness_is_ready_when_it_says_so() {
    let config = http_config(1, Scheduling::RoundRobin)
        .env_var("TESTBED_MODE", "defer_ready")
        .env_var("TESTBED_START_DELAY_MS", "300");
    let (cluster, mut events) = spawn(config).await;
    let listening = events.seen_or_wait("listening", |e| matches!(e, ClusterEvent::Listening { .. })).await;
    let started = tokio::time::Instant::now();
    events.seen_or_wait("ready", |e| matches!(e, ClusterEvent::Ready { .. })).await;
    assert!(started.elapsed() >= Duration::from_millis(200), "ready came {:?} after listening", started.elapsed());
    drop(listening);
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_never_says_ready_is_killed_at_the_listen_timeout() {
    let config = config(1)
        .env_var("TESTBED_MODE", "defer_ready")
        .env_var("TESTBED_START_DELAY_MS", "60000")
        .env_var("TESTBED_FAULT_GEN", "1")
        .listen_timeout(Duration::from_millis(400));
    let (cluster, mut events) = spawn(config).await;
    let exit = events.wait_for("killed", |e| matches!(e, ClusterEvent::Exit { .. })).await;
    assert!(matches!(exit, ClusterEvent::Exit { status, .. } if status.signal == Some(9)), "{exit:?}");
    events.wait_for("replacement ready", |e| matches!(e, ClusterEvent::Ready { generation: 2, .. })).await;
    cluster.stop().await.expect("clean stop");
}

/// Rolling reloads under load where the workers accept themselves: in reuse-port each
/// replacement gets its own socket, the old worker empties its own before it drains; in
/// shared every worker accepts on the primary's socket and a draining one stops at once.
async fn reloads_under_load_lose_nothing(scheduling: Scheduling) {
    let (cluster, mut events) = spawn(http_config(2, scheduling)).await;
    let addr = events.http_ready(2).await;
    let stop = CancellationToken::new();
    let load = tokio::spawn(load(addr, 2, "/", stop.clone()));
    until_requests_flow(addr).await;
    let mut pids: HashSet<u32> = cluster.status().await.expect("status").iter().filter_map(|w| w.pid).collect();
    for round in 1..=5u64 {
        let report = cluster.reload().await.expect("reload");
        assert!(report.is_complete(), "reload {round}: {report:?}");
        let old: Vec<u32> = report.replaced.iter().map(|r| r.old_pid).collect();
        for r in &report.replaced {
            assert!(pids.insert(r.new_pid), "reload {round} started a fresh process");
        }
        // The old workers finish their drains while the load goes on.
        assert!(wait_gone(&old, TIMEOUT).await.is_empty(), "reload {round}: the old workers drained and exited");
        until_requests_flow(addr).await;
    }
    stop.cancel();
    let seen = load.await.expect("load");
    assert!(seen.failed.is_empty(), "{scheduling:?}: {} of {} failed: {:?}", seen.failed.len(), seen.ok, seen.failed);
    assert!(seen.ok > 0);
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_port_reloads_under_load_lose_nothing() {
    reloads_under_load_lose_nothing(Scheduling::ReusePort).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_reloads_under_load_lose_nothing() {
    reloads_under_load_lose_nothing(Scheduling::Shared).await;
}
