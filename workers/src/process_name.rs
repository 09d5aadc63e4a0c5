//! The worker's `comm`: the program's own name, not `exe`.
//!
//! The primary starts its workers through the program's path, so the kernel already names
//! them after it. Only when a deploy replaced that file does a restart start from
//! `/proc/self/exe` (the image the primary runs), and the kernel names such a process `exe`:
//! `top`, `pgrep myapp` and `ss -p` would not find it. Its `argv[0]` is already its title
//! (`myapp: worker 2 (gen 3)`, set by the primary); this sets `comm` back to the executable's
//! file name in that case (and is harmless in the others).

use std::ffi::CString;

/// The most `comm` holds, without its NUL.
const COMM_MAX: usize = 15;

/// Names the calling thread (the main thread: the process's `comm`) after the executable.
/// Threads started later inherit the name unless they are given their own.
pub(crate) fn name_after_executable() {
    let Some(name) = executable_name() else { return };
    let Ok(name) = CString::new(comm(&name)) else { return };
    if let Err(e) = nix::sys::prctl::set_name(&name) {
        tracing::debug!(error = %e, "cannot set the process name");
    }
}

/// The executable's file name: `/proc/self/exe` resolved, without the " (deleted)" the kernel
/// adds once a deploy replaced the file.
fn executable_name() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let name = exe.file_name()?.to_string_lossy().into_owned();
    Some(name.strip_suffix(" (deleted)").map(str::to_string).unwrap_or(name))
}

/// `name` cut to what `comm` holds, on a character boundary.
fn comm(name: &str) -> &str {
    let mut end = name.len().min(COMM_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

#[cfg(test)]
mod tests {
    use super::comm;

    #[test]
    fn comm_is_cut_to_fifteen_bytes_on_a_character_boundary() {
        assert_eq!(comm("http_cluster"), "http_cluster");
        assert_eq!(comm("05_production_patterns"), "05_production_p");
        assert_eq!(comm("ééééééééé"), "ééééééé");
    }
}
