//! The control commands: `corral status / reload / scale / restart / signal / stop / config /
//! logs`, each a client of a running cluster's control socket.

use std::path::PathBuf;
use std::time::Duration;

use crate::control::{self, Command, MAX_RESPONSE, Outcome, Request, Response};
use clap::Args;
use serde_json::Value;
use tokio::net::UnixStream;

use super::{EXIT_FAILED, EXIT_USAGE};

/// Where the cluster's control socket is.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The control socket (default: the cluster NAME's default socket).
    #[arg(long, value_name = "PATH", global = true)]
    pub control: Option<PathBuf>,
    /// The cluster's name, for its default control socket.
    #[arg(long, value_name = "NAME", default_value = "corral", global = true)]
    pub name: String,
}

impl Target {
    fn path(&self) -> PathBuf {
        self.control.clone().unwrap_or_else(|| control::default_dir().join(format!("{}.sock", self.name)))
    }
}

/// How long a command waits for its answer (a reload may take a while).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a control command failed (each exits [`EXIT_FAILED`]).
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The socket cannot be reached (no cluster there).
    #[error("cannot reach the cluster at {}: {source}", path.display())]
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The request could not be sent.
    #[error(transparent)]
    Send(control::FrameError),
    /// The cluster answered with an error.
    #[error(transparent)]
    Refused(control::ControlError),
    /// The cluster refused the upgrade.
    #[error("upgrade refused: {0}")]
    UpgradeRefused(#[source] control::ControlError),
    /// No answer in time.
    #[error("no answer in time")]
    Timeout,
    /// The answer could not be read.
    #[error(transparent)]
    Answer(control::FrameError),
    /// An answer to an upgrade other than an error or the connection closing.
    #[error("unexpected answer to upgrade")]
    UnexpectedAnswer,
}

impl Failure {
    fn exit(self) -> i32 {
        eprintln!("corral: {self}");
        EXIT_FAILED
    }
}

async fn connect(target: &Target) -> Result<UnixStream, Failure> {
    let path = target.path();
    UnixStream::connect(&path).await.map_err(|source| Failure::Unreachable { path, source })
}

/// Sends one request and reads its (final) answer.
async fn ask(target: &Target, command: Command) -> Result<Value, Failure> {
    let mut stream = connect(target).await?;
    let request = Request::new(1, command);
    control::write_frame(&mut stream, &request).await.map_err(Failure::Send)?;
    let response: Response = tokio::time::timeout(ANSWER_TIMEOUT, control::read_frame(&mut stream, MAX_RESPONSE))
        .await
        .map_err(|_| Failure::Timeout)?
        .map_err(Failure::Answer)?;
    match response.outcome {
        Outcome::Ok { data } | Outcome::More { data } => Ok(data),
        Outcome::Error { error } => Err(Failure::Refused(error)),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    // A one-thread runtime for a short-lived client; failing to build one is fatal.
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("corral: cannot start: {e}");
            std::process::exit(EXIT_FAILED);
        }
    }
}

fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

/// `corral status [--json] [--watch]`: the table exits 0 only when every slot is ready (3
/// otherwise); `--json` exits 0 whenever the cluster answered.
/// With `all`, every worker of every node of the node set, each with its `node`.
pub fn status(target: &Target, json: bool, watch: bool, all: bool) -> i32 {
    runtime().block_on(async {
        loop {
            let data = match ask(target, if all { Command::StatusAll } else { Command::Status }).await {
                Ok(data) => data,
                Err(f) => return f.exit(),
            };
            let workers = data["workers"].as_array().cloned().unwrap_or_default();
            let programs = data["programs"].as_array().cloned();
            let programs_up = programs
                .iter()
                .flatten()
                .all(|p| matches!(p["state"].as_str(), Some("running" | "completed" | "finished" | "stopped")));
            let all_ready = programs_up
                && (programs.is_some() || !workers.is_empty())
                && workers.iter().all(|w| w["state"] == "ready");
            if json {
                print_json(&data);
            } else {
                if watch {
                    // Clear the screen and go home, as `watch` and `pm2 monit` do.
                    print!("\x1b[2J\x1b[H");
                }
                if let Some(programs) = &programs {
                    print!("{}", programs_table(programs));
                }
                if let Some(line) = data["autoscale"]["summary"].as_str() {
                    println!("{line}");
                }
                print!("{}", table(&workers, all));
                if let Some(n) = data["orphans_adopted"].as_u64().filter(|n| *n > 0) {
                    println!("orphans adopted: {n}");
                }
                if all {
                    print!("{}", nodes_line(&data));
                }
            }
            if !watch {
                // As supervisorctl: 3 when not every slot is ready. `--json` is for scripts,
                // which read the states from the JSON: 0 whenever the cluster answered.
                return if all_ready || json { 0 } else { 3 };
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// `nodes: web-0 up, web-1 down (silent 3.2s)` under `status --all`'s table.
fn nodes_line(data: &Value) -> String {
    let nodes: Vec<String> = data["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|n| {
            let name = n["node"].as_str().unwrap_or("?");
            if n["up"] == true {
                format!("{name} up")
            } else {
                format!("{name} down (silent {:.1}s)", n["last_seen_ms"].as_f64().unwrap_or(0.0) / 1000.0)
            }
        })
        .collect();
    let mut out = format!("nodes: {}\n", nodes.join(", "));
    for u in data["unreachable"].as_array().cloned().unwrap_or_default() {
        out.push_str(&format!("unreachable: {}\n", u.as_str().unwrap_or("?")));
    }
    out
}

/// A tree's programs: name, kind, state, ready workers of configured, restarts, what each
/// waits for.
fn programs_table(programs: &[Value]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(vec!["program", "kind", "state", "workers", "restarts", "depends on"]);
    let autoscaled: Vec<String> = programs
        .iter()
        .filter_map(|p| Some(format!("{}: {}", p["name"].as_str()?, p["autoscale"]["summary"].as_str()?)))
        .collect();
    for p in programs {
        let deps: Vec<String> = p["depends_on"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(n, c)| format!("{n} {}", c.as_str().unwrap_or("?")))
            .collect();
        t.add_row(vec![
            p["name"].as_str().unwrap_or("?").to_string(),
            p["kind"].as_str().unwrap_or("?").to_string(),
            p["state"].as_str().unwrap_or("?").to_string(),
            format!("{}/{}", p["ready"], p["workers"]),
            p["restarts"].to_string(),
            if deps.is_empty() { "-".to_string() } else { deps.join(", ") },
        ]);
    }
    let mut out = format!("{t}\n");
    for line in autoscaled {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn table(workers: &[Value], with_node: bool) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    let mut header = vec![
        "slot",
        "pid",
        "gen",
        "state",
        "uptime",
        "restarts",
        "rss",
        "cpu",
        "in flight",
        "handled",
        "status",
        "ping",
    ];
    if with_node {
        header.insert(0, "node");
    }
    let with_program = workers.iter().any(|w| w["program"].is_string());
    if with_program {
        header.insert(0, "program");
    }
    // Reuse-port groups: whether new connections go to each worker, and its socket's queue.
    let steered = workers.iter().any(|w| !w["steered_in"].is_null());
    if steered {
        header.push("steering");
    }
    // Health probes: the last one's result and age.
    let probed = workers.iter().any(|w| !w["probe"].is_null());
    if probed {
        header.push("probe");
    }
    t.set_header(header);
    for w in workers {
        let opt = |v: &Value| if v.is_null() { "-".to_string() } else { v.to_string().trim_matches('"').to_string() };
        let uptime = w["uptime_ms"]
            .as_u64()
            .map_or("-".into(), |ms| humantime::format_duration(Duration::from_secs(ms / 1000)).to_string());
        let rss = w["rss_bytes"].as_u64().map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
        let cpu = w["cpu_percent"].as_f64().map_or("-".into(), |c| format!("{c:.1}%"));
        let ping = w["heartbeat_ms"].as_f64().map_or("-".into(), |ms| format!("{ms:.2} ms"));
        let mut row = vec![
            opt(&w["slot"]),
            opt(&w["pid"]),
            opt(&w["generation"]),
            opt(&w["state"]),
            uptime,
            opt(&w["restarts"]),
            rss,
            cpu,
            opt(&w["in_flight"]),
            opt(&w["handled"]),
            opt(&w["status"]),
            ping,
        ];
        if with_node {
            row.insert(0, opt(&w["node"]));
        }
        if with_program {
            row.insert(0, opt(&w["program"]));
        }
        if steered {
            row.push(match (w["steered_in"].as_bool(), w["queued"].as_u64()) {
                (Some(true), Some(q)) => format!("in, {q} queued"),
                (Some(false), Some(q)) => format!("out, {q} queued"),
                _ => "-".into(),
            });
        }
        if probed {
            row.push(probe_cell(&w["probe"]));
        }
        t.add_row(row);
    }
    format!("{t}\n")
}

/// The last probe of a worker: `ok 2s ago (3 ms)`, `failed 1/3 1s ago: answered 500`.
fn probe_cell(probe: &Value) -> String {
    if probe.is_null() {
        return "-".into();
    }
    let age = probe["age_ms"].as_u64().map_or("?".into(), |ms| {
        humantime::format_duration(Duration::from_millis(ms - ms % 100)).to_string().replace(' ', "")
    });
    let took = probe["took_ms"].as_f64().map_or(String::new(), |ms| format!(" ({ms:.0} ms)"));
    match probe["passed"].as_bool() {
        Some(true) => format!("ok {age} ago{took}"),
        _ => {
            let failures = probe["failures"].as_u64().unwrap_or(0);
            let error = probe["error"].as_str().unwrap_or("failed");
            let error: String = error.chars().take(60).collect();
            format!("failed ×{failures} {age} ago: {error}")
        }
    }
}

/// A command with a one-shot answer, printed (as JSON with `--json`).
pub fn simple(target: &Target, command: Command, json: bool, show: impl Fn(&Value) -> String) -> i32 {
    runtime().block_on(async {
        match ask(target, command).await {
            Ok(data) => {
                if json {
                    print_json(&data);
                } else {
                    print!("{}", show(&data));
                }
                0
            }
            Err(f) => f.exit(),
        }
    })
}

/// `corral stop [--timeout DUR]`: asks for a graceful stop and waits until the cluster is gone
/// (its control socket closes); exit 1 when it is still there after `timeout`.
/// `signal NAME SIGNAL` in a tree: one line per worker signalled.
pub fn show_signalled(d: &Value) -> String {
    let program = d["program"].as_str().unwrap_or("?");
    let signal = d["signal"].as_str().unwrap_or("?");
    let mut out = String::new();
    for s in d["sent"].as_array().into_iter().flatten() {
        out.push_str(&format!("{program}: sent {signal} to slot {} (pid {})\n", s["slot"], s["pid"]));
    }
    out
}

/// `replaced` of a program (reload NAME, restart NAME), one line per slot.
pub fn show_replaced(d: &Value) -> String {
    let program = d["program"].as_str().unwrap_or("?");
    let replaced = d["replaced"].as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    for r in &replaced {
        out.push_str(&format!(
            "{program}: slot {}: pid {} -> {} (generation {})\n",
            r["slot"], r["old_pid"], r["new_pid"], r["generation"]
        ));
    }
    out.push_str(&format!("{program}: replaced {} workers\n", replaced.len()));
    out
}

/// What a tree's reload of its file did.
pub fn show_applied(d: &Value) -> String {
    let list = |k: &str| {
        let names: Vec<&str> = d[k].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        if names.is_empty() { "-".to_string() } else { names.join(", ") }
    };
    format!(
        "added: {}\nremoved: {}\nrolled: {}\nrestarted: {}\nrewired: {}\nrerun: {}\n",
        list("added"),
        list("removed"),
        list("rolled"),
        list("restarted"),
        list("rewired"),
        list("rerun")
    )
}

/// `corral stop NAME`: asks, then waits until the program has no worker left.
pub fn stop_program(target: &Target, program: String, timeout: Duration) -> i32 {
    runtime().block_on(async {
        if let Err(f) = ask(target, Command::StopProgram { program: program.clone() }).await {
            return f.exit();
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            let Ok(data) = ask(target, Command::Status).await else { break };
            let state = data["programs"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == program.as_str())
                .map(|p| p["state"].as_str().unwrap_or("").to_string());
            if matches!(state.as_deref(), Some("stopped" | "completed" | "finished") | None) {
                println!("stopped {program}");
                return 0;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("corral: {program} is still stopping after {}", humantime::format_duration(timeout));
        EXIT_FAILED
    })
}

pub fn stop(target: &Target, timeout: Duration) -> i32 {
    runtime().block_on(async {
        if let Err(f) = ask(target, Command::Stop).await {
            return f.exit();
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if UnixStream::connect(target.path()).await.is_err() {
                println!("stopped");
                return 0;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("corral: the cluster is still stopping after {}", humantime::format_duration(timeout));
        EXIT_FAILED
    })
}

/// `corral upgrade [--timeout DUR]`: asks for an upgrade; a refusal is printed (exit 1). On
/// success the primary execs its new image and the connection closes: then waits (at most
/// `timeout`) until every slot runs a ready worker that was not there before, and prints
/// `slot S: pid A -> B` for each.
pub fn upgrade(target: &Target, timeout: Duration) -> i32 {
    runtime().block_on(async {
        let before = match ask(target, Command::Status).await {
            Ok(data) => workers(&data),
            Err(f) => return f.exit(),
        };
        let mut stream = match connect(target).await {
            Ok(s) => s,
            Err(f) => return f.exit(),
        };
        if let Err(e) = control::write_frame(&mut stream, &Request::new(1, Command::Upgrade)).await {
            return Failure::Send(e).exit();
        }
        match tokio::time::timeout(ANSWER_TIMEOUT, control::read_frame::<Response>(&mut stream, MAX_RESPONSE)).await {
            Ok(Ok(Response { outcome: Outcome::Error { error }, .. })) => {
                return Failure::UpgradeRefused(error).exit();
            }
            Ok(Ok(_)) => return Failure::UnexpectedAnswer.exit(),
            // The connection closed: the primary execs its new image.
            Ok(Err(_)) => {}
            Err(_) => return Failure::Timeout.exit(),
        }
        let old: Vec<u64> = before.iter().filter_map(|(_, pid, _)| *pid).collect();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = Vec::new();
        while tokio::time::Instant::now() < deadline {
            if let Ok(data) = ask(target, Command::Status).await {
                last = workers(&data);
                let done = !last.is_empty()
                    && last.iter().all(|(_, pid, ready)| *ready && pid.is_some_and(|p| !old.contains(&p)));
                if done {
                    for (slot, pid, _) in &last {
                        let was = before.iter().find(|(s, _, _)| s == slot).and_then(|(_, p, _)| *p);
                        let show = |p: Option<u64>| p.map_or_else(|| "-".to_string(), |p| p.to_string());
                        println!("slot {slot}: pid {} -> {}", show(was), show(*pid));
                    }
                    return 0;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stale: Vec<String> = last
            .iter()
            .filter(|(_, pid, ready)| !*ready || pid.is_none_or(|p| old.contains(&p)))
            .map(|(slot, _, _)| slot.to_string())
            .collect();
        eprintln!(
            "corral: the upgrade did not complete within {}: slot(s) {} still without a new ready worker (see `corral logs`)",
            humantime::format_duration(timeout),
            stale.join(", ")
        );
        EXIT_FAILED
    })
}

/// Slot, pid and readiness of every worker in a status answer.
fn workers(data: &Value) -> Vec<(u64, Option<u64>, bool)> {
    data["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| (w["slot"].as_u64().unwrap_or(0), w["pid"].as_u64(), w["state"].as_str() == Some("ready")))
        .collect()
}

/// `corral logs [-f] [--slot N] [--lines N]`.
pub fn logs(target: &Target, follow: bool, program: Option<String>, slot: Option<usize>, lines: usize) -> i32 {
    runtime().block_on(async {
        let mut stream = match connect(target).await {
            Ok(s) => s,
            Err(f) => return f.exit(),
        };
        let request = Request::new(1, Command::Logs { slot, program, lines, follow });
        if let Err(e) = control::write_frame(&mut stream, &request).await {
            return Failure::Send(e).exit();
        }
        loop {
            let response: Response = match control::read_frame(&mut stream, MAX_RESPONSE).await {
                Ok(r) => r,
                // The cluster stopped (or the stream ended).
                Err(_) => return 0,
            };
            let (data, last) = match response.outcome {
                Outcome::Ok { data } => (data, true),
                Outcome::More { data } => (data, false),
                Outcome::Error { error } => return Failure::Refused(error).exit(),
            };
            for l in data["lines"].as_array().into_iter().flatten() {
                let program = l["program"].as_str().map(|p| format!("{p} ")).unwrap_or_default();
                println!(
                    "[{program}slot {} pid {} {}] {}",
                    l["slot"],
                    l["pid"],
                    l["stream"].as_str().unwrap_or("?"),
                    l["line"].as_str().unwrap_or("")
                );
            }
            use std::io::Write;
            let _ = std::io::stdout().flush();
            if last {
                return 0;
            }
        }
    })
}

/// A `corral scale` count that is not N, +K, -K or `auto`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not N, +K, -K or auto")]
pub struct BadScale(String);

/// `scale N | +K | -K | auto`.
pub fn parse_scale(s: &str) -> Result<Command, BadScale> {
    let bad = |_| BadScale(s.to_string());
    if s == "auto" {
        return Ok(Command::Scale { to: None, by: None, auto: true });
    }
    if let Some(k) = s.strip_prefix('+') {
        return k.parse::<i64>().map(|k| Command::Scale { to: None, by: Some(k), auto: false }).map_err(bad);
    }
    if s.starts_with('-') {
        return s.parse::<i64>().map(|k| Command::Scale { to: None, by: Some(k), auto: false }).map_err(bad);
    }
    s.parse::<usize>()
        .map(|n| Command::Scale { to: Some(n), by: None, auto: false })
        .map_err(|_| BadScale(s.to_string()))
}

/// What `corral scale` prints: `scaled 2 -> 3`, or `autoscaling resumed at 3 workers`.
pub fn scaled_line(data: &Value) -> String {
    if data["note"] == "autoscaling resumed" {
        format!("autoscaling resumed at {} workers\n", data["to"])
    } else {
        format!("scaled {} -> {}\n", data["from"], data["to"])
    }
}

/// Usage errors of the control commands exit 2.
pub fn usage(message: &str) -> i32 {
    eprintln!("corral: {message}");
    EXIT_USAGE
}
