//! `corral`: supervise any program as a cluster of worker processes on shared sockets.
//!
//! ```text
//! corral run [OPTIONS] -- PROGRAM [ARGS...]
//! corral init [FILE]
//! corral check [FILE]
//! corral schema
//! ```
//!
//! Linux only. The command line itself is [`corral::cli`].

fn main() -> std::process::ExitCode {
    corral::cli::main()
}
