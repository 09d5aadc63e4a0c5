//! The processes a check starts: `corral run` with a recipe's command, and the same server alone
//! on its own socket beside it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use super::http::who;
use super::install::{Installed, apps};
use crate::common::CORRAL;

/// How long `corral run` has to print its `listening on` line.
const START_LIMIT: Duration = Duration::from_secs(30);

/// A running `corral run`, started from `examples/servers`, its output kept.
pub struct Corral {
    pub child: Child,
    pub pid: u32,
    /// From its `listening on` line; `None` when it never printed one.
    pub addr: Option<SocketAddr>,
    pub control: PathBuf,
    listening: tokio::sync::mpsc::UnboundedReceiver<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
    dir: PathBuf,
}

/// The variables a server must not inherit from the test's own environment.
const ACTIVATION: [&str; 4] = ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET"];

impl Corral {
    /// Starts `corral ARGS` (`run …`) with `installed`'s environment.
    pub fn spawn(args: &[String], installed: &Installed, dir: PathBuf) -> Corral {
        let mut command = Command::new(CORRAL);
        for var in ACTIVATION {
            command.env_remove(var);
        }
        let mut child = command
            .args(args)
            .current_dir(apps())
            .envs(installed.env())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start corral run");
        let pid = child.id().expect("pid");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        keep_lines(child.stdout.take().expect("stdout"), log.clone(), Some(tx));
        keep_lines(child.stderr.take().expect("stderr"), log.clone(), None);
        let control = dir.join("control.sock");
        Corral { child, pid, addr: None, listening: rx, control, log, dir }
    }

    /// Waits (bounded) for the `listening on` line (its address in `addr`) or corral's exit.
    pub async fn listening(&mut self) {
        self.addr = tokio::time::timeout(START_LIMIT, self.listening.recv()).await.ok().flatten();
    }

    /// Whether corral has exited, and how.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// corral's last line and the first error a worker printed (corral logs a worker's lines as
    /// `corral::worker: TEXT slot=N pid=N stream=…`).
    pub fn why(&self) -> String {
        let log = self.log.lock().expect("log");
        let worker_error = log.iter().find(|l| {
            l.contains("stream=") && ["Error", "error", "Exception", "Traceback"].iter().any(|e| l.contains(e))
        });
        let last = log.iter().rev().find(|l| !l.trim().is_empty()).map_or("(no output)", String::as_str);
        let mut why = format!("corral's last line: {}", cut(last));
        if let Some(e) = worker_error {
            why.push_str(&format!("; a worker printed: {}", cut(e)));
        }
        why
    }

    /// Waits (bounded) until `corral status` says every slot is ready.
    pub async fn all_ready(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            let status = Command::new(CORRAL)
                .args(["status", "--control"])
                .arg(&self.control)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            if status.is_ok_and(|s| s.success()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Waits (bounded) for corral's exit.
    pub async fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(limit, self.child.wait()).await.ok().and_then(Result::ok)
    }
}

impl Drop for Corral {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cut(line: &str) -> String {
    line.chars().take(300).collect()
}

/// Reads a pipe's lines into `log`; the address of the first `listening on` line goes to `tx`.
fn keep_lines(
    pipe: impl AsyncRead + Unpin + Send + 'static,
    log: Arc<Mutex<Vec<String>>>,
    mut tx: Option<tokio::sync::mpsc::UnboundedSender<SocketAddr>>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = line.strip_prefix("listening on ").and_then(|a| a.trim().parse().ok())
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr);
            }
            log.lock().expect("log").push(line);
        }
    });
}

/// The same server alone on its own socket, kept running beside corral (in its own process
/// group, killed with it at the end).
pub struct Alone {
    child: Child,
    pub addr: SocketAddr,
    pub how: &'static str,
}

impl Alone {
    /// Starts `argv` (its own bind on `port`) or, when `argv` is `None`, `program` on a socket
    /// at fd 3 from `systemd-socket-activate`; waits (bounded) until it answers `/who`.
    pub async fn start(
        argv: Option<Vec<String>>,
        program: &[String],
        port: u16,
        installed: &Installed,
    ) -> Result<Alone, String> {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let (argv, how) = match argv {
            Some(argv) => (argv, "its own bind"),
            None => {
                // systemd-socket-activate hands its program only the variables it is given.
                let mut argv = vec!["systemd-socket-activate".to_string(), "-l".into(), addr.to_string()];
                argv.extend(installed.env().into_iter().map(|(k, v)| format!("--setenv={k}={v}")));
                argv.push("--".into());
                argv.extend(program.iter().cloned());
                (argv, "systemd-socket-activate")
            }
        };
        let log = std::env::temp_dir().join(format!("corral-real-alone-{port}.log"));
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let mut command = Command::new(&argv[0]);
        for var in ACTIVATION {
            command.env_remove(var);
        }
        let child = command
            .args(&argv[1..])
            .current_dir(apps())
            .envs(installed.env())
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{}: {e}", argv[0]))?;
        let mut alone = Alone { child, addr, how };
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        let outcome = loop {
            if who(addr, Duration::from_secs(2)).await.is_ok() {
                break Ok(());
            }
            if let Ok(Some(status)) = alone.child.try_wait() {
                break Err(format!("exited ({status})"));
            }
            if tokio::time::Instant::now() >= deadline {
                break Err(format!("not serving /who within {START_LIMIT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        outcome.map(|()| alone).map_err(|e| {
            let tail: Vec<&str> = text.lines().rev().take(3).collect();
            format!(
                "alone ({how}, {}): {e}: {}",
                argv.join(" "),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )
        })
    }
}

impl Drop for Alone {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A free port on 127.0.0.1 (for a server that binds its own).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// A fresh scratch folder for one check (a short path: it holds the control socket).
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corral-real-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}
