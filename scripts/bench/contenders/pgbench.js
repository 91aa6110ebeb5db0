'use strict';
// pgbench -M prepared running the same two statements. Not a Node module run by run-one.js:
// pgbench is its own process; index.js calls run() directly. A first, shorter pgbench run is the
// warm-up; p50/p99 come from the measured run's per-transaction log (--log, column 3 = µs).
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { Histogram, TABLE, NOW, MAX_LIFETIME, PGBENCH_ID_SQL } = require('../common.js');
const { reapedChildrenCpu } = require('../proc.js');

const label = 'pgbench -M prepared';

// The read's row comes back to the client (\gset) and goes out again as the write's parameter,
// as in the other contenders; pgbench cannot edit it on the way, so the data is written unchanged.
const script = (sessions) => `\\set id random(1, ${sessions})
SELECT sess_data AS data FROM ${TABLE} WHERE sess_id = ${PGBENCH_ID_SQL} \\gset
UPDATE ${TABLE} SET sess_data = :data, sess_modified = ${NOW}, sess_expire = ${NOW} + ${MAX_LIFETIME}, sess_counter = sess_counter + 1 WHERE sess_id = ${PGBENCH_ID_SQL};
`;

function execute(pgbench, args, track, timeoutMs) {
  return new Promise((resolve) => {
    const child = spawn(pgbench, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
    });
    const untrack = track(child);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => (out += `\n${err.message}`));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      untrack();
      resolve({ code, signal, out });
    });
  });
}

async function readLogs(dir) {
  const histogram = new Histogram();
  let failed = 0;
  for (const file of fs.readdirSync(dir).filter((f) => f.startsWith('pgbench_log'))) {
    const lines = readline.createInterface({ input: fs.createReadStream(path.join(dir, file)) });
    for await (const line of lines) {
      const latency = line.split(' ')[2];
      if (latency === undefined) continue;
      if (/^\d+$/.test(latency)) histogram.record(Number(latency));
      else failed += 1; // "failed" (PostgreSQL 15+)
    }
  }
  return { histogram, failed };
}

/**
 * Runs pgbench: `warmup` seconds not counted, then `seconds` counted. hooks.onStart/onEnd bracket
 * the counted run; hooks.track(child) registers it for Ctrl-C and returns its unregister.
 */
async function run({ bindir, db, concurrency, seconds, warmup, sessions }, hooks) {
  const pgbench = path.join(bindir, 'pgbench');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'session-pgsql-bench-'));
  const removeDir = () => fs.rmSync(dir, { recursive: true, force: true });
  process.on('exit', removeDir); // Ctrl-C exits without unwinding to the finally below
  try {
    const scriptFile = path.join(dir, 'session.sql');
    fs.writeFileSync(scriptFile, script(sessions));
    const jobs = Math.min(concurrency, 2);
    const base = [
      '-M',
      'prepared',
      '-n',
      '-c',
      String(concurrency),
      '-j',
      String(jobs),
      '-f',
      scriptFile,
    ];
    const limit = (s) => (s + 60) * 1000;
    const processedIn = (out) => {
      const m = /^number of transactions actually processed: (\d+)/m.exec(out);
      return m ? Number(m[1]) : 0;
    };
    let warmupRequests = 0;
    if (warmup > 0) {
      const w = await execute(
        pgbench,
        [...base, '-T', String(warmup), db],
        hooks.track,
        limit(warmup),
      );
      if (w.code !== 0)
        throw new Error(`pgbench warm-up failed (exit ${w.code ?? w.signal}):\n${w.out.trim()}`);
      warmupRequests = processedIn(w.out);
    }
    const cpuBefore = reapedChildrenCpu();
    const started = process.hrtime.bigint();
    hooks.onStart();
    const args = [
      ...base,
      '-T',
      String(seconds),
      '--log',
      `--log-prefix=${path.join(dir, 'pgbench_log')}`,
      db,
    ];
    const r = await execute(pgbench, args, hooks.track, limit(seconds));
    const wall = Number(process.hrtime.bigint() - started) / 1e9;
    hooks.onEnd();
    const cpuAfter = reapedChildrenCpu();

    const tps =
      /^tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)/m.exec(
        r.out,
      );
    const processed = /^number of transactions actually processed: (\d+)/m.exec(r.out);
    const failedLine = /^number of failed transactions: (\d+)/m.exec(r.out);
    const { histogram, failed } = await readLogs(dir);
    const summary = histogram.summary();
    const errors =
      Math.max(failed, failedLine ? Number(failedLine[1]) : 0) + (r.code === 0 ? 0 : 1);
    let firstError = null;
    if (r.code !== 0 || !tps) {
      firstError = `pgbench exit ${r.code ?? r.signal}: ${r.out.trim().split('\n').slice(-3).join(' | ')}`;
    }
    if (processed && Number(processed[1]) !== summary.count) {
      firstError = `${firstError ? `${firstError}; ` : ''}log has ${summary.count} transactions, pgbench reports ${processed[1]}`;
    }
    return {
      type: 'result',
      contender: 'pgbench',
      label,
      pool: `${concurrency} connections, ${jobs} thread${jobs > 1 ? 's' : ''}`,
      concurrency,
      seconds,
      iterations: summary.count,
      reqPerSec: tps ? Number(tps[1]) : summary.count / seconds,
      meanMs: summary.meanMs,
      p50Ms: summary.p50Ms,
      p99Ms: summary.p99Ms,
      maxMs: summary.maxMs,
      errors,
      firstError,
      clientCpu: cpuBefore === null || cpuAfter === null ? null : (cpuAfter - cpuBefore) / wall,
      allRequests: warmupRequests + processedIn(r.out),
      settled: true,
    };
  } finally {
    process.removeListener('exit', removeDir);
    removeDir();
  }
}

module.exports = {
  label,
  kind: 'raw',
  tables: [TABLE],
  pool: 'one connection per client',
  run,
  script,
};
