'use strict';
// One contender in a fresh process: connect, warm up, run C virtual users for T seconds, report.
// Forked by index.js with one JSON argument { contender, db, redis, sessions, concurrency,
// seconds, warmup, gc }; talks to it over IPC: { type: 'measuring' } when the counted window
// opens, { type: 'done' } when it closes, then { type: 'result', ... }. Exits when the parent
// goes away.
//
// gc: null, or the GC phase's window instead of T seconds: 'handler' runs the contender's own
// gc() (on the users' handler and connection, as its gcInterval timer would) and the window
// lasts as long as it does; 'separate' waits for the parent's { type: 'stop' } (the parent runs
// GC from another handler, as the CLI from cron would). Either way at most gcMaxSeconds.
const path = require('node:path');
const { Histogram, randomId } = require('./common.js');

const SETTLE_MS = 10_000; // how long in-flight iterations may take to finish after the window
const ERROR_PAUSE_MS = 1; // after a failed iteration, so a dead server is not a busy loop

const config = JSON.parse(process.argv[2]);
const send = (message) =>
  new Promise((resolve) => {
    if (!process.send) return resolve();
    process.send(message, () => resolve());
  });
process.on('disconnect', () => process.exit(1));

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// Listening from the start: the parent's 'stop' may follow 'measuring' at once.
const stopped = new Promise((resolve) =>
  process.on('message', (m) => m && m.type === 'stop' && resolve({ finished: true })),
);

async function main() {
  const contender = require(path.join(__dirname, 'contenders', `${config.contender}.js`));
  const client = await contender.open(config.db, config);
  if (config.gc === 'handler' && !client.gc) throw new Error(`${config.contender} has no gc()`);

  const histogram = new Histogram();
  const state = {
    measuring: false,
    stop: false,
    t0: 0n,
    t1: 0n,
    errors: 0,
    firstError: null,
    completed: 0, // every request that succeeded, warm-up included: the WAL per request divides by it
  };
  const window = config.gc ? config.gcMaxSeconds : config.seconds;
  const maxIterations = 1_000_000 * (config.warmup + window + 1); // a bound, never reached

  async function virtualUser() {
    for (let n = 0; n < maxIterations && !state.stop; n++) {
      const id = randomId(config.sessions);
      const start = process.hrtime.bigint();
      try {
        await client.request(id);
      } catch (err) {
        if (state.measuring && !state.stop) {
          state.errors += 1;
          if (state.firstError === null)
            state.firstError = String(err && err.message ? err.message : err);
        }
        await sleep(ERROR_PAUSE_MS);
        continue;
      }
      const end = process.hrtime.bigint();
      state.completed += 1;
      // Counted: iterations started and finished inside the window; in the GC phase, every
      // iteration in flight at some moment of it (a GC shorter than a request still counts).
      const counted = config.gc
        ? state.measuring && end >= state.t0 && (!state.stop || start <= state.t1)
        : state.measuring && start >= state.t0 && !state.stop;
      if (counted) histogram.record(Number(end - start) / 1000);
    }
  }

  const users = Array.from({ length: config.concurrency }, virtualUser);
  let cpuStart = null;
  await sleep(config.warmup * 1000);
  state.t0 = process.hrtime.bigint();
  cpuStart = process.cpuUsage();
  state.measuring = true;
  await send({ type: 'measuring' });
  const gc = config.gc ? await gcWindow() : null;
  if (!config.gc) await sleep(config.seconds * 1000);
  state.stop = true;
  state.t1 = process.hrtime.bigint();
  const cpu = process.cpuUsage(cpuStart);
  await send({ type: 'done' });

  const settled = await Promise.race([
    Promise.all(users).then(() => true),
    sleep(SETTLE_MS).then(() => false),
  ]);
  const windowSeconds = Number(state.t1 - state.t0) / 1e9;
  const summary = histogram.summary();
  await send({
    type: 'result',
    contender: config.contender,
    label: contender.label,
    pool: contender.pool,
    concurrency: config.concurrency,
    seconds: windowSeconds,
    iterations: summary.count,
    reqPerSec: summary.count / windowSeconds,
    meanMs: summary.meanMs,
    p50Ms: summary.p50Ms,
    p99Ms: summary.p99Ms,
    maxMs: summary.maxMs,
    errors: state.errors,
    firstError: state.firstError,
    clientCpu: (cpu.user + cpu.system) / 1e6 / windowSeconds,
    allRequests: state.completed,
    gc,
    settled,
  });
  if (settled) await Promise.race([client.close(), sleep(SETTLE_MS)]);

  /** The GC phase's counted window: until the GC is over, at most gcMaxSeconds. */
  async function gcWindow() {
    const bound = new Promise((resolve) =>
      setTimeout(() => resolve({ finished: false }), config.gcMaxSeconds * 1000).unref(),
    );
    if (config.gc === 'separate') return Promise.race([stopped, bound]);
    const started = process.hrtime.bigint();
    const run = client.gc().then(
      (removed) => ({
        finished: true,
        removed,
        seconds: Number(process.hrtime.bigint() - started) / 1e9,
      }),
      (err) => ({ finished: true, error: String(err && err.message ? err.message : err) }),
    );
    return Promise.race([run, bound]);
  }
}

main().then(
  () => process.exit(0),
  async (err) => {
    await send({ type: 'failed', error: String(err && err.stack ? err.stack : err) });
    process.exit(1);
  },
);
