//! Upgrading the primary in place (SIGUSR2, `corral upgrade`): the same pid execs the
//! executable now on disk, keeps its listening sockets and hands its workers over; the new
//! image replaces them. Real processes, a deploy-style rename, real load.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// A fresh directory for one test (removed when dropped).
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("corral-upgrade-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("test dir");
        Dir(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// As a deploy does: write beside, then rename over. The copy is written by `cp`, another
/// process: a file this test process held open for writing could be inherited by a fork of a
/// concurrent test for a moment, and executing it would then fail with ETXTBSY.
fn deploy(src: &Path, dst: &Path) {
    let tmp = dst.with_extension("new");
    let status = std::process::Command::new("cp").arg(src).arg(&tmp).status().expect("run cp");
    assert!(status.success(), "cp {} {}", src.display(), tmp.display());
    std::fs::rename(&tmp, dst).expect("rename");
}

/// A file at `dst` that is no corral primary: a script that says why and exits 1.
fn deploy_broken(dst: &Path) {
    deploy_script(dst, "echo 'broken build' >&2; exit 1");
}

/// A shell script at `dst` (written by `sh`, for the reason `deploy` gives).
fn deploy_script(dst: &Path, body: &str) {
    let tmp = dst.with_extension("new");
    let script = "printf '#!/bin/sh\\n%s\\n' \"$1\" > \"$2\" && chmod 755 \"$2\"";
    let status = std::process::Command::new("sh").args(["-c", script, "sh", body]).arg(&tmp).status().expect("run sh");
    assert!(status.success());
    std::fs::rename(&tmp, dst).expect("rename");
}

/// Every line a process printed (stdout and stderr), as it comes.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn read(&self, pipe: impl AsyncRead + Unpin + Send + 'static) {
        let lines = self.0.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                lines.lock().expect("lines").push(line);
            }
        });
    }

    fn count(&self, needle: &str) -> usize {
        self.0.lock().expect("lines").iter().filter(|l| l.contains(needle)).count()
    }

    fn find(&self, needle: &str) -> Option<String> {
        self.0.lock().expect("lines").iter().find(|l| l.contains(needle)).cloned()
    }

    /// Waits (bounded) until `needle` has appeared `n` times.
    async fn wait_count(&self, needle: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while self.count(needle) < n {
            assert!(tokio::time::Instant::now() < deadline, "no {needle:?} (×{n}) in:\n{}", self.all());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn all(&self) -> String {
        self.0.lock().expect("lines").join("\n")
    }
}

/// A primary run from its own copy, so that the copy can be replaced.
struct Primary {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    lines: Lines,
}

impl Primary {
    async fn start(program: &Path, args: &[&str], dir: &Dir) -> Primary {
        let mut child = Command::new(program)
            .args(args)
            // Its control socket in the test's directory, not shared with other tests.
            .env("XDG_RUNTIME_DIR", &dir.0)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the primary");
        let lines = Lines::default();
        lines.read(child.stdout.take().expect("stdout"));
        lines.read(child.stderr.take().expect("stderr"));
        lines.wait_count("listening on ", 1).await;
        let line = lines.find("listening on ").expect("listening line");
        let addr = line.rsplit("listening on ").next().expect("address");
        let addr: SocketAddr = addr.trim_start_matches("http://").trim().parse().expect("HOST:PORT");
        let pid = child.id().expect("running");
        Primary { child, pid, addr, lines }
    }

    fn signal(&self, signal: Signal) {
        kill(self.pid, signal);
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `/proc/PID/exe`: which image the primary runs.
    fn exe(&self) -> String {
        std::fs::read_link(format!("/proc/{}/exe", self.pid)).expect("exe link").display().to_string()
    }

    /// Waits (bounded) until `n` workers answer, none of them in `old`; returns them.
    async fn new_workers(&self, n: usize, old: &HashSet<u32>) -> HashSet<u32> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let pids = worker_pids(self.addr, 20).await;
            if pids.len() == n && pids.is_disjoint(old) {
                return pids;
            }
            assert!(tokio::time::Instant::now() < deadline, "workers {pids:?}, old {old:?}:\n{}", self.lines.all());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        self.signal(Signal::SIGTERM);
        let status = tokio::time::timeout(TIMEOUT, self.child.wait()).await.expect("exits in time").expect("wait");
        assert_eq!(status.code(), Some(0), "{}", self.lines.all());
    }
}

/// The worker pids that answer `n` fresh connections (`http_cluster` says `… (pid P)`, the
/// Python worker `SLOT PID`).
async fn worker_pids(addr: SocketAddr, n: usize) -> HashSet<u32> {
    let mut seen = HashSet::new();
    for _ in 0..n {
        if let Ok((200, body)) = http_get(addr, "/").await {
            let pid: Option<u32> = match body.split_once("(pid ") {
                Some((_, rest)) => rest.trim_end().trim_end_matches(')').parse().ok(),
                None => body.split_whitespace().nth(1).and_then(|p| p.parse().ok()),
            };
            seen.extend(pid);
        }
    }
    seen
}

/// Waits (bounded) for `n` distinct workers to answer.
async fn workers(addr: SocketAddr, n: usize) -> HashSet<u32> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let pids = worker_pids(addr, 20).await;
        if pids.len() == n {
            return pids;
        }
        assert!(tokio::time::Instant::now() < deadline, "expected {n} workers, saw {pids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_under_load_keeps_the_pid_and_loses_nothing() {
    let dir = Dir::new("load");
    let exe = dir.join("http_cluster");
    deploy(&example("http_cluster"), &exe);
    let mut primary = Primary::start(&exe, &["--workers", "2", "--port", "0"], &dir).await;
    let before = workers(primary.addr, 2).await;

    // A request in flight across the upgrade, and fresh-connection plus keep-alive load.
    let addr = primary.addr;
    let slow = tokio::spawn(async move { http_get(addr, "/slow?ms=1500").await });
    let stop = CancellationToken::new();
    let load = tokio::spawn(common::load(addr, 3, "/", stop.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;

    deploy(&example("http_cluster"), &exe);
    assert!(primary.exe().ends_with("(deleted)"), "the old image runs from a deleted file: {}", primary.exe());
    primary.signal(Signal::SIGUSR2);
    let after = primary.new_workers(2, &before).await;
    primary.lines.wait_count("upgrade complete", 1).await;
    stop.cancel();
    let report = load.await.expect("load");

    assert!(primary.alive(), "the primary is gone:\n{}", primary.lines.all());
    assert_eq!(primary.exe(), exe.display().to_string(), "the primary runs the new file");
    assert!(report.failed.is_empty(), "{} failed of {}: {:?}", report.failed.len(), report.ok, report.failed);
    assert!(report.ok > 50, "too little load to mean anything: {}", report.ok);
    let (status, body) = slow.await.expect("slow task").expect("the slow request is answered");
    assert_eq!(status, 200, "{body}");
    assert!(before.is_disjoint(&after));
    // The old workers drained and were reaped by the new image.
    assert!(wait_gone(&before.iter().copied().collect::<Vec<_>>(), TIMEOUT).await.is_empty(), "old workers linger");
    primary.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_or_missing_executable_is_refused_and_upgrades_work_twice() {
    let dir = Dir::new("broken");
    let exe = dir.join("http_cluster");
    deploy(&example("http_cluster"), &exe);
    let mut primary = Primary::start(&exe, &["--workers", "2", "--port", "0"], &dir).await;
    let first = workers(primary.addr, 2).await;

    deploy_broken(&exe);
    primary.signal(Signal::SIGUSR2);
    primary.lines.wait_count("upgrade refused", 1).await;
    let refusal = primary.lines.find("upgrade refused").expect("refusal");
    assert!(refusal.contains("failed its check") && refusal.contains("broken build"), "{refusal}");
    assert!(primary.alive());
    assert_eq!(workers(primary.addr, 2).await, first, "the same workers serve after a refused upgrade");

    std::fs::remove_file(&exe).expect("remove");
    primary.signal(Signal::SIGUSR2);
    primary.lines.wait_count("upgrade refused", 2).await;
    assert_eq!(primary.lines.count("does not exist"), 1, "{}", primary.lines.all());
    assert_eq!(workers(primary.addr, 2).await, first);

    // Twice in a row, each a new generation from the same pid.
    deploy(&example("http_cluster"), &exe);
    primary.signal(Signal::SIGUSR2);
    let second = primary.new_workers(2, &first).await;
    primary.lines.wait_count("upgrade complete", 1).await;
    deploy(&example("http_cluster"), &exe);
    primary.signal(Signal::SIGUSR2);
    let third = primary.new_workers(2, &second).await;
    primary.lines.wait_count("upgrade complete", 2).await;
    assert!(third.is_disjoint(&first));
    assert!(primary.alive());
    assert_eq!(primary.exe(), exe.display().to_string());
    primary.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_upgrade_while_one_runs_is_refused() {
    let dir = Dir::new("twice");
    let exe = dir.join("http_cluster");
    deploy(&example("http_cluster"), &exe);
    let mut primary = Primary::start(&exe, &["--workers", "2", "--port", "0"], &dir).await;
    let before = workers(primary.addr, 2).await;
    // A check that takes its time: a script that sleeps, then fails. The second request
    // arrives while it runs.
    deploy_script(&exe, "sleep 1; exit 3");
    primary.signal(Signal::SIGUSR2);
    primary.lines.wait_count("upgrade: checking the new executable", 1).await;
    primary.signal(Signal::SIGUSR2);
    primary.lines.wait_count("an upgrade is already running", 1).await;
    primary.lines.wait_count("failed its check", 1).await;
    assert!(primary.alive());
    assert_eq!(workers(primary.addr, 2).await, before);
    primary.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_upgrade_stops_cleanly() {
    let dir = Dir::new("term");
    let exe = dir.join("http_cluster");
    deploy(&example("http_cluster"), &exe);
    let primary = Primary::start(&exe, &["--workers", "2", "--port", "0"], &dir).await;
    let before = workers(primary.addr, 2).await;
    deploy(&example("http_cluster"), &exe);
    primary.signal(Signal::SIGUSR2);
    // Right after the exec: the new image is taking over and replacing the workers.
    primary.lines.wait_count("upgrade: exec", 1).await;
    primary.signal(Signal::SIGTERM);
    let mut primary = primary;
    let status = tokio::time::timeout(TIMEOUT, primary.child.wait()).await.expect("exits in time").expect("wait");
    assert_eq!(status.code(), Some(0), "{}", primary.lines.all());
    assert!(wait_gone(&before.iter().copied().collect::<Vec<_>>(), TIMEOUT).await.is_empty(), "workers left");
}

/// `corral run -c FILE` with Python workers, upgraded by `corral upgrade`.
fn corral_toml(dir: &Dir, extra_env: &str) -> PathBuf {
    let file = dir.join("corral.toml");
    let program = test_program("activated_worker.py");
    std::fs::write(
        &file,
        format!(
            "workers = 2\nlisten_timeout = \"3s\"\nkill_timeout = \"3s\"\nprogram = \"python3\"\nargs = [\"{program}\"]\nlisten = [\"127.0.0.1:0\"]\n[env]\n{extra_env}\n"
        ),
    )
    .expect("write corral.toml");
    file
}

/// `corral run -c corral.toml --control …` from a copy of `corral` in `dir`, Python workers:
/// the primary, the copy's path and the control socket.
async fn corral_run_from_a_copy(dir: &Dir) -> (Primary, PathBuf, PathBuf) {
    let corral = dir.join("corral");
    deploy(Path::new(CORRAL), &corral);
    let file = corral_toml(dir, "");
    let control = dir.join("control.sock");
    let (file, socket) = (file.display().to_string(), control.display().to_string());
    let primary = Primary::start(&corral, &["run", "-c", &file, "--control", &socket], dir).await;
    (primary, corral, control)
}

async fn corral_upgrade(control: &Path, timeout: &str) -> (Option<i32>, String, String) {
    let out = Command::new(CORRAL).args(["upgrade", "--control"]).arg(control).args(["--timeout", timeout]).output();
    let out = tokio::time::timeout(TIMEOUT * 2, out).await.expect("corral upgrade ends").expect("run corral upgrade");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corral_run_with_python_workers_upgrades_with_the_cli() {
    let dir = Dir::new("run");
    let (mut primary, corral, control) = corral_run_from_a_copy(&dir).await;
    // One restart before the upgrade: the counter must survive it.
    let first = workers(primary.addr, 2).await;
    let victim = *first.iter().next().expect("a worker");
    kill(victim, Signal::SIGKILL);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let before = loop {
        let now = workers(primary.addr, 2).await;
        if !now.contains(&victim) {
            break now;
        }
        assert!(tokio::time::Instant::now() < deadline, "the killed worker was not replaced");
    };
    let status_before = status_json(&control).await;
    let stop = CancellationToken::new();
    let load = tokio::spawn(common::load(primary.addr, 2, "/", stop.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;

    deploy(Path::new(CORRAL), &corral);
    let (code, stdout, stderr) = corral_upgrade(&control, "30s").await;
    assert_eq!(code, Some(0), "corral upgrade: {stdout}{stderr}\n{}", primary.lines.all());
    assert_eq!(stdout.lines().filter(|l| l.starts_with("slot ") && l.contains(" -> ")).count(), 2, "{stdout}");
    let after = primary.new_workers(2, &before).await;
    stop.cancel();
    let report = load.await.expect("load");
    assert!(report.failed.is_empty(), "{} failed of {}: {:?}", report.failed.len(), report.ok, report.failed);
    assert!(primary.alive());
    assert_eq!(primary.exe(), corral.display().to_string());
    assert!(after.is_disjoint(&before));
    // Restart counters and generations carried over: one restart, one generation more.
    let status_after = status_json(&control).await;
    let restarts = |s: &serde_json::Value| {
        s["workers"].as_array().expect("rows").iter().map(|w| w["restarts"].as_u64().unwrap_or(0)).sum::<u64>()
    };
    assert_eq!(restarts(&status_before), 1, "{status_before}");
    assert_eq!(restarts(&status_after), 1, "{status_after}");
    for (b, a) in
        status_before["workers"].as_array().expect("rows").iter().zip(status_after["workers"].as_array().expect("rows"))
    {
        assert_eq!(a["generation"].as_u64(), b["generation"].as_u64().map(|g| g + 1), "{b} -> {a}");
    }
    primary.stop().await;
}

/// `corral status --json`.
async fn status_json(control: &Path) -> serde_json::Value {
    let out = Command::new(CORRAL).args(["status", "--json", "--control"]).arg(control).output();
    let out = tokio::time::timeout(TIMEOUT, out).await.expect("status in time").expect("run corral status");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status JSON: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_workers_that_never_get_ready_roll_the_generation_back() {
    let dir = Dir::new("rollback");
    let (mut primary, corral, control) = corral_run_from_a_copy(&dir).await;
    let before = workers(primary.addr, 2).await;
    // The new configuration (read by the new image) starts workers that never say READY.
    corral_toml(&dir, "NEVER_READY = \"1\"");
    deploy(Path::new(CORRAL), &corral);
    let (code, _stdout, stderr) = corral_upgrade(&control, "8s").await;
    assert_eq!(code, Some(1), "{stderr}");
    primary.lines.wait_count("the old ones keep serving", 1).await;
    assert!(primary.alive());
    assert_eq!(workers(primary.addr, 2).await, before, "the old workers serve on:\n{}", primary.lines.all());
    primary.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_reloading_then_ready_from_the_same_pid() {
    let dir = Dir::new("systemd");
    let exe = dir.join("http_cluster");
    deploy(&example("http_cluster"), &exe);
    let notify_path = dir.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("bind NOTIFY_SOCKET");
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::PassCred, &true).expect("SO_PASSCRED");
    socket.set_nonblocking(true).expect("nonblocking");
    let socket = tokio::net::UnixDatagram::from_std(socket).expect("tokio socket");
    let mut child = Command::new(&exe)
        .args(["--workers", "2", "--port", "0"])
        .env("XDG_RUNTIME_DIR", &dir.0)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start");
    let pid = child.id().expect("pid");
    let mut notes = Notes(socket);
    notes.until("READY=1").await;
    deploy(&example("http_cluster"), &exe);
    kill(pid, Signal::SIGUSR2);
    let reloading = notes.until("RELOADING=1").await;
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    notes.until("READY=1").await;
    // MAINPID needs no update: the same process is still there, now the new file.
    assert!(matches!(child.try_wait(), Ok(None)));
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe"), exe);
    kill(pid, Signal::SIGTERM);
    notes.until("STOPPING=1").await;
    let status = tokio::time::timeout(TIMEOUT, child.wait()).await.expect("exit in time").expect("wait");
    assert_eq!(status.code(), Some(0));
}

/// A test NOTIFY_SOCKET.
struct Notes(tokio::net::UnixDatagram);

impl Notes {
    /// Waits (bounded) for the next datagram containing `key`, skipping others.
    async fn until(&mut self, key: &str) -> String {
        let mut buf = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(TIMEOUT, self.0.recv(&mut buf)).await.expect("a notification").expect("recv");
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            if message.contains(key) {
                return message;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scheduling_keeps_serving_across_an_upgrade() {
    for sched in ["lc", "shared", "reuseport"] {
        let dir = Dir::new(&format!("sched-{sched}"));
        let exe = dir.join("http_cluster");
        deploy(&example("http_cluster"), &exe);
        let primary = Primary::start(&exe, &["--workers", "2", "--port", "0", "--sched", sched], &dir).await;
        let before = workers(primary.addr, 2).await;
        let stop = CancellationToken::new();
        let load = tokio::spawn(common::load(primary.addr, 2, "/", stop.clone()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        deploy(&example("http_cluster"), &exe);
        primary.signal(Signal::SIGUSR2);
        primary.new_workers(2, &before).await;
        primary.lines.wait_count("upgrade complete", 1).await;
        stop.cancel();
        let report = load.await.expect("load");
        if sched == "lc" {
            assert!(
                report.failed.is_empty(),
                "{sched}: {} failed of {}: {:?}",
                report.failed.len(),
                report.ok,
                report.failed
            );
        } else {
            // Where workers accept themselves, a draining worker can lose a request racing its
            // close (1–2 in ~15,000 measured, the same for a rolling reload: see
            // RELIABILITY.md); the upgrade itself must complete and serve on.
            assert!(report.ok > 50, "{sched}: {} ok, failed {:?}", report.ok, report.failed);
            eprintln!("{sched}: {} failed of {} across the upgrade", report.failed.len(), report.ok);
        }
        assert!(workers(primary.addr, 2).await.is_disjoint(&before));
        primary.stop().await;
    }
}
