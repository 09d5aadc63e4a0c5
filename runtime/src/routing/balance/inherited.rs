//! Sockets the primary itself was given by socket activation (a systemd `.socket` unit,
//! `systemd-socket-activate`): `LISTEN_FDS`, `LISTEN_FDNAMES`, `LISTEN_PID`. The primary
//! adopts them as listeners instead of binding, so the connection that triggered the
//! activation is served.

use std::os::fd::FromRawFd;
use std::sync::{Arc, OnceLock};

use socket2::Socket;

use crate::config::foreign::ListenAddr;

/// One socket passed to the primary.
pub(crate) struct Inherited {
    /// Its name in `LISTEN_FDNAMES` (`unknown` when unnamed).
    pub name: String,
    pub socket: Arc<Socket>,
    /// Where it is bound.
    pub addr: Option<ListenAddr>,
}

/// The sockets passed to this process (taken once; close-on-exec from then on, so no worker
/// inherits them by accident).
pub(crate) fn inherited() -> &'static [Inherited] {
    static INHERITED: OnceLock<Vec<Inherited>> = OnceLock::new();
    INHERITED.get_or_init(|| {
        let fds = match sd_notify::listen_fds_with_names() {
            Ok(fds) => fds,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN_FDS is malformed; binding instead");
                return Vec::new();
            }
        };
        fds.map(|(fd, name)| {
            // SAFETY: LISTEN_PID named this process and LISTEN_FDS these fds: systemd passed
            // them for us to own, and this runs once per process, so each is owned once.
            let socket = unsafe { Socket::from_raw_fd(fd) };
            let addr = socket.local_addr().ok().and_then(|a| {
                a.as_socket()
                    .map(ListenAddr::Tcp)
                    .or_else(|| a.as_pathname().map(|p| ListenAddr::Unix(p.to_path_buf())))
            });
            tracing::info!(fd, %name, addr = ?addr, "adopting a socket passed by the service manager");
            Inherited { name, socket: Arc::new(socket), addr }
        })
        .collect()
    })
}

/// The passed socket named `name` (other than systemd's default `unknown`), or bound to `addr`.
pub(crate) fn find(name: Option<&str>, addr: &ListenAddr) -> Option<&'static Inherited> {
    let all = inherited();
    name.filter(|n| *n != "unknown")
        .and_then(|n| all.iter().find(|i| i.name == n))
        .or_else(|| all.iter().find(|i| i.addr.as_ref() == Some(addr)))
}
