//! `wrk` as the load generator: one thread, [`CONNECTIONS`] connections, `GET /` on
//! 127.0.0.1, with `--latency`; bounded in time, its report parsed.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::process::wait_bounded;

/// wrk's open connections.
pub const CONNECTIONS: u32 = 64;
/// Extra time wrk gets past its `-d` before it is killed.
const GRACE: Duration = Duration::from_secs(30);

/// What wrk reported.
pub struct WrkReport {
    pub requests: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// The socket error counts (the line only appears if one is non-zero) and the non-2xx or
    /// 3xx answers.
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
    pub non2xx: u64,
    /// Its whole output.
    pub output: String,
}

impl WrkReport {
    /// Every socket error but connect's, plus non-2xx answers: failed requests as long as the
    /// server keeps listening (after that, refused connects count as write or read errors).
    pub fn failed(&self) -> u64 {
        self.read + self.write + self.timeout + self.non2xx
    }

    /// wrk's lines about socket errors or non-2xx/3xx answers, if it printed any.
    pub fn errors(&self) -> Option<String> {
        let lines: Vec<&str> = self
            .output
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("Socket errors:") || l.starts_with("Non-2xx or 3xx responses:"))
            .collect();
        if lines.is_empty() { None } else { Some(lines.join("; ")) }
    }
}

/// A running `wrk -t1 -c64 -d<secs>s --latency`.
pub struct Wrk {
    child: Child,
    /// When it was started.
    pub started: Instant,
    secs: u64,
    out: thread::JoinHandle<String>,
    err: thread::JoinHandle<String>,
}

/// Starts wrk against `http://127.0.0.1:port/` for `secs` seconds.
pub fn spawn(port: u16, secs: u64) -> Result<Wrk, String> {
    spawn_with(port, secs, &[])
}

/// As [`spawn`], with extra request headers (`"Connection: close"`: a new connection per
/// request).
pub fn spawn_with(port: u16, secs: u64, headers: &[&str]) -> Result<Wrk, String> {
    let url = format!("http://127.0.0.1:{port}/");
    let started = Instant::now();
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", &format!("-c{CONNECTIONS}"), &format!("-d{secs}s"), "--latency"]);
    for header in headers {
        cmd.args(["-H", header]);
    }
    let mut child = cmd
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start wrk: {e}"))?;
    let out = read_in_background(child.stdout.take().expect("piped stdout"));
    let err = read_in_background(child.stderr.take().expect("piped stderr"));
    Ok(Wrk { child, started, secs, out, err })
}

/// One whole wrk run: [`spawn`], then [`Wrk::finish`].
pub fn run(port: u16, secs: u64) -> Result<WrkReport, String> {
    spawn(port, secs)?.finish()
}

/// One whole wrk run with extra headers: [`spawn_with`], then [`Wrk::finish`].
pub fn run_with(port: u16, secs: u64, headers: &[&str]) -> Result<WrkReport, String> {
    spawn_with(port, secs, headers)?.finish()
}

impl Wrk {
    /// Waits (bounded) for wrk to end and parses its report.
    pub fn finish(mut self) -> Result<WrkReport, String> {
        let limit = Duration::from_secs(self.secs) + GRACE;
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
        parse(&out).ok_or_else(|| format!("cannot parse wrk's output:\n{out}"))
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
///      50%  612.00us
///      99%    2.31ms
///   541234 requests in 10.00s, 66.07MB read
///   Socket errors: connect 0, read 0, write 0, timeout 12
///   Non-2xx or 3xx responses: 3
/// Requests/sec:  54121.88
/// ```
fn parse(out: &str) -> Option<WrkReport> {
    let (mut rps, mut p50, mut p99, mut requests) = (None, None, None, None);
    let mut report = WrkReport {
        requests: 0,
        rps: 0.0,
        p50_us: 0.0,
        p99_us: 0.0,
        connect: 0,
        read: 0,
        write: 0,
        timeout: 0,
        non2xx: 0,
        output: out.trim_end().to_owned(),
    };
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("50%") {
            p50 = parse_time(v.trim());
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = parse_time(v.trim());
        } else if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
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
    report.rps = rps?;
    report.p50_us = p50?;
    report.p99_us = p99?;
    Some(report)
}

/// wrk's time format (`612.00us`, `2.31ms`, `1.02s`, `1.50m`, `1.00h`) → µs.
fn parse_time(s: &str) -> Option<f64> {
    let units = [("us", 1.0), ("ms", 1e3), ("s", 1e6), ("m", 60e6), ("h", 3600e6)];
    units.iter().find_map(|(suffix, scale)| s.strip_suffix(suffix)?.parse::<f64>().ok().map(|v| v * scale))
}
