//! The servers, installed on first use: pinned (`examples/servers/requirements.txt` and
//! `package.json`), cached under `target/real-programs/`, one test at a time (a file lock), and
//! nothing at all once a stamp says the same pins are in place. puma and ruby-sd-notify are
//! Debian's: `scripts/test` installs them; here they are only looked for.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// How long one install step (a venv, `pip install`, `npm install`) may take.
const STEP_LIMIT: Duration = Duration::from_secs(15 * 60);

/// The apps and their pins: `examples/servers/`.
pub fn apps() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/servers")
}

/// The cache: `target/real-programs/` (under `CARGO_TARGET_DIR` when it is set).
pub fn cache() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| manifest.join("target"), |t| manifest.join(t));
    target.join("real-programs")
}

/// What a server needs installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// The Python venv (gunicorn, Flask, uvicorn, FastAPI).
    Python,
    /// Express in `node_modules`.
    Node,
    /// Debian's puma and ruby-sd-notify.
    Puma,
}

/// Where the installed servers are: what the servers' environment gets.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The venv's `bin`, first on `PATH`.
    pub venv_bin: PathBuf,
    /// The `node_modules` folder, as `NODE_PATH`.
    pub node_path: PathBuf,
}

impl Installed {
    /// `PATH` with the venv's `bin` first.
    pub fn path(&self) -> String {
        format!("{}:{}", self.venv_bin.display(), std::env::var("PATH").unwrap_or_default())
    }

    /// The environment of a server (and of corral, whose workers inherit it).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PATH".into(), self.path()),
            ("NODE_PATH".into(), self.node_path.display().to_string()),
            // The apps' folder stays clean.
            ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
        ]
    }
}

/// Makes sure `needs` is installed (installing it the first time); panics with what failed.
pub fn ensure(needs: Needs) -> Installed {
    let installed = Installed { venv_bin: cache().join("venv/bin"), node_path: cache().join("node/node_modules") };
    let outcome = locked(|| match needs {
        Needs::Python => python(&installed),
        Needs::Node => node(&installed),
        Needs::Puma => puma(),
    });
    if let Err(why) = outcome {
        panic!("setting up the real servers: {why}");
    }
    installed
}

/// Runs `f` holding the cache's lock: concurrent tests never install at the same time.
fn locked<T>(f: impl FnOnce() -> T) -> T {
    std::fs::create_dir_all(cache()).expect("target/real-programs");
    let file =
        OpenOptions::new().create(true).truncate(false).write(true).open(cache().join("lock")).expect("lock file");
    let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| e).expect("flock");
    let out = f();
    drop(lock);
    out
}

/// The venv, with the pins of `requirements.txt`.
fn python(installed: &Installed) -> Result<(), String> {
    let pins = std::fs::read_to_string(apps().join("requirements.txt")).map_err(|e| e.to_string())?;
    let stamp = cache().join("venv.pins");
    let have = |tool: &str| installed.venv_bin.join(tool).exists();
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == pins) && have("gunicorn") && have("uvicorn") {
        return Ok(());
    }
    eprintln!("real servers: installing a Python venv into {} (once)", cache().display());
    let venv = cache().join("venv");
    if !have("python") {
        step("python3 -m venv", Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    let pip = step(
        "pip install -r examples/servers/requirements.txt",
        Command::new(installed.venv_bin.join("python"))
            .args(["-m", "pip", "install", "--disable-pip-version-check", "-q", "--retries", "2", "-r"])
            .arg(apps().join("requirements.txt")),
    );
    pip.map_err(|e| format!("{e} (it needs PyPI: is the network there?)"))?;
    std::fs::write(&stamp, pins).map_err(|e| e.to_string())
}

/// Express, at the version `package.json` pins.
fn node(installed: &Installed) -> Result<(), String> {
    let manifest = std::fs::read_to_string(apps().join("package.json")).map_err(|e| e.to_string())?;
    let pinned = manifest
        .split("\"express\":")
        .nth(1)
        .and_then(|v| v.split('"').nth(1))
        .ok_or("examples/servers/package.json pins no express")?
        .to_string();
    let version = || {
        let installed = std::fs::read_to_string(installed.node_path.join("express/package.json")).ok()?;
        let json: serde_json::Value = serde_json::from_str(&installed).ok()?;
        json["version"].as_str().map(String::from)
    };
    for tool in ["node", "npm"] {
        if !on_path(tool) {
            return Err(format!(
                "no `{tool}` on PATH: run scripts/test, which installs the Debian packages the tests need"
            ));
        }
    }
    let stamp = cache().join("node.pins");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == manifest) && version().as_deref() == Some(pinned.as_str()) {
        return Ok(());
    }
    eprintln!("real servers: npm install express@{pinned} into {} (once)", cache().display());
    let dir = cache().join("node");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("package.json"), &manifest).map_err(|e| e.to_string())?;
    let npm = step(
        "npm install",
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--fetch-retries=2"])
            .current_dir(&dir),
    );
    npm.map_err(|e| format!("{e} (it needs the npm registry: is the network there?)"))?;
    match version() {
        Some(v) if v == pinned => std::fs::write(&stamp, manifest).map_err(|e| e.to_string()),
        other => Err(format!("npm install left express {other:?}, not {pinned}")),
    }
}

/// Debian's puma and ruby-sd-notify: there, or the test says how to get them.
fn puma() -> Result<(), String> {
    let sd_notify = || {
        let mut check = Command::new("ruby");
        check.args(["-e", "require 'sd_notify'"]).stdout(Stdio::null()).stderr(Stdio::null());
        check.status().is_ok_and(|s| s.success())
    };
    if on_path("puma") && sd_notify() {
        return Ok(());
    }
    Err("puma or ruby-sd-notify is missing: run scripts/test as root (it installs the Debian packages \
         puma and ruby-sd-notify), or apt-get install puma ruby-sd-notify"
        .into())
}

fn on_path(tool: &str) -> bool {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|dir| dir.join(tool).is_file())
}

/// Runs one install step, bounded by [`STEP_LIMIT`], its output in a log file of the cache;
/// on failure, the step and the log's last lines.
fn step(what: &str, command: &mut Command) -> Result<(), String> {
    let log_path = cache().join("install.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("`{what}` cannot start: {e}"))?;
    let deadline = Instant::now() + STEP_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("`{what}` not done in {STEP_LIMIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    Err(format!("`{what}` failed ({status}): {tail}"))
}
