//! Shared helpers of the black-box tests: the testbed worker program, a test config, an event
//! log with bounded waits, and the HTTP client.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use corral::config::WorkerExec;
use corral::events::EventStream;
use corral::supervision::Backoff;
use corral::{Cluster, ClusterConfig, ClusterEvent, ClusterHandle};

/// Every wait in the tests is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(20);

mod corral_run;
mod own_process;
#[allow(unused_imports)] // Each test file uses a part of the helpers.
pub use corral_run::*;
#[allow(unused_imports)]
pub use own_process::*;

pub use corral_testkit::messages::{TestCmd, TestReport};

/// A built example (cargo test builds every example before it runs the tests).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/examples/<name>
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (it builds the examples)",
        path.display()
    );
    path
}

/// A config running `workers` testbed workers, with quick timings for tests.
pub fn config(workers: usize) -> ClusterConfig {
    ClusterConfig::default()
        .workers(workers)
        .exec(WorkerExec::Program { path: example("testbed"), args: Vec::new() })
        .backoff(Backoff { base: Duration::from_millis(50), factor: 2.0, max: Duration::from_secs(2), jitter: 0.0 })
        .min_uptime(Duration::from_millis(500))
        .kill_timeout(Duration::from_secs(3))
        .listen_timeout(Duration::from_secs(10))
        .env_var("RUST_LOG", if std::env::var_os("TEST_LOG").is_some() { "debug" } else { "off" })
}

pub type Handle = ClusterHandle<TestCmd, TestReport>;

/// A fresh, empty directory for this test process's files.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corral-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `base`, with every rolling reload re-reading the config file at `file` on top of `base` (as
/// a primary built on `corral::config_file` does).
pub fn reloaded_from_file(base: ClusterConfig, file: PathBuf) -> ClusterConfig {
    let on_top = base.clone();
    base.reconfigure(Some(corral::config::Reconfigure::new(move || {
        Ok(corral::config_file::ConfigFile::read(&file)?.cluster_config_from(on_top.clone())?)
    })))
}

/// An event stream that remembers what it has seen.
pub struct Events {
    stream: EventStream<TestReport>,
    pub seen: Vec<ClusterEvent<TestReport>>,
}

impl Events {
    pub fn new(stream: EventStream<TestReport>) -> Self {
        Events { stream, seen: Vec::new() }
    }

    /// Waits (bounded) for the next event matching `pred`, returning it.
    pub async fn wait_for(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&ClusterEvent<TestReport>) -> bool,
    ) -> ClusterEvent<TestReport> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.recv()).await;
            match next {
                Err(_) => panic!("timed out waiting for {what}; seen: {:#?}", self.seen),
                Ok(None) => panic!("event stream ended while waiting for {what}; seen: {:#?}", self.seen),
                Ok(Some(event)) => {
                    self.seen.push(event.clone());
                    if pred(&event) {
                        return event;
                    }
                }
            }
        }
    }

    /// The first event already seen that matches `pred`, or else the next one to come.
    pub async fn seen_or_wait(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&ClusterEvent<TestReport>) -> bool,
    ) -> ClusterEvent<TestReport> {
        if let Some(event) = self.seen.iter().find(|e| pred(e)) {
            return event.clone();
        }
        self.wait_for(what, pred).await
    }

    /// Waits until every slot in `0..n` has a `Ready` event; returns their pids by slot.
    pub async fn all_ready(&mut self, n: usize) -> Vec<u32> {
        let mut pids = vec![None; n];
        while pids.iter().any(Option::is_none) {
            if let ClusterEvent::Ready { slot, pid, .. } =
                self.wait_for("all workers ready", |e| matches!(e, ClusterEvent::Ready { .. })).await
            {
                pids[slot] = Some(pid);
            }
        }
        pids.into_iter().map(|p| p.unwrap_or_default()).collect()
    }

    /// Collects events (bounded) until `pred` matches, returning them all (the match last).
    pub async fn until(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&ClusterEvent<TestReport>) -> bool,
    ) -> Vec<ClusterEvent<TestReport>> {
        let start = self.seen.len();
        self.wait_for(what, &mut pred).await;
        self.seen[start..].to_vec()
    }
}

/// Spawns a cluster of testbed workers and returns its handle and event log.
pub async fn spawn(config: ClusterConfig) -> (Handle, Events) {
    if std::env::var_os("TEST_LOG").is_some() {
        corral::init_tracing();
    }
    let (cluster, events) = Cluster::<TestCmd, TestReport>::spawn(config).await.expect("cluster spawns");
    (cluster, Events::new(events))
}

/// Whether a process is gone (no such pid, or a zombie nobody has reaped yet).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Waits (bounded by `limit`) until every pid is gone; returns those still alive.
pub async fn wait_gone(pids: &[u32], limit: Duration) -> Vec<u32> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| !process_gone(p)).collect();
        if alive.is_empty() || tokio::time::Instant::now() >= deadline {
            return alive;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn kill(pid: u32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).expect("kill");
}

/// The tests' HTTP/1.1 client of 127.0.0.0/8: `GET` requests, each bounded by [`TIMEOUT`],
/// on one keep-alive connection until the server says `Connection: close`, then on a new
/// one. A request answers status, body, and whether the server closed the connection after
/// it.
pub struct HttpClient {
    addr: std::net::SocketAddr,
    stream: Option<tokio::io::BufReader<tokio::net::TcpStream>>,
}

impl HttpClient {
    /// A client of `addr`; it connects at its first request.
    pub fn new(addr: std::net::SocketAddr) -> Self {
        assert!(addr.ip().is_loopback(), "tests only talk to 127.0.0.0/8");
        HttpClient { addr, stream: None }
    }

    /// `GET path`, keeping the connection open for the next request.
    pub async fn get(&mut self, path: &str) -> std::io::Result<(u16, String, bool)> {
        self.request(path, false).await
    }

    /// `GET path` with `Connection: close` if `close`.
    async fn request(&mut self, path: &str, close: bool) -> std::io::Result<(u16, String, bool)> {
        let answer = tokio::time::timeout(TIMEOUT, self.exchange(path, close)).await;
        let answer = answer.unwrap_or_else(|_| Err(std::io::Error::other("HTTP request timed out")));
        // The connection is done once the server closes it, or after any failure.
        if !matches!(answer, Ok((_, _, false))) {
            self.stream = None;
        }
        answer
    }

    async fn exchange(&mut self, path: &str, close: bool) -> std::io::Result<(u16, String, bool)> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => self.stream.insert(tokio::io::BufReader::new(tokio::net::TcpStream::connect(self.addr).await?)),
        };
        let connection = if close { "Connection: close\r\n" } else { "" };
        stream.get_mut().write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n{connection}\r\n").as_bytes()).await?;
        let mut status_line = String::new();
        if stream.read_line(&mut status_line).await? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before the response"));
        }
        let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let (mut length, mut closes) = (None, close);
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await? == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed in the headers"));
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().ok();
            }
            if lower.starts_with("connection:") && lower.contains("close") {
                closes = true;
            }
        }
        // The body: `Content-Length` bytes, else up to the end of the connection.
        let mut body = Vec::new();
        match length {
            Some(n) => {
                body.resize(n, 0);
                stream.read_exact(&mut body).await?;
            }
            None => {
                stream.read_to_end(&mut body).await?;
                closes = true;
            }
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned(), closes))
    }
}

/// One `GET path` on a fresh connection (`Connection: close`): status and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    HttpClient::new(addr).request(path, true).await.map(|(status, body, _)| (status, body))
}

/// The worker slot that answered a testbed request (`"<slot> <pid>"`).
pub fn answered_by(body: &str) -> (usize, u32) {
    let mut it = body.split_whitespace();
    let slot = it.next().and_then(|s| s.parse().ok()).expect("slot in body");
    let pid = it.next().and_then(|s| s.parse().ok()).expect("pid in body");
    (slot, pid)
}

/// A testbed config that also serves HTTP on a shared 127.0.0.1 port.
pub fn http_config(workers: usize, scheduling: corral::config::Scheduling) -> ClusterConfig {
    config(workers).scheduling(scheduling).env_var("TESTBED_HTTP", "127.0.0.1:0")
}

impl Events {
    /// Waits until every slot is ready and returns the shared address.
    pub async fn http_ready(&mut self, n: usize) -> std::net::SocketAddr {
        self.all_ready(n).await;
        let listening = self.seen_or_wait("listening", |e| matches!(e, ClusterEvent::Listening { .. })).await;
        let ClusterEvent::Listening { addr, .. } = listening else { unreachable!() };
        addr
    }
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub ok: u64,
    pub failed: Vec<String>,
    pub closes: u64,
    pub pids: std::collections::HashSet<u32>,
}

/// Runs `clients` keep-alive clients and `clients` one-request-per-connection clients on
/// `path` until `stop` is cancelled (bounded by TIMEOUT), collecting every outcome.
pub async fn load(
    addr: std::net::SocketAddr,
    clients: usize,
    path: &'static str,
    stop: tokio_util::sync::CancellationToken,
) -> LoadReport {
    let mut tasks = Vec::new();
    for i in 0..clients * 2 {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut report = LoadReport::default();
            let mut keep_alive = HttpClient::new(addr);
            let deadline = tokio::time::Instant::now() + TIMEOUT;
            while !stop.is_cancelled() && tokio::time::Instant::now() < deadline {
                let result = if i % 2 == 0 {
                    keep_alive.get(path).await
                } else {
                    http_get(addr, path).await.map(|(s, b)| (s, b, true))
                };
                match result {
                    Ok((200, body, close)) => {
                        report.ok += 1;
                        report.closes += u64::from(close && i % 2 == 0);
                        if let Some(pid) = body.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                            report.pids.insert(pid);
                        }
                    }
                    Ok((status, body, _)) => report.failed.push(format!("status {status}: {body}")),
                    Err(e) => report.failed.push(e.to_string()),
                }
            }
            report
        }));
    }
    let mut total = LoadReport::default();
    for task in tasks {
        let r = task.await.expect("load task");
        total.ok += r.ok;
        total.closes += r.closes;
        total.failed.extend(r.failed);
        total.pids.extend(r.pids);
    }
    total
}

/// Starts the `http_cluster` example with `args` (plus `--port 0`) and waits (bounded) for
/// its `listening on http://…` line; returns the primary and the address.
pub async fn start_http_cluster(args: &[&str]) -> (tokio::process::Child, std::net::SocketAddr) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut primary = tokio::process::Command::new(example("http_cluster"))
        .args(args)
        .args(["--port", "0"])
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start http_cluster");
    let mut lines = BufReader::new(primary.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(TIMEOUT, lines.next_line()).await.expect("announced").expect("read").expect("line");
    let url = line.strip_prefix("listening on http://").unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let addr: std::net::SocketAddr = url.parse().expect("host:port");
    assert!(addr.ip().is_loopback());
    // Keep draining stdout so the primary never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (primary, addr)
}
