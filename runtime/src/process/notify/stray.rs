//! A worker that listens on a TCP port corral did not give it: usually its *default* port,
//! because it ignored `LISTEN_FDS` — a shell in front of it forked, so `LISTEN_PID` named
//! another process, and gunicorn or puma then silently bind `127.0.0.1:8000` or `0.0.0.0:9292`
//! while corral's sockets go unserved. Looked for once the worker is ready, and once more a
//! little later; told once, as a warning.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::sys::listening::listening_in_tree;

/// When to look, after the worker is ready.
const LOOKS: [Duration; 2] = [Duration::ZERO, Duration::from_secs(5)];

/// Looks for listening sockets in the tree of `pid` other than the `given` ones (by inode).
pub(super) async fn watch(slot: usize, pid: u32, given: Arc<[u64]>, exited: CancellationToken) {
    for after in LOOKS {
        tokio::select! {
            () = exited.cancelled() => return,
            () = tokio::time::sleep(after) => {}
        }
        let given = given.clone();
        let Ok(strays) = tokio::task::spawn_blocking(move || {
            listening_in_tree(pid).into_iter().filter(|l| !given.contains(&l.inode)).collect::<Vec<_>>()
        })
        .await
        else {
            return;
        };
        if let Some(first) = strays.first() {
            let addrs = strays.iter().map(|l| l.addr.to_string()).collect::<Vec<_>>().join(", ");
            tracing::warn!(
                slot,
                pid,
                listener_pid = first.pid,
                %addrs,
                "worker listens on {addrs}, which corral did not give it: if that is its service port, it ignored \
                 LISTEN_FDS (a shell in front of it that forks makes LISTEN_PID wrong: exec the server; gunicorn \
                 takes the sockets with no --bind, puma with bind_to_activated_sockets 'only')"
            );
            return;
        }
    }
}
