//! `corral::main` and `corral::run`: primary or worker, by the environment.

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use corral_protocol::bootstrap::WorkerBootstrap;
use corral_runtime::tree::{Tree, TreeConfig, TreeEvents, TreeHandle};
use corral_runtime::{Cluster, ClusterConfig, ClusterEvent, ClusterHandle, EventStream, Reaper, ReloadError, Scale};
use corral_workers::{BoxError, EXIT_BOOTSTRAP, Worker};
use tokio::signal::unix::{SignalKind, signal};

use crate::error::Error;

/// Whether this process was started as a worker by a corral primary (Node's
/// `cluster.isWorker`).
///
/// ```
/// assert!(!corral::is_worker());
/// ```
pub fn is_worker() -> bool {
    std::env::var_os(corral_protocol::bootstrap::WORKER_ENV).is_some()
}

/// Runs the cluster: in the primary, starts `config.workers` workers and supervises them until
/// SIGINT or SIGTERM (then drains them and returns) or until the cluster fails; in a worker,
/// runs `worker` and **exits the process** when it is done (exit code 0 after a clean drain).
///
/// The primary logs the cluster's events with `tracing`. Use [`run`] to handle them yourself.
///
/// # Exit codes
///
/// Returns the primary's exit code, for `main` to return: `0` after a clean stop. When the
/// cluster failed, it first prints the cause once on stderr, as one sentence
/// (`error: cannot listen on 10.0.0.1:3000: Cannot assign requested address (os error 99)`),
/// then returns [`EXIT_CONFIG`](crate::EXIT_CONFIG) (`2`) for a refused configuration and
/// [`EXIT_FAILURE`](crate::EXIT_FAILURE) (`1`) for anything else: an address that cannot be
/// listened on, a slot that gave up under `Escalation::Stop`, workers killed at the stop, a
/// primary that cannot set itself up. Use [`run_primary`] for the [`Error`] value itself.
///
/// ```no_run
/// # struct Web;
/// # impl corral::Worker for Web { type Msg = (); type Report = (); type State = ();
/// #   async fn start(&self, _: &corral::WorkerContext<()>) -> Result<(), corral::BoxError> { Ok(()) } }
/// fn main() -> std::process::ExitCode {
///     corral::main(corral::ClusterConfig::default(), Web)
/// }
/// ```
pub fn main<W: Worker>(config: ClusterConfig, worker: W) -> ExitCode
where
    W::Msg: serde::Serialize + Clone + Sync,
    W::Report: serde::de::DeserializeOwned + Clone + Sync + std::fmt::Debug,
{
    run(config, worker, |cluster, mut events: EventStream<W::Report>| async move {
        while let Some(event) = events.recv().await {
            log_event(&event);
        }
        cluster.wait().await.map_err(|e| Box::new(e) as BoxError)
    })
}

/// As [`main`], with your own code in the primary: `primary` gets the cluster's handle and an
/// event stream subscribed before the first fork. The primary runs one single-threaded tokio
/// runtime (as Node's primary has one event loop): keep blocking work out of `primary`, or
/// hand it to `tokio::task::spawn_blocking`. When it returns, the cluster is stopped
/// gracefully and `run` returns; SIGINT/SIGTERM stop the cluster gracefully too (and `run`
/// returns without waiting for `primary`).
///
/// # Exit codes
///
/// As [`main`]; a `primary` that fails is printed as `error: primary failed: …` and returns
/// [`EXIT_FAILURE`](crate::EXIT_FAILURE).
///
/// ```no_run
/// # struct Web;
/// # impl corral::Worker for Web { type Msg = String; type Report = String; type State = ();
/// #   async fn start(&self, _: &corral::WorkerContext<String>) -> Result<(), corral::BoxError> { Ok(()) } }
/// use corral::ClusterEvent;
///
/// fn main() -> std::process::ExitCode {
///     corral::run(corral::ClusterConfig::default().workers(2), Web, |cluster, mut events| async move {
///         while let Some(event) = events.recv().await {
///             if let ClusterEvent::Ready { slot, .. } = event {
///                 cluster.send_to(slot, "welcome".into()).await?;
///             }
///         }
///         Ok(())
///     })
/// }
/// ```
pub fn run<W, F, Fut>(config: ClusterConfig, worker: W, primary: F) -> ExitCode
where
    W: Worker,
    W::Msg: serde::Serialize + Clone + Sync,
    W::Report: serde::de::DeserializeOwned + Clone + Sync,
    F: FnOnce(ClusterHandle<W::Msg, W::Report>, EventStream<W::Report>) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    run_if_worker(worker);
    exit_code(run_primary(config, primary))
}

/// The exit code of a primary that ended with `outcome`; a failure is printed first, once,
/// as `error: <sentence>` on stderr (the program's last word to the person who started it,
/// so not a log line).
pub(crate) fn exit_code(outcome: Result<(), Error>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Nothing to do when stderr is gone; the exit code still says it.
            let _ = writeln!(std::io::stderr().lock(), "error: {}", e.sentence());
            ExitCode::from(e.exit_code())
        }
    }
}

/// If this process was started as a worker, runs `worker` and **exits the process** when it
/// is done; otherwise returns at once. For primaries you write yourself, e.g. one that spawns
/// the [`Cluster`] actor inside an existing ractor tree: call this first thing in `main`.
///
/// ```no_run
/// # struct Web;
/// # impl corral::Worker for Web { type Msg = (); type Report = (); type State = ();
/// #   async fn start(&self, _: &corral::WorkerContext<()>) -> Result<(), corral::BoxError> { Ok(()) } }
/// fn main() {
///     corral::run_if_worker(Web);
///     // Only the primary gets here.
/// }
/// ```
pub fn run_if_worker<W: Worker>(worker: W) {
    match WorkerBootstrap::from_env() {
        Ok(Some(boot)) => {
            let code = match corral_workers::run(worker, boot) {
                Ok(code) => code,
                Err(e) => {
                    tracing::error!(error = %e, "cannot run as a corral worker");
                    EXIT_BOOTSTRAP
                }
            };
            // `exit` runs no destructors: the spans still queued leave now.
            #[cfg(feature = "telemetry")]
            crate::telemetry::shutdown();
            std::process::exit(code);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "bad corral worker environment");
            std::process::exit(EXIT_BOOTSTRAP);
        }
    }
}

/// The primary half of [`run`], for clusters whose workers are not this program: a
/// [`WorkerExec::Program`](crate::config::WorkerExec::Program) or
/// [`WorkerExec::Foreign`](crate::config::WorkerExec::Foreign) cluster (`corral run` is built
/// on it). One single-threaded runtime, the same signal handling (SIGINT/SIGTERM stop,
/// SIGHUP reloads, SIGTTIN/SIGTTOU scale), `primary` as in [`run`]. It titles the process
/// `myapp: primary ARGS` for `ps` ([`set_primary_title`](crate::status::set_primary_title)), so
/// `std::env::args()` reads the title afterwards: parse the arguments first. It adopts the
/// workers' orphans (PID 1, or a child subreaper elsewhere), reaps them and ends them with
/// the stop, unless [`ClusterConfig::reap_orphans`] is off (turn it off when `primary` starts
/// child processes of its own and waits for them).
///
/// # Errors
///
/// [`Error::Cluster`] for a bad config, an address that cannot be listened on, or a slot that
/// gave up under `Escalation::Stop`; [`Error::Setup`] when the primary cannot set itself up;
/// [`Error::Primary`] when `primary` fails. Nothing is printed: the error is the caller's
/// ([`Error::sentence`] says it in one line, [`Error::exit_code`] maps it to an exit code).
///
/// ```no_run
/// use corral::ClusterConfig;
/// use corral::config::{ForeignWorker, Scheduling, WorkerExec};
///
/// fn main() -> std::process::ExitCode {
///     let app = ForeignWorker::new("python3").arg("app.py").listen("127.0.0.1:8080".parse().unwrap());
///     let config = ClusterConfig::default().exec(WorkerExec::Foreign(app)).scheduling(Scheduling::ReusePort);
///     let outcome = corral::run_primary::<(), (), _, _>(config, |cluster, mut events| async move {
///         while events.recv().await.is_some() {}
///         cluster.wait().await.map_err(Into::into)
///     });
///     match outcome {
///         Ok(()) => std::process::ExitCode::SUCCESS,
///         Err(e) => {
///             eprintln!("error: {}", e.sentence());
///             std::process::ExitCode::from(e.exit_code())
///         }
///     }
/// }
/// ```
pub fn run_primary<M, R, F, Fut>(config: ClusterConfig, primary: F) -> Result<(), Error>
where
    M: serde::Serialize + corral_runtime::NodeMessage + Clone + Send + Sync + 'static,
    R: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
    F: FnOnce(ClusterHandle<M, R>, EventStream<R>) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    config.validate().map_err(corral_runtime::ClusterError::from)?;
    // `myapp: primary …` in ps (the workers get `myapp: worker N (gen G)`).
    corral_runtime::set_primary_title();
    // One event loop, as Node's primary: its work (supervision, IPC, events) is light, and
    // keeping every task on one thread avoids a cross-thread wake-up per message (measured:
    // 47 µs instead of 70 µs round trip unpinned, 2.4× the one-way throughput).
    let runtime = primary_runtime()?;
    let (orphans_patience, reap_orphans) = (config.kill_timeout, config.reap_orphans);
    let outcome = runtime.block_on(async move {
        let signals = Signals::install().map_err(Error::Setup)?;
        // Held since the program started (`corral run`), they are delivered now, to the handlers.
        Signals::release();
        let (cluster, events) = Cluster::<M, R>::spawn(config).await?;
        // As PID 1 (a container's init) or a child subreaper: orphaned descendants of the
        // workers are adopted, reaped, and ended with the stop. Started once the cluster has
        // booked what an upgrade handed over (its workers are children already).
        let reaper = if reap_orphans { Some(Reaper::start().map_err(Error::Setup)?) } else { None };
        tokio::spawn(signals.serve(cluster.clone()));
        // OTLP metrics, when the environment asks for them; the last figures leave when it drops.
        #[cfg(feature = "telemetry")]
        let _metrics = crate::telemetry::metrics::export(&cluster).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no OTLP metrics export");
            None
        });
        let user = primary(cluster.clone(), events);
        let outcome = tokio::select! {
            result = user => {
                let stopped = cluster.stop().await;
                result.map_err(Error::Primary).and_then(|()| stopped.map_err(Error::from))
            }
            outcome = cluster.wait() => outcome.map_err(Error::from),
        };
        // The workers are gone: what they left behind goes too (SIGTERM, then SIGKILL after
        // `kill_timeout`, as a worker).
        if let Some(reaper) = &reaper {
            reaper.end_orphans(orphans_patience).await;
        }
        outcome
    });
    // Every worker has exited by now; whatever task is left (a reader winding down) must not
    // hold the process's exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    #[cfg(feature = "telemetry")]
    crate::telemetry::flush();
    outcome
}

/// The primary of a supervision tree of programs ([`TreeConfig`]): as [`run_primary`] for a
/// cluster, one single-threaded runtime, the orphans reaped, and the signals: SIGINT/SIGTERM
/// stop the tree (dependents first), SIGHUP reloads it ([`TreeHandle::reload`]: the file
/// re-read, only what changed touched), SIGUSR1 reopens log files; `primary` gets the tree's
/// handle and its events, subscribed before the first program starts.
///
/// # Errors
///
/// [`Error::Tree`] for a refused configuration or a tree that gave up; [`Error::Setup`],
/// [`Error::Primary`] as [`run_primary`].
///
/// ```no_run
/// use corral::ClusterConfig;
/// use corral::config::{ForeignWorker, Scheduling, WorkerExec};
/// use corral::tree::{Condition, ProgramSpec, TreeConfig};
///
/// let program = |p: &str, a: &str| {
///     let w = ForeignWorker::new(p).arg(a);
///     ClusterConfig::default().exec(WorkerExec::Foreign(w)).scheduling(Scheduling::ReusePort)
/// };
/// let tree = TreeConfig::default()
///     .program(ProgramSpec::oneshot("migrate", program("python3", "migrate.py").workers(1)))
///     .program(ProgramSpec::service("api", program("python3", "api.py")).depends_on("migrate", Condition::Completed));
/// let outcome = corral::run_tree::<(), (), _, _>(tree, |tree, mut events| async move {
///     while events.recv().await.is_some() {}
///     tree.wait().await.map_err(Into::into)
/// });
/// std::process::exit(match outcome { Ok(()) => 0, Err(e) => i32::from(e.exit_code()) });
/// ```
pub fn run_tree<M, R, F, Fut>(config: TreeConfig, primary: F) -> Result<(), Error>
where
    M: serde::Serialize + corral_runtime::NodeMessage + Clone + Send + Sync + 'static,
    R: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
    F: FnOnce(TreeHandle<M, R>, TreeEvents<R>) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    config.validate().map_err(corral_runtime::tree::TreeError::from)?;
    corral_runtime::set_primary_title();
    let runtime = primary_runtime()?;
    let patience = config.programs.iter().map(|p| p.config.kill_timeout).max().unwrap_or_default();
    let outcome = runtime.block_on(async move {
        let signals = Signals::install().map_err(Error::Setup)?;
        Signals::release();
        let (tree, events) = Tree::<M, R>::spawn(config).await?;
        let reaper = Reaper::start().map_err(Error::Setup)?;
        tokio::spawn(signals.serve_tree(tree.clone()));
        let user = primary(tree.clone(), events);
        let outcome = tokio::select! {
            result = user => {
                let stopped = tree.stop().await;
                result.map_err(Error::Primary).and_then(|()| stopped.map_err(Error::from))
            }
            outcome = tree.wait() => outcome.map_err(Error::from),
        };
        reaper.end_orphans(patience).await;
        outcome
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    #[cfg(feature = "telemetry")]
    crate::telemetry::flush();
    outcome
}

/// The primary's signal handlers, as PM2 and gunicorn users expect them.
pub(crate) struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    ttin: tokio::signal::unix::Signal,
    ttou: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    /// The signals the primary handles.
    const HANDLED: [nix::sys::signal::Signal; 7] = {
        use nix::sys::signal::Signal::*;
        [SIGINT, SIGTERM, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2]
    };

    fn set() -> nix::sys::signal::SigSet {
        let mut set = nix::sys::signal::SigSet::empty();
        for signal in Self::HANDLED {
            set.add(signal);
        }
        set
    }

    /// Blocks the handled signals in the calling thread until [`release`](Self::release):
    /// one sent while the program starts waits, pending, for the handlers, instead of killing
    /// it (its default action) or, as a container's PID 1, being dropped (PID 1 gets no
    /// signal it has no handler for). Call it first thing, before any thread starts.
    pub(crate) fn hold() {
        let _ = nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&Self::set()), None);
    }

    /// Unblocks them in the calling thread, once the handlers are installed.
    fn release() {
        let _ = nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_UNBLOCK, Some(&Self::set()), None);
    }

    fn install() -> std::io::Result<Self> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            ttin: signal(SignalKind::from_raw(libc::SIGTTIN))?,
            ttou: signal(SignalKind::from_raw(libc::SIGTTOU))?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// SIGINT / SIGTERM: graceful stop (again: no effect, the stop is under way). SIGHUP:
    /// rolling reload (one during another is refused, logged at WARN). SIGTTIN / SIGTTOU: one worker
    /// more / fewer (refused below one, logged). SIGUSR1: reopen log files (logrotate).
    /// SIGUSR2: upgrade the primary in place (a refusal is logged; success replaces the image).
    async fn serve<M, R>(mut self, cluster: ClusterHandle<M, R>)
    where
        M: serde::Serialize + Clone + Send + Sync + 'static,
        R: Clone + Send + 'static,
    {
        loop {
            tokio::select! {
                _ = self.int.recv() => Self::stop(&cluster, "SIGINT"),
                _ = self.term.recv() => Self::stop(&cluster, "SIGTERM"),
                _ = self.hup.recv() => Self::reload(&cluster),
                _ = self.ttin.recv() => Self::scale(&cluster, Scale::By(1), "SIGTTIN"),
                _ = self.ttou.recv() => Self::scale(&cluster, Scale::By(-1), "SIGTTOU"),
                _ = self.usr1.recv() => {
                    tracing::info!("SIGUSR1: reopening log files");
                    corral_runtime::reopen_log_files();
                }
                _ = self.usr2.recv() => {
                    tracing::info!("SIGUSR2: upgrading the primary in place");
                    let _ = cluster.actor().send_message(corral_runtime::ClusterMsg::Upgrade(None));
                }
            }
        }
    }

    /// The signals of a tree's primary: SIGINT / SIGTERM stop it, SIGHUP reloads it (one at a
    /// time), SIGUSR1 reopens log files; the others are for a single cluster (logged).
    async fn serve_tree<M, R>(mut self, tree: TreeHandle<M, R>)
    where
        M: serde::Serialize + Clone + Send + Sync + 'static,
        R: Clone + Send + Sync + 'static,
    {
        let reloading = Arc::new(AtomicBool::new(false));
        loop {
            let name = tokio::select! {
                _ = self.int.recv() => "SIGINT",
                _ = self.term.recv() => "SIGTERM",
                _ = self.hup.recv() => {
                    if reloading.swap(true, Ordering::SeqCst) {
                        tracing::warn!("SIGHUP refused: a reload is running (it goes on)");
                        continue;
                    }
                    tracing::info!("SIGHUP: reloading the tree (only what changed)");
                    let (tree, reloading) = (tree.clone(), reloading.clone());
                    tokio::spawn(async move {
                        match tree.reload().await {
                            Ok(report) => tracing::info!(?report, "reloaded"),
                            Err(e) => tracing::warn!(error = %e, "SIGHUP refused"),
                        }
                        reloading.store(false, Ordering::SeqCst);
                    });
                    continue;
                }
                _ = self.usr1.recv() => {
                    tracing::info!("SIGUSR1: reopening log files");
                    corral_runtime::reopen_log_files();
                    continue;
                }
                _ = self.ttin.recv() => { tracing::warn!("SIGTTIN ignored: scale a program with corral scale NAME N"); continue }
                _ = self.ttou.recv() => { tracing::warn!("SIGTTOU ignored: scale a program with corral scale NAME N"); continue }
                _ = self.usr2.recv() => { tracing::warn!("SIGUSR2 ignored: an in-place upgrade is for a single cluster"); continue }
            };
            tracing::info!("{name}: stopping the tree gracefully, dependents first");
            let tree = tree.clone();
            tokio::spawn(async move {
                let _ = tree.stop().await;
            });
        }
    }

    fn stop<M, R>(cluster: &ClusterHandle<M, R>, name: &str)
    where
        M: serde::Serialize + Clone + Send + 'static,
        R: Clone + Send + 'static,
    {
        tracing::info!("{name}: stopping the cluster gracefully");
        let _ = cluster.actor().send_message(corral_runtime::ClusterMsg::Stop(None));
    }

    /// SIGHUP: a rolling reload. One that comes while a reload runs is queued by the cluster
    /// and runs once that one ends (all SIGHUPs meanwhile make that one reload; the cluster
    /// says so in its log). SIGHUPs sent before the primary took the first one in are one
    /// signal to the kernel: they make one reload.
    fn reload<M, R>(cluster: &ClusterHandle<M, R>)
    where
        M: serde::Serialize + Clone + Send + Sync + 'static,
        R: Clone + Send + 'static,
    {
        tracing::info!("SIGHUP: rolling reload");
        let cluster = cluster.clone();
        tokio::spawn(async move {
            match cluster.reload().await {
                // The cluster logs how the reload went (done once the old workers drained,
                // or aborted, and why).
                Ok(report) => match report.error {
                    Some(
                        error @ (ReloadError::AlreadyRunning | ReloadError::Stopping | ReloadError::Reconfigure(_)),
                    ) if report.replaced.is_empty() => {
                        tracing::warn!(%error, "SIGHUP refused")
                    }
                    _ => {}
                },
                Err(e) => tracing::warn!(error = %e, "SIGHUP refused"),
            }
        });
    }

    fn scale<M, R>(cluster: &ClusterHandle<M, R>, request: Scale, name: &'static str)
    where
        M: serde::Serialize + Clone + Send + Sync + 'static,
        R: Clone + Send + 'static,
    {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            match cluster.scale(request).await {
                Ok(report) => tracing::info!(from = report.from, to = report.to, note = ?report.note, "{name}: scaled"),
                Err(e) => tracing::warn!(error = %e, "{name}: not scaled"),
            }
        });
    }
}

fn log_event<R: std::fmt::Debug>(event: &ClusterEvent<R>) {
    match event {
        ClusterEvent::Message { slot, message, span } => {
            span.in_scope(|| tracing::info!(slot, ?message, "message from worker"))
        }
        ClusterEvent::Exit { slot, pid, status, exited_after_disconnect } => {
            tracing::info!(slot, pid, %status, exited_after_disconnect, "worker exited")
        }
        other => tracing::debug!(event = ?other, "cluster event"),
    }
}

/// The primary's runtime: one event loop (see [`run_primary`]). Its blocking pool (a worker's
/// `/proc` scans, file reads) keeps tokio's 10 s keep-alive: a pool thread retired sooner is a
/// thread to create again, and a primary starved of processes (`RLIMIT_NPROC`) may not get it
/// back (`tests/starved.rs` failed with a 1 s keep-alive: the freed slot let a fork through,
/// and the next `spawn_blocking` found no thread and could not make one).
fn primary_runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Error::Setup)
}
