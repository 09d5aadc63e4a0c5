//! A library cluster in a node set (`--features cluster`): one of these per host, joined
//! over ractor_cluster, and a typed broadcast that reaches every worker on every host.
//!
//! ```text
//! printf 's3cret\n' > /tmp/cookie && chmod 600 /tmp/cookie
//! cargo run --features cluster --example node_set -- --node a --node-listen 127.0.0.1:4370 --cookie-file /tmp/cookie
//! cargo run --features cluster --example node_set -- --node b --node-listen 127.0.0.2:4370 --cookie-file /tmp/cookie \
//!     --join 127.0.0.1:4370 --announce "hello from b" --expect 2
//! corral status --all --name node_set          # every worker of both, with its node
//! corral broadcast --name node_set '{"Announce":"hi"}'
//! ```
//!
//! Each worker prints what it was sent; each primary prints `node NAME: N workers ready` once
//! its workers are, `node up: …` / `node down: …` as peers come and go (`ClusterEvent::NodeUp`,
//! `NodeDown`), and with `--announce TEXT` broadcasts `Announce(TEXT)` across the set as
//! soon as `--expect` nodes are up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use corral::control::ControlSocket;
use corral::node::{Cookie, NodeConfig};
use corral::{BoxError, ClusterConfig, ClusterEvent, Worker, WorkerContext};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
struct Args {
    /// This node's name.
    #[arg(long)]
    node: String,
    /// Its node server's address.
    #[arg(long)]
    node_listen: SocketAddr,
    /// A node server to join (repeatable).
    #[arg(long)]
    join: Vec<SocketAddr>,
    /// The cookie file (mode 0600).
    #[arg(long)]
    cookie_file: PathBuf,
    /// Workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// The control socket (default: the cluster's, named `node_set`).
    #[arg(long)]
    control: Option<PathBuf>,
    /// Broadcast `Announce(TEXT)` to the whole set once `--expect` nodes are up.
    #[arg(long)]
    announce: Option<String>,
    /// Nodes to wait for before announcing.
    #[arg(long, default_value_t = 1)]
    expect: usize,
}

/// Primary → worker, on any node.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Cmd {
    /// Print this.
    Announce(String),
}

struct Listener;

impl Worker for Listener {
    type Msg = Cmd;
    type Report = ();
    type State = ();

    async fn start(&self, _: &WorkerContext<()>) -> Result<(), BoxError> {
        Ok(())
    }

    async fn handle(&self, cx: &WorkerContext<()>, Cmd::Announce(text): Cmd, _: &mut ()) -> Result<(), BoxError> {
        println!("worker {} (pid {}) got: {text}", cx.slot(), std::process::id());
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    corral::init_tracing();
    corral::run_if_worker(Listener);
    let args = Args::parse();
    let cookie = match Cookie::from_file(&args.cookie_file) {
        Ok(cookie) => cookie,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut node = NodeConfig::new(args.node.clone(), args.node_listen, cookie);
    node.seeds = args.join.clone();
    let mut config = ClusterConfig::default().workers(args.workers).node(node);
    config.name = "node_set".into();
    config.control = args.control.clone().map_or(ControlSocket::Default, ControlSocket::Path);
    corral::run(config, Listener, move |cluster, mut events| async move {
        let mut ready = 0;
        while ready < cluster.workers() {
            match events.recv().await {
                Some(ClusterEvent::Ready { .. }) => ready += 1,
                Some(event) => print_node_event(&event),
                None => return Ok(()),
            }
        }
        println!("node {}: {ready} workers ready", args.node);
        if let (Some(text), Some(nodes)) = (args.announce, cluster.node_set()) {
            // Bounded: the set has a minute to gather.
            for _ in 0..600 {
                if nodes.nodes().iter().filter(|n| n.up).count() >= args.expect
                    && nodes.status_all().await.workers.len() >= args.expect * args.workers
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            for answer in nodes.broadcast(&Cmd::Announce(text)).await? {
                match answer {
                    Ok((node, data)) => println!("broadcast: node {node} reached {} workers", data["reached"]),
                    Err(e) => println!("broadcast: {e}"),
                }
            }
        }
        while let Some(event) = events.recv().await {
            print_node_event(&event);
        }
        Ok(())
    })
}

/// `node up: NAME (ADDR)` / `node down: NAME (silent for …)`.
fn print_node_event(event: &ClusterEvent<()>) {
    match event {
        ClusterEvent::NodeUp { node, listen } => println!("node up: {node} ({listen})"),
        ClusterEvent::NodeDown { node, silent } => println!("node down: {node} (silent for {silent:?})"),
        _ => {}
    }
}
