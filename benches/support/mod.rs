//! What the benchmarks share. Each bench is a crate of its own that includes this tree with
//! `mod support;` and uses a part of it.
// A bench uses only some of these modules and items (ipc has no server to start, http reads
// no RSS, lifecycle no requests/s): what one bench leaves unused is not dead code.
#![allow(dead_code)]

pub mod env;
pub mod http;
pub mod ipc;
pub mod json_line;
pub mod poll;
pub mod proc;
pub mod process;
pub mod report;
pub mod stats;
pub mod wrk;
