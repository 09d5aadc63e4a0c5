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
    /// For the primary's own image: the program's name, for the workers' titles
    /// (`myapp: worker 2 (gen 3)` as their `argv[0]`).
    pub title: Option<String>,
    pub args: Vec<OsString>,
}

impl WorkerCommand {
    pub(crate) fn new(exec: &WorkerExec) -> Self {
        match exec {
            WorkerExec::CurrentExe => {
                // As the primary was started (its title may have replaced them since).
                let mut args = crate::title::original_args().into_iter();
                let _argv0 = args.next();
                let on_disk = path_on_disk();
                WorkerCommand {
                    // /proc/self/exe is the primary's own image even after the file on disk
                    // was replaced or deleted, so a crash restart runs the same code as its
                    // siblings.
                    program: PathBuf::from("/proc/self/exe"),
                    title: crate::title::program_name(&on_disk),
                    reload_program: on_disk,
                    args: args.collect(),
                }
            }
            WorkerExec::Foreign(foreign) => WorkerCommand {
                program: foreign.program.clone(),
                reload_program: foreign.program.clone(),
                title: None,
                args: foreign.args.clone(),
            },
            WorkerExec::Program { path, args } => {
                WorkerCommand { program: path.clone(), reload_program: path.clone(), title: None, args: args.clone() }
            }
        }
    }
}

impl WorkerCommand {
    /// The `argv[0]` of the worker in `slot`, generation `generation`: its title for the
    /// primary's own image, the program's own path otherwise.
    pub(crate) fn argv0(&self, slot: usize, generation: u64) -> Option<OsString> {
        self.title.as_deref().map(|name| crate::title::worker_title(name, slot, generation))
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
