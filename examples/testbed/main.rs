//! The worker program corral's black-box tests and benchmarks drive: an echo worker with a
//! switchboard of failure modes. Not a tutorial; see `01_basic_cluster` for that.
//!
//! The primary side lives in the tests (`tests/`); this binary is only ever started as a
//! worker. Its behaviour is chosen by environment variables:
//!
//! * `TESTBED_MODE`: `echo` (default), `crash_start` (start fails), `exit_after_ready`
//!   (drains itself at once: exit 0), `crash_after_ready` (exits 1 right after ready),
//!   `silent` (never says hello), `garbage` (writes garbage instead of frames),
//!   `bad_version` (says hello with protocol version 99), `oversized` (a length prefix over the
//!   limit), `truncated` (half a frame, then EOF), `unknown_variant` (a body with an unknown
//!   enum variant).
//!   `defer_ready` (says ready itself `TESTBED_START_DELAY_MS` after start returned),
//!   `slow_start` (start takes `TESTBED_START_DELAY_MS`, after it has called `listen`).
//!   Hostile: `flood_stdout` (prints lines as fast as it can), `ignore_term` (says hello and
//!   ready by hand, then answers nothing and ignores SIGTERM), `close_ipc` (closes its IPC fds
//!   after start), `fork_child` (forks a `sleep 300`, writes its pid to
//!   `TESTBED_CHILD_PID_FILE`, then exits 1).
//! * `TESTBED_FAULT_SLOT`, `TESTBED_FAULT_GEN`: apply the mode only to that slot / generation;
//!   every other process is a plain echo worker.
//! * `TESTBED_BALLAST_MB=N`: touch N MiB of memory at start and keep it, so that the kernel
//!   has that much to free when the process dies (its teardown takes tens of milliseconds);
//!   like the mode, only where `TESTBED_FAULT_SLOT` / `TESTBED_FAULT_GEN` apply.
//! * `TESTBED_SAY=TEXT`: print a line with TEXT on stdout and one on stderr at start.
//! * `TESTBED_CRASH_IF_EXISTS=PATH`: start fails while that file exists (a bad deploy).
//! * `TESTBED_HTTP=ADDR`: also serve HTTP on the cluster's shared `ADDR`: `GET /` answers
//!   `<slot> <pid>`, `GET /slow?ms=N` answers after N ms, `GET /burn?ms=N` after N ms of
//!   busy CPU on the runtime's thread.

use std::io::Write;
use std::os::fd::FromRawFd;
use std::time::Duration;

use corral::protocol::bootstrap::{IPC_FD, WorkerBootstrap};
use corral::protocol::{Control, Envelope, FrameCodec, Hello};
use corral::{BoxError, ClusterConfig, Worker, WorkerContext};
use serde::Deserialize;
use tokio_util::codec::Encoder;

use corral_testkit::messages::{TestCmd, TestReport};

struct Testbed {
    mode: String,
}

/// What a testbed worker keeps between messages.
#[derive(Default)]
struct TestState {
    /// Calls held unanswered (`TestCmd::Hold`).
    held: Vec<corral::worker::ReplyTo<u64>>,
    /// Ticks handled, by sender slot: how many, and the next number expected.
    ticks: std::collections::BTreeMap<usize, (u64, u64)>,
    /// Ticks that were not their sender's next number.
    out_of_order: u64,
}

/// The HTTP side of the testbed.
fn router(slot: usize) -> axum::Router {
    use axum::routing::get;
    #[derive(Deserialize)]
    struct Ms {
        ms: u64,
    }
    let pid = std::process::id();
    axum::Router::new()
        .route("/", get(move || async move { format!("{slot} {pid}") }))
        .route(
            "/slow",
            get(move |axum::extract::Query(Ms { ms }): axum::extract::Query<Ms>| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                format!("{slot} {pid}")
            }),
        )
        .route(
            "/burn",
            get(move |axum::extract::Query(Ms { ms }): axum::extract::Query<Ms>| async move {
                // Busy on the runtime's thread, as a CPU-bound handler is.
                let end = std::time::Instant::now() + Duration::from_millis(ms);
                let mut x = 0u64;
                while std::time::Instant::now() < end {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
                format!("{slot} {pid}")
            }),
        )
}

impl Worker for Testbed {
    type Msg = TestCmd;
    type Report = TestReport;
    type State = TestState;

    async fn start(&self, cx: &WorkerContext<TestReport>) -> Result<Self::State, BoxError> {
        if let Ok(text) = std::env::var("TESTBED_SAY") {
            println!("{text} from slot {} on stdout", cx.slot());
            eprintln!("{text} from slot {} on stderr", cx.slot());
        }
        if let Ok(path) = std::env::var("TESTBED_CRASH_IF_EXISTS")
            && std::path::Path::new(&path).exists()
        {
            return Err(format!("testbed: {path} exists, so this start fails").into());
        }
        if let Ok(addr) = std::env::var("TESTBED_HTTP") {
            let listener = cx.listen(&addr).await?;
            cx.spawn_tracked(corral::http::serve(listener, router(cx.slot()), cx.shutdown_token(), Default::default()));
        }
        match self.mode.as_str() {
            "defer_ready" => {
                cx.defer_ready();
                let ms = std::env::var("TESTBED_START_DELAY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
                let cx = cx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let _ = cx.ready().await;
                });
            }
            "slow_start" => {
                let ms = std::env::var("TESTBED_START_DELAY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            "crash_start" => return Err("testbed: start fails on purpose".into()),
            "flood_stdout" => {
                std::thread::spawn(|| {
                    let mut out = std::io::stdout().lock();
                    let mut n = 0u64;
                    loop {
                        n += 1;
                        if writeln!(out, "flood line {n} xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx").is_err() {
                            return;
                        }
                    }
                });
            }
            "close_ipc" => {
                tokio::spawn(async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    // SAFETY: closing our own IPC fds is the point: the primary must notice.
                    unsafe {
                        libc::close(corral::protocol::bootstrap::IPC_FD);
                        libc::close(corral::protocol::bootstrap::HANDLE_FD);
                    }
                });
            }
            "fork_child" => {
                let child = std::process::Command::new("sleep").arg("300").spawn()?;
                if let Ok(path) = std::env::var("TESTBED_CHILD_PID_FILE") {
                    std::fs::write(path, child.id().to_string())?;
                }
                std::process::exit(1);
            }
            "exit_after_ready" => cx.request_stop(),
            "crash_after_ready" => {
                tokio::spawn(async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    std::process::exit(1);
                });
            }
            _ => {}
        }
        let pid = std::process::id();
        cx.report(TestReport::Hello { slot: cx.slot(), generation: cx.generation(), pid }).await?;
        Ok(TestState::default())
    }

    async fn handle(
        &self,
        cx: &WorkerContext<TestReport>,
        msg: TestCmd,
        state: &mut Self::State,
    ) -> Result<(), BoxError> {
        match msg {
            TestCmd::Ping(n) => cx.report(TestReport::Pong { n, slot: cx.slot(), pid: std::process::id() }).await?,
            TestCmd::Exit(code) => std::process::exit(code),
            TestCmd::Stop => cx.request_stop(),
            TestCmd::Block(ms) => std::thread::sleep(Duration::from_millis(ms)),
            TestCmd::Spin(ms) => testbed_busy_loop(Duration::from_millis(ms)),
            TestCmd::Pool(ms) => {
                cx.cpu_pool()
                    .run(move || {
                        let start = std::time::Instant::now();
                        while start.elapsed() < Duration::from_millis(ms) {
                            std::hint::spin_loop();
                        }
                    })
                    .await?;
            }
            TestCmd::Alloc(mib) => {
                let block = vec![1u8; (mib as usize) << 20];
                // Kept for the life of the process: the point is to grow its RSS.
                std::mem::forget(block);
            }
            TestCmd::Flood(n) => {
                for i in 0..n {
                    cx.report(TestReport::Flood(i)).await?;
                }
            }
            TestCmd::HoldFds => {
                let count = hold_fds()?;
                cx.report(TestReport::FdsHeld { pid: std::process::id(), count }).await?;
            }
            TestCmd::ReleaseFds => {
                release_fds()?;
                cx.report(TestReport::FdsReleased { pid: std::process::id() }).await?;
            }
            TestCmd::Relay { to, first, count } => {
                for n in first..first + count {
                    match to {
                        Some(slot) => cx.send_to_worker(slot, &TestCmd::Ping(n)).await?,
                        None => cx.broadcast_workers(&TestCmd::Ping(n)).await?,
                    }
                }
            }
            TestCmd::Forward { to, cmd } => match to {
                Some(slot) => cx.send_to_worker(slot, &cmd).await?,
                None => cx.broadcast_workers(&cmd).await?,
            },
            TestCmd::Tick(n) => {
                let from = match cx.origin() {
                    Some(corral::worker::Origin::Worker { slot }) => slot,
                    _ => usize::MAX,
                };
                let (count, next) = state.ticks.entry(from).or_default();
                if n != *next {
                    state.out_of_order += 1;
                }
                *count += 1;
                *next = n + 1;
            }
            TestCmd::FloodPeer { to, count } => {
                let slot = cx.slot();
                cx.call(|go| TestReport::FloodReady { slot, go }, Duration::from_secs(30)).await?;
                for n in 0..count {
                    cx.send_to_worker(to, &TestCmd::Tick(n)).await?;
                }
                let cx = cx.clone();
                tokio::spawn(async move { cx.report(TestReport::FloodSent { slot: cx.slot(), count }).await });
            }
            TestCmd::TryFloodPeer { to, first, end } => {
                let mut next = first;
                while next < end {
                    let tick = TestCmd::Tick(next);
                    let sent = match to {
                        Some(slot) => cx.try_send_to_worker(slot, &tick),
                        None => cx.try_broadcast_workers(&tick),
                    };
                    match sent {
                        Ok(()) => next += 1,
                        Err(corral::worker::WorkerError::Busy) => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                let cx = cx.clone();
                tokio::spawn(async move { cx.report(TestReport::TryFlooded { slot: cx.slot(), next }).await });
            }
            TestCmd::Tally => {
                let ticks = state.ticks.iter().map(|(from, (count, _))| (*from, *count)).collect();
                cx.report(TestReport::Tally { slot: cx.slot(), ticks, out_of_order: state.out_of_order }).await?;
            }
            TestCmd::WhoSent(n) => cx.report(TestReport::Sender { n, slot: cx.slot(), origin: cx.origin() }).await?,
            TestCmd::Double(n, reply) => reply.send(n * 2).await?,
            TestCmd::Hold(reply) => state.held.push(reply),
            TestCmd::Refuse(reply) => reply.fail("refused on purpose").await?,
            TestCmd::Forget(reply) => drop(reply),
            TestCmd::Ask(n, ms) => {
                // Off the actor: the calls wait for the primary while messages keep coming.
                let cx = cx.clone();
                tokio::spawn(async move {
                    let timeout = Duration::from_millis(ms);
                    let calls = (0..n).map(|i| {
                        let cx = cx.clone();
                        async move { (i, cx.call(|reply| TestReport::Ask(i, reply), timeout).await) }
                    });
                    let mut matched = 0;
                    let mut errors = Vec::new();
                    for (i, answer) in futures_join_all(calls).await {
                        match answer {
                            Ok(v) if v == i + 1 => matched += 1,
                            Ok(v) => errors.push(format!("call {i} got {v}")),
                            Err(e) => errors.push(e.to_string()),
                        }
                    }
                    let pending_after = cx.pending_calls() as u64;
                    let _ = cx.report(TestReport::Asked { matched, errors, pending_after }).await;
                });
            }
        }
        Ok(())
    }
}

/// The fds `HoldFds` holds, and the soft limit to restore.
static HELD: std::sync::Mutex<Option<(Vec<std::fs::File>, libc::rlim_t)>> = std::sync::Mutex::new(None);

/// Leaves the process without a free fd: the soft `RLIMIT_NOFILE` just above the fds open
/// now, every number below it taken. Returns how many were opened.
fn hold_fds() -> std::io::Result<usize> {
    let mut held = HELD.lock().unwrap();
    if held.is_some() {
        return Ok(0);
    }
    let open = std::fs::read_dir("/proc/self/fd")?.count() as libc::rlim_t;
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let old = limit.rlim_cur;
    limit.rlim_cur = (open + 16).min(old);
    // SAFETY: setrlimit reads the struct it is given; lowering the soft limit is allowed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut files = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => files.push(f),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
            Err(e) => return Err(e),
        }
    }
    let count = files.len();
    *held = Some((files, old));
    Ok(count)
}

/// Gives back what `hold_fds` took.
fn release_fds() -> std::io::Result<()> {
    let Some((files, old)) = HELD.lock().unwrap().take() else { return Ok(()) };
    drop(files);
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    limit.rlim_cur = old;
    // SAFETY: setrlimit reads the struct it is given; `old` is at most the hard limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs every future at once (each in its own task), in order of the input.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("testbed call task"));
    }
    out
}

/// Spins on the CPU for `how_long`: a named frame for hang reports to find.
#[inline(never)]
fn testbed_busy_loop(how_long: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < how_long {
        std::hint::spin_loop();
    }
}

/// Speaks the protocol by hand, wrongly, as `mode` says; never returns.
fn misbehave(mode: &str, boot: &WorkerBootstrap) -> ! {
    // SAFETY: the primary placed our frame-stream socket at IPC_FD; nothing else in this
    // process uses it, since we bypass corral's worker runtime in this mode.
    let mut ipc = unsafe { std::os::unix::net::UnixStream::from_raw_fd(IPC_FD) };
    let mut codec: FrameCodec<(), ()> = FrameCodec::new(boot.max_frame_length);
    let mut buf = bytes::BytesMut::new();
    let hello = |version: u32| Hello { version, ..Hello::new(boot.slot, boot.generation, std::process::id()) };
    let mut put_hello = |buf: &mut bytes::BytesMut, version: u32| {
        codec.encode(Envelope::control(1, Control::Hello(hello(version))), buf).expect("encode hello");
    };
    match mode {
        "garbage" => buf.extend_from_slice(b"\x00\x00\x00\x05\xff\xff\xff\xff\xff GET / HTTP/1.1\r\n"),
        "bad_version" => put_hello(&mut buf, 99),
        "oversized" => {
            put_hello(&mut buf, corral::protocol::PROTOCOL_VERSION);
            buf.extend_from_slice(&u32::MAX.to_be_bytes());
        }
        "truncated" => {
            put_hello(&mut buf, corral::protocol::PROTOCOL_VERSION);
            buf.extend_from_slice(&[0, 0, 0, 10, 1, 2]);
        }
        "unknown_variant" => {
            put_hello(&mut buf, corral::protocol::PROTOCOL_VERSION);
            // seq 2, no trace, body variant 7 (Body has two).
            buf.extend_from_slice(&[0, 0, 0, 3, 2, 0, 7]);
        }
        "silent" => {}
        "ignore_term" => {
            // Hello and ready by hand, then deaf: no pong, no drain, SIGTERM ignored.
            put_hello(&mut buf, corral::protocol::PROTOCOL_VERSION);
            codec.encode(Envelope::control(2, Control::Ready), &mut buf).expect("encode ready");
            // SAFETY: setting a signal's disposition to "ignore" installs no handler code.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
        }
        other => panic!("testbed: unknown TESTBED_MODE {other:?}"),
    }
    ipc.write_all(&buf).expect("write to the primary");
    if mode == "truncated" {
        std::process::exit(0);
    }
    // Stay alive until the primary kills us (or dies: PR_SET_PDEATHSIG).
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn main() -> std::process::ExitCode {
    corral::init_tracing();
    let Some(boot) = WorkerBootstrap::from_env().expect("worker environment") else {
        eprintln!("testbed is a worker program: the tests start it through a corral primary");
        std::process::exit(2);
    };
    let var = |name: &str| std::env::var(name).ok();
    let applies = var("TESTBED_FAULT_SLOT").is_none_or(|s| s == boot.slot.to_string())
        && var("TESTBED_FAULT_GEN").is_none_or(|g| g == boot.generation.to_string());
    let mode = if applies { var("TESTBED_MODE").unwrap_or_else(|| "echo".into()) } else { "echo".into() };
    if let Some(mb) = var("TESTBED_BALLAST_MB").filter(|_| applies).and_then(|v| v.parse::<usize>().ok()) {
        // Non-zero bytes: every page is written, so every page is really there to free.
        std::hint::black_box(Box::leak(vec![1u8; mb << 20].into_boxed_slice()));
    }
    if !matches!(
        mode.as_str(),
        "echo"
            | "crash_start"
            | "exit_after_ready"
            | "crash_after_ready"
            | "slow_start"
            | "defer_ready"
            | "flood_stdout"
            | "close_ipc"
            | "fork_child"
    ) {
        misbehave(&mode, &boot);
    }
    corral::main(ClusterConfig::default(), Testbed { mode })
}
