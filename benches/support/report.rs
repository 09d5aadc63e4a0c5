//! What the benchmarks print: figures formatted for reading, the machine they ran on, notes.

use std::process::Command;
use std::time::Duration;

/// 541234 → "541,234" (rounded to a whole number first).
pub fn thousands(v: f64) -> String {
    let digits = format!("{v:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A time in µs as "612 µs", "2.31 ms" or "12.30 s".
pub fn fmt_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

pub fn fmt_dur(d: Duration) -> String {
    fmt_us(d.as_secs_f64() * 1e6)
}

/// A median and a largest count as "12 [40]".
pub fn fmt_median_max((median, max): (u64, u64)) -> String {
    format!("{} [{}]", thousands(median as f64), thousands(max as f64))
}

pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

pub fn fmt_kib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

/// "nproc N, <CPU model>, Linux <release>".
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown CPU".to_owned(), |(_, m)| m.trim().to_owned());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("nproc {nproc}, {model}, Linux {}", kernel.trim())
}

/// The first line `program args` prints (on stdout, else stderr), or `None` if it cannot run.
/// (`wrk -v` prints its version and exits non-zero, so the exit status is not looked at.)
pub fn tool_version(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).env_remove("NODE_EXTRA_CA_CERTS").output().ok()?;
    let text = if out.stdout.is_empty() { out.stderr } else { out.stdout };
    Some(String::from_utf8_lossy(&text).lines().next().unwrap_or("").trim().to_owned())
}

/// The closing "Notes:" list, if there is any note.
pub fn print_notes(notes: &[String]) {
    if !notes.is_empty() {
        println!();
        println!("Notes:");
        for n in notes {
            println!("  - {n}");
        }
    }
}
