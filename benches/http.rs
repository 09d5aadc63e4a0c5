//! HTTP load benchmark: corral's `examples/http_cluster.rs` (2 workers, every `--sched` mode)
//! side by side with Node.js `cluster` (2 workers, SCHED_RR and SCHED_NONE) and a single plain
//! axum process (`examples/hello_axum.rs`), all driven by `wrk` in the same run.
//!
//! ```text
//! cargo build --release --examples          # the servers; this bench does not build them
//! cargo bench --bench http                  # the whole matrix, 3 repetitions, medians
//! BENCH_REPS=5 BENCH_DURATION=20 cargo bench --bench http
//! cargo bench --bench http -- node axum     # only servers whose label contains a word
//! ```
//!
//! Environment: `BENCH_DURATION` seconds of load per run (default 10), `BENCH_REPS`
//! repetitions (default 3), `BENCH_WARMUP` seconds of unmeasured load before each run
//! (default 1, 0 = none).
//!
//! For each repetition and each server (servers interleaved, a fresh server process every
//! time) the harness:
//!
//! 1. starts the server on 127.0.0.1 port 0 in its own process group and waits (bounded) for
//!    the `listening on http://127.0.0.1:PORT` line on its stdout;
//! 2. checks that `GET /` answers 200, then warms up with a short `wrk` run;
//! 3. snapshots the CPU time (utime + stime) of the server process and all its descendants
//!    from `/proc`, runs `wrk -t1 -c64 -d<BENCH_DURATION>s --latency`, snapshots again: the
//!    difference over wrk's request count is the server's CPU µs per request;
//! 4. where the response body names the worker (corral, Node), sends 1000 sequential
//!    `GET /` requests, one per connection, and counts them per worker: the max/min ratio
//!    says how evenly connections are spread (1.00 = perfectly even, ∞ = a worker got none);
//! 5. stops the server with SIGTERM and waits (bounded) for it and its workers to exit.
//!
//! The printed table has the median of every column over the repetitions, then ratios to
//! Node's SCHED_RR cluster. wrk runs with one thread, so on a 2-core machine the load
//! generator takes about one core and the server gets the other. Every address targeted is
//! 127.0.0.1.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Workers per clustered server.
const WORKERS: usize = 2;
/// wrk's open connections.
const WRK_CONNECTIONS: u32 = 64;
/// Sequential requests of the per-worker share measurement.
const SHARE_REQUESTS: usize = 1000;
/// How long a server may take to print its `listening on` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to exit after SIGTERM before it is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Extra time wrk gets past its `-d` before it is killed.
const WRK_GRACE: Duration = Duration::from_secs(30);
/// Connect/read/write timeout of the raw HTTP client.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Prefix of the ready line every server prints on stdout.
const READY_PREFIX: &str = "listening on http://";
/// Prefix of the response body of servers that say which worker answered.
const WORKER_PREFIX: &str = "Handled by worker ";
const NODE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/node/http_cluster.js");
/// Label of the server the ratios are computed against.
const BASELINE: &str = "node rr";

/// One server of the matrix and how to start it.
struct Server {
    label: String,
    program: OsString,
    args: Vec<String>,
    /// Node needs `NODE_EXTRA_CA_CERTS` removed (it only slows start-up); Rust servers get a
    /// quiet `RUST_LOG` unless the caller set one.
    node: bool,
    /// `Some(workers)` if the response body names the worker that handled the request.
    workers: Option<usize>,
}

/// What one measured run produced.
struct Sample {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_req: f64,
    /// max/min requests per worker (`INFINITY` if a worker got none), if measurable.
    share: Option<f64>,
}

/// A started server, ready to take requests.
struct Running {
    child: Child,
    port: u16,
    /// The last lines the server wrote on stderr, for error messages.
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

fn main() {
    // cargo passes `--bench`; any other bare word filters servers by label.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let duration = env_secs("BENCH_DURATION", 10).max(1);
    let reps = env_secs("BENCH_REPS", 3).max(1);
    let warmup = env_secs("BENCH_WARMUP", 1);

    let wrk_version = match Command::new("wrk").arg("-v").output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_owned(),
        Err(_) => {
            println!("wrk not found: nothing measured. Install it with `apt-get install -y wrk`");
            println!("(Debian/Ubuntu; elsewhere see https://github.com/wg/wrk), then re-run.");
            return;
        }
    };

    print_machine(&wrk_version);
    println!(
        "HTTP benchmark: GET / on 127.0.0.1, wrk -t1 -c{WRK_CONNECTIONS} -d{duration}s, \
         {warmup}s warm-up, {reps} repetitions, medians; share = max/min of {SHARE_REQUESTS} \
         sequential requests per worker"
    );
    println!();

    let servers: Vec<Server> = matrix()
        .into_iter()
        .filter(|s| filters.is_empty() || filters.iter().any(|f| s.label.contains(f.as_str())))
        .collect();
    if servers.is_empty() {
        println!("no server to measure");
        return;
    }

    let mut samples: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    let mut notes: Vec<String> = Vec::new();
    for rep in 1..=reps {
        for server in &servers {
            match run_once(server, duration, warmup, &mut notes) {
                Ok(s) => {
                    eprintln!(
                        "[rep {rep}/{reps}] {:<16} {:>10} req/s  p50 {:>9}  p99 {:>9}  {:>6.1} µs CPU/req  share {}",
                        server.label,
                        thousands(s.rps),
                        fmt_latency(s.p50_us),
                        fmt_latency(s.p99_us),
                        s.cpu_us_per_req,
                        fmt_share(s.share),
                    );
                    samples.entry(server.label.clone()).or_default().push(s);
                }
                Err(e) => {
                    let msg = format!("{} (rep {rep}): {e}", server.label);
                    eprintln!("[rep {rep}/{reps}] FAILED {msg}");
                    notes.push(msg);
                }
            }
        }
    }

    print_table(&servers, &samples);
    if !notes.is_empty() {
        println!();
        println!("Notes:");
        for n in &notes {
            println!("  - {n}");
        }
    }
}

/// The servers to measure, in display order. Servers whose binary or runtime is missing are
/// announced and left out.
fn matrix() -> Vec<Server> {
    let mut servers = Vec::new();
    let examples = examples_dir();

    let http_cluster = examples.join("http_cluster");
    if http_cluster.is_file() {
        for sched in ["rr", "lc", "shared", "reuseport"] {
            servers.push(Server {
                label: format!("corral {sched}"),
                program: http_cluster.clone().into(),
                args: strings(&[
                    "--workers",
                    &WORKERS.to_string(),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--sched",
                    sched,
                ]),
                node: false,
                workers: Some(WORKERS),
            });
        }
    } else {
        missing_example(&http_cluster, "corral entries");
    }

    if !std::path::Path::new(NODE_SCRIPT).is_file() {
        println!("{NODE_SCRIPT} not found: skipping the Node.js cluster entries");
    } else if Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success()) {
        for sched in ["rr", "none"] {
            servers.push(Server {
                label: format!("node {sched}"),
                program: "node".into(),
                args: strings(&[NODE_SCRIPT, "--workers", &WORKERS.to_string(), "--port", "0", "--sched", sched]),
                node: true,
                workers: Some(WORKERS),
            });
        }
    } else {
        println!("node not found: skipping the Node.js cluster entries");
    }

    let hello = examples.join("hello_axum");
    if hello.is_file() {
        servers.push(Server {
            label: "axum 1 process".into(),
            program: hello.into(),
            args: strings(&["--host", "127.0.0.1", "--port", "0"]),
            node: false,
            workers: None,
        });
    } else {
        missing_example(&hello, "the single-process axum entry");
    }
    servers
}

/// Where `cargo build --release --examples` puts the examples: `<target>/release/examples`,
/// next to the `deps` directory this bench binary runs from.
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the bench binary");
    let deps = exe.parent().expect("bench binary has a parent directory");
    let profile_dir = deps.parent().unwrap_or(deps);
    profile_dir.join("examples")
}

fn missing_example(path: &std::path::Path, what: &str) {
    println!(
        "{} not found: skipping {what}. Build the examples first with \
         `cargo build --release --examples` (same CARGO_TARGET_DIR as this bench).",
        path.display()
    );
}

/// One measured run of one server: start, check, warm up, measure, count shares, stop.
fn run_once(server: &Server, duration: u64, warmup: u64, notes: &mut Vec<String>) -> Result<Sample, String> {
    let mut running = start(server)?;
    let result = measure(server, &running, duration, warmup);
    let stop_note = stop(&mut running);
    if let Some(n) = stop_note {
        notes.push(format!("{}: {n}", server.label));
    }
    result.map_err(|e| with_stderr(e, &running))
}

fn measure(server: &Server, running: &Running, duration: u64, warmup: u64) -> Result<Sample, String> {
    let port = running.port;
    let (status, body) = http_get(port).map_err(|e| format!("first GET / failed: {e}"))?;
    if status != 200 {
        return Err(format!("first GET / answered {status}: {body:?}"));
    }

    if warmup > 0 {
        run_wrk(port, warmup)?;
    }

    let pid = running.child.id() as i32;
    let before = tree_ticks(pid)?;
    let wrk = run_wrk(port, duration)?;
    let after = tree_ticks(pid)?;
    if let Some(e) = &wrk.errors {
        return Err(format!("wrk reported errors: {e}"));
    }
    if wrk.requests == 0 {
        return Err("wrk completed no request".into());
    }

    // CPU ticks spent during the run: per process, so a process that appeared mid-run
    // counts in full and one that vanished does not subtract.
    let ticks: u64 = after.iter().map(|(p, t)| t.saturating_sub(before.get(p).copied().unwrap_or(0))).sum();
    let cpu_secs = ticks as f64 / clock_ticks_per_sec();

    let share = match server.workers {
        Some(n) => Some(measure_share(port, n)?),
        None => None,
    };

    Ok(Sample {
        rps: wrk.rps,
        p50_us: wrk.p50_us,
        p99_us: wrk.p99_us,
        cpu_us_per_req: cpu_secs * 1e6 / wrk.requests as f64,
        share,
    })
}

// ---------------------------------------------------------------------------------------------
// Server life cycle
// ---------------------------------------------------------------------------------------------

/// Starts `server` in its own process group and waits for its `listening on` line.
fn start(server: &Server) -> Result<Running, String> {
    let mut cmd = Command::new(&server.program);
    cmd.args(&server.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group: a stuck server and its workers can be told apart from us.
        .process_group(0);
    if server.node {
        cmd.env_remove("NODE_EXTRA_CA_CERTS");
    } else if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {:?}: {e}", server.program))?;

    // stderr: keep the last lines for error messages.
    let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
    let stderr = child.stderr.take().expect("piped stderr");
    let tail = Arc::clone(&stderr_tail);
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut tail = tail.lock().unwrap();
            if tail.len() == 20 {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    });

    // stdout: forward lines until the ready one, then keep draining so the pipe never fills.
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel::<String>();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    let mut running = Running { child, port: 0, stderr_tail };
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let port = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(addr) = line.trim().strip_prefix(READY_PREFIX) {
                    break parse_ready_addr(addr);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                break Err(format!("no `{READY_PREFIX}…` line within {STARTUP_TIMEOUT:?}"));
            }
            Err(RecvTimeoutError::Disconnected) => break Err("server closed stdout before it was ready".into()),
        }
    };
    match port {
        Ok(port) => {
            running.port = port;
            Ok(running)
        }
        Err(e) => {
            let e = with_stderr(e, &running);
            match stop(&mut running) {
                Some(note) => Err(format!("{e}\n    on stop: {note}")),
                None => Err(e),
            }
        }
    }
}

/// `HOST:PORT[/]` from the ready line → the port, refusing anything but 127.0.0.1.
fn parse_ready_addr(addr: &str) -> Result<u16, String> {
    let addr = addr.trim_end_matches('/');
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| format!("bad ready address {addr:?}"))?;
    if host != "127.0.0.1" {
        return Err(format!("server listens on {host}, not 127.0.0.1: refusing to load it"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!("bad port in ready address {addr:?}")),
    }
}

/// SIGTERM to the server, bounded wait, then make sure none of its processes is left behind.
/// Returns a note if anything was not clean.
fn stop(running: &mut Running) -> Option<String> {
    let pid = running.child.id() as i32;
    // Everything the server started, to check afterwards that the workers went away too.
    let tree: Vec<i32> = tree_ticks(pid).map(|t| t.into_keys().filter(|&p| p != pid).collect()).unwrap_or_default();

    let mut notes = Vec::new();
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    match wait_bounded(&mut running.child, STOP_TIMEOUT) {
        Ok(Some(status)) if status.success() => {}
        Ok(Some(status)) => notes.push(format!("exited with {status} after SIGTERM")),
        Ok(None) => {
            notes.push(format!("still running {STOP_TIMEOUT:?} after SIGTERM: SIGKILLed"));
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
        Err(e) => notes.push(format!("waiting for it failed: {e}")),
    }

    // Its workers: give them a moment, then SIGKILL the ones still alive (by pid, and only
    // if still in the process group we created, so a reused pid is never hit).
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let alive: Vec<i32> = tree.iter().copied().filter(|&p| alive_in_group(p, pid)).collect();
        if alive.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            for &p in &alive {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            notes.push(format!("{} descendant(s) outlived it: SIGKILLed {alive:?}", alive.len()));
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    if notes.is_empty() { None } else { Some(notes.join("; ")) }
}

/// Is `pid` a live (not zombie) process of process group `pgid`?
fn alive_in_group(pid: i32, pgid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let fields = stat_fields(&stat);
    // fields[0] = state (field 3), fields[2] = pgrp (field 5).
    fields.first().is_some_and(|s| *s != "Z" && *s != "X")
        && fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
}

fn with_stderr(e: String, running: &Running) -> String {
    let tail = running.stderr_tail.lock().unwrap();
    if tail.is_empty() {
        e
    } else {
        let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
        format!("{e}\n    server stderr (last lines):\n      {}", lines.join("\n      "))
    }
}

/// `child.wait()` with a time limit: `Ok(None)` if it is still running at the deadline.
fn wait_bounded(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// wrk
// ---------------------------------------------------------------------------------------------

/// What we take from wrk's report.
struct WrkResult {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    requests: u64,
    /// Socket errors or non-2xx/3xx responses, if wrk reported any.
    errors: Option<String>,
}

fn run_wrk(port: u16, secs: u64) -> Result<WrkResult, String> {
    let url = format!("http://127.0.0.1:{port}/");
    let mut child = Command::new("wrk")
        .args(["-t1", &format!("-c{WRK_CONNECTIONS}"), &format!("-d{secs}s"), "--latency", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start wrk: {e}"))?;
    let out = read_in_background(child.stdout.take().expect("piped stdout"));
    let err = read_in_background(child.stderr.take().expect("piped stderr"));

    let status = match wait_bounded(&mut child, Duration::from_secs(secs) + WRK_GRACE) {
        Ok(Some(status)) => status,
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("wrk did not finish within {secs}s + {WRK_GRACE:?}: killed"));
        }
        Err(e) => return Err(format!("waiting for wrk: {e}")),
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("wrk exited with {status}: {}{}", out.trim(), err.trim()));
    }
    parse_wrk(&out).ok_or_else(|| format!("cannot parse wrk's output:\n{out}"))
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    })
}

/// Parses the lines of `wrk --latency` we need:
///
/// ```text
///      50%  612.00us
///      99%    2.31ms
///   541234 requests in 10.00s, 66.07MB read
///   Socket errors: connect 0, read 0, write 0, timeout 12
///   Non-2xx or 3xx responses: 3
/// Requests/sec:  54121.88
/// ```
fn parse_wrk(out: &str) -> Option<WrkResult> {
    let (mut rps, mut p50, mut p99, mut requests) = (None, None, None, None);
    let mut errors = Vec::new();
    for line in out.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first == "50%" {
            p50 = words.next().and_then(parse_wrk_time);
        } else if first == "99%" {
            p99 = words.next().and_then(parse_wrk_time);
        } else if first == "Requests/sec:" {
            rps = words.next().and_then(|w| w.parse::<f64>().ok());
        } else if line.contains(" requests in ") {
            requests = first.parse::<u64>().ok();
        } else if line.starts_with("Socket errors:") || line.starts_with("Non-2xx or 3xx responses:") {
            errors.push(line.to_owned());
        }
    }
    Some(WrkResult {
        rps: rps?,
        p50_us: p50?,
        p99_us: p99?,
        requests: requests?,
        errors: if errors.is_empty() { None } else { Some(errors.join("; ")) },
    })
}

/// wrk's time format (`612.00us`, `2.31ms`, `1.02s`, `1.50m`, `1.00h`) → µs.
fn parse_wrk_time(s: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

// ---------------------------------------------------------------------------------------------
// CPU accounting from /proc
// ---------------------------------------------------------------------------------------------

/// utime + stime (clock ticks) of `root` and every descendant, by pid. Descendants come from
/// `/proc/<pid>/task/<tid>/children` of every thread, recursively.
fn tree_ticks(root: i32) -> Result<HashMap<i32, u64>, String> {
    let mut ticks = HashMap::new();
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        match process_ticks(pid) {
            Some(t) => {
                ticks.insert(pid, t);
            }
            // The root must be there; a descendant may have exited in between.
            None if pid == root => return Err(format!("cannot read /proc/{root}/stat")),
            None => continue,
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            stack.extend(children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
        }
    }
    Ok(ticks)
}

/// utime + stime of one process (all its threads), in clock ticks.
fn process_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = stat_fields(&stat);
    // utime and stime are fields 14 and 15; fields[0] is field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The fields of `/proc/<pid>/stat` after `comm` (which may contain spaces and parentheses):
/// index 0 is field 3, `state`.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default()
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

// ---------------------------------------------------------------------------------------------
// Per-worker share with a tiny HTTP/1.1 client
// ---------------------------------------------------------------------------------------------

/// Sends `SHARE_REQUESTS` sequential `GET /`, one per connection, and returns max/min of the
/// requests per worker (`INFINITY` if fewer than `workers` workers answered).
fn measure_share(port: u16, workers: usize) -> Result<f64, String> {
    let mut per_worker: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures = 0usize;
    let mut last_error = String::new();
    for _ in 0..SHARE_REQUESTS {
        match http_get(port) {
            Ok((200, body)) => match worker_of(&body) {
                Some(w) => *per_worker.entry(w.to_owned()).or_default() += 1,
                None => {
                    failures += 1;
                    last_error = format!("body names no worker: {body:?}");
                }
            },
            Ok((status, _)) => {
                failures += 1;
                last_error = format!("status {status}");
            }
            Err(e) => {
                failures += 1;
                last_error = e;
            }
        }
    }
    if failures > 0 {
        return Err(format!("{failures} of {SHARE_REQUESTS} share requests failed (last: {last_error})"));
    }
    let max = per_worker.values().copied().max().unwrap_or(0);
    let min = per_worker.values().copied().min().unwrap_or(0);
    if per_worker.len() < workers || min == 0 { Ok(f64::INFINITY) } else { Ok(max as f64 / min as f64) }
}

/// `Handled by worker <id> (pid <pid>)` → `<id>`.
fn worker_of(body: &str) -> Option<&str> {
    let start = body.find(WORKER_PREFIX)? + WORKER_PREFIX.len();
    body[start..].split_whitespace().next()
}

/// One `GET /` to 127.0.0.1:`port` on a fresh connection (`Connection: close`, so the body
/// runs to EOF) → (status, body).
fn http_get(port: u16) -> Result<(u16, String), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT)).map_err(|e| e.to_string())?;
    let request = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(|e| format!("read: {e}"))?;
    let response = String::from_utf8_lossy(&response);

    let (head, body) = response.split_once("\r\n\r\n").ok_or("incomplete response")?;
    let status_line = head.lines().next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    Ok((status, body.to_owned()))
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

fn print_machine(wrk_version: &str) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let nproc = thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let node = Command::new("node")
        .arg("--version")
        .env_remove("NODE_EXTRA_CA_CERTS")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "not found".into());
    println!("Machine: nproc {nproc}, {model}, Linux {}", kernel.trim());
    println!("Tools: {wrk_version}; node {node}");
}

fn print_table(servers: &[Server], samples: &BTreeMap<String, Vec<Sample>>) {
    struct Row<'a> {
        label: &'a str,
        rps: f64,
        p50: f64,
        p99: f64,
        cpu: f64,
        share: Option<f64>,
        runs: usize,
    }
    let rows: Vec<Row> = servers
        .iter()
        .filter_map(|s| {
            let v = samples.get(&s.label)?;
            let shares: Vec<f64> = v.iter().filter_map(|x| x.share).collect();
            Some(Row {
                label: &s.label,
                rps: median(v.iter().map(|x| x.rps).collect()),
                p50: median(v.iter().map(|x| x.p50_us).collect()),
                p99: median(v.iter().map(|x| x.p99_us).collect()),
                cpu: median(v.iter().map(|x| x.cpu_us_per_req).collect()),
                share: (!shares.is_empty()).then(|| median(shares)),
                runs: v.len(),
            })
        })
        .collect();

    println!();
    if rows.is_empty() {
        println!("no successful run");
        return;
    }
    println!(
        "{:<16} {:>11} {:>10} {:>10} {:>12} {:>13} {:>5}",
        "server", "req/s", "p50", "p99", "CPU µs/req", "share max/min", "runs"
    );
    for r in &rows {
        println!(
            "{:<16} {:>11} {:>10} {:>10} {:>12.1} {:>13} {:>5}",
            r.label,
            thousands(r.rps),
            fmt_latency(r.p50),
            fmt_latency(r.p99),
            r.cpu,
            fmt_share(r.share),
            r.runs
        );
    }

    let Some(base) = rows.iter().find(|r| r.label == BASELINE) else {
        println!();
        println!("({BASELINE} not measured: no ratios)");
        return;
    };
    println!();
    println!("Ratios vs {BASELINE} (req/s: higher is better; latency and CPU: lower is better)");
    println!("{:<16} {:>8} {:>8} {:>8} {:>10}", "server", "req/s", "p50", "p99", "CPU/req");
    for r in rows.iter().filter(|r| r.label != BASELINE) {
        println!(
            "{:<16} {:>7.2}× {:>7.2}× {:>7.2}× {:>9.2}×",
            r.label,
            r.rps / base.rps,
            r.p50 / base.p50,
            r.p99 / base.p99,
            r.cpu / base.cpu
        );
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn fmt_latency(us: f64) -> String {
    if us < 1000.0 { format!("{us:.0} µs") } else { format!("{:.2} ms", us / 1000.0) }
}

fn fmt_share(share: Option<f64>) -> String {
    match share {
        None => "n/a".into(),
        Some(s) if s.is_infinite() => "∞".into(),
        Some(s) => format!("{s:.2}"),
    }
}

/// 54121.88 → "54,122".
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// A whole number of seconds (or a count) from the environment; a trailing `s` is accepted.
fn env_secs(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().trim_end_matches('s').parse().unwrap_or_else(|_| {
            eprintln!("{name}={v:?} is not a whole number: using {default}");
            default
        }),
        Err(_) => default,
    }
}
