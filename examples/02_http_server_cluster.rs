//! An HTTP server cluster (Node guide: `02-http-server-cluster.js`): every worker serves the
//! same port; each answer says which worker handled it.
//!
//! ```text
//! cargo run --release --example 02_http_server_cluster -- --port 3000
//! for i in 1 2 3 4; do curl -s http://127.0.0.1:3000/; done
//! ```
//!
//! The Node version hands the port to `server.listen(3000)` in each worker and lets the
//! primary share it; here `cx.listen` does the same (round robin by default, as Node on
//! Linux), and the server drains gracefully on SIGTERM.

use clap::Parser;
use corral::{BoxError, ClusterConfig, ClusterEvent, Worker, WorkerContext};

#[derive(Parser)]
struct Args {
    /// Port (0: any free port).
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Workers (default: one per CPU).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
}

struct HttpWorker {
    addr: String,
}

impl Worker for HttpWorker {
    type Msg = ();
    type Report = ();
    type State = ();

    async fn start(&self, cx: &WorkerContext<()>) -> Result<(), BoxError> {
        let listener = cx.listen(&self.addr).await?;
        let pid = std::process::id();
        let app = axum::Router::new()
            .route("/", axum::routing::get(move || async move { format!("Handled by worker {pid}\n") }));
        cx.spawn_tracked(corral::http::serve(listener, app, cx.shutdown_token(), Default::default()));
        println!("Worker {pid} started");
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    corral::init_tracing();
    let args = Args::parse();
    let mut config = ClusterConfig::default();
    if let Some(n) = args.workers {
        config = config.workers(usize::from(n));
    }
    if !corral::is_worker() {
        println!("Primary {} is running", std::process::id());
    }
    corral::run(config, HttpWorker { addr: format!("127.0.0.1:{}", args.port) }, |_cluster, mut events| async move {
        while let Some(event) = events.recv().await {
            match event {
                ClusterEvent::Listening { slot, addr } => println!("Worker {slot} listening on http://{addr}"),
                ClusterEvent::Exit { pid, status, exited_after_disconnect: false, .. } => {
                    println!("Worker {pid} died ({status}); restarting")
                }
                _ => {}
            }
        }
        Ok(())
    })
}
