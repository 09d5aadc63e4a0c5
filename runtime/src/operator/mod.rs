//! The operator's surface, from outside the process: the control socket server
//! ([`control`]), the metrics endpoint and status page ([`metrics`]), the status snapshot as
//! JSON and as a table ([`status_json`], [`status_table`]), the service manager's
//! notifications ([`systemd`]) and the workers' log files ([`logfile`]).

pub mod control;
pub(crate) mod logfile;
pub mod metrics;
pub(crate) mod status_json;
pub(crate) mod status_table;
pub(crate) mod systemd;
