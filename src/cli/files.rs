//! `corral init`, `corral check` and `corral schema`.

use std::path::Path;

use crate::config::WorkerExec;
use crate::config_file::ConfigFile;
use corral_runtime::ClusterConfig;

use super::EXIT_USAGE;

/// Writes the commented template (`-`: to stdout); refuses to overwrite a file unless forced.
pub fn init(path: &Path, force: bool) -> i32 {
    if path == Path::new("-") {
        print!("{}", crate::settings::template());
        return 0;
    }
    if path.exists() && !force {
        eprintln!("corral: {} exists (--force overwrites it)", path.display());
        return EXIT_USAGE;
    }
    match std::fs::write(path, crate::settings::template()) {
        Ok(()) => {
            println!("wrote {}", path.display());
            0
        }
        Err(e) => {
            eprintln!("corral: cannot write {}: {e}", path.display());
            1
        }
    }
}

/// Prints the JSON Schema of `corral.toml`.
pub fn schema() -> i32 {
    match serde_json::to_string_pretty(&crate::settings::schema()) {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            eprintln!("corral: cannot write the schema: {e}");
            1
        }
    }
}

/// Validates the file and prints the effective configuration.
pub fn check(path: &Path) -> i32 {
    if crate::config_file::CorralFile::is_tree(path) {
        return match crate::config_file::TreeFile::read(path).and_then(|f| f.tree_config()) {
            Ok(tree) => {
                print!(
                    "strategy = \"{}\"\nmax_restarts = {}\nperiod = {:?}\n",
                    tree.strategy,
                    tree.max_restarts,
                    humantime::format_duration(tree.period).to_string()
                );
                for p in &tree.programs {
                    print!("\n[programs.{}]\nkind = \"{}\"\n", p.name, p.kind);
                    if !p.depends_on.is_empty() {
                        let deps: Vec<String> = p.depends_on.iter().map(|(n, c)| format!("{n} = \"{c}\"")).collect();
                        println!("depends_on = {{ {} }}", deps.join(", "));
                    }
                    print!("{}", effective(&p.config));
                }
                0
            }
            Err(e) => {
                eprintln!("corral: {e}");
                EXIT_USAGE
            }
        };
    }
    match ConfigFile::read(path).and_then(|f| f.cluster_config()) {
        Ok(config) => {
            print!("{}", effective(&config));
            0
        }
        Err(e) => {
            eprintln!("corral: {e}");
            EXIT_USAGE
        }
    }
}

/// The effective configuration, in the file's own syntax.
pub fn effective(c: &ClusterConfig) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k} = {v}\n"));
    if let WorkerExec::Foreign(f) = &c.exec {
        line("program", format!("{:?}", f.program.display().to_string()));
        line("args", format!("{:?}", f.args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>()));
        line("listen", format!("{:?}", f.listen.iter().map(ToString::to_string).collect::<Vec<_>>()));
        line("ready", format!("{:?}", f.ready.to_string()));
        let signal = nix::sys::signal::Signal::try_from(f.stop_signal).map(|s| s.as_str()).unwrap_or("?");
        line("stop_signal", format!("{signal:?}"));
        if let Some(w) = f.watchdog {
            line("watchdog", format!("{:?}", humantime::format_duration(w).to_string()));
        }
        for (k, v) in [
            ("cwd", f.cwd.as_ref().map(|p| p.display().to_string())),
            ("user", f.user.clone()),
            ("group", f.group.clone()),
        ] {
            if let Some(v) = v {
                line(k, format!("{v:?}"));
            }
        }
    }
    let d = |d: std::time::Duration| format!("{:?}", humantime::format_duration(d).to_string());
    match &c.autoscale {
        Some(a) => line("workers", format!("{:?}", a.workers().to_string())),
        None => line("workers", c.workers.to_string()),
    }
    if c.spares != 0 {
        line("spares", c.spares.to_string());
    }
    line("sched", format!("{:?}", sched_name(c.scheduling)));
    if c.scheduling == crate::config::Scheduling::Sticky {
        line("sticky_key", format!("{:?}", c.sticky_key.to_string()));
    }
    line("kill_timeout", d(c.kill_timeout));
    line("listen_timeout", d(c.listen_timeout));
    if let Some(m) = c.max_memory {
        line("max_memory", format!("{:?}", bytesize::ByteSize(m).display().iec().to_string()));
    }
    if c.recycle_concurrency != 1 {
        line("recycle_concurrency", c.recycle_concurrency.to_string());
    }
    line("restart", format!("{:?}", format!("{:?}", c.restart).to_lowercase()));
    line("min_uptime", d(c.min_uptime));
    line("max_restarts", c.max_restarts.to_string());
    line("period", d(c.period));
    line("escalation", format!("{:?}", format!("{:?}", c.escalation).to_lowercase()));
    line("output", format!("{:?}", format!("{:?}", c.output).to_lowercase()));
    if let Some(a) = &c.autoscale {
        out.push_str(&format!(
            "\n[autoscale]\nup_after = {}\ndown_after = {}\nstep = {}\ncooldown = {}\nsignal = {:?}\n",
            d(a.up_after),
            d(a.down_after),
            a.step,
            d(a.cooldown),
            a.signal.to_string()
        ));
    }
    out.push_str("\n[backoff]\n");
    out.push_str(&format!(
        "base = {}\nfactor = {}\nmax = {}\njitter = {}\n",
        d(c.backoff.base),
        c.backoff.factor,
        d(c.backoff.max),
        c.backoff.jitter
    ));
    if !c.env.is_empty() {
        out.push_str("\n[env]\n");
        for (k, v) in &c.env {
            out.push_str(&format!("{} = {:?}\n", k.to_string_lossy(), v.to_string_lossy()));
        }
    }
    out
}

fn sched_name(s: crate::config::Scheduling) -> &'static str {
    match s {
        crate::config::Scheduling::ReusePort => "reuseport",
        crate::config::Scheduling::Shared => "shared",
        crate::config::Scheduling::RoundRobin => "rr",
        crate::config::Scheduling::LeastConnections => "lc",
        crate::config::Scheduling::Sticky => "sticky",
    }
}
