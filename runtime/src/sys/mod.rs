//! What the operating system tells about a process and how it shows there: process titles
//! (`ps`, `pgrep`; [`title`]), a process's memory and CPU time ([`procfs`]), the TCP ports a
//! process tree listens on ([`listening`]) and hang reports sampled from `/proc` ([`hang`]).

pub(crate) mod children;
pub mod hang;
pub(crate) mod listening;
pub(crate) mod procfs;
pub(crate) mod title;
