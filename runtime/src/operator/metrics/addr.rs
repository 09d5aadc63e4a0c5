//! The metrics endpoint's address, as `--metrics ADDR` and `[metrics] listen` spell it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// An address the metrics endpoint cannot listen on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not a metrics address (IP:PORT, or a bare PORT for 127.0.0.1)")]
pub struct MetricsAddrError {
    /// What was given.
    pub given: String,
}

/// Reads a metrics endpoint's address: `IP:PORT` (`127.0.0.1:9464`, `[::1]:9464`) as given,
/// or a bare `PORT` (also `:PORT`) on the loopback address 127.0.0.1, so that the endpoint
/// is reached from elsewhere only when an address says so.
///
/// ```
/// use corral_runtime::parse_metrics_addr;
///
/// assert_eq!(parse_metrics_addr("9464").unwrap().to_string(), "127.0.0.1:9464");
/// assert_eq!(parse_metrics_addr(":9464").unwrap().to_string(), "127.0.0.1:9464");
/// assert_eq!(parse_metrics_addr("[::1]:9464").unwrap().to_string(), "[::1]:9464");
/// assert!(parse_metrics_addr("localhost").is_err());
/// ```
///
/// # Errors
///
/// [`MetricsAddrError`] for anything else.
pub fn parse_metrics_addr(s: &str) -> Result<SocketAddr, MetricsAddrError> {
    let s = s.trim();
    let bare = s.strip_prefix(':').unwrap_or(s);
    if let Ok(port) = bare.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse().map_err(|_| MetricsAddrError { given: s.to_string() })
}
