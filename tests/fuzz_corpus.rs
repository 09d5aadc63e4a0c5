//! Replays the fuzz corpus on stable: every file saved under `fuzz/corpus/<target>/` and every
//! crash kept under `fuzz/regressions/<target>/` goes through the same harness function as in
//! the libFuzzer target (`testkit/src/fuzz.rs`), which panics on any broken property (a frame
//! over the limit, a value that changes in a round trip, a hello check that lets the wrong
//! frame through, a read that does not end). Fuzzing itself needs nightly and cargo-fuzz;
//! RELIABILITY.md says how it was run.

use corral_testkit::fuzz as harness;

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Runs every file of `dirs` through `target`; returns how many ran and the ones that panicked.
fn replay(target: harness::Target, dirs: &[PathBuf]) -> (usize, Vec<String>) {
    let mut ran = 0;
    let mut failed = Vec::new();
    for file in dirs.iter().flat_map(|d| files(d)) {
        let data = match fs::read(&file) {
            Ok(data) => data,
            // A fuzzer running on the same corpus replaces files as it shrinks them.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", file.display()),
        };
        ran += 1;
        if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    (ran, failed)
}

#[test]
fn every_saved_input_and_crash_replays_without_a_panic() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failed = Vec::new();
    for (name, target) in harness::TARGETS {
        let corpus = fuzz.join("corpus").join(name);
        let regressions = fuzz.join("regressions").join(name);
        assert!(!files(&corpus).is_empty(), "no corpus for {name} in {}", corpus.display());
        let (ran, bad) = replay(*target, &[corpus, regressions]);
        assert!(ran > 0);
        failed.extend(bad);
    }
    assert!(failed.is_empty(), "inputs that panic: {failed:#?}");
}

#[test]
fn short_and_empty_inputs_are_fine_for_every_target() {
    for (_, target) in harness::TARGETS {
        for len in 0..16 {
            target(&vec![0u8; len]);
            target(&vec![0xffu8; len]);
        }
    }
}

/// Findings of the config-file review (RELIABILITY.md): a duration the clock cannot add to
/// `now` is refused with its key and line, rather than accepted into a `ClusterConfig`.
#[test]
fn a_duration_over_max_duration_is_refused_with_its_key_and_line() {
    use corral::config_file::ConfigFile;
    let text = "workers = 2\nlisten_timeout = \"18446744073709551615s\"\n";
    let err = ConfigFile::parse("corral.toml", text).unwrap().cluster_config().unwrap_err();
    assert_eq!((err.key.as_deref(), err.line), (Some("listen_timeout"), Some(2)), "{err}");
    assert!(err.to_string().contains("over the limit"), "{err}");
    let text = "[backoff]\nmax = \"200000y\"\n";
    let err = ConfigFile::parse("corral.toml", text).unwrap().cluster_config().unwrap_err();
    assert_eq!((err.key.as_deref(), err.line), (Some("backoff.max"), Some(2)), "{err}");
    let text = "program = \"/bin/true\"\nwatchdog = \"18446744073709551615s\"\n";
    let err = ConfigFile::parse("corral.toml", text).unwrap().cluster_config().unwrap_err();
    assert_eq!((err.key.as_deref(), err.line), (Some("watchdog"), Some(2)), "{err}");
    let text = "listen_timeout = \"100y\"\n";
    assert!(ConfigFile::parse("corral.toml", text).unwrap().cluster_config().is_ok());
}
