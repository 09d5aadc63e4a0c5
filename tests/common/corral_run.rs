//! Driving the `corral` program as a user does: `corral run` with real Python and Node
//! workers, its `listening on` lines, signals, exit codes.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{TIMEOUT, answered_by, http_get, kill};

/// The `corral` binary of this build.
pub const CORRAL: &str = env!("CARGO_BIN_EXE_corral");

/// A worker program of `tests/programs`.
pub fn test_program(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs").join(name).display().to_string()
}

/// The stdlib Python worker (READY=1 over NOTIFY_SOCKET).
pub fn python() -> Vec<String> {
    vec!["python3".into(), test_program("activated_worker.py")]
}

/// The Node worker (ready by `--ready delay:MS`).
pub fn node() -> Vec<String> {
    vec!["node".into(), test_program("activated_worker.js")]
}

/// A running `corral run`, its stdout and stderr read in the background.
pub struct CorralRun {
    pub child: Child,
    pub addrs: Vec<SocketAddr>,
    /// The metrics endpoint's address, from its `metrics on http://ADDR/metrics` line, when
    /// started with `--metrics`.
    pub metrics: Option<SocketAddr>,
    pub stderr: tokio::task::JoinHandle<String>,
}

impl CorralRun {
    /// Starts `corral run ARGS [-- PROGRAM]` and waits (bounded) for `listeners` listening lines.
    pub async fn start(args: &[&str], program: &[String], env: &[(&str, &str)], listeners: usize) -> CorralRun {
        let mut cmd = Command::new(CORRAL);
        cmd.arg("run").args(args);
        if !program.is_empty() {
            cmd.arg("--").args(program);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::start_command(cmd, args.contains(&"--metrics"), listeners).await
    }

    /// Starts `cmd` (a `corral run` command line, maybe behind `unshare` or the like) and
    /// waits (bounded) for `listeners` listening lines, and the metrics line if `metrics`.
    pub async fn start_command(mut cmd: Command, metrics: bool, listeners: usize) -> CorralRun {
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start corral run");
        let stderr = drain(child.stderr.take().expect("stderr"));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut addrs = Vec::new();
        while addrs.len() < listeners {
            let line = tokio::time::timeout(TIMEOUT, lines.next_line())
                .await
                .expect("a listening line in time")
                .expect("read stdout")
                .expect("corral run ended before it was listening");
            if let Some(addr) = line.strip_prefix("listening on ") {
                addrs.push(addr.parse().expect("HOST:PORT"));
            }
        }
        let metrics = if metrics {
            let line = tokio::time::timeout(TIMEOUT, lines.next_line())
                .await
                .expect("a metrics line in time")
                .expect("read stdout")
                .expect("corral run ended before its metrics line");
            let addr = line.strip_prefix("metrics on http://").and_then(|l| l.strip_suffix("/metrics"));
            Some(addr.unwrap_or_else(|| panic!("unexpected line {line:?}")).parse().expect("HOST:PORT"))
        } else {
            None
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        CorralRun { child, addrs, metrics, stderr }
    }

    /// The primary's pid.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Sends the primary a signal.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        kill(self.pid(), signal);
    }

    /// Waits (bounded) for the exit code; returns it with the captured stderr.
    pub async fn exit(mut self) -> (Option<i32>, String) {
        let status = tokio::time::timeout(TIMEOUT, self.child.wait()).await.expect("exits in time").expect("wait");
        let stderr = self.stderr.await.unwrap_or_default();
        (status.code(), stderr)
    }
}

/// Reads a pipe to its end, in the background.
pub fn drain(pipe: tokio::process::ChildStderr) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut out = String::new();
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            out.push_str(&line);
            out.push('\n');
        }
        out
    })
}

/// The worker pids that answer `n` fresh connections.
pub async fn http_pids(addr: SocketAddr, n: usize) -> HashSet<u32> {
    let mut seen = HashSet::new();
    for _ in 0..n {
        if let Ok((200, body)) = http_get(addr, "/").await {
            seen.insert(answered_by(&body).1);
        }
    }
    seen
}

/// Waits (bounded) until `pred` holds of the worker pids answering 20 fresh connections.
pub async fn until_pids(addr: SocketAddr, what: &str, pred: impl Fn(&HashSet<u32>) -> bool) -> HashSet<u32> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let seen = http_pids(addr, 20).await;
        if pred(&seen) {
            return seen;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: pids answering {seen:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
