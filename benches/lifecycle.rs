//! Worker life-cycle benchmark (issue 4): corral's `examples/http_cluster.rs` side by side with
//! a Node.js `cluster` (`benches/node/lifecycle_bench.js`, restarts a worker on `'exit'`).
//!
//! ```text
//! cargo build --release --examples              # the servers; this bench does not build them
//! cargo bench --bench lifecycle                 # every section, 3 repetitions, medians
//! BENCH_REPS=1 cargo bench --bench lifecycle
//! cargo bench --bench lifecycle -- kill cold    # only some sections: load, kill, cold, rss, upgrade
//! cargo bench --bench lifecycle -- upgrade       # issue 13 only: 5 repetitions unless BENCH_REPS
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
//! 5. **upgrade** (issue 13) — corral only (2 workers, `--sched rr`), under the same wrk run
//!    and 2 s into it: a. SIGUSR2, the primary upgrading itself in place, or b. SIGHUP, a
//!    rolling reload (both in every repetition, the order alternating). The server runs from a
//!    copy of `http_cluster` (of a snapshot taken when the bench starts) in a temporary
//!    directory; before a SIGUSR2 the same binary is
//!    deployed again as a deploy does (written beside, then renamed over: a new inode). Measured:
//!    signal → `upgrade complete` / `rolling reload done` (the primary's log lines), for the
//!    upgrade split at its `upgrade: handing over`, `upgrade: exec` and `upgrade: the new image
//!    took over` lines; wrk's requests/s and p50/p99 over the run; the probe's latencies over
//!    the run, before the signal and from the signal to the done line (the probe here adds
//!    `FRESH_CLIENTS` clients that open a connection per request, `Connection: close`: the
//!    keep-alive ones stay on their worker and never see the primary's exec); failed, refused
//!    and lost requests; whether the primary kept its pid (and, for the upgrade, runs the
//!    deployed inode, `/proc/<pid>/exe`) and every worker pid was replaced.
//!
//! The report has the median over repetitions of every figure (for counts of failed requests
//! also the largest), the issue's targets and the ratios. Every address targeted is 127.0.0.1
//! and every wait is bounded. `BENCH_REPS` sets the repetitions (default 3, about a minute
//! each on a 2-core machine; 5 when `upgrade` is the only section asked for, about 20 s each).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

mod support;
use support::env::env_u64;
use support::http;
use support::poll::{self, Polls};
use support::proc::{alive_in_group, children, load_average, rss_kib};
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

/// Section 5: when SIGUSR2 / SIGHUP is sent, counted from wrk's start; how long after it the
/// done line may come; the probe's fresh-connection clients (beside its keep-alive ones).
const UPGRADE_AT: Duration = Duration::from_secs(2);
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(20);
const FRESH_CLIENTS: usize = 2;
/// The probe's latency is also shown over this long from the signal (the event itself is over
/// in a few tens of milliseconds: too few requests for a p99).
const AFTER_SIGNAL: Duration = Duration::from_secs(1);
/// The primary's log lines that mark the steps of an upgrade and the end of a reload.
const LOG_CHECKING: &str = "upgrade: checking the new executable";
const LOG_HANDING_OVER: &str = "upgrade: handing over";
const LOG_EXEC: &str = "upgrade: exec";
const LOG_TOOK_OVER: &str = "upgrade: the new image took over";
const LOG_UPGRADED: &str = "upgrade complete";
const LOG_RELOADED: &str = "rolling reload done";

/// A stop under load slower than this is reported with the primary's log.
const SLOW_STOP: Duration = Duration::from_millis(200);
/// Connect/read/write timeout of the HTTP client.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

const NODE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/node/lifecycle_bench.js");
/// The sections, in run order; bare command-line words select some of them.
const SECTIONS: [&str; 5] = ["load", "kill", "cold", "rss", "upgrade"];

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

/// Section 5: what is signalled under load.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Event {
    /// SIGUSR2 after a deploy: the primary upgrades itself in place.
    Upgrade,
    /// SIGHUP: a rolling reload of the workers.
    Reload,
}

impl Event {
    fn label(self) -> &'static str {
        match self {
            Event::Upgrade => "SIGUSR2 upgrade",
            Event::Reload => "SIGHUP reload",
        }
    }

    fn signal(self) -> Signal {
        match self {
            Event::Upgrade => Signal::SIGUSR2,
            Event::Reload => Signal::SIGHUP,
        }
    }

    /// The primary's log line once the new workers have replaced the old ones.
    fn done_line(self) -> &'static str {
        match self {
            Event::Upgrade => LOG_UPGRADED,
            Event::Reload => LOG_RELOADED,
        }
    }
}

/// Latency of the answered probe requests that started in some span of time.
#[derive(Clone, Copy, Default)]
struct Latency {
    p50: Duration,
    p99: Duration,
    max: Duration,
    n: usize,
}

impl Latency {
    fn of(answered: &[Answered], from: Instant, to: Instant) -> Latency {
        let mut took: Vec<Duration> = answered.iter().filter(|a| a.at >= from && a.at < to).map(|a| a.took).collect();
        took.sort();
        Latency {
            p50: percentile(&took, 50.0),
            p99: percentile(&took, 99.0),
            max: took.last().copied().unwrap_or_default(),
            n: took.len(),
        }
    }
}

/// The probe's latencies of one kind of client: over the whole run, before the signal, from
/// the signal to the done line (to the end of the run if it never came; a few tens of
/// requests), and in the `AFTER_SIGNAL` from the signal.
#[derive(Clone, Copy, Default)]
struct Latencies {
    all: Latency,
    before: Latency,
    during: Latency,
    after: Latency,
}

/// From the signal to each of the primary's log lines, if it came (in order: each is looked
/// for after the one before).
#[derive(Clone, Copy, Default)]
struct Marks {
    checking: Option<Duration>,
    handing_over: Option<Duration>,
    exec: Option<Duration>,
    took_over: Option<Duration>,
    done: Option<Duration>,
}

impl Marks {
    fn between(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
        Some(b?.saturating_sub(a?))
    }
}

/// Section 5: one SIGUSR2 or SIGHUP under load.
struct UpgradeSample {
    event: Event,
    wrk: WrkReport,
    /// Keep-alive and fresh-connection clients together.
    probe: ProbeCounts,
    keepalive: Latencies,
    fresh: Latencies,
    marks: Marks,
    /// Every worker pid changed and as many workers run as before.
    replaced: bool,
    /// The primary still runs under its pid, and `/proc/<pid>/exe` is the deployed inode (an
    /// upgrade) or still the one it started from (a reload).
    primary_kept: bool,
    /// 1-minute load average before the run.
    load1: f64,
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
    /// Section 5, upgrades and reloads in run order.
    upgrade: Vec<UpgradeSample>,
    notes: Vec<String>,
}

fn main() {
    // cargo passes `--bench`; any other bare word selects sections.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    for f in filters.iter().filter(|f| !SECTIONS.contains(&f.as_str())) {
        println!("unknown section {f:?} ignored (sections: {})", SECTIONS.join(", "));
    }
    let run = |section: &str| filters.is_empty() || filters.iter().any(|f| f == section);
    let only_upgrade = !filters.is_empty() && filters.iter().all(|f| f == "upgrade");
    let reps = env_u64("BENCH_REPS", if only_upgrade { 5 } else { 3 }).max(1) as usize;

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
    if (run("load") || run("upgrade")) && wrk.is_none() {
        println!("wrk not found: sections 1 (load) and 5 (upgrade) skipped. Install it with `apt-get install -y wrk`.");
    }
    if node.is_none() {
        println!("node not found: sections 2-4 measure corral only.");
    }
    let kinds: Vec<Kind> = if node.is_some() { vec![Kind::Corral, Kind::Node] } else { vec![Kind::Corral] };
    println!("{reps} repetition(s), medians; each repetition starts fresh server processes");
    println!();

    // Section 5 copies the server from a snapshot taken now: a build that replaces the example
    // during the run changes none of the runs.
    let snapshot = if run("upgrade") && wrk.is_some() {
        match Deployed::new(&http_cluster) {
            Ok(snapshot) => Some(snapshot),
            Err(e) => {
                println!("section 5 (upgrade) skipped: cannot copy the server: {e}");
                None
            }
        }
    } else {
        None
    };

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
        if let Some(snapshot) = &snapshot {
            // Alternating, so that a drift of the machine's load favours neither.
            let order = if rep % 2 == 1 { [Event::Upgrade, Event::Reload] } else { [Event::Reload, Event::Upgrade] };
            for event in order {
                run_upgrade(&mut r, &tag, &snapshot.exe, event);
            }
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

/// Section 5: one SIGUSR2 (after a deploy) or SIGHUP under load.
fn run_upgrade(r: &mut Results, tag: &str, http_cluster: &Path, event: Event) {
    match event_under_load(http_cluster, event, &mut r.notes, tag) {
        Ok(s) => {
            let m = &s.marks;
            let opt = |d: Option<Duration>| d.map_or("?".into(), fmt_dur);
            let split = match event {
                Event::Upgrade => format!(" (exec at {}, took over at {})", opt(m.exec), opt(m.took_over)),
                Event::Reload => String::new(),
            };
            eprintln!(
                "{tag} {:<15} under load: done {}{split}; {}; fresh p99 during {} max {}; pids replaced: {}, \
                 primary kept: {}",
                event.label(),
                opt(m.done),
                fmt_load(&s.wrk, &s.probe),
                fmt_dur(s.fresh.during.p99),
                fmt_dur(s.fresh.during.max),
                s.replaced,
                s.primary_kept
            );
            r.upgrade.push(s);
        }
        Err(e) => r.notes.push(format!("{tag} {} failed: {e}", event.label())),
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

/// Section 5: a copy of `http_cluster` in a directory of its own, removed on drop.
struct Deployed {
    dir: PathBuf,
    exe: PathBuf,
}

impl Deployed {
    fn new(src: &Path) -> Result<Deployed, String> {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("corral-upgrade-bench-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let deployed = Deployed { exe: dir.join("http_cluster"), dir };
        std::fs::copy(src, &deployed.exe).map_err(|e| format!("copy to {}: {e}", deployed.exe.display()))?;
        Ok(deployed)
    }

    /// Deploys `src` again as a deploy does: written beside, then renamed over (a new inode,
    /// while the running image keeps the old one). Returns the new inode.
    fn redeploy(&self, src: &Path) -> Result<u64, String> {
        let beside = self.dir.join(".http_cluster.new");
        std::fs::copy(src, &beside).map_err(|e| format!("copy to {}: {e}", beside.display()))?;
        std::fs::rename(&beside, &self.exe).map_err(|e| format!("rename over {}: {e}", self.exe.display()))?;
        inode(&self.exe)
    }
}

impl Drop for Deployed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The inode of `path` (symbolic links followed: `/proc/<pid>/exe` gives the running image's).
fn inode(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path).map(|m| m.ino()).map_err(|e| format!("stat {}: {e}", path.display()))
}

fn exe_inode(pid: i32) -> Result<u64, String> {
    inode(Path::new(&format!("/proc/{pid}/exe")))
}

/// Section 5: SIGUSR2 (after a deploy) or SIGHUP `UPGRADE_AT` into a wrk run against corral
/// (2 workers, rr) started from a copy of `http_cluster`.
fn event_under_load(
    http_cluster: &Path,
    event: Event,
    notes: &mut Vec<String>,
    tag: &str,
) -> Result<UpgradeSample, String> {
    let load1 = load_average().split_whitespace().next().and_then(|l| l.parse().ok()).unwrap_or(f64::NAN);
    let deployed = Deployed::new(http_cluster)?;
    let mut server = start(Kind::Corral, &deployed.exe, WORKERS, 0, "info")?;
    let primary = server.pid();
    check_serving(&server)?;
    let before = children(primary);
    let started_inode = exe_inode(primary)?;
    // The image the primary should run at the end.
    let expected_inode = match event {
        Event::Upgrade => deployed.redeploy(http_cluster)?,
        Event::Reload => started_inode,
    };

    let wrk = wrk::spawn(server.port, WRK_SECS)?;
    let until = wrk.started + Duration::from_secs(WRK_SECS);
    let keepalive = spawn_probe(server.port, until);
    let fresh = spawn_fresh_probe(server.port, until);
    sleep_until(wrk.started + UPGRADE_AT);
    let signalled = Instant::now();
    kill(Pid::from_raw(primary), event.signal()).map_err(|e| format!("{:?}: {e}", event.signal()))?;
    let report = wrk.finish()?;
    let (keepalive, fresh) = (join_log(keepalive), join_log(fresh));

    // The done line (usually long before wrk's end), then the workers: all new.
    let deadline = signalled + UPGRADE_TIMEOUT;
    while server.log_line_after(signalled, event.done_line()).is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + ORPHAN_TIMEOUT;
    let (after, replaced) = loop {
        let after = children(primary);
        let replaced = !before.is_empty() && after.len() == before.len() && after.is_disjoint(&before);
        if replaced || Instant::now() >= deadline {
            break (after, replaced);
        }
        thread::sleep(Duration::from_millis(20));
    };
    let running_inode = exe_inode(primary).ok();
    let primary_kept = alive_in_group(primary, primary) && running_inode == Some(expected_inode);

    // Each line looked for after the one before.
    let mut from = signalled;
    let mut mark = |needle: &str| {
        let at = server.log_line_after(from, needle)?;
        from = at;
        Some(at - signalled)
    };
    let marks = match event {
        Event::Upgrade => Marks {
            checking: mark(LOG_CHECKING),
            handing_over: mark(LOG_HANDING_OVER),
            exec: mark(LOG_EXEC),
            took_over: mark(LOG_TOOK_OVER),
            done: mark(LOG_UPGRADED),
        },
        Event::Reload => Marks { done: mark(LOG_RELOADED), ..Marks::default() },
    };
    let end = marks.done.map_or(until, |d| signalled + d);
    let latencies = |log: &ProbeLog| Latencies {
        all: Latency::of(&log.answered, wrk_start(until), until),
        before: Latency::of(&log.answered, wrk_start(until), signalled),
        during: Latency::of(&log.answered, signalled, end),
        after: Latency::of(&log.answered, signalled, signalled + AFTER_SIGNAL),
    };
    let mut probe = keepalive.counts;
    probe.add(fresh.counts);
    let sample = UpgradeSample {
        event,
        keepalive: latencies(&keepalive),
        fresh: latencies(&fresh),
        wrk: report,
        probe,
        marks,
        replaced,
        primary_kept,
        load1,
    };

    let failed = sample.wrk.failed() + probe.lost + probe.non2xx + probe.refused > 0;
    if failed || !replaced || !primary_kept || marks.done.is_none() {
        notes.push(format!(
            "{tag} {}: {}; worker pids {:?} -> {:?}; exe inode {started_inode} -> {running_inode:?} (expected \
             {expected_inode}); the primary's log from the signal on:\n{}\n    wrk said:\n{}",
            event.label(),
            fmt_load(&sample.wrk, &sample.probe),
            sorted(&before),
            sorted(&after),
            indent(&server.log_since(signalled)),
            indent(&sample.wrk.output)
        ));
    }
    let stopped = server.terminate();
    if !stopped.clean() {
        notes.push(format!(
            "{tag} {}: stopping it after the run: {}",
            event.label(),
            stopped.problems().unwrap_or_default()
        ));
    }
    Ok(sample)
}

/// When the wrk run that ends at `until` started.
fn wrk_start(until: Instant) -> Instant {
    until - Duration::from_secs(WRK_SECS)
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

/// One answered (2xx) probe request: when it started, and how long it took to its complete
/// answer (the connect included, when it opened a connection).
#[derive(Clone, Copy)]
struct Answered {
    at: Instant,
    took: Duration,
}

/// What some probe clients saw: the counts, and every answered request.
#[derive(Default)]
struct ProbeLog {
    counts: ProbeCounts,
    answered: Vec<Answered>,
}

impl ProbeLog {
    fn answered(&mut self, at: Instant, status: u16) {
        if (200..300).contains(&status) {
            self.counts.ok += 1;
            self.answered.push(Answered { at, took: at.elapsed() });
        } else {
            self.counts.non2xx += 1;
        }
    }
}

/// Starts `PROBE_CONNECTIONS` keep-alive clients of 127.0.0.1:`port` that run until `until`.
fn spawn_probe(port: u16, until: Instant) -> Vec<thread::JoinHandle<ProbeLog>> {
    (0..PROBE_CONNECTIONS).map(|_| thread::spawn(move || probe_connection(port, until))).collect()
}

/// Starts `FRESH_CLIENTS` clients of 127.0.0.1:`port` that open a connection per request,
/// until `until`.
fn spawn_fresh_probe(port: u16, until: Instant) -> Vec<thread::JoinHandle<ProbeLog>> {
    (0..FRESH_CLIENTS).map(|_| thread::spawn(move || probe_fresh(port, until))).collect()
}

fn join_probe(threads: Vec<thread::JoinHandle<ProbeLog>>) -> ProbeCounts {
    join_log(threads).counts
}

/// The clients' logs, merged.
fn join_log(threads: Vec<thread::JoinHandle<ProbeLog>>) -> ProbeLog {
    let mut total = ProbeLog::default();
    for t in threads {
        if let Ok(log) = t.join() {
            total.counts.add(log.counts);
            total.answered.extend(log.answered);
        }
    }
    total
}

/// One client: sends `GET /` on a fresh connection, `Connection: close`, pauses, and again,
/// counting what every request came to.
fn probe_fresh(port: u16, until: Instant) -> ProbeLog {
    let mut log = ProbeLog::default();
    while Instant::now() < until {
        let began = Instant::now();
        match http::Connection::open(port, HTTP_TIMEOUT) {
            // No one accepted the connection, so no request was lost.
            Err(_) => log.counts.refused += 1,
            Ok(conn) => match conn.get_close("/") {
                Ok(answer) => log.answered(began, answer.status),
                Err(_) => log.counts.lost += 1,
            },
        }
        thread::sleep(PROBE_PAUSE);
    }
    log
}

/// One client: sends `GET /` back to back on a keep-alive connection, reconnects after
/// `Connection: close` or an error (as wrk does), and counts what every request came to.
fn probe_connection(port: u16, until: Instant) -> ProbeLog {
    let mut log = ProbeLog::default();
    let mut open: Option<http::Connection> = None;
    while Instant::now() < until {
        let began = Instant::now();
        let mut conn = match open.take() {
            Some(conn) => conn,
            None => match http::Connection::open(port, HTTP_TIMEOUT) {
                Ok(conn) => conn,
                Err(_) => {
                    // No one accepted the connection, so no request was lost.
                    log.counts.refused += 1;
                    thread::sleep(PROBE_PAUSE);
                    continue;
                }
            },
        };
        match conn.get("/") {
            Ok(answer) => {
                log.answered(began, answer.status);
                if !answer.close {
                    open = Some(conn);
                }
            }
            Err(_) => log.counts.lost += 1,
        }
        thread::sleep(PROBE_PAUSE);
    }
    log
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

    if !r.upgrade.is_empty() {
        print_upgrade(&r.upgrade);
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

/// Table 5: upgrade beside reload, one row per figure, medians over the runs.
fn print_upgrade(samples: &[UpgradeSample]) {
    use comfy_table::{CellAlignment, Table, presets};

    let of = |e: Event| samples.iter().filter(|s| s.event == e).collect::<Vec<_>>();
    let (up, hup) = (of(Event::Upgrade), of(Event::Reload));
    let med = |v: &[&UpgradeSample], f: &dyn Fn(&UpgradeSample) -> Option<Duration>| {
        let d: Vec<Duration> = v.iter().filter_map(|s| f(s)).collect();
        (!d.is_empty()).then(|| median_dur(&d))
    };
    let cell = |d: Option<Duration>| d.map_or("–".into(), fmt_dur);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    };

    let mut table = Table::new();
    table.load_preset(presets::ASCII_MARKDOWN).set_header(vec![
        "figure (median over runs)".to_owned(),
        format!("{} ({} runs)", Event::Upgrade.label(), up.len()),
        format!("{} ({} runs)", Event::Reload.label(), hup.len()),
        "upgrade/reload".to_owned(),
    ]);
    let mut dur_row = |label: &str, f: &dyn Fn(&UpgradeSample) -> Option<Duration>, both: bool| {
        let (u, h) = (med(&up, f), if both { med(&hup, f) } else { None });
        table.add_row(vec![label.to_owned(), cell(u), cell(h), ratio(u.map(secs), h.map(secs))]);
    };
    dur_row("signal → done (`upgrade complete` / `rolling reload done`)", &|s| s.marks.done, true);
    dur_row("  signal → `upgrade: exec` (preflight + handover)", &|s| s.marks.exec, false);
    dur_row("    signal → `upgrade: checking the new executable`", &|s| s.marks.checking, false);
    dur_row(
        "    checking → `upgrade: handing over` (preflight)",
        &|s| Marks::between(s.marks.checking, s.marks.handing_over),
        false,
    );
    dur_row("    handing over → exec", &|s| Marks::between(s.marks.handing_over, s.marks.exec), false);
    dur_row("  exec → `upgrade complete`", &|s| Marks::between(s.marks.exec, s.marks.done), false);
    dur_row("    exec → `the new image took over`", &|s| Marks::between(s.marks.exec, s.marks.took_over), false);
    dur_row("    took over → complete (rolling reload)", &|s| Marks::between(s.marks.took_over, s.marks.done), false);
    dur_row("wrk p50, whole run", &|s| Some(Duration::from_secs_f64(s.wrk.p50_us / 1e6)), true);
    dur_row("wrk p99, whole run", &|s| Some(Duration::from_secs_f64(s.wrk.p99_us / 1e6)), true);
    for (kind, get) in [
        ("keep-alive", (|s: &UpgradeSample| s.keepalive) as fn(&UpgradeSample) -> Latencies),
        ("fresh-connection", |s: &UpgradeSample| s.fresh),
    ] {
        let after = AFTER_SIGNAL.as_secs_f64();
        dur_row(&format!("probe {kind} p50, whole run"), &|s| Some(get(s).all.p50), true);
        dur_row(&format!("probe {kind} p99, whole run"), &|s| Some(get(s).all.p99), true);
        dur_row(&format!("probe {kind} p99, before the signal"), &|s| Some(get(s).before.p99), true);
        dur_row(&format!("probe {kind} p50, signal → done"), &|s| Some(get(s).during.p50), true);
        dur_row(&format!("probe {kind} p99, signal → done"), &|s| Some(get(s).during.p99), true);
        dur_row(&format!("probe {kind} max, signal → done"), &|s| Some(get(s).during.max), true);
        dur_row(&format!("probe {kind} p99, {after} s from the signal"), &|s| Some(get(s).after.p99), true);
        dur_row(&format!("probe {kind} max, {after} s from the signal"), &|s| Some(get(s).after.max), true);
    }

    let mut median_row = |label: &str, f: fn(&UpgradeSample) -> f64| {
        let m = |v: &[&UpgradeSample]| (!v.is_empty()).then(|| median(v.iter().map(|s| f(s)).collect()));
        let (u, h) = (m(&up), m(&hup));
        let cell = |x: Option<f64>| x.map_or("–".into(), thousands);
        table.add_row(vec![label.to_owned(), cell(u), cell(h), ratio(u, h)]);
    };
    median_row("wrk requests/s", |s| s.wrk.rps);
    median_row("probe requests answered, signal → done (fresh + keep-alive)", |s| {
        (s.fresh.during.n + s.keepalive.during.n) as f64
    });

    let count = |v: &[&UpgradeSample], f: &dyn Fn(&UpgradeSample) -> u64| median_max(v.iter().map(|s| f(s)));
    let mut count_row = |label: &str, f: &dyn Fn(&UpgradeSample) -> u64| {
        let (u, h) = (count(&up, f), count(&hup, f));
        table.add_row(vec![
            label.to_owned(),
            fmt_median_max(u),
            fmt_median_max(h),
            ratio(Some(u.0 as f64), Some(h.0 as f64)),
        ]);
    };
    count_row("wrk failed: read+write+timeout+non-2xx [max]", &|s| s.wrk.failed());
    count_row("wrk connect errors [max]", &|s| s.wrk.connect);
    count_row("probe refused [max]", &|s| s.probe.refused);
    count_row("probe lost + non-2xx [max]", &|s| s.probe.lost + s.probe.non2xx);
    let share = |v: &[&UpgradeSample], f: fn(&UpgradeSample) -> bool| {
        format!("{}/{}", v.iter().filter(|s| f(s)).count(), v.len())
    };
    table.add_row(vec![
        "primary: same pid; exe = deployed inode (upgrade) / unchanged (reload)".to_owned(),
        share(&up, |s| s.primary_kept),
        share(&hup, |s| s.primary_kept),
        String::new(),
    ]);
    table.add_row(vec![
        "every worker pid replaced".to_owned(),
        share(&up, |s| s.replaced),
        share(&hup, |s| s.replaced),
        String::new(),
    ]);
    let load = |v: &[&UpgradeSample]| format!("{:.2}", median(v.iter().map(|s| s.load1).collect()));
    table.add_row(vec!["1-min load average before the run".to_owned(), load(&up), load(&hup), String::new()]);
    for i in 1..4 {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }

    println!();
    println!(
        "5. Upgrade of the primary (SIGUSR2 after a deploy) beside a rolling reload (SIGHUP), @{}s into \
         wrk -t1 -c{} -d{WRK_SECS}s --latency, {WORKERS} workers, rr, plus a probe of {PROBE_CONNECTIONS} \
         keep-alive and {FRESH_CLIENTS} fresh-connection clients",
        UPGRADE_AT.as_secs(),
        wrk::CONNECTIONS
    );
    println!("{table}");
    let all = |f: fn(&UpgradeSample) -> bool| samples.iter().all(f);
    let met = all(|s| s.wrk.failed() + s.probe.refused + s.probe.lost + s.probe.non2xx == 0)
        && all(|s| s.replaced && s.primary_kept && s.marks.done.is_some());
    println!(
        "target 0 failed, 0 refused, same primary pid, every worker replaced (both events, every run): {}",
        verdict(met)
    );
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
