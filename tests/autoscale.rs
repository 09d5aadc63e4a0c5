//! Autoscaling by saturation (`workers = "MIN..MAX"`, `[autoscale]`, `ClusterConfig::autoscale`):
//! a load step scales a cluster up and, once the load drops, back down, never past its bounds
//! and without losing a request (a keep-alive and a fresh-connection client throughout); a
//! scale pins the count until `corral scale auto`; a library cluster in a primary-accept mode
//! scales the same way. Timings are generous bounds (2 cores, tests in parallel): the figures
//! are in BENCHMARKS.md (`benches/autoscale.py`).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use corral::ClusterEvent;
use corral::config::{Autoscale, ScaleSignal, Scheduling};
use corral::control::ScaleReason;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// How long a scaling step may take to show, on a loaded machine.
const SCALE_BOUND: Duration = Duration::from_secs(40);

/// `corral ARGS --control SOCKET`: exit code, stdout, stderr.
async fn ctl(args: &[&str], socket: &Path) -> (Option<i32>, String, String) {
    let out = tokio::time::timeout(
        TIMEOUT,
        tokio::process::Command::new(CORRAL).args(args).arg("--control").arg(socket).output(),
    )
    .await
    .expect("corral answers in time")
    .expect("run corral");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Ready workers, worker rows, and the `autoscale` object of `corral status --json`.
async fn status(socket: &Path) -> Option<(usize, usize, Value)> {
    let (_, out, _) = ctl(&["status", "--json"], socket).await;
    let doc: Value = serde_json::from_str(&out).ok()?;
    let rows = doc["workers"].as_array()?;
    let ready = rows.iter().filter(|w| w["state"] == "ready").count();
    Some((ready, rows.len(), doc["autoscale"].clone()))
}

/// Every ready-worker count seen by [`Watch`], and the most rows.
#[derive(Default)]
struct Seen {
    ready: Vec<usize>,
    rows: usize,
}

/// Samples `corral status --json` every 250 ms until dropped.
struct Watch {
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
}

impl Watch {
    fn start(socket: &Path) -> Watch {
        let (seen, stop) = (Arc::new(Mutex::new(Seen::default())), CancellationToken::new());
        let (sink, done, socket) = (seen.clone(), stop.clone(), socket.to_path_buf());
        tokio::spawn(async move {
            // Bounded: a test runs minutes at most.
            for _ in 0..2400 {
                if done.is_cancelled() {
                    return;
                }
                if let Some((ready, rows, _)) = status(&socket).await {
                    let mut s = sink.lock().expect("seen");
                    s.ready.push(ready);
                    s.rows = s.rows.max(rows);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Watch { seen, stop }
    }

    fn last(&self) -> Option<usize> {
        self.seen.lock().expect("seen").ready.last().copied()
    }

    /// Waits (bounded by `limit`) until the last sample says `n` ready workers.
    async fn until(&self, n: usize, limit: Duration, what: &str) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.last() != Some(n) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not {n} ready workers within {limit:?} (last {:?})",
                self.last()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Requests that went wrong, and how many went right.
#[derive(Default)]
struct Outcomes {
    ok: u64,
    failed: Vec<String>,
}

/// A paced client (`per_second`), keep-alive (a new connection every 2 s) or one request per
/// connection, until `stop`; bounded by 20,000 requests.
fn paced(addr: SocketAddr, keep_alive: bool, per_second: u32, stop: CancellationToken, into: Arc<Mutex<Outcomes>>) {
    tokio::spawn(async move {
        let pause = Duration::from_secs(1) / per_second;
        let mut client = HttpClient::new(addr);
        let mut since = tokio::time::Instant::now();
        for _ in 0..20_000 {
            if stop.is_cancelled() {
                return;
            }
            let answer = if keep_alive {
                if since.elapsed() > Duration::from_secs(2) {
                    client = HttpClient::new(addr);
                    since = tokio::time::Instant::now();
                }
                client.get("/").await.map(|(s, b, _)| (s, b))
            } else {
                http_get(addr, "/").await
            };
            record(&into, answer);
            tokio::time::sleep(pause).await;
        }
    });
}

/// A closed-loop client on fresh connections until `stop`; bounded by 20,000 requests.
fn closed_loop(addr: SocketAddr, path: &'static str, stop: CancellationToken, into: Arc<Mutex<Outcomes>>) {
    tokio::spawn(async move {
        for _ in 0..20_000 {
            if stop.is_cancelled() {
                return;
            }
            record(&into, http_get(addr, path).await);
        }
    });
}

/// What the clients saw: requests answered, and what went wrong.
fn taken(outcomes: &Mutex<Outcomes>) -> (u64, Vec<String>) {
    let o = outcomes.lock().expect("outcomes");
    (o.ok, o.failed.clone())
}

fn record(into: &Mutex<Outcomes>, answer: std::io::Result<(u16, String)>) {
    let mut o = into.lock().expect("outcomes");
    match answer {
        Ok((200, _)) => o.ok += 1,
        Ok((status, body)) => o.failed.push(format!("HTTP {status}: {body}")),
        Err(e) => o.failed.push(e.to_string()),
    }
}

fn burn_config(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("corral.toml");
    std::fs::write(
        &file,
        format!(
            "program = \"python3\"\nargs = [{:?}]\nworkers = \"1..3\"\nlisten = [\"127.0.0.1:0\"]\nready = \"notify\"\n\n\
             [autoscale]\nup_after = \"1s\"\ndown_after = \"2s\"\ncooldown = \"500ms\"\n\n\
             [env]\nBURN_MS = \"20\"\nBURN_THREADS = \"2\"\n",
            test_program("burn_worker.py")
        ),
    )
    .expect("write corral.toml");
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_step_scales_corral_run_up_and_back_down_within_its_bounds_losing_nothing() {
    let dir = scratch_dir("autoscale-step");
    let (file, socket) = (burn_config(&dir), dir.join("ctl.sock"));
    let run =
        CorralRun::start(&["-c", &file.display().to_string(), "--control", &socket.display().to_string()], &[], &[], 1)
            .await;
    let addr = run.addrs[0];
    let watch = Watch::start(&socket);
    watch.until(1, TIMEOUT, "the start (the range's minimum)").await;

    // A keep-alive client and a fresh-connection client, paced, throughout.
    let (base, outcomes) = (CancellationToken::new(), Arc::new(Mutex::new(Outcomes::default())));
    paced(addr, true, 4, base.clone(), outcomes.clone());
    paced(addr, false, 4, base.clone(), outcomes.clone());

    // The step: ten closed-loop clients on two threads' worth of one worker.
    let high = CancellationToken::new();
    for _ in 0..10 {
        closed_loop(addr, "/", high.clone(), outcomes.clone());
    }
    watch.until(2, SCALE_BOUND, "saturated").await;
    let (_, table, _) = ctl(&["status"], &socket).await;
    assert!(table.contains("auto 1..3"), "`corral status` shows the range:\n{table}");
    let (_, _, scaler) = status(&socket).await.expect("status");
    assert_eq!((scaler["min"].as_u64(), scaler["max"].as_u64()), (Some(1), Some(3)), "{scaler}");
    high.cancel();

    // The load drops: back to the minimum, and no lower.
    watch.until(1, SCALE_BOUND, "idle").await;
    base.cancel();
    let seen = watch.seen.lock().expect("seen").ready.clone();
    assert!(seen.iter().all(|&n| (1..=3).contains(&n)), "ready workers seen: {seen:?}");
    assert!(watch.seen.lock().expect("seen").rows <= 3, "never more than 3 slots: {seen:?}");
    let (ok, failed) = taken(&outcomes);
    assert!(failed.is_empty(), "{} of {ok} requests failed: {:?}", failed.len(), &failed[..failed.len().min(5)]);

    run.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("scaling") && stderr.contains("saturated for"),
        "a log line says why it scaled up:\n{stderr}"
    );
    assert!(stderr.contains("idle for"), "and why it scaled down:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_pins_the_count_until_scale_auto_and_one_outside_the_range_is_refused() {
    let dir = scratch_dir("autoscale-pin");
    let (file, socket) = (burn_config(&dir), dir.join("ctl.sock"));
    let run =
        CorralRun::start(&["-c", &file.display().to_string(), "--control", &socket.display().to_string()], &[], &[], 1)
            .await;
    let watch = Watch::start(&socket);
    watch.until(1, TIMEOUT, "the start").await;

    let (code, out, err) = ctl(&["scale", "3"], &socket).await;
    assert_eq!(code, Some(0), "{out}{err}");
    watch.until(3, TIMEOUT, "pinned at 3").await;
    let (_, _, scaler) = status(&socket).await.expect("status");
    assert_eq!(scaler["pinned"].as_u64(), Some(3), "{scaler}");
    // Idle for twice `down_after` and more: the pin holds.
    let pinned_from = watch.seen.lock().expect("seen").ready.len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let held: Vec<usize> = watch.seen.lock().expect("seen").ready[pinned_from..].to_vec();
    assert!(!held.is_empty() && held.iter().all(|&n| n == 3), "the pinned count moved: {held:?}");

    let (code, _, err) = ctl(&["scale", "5"], &socket).await;
    assert_ne!(code, Some(0), "a scale outside 1..3 is refused");
    assert!(err.contains("outside the autoscaling range 1..3"), "{err}");

    let (code, out, err) = ctl(&["scale", "auto"], &socket).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("autoscaling resumed"), "{out}");
    watch.until(1, SCALE_BOUND, "idle once unpinned").await;

    run.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_autoscale_settings_are_refused_with_exit_2() {
    let dir = scratch_dir("autoscale-config");
    let check = |text: &'static str| {
        let file = dir.join("corral.toml");
        async move {
            std::fs::write(&file, text).expect("write");
            let out =
                tokio::process::Command::new(CORRAL).arg("check").arg(&file).output().await.expect("corral check");
            (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };
    let ok = "program = \"python3\"\nworkers = \"2..8\"\nlisten = [\"127.0.0.1:0\"]\n[autoscale]\nsignal = \"queue\"\n";
    assert_eq!(check(ok).await.0, Some(0));
    for (text, says) in [
        ("program = \"python3\"\nworkers = \"0..4\"\n", "at least 1"),
        ("program = \"python3\"\nworkers = \"4..2\"\n", "below the minimum"),
        ("program = \"python3\"\nworkers = \"1..4\"\n[autoscale]\nsignal = \"load\"\n", "autoscale.signal"),
        ("program = \"python3\"\nworkers = \"1..4\"\n[autoscale]\nstep = 0\n", "autoscale.step"),
    ] {
        let (code, err) = check(text).await;
        assert_eq!(code, Some(2), "{text}: {err}");
        assert!(err.contains(says), "{text}: {err}");
    }
}

/// Paced clients and a burst of `/burn` requests against a library cluster: a step up when
/// saturated, a step down when idle, every request answered.
async fn a_library_cluster_scales_with_its_load(scheduling: Scheduling) {
    let scale = Autoscale::new(1, 2)
        .up_after(Duration::from_millis(500))
        .down_after(Duration::from_secs(1))
        .cooldown(Duration::from_millis(250))
        .signal(ScaleSignal::Auto);
    let (cluster, mut events) = spawn(http_config(1, scheduling).autoscale(Some(scale))).await;
    let addr = events.http_ready(1).await;
    assert_eq!(cluster.autoscale().map(|a| (a.config.min, a.config.max, a.workers)), Some((1, 2, 1)));
    let (base, outcomes) = (CancellationToken::new(), Arc::new(Mutex::new(Outcomes::default())));
    paced(addr, true, 4, base.clone(), outcomes.clone());
    paced(addr, false, 4, base.clone(), outcomes.clone());
    let high = CancellationToken::new();
    for _ in 0..8 {
        closed_loop(addr, "/burn?ms=20", high.clone(), outcomes.clone());
    }
    let up = events.wait_for("a step up", |e| matches!(e, ClusterEvent::Scaled { from: 1, to: 2, .. })).await;
    assert!(matches!(up, ClusterEvent::Scaled { reason: ScaleReason::Saturated(_), .. }), "{up:?}");
    high.cancel();
    let down = events.wait_for("a step down", |e| matches!(e, ClusterEvent::Scaled { from: 2, to: 1, .. })).await;
    assert!(matches!(down, ClusterEvent::Scaled { reason: ScaleReason::Idle(_), .. }), "{down:?}");
    // The drained worker exits; the paced clients go on meanwhile.
    events.wait_for("the drained worker's exit", |e| matches!(e, ClusterEvent::Exit { slot: 1, .. })).await;
    base.cancel();
    let (ok, failed) = taken(&outcomes);
    assert!(
        ok > 0 && failed.is_empty(),
        "{scheduling:?}: {} failed of {ok}: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_robin_library_cluster_scales_with_its_load() {
    a_library_cluster_scales_with_its_load(Scheduling::RoundRobin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reuse_port_library_cluster_scales_with_its_load() {
    a_library_cluster_scales_with_its_load(Scheduling::ReusePort).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_program_of_a_tree_scales_on_its_own() {
    use tokio::io::AsyncBufReadExt;
    let dir = scratch_dir("autoscale-tree");
    let (file, socket) = (dir.join("corral.toml"), dir.join("ctl.sock"));
    std::fs::write(
        &file,
        format!(
            "[programs.api]\nprogram = \"python3\"\nargs = [{:?}]\nworkers = \"1..2\"\nlisten = [\"127.0.0.1:0\"]\n\
             ready = \"notify\"\n[programs.api.autoscale]\nup_after = \"500ms\"\ndown_after = \"1s\"\ncooldown = \"250ms\"\n\
             [programs.api.env]\nBURN_MS = \"20\"\nBURN_THREADS = \"2\"\n",
            test_program("burn_worker.py")
        ),
    )
    .expect("write corral.toml");
    let mut tree = tokio::process::Command::new(CORRAL)
        .args(["run", "-c"])
        .arg(&file)
        .arg("--control")
        .arg(&socket)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("corral run a tree");
    let mut lines = tokio::io::BufReader::new(tree.stdout.take().expect("stdout")).lines();
    let addr: SocketAddr = loop {
        let line =
            tokio::time::timeout(TIMEOUT, lines.next_line()).await.expect("in time").expect("read").expect("a line");
        if let Some(addr) = line.strip_prefix("api: listening on ") {
            break addr.parse().expect("HOST:PORT");
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // The program's own scaler, in the tree's status.
    let workers = |doc: &Value| doc["programs"][0]["autoscale"]["workers"].as_u64();
    let until = |n: u64, what: &'static str| {
        let socket = socket.clone();
        async move {
            let deadline = tokio::time::Instant::now() + SCALE_BOUND;
            loop {
                let (_, out, _) = ctl(&["status", "--json"], &socket).await;
                let doc: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
                if workers(&doc) == Some(n) {
                    return doc;
                }
                assert!(tokio::time::Instant::now() < deadline, "{what}: {doc}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let doc = until(1, "the start").await;
    assert_eq!(doc["programs"][0]["autoscale"]["max"].as_u64(), Some(2), "{doc}");
    let (high, outcomes) = (CancellationToken::new(), Arc::new(Mutex::new(Outcomes::default())));
    for _ in 0..8 {
        closed_loop(addr, "/", high.clone(), outcomes.clone());
    }
    until(2, "saturated").await;
    high.cancel();
    until(1, "idle").await;
    let (ok, failed) = taken(&outcomes);
    assert!(failed.is_empty(), "{} of {ok} failed: {:?}", failed.len(), &failed[..failed.len().min(5)]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(tree.id().expect("pid") as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = tokio::time::timeout(TIMEOUT, tree.wait()).await.expect("stops in time").expect("wait");
    assert_eq!(status.code(), Some(0));
}
