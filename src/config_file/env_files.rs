//! Environment files (`--env-file PATH`, `env_files = [...]`): dotenv syntax, read by
//! `dotenvy` — `KEY=VALUE` lines, `#` comments, single and double quotes (multi-line in
//! double quotes), `export KEY=VALUE`, `${VAR}` substitution from earlier lines and from
//! corral's own environment.
//!
//! Values are secrets as often as not: nothing here logs or prints one, and a line that does
//! not parse is named by its number, never by its text.

use std::path::Path;
use std::sync::Arc;

use super::{ConfigFileError, FileProblem};

/// The variables of every file, in order (a later file's value for a name overrides an
/// earlier one's when the worker's environment is built from the list, in order).
///
/// ```
/// let dir = std::env::temp_dir().join(format!("corral-env-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let (a, b) = (dir.join("a.env"), dir.join("b.env"));
/// std::fs::write(&a, "# base\nX=1\nexport Y='two words'\n").unwrap();
/// std::fs::write(&b, "X=2\n").unwrap();
/// let vars = corral::config_file::read_env_files(&[a, b.clone()]).unwrap();
/// assert_eq!(vars, [("X".into(), "1".into()), ("Y".into(), "two words".into()), ("X".into(), "2".into())]);
///
/// std::fs::write(&b, "OK=1\n=novalue\n").unwrap();
/// let err = corral::config_file::read_env_files(&[b.clone()]).unwrap_err();
/// assert_eq!((err.path.as_path(), err.line), (b.as_path(), Some(2)));
/// assert!(!err.to_string().contains("novalue"), "values are never shown: {err}");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
///
/// # Errors
///
/// A file cannot be read (missing, unreadable, not UTF-8) or has a line that is not dotenv
/// syntax: the file, and the line when it is one.
pub fn read_env_files(paths: &[impl AsRef<Path>]) -> Result<Vec<(String, String)>, ConfigFileError> {
    let mut vars = Vec::new();
    for path in paths {
        vars.extend(read_env_file(path.as_ref())?);
    }
    Ok(vars)
}

fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, ConfigFileError> {
    let refused = |line: Option<usize>, problem: FileProblem| ConfigFileError {
        path: path.to_path_buf(),
        line,
        key: None,
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| refused(None, FileProblem::Read(Arc::new(e))))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut vars = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(pair) => vars.push(pair),
            Err(dotenvy::Error::LineParse(bad, _)) => {
                return Err(refused(line_of(text, &bad), FileProblem::NotDotenv));
            }
            Err(e) => return Err(refused(None, FileProblem::EnvFile(Arc::new(e)))),
        }
    }
    Ok(vars)
}

/// The 1-based line where `bad` (text read from the file, from the start of a line) starts.
fn line_of(text: &str, bad: &str) -> Option<usize> {
    let first = bad.lines().next().filter(|l| !l.is_empty())?;
    let at = text.lines().position(|l| l == first)?;
    Some(at + 1)
}
