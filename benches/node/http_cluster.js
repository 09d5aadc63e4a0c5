#!/usr/bin/env node
'use strict';
/*
 * http_cluster.js — Node.js `cluster` HTTP hello-world, the baseline that
 * `benches/http.rs` compares corral's `examples/http_cluster.rs` against.
 *
 * The primary sets the scheduling policy, forks --workers workers, and every
 * worker runs a plain `http` server on 127.0.0.1:--port (workers share the
 * port through the primary, as in any Node cluster).
 *
 *   GET /   ->  200 "Handled by worker <id> (pid <pid>)"
 *   other   ->  404
 *
 * Usage
 * -----
 *   env -u NODE_EXTRA_CA_CERTS node benches/node/http_cluster.js \
 *       [--workers N] [--port P] [--sched rr|none]
 *
 *   Defaults: --workers 2, --port 0 (any free port), --sched rr.
 *   --sched rr    cluster.SCHED_RR   (the primary accepts and hands out
 *                                    connections round-robin)
 *   --sched none  cluster.SCHED_NONE (the workers accept on the shared
 *                                    socket themselves; the kernel decides)
 *
 * Output
 * ------
 * Once every worker is listening the primary prints exactly one line on stdout:
 *   listening on http://127.0.0.1:<port>
 * with the real port (useful with --port 0). Diagnostics go to stderr.
 * SIGTERM / SIGINT to the primary: the workers are killed, the primary exits 0.
 * Exit code 2 on bad usage, 1 if a worker dies before the cluster is ready.
 */

const cluster = require('node:cluster');
const http = require('node:http');

const HOST = '127.0.0.1';

function usage(msg) {
  if (msg) process.stderr.write(`http_cluster: ${msg}\n`);
  process.stderr.write('usage: node http_cluster.js [--workers N] [--port P] [--sched rr|none]\n');
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
  let ready = false;
  let stopping = false;
  let exitCode = 0;

  cluster.on('listening', (_worker, address) => {
    listening += 1;
    if (listening === opts.workers && !ready) {
      ready = true;
      // With port 0 every worker gets the same port (the primary owns the
      // handle), so any 'listening' address carries the real one.
      process.stdout.write(`listening on http://${HOST}:${address.port}\n`);
    }
  });

  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers).length === 0) process.exit(exitCode);
      return;
    }
    process.stderr.write(`http_cluster: worker ${worker.id} exited (code ${code}, signal ${signal})\n`);
    if (!ready) {
      shutdown(1);
    }
  });

  // Kill every worker, then exit once they are all gone (bounded at 5 s).
  function shutdown(code) {
    if (stopping) return;
    stopping = true;
    const workers = Object.values(cluster.workers);
    if (workers.length === 0) process.exit(code);
    exitCode = code;
    // The 'exit' handler above exits once the last worker is gone.
    for (const w of workers) w.process.kill('SIGTERM');
    setTimeout(() => {
      for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL');
      process.exit(code);
    }, 5000).unref();
  }

  process.on('SIGTERM', () => shutdown(0));
  process.on('SIGINT', () => shutdown(0));

  for (let i = 0; i < opts.workers; i++) cluster.fork();
}

function runWorker() {
  const port = Number(process.argv[2]);
  const id = cluster.worker.id;
  const body = Buffer.from(`Handled by worker ${id} (pid ${process.pid})`);

  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/') {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': body.length });
      res.end(body);
    } else {
      res.writeHead(404, { 'Content-Length': 0 });
      res.end();
    }
  });
  server.listen(port, HOST);

  // The primary kills us on shutdown; exit promptly and quietly on SIGTERM.
  process.on('SIGTERM', () => process.exit(0));
}

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker();
}
