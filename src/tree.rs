//! Supervision trees of programs: several clusters (corral workers or foreign programs) with
//! dependencies and an OTP strategy, as one ractor actor ([`Tree`]) that a program runs with
//! [`run_tree`](crate::run_tree) or embeds in its own ractor tree
//! ([`Tree::spawn_linked`]). `corral run` runs one from a `corral.toml` with
//! `[programs.NAME]` tables ([`TreeFile`](crate::config_file::TreeFile)).
//!
//! ```
//! use std::time::Duration;
//! use corral::ClusterConfig;
//! use corral::tree::{Condition, ProgramSpec, Strategy, TreeConfig};
//!
//! let tree = TreeConfig::default()
//!     .strategy(Strategy::RestForOne)
//!     .intensity(3, Duration::from_secs(60))
//!     .program(ProgramSpec::oneshot("migrate", ClusterConfig::default().workers(1)))
//!     .program(ProgramSpec::service("api", ClusterConfig::default().workers(2)).depends_on("migrate", Condition::Completed));
//! assert!(tree.validate().is_ok());
//! ```

pub use corral_runtime::tree::*;
