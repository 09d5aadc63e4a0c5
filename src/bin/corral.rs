//! `corral`: supervise any program as a cluster of worker processes on shared sockets.
//!
//! ```text
//! corral run [OPTIONS] -- PROGRAM [ARGS...]
//! corral init [FILE]
//! corral check [FILE]
//! ```
//!
//! Linux only.

#[path = "../cli/mod.rs"]
mod cli;

fn main() {
    std::process::exit(cli::main());
}
