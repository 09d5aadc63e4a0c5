//! Log files of the workers' captured output: one per cluster or one per slot, a timestamped
//! line each, rotated by size (keeping N old files), and reopened on request (SIGUSR1 in the
//! primary: logrotate's `postrotate`, nginx's and gunicorn's convention).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use std::sync::OnceLock;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::Notify;

use crate::api::events::{ClusterEvent, OutputStream};
use crate::api::handle::ClusterHandle;
use crate::config::cluster::LogFiles;

fn reopen_signal() -> &'static Notify {
    static REOPEN: OnceLock<Notify> = OnceLock::new();
    REOPEN.get_or_init(Notify::new)
}

/// Asks every cluster of this process to reopen its log files (after logrotate moved them).
/// The primary of `corral::main` / `corral run` calls this on SIGUSR1.
///
/// ```
/// corral_runtime::reopen_log_files(); // nothing to reopen: no cluster writes log files
/// ```
pub fn reopen_log_files() {
    reopen_signal().notify_waiters();
}

/// One open log file.
struct Sink {
    path: PathBuf,
    file: Option<File>,
    size: u64,
}

impl Sink {
    fn new(path: PathBuf) -> Self {
        Sink { path, file: None, size: 0 }
    }

    fn open(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            let file = OpenOptions::new().create(true).append(true).open(&self.path)?;
            self.size = file.metadata()?.len();
            self.file = Some(file);
        }
        // Just opened above when it was not.
        self.file.as_mut().ok_or_else(|| io::Error::other("log file not open"))
    }

    fn write(&mut self, line: &str, files: &LogFiles) -> io::Result<()> {
        if self.size + line.len() as u64 > files.max_bytes && self.size > 0 {
            self.rotate(files.keep)?;
        }
        let file = self.open()?;
        file.write_all(line.as_bytes())?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// `x.log` → `x.log.1` → … → `x.log.keep` (the oldest goes).
    fn rotate(&mut self, keep: usize) -> io::Result<()> {
        self.file = None;
        if keep == 0 {
            return std::fs::remove_file(&self.path);
        }
        for i in (1..keep).rev() {
            let from = numbered(&self.path, i);
            if from.exists() {
                std::fs::rename(&from, numbered(&self.path, i + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(&self.path, 1))
    }
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Writes every captured line until the cluster stops.
pub(crate) async fn write<M, R>(cluster: ClusterHandle<M, R>, files: LogFiles, name: String)
where
    M: Serialize + Clone + Send + 'static,
    R: Clone + Send + 'static,
{
    if let Err(e) = std::fs::create_dir_all(&files.dir) {
        tracing::warn!(dir = %files.dir.display(), error = %e, "no log files");
        return;
    }
    let mut events = cluster.subscribe_lifecycle();
    let mut sinks: Vec<Sink> = Vec::new();
    let sink_for = |sinks: &mut Vec<Sink>, slot: usize| -> usize {
        let index = if files.per_slot { slot } else { 0 };
        while sinks.len() <= index {
            let file = if files.per_slot { format!("{name}-{}.log", sinks.len()) } else { format!("{name}.log") };
            sinks.push(Sink::new(files.dir.join(file)));
        }
        index
    };
    loop {
        let event = tokio::select! {
            () = reopen_signal().notified() => {
                for sink in &mut sinks {
                    sink.file = None;
                }
                tracing::info!(dir = %files.dir.display(), "log files reopened");
                continue;
            }
            event = events.recv() => event,
        };
        let Some(event) = event else { return };
        let ClusterEvent::Output { slot, pid, stream, line } = event else { continue };
        let stream = match stream {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        };
        let text = format!("{} slot={slot} pid={pid} {stream}: {line}\n", timestamp());
        let index = sink_for(&mut sinks, slot);
        if let Err(e) = sinks[index].write(&text, &files) {
            tracing::warn!(path = %sinks[index].path.display(), error = %e, "cannot write the log file");
        }
    }
}

/// Now, as RFC 3339 UTC with milliseconds.
fn timestamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_stamped_in_utc() {
        let stamp = timestamp();
        assert!(stamp.ends_with('Z') && stamp.len() == "2026-12-01T15:00:00.000Z".len(), "{stamp}");
    }

    #[test]
    fn a_full_file_rotates_and_only_keep_files_stay() {
        let dir = std::env::temp_dir().join(format!("corral-logfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let files = LogFiles { dir: dir.clone(), per_slot: false, max_bytes: 10, keep: 2 };
        let mut sink = Sink::new(dir.join("c.log"));
        for i in 0..5 {
            sink.write(&format!("line {i}\n"), &files).unwrap();
        }
        let names: std::collections::BTreeSet<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names, ["c.log", "c.log.1", "c.log.2"].map(String::from).into());
        assert_eq!(std::fs::read_to_string(dir.join("c.log")).unwrap(), "line 4\n");
        assert_eq!(std::fs::read_to_string(dir.join("c.log.1")).unwrap(), "line 3\n");
    }
}
