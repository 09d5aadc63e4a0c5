//! One foreign worker's `NOTIFY_SOCKET`: an `AF_UNIX` datagram socket bound before the fork
//! at a filesystem path in the primary's [notify directory](super::dir), removed with it.
//!
//! The socket file is `0600` and belongs to the worker's user, so only that user (and root)
//! can write to it; corral also checks each datagram's sender (`SO_PASSCRED`) against the
//! worker it started.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;

use nix::sys::socket::{setsockopt, sockopt};

use super::dir::NotifyDir;

/// A worker's notify socket, bound before the fork.
pub(crate) struct NotifySocket {
    pub(super) socket: UnixDatagram,
    /// What `NOTIFY_SOCKET` says: the socket's path.
    pub env_value: String,
    /// The socket file, removed when the worker's socket goes (unless handed over).
    pub(super) file: Option<SocketFile>,
}

impl NotifySocket {
    /// Binds a fresh socket for one process of `slot`, writable by `uid` when the worker runs
    /// as another user than the primary.
    ///
    /// # Errors
    ///
    /// The notify directory cannot be made, or the socket cannot be bound or given to `uid`.
    pub(crate) fn bind(slot: usize, generation: u64, uid: Option<u32>) -> io::Result<Self> {
        let dir = NotifyDir::shared()?;
        let path = dir.path().join(format!("{slot}-{generation}-{:016x}", rand::random::<u64>()));
        let socket = UnixDatagram::bind(&path)?;
        // From here on the file goes with the guard, whatever fails next.
        let file = SocketFile { path: path.clone(), _dir: dir.clone(), armed: true };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        if let Some(uid) = uid.filter(|u| *u != nix::unistd::geteuid().as_raw()) {
            std::os::unix::fs::lchown(&path, Some(uid), None)?;
            dir.let_through()?;
        }
        setsockopt(&socket, sockopt::PassCred, &true).map_err(io::Error::from)?;
        socket.set_nonblocking(true)?;
        let env_value = path
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the notify directory's path is not UTF-8"))?;
        Ok(NotifySocket { socket, env_value, file: Some(file) })
    }

    /// The socket of a process taken over from the previous image: its file (if it has one;
    /// an older image's may be abstract) is this image's to remove now.
    pub(crate) fn adopt(socket: UnixDatagram) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let path = socket.local_addr().ok().and_then(|a| a.as_pathname().map(PathBuf::from));
        let file = path.and_then(|path| {
            let dir = NotifyDir::adopt(path.parent()?);
            Some(SocketFile { path, _dir: dir, armed: true })
        });
        Ok(NotifySocket { socket, env_value: String::new(), file })
    }
}

/// A bound socket's file: unlinked on drop unless the socket is handed over.
pub(super) struct SocketFile {
    path: PathBuf,
    /// Keeps the directory while the socket is in it.
    _dir: Arc<NotifyDir>,
    armed: bool,
}

impl SocketFile {
    /// Leaves the file in place: the socket lives on in the primary's next image.
    pub(super) fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::debug!(path = %self.path.display(), error = %e, "cannot remove a notify socket");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_a_private_file_removed_with_it() {
        let socket = NotifySocket::bind(3, 7, None).unwrap();
        let path = PathBuf::from(&socket.env_value);
        assert!(path.is_absolute() && path.as_os_str().len() < 108, "{}", path.display());
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        UnixDatagram::unbound().unwrap().send_to(b"READY=1", &path).unwrap();
        let mut buf = [0u8; 16];
        let n = socket.socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        drop(socket);
        assert!(!path.exists(), "{} outlived its socket", path.display());
    }

    #[test]
    fn a_handed_over_socket_keeps_its_file_for_the_next_image() {
        let NotifySocket { socket, env_value, file } = NotifySocket::bind(0, 1, None).unwrap();
        file.unwrap().keep();
        let path = PathBuf::from(&env_value);
        assert!(path.exists());
        let adopted = NotifySocket::adopt(socket).unwrap();
        assert!(adopted.file.is_some(), "the next image owns the file");
        drop(adopted);
        assert!(!path.exists());
    }
}
