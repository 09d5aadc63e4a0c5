//! The library crates' source files, for the tests that read the code as text
//! (`layout.rs`, `typed_errors.rs`).

use std::path::{Path, PathBuf};

/// The source folders of the four library crates.
pub const CRATES: [&str; 4] = ["src", "protocol/src", "runtime/src", "workers/src"];

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file below `dir`, appended to `out`.
pub fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
