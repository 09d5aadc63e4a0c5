//! The control socket, black-box: the `corral` binary's control commands (`status`, `scale`,
//! `reload`, `restart`, `stop`, `logs -f`) driving a `corral run` cluster of Python workers
//! and an in-process library cluster; the socket's permissions and peer-credential check
//! against another user; hostile raw clients. Real processes and sockets, bounded waits; each
//! test has its own directory and socket, so they run in parallel.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::Command;

/// A fresh directory of this test (0755, so that another user may walk through it), removed
/// when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("corral-control-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        TempDir(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The control socket of a test: in a directory that does not exist yet, so the cluster
/// makes it (0700).
fn socket_in(dir: &Path) -> PathBuf {
    dir.join("ctl").join("corral.sock")
}

/// What a `corral` control command did.
#[derive(Debug)]
struct Ctl {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `corral ARGS --control SOCKET` (bounded by `limit`).
async fn corral_within(limit: Duration, args: &[&str], socket: &Path) -> Ctl {
    let out = Command::new(CORRAL)
        .args(args)
        .arg("--control")
        .arg(socket)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, out)
        .await
        .unwrap_or_else(|_| panic!("`corral {}` did not finish within {limit:?}", args.join(" ")))
        .expect("run corral");
    Ctl {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn corral(args: &[&str], socket: &Path) -> Ctl {
    corral_within(TIMEOUT, args, socket).await
}

/// Runs a control command that must succeed (exit 0); returns its stdout.
async fn corral_ok(args: &[&str], socket: &Path) -> String {
    let out = corral(args, socket).await;
    assert_eq!(out.code, Some(0), "`corral {}`: {out:?}", args.join(" "));
    out.stdout
}

/// One row of `corral status --json`.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    slot: usize,
    pid: Option<u32>,
    state: String,
    generation: u64,
}

fn rows(status: &Value) -> Vec<Row> {
    let workers = status["workers"].as_array().unwrap_or_else(|| panic!("no workers array in {status}"));
    workers
        .iter()
        .map(|w| Row {
            slot: w["slot"].as_u64().unwrap_or_else(|| panic!("slot in {w}")) as usize,
            pid: w["pid"].as_u64().map(|p| p as u32),
            state: w["state"].as_str().unwrap_or_else(|| panic!("state in {w}")).to_string(),
            generation: w["generation"].as_u64().unwrap_or_default(),
        })
        .collect()
}

fn all_ready(rows: &[Row], n: usize) -> bool {
    rows.len() == n && rows.iter().all(|r| r.state == "ready" && r.pid.is_some())
}

/// The pid of each slot (every slot must have one).
fn pids_by_slot(rows: &[Row]) -> HashMap<usize, u32> {
    rows.iter().map(|r| (r.slot, r.pid.unwrap_or_else(|| panic!("slot {} has no pid: {rows:?}", r.slot)))).collect()
}

/// `corral status --json`: its exit code and rows, or `None` while the socket does not answer.
async fn status(socket: &Path) -> Option<(Option<i32>, Vec<Row>)> {
    let out = corral(&["status", "--json"], socket).await;
    let json: Value = serde_json::from_str(&out.stdout).ok()?;
    Some((out.code, rows(&json)))
}

/// Polls `corral status --json` (bounded) until `pred` holds of its rows; returns them. With
/// `--json` the exit code is 0 whenever the cluster answered (the states are in the JSON).
async fn until_status(socket: &Path, what: &str, pred: impl Fn(&[Row]) -> bool) -> Vec<Row> {
    let deadline = Instant::now() + TIMEOUT;
    let mut last = None;
    loop {
        if let Some((code, rows)) = status(socket).await {
            assert_eq!(code, Some(0), "status --json exit code for {rows:?}");
            if pred(&rows) {
                return rows;
            }
            last = Some(rows);
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last status {last:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) until the pids answering HTTP are exactly `want`.
async fn until_http_pids(addr: SocketAddr, want: &HashSet<u32>) {
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = HashSet::new();
    while Instant::now() < deadline {
        // Every answer comes from a wanted pid; keep asking until each of them answered.
        let answered = http_pids(addr, 10).await;
        assert!(answered.is_subset(want), "HTTP answered by {answered:?}, only {want:?} should");
        seen.extend(answered);
        if seen == *want {
            return;
        }
    }
    panic!("HTTP answered by {seen:?}, wanted {want:?}");
}

/// A running `corral run` with Python workers; stdout and stderr drained in the background.
struct Run {
    run: CorralRun,
    addr: SocketAddr,
    socket: PathBuf,
}

impl Run {
    /// Starts `corral run --control SOCKET -w N -l 127.0.0.1:0 --ready notify -- python3 …`,
    /// waits (bounded) for its listening line and for its control socket to answer with every
    /// slot ready.
    async fn start(socket: &Path, workers: usize) -> Run {
        let socket_arg = socket.to_str().expect("utf-8");
        let n = workers.to_string();
        let args =
            ["--control", socket_arg, "-w", &n, "-l", "127.0.0.1:0", "--ready", "notify", "--kill-timeout", "3s"];
        let run = CorralRun::start(&args, &python(), &[], 1).await;
        let addr = run.addrs[0];
        until_status(socket, "every slot ready over the control socket", |r| all_ready(r, workers)).await;
        Run { run, addr, socket: socket.to_path_buf() }
    }

    /// `corral stop`, then the primary's exit: both must be clean; every worker gone and the
    /// socket removed. Returns the primary's stderr.
    async fn stop(self) -> String {
        let pids: Vec<u32> =
            status(&self.socket).await.map(|(_, rows)| rows.iter().filter_map(|r| r.pid).collect()).unwrap_or_default();
        let out = corral(&["stop", "--timeout", "15s"], &self.socket).await;
        assert_eq!(out.code, Some(0), "corral stop: {out:?}");
        assert!(out.stdout.contains("stopped"), "{out:?}");
        let (code, stderr) = self.run.exit().await;
        assert_eq!(code, Some(0), "the primary exits 0 after corral stop: {stderr}");
        let left = wait_gone(&pids, Duration::from_secs(3)).await;
        assert!(left.is_empty(), "workers left after stop: {left:?}");
        assert!(!self.socket.exists(), "the control socket is removed at stop");
        stderr
    }
}

/// `slot S: pid A -> B …` lines of `corral reload` and `corral restart`: slot → (old, new).
fn replacements(stdout: &str) -> HashMap<usize, (u32, u32)> {
    stdout
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("slot ")?;
            let (slot, rest) = rest.split_once(": pid ")?;
            let (old, rest) = rest.split_once(" -> ")?;
            let new = rest.split_whitespace().next()?;
            Some((slot.parse().ok()?, (old.parse().ok()?, new.parse().ok()?)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corral_run_is_driven_by_status_scale_reload_restart_and_stop() {
    let dir = TempDir::new("run");
    let socket = socket_in(&dir);
    let run = Run::start(&socket, 2).await;

    // status: two ready slots, their pids the ones answering HTTP; the table too.
    let out = corral_ok(&["status", "--json"], &socket).await;
    let first = rows(&serde_json::from_str(&out).expect("status --json is JSON"));
    assert!(all_ready(&first, 2), "{first:?}");
    assert_eq!(first.iter().map(|r| r.slot).collect::<Vec<_>>(), [0, 1]);
    let first_pids = pids_by_slot(&first);
    until_http_pids(run.addr, &first_pids.values().copied().collect()).await;
    let table = corral_ok(&["status"], &socket).await;
    for pid in first_pids.values() {
        assert!(table.contains(&pid.to_string()), "the table shows pid {pid}: {table}");
    }

    // reload: every pid replaced, reported per slot, and the new ones serve.
    let out = corral_ok(&["reload"], &socket).await;
    let replaced = replacements(&out);
    assert_eq!(replaced.len(), 2, "one line per slot: {out}");
    for (slot, (old, new)) in &replaced {
        assert_eq!(*old, first_pids[slot], "slot {slot}'s old pid: {out}");
        assert_ne!(old, new, "{out}");
    }
    assert!(out.contains("reloaded 2 workers"), "{out}");
    let reloaded = until_status(&socket, "the reloaded slots ready", |r| all_ready(r, 2)).await;
    let reloaded_pids = pids_by_slot(&reloaded);
    for (slot, (_, new)) in &replaced {
        assert_eq!(reloaded_pids[slot], *new, "status shows slot {slot}'s new pid");
    }
    let old: HashSet<u32> = first_pids.values().copied().collect();
    assert!(reloaded_pids.values().all(|p| !old.contains(p)), "every pid replaced: {reloaded:?}");
    assert!(reloaded.iter().all(|r| r.generation > 1), "a new generation: {reloaded:?}");
    assert!(wait_gone(&old.iter().copied().collect::<Vec<_>>(), TIMEOUT).await.is_empty(), "old workers drained");
    until_http_pids(run.addr, &reloaded_pids.values().copied().collect()).await;

    // reload --json: the same report as JSON.
    let out = corral_ok(&["reload", "--json"], &socket).await;
    let json: Value = serde_json::from_str(&out).expect("reload --json is JSON");
    let report = json["replaced"].as_array().unwrap_or_else(|| panic!("replaced in {json}"));
    assert_eq!(report.len(), 2, "{json}");
    for r in report {
        let slot = r["slot"].as_u64().expect("slot") as usize;
        assert_eq!(r["old_pid"].as_u64(), Some(u64::from(reloaded_pids[&slot])), "{json}");
    }
    let reloaded = until_status(&socket, "the reloaded slots ready", |r| all_ready(r, 2)).await;
    let reloaded_pids = pids_by_slot(&reloaded);

    // restart 0: slot 0 gets a new process, the other keeps its own.
    let out = corral_ok(&["restart", "0"], &socket).await;
    let restarted = replacements(&out);
    let (old0, new0) = restarted[&0];
    assert_eq!(old0, reloaded_pids[&0], "{out}");
    assert_ne!(old0, new0);
    let after = until_status(&socket, "slot 0 on its new process", |r| {
        all_ready(r, 2) && r.iter().any(|w| w.slot == 0 && w.pid == Some(new0))
    })
    .await;
    let after_pids = pids_by_slot(&after);
    assert_eq!(after_pids[&1], reloaded_pids[&1], "restart 0 leaves slot 1 alone");
    assert!(wait_gone(&[old0], TIMEOUT).await.is_empty(), "slot 0's old process drained");

    // scale 3: a third slot, ready and serving; the others keep their processes.
    let out = corral_ok(&["scale", "3"], &socket).await;
    assert!(out.contains("2 -> 3"), "{out}");
    let scaled = until_status(&socket, "three ready slots", |r| all_ready(r, 3)).await;
    let scaled_pids = pids_by_slot(&scaled);
    for slot in [0, 1] {
        assert_eq!(scaled_pids[&slot], after_pids[&slot], "scaling up keeps slot {slot}'s process");
    }
    until_http_pids(run.addr, &scaled_pids.values().copied().collect()).await;

    // Refusals: no such slot (exit 1, the cluster says why), a bad count (usage, exit 2).
    let out = corral(&["restart", "7"], &socket).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.to_lowercase().contains("slot"), "{out:?}");
    let out = corral(&["scale", "many"], &socket).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    let config: Value = serde_json::from_str(&corral_ok(&["config"], &socket).await).expect("config is JSON");
    assert_eq!(config["exec"]["kind"], "foreign", "{config}");

    run.stop().await;
    // Nobody answers there any more.
    let out = corral(&["status"], &socket).await;
    assert_eq!(out.code, Some(1), "no cluster: {out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_cluster_is_driven_by_the_corral_binary() {
    let dir = TempDir::new("library");
    let socket = socket_in(&dir);
    let (cluster, mut events) = spawn(config(2).control(corral::control::ControlSocket::Path(socket.clone()))).await;
    let ready_pids = events.all_ready(2).await;

    // status --json: the two ready workers, with the pids the cluster reported.
    let rows = until_status(&socket, "two ready workers", |r| all_ready(r, 2)).await;
    let pids = pids_by_slot(&rows);
    assert_eq!(pids[&0], ready_pids[0], "{rows:?}");
    assert_eq!(pids[&1], ready_pids[1], "{rows:?}");

    // scale 3, then -1.
    let out = corral_ok(&["scale", "3"], &socket).await;
    assert!(out.contains("2 -> 3"), "{out}");
    let three = until_status(&socket, "three ready workers", |r| all_ready(r, 3)).await;
    let status = cluster.status().await.expect("status");
    assert_eq!(status.len(), 3, "the handle sees the third slot too: {status:?}");
    let out = corral_ok(&["scale", "-1"], &socket).await;
    assert!(out.contains("3 -> 2"), "{out}");
    let two = until_status(&socket, "back to two ready workers", |r| all_ready(r, 2)).await;
    assert_eq!(pids_by_slot(&two), pids, "scaling down removed the slot scaling up added");
    let third = pids_by_slot(&three)[&2];
    assert!(wait_gone(&[third], TIMEOUT).await.is_empty(), "the third worker is gone");

    // stop: the command returns once the cluster is gone, and it is.
    let out = corral(&["stop"], &socket).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    tokio::time::timeout(TIMEOUT, cluster.wait()).await.expect("the cluster stops in time").expect("clean stop");
    assert!(cluster.is_stopped());
    let left = wait_gone(&pids.values().copied().collect::<Vec<_>>(), Duration::from_secs(3)).await;
    assert!(left.is_empty(), "workers left: {left:?}");
    assert!(!socket.exists(), "the control socket is removed at stop");
}

/// Runs the copied `corral` as nobody (uid/gid 65534, no groups): `corral ARGS --control SOCKET`.
async fn as_nobody(binary: &Path, args: &[&str], socket: &Path) -> Ctl {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(binary)
        .args(args)
        .arg("--control")
        .arg(socket)
        .current_dir(binary.parent().expect("bin dir"))
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(TIMEOUT, out).await.expect("nobody's corral finishes in time").expect("setpriv");
    Ctl {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_is_refused_even_when_the_socket_mode_would_let_them_in() {
    assert!(nix::unistd::geteuid().is_root(), "this test runs as root (it switches to nobody)");
    let dir = TempDir::new("permissions");
    let socket = socket_in(&dir);
    let run = Run::start(&socket, 1).await;
    let ctl_dir = socket.parent().expect("socket dir");

    assert!(std::fs::metadata(&socket).expect("stat socket").file_type().is_socket());
    assert_eq!(mode(&socket), 0o600, "the socket is 0600");
    assert_eq!(mode(ctl_dir), 0o700, "its directory is 0700");

    // A copy of the client nobody can run.
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).expect("bin dir");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod bin");
    let binary = bin.join("corral");
    std::fs::copy(CORRAL, &binary).expect("copy corral");
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("chmod corral");
    let sanity = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&binary)
        .arg("--version")
        .output()
        .await
        .expect("setpriv");
    assert!(sanity.status.success(), "nobody can run the copy: {sanity:?}");

    // As the cluster made them, the modes keep nobody out.
    let out = as_nobody(&binary, &["status"], &socket).await;
    assert_ne!(out.code, Some(0), "{out:?}");

    // Loosened, nobody reaches the socket, and the peer-credential check refuses them.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod socket");
    std::fs::set_permissions(ctl_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let attempts: [&[&str]; 4] = [&["status"], &["stop"], &["scale", "0"], &["logs"]];
    for args in attempts {
        let out = as_nobody(&binary, args, &socket).await;
        assert_ne!(out.code, Some(0), "nobody's `corral {}`: {out:?}", args.join(" "));
        // The cluster answers `not permitted` and closes; a client still writing its request
        // then may see the close (EPIPE) before it reads that answer.
        assert!(
            ["not permitted", "Broken pipe", "reset by peer"].iter().any(|m| out.stderr.contains(m)),
            "refused: {out:?}"
        );
    }

    // The cluster serves on, unchanged, and root may still drive it.
    let rows = until_status(&socket, "still one ready worker", |r| all_ready(r, 1)).await;
    let (status, body) = http_get(run.addr, "/").await.expect("HTTP still answers");
    assert_eq!(status, 200);
    assert_eq!(Some(answered_by(&body).1), rows[0].pid);
    let log = run.stop().await;
    // Refused by the peer-credential check (not by the file mode): the cluster says so.
    let refusals = log.matches("control client of another user refused").count();
    assert_eq!(refusals, attempts.len(), "one refusal per attempt of nobody's: {log}");
}

/// Reads one response frame (bounded): `Some(json)`, or `None` when the server closed (EOF
/// or reset) instead.
async fn read_response(stream: &mut UnixStream) -> Option<Value> {
    let read = async {
        let len = stream.read_u32().await.ok()? as usize;
        assert!(len <= 1 << 20, "a sane response length: {len}");
        let mut body = vec![0; len];
        stream.read_exact(&mut body).await.ok()?;
        Some(serde_json::from_slice::<Value>(&body).expect("the response is JSON"))
    };
    tokio::time::timeout(TIMEOUT, read).await.expect("the server answers or closes in time")
}

fn frame(json: &str) -> Vec<u8> {
    let mut out = (json.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out
}

/// Sends `bytes` on a fresh raw connection and reads what comes back.
async fn raw(socket: &Path, bytes: &[u8]) -> Option<Value> {
    let mut stream = UnixStream::connect(socket).await.expect("connect");
    // The server may close before it has read everything: that is a fine answer.
    let _ = stream.write_all(bytes).await;
    read_response(&mut stream).await
}

fn assert_error(response: &Value, kind: &str) {
    assert_eq!(response["v"], 1, "{response}");
    assert_eq!(response["status"], "error", "{response}");
    assert_eq!(response["error"]["kind"], kind, "{response}");
    assert!(response["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{response}");
}

/// The cluster serves HTTP and answers `corral status`.
async fn still_serves(run: &Run, after: &str) {
    let out = corral(&["status", "--json"], &run.socket).await;
    assert_eq!(out.code, Some(0), "status after {after}: {out:?}");
    let (code, _) = http_get(run.addr, "/").await.unwrap_or_else(|e| panic!("HTTP after {after}: {e}"));
    assert_eq!(code, 200, "HTTP after {after}");
}

/// 4 KiB of pseudo-random bytes (xorshift, seeded from the clock).
fn garbage() -> Vec<u8> {
    let mut x =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos() as u64) | 1;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_get_an_error_or_a_close_and_the_cluster_serves_on() {
    let dir = TempDir::new("hostile");
    let socket = socket_in(&dir);
    let run = Run::start(&socket, 2).await;

    // Garbage: whatever its first four bytes announce, an error or a close.
    let bytes = garbage();
    if let Some(response) = raw(&socket, &bytes).await {
        assert_eq!(response["status"], "error", "garbage {:02x?}…: {response}", &bytes[..4]);
    }
    still_serves(&run, "garbage").await;

    // A 100 MiB length prefix: too_large (or a close), never an attempt to read it.
    if let Some(response) = raw(&socket, &(100u32 << 20).to_be_bytes()).await {
        assert_error(&response, "too_large");
        assert_eq!(response["id"], 0, "{response}");
    }
    still_serves(&run, "an oversized length").await;

    // Just over the limit, with the body sent too.
    let big = frame(&format!(r#"{{"v":1,"id":3,"command":"status","pad":"{}"}}"#, "x".repeat(70_000)));
    if let Some(response) = raw(&socket, &big).await {
        assert_error(&response, "too_large");
    }
    still_serves(&run, "a frame over 64 KiB").await;

    // A well-formed frame with an unknown command.
    let response = raw(&socket, &frame(r#"{"v":1,"id":5,"command":"explode"}"#)).await.expect("an answer");
    assert_error(&response, "bad_request");
    assert!(response["id"] == 0 || response["id"] == 5, "{response}");
    still_serves(&run, "an unknown command").await;

    // JSON that is not a request, and a body that is not JSON.
    for body in [r#"[1,2,3]"#, "not json at all"] {
        let response = raw(&socket, &frame(body)).await.expect("an answer");
        assert_error(&response, "bad_request");
    }
    still_serves(&run, "bad bodies").await;

    // Another protocol version.
    let response = raw(&socket, &frame(r#"{"v":99,"id":6,"command":"status"}"#)).await.expect("an answer");
    assert_error(&response, "version");
    still_serves(&run, "a wrong version").await;

    // Half a frame, then gone.
    {
        let mut stream = UnixStream::connect(&socket).await.expect("connect");
        let whole = frame(r#"{"v":1,"id":7,"command":"status"}"#);
        stream.write_all(&whole[..10]).await.expect("write half");
    }
    still_serves(&run, "half a frame").await;

    // A good request on a raw connection is answered, with its id.
    let response = raw(&socket, &frame(r#"{"v":1,"id":8,"command":"status"}"#)).await.expect("an answer");
    assert_eq!(response["status"], "ok", "{response}");
    assert_eq!(response["id"], 8, "{response}");
    assert_eq!(response["data"]["workers"].as_array().map(Vec::len), Some(2), "{response}");

    // Clients that connect and say nothing (one of them half-way through a frame) block no one.
    let mut silent = UnixStream::connect(&socket).await.expect("connect");
    let mut stalled = UnixStream::connect(&socket).await.expect("connect");
    stalled.write_all(&frame(r#"{"v":1,"id":9,"command":"status"}"#)[..6]).await.expect("write");
    for _ in 0..3 {
        let started = Instant::now();
        let out = corral_within(Duration::from_secs(5), &["status"], &socket).await;
        assert_eq!(out.code, Some(0), "status while silent clients are connected: {out:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "status answered promptly: {:?}", started.elapsed());
    }
    let (code, _) = http_get(run.addr, "/").await.expect("HTTP while silent clients are connected");
    assert_eq!(code, 200);
    // The silent client is still connected (not closed under it): nothing to read yet.
    let mut byte = [0u8; 1];
    let pending = tokio::time::timeout(Duration::from_millis(100), silent.read(&mut byte)).await;
    assert!(pending.is_err(), "the silent client was left alone: {pending:?}");
    drop((silent, stalled));
    still_serves(&run, "silent clients").await;

    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_shows_a_printed_line_within_a_second() {
    let dir = TempDir::new("logs");
    let socket = socket_in(&dir);
    let run = Run::start(&socket, 2).await;
    let token = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos()
    );

    // A first line, to see that output is captured and to know when the follower is in.
    let before = format!("before-{token}");
    let (code, _) = http_get(run.addr, &format!("/print/{before}")).await.expect("GET /print");
    assert_eq!(code, 200);
    let deadline = Instant::now() + TIMEOUT;
    while !corral_ok(&["logs", "--lines", "100"], &socket).await.contains(&before) {
        assert!(Instant::now() < deadline, "the printed line never reached `corral logs`");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut follower = Command::new(CORRAL)
        .args(["logs", "-f", "--lines", "100", "--control"])
        .arg(&socket)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("corral logs -f");
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<(Instant, String)>();
    let mut out = BufReader::new(follower.stdout.take().expect("stdout")).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = out.next_line().await {
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    // The tail comes first: once it shows the first line, the follower is subscribed.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let next = tokio::time::timeout_at(deadline, lines.recv()).await.expect("the tail in time");
        let (_, line) = next.expect("the follower printed its tail");
        if line.contains(&before) {
            break;
        }
    }

    // Each attempt prints its own text; the one that shows must show within 1 s of its answer
    // (an attempt whose line shows later fails the test, it is not retried around).
    let mut seen = None;
    'attempts: for attempt in 0..3 {
        let text = format!("hello-{token}-{attempt}");
        let (code, body) = http_get(run.addr, &format!("/print/{text}")).await.expect("GET /print");
        let answered = Instant::now();
        assert_eq!(code, 200);
        let (slot, pid) = answered_by(&body);
        let limit = tokio::time::Instant::from_std(answered + Duration::from_secs(1));
        while let Ok(Some((at, line))) = tokio::time::timeout_at(limit, lines.recv()).await {
            if let Some(late) = (0..attempt).find(|a| line.contains(&format!("hello-{token}-{a}"))) {
                panic!("attempt {late}'s line came more than 1 s after its answer: {line:?}");
            }
            if line.contains(&text) {
                assert_eq!(line, format!("[slot {slot} pid {pid} stdout] {text}"), "tagged with its slot and pid");
                seen = Some((attempt, at.saturating_duration_since(answered)));
                break 'attempts;
            }
        }
    }
    let (attempt, latency) = seen.expect("`corral logs -f` showed the printed line within 1 s of its answer");
    assert!(latency < Duration::from_secs(1), "attempt {attempt}: {latency:?}");

    // --slot filters (no follow): every line is that slot's.
    let slot0 = corral_ok(&["logs", "--slot", "0", "--lines", "1000"], &socket).await;
    assert!(slot0.lines().all(|l| l.starts_with("[slot 0 pid ")), "{slot0}");

    // The follower ends (exit 0) when the cluster stops.
    run.stop().await;
    let status = tokio::time::timeout(TIMEOUT, follower.wait()).await.expect("the follower ends").expect("wait");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_exits_3_while_a_slot_is_not_ready_and_json_still_answers() {
    let dir = TempDir::new("not-ready");
    let socket = socket_in(&dir);
    let socket_arg = socket.to_str().expect("utf-8").to_string();
    // One worker that never says READY=1 (and is not killed for a minute).
    let mut child = Command::new(CORRAL)
        .args(["run", "-w", "1", "-l", "127.0.0.1:0", "--listen-timeout", "60s", "--control", &socket_arg, "--"])
        .args(python())
        .env("NEVER_READY", "1")
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("corral run");
    let deadline = Instant::now() + TIMEOUT;
    let rows = loop {
        let out = corral(&["status", "--json"], &socket).await;
        if out.code == Some(0) {
            break serde_json::from_str::<Value>(&out.stdout).expect("json");
        }
        assert!(Instant::now() < deadline, "the control socket never answered: {out:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(rows["workers"][0]["state"], "ready", "{rows}");
    let table = corral(&["status"], &socket).await;
    assert_eq!(table.code, Some(3), "{table:?}");
    assert!(table.stdout.contains("slot"), "the table is still printed: {table:?}");
    let _ = child.start_kill();
    let _ = child.wait().await;
}
