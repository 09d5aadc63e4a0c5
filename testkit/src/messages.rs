//! The testbed's messages, shared with the black-box tests (`tests/common`).

use corral::worker::Origin;
use corral::worker::ReplyTo;
use serde::{Deserialize, Serialize};

/// Primary → worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TestCmd {
    /// Answer with `TestReport::Pong`.
    Ping(u64),
    /// Exit the process at once with this code.
    Exit(i32),
    /// Drain and exit 0.
    Stop,
    /// Block the event loop for this many milliseconds.
    Block(u64),
    /// Send this many `TestReport::Flood` messages.
    Flood(u64),
    /// Allocate and touch this many MiB, and keep them.
    Alloc(u64),
    /// Spin this many milliseconds on the CPU pool.
    Pool(u64),
    /// Spin this many milliseconds on the event loop, in `testbed_busy_loop` (a hang in user
    /// space, for hang reports).
    Spin(u64),
    /// Use up every free file descriptor (lowering the soft `RLIMIT_NOFILE` to just above
    /// those open, then opening `/dev/null` until `EMFILE`), and hold them; answers
    /// `TestReport::FdsHeld`.
    HoldFds,
    /// Close the fds `HoldFds` holds and restore the limit; answers `TestReport::FdsReleased`.
    ReleaseFds,
    /// A call: reply twice the number.
    Double(u64, ReplyTo<u64>),
    /// A call kept unanswered for the life of the process.
    Hold(ReplyTo<u64>),
    /// A call answered with a failure.
    Refuse(ReplyTo<u64>),
    /// A call dropped without an answer.
    Forget(ReplyTo<u64>),
    /// Send `Ping(first)`, `Ping(first + 1)` … (`count` of them) to the worker in this slot
    /// (`None`: to every other worker), through the primary.
    Relay { to: Option<usize>, first: u64, count: u64 },
    /// Make this many concurrent calls to the primary, `TestReport::Ask(i)` for i in 0..n,
    /// each within this many milliseconds; then report `Asked`.
    Ask(u64, u64),
    /// Send `cmd` to the worker in this slot (`None`: to every other worker), through the
    /// primary.
    Forward { to: Option<usize>, cmd: Box<TestCmd> },
    /// Answer with `TestReport::Sender`: who sent this message.
    WhoSent(u64),
    /// One of a flood between workers: counted by sender (`TestReport::Tally`), nothing sent.
    Tick(u64),
    /// In one `handle` call: call the primary with `FloodReady` and wait for its go (so that
    /// two workers can start together), then send `Tick(0)` … `Tick(count - 1)` to the worker
    /// in slot `to` with `send_to_worker` (waiting whenever the queue is full); then report
    /// `FloodSent` (from a task, so that the report never holds up the handler).
    FloodPeer { to: usize, count: u64 },
    /// Send `Tick(first)`, `Tick(first + 1)` … up to `end` (exclusive) to slot `to` with
    /// `try_send_to_worker` (`None`: to every other worker, with `try_broadcast_workers`),
    /// stopping at the first `Busy`; then report `TryFlooded` with the first tick not sent
    /// (from a task, as `FloodPeer`).
    TryFloodPeer { to: Option<usize>, first: u64, end: u64 },
    /// Answer with `TestReport::Tally`.
    Tally,
}

/// Worker → primary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TestReport {
    /// Sent once at start.
    Hello { slot: usize, generation: u64, pid: u32 },
    /// The answer to `Ping`.
    Pong { n: u64, slot: usize, pid: u32 },
    /// One of a flood.
    Flood(u64),
    /// The worker is out of fds (`count` held).
    FdsHeld { pid: u32, count: usize },
    /// The worker has fds again.
    FdsReleased { pid: u32 },
    /// A call to the primary: it should reply `n + 1`.
    Ask(u64, ReplyTo<u64>),
    /// What the `Ask` calls got: how many replies matched, and the errors (as text).
    Asked { matched: u64, errors: Vec<String>, pending_after: u64 },
    /// The answer to `WhoSent(n)`, from the worker in `slot`: the message's origin.
    Sender { n: u64, slot: usize, origin: Option<Origin> },
    /// A call: `FloodPeer` starts once the primary replies (any number).
    FloodReady { slot: usize, go: ReplyTo<u64> },
    /// `FloodPeer` has sent every tick.
    FloodSent { slot: usize, count: u64 },
    /// `TryFloodPeer` sent the ticks before `next` (`next == end`: all of them).
    TryFlooded { slot: usize, next: u64 },
    /// The ticks this worker handled: by sender slot, how many, and how many came out of
    /// order (not the sender's next number).
    Tally { slot: usize, ticks: Vec<(usize, u64)>, out_of_order: u64 },
}
