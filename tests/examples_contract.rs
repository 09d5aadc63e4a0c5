//! The HTTP examples as a newcomer runs them: each prints `listening on http://HOST:PORT`
//! once, when its workers are ready (a reload says "reloaded" instead), and answers errors
//! with a body that ends in a newline.

mod common;

use std::process::Stdio;

use common::*;
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Starts `name` with `args` (logging off) and waits (bounded) for its listening line;
/// returns the process, the address, and the rest of its stdout.
async fn start(name: &str, args: &[&str]) -> (Child, std::net::SocketAddr, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(example(name))
        .args(args)
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the example");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{name}: no listening line in time"))
            .expect("read")
            .unwrap_or_else(|| panic!("{name} ended before it was listening"));
        if let Some(at) = line.find("listening on http://") {
            let addr = line[at + "listening on http://".len()..].split_whitespace().next().expect("address");
            return (child, addr.parse().expect("HOST:PORT"), lines);
        }
    }
}

/// SIGTERM, then the rest of stdout and the exit code.
async fn stop(mut child: Child, mut lines: Lines<BufReader<ChildStdout>>) -> (Option<i32>, Vec<String>) {
    kill(child.id().expect("pid"), Signal::SIGTERM);
    let mut rest = Vec::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(TIMEOUT, lines.next_line()).await {
        rest.push(line);
    }
    let status = tokio::time::timeout(TIMEOUT, child.wait()).await.expect("exits").expect("status");
    (status.code(), rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_example_says_where_it_listens_once_ready() {
    for (name, args) in [
        ("05_production_patterns", &["--listen", "127.0.0.1:0", "--status-every", "0s"][..]),
        ("06_cpu_pool", &["--port", "0", "--workers", "2"]),
        ("07_status_table", &["--port", "0", "--workers", "2", "--interval-ms", "60000"]),
        ("http_cluster", &["--port", "0", "--workers", "2"]),
        ("hello_axum", &["--port", "0"]),
        ("hello_axum", &["--port", "0", "--processes", "2"]),
    ] {
        let (child, addr, lines) = start(name, args).await;
        assert!(addr.ip().is_loopback() && addr.port() != 0, "{name}: {addr}");
        let (status, _) = http_get(addr, "/").await.unwrap_or_else(|e| panic!("{name} serves: {e}"));
        assert_eq!(status, 200, "{name}");
        let (code, rest) = stop(child, lines).await;
        assert_eq!(code, Some(0), "{name}");
        assert!(rest.iter().all(|l| !l.contains("listening on")), "{name} said it once: {rest:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cpu_pool_example_ends_its_error_bodies_with_a_newline() {
    let (child, addr, lines) = start("06_cpu_pool", &["--port", "0", "--workers", "1"]).await;
    for (path, status) in [("/fib?n=99", 400), ("/fib?n=abc", 400), ("/fib", 400), ("/nope", 404)] {
        let (got, body) = http_get(addr, path).await.expect("answered");
        assert_eq!(got, status, "{path}: {body:?}");
        assert!(body.len() > 1 && body.ends_with('\n'), "{path}: {body:?}");
    }
    assert_eq!(http_get(addr, "/fib?n=10").await.expect("fib").1, "fib(10) = 55\n");
    assert_eq!(stop(child, lines).await.0, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graceful_shutdown_example_says_reloaded_not_listening_again() {
    let (child, addr, mut lines) = start("04_graceful_shutdown", &["--port", "0", "--workers", "2"]).await;
    kill(child.id().expect("pid"), Signal::SIGHUP);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("the reload is reported in time")
            .expect("read")
            .expect("still running");
        assert!(!line.contains("listening on"), "said once: {line}");
        if line.contains("reloaded") {
            assert_eq!(line, "primary: reloaded, 2 worker(s) replaced");
            break;
        }
    }
    assert_eq!(http_get(addr, "/work?ms=1").await.expect("serves").0, 200);
    assert_eq!(stop(child, lines).await.0, Some(0));
}
