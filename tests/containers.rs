//! corral in a container: as PID 1 of a PID namespace (`unshare --pid --fork --mount-proc`)
//! and as a child subreaper it reaps its workers' orphans and ends them with the stop; its
//! log lines as JSON; the `/healthz` and `/readyz` probes while workers restart.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::process::Command;

/// Every process as `/proc` shows it now: pid → (state, parent).
fn processes() -> HashMap<u32, (char, u32)> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let parent = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        out.insert(pid, (state, parent));
    }
    out
}

/// The descendants of `root` with their state.
fn descendants(root: u32) -> Vec<(u32, char)> {
    let all = processes();
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(parent) = todo.pop() {
        for (&pid, &(state, ppid)) in &all {
            if ppid == parent && pid != parent {
                out.push((pid, state));
                todo.push(pid);
            }
        }
    }
    out
}

fn parent_of(pid: u32) -> Option<u32> {
    processes().get(&pid).map(|&(_, parent)| parent)
}

fn command_of(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Waits (bounded) until `what` holds; panics with `describe()` otherwise.
async fn until(what: &str, mut holds: impl FnMut() -> bool, describe: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !holds() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: {}", describe());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Leaves `n` orphans through the workers behind `addr`; their pids (as the workers see them).
async fn orphans(addr: std::net::SocketAddr, n: usize) -> Vec<u32> {
    let mut pids = Vec::new();
    for _ in 0..n {
        let (status, body) = http_get(addr, "/orphan").await.expect("GET /orphan");
        assert_eq!(status, 200, "{body}");
        pids.push(body.trim().parse().expect("the orphan's pid"));
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_pid_1_corral_reaps_every_orphan_reloads_on_sighup_and_exits_0_on_sigterm() {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", CORRAL, "run", "-w", "2", "-l", "127.0.0.1:0"])
        .args(["--no-control", "--"])
        .args(python());
    let run = CorralRun::start_command(cmd, false, 1).await;
    let addr = run.addrs[0];
    let unshare = run.pid();
    let init = descendants(unshare).first().map(|&(pid, _)| pid).expect("the namespace's first process");
    assert!(command_of(init).contains("corral"), "PID 1 is corral: {}", command_of(init));
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).expect("status");
    assert!(status.lines().any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1")), "{status}");

    orphans(addr, 30).await;
    // Each lives 0.2 s as `sleep`, then exits: none may stay a zombie.
    until(
        "every orphan reaped",
        || descendants(unshare).iter().all(|&(pid, state)| state != 'Z' && !command_of(pid).starts_with("sleep")),
        || format!("{:?}", descendants(unshare)),
    )
    .await;

    let before = http_pids(addr, 20).await;
    kill(init, Signal::SIGHUP);
    until_pids(addr, "SIGHUP to PID 1 replaces every worker", |now| now.len() == 2 && now.is_disjoint(&before)).await;

    kill(init, Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "SIGTERM to PID 1: a clean stop\n{stderr}");
    assert!(descendants(unshare).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_a_subreaper_corral_adopts_orphans_counts_them_and_ends_them_with_the_stop() {
    let args = ["-w", "2", "-l", "127.0.0.1:0", "--no-control", "--metrics", "127.0.0.1:0"];
    let run = CorralRun::start(&args, &python(), &[("ORPHAN_LIFE", "60")], 1).await;
    let addr = run.addrs[0];
    let corral = run.pid();
    let left = orphans(addr, 10).await;
    until(
        "every orphan adopted by corral",
        || left.iter().all(|&pid| parent_of(pid) == Some(corral)),
        || format!("parents {:?}", left.iter().map(|&p| parent_of(p)).collect::<Vec<_>>()),
    )
    .await;
    let metrics = run.metrics.expect("metrics address");
    let adopted = || async {
        let (_, body) = http_get(metrics, "/status.json").await.expect("status");
        serde_json::from_str::<Value>(&body).expect("JSON")["orphans_adopted"].as_u64().unwrap_or(0)
    };
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while adopted().await < 10 {
        assert!(tokio::time::Instant::now() < deadline, "orphans_adopted in the status: {}", adopted().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A worker killed meanwhile is still its slot's to reap: its status is the SIGKILL.
    let (_, victim) = answered_by(&http_get(addr, "/").await.expect("GET /").1);
    kill(victim, Signal::SIGKILL);
    until_pids(addr, "the killed worker replaced", |now| now.len() == 2 && !now.contains(&victim)).await;

    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(wait_gone(&left, TIMEOUT).await, Vec::<u32>::new(), "orphans ended with the stop");
    let exit_line = stderr.lines().find(|l| l.contains("worker exited") && l.contains(&format!("pid={victim}")));
    assert!(exit_line.is_some_and(|l| l.contains("SIGKILL")), "the killed worker's status:\n{stderr}");
    assert!(!stderr.contains("waiting for a worker process failed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_every_stderr_line_is_a_json_object_across_a_restart_a_reload_and_a_stop() {
    let args = ["--log-format", "json", "-w", "2", "-l", "127.0.0.1:0", "--no-control"];
    let run = CorralRun::start(&args, &python(), &[], 1).await;
    let addr = run.addrs[0];
    assert_eq!(http_get(addr, "/print/hello-json").await.expect("GET").0, 200);
    let (_, victim) = answered_by(&http_get(addr, "/").await.expect("GET /").1);
    kill(victim, Signal::SIGKILL);
    let now = until_pids(addr, "the killed worker replaced", |now| now.len() == 2 && !now.contains(&victim)).await;
    run.signal(Signal::SIGHUP);
    until_pids(addr, "SIGHUP replaces every worker", |next| next.len() == 2 && next.is_disjoint(&now)).await;
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");

    let rfc3339_utc = |ts: &str| {
        let b = ts.as_bytes();
        ts.len() >= 20 && ts.ends_with('Z') && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':'
    };
    let mut objects = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let object = value.as_object().unwrap_or_else(|| panic!("not an object: {line}")).clone();
        for key in ["ts", "level", "target", "message"] {
            assert!(object.contains_key(key), "no {key}: {line}");
        }
        assert!(rfc3339_utc(object["ts"].as_str().unwrap_or_default()), "ts: {line}");
        objects.push(object);
    }
    let printed = objects.iter().find(|o| o["message"] == "hello-json").expect("the worker's printed line");
    assert_eq!(printed["stream"], "stdout");
    assert!(printed["slot"].is_u64() && printed["pid"].is_u64(), "{printed:?}");
    let killed = objects.iter().find(|o| o["message"] == "worker exited" && o["pid"] == victim);
    assert!(killed.is_some_and(|o| o["status"].as_str().unwrap_or_default().contains("SIGKILL")), "{stderr}");
    let levels: HashSet<&str> = objects.iter().filter_map(|o| o["level"].as_str()).collect();
    assert!(levels.is_subset(&HashSet::from(["trace", "debug", "info", "warn", "error"])), "{levels:?}");
    assert!(objects.iter().any(|o| o["message"] == "cluster stopped"), "the stop is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_stays_200_and_readyz_is_503_while_a_slot_is_down_then_200() {
    let args = ["-w", "2", "-l", "127.0.0.1:0", "--no-control", "--metrics", "127.0.0.1:0", "--ready", "delay:700"];
    let run = CorralRun::start(&args, &python(), &[], 1).await;
    let (addr, metrics) = (run.addrs[0], run.metrics.expect("metrics address"));
    assert_eq!(http_get(metrics, "/healthz").await.expect("healthz"), (200, "ok\n".to_string()));
    let (status, body) = http_get(metrics, "/readyz").await.expect("readyz");
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).expect("the status JSON");
    assert_eq!((ready["ready"].as_bool(), ready["ready_workers"].as_u64()), (Some(true), Some(2)));

    let (_, victim) = answered_by(&http_get(addr, "/").await.expect("GET /").1);
    kill(victim, Signal::SIGKILL);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let body = loop {
        let (status, body) = http_get(metrics, "/readyz").await.expect("readyz");
        if status == 503 {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "/readyz never 503 while the slot was down");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let down: Value = serde_json::from_str(&body).expect("the 503's body is the status JSON");
    assert_eq!(down["ready"], false);
    assert!(down["workers"].as_array().is_some_and(|w| w.len() == 2), "{down}");
    assert_eq!(http_get(metrics, "/healthz").await.expect("healthz").0, 200, "alive while a worker restarts");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while http_get(metrics, "/readyz").await.expect("readyz").0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "/readyz not 200 again once the slot is back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(http_get(metrics, "/healthz").await.expect("healthz").0, 200);
    run.signal(Signal::SIGTERM);
    assert_eq!(run.exit().await.0, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_counts_ready_min_workers() {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncBufReadExt, BufReader};
    // Slot 1 never says READY=1: the cluster never announces that it listens, but with
    // --ready-min 1 it is ready for the probe once slot 0 is.
    let dir = scratch_dir("ready-min");
    let never = dir.join("never_ready_slot_1.sh");
    let script = format!(
        "#!/bin/sh\n[ \"$CORRAL_SLOT\" = 1 ] && export NEVER_READY=1\nexec python3 {}\n",
        test_program("activated_worker.py")
    );
    std::fs::write(&never, script).expect("script");
    std::fs::set_permissions(&never, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for (ready_min, want) in [("1", 200), ("2", 503)] {
        let mut child = Command::new(CORRAL)
            .args(["run", "--log-format", "json", "-w", "2", "-l", "127.0.0.1:0", "--no-control"])
            .args(["--metrics", "127.0.0.1:0", "--ready-min", ready_min, "--listen-timeout", "60s", "--"])
            .arg(&never)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("corral run");
        // The metrics address is logged at start (stdout names it once every worker is ready).
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let metrics: std::net::SocketAddr = loop {
            let line = tokio::time::timeout(TIMEOUT, lines.next_line())
                .await
                .expect("the metrics endpoint logged in time")
                .expect("read")
                .expect("corral ended before its metrics endpoint");
            let value: Value = serde_json::from_str(&line).expect("JSON");
            if value["message"] == "metrics endpoint" {
                break value["addr"].as_str().expect("addr").parse().expect("IP:PORT");
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let (status, body) = http_get(metrics, "/readyz").await.expect("readyz");
            let ready = serde_json::from_str::<Value>(&body).expect("JSON")["ready_workers"].as_u64();
            if ready == Some(1) {
                assert_eq!(status, want, "--ready-min {ready_min}: {body}");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "slot 0 never ready: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        kill(child.id().expect("pid"), Signal::SIGTERM);
        let _ = tokio::time::timeout(TIMEOUT, child.wait()).await.expect("exits in time");
    }
}
