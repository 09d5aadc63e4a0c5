//! Worker life-cycle benchmark (issue 4): corral's `examples/http_cluster.rs` side by side with
//! a Node.js `cluster` (`benches/node/lifecycle_bench.js`, restarts a worker on `'exit'`).
//!
//! ```text
//! cargo build --release --examples              # the servers; this bench does not build them
//! cargo bench --bench lifecycle                 # every section, 3 repetitions, medians
//! BENCH_REPS=1 cargo bench --bench lifecycle
//! cargo bench --bench lifecycle -- kill cold    # only some sections: load, kill, cold, rss
//! ```
//!
//! Every repetition measures, each time with fresh server processes:
//!
//! 1. **load** — corral only (2 workers, `--sched rr`) under `wrk -t1 -c64 -d6s --latency`:
//!    a. SIGHUP (zero-downtime rolling reload) 2 s into the run: failed requests, p99, whether
//!    every worker pid was replaced (children of the primary in `/proc`, before and after) and
//!    how long the reload took (SIGHUP to the primary's `rolling reload done` log line);
//!    b. SIGTERM (graceful drain) 3 s into the run: failed requests and the exit code.
//!
//!    wrk's error counters are reported as they are, but wrk 4.1 connects without blocking, so
//!    a connection *refused* (once the primary has stopped listening) shows up as a write (or
//!    read) error, not a connect error: after SIGTERM its read/write counts mix refusals with
//!    lost requests. So a probe of our own runs beside wrk, 4 keep-alive connections (a request
//!    every millisecond or so) that reconnect after `Connection: close` as wrk does, and sorts
//!    every request into: answered 2xx, non-2xx, *refused* (the connect failed: no one had
//!    accepted it) and *lost* (the connection was established, the request sent, and no
//!    complete answer came). Lost requests are what the zero-failure target is about.
//! 2. **kill** — SIGKILL of a worker that has been up for more than 1.1 s to its replacement
//!    serving, 20 kills per server. Both servers run one worker (`--workers 1`), so any
//!    answer after the kill comes from the replacement. From the kill on, a `GET /` on a
//!    fresh connection starts every millisecond, each in its own thread (a request may hang:
//!    Node's primary can swallow a connection that arrives just after its worker died); the
//!    time is when the first 200 naming a new pid arrives. corral gives up on a slot after 5
//!    restarts within 10 s (its default restart intensity), so each cluster takes 5 kills and
//!    a fresh one the next 5; Node's clusters are cycled the same way.
//! 3. **cold** — spawn of the primary (2 workers, port 0) to its `listening on` line, printed
//!    once every worker is ready; 10 starts per server, interleaved.
//! 4. **rss** — VmRSS (`/proc/<pid>/status`) of the primary and of a worker (mean of the 2),
//!    1 s after the cluster is ready, idle; RssAnon (private memory, without the file pages of
//!    the executable and libraries that processes share) is shown beside it.
//!
//! The report has the median over repetitions of every figure (for counts of failed requests
//! also the largest), the issue's targets and the ratios. Every address targeted is 127.0.0.1
//! and every wait is bounded. `BENCH_REPS` sets the repetitions (default 3; about a minute
//! each on a 2-core machine).

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Workers of the clusters under load, cold-started and measured idle.
const WORKERS: usize = 2;
/// wrk's open connections and run length under load.
const WRK_CONNECTIONS: u32 = 64;
const WRK_SECS: u64 = 6;
/// Keep-alive connections of the probe that runs beside wrk, and the pause after each of
/// their requests (so that the probe takes little CPU from wrk and the server).
const PROBE_CONNECTIONS: usize = 4;
const PROBE_PAUSE: Duration = Duration::from_millis(1);
/// When the signal is sent, counted from wrk's start.
const RELOAD_AT: Duration = Duration::from_secs(2);
const TERM_AT: Duration = Duration::from_secs(3);
/// SIGKILLs per server and repetition, and how many one cluster takes (corral's default
/// restart intensity allows 5 restarts of a slot within 10 s).
const KILLS: usize = 20;
const KILLS_PER_CLUSTER: usize = 5;
/// A worker is killed only once it has been serving this long (corral's `min_uptime` is 1 s:
/// a worker that lived longer is restarted without backoff).
const UPTIME_BEFORE_KILL: Duration = Duration::from_millis(1100);
/// How long a replacement may take to answer before the kill counts as failed.
const REPLACE_TIMEOUT: Duration = Duration::from_secs(10);
/// A new `GET /` for the replacement starts this often.
const POLL_EVERY: Duration = Duration::from_millis(1);
/// Cold starts per server and repetition.
const COLD_STARTS: usize = 10;
/// Idle time before memory is read.
const IDLE: Duration = Duration::from_secs(1);

/// How long a server may take to print its `listening on` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to exit after SIGTERM before it is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// A stop under load slower than this is reported with the primary's log.
const SLOW_STOP: Duration = Duration::from_millis(200);
/// How long workers may outlive their primary before they are SIGKILLed.
const ORPHAN_TIMEOUT: Duration = Duration::from_secs(2);
/// Extra time wrk gets past its `-d` before it is killed.
const WRK_GRACE: Duration = Duration::from_secs(20);
/// Connect/read/write timeout of the raw HTTP client.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);
/// stderr lines kept per server.
const LOG_LINES: usize = 10_000;

/// Prefix of the ready line both servers print on stdout.
const READY_PREFIX: &str = "listening on http://";
const NODE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/node/lifecycle_bench.js");
/// The sections, in run order; bare command-line words select some of them.
const SECTIONS: [&str; 4] = ["load", "kill", "cold", "rss"];

/// Which cluster runtime.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Corral,
    Node,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Corral => "corral",
            Kind::Node => "node",
        }
    }
}

/// A started cluster whose `listening on` line has been read. Dropping it SIGKILLs whatever
/// is left of it, so an early return never leaks processes.
struct Server {
    child: Child,
    port: u16,
    /// From spawn to the `listening on` line.
    ready_after: Duration,
    /// The lines written on stderr (colours removed), each with when it was read.
    log: Arc<Mutex<Vec<(Instant, String)>>>,
}

/// How a server went away after SIGTERM.
struct Stopped {
    /// `None` if it was still running `STOP_TIMEOUT` after the signal (then SIGKILLed).
    status: Option<ExitStatus>,
    /// When SIGTERM was sent, and from then to its exit.
    signalled: Instant,
    took: Duration,
    /// Descendants still alive `ORPHAN_TIMEOUT` after it exited (they were SIGKILLed).
    leftovers: Vec<i32>,
}

/// wrk's report.
struct WrkReport {
    requests: u64,
    p99_us: f64,
    connect: u64,
    read: u64,
    write: u64,
    timeout: u64,
    non2xx: u64,
    output: String,
}

impl WrkReport {
    /// Every socket error but connect's, plus non-2xx answers: failed requests as long as the
    /// server keeps listening (after that, refused connects count as write or read errors).
    fn failed(&self) -> u64 {
        self.read + self.write + self.timeout + self.non2xx
    }
}

/// What the probe's requests came to.
#[derive(Default, Clone, Copy)]
struct ProbeCounts {
    ok: u64,
    non2xx: u64,
    /// The connect failed (refused): no one had accepted the connection.
    refused: u64,
    /// Sent on an established connection, and no complete answer came.
    lost: u64,
}

impl ProbeCounts {
    fn add(&mut self, o: ProbeCounts) {
        self.ok += o.ok;
        self.non2xx += o.non2xx;
        self.refused += o.refused;
        self.lost += o.lost;
    }
}

/// Section 1a: one SIGHUP under load.
struct ReloadSample {
    wrk: WrkReport,
    probe: ProbeCounts,
    /// Every worker pid changed and as many workers run as before.
    replaced: bool,
    /// Worker pids before and after, for the notes.
    pids: (Vec<i32>, Vec<i32>),
    /// SIGHUP to the `rolling reload done` log line.
    reload: Option<Duration>,
}

/// Section 1b: one SIGTERM under load.
struct TermSample {
    wrk: WrkReport,
    probe: ProbeCounts,
    stopped: Stopped,
    /// The primary's log from SIGTERM on, if the stop was slow or not clean.
    log: Option<String>,
}

/// Section 4: one idle cluster.
struct RssSample {
    primary_kib: u64,
    worker_kib: u64,
    primary_anon_kib: u64,
    worker_anon_kib: u64,
}

/// Everything measured over the repetitions (one entry per successful repetition; the arrays
/// are indexed by `Kind`).
#[derive(Default)]
struct Results {
    reload: Vec<ReloadSample>,
    term: Vec<TermSample>,
    /// Per repetition: (p50, p99) of the kill-to-serving times, per kind.
    kill: [Vec<(Duration, Duration)>; 2],
    /// Per kind: poll requests that got no answer within `HTTP_TIMEOUT`, and all of them.
    hung_polls: [(usize, usize); 2],
    /// Per repetition: p50 of the cold starts, per kind.
    cold: [Vec<Duration>; 2],
    rss: [Vec<RssSample>; 2],
    notes: Vec<String>,
}

fn main() {
    // cargo passes `--bench`; any other bare word selects sections.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    for f in filters.iter().filter(|f| !SECTIONS.contains(&f.as_str())) {
        println!("unknown section {f:?} ignored (sections: {})", SECTIONS.join(", "));
    }
    let run = |section: &str| filters.is_empty() || filters.iter().any(|f| f == section);
    let reps = env_count("BENCH_REPS", 3).max(1);

    let http_cluster = examples_dir().join("http_cluster");
    if !http_cluster.is_file() {
        println!(
            "{} not found: build the examples first with `cargo build --release --examples` (same \
             CARGO_TARGET_DIR as this bench).",
            http_cluster.display()
        );
        return;
    }
    let wrk = tool_version("wrk", &["-v"]);
    let node = tool_version("node", &["--version"]);
    print_machine(wrk.as_deref(), node.as_deref());
    if run("load") && wrk.is_none() {
        println!("wrk not found: section 1 (load) skipped. Install it with `apt-get install -y wrk`.");
    }
    if node.is_none() {
        println!("node not found: sections 2-4 measure corral only.");
    }
    let kinds: Vec<Kind> = if node.is_some() { vec![Kind::Corral, Kind::Node] } else { vec![Kind::Corral] };
    println!("{reps} repetition(s), medians; each repetition starts fresh server processes");
    println!();

    let started = Instant::now();
    let mut r = Results::default();
    for rep in 1..=reps {
        let tag = format!("[rep {rep}/{reps}]");
        if run("load") && wrk.is_some() {
            run_load(&mut r, &tag, &http_cluster);
        }
        if run("kill") {
            run_kill(&mut r, &tag, &http_cluster, &kinds);
        }
        if run("cold") {
            run_cold(&mut r, &tag, &http_cluster, &kinds);
        }
        if run("rss") {
            run_rss(&mut r, &tag, &http_cluster, &kinds);
        }
    }

    print_report(&r, reps);
    println!();
    println!("Total time: {:.0} s; load average now {}", started.elapsed().as_secs_f64(), load_average());
}

// ---------------------------------------------------------------------------------------------
// One repetition of each section: measure, print progress on stderr, keep the figures
// ---------------------------------------------------------------------------------------------

/// Section 1: SIGHUP, then SIGTERM, under load.
fn run_load(r: &mut Results, tag: &str, http_cluster: &Path) {
    match reload_under_load(http_cluster) {
        Ok(s) => {
            let reload = s.reload.map_or("?".into(), fmt_dur);
            eprintln!(
                "{tag} SIGHUP  under load: {}; pids replaced: {}, reload {reload}",
                fmt_load(&s.wrk, &s.probe),
                s.replaced
            );
            if s.wrk.failed() + s.probe.lost + s.probe.non2xx > 0 || !s.replaced {
                r.notes.push(format!(
                    "{tag} SIGHUP: {}; worker pids {:?} -> {:?}; wrk said:\n{}",
                    fmt_load(&s.wrk, &s.probe),
                    s.pids.0,
                    s.pids.1,
                    indent(&s.wrk.output)
                ));
            }
            r.reload.push(s);
        }
        Err(e) => r.notes.push(format!("{tag} SIGHUP failed: {e}")),
    }
    match term_under_load(http_cluster) {
        Ok(s) => {
            eprintln!(
                "{tag} SIGTERM under load: {}; exit {} after {}",
                fmt_load(&s.wrk, &s.probe),
                fmt_status(s.stopped.status),
                fmt_dur(s.stopped.took)
            );
            let failed = s.wrk.timeout + s.wrk.non2xx + s.probe.lost + s.probe.non2xx > 0;
            if let Some(log) = &s.log {
                r.notes.push(format!(
                    "{tag} SIGTERM: the primary exited {} after the signal; its log from the signal on:\n{}",
                    fmt_dur(s.stopped.took),
                    indent(log)
                ));
            }
            // wrk's output once (its write errors are refused connects), and on failure.
            if r.term.is_empty() || failed || !clean_exit(&s.stopped) {
                r.notes.push(format!(
                    "{tag} SIGTERM: {}; exit {}, leftover workers {:?}; wrk said:\n{}",
                    fmt_load(&s.wrk, &s.probe),
                    fmt_status(s.stopped.status),
                    s.stopped.leftovers,
                    indent(&s.wrk.output)
                ));
            }
            r.term.push(s);
        }
        Err(e) => r.notes.push(format!("{tag} SIGTERM failed: {e}")),
    }
}

/// Section 2: kill to serving, per kind.
fn run_kill(r: &mut Results, tag: &str, http_cluster: &Path, kinds: &[Kind]) {
    for &kind in kinds {
        match kill_to_serving(kind, http_cluster, &mut r.notes) {
            Ok((times, (hung, all))) => {
                let stats = (percentile(&times, 50.0), percentile(&times, 99.0));
                eprintln!(
                    "{tag} kill -> serving {:<6}: p50 {}  p99 {}  ({} kills, {hung} of {all} polls hung)",
                    kind.label(),
                    fmt_dur(stats.0),
                    fmt_dur(stats.1),
                    times.len()
                );
                r.kill[kind as usize].push(stats);
                let h = &mut r.hung_polls[kind as usize];
                *h = (h.0 + hung, h.1 + all);
            }
            Err(e) => r.notes.push(format!("{tag} kill {} failed: {e}", kind.label())),
        }
    }
}

/// Section 3: cold starts, kinds interleaved.
fn run_cold(r: &mut Results, tag: &str, http_cluster: &Path, kinds: &[Kind]) {
    let mut times: [Vec<Duration>; 2] = Default::default();
    for _ in 0..COLD_STARTS {
        for &kind in kinds {
            match cold_start(kind, http_cluster, &mut r.notes) {
                Ok(t) => times[kind as usize].push(t),
                Err(e) => r.notes.push(format!("{tag} cold start {} failed: {e}", kind.label())),
            }
        }
    }
    for &kind in kinds {
        let t = &times[kind as usize];
        if !t.is_empty() {
            let p50 = percentile(t, 50.0);
            eprintln!("{tag} cold start {:<6}: p50 {} ({} starts)", kind.label(), fmt_dur(p50), t.len());
            r.cold[kind as usize].push(p50);
        }
    }
}

/// Section 4: idle memory, per kind.
fn run_rss(r: &mut Results, tag: &str, http_cluster: &Path, kinds: &[Kind]) {
    for &kind in kinds {
        match idle_rss(kind, http_cluster, &mut r.notes) {
            Ok(s) => {
                eprintln!(
                    "{tag} idle RSS {:<6}: primary {}  worker {} (anon {} / {})",
                    kind.label(),
                    fmt_kib(s.primary_kib),
                    fmt_kib(s.worker_kib),
                    fmt_kib(s.primary_anon_kib),
                    fmt_kib(s.worker_anon_kib)
                );
                r.rss[kind as usize].push(s);
            }
            Err(e) => r.notes.push(format!("{tag} idle RSS {} failed: {e}", kind.label())),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The measurements
// ---------------------------------------------------------------------------------------------

/// Section 1a: SIGHUP 2 s into a wrk run against corral (2 workers, rr).
fn reload_under_load(http_cluster: &Path) -> Result<ReloadSample, String> {
    let mut server = start(Kind::Corral, http_cluster, WORKERS, 0, "info")?;
    let primary = server.pid();
    check_serving(&server)?;
    let before = children(primary);

    let wrk = spawn_wrk(server.port)?;
    let probe = spawn_probe(server.port, wrk.started + Duration::from_secs(WRK_SECS));
    sleep_until(wrk.started + RELOAD_AT);
    let signalled = Instant::now();
    kill(Pid::from_raw(primary), Signal::SIGHUP).map_err(|e| format!("SIGHUP: {e}"))?;
    let report = wrk.finish()?;
    let probe = join_probe(probe);

    // The replaced workers have drained long ago; allow a moment anyway.
    let deadline = Instant::now() + ORPHAN_TIMEOUT;
    let (after, replaced) = loop {
        let after = children(primary);
        let replaced = !before.is_empty() && after.len() == before.len() && after.is_disjoint(&before);
        if replaced || Instant::now() >= deadline {
            break (after, replaced);
        }
        thread::sleep(Duration::from_millis(20));
    };
    let reload = server.log_line_after(signalled, "rolling reload done").map(|at| at - signalled);

    let stopped = terminate(&mut server);
    if !clean_exit(&stopped) {
        return Err(format!("stopping it after the run: exit {}", fmt_status(stopped.status)));
    }
    Ok(ReloadSample { wrk: report, probe, replaced, pids: (sorted(&before), sorted(&after)), reload })
}

/// Section 1b: SIGTERM 3 s into a wrk run against corral (2 workers, rr).
fn term_under_load(http_cluster: &Path) -> Result<TermSample, String> {
    let mut server = start(Kind::Corral, http_cluster, WORKERS, 0, "info")?;
    check_serving(&server)?;
    let wrk = spawn_wrk(server.port)?;
    let probe = spawn_probe(server.port, wrk.started + Duration::from_secs(WRK_SECS));
    sleep_until(wrk.started + TERM_AT);
    // Waits (bounded) for the drain and the exit while wrk keeps going.
    let stopped = terminate(&mut server);
    let report = wrk.finish()?;
    // What the primary logged while it stopped, if that was slow (the drain usually takes
    // about 60 ms) or not clean.
    let log = (stopped.took > SLOW_STOP || !clean_exit(&stopped)).then(|| server.log_since(stopped.signalled));
    Ok(TermSample { wrk: report, probe: join_probe(probe), stopped, log })
}

/// The poll requests of section 2: their threads (to join) and how many hung.
#[derive(Default)]
struct Polls {
    threads: Vec<thread::JoinHandle<()>>,
    hung: Arc<AtomicUsize>,
}

impl Polls {
    /// Waits for every poll thread (each is bounded by `HTTP_TIMEOUT`): (hung, all).
    fn finish(self) -> (usize, usize) {
        let all = self.threads.len();
        for t in self.threads {
            let _ = t.join();
        }
        (self.hung.load(Ordering::Relaxed), all)
    }
}

/// Section 2: `KILLS` times, SIGKILL the only worker and time until a new pid answers.
/// Returns the times and (hung, all) poll requests.
fn kill_to_serving(
    kind: Kind,
    http_cluster: &Path,
    notes: &mut Vec<String>,
) -> Result<(Vec<Duration>, (usize, usize)), String> {
    let mut times = Vec::with_capacity(KILLS);
    let mut polls = Polls::default();
    while times.len() < KILLS {
        // A fixed port: Node's replacement would otherwise bind a new one (see the script).
        let mut server = start(kind, http_cluster, 1, free_port()?, "warn")?;
        let batch = KILLS_PER_CLUSTER.min(KILLS - times.len());
        let result = kill_batch(&server, batch, &mut times, &mut polls);
        let stopped = terminate(&mut server);
        result.map_err(|e| server.with_log(e))?;
        if !clean_exit(&stopped) {
            notes.push(format!("{} after kills: exit {}", kind.label(), fmt_status(stopped.status)));
        }
    }
    Ok((times, polls.finish()))
}

/// `batch` kills of the worker of a one-worker cluster; pushes each kill-to-serving time.
fn kill_batch(server: &Server, batch: usize, times: &mut Vec<Duration>, polls: &mut Polls) -> Result<(), String> {
    let primary = server.pid();
    let mut pid = first_pid(server.port)?;
    let mut serving_since = Instant::now();
    for _ in 0..batch {
        // It served before `serving_since`, so it has been up for longer than this.
        sleep_until(serving_since + UPTIME_BEFORE_KILL);
        if !children(primary).contains(&pid) {
            return Err(format!("pid {pid} that answered is not a child of the primary {primary}"));
        }
        let killed = Instant::now();
        kill(Pid::from_raw(pid), Signal::SIGKILL).map_err(|e| format!("SIGKILL {pid}: {e}"))?;
        let (new, answered) = poll_new_pid(server.port, pid, killed + REPLACE_TIMEOUT, polls)?;
        times.push(answered - killed);
        pid = new;
        serving_since = answered;
    }
    Ok(())
}

/// Section 3: spawn to the `listening on` line of a 2-worker cluster.
fn cold_start(kind: Kind, http_cluster: &Path, notes: &mut Vec<String>) -> Result<Duration, String> {
    let mut server = start(kind, http_cluster, WORKERS, 0, "warn")?;
    let ready = server.ready_after;
    let stopped = terminate(&mut server);
    if !clean_exit(&stopped) {
        notes.push(format!("{} after a cold start: exit {}", kind.label(), fmt_status(stopped.status)));
    }
    Ok(ready)
}

/// Section 4: VmRSS of the primary and the mean of its workers, idle, `IDLE` after ready.
fn idle_rss(kind: Kind, http_cluster: &Path, notes: &mut Vec<String>) -> Result<RssSample, String> {
    let mut server = start(kind, http_cluster, WORKERS, 0, "warn")?;
    thread::sleep(IDLE);
    let primary = server.pid();
    let workers = children(primary);
    let sample = (|| {
        if workers.len() != WORKERS {
            return Err(format!("{} workers instead of {WORKERS}: {:?}", workers.len(), sorted(&workers)));
        }
        let (primary_kib, primary_anon_kib) = rss_kib(primary)?;
        let (mut rss, mut anon) = (0, 0);
        for &w in &workers {
            let (r, a) = rss_kib(w)?;
            rss += r;
            anon += a;
        }
        let n = workers.len() as u64;
        Ok(RssSample { primary_kib, worker_kib: rss / n, primary_anon_kib, worker_anon_kib: anon / n })
    })();
    let stopped = terminate(&mut server);
    if !clean_exit(&stopped) {
        notes.push(format!("{} after idling: exit {}", kind.label(), fmt_status(stopped.status)));
    }
    sample
}

// ---------------------------------------------------------------------------------------------
// Server life cycle
// ---------------------------------------------------------------------------------------------

/// The command line of a `kind` cluster with `workers` workers on 127.0.0.1:`port`, round
/// robin, in its own process group. `rust_log` is corral's log filter.
fn command(kind: Kind, http_cluster: &Path, workers: usize, port: u16, rust_log: &str) -> Command {
    let (workers, port) = (workers.to_string(), port.to_string());
    let mut cmd = match kind {
        Kind::Corral => {
            let mut cmd = Command::new(http_cluster);
            cmd.args(["--workers", &workers, "--host", "127.0.0.1", "--port", &port, "--sched", "rr"])
                .env("RUST_LOG", rust_log)
                .env("NO_COLOR", "1");
            cmd
        }
        Kind::Node => {
            let mut cmd = Command::new("node");
            cmd.arg(NODE_SCRIPT)
                .args(["--workers", &workers, "--port", &port, "--sched", "rr"])
                // Loading extra CA certificates only slows Node's start-up.
                .env_remove("NODE_EXTRA_CA_CERTS");
            cmd
        }
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    cmd
}

/// Spawns a cluster and waits (bounded) for its `listening on` line.
fn start(kind: Kind, http_cluster: &Path, workers: usize, port: u16, rust_log: &str) -> Result<Server, String> {
    let mut cmd = command(kind, http_cluster, workers, port, rust_log);
    let spawned = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", kind.label()))?;

    // stderr: every line, timestamped (the reload time is read from corral's log).
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("piped stderr");
    let sink = Arc::clone(&log);
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap();
            if log.len() < LOG_LINES {
                log.push((Instant::now(), strip_ansi(&line)));
            }
        }
    });

    // stdout: timestamped lines until the ready one, then keep draining so the pipe never fills.
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send((Instant::now(), line));
        }
    });

    let mut server = Server { child, port: 0, ready_after: Duration::ZERO, log };
    let deadline = spawned + STARTUP_TIMEOUT;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((at, line)) => {
                if let Some(addr) = line.trim().strip_prefix(READY_PREFIX) {
                    server.port = parse_ready_addr(addr).map_err(|e| server.with_log(e))?;
                    server.ready_after = at - spawned;
                    return Ok(server);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                return Err(server.with_log(format!("no `{READY_PREFIX}…` line within {STARTUP_TIMEOUT:?}")));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(server.with_log("it closed stdout before it was ready".into()));
            }
        }
    }
}

impl Server {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// When the first stderr line containing `needle` read after `after` was read.
    fn log_line_after(&self, after: Instant, needle: &str) -> Option<Instant> {
        let log = self.log.lock().unwrap();
        log.iter().find(|(at, line)| *at >= after && line.contains(needle)).map(|(at, _)| *at)
    }

    /// The stderr lines read since `at`, each prefixed with its offset from `at`.
    fn log_since(&self, at: Instant) -> String {
        let log = self.log.lock().unwrap();
        let lines: Vec<String> = log
            .iter()
            .filter(|(t, _)| *t >= at)
            .take(40)
            .map(|(t, line)| format!("+{:>9} {line}", fmt_dur(*t - at)))
            .collect();
        lines.join("\n")
    }

    /// `e` followed by the last lines of the server's stderr.
    fn with_log(&self, e: String) -> String {
        let log = self.log.lock().unwrap();
        if log.is_empty() {
            return e;
        }
        let tail: Vec<&str> = log.iter().rev().take(15).rev().map(|(_, l)| l.as_str()).collect();
        format!("{e}\n    server stderr (last lines):\n      {}", tail.join("\n      "))
    }
}

impl Drop for Server {
    /// SIGKILLs the primary if it still runs, and its workers.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let tree = descendants(self.pid());
            let _ = self.child.kill();
            let _ = self.child.wait();
            kill_leftovers(&tree, self.pid(), Duration::ZERO);
        }
    }
}

/// SIGTERM to the primary, bounded wait for its exit (then SIGKILL), bounded wait for its
/// workers (then SIGKILL).
fn terminate(server: &mut Server) -> Stopped {
    let pid = server.pid();
    // Everything it started, to check afterwards that the workers went away too.
    let tree = descendants(pid);
    let signalled = Instant::now();
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let status = wait_bounded(&mut server.child, STOP_TIMEOUT).ok().flatten();
    let took = signalled.elapsed();
    if status.is_none() {
        let _ = server.child.kill();
        let _ = server.child.wait();
    }
    let leftovers = kill_leftovers(&tree, pid, ORPHAN_TIMEOUT);
    Stopped { status, signalled, took, leftovers }
}

/// Waits up to `patience` for the processes of `tree` still in process group `pgid` to go
/// away, then SIGKILLs the rest (by pid, so a reused pid outside the group is never hit).
/// Returns those it killed.
fn kill_leftovers(tree: &HashSet<i32>, pgid: i32, patience: Duration) -> Vec<i32> {
    let deadline = Instant::now() + patience;
    loop {
        let alive: Vec<i32> = tree.iter().copied().filter(|&p| p != pgid && alive_in_group(p, pgid)).collect();
        if alive.is_empty() {
            return alive;
        }
        if Instant::now() >= deadline {
            for &p in &alive {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            return alive;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Exited 0 within the time limit and left no worker behind.
fn clean_exit(stopped: &Stopped) -> bool {
    stopped.status.is_some_and(|s| s.success()) && stopped.leftovers.is_empty()
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
        thread::sleep(Duration::from_millis(2));
    }
}

/// `HOST:PORT[/]` from the ready line → the port, refusing anything but 127.0.0.1.
fn parse_ready_addr(addr: &str) -> Result<u16, String> {
    let addr = addr.trim_end_matches('/');
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| format!("bad ready address {addr:?}"))?;
    if host != "127.0.0.1" {
        return Err(format!("server listens on {host}, not 127.0.0.1: refusing to use it"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!("bad port in ready address {addr:?}")),
    }
}

/// A port free on 127.0.0.1 right now (the OS picks it; the socket is closed at once).
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------------

/// Direct children of `pid`, from `/proc/<pid>/task/<tid>/children` of every thread.
fn children(pid: i32) -> HashSet<i32> {
    let mut out = HashSet::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(list.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
        }
    }
    out
}

/// `root` and all its descendants.
fn descendants(root: i32) -> HashSet<i32> {
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if seen.insert(pid) {
            stack.extend(children(pid));
        }
    }
    seen
}

/// Is `pid` a live (not zombie) process of process group `pgid`?
fn alive_in_group(pid: i32, pgid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // After `comm` (which may contain spaces and parentheses): state is field 3, pgrp field 5.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    fields.first().is_some_and(|s| *s != "Z" && *s != "X") && fields.get(2).and_then(|g| g.parse().ok()) == Some(pgid)
}

/// `VmRSS` and `RssAnon` of `pid`, in KiB.
fn rss_kib(pid: i32) -> Result<(u64, u64), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("/proc/{pid}: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("RssAnon:")?))
}

// ---------------------------------------------------------------------------------------------
// HTTP probes
// ---------------------------------------------------------------------------------------------

/// One `GET /` to 127.0.0.1:`port` on a fresh connection (`Connection: close`, so the body
/// runs to EOF) → (status, body). Errors keep their kind (a timeout is `WouldBlock` or
/// `TimedOut`) and say which step failed.
fn http_get(port: u16) -> io::Result<(u16, String)> {
    let step = |what: &'static str| move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).map_err(step("connect"))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    let request = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(step("write"))?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(step("read"))?;
    let response = String::from_utf8_lossy(&response);

    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| io::Error::other("incomplete response"))?;
    let status = parse_status_line(head.lines().next().unwrap_or(""))?;
    Ok((status, body.to_owned()))
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(line: &str) -> io::Result<u16> {
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// `… (pid <pid>)` in a response body → `<pid>`.
fn pid_in(body: &str) -> Option<i32> {
    let start = body.find("(pid ")? + "(pid ".len();
    body[start..].split(')').next()?.trim().parse().ok()
}

/// The pid that answers `GET /`.
fn first_pid(port: u16) -> Result<i32, String> {
    match http_get(port).map_err(|e| e.to_string())? {
        (200, body) => pid_in(&body).ok_or_else(|| format!("body names no pid: {body:?}")),
        (status, body) => Err(format!("GET / answered {status}: {body:?}")),
    }
}

fn check_serving(server: &Server) -> Result<(), String> {
    first_pid(server.port).map(drop).map_err(|e| server.with_log(format!("first GET /: {e}")))
}

/// Starts a `GET /` on a fresh connection every `POLL_EVERY`, each in its own thread so that
/// one hanging request delays nothing, until a 200 names a pid other than `old`: that pid and
/// when its answer arrived. The threads are left in `polls`.
fn poll_new_pid(port: u16, old: i32, deadline: Instant, polls: &mut Polls) -> Result<(i32, Instant), String> {
    let (tx, rx) = mpsc::channel::<(i32, Instant)>();
    let last_error = Arc::new(Mutex::new(String::from("none")));
    loop {
        let (tx, hung, last) = (tx.clone(), Arc::clone(&polls.hung), Arc::clone(&last_error));
        polls.threads.push(thread::spawn(move || {
            let outcome = match http_get(port) {
                Ok((200, body)) => match pid_in(&body) {
                    Some(pid) if pid != old => {
                        let _ = tx.send((pid, Instant::now()));
                        return;
                    }
                    Some(_) => format!("the killed pid {old} answered"),
                    None => format!("body names no pid: {body:?}"),
                },
                Ok((status, _)) => format!("status {status}"),
                Err(e) => {
                    if is_timeout(&e) {
                        hung.fetch_add(1, Ordering::Relaxed);
                    }
                    e.to_string()
                }
            };
            *last.lock().unwrap() = outcome;
        }));
        match rx.recv_timeout(POLL_EVERY) {
            Ok(answer) => return Ok(answer),
            Err(_) if Instant::now() >= deadline => {
                let last = last_error.lock().unwrap();
                return Err(format!("no new worker answered within {REPLACE_TIMEOUT:?} (last failure: {last})"));
            }
            Err(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The probe: keep-alive load that tells refused requests from lost ones
// ---------------------------------------------------------------------------------------------

/// Starts `PROBE_CONNECTIONS` keep-alive clients of 127.0.0.1:`port` that run until `until`.
fn spawn_probe(port: u16, until: Instant) -> Vec<thread::JoinHandle<ProbeCounts>> {
    (0..PROBE_CONNECTIONS).map(|_| thread::spawn(move || probe_connection(port, until))).collect()
}

fn join_probe(threads: Vec<thread::JoinHandle<ProbeCounts>>) -> ProbeCounts {
    let mut total = ProbeCounts::default();
    for t in threads {
        if let Ok(counts) = t.join() {
            total.add(counts);
        }
    }
    total
}

/// One client: sends `GET /` back to back on a keep-alive connection, reconnects after
/// `Connection: close` or an error (as wrk does), and counts what every request came to.
fn probe_connection(port: u16, until: Instant) -> ProbeCounts {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut counts = ProbeCounts::default();
    let mut open: Option<BufReader<TcpStream>> = None;
    while Instant::now() < until {
        let mut conn = match open.take() {
            Some(conn) => conn,
            None => match connect(addr) {
                Ok(stream) => BufReader::new(stream),
                Err(_) => {
                    // No one accepted the connection, so no request was lost.
                    counts.refused += 1;
                    thread::sleep(PROBE_PAUSE);
                    continue;
                }
            },
        };
        match keep_alive_get(&mut conn, port) {
            Ok((status, close)) => {
                if (200..300).contains(&status) {
                    counts.ok += 1;
                } else {
                    counts.non2xx += 1;
                }
                if !close {
                    open = Some(conn);
                }
            }
            Err(_) => counts.lost += 1,
        }
        thread::sleep(PROBE_PAUSE);
    }
    counts
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// `GET /` on an open keep-alive connection → (status, whether the server closes it). The
/// body is read (by `Content-Length`, else to EOF) and dropped.
fn keep_alive_get(conn: &mut BufReader<TcpStream>, port: u16) -> io::Result<(u16, bool)> {
    let request = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    conn.get_mut().write_all(request.as_bytes())?;
    let (mut status, mut length, mut close) = (None, None, false);
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if status.is_none() {
            status = Some(parse_status_line(line)?);
        } else if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.trim().eq_ignore_ascii_case("connection") {
                close = value.trim().eq_ignore_ascii_case("close");
            }
        }
    }
    let status = status.ok_or_else(|| io::Error::other("no status line"))?;
    match length {
        Some(n) => conn.read_exact(&mut vec![0; n])?,
        None => {
            conn.read_to_end(&mut Vec::new())?;
            close = true;
        }
    }
    Ok((status, close))
}

// ---------------------------------------------------------------------------------------------
// wrk
// ---------------------------------------------------------------------------------------------

/// A running `wrk -t1 -c64 -d6s --latency`.
struct Wrk {
    child: Child,
    started: Instant,
    out: thread::JoinHandle<String>,
    err: thread::JoinHandle<String>,
}

fn spawn_wrk(port: u16) -> Result<Wrk, String> {
    let url = format!("http://127.0.0.1:{port}/");
    let started = Instant::now();
    let mut child = Command::new("wrk")
        .args(["-t1", &format!("-c{WRK_CONNECTIONS}"), &format!("-d{WRK_SECS}s"), "--latency", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start wrk: {e}"))?;
    let out = read_in_background(child.stdout.take().expect("piped stdout"));
    let err = read_in_background(child.stderr.take().expect("piped stderr"));
    Ok(Wrk { child, started, out, err })
}

impl Wrk {
    /// Waits (bounded) for wrk to end and parses its report.
    fn finish(mut self) -> Result<WrkReport, String> {
        let limit = Duration::from_secs(WRK_SECS) + WRK_GRACE;
        let status = match wait_bounded(&mut self.child, limit.saturating_sub(self.started.elapsed())) {
            Ok(Some(status)) => status,
            Ok(None) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!("wrk did not finish within {limit:?}: killed"));
            }
            Err(e) => return Err(format!("waiting for wrk: {e}")),
        };
        let out = self.out.join().unwrap_or_default();
        let err = self.err.join().unwrap_or_default();
        if !status.success() {
            return Err(format!("wrk exited with {status}: {}{}", out.trim(), err.trim()));
        }
        parse_wrk(&out).ok_or_else(|| format!("cannot parse wrk's output:\n{out}"))
    }
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    })
}

/// Parses the lines of `wrk --latency` we need (the error lines only appear if non-zero):
///
/// ```text
///      99%    2.31ms
///   541234 requests in 6.00s, 66.07MB read
///   Socket errors: connect 0, read 0, write 0, timeout 12
///   Non-2xx or 3xx responses: 3
/// ```
fn parse_wrk(out: &str) -> Option<WrkReport> {
    let (mut p99, mut requests) = (None, None);
    let mut report = WrkReport {
        requests: 0,
        p99_us: 0.0,
        connect: 0,
        read: 0,
        write: 0,
        timeout: 0,
        non2xx: 0,
        output: out.trim_end().to_owned(),
    };
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("99%") {
            p99 = parse_wrk_time(v.trim());
        } else if line.contains(" requests in ") {
            requests = line.split_whitespace().next().and_then(|w| w.parse().ok());
        } else if let Some(errors) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 12"
            for part in errors.split(',') {
                let mut words = part.split_whitespace();
                let (Some(name), Some(n)) = (words.next(), words.next().and_then(|n| n.parse().ok())) else {
                    return None;
                };
                match name {
                    "connect" => report.connect = n,
                    "read" => report.read = n,
                    "write" => report.write = n,
                    "timeout" => report.timeout = n,
                    _ => return None,
                }
            }
        } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            report.non2xx = n.trim().parse().ok()?;
        }
    }
    report.requests = requests?;
    report.p99_us = p99?;
    Some(report)
}

/// wrk's time format (`612.00us`, `2.31ms`, `1.02s`, `1.50m`, `1.00h`) → µs.
fn parse_wrk_time(s: &str) -> Option<f64> {
    let units = [("us", 1.0), ("ms", 1e3), ("s", 1e6), ("m", 60e6), ("h", 3600e6)];
    units.iter().find_map(|(suffix, scale)| s.strip_suffix(suffix)?.parse::<f64>().ok().map(|v| v * scale))
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

fn print_machine(wrk: Option<&str>, node: Option<&str>) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown CPU".to_owned(), |(_, m)| m.trim().to_owned());
    let nproc = thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("Machine: nproc {nproc}, {model}, Linux {}, load average {}", kernel.trim(), load_average());
    println!("Tools: {}; node {}", wrk.unwrap_or("wrk not found"), node.unwrap_or("not found"));
}

fn print_report(r: &Results, reps: usize) {
    println!();
    println!("Life-cycle benchmark, medians over {reps} repetition(s) (runs = successful repetitions)");

    if !r.reload.is_empty() || !r.term.is_empty() {
        print_load(r);
    }

    let has = |v: &[Vec<(Duration, Duration)>; 2]| !v[0].is_empty() || !v[1].is_empty();
    if has(&r.kill) {
        println!();
        println!(
            "2. SIGKILL of the only worker (up > {:.1} s) → replacement serving, {KILLS} kills per run \
             (p99 of {KILLS} = the slowest)",
            UPTIME_BEFORE_KILL.as_secs_f64()
        );
        println!(
            "{:<8} {:>10} {:>10} {:>5}  polls that hung ({:?} timeout)",
            "server", "p50", "p99", "runs", HTTP_TIMEOUT
        );
        for kind in [Kind::Corral, Kind::Node] {
            let v = &r.kill[kind as usize];
            if !v.is_empty() {
                let p50 = median_dur(&v.iter().map(|s| s.0).collect::<Vec<_>>());
                let p99 = median_dur(&v.iter().map(|s| s.1).collect::<Vec<_>>());
                let (hung, all) = r.hung_polls[kind as usize];
                println!(
                    "{:<8} {:>10} {:>10} {:>5}  {hung} of {all}",
                    kind.label(),
                    fmt_dur(p50),
                    fmt_dur(p99),
                    v.len()
                );
            }
        }
        let p50 = |k: Kind| {
            let v = &r.kill[k as usize];
            (!v.is_empty()).then(|| secs(median_dur(&v.iter().map(|s| s.0).collect::<Vec<_>>())))
        };
        print_target("p50", p50(Kind::Corral), p50(Kind::Node), 10.0, fmt_secs);
    }

    if !r.cold[0].is_empty() || !r.cold[1].is_empty() {
        println!();
        println!(
            "3. Cold start: spawn → `listening on` (all {WORKERS} workers ready), {COLD_STARTS} starts per run, p50"
        );
        println!("{:<8} {:>10} {:>5}", "server", "p50", "runs");
        for kind in [Kind::Corral, Kind::Node] {
            let v = &r.cold[kind as usize];
            if !v.is_empty() {
                println!("{:<8} {:>10} {:>5}", kind.label(), fmt_dur(median_dur(v)), v.len());
            }
        }
        let p50 = |k: Kind| (!r.cold[k as usize].is_empty()).then(|| secs(median_dur(&r.cold[k as usize])));
        print_target("p50", p50(Kind::Corral), p50(Kind::Node), 5.0, fmt_secs);
    }

    if !r.rss[0].is_empty() || !r.rss[1].is_empty() {
        println!();
        println!(
            "4. Idle memory, {WORKERS} workers, {} s after ready: VmRSS (the target) and RssAnon (private; \
             VmRSS minus shared file pages)",
            IDLE.as_secs()
        );
        println!(
            "{:<8} {:>12} {:>12} {:>14} {:>14} {:>5}",
            "server", "primary", "worker", "primary anon", "worker anon", "runs"
        );
        // Per kind: medians in KiB of the primary's and a worker's VmRSS and RssAnon.
        let medians = |k: Kind| {
            let v = &r.rss[k as usize];
            let col = |f: fn(&RssSample) -> u64| median_u64(&v.iter().map(f).collect::<Vec<_>>()) as f64;
            (!v.is_empty()).then(|| {
                [col(|s| s.primary_kib), col(|s| s.worker_kib), col(|s| s.primary_anon_kib), col(|s| s.worker_anon_kib)]
            })
        };
        let (corral, node) = (medians(Kind::Corral), medians(Kind::Node));
        for (kind, m) in [(Kind::Corral, corral), (Kind::Node, node)] {
            if let Some([p, w, pa, wa]) = m {
                println!(
                    "{:<8} {:>12} {:>12} {:>14} {:>14} {:>5}",
                    kind.label(),
                    fmt_kib_f(p),
                    fmt_kib_f(w),
                    fmt_kib_f(pa),
                    fmt_kib_f(wa),
                    r.rss[kind as usize].len()
                );
            }
        }
        print_target("primary VmRSS", corral.map(|m| m[0]), node.map(|m| m[0]), 8.0, fmt_kib_f);
        print_target("worker VmRSS", corral.map(|m| m[1]), node.map(|m| m[1]), 8.0, fmt_kib_f);
    }

    if !r.notes.is_empty() {
        println!();
        println!("Notes:");
        for n in &r.notes {
            println!("  - {n}");
        }
    }
}

/// Table 1: wrk's figures, the probe's, what happened to the cluster, and the verdicts.
fn print_load(r: &Results) {
    let hup = format!("SIGHUP @{}s", RELOAD_AT.as_secs());
    let term = format!("SIGTERM @{}s", TERM_AT.as_secs());
    let rows: [(&str, Vec<&WrkReport>, Vec<ProbeCounts>); 2] = [
        (&hup, r.reload.iter().map(|s| &s.wrk).collect(), r.reload.iter().map(|s| s.probe).collect()),
        (&term, r.term.iter().map(|s| &s.wrk).collect(), r.term.iter().map(|s| s.probe).collect()),
    ];
    println!();
    println!(
        "1. corral http_cluster, {WORKERS} workers, rr, under wrk -t1 -c{WRK_CONNECTIONS} -d{WRK_SECS}s --latency \
         plus a {PROBE_CONNECTIONS}-connection probe; medians over runs, [max]"
    );
    println!(
        "{:<13} {:>9} {:>10} {:>10} {:>16} {:>10} {:>10} {:>10}",
        "wrk", "requests", "connect", "read", "write", "timeout", "non-2xx", "p99"
    );
    for (label, wrk, _) in rows.iter().filter(|row| !row.1.is_empty()) {
        let col = |f: fn(&WrkReport) -> u64| median_max(wrk.iter().map(|w| f(w)));
        println!(
            "{label:<13} {:>9} {:>10} {:>10} {:>16} {:>10} {:>10} {:>10}",
            thousands(col(|w| w.requests).0),
            fmt_median_max(col(|w| w.connect)),
            fmt_median_max(col(|w| w.read)),
            fmt_median_max(col(|w| w.write)),
            fmt_median_max(col(|w| w.timeout)),
            fmt_median_max(col(|w| w.non2xx)),
            fmt_us(median(wrk.iter().map(|w| w.p99_us).collect())),
        );
    }
    println!("{:<13} {:>9} {:>10} {:>10} {:>16}", "probe", "ok", "non-2xx", "refused", "lost");
    for (label, _, probe) in rows.iter().filter(|row| !row.2.is_empty()) {
        let col = |f: fn(&ProbeCounts) -> u64| median_max(probe.iter().map(f));
        println!(
            "{label:<13} {:>9} {:>10} {:>10} {:>16}",
            thousands(col(|p| p.ok).0),
            fmt_median_max(col(|p| p.non2xx)),
            fmt_median_max(col(|p| p.refused)),
            fmt_median_max(col(|p| p.lost)),
        );
    }

    if !r.reload.is_empty() {
        let v = &r.reload;
        let replaced = v.iter().filter(|s| s.replaced).count();
        let reload: Vec<Duration> = v.iter().filter_map(|s| s.reload).collect();
        let reload = if reload.is_empty() { "?".into() } else { fmt_dur(median_dur(&reload)) };
        println!(
            "{hup}: every worker pid replaced (/proc) in {replaced}/{} runs; reload took {reload} \
             (SIGHUP to `rolling reload done`)",
            v.len()
        );
        // On reload the listener stays open: every wrk error is a failed request.
        let wrk_failed = median_max(v.iter().map(|s| s.wrk.failed()));
        let lost = median_max(v.iter().map(|s| s.probe.lost + s.probe.non2xx));
        let met = wrk_failed.1 == 0 && lost.1 == 0 && replaced == v.len();
        println!(
            "  target 0 failed: wrk read+write+timeout+non-2xx {}, probe lost+non-2xx {}, all replaced: {}",
            fmt_median_max(wrk_failed),
            fmt_median_max(lost),
            verdict(met)
        );
    }
    if !r.term.is_empty() {
        let v = &r.term;
        let clean = v.iter().filter(|s| clean_exit(&s.stopped)).count();
        let statuses: Vec<String> = v.iter().map(|s| fmt_status(s.stopped.status)).collect();
        let took = median_dur(&v.iter().map(|s| s.stopped.took).collect::<Vec<_>>());
        println!(
            "{term}: exit {} ({clean}/{} exited 0 with no worker left), {} after the signal",
            statuses.join("/"),
            v.len(),
            fmt_dur(took)
        );
        // wrk counts refused connects as write (or read) errors: only its timeouts and non-2xx
        // are unambiguous. The probe tells refused from lost.
        let wrk_failed = median_max(v.iter().map(|s| s.wrk.timeout + s.wrk.non2xx));
        let lost = median_max(v.iter().map(|s| s.probe.lost + s.probe.non2xx));
        let met = wrk_failed.1 == 0 && lost.1 == 0 && clean == v.len();
        println!(
            "  target 0 failed: wrk timeout+non-2xx {}, probe lost+non-2xx {}, exit 0: {}",
            fmt_median_max(wrk_failed),
            fmt_median_max(lost),
            verdict(met)
        );
        println!(
            "  (wrk 4.1 connects without blocking: a refused connect counts as a write or read error, so \
             wrk's read/write columns cannot tell refused from lost requests after SIGTERM)"
        );
    }
}

/// wrk's and the probe's counts of one run, on one line.
fn fmt_load(wrk: &WrkReport, probe: &ProbeCounts) -> String {
    format!(
        "wrk {} requests, p99 {}, errors connect {} read {} write {} timeout {}, non-2xx {}; \
         probe ok {} non-2xx {} refused {} lost {}",
        wrk.requests,
        fmt_us(wrk.p99_us),
        wrk.connect,
        wrk.read,
        wrk.write,
        wrk.timeout,
        wrk.non2xx,
        probe.ok,
        probe.non2xx,
        probe.refused,
        probe.lost
    )
}

/// Median and largest of some counts.
fn median_max(v: impl Iterator<Item = u64>) -> (u64, u64) {
    let v: Vec<u64> = v.collect();
    (median_u64(&v), v.iter().copied().max().unwrap_or(0))
}

fn fmt_median_max((median, max): (u64, u64)) -> String {
    format!("{} [{}]", thousands(median), thousands(max))
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// The target line "<what>: corral X vs node Y: corral/node = R …; target ≤ 1/`factor`: met".
fn print_target(what: &str, corral: Option<f64>, node: Option<f64>, factor: f64, fmt: fn(f64) -> String) {
    let (Some(c), Some(n)) = (corral, node) else {
        println!("{what}: target corral ≤ node/{factor}: not measured on both");
        return;
    };
    let ratio = c / n;
    let verdict = verdict(ratio <= 1.0 / factor);
    println!(
        "{what}: corral {} vs node {}: corral/node = {ratio:.3} (node is {:.1}× corral); target ≤ 1/{factor} \
         = {:.3}: {verdict}",
        fmt(c),
        fmt(n),
        1.0 / ratio,
        1.0 / factor
    );
}

/// Nearest-rank percentile.
fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v.get(rank.clamp(1, v.len().max(1)) - 1).copied().unwrap_or_default()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn median_dur(v: &[Duration]) -> Duration {
    Duration::from_secs_f64(median(v.iter().map(Duration::as_secs_f64).collect()))
}

fn median_u64(v: &[u64]) -> u64 {
    median(v.iter().map(|&x| x as f64).collect()).round() as u64
}

fn fmt_dur(d: Duration) -> String {
    fmt_us(d.as_secs_f64() * 1e6)
}

fn fmt_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn fmt_kib(kib: u64) -> String {
    fmt_kib_f(kib as f64)
}

fn fmt_kib_f(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn fmt_secs(s: f64) -> String {
    fmt_us(s * 1e6)
}

fn fmt_status(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        None => "none (SIGKILLed after the time limit)".into(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => code.to_string(),
            (None, Some(sig)) => format!("signal {sig}"),
            (None, None) => s.to_string(),
        },
    }
}

/// 541234 → "541,234".
fn thousands(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("      {l}")).collect::<Vec<_>>().join("\n")
}

fn sorted(set: &HashSet<i32>) -> Vec<i32> {
    let mut v: Vec<i32> = set.iter().copied().collect();
    v.sort_unstable();
    v
}

/// Removes ANSI escape sequences (`ESC [ … letter`), in case the log is coloured anyway.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn sleep_until(at: Instant) {
    thread::sleep(at.saturating_duration_since(Instant::now()));
}

/// The 1, 5 and 15 minute load averages (other work on the machine skews every figure).
fn load_average() -> String {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Where `cargo build --release --examples` puts the examples: `<target>/release/examples`,
/// next to the `deps` directory this bench binary runs from.
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the bench binary");
    let deps = exe.parent().expect("bench binary has a parent directory");
    deps.parent().unwrap_or(deps).join("examples")
}

/// The first line `program args` prints (on stdout, else stderr), or `None` if it cannot run.
fn tool_version(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).env_remove("NODE_EXTRA_CA_CERTS").output().ok()?;
    let text = if out.stdout.is_empty() { out.stderr } else { out.stdout };
    Some(String::from_utf8_lossy(&text).lines().next().unwrap_or("").trim().to_owned())
}

/// A count from the environment, or `default`.
fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            eprintln!("{name}={v:?} is not a whole number: using {default}");
            default
        }),
        Err(_) => default,
    }
}
