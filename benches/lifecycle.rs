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
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

mod support;
use support::env::env_u64;
use support::http;
use support::poll::{self, Polls};
use support::proc::{children, load_average, rss_kib};
use support::process::{self, ORPHAN_TIMEOUT, Server, Stopped, free_port, sleep_until};
use support::report::{
    fmt_dur, fmt_kib, fmt_median_max, fmt_us, machine, print_notes, thousands, tool_version, verdict,
};
use support::stats::{median, median_dur, median_max, median_u64, percentile};
use support::wrk::{self, WrkReport};

/// Workers of the clusters under load, cold-started and measured idle.
const WORKERS: usize = 2;
/// wrk's run length under load.
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
/// Cold starts per server and repetition.
const COLD_STARTS: usize = 10;
/// Idle time before memory is read.
const IDLE: Duration = Duration::from_secs(1);

/// A stop under load slower than this is reported with the primary's log.
const SLOW_STOP: Duration = Duration::from_millis(200);
/// Connect/read/write timeout of the HTTP client.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

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
    let reps = env_u64("BENCH_REPS", 3).max(1) as usize;

    let http_cluster = process::examples_dir().join("http_cluster");
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
    println!("Machine: {}, load average {}", machine(), load_average());
    println!("Tools: {}; node {}", wrk.as_deref().unwrap_or("wrk not found"), node.as_deref().unwrap_or("not found"));
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
            if r.term.is_empty() || failed || !s.stopped.clean() {
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
            Ok((mut times, (hung, all))) => {
                times.sort();
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
        let t = &mut times[kind as usize];
        if !t.is_empty() {
            t.sort();
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
                    fmt_kib(s.primary_kib as f64),
                    fmt_kib(s.worker_kib as f64),
                    fmt_kib(s.primary_anon_kib as f64),
                    fmt_kib(s.worker_anon_kib as f64)
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

    let wrk = wrk::spawn(server.port, WRK_SECS)?;
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

    let stopped = server.terminate();
    if !stopped.clean() {
        return Err(format!("stopping it after the run: exit {}", fmt_status(stopped.status)));
    }
    Ok(ReloadSample { wrk: report, probe, replaced, pids: (sorted(&before), sorted(&after)), reload })
}

/// Section 1b: SIGTERM 3 s into a wrk run against corral (2 workers, rr).
fn term_under_load(http_cluster: &Path) -> Result<TermSample, String> {
    let mut server = start(Kind::Corral, http_cluster, WORKERS, 0, "info")?;
    check_serving(&server)?;
    let wrk = wrk::spawn(server.port, WRK_SECS)?;
    let probe = spawn_probe(server.port, wrk.started + Duration::from_secs(WRK_SECS));
    sleep_until(wrk.started + TERM_AT);
    // Waits (bounded) for the drain and the exit while wrk keeps going.
    let stopped = server.terminate();
    let report = wrk.finish()?;
    // What the primary logged while it stopped, if that was slow (the drain usually takes
    // about 60 ms) or not clean.
    let log = (stopped.took > SLOW_STOP || !stopped.clean()).then(|| server.log_since(stopped.signalled));
    Ok(TermSample { wrk: report, probe: join_probe(probe), stopped, log })
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
        let stopped = server.terminate();
        result.map_err(|e| server.with_log(e))?;
        if !stopped.clean() {
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
        let old = HashSet::from([pid]);
        let (new, answered) =
            poll::poll_new_pid(server.port, "/", pid_in, &old, HTTP_TIMEOUT, killed + REPLACE_TIMEOUT, polls)
                .map_err(|e| format!("{e} ({REPLACE_TIMEOUT:?} after the kill)"))?;
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
    let stopped = server.terminate();
    if !stopped.clean() {
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
    let stopped = server.terminate();
    if !stopped.clean() {
        notes.push(format!("{} after idling: exit {}", kind.label(), fmt_status(stopped.status)));
    }
    sample
}

// ---------------------------------------------------------------------------------------------
// Server life cycle
// ---------------------------------------------------------------------------------------------

/// Starts a `kind` cluster with `workers` workers on 127.0.0.1:`port`, round robin, and waits
/// (bounded) for its `listening on` line. `rust_log` is corral's log filter.
fn start(kind: Kind, http_cluster: &Path, workers: usize, port: u16, rust_log: &str) -> Result<Server, String> {
    let (workers, port) = (workers.to_string(), port.to_string());
    let cmd = match kind {
        Kind::Corral => {
            let mut cmd = Command::new(http_cluster);
            cmd.args(["--workers", &workers, "--host", "127.0.0.1", "--port", &port, "--sched", "rr"])
                .env("RUST_LOG", rust_log)
                .env("NO_COLOR", "1");
            cmd
        }
        Kind::Node => {
            let mut cmd = process::node();
            cmd.arg(NODE_SCRIPT).args(["--workers", &workers, "--port", &port, "--sched", "rr"]);
            cmd
        }
    };
    process::start(cmd)
}

// ---------------------------------------------------------------------------------------------
// HTTP probes
// ---------------------------------------------------------------------------------------------

/// `… (pid <pid>)` in a response body → `<pid>`.
fn pid_in(body: &str) -> Option<i32> {
    let start = body.find("(pid ")? + "(pid ".len();
    body[start..].split(')').next()?.trim().parse().ok()
}

/// The pid that answers `GET /`.
fn first_pid(port: u16) -> Result<i32, String> {
    match http::get(port, "/", HTTP_TIMEOUT).map_err(|e| e.to_string())? {
        http::Response { status: 200, body, .. } => pid_in(&body).ok_or_else(|| format!("body names no pid: {body:?}")),
        http::Response { status, body, .. } => Err(format!("GET / answered {status}: {body:?}")),
    }
}

fn check_serving(server: &Server) -> Result<(), String> {
    first_pid(server.port).map(drop).map_err(|e| server.with_log(format!("first GET /: {e}")))
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
    let mut counts = ProbeCounts::default();
    let mut open: Option<http::Connection> = None;
    while Instant::now() < until {
        let mut conn = match open.take() {
            Some(conn) => conn,
            None => match http::Connection::open(port, HTTP_TIMEOUT) {
                Ok(conn) => conn,
                Err(_) => {
                    // No one accepted the connection, so no request was lost.
                    counts.refused += 1;
                    thread::sleep(PROBE_PAUSE);
                    continue;
                }
            },
        };
        match conn.get("/") {
            Ok(answer) => {
                if (200..300).contains(&answer.status) {
                    counts.ok += 1;
                } else {
                    counts.non2xx += 1;
                }
                if !answer.close {
                    open = Some(conn);
                }
            }
            Err(_) => counts.lost += 1,
        }
        thread::sleep(PROBE_PAUSE);
    }
    counts
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

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
                    fmt_kib(p),
                    fmt_kib(w),
                    fmt_kib(pa),
                    fmt_kib(wa),
                    r.rss[kind as usize].len()
                );
            }
        }
        print_target("primary VmRSS", corral.map(|m| m[0]), node.map(|m| m[0]), 8.0, fmt_kib);
        print_target("worker VmRSS", corral.map(|m| m[1]), node.map(|m| m[1]), 8.0, fmt_kib);
    }

    print_notes(&r.notes);
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
        "1. corral http_cluster, {WORKERS} workers, rr, under wrk -t1 -c{} -d{WRK_SECS}s --latency \
         plus a {PROBE_CONNECTIONS}-connection probe; medians over runs, [max]",
        wrk::CONNECTIONS
    );
    println!(
        "{:<13} {:>9} {:>10} {:>10} {:>16} {:>10} {:>10} {:>10}",
        "wrk", "requests", "connect", "read", "write", "timeout", "non-2xx", "p99"
    );
    for (label, wrk, _) in rows.iter().filter(|row| !row.1.is_empty()) {
        let col = |f: fn(&WrkReport) -> u64| median_max(wrk.iter().map(|w| f(w)));
        println!(
            "{label:<13} {:>9} {:>10} {:>10} {:>16} {:>10} {:>10} {:>10}",
            thousands(col(|w| w.requests).0 as f64),
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
            thousands(col(|p| p.ok).0 as f64),
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
        let clean = v.iter().filter(|s| s.stopped.clean()).count();
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

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("      {l}")).collect::<Vec<_>>().join("\n")
}

fn sorted(set: &HashSet<i32>) -> Vec<i32> {
    let mut v: Vec<i32> = set.iter().copied().collect();
    v.sort_unstable();
    v
}
