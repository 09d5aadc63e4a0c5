//! The soak, two minutes of it (`benches/soak.py` runs it for an hour): `corral run` under load
//! with SIGKILLs, rolling reloads (SIGHUP and `corral reload`), scale changes, in-place upgrades
//! and control-socket traffic mixed in; the primary's fds, threads and RSS sampled every 20 s,
//! and the run fails when they grow (the least of the last third of the samples against the
//! least of the first third: fds + 2, threads + 0, RSS + 1 MiB), when a zombie is left, or when
//! the cluster stops serving. About two minutes of wall time (122 s in a debug run here).

mod common;

use common::CORRAL;

#[test]
fn two_minutes_of_everything_at_once_grow_nothing() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("python3")
        .current_dir(root)
        .args(["benches/soak.py", "--duration", "100s", "--warmup", "20s", "--sample-every", "20s", "--bin", CORRAL])
        .output()
        .expect("python3 benches/soak.py");
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{said}");
    assert!(out.status.success(), "the soak failed:\n{said}");
    assert!(said.lines().any(|l| l.starts_with("soak ")), "no summary line:\n{said}");
}
