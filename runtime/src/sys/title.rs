//! How the primary and its workers show in `ps`, `top` and `pgrep`: the program's own name,
//! and a title like nginx's and gunicorn's (`myapp: primary …`, `myapp: worker 2 (gen 3) …`).
//!
//! Workers of the primary's own image are started through its path on disk, so the kernel
//! names them after the program from their first instruction, and their `argv[0]` is their
//! title. Only when that file is no longer the running image (a deploy replaced it) does a
//! restart start from `/proc/self/exe` (`command.rs`), and the worker then sets its `comm`
//! back to the program's name itself (`corral-workers`). The primary was started by someone
//! else: [`set_primary_title`] rewrites its argument area in place, as nginx does; the
//! arguments as they were stay available to corral ([`original_args`]), for its workers'
//! command lines and the primary's own re-exec in an upgrade.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

/// The primary's arguments before [`set_primary_title`] overwrote them.
static ORIGINAL_ARGS: OnceLock<Vec<OsString>> = OnceLock::new();

/// The program's name: the file name of `path` (the primary's executable).
pub(crate) fn program_name(path: &Path) -> Option<String> {
    Some(path.file_name()?.to_string_lossy().into_owned())
}

/// The `argv[0]` of `program`'s worker in `slot`, generation `generation`.
pub(crate) fn worker_title(program: &str, slot: usize, generation: u64) -> OsString {
    format!("{program}: worker {slot} (gen {generation})").into()
}

/// This process's arguments as it was started with them (`argv[0]` first), whether or not
/// its title was set since.
pub(crate) fn original_args() -> Vec<OsString> {
    ORIGINAL_ARGS.get().cloned().unwrap_or_else(|| std::env::args_os().collect())
}

/// Sets this process's title, as `ps` and `pgrep -f` show it, to `<program>: primary` and
/// then as many of its arguments as fit where the original command line was (its `comm`, what
/// `top` and `pgrep` show, stays the program's name). `corral::main`, `corral::run` and
/// `corral::run_primary` call it; call it yourself in a primary you wrote. Once per process;
/// returns whether the title was set.
///
/// After it, `std::env::args()` reads the title: parse your arguments before (corral keeps
/// its own copy of them, for the workers' command lines and an upgrade's re-exec).
///
/// ```no_run
/// corral_runtime::set_primary_title(); // ps: "myapp: primary --port 3000"
/// ```
pub fn set_primary_title() -> bool {
    let args: Vec<OsString> = std::env::args_os().collect();
    if ORIGINAL_ARGS.set(args.clone()).is_err() {
        return false;
    }
    let Some(name) = std::env::current_exe().ok().as_deref().and_then(program_name) else { return false };
    let name = name.strip_suffix(" (deleted)").unwrap_or(&name).to_string();
    let Some(area) = ArgArea::of_this_process() else { return false };
    area.write(&title(&name, &args, area.len))
}

/// `<program>: primary`, then whole arguments while they fit in `room` bytes with a NUL left.
fn title(program: &str, args: &[OsString], room: usize) -> Vec<u8> {
    let mut title = format!("{program}: primary").into_bytes();
    for arg in args.iter().skip(1) {
        let arg = arg.as_bytes();
        if title.len() + 1 + arg.len() >= room {
            break;
        }
        title.push(b' ');
        title.extend_from_slice(arg);
    }
    title.truncate(room.saturating_sub(1));
    title
}

/// Where the kernel put this process's argument strings (`arg_start`..`arg_end`).
struct ArgArea {
    start: usize,
    len: usize,
}

impl ArgArea {
    /// From `/proc/self/stat`, checked against `/proc/self/cmdline`.
    fn of_this_process() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // After the command (which may hold spaces and parentheses), field 3 (state) on;
        // arg_start and arg_end are fields 48 and 49.
        let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split_whitespace().collect();
        let start: usize = fields.get(45)?.parse().ok()?;
        let end: usize = fields.get(46)?.parse().ok()?;
        let cmdline = std::fs::read("/proc/self/cmdline").ok()?;
        let len = end.checked_sub(start)?;
        // Only an area the kernel reports as exactly the command line is written to: the
        // arguments, each NUL-terminated, as long as the area.
        (start != 0 && len > 0 && cmdline.len() == len && cmdline.last() == Some(&0)).then_some(ArgArea { start, len })
    }

    /// Writes `title` at the start of the area and NULs over the rest.
    fn write(&self, title: &[u8]) -> bool {
        if title.len() >= self.len {
            return false;
        }
        // SAFETY: [start, start + len) is this process's argument area, as the kernel reports
        // it and as `of_this_process` checked against /proc/self/cmdline: memory the kernel
        // mapped read-write on the initial stack for the process's whole life, owned by no
        // Rust value (std only keeps pointers into it, to read the arguments, and corral read
        // its copy before). `title` is shorter than the area, so every byte written is in it.
        unsafe {
            let area = std::slice::from_raw_parts_mut(self.start as *mut u8, self.len);
            area[..title.len()].copy_from_slice(title);
            area[title.len()..].fill(0);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_title_names_the_program_slot_and_generation() {
        let name = program_name(Path::new("/srv/app/bin/myapp")).unwrap();
        assert_eq!(worker_title(&name, 2, 3), OsString::from("myapp: worker 2 (gen 3)"));
    }

    #[test]
    fn the_primary_title_keeps_whole_arguments_while_they_fit() {
        let args: Vec<OsString> = ["/srv/app/bin/myapp", "--port", "3000"].map(OsString::from).into();
        assert_eq!(title("myapp", &args, 30), b"myapp: primary --port 3000");
        assert_eq!(title("myapp", &args, 24), b"myapp: primary --port");
        assert_eq!(title("myapp", &args, 10), b"myapp: pr");
    }
}
