//! The primary's notify directory: one `0700` directory per primary process, holding the
//! `NOTIFY_SOCKET` of each of its foreign workers, and removed when the last of them goes.
//!
//! systemd gives its services a *filesystem* path (`/run/systemd/notify`), and many
//! `sd_notify` clients (puma's, some Go and Java ones) handle nothing else, so corral does the
//! same. The directory lives in `$RUNTIME_DIRECTORY` (a systemd unit's `RuntimeDirectory=`),
//! else `$XDG_RUNTIME_DIR`, else the temporary directory, and is named
//! `corral-notify-PID-RANDOM`. Directories of primaries that died without cleaning up (a
//! `SIGKILL`) are removed by the next primary that creates one in the same place.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// The start of every notify directory's name.
const PREFIX: &str = "corral-notify-";

/// The longest socket path the kernel takes (`sun_path` is 108 bytes, with its NUL), less the
/// room a socket's own name needs (`SLOT-GENERATION-RANDOM`, at most 48 bytes).
const MAX_DIR_LEN: usize = 107 - 48;

/// The directory in use, while any worker's socket is in it.
static CURRENT: Mutex<Weak<NotifyDir>> = Mutex::new(Weak::new());

/// One primary's notify directory; removed (when empty) as the last holder drops it.
#[derive(Debug)]
pub(crate) struct NotifyDir {
    path: PathBuf,
    /// Whether workers of another user have been let through (mode `0711`).
    opened: Mutex<bool>,
}

impl NotifyDir {
    /// The primary's directory, created on first use.
    ///
    /// # Errors
    ///
    /// No candidate place lets this process create a directory (each one's error is
    /// logged; the last is returned).
    pub(crate) fn shared() -> io::Result<Arc<NotifyDir>> {
        let mut current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(dir) = current.upgrade() {
            return Ok(dir);
        }
        let dir = Arc::new(NotifyDir::create()?);
        *current = Arc::downgrade(&dir);
        Ok(dir)
    }

    /// A new directory of this primary's, not shared.
    fn create() -> io::Result<NotifyDir> {
        Ok(NotifyDir { path: create()?, opened: Mutex::new(false) })
    }

    /// The directory of a socket taken over from the primary's previous image (same pid).
    pub(crate) fn adopt(path: &Path) -> Arc<NotifyDir> {
        let mut current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(dir) = current.upgrade().filter(|d| d.path == path) {
            return dir;
        }
        let opened = std::fs::metadata(path).is_ok_and(|m| m.mode() & 0o077 != 0);
        let dir = Arc::new(NotifyDir { path: path.to_path_buf(), opened: Mutex::new(opened) });
        if current.upgrade().is_none() {
            *current = Arc::downgrade(&dir);
        }
        dir
    }

    /// Where the directory is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Lets processes of another user reach the sockets inside by name (mode `0711`: they can
    /// pass through, not list; each socket then admits only its own worker's user).
    pub(crate) fn let_through(&self) -> io::Result<()> {
        let mut opened = self.opened.lock().unwrap_or_else(PoisonError::into_inner);
        if !*opened {
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o711))?;
            *opened = true;
        }
        Ok(())
    }
}

impl Drop for NotifyDir {
    fn drop(&mut self) {
        // Only an empty directory goes: a socket handed over to the next image (or left by a
        // failed unlink) keeps it, and the next image removes it.
        match std::fs::remove_dir(&self.path) {
            Ok(()) => tracing::debug!(dir = %self.path.display(), "notify directory removed"),
            Err(e) => tracing::debug!(dir = %self.path.display(), error = %e, "notify directory kept"),
        }
    }
}

/// Creates a fresh `0700` directory in the first place that allows it.
fn create() -> io::Result<PathBuf> {
    let pid = std::process::id();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no place for the notify directory");
    for base in bases() {
        sweep(&base);
        let path = base.join(format!("{PREFIX}{pid}-{:08x}", rand::random::<u32>()));
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {
                tracing::debug!(dir = %path.display(), "notify directory created");
                return Ok(path);
            }
            Err(e) => {
                tracing::debug!(base = %base.display(), error = %e, "cannot create the notify directory here");
                last = e;
            }
        }
    }
    Err(last)
}

/// The candidate places, in order, that leave a short enough socket path.
fn bases() -> Vec<PathBuf> {
    let from_env = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            // `RuntimeDirectory=` may name several, separated by colons: the first one.
            .and_then(|p| p.to_str().and_then(|s| s.split(':').next()).map(PathBuf::from))
            .filter(|p| p.is_absolute())
    };
    [from_env("RUNTIME_DIRECTORY"), from_env("XDG_RUNTIME_DIR"), Some(std::env::temp_dir()), Some("/tmp".into())]
        .into_iter()
        .flatten()
        .filter(|p| p.as_os_str().len() + PREFIX.len() + 20 <= MAX_DIR_LEN)
        .collect()
}

/// Removes the notify directories in `base` of primaries that are gone (this user's only;
/// only sockets inside them, then the directory).
fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    let uid = nix::unistd::getuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(|r| r.split('-').next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<i32>() else { continue };
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_dir() || meta.uid() != uid || primary_alive(pid) {
            continue;
        }
        let path = entry.path();
        if let Ok(inner) = std::fs::read_dir(&path) {
            for socket in inner.flatten() {
                if socket.file_type().is_ok_and(|t| t.is_socket()) {
                    let _ = std::fs::remove_file(socket.path());
                }
            }
        }
        if std::fs::remove_dir(&path).is_ok() {
            tracing::debug!(dir = %path.display(), "removed the notify directory of a primary that is gone");
        }
    }
}

/// Whether a process `pid` exists (a pid reused by another process counts: kept, harmless).
fn primary_alive(pid: i32) -> bool {
    pid > 0 && !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(nix::errno::Errno::ESRCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_directory_removed_with_its_last_holder() {
        let shared = NotifyDir::shared().unwrap();
        assert!(Arc::ptr_eq(&shared, &NotifyDir::shared().unwrap()), "one directory per primary");
        let dir = NotifyDir::create().unwrap();
        let path = dir.path().to_path_buf();
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", path.display());
        dir.let_through().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o711);
        drop(dir);
        assert!(!path.exists(), "{} outlived its last socket", path.display());
    }

    #[test]
    fn directories_of_dead_primaries_are_swept() {
        let base = std::env::temp_dir().join(format!("corral-sweep-test-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        // A pid above the kernel's maximum (2^22) never runs.
        let dead = base.join(format!("{PREFIX}4194305-0000abcd"));
        let alive = base.join(format!("{PREFIX}{}-0000abcd", std::process::id()));
        for d in [&dead, &alive] {
            std::fs::create_dir_all(d).unwrap();
        }
        let socket = std::os::unix::net::UnixDatagram::bind(dead.join("0-1-x")).unwrap();
        sweep(&base);
        drop(socket);
        assert!(!dead.exists(), "a dead primary's directory is removed");
        assert!(alive.exists(), "a live primary's directory stays");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
