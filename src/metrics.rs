//! The primary's metrics endpoint
//! (`ClusterConfig::metrics`, `--metrics ADDR`):
//! `GET /metrics` in Prometheus text (or OpenMetrics), `GET /status.json`, and a status page
//! at `/`, served by the primary itself, bounded in connections, header size and lifetime
//! ([`MAX_CONNECTIONS`], [`MAX_HEAD_BYTES`], [`HEADER_TIMEOUT`], [`CONNECTION_LIFETIME`]).
//! [`parse_metrics_addr`] reads an address as the flag does (a bare port means 127.0.0.1).
//! OTLP metrics are `corral::telemetry::metrics` (feature `telemetry`).
//!
//! # Example
//!
//! ```
//! use corral::ClusterConfig;
//! use corral::metrics::parse_metrics_addr;
//!
//! let addr = parse_metrics_addr("9090").unwrap();
//! assert_eq!(addr.to_string(), "127.0.0.1:9090");
//! let config = ClusterConfig::default().metrics(Some(addr));
//! assert_eq!(config.metrics, Some(addr));
//! ```

pub use corral_runtime::metrics::{
    CONNECTION_LIFETIME, HEADER_TIMEOUT, MAX_CONNECTIONS, MAX_HEAD_BYTES, MetricsAddrError, exit_reason,
    parse_metrics_addr, process_cpu_seconds,
};
