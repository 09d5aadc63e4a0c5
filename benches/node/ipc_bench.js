#!/usr/bin/env node
'use strict';
/*
 * ipc_bench.js — Node.js `cluster` IPC baseline for comparison with corral.
 *
 * What it measures
 * ----------------
 * The primary forks exactly one worker with `cluster.fork()` and exchanges
 * messages over the built-in IPC channel (`process.send` / `worker.send`),
 * using the serialization selected with `cluster.setupPrimary({ serialization })`.
 * Every message has the same logical content as corral's benchmark message
 * (a u64 sequence number + a fixed-size payload):
 *
 *     { seq: <number>, data: <ASCII string of exactly --payload bytes> }
 *
 *   --mode throughput  One-way worker -> primary. After the primary's "start"
 *                      command the worker sends warmup + count messages as
 *                      fast as it can, with at most --window sends outstanding
 *                      (tracked with process.send's completion callback, and
 *                      pausing whenever process.send returns false), so memory
 *                      stays bounded. The clock starts when the last warm-up
 *                      message arrives at the primary (or when "start" is sent
 *                      if --warmup 0) and stops when the last measured message
 *                      arrives. Reports msgs_per_sec = count / elapsed_s.
 *
 *   --mode rtt         Ping-pong primary -> worker -> primary, exactly one
 *                      message in flight. Each round trip is timed in the
 *                      primary with process.hrtime.bigint(); warm-up round
 *                      trips are discarded. Reports p50/p90/p99/max/mean in µs
 *                      (percentiles are nearest-rank).
 *
 * Process start-up, fork and the ready handshake are excluded from the timings.
 *
 * Usage
 * -----
 *   env -u NODE_EXTRA_CA_CERTS node benches/node/ipc_bench.js \
 *       --mode throughput|rtt --serialization json|advanced \
 *       [--count N] [--payload BYTES] [--warmup N] [--window N] [--timeout SECONDS]
 *
 *   Defaults: --count 200000 (throughput) / 20000 (rtt), --payload 64,
 *             --warmup 10000 (throughput) / 2000 (rtt), --window 1024,
 *             --timeout 60.
 *   Pin both processes to one core with:  taskset -c 0 node benches/node/ipc_bench.js ...
 *   (NODE_EXTRA_CA_CERTS only slows Node start-up; the script works with or without it.)
 *
 * Output
 * ------
 * Exactly one line of JSON on stdout, e.g.
 *   {"impl":"node-cluster","serialization":"json","mode":"rtt","count":20000,"payload":64,
 *    "p50_us":..,"p90_us":..,"p99_us":..,"max_us":..,"mean_us":..}
 *   {"impl":"node-cluster","serialization":"advanced","mode":"throughput","count":200000,
 *    "payload":64,"msgs_per_sec":..,"elapsed_s":..}
 * Diagnostics go to stderr. Exit code 0 on success, 1 on failure/timeout, 2 on bad usage.
 */

const cluster = require('node:cluster');

const CONFIG_ENV = 'CORRAL_IPC_BENCH_CONFIG';

// ---------------------------------------------------------------------------
// Argument parsing (primary only; the worker receives the parsed config via env)
// ---------------------------------------------------------------------------

function usage(msg) {
  if (msg) process.stderr.write(`ipc_bench: ${msg}\n`);
  process.stderr.write(
    'usage: node ipc_bench.js --mode throughput|rtt --serialization json|advanced ' +
      '[--count N] [--payload BYTES] [--warmup N] [--window N] [--timeout SECONDS]\n'
  );
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
    const known = ['--mode', '--serialization', '--count', '--payload', '--warmup', '--window', '--timeout'];
    if (!known.includes(arg)) usage(`unknown argument: ${arg}`);
    if (value === undefined) {
      if (i + 1 >= argv.length) usage(`missing value for ${arg}`);
      value = argv[++i];
    }
    opts[arg.slice(2)] = value;
  }

  const mode = opts.mode;
  if (mode !== 'throughput' && mode !== 'rtt') usage('--mode must be throughput or rtt');
  const serialization = opts.serialization;
  if (serialization !== 'json' && serialization !== 'advanced') {
    usage('--serialization must be json or advanced');
  }

  const int = (name, def, min) => {
    if (opts[name] === undefined) return def;
    const n = Number(opts[name]);
    if (!Number.isSafeInteger(n) || n < min) usage(`--${name} must be an integer >= ${min}`);
    return n;
  };
  const timeoutS = opts.timeout === undefined ? 60 : Number(opts.timeout);
  if (!(timeoutS > 0)) usage('--timeout must be a positive number of seconds');

  return {
    mode,
    serialization,
    count: int('count', mode === 'rtt' ? 20000 : 200000, 1),
    payload: int('payload', 64, 0),
    warmup: int('warmup', mode === 'rtt' ? 2000 : 10000, 0),
    window: int('window', 1024, 1),
    timeoutMs: Math.round(timeoutS * 1000),
  };
}

// ---------------------------------------------------------------------------
// Primary
// ---------------------------------------------------------------------------

function runPrimary() {
  const cfg = parseArgs(process.argv.slice(2));
  const data = 'x'.repeat(cfg.payload); // ASCII: chars == bytes
  const total = cfg.warmup + cfg.count;

  let result = null; // set once the measurement is complete
  let finished = false;

  cluster.setupPrimary({ serialization: cfg.serialization });
  const worker = cluster.fork({ [CONFIG_ENV]: JSON.stringify(cfg) });

  // Hard bound on the whole run.
  const hardTimer = setTimeout(() => {
    fail(`timed out after ${cfg.timeoutMs / 1000} s (result ${result ? 'ready' : 'not ready'})`);
  }, cfg.timeoutMs);

  function fail(msg) {
    if (finished) return;
    finished = true;
    process.stderr.write(`ipc_bench: error: ${msg}\n`);
    try {
      worker.process.kill('SIGKILL');
    } catch (_) {
      /* already gone */
    }
    process.exit(1);
  }

  // Called when the measurement is complete: shut the worker down, and print
  // the result once it has exited cleanly.
  function complete(res) {
    result = res;
    worker.disconnect();
  }

  worker.on('error', (err) => fail(`worker error: ${err && err.stack ? err.stack : err}`));
  worker.on('exit', (code, signal) => {
    if (finished) return;
    if (!result) return fail(`worker exited early (code ${code}, signal ${signal})`);
    if (code !== 0) return fail(`worker exited with code ${code}, signal ${signal}`);
    finished = true;
    clearTimeout(hardTimer);
    process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0));
  });

  const base = {
    impl: 'node-cluster',
    serialization: cfg.serialization,
    mode: cfg.mode,
    count: cfg.count,
    payload: cfg.payload,
  };

  if (cfg.mode === 'throughput') {
    // ---- one-way worker -> primary -------------------------------------
    let expected = 0; // next expected seq
    let t0 = 0n;
    const lastWarmup = cfg.warmup - 1; // seq whose arrival starts the clock

    worker.on('message', (msg) => {
      if (msg.seq === undefined) {
        if (msg.cmd === 'ready') {
          if (cfg.warmup === 0) t0 = process.hrtime.bigint();
          worker.send({ cmd: 'start' });
        }
        return;
      }
      if (msg.seq !== expected) return fail(`out-of-order message: got seq ${msg.seq}, expected ${expected}`);
      expected++;
      if (msg.seq === lastWarmup) {
        t0 = process.hrtime.bigint();
      } else if (expected === total) {
        const elapsedNs = Number(process.hrtime.bigint() - t0);
        if (msg.data.length !== cfg.payload) return fail(`bad payload length ${msg.data.length}`);
        const elapsedS = elapsedNs / 1e9;
        complete({
          ...base,
          msgs_per_sec: Math.round(cfg.count / elapsedS),
          elapsed_s: Number(elapsedS.toFixed(6)),
        });
      }
    });
  } else {
    // ---- rtt ping-pong primary -> worker -> primary --------------------
    const samples = new Float64Array(cfg.count); // ns per measured round trip
    let seq = 0;
    let sentAt = 0n;

    const ping = () => {
      sentAt = process.hrtime.bigint();
      worker.send({ seq, data });
    };

    worker.on('message', (msg) => {
      const now = process.hrtime.bigint();
      if (msg.seq === undefined) {
        if (msg.cmd === 'ready') ping();
        return;
      }
      if (msg.seq !== seq) return fail(`unexpected echo seq ${msg.seq}, expected ${seq}`);
      if (seq >= cfg.warmup) samples[seq - cfg.warmup] = Number(now - sentAt);
      seq++;
      if (seq < total) return ping();

      if (msg.data.length !== cfg.payload) return fail(`bad payload length ${msg.data.length}`);
      samples.sort();
      const n = samples.length;
      const pct = (p) => samples[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))];
      let sum = 0;
      for (let i = 0; i < n; i++) sum += samples[i];
      const us = (ns) => Number((ns / 1e3).toFixed(3));
      complete({
        ...base,
        p50_us: us(pct(0.5)),
        p90_us: us(pct(0.9)),
        p99_us: us(pct(0.99)),
        max_us: us(samples[n - 1]),
        mean_us: us(sum / n),
      });
    });
  }
}

// ---------------------------------------------------------------------------
// Worker
// ---------------------------------------------------------------------------

function runWorker() {
  const cfg = JSON.parse(process.env[CONFIG_ENV]);
  const data = 'x'.repeat(cfg.payload);
  const total = cfg.warmup + cfg.count;

  // Exit as soon as the primary disconnects us (normal shutdown path).
  process.on('disconnect', () => process.exit(0));
  // Safety net in case the primary disappears without closing the channel.
  setTimeout(() => {
    process.stderr.write('ipc_bench worker: timed out\n');
    process.exit(1);
  }, cfg.timeoutMs + 5000).unref();

  if (cfg.mode === 'throughput') {
    let sent = 0;
    let outstanding = 0; // sends whose completion callback has not fired yet
    // When process.send returns false (channel write queue over its high-water
    // mark) stop sending until half of the then-outstanding writes completed.
    let resumeAt = -1; // -1: not congested

    const onSent = (err) => {
      if (err) {
        process.stderr.write(`ipc_bench worker: send failed: ${err}\n`);
        process.exit(1);
      }
      outstanding--;
      if (resumeAt >= 0) {
        if (outstanding > resumeAt) return; // still draining
        resumeAt = -1;
      }
      pump();
    };

    function pump() {
      while (sent < total && outstanding < cfg.window) {
        outstanding++;
        if (!process.send({ seq: sent++, data }, onSent)) {
          resumeAt = outstanding >> 1;
          return;
        }
      }
    }

    process.on('message', (msg) => {
      if (msg.cmd === 'start') pump();
    });
  } else {
    // Echo every ping straight back.
    process.on('message', (msg) => {
      if (msg.seq !== undefined) process.send(msg);
    });
  }

  process.send({ cmd: 'ready' });
}

if (cluster.isPrimary) runPrimary();
else runWorker();
