//! What the primary and its workers log, read as an operator reads it: colour only on a
//! terminal (and never with `NO_COLOR`), every worker-side line naming its slot and pid, a
//! SIGHUP during a reload refused at WARN, and "reload done" only once the old workers have
//! drained, with how long it took.

mod common;

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// `http_cluster` logging at info to a pipe, without colour; its stderr lines arrive on the
/// channel, its address once it announced it.
struct Logged {
    primary: Child,
    addr: std::net::SocketAddr,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Logged {
    async fn start(args: &[&str]) -> Self {
        let mut primary = Command::new(example("http_cluster"))
            .args(args)
            .args(["--port", "0"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start http_cluster");
        let (tx, lines) = mpsc::unbounded_channel();
        let mut stderr = BufReader::new(primary.stderr.take().expect("stderr")).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                let _ = tx.send(line);
            }
        });
        let mut stdout = BufReader::new(primary.stdout.take().expect("stdout")).lines();
        let line = tokio::time::timeout(TIMEOUT, stdout.next_line()).await.expect("announced").expect("read");
        let line = line.expect("a line");
        let addr = line.strip_prefix("listening on http://").expect("the listening line").parse().expect("host:port");
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        Logged { primary, addr, lines, seen: Vec::new() }
    }

    /// Waits (bounded) for a stderr line with `text` in it.
    async fn wait_line(&mut self, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Ok(None) => panic!("stderr ended before {text:?}: {:#?}", self.seen),
                Err(_) => panic!("no {text:?} line in time: {:#?}", self.seen),
            }
        }
    }

    /// SIGTERM, then every line up to the exit; the exit code.
    async fn stop(mut self) -> (Option<i32>, Vec<String>) {
        kill(self.primary.id().expect("pid"), Signal::SIGTERM);
        let status = tokio::time::timeout(TIMEOUT, self.primary.wait()).await.expect("exits").expect("status");
        while let Ok(Some(line)) = tokio::time::timeout(TIMEOUT, self.lines.recv()).await {
            self.seen.push(line);
        }
        (status.code(), self.seen)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_side_line_names_its_slot_and_pid() {
    let logged = Logged::start(&["--workers", "2"]).await;
    let (code, lines) = logged.stop().await;
    assert_eq!(code, Some(0));
    let drains: Vec<&String> = lines.iter().filter(|l| l.contains("the primary asks this worker to drain")).collect();
    assert_eq!(drains.len(), 2, "{lines:#?}");
    let mut slots: Vec<&str> = Vec::new();
    for line in drains {
        let at = line.find("worker{slot=").unwrap_or_else(|| panic!("no slot and pid: {line}"));
        let span = &line[at..line[at..].find('}').map(|e| at + e + 1).expect("span end")];
        let pid: u32 = span.split("pid=").nth(1).and_then(|p| p.trim_end_matches('}').parse().ok()).expect("pid");
        assert!(pid > 1, "{line}");
        slots.push(span.split("slot=").nth(1).and_then(|s| s.split(' ').next()).expect("slot"));
        assert!(line.contains("deadline_ms="), "{line}");
    }
    slots.sort_unstable();
    assert_eq!(slots, ["0", "1"]);
    // Not one escape sequence in a log that goes to a pipe.
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_during_a_reload_runs_once_after_it() {
    let mut logged = Logged::start(&["--workers", "4"]).await;
    let pid = logged.primary.id().expect("pid");
    // The second SIGHUP goes as soon as the first reload has started; if the reload was
    // already over by then (a very fast machine), that SIGHUP simply reloads: try again.
    let mut refused = None;
    for _ in 0..5 {
        kill(pid, Signal::SIGHUP);
        logged.wait_line("rolling reload started").await;
        kill(pid, Signal::SIGHUP);
        // The cluster's answer to the second: queued (the first still runs), or, if the first
        // was already done, a reload of its own.
        let line = loop {
            let line = logged.wait_line("rolling reload").await;
            if line.contains("while a rolling reload runs") || line.contains("rolling reload done") {
                break line;
            }
        };
        if line.contains("while a rolling reload runs") {
            refused = Some(line);
            break;
        }
        logged.wait_line("rolling reload done").await;
    }
    let queued = refused.expect("a SIGHUP during a reload is queued");
    assert!(queued.contains("INFO") && queued.contains("it runs once that one ends"), "{queued}");
    // It runs once the first one is over: both replace every worker.
    logged.wait_line("running the reload asked for during the last one").await;
    for _ in 0..2 {
        let done = logged.wait_line("rolling reload done").await;
        assert!(done.contains("replaced=4"), "{done}");
    }
    let (code, lines) = logged.stop().await;
    assert_eq!(code, Some(0));
    assert!(lines.iter().all(|l| !l.contains("ERROR")), "nothing failed: {lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_done_is_logged_once_the_old_workers_have_drained() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut logged = Logged::start(&["--workers", "1"]).await;
    // A keep-alive connection the old worker serves: one answer proves it has it, then a
    // request it is still serving when its replacement is ready.
    let mut stream = tokio::net::TcpStream::connect(logged.addr).await.expect("connect");
    stream.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n").await.expect("write");
    let mut first = Vec::new();
    while !String::from_utf8_lossy(&first).ends_with(")\n") {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(TIMEOUT, stream.read(&mut buf)).await.expect("answer in time").expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&first));
        first.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&first).contains("Handled by worker 0"));
    let slow = b"GET /slow?ms=1500 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    stream.write_all(slow).await.expect("write");
    kill(logged.primary.id().expect("pid"), Signal::SIGHUP);
    let answer = tokio::spawn(async move {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut answer)).await;
        read.expect("answered in time").expect("read");
        (String::from_utf8_lossy(&answer).into_owned(), tokio::time::Instant::now())
    });
    let done = logged.wait_line("rolling reload done").await;
    let seen_at = tokio::time::Instant::now();
    let (answer, answered_at) = answer.await.expect("task");
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("slept 1500 ms"), "{answer}");
    // The old worker exits after it answered; "done" follows its exit (a busy test runtime
    // may see the two in either order, not a second apart).
    assert!(answered_at <= seen_at + Duration::from_secs(1), "done before the old worker drained: {done}");
    let took: u64 = done
        .split("took_ms=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("how long it took: {done}"));
    assert!(took >= 1000, "the drain of the 1.5 s request is in it: {done}");
    assert!(done.contains("drained") && done.contains("replaced=1"), "{done}");
    let (code, _) = logged.stop().await;
    assert_eq!(code, Some(0));
}

/// A pseudo-terminal: (the side to read, the side to give the child as its stderr).
fn pty() -> (std::fs::File, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two new fds into the two ints it is given and reads nothing
    // else (the name, termios and winsize pointers may be null).
    let rc =
        unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened for us and are owned by nothing else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    // Close-on-exec, so that no other test's child keeps the terminal open; the child that
    // gets it as its stderr has it duplicated onto fd 2.
    for fd in [&master, &slave] {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).expect("cloexec");
    }
    (std::fs::File::from(master), slave)
}

/// What `http_cluster --workers 1` logs on a terminal from its start to its stop.
async fn logged_on_a_terminal(no_color: bool) -> String {
    let (mut master, slave) = pty();
    let mut command = Command::new(example("http_cluster"));
    command
        .args(["--workers", "1", "--port", "0"])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(slave))
        .kill_on_drop(true);
    if no_color {
        command.env("NO_COLOR", "1");
    }
    let mut primary = command.spawn().expect("start");
    drop(command); // The parent's end of the terminal goes: the reader sees EIO at the end.
    let reader = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the last process that had the terminal is gone.
        while let Ok(n @ 1..) = master.read(&mut buf) {
            all.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let mut stdout = BufReader::new(primary.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(TIMEOUT, stdout.next_line()).await.expect("announced").expect("read");
    assert!(line.is_some_and(|l| l.starts_with("listening on http://")));
    kill(primary.id().expect("pid"), Signal::SIGTERM);
    let status = tokio::time::timeout(TIMEOUT, primary.wait()).await.expect("exits").expect("status");
    assert_eq!(status.code(), Some(0));
    tokio::time::timeout(TIMEOUT, reader).await.expect("the terminal closes").expect("reader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colour_only_on_a_terminal_and_never_with_no_color() {
    let coloured = logged_on_a_terminal(false).await;
    assert!(coloured.contains("INFO") && coloured.contains("\u{1b}["), "colour on a terminal: {coloured:?}");
    let plain = logged_on_a_terminal(true).await;
    assert!(plain.contains("INFO") && !plain.contains('\u{1b}'), "NO_COLOR: {plain:?}");
}
