//! The effective configuration, as `corral config` shows it.

use serde_json::{Value, json};

use crate::config::cluster::{ClusterConfig, WorkerExec};

/// `config` as JSON (durations in milliseconds, sizes in bytes).
pub(crate) fn describe(c: &ClusterConfig) -> Value {
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    let exec = match &c.exec {
        WorkerExec::CurrentExe => json!({"kind": "current_exe"}),
        WorkerExec::Program { path, args } => json!({
            "kind": "program",
            "program": path.display().to_string(),
            "args": args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>(),
        }),
        WorkerExec::Foreign(f) => json!({
            "kind": "foreign",
            "program": f.program.display().to_string(),
            "args": f.args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>(),
            "listen": f.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "ready": f.ready.to_string(),
            "stop_signal": f.stop_signal,
            "watchdog_ms": f.watchdog.map(ms),
            "cwd": f.cwd.as_ref().map(|p| p.display().to_string()),
            "user": f.user,
            "group": f.group,
        }),
    };
    json!({
        "name": c.name,
        "workers": c.workers,
        "scheduling": format!("{:?}", c.scheduling),
        "restart": format!("{:?}", c.restart),
        "backoff": {"base_ms": ms(c.backoff.base), "factor": c.backoff.factor, "max_ms": ms(c.backoff.max), "jitter": c.backoff.jitter},
        "min_uptime_ms": ms(c.min_uptime),
        "max_restarts": c.max_restarts,
        "period_ms": ms(c.period),
        "escalation": format!("{:?}", c.escalation),
        "kill_timeout_ms": ms(c.kill_timeout),
        "listen_timeout_ms": ms(c.listen_timeout),
        "max_memory_bytes": c.max_memory,
        "max_requests": c.max_requests,
        "max_requests_jitter": c.max_requests_jitter,
        "heartbeat_interval_ms": ms(c.heartbeat_interval),
        "heartbeat_timeout_ms": ms(c.heartbeat_timeout),
        "output": format!("{:?}", c.output),
        "env": c.env.iter().map(|(k, v)| (k.to_string_lossy().into_owned(), Value::from(v.to_string_lossy().into_owned()))).collect::<serde_json::Map<_, _>>(),
        "exec": exec,
        "metrics": c.metrics.map(|a| a.to_string()),
        "ready_min": c.ready_min,
        "reap_orphans": c.reap_orphans,
        // The cookie is a secret: never shown.
        "node": c.node.as_ref().map(|n| json!({
            "name": n.name,
            "listen": n.listen.to_string(),
            "seeds": n.seeds.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "heartbeat_interval_ms": ms(n.heartbeat_interval),
            "heartbeat_timeout_ms": ms(n.heartbeat_timeout),
        })),
    })
}
