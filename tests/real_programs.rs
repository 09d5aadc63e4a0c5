//! The servers people deploy, under `corral run` (issue 26): gunicorn + Flask (and gunicorn's
//! gthread and asgi workers), uvicorn + FastAPI, hypercorn, waitress, Node's http, Express 5,
//! Fastify 5 and puma 5.6, each run by the command of its recipe
//! (`docs/src/recipes/NAME.md`, so that no recipe goes stale) from `examples/servers/`, in
//! `reuseport` and in `shared` scheduling. Each test checks (`servers::checks`): both workers
//! answer with the client's address; keep-alive within 1.5× of the server alone; a SIGKILLed
//! worker is replaced and its children are gone; SIGHUP under light load fails nothing;
//! SIGTERM exits 0 and leaves no process. The first test to need a server installs it (pinned,
//! cached under `target/real-programs/`, needing PyPI and the npm registry); puma and
//! ruby-sd-notify come from Debian through `scripts/test`.

mod common;
mod servers;

use servers::checks::{Server, check};
use servers::install::{Installed, Needs};

/// gunicorn's sync worker closes every connection, so its keep-alive figure is a connection per
/// request, taken by any process on the port: alone it gets 2 workers too, as under `-w 2`.
fn gunicorn_alone(installed: &Installed, port: u16) -> Vec<String> {
    let gunicorn = installed.venv_bin.join("gunicorn").display().to_string();
    let bind = format!("127.0.0.1:{port}");
    [gunicorn.as_str(), "--workers", "2", "--no-control-socket", "--bind", &bind, "app_flask:app"]
        .map(String::from)
        .into()
}

/// uvicorn on its own bind sets `TCP_NODELAY` on what it accepts (an inherited fd, it does not).
fn uvicorn_alone(installed: &Installed, port: u16) -> Vec<String> {
    let uvicorn = installed.venv_bin.join("uvicorn").display().to_string();
    let port = port.to_string();
    [uvicorn.as_str(), "--host", "127.0.0.1", "--port", &port, "app_fastapi:app"].map(String::from).into()
}

const GUNICORN: Server =
    Server { name: "gunicorn", needs: Needs::Python, alone: Some(gunicorn_alone), resets_per_stop: 0 };
/// uvicorn's shutdown closes a connection it has accepted but not read yet (the client sees a
/// reset; uvicorn's discussion 2315): one request per stopped worker may be lost to it, now and
/// then, whatever runs uvicorn (docs/src/recipes/uvicorn.md).
const UVICORN: Server =
    Server { name: "uvicorn", needs: Needs::Python, alone: Some(uvicorn_alone), resets_per_stop: 1 };
/// Express and puma alone: the recipe's program on a socket from systemd-socket-activate.
const EXPRESS: Server = Server { name: "express", needs: Needs::Node, alone: None, resets_per_stop: 0 };
const PUMA: Server = Server { name: "puma", needs: Needs::Puma, alone: None, resets_per_stop: 0 };
/// hypercorn closes connections it accepted but has not read when it stops, as uvicorn does
/// (docs/src/recipes/hypercorn.md).
const HYPERCORN: Server = Server { name: "hypercorn", needs: Needs::Python, alone: None, resets_per_stop: 1 };
const WAITRESS: Server = Server { name: "waitress", needs: Needs::Python, alone: None, resets_per_stop: 0 };
const GUNICORN_GTHREAD: Server =
    Server { name: "gunicorn-gthread", needs: Needs::Python, alone: None, resets_per_stop: 0 };
const GUNICORN_ASGI: Server = Server { name: "gunicorn-asgi", needs: Needs::Python, alone: None, resets_per_stop: 0 };
const NODE_HTTP: Server = Server { name: "node-http", needs: Needs::Node, alone: None, resets_per_stop: 0 };
const FASTIFY: Server = Server { name: "fastify", needs: Needs::Node, alone: None, resets_per_stop: 0 };

macro_rules! real_programs {
    ($($test:ident => $server:ident, $sched:literal;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            check(&$server, $sched).await;
        }
    )*};
}

real_programs! {
    gunicorn_flask_reuseport => GUNICORN, "reuseport";
    gunicorn_flask_shared => GUNICORN, "shared";
    uvicorn_fastapi_reuseport => UVICORN, "reuseport";
    uvicorn_fastapi_shared => UVICORN, "shared";
    express_reuseport => EXPRESS, "reuseport";
    express_shared => EXPRESS, "shared";
    puma_reuseport => PUMA, "reuseport";
    puma_shared => PUMA, "shared";
    hypercorn_reuseport => HYPERCORN, "reuseport";
    hypercorn_shared => HYPERCORN, "shared";
    waitress_reuseport => WAITRESS, "reuseport";
    waitress_shared => WAITRESS, "shared";
    gunicorn_gthread_reuseport => GUNICORN_GTHREAD, "reuseport";
    gunicorn_gthread_shared => GUNICORN_GTHREAD, "shared";
    gunicorn_asgi_reuseport => GUNICORN_ASGI, "reuseport";
    gunicorn_asgi_shared => GUNICORN_ASGI, "shared";
    node_http_reuseport => NODE_HTTP, "reuseport";
    node_http_shared => NODE_HTTP, "shared";
    fastify_reuseport => FASTIFY, "reuseport";
    fastify_shared => FASTIFY, "shared";
}

/// A recipe's `corral.toml`, where its page shows one, is valid (`corral check`) and says what
/// the recipe's command says.
#[test]
fn every_recipe_config_file_says_what_its_command_says() {
    use servers::recipe;
    let mut checked = 0;
    for name in ["gunicorn", "uvicorn", "express", "puma"] {
        let words = recipe::command(name);
        let Some(text) = recipe::config(name) else { continue };
        checked += 1;
        let dir = servers::run::scratch(&format!("config-{name}"));
        let file = dir.join("corral.toml");
        std::fs::write(&file, &text).expect("write");
        let out = std::process::Command::new(common::CORRAL).arg("check").arg(&file).output().expect("corral check");
        assert!(out.status.success(), "{name}.md's corral.toml: {}", String::from_utf8_lossy(&out.stderr));
        let table: toml::Table = text.parse().unwrap_or_else(|e| panic!("{name}.md's corral.toml: {e}"));
        let program = recipe::program(&words);
        let strings = |key: &str| -> Vec<String> {
            let values = table.get(key).and_then(toml::Value::as_array).cloned().unwrap_or_default();
            values.iter().filter_map(|v| v.as_str().map(String::from)).collect()
        };
        assert_eq!(table.get("program").and_then(toml::Value::as_str), Some(program[0].as_str()), "{name}: program");
        assert_eq!(strings("args"), program[1..], "{name}: args");
        assert_eq!(
            strings("listen"),
            [recipe::flag(&words, &["-l", "--listen"]).unwrap_or_default()],
            "{name}: listen"
        );
        let workers = table.get("workers").and_then(toml::Value::as_integer).map(|w| w.to_string());
        assert_eq!(workers.as_deref(), recipe::flag(&words, &["-w", "--workers"]), "{name}: workers");
        let ready = table.get("ready").and_then(toml::Value::as_str);
        assert_eq!(ready, recipe::flag(&words, &["--ready"]), "{name}: ready");
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(checked > 0, "no recipe shows a corral.toml (`<!-- recipe config: NAME -->`)");
}
