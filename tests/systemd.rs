//! Under systemd: the primary adopts the sockets it is given (`systemd-socket-activate`, the
//! real tool) and serves the connection that activated it; `NOTIFY_SOCKET` hears READY →
//! RELOADING + MONOTONIC_USEC → READY → STOPPING, in that order.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use tokio::process::{Child, Command};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The datagrams a test NOTIFY_SOCKET received, read in the background.
struct Notifications {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Notifications {
    fn bind(path: &Path) -> Self {
        let _ = std::fs::remove_file(path);
        let socket = UnixDatagram::bind(path).expect("bind NOTIFY_SOCKET");
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        Notifications { socket, seen: Vec::new() }
    }

    /// Waits (bounded) for a datagram containing `key`; returns it.
    fn wait_for(&mut self, key: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(at) = self.seen.iter().position(|m| m.contains(key)) {
                // It and what came before it are consumed: the next wait looks after it, so
                // the order of the notifications is checked.
                let found = self.seen[at].clone();
                self.seen.drain(..=at);
                return found;
            }
            assert!(Instant::now() < deadline, "no {key} on NOTIFY_SOCKET; got {:?}", self.seen);
            if let Ok(n) = self.socket.recv(&mut buf) {
                self.seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }
}

async fn activated(port: u16, notify: &Path, program: &Path, args: &[&str]) -> Child {
    Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-E")
        .arg(format!("NOTIFY_SOCKET={}", notify.display()))
        .arg("-E")
        .arg(format!("PATH={}", std::env::var("PATH").unwrap_or_default()))
        .arg("-E")
        .arg("RUST_LOG=warn")
        .arg(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("systemd-socket-activate (systemd's tools are on every machine)")
}

/// The first connection makes systemd-socket-activate exec the program; it must be served.
async fn first_request(port: u16) -> (u16, String) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        // Until systemd-socket-activate listens, connections are refused.
        match http_get(addr, "/").await {
            Ok(answer) => return answer,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the activating connection was not served: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corral_run_adopts_the_socket_and_tells_systemd_ready_reloading_ready_stopping() {
    let dir = std::env::temp_dir().join(format!("corral-systemd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let notify_path = dir.join("notify.sock");
    let mut notifications = Notifications::bind(&notify_path);
    let port = free_port();
    let worker = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/activated_worker.py");
    let program = Path::new(env!("CARGO_BIN_EXE_corral"));
    let worker = worker.to_str().expect("utf-8");
    let mut child =
        activated(port, &notify_path, program, &["run", "-w", "2", "--no-control", "--", "python3", worker]).await;
    let (status, body) = first_request(port).await;
    assert_eq!(status, 200, "{body}");
    answered_by(&body);
    let ready = notifications.wait_for("READY=1");
    assert!(ready.contains("STATUS=2/2 ready"), "{ready}");
    let pid = child.id().expect("running");
    kill(pid, Signal::SIGHUP);
    let reloading = notifications.wait_for("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    notifications.wait_for("READY=1");
    kill(pid, Signal::SIGTERM);
    notifications.wait_for("STOPPING=1");
    let status = tokio::time::timeout(TIMEOUT, child.wait()).await.expect("stops").expect("wait");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_cluster_adopts_the_socket_in_every_scheduling_mode() {
    for sched in ["rr", "lc", "shared", "reuseport"] {
        let dir = std::env::temp_dir().join(format!("corral-systemd-lib-{sched}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let notify_path = dir.join("notify.sock");
        let mut notifications = Notifications::bind(&notify_path);
        let port = free_port();
        let port_arg = port.to_string();
        let args = ["--workers", "2", "--sched", sched, "--port", &port_arg];
        let mut child = activated(port, &notify_path, &example("http_cluster"), &args).await;
        let (status, body) = first_request(port).await;
        assert_eq!(status, 200, "{sched}: {body}");
        notifications.wait_for("READY=1");
        // Both workers serve on the adopted socket.
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut pids = std::collections::HashSet::new();
        for _ in 0..40 {
            if let Ok((200, body)) = http_get(addr, "/").await {
                pids.insert(body);
            }
        }
        assert!(pids.len() >= 2, "{sched}: one worker answered everything: {pids:?}");
        kill(child.id().expect("running"), Signal::SIGTERM);
        notifications.wait_for("STOPPING=1");
        let status = tokio::time::timeout(TIMEOUT, child.wait()).await.expect("stops").expect("wait");
        assert_eq!(status.code(), Some(0), "{sched}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activated_corral_run_upgrades_in_place_keeping_the_passed_socket() {
    let dir = std::env::temp_dir().join(format!("corral-systemd-upgrade-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    // Run from a copy, so that a deploy can rename a new build over it.
    let corral = dir.join("corral");
    // Copied by `cp`, another process: a file this process held open for writing could be
    // inherited by a concurrent test's fork for a moment (ETXTBSY on exec).
    let copy = |to: &Path| {
        let status = std::process::Command::new("cp").arg(env!("CARGO_BIN_EXE_corral")).arg(to).status().expect("cp");
        assert!(status.success());
    };
    copy(&corral);
    let notify_path = dir.join("notify.sock");
    let mut notifications = Notifications::bind(&notify_path);
    let port = free_port();
    let worker = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/activated_worker.py");
    let worker = worker.to_str().expect("utf-8");
    let log = dir.join("primary.log");
    let mut child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-E")
        .arg(format!("NOTIFY_SOCKET={}", notify_path.display()))
        .arg("-E")
        .arg(format!("PATH={}", std::env::var("PATH").unwrap_or_default()))
        .args(["-E", "RUST_LOG=info", "-E", "NO_COLOR=1"])
        .arg(&corral)
        .args(["run", "-w", "2", "--no-control", "--", "python3", worker])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("systemd-socket-activate");
    let (status, body) = first_request(port).await;
    assert_eq!(status, 200, "{body}");
    notifications.wait_for("READY=1");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let before = http_pids(addr, 20).await;
    let pid = child.id().expect("running");

    let fresh = dir.join("corral.new");
    copy(&fresh);
    std::fs::rename(&fresh, &corral).expect("deploy");
    kill(pid, Signal::SIGUSR2);
    let reloading = notifications.wait_for("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    notifications.wait_for("READY=1");
    // Same process, the new file, the socket systemd passed still serving, new workers.
    assert!(matches!(child.try_wait(), Ok(None)), "the primary is gone");
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe"), corral);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let after = http_pids(addr, 20).await;
        if after.len() == 2 && after.is_disjoint(&before) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "workers {after:?}, before {before:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill(pid, Signal::SIGTERM);
    notifications.wait_for("STOPPING=1");
    let status = tokio::time::timeout(TIMEOUT, child.wait()).await.expect("stops").expect("wait");
    assert_eq!(status.code(), Some(0), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    let _ = std::fs::remove_dir_all(&dir);
}
