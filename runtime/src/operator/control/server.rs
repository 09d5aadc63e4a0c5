//! The control socket's server: one Unix stream socket per cluster, 0600 in a 0700
//! directory, and a peer-credential check (the peer's uid must be the primary's or root), so
//! that a loosened file mode still lets no one else in.
//!
//! Every client is bounded: [`MAX_CLIENTS`] at once (more get `busy`), [`MAX_REQUEST`] bytes
//! per request, [`REQUEST_TIMEOUT`] to send one and [`IDLE_TIMEOUT`] between them. A slow,
//! malformed or hostile client gets an error or a close; it never stalls the primary.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::error::ControlFailure;
use super::logs::LogRing;
use super::protocol::{
    CONTROL_VERSION, Command, ControlError, FrameError, MAX_REQUEST, Outcome, Request, Response, read_frame,
    write_frame,
};
use crate::api::error::ClusterError;
use crate::api::events::ClusterEvent;
use crate::api::handle::ClusterHandle;

/// Clients served at once (`logs --follow` followers have a pool of their own).
pub const MAX_CLIENTS: usize = 32;
/// `logs --follow` followers at once.
pub const MAX_FOLLOWERS: usize = 16;
/// Time a client has to send a whole request once it started one.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client may stay connected without a request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a response may take to be written.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a control socket serves: one cluster, or a tree of programs.
pub(crate) trait Target: Send + Sync + 'static {
    /// Answers one command (all but `logs`, which the server answers from its ring).
    fn answer(&self, command: Command) -> impl Future<Output = Result<Value, ControlFailure>> + Send;
    /// Resolves once what it serves has stopped.
    fn stopped(&self) -> impl Future<Output = ()> + Send;
}

/// One cluster, as a control socket serves it.
struct ClusterTarget<M, R> {
    cluster: ClusterHandle<M, R>,
    /// Last CPU sample per pid, for CPU %.
    cpu: crate::operator::status_json::CpuMeter,
}

impl<M, R> Target for ClusterTarget<M, R>
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    async fn answer(&self, command: Command) -> Result<Value, ControlFailure> {
        handle(&self.cluster, &self.cpu, command).await
    }

    async fn stopped(&self) {
        let _ = self.cluster.wait().await;
    }
}

/// What every client task shares.
struct Shared<T> {
    target: T,
    logs: Arc<Mutex<LogRing>>,
    /// Places for `logs --follow`.
    followers: Arc<Semaphore>,
}

/// Serves the control socket at `path` until the cluster stops; logs and returns when the
/// socket cannot be made (the cluster runs without one).
pub(crate) async fn serve<M, R>(path: PathBuf, cluster: ClusterHandle<M, R>, inherited: Option<std::os::fd::OwnedFd>)
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    let logs = Arc::new(Mutex::new(LogRing::new()));
    let collect = collect_logs(cluster.clone(), logs.clone());
    let target = ClusterTarget { cluster, cpu: Default::default() };
    serve_target(path, target, logs, collect, inherited).await;
}

/// Serves the control socket at `path` for `target` until it stops, `collect` filling the
/// ring of captured output meanwhile.
pub(crate) async fn serve_target<T: Target>(
    path: PathBuf,
    target: T,
    logs: Arc<Mutex<LogRing>>,
    collect: impl Future<Output = ()> + Send + 'static,
    inherited: Option<std::os::fd::OwnedFd>,
) {
    let bound = match inherited {
        // Taken over from the previous image (an upgrade): never unbound, so clients that
        // connected during the exec wait in its backlog.
        Some(fd) => adopt(fd),
        None => bind(&path).await,
    };
    let listener = match bound {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "no control socket; the cluster runs without one");
            return;
        }
    };
    let _registered = Registered::new(&path, &listener);
    tracing::info!(path = %path.display(), "control socket");
    tokio::spawn(collect);
    let followers = Arc::new(Semaphore::new(MAX_FOLLOWERS));
    let shared = Arc::new(Shared { target, logs, followers });
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    let stopped = shared.clone();
    let accept = async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let shared = shared.clone();
            match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(client(stream, shared, permit));
                }
                Err(_) => {
                    tokio::spawn(refuse(stream, ControlFailure::TooManyClients));
                }
            }
        }
    };
    tokio::select! {
        () = accept => {}
        () = stopped.target.stopped() => {}
    }
    let _ = std::fs::remove_file(&path);
}

/// A control socket handed over by the previous image.
fn adopt(fd: std::os::fd::OwnedFd) -> io::Result<UnixListener> {
    let listener = std::os::unix::net::UnixListener::from(fd);
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

/// The listening control sockets of this process, by path, for an upgrade to hand over.
fn registry() -> std::sync::MutexGuard<'static, HashMap<PathBuf, std::os::fd::RawFd>> {
    static REGISTRY: std::sync::OnceLock<Mutex<HashMap<PathBuf, std::os::fd::RawFd>>> = std::sync::OnceLock::new();
    // Entries are inserted and removed whole: a poisoned lock is still consistent.
    REGISTRY.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner)
}

/// Registered while its `serve` owns the listener.
struct Registered(PathBuf);

impl Registered {
    fn new(path: &Path, listener: &UnixListener) -> Self {
        use std::os::fd::AsRawFd;
        registry().insert(path.to_path_buf(), listener.as_raw_fd());
        Registered(path.to_path_buf())
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        registry().remove(&self.0);
    }
}

/// A duplicate of the listening control socket at `path`, for the primary's next image.
pub(crate) fn listening_fd(path: &Path) -> Option<std::os::fd::OwnedFd> {
    let registry = registry();
    let raw = *registry.get(path)?;
    // SAFETY: `raw` is registered only while the `serve` task that owns the listener runs
    // (the entry goes before the listener is dropped), and the lock is held while it is
    // borrowed and duplicated.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
    fd.try_clone_to_owned().ok()
}

/// Makes the directory (0700) and binds the socket (0600). A socket file nobody answers on is
/// replaced; a live one (another cluster) is not.
async fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, "another cluster answers on it"));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Keeps the ring of captured output.
async fn collect_logs<M, R>(cluster: ClusterHandle<M, R>, logs: Arc<Mutex<LogRing>>)
where
    M: Serialize + Clone + Send + 'static,
    R: Clone + Send + 'static,
{
    let mut events = cluster.subscribe_lifecycle();
    while let Some(event) = events.recv().await {
        if let ClusterEvent::Output { slot, pid, stream, line } = event {
            logs.lock().unwrap_or_else(PoisonError::into_inner).push(None, slot, pid, stream, line);
        }
    }
}

/// How long a refused client's request is read (and dropped) after the refusal was written,
/// so that a client still writing gets the answer rather than a broken pipe.
const REFUSAL_DRAIN: Duration = Duration::from_secs(1);

async fn refuse(mut stream: UnixStream, failure: ControlFailure) {
    let error = ControlError::from(failure);
    let response = Response { v: CONTROL_VERSION, id: 0, outcome: Outcome::Error { error } };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, write_frame(&mut stream, &response)).await;
    // Read what the client sends until it closes (bounded in time and bytes), then close.
    let mut sink = [0u8; 4096];
    let mut left = MAX_REQUEST;
    let drain = async {
        while left > 0 {
            match tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_DRAIN, drain).await;
}

/// One client: its peer checked, then requests until it closes, errs or idles out.
async fn client<T: Target>(mut stream: UnixStream, shared: Arc<Shared<T>>, permit: tokio::sync::OwnedSemaphorePermit) {
    let me = nix::unistd::geteuid().as_raw();
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == me || cred.uid() == 0 => {}
        Ok(cred) => {
            tracing::warn!(uid = cred.uid(), pid = ?cred.pid(), "control client of another user refused");
            return refuse(stream, ControlFailure::NotPermitted).await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "control client without peer credentials refused");
            return;
        }
    }
    loop {
        let request = match read_request(&mut stream).await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(%error, "bad control request; closing");
                return refuse(stream, error).await;
            }
        };
        let id = request.id;
        if request.v != CONTROL_VERSION {
            return refuse(stream, ControlFailure::Version(request.v)).await;
        }
        if let Command::Logs { slot, program, lines, follow: true } = request.command {
            // A follower stays: it takes a follower's place and gives back its client's.
            let Ok(_follower) = shared.followers.clone().try_acquire_owned() else {
                return refuse(stream, ControlFailure::TooManyFollowers).await;
            };
            drop(permit);
            return follow_logs(stream, &shared, id, slot, program, lines).await;
        }
        let answer = match request.command {
            Command::Logs { slot, program, lines, follow: false } => {
                let ring = shared.logs.lock().unwrap_or_else(PoisonError::into_inner);
                Ok(json!({ "lines": ring.tail(slot, program.as_deref(), lines) }))
            }
            command => shared.target.answer(command).await,
        };
        let outcome = match answer {
            Ok(data) => Outcome::Ok { data },
            Err(failure) => Outcome::Error { error: failure.into() },
        };
        let response = Response { v: CONTROL_VERSION, id, outcome };
        if !matches!(tokio::time::timeout(WRITE_TIMEOUT, write_frame(&mut stream, &response)).await, Ok(Ok(()))) {
            return;
        }
    }
}

/// The next request; `None` when the client closed or idled out.
async fn read_request(stream: &mut UnixStream) -> Result<Option<Request>, ControlFailure> {
    // Idle until the first byte, then the whole request within REQUEST_TIMEOUT.
    match tokio::time::timeout(IDLE_TIMEOUT, stream.readable()).await {
        Ok(Ok(())) => {}
        _ => return Ok(None),
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, read_frame::<Request>(stream, MAX_REQUEST)).await {
        Err(_) => Err(ControlFailure::Incomplete),
        Ok(Ok(request)) => Ok(Some(request)),
        Ok(Err(FrameError::Io(e))) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Ok(Err(FrameError::Io(_))) => Ok(None),
        Ok(Err(e @ (FrameError::TooLarge { .. } | FrameError::Json(_)))) => Err(ControlFailure::Frame(e)),
    }
}

async fn handle<M, R>(
    cluster: &ClusterHandle<M, R>,
    cpu: &crate::operator::status_json::CpuMeter,
    command: Command,
) -> Result<Value, ControlFailure>
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    match command {
        Command::Status => {
            let workers = cluster.status().await.map_err(failed)?;
            Ok(crate::operator::status_json::status_json(&workers, cpu, cluster.autoscale().as_ref()))
        }
        Command::Reload => {
            let report = cluster.reload().await.map_err(failed)?;
            let replaced: Vec<Value> = report
                .replaced
                .iter()
                .map(
                    |r| json!({"slot": r.slot, "old_pid": r.old_pid, "new_pid": r.new_pid, "generation": r.generation}),
                )
                .collect();
            match report.error {
                None => Ok(json!({ "replaced": replaced })),
                Some(source) => Err(ControlFailure::Reload { source, replaced: replaced.len() }),
            }
        }
        Command::Scale { to, by, auto } => {
            let request = super::protocol::scale_request(to, by, auto)?;
            let report = cluster.scale(request).await.map_err(refused)?;
            Ok(json!({"from": report.from, "to": report.to, "note": report.note}))
        }
        Command::Restart { slot } => {
            let replaced = cluster.restart(slot).await.map_err(refused)?;
            Ok(
                json!({"slot": replaced.slot, "old_pid": replaced.old_pid, "new_pid": replaced.new_pid, "generation": replaced.generation}),
            )
        }
        Command::Signal { slot, signal } => {
            let signal = nix::sys::signal::Signal::try_from(signal).map_err(|_| ControlFailure::NotASignal(signal))?;
            let pid = cluster.signal(slot, signal).await.map_err(refused)?;
            Ok(json!({"slot": slot, "pid": pid, "signal": signal.as_str()}))
        }
        Command::Stop => {
            let cluster = cluster.clone();
            // Answered at once; the client watches the cluster go.
            tokio::spawn(async move {
                let _ = cluster.stop().await;
            });
            Ok(json!({"stopping": true}))
        }
        Command::Upgrade => {
            // On success this process execs the new image: the connection closes, and the
            // client watches the new primary take over.
            let refusal = match cluster.upgrade().await {
                Ok(never) => match never {},
                Err(e) => e,
            };
            Err(ControlFailure::Upgrade(refusal))
        }
        Command::Config => Ok(super::describe(&*cluster.config().await.map_err(failed)?)),
        Command::StatusAll | Command::ReloadAll | Command::Broadcast { .. } => across_nodes(cluster, command).await,
        // Answered by the server from its ring.
        Command::Logs { .. } => Err(ControlFailure::NotATree),
        Command::RestartProgram { .. }
        | Command::ReloadProgram { .. }
        | Command::ScaleProgram { .. }
        | Command::StopProgram { .. }
        | Command::StartProgram { .. } => Err(ControlFailure::NotATree),
    }
}

/// The node-set commands: refused without a node set.
#[cfg(not(feature = "cluster"))]
async fn across_nodes<M, R>(_cluster: &ClusterHandle<M, R>, _command: Command) -> Result<Value, ControlFailure> {
    Err(ControlFailure::NoNodeSupport)
}

/// The node-set commands: refused without a node set.
#[cfg(feature = "cluster")]
async fn across_nodes<M, R>(cluster: &ClusterHandle<M, R>, command: Command) -> Result<Value, ControlFailure>
where
    M: Serialize + Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    let Some(nodes) = cluster.node_set() else {
        return Err(ControlFailure::NoNodeSet);
    };
    let to_json = |v: &dyn ToJson| v.to_json();
    match command {
        Command::StatusAll => Ok(to_json(&nodes.status_all().await)),
        Command::ReloadAll => match nodes.reload_all().await {
            Ok(done) => Ok(json!({ "nodes": to_json(&done) })),
            Err(e) => Err(ControlFailure::ReloadAll(e)),
        },
        Command::Broadcast { message } => {
            let answers: Vec<Value> = nodes
                .broadcast_value(message)
                .await
                .into_iter()
                .map(|a| match a {
                    Ok((node, data)) => json!({"node": node, "reached": data["reached"], "workers": data["workers"]}),
                    Err(e) => json!({"error": e.to_string()}),
                })
                .collect();
            Ok(json!({ "nodes": answers }))
        }
        _ => Err(ControlFailure::NotNodeSetCommand),
    }
}

/// Anything serializable, as JSON (the node set's reports always serialize).
#[cfg(feature = "cluster")]
trait ToJson {
    fn to_json(&self) -> Value;
}

#[cfg(feature = "cluster")]
impl<T: Serialize> ToJson for T {
    fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// `logs --follow`: the tail, then each new line, until the client goes or the cluster stops.
async fn follow_logs<T: Target>(
    mut stream: UnixStream,
    shared: &Shared<T>,
    id: u64,
    slot: Option<usize>,
    program: Option<String>,
    lines: usize,
) {
    let (tail, mut new) = {
        let ring = shared.logs.lock().unwrap_or_else(PoisonError::into_inner);
        (ring.tail(slot, program.as_deref(), lines), ring.subscribe())
    };
    let more = |data| Response { v: CONTROL_VERSION, id, outcome: Outcome::More { data } };
    if write_frame(&mut stream, &more(json!({ "lines": tail }))).await.is_err() {
        return;
    }
    let (mut read, mut write) = stream.into_split();
    let mut closed = [0u8; 1];
    loop {
        tokio::select! {
            line = new.recv() => match line {
                Ok(line) if line.matches(slot, program.as_deref()) => {
                    let sent = tokio::time::timeout(WRITE_TIMEOUT, write_frame(&mut write, &more(json!({ "lines": [line] })))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        return;
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => tracing::debug!(n, "a logs follower lagged"),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            // The client closing (or sending anything) ends the stream.
            _ = tokio::io::AsyncReadExt::read(&mut read, &mut closed) => return,
            () = shared.target.stopped() => return,
        }
    }
}

fn failed(e: ClusterError) -> ControlFailure {
    ControlFailure::Failed(e)
}

fn refused(e: ClusterError) -> ControlFailure {
    ControlFailure::Refused(e)
}
