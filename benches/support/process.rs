//! A server under test as a child process (a built example such as `http_cluster`, or one of
//! `benches/node/*.js`): started in its own process group, ready once it prints its
//! `listening on http://127.0.0.1:PORT` line, stopped with SIGTERM; every wait is bounded and
//! whatever outlives a bound is SIGKILLed.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::proc::{alive_in_group, descendants};
use super::report::fmt_dur;

/// Prefix of the ready line every server prints on stdout (`corral run` prints
/// `listening on 127.0.0.1:PORT`: see [`start_until`]).
pub const READY_PREFIX: &str = "listening on http://";
/// How long a server may take to print its ready line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to exit after SIGTERM before it is SIGKILLed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long its workers may outlive the server before they are SIGKILLed.
pub const ORPHAN_TIMEOUT: Duration = Duration::from_secs(2);
/// stderr lines kept per server, and how many of the last ones an error message shows.
const LOG_LINES: usize = 10_000;
const TAIL_LINES: usize = 20;

/// Where `cargo build --release --examples` puts the examples: `<target>/release/examples`,
/// next to the `deps` directory the bench binary runs from.
pub fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the bench binary");
    let deps = exe.parent().expect("bench binary has a parent directory");
    deps.parent().unwrap_or(deps).join("examples")
}

/// Where `cargo build --release --bin NAME` puts the binaries: `<target>/release`, the parent
/// of [`examples_dir`].
pub fn release_dir() -> PathBuf {
    let examples = examples_dir();
    examples.parent().map_or_else(|| examples.clone(), PathBuf::from)
}

/// A port free on 127.0.0.1 right now (the OS picks it; the socket is closed at once).
pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

pub fn sleep_until(at: Instant) {
    thread::sleep(at.saturating_duration_since(Instant::now()));
}

/// `node`, without `NODE_EXTRA_CA_CERTS` (loading extra CA certificates only slows its
/// start-up).
pub fn node() -> Command {
    let mut cmd = Command::new("node");
    cmd.env_remove("NODE_EXTRA_CA_CERTS");
    cmd
}

/// A started server whose ready line has been read. Dropping it SIGKILLs whatever is left of
/// it, so an early return never leaks processes.
pub struct Server {
    child: Child,
    pub port: u16,
    /// From spawn to the ready line.
    pub ready_after: Duration,
    /// The lines written on stderr (colours removed), each with when it was read.
    log: Arc<Mutex<Vec<(Instant, String)>>>,
}

/// How a server went away after SIGTERM.
pub struct Stopped {
    /// `None` if it was still running `STOP_TIMEOUT` after the signal (then SIGKILLed).
    pub status: Option<ExitStatus>,
    /// When SIGTERM was sent, and from then to its exit.
    pub signalled: Instant,
    pub took: Duration,
    /// Descendants still alive `ORPHAN_TIMEOUT` after it exited (they were SIGKILLed).
    pub leftovers: Vec<i32>,
}

impl Stopped {
    /// Exited 0 within the time limit and left no worker behind.
    pub fn clean(&self) -> bool {
        self.status.is_some_and(|s| s.success()) && self.leftovers.is_empty()
    }

    /// What was not clean, if anything.
    pub fn problems(&self) -> Option<String> {
        let mut notes = Vec::new();
        match self.status {
            Some(status) if status.success() => {}
            Some(status) => notes.push(format!("exited with {status} after SIGTERM")),
            None => notes.push(format!("still running {STOP_TIMEOUT:?} after SIGTERM: SIGKILLed")),
        }
        if !self.leftovers.is_empty() {
            notes.push(format!("{} descendant(s) outlived it: SIGKILLed {:?}", self.leftovers.len(), self.leftovers));
        }
        if notes.is_empty() { None } else { Some(notes.join("; ")) }
    }
}

/// Spawns `cmd` in its own process group, stdout and stderr piped, and waits (bounded) for
/// its ready line, which must name 127.0.0.1.
pub fn start(cmd: Command) -> Result<Server, String> {
    start_until(cmd, READY_PREFIX)
}

/// [`start`] with another ready line: the first stdout line that starts with `prefix`, followed
/// by `127.0.0.1:PORT` (`corral run` prints `listening on 127.0.0.1:PORT`).
pub fn start_until(mut cmd: Command, prefix: &str) -> Result<Server, String> {
    // Own process group: a stuck server and its workers can be told apart from us.
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let spawned = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;

    // stderr: every line, timestamped (a bench may look for a log line).
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
                if let Some(addr) = line.trim().strip_prefix(prefix) {
                    server.port = parse_ready_addr(addr).map_err(|e| server.with_log(e))?;
                    server.ready_after = at - spawned;
                    return Ok(server);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                return Err(server.with_log(format!("no `{prefix}…` line within {STARTUP_TIMEOUT:?}")));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(server.with_log("it closed stdout before it was ready".into()));
            }
        }
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

impl Server {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// When the first stderr line containing `needle` read after `after` was read.
    pub fn log_line_after(&self, after: Instant, needle: &str) -> Option<Instant> {
        let log = self.log.lock().unwrap();
        log.iter().find(|(at, line)| *at >= after && line.contains(needle)).map(|(at, _)| *at)
    }

    /// The stderr lines read since `at`, each prefixed with its offset from `at`.
    pub fn log_since(&self, at: Instant) -> String {
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
    pub fn with_log(&self, e: String) -> String {
        let log = self.log.lock().unwrap();
        if log.is_empty() {
            return e;
        }
        let tail: Vec<&str> = log.iter().rev().take(TAIL_LINES).rev().map(|(_, l)| l.as_str()).collect();
        format!("{e}\n    server stderr (last lines):\n      {}", tail.join("\n      "))
    }

    /// SIGTERM to the server, bounded wait for its exit (then SIGKILL), bounded wait for its
    /// workers (then SIGKILL).
    pub fn terminate(&mut self) -> Stopped {
        let pid = self.pid();
        // Everything it started, to check afterwards that the workers went away too.
        let tree = descendants(pid);
        let signalled = Instant::now();
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let status = wait_bounded(&mut self.child, STOP_TIMEOUT).ok().flatten();
        let took = signalled.elapsed();
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let leftovers = kill_leftovers(&tree, pid, ORPHAN_TIMEOUT);
        Stopped { status, signalled, took, leftovers }
    }
}

impl Drop for Server {
    /// SIGKILLs the server if it still runs, and its workers.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let tree = descendants(self.pid());
            let _ = self.child.kill();
            let _ = self.child.wait();
            kill_leftovers(&tree, self.pid(), Duration::ZERO);
        }
    }
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

/// `child.wait()` with a time limit: `Ok(None)` if it is still running at the deadline.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
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
