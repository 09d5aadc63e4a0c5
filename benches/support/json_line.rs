//! A measurement run in a fresh process that prints its figures as one JSON line, last on
//! its stdout (this bench binary re-executed, or one of `benches/node/*.js`).

use std::process::Command;

/// Runs `cmd` to its end and parses the last line of its stdout; `None` (said on stderr) if it
/// could not run or failed, or if that line is not JSON.
pub fn run(cmd: &mut Command) -> Option<serde_json::Value> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        let args: Vec<_> = cmd.get_args().collect();
        eprintln!("{} {args:?} failed: {}", cmd.get_program().to_string_lossy(), String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last()?).ok()
}
