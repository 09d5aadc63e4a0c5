//! corral's fuzz targets' code: [`harness`] (one function per target, shared with the stable
//! replay test `tests/fuzz_corpus.rs`) and [`peak`] (the allocation budget checked around
//! each input, in the fuzz binaries only).

mod harness;
pub mod peak;

pub use harness::*;
