//! A single plain axum process: the "no cluster at all" baseline of `benches/http.rs`.
//!
//! One process, tokio's default multi-threaded runtime (one worker thread per CPU), one
//! listening socket. `GET /` answers 200 `Hello`. Prints `listening on http://HOST:PORT`
//! (with the real port when `--port 0`) once the socket is bound, and exits 0 after
//! draining on SIGTERM or SIGINT.
//!
//! ```text
//! cargo run --release --example hello_axum -- --port 3000
//! ```

use std::io::Write;
use std::net::IpAddr;

use axum::{Router, routing::get};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
struct Args {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to bind (0 = any free port; the printed line has the real one).
    #[arg(long, default_value_t = 3000)]
    port: u16,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind((args.host, args.port)).await?;
    let addr = listener.local_addr()?;

    let app = Router::new().route("/", get(|| async { "Hello" }));

    // The benchmark harness waits for this exact line; flush it past any pipe buffering.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);

    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
