//! How a worker shows in `ps`, `top` and `pgrep`: the program's own name, and a title like
//! nginx's and gunicorn's.
//!
//! Workers of the primary's own image are started from `/proc/self/exe`, so the kernel would
//! name them `exe`. Their `argv[0]` is a title instead, `myapp: worker 2 (gen 3)` (what `ps`
//! and `pgrep -f` show), and the worker sets its `comm` back to `myapp` itself (what `top`,
//! `pgrep` and `ss -p` show).

use std::ffi::OsString;
use std::path::Path;

/// The program's name: the file name of `path` (the primary's executable).
pub(crate) fn program_name(path: &Path) -> Option<String> {
    Some(path.file_name()?.to_string_lossy().into_owned())
}

/// The `argv[0]` of `program`'s worker in `slot`, generation `generation`.
pub(crate) fn worker_title(program: &str, slot: usize, generation: u64) -> OsString {
    format!("{program}: worker {slot} (gen {generation})").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_title_names_the_program_slot_and_generation() {
        let name = program_name(Path::new("/srv/app/bin/myapp")).unwrap();
        assert_eq!(worker_title(&name, 2, 3), OsString::from("myapp: worker 2 (gen 3)"));
    }
}
