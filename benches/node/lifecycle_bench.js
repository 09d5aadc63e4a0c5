#!/usr/bin/env node
'use strict';
/*
 * lifecycle_bench.js — the Node.js `cluster` baseline that `benches/lifecycle.rs` compares
 * corral's `examples/http_cluster.rs` against for worker life-cycle costs: cold start of the
 * cluster, restart of a SIGKILLed worker, and idle memory. Built-in modules only.
 *
 * The primary forks --workers workers and restarts any worker that exits (at once, on the
 * cluster's 'exit' event, as a plain Node cluster or PM2 does). Every worker runs a plain
 * `http` server on 127.0.0.1:--port; the workers share the port through the primary.
 *
 *   GET /   ->  200 "Handled by worker <id> (pid <pid>)"
 *   other   ->  404
 *
 * Usage
 * -----
 *   env -u NODE_EXTRA_CA_CERTS node benches/node/lifecycle_bench.js \
 *       [--workers N] [--port P] [--sched rr|none]
 *
 *   Defaults: --workers 2, --port 0 (any free port), --sched rr (cluster.SCHED_RR: the
 *   primary accepts and hands connections out; none = cluster.SCHED_NONE).
 *
 *   With --port 0 and SCHED_RR, a cluster whose every worker died gets a new port when the
 *   replacement listens (Node closes the shared handle with its last worker): pass a fixed
 *   port when killing the only worker, as the benchmark does.
 *
 * Output
 * ------
 * Once the first --workers workers are listening the primary prints exactly one line on
 * stdout:
 *   listening on http://127.0.0.1:<port>
 * Diagnostics (worker exits and restarts) go to stderr.
 * SIGTERM / SIGINT to the primary: every worker is disconnected (its server closes and
 * in-flight requests finish), stragglers are SIGKILLed after 5 s, the primary exits 0
 * (1 if it had to kill one). Exit code 2 on bad usage.
 */

const cluster = require('node:cluster');
const http = require('node:http');

const HOST = '127.0.0.1';
/** How long stopping workers may take to finish before they are killed. */
const KILL_TIMEOUT_MS = 5000;

function usage(msg) {
  if (msg) process.stderr.write(`lifecycle_bench: ${msg}\n`);
  process.stderr.write('usage: node lifecycle_bench.js [--workers N] [--port P] [--sched rr|none]\n');
  process.exit(2);
}

// Accepts `--flag value` and `--flag=value`.
function parseArgs(argv) {
  const opts = { workers: 2, port: 0, sched: 'rr' };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq !== -1) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    } else {
      value = argv[++i];
    }
    if (value === undefined) usage(`missing value for ${arg}`);
    switch (arg) {
      case '--workers':
        opts.workers = Number(value);
        if (!Number.isInteger(opts.workers) || opts.workers < 1) usage(`bad --workers ${value}`);
        break;
      case '--port':
        opts.port = Number(value);
        if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) usage(`bad --port ${value}`);
        break;
      case '--sched':
        if (value !== 'rr' && value !== 'none') usage(`bad --sched ${value}`);
        opts.sched = value;
        break;
      default:
        usage(`unknown argument ${arg}`);
    }
  }
  return opts;
}

function runPrimary() {
  const opts = parseArgs(process.argv.slice(2));
  // Must be set before the first fork() to take effect.
  cluster.schedulingPolicy = opts.sched === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE;
  cluster.setupPrimary({ args: [String(opts.port)] });

  let listening = 0;
  let announced = false;
  let stopping = false;
  let killed = false;

  cluster.on('listening', (_worker, address) => {
    listening += 1;
    if (!announced && listening >= opts.workers) {
      announced = true;
      // With port 0 the workers share the primary's handle, so any address has the real port.
      process.stdout.write(`listening on http://${HOST}:${address.port}\n`);
    }
  });

  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers).length === 0) process.exit(killed ? 1 : 0);
      return;
    }
    // The supervisor's job: replace the dead worker at once.
    process.stderr.write(`lifecycle_bench: worker ${worker.id} (pid ${worker.process.pid}) exited ` +
      `(code ${code}, signal ${signal}); restarting it\n`);
    cluster.fork();
  });

  // Graceful stop: each worker closes its server and exits once its requests are done.
  function shutdown() {
    if (stopping) return;
    stopping = true;
    const workers = Object.values(cluster.workers);
    if (workers.length === 0) process.exit(0);
    for (const w of workers) w.disconnect();
    setTimeout(() => {
      for (const w of Object.values(cluster.workers)) {
        killed = true;
        w.process.kill('SIGKILL');
      }
    }, KILL_TIMEOUT_MS).unref();
  }

  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);

  for (let i = 0; i < opts.workers; i++) cluster.fork();
}

function runWorker() {
  const port = Number(process.argv[2]);
  const body = Buffer.from(`Handled by worker ${cluster.worker.id} (pid ${process.pid})\n`);

  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/') {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': body.length });
      res.end(body);
    } else {
      res.writeHead(404, { 'Content-Length': 0 });
      res.end();
    }
  });
  // The primary stops us with worker.disconnect(), which closes this server.
  server.listen(port, HOST);
}

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker();
}
