//! The primary's bounded ring of captured worker output, for `corral logs`.

use std::collections::VecDeque;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::api::events::OutputStream;

/// Lines the ring keeps (over every slot).
pub(crate) const RING_LINES: usize = 10_000;

/// One captured line.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The program (a tree of programs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    pub slot: usize,
    pub pid: u32,
    pub stream: &'static str,
    pub line: String,
}

impl LogLine {
    /// Whether it is of `slot` (if given) and of `program` (if given).
    pub(crate) fn matches(&self, slot: Option<usize>, program: Option<&str>) -> bool {
        slot.is_none_or(|s| self.slot == s) && program.is_none_or(|p| self.program.as_deref() == Some(p))
    }
}

/// The last [`RING_LINES`] lines, and a channel of new ones for followers.
pub(crate) struct LogRing {
    lines: VecDeque<LogLine>,
    follow: broadcast::Sender<LogLine>,
}

impl LogRing {
    pub(crate) fn new() -> Self {
        LogRing { lines: VecDeque::with_capacity(1024), follow: broadcast::channel(1024).0 }
    }

    pub(crate) fn push(
        &mut self,
        program: Option<std::sync::Arc<str>>,
        slot: usize,
        pid: u32,
        stream: OutputStream,
        line: String,
    ) {
        let time_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let stream = match stream {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        };
        let entry = LogLine { time_ms, program: program.map(|p| p.to_string()), slot, pid, stream, line };
        if self.lines.len() == RING_LINES {
            self.lines.pop_front();
        }
        // Nobody following is fine.
        let _ = self.follow.send(entry.clone());
        self.lines.push_back(entry);
    }

    /// The last `n` lines (of `slot` and `program`, or all).
    pub(crate) fn tail(&self, slot: Option<usize>, program: Option<&str>, n: usize) -> Vec<LogLine> {
        let mut out: Vec<LogLine> =
            self.lines.iter().rev().filter(|l| l.matches(slot, program)).take(n).cloned().collect();
        out.reverse();
        out
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.follow.subscribe()
    }
}
