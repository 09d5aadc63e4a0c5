//! A reload asked for right after a crash is not lost: SIGHUP 50 ms after a worker was
//! SIGKILLed (its replacement still starting), 20 times in a row, under load, on `corral
//! run`. Every reload waits for the restarting slot and runs: 20 reloads done, none aborted,
//! every worker of before the kill replaced each time.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const WORKERS: usize = 3;

/// The workers as `corral status --json` reports them: (slot, pid, state).
async fn status(control: &std::path::Path) -> Vec<(u64, u64, String)> {
    let out = Command::new(CORRAL)
        .args(["status", "--json", "--control"])
        .arg(control)
        .output()
        .await
        .expect("corral status");
    let Ok(data) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else { return Vec::new() };
    let rows = data.get("workers").cloned().unwrap_or(data);
    rows.as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            (
                w["slot"].as_u64().unwrap_or(u64::MAX),
                w["pid"].as_u64().unwrap_or(0),
                w["state"].as_str().unwrap_or("").to_lowercase(),
            )
        })
        .collect()
}

/// Waits (bounded) until every slot is ready and `pred` holds of their pids.
async fn ready_when(control: &std::path::Path, what: &str, pred: impl Fn(&HashSet<u32>) -> bool) -> HashSet<u32> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let rows = status(control).await;
        let pids: HashSet<u32> = rows.iter().map(|r| r.1 as u32).collect();
        if rows.len() == WORKERS && rows.iter().all(|r| r.2 == "ready" && r.1 != 0) && pred(&pids) {
            return pids;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn count(log: &Mutex<Vec<String>>, what: &str) -> usize {
    log.lock().expect("log").iter().filter(|l| l.contains(what)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_right_after_a_sigkill_reloads_every_time() {
    let dir = scratch_dir("reload-after-crash");
    let control = dir.join("c.sock");
    let config = dir.join("corral.toml");
    // Restarts at once and without limit: the kill's replacement is starting when the SIGHUP comes.
    std::fs::write(&config, "max_restarts = 100000\nperiod = \"1s\"\nmin_uptime = \"1ms\"\n").expect("config");
    let mut cmd = Command::new(CORRAL);
    cmd.arg("run")
        .args(["-w", "3", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--control")
        .arg(&control)
        .arg("--")
        .args(python());
    cmd.env("RUST_LOG", "info").stdin(std::process::Stdio::null()).kill_on_drop(true);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut primary = cmd.spawn().expect("corral run");
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut out = BufReader::new(primary.stdout.take().expect("stdout")).lines();
    let mut err = BufReader::new(primary.stderr.take().expect("stderr")).lines();
    let addr: std::net::SocketAddr = loop {
        let line = tokio::time::timeout(TIMEOUT, out.next_line())
            .await
            .expect("a listening line in time")
            .expect("read")
            .expect("corral run ended before it listened");
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.parse().expect("HOST:PORT");
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
    tokio::spawn({
        let log = log.clone();
        async move {
            while let Ok(Some(line)) = err.next_line().await {
                log.lock().expect("log").push(line);
            }
        }
    });
    let pid = primary.id().expect("running");

    let stop = tokio_util::sync::CancellationToken::new();
    let load = tokio::spawn(load(addr, 2, "/", stop.clone()));
    let mut waited = 0;
    for round in 0..20 {
        let before = ready_when(&control, "ready before the kill", |_| true).await;
        let victim = *before.iter().nth(round % WORKERS).expect("a worker");
        kill(victim, Signal::SIGKILL);
        tokio::time::sleep(Duration::from_millis(50)).await;
        kill(pid, Signal::SIGHUP);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while count(&log, "rolling reload done") < round + 1 {
            let aborted = count(&log, "rolling reload aborted");
            assert_eq!(
                aborted,
                0,
                "round {round}: a reload aborted: {:?}",
                log.lock().expect("log").iter().rev().take(10).collect::<Vec<_>>()
            );
            assert!(tokio::time::Instant::now() < deadline, "round {round}: the reload did not finish in 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Every worker of before the kill is gone: the killed one restarted, the others reloaded.
        ready_when(&control, "every pid replaced", |now| now.is_disjoint(&before)).await;
        waited = count(&log, "the replacement waits for it");
    }
    stop.cancel();
    let report = load.await.expect("load");
    assert_eq!(count(&log, "rolling reload done"), 20);
    assert_eq!(count(&log, "rolling reload aborted"), 0);
    assert!(report.ok > 0);
    eprintln!(
        "20 x (SIGKILL, 50 ms, SIGHUP): 20 reloads done, 0 aborted, {waited} waited for a restarting slot; {} requests ok, {} failed (those in flight on a killed worker)",
        report.ok,
        report.failed.len()
    );
    kill(pid, Signal::SIGTERM);
    let _ = tokio::time::timeout(TIMEOUT, primary.wait()).await;
    let _ = std::fs::remove_dir_all(&dir);
}
