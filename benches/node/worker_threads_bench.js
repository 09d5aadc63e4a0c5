#!/usr/bin/env node
'use strict';
/*
 * worker_threads_bench.js — Node.js worker_threads baseline for corral's CpuPool benchmark.
 *
 * What it measures
 * ----------------
 * The main thread starts exactly one Worker (worker_threads) and ping-pongs a message with
 * it over the Worker's built-in port (`worker.postMessage` / `parentPort.postMessage`),
 * exactly one message in flight: the cost of handing a task to a thread and getting the
 * answer back, which is what CpuPool's empty-task round trip measures. The message is a
 * small object `{ seq: <number> }`; the worker posts it straight back. Each round trip is
 * timed on the main thread with process.hrtime.bigint(); warm-up round trips are discarded;
 * percentiles are nearest-rank. Worker start-up is excluded.
 *
 * Usage
 * -----
 *   env -u NODE_EXTRA_CA_CERTS node benches/node/worker_threads_bench.js \
 *       [--count N] [--warmup N] [--timeout SECONDS]
 *
 *   Defaults: --count 20000, --warmup 2000, --timeout 60.
 *
 * Output
 * ------
 * Exactly one line of JSON on stdout:
 *   {"impl":"node-worker_threads","mode":"rtt","count":20000,
 *    "p50_us":..,"p90_us":..,"p99_us":..,"max_us":..,"mean_us":..}
 * Diagnostics go to stderr. Exit code 0 on success, 1 on failure/timeout, 2 on bad usage.
 */

const { Worker, isMainThread, parentPort } = require('node:worker_threads');

function usage(msg) {
  if (msg) process.stderr.write(`worker_threads_bench: ${msg}\n`);
  process.stderr.write('usage: node worker_threads_bench.js [--count N] [--warmup N] [--timeout SECONDS]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq !== -1) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    if (arg === '-h' || arg === '--help') usage();
    if (!['--count', '--warmup', '--timeout'].includes(arg)) usage(`unknown argument: ${arg}`);
    if (value === undefined) {
      if (i + 1 >= argv.length) usage(`missing value for ${arg}`);
      value = argv[++i];
    }
    opts[arg.slice(2)] = value;
  }
  const int = (name, def, min) => {
    if (opts[name] === undefined) return def;
    const n = Number(opts[name]);
    if (!Number.isSafeInteger(n) || n < min) usage(`--${name} must be an integer >= ${min}`);
    return n;
  };
  const timeoutS = opts.timeout === undefined ? 60 : Number(opts.timeout);
  if (!(timeoutS > 0)) usage('--timeout must be a positive number of seconds');
  return { count: int('count', 20000, 1), warmup: int('warmup', 2000, 0), timeoutMs: Math.round(timeoutS * 1000) };
}

function runMain() {
  const cfg = parseArgs(process.argv.slice(2));
  const total = cfg.warmup + cfg.count;
  const samples = new Float64Array(cfg.count); // ns per measured round trip
  const worker = new Worker(__filename);
  let finished = false;

  const fail = (msg) => {
    if (finished) return;
    finished = true;
    process.stderr.write(`worker_threads_bench: error: ${msg}\n`);
    process.exit(1);
  };
  const hardTimer = setTimeout(() => fail(`timed out after ${cfg.timeoutMs / 1000} s`), cfg.timeoutMs);

  let seq = 0;
  let sentAt = 0n;
  const ping = () => {
    sentAt = process.hrtime.bigint();
    worker.postMessage({ seq });
  };

  worker.on('error', (err) => fail(`worker error: ${err && err.stack ? err.stack : err}`));
  worker.on('exit', (code) => {
    if (!finished) fail(`worker exited early with code ${code}`);
  });
  worker.on('message', (msg) => {
    const now = process.hrtime.bigint();
    if (msg === 'ready') return ping();
    if (msg.seq !== seq) return fail(`unexpected echo seq ${msg.seq}, expected ${seq}`);
    if (seq >= cfg.warmup) samples[seq - cfg.warmup] = Number(now - sentAt);
    seq++;
    if (seq < total) return ping();

    finished = true;
    clearTimeout(hardTimer);
    samples.sort();
    const n = samples.length;
    const pct = (p) => samples[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))];
    let sum = 0;
    for (let i = 0; i < n; i++) sum += samples[i];
    const us = (ns) => Number((ns / 1e3).toFixed(3));
    const result = {
      impl: 'node-worker_threads',
      mode: 'rtt',
      count: cfg.count,
      p50_us: us(pct(0.5)),
      p90_us: us(pct(0.9)),
      p99_us: us(pct(0.99)),
      max_us: us(samples[n - 1]),
      mean_us: us(sum / n),
    };
    worker.terminate().then(() => process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0)));
  });
}

function runWorker() {
  parentPort.on('message', (msg) => parentPort.postMessage(msg));
  parentPort.postMessage('ready');
}

if (isMainThread) runMain();
else runWorker();
