//! The primary's bounded ring of captured worker output, for `corral logs`.

use std::collections::VecDeque;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::api::events::OutputStream;

/// Lines the ring keeps at most (over every slot).
pub(crate) const RING_LINES: usize = 10_000;

/// Bytes of text the ring keeps at most (over every slot): the oldest lines make room.
pub(crate) const RING_BYTES: usize = 512 * 1024;

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

/// One line's place in the ring: its text is the next `len` bytes of the ring's text.
struct Entry {
    time_ms: u64,
    program: Option<std::sync::Arc<str>>,
    slot: u32,
    pid: u32,
    stderr: bool,
    len: u32,
}

/// The last [`RING_LINES`] lines or [`RING_BYTES`] bytes of text, whichever is less, and a
/// channel of new ones for followers.
///
/// Its two buffers are sized once, when it is made, and only ever reused: a line costs no
/// allocation of its own, so a worker that prints without end (a crash loop's tracebacks)
/// neither grows the primary nor scatters long-lived strings over its heap.
pub(crate) struct LogRing {
    entries: VecDeque<Entry>,
    text: VecDeque<u8>,
    follow: broadcast::Sender<LogLine>,
}

impl LogRing {
    pub(crate) fn new() -> Self {
        LogRing {
            entries: VecDeque::with_capacity(RING_LINES),
            text: VecDeque::with_capacity(RING_BYTES),
            follow: broadcast::channel(1024).0,
        }
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
        let stderr = matches!(stream, OutputStream::Stderr);
        let kept = &line[..char_floor(&line, RING_BYTES)];
        while self.entries.len() >= RING_LINES || self.text.len() + kept.len() > RING_BYTES {
            let Some(old) = self.entries.pop_front() else { break };
            self.text.drain(..old.len as usize);
        }
        self.text.extend(kept.as_bytes());
        let entry = Entry { time_ms, program, slot: slot as u32, pid, stderr, len: kept.len() as u32 };
        if self.follow.receiver_count() > 0 {
            // Nobody following any more (between the count and the send) is fine.
            let _ = self.follow.send(entry.line(kept.to_string()));
        }
        self.entries.push_back(entry);
    }

    /// The last `n` lines (of `slot` and `program`, or all).
    pub(crate) fn tail(&self, slot: Option<usize>, program: Option<&str>, n: usize) -> Vec<LogLine> {
        let mut out = Vec::new();
        let mut end = self.text.len();
        for e in self.entries.iter().rev() {
            if out.len() == n {
                break;
            }
            let start = end - e.len as usize;
            if slot.is_none_or(|s| e.slot as usize == s) && program.is_none_or(|p| e.program.as_deref() == Some(p)) {
                let bytes: Vec<u8> = self.text.range(start..end).copied().collect();
                // Whole lines of a `String` went in, so this is UTF-8; lossy only to be total.
                let text =
                    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                out.push(e.line(text));
            }
            end = start;
        }
        out.reverse();
        out
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.follow.subscribe()
    }
}

impl Entry {
    fn line(&self, line: String) -> LogLine {
        LogLine {
            time_ms: self.time_ms,
            program: self.program.as_deref().map(str::to_string),
            slot: self.slot as usize,
            pid: self.pid,
            stream: if self.stderr { "stderr" } else { "stdout" },
            line,
        }
    }
}

/// The largest char boundary of `s` at or below `at`.
fn char_floor(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    (0..=at).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(ring: &mut LogRing, slot: usize, line: &str) {
        ring.push(None, slot, 100 + slot as u32, OutputStream::Stdout, line.to_string());
    }

    #[test]
    fn tail_gives_the_last_lines_of_a_slot_in_order() {
        let mut ring = LogRing::new();
        for i in 0..10 {
            push(&mut ring, i % 2, &format!("line {i}"));
        }
        let lines: Vec<String> = ring.tail(Some(1), None, 3).into_iter().map(|l| l.line).collect();
        assert_eq!(lines, ["line 5", "line 7", "line 9"]);
        let all = ring.tail(None, None, 100);
        assert_eq!(all.len(), 10);
        assert_eq!((all[0].slot, all[0].pid, all[0].stream, all[0].line.as_str()), (0, 100, "stdout", "line 0"));
    }

    #[test]
    fn the_oldest_lines_go_when_the_lines_or_the_bytes_are_spent() {
        let mut ring = LogRing::new();
        for i in 0..RING_LINES + 5 {
            push(&mut ring, 0, &format!("{i}"));
        }
        let all = ring.tail(None, None, usize::MAX);
        assert_eq!(all.len(), RING_LINES);
        assert_eq!(all[0].line, "5");

        let long = "x".repeat(RING_BYTES / 4);
        for i in 0..6 {
            push(&mut ring, 1, &format!("{i}{long}"));
        }
        let all = ring.tail(None, None, usize::MAX);
        assert!(ring.text.len() <= RING_BYTES, "{} bytes kept", ring.text.len());
        assert_eq!(all.iter().map(|l| &l.line[..1]).collect::<Vec<_>>(), ["3", "4", "5"]);
        assert_eq!(ring.text.capacity(), VecDeque::<u8>::with_capacity(RING_BYTES).capacity(), "the text buffer grew");
    }

    #[test]
    fn a_line_longer_than_the_ring_is_cut_at_a_char_boundary() {
        let mut ring = LogRing::new();
        let line = "é".repeat(RING_BYTES); // 2 bytes each
        push(&mut ring, 0, &format!("a{line}"));
        let kept = ring.tail(None, None, 1).remove(0).line;
        assert!(kept.len() <= RING_BYTES && kept.starts_with('a') && kept.ends_with('é'), "{} bytes", kept.len());
    }
}
