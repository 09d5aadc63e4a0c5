//! How the primary and its workers show in `ps`, `top` and `pgrep`: `comm` is the program's
//! own name from their first instruction (never `exe`), and the command
//! line a title like nginx's and gunicorn's: `http_cluster: primary --workers 2 --port 0`,
//! `http_cluster: worker 1 (gen 2) --workers 2 --port 0`.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// A process's `comm` and its `argv[0]`.
fn names(pid: u32) -> Option<(String, String)> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim_end().to_string();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv0 = cmdline.split(|b| *b == 0).next().map(|a| String::from_utf8_lossy(a).into_owned())?;
    Some((comm, argv0))
}

/// Waits (bounded) until `primary` has `n` children, each with a title; returns them by slot:
/// (pid, comm, argv[0]).
async fn workers(primary: u32, n: usize) -> Vec<(u32, String, String)> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let mut found: Vec<(u32, String, String)> = live_children(primary)
            .into_iter()
            .filter_map(|pid| names(pid).map(|(comm, argv0)| (pid, comm, argv0)))
            .filter(|(_, _, argv0)| argv0.contains(": worker "))
            .collect();
        found.sort_by(|a, b| a.2.cmp(&b.2));
        if found.len() == n {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "{n} titled workers expected: {found:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_are_named_after_the_program_with_slot_and_generation() {
    let (mut primary, addr) = start_http_cluster(&["--workers", "2"]).await;
    let primary_pid = primary.id().expect("pid");
    let found = workers(primary_pid, 2).await;
    let (comm, title) = names(primary_pid).expect("the primary");
    assert_eq!(comm, "http_cluster");
    assert_eq!(title, "http_cluster: primary --workers 2 --port 0", "the primary's title, with its arguments");
    for (slot, (pid, comm, argv0)) in found.iter().enumerate() {
        assert_eq!(comm, "http_cluster", "worker {pid}'s comm");
        assert_eq!(argv0, &format!("http_cluster: worker {slot} (gen 1)"), "worker {pid}'s title");
    }
    // `pgrep http_cluster` finds the primary and both workers.
    let pgrep = std::process::Command::new("pgrep").args(["-x", "http_cluster"]).output();
    if let Ok(out) = pgrep {
        let pids: Vec<u32> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.parse().ok()).collect();
        for (pid, ..) in &found {
            assert!(pids.contains(pid), "pgrep -x http_cluster finds worker {pid}: {pids:?}");
        }
    }
    // A restarted worker's title says its new generation.
    let (old, ..) = found[1];
    kill(old, Signal::SIGKILL);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let now = workers(primary_pid, 2).await;
        if let Some((pid, comm, argv0)) = now.iter().find(|(pid, ..)| *pid != old && *pid != found[0].0) {
            assert_eq!((comm.as_str(), argv0.as_str()), ("http_cluster", "http_cluster: worker 1 (gen 2)"), "{pid}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot 1 never came back: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(http_get(addr, "/").await.expect("serves").0, 200);
    kill(primary_pid, Signal::SIGTERM);
    let status = tokio::time::timeout(TIMEOUT, primary.wait()).await.expect("exits").expect("status");
    assert_eq!(status.code(), Some(0));
}
