//! Plain axum, no cluster at all: the baselines of `benches/http.rs` and of the ceiling.
//!
//! By default one process, tokio's default multi-threaded runtime (one worker thread per CPU),
//! one listening socket. With `--processes N`, the shape of a cluster without corral: N copies
//! of this program (children of the first), each on tokio's single-threaded runtime with a
//! listening socket of its own on one port (`SO_REUSEPORT`; the kernel shares connections out).
//! What corral's workers add to a request is measured against the second; what the process
//! shape itself costs, against the first.
//!
//! `GET /` answers 200 `Hello`. Prints `listening on http://HOST:PORT` (with the real port when
//! `--port 0`) once every socket is bound, and exits 0 after draining on SIGTERM or SIGINT.
//!
//! ```text
//! cargo run --release --example hello_axum -- --port 3000
//! cargo run --release --example hello_axum -- --port 3000 --processes 2
//! ```

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};

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
    /// Serve from this many single-threaded processes sharing the port with `SO_REUSEPORT`
    /// (0: one multi-threaded process, the default).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=256))]
    processes: u16,
    /// Internal: this process is one of `--processes`, on its single-threaded runtime.
    #[arg(long, hide = true)]
    copy: bool,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if args.processes == 0 {
        return tokio::runtime::Runtime::new()?.block_on(serve(bind(args.host, args.port, false)?, false));
    }
    if args.copy {
        let listener = bind(args.host, args.port, true)?;
        return tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(serve(listener, true));
    }
    // The first socket learns the port; the copies bind theirs to it while it is still open.
    let first = bind(args.host, args.port, true)?;
    let addr = first.local_addr()?;
    let mut copies: Vec<Child> = (0..args.processes).map(|_| copy(addr)).collect::<std::io::Result<_>>()?;
    for child in &mut copies {
        // Each copy says "bound" once its socket is; only then is the port served by all.
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("copy without stdout"))?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    }
    drop(first);
    announce(addr)?;
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(shutdown_signal());
    for child in &copies {
        // The copies drain on SIGTERM, as this process does.
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).map_err(std::io::Error::other)?);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    for mut child in copies {
        child.wait()?;
    }
    Ok(())
}

fn copy(addr: SocketAddr) -> std::io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(["--host", &addr.ip().to_string(), "--port", &addr.port().to_string(), "--processes", "1", "--copy"])
        .stdout(Stdio::piped())
        .spawn()
}

fn bind(host: IpAddr, port: u16, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let addr = SocketAddr::new(host, port);
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn announce(addr: SocketAddr) -> std::io::Result<()> {
    // The benchmark harness waits for this exact line; flush it past any pipe buffering.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()
}

/// Serves `GET /` until SIGTERM or SIGINT; `copy`: says `bound` to the first process instead of
/// announcing the address.
async fn serve(listener: std::net::TcpListener, copy: bool) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = Router::new().route("/", get(|| async { "Hello" }));
    if copy {
        println!("bound");
    } else {
        announce(listener.local_addr()?)?;
    }
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
