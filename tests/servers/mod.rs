//! The real servers of `tests/real_programs.rs` (gunicorn + Flask, uvicorn + FastAPI, Express,
//! puma): installing them, reading their recipes, running them under `corral run` and alone,
//! and checking them.

pub mod checks;
pub mod http;
pub mod install;
pub mod procs;
pub mod recipe;
pub mod run;
