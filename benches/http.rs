//! HTTP load benchmark: corral's `examples/http_cluster.rs` (2 workers, every `--sched` mode)
//! side by side with Node.js `cluster` (2 workers, SCHED_RR and SCHED_NONE), a single plain
//! axum process (`examples/hello_axum.rs`: the ceiling) and the same axum app as 2
//! single-threaded processes on one `SO_REUSEPORT` port (`hello_axum --processes 2`: the
//! cluster's shape without corral), all driven by `wrk` in the same run.
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
//! (default 1, 0 = none), `BENCH_TELEMETRY_CLUSTER=PATH` to add `rr` and `reuseport` entries
//! of an `http_cluster` built with `--features telemetry` (no exporter configured: the cost
//! of the feature built in), `BENCH_CONNECTION=close` to send `Connection: close` with every
//! request (wrk opens a new connection per request: the accept path's cost; default
//! keep-alive).
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod support;
use support::env::env_u64;
use support::process::{self, Server};
use support::report::{fmt_us, machine, print_notes, thousands, tool_version};
use support::stats::median;
use support::{http, proc, wrk};

/// Workers per clustered server.
const WORKERS: usize = 2;
/// Sequential requests of the per-worker share measurement.
const SHARE_REQUESTS: usize = 1000;
/// Connect/read/write timeout of the HTTP client.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Prefix of the response body of servers that say which worker answered.
const WORKER_PREFIX: &str = "Handled by worker ";
const NODE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/node/http_cluster.js");
/// Label of the server the ratios are computed against.
const BASELINE: &str = "node rr";

/// One server of the matrix and how to start it.
struct Entry {
    label: String,
    /// The example binary, or the script `node` runs.
    program: PathBuf,
    args: Vec<String>,
    node: bool,
    /// `Some(workers)` if the response body names the worker that handled the request.
    workers: Option<usize>,
}

impl Entry {
    /// Its command line; Rust servers get a quiet `RUST_LOG` unless the caller set one.
    fn command(&self) -> Command {
        let mut cmd = if self.node {
            let mut cmd = process::node();
            cmd.arg(&self.program);
            cmd
        } else {
            let mut cmd = Command::new(&self.program);
            if std::env::var_os("RUST_LOG").is_none() {
                cmd.env("RUST_LOG", "warn");
            }
            cmd
        };
        cmd.args(&self.args);
        cmd
    }
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

fn main() {
    // cargo passes `--bench`; any other bare word filters servers by label.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let duration = env_u64("BENCH_DURATION", 10).max(1);
    let reps = env_u64("BENCH_REPS", 3).max(1);
    let warmup = env_u64("BENCH_WARMUP", 1);
    let headers: Vec<&str> = match std::env::var("BENCH_CONNECTION").as_deref() {
        Ok("close") => vec!["Connection: close"],
        Ok("keep-alive") | Err(_) => vec![],
        Ok(other) => {
            println!("BENCH_CONNECTION={other:?}: expected `close` or `keep-alive`");
            return;
        }
    };

    let Some(wrk_version) = tool_version("wrk", &["-v"]) else {
        println!("wrk not found: nothing measured. Install it with `apt-get install -y wrk`");
        println!("(Debian/Ubuntu; elsewhere see https://github.com/wg/wrk), then re-run.");
        return;
    };

    println!("Machine: {}", machine());
    println!("Tools: {wrk_version}; node {}", tool_version("node", &["--version"]).as_deref().unwrap_or("not found"));
    println!(
        "HTTP benchmark: GET / on 127.0.0.1, wrk -t1 -c{} -d{duration}s, \
         {warmup}s warm-up, {reps} repetitions, medians; share = max/min of {SHARE_REQUESTS} \
         sequential requests per worker; {}",
        wrk::CONNECTIONS,
        if headers.is_empty() {
            "keep-alive".to_owned()
        } else {
            format!("-H {:?}: a connection per request", headers[0])
        }
    );
    println!();

    let servers: Vec<Entry> = matrix()
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
            match run_once(server, duration, warmup, &headers, &mut notes) {
                Ok(s) => {
                    eprintln!(
                        "[rep {rep}/{reps}] {:<16} {:>10} req/s  p50 {:>9}  p99 {:>9}  {:>6.1} µs CPU/req  share {}",
                        server.label,
                        thousands(s.rps),
                        fmt_us(s.p50_us),
                        fmt_us(s.p99_us),
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
    print_notes(&notes);
}

/// The servers to measure, in display order. Servers whose binary or runtime is missing are
/// announced and left out.
fn matrix() -> Vec<Entry> {
    let mut servers = Vec::new();
    let examples = process::examples_dir();
    let workers = WORKERS.to_string();

    let http_cluster = examples.join("http_cluster");
    if http_cluster.is_file() {
        for sched in ["rr", "lc", "shared", "reuseport"] {
            servers.push(Entry {
                label: format!("corral {sched}"),
                program: http_cluster.clone(),
                args: strings(&["--workers", &workers, "--host", "127.0.0.1", "--port", "0", "--sched", sched]),
                node: false,
                workers: Some(WORKERS),
            });
        }
    } else {
        missing_example(&http_cluster, "corral entries");
    }
    // The same example built with `--features telemetry` (no exporter configured), for the
    // cost of the feature being built in: `BENCH_TELEMETRY_CLUSTER=/path/to/http_cluster`.
    if let Some(telemetry) = std::env::var_os("BENCH_TELEMETRY_CLUSTER").map(PathBuf::from) {
        for sched in ["rr", "reuseport"] {
            servers.push(Entry {
                label: format!("corral {sched} +telemetry"),
                program: telemetry.clone(),
                args: strings(&["--workers", &workers, "--host", "127.0.0.1", "--port", "0", "--sched", sched]),
                node: false,
                workers: Some(WORKERS),
            });
        }
    }

    if !Path::new(NODE_SCRIPT).is_file() {
        println!("{NODE_SCRIPT} not found: skipping the Node.js cluster entries");
    } else if process::node().arg("--version").output().is_ok_and(|o| o.status.success()) {
        for sched in ["rr", "none"] {
            servers.push(Entry {
                label: format!("node {sched}"),
                program: NODE_SCRIPT.into(),
                args: strings(&["--workers", &workers, "--port", "0", "--sched", sched]),
                node: true,
                workers: Some(WORKERS),
            });
        }
    } else {
        println!("node not found: skipping the Node.js cluster entries");
    }

    let hello = examples.join("hello_axum");
    if hello.is_file() {
        servers.push(Entry {
            label: "axum 1 process".into(),
            program: hello,
            args: strings(&["--host", "127.0.0.1", "--port", "0"]),
            node: false,
            workers: None,
        });
        // The process shape without corral: 2 single-threaded axum processes on SO_REUSEPORT.
        servers.push(Entry {
            label: format!("axum {WORKERS} processes"),
            program: examples.join("hello_axum"),
            args: strings(&["--host", "127.0.0.1", "--port", "0", "--processes", &workers]),
            node: false,
            workers: None,
        });
    } else {
        missing_example(&hello, "the single-process axum entry");
    }
    servers
}

fn missing_example(path: &Path, what: &str) {
    println!(
        "{} not found: skipping {what}. Build the examples first with \
         `cargo build --release --examples` (same CARGO_TARGET_DIR as this bench).",
        path.display()
    );
}

/// One measured run of one server: start, check, warm up, measure, count shares, stop.
fn run_once(
    entry: &Entry,
    duration: u64,
    warmup: u64,
    headers: &[&str],
    notes: &mut Vec<String>,
) -> Result<Sample, String> {
    let mut server = process::start(entry.command())?;
    let result = measure(entry, &server, duration, warmup, headers);
    if let Some(n) = server.terminate().problems() {
        notes.push(format!("{}: {n}", entry.label));
    }
    result.map_err(|e| server.with_log(e))
}

fn measure(entry: &Entry, server: &Server, duration: u64, warmup: u64, headers: &[&str]) -> Result<Sample, String> {
    let port = server.port;
    let first = http::get(port, "/", HTTP_TIMEOUT).map_err(|e| format!("first GET / failed: {e}"))?;
    if first.status != 200 {
        return Err(format!("first GET / answered {}: {:?}", first.status, first.body));
    }

    if warmup > 0 {
        wrk::run_with(port, warmup, headers)?;
    }

    let before = proc::tree_ticks(server.pid())?;
    let wrk = wrk::run_with(port, duration, headers)?;
    let after = proc::tree_ticks(server.pid())?;
    if let Some(e) = wrk.errors() {
        return Err(format!("wrk reported errors: {e}"));
    }
    if wrk.requests == 0 {
        return Err("wrk completed no request".into());
    }
    let cpu_secs = proc::cpu_secs_between(&before, &after);

    let share = match entry.workers {
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

/// Sends `SHARE_REQUESTS` sequential `GET /`, one per connection, and returns max/min of the
/// requests per worker (`INFINITY` if fewer than `workers` workers answered).
fn measure_share(port: u16, workers: usize) -> Result<f64, String> {
    let mut per_worker: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures = 0usize;
    let mut last_error = String::new();
    for _ in 0..SHARE_REQUESTS {
        match http::get(port, "/", HTTP_TIMEOUT) {
            Ok(http::Response { status: 200, body, .. }) => match worker_of(&body) {
                Some(w) => *per_worker.entry(w.to_owned()).or_default() += 1,
                None => {
                    failures += 1;
                    last_error = format!("body names no worker: {body:?}");
                }
            },
            Ok(answer) => {
                failures += 1;
                last_error = format!("status {}", answer.status);
            }
            Err(e) => {
                failures += 1;
                last_error = e.to_string();
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

fn print_table(servers: &[Entry], samples: &BTreeMap<String, Vec<Sample>>) {
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
            fmt_us(r.p50),
            fmt_us(r.p99),
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

fn fmt_share(share: Option<f64>) -> String {
    match share {
        None => "n/a".into(),
        Some(s) if s.is_infinite() => "∞".into(),
        Some(s) => format!("{s:.2}"),
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}
