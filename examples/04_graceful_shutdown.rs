//! Graceful shutdown and zero-downtime reload (Node guide: `04-graceful-shutdown.js`).
//!
//! ```text
//! cargo run --release --example 04_graceful_shutdown -- --port 3000
//! curl http://127.0.0.1:3000/work?ms=2000 &   # a request in flight…
//! kill -TERM <primary pid>                     # …still gets its answer; then exit 0
//! kill -HUP <primary pid>                      # rolling reload: new pids, nothing dropped
//! ```
//!
//! What Node's guide does by hand (a `shutdown` message, `server.close()`, a 30 s force-exit
//! timer) corral does for every worker: on SIGTERM/SIGINT the primary stops accepting, each
//! worker stops accepting, answers its keep-alive clients' next request with
//! `Connection: close`, finishes what is in flight, and exits; a worker still busy after
//! `--kill-timeout` is killed, and then the primary exits non-zero naming it.

use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use clap::Parser;
use corral::{BoxError, ClusterConfig, ClusterEvent, Worker, WorkerContext};
use serde::Deserialize;

#[derive(Parser)]
struct Args {
    /// Port (0: any free port).
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Workers.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,
    /// Seconds a worker may take to drain before it is killed.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    kill_timeout: u64,
}

#[derive(Deserialize)]
struct Work {
    ms: u64,
}

struct Web {
    addr: String,
}

impl Worker for Web {
    type Msg = ();
    type Report = ();
    type State = ();

    async fn start(&self, cx: &WorkerContext<()>) -> Result<(), BoxError> {
        let listener = cx.listen(&self.addr).await?;
        let slot = cx.slot();
        let app = Router::new().route(
            "/work",
            get(move |Query(Work { ms }): Query<Work>| async move {
                tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
                format!("worker {slot} (pid {}) finished {ms} ms of work\n", std::process::id())
            }),
        );
        // The worker waits for tracked tasks before it exits: the server drains first.
        cx.spawn_tracked(corral::http::serve(listener, app, cx.shutdown_token(), Default::default()));
        println!("worker {slot} (pid {}) serving", std::process::id());
        Ok(())
    }

    async fn stop(&self, cx: &WorkerContext<()>, _: ()) -> Result<(), BoxError> {
        println!(
            "worker {} (pid {}) draining {} open connection(s)",
            cx.slot(),
            std::process::id(),
            cx.open_connections()
        );
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    corral::init_tracing();
    let args = Args::parse();
    let config = ClusterConfig::default()
        .workers(usize::from(args.workers))
        .kill_timeout(Duration::from_secs(args.kill_timeout));
    let addr = format!("127.0.0.1:{}", args.port);
    corral::run(config, Web { addr }, |cluster, mut events| async move {
        let (mut ready, mut bound, mut announced) = (0, None, false);
        while let Some(event) = events.recv().await {
            match event {
                ClusterEvent::Listening { addr, .. } => bound = Some(addr),
                ClusterEvent::Ready { .. } => ready += 1,
                ClusterEvent::Stopping => println!("primary: draining every worker"),
                ClusterEvent::Exit { slot, pid, status, exited_after_disconnect: true } => {
                    println!("primary: worker {slot} (pid {pid}) drained and {status}");
                }
                // The address stays the same across a reload: said once, then "reloaded".
                ClusterEvent::Reloaded { replaced, error } => match error {
                    None => println!("primary: reloaded, {replaced} worker(s) replaced"),
                    Some(error) => println!("primary: reload aborted after {replaced}: {error}"),
                },
                _ => {}
            }
            if !announced
                && ready >= cluster.workers()
                && let Some(addr) = bound
            {
                println!("primary {}: listening on http://{addr} (SIGTERM drains, SIGHUP reloads)", std::process::id());
                announced = true;
            }
        }
        Ok(())
    })
}
