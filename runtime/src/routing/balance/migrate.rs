//! Whether the kernel moves the connections queued on a closing `SO_REUSEPORT` socket to
//! another socket of its group (`net.ipv4.tcp_migrate_req`, Linux 5.14 and later).
//!
//! With reuse-port scheduling each corral worker has its own socket in the group, and closes
//! it when it drains. Connections the kernel had queued on it in the last instant, after the
//! worker's final `accept`, are reset, unless this setting is on (it is off by default). The
//! other schedulings lose none: the primary's socket, or the one shared socket, stays open.
//!
//! With the setting on, a worker that *dies* gives up its socket at once too, as long as
//! another process serves on the group (`Group::process_gone`): what was queued there is
//! served by the others (a warm spare steered in, say) instead of waiting for the slot's next
//! process to start — for `corral run`, an interpreter's start-up.

use std::sync::Once;

/// Where the setting is, for this network namespace.
const SYSCTL: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// The setting: `Some(true)` when on, `None` when the kernel has none (older than 5.14) or it
/// cannot be read.
pub(crate) fn tcp_migrate_req() -> Option<bool> {
    let text = std::fs::read_to_string(SYSCTL).ok()?;
    Some(text.trim() != "0")
}

/// Logs, once per process, how a reuse-port drain can lose a connection here, and the cure.
pub(crate) fn hint_once() {
    static HINT: Once = Once::new();
    HINT.call_once(|| match tcp_migrate_req() {
        Some(true) => tracing::debug!("net.ipv4.tcp_migrate_req is on: a draining worker's queued connections move"),
        Some(false) => tracing::info!(
            "reuse-port scheduling: a draining worker's socket may reset the connections queued on it in its last \
             instant; set net.ipv4.tcp_migrate_req=1 (sysctl) for the kernel to move them, or use round robin"
        ),
        None => tracing::info!(
            "reuse-port scheduling: this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14+), so a draining \
             worker's socket may reset the connections queued on it in its last instant; use round robin for \
             drains that lose none"
        ),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_reads_as_the_file_says() {
        let expected = std::fs::read_to_string(SYSCTL).ok().map(|t| t.trim() != "0");
        assert_eq!(tcp_migrate_req(), expected);
        hint_once();
        hint_once();
    }
}
