//! `GET /`: the status page a person reads at a glance. One table row per worker (state
//! colour, pid, uptime, restarts, RSS and requests per second with their sparklines), all
//! server-rendered: no script, no external asset, the sparklines inline SVG. The page reloads
//! itself every [`REFRESH_SECONDS`].

use std::fmt::Write;
use std::time::Duration;

use super::history::SlotHistory;
use crate::api::status::{WorkerState, WorkerStatus};
use crate::routing::balance::ListenerCounts;

/// How often the page reloads itself.
pub(crate) const REFRESH_SECONDS: u64 = 5;

/// What the page shows.
pub(crate) struct Page<'a> {
    pub name: &'a str,
    /// The tree's program the cluster runs as: a `program` column on every row.
    pub program: Option<&'a str>,
    pub primary_pid: u32,
    pub generation: i64,
    pub workers: &'a [(WorkerStatus, SlotHistory)],
    pub listeners: &'a [ListenerCounts],
}

/// Text made safe for HTML content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A state's colour on the page.
fn colour(state: WorkerState) -> &'static str {
    match state {
        WorkerState::Ready => "#2e9d4c",
        WorkerState::Starting | WorkerState::Online => "#d0a215",
        WorkerState::Stopping | WorkerState::Restarting => "#e07b16",
        WorkerState::GaveUp => "#c62f2f",
        WorkerState::Stopped => "#7a7a7a",
    }
}

/// `1d 2h`, `3h 4m`, `5m 6s`, `7s`.
pub(crate) fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match () {
        _ if days > 0 => format!("{days}d {hours}h"),
        _ if hours > 0 => format!("{hours}h {minutes}m"),
        _ if minutes > 0 => format!("{minutes}m {seconds}s"),
        _ => format!("{seconds}s"),
    }
}

/// `12.3 MiB`.
pub(crate) fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

const SPARK_WIDTH: f64 = 120.0;
const SPARK_HEIGHT: f64 = 24.0;
/// Room kept at each end, so that a point's dot is not cut.
const SPARK_INSET: f64 = 2.0;

/// An inline SVG sparkline of `values` (oldest first; gaps where a value is missing), scaled
/// from 0 to the largest value, over the whole ring's width.
pub(crate) fn sparkline(values: &[Option<f64>], capacity: usize, class: &str) -> String {
    let max = values.iter().flatten().copied().fold(0.0_f64, f64::max);
    let step = (SPARK_WIDTH - 2.0 * SPARK_INSET) / (capacity.max(2) - 1) as f64;
    let offset = capacity.saturating_sub(values.len());
    let mut runs: Vec<String> = Vec::new();
    let mut run = String::new();
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) if v.is_finite() => {
                let x = SPARK_INSET + (offset + i) as f64 * step;
                let y =
                    if max > 0.0 { SPARK_HEIGHT - 1.0 - (v / max) * (SPARK_HEIGHT - 2.0) } else { SPARK_HEIGHT - 1.0 };
                let _ = write!(run, "{x:.1},{y:.1} ");
            }
            _ if !run.is_empty() => runs.push(std::mem::take(&mut run)),
            _ => {}
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    let mut svg = format!(
        r#"<svg class="spark {class}" width="{SPARK_WIDTH}" height="{SPARK_HEIGHT}" viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}" role="img" aria-label="{class} over the last minutes">"#
    );
    for points in runs {
        let points = points.trim_end();
        if points.contains(' ') {
            let _ = write!(svg, r#"<polyline points="{points}"/>"#);
        } else if let Some((x, y)) = points.split_once(',') {
            let _ = write!(svg, r#"<circle cx="{x}" cy="{y}" r="1.5"/>"#);
        }
    }
    svg.push_str("</svg>");
    svg
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.3em;margin:0 0 .3em}.sub{color:#666;margin-bottom:1em}\
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002}\
th,td{padding:.35em .8em;text-align:left;border-bottom:1px solid #eee;white-space:nowrap}\
th{background:#f0f0f0;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.state{display:inline-block;padding:.05em .6em;border-radius:1em;color:#fff;font-size:.9em}\
.spark polyline{fill:none;stroke:#3566c8;stroke-width:1.5}.spark circle{fill:#3566c8}\
.spark{vertical-align:middle;margin-left:.5em;background:#f6f8fc}\
.spark.rps polyline{stroke:#8a3fc0}.spark.rps circle{fill:#8a3fc0}\
ul{padding-left:1.2em}footer{color:#888;margin-top:1em;font-size:.85em}";

/// The whole page.
pub(crate) fn render(page: &Page<'_>) -> String {
    let mut html = String::with_capacity(8 * 1024);
    let name = escape(page.name);
    let ready = page.workers.iter().filter(|(w, _)| w.state == WorkerState::Ready).count();
    let _ = write!(
        html,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{REFRESH_SECONDS}"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{name} — corral</title><style>{STYLE}</style></head><body>"#
    );
    let _ = write!(
        html,
        r#"<h1>{name}</h1><div class="sub">primary pid {} · generation {} · <span id="ready">{ready}/{}</span> ready</div>"#,
        page.primary_pid,
        page.generation,
        page.workers.len()
    );
    let program = page.program.map(escape);
    html.push_str("<table id=\"workers\"><thead><tr>");
    if program.is_some() {
        html.push_str("<th>program</th>");
    }
    html.push_str(
        "<th>slot</th><th>state</th><th>pid</th><th>uptime</th><th>restarts</th>\
         <th>RSS</th><th>req/s</th><th>open</th><th>heartbeat</th><th>status</th></tr></thead><tbody>",
    );
    for (w, history) in page.workers {
        let state = crate::operator::status_json::state_name(w.state);
        let pid = w.pid.map_or_else(|| "—".into(), |p| p.to_string());
        let uptime = w.uptime.map_or_else(|| "—".into(), short_duration);
        let rss = w.rss_bytes.map_or_else(|| "—".into(), mebibytes);
        let rate: Vec<Option<f64>> = history.rate.iter().copied().collect();
        let rss_ring: Vec<Option<f64>> = history.rss.iter().copied().collect();
        let last_rate = rate.last().copied().flatten().map_or_else(|| "—".into(), |r| format!("{r:.1}"));
        let open = w.stats.map_or_else(|| "—".into(), |s| s.in_flight.to_string());
        let heartbeat =
            w.heartbeat_latency.map_or_else(|| "—".into(), |l| format!("{:.1} ms", l.as_secs_f64() * 1000.0));
        let status = escape(w.status_text.as_deref().unwrap_or(""));
        let _ = write!(
            html,
            r#"<tr class="worker"{data_program} data-slot="{slot}" data-state="{state}">{program_cell}<td class="num">{slot}</td><td><span class="state" style="background:{colour}">{state}</span></td><td class="num">{pid}</td><td class="num">{uptime}</td><td class="num">{restarts}</td><td class="num">{rss}{rss_spark}</td><td class="num">{last_rate}{rate_spark}</td><td class="num">{open}</td><td class="num">{heartbeat}</td><td>{status}</td></tr>"#,
            slot = w.slot,
            data_program = program.as_ref().map(|p| format!(r#" data-program="{p}""#)).unwrap_or_default(),
            program_cell = program.as_ref().map(|p| format!("<td>{p}</td>")).unwrap_or_default(),
            colour = colour(w.state),
            restarts = w.restarts,
            rss_spark = sparkline(&rss_ring, super::history::SAMPLES, "rss"),
            rate_spark = sparkline(&rate, super::history::SAMPLES, "rps"),
        );
    }
    html.push_str("</tbody></table>");
    if !page.listeners.is_empty() {
        html.push_str("<h2>listeners</h2><ul>");
        for l in page.listeners {
            let _ = write!(
                html,
                "<li>{}: {} accepted, {} dispatched, {} re-dispatched</li>",
                escape(&l.addr.to_string()),
                l.accepted,
                l.dispatched,
                l.redispatched
            );
        }
        html.push_str("</ul>");
    }
    let _ = write!(
        html,
        r#"<footer>sparklines: the last {} minutes, one sample every {} s · <a href="/metrics">/metrics</a> · <a href="/status.json">/status.json</a> · refreshes every {REFRESH_SECONDS} s</footer></body></html>"#,
        super::history::SAMPLES as u64 * super::history::SAMPLE_INTERVAL.as_secs() / 60,
        super::history::SAMPLE_INTERVAL.as_secs()
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"<b a="1">&'"#), "&lt;b a=&quot;1&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(short_duration(Duration::from_secs(7)), "7s");
        assert_eq!(short_duration(Duration::from_secs(366)), "6m 6s");
        assert_eq!(short_duration(Duration::from_secs(3 * 3600 + 240)), "3h 4m");
        assert_eq!(short_duration(Duration::from_secs(2 * 86_400 + 3600)), "2d 1h");
        assert_eq!(mebibytes(3 * 1024 * 1024 / 2), "1.5 MiB");
    }

    #[test]
    fn sparkline_scales_to_the_largest_value_and_leaves_gaps() {
        let svg = sparkline(&[Some(0.0), Some(10.0), None, Some(5.0)], 5, "rss");
        // Right-aligned: 4 values in a ring of 5 start at the second place (x = 2 + 29).
        assert!(svg.contains(r#"<polyline points="31.0,23.0 60.0,1.0"/>"#), "{svg}");
        assert!(svg.contains(r#"<circle cx="118.0" cy="12.0" r="1.5"/>"#), "{svg}");
        assert!(svg.starts_with("<svg class=\"spark rss\""));
        assert_eq!(sparkline(&[], 5, "rps").matches("<polyline").count(), 0);
    }

    #[test]
    fn one_row_per_worker_with_the_status_text_escaped() {
        let mut w = WorkerStatus::without_process(1, WorkerState::GaveUp);
        w.status_text = Some("<script>".into());
        let workers = [
            (WorkerStatus::without_process(0, WorkerState::Ready), SlotHistory::default()),
            (w, SlotHistory::default()),
        ];
        let html = render(&Page {
            name: "web",
            program: None,
            primary_pid: 1,
            generation: 2,
            workers: &workers,
            listeners: &[],
        });
        assert_eq!(html.matches(r#"<tr class="worker""#).count(), 2);
        assert!(!html.contains("program"), "a cluster of its own has no program column");
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
        assert!(html.contains(r#"data-state="gaveup""#));
        assert!(html.contains(r#"http-equiv="refresh""#));
    }

    #[test]
    fn a_program_of_a_tree_has_a_program_column_on_every_row() {
        let workers = [(WorkerStatus::without_process(0, WorkerState::Ready), SlotHistory::default())];
        let html = render(&Page {
            name: "api",
            program: Some("api<1>"),
            primary_pid: 1,
            generation: 1,
            workers: &workers,
            listeners: &[],
        });
        assert!(html.contains("<th>program</th><th>slot</th>"), "{html}");
        assert!(html.contains(r#"<tr class="worker" data-program="api&lt;1&gt;" data-slot="0""#), "{html}");
        assert!(html.contains("<td>api&lt;1&gt;</td><td class=\"num\">0</td>"), "{html}");
    }
}
