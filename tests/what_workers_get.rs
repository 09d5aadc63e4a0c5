//! What a `corral run` worker gets besides its sockets, tried with the tools people use: a
//! filesystem `NOTIFY_SOCKET` that `systemd-notify --ready` (a barrier with an fd) completes
//! on at once, private and removed with the cluster; `TCP_NODELAY` on every connection
//! accepted from corral's listeners; and a warning when a worker listens on a port of its own
//! because a shell in front of it forked and `LISTEN_PID` named another process.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;
use nix::sys::signal::Signal;

/// A shell worker: records its `NOTIFY_SOCKET` and how `systemd-notify --ready` ended, then
/// execs a Python server that answers each connection with its pid and whether the accepted
/// socket has `TCP_NODELAY` (which it never sets itself).
const WORKER: &str = r#"#!/bin/sh
out="$1/$$"
printf '%s' "$NOTIFY_SOCKET" > "$out.socket"
systemd-notify --ready --status=serving
echo "$?" > "$out.rc"
exec python3 -c '
import os, socket
s = socket.socket(fileno=3)
while True:
    c, _ = s.accept()
    nodelay = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    c.recv(65536)
    body = "0 %d nodelay %d\n" % (os.getpid(), nodelay)
    c.sendall(("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)).encode())
    c.close()
'
"#;

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_notify_completes_on_a_private_filesystem_socket_removed_with_the_cluster() {
    let dir = scratch_dir("notify-socket");
    let script = dir.join("worker.sh");
    std::fs::write(&script, WORKER).expect("write the worker");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let program = vec![script.display().to_string(), dir.display().to_string()];
    for sched in ["reuseport", "shared"] {
        // Ready only by READY=1 from systemd-notify: the listening line means both said it.
        let run = CorralRun::start(
            &["-w", "2", "-l", "127.0.0.1:0", "--ready", "notify", "--sched", sched],
            &program,
            &[],
            1,
        )
        .await;
        let addr = run.addrs[0];
        let mut answering = std::collections::HashSet::new();
        for _ in 0..40 {
            let (status, body) = http_get(addr, "/").await.expect("GET /");
            assert_eq!(status, 200);
            assert!(body.contains("nodelay 1"), "{sched}: an accepted connection without TCP_NODELAY: {body}");
            answering.insert(answered_by(&body).1);
        }
        // Two blocking accept loops on one shared socket: the kernel may wake the same one
        // every time, so only reuse-port scheduling promises both answer.
        if sched == "reuseport" {
            assert_eq!(answering.len(), 2, "{sched}: both workers answer: {answering:?}");
        }
        // Every worker that started (this mode's, as the folder is emptied after each).
        let started: Vec<String> = std::fs::read_dir(&dir)
            .expect("the scratch folder")
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".rc").map(str::to_owned))
            .collect();
        assert_eq!(started.len(), 2, "{sched}: two workers ran systemd-notify: {started:?}");
        let mut sockets: Vec<PathBuf> = Vec::new();
        for pid in &started {
            let rc = read(&dir.join(format!("{pid}.rc")));
            assert_eq!(rc.as_deref().map(str::trim), Some("0"), "{sched}: systemd-notify --ready of {pid} failed");
            let path = PathBuf::from(read(&dir.join(format!("{pid}.socket"))).expect("NOTIFY_SOCKET recorded"));
            assert!(path.is_absolute(), "{sched}: NOTIFY_SOCKET is a filesystem path: {}", path.display());
            let meta = std::fs::metadata(&path).expect("the socket exists while its worker runs");
            assert!(meta.file_type().is_socket());
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", path.display());
            let parent = std::fs::metadata(path.parent().expect("a directory")).expect("its directory");
            assert_eq!(parent.permissions().mode() & 0o777, 0o700, "{}", path.display());
            sockets.push(path);
        }
        assert_ne!(sockets[0], sockets[1], "one socket per worker");
        assert_eq!(sockets[0].parent(), sockets[1].parent(), "one directory per primary");
        run.signal(Signal::SIGTERM);
        let (code, stderr) = run.exit().await;
        assert_eq!(code, Some(0), "{stderr}");
        let dir_of = sockets[0].parent().expect("a directory").to_path_buf();
        assert!(!dir_of.exists(), "{sched}: the notify directory {} outlived the cluster", dir_of.display());
        for entry in std::fs::read_dir(&dir).expect("the scratch folder").flatten() {
            if entry.path() != script {
                std::fs::remove_file(entry.path()).expect("clear the records");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server that takes fd 3 only when `LISTEN_PID` is its own pid (as gunicorn and puma do),
/// else binds a port of its own: started behind a shell that forks, it binds.
const DEFAULT_PORT_SERVER: &str = r#"
import os, socket, time
if os.environ.get("LISTEN_PID") == str(os.getpid()):
    s = socket.socket(fileno=3)
else:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
while True:
    c, _ = s.accept()
    c.close()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_listening_on_a_port_corral_did_not_give_is_reported() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    // `; true` keeps the shell from exec'ing python: python is its child, with another pid.
    let wrapped = format!("python3 -c '{DEFAULT_PORT_SERVER}'; true");
    let mut child = tokio::process::Command::new(CORRAL)
        .args(["run", "-w", "1", "-l", "127.0.0.1:0", "--ready", "delay:100", "--no-control", "--", "sh", "-c"])
        .arg(&wrapped)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start corral run");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let found = tokio::time::timeout(TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("which corral did not give it") {
                return Some(line);
            }
        }
        None
    })
    .await
    .expect("the warning in time")
    .expect("corral ended without the warning");
    assert!(found.contains("127.0.0.1:") && found.contains("LISTEN_PID"), "{found}");
    kill(child.id().expect("running"), Signal::SIGTERM);
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let status = tokio::time::timeout(TIMEOUT, child.wait()).await.expect("exits in time").expect("wait");
    assert_eq!(status.code(), Some(0));
}
