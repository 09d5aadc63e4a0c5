//! What a person sees when a start fails: the cause once, as one `error: …` sentence (no Rust
//! `Debug` value, not repeated by every layer), a documented non-zero exit code, and nothing
//! forked when the configuration alone says it cannot work.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Runs `example` with `args` to its end (bounded), logging at `info` without colour; returns
/// the exit code and stderr.
async fn run_to_end(example_name: &str, args: &[&str]) -> (Option<i32>, String) {
    let run = Command::new(example(example_name))
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(TIMEOUT, run).await.expect("exits at start").expect("run");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `text`'s `error: ` lines.
fn error_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("error: ")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_said_once_as_a_sentence_and_exits_1_in_every_mode() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    for sched in ["rr", "lc", "shared", "reuseport"] {
        let (code, stderr) = run_to_end("http_cluster", &["--workers", "3", "--port", &port, "--sched", sched]).await;
        assert_eq!(code, Some(1), "--sched {sched}: {stderr}");
        assert_eq!(
            error_lines(&stderr),
            [format!("error: cannot listen on 127.0.0.1:{port}: Address already in use (os error 98)")],
            "--sched {sched}: one sentence, last: {stderr}"
        );
        assert_eq!(stderr.to_lowercase().matches("address already in use").count(), 1, "said once: {stderr}");
        assert!(!stderr.contains("Cluster(") && !stderr.contains("Listen("), "no Debug value: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_reuseport_cluster_on_a_busy_port_is_refused() {
    let (mut first, addr) = start_http_cluster(&["--workers", "2", "--sched", "reuseport"]).await;
    let port = addr.port().to_string();
    let (code, stderr) = run_to_end("http_cluster", &["--workers", "1", "--port", &port, "--sched", "reuseport"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("Address already in use"), "{stderr}");
    // The first cluster still has the port to itself.
    for _ in 0..8 {
        let (status, body) = http_get(addr, "/").await.expect("the first cluster serves");
        assert_eq!(status, 200);
        assert!(body.starts_with("Handled by worker "), "{body}");
    }
    kill(first.id().expect("pid"), Signal::SIGTERM);
    let status = tokio::time::timeout(TIMEOUT, first.wait()).await.expect("exits").expect("status");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_config_file_is_named() {
    for file in ["/nonexistent/corral.json", "/nonexistent/corral.toml"] {
        let (code, stderr) = run_to_end("05_production_patterns", &["--config", file]).await;
        assert_eq!(code, Some(2), "{stderr}");
        let errors = error_lines(&stderr);
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains(file) && errors[0].contains("No such file"), "{stderr}");
        assert!(!stderr.contains("Os {"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_listen_address_is_refused_before_any_fork() {
    let (code, stderr) =
        run_to_end("05_production_patterns", &["--listen", "127.0.0.1:70000", "--status-every", "0s"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    // Logging at info, the only line is the error: no worker was started, nothing listened.
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("error: cannot listen on 127.0.0.1:70000: "), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_that_gave_up_on_its_clusters_exits_non_zero() {
    let mut app = Command::new(example("embed_in_supervision_tree"))
        .args(["--workers", "1", "--crash", "--cluster-restarts", "1"])
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start");
    let mut stdout = BufReader::new(app.stdout.take().expect("stdout")).lines();
    let mut said = Vec::new();
    let gave_up = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(line) = stdout.next_line().await.expect("read") {
            said.push(line.clone());
            if line.contains("giving up after 1 cluster restarts") {
                return true;
            }
        }
        false
    })
    .await
    .expect("the app gives up in time");
    assert!(gave_up, "{said:#?}");
    let out = tokio::time::timeout(TIMEOUT, app.wait_with_output()).await.expect("exits").expect("wait");
    assert_eq!(out.status.code(), Some(1), "{said:#?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(error_lines(&stderr), ["error: the cluster kept failing; gave up after 1 cluster restarts"], "{stderr}");
}
