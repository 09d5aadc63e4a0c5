//! The status snapshot as a `pm2 ls`-style table.

use std::fmt;

use crate::api::status::{WorkerState, WorkerStatus};

/// Renders [`Cluster::status`](crate::api::handle::ClusterHandle::status) as a table, one row per slot:
/// pid, generation, state, uptime, restarts, RSS, open connections (in flight), connections
/// handled, messages in / out, last heartbeat round trip. `-` marks what is not known (no
/// process, no pong yet).
///
/// ```
/// use corral_runtime::{StatusTable, WorkerState, WorkerStatus};
/// use std::time::Duration;
///
/// let row = WorkerStatus {
///     slot: 0,
///     pid: Some(4242),
///     generation: 2,
///     state: WorkerState::Ready,
///     uptime: Some(Duration::from_secs(75)),
///     restarts: 1,
///     rss_bytes: Some(5 << 20),
///     messages_in: 10,
///     messages_out: 3,
///     stats: None,
///     heartbeat_latency: Some(Duration::from_micros(180)),
///     status_text: None,
///     spare: false,
///     steering: None,
///     probe: None,
/// };
/// let table = StatusTable(&[row]).to_string();
/// assert!(table.contains("4242"));
/// assert!(table.contains("1m15s"));
/// assert!(table.contains("ready"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct StatusTable<'a>(pub &'a [WorkerStatus]);

const HEADER: [&str; 11] =
    ["slot", "pid", "gen", "state", "uptime", "restarts", "rss", "in flight", "handled", "msgs in/out", "ping"];

impl fmt::Display for StatusTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<[String; 11]> = self.0.iter().map(row).collect();
        let mut widths = HEADER.map(str::len);
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let rule = |f: &mut fmt::Formatter<'_>, left: &str, mid: &str, right: &str| -> fmt::Result {
            f.write_str(left)?;
            for (i, w) in widths.iter().enumerate() {
                if i > 0 {
                    f.write_str(mid)?;
                }
                f.write_str(&"─".repeat(w + 2))?;
            }
            writeln!(f, "{right}")
        };
        let line = |f: &mut fmt::Formatter<'_>, cells: &[&str]| -> fmt::Result {
            for (cell, w) in cells.iter().zip(&widths) {
                write!(f, "│ {cell:<w$} ")?;
            }
            writeln!(f, "│")
        };
        rule(f, "┌", "┬", "┐")?;
        line(f, &HEADER)?;
        rule(f, "├", "┼", "┤")?;
        for r in &rows {
            line(f, &r.each_ref().map(String::as_str))?;
        }
        rule(f, "└", "┴", "┘")
    }
}

fn row(w: &WorkerStatus) -> [String; 11] {
    let dash = || "-".to_string();
    [
        w.slot.to_string(),
        w.pid.map_or_else(dash, |p| p.to_string()),
        w.generation.to_string(),
        if w.spare { format!("{} (spare)", state(w.state)) } else { state(w.state).to_string() },
        w.uptime.map_or_else(dash, |u| duration(u.as_secs())),
        w.restarts.to_string(),
        w.rss_bytes.map_or_else(dash, |b| format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20))),
        w.stats.as_ref().map_or_else(dash, |s| s.in_flight.to_string()),
        w.stats.as_ref().map_or_else(dash, |s| s.handled.to_string()),
        format!("{}/{}", w.messages_in, w.messages_out),
        w.heartbeat_latency.map_or_else(dash, |l| format!("{} µs", l.as_micros())),
    ]
}

fn state(s: WorkerState) -> &'static str {
    match s {
        WorkerState::Starting => "starting",
        WorkerState::Online => "online",
        WorkerState::Ready => "ready",
        WorkerState::Stopping => "stopping",
        WorkerState::Restarting => "restarting",
        WorkerState::GaveUp => "gave up",
        WorkerState::Stopped => "stopped",
    }
}

/// `42s`, `1m15s`, `3h02m`, `2d04h`: short, like `pm2 ls`.
fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn status(slot: usize, pid: Option<u32>, state: WorkerState) -> WorkerStatus {
        WorkerStatus {
            pid,
            generation: 1,
            uptime: pid.map(|_| Duration::from_secs(3)),
            ..WorkerStatus::without_process(slot, state)
        }
    }

    #[test]
    fn every_row_has_the_same_width_and_unknowns_are_dashes() {
        let rows = [status(0, Some(123_456_789), WorkerState::Ready), status(1, None, WorkerState::Restarting)];
        let table = StatusTable(&rows).to_string();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 6, "{table}");
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width), "{table}");
        assert!(lines[3].contains("123456789") && lines[3].contains("ready"));
        assert!(lines[4].contains("restarting") && lines[4].contains(" - "));
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(75), "1m15s");
        assert_eq!(duration(3 * 3600 + 120), "3h02m");
        assert_eq!(duration(2 * 86400 + 4 * 3600), "2d04h");
    }
}
