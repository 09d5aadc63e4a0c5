//! corral's fuzz targets' code: the harness (`corral_testkit::fuzz`, one function per target,
//! shared with the stable replay test `tests/fuzz_corpus.rs`) and [`peak`] (the allocation
//! budget checked around each input, in the fuzz binaries only).

pub mod peak;

pub use corral_testkit::fuzz::*;
