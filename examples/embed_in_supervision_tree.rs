//! A corral cluster inside your own ractor supervision tree.
//!
//! `App` is an ordinary ractor supervisor. It spawns the `Cluster` actor linked under itself;
//! when a worker slot exceeds its restart intensity, the cluster drains the other workers and
//! fails (Erlang's escalation), `App` sees `ActorFailed` and starts a fresh cluster, up to
//! `--cluster-restarts` times, then stops itself.
//!
//! ```text
//! cargo run --release --example embed_in_supervision_tree -- --workers 2 --crash
//! ```
//!
//! Without `--crash` the workers are healthy and the app runs until Ctrl-C (then exits 0).
//! With it, the app gives up after `--cluster-restarts` fresh clusters and exits 1.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use corral::supervision::Escalation;
use corral::{BoxError, Cluster, ClusterConfig, ClusterEvent, ClusterHandle, Worker, WorkerContext};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

#[derive(Parser, Clone)]
struct Args {
    /// Workers per cluster.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,
    /// Make slot 0's worker crash at start, to watch the escalation.
    #[arg(long)]
    crash: bool,
    /// How many times `App` restarts a failed cluster before it gives up itself.
    #[arg(long, default_value_t = 2)]
    cluster_restarts: u32,
}

struct Flaky;

impl Worker for Flaky {
    type Msg = ();
    type Report = ();
    type State = ();

    async fn start(&self, cx: &WorkerContext<()>) -> Result<(), BoxError> {
        if std::env::var_os("FLAKY_CRASH").is_some() && cx.slot() == 0 {
            return Err("slot 0 is configured to crash".into());
        }
        Ok(())
    }
}

/// The user's own supervisor.
struct App;

/// Set when `App` gave up on its clusters: the program then exits non-zero.
static GAVE_UP: AtomicBool = AtomicBool::new(false);

struct AppState {
    args: Args,
    cluster: Option<ClusterHandle<(), ()>>,
    restarts: u32,
}

impl App {
    async fn start_cluster(myself: &ActorRef<()>, args: &Args) -> Result<ClusterHandle<(), ()>, ActorProcessingErr> {
        let mut config = ClusterConfig::default()
            .workers(usize::from(args.workers))
            .max_restarts(3)
            .period(Duration::from_secs(10))
            .escalation(Escalation::Stop);
        if args.crash {
            config = config.env_var("FLAKY_CRASH", "1");
        }
        let (cluster, mut events) = Cluster::<(), ()>::spawn_linked(config, myself.get_cell()).await?;
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    ClusterEvent::Ready { slot, pid, .. } => println!("[app] worker {slot} ready (pid {pid})"),
                    ClusterEvent::Restarting { slot, delay, .. } => {
                        println!("[app] worker {slot} restarting in {delay:?}")
                    }
                    ClusterEvent::GaveUp { slot, restarts } => {
                        println!("[app] worker {slot} gave up after {restarts} restarts")
                    }
                    _ => {}
                }
            }
        });
        Ok(cluster)
    }
}

impl Actor for App {
    type Msg = ();
    type State = AppState;
    type Arguments = Args;

    async fn pre_start(&self, myself: ActorRef<()>, args: Args) -> Result<AppState, ActorProcessingErr> {
        let cluster = Self::start_cluster(&myself, &args).await?;
        Ok(AppState { args, cluster: Some(cluster), restarts: 0 })
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        st: &mut AppState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(_, error) => {
                println!("[app] cluster failed: {error}");
                if st.restarts == st.args.cluster_restarts {
                    println!("[app] giving up after {} cluster restarts", st.restarts);
                    GAVE_UP.store(true, Ordering::SeqCst);
                    myself.stop(Some("cluster keeps failing".into()));
                    return Ok(());
                }
                st.restarts += 1;
                println!("[app] starting a fresh cluster ({}/{})", st.restarts, st.args.cluster_restarts);
                st.cluster = Some(Self::start_cluster(&myself, &st.args).await?);
            }
            SupervisionEvent::ActorTerminated(..) => {
                println!("[app] cluster stopped");
                myself.stop(None);
            }
            _ => {}
        }
        Ok(())
    }

    async fn handle(&self, _: ActorRef<()>, _: (), st: &mut AppState) -> Result<(), ActorProcessingErr> {
        // The only message: shut down.
        if let Some(cluster) = st.cluster.take() {
            cluster.stop().await?;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    corral::init_tracing();
    corral::run_if_worker(Flaky);
    let args = Args::parse();
    let restarts = args.cluster_restarts;
    match run(args) {
        Ok(()) if GAVE_UP.load(Ordering::SeqCst) => {
            eprintln!("error: the cluster kept failing; gave up after {restarts} cluster restarts");
            ExitCode::from(corral::EXIT_FAILURE)
        }
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(corral::EXIT_FAILURE)
        }
    }
}

/// Runs `App` until it stops (Ctrl-C, or it gave up).
fn run(args: Args) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let (app, join) = Actor::spawn(Some("app".into()), App, args).await?;
        let ctrl_c = tokio::spawn({
            let app = app.clone();
            async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    let _ = app.send_message(());
                }
            }
        });
        join.await?;
        ctrl_c.abort();
        Ok(())
    })
}
