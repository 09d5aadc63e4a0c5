//! An HTTP check: `GET PATH HTTP/1.1` to one worker, passed by a 2xx or 3xx status.
//! Redirects are not followed; at most [`MAX_ANSWER`] bytes are read.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ProbeTarget;
use crate::api::error::ProbeError;

/// The most of an answer read: the status line is all that counts.
const MAX_ANSWER: usize = 64 * 1024;

/// The probe's `User-Agent`, so that a program can tell probes from clients in its logs.
const USER_AGENT: &str = "corral-probe";

pub(super) async fn check(target: &ProbeTarget, path: &str, timeout: Duration) -> Result<(), ProbeError> {
    let mut stream =
        target.listeners.connect_to(target.listener.as_deref(), target.slot, target.generation, timeout).await?;
    let host = stream.peer_addr()?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        if let Some(status) = status_of(&answer)? {
            return if (200..400).contains(&status) { Ok(()) } else { Err(ProbeError::Status(status)) };
        }
        if answer.len() >= MAX_ANSWER {
            return Err(ProbeError::NotHttp(String::from_utf8_lossy(&answer[..80]).into_owned()));
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return match answer.is_empty() {
                true => Err(ProbeError::Closed),
                false => Err(ProbeError::NotHttp(String::from_utf8_lossy(&answer).chars().take(80).collect())),
            };
        }
        answer.extend_from_slice(&buf[..n.min(MAX_ANSWER - answer.len().min(MAX_ANSWER))]);
    }
}

/// The status of `answer` once its status line is complete (`HTTP/1.x NNN …\r\n`).
fn status_of(answer: &[u8]) -> Result<Option<u16>, ProbeError> {
    let Some(end) = answer.windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
    let line = String::from_utf8_lossy(&answer[..end]);
    let mut parts = line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    match (version.starts_with("HTTP/1."), code.len() == 3, code.parse::<u16>()) {
        (true, true, Ok(status)) if (100..600).contains(&status) => Ok(Some(status)),
        _ => Err(ProbeError::NotHttp(line.chars().take(80).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n").unwrap(), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 302 Found\r\nLocation: /x\r\n").unwrap(), Some(302));
        assert_eq!(status_of(b"HTTP/1.1 204\r\n").unwrap(), Some(204));
        assert_eq!(status_of(b"HTTP/1.1 200 O").unwrap(), None);
        assert!(matches!(status_of(b"SSH-2.0-OpenSSH\r\n"), Err(ProbeError::NotHttp(_))));
        assert!(matches!(status_of(b"HTTP/1.1 2000 x\r\n"), Err(ProbeError::NotHttp(_))));
    }
}
