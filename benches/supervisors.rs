//! `corral run` beside other supervisors ("corral run" issue): the same Node app under
//! `corral run` and PM2 cluster mode, the same Python app under `corral run` and gunicorn.
//!
//! ```text
//! cargo build --release --bin corral              # the supervisor; this bench does not build it
//! npm install -g pm2; pip install gunicorn        # or any prefix/venv on PATH
//! BENCH_REPS=3 cargo bench --bench supervisors    # every section, medians over repetitions
//! cargo bench --bench supervisors -- node kill    # only some apps (node, python) and sections
//!                                                 # (rss, kill, reload)
//! ```
//!
//! The four setups, each with 2 workers on 127.0.0.1 (a free port picked by the OS):
//!
//! - **corral / node**: `corral run -w 2 -l 127.0.0.1:PORT --ready delay:300 -- node
//!   tests/programs/activated_worker.js`
//! - **pm2 / node**: `pm2 start benches/node/pm2_app.js -i 2` (cluster mode), `PORT` in its
//!   environment, `PM2_HOME` a fresh directory under /tmp; `pm2 kill` at the end. The app is
//!   the corral worker's twin, listening on `PORT` instead of fd 3 and draining on SIGINT,
//!   PM2's stop signal, as the corral worker drains on SIGTERM.
//! - **corral / python**: `corral run -w 2 -l 127.0.0.1:PORT -- python3
//!   tests/programs/activated_worker.py` (`--ready notify`, the default; python3 resolved to
//!   the interpreter itself, `sys.executable`, so no pyenv shim runs on each start)
//! - **gunicorn / python**: `gunicorn -w 2 -b 127.0.0.1:PORT -c benches/python/gunicorn_conf.py
//!   wsgi_app:app` (sync workers; the config file prints the ready line)
//!
//! Every repetition starts each setup afresh, in turn (so that the machine's noise hits all
//! alike), waits until both workers answer, and measures:
//!
//! 1. **rss** — VmRSS (`/proc/<pid>/status`) of the supervisor, [`IDLE`] after both workers
//!    answered: corral's primary, PM2's God daemon (`$PM2_HOME/pm2.pid`), gunicorn's arbiter;
//!    RssAnon (private memory) and a worker's VmRSS beside it.
//! 2. **kill** — [`KILLS`] times, SIGKILL of a worker that has served for more than 1.1 s (a
//!    child of the supervisor in `/proc`), then a `GET /` on a fresh connection every
//!    millisecond, each in its own thread, until a 200 names a pid that was not a worker before
//!    the kill: that time, and the poll requests that failed (refused, reset, non-200) or hung
//!    ([`HTTP_TIMEOUT`]) from the kill until then.
//! 3. **reload** — [`CLIENTS`] closed-loop clients, each `GET /slow` (50 ms) on a fresh
//!    connection back to back for [`LOAD_SECS`] s; [`RELOAD_AT`] into it the reload: SIGHUP to
//!    corral's primary or gunicorn's arbiter, `pm2 reload` for PM2. Requests ok (2xx), non-2xx,
//!    refused (connect failed) and failed (sent, no complete answer), whether every worker pid
//!    was replaced (the supervisor's children, before and after) and when (the first time
//!    `/proc` shows as many workers as before, all new, counted from the reload).
//!
//! The report has the median over repetitions of every figure (per repetition the median of
//! its kills), the largest failure counts, and the issue's goals against PM2: no request lost
//! where PM2 loses some, kill → serving ≥ 5× faster, supervisor RSS ≤ 1/5 of PM2's daemon.
//! A supervisor that is not installed (`pm2`, `gunicorn` on PATH, or `node`, `python3`) is
//! skipped with a note. Every address is 127.0.0.1, every wait bounded, every process started
//! is stopped (PM2 by `pm2 kill`, then SIGKILL of its daemon's tree) even on failure.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

mod support;
use support::env::env_u64;
use support::http;
use support::poll::{self, Polls};
use support::proc::{children, descendants, load_average, rss_kib};
use support::process::{self, ORPHAN_TIMEOUT, Server, free_port, sleep_until, wait_bounded};
use support::report::{fmt_dur, fmt_kib, fmt_median_max, machine, print_notes, thousands, tool_version, verdict};
use support::stats::{median, median_dur, median_max, median_u64};

/// Workers of every setup.
const WORKERS: usize = 2;
/// Idle time, after both workers answered, before memory is read.
const IDLE: Duration = Duration::from_secs(2);
/// SIGKILLs per setup and repetition.
const KILLS: usize = 3;
/// A worker is killed only once it has served this long (corral's `min_uptime` and PM2's are
/// 1 s: a worker that lived longer is restarted without backoff).
const UPTIME_BEFORE_KILL: Duration = Duration::from_millis(1100);
/// How long a replacement may take to answer before the kill counts as failed.
const REPLACE_TIMEOUT: Duration = Duration::from_secs(10);
/// A kill → serving slower than this is shown on stderr with the supervisor's log.
const SLOW_KILL: Duration = Duration::from_millis(200);
/// Closed-loop clients under load, the run's length, and when the reload is triggered.
const CLIENTS: usize = 8;
const LOAD_SECS: u64 = 6;
const RELOAD_AT: Duration = Duration::from_secs(2);
/// How long after the load the old workers may take to be gone.
const REPLACED_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect/read/write timeout of every HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long both workers may take to answer after start, and a `pm2` command to finish.
const SERVING_TIMEOUT: Duration = Duration::from_secs(20);
const PM2_TIMEOUT: Duration = Duration::from_secs(30);

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The sections, in run order, and the apps; bare command-line words select some of them.
const SECTIONS: [&str; 3] = ["rss", "kill", "reload"];
const APPS: [&str; 2] = ["node", "python"];

/// The four setups.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    CorralNode,
    Pm2,
    CorralPython,
    Gunicorn,
}

const SETUPS: [Setup; 4] = [Setup::CorralNode, Setup::Pm2, Setup::CorralPython, Setup::Gunicorn];

impl Setup {
    fn app(self) -> &'static str {
        match self {
            Setup::CorralNode | Setup::Pm2 => "node",
            Setup::CorralPython | Setup::Gunicorn => "python",
        }
    }

    fn supervisor(self) -> &'static str {
        match self {
            Setup::CorralNode | Setup::CorralPython => "corral run",
            Setup::Pm2 => "pm2",
            Setup::Gunicorn => "gunicorn",
        }
    }

    fn label(self) -> String {
        format!("{} / {}", self.supervisor(), self.app())
    }
}

/// Where the programs are, found once.
struct Tools {
    corral: PathBuf,
    /// The Python interpreter itself (`sys.executable`), not a shim.
    python: Option<PathBuf>,
    node: bool,
    pm2: bool,
    gunicorn: bool,
}

impl Tools {
    fn has(&self, setup: Setup) -> bool {
        match setup {
            Setup::CorralNode => self.node,
            Setup::Pm2 => self.node && self.pm2,
            Setup::CorralPython => self.python.is_some(),
            Setup::Gunicorn => self.gunicorn,
        }
    }
}

/// What one repetition of one setup measured (a section not run, or failed, is `None`).
#[derive(Default)]
struct Sample {
    rss: Option<Rss>,
    /// Median kill → serving of the repetition's kills, and its poll requests.
    kill: Option<(Duration, poll::PollCounts)>,
    reload: Option<Reload>,
}

struct Rss {
    supervisor_kib: u64,
    supervisor_anon_kib: u64,
    worker_kib: u64,
}

struct Reload {
    load: Load,
    replaced: bool,
    /// From the reload to the first time every worker was new.
    replaced_after: Option<Duration>,
}

/// What the closed-loop clients' requests came to.
#[derive(Default, Clone, Copy)]
struct Load {
    ok: u64,
    non2xx: u64,
    /// The connect failed: no one listened.
    refused: u64,
    /// Sent, and no complete answer came (reset, closed, timed out).
    failed: u64,
}

impl Load {
    fn add(&mut self, o: Load) {
        self.ok += o.ok;
        self.non2xx += o.non2xx;
        self.refused += o.refused;
        self.failed += o.failed;
    }

    /// Every request that did not get a 2xx.
    fn lost(&self) -> u64 {
        self.non2xx + self.refused + self.failed
    }
}

fn main() {
    // cargo passes `--bench`; any other bare word selects apps or sections.
    let words: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    for w in words.iter().filter(|w| !SECTIONS.contains(&w.as_str()) && !APPS.contains(&w.as_str())) {
        println!("unknown word {w:?} ignored (sections: {}; apps: {})", SECTIONS.join(", "), APPS.join(", "));
    }
    let chosen = |list: &[&str], item: &str| {
        let picked: Vec<&String> = words.iter().filter(|w| list.contains(&w.as_str())).collect();
        picked.is_empty() || picked.iter().any(|w| *w == item)
    };
    let sections: Vec<&str> = SECTIONS.iter().copied().filter(|s| chosen(&SECTIONS, s)).collect();
    let reps = env_u64("BENCH_REPS", 3).max(1) as usize;

    let corral = process::release_dir().join("corral");
    if !corral.is_file() {
        println!(
            "{} not found: build it first with `cargo build --release --bin corral` (same CARGO_TARGET_DIR \
             as this bench).",
            corral.display()
        );
        return;
    }
    let node = tool_version("node", &["--version"]);
    let python = python_executable();
    let pm2 = pm2_version();
    let gunicorn = tool_version("gunicorn", &["--version"]);
    println!("Machine: {}, load average {}", machine(), load_average());
    println!(
        "Tools: node {}; python {}; pm2 {}; {}",
        node.as_deref().unwrap_or("not found"),
        python.as_ref().map_or_else(|| "not found".into(), |p| p.display().to_string()),
        pm2.as_deref().unwrap_or("not found"),
        gunicorn.as_deref().unwrap_or("gunicorn not found"),
    );
    let tools = Tools { corral, python, node: node.is_some(), pm2: pm2.is_some(), gunicorn: gunicorn.is_some() };
    let mut notes = Vec::new();
    if node.is_none() {
        notes.push("node not found: the Node app (corral run and PM2) skipped.".to_owned());
    } else if pm2.is_none() {
        notes.push("pm2 not found on PATH: PM2 skipped. Install it with `npm install -g pm2`.".to_owned());
    }
    if tools.python.is_none() {
        notes.push("python3 not found: corral run with the Python app skipped.".to_owned());
    }
    if gunicorn.is_none() {
        notes.push(
            "gunicorn not found on PATH: gunicorn skipped. Install it with `pip install gunicorn` (in a venv \
             whose bin/ is on PATH)."
                .to_owned(),
        );
    }
    for n in &notes {
        println!("{n}");
    }
    let setups: Vec<Setup> = SETUPS.into_iter().filter(|s| chosen(&APPS, s.app()) && tools.has(*s)).collect();
    println!(
        "{reps} repetition(s), medians; sections {}; each repetition starts every setup afresh, in turn",
        sections.join(", ")
    );
    println!();

    let started = Instant::now();
    let mut samples: Vec<Vec<Sample>> = SETUPS.iter().map(|_| Vec::new()).collect();
    for rep in 1..=reps {
        for &setup in &setups {
            let tag = format!("[rep {rep}/{reps}] {}", setup.label());
            let sample = measure(setup, &tools, &sections, &tag, &mut notes);
            samples[setup as usize].push(sample);
        }
    }

    print_report(&samples, reps, &setups);
    print_notes(&notes);
    println!();
    println!("Total time: {:.0} s; load average now {}", started.elapsed().as_secs_f64(), load_average());
}

// ---------------------------------------------------------------------------------------------
// One repetition of one setup
// ---------------------------------------------------------------------------------------------

/// Starts `setup`, runs the sections on it, stops it.
fn measure(setup: Setup, tools: &Tools, sections: &[&str], tag: &str, notes: &mut Vec<String>) -> Sample {
    let mut sample = Sample::default();
    let running = match Running::start(setup, tools) {
        Ok(running) => running,
        Err(e) => {
            eprintln!("{tag}: start failed: {e}");
            notes.push(format!("{tag}: start failed: {}", first_line(&e)));
            return sample;
        }
    };
    let mut failed = |what: &str, e: String, running: &Running| {
        let e = running.with_log(e);
        eprintln!("{tag}: {what} failed: {e}");
        notes.push(format!("{tag}: {what} failed: {}", first_line(&e)));
    };
    if sections.contains(&"rss") {
        match idle_rss(&running) {
            Ok(rss) => {
                eprintln!(
                    "{tag}: supervisor VmRSS {} (anon {}), worker {}",
                    fmt_kib(rss.supervisor_kib as f64),
                    fmt_kib(rss.supervisor_anon_kib as f64),
                    fmt_kib(rss.worker_kib as f64)
                );
                sample.rss = Some(rss);
            }
            Err(e) => failed("rss", e, &running),
        }
    }
    if sections.contains(&"kill") {
        match kills(&running) {
            Ok((times, polls)) => {
                let times_s: Vec<String> = times.iter().map(|t| fmt_dur(*t)).collect();
                eprintln!(
                    "{tag}: kill → serving {} ; polls failed {} hung {} of {}",
                    times_s.join(", "),
                    polls.failed,
                    polls.hung,
                    polls.all
                );
                sample.kill = Some((median_dur(&times), polls));
            }
            Err(e) => failed("kill", e, &running),
        }
    }
    if sections.contains(&"reload") {
        match reload_under_load(&running) {
            Ok(reload) => {
                let l = reload.load;
                eprintln!(
                    "{tag}: reload under load: ok {} non-2xx {} refused {} failed {}; replaced {} after {}",
                    l.ok,
                    l.non2xx,
                    l.refused,
                    l.failed,
                    reload.replaced,
                    reload.replaced_after.map_or_else(|| "?".into(), fmt_dur)
                );
                sample.reload = Some(reload);
            }
            Err(e) => failed("reload", e, &running),
        }
    }
    if let Some(problem) = running.stop() {
        eprintln!("{tag}: stop: {problem}");
        notes.push(format!("{tag}: stop: {problem}"));
    }
    sample
}

/// Section 1: the supervisor's memory, idle.
fn idle_rss(running: &Running) -> Result<Rss, String> {
    thread::sleep(IDLE);
    let workers = running.workers();
    if workers.len() != WORKERS {
        return Err(format!("{} workers instead of {WORKERS}: {:?}", workers.len(), sorted(&workers)));
    }
    let (supervisor_kib, supervisor_anon_kib) = rss_kib(running.supervisor)?;
    let mut worker = 0;
    for &w in &workers {
        worker += rss_kib(w)?.0;
    }
    Ok(Rss { supervisor_kib, supervisor_anon_kib, worker_kib: worker / workers.len() as u64 })
}

/// Section 2: `KILLS` times, SIGKILL a worker that has served for a while, and time until a
/// new pid answers.
fn kills(running: &Running) -> Result<(Vec<Duration>, poll::PollCounts), String> {
    let mut times = Vec::with_capacity(KILLS);
    let mut polls = Polls::default();
    // Both workers answered at the latest now.
    let mut serving_since = Instant::now();
    let result = (|| {
        for i in 0..KILLS {
            sleep_until(serving_since + UPTIME_BEFORE_KILL);
            let before = running.workers();
            if before.len() != WORKERS {
                return Err(format!("{} workers instead of {WORKERS}: {:?}", before.len(), sorted(&before)));
            }
            // The workers in turn, in pid order.
            let victim = sorted(&before)[i % WORKERS];
            let killed = Instant::now();
            kill(Pid::from_raw(victim), Signal::SIGKILL).map_err(|e| format!("SIGKILL {victim}: {e}"))?;
            let (_, answered) = poll::poll_new_pid(
                running.port,
                "/",
                pid_in,
                &before,
                HTTP_TIMEOUT,
                killed + REPLACE_TIMEOUT,
                &mut polls,
            )
            .map_err(|e| format!("{e} ({REPLACE_TIMEOUT:?} after SIGKILL of {victim})"))?;
            times.push(answered - killed);
            if answered - killed > SLOW_KILL {
                if let How::Server(server) = &running.how {
                    eprintln!(
                        "slow kill → serving ({}), supervisor's log since SIGKILL of {victim}:\n{}",
                        fmt_dur(answered - killed),
                        server.log_since(killed)
                    );
                }
            }
            serving_since = answered;
        }
        Ok(())
    })();
    let counts = polls.finish_counts();
    result.map(|()| (times, counts))
}

/// Section 3: the reload `RELOAD_AT` into a closed-loop run.
fn reload_under_load(running: &Running) -> Result<Reload, String> {
    // A replacement started by the kills must be serving before the load: wait for both.
    wait_serving(running)?;
    let before = running.workers();
    if before.len() != WORKERS {
        return Err(format!("{} workers instead of {WORKERS}: {:?}", before.len(), sorted(&before)));
    }
    let start = Instant::now();
    let until = start + Duration::from_secs(LOAD_SECS);
    let port = running.port;
    let clients: Vec<_> = (0..CLIENTS).map(|_| thread::spawn(move || closed_loop(port, until))).collect();
    sleep_until(start + RELOAD_AT);
    let reloaded = Instant::now();
    let reload_result = running.reload();
    // Watch the workers until all are new (or the time is up), while the load goes on.
    let deadline = until + REPLACED_TIMEOUT;
    let (replaced_after, after) = loop {
        let now = running.workers();
        if now.len() == before.len() && now.is_disjoint(&before) {
            break (Some(reloaded.elapsed()), now);
        }
        if Instant::now() >= deadline {
            break (None, now);
        }
        thread::sleep(Duration::from_millis(5));
    };
    let mut load = Load::default();
    for c in clients {
        load.add(c.join().map_err(|_| "a client thread panicked".to_owned())?);
    }
    reload_result?;
    let replaced = replaced_after.is_some();
    if !replaced {
        return Err(format!(
            "not every worker was replaced: {:?} before, {:?} after (load: ok {} lost {})",
            sorted(&before),
            sorted(&after),
            load.ok,
            load.lost()
        ));
    }
    Ok(Reload { load, replaced, replaced_after })
}

/// One client: `GET /slow` on a fresh connection, back to back, until `until`.
fn closed_loop(port: u16, until: Instant) -> Load {
    let mut load = Load::default();
    while Instant::now() < until {
        match http::get(port, "/slow", HTTP_TIMEOUT) {
            Ok(answer) if (200..300).contains(&answer.status) => load.ok += 1,
            Ok(_) => load.non2xx += 1,
            Err(e) if e.to_string().starts_with("connect") => {
                load.refused += 1;
                // Refused at once: do not spin.
                thread::sleep(Duration::from_millis(1));
            }
            Err(_) => load.failed += 1,
        }
    }
    load
}

// ---------------------------------------------------------------------------------------------
// The setups: start, workers, reload, stop
// ---------------------------------------------------------------------------------------------

/// A started setup whose workers both answered.
struct Running {
    port: u16,
    /// corral's primary, PM2's God daemon, gunicorn's arbiter.
    supervisor: i32,
    how: How,
}

enum How {
    /// A child of ours in its own process group (corral run, gunicorn).
    Server(Server),
    /// PM2's daemon (not our child) with its home; dropping it kills it.
    Pm2(Pm2),
}

impl Running {
    fn start(setup: Setup, tools: &Tools) -> Result<Running, String> {
        let port = free_port()?;
        let running = match setup {
            Setup::CorralNode | Setup::CorralPython => {
                let mut cmd = Command::new(&tools.corral);
                cmd.args(["run", "-w", &WORKERS.to_string(), "-l", &format!("127.0.0.1:{port}")]);
                if setup == Setup::CorralNode {
                    cmd.args(["--ready", "delay:300", "--", "node"]).arg(script("tests/programs/activated_worker.js"));
                } else {
                    let python = tools.python.as_ref().expect("setup chosen only with python");
                    cmd.arg("--").arg(python).arg(script("tests/programs/activated_worker.py"));
                }
                cmd.env("RUST_LOG", "info").env("NO_COLOR", "1").env_remove("NODE_EXTRA_CA_CERTS");
                let server = process::start_until(cmd, "listening on ")?;
                Running { port: server.port, supervisor: server.pid(), how: How::Server(server) }
            }
            Setup::Gunicorn => {
                let mut cmd = Command::new("gunicorn");
                cmd.args(["-w", &WORKERS.to_string(), "-b", &format!("127.0.0.1:{port}"), "--chdir"])
                    .arg(script("benches/python"))
                    .arg("-c")
                    .arg(script("benches/python/gunicorn_conf.py"))
                    .arg("wsgi_app:app")
                    // No __pycache__ left in benches/python.
                    .env("PYTHONDONTWRITEBYTECODE", "1");
                let server = process::start(cmd)?;
                Running { port: server.port, supervisor: server.pid(), how: How::Server(server) }
            }
            Setup::Pm2 => {
                let pm2 = Pm2::start(port)?;
                Running { port, supervisor: pm2.daemon, how: How::Pm2(pm2) }
            }
        };
        if running.port != port {
            return Err(running.with_log(format!("it listens on port {} instead of {port}", running.port)));
        }
        wait_serving(&running).map_err(|e| running.with_log(e))?;
        Ok(running)
    }

    /// The worker processes: the supervisor's children.
    fn workers(&self) -> HashSet<i32> {
        children(self.supervisor)
    }

    /// SIGHUP, or `pm2 reload` (which returns once it is done).
    fn reload(&self) -> Result<(), String> {
        match &self.how {
            How::Server(_) => kill(Pid::from_raw(self.supervisor), Signal::SIGHUP).map_err(|e| format!("SIGHUP: {e}")),
            How::Pm2(pm2) => pm2.run(&["reload", PM2_NAME]),
        }
    }

    /// Stops it (SIGTERM, or `pm2 kill`); what was not clean, if anything.
    fn stop(self) -> Option<String> {
        match self.how {
            How::Server(mut server) => server.terminate().problems(),
            How::Pm2(pm2) => pm2.kill(),
        }
    }

    fn with_log(&self, e: String) -> String {
        match &self.how {
            How::Server(server) => server.with_log(e),
            How::Pm2(pm2) => pm2.with_log(e),
        }
    }
}

/// Waits (bounded) until `WORKERS` different pids, all children of the supervisor, answered.
/// Asks with `WORKERS + 2` concurrent `GET /slow` at a time, so that a busy worker leaves some
/// to the others whatever way the connections are shared.
fn wait_serving(running: &Running) -> Result<(), String> {
    let deadline = Instant::now() + SERVING_TIMEOUT;
    let mut seen = HashSet::new();
    let mut last = String::from("none");
    while Instant::now() < deadline {
        let port = running.port;
        let batch: Vec<_> =
            (0..WORKERS + 2).map(|_| thread::spawn(move || http::get(port, "/slow", HTTP_TIMEOUT))).collect();
        for answer in batch.into_iter().filter_map(|t| t.join().ok()) {
            match answer {
                Ok(http::Response { status: 200, body, .. }) => match pid_in(&body) {
                    Some(pid) => {
                        seen.insert(pid);
                    }
                    None => last = format!("body names no pid: {body:?}"),
                },
                Ok(answer) => last = format!("status {}", answer.status),
                Err(e) => last = e.to_string(),
            }
        }
        let workers = running.workers();
        seen.retain(|pid| workers.contains(pid));
        if seen.len() >= WORKERS {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(10));
    }
    Err(format!(
        "{} of {WORKERS} workers answered within {SERVING_TIMEOUT:?} (workers {:?}, last failure: {last})",
        seen.len(),
        sorted(&running.workers())
    ))
}

/// The PM2 app's name.
const PM2_NAME: &str = "corral-bench";

/// A PM2 daemon of our own (`PM2_HOME` under /tmp) running the app in cluster mode.
struct Pm2 {
    home: PathBuf,
    daemon: i32,
    /// Set once `pm2 kill` ran (then drop only checks).
    killed: bool,
}

impl Pm2 {
    /// `pm2 start pm2_app.js -i 2`, with PORT; the daemon's pid from `pm2.pid`.
    fn start(port: u16) -> Result<Pm2, String> {
        let home = std::env::temp_dir().join(format!("corral-bench-pm2-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).map_err(|e| format!("{}: {e}", home.display()))?;
        let mut pm2 = Pm2 { home, daemon: 0, killed: false };
        let app = script("benches/node/pm2_app.js");
        let app = app.to_str().ok_or("non-UTF-8 path")?;
        let started = pm2
            .run_env(&["start", app, "-i", &WORKERS.to_string(), "--name", PM2_NAME], &[("PORT", &port.to_string())]);
        // The daemon may be up even if the start failed: find it to kill it.
        let pid_file = pm2.home.join("pm2.pid");
        pm2.daemon = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| pm2.with_log(format!("no daemon pid in {}", pid_file.display())))?;
        started.map(|()| pm2)
    }

    fn run(&self, args: &[&str]) -> Result<(), String> {
        self.run_env(args, &[])
    }

    /// `pm2 ARGS` with our `PM2_HOME`, bounded by `PM2_TIMEOUT`; its output goes to
    /// `$PM2_HOME/cli.log`.
    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.home.join("cli.log"))
            .map_err(|e| format!("cli.log: {e}"))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new("pm2");
        cmd.args(args)
            .env("PM2_HOME", &self.home)
            .env_remove("NODE_EXTRA_CA_CERTS")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0);
        let mut child: Child = cmd.spawn().map_err(|e| format!("cannot start pm2: {e}"))?;
        match wait_bounded(&mut child, PM2_TIMEOUT) {
            Ok(Some(status)) if status.success() => Ok(()),
            Ok(Some(status)) => Err(self.with_log(format!("`pm2 {}` exited with {status}", args.join(" ")))),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(self.with_log(format!("`pm2 {}` did not finish within {PM2_TIMEOUT:?}: killed", args.join(" "))))
            }
            Err(e) => Err(format!("waiting for pm2: {e}")),
        }
    }

    /// `e` and the last lines of the pm2 commands' output and of the daemon's log.
    fn with_log(&self, e: String) -> String {
        let tail = |name: &str| {
            let text = std::fs::read_to_string(self.home.join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().rev().take(10).collect();
            lines.into_iter().rev().collect::<Vec<_>>().join("\n      ")
        };
        format!("{e}\n    pm2 output (last lines):\n      {}\n    pm2.log:\n      {}", tail("cli.log"), tail("pm2.log"))
    }

    /// `pm2 kill`, then SIGKILL of whatever of the daemon's tree is left; the home is removed.
    fn kill(mut self) -> Option<String> {
        self.killed = true;
        let mut problems = Vec::new();
        if let Err(e) = self.run(&["kill"]) {
            problems.push(first_line(&e).to_owned());
        }
        let left = self.kill_tree();
        if !left.is_empty() {
            problems.push(format!("{} process(es) outlived `pm2 kill`: SIGKILLed {left:?}", left.len()));
        }
        if problems.is_empty() { None } else { Some(problems.join("; ")) }
    }

    /// Waits up to `ORPHAN_TIMEOUT` for the daemon and its workers to go, then SIGKILLs them.
    fn kill_tree(&self) -> Vec<i32> {
        let tree = if self.daemon > 0 { descendants(self.daemon) } else { HashSet::new() };
        let deadline = Instant::now() + ORPHAN_TIMEOUT;
        loop {
            let alive: Vec<i32> = tree.iter().copied().filter(|&p| is_alive(p)).collect();
            if alive.is_empty() {
                let _ = std::fs::remove_dir_all(&self.home);
                return alive;
            }
            if Instant::now() >= deadline {
                for &p in &alive {
                    let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                }
                let _ = std::fs::remove_dir_all(&self.home);
                return alive;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Pm2 {
    /// A daemon not stopped by [`Pm2::kill`] (an early return) is killed here.
    fn drop(&mut self) {
        if !self.killed {
            let _ = self.run(&["kill"]);
            self.kill_tree();
        }
    }
}

/// A live, non-zombie process.
fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned)))
        .is_some_and(|state| state != "Z" && state != "X")
}

/// `python3`'s own executable (`sys.executable`), not a pyenv shim in front of it.
fn python_executable() -> Option<PathBuf> {
    let out = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && path.is_file()).then_some(path)
}

/// PM2's version from the package.json beside the `pm2` found on PATH (`pm2 --version`
/// would start a daemon).
fn pm2_version() -> Option<String> {
    let path = std::env::var_os("PATH")?;
    let bin = std::env::split_paths(&path).map(|dir| dir.join("pm2")).find(|p| p.is_file())?;
    // <prefix>/pm2/bin/pm2 (node_modules/.bin/pm2 links to it).
    let package = std::fs::canonicalize(bin).ok()?.parent()?.parent()?.join("package.json");
    let json = std::fs::read_to_string(package).ok()?;
    let version = json.split("\"version\"").nth(1)?.split('"').nth(1)?;
    Some(version.to_owned())
}

fn script(relative: &str) -> PathBuf {
    Path::new(ROOT).join(relative)
}

/// `"<slot> <pid>\n"` → `<pid>`.
fn pid_in(body: &str) -> Option<i32> {
    body.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

fn print_report(samples: &[Vec<Sample>], reps: usize, setups: &[Setup]) {
    println!();
    println!(
        "corral run vs PM2 and gunicorn, {WORKERS} workers each, medians over {reps} repetition(s) \
         (runs = repetitions that measured it) [max]"
    );
    println!();
    println!(
        "{:<18} {:>13} {:>13} {:>12} {:>5} | {:>14} {:>13} {:>5} | {:>8} {:>8} {:>8} {:>8} {:>12} {:>9} {:>5}",
        "setup",
        "supervisor",
        "(anon)",
        "worker",
        "runs",
        "kill→serving",
        "polls failed",
        "runs",
        "ok",
        "non-2xx",
        "refused",
        "failed",
        "replaced",
        "after",
        "runs"
    );
    for &setup in setups {
        let v = &samples[setup as usize];
        let rss: Vec<&Rss> = v.iter().filter_map(|s| s.rss.as_ref()).collect();
        let kill: Vec<&(Duration, poll::PollCounts)> = v.iter().filter_map(|s| s.kill.as_ref()).collect();
        let reload: Vec<&Reload> = v.iter().filter_map(|s| s.reload.as_ref()).collect();
        let kib = |f: fn(&Rss) -> u64| {
            if rss.is_empty() {
                "-".into()
            } else {
                fmt_kib(median_u64(&rss.iter().map(|r| f(r)).collect::<Vec<_>>()) as f64)
            }
        };
        let (kill_time, polls_failed) = if kill.is_empty() {
            ("-".into(), "-".into())
        } else {
            let t = median_dur(&kill.iter().map(|k| k.0).collect::<Vec<_>>());
            let failed = median_max(kill.iter().map(|k| (k.1.failed + k.1.hung) as u64));
            (fmt_dur(t), fmt_median_max(failed))
        };
        let load = |f: fn(&Load) -> u64| {
            if reload.is_empty() { "-".into() } else { fmt_median_max(median_max(reload.iter().map(|r| f(&r.load)))) }
        };
        let after: Vec<Duration> = reload.iter().filter_map(|r| r.replaced_after).collect();
        println!(
            "{:<18} {:>13} {:>13} {:>12} {:>5} | {:>14} {:>13} {:>5} | {:>8} {:>8} {:>8} {:>8} {:>12} {:>9} {:>5}",
            setup.label(),
            kib(|r| r.supervisor_kib),
            kib(|r| r.supervisor_anon_kib),
            kib(|r| r.worker_kib),
            rss.len(),
            kill_time,
            polls_failed,
            kill.len(),
            if reload.is_empty() {
                "-".into()
            } else {
                thousands(median(reload.iter().map(|r| r.load.ok as f64).collect()))
            },
            load(|l| l.non2xx),
            load(|l| l.refused),
            load(|l| l.failed),
            format!("{}/{}", reload.iter().filter(|r| r.replaced).count(), reload.len()),
            if after.is_empty() { "-".into() } else { fmt_dur(median_dur(&after)) },
            reload.len()
        );
    }
    println!();
    println!(
        "supervisor = VmRSS of corral's primary / PM2's God daemon / gunicorn's arbiter, {} s idle (anon = \
         RssAnon); kill→serving = SIGKILL of a worker → first 200 from a new pid, median of {KILLS} kills per \
         run; polls failed = poll requests refused, reset, non-200 or hung ({HTTP_TIMEOUT:?}) meanwhile, per \
         run; ok … failed = {CLIENTS} closed-loop clients, GET /slow on fresh connections for {LOAD_SECS} s, \
         reload at {} s; after = reload → every worker pid new",
        IDLE.as_secs(),
        RELOAD_AT.as_secs()
    );

    println!();
    println!("Goals (corral run vs PM2 on the Node app; gunicorn on the Python app for comparison):");
    for (corral, other) in [(Setup::CorralNode, Setup::Pm2), (Setup::CorralPython, Setup::Gunicorn)] {
        let (c, o) = (&samples[corral as usize], &samples[other as usize]);
        let name = other.supervisor();
        let goal = other == Setup::Pm2;
        // Restart: median kill → serving.
        let kill = |v: &[Sample]| {
            let t: Vec<Duration> = v.iter().filter_map(|s| s.kill.as_ref().map(|k| k.0)).collect();
            (!t.is_empty()).then(|| median_dur(&t).as_secs_f64())
        };
        if let (Some(ct), Some(ot)) = (kill(c), kill(o)) {
            let speedup = ot / ct;
            println!(
                "  {} kill → serving: corral {} vs {name} {}: {name}/corral = {speedup:.1}×{}",
                corral.app(),
                fmt_dur(Duration::from_secs_f64(ct)),
                fmt_dur(Duration::from_secs_f64(ot)),
                if goal { format!("; goal ≥ 5×: {}", verdict(speedup >= 5.0)) } else { String::new() }
            );
        }
        // Memory: the supervisor's median VmRSS.
        let rss = |v: &[Sample]| {
            let r: Vec<u64> = v.iter().filter_map(|s| s.rss.as_ref().map(|r| r.supervisor_kib)).collect();
            (!r.is_empty()).then(|| median_u64(&r) as f64)
        };
        if let (Some(cr), Some(or)) = (rss(c), rss(o)) {
            let ratio = cr / or;
            println!(
                "  {} supervisor VmRSS: corral {} vs {name} {}: corral/{name} = {ratio:.3} (1/{:.1}){}",
                corral.app(),
                fmt_kib(cr),
                fmt_kib(or),
                1.0 / ratio,
                if goal { format!("; goal ≤ 1/5 = 0.200: {}", verdict(ratio <= 0.2)) } else { String::new() }
            );
        }
        // Reload: requests that did not get a 2xx, summed over runs.
        let lost = |v: &[Sample]| {
            let r: Vec<u64> = v.iter().filter_map(|s| s.reload.as_ref().map(|r| r.load.lost())).collect();
            (!r.is_empty()).then(|| (r.iter().sum::<u64>(), r.len()))
        };
        if let (Some((cl, cn)), Some((ol, on))) = (lost(c), lost(o)) {
            let met = cl == 0 && (ol > 0 || !goal);
            println!(
                "  {} reload under load: requests lost (non-2xx, refused, failed), all runs: corral {cl} in {cn} \
                 run(s) vs {name} {ol} in {on}{}",
                corral.app(),
                if goal {
                    format!(
                        "; goal none lost where PM2 loses some: {}",
                        if ol == 0 && cl == 0 { "neither lost any (PM2 lost none)" } else { verdict(met) }
                    )
                } else {
                    String::new()
                }
            );
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn sorted(set: &HashSet<i32>) -> Vec<i32> {
    let mut v: Vec<i32> = set.iter().copied().collect();
    v.sort_unstable();
    v
}
