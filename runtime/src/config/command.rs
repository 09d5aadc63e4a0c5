//! Which program the workers run: for first starts and restarts, and for rolling reloads.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::cluster::WorkerExec;

/// The kernel's name for the image this process runs, valid even after the file on disk was
/// replaced or deleted. Workers start from it only when the file on disk no longer is that
/// image (a deploy replaced it, or an upgrade's file is gone); see [`OwnImage`].
const OWN_IMAGE: &str = "/proc/self/exe";

/// The program and arguments a slot's processes are started with.
#[derive(Debug, Clone)]
pub(crate) struct WorkerCommand {
    /// For first starts, restarts and recycling of a program other than the primary's own.
    program: PathBuf,
    /// For the primary's own image: where it is on disk and which file it was at start.
    own_image: Option<OwnImage>,
    /// For rolling reloads: the executable as it is on disk now (a deploy is picked up).
    pub reload_program: PathBuf,
    /// For the primary's own image: the program's name, for the workers' titles
    /// (`myapp: worker 2 (gen 3)` as their `argv[0]`).
    pub title: Option<String>,
    pub args: Vec<OsString>,
}

/// The primary's own executable: its path on disk and the identity (device, inode) of the
/// image the primary runs.
///
/// A worker is started through the *path*, so the kernel names it after the program (`comm`
/// is the last component of the path given to `execve`) from its first instruction, and
/// `ps`/`pgrep -x` never see `exe`. While that path still names the running image, that is
/// the same code as `/proc/self/exe`; once a deploy replaced the file (or an upgrade's file is
/// gone), a crash restart must still run the code its siblings run, so it falls back to
/// `/proc/self/exe` — named `exe` until the worker renames itself — until a reload picks the
/// new file up.
#[derive(Debug, Clone)]
struct OwnImage {
    on_disk: PathBuf,
    identity: Option<(u64, u64)>,
}

impl OwnImage {
    fn capture(on_disk: PathBuf) -> Self {
        let identity = identity(Path::new(OWN_IMAGE));
        OwnImage { on_disk, identity }
    }

    /// The path to start a worker of this image from now.
    fn start_path(&self) -> PathBuf {
        match self.identity {
            Some(image) if identity(&self.on_disk) == Some(image) => self.on_disk.clone(),
            _ => {
                tracing::debug!(
                    path = %self.on_disk.display(),
                    "the executable on disk is no longer the primary's image: starting the worker from {OWN_IMAGE}"
                );
                PathBuf::from(OWN_IMAGE)
            }
        }
    }
}

/// A file's (device, inode), following links (`/proc/self/exe` resolves to the running
/// image's inode even when it was deleted).
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl WorkerCommand {
    pub(crate) fn new(exec: &WorkerExec) -> Self {
        match exec {
            WorkerExec::CurrentExe => {
                // As the primary was started (its title may have replaced them since).
                let mut args = crate::sys::title::original_args().into_iter();
                let _argv0 = args.next();
                let on_disk = path_on_disk();
                WorkerCommand {
                    program: PathBuf::from(OWN_IMAGE),
                    own_image: Some(OwnImage::capture(on_disk.clone())),
                    title: crate::sys::title::program_name(&on_disk),
                    reload_program: on_disk,
                    args: args.collect(),
                }
            }
            WorkerExec::Foreign(foreign) => WorkerCommand {
                program: foreign.program.clone(),
                own_image: None,
                reload_program: foreign.program.clone(),
                title: None,
                args: foreign.args.clone(),
            },
            WorkerExec::Program { path, args } => WorkerCommand {
                program: path.clone(),
                own_image: None,
                reload_program: path.clone(),
                title: None,
                args: args.clone(),
            },
        }
    }

    /// For first starts, restarts and recycling: the program as it was at start. For the
    /// primary's own image, its path on disk while that is still the same file, else
    /// `/proc/self/exe` ([`OwnImage`]).
    pub(crate) fn start_program(&self) -> PathBuf {
        match &self.own_image {
            Some(image) => image.start_path(),
            None => self.program.clone(),
        }
    }

    /// The `argv[0]` of the worker in `slot`, generation `generation`: its title for the
    /// primary's own image, the program's own path otherwise.
    pub(crate) fn argv0(&self, slot: usize, generation: u64) -> Option<OsString> {
        self.title.as_deref().map(|name| crate::sys::title::worker_title(name, slot, generation))
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
        .unwrap_or_else(|_| PathBuf::from(OWN_IMAGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_image_starts_from_its_path_while_the_file_is_the_same() {
        let exe = std::env::current_exe().expect("current_exe");
        let image = OwnImage::capture(exe.clone());
        assert_eq!(image.start_path(), exe, "same file: its path, so the worker is named after it");
    }

    #[test]
    fn a_replaced_file_falls_back_to_the_running_image() {
        let dir = std::env::temp_dir().join(format!("corral-own-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let other = dir.join("app");
        std::fs::write(&other, b"not the running image").expect("write");
        let image = OwnImage { on_disk: other.clone(), identity: identity(Path::new(OWN_IMAGE)) };
        assert_eq!(image.start_path(), PathBuf::from(OWN_IMAGE));
        std::fs::remove_file(&other).expect("remove");
        assert_eq!(image.start_path(), PathBuf::from(OWN_IMAGE), "a deleted file too");
        let _ = std::fs::remove_dir(&dir);
    }
}
