#!/usr/bin/env node
'use strict';
// `npm run chaos [-- --seconds N] [-- --json]`: a bounded chaos run against three throwaway
// PostgreSQL servers (loopback only, torn down at the end and on Ctrl-C).
//
// 64 virtual users, each with its own 4 sessions, read and write in a loop (and now and then
// destroy a session) through one SessionPgsql (the built package, `require('..')`) over the three
// servers, while each server in turn is crashed (pg_ctl stop -m immediate) and started again.
// Every read is checked against the last write that was acknowledged for that session:
//
//   ok           the read returned the last acknowledged data (or the data of a write whose
//                outcome is unknown because it failed);
//   unavailable  the read returned an empty (new) session while the session's home server was
//                down or had been crashed since the last acknowledged write: the documented
//                outage behaviour (sessions on a dead server are not mirrored elsewhere);
//   lost         anything else: an acknowledged write is no longer what a read returns.
//
// At the end every session is read back once more with all servers up. Printed: operations
// attempted, operations failed (by error code), unavailable reads, lost writes, sessions whose
// final data did not read back identical to their last acknowledged write, and the longest gap
// during which a server that was 'up' received no operations (status().servers[i].operations
// sampled every 100 ms). `--json` prints one JSON document on stdout (progress goes to stderr).
//
// Exit status: 0 when no data was lost, 1 when some was, 2 when the run itself failed.

const path = require('node:path');
const { monitorEventLoopDelay, performance } = require('node:perf_hooks');
const { randomBytes } = require('node:crypto');
const { startClusters } = require('./pg-cluster.js');

const USERS = 64;
const SESSIONS_PER_USER = 4;
const DESTROY_EVERY = 50; // about one operation in 50 is a destroy
const DOWN_SECONDS = 4;
const SAMPLE_MS = 100;
const MAX_EXAMPLES = 10;

function usage(message) {
  if (message) process.stderr.write(`chaos: ${message}\n`);
  process.stderr.write('usage: node scripts/chaos.js [--seconds N] [--json]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const args = { seconds: 30, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') args.json = true;
    else if (a === '--seconds' || a.startsWith('--seconds=')) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      const n = Number(v);
      if (!Number.isFinite(n) || n < 10 || n > 600) usage('--seconds takes 10 to 600');
      args.seconds = n;
    } else if (a === '--help' || a === '-h') usage();
    else usage(`unknown argument ${a}`);
  }
  return args;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const log = (line) => process.stderr.write(`chaos: ${line}\n`);
  let t0 = performance.now(); // the run's clock; restarted once the handler is open
  const elapsed = () => (performance.now() - t0) / 1000;
  const runMs = args.seconds * 1000;

  let SessionPgsql;
  try {
    ({ SessionPgsql } = require(path.join(__dirname, '..')));
  } catch (err) {
    process.stderr.write(
      `chaos: cannot load the package (run \`npm run build\`): ${err.message}\n`,
    );
    return 2;
  }

  log('starting 3 throwaway PostgreSQL servers');
  const set = await startClusters(3); // also torn down on Ctrl-C and on exit
  // A hard bound on the whole run, whatever happens below.
  const watchdog = setTimeout(() => {
    process.stderr.write('chaos: run exceeded its time bound; tearing down\n');
    set.stop().finally(() => process.exit(2));
  }, runMs + 120_000);
  watchdog.unref();

  let handler = null;
  try {
    const servers = set.clusters;
    handler = new SessionPgsql({
      db: servers.map((c) => c.conninfo).join(';'),
      table: 'chaos_session',
      connectTimeout: 1,
      statementTimeout: 2,
      retryMinDelay: 0.05,
      retryMaxDelay: 0.5,
      maxLifetime: 3600,
      gcInterval: 0,
      vacuumInterval: 0,
    });
    const h = handler;
    await h.open();
    t0 = performance.now();

    // --- the outage schedule: each server down DOWN_SECONDS in turn, spaced over the run,
    // with the last few seconds all up.
    const slot = (runMs - 5_000) / servers.length;
    const down = Math.min(DOWN_SECONDS * 1000, slot * 0.6);
    const schedule = servers.map((_, i) => ({
      server: i,
      killAt: 1_500 + i * slot,
      restartAt: 1_500 + i * slot + down,
      killed: null, // seconds into the run, as it happened
      backAt: null, // pg_ctl start returned
      upAt: null, // the handler reports it 'up' again
    }));
    const killsOf = servers.map(() => []); // per server: ms of each kill, for the read checks
    const isDown = servers.map(() => false);

    // --- the sessions
    const sessions = [];
    for (let u = 0; u < USERS; u++) {
      for (let k = 0; k < SESSIONS_PER_USER; k++) {
        const id = randomBytes(24).toString('base64url');
        sessions.push({
          id,
          user: u,
          home: h.serversFor(id)[0],
          seq: 0,
          acked: '', // data of the last acknowledged write (destroy: '')
          ackIssuedAt: 0, // ms when that write was issued
          pending: [], // data of failed writes since then (their outcome is unknown)
        });
      }
    }

    const stats = {
      attempted: { read: 0, write: 0, destroy: 0 },
      failed: {}, // code -> count
      failedByOp: { read: 0, write: 0, destroy: 0 },
      unavailable: 0,
      lost: 0,
      lostExamples: [],
    };
    const fail = (op, err) => {
      const code = (err && err.code) || (err && err.name) || 'unknown';
      stats.failed[code] = (stats.failed[code] || 0) + 1;
      stats.failedByOp[op] += 1;
    };
    const checkRead = (s, data, at) => {
      if (data === s.acked || s.pending.includes(data)) return 'ok';
      const homeKilled = isDown[s.home] || killsOf[s.home].some((k) => k >= s.ackIssuedAt);
      if (data === '' && homeKilled) {
        stats.unavailable += 1;
        return 'unavailable';
      }
      stats.lost += 1;
      if (stats.lostExamples.length < MAX_EXAMPLES) {
        stats.lostExamples.push({
          session: sessions.indexOf(s),
          home: s.home,
          atSeconds: +(at / 1000).toFixed(2),
          expected: s.acked,
          read: data,
        });
      }
      return 'lost';
    };

    let running = true;
    const user = async (u) => {
      const mine = sessions.filter((s) => s.user === u);
      let n = 0;
      while (running) {
        const s = mine[n++ % mine.length];
        const op = n % DESTROY_EVERY === 0 ? 'destroy' : 'write';
        if (op === 'destroy') {
          stats.attempted.destroy += 1;
          const issued = performance.now() - t0;
          try {
            await h.destroy(s.id);
            s.acked = '';
            s.ackIssuedAt = issued;
            s.pending = [];
          } catch (err) {
            fail('destroy', err);
            s.pending.push('');
            await sleep(10);
          }
          continue;
        }
        stats.attempted.read += 1;
        let session;
        try {
          session = await h.read(s.id, { address: `10.9.${u}.1` });
        } catch (err) {
          fail('read', err);
          await sleep(10);
          continue;
        }
        const verdict = checkRead(s, session.data, performance.now() - t0);
        if (verdict !== 'ok' || s.pending.length > 0) {
          // Resynchronise on what the store holds now.
          s.acked = session.data;
          s.pending = [];
        }
        stats.attempted.write += 1;
        const data = `u${u} s${s.id.slice(0, 6)} #${++s.seq} ${'x'.repeat(s.seq % 64)}`;
        const issued = performance.now() - t0;
        try {
          await h.write(session, data);
          s.acked = data;
          s.ackIssuedAt = issued;
          s.pending = [];
        } catch (err) {
          fail('write', err);
          s.pending.push(data);
          await sleep(10);
        }
      }
    };

    // --- the sampler: the longest time a server in state 'up' saw its operation count stand still
    // Per server, so a stall of this process (all live servers idle at once) can be told from
    // a server left unused; the event-loop delay is measured alongside.
    const gap = { ms: 0, server: null, atSeconds: null };
    const gapPerServer = servers.map(() => 0);
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    const lastOps = servers.map(() => -1);
    const lastMove = servers.map(() => performance.now());
    const sampler = setInterval(() => {
      const now = performance.now();
      h.status().servers.forEach((st, i) => {
        if (st.state !== 'up' || st.operations !== lastOps[i]) {
          lastOps[i] = st.operations;
          lastMove[i] = now;
          return;
        }
        gapPerServer[i] = Math.max(gapPerServer[i], now - lastMove[i]);
        if (now - lastMove[i] > gap.ms) {
          gap.ms = now - lastMove[i];
          gap.server = i;
          gap.atSeconds = +((lastMove[i] - t0) / 1000).toFixed(2);
        }
      });
    }, SAMPLE_MS);

    // --- the chaos itself
    const chaos = async () => {
      for (const step of schedule) {
        const c = servers[step.server];
        await sleep(step.killAt - (performance.now() - t0));
        isDown[step.server] = true;
        killsOf[step.server].push(performance.now() - t0);
        step.killed = +elapsed().toFixed(2);
        log(
          `${step.killed.toFixed(1)} s: crashing server ${step.server} (pg_ctl stop -m immediate)`,
        );
        await c.stop({ mode: 'immediate' });
        await sleep(step.restartAt - (performance.now() - t0));
        await c.start();
        step.backAt = +elapsed().toFixed(2);
        log(`${step.backAt.toFixed(1)} s: server ${step.server} accepts connections again`);
        const deadline = performance.now() + 10_000;
        while (h.status().servers[step.server].state !== 'up' && performance.now() < deadline) {
          await sleep(20);
        }
        step.upAt = h.status().servers[step.server].state === 'up' ? +elapsed().toFixed(2) : null;
        isDown[step.server] = false;
        log(
          step.upAt === null
            ? `server ${step.server} is not up 10 s after its restart`
            : `${step.upAt.toFixed(1)} s: server ${step.server} is up for the handler`,
        );
      }
    };

    log(
      `load: ${USERS} virtual users x ${SESSIONS_PER_USER} sessions for ${args.seconds} s; ` +
        `each server down ${(down / 1000).toFixed(1)} s in turn`,
    );
    const users = Promise.all(Array.from({ length: USERS }, (_, u) => user(u)));
    const chaosDone = chaos();
    await sleep(runMs - (performance.now() - t0));
    await chaosDone; // never stop the load while a server is still down
    clearInterval(sampler); // before the load winds down, which would read as a gap
    loopDelay.disable();
    running = false;
    await users;

    // --- the final read-back, every server up
    for (const c of servers) if (!c.isRunning()) await c.start();
    const upDeadline = performance.now() + 10_000;
    while (h.status().servers.some((st) => st.state !== 'up') && performance.now() < upDeadline) {
      await sleep(50);
    }
    const mismatched = [];
    for (const s of sessions) {
      let data = null;
      let lastError = null;
      for (let attempt = 0; attempt < 20 && data === null; attempt++) {
        try {
          data = (await h.read(s.id)).data;
        } catch (err) {
          lastError = err;
          await sleep(250);
        }
      }
      const ok = data !== null && (data === s.acked || s.pending.includes(data));
      if (!ok) {
        mismatched.push({
          session: sessions.indexOf(s),
          home: s.home,
          expected: s.acked,
          read: data,
          error: data === null && lastError ? String(lastError.code || lastError) : undefined,
        });
      }
    }
    const final = h.status();

    const attempted = stats.attempted.read + stats.attempted.write + stats.attempted.destroy;
    const failedTotal = Object.values(stats.failed).reduce((a, b) => a + b, 0);
    const report = {
      seconds: args.seconds,
      servers: servers.length,
      virtualUsers: USERS,
      sessions: sessions.length,
      schedule: schedule.map(({ server, killed, backAt, upAt }) => ({
        server,
        crashedAtSeconds: killed,
        restartedAtSeconds: backAt,
        upAgainAtSeconds: upAt,
      })),
      operationsAttempted: attempted,
      operationsByKind: stats.attempted,
      operationsFailed: failedTotal,
      failuresByCode: stats.failed,
      failuresByKind: stats.failedByOp,
      unavailableReads: stats.unavailable,
      lostWrites: stats.lost,
      lostWriteExamples: stats.lostExamples,
      finalMismatches: mismatched.length,
      finalMismatchExamples: mismatched.slice(0, MAX_EXAMPLES),
      longestLiveServerGapSeconds: +(gap.ms / 1000).toFixed(2),
      longestLiveServerGap: gap,
      longestGapPerServerSeconds: gapPerServer.map((ms) => +(ms / 1000).toFixed(2)),
      maxEventLoopDelaySeconds: +(loopDelay.max / 1e9).toFixed(2),
      operationsPerServer: final.servers.map((st) => st.operations),
      failuresPerServer: final.servers.map((st) => st.failures),
      dataLost: mismatched.length > 0 || stats.lost > 0,
    };

    if (args.json) {
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    } else {
      const out = [];
      out.push(
        `session-pgsql chaos: ${report.servers} servers, ${USERS} virtual users, ` +
          `${report.sessions} sessions, ${args.seconds} s`,
      );
      for (const s of report.schedule) {
        out.push(
          `  server ${s.server}: crashed at ${s.crashedAtSeconds} s, restarted at ` +
            `${s.restartedAtSeconds} s, up for the handler at ${s.upAgainAtSeconds ?? 'never'} s`,
        );
      }
      out.push(
        `operations attempted: ${attempted} (reads ${stats.attempted.read}, writes ` +
          `${stats.attempted.write}, destroys ${stats.attempted.destroy})`,
      );
      out.push(`operations failed: ${failedTotal}`);
      for (const [code, n] of Object.entries(stats.failed).sort((a, b) => b[1] - a[1])) {
        out.push(`  ${code}: ${n}`);
      }
      out.push(
        `reads of a session unavailable while its home was down (documented): ${stats.unavailable}`,
      );
      out.push(`acknowledged writes lost (a later read returned other data): ${stats.lost}`);
      for (const e of stats.lostExamples) {
        out.push(
          `  session ${e.session} (home ${e.home}) at ${e.atSeconds} s: read ` +
            `${JSON.stringify(e.read.slice(0, 24))}, expected ${JSON.stringify(e.expected.slice(0, 24))}`,
        );
      }
      out.push(
        `sessions whose final data did not read back identical: ${mismatched.length} of ${sessions.length}`,
      );
      for (const m of mismatched.slice(0, MAX_EXAMPLES)) {
        out.push(
          `  session ${m.session} (home ${m.home}): read ${JSON.stringify(m.read)}` +
            `${m.error ? ` (${m.error})` : ''}, expected ${JSON.stringify(m.expected.slice(0, 24))}`,
        );
      }
      out.push(
        `longest gap a live server received no operations: ${report.longestLiveServerGapSeconds} s` +
          (gap.server === null ? '' : ` (server ${gap.server}, from ${gap.atSeconds} s)`) +
          `; per server ${report.longestGapPerServerSeconds.join(', ')} s; ` +
          `longest event-loop stall of this process ${report.maxEventLoopDelaySeconds} s`,
      );
      out.push(`operations per server: ${report.operationsPerServer.join(', ')}`);
      out.push(report.dataLost ? 'RESULT: data was lost' : 'RESULT: no data lost');
      process.stdout.write(`${out.join('\n')}\n`);
    }
    return report.dataLost ? 1 : 0;
  } finally {
    clearTimeout(watchdog);
    if (handler) await handler.close().catch(() => {});
    await set.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`chaos: ${err && err.stack ? err.stack : err}\n`);
    process.exit(2);
  },
);
