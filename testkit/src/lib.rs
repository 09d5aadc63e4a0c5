//! Code shared by corral's own tests, examples and fuzz targets (never published):
//!
//! * [`messages`]: the testbed worker's messages (`examples/testbed`), which the black-box
//!   tests (`tests/common`) send and receive;
//! * [`fuzz`]: the fuzz harness, one function per libFuzzer target (`fuzz/fuzz_targets`),
//!   replayed on stable by `tests/fuzz_corpus.rs`;
//! * `otlp` (feature `otlp`): an in-test OTLP trace collector (`tests/telemetry.rs`,
//!   `tests/otlp_collector.rs`).

pub mod fuzz;
pub mod messages;
#[cfg(feature = "otlp")]
pub mod otlp;
