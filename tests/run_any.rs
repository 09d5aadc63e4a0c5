//! `corral run`: real Python and Node programs as supervised workers on shared sockets
//! (socket activation), driven as a user drives the command.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

type Run = CorralRun;

fn program(name: &str) -> String {
    test_program(name)
}

async fn pids(addr: SocketAddr, n: usize) -> HashSet<u32> {
    http_pids(addr, n).await
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corral-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn pids_in(dir: &Path) -> Vec<u32> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_workers_share_one_port_and_a_killed_one_is_replaced() {
    let run = Run::start(
        &["--workers", "2", "--listen", "web=127.0.0.1:0", "--ready", "notify"],
        &python(),
        &[("EXPECT_NAME", "web")],
        1,
    )
    .await;
    let addr = run.addrs[0];
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let before = until_pids(addr, "two workers answer", |p| p.len() == 2).await;
    let victim = *before.iter().min().expect("a pid");
    kill(victim, Signal::SIGKILL);
    let after = until_pids(addr, "the killed worker is replaced", |p| p.len() == 2 && !p.contains(&victim)).await;
    assert_eq!(after.intersection(&before).count(), 1, "the other worker kept its pid");
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_workers_ready_by_delay_share_one_port() {
    let run = Run::start(&["-w", "2", "-l", "127.0.0.1:0", "--ready", "delay:300"], &node(), &[], 1).await;
    until_pids(run.addrs[0], "two node workers answer", |p| p.len() == 2).await;
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_under_load_loses_nothing_and_replaces_every_pid() {
    let run = Run::start(&["-w", "2", "-l", "127.0.0.1:0"], &python(), &[], 1).await;
    let addr = run.addrs[0];
    let old = until_pids(addr, "two workers", |p| p.len() == 2).await;
    let stop = CancellationToken::new();
    let load = tokio::spawn(load(addr, 2, "/slow", stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    run.signal(Signal::SIGHUP);
    until_pids(addr, "every pid replaced", |p| p.len() == 2 && p.is_disjoint(&old)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    let report = load.await.expect("load");
    assert!(report.ok > 0);
    assert!(report.failed.is_empty(), "{} of {} requests failed: {:?}", report.failed.len(), report.ok, report.failed);
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_no_process_of_the_tree_not_even_grandchildren_of_killed_workers() {
    let children = temp_dir("children");
    let workers = temp_dir("workers");
    let env = [("CHILD_DIR", children.to_str().expect("utf-8")), ("PID_DIR", workers.to_str().expect("utf-8"))];
    let run = Run::start(&["-w", "2", "-l", "127.0.0.1:0"], &python(), &env, 1).await;
    let addr = run.addrs[0];
    let first = until_pids(addr, "two workers", |p| p.len() == 2).await;
    // A SIGKILLed worker's own child dies with it.
    let victim = *first.iter().min().expect("pid");
    kill(victim, Signal::SIGKILL);
    until_pids(addr, "replaced", |p| p.len() == 2 && !p.contains(&victim)).await;
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
    let mut tree = pids_in(&children);
    tree.extend(pids_in(&workers));
    assert!(tree.len() >= 6, "3 workers and their 3 children noted: {tree:?}");
    let left = wait_gone(&tree, Duration::from_secs(3)).await;
    assert!(left.is_empty(), "processes left: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_never_says_ready_is_killed_at_listen_timeout() {
    let workers = temp_dir("never-ready");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
    let started = tokio::time::Instant::now();
    cmd.args([
        "run",
        "-w",
        "1",
        "-l",
        "127.0.0.1:0",
        "--listen-timeout",
        "1500ms",
        "--max-restarts",
        "1",
        "--period",
        "60s",
        "--",
    ])
    .args(python())
    .env("NEVER_READY", "1")
    .env("PID_DIR", &workers)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let out = tokio::time::timeout(TIMEOUT, cmd.output()).await.expect("gives up in time").expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("listening on"), "never ready, never announced: {stdout}");
    assert_eq!(out.status.code(), Some(1), "a slot that gave up exits 1: {}", String::from_utf8_lossy(&out.stderr));
    let killed = pids_in(&workers);
    assert_eq!(killed.len(), 2, "the first process and its one restart: {killed:?}");
    assert!(wait_gone(&killed, Duration::from_secs(1)).await.is_empty());
    // Two starts, each killed at 1.5 s, with a backoff between them.
    assert!(
        started.elapsed() >= Duration::from_millis(3000),
        "{:?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_file_names_its_line_and_exits_2() {
    let dir = temp_dir("bad-config");
    let file = dir.join("corral.toml");
    std::fs::write(&file, "program = \"python3\"\nworkers = 2\nkill_timout = \"5s\"\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_corral")).arg("run").arg("-c").arg(&file).output().await.expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}:3:", file.display())) && stderr.contains("kill_timout"), "{stderr}");

    std::fs::write(&file, "program = \"python3\"\n\n[backoff]\nbase = \"1s\"\nmax = \"10ms\"\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_corral")).arg("check").arg(&file).output().await.expect("check");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}:5:", file.display())) && stderr.contains("backoff.max"), "{stderr}");

    std::fs::write(&file, "kill_timeout = \"soon\"\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_corral")).arg("check").arg(&file).output().await.expect("check");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(":1:"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_and_init_writes_a_file_check_accepts() {
    let out = Command::new(env!("CARGO_BIN_EXE_corral")).args(["run", "-w", "2"]).output().await.expect("run");
    assert_eq!(out.status.code(), Some(2), "no program");
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["run", "--ready", "soon", "--", "true"])
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "bad --ready");
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["run", "-l", "nowhere", "--", "true"])
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "bad --listen");

    let dir = temp_dir("init");
    let file = dir.join("corral.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_corral")).arg("init").arg(&file).output().await.expect("init");
    assert_eq!(out.status.code(), Some(0));
    let out = Command::new(env!("CARGO_BIN_EXE_corral")).arg("init").arg(&file).output().await.expect("init again");
    assert_eq!(out.status.code(), Some(2), "no overwrite without --force");
    let text = std::fs::read_to_string(&file).expect("written");
    // Uncommenting the program and a listener gives a valid configuration.
    let text = text.replace("# program = \"python3\"", "program = \"python3\"").replace("# listen = [", "listen = [");
    std::fs::write(&file, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_corral")).arg("check").arg(&file).output().await.expect("check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("program = \"python3\"")
            && stdout.contains("http=127.0.0.1:8080")
            && stdout.contains("sched = \"reuseport\""),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_in_use_fails_before_any_worker_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    // Reuse-port too: the kernel would let the cluster join a same-user SO_REUSEPORT group.
    for sched in ["shared", "reuseport"] {
        let workers = temp_dir(&format!("in-use-{sched}"));
        let out = Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["run", "--sched", sched, "-l", &addr, "--"])
            .args(python())
            .env("PID_DIR", &workers)
            .output()
            .await
            .expect("run");
        assert_eq!(out.status.code(), Some(1), "--sched {sched}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&addr) && stderr.contains("in use"), "--sched {sched}: {stderr}");
        assert!(pids_in(&workers).is_empty(), "--sched {sched}: no worker was started");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_reuseport_cluster_does_not_join_the_first_ones_port() {
    let first = CorralRun::start(&["-w", "2", "--no-control", "-l", "127.0.0.1:0"], &python(), &[], 1).await;
    let addr = first.addrs[0].to_string();
    let workers = temp_dir("second-reuseport");
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["run", "--sched", "reuseport", "--no-control", "-l", &addr, "--"])
        .args(python())
        .env("PID_DIR", &workers)
        .output();
    let out = tokio::time::timeout(TIMEOUT, out).await.expect("refused at once").expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&addr) && stderr.contains("in use"), "{stderr}");
    assert!(pids_in(&workers).is_empty(), "no worker was started");
    first.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(first.exit().await.0, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_re_reads_the_config_a_bad_one_is_refused_and_a_good_one_reaches_the_new_workers() {
    let dir = temp_dir("reconfigure");
    let file = dir.join("corral.toml");
    let socket = dir.join("control.sock");
    let write = |workers: usize, env: &str, extra: &str| {
        let text = format!(
            "program = \"python3\"\nargs = [{:?}]\nworkers = {workers}\nlisten = [\"127.0.0.1:0\"]\n{extra}\n[env]\nAPP_ENV = \"{env}\"\n",
            program("activated_worker.py")
        );
        std::fs::write(&file, text).expect("write config");
    };
    write(2, "one", "");
    let file_arg = file.to_str().expect("utf-8").to_string();
    let socket_arg = socket.to_str().expect("utf-8").to_string();
    let run = Run::start(&["-c", &file_arg, "--control", &socket_arg], &[], &[], 1).await;
    let addr = run.addrs[0];
    let old = until_pids(addr, "two workers", |p| p.len() == 2).await;
    let reload = || async {
        Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["reload", "--control", &socket_arg])
            .output()
            .await
            .expect("reload")
    };

    // A bad file: refused, nothing replaced, the old workers serve on.
    write(2, "two", "wrokers = 3");
    let out = reload().await;
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrokers"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(pids(addr, 20).await, old, "the old workers serve on");

    // A good one: every worker replaced, the new environment and worker count reach them.
    write(3, "two", "");
    let out = reload().await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let new = until_pids(addr, "three new workers", |p| p.len() == 3 && p.is_disjoint(&old)).await;
    for pid in new {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
        assert!(environ.split(|b| *b == 0).any(|v| v == b"APP_ENV=two"), "pid {pid} has the new environment");
    }
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_files_get_every_line_rotate_by_size_and_reopen_on_sigusr1() {
    let dir = temp_dir("log-files");
    let logs = dir.join("logs");
    let file = dir.join("corral.toml");
    let text = format!(
        "program = \"python3\"\nargs = [{:?}]\nworkers = 1\nlisten = [\"127.0.0.1:0\"]\n[logs]\ndir = {:?}\nmax_size = \"1KiB\"\nkeep = 2\n",
        program("activated_worker.py"),
        logs.display().to_string()
    );
    std::fs::write(&file, text).expect("write config");
    let file_arg = file.to_str().expect("utf-8").to_string();
    let run = Run::start(&["-c", &file_arg, "--no-control"], &[], &[], 1).await;
    let addr = run.addrs[0];
    let log = logs.join("corral.log");
    let contains = |path: &Path, token: &str| std::fs::read_to_string(path).is_ok_and(|t| t.contains(token));
    let wait_for_line = |path: PathBuf, token: String| async move {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while !contains(&path, &token) {
            assert!(tokio::time::Instant::now() < deadline, "{token} not in {}", path.display());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    http_get(addr, "/print/first-line").await.expect("served");
    wait_for_line(log.clone(), "first-line".into()).await;
    let line = std::fs::read_to_string(&log).expect("log");
    assert!(line.contains("slot=0") && line.contains("stdout: first-line") && line.contains('Z'), "{line}");

    // Past 1 KiB the file rotates; only `keep` old files stay.
    for i in 0..60 {
        http_get(addr, &format!("/print/filler-{i:02}-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")).await.expect("served");
    }
    wait_for_line(log.clone(), "filler-59".into()).await;
    assert!(logs.join("corral.log.1").exists() && logs.join("corral.log.2").exists());
    assert!(!logs.join("corral.log.3").exists());
    assert!(std::fs::metadata(&log).expect("log").len() <= 1024);

    // logrotate moves the file, then SIGUSR1: corral writes a new one.
    std::fs::rename(&log, logs.join("moved.log")).expect("move");
    run.signal(Signal::SIGUSR1);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        http_get(addr, "/print/after-reopen").await.expect("served");
        if contains(&log, "after-reopen") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no new log file after SIGUSR1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.signal(Signal::SIGTERM);
    let (code, stderr) = run.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
}
