//! Supervision trees of programs (`[programs.NAME]` in corral.toml, and the library's
//! `Tree`): start in dependency order, stop in reverse, the strategies read along the
//! dependency graph, a failing oneshot that makes the tree give up, refusals at load, the
//! control commands that name a program, and a reload of the file that touches only what
//! changed. Real processes (sh, python3), real sockets, real signals.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{CORRAL, TIMEOUT, http_get, scratch_dir, test_program};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A shell program that logs `NAME start T PID` (and `NAME stop T PID` at SIGTERM) to
/// `$LOG`, then loops; `T` is a counter line number, so order is the file's order.
const LOOP: &str = r#"echo "$NAME start $$" >> "$LOG"; trap 'echo "$NAME stop $$" >> "$LOG"; exit 0' TERM; while :; do sleep 0.1 & wait $!; done"#;

/// A oneshot: logs `NAME start PID`, sleeps 0.2 s, logs `NAME exit PID CODE` and exits
/// `$CODE` (or 1 for the first `$FAILS` runs, counted in `$COUNT`).
const ONESHOT: &str = r#"echo "$NAME start $$" >> "$LOG"; sleep 0.2; n=$(cat "$COUNT" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$COUNT"; c=0; [ "$FAILS" = always ] && c=1; [ "$FAILS" != always ] && [ "$n" -le "${FAILS:-0}" ] && c=1; echo "$NAME exit $$ $c" >> "$LOG"; exit $c"#;

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_string()
}

/// A `[programs.NAME]` table running `sh -c SCRIPT`, logging to `log`.
fn sh(name: &str, script: &str, log: &Path, extra: &str) -> String {
    format!(
        "[programs.{name}]\nprogram = \"sh\"\nargs = [\"-c\", {script:?}]\nworkers = 1\nready = \"delay:100\"\n{extra}\n[programs.{name}.env]\nNAME = \"{name}\"\nLOG = {:?}\n\n",
        p(log)
    )
}

/// The API: two python workers on a shared port, ready by READY=1.
fn api(log: &Path, extra: &str) -> String {
    format!(
        "[programs.api]\nprogram = \"sh\"\nargs = [\"-c\", \"echo \\\"api start $$\\\" >> \\\"$LOG\\\"; exec python3 {}\"]\nworkers = 2\nlisten = [\"127.0.0.1:0\"]\nready = \"notify\"\n{extra}\n[programs.api.env]\nLOG = {:?}\n\n",
        test_program("activated_worker.py"),
        p(log)
    )
}

/// The events logged: `(name, event, pid)` in order.
fn events(log: &Path) -> Vec<(String, String, u32)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.to_string(), f.get(1)?.to_string(), f.get(2)?.parse().ok()?))
        })
        .collect()
}

fn index_of(evs: &[(String, String, u32)], name: &str, event: &str) -> Option<usize> {
    evs.iter().position(|(n, e, _)| n == name && e == event)
}

fn starts(log: &Path, name: &str) -> Vec<u32> {
    events(log).into_iter().filter(|(n, e, _)| n == name && e == "start").map(|(_, _, p)| p).collect()
}

/// A running `corral run -c FILE --control SOCK`, its stdout lines collected.
struct Tree {
    child: Child,
    sock: PathBuf,
    stdout: tokio::sync::mpsc::UnboundedReceiver<String>,
    stderr: tokio::task::JoinHandle<String>,
}

impl Tree {
    fn start(dir: &Path, text: &str) -> Tree {
        Tree::start_with(dir, text, &[])
    }

    /// As [`start`](Self::start), with more environment for corral.
    fn start_with(dir: &Path, text: &str, env: &[(&str, &str)]) -> Tree {
        let (cfg, sock) = (dir.join("corral.toml"), dir.join("ctl.sock"));
        std::fs::write(&cfg, text).expect("corral.toml");
        let mut child = Command::new(CORRAL)
            .args(["run", "-c", &p(&cfg), "--control", &p(&sock)])
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("corral runs");
        let (tx, stdout) = tokio::sync::mpsc::unbounded_channel();
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
        let stderr = common::drain(child.stderr.take().expect("stderr"));
        Tree { child, sock, stdout, stderr }
    }

    /// The next stdout line that starts with `prefix`.
    async fn line(&mut self, prefix: &str) -> String {
        tokio::time::timeout(TIMEOUT, async {
            loop {
                let line = self.stdout.recv().await.expect("corral's stdout open");
                if line.starts_with(prefix) {
                    return line;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no stdout line {prefix:?} in time"))
    }

    async fn ctl(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = Command::new(CORRAL)
            .args(args)
            .args(["--control", &p(&self.sock)])
            .stdin(Stdio::null())
            .output()
            .await
            .expect("corral runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn status(&self) -> serde_json::Value {
        let (code, out, err) = self.ctl(&["status", "--json"]).await;
        assert_eq!(code, Some(0), "status --json: {out}{err}");
        serde_json::from_str(&out).expect("status JSON")
    }

    /// Program → its ready workers' pids (none while the control socket is not up yet).
    async fn ready(&self) -> BTreeMap<String, HashSet<u32>> {
        let mut out: BTreeMap<String, HashSet<u32>> = BTreeMap::new();
        let (code, text, _) = self.ctl(&["status", "--json"]).await;
        if code != Some(0) {
            return out;
        }
        let status: serde_json::Value = serde_json::from_str(&text).expect("status JSON");
        for w in status["workers"].as_array().cloned().unwrap_or_default() {
            if w["state"] == "ready" {
                let name = w["program"].as_str().expect("every worker has its program").to_string();
                out.entry(name).or_default().insert(w["pid"].as_u64().expect("pid") as u32);
            }
        }
        out
    }

    /// Waits until `pred` holds of the ready workers.
    async fn until(
        &self,
        what: &str,
        pred: impl Fn(&BTreeMap<String, HashSet<u32>>) -> bool,
    ) -> BTreeMap<String, HashSet<u32>> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let now = self.ready().await;
            if pred(&now) {
                return now;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}: not in time; now {now:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then the exit code and stderr.
    async fn stop(self) -> (Option<i32>, String) {
        if let Some(pid) = self.child.id() {
            common::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        self.exit().await
    }

    async fn exit(mut self) -> (Option<i32>, String) {
        let status =
            tokio::time::timeout(TIMEOUT, self.child.wait()).await.expect("corral exits in time").expect("wait");
        let stderr = self.stderr.await.unwrap_or_default();
        (status.code(), stderr)
    }
}

fn one(set: Option<&HashSet<u32>>) -> u32 {
    let set = set.expect("a ready worker");
    assert_eq!(set.len(), 1, "{set:?}");
    *set.iter().next().expect("one")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_in_dependency_order_serves_and_stops_in_reverse() {
    let dir = scratch_dir("tree-order");
    let log = dir.join("events.log");
    let count = p(&dir.join("count"));
    let text = format!(
        "strategy = \"one_for_one\"\n\n{}{}{}{}",
        sh("migrate", ONESHOT, &log, "kind = \"oneshot\"")
            .replace("[programs.migrate.env]\n", &format!("[programs.migrate.env]\nCOUNT = {count:?}\n")),
        api(&log, "depends_on = { migrate = \"completed\" }"),
        sh("jobs", LOOP, &log, "depends_on = { api = \"ready\" }"),
        sh("cron", LOOP, &log, ""),
    );
    let mut tree = Tree::start(&dir, &text);
    let line = tree.line("api: listening on ").await;
    let addr: std::net::SocketAddr = line.trim_start_matches("api: listening on ").parse().expect("HOST:PORT");
    let evs = events(&log);
    let (m_exit, api_start, jobs_start) =
        (index_of(&evs, "migrate", "exit"), index_of(&evs, "api", "start"), index_of(&evs, "jobs", "start"));
    assert!(m_exit < api_start && api_start < jobs_start, "migrate, then api, then jobs: {evs:?}");
    assert!(index_of(&evs, "cron", "start").is_some(), "cron (no dependency) started: {evs:?}");
    let (code, body) = http_get(addr, "/").await.expect("GET / on api's listener");
    assert_eq!(code, 200, "{body}");

    let status = tree.status().await;
    let names: HashSet<&str> =
        status["programs"].as_array().expect("programs").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, HashSet::from(["migrate", "api", "jobs", "cron"]));
    let migrate = status["programs"].as_array().expect("programs").iter().find(|p| p["name"] == "migrate").cloned();
    assert_eq!(migrate.map(|m| m["state"].clone()), Some(serde_json::json!("completed")));
    let (code, out, _) = tree.ctl(&["status"]).await;
    assert_eq!(code, Some(0), "every program up: {out}");
    assert!(out.contains("program") && out.contains("jobs") && out.contains("api ready"), "{out}");

    let (code, stderr) = tree.stop().await;
    assert_eq!(code, Some(0), "{stderr}");
    let evs = events(&log);
    assert!(index_of(&evs, "jobs", "stop").is_some(), "jobs was told to stop: {evs:?}");
    assert!(!stderr.contains("api: listening"), "the listening line is on stdout");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_for_one_restarts_the_dead_program_and_its_dependents_only() {
    let dir = scratch_dir("tree-rest");
    let log = dir.join("events.log");
    let text = format!(
        "strategy = \"rest_for_one\"\nmax_restarts = 3\nperiod = \"60s\"\n\n{}{}{}{}",
        sh("db", LOOP, &log, ""),
        sh("web", LOOP, &log, "depends_on = { db = \"ready\" }"),
        sh("mail", LOOP, &log, "depends_on = { web = \"started\" }"),
        sh("cron", LOOP, &log, ""),
    );
    let tree = Tree::start(&dir, &text);
    let before = tree.until("all four up", |r| r.len() == 4).await;
    // A singleton's process is the program: its death is the tree's to handle.
    common::kill(one(before.get("db")), nix::sys::signal::Signal::SIGKILL);
    let after = tree
        .until("db, web and mail replaced", |r| {
            r.len() == 4 && ["db", "web", "mail"].iter().all(|n| r.get(*n).is_some_and(|s| s != &before[*n]))
        })
        .await;
    assert_eq!(after.get("cron"), before.get("cron"), "cron does not depend on db: untouched");
    assert_eq!(starts(&log, "cron").len(), 1);
    let evs = events(&log);
    let new_db = evs.iter().rposition(|(n, e, _)| n == "db" && e == "start");
    let new_web = evs.iter().rposition(|(n, e, _)| n == "web" && e == "start");
    assert!(new_db < new_web, "db back before web: {evs:?}");
    let status = tree.status().await;
    let db = status["programs"].as_array().expect("programs").iter().find(|p| p["name"] == "db").cloned();
    assert_eq!(db.map(|d| d["restarts"].clone()), Some(serde_json::json!(1)));
    let (code, stderr) = tree.stop().await;
    assert_eq!(code, Some(0), "{stderr}");
    // Stopped in reverse dependency order: mail, then web, then db.
    let evs = events(&log);
    let stop = |n: &str| evs.iter().rposition(|(m, e, _)| m == n && e == "stop");
    assert!(stop("mail") < stop("web") && stop("web") < stop("db"), "{evs:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_all_restarts_every_program_and_one_for_one_only_the_dead() {
    for (strategy, all) in [("one_for_all", true), ("one_for_one", false)] {
        let dir = scratch_dir(&format!("tree-{strategy}"));
        let log = dir.join("events.log");
        let text = format!(
            "strategy = \"{strategy}\"\n\n{}{}",
            sh("a", LOOP, &log, ""),
            sh("b", LOOP, &log, "depends_on = { a = \"ready\" }"),
        );
        let tree = Tree::start(&dir, &text);
        let before = tree.until("both up", |r| r.len() == 2).await;
        common::kill(one(before.get("b")), nix::sys::signal::Signal::SIGKILL);
        let after = tree.until("b replaced", |r| r.len() == 2 && r.get("b") != before.get("b")).await;
        if all {
            tree.until("a replaced too", |r| r.len() == 2 && r.get("a") != before.get("a")).await;
        } else {
            assert_eq!(after.get("a"), before.get("a"), "{strategy}: a untouched");
            assert_eq!(starts(&log, "a").len(), 1);
        }
        let (code, stderr) = tree.stop().await;
        assert_eq!(code, Some(0), "{strategy}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_oneshot_that_fails_is_retried_and_one_that_always_fails_ends_the_tree() {
    // Fails twice, then completes: what depends on it waits.
    let dir = scratch_dir("tree-retry");
    let log = dir.join("events.log");
    let count = p(&dir.join("count"));
    let oneshot = |fails: &str, max: u32| {
        sh("migrate", ONESHOT, &log, &format!("kind = \"oneshot\"\nmax_restarts = {max}\nperiod = \"60s\"\n[programs.migrate.backoff]\nbase = \"10ms\""))
            .replace("[programs.migrate.env]\n", &format!("[programs.migrate.env]\nCOUNT = {count:?}\nFAILS = \"{fails}\"\n"))
    };
    let text = format!("{}{}", oneshot("2", 3), sh("app", LOOP, &log, "depends_on = { migrate = \"completed\" }"));
    let tree = Tree::start(&dir, &text);
    tree.until("app up", |r| r.contains_key("app")).await;
    let evs = events(&log);
    let exits: Vec<u32> = evs.iter().filter(|(n, e, _)| n == "migrate" && e == "exit").map(|_| 0).collect();
    assert_eq!(exits.len(), 3, "1, 1, then 0: {evs:?}");
    assert!(index_of(&evs, "app", "start") > evs.iter().rposition(|(n, e, _)| n == "migrate" && e == "exit"));
    let (code, stderr) = tree.stop().await;
    assert_eq!(code, Some(0), "{stderr}");

    // Always fails: its cluster gives up (max_restarts 1), the tree restarts it once (its own
    // max_restarts 1), then gives up: exit 1, the last line naming it.
    let dir = scratch_dir("tree-giveup");
    let log = dir.join("events.log");
    let count = p(&dir.join("count"));
    let oneshot = sh(
        "migrate",
        ONESHOT,
        &log,
        "kind = \"oneshot\"\nmax_restarts = 1\nperiod = \"60s\"\n[programs.migrate.backoff]\nbase = \"10ms\"",
    )
    .replace("[programs.migrate.env]\n", &format!("[programs.migrate.env]\nCOUNT = {count:?}\nFAILS = \"always\"\n"));
    let text =
        format!("max_restarts = 1\n\n{oneshot}{}", sh("app", LOOP, &log, "depends_on = { migrate = \"completed\" }"));
    let tree = Tree::start(&dir, &text);
    let (code, stderr) = tree.exit().await;
    assert_eq!(code, Some(1), "{stderr}");
    let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(last.contains("migrate") && last.contains("gave up"), "the last line names migrate: {last}");
    assert_eq!(starts(&log, "app"), Vec::<u32>::new(), "app never started");
    assert_eq!(starts(&log, "migrate").len(), 4, "two runs per cluster, two clusters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_or_an_unknown_name_is_refused_at_load() {
    let dir = scratch_dir("tree-refused");
    let log = dir.join("events.log");
    for (text, names) in [
        (
            format!(
                "{}{}",
                sh("alpha", LOOP, &log, "depends_on = { beta = \"started\" }"),
                sh("beta", LOOP, &log, "depends_on = { alpha = \"started\" }")
            ),
            vec!["alpha -> beta -> alpha"],
        ),
        (sh("gamma", LOOP, &log, "depends_on = { ghost = \"ready\" }"), vec!["gamma", "ghost"]),
        (
            format!("{}{}", sh("svc", LOOP, &log, ""), sh("user", LOOP, &log, "depends_on = { svc = \"completed\" }")),
            vec!["svc", "service"],
        ),
        (format!("workers = 2\n{}", sh("x", LOOP, &log, "")), vec!["workers", "[programs.NAME]"]),
        (sh("y", LOOP, &log, "wrokers = 3"), vec!["programs.y.wrokers"]),
    ] {
        let cfg = dir.join("corral.toml");
        std::fs::write(&cfg, &text).expect("write");
        for args in [vec!["check", &p(&cfg)], vec!["run", "-c", &p(&cfg), "--no-control"]] {
            let out = Command::new(CORRAL).args(&args).stdin(Stdio::null()).output().await.expect("corral");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            for n in &names {
                assert!(err.contains(n), "{args:?} names {n:?}: {err}");
            }
        }
        assert!(starts(&log, "alpha").is_empty() && starts(&log, "gamma").is_empty(), "nothing ran");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_commands_name_a_program_and_a_reload_touches_only_what_changed() {
    let dir = scratch_dir("tree-control");
    let log = dir.join("events.log");
    let base = |jobs_env: &str, with_cron: bool, extra: bool, jobs_dep: &str| {
        let mut t = api(&log, "");
        t += &sh("jobs", LOOP, &log, &format!("depends_on = {{ {jobs_dep} = \"ready\" }}"))
            .replace("[programs.jobs.env]\n", &format!("[programs.jobs.env]\nFLAVOR = \"{jobs_env}\"\n"));
        if with_cron {
            t += &sh("cron", LOOP, &log, "");
        }
        if extra {
            t += &sh("extra", LOOP, &log, "");
        }
        t
    };
    let mut tree = Tree::start(&dir, &base("a", true, false, "api"));
    tree.line("api: listening on ").await;
    let before = tree.until("all up", |r| r.get("api").is_some_and(|s| s.len() == 2) && r.len() == 3).await;

    // A single cluster's forms are refused with the reason.
    let (code, _, err) = tree.ctl(&["restart", "0"]).await;
    assert_eq!(code, Some(1), "restart SLOT in a tree: {err}");
    assert!(err.contains("restart NAME"), "{err}");
    let (code, _, err) = tree.ctl(&["stop", "ghost"]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("ghost"), "{err}");

    // scale, restart, stop, start one program; the others untouched.
    let (code, out, err) = tree.ctl(&["scale", "api", "3"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    let now = tree.until("3 api workers", |r| r.get("api").is_some_and(|s| s.len() == 3)).await;
    assert!(before["api"].is_subset(&now["api"]));
    let (code, out, err) = tree.ctl(&["restart", "jobs"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("jobs: slot 0"), "{out}");
    let now = tree.until("a new jobs", |r| r.get("jobs").is_some_and(|s| s != &before["jobs"])).await;
    let (code, out, err) = tree.ctl(&["stop", "jobs"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    tree.until("jobs stopped", |r| !r.contains_key("jobs") && r.get("api") == now.get("api")).await;
    let (code, out, err) = tree.ctl(&["start", "jobs"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    let now = tree.until("jobs back", |r| r.contains_key("jobs")).await;
    let (code, out, err) = tree.ctl(&["logs", "api", "--lines", "5"]).await;
    assert_eq!(code, Some(0), "{out}{err}");

    // A bad file is refused whole; a good edit changes jobs (env), adds extra, removes cron.
    std::fs::write(dir.join("corral.toml"), base("b", false, true, "ghost")).expect("write");
    let (code, _, err) = tree.ctl(&["reload"]).await;
    assert_eq!(code, Some(1), "a bad file is refused: {err}");
    assert!(err.contains("ghost"), "{err}");
    std::fs::write(dir.join("corral.toml"), base("b", false, true, "api")).expect("write");
    let (code, out, err) = tree.ctl(&["reload"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("added: extra") && out.contains("removed: cron") && out.contains("rolled: jobs"), "{out}");
    let after = tree
        .until("jobs rolled, extra added, cron removed", |r| {
            r.contains_key("extra")
                && !r.contains_key("cron")
                && r.get("jobs").is_some_and(|j| Some(j) != now.get("jobs"))
        })
        .await;
    assert_eq!(after.get("api"), now.get("api"), "api unchanged in the file: untouched");
    let (code, stderr) = tree.stop().await;
    assert_eq!(code, Some(0), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_tree_runs_foreign_programs_in_order() {
    use corral::ClusterConfig;
    use corral::config::{ForeignWorker, Readiness, Scheduling, WorkerExec};
    use corral::tree::{Condition, ProgramSpec, Tree, TreeConfig, TreeEvent};

    let dir = scratch_dir("tree-library");
    let log = dir.join("events.log");
    let program = |name: &str, script: &str| {
        let mut w = ForeignWorker::new("sh").arg("-c").arg(script);
        w.ready = Readiness::Delay(Duration::from_millis(50));
        ClusterConfig::default()
            .workers(1)
            .scheduling(Scheduling::ReusePort)
            .exec(WorkerExec::Foreign(w))
            .env_var("NAME", name)
            .env_var("LOG", p(&log))
            .env_var("COUNT", p(&dir.join("count")))
    };
    let config = TreeConfig::default()
        .control(corral::control::ControlSocket::Off)
        .program(ProgramSpec::service("web", program("web", LOOP)).depends_on("setup", Condition::Completed))
        .program(ProgramSpec::oneshot("setup", program("setup", ONESHOT)));
    let (tree, mut stream) = Tree::<(), ()>::spawn(config).await.expect("tree");
    tokio::time::timeout(TIMEOUT, async {
        while let Some(event) = stream.recv().await {
            if let TreeEvent::Up = event {
                break;
            }
        }
    })
    .await
    .expect("everything up in time");
    let evs = events(&log);
    assert!(index_of(&evs, "setup", "exit") < index_of(&evs, "web", "start"), "{evs:?}");
    let programs = tree.status().await.expect("status");
    assert_eq!(programs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["setup", "web"], "start order");
    tokio::time::timeout(TIMEOUT, tree.stop()).await.expect("stops in time").expect("clean stop");
    assert!(index_of(&events(&log), "web", "stop").is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A program that says hello on stdout, logs `NAME usr1 PID` at SIGUSR1, then loops as LOOP.
const CHATTY: &str = r#"echo "hello from $NAME"; trap 'echo "$NAME usr1 $$" >> "$LOG"' USR1; echo "$NAME start $$" >> "$LOG"; trap 'echo "$NAME stop $$" >> "$LOG"; exit 0' TERM; while :; do sleep 0.1 & wait $!; done"#;

fn usr1s(log: &Path, name: &str) -> Vec<u32> {
    events(log).into_iter().filter(|(n, e, _)| n == name && e == "usr1").map(|(_, _, p)| p).collect()
}

/// Waits (bounded) until `pred` holds of the logged events.
async fn until_logged(log: &Path, what: &str, pred: impl Fn(&[(String, String, u32)]) -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let evs = events(log);
        if pred(&evs) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not in time; logged {evs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_lines_metrics_status_page_and_signals_name_the_program() {
    let dir = scratch_dir("tree-attribution");
    let log = dir.join("events.log");
    let text = format!(
        "[log]\nformat = \"json\"\n\n{}{}",
        sh("talk", CHATTY, &log, "[programs.talk.metrics]\nlisten = \"127.0.0.1:0\"")
            .replace("workers = 1", "workers = 2"),
        sh("quiet", LOOP, &log, ""),
    );
    let mut tree = Tree::start(&dir, &text);
    let line = tree.line("talk: metrics on http://").await;
    let addr: std::net::SocketAddr = line
        .trim_start_matches("talk: metrics on http://")
        .trim_end_matches("/metrics")
        .parse()
        .expect("the metrics endpoint's address");
    let before = tree.until("both up", |r| r.get("talk").is_some_and(|s| s.len() == 2) && r.len() == 2).await;

    // Every sample of the program's endpoint carries its name; its rows too.
    let (code, metrics) = http_get(addr, "/metrics").await.expect("GET /metrics");
    assert_eq!(code, 200, "{metrics}");
    let samples: Vec<&str> = metrics.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    assert!(samples.iter().any(|l| l.starts_with("corral_worker_ready{")), "{metrics}");
    for sample in &samples {
        assert!(sample.contains(r#"program="talk""#), "every metric is labelled with its program: {sample}");
    }
    let (code, body) = http_get(addr, "/status.json").await.expect("GET /status.json");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    let rows = status["workers"].as_array().expect("workers");
    assert_eq!(rows.len(), 2, "{status}");
    assert!(rows.iter().all(|w| w["program"] == "talk"), "{status}");
    let (code, page) = http_get(addr, "/").await.expect("GET /");
    assert_eq!(code, 200);
    assert!(page.contains("<th>program</th>") && page.matches(r#"data-program="talk""#).count() == 2, "{page}");

    // signal NAME SIGNAL: every worker of the program; --slot N: that one; the others never.
    let (code, out, err) = tree.ctl(&["signal", "talk", "USR1"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out.lines().filter(|l| l.starts_with("talk: sent SIGUSR1 to slot")).count(), 2, "{out}");
    until_logged(&log, "both talk workers got SIGUSR1", |_| usr1s(&log, "talk").len() == 2).await;
    assert_eq!(usr1s(&log, "talk").into_iter().collect::<HashSet<u32>>(), before["talk"]);
    let (code, out, err) = tree.ctl(&["signal", "talk", "USR1", "--slot", "1"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    until_logged(&log, "one more SIGUSR1", |_| usr1s(&log, "talk").len() == 3).await;
    assert!(usr1s(&log, "quiet").is_empty());
    // What names no program, or one that is not there, is refused with the reason.
    let (code, _, err) = tree.ctl(&["signal", "0", "USR1"]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("corral signal NAME SIGNAL"), "{err}");
    let (code, _, err) = tree.ctl(&["signal", "ghost", "USR1"]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("ghost"), "{err}");
    let (code, _, err) = tree.ctl(&["upgrade", "--timeout", "5s"]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("corral restart NAME"), "the refusal says what to do instead: {err}");
    assert_eq!(tree.ready().await, before, "nothing replaced");

    let (code, stderr) = tree.stop().await;
    assert_eq!(code, Some(0), "{stderr}");
    // Each captured line says which program (and slot, and pid) it comes from.
    let hellos: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "hello from talk")
        .collect();
    assert_eq!(hellos.len(), 2, "one line per worker: {stderr}");
    for h in &hellos {
        assert_eq!((h["program"].as_str(), h["stream"].as_str()), (Some("talk"), Some("stdout")), "{h}");
        assert!(before["talk"].contains(&(h["pid"].as_u64().expect("pid") as u32)), "{h}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_lines_in_text_say_the_program() {
    let dir = scratch_dir("tree-text-lines");
    let log = dir.join("events.log");
    let tree = Tree::start(&dir, &sh("talk", CHATTY, &log, ""));
    tree.until("talk up", |r| r.contains_key("talk")).await;
    let (code, stderr) = tree.stop().await;
    assert_eq!(code, Some(0), "{stderr}");
    let hello = stderr.lines().find(|l| l.contains("hello from talk")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(hello.contains("corral::worker") && hello.contains(r#"program="talk""#), "{hello}");
    assert!(hello.contains("slot=0") && hello.contains(r#"stream="stdout""#), "{hello}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_sees_env_files_and_reruns_a_changed_oneshot_before_what_waits_for_it() {
    let dir = scratch_dir("tree-rerun");
    let log = dir.join("events.log");
    let env_file = dir.join("side.env");
    std::fs::write(&env_file, "FLAVOR=a\n").expect("env file");
    let count = p(&dir.join("count"));
    let file = |version: &str| {
        format!(
            "{}{}{}{}{}",
            sh("migrate", ONESHOT, &log, "kind = \"oneshot\"").replace(
                "[programs.migrate.env]\n",
                &format!("[programs.migrate.env]\nCOUNT = {count:?}\nVERSION = \"{version}\"\n")
            ),
            sh("app", LOOP, &log, "depends_on = { migrate = \"completed\" }"),
            sh("web", LOOP, &log, "depends_on = { app = \"ready\" }"),
            sh("side", LOOP, &log, &format!("env_files = [{:?}]", p(&env_file))),
            sh("other", LOOP, &log, ""),
        )
    };
    let tree = Tree::start(&dir, &file("1"));
    let before = tree.until("all up", |r| r.len() == 4).await;

    // An env file changed, corral.toml not: the program that reads it rolls, alone.
    std::fs::write(&env_file, "FLAVOR=b\n").expect("env file");
    let (code, out, err) = tree.ctl(&["reload"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("rolled: side") && out.contains("rerun: -"), "{out}");
    let now = tree.until("side rolled", |r| r.len() == 4 && r.get("side") != before.get("side")).await;
    for n in ["app", "web", "other"] {
        assert_eq!(now.get(n), before.get(n), "{n} untouched");
    }
    assert_eq!(starts(&log, "migrate").len(), 1, "the oneshot did not run again");

    // The oneshot changed: it runs again; what waits for it to complete stops first and
    // starts once it has; what waits for that one to be ready, and the rest, are untouched.
    std::fs::write(dir.join("corral.toml"), file("2")).expect("write");
    let (code, out, err) = tree.ctl(&["reload"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("rerun: migrate") && out.contains("restarted: app"), "{out}");
    let after =
        tree.until("app back", |r| r.len() == 4 && r.get("app").is_some_and(|a| Some(a) != now.get("app"))).await;
    for n in ["web", "side", "other"] {
        assert_eq!(after.get(n), now.get(n), "{n} untouched");
    }
    let evs = events(&log);
    let stopped_app = evs.iter().rposition(|(n, e, _)| n == "app" && e == "stop");
    let second_migrate = evs.iter().rposition(|(n, e, _)| n == "migrate" && e == "start");
    let migrate_done = evs.iter().rposition(|(n, e, _)| n == "migrate" && e == "exit");
    let new_app = evs.iter().rposition(|(n, e, _)| n == "app" && e == "start");
    assert_eq!(starts(&log, "migrate").len(), 2, "{evs:?}");
    assert!(stopped_app < second_migrate, "app stopped before migrate ran again: {evs:?}");
    assert!(migrate_done < new_app, "app started once migrate completed: {evs:?}");
    let status = tree.status().await;
    let migrate = status["programs"].as_array().expect("programs").iter().find(|p| p["name"] == "migrate").cloned();
    assert_eq!(migrate.map(|m| m["state"].clone()), Some(serde_json::json!("completed")));

    // Nothing changed: nothing touched.
    let (code, out, err) = tree.ctl(&["reload"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("rolled: -") && out.contains("rerun: -") && out.contains("restarted: -"), "{out}");
    let (code, stderr) = tree.stop().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(starts(&log, "migrate").len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_under_systemd_says_ready_and_feeds_the_watchdog() {
    use std::os::unix::net::UnixDatagram;
    let dir = scratch_dir("tree-watchdog");
    let log = dir.join("events.log");
    let notify = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&notify).expect("bind NOTIFY_SOCKET");
    socket.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    let text = format!("{}{}", sh("a", LOOP, &log, ""), sh("b", LOOP, &log, "depends_on = { a = \"ready\" }"));
    // A watchdog of 0.4 s: a beat every 0.2 s.
    let tree = Tree::start_with(&dir, &text, &[("NOTIFY_SOCKET", &p(&notify)), ("WATCHDOG_USEC", "400000")]);
    let seen = tokio::task::spawn_blocking(move || {
        let (mut seen, mut buf) = (Vec::new(), [0u8; 4096]);
        let deadline = std::time::Instant::now() + TIMEOUT;
        while std::time::Instant::now() < deadline {
            if let Ok(n) = socket.recv(&mut buf) {
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            let beats_after_ready = seen
                .iter()
                .position(|m| m.contains("READY=1"))
                .map_or(0, |at| seen[at..].iter().filter(|m| m.contains("WATCHDOG=1")).count());
            if beats_after_ready >= 3 {
                break;
            }
        }
        seen
    })
    .await
    .expect("reader");
    let ready = seen.iter().position(|m| m.contains("READY=1"));
    assert!(ready.is_some(), "READY=1 once every program is up: {seen:?}");
    let beats = seen.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(beats >= 3, "the watchdog is fed while the tree runs: {seen:?}");
    assert_eq!(starts(&log, "a").len(), 1, "the programs do not speak for themselves (no restarts)");
    let (code, stderr) = tree.stop().await;
    assert_eq!(code, Some(0), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
