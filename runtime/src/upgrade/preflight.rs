//! The preflight: the new executable, run in check mode, must load and validate its
//! configuration and say so before anything is handed over to it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::OFlag;
use tokio::io::AsyncReadExt;

use super::{CHECK_ANSWER, PRIMARY_ONLY_ENV, UPGRADE_CHECK_ENV};
use crate::supervision::exit::ExitStatus;
use crate::upgrade::error::PreflightError;

/// How long the check may take.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// The most of its stderr kept for the error.
const STDERR_TAIL: usize = 2048;

/// The executable an upgrade execs: the primary's own path, as the file there is now (after
/// a deploy replaced it, `/proc/self/exe` still names the old, deleted one).
pub(crate) fn target() -> PathBuf {
    crate::config::command::path_on_disk()
}

/// Runs `path` with this primary's arguments in check mode and waits (at most `patience`)
/// for its answer.
///
/// # Errors
///
/// Every way the check can fail, as a [`PreflightError`].
pub(crate) async fn check(path: &Path, patience: Duration) -> Result<(), PreflightError> {
    let path_buf = path.to_path_buf();
    let not_executable =
        |e: std::io::Error| PreflightError::NotExecutable { path: path_buf.clone(), source: Arc::new(e) };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(PreflightError::Missing { path: path_buf }),
        Err(e) => return Err(not_executable(e)),
        Ok(_) => {}
    }
    let (read, write): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| not_executable(e.into()))?;
    let write_raw = write.as_raw_fd();
    let mut cmd = tokio::process::Command::new(path);
    {
        let mut args = crate::sys::title::original_args().into_iter();
        if let Some(argv0) = args.next() {
            cmd.arg0(argv0);
        }
        cmd.args(args);
    }
    for var in ["LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"]
        .into_iter()
        .chain(PRIMARY_ONLY_ENV)
    {
        cmd.env_remove(var);
    }
    cmd.env(UPGRADE_CHECK_ENV, write_raw.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: runs between fork and exec: fcntl is async-signal-safe and nothing allocates.
    // It clears close-on-exec on the pipe's write end, which the child keeps.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(write_raw, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = crate::sys::children::spawn_known(|| cmd.spawn()).map_err(not_executable)?;
    // Its exit status is ours (below), never the reaper's.
    let _known = crate::sys::children::Known::new(child.id().unwrap_or(0));
    drop(write);
    let mut stderr = child.stderr.take();
    let answer = async {
        let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(read) else { return false };
        let mut said = Vec::new();
        let _ = (&mut pipe).take(256).read_to_end(&mut said).await;
        String::from_utf8_lossy(&said).lines().any(|l| l.trim() == CHECK_ANSWER)
    };
    let errors = async {
        let mut text = Vec::new();
        if let Some(err) = stderr.as_mut() {
            let _ = err.take(64 * 1024).read_to_end(&mut text).await;
        }
        text
    };
    let run = async { tokio::join!(child.wait(), answer, errors) };
    let (status, answered, stderr) = match tokio::time::timeout(patience, run).await {
        Ok(done) => done,
        Err(_) => {
            let _ = child.start_kill();
            return Err(PreflightError::TimedOut { path: path_buf, after: patience });
        }
    };
    let status = status.map_err(not_executable)?;
    if !status.success() {
        let text = String::from_utf8_lossy(&stderr);
        let tail = text.char_indices().rev().nth(STDERR_TAIL).map_or(&text[..], |(i, _)| &text[i..]);
        return Err(PreflightError::Failed {
            path: path_buf,
            status: ExitStatus::from(status),
            stderr: tail.trim().to_string(),
        });
    }
    if !answered {
        return Err(PreflightError::NoAnswer { path: path_buf });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn script(dir: &Path, name: &str, body: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, body).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("corral-preflight-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[tokio::test]
    async fn every_way_to_fail_is_named() {
        let d = dir("fail");
        let missing = d.join("nothing-here");
        assert!(matches!(check(&missing, PATIENCE).await, Err(PreflightError::Missing { .. })));

        let plain = script(&d, "plain", "#!/bin/sh\nexit 0\n", 0o644);
        assert!(matches!(check(&plain, PATIENCE).await, Err(PreflightError::NotExecutable { .. })));

        let failing = script(&d, "failing", "#!/bin/sh\necho 'bad config: port' >&2\nexit 2\n", 0o755);
        match check(&failing, PATIENCE).await {
            Err(e @ PreflightError::Failed { .. }) => {
                let text = e.to_string();
                assert!(text.contains("exit code 2") || text.contains("code 2"), "{text}");
                assert!(text.contains("bad config: port"), "{text}");
            }
            other => panic!("{other:?}"),
        }

        let silent = script(&d, "silent", "#!/bin/sh\nexit 0\n", 0o755);
        assert!(matches!(check(&silent, PATIENCE).await, Err(PreflightError::NoAnswer { .. })));

        let slow = script(&d, "slow", "#!/bin/sh\nexec sleep 30\n", 0o755);
        let started = std::time::Instant::now();
        assert!(matches!(check(&slow, Duration::from_millis(300)).await, Err(PreflightError::TimedOut { .. })));
        assert!(started.elapsed() < Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn an_answer_on_the_named_fd_passes() {
        let d = dir("pass");
        let answering = script(
            &d,
            "answering",
            &format!("#!/bin/sh\necho '{CHECK_ANSWER}' > /dev/fd/${UPGRADE_CHECK_ENV}\nexit 0\n"),
            0o755,
        );
        check(&answering, PATIENCE).await.expect("passes");
        let _ = std::fs::remove_dir_all(&d);
    }
}
