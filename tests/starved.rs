//! Fork failing for want of processes: `corral run` as an unprivileged user under a low
//! `RLIMIT_NPROC` (root ignores the limit, hence `setpriv`), its user's quota filled from
//! outside. A worker killed then cannot be replaced: the primary retries with backoff (a
//! `StartFailed` event, logged), neither crashing nor spinning nor giving up, and the slot
//! comes back once processes are free again.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// The unprivileged user (and group) the primary runs as.
const NOBODY: &str = "65534";

/// The primary's `RLIMIT_NPROC`: room for itself and its workers at start.
const NPROC: usize = 24;

/// The tasks (processes and threads) the user runs now, as `RLIMIT_NPROC` counts them.
fn tasks_of_nobody() -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else { continue };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
        };
        if field("Uid:").as_deref() == Some(NOBODY) {
            n += field("Threads:").and_then(|t| t.parse::<usize>().ok()).unwrap_or(1);
        }
    }
    n
}

/// A process of the user that only takes up a place in its quota.
fn sleeper() -> Child {
    Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "sleep", "120"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("setpriv sleep")
}

/// Waits (bounded) for a stderr line that contains `what`.
async fn line_with(lines: &mut mpsc::UnboundedReceiver<String>, what: &str) -> String {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let line = tokio::time::timeout_at(deadline, lines.recv())
            .await
            .unwrap_or_else(|_| panic!("no line with {what:?} in time"))
            .unwrap_or_else(|| panic!("stderr ended before a line with {what:?}"));
        if line.contains(what) {
            return line;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_refused_for_want_of_processes_is_retried_with_backoff_until_it_succeeds() {
    let dir = std::env::temp_dir().join(format!("corral-starved-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let control = dir.join("control.sock");
    // The worker runs as nobody: its program is copied where nobody can read it, whatever the
    // permissions of the checkout's own folders (a clone in a 0700 temporary folder, say).
    let program = dir.join("activated_worker.py");
    std::fs::copy(test_program("activated_worker.py"), &program).expect("copy the worker program");
    let nproc = format!("--nproc={NPROC}:{NPROC}");
    let mut primary = Command::new("prlimit")
        .arg(&nproc)
        .args(["setpriv", "--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", CORRAL, "run"])
        // Shared: while one slot waits, the other worker takes every connection (reuse-port
        // would keep the waiting slot's accept queue for its replacement).
        .args(["--workers", "2", "--listen", "127.0.0.1:0", "--sched", "shared", "--ready", "notify", "--control"])
        .arg(&control)
        .arg("--")
        .arg("python3")
        .arg(&program)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("HOME", &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start corral run as nobody");
    let (tx, mut lines) = mpsc::unbounded_channel();
    let mut stderr = BufReader::new(primary.stderr.take().expect("stderr")).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            eprintln!("{line}");
            let _ = tx.send(line);
        }
    });
    let mut stdout = BufReader::new(primary.stdout.take().expect("stdout")).lines();
    let addr: std::net::SocketAddr = loop {
        let line = tokio::time::timeout(TIMEOUT, stdout.next_line())
            .await
            .expect("a listening line in time")
            .expect("stdout")
            .expect("corral run ended before it listened");
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.parse().expect("HOST:PORT");
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    let deadline = Instant::now() + TIMEOUT;
    let workers = loop {
        let pids = http_pids(addr, 8).await;
        if pids.len() == 2 {
            break pids;
        }
        assert!(Instant::now() < deadline, "two workers answering: {pids:?}");
    };

    // Fill the user's quota: after the kill below, it still has no room for one more.
    let mut sleepers = Vec::new();
    let fill_by = Instant::now() + TIMEOUT;
    loop {
        let now = tasks_of_nobody();
        if now >= NPROC + 2 {
            break;
        }
        assert!(Instant::now() < fill_by, "the quota does not fill: {now} tasks, {} sleepers", sleepers.len());
        // Those started and not yet counted (still becoming nobody) are not started again.
        let pending = sleepers.len().saturating_sub(now.saturating_sub(workers.len() + 2));
        for _ in pending..(NPROC + 2 - now) {
            sleepers.push(sleeper());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let victim = *workers.iter().next().expect("a worker");
    kill(victim, Signal::SIGKILL);
    let first = line_with(&mut lines, "out of a resource; retrying").await;
    assert!(first.contains("Resource temporarily unavailable") || first.contains("EAGAIN"), "{first}");
    let since = Instant::now();
    let second = line_with(&mut lines, "out of a resource; retrying").await;
    eprintln!("retried after {:?}: {second}", since.elapsed());
    // Backing off, not spinning: two more retries take the doubling delays.
    line_with(&mut lines, "out of a resource; retrying").await;
    line_with(&mut lines, "out of a resource; retrying").await;
    let four = since.elapsed();
    assert!(four >= Duration::from_millis(300), "three retries in {four:?}: spinning");
    assert!(primary.try_wait().expect("try_wait").is_none(), "the primary lives");
    // The primary answers its control socket meanwhile. (The surviving Python worker, a
    // thread per request and under the same quota, cannot serve now: the test starves the
    // whole user, not only the primary.)
    let survivor = *workers.iter().find(|&&p| p != victim).expect("the other worker");
    let status = tokio::time::timeout(
        TIMEOUT,
        Command::new(CORRAL).args(["status", "--json", "--control"]).arg(&control).stdin(Stdio::null()).output(),
    )
    .await
    .expect("status answered in time")
    .expect("corral status");
    let report = String::from_utf8_lossy(&status.stdout);
    assert!(report.contains(&survivor.to_string()), "status while starved: {report}");

    // Processes free again: the next retry starts the worker, and both slots serve.
    drop(sleepers);
    line_with(&mut lines, "worker started").await;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let pids = http_pids(addr, 8).await;
        if pids.len() == 2 && !pids.contains(&victim) {
            break;
        }
        assert!(Instant::now() < deadline, "both slots serving again: {pids:?}");
    }
    assert!(primary.try_wait().expect("try_wait").is_none(), "the primary lives");
    kill(primary.id().expect("pid"), Signal::SIGTERM);
    let status = tokio::time::timeout(TIMEOUT, primary.wait()).await.expect("stops in time").expect("wait");
    assert_eq!(status.code(), Some(0), "a clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}
