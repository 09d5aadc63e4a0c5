//! Which program the workers run: for first starts and restarts, and for rolling reloads.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::WorkerExec;

/// The program and arguments a slot's processes are started with.
#[derive(Debug, Clone)]
pub(crate) struct WorkerCommand {
    /// For first starts, restarts and recycling: the primary's own image.
    pub program: PathBuf,
    /// For rolling reloads: the executable as it is on disk now (a deploy is picked up).
    pub reload_program: PathBuf,
    pub argv0: Option<OsString>,
    pub args: Vec<OsString>,
}

impl WorkerCommand {
    pub(crate) fn new(exec: &WorkerExec) -> Self {
        match exec {
            WorkerExec::CurrentExe => {
                let mut args = std::env::args_os();
                let argv0 = args.next();
                WorkerCommand {
                    // /proc/self/exe is the primary's own image even after the file on disk
                    // was replaced or deleted, so a crash restart runs the same code as its
                    // siblings.
                    program: PathBuf::from("/proc/self/exe"),
                    reload_program: path_on_disk(),
                    argv0,
                    args: args.collect(),
                }
            }
            WorkerExec::Foreign(foreign) => WorkerCommand {
                program: foreign.program.clone(),
                reload_program: foreign.program.clone(),
                argv0: None,
                args: foreign.args.clone(),
            },
            WorkerExec::Program { path, args } => {
                WorkerCommand { program: path.clone(), reload_program: path.clone(), argv0: None, args: args.clone() }
            }
        }
    }
}

/// The primary's executable as it was when it started: `current_exe` says "… (deleted)" once
/// the file was replaced, so the suffix is taken off.
pub(crate) fn path_on_disk() -> PathBuf {
    std::env::current_exe()
        .map(|p| {
            let text = p.to_string_lossy();
            PathBuf::from(text.strip_suffix(" (deleted)").unwrap_or(&text).to_string())
        })
        .unwrap_or_else(|_| PathBuf::from("/proc/self/exe"))
}
