//! The primary as its own process (the `01_basic_cluster` example): workers die with it,
//! however it dies, and SIGTERM drains them and exits 0.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts `01_basic_cluster --workers n` and returns it with its workers' pids, once all have
/// printed that they started.
async fn start_primary(n: usize) -> (Child, Vec<u32>) {
    let mut child = Command::new(example("01_basic_cluster"))
        .args(["--workers", &n.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the primary");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut pids = Vec::new();
    let found = tokio::time::timeout(TIMEOUT, async {
        while pids.len() < n {
            let line = lines.next_line().await.expect("read").expect("primary's stdout open");
            // "Worker <pid> started (slot …)"
            if let Some(rest) = line.strip_prefix("Worker ")
                && let Some((pid, tail)) = rest.split_once(' ')
                && tail.starts_with("started")
            {
                pids.push(pid.parse::<u32>().expect("pid"));
            }
        }
    })
    .await;
    assert!(found.is_ok(), "workers did not start; got {pids:?}");
    // Keep draining stdout so the workers never block on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, pids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_primary_leaves_no_worker_alive() {
    let (mut primary, pids) = start_primary(3).await;
    assert!(pids.iter().all(|&p| !process_gone(p)));
    primary.start_kill().expect("SIGKILL the primary");
    primary.wait().await.expect("reaped");
    let alive = wait_gone(&pids, Duration::from_secs(2)).await;
    assert!(alive.is_empty(), "workers still alive 2 s after the primary died: {alive:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_workers_and_exits_zero() {
    let (mut primary, pids) = start_primary(2).await;
    kill(primary.id().expect("pid"), Signal::SIGTERM);
    let status = tokio::time::timeout(TIMEOUT, primary.wait()).await.expect("primary exits").expect("status");
    assert_eq!(status.code(), Some(0));
    assert!(wait_gone(&pids, Duration::from_secs(2)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_flag_is_a_usage_error() {
    let out = Command::new(example("01_basic_cluster")).args(["--workers", "0"]).output().await.expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--workers"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_cluster_refuses_bad_flags() {
    for args in [&["--sched", "fastest"][..], &["--workers", "0"], &["--workers", "0..4"], &["--port", "70000"]] {
        let run = Command::new(example("http_cluster")).args(args).kill_on_drop(true).output();
        let out = tokio::time::timeout(TIMEOUT, run).await.expect("refused at once, not started").expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?} is a usage error");
        assert!(String::from_utf8_lossy(&out.stderr).contains(args[0]), "{args:?}: the error names the flag");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_cluster_on_a_port_in_use_fails_at_start_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let run = Command::new(example("http_cluster"))
        .args(["--workers", "2", "--port", &port.to_string()])
        .env("RUST_LOG", "off")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(TIMEOUT, run).await.expect("exits at start").expect("run");
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("in use"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_cluster_serves_on_any_free_port() {
    let (mut child, addr) = start_http_cluster(&["--workers", "2"]).await;
    let (status, body) = http_get(addr, "/").await.expect("GET /");
    assert_eq!(status, 200);
    assert!(body.starts_with("Handled by worker ") && body.contains("(pid "), "{body}");
    assert_eq!(http_get(addr, "/slow?ms=30").await.expect("slow").0, 200);
    assert_eq!(http_get(addr, "/heavy?ms=30").await.expect("heavy").0, 200);
    assert_eq!(http_get(addr, "/slow?ms=abc").await.expect("bad").0, 400);
    assert_eq!(http_get(addr, "/heavy?ms=99999999").await.expect("too long").0, 400);
    assert_eq!(http_get(addr, "/nope").await.expect("404").0, 404);
    kill(child.id().expect("pid"), Signal::SIGTERM);
    let status = tokio::time::timeout(TIMEOUT, child.wait()).await.expect("exits").expect("status");
    assert_eq!(status.code(), Some(0));
}

/// One row of a `StatusTable`: (slot, pid, generation, state, restarts).
type Row = (usize, Option<u32>, u64, String, u64);

/// Reads the next whole table `07_status_table` prints.
async fn next_table(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> Vec<Row> {
    let mut rows = Vec::new();
    loop {
        let line = tokio::time::timeout(TIMEOUT, lines.next_line())
            .await
            .expect("a table in time")
            .expect("read")
            .expect("the example is still printing");
        if line.starts_with('└') {
            return rows;
        }
        let cells: Vec<&str> = line.split('│').map(str::trim).filter(|c| !c.is_empty()).collect();
        if let Some(slot) = cells.first().and_then(|c| c.parse().ok()) {
            rows.push((
                slot,
                cells[1].parse().ok(),
                cells[2].parse().expect("gen"),
                cells[3].into(),
                cells[5].parse().expect("restarts"),
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_table_follows_a_restart() {
    let mut primary = Command::new(example("07_status_table"))
        .args(["--workers", "2", "--port", "0", "--interval-ms", "50"])
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start 07_status_table");
    let mut lines = BufReader::new(primary.stdout.take().expect("stdout")).lines();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let old = loop {
        let table = next_table(&mut lines).await;
        assert_eq!(table.len(), 2, "one row per slot: {table:?}");
        if table.iter().all(|r| r.3 == "ready") {
            break table;
        }
        assert!(tokio::time::Instant::now() < deadline, "workers never all ready: {table:?}");
    };
    let (_, Some(old_pid), 1, _, 0) = old[0] else { panic!("slot 0 starts at generation 1 without restarts: {old:?}") };
    kill(old_pid, Signal::SIGKILL);
    loop {
        let table = next_table(&mut lines).await;
        let row = &table[0];
        if row.1.is_some_and(|pid| pid != old_pid) && row.3 == "ready" {
            assert_eq!((row.2, row.4), (2, 1), "a new generation and one restart: {table:?}");
            assert_eq!(table[1], old[1], "slot 1 is untouched");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot 0 never came back: {table:?}");
    }
    kill(primary.id().expect("pid"), Signal::SIGTERM);
    let status = tokio::time::timeout(TIMEOUT, primary.wait()).await.expect("exits").expect("wait");
    assert!(status.success(), "{status:?}");
}
