//! A TCP check: a connection to one worker that it takes off its socket.
//!
//! The handshake alone proves nothing (the kernel completes it for a socket whose program is
//! wedged), so the check then waits for the worker's own socket to be emptied: the
//! connection was queued there, and the queue is first-in first-out.

use std::time::Duration;

use super::ProbeTarget;
use crate::api::error::ProbeError;

/// How often the worker's socket is looked at.
const POLL: Duration = Duration::from_millis(5);

pub(super) async fn check(target: &ProbeTarget, timeout: Duration) -> Result<(), ProbeError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let stream =
        target.listeners.connect_to(target.listener.as_deref(), target.slot, target.generation, timeout).await?;
    loop {
        if target.listeners.queued_on(target.slot, target.generation) == 0 {
            // Closed by us after it was taken: the program sees a client that went away.
            drop(stream);
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ProbeError::Timeout(timeout));
        }
        tokio::time::sleep(POLL).await;
    }
}
