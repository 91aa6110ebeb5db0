#!/usr/bin/env node
'use strict';
// `npm run chaos [-- --seconds N] [-- --scenario NAME] [-- --json]`: bounded chaos runs against
// throwaway PostgreSQL servers (loopback only, torn down at the end and on Ctrl-C). Each scenario
// runs for --seconds (default 30) on servers of its own; without --scenario all of them run:
//
//   crash          three servers, each crashed in turn (pg_ctl stop -m immediate) and restarted;
//   hang           three servers, one hung (SIGSTOP of its postmaster and every backend) for
//                  HANG_SECONDS while writes go on elsewhere, then resumed (SIGCONT): it runs
//                  late what it had queued (one server in a short run, each in turn in a long one);
//   promote-crash  one multi-host entry that is a synchronous replication pair (primary,
//                  standby; target_session_attrs=read-write): the primary is crashed, and the
//                  standby promoted PROMOTE_AFTER_SECONDS later;
//   promote-hang   the same, with the primary hung instead; it is never resumed but killed
//                  (fenced) once the standby has taken over, as a failover manager must do;
//   pgbouncer      three servers, each behind its own PgBouncer in transaction pooling
//                  (pooler: 'transaction'), each server crashed in turn behind its PgBouncer.
//                  Skipped, saying so, when pgbouncer is not installed.
//
// 64 virtual users, each with its own 4 sessions, read and write in a loop (and now and then
// destroy a session) through one SessionPgsql (the built package, `require('..')`).
// Every read is checked against the last write that was acknowledged for that session:
//
//   ok           the read returned the last acknowledged data (or the data of a write whose
//                outcome is unknown because it failed);
//   unavailable  the read returned an empty (new) session while the session's home server was
//                out: the documented outage behaviour (sessions on a dead server are not mirrored
//                elsewhere). For a crash: down, or crashed since the last acknowledged write; for
//                a hang: the read overlapped the hang (until the handler had the server up
//                again). A replication pair has no other server to answer: never unavailable;
//   stale        an older copy while the server holding the newest one was out too (a double
//                failure: documented, copies on a server that is down are neither read nor
//                deleted): the last acknowledged write went to a server standing in for home
//                and another server was out during the read; or the session was destroyed while
//                a server holding such a copy was out, and the copy came back with it;
//   lost         anything else: an acknowledged write is no longer what a read returns.
//
// Outages of different servers are spaced (SETTLE_MS) so that a short run does not turn into
// the double failure above when a server goes down right as the previous one comes back.
//
// At the end, with every server back (or the standby promoted), every session is read back once
// through the same handler and once through a fresh one. Printed per scenario: operations
// attempted, operations failed (by error code), unavailable reads, lost writes (during the run,
// and sessions whose final data did not read back as their last acknowledged write, per
// handler), seconds from each restart / resume / promotion until that server carries traffic
// again (the handler has it 'up' and its operation count moves), and the longest gap during which
// a server that was 'up' received no operations (status().servers[i].operations sampled every
// 100 ms). `--json` prints one JSON document on stdout (progress goes to stderr).
//
// Exit status: 0 when no data was lost, 1 when some was, 2 when a run itself failed.

const fs = require('node:fs');
const path = require('node:path');
const { monitorEventLoopDelay, performance } = require('node:perf_hooks');
const { randomBytes } = require('node:crypto');
const { startClusters, postmasterPid } = require('./pg-cluster.js');
const { startReplicaPair } = require('./pg-replica.js');
const { findPgbouncer, startPgbouncer } = require('./pgbouncer.js');

const USERS = 64;
const SESSIONS_PER_USER = 4;
const DESTROY_EVERY = 50; // about one operation in 50 is a destroy
const DOWN_SECONDS = 4;
// A hang must outlast statementTimeout (2 s) to be seen, in short runs too.
const HANG_SECONDS = 4;
// The primary is out this long before the standby is promoted, as when a failover manager
// waits to be sure: long enough for the handler to meet the broken primary, in short runs too.
const PROMOTE_AFTER_SECONDS = 3;
const FIRST_EVENT_MS = 1_500;
// After a server carries traffic again, the next one goes down no sooner than this: until each
// session homed on the recovered server has been written again, its newest copy is on the
// server that stood in for it, and an outage of that one too is a double failure (a read then
// returns the older row at home: counted as `stale`, below). 30 s runs space outages by more
// than this anyway; the spacing keeps 10 s runs measuring the same thing.
const SETTLE_MS = 2_000;
const CARRY_WAIT_MS = 20_000; // bound on waiting for a recovered server to carry traffic
const SAMPLE_MS = 100;
const MAX_EXAMPLES = 10;
const SCENARIO_NAMES = ['crash', 'hang', 'promote-crash', 'promote-hang', 'pgbouncer'];
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function usage(message) {
  if (message) process.stderr.write(`chaos: ${message}\n`);
  process.stderr.write(
    `usage: node scripts/chaos.js [--seconds N] [--scenario ${SCENARIO_NAMES.join('|')}] [--json]\n`,
  );
  process.exit(2);
}

function parseArgs(argv) {
  const args = { seconds: 30, json: false, scenarios: [] };
  const value = (a, i) => (a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[i]);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') args.json = true;
    else if (a === '--seconds' || a.startsWith('--seconds=')) {
      const n = Number(value(a, a.includes('=') ? i : ++i));
      if (!Number.isFinite(n) || n < 10 || n > 600) usage('--seconds takes 10 to 600');
      args.seconds = n;
    } else if (a === '--scenario' || a.startsWith('--scenario=')) {
      const name = value(a, a.includes('=') ? i : ++i);
      if (!SCENARIO_NAMES.includes(name)) usage(`unknown scenario ${name}`);
      if (!args.scenarios.includes(name)) args.scenarios.push(name);
    } else if (a === '--help' || a === '-h') usage();
    else usage(`unknown argument ${a}`);
  }
  if (args.scenarios.length === 0) args.scenarios = SCENARIO_NAMES.slice();
  return args;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

// ---------------------------------------------------------------------------------------------
// hanging a server: SIGSTOP its postmaster and every descendant

/** Every frozen process tree, so that Ctrl-C and exceptions never leave one stopped. */
const frozenTrees = new Set();

/** The direct children of `pid` (from /proc). */
function childrenOf(pid) {
  const out = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      // The command name is in parentheses and may hold spaces: the ppid follows the last ')'.
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) {
        out.push(Number(entry));
      }
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function signal(pid, name) {
  try {
    process.kill(pid, name);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops the server in `dataDir` with SIGSTOP, postmaster first (so it forks nothing new), then
 * its descendants, listed again until none is left running (bounded). resume() sends SIGCONT;
 * kill() sends SIGKILL (a fenced server: it never runs again). Both are idempotent.
 */
function freeze(dataDir) {
  const postmaster = postmasterPid(dataDir);
  if (postmaster === null) throw new Error(`chaos: no postmaster running in ${dataDir}`);
  const stopped = new Set();
  const tree = {
    resume() {
      for (const pid of stopped) signal(pid, 'SIGCONT');
      stopped.clear();
      frozenTrees.delete(tree);
    },
    kill() {
      for (const pid of stopped) signal(pid, 'SIGKILL');
      stopped.clear();
      frozenTrees.delete(tree);
    },
  };
  frozenTrees.add(tree);
  if (signal(postmaster, 'SIGSTOP')) stopped.add(postmaster);
  for (let round = 0; round < 5; round++) {
    const all = [postmaster];
    for (let i = 0; i < all.length && i < 1_000; i++) all.push(...childrenOf(all[i]));
    const fresh = all.filter((pid) => !stopped.has(pid));
    if (fresh.length === 0) break;
    for (const pid of fresh) if (signal(pid, 'SIGSTOP')) stopped.add(pid);
  }
  return tree;
}

function resumeAllFrozen() {
  for (const tree of [...frozenTrees]) tree.resume();
}

// ---------------------------------------------------------------------------------------------
// the scenarios: each sets up its topology and runs its schedule of outages

/** Handler options shared by every scenario: quick timeouts, no housekeeping. */
const BASE_OPTIONS = {
  table: 'chaos_session',
  connectTimeout: 1,
  statementTimeout: 2,
  retryMinDelay: 0.05,
  retryMaxDelay: 0.5,
  maxLifetime: 3600,
  gcInterval: 0,
  vacuumInterval: 0,
};

/** Each server crashed in turn, spaced over the run, with the last few seconds all up. */
async function crashEachInTurn(ctx, clusters, what) {
  const slot = (ctx.runMs - 5_000) / clusters.length;
  const down = Math.min(DOWN_SECONDS * 1000, slot * 0.6);
  ctx.log(`each server down ${(down / 1000).toFixed(1)} s in turn`);
  let settled = 0;
  for (let i = 0; i < clusters.length; i++) {
    const ev = ctx.event(i, 'crashed', 'restarted');
    await sleep(Math.max(FIRST_EVENT_MS + i * slot, settled) - ctx.now());
    const downAt = ctx.now();
    ctx.markDown(i, { crash: true });
    ev.at = ctx.seconds();
    ctx.log(`${ev.at.toFixed(1)} s: crashing ${what} ${i} (pg_ctl stop -m immediate)`);
    await clusters[i].stop({ mode: 'immediate' });
    await sleep(downAt + down - ctx.now());
    await clusters[i].start();
    ev.backAt = ctx.seconds();
    ctx.log(`${ev.backAt.toFixed(1)} s: ${what} ${i} accepts connections again`);
    await ctx.waitCarries(ev);
    settled = ctx.now() + SETTLE_MS;
  }
}

const SCENARIOS = {
  crash: {
    title: 'three servers, each crashed (pg_ctl stop -m immediate) and restarted in turn',
    unavailable: 'crash',
    async setup() {
      const set = await startClusters(3); // also torn down on Ctrl-C and on exit
      return {
        db: set.clusters.map((c) => c.conninfo).join(';'),
        options: {},
        servers: 3,
        chaos: (ctx) => crashEachInTurn(ctx, set.clusters, 'server'),
        stop: () => set.stop(),
        restoreAll: async () => {
          for (const c of set.clusters) if (!c.isRunning()) await c.start();
        },
      };
    },
  },

  hang: {
    title:
      `three servers, one at a time hung (SIGSTOP of every process) for ${HANG_SECONDS} s ` +
      'while writes go on, then resumed (SIGCONT)',
    unavailable: 'window',
    async setup() {
      const set = await startClusters(3);
      const trees = [];
      return {
        db: set.clusters.map((c) => c.conninfo).join(';'),
        options: {},
        servers: 3,
        async chaos(ctx) {
          // As many servers in turn as fit with HANG_SECONDS each and time to recover: one in
          // a 10 s run, three in a 30 s one.
          const period = (HANG_SECONDS + 4) * 1000;
          const n = Math.max(1, Math.min(3, Math.floor((ctx.runMs - 5_000) / period)));
          for (let i = 0; i < n; i++) {
            const ev = ctx.event(i, 'hung', 'resumed');
            await sleep(FIRST_EVENT_MS + i * period - ctx.now());
            ctx.markDown(i);
            const tree = freeze(set.clusters[i].dataDir);
            trees.push(tree);
            ev.at = ctx.seconds();
            ctx.log(`${ev.at.toFixed(1)} s: hanging server ${i} (SIGSTOP)`);
            await sleep(FIRST_EVENT_MS + i * period + HANG_SECONDS * 1000 - ctx.now());
            tree.resume();
            ev.backAt = ctx.seconds();
            ctx.log(`${ev.backAt.toFixed(1)} s: server ${i} resumed (SIGCONT)`);
            await ctx.waitCarries(ev);
          }
        },
        stop: async () => {
          for (const t of trees) t.resume();
          await set.stop();
        },
        restoreAll: async () => {
          for (const t of trees) t.resume();
        },
      };
    },
  },

  'promote-crash': promoteScenario('crash'),
  'promote-hang': promoteScenario('hang'),

  pgbouncer: {
    title:
      "three servers, each behind its own PgBouncer (transaction pooling, pooler: 'transaction'), " +
      'each server crashed and restarted in turn behind its PgBouncer',
    unavailable: 'crash',
    missing: () =>
      findPgbouncer() ? null : 'pgbouncer is not installed (apt-get install pgbouncer)',
    async setup() {
      const set = await startClusters(3);
      const bouncers = [];
      try {
        for (const c of set.clusters) {
          bouncers.push(
            await startPgbouncer({
              serverPort: c.port,
              poolMode: 'transaction',
              poolSize: 4,
              // Retry a server that refused a login after 1 s (not 15), and give up on a client
              // waiting for a server after 5 s (not 120): a crashed server is seen quickly.
              extra: { server_login_retry: 1, query_wait_timeout: 5 },
            }),
          );
        }
      } catch (err) {
        for (const b of bouncers) await b.stop();
        await set.stop();
        throw err;
      }
      return {
        db: bouncers.map((b) => `${b.conninfo} connect_timeout=1`).join(';'),
        options: { pooler: 'transaction' },
        servers: 3,
        chaos: (ctx) => crashEachInTurn(ctx, set.clusters, 'server (behind its PgBouncer)'),
        stop: async () => {
          for (const b of bouncers) await b.stop();
          await set.stop();
        },
        restoreAll: async () => {
          for (const c of set.clusters) if (!c.isRunning()) await c.start();
        },
      };
    },
  },
};

function promoteScenario(how) {
  return {
    title:
      'one entry that is a synchronous replication pair (target_session_attrs=read-write); ' +
      (how === 'crash'
        ? 'the primary crashed (pg_ctl stop -m immediate)'
        : 'the primary hung (SIGSTOP of every process), later killed (fenced)') +
      `, the standby promoted ${PROMOTE_AFTER_SECONDS} s later`,
    unavailable: 'never',
    async setup() {
      const pair = await startReplicaPair({ synchronous: true });
      let tree = null;
      return {
        db: `${pair.db} connect_timeout=1`,
        options: {},
        servers: 1,
        async chaos(ctx) {
          const ev = ctx.event(0, how === 'crash' ? 'primary crashed' : 'primary hung', 'promoted');
          await sleep(FIRST_EVENT_MS - ctx.now());
          ctx.markDown(0);
          ev.at = ctx.seconds();
          if (how === 'crash') {
            ctx.log(`${ev.at.toFixed(1)} s: crashing the primary (pg_ctl stop -m immediate)`);
            await pair.kill();
          } else {
            ctx.log(`${ev.at.toFixed(1)} s: hanging the primary (SIGSTOP)`);
            tree = freeze(pair.primary.dataDir);
          }
          await sleep(FIRST_EVENT_MS + PROMOTE_AFTER_SECONDS * 1000 - ctx.now());
          ev.promoteStartedAt = ctx.seconds();
          ctx.log(`${ev.promoteStartedAt.toFixed(1)} s: promoting the standby (pg_ctl promote)`);
          await pair.promote();
          ev.backAt = ctx.seconds();
          ctx.log(`${ev.backAt.toFixed(1)} s: the standby is promoted`);
          await ctx.waitCarries(ev, (st) => st.port === pair.standby.port);
          // A resumed old primary would be a second read-write server behind the same entry
          // (split brain): a failover manager fences it, and so do we.
          if (tree) {
            tree.kill();
            ctx.log(`${ctx.seconds().toFixed(1)} s: the old primary is fenced (SIGKILL)`);
          }
        },
        stop: async () => {
          if (tree) tree.kill();
          await pair.stop();
        },
        restoreAll: async () => {},
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// one scenario's run

async function runScenario(name, args, SessionPgsql, log) {
  const scenario = SCENARIOS[name];
  const runMs = args.seconds * 1000;
  let t0 = performance.now(); // the run's clock; restarted once the handler is open
  const now = () => performance.now() - t0;
  const seconds = () => +(now() / 1000).toFixed(2);

  log(`starting the servers (${scenario.title})`);
  const topo = await scenario.setup();
  // A hard bound on the whole run, whatever happens below.
  const watchdog = setTimeout(() => {
    process.stderr.write(`chaos: scenario ${name} exceeded its time bound; tearing down\n`);
    resumeAllFrozen();
    topo.stop().finally(() => process.exit(2));
  }, runMs + 180_000);
  watchdog.unref();

  let handler = null;
  let fresh = null;
  try {
    const options = { ...BASE_OPTIONS, ...topo.options, db: topo.db };
    handler = new SessionPgsql(options);
    const h = handler;
    h.on('warning', () => {});
    await h.open();
    t0 = performance.now();

    const killsOf = Array.from({ length: topo.servers }, () => []); // ms of each crash
    const windows = Array.from({ length: topo.servers }, () => []); // [from, to] ms of each outage
    const isDown = Array.from({ length: topo.servers }, () => false);
    const events = [];
    const ctx = {
      runMs,
      now,
      seconds,
      log,
      event(server, what, back) {
        const ev = { server, what, back, at: null, backAt: null, upAt: null, carriesAt: null };
        events.push(ev);
        return ev;
      },
      markDown(i, { crash = false } = {}) {
        isDown[i] = true;
        if (crash) killsOf[i].push(now());
        windows[i].push([now(), Infinity]);
      },
      /**
       * Waits (bounded) until server ev.server is 'up' for the handler (and `accept`s its status)
       * and then takes operations; marks it no longer down.
       */
      async waitCarries(ev, accept = () => true) {
        const i = ev.server;
        const deadline = performance.now() + CARRY_WAIT_MS;
        let base = null;
        while (performance.now() < deadline) {
          const st = h.status().servers[i];
          if (st.state === 'up' && accept(st)) {
            if (ev.upAt === null) ev.upAt = seconds();
            if (base === null) base = st.operations;
            else if (st.operations > base) {
              ev.carriesAt = seconds();
              break;
            }
          }
          await sleep(20);
        }
        isDown[i] = false;
        const w = windows[i][windows[i].length - 1];
        if (w) w[1] = now();
        log(
          ev.carriesAt === null
            ? `server ${i} carries no traffic ${CARRY_WAIT_MS / 1000} s after it was ${ev.back}`
            : `${ev.carriesAt.toFixed(1)} s: server ${i} carries traffic again`,
        );
      },
    };

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
          offHome: false, // that write was issued or acknowledged while home was out
          hidden: [], // newer acknowledged data a stale read did not see: may come back
          stranded: [], // data written away from home: copies may outlive a destroy (below)
        });
      }
    }

    const stats = {
      attempted: { read: 0, write: 0, destroy: 0 },
      failed: {}, // code -> count
      failedByOp: { read: 0, write: 0, destroy: 0 },
      unavailable: 0,
      stale: 0,
      staleExamples: [],
      lost: 0,
      lostExamples: [],
    };
    const fail = (op, err) => {
      const code = (err && err.code) || (err && err.name) || 'unknown';
      stats.failed[code] = (stats.failed[code] || 0) + 1;
      stats.failedByOp[op] += 1;
    };
    const outage = (s, from, to) => {
      if (scenario.unavailable === 'crash') {
        return isDown[s.home] || killsOf[s.home].some((k) => k >= s.ackIssuedAt);
      }
      if (scenario.unavailable === 'window') {
        return windows[s.home].some(([a, b]) => a <= to && from <= b);
      }
      return false;
    };
    const overlaps = (i, from, to) => windows[i].some(([a, b]) => a <= to && from <= b);
    const example = (s, data, at) => ({
      session: sessions.indexOf(s),
      home: s.home,
      atSeconds: +(at / 1000).toFixed(2),
      expected: s.acked,
      read: data,
    });
    const checkRead = (s, data, from, to) => {
      if (data === s.acked || s.pending.includes(data)) return 'ok';
      const otherOut = (from2) => windows.some((_, i) => i !== s.home && overlaps(i, from2, to));
      if (s.hidden.includes(data)) return 'ok'; // the newest copy is back with its server
      if (s.acked === '' && s.stranded.includes(data) && otherOut(s.ackIssuedAt)) {
        // The session was destroyed (the last acknowledged operation) while a server holding a
        // copy written away from home was out: destroy() deletes on live servers only, and
        // with no row left at home the look-aside returns that copy.
        stats.stale += 1;
        if (stats.staleExamples.length < MAX_EXAMPLES)
          stats.staleExamples.push(example(s, data, to));
        return 'stale';
      }
      if (data === '' && outage(s, from, to)) {
        stats.unavailable += 1;
        return 'unavailable';
      }
      // The last acknowledged write went to a server standing in for home, and a server other
      // than home was out during this read: the newest copy may be on that one, and copies on
      // a server that is down are not read (docs/behaviour.md, "what is not guaranteed").
      if (s.offHome && otherOut(from)) {
        stats.stale += 1;
        if (stats.staleExamples.length < MAX_EXAMPLES)
          stats.staleExamples.push(example(s, data, to));
        return 'stale';
      }
      stats.lost += 1;
      if (stats.lostExamples.length < MAX_EXAMPLES) stats.lostExamples.push(example(s, data, to));
      return 'lost';
    };

    const acknowledged = (s, data, issued) => {
      s.acked = data;
      s.ackIssuedAt = issued;
      s.offHome = isDown[s.home] || overlaps(s.home, issued, now());
      s.pending = [];
      s.hidden = [];
      // Copies elsewhere are deleted by a write or destroy only on the servers that are live.
      if (!windows.some((_, i) => i !== s.home && overlaps(i, issued, now()))) s.stranded = [];
      if (s.offHome && data !== '' && s.stranded.length < 16) s.stranded.push(data);
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
          const issued = now();
          try {
            await h.destroy(s.id);
            acknowledged(s, '', issued);
          } catch (err) {
            fail('destroy', err);
            s.pending.push('');
            await sleep(10);
          }
          continue;
        }
        stats.attempted.read += 1;
        let session;
        const readFrom = now();
        try {
          session = await h.read(s.id, { address: `10.9.${u}.1` });
        } catch (err) {
          fail('read', err);
          await sleep(10);
          continue;
        }
        const verdict = checkRead(s, session.data, readFrom, now());
        if (verdict === 'stale') s.hidden.push(...[s.acked, ...s.pending].filter(Boolean));
        if (verdict !== 'ok' || s.pending.length > 0) {
          // Resynchronise on what the store holds now.
          s.acked = session.data;
          s.pending = [];
        }
        stats.attempted.write += 1;
        const data = `u${u} s${s.id.slice(0, 6)} #${++s.seq} ${'x'.repeat(s.seq % 64)}`;
        const issued = now();
        try {
          await h.write(session, data);
          acknowledged(s, data, issued);
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
    const gapPerServer = killsOf.map(() => 0);
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    const lastOps = killsOf.map(() => -1);
    const lastMove = killsOf.map(() => performance.now());
    const sampler = setInterval(() => {
      const at = performance.now();
      h.status().servers.forEach((st, i) => {
        if (st.state !== 'up' || st.operations !== lastOps[i]) {
          lastOps[i] = st.operations;
          lastMove[i] = at;
          return;
        }
        gapPerServer[i] = Math.max(gapPerServer[i], at - lastMove[i]);
        if (at - lastMove[i] > gap.ms) {
          gap.ms = at - lastMove[i];
          gap.server = i;
          gap.atSeconds = +((lastMove[i] - t0) / 1000).toFixed(2);
        }
      });
    }, SAMPLE_MS);

    log(`load: ${USERS} virtual users x ${SESSIONS_PER_USER} sessions for ${args.seconds} s`);
    const users = Promise.all(Array.from({ length: USERS }, (_, u) => user(u)));
    let chaosError = null;
    const chaosDone = topo.chaos(ctx).catch((err) => {
      chaosError = err;
    });
    await sleep(runMs - now());
    await chaosDone; // never stop the load while a server is still down
    clearInterval(sampler); // before the load winds down, which would read as a gap
    loopDelay.disable();
    running = false;
    await users;
    if (chaosError) throw chaosError;

    // --- the final read-back, every server back: through this handler, then a fresh one
    await topo.restoreAll();
    const upDeadline = performance.now() + 10_000;
    while (h.status().servers.some((st) => st.state !== 'up') && performance.now() < upDeadline) {
      await sleep(50);
    }
    let stale = 0;
    const readBack = async (reader) => {
      const mismatched = [];
      for (const s of sessions) {
        let data = null;
        let lastError = null;
        for (let attempt = 0; attempt < 20 && data === null; attempt++) {
          try {
            data = (await reader.read(s.id)).data;
          } catch (err) {
            lastError = err;
            await sleep(250);
          }
        }
        const ok =
          data !== null &&
          (data === s.acked || s.pending.includes(data) || s.hidden.includes(data));
        const strandedCopy =
          s.acked === '' &&
          s.stranded.includes(data) &&
          windows.some((_, i) => i !== s.home && overlaps(i, s.ackIssuedAt, Infinity));
        if (!ok && strandedCopy) {
          stale += 1; // a destroyed session's copy, back with its server (see checkRead)
        } else if (!ok) {
          mismatched.push({
            session: sessions.indexOf(s),
            home: s.home,
            expected: s.acked,
            read: data,
            error: data === null && lastError ? String(lastError.code || lastError) : undefined,
          });
        }
      }
      return mismatched;
    };
    const mismatched = await readBack(h);
    fresh = new SessionPgsql(options);
    fresh.on('warning', () => {});
    await fresh.open();
    const mismatchedFresh = await readBack(fresh);
    const final = h.status();

    const attempted = stats.attempted.read + stats.attempted.write + stats.attempted.destroy;
    const failedTotal = Object.values(stats.failed).reduce((a, b) => a + b, 0);
    const lostSessions = new Set([...mismatched, ...mismatchedFresh].map((m) => m.session));
    return {
      scenario: name,
      title: scenario.title,
      seconds: args.seconds,
      servers: topo.servers,
      virtualUsers: USERS,
      sessions: sessions.length,
      events: events.map((ev) => ({
        server: ev.server,
        what: ev.what,
        atSeconds: ev.at,
        promoteStartedAtSeconds: ev.promoteStartedAt,
        back: ev.back,
        backAtSeconds: ev.backAt,
        upAgainAtSeconds: ev.upAt,
        carriesTrafficAtSeconds: ev.carriesAt,
        secondsUntilItCarriesTraffic:
          ev.carriesAt === null || ev.backAt === null
            ? null
            : +(ev.carriesAt - ev.backAt).toFixed(2),
        secondsOutOfTraffic:
          ev.carriesAt === null || ev.at === null ? null : +(ev.carriesAt - ev.at).toFixed(2),
      })),
      operationsAttempted: attempted,
      operationsByKind: stats.attempted,
      operationsFailed: failedTotal,
      failuresByCode: stats.failed,
      failuresByKind: stats.failedByOp,
      unavailableReads: stats.unavailable,
      staleReads: stats.stale,
      staleAtTheEnd: stale,
      staleReadExamples: stats.staleExamples,
      lostWrites: stats.lost,
      lostWriteExamples: stats.lostExamples,
      finalMismatches: mismatched.length,
      finalMismatchExamples: mismatched.slice(0, MAX_EXAMPLES),
      finalMismatchesFreshHandler: mismatchedFresh.length,
      finalMismatchFreshExamples: mismatchedFresh.slice(0, MAX_EXAMPLES),
      lost: stats.lost + lostSessions.size,
      longestLiveServerGapSeconds: +(gap.ms / 1000).toFixed(2),
      longestLiveServerGap: gap,
      longestGapPerServerSeconds: gapPerServer.map((ms) => +(ms / 1000).toFixed(2)),
      maxEventLoopDelaySeconds: +(loopDelay.max / 1e9).toFixed(2),
      operationsPerServer: final.servers.map((st) => st.operations),
      failuresPerServer: final.servers.map((st) => st.failures),
      dataLost: stats.lost > 0 || lostSessions.size > 0,
    };
  } finally {
    clearTimeout(watchdog);
    if (fresh) await fresh.close().catch(() => {});
    if (handler) await handler.close().catch(() => {});
    resumeAllFrozen();
    await topo.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// output

function formatReport(r) {
  const out = [];
  const q = (s) => JSON.stringify(s === null ? null : s.slice(0, 24));
  out.push(`== ${r.scenario}: ${r.title}`);
  out.push(
    `  ${r.servers} server entr${r.servers === 1 ? 'y' : 'ies'}, ${r.virtualUsers} virtual users, ` +
      `${r.sessions} sessions, ${r.seconds} s`,
  );
  for (const e of r.events) {
    out.push(
      `  server ${e.server}: ${e.what} at ${e.atSeconds} s, ` +
        (e.promoteStartedAtSeconds === undefined
          ? ''
          : `promotion started at ${e.promoteStartedAtSeconds} s, `) +
        `${e.back} at ${e.backAtSeconds} s, up for the handler at ${e.upAgainAtSeconds ?? 'never'} s, ` +
        `carries traffic at ${e.carriesTrafficAtSeconds ?? 'never'} s`,
    );
    out.push(
      `    seconds until it carries traffic: ${e.secondsUntilItCarriesTraffic ?? 'never'} after it was ` +
        `${e.back} (${e.secondsOutOfTraffic ?? 'never'} after it was ${e.what})`,
    );
  }
  out.push(
    `  operations: ${r.operationsAttempted} (reads ${r.operationsByKind.read}, writes ` +
      `${r.operationsByKind.write}, destroys ${r.operationsByKind.destroy})`,
  );
  out.push(`  failed: ${r.operationsFailed}`);
  for (const [code, n] of Object.entries(r.failuresByCode).sort((a, b) => b[1] - a[1])) {
    out.push(`    ${code}: ${n}`);
  }
  out.push(
    `  reads of a session unavailable while its home was out (documented): ${r.unavailableReads}`,
  );
  out.push(
    `  reads of an older copy while the server holding the newest was out too (documented): ` +
      `${r.staleReads} during the run, ${r.staleAtTheEnd} in the final reads`,
  );
  for (const e of r.staleReadExamples) {
    out.push(
      `    session ${e.session} (home ${e.home}) at ${e.atSeconds} s: read ${q(e.read)}, ` +
        `last acknowledged ${q(e.expected)}`,
    );
  }
  out.push(
    `  lost: ${r.lost} (acknowledged writes a later read did not return: ${r.lostWrites}; ` +
      `sessions not read back as their last acknowledged write at the end: same handler ` +
      `${r.finalMismatches}, fresh handler ${r.finalMismatchesFreshHandler}, of ${r.sessions})`,
  );
  for (const e of r.lostWriteExamples) {
    out.push(
      `    session ${e.session} (home ${e.home}) at ${e.atSeconds} s: read ${q(e.read)}, ` +
        `expected ${q(e.expected)}`,
    );
  }
  for (const [which, list] of [
    ['same handler', r.finalMismatchExamples],
    ['fresh handler', r.finalMismatchFreshExamples],
  ]) {
    for (const m of list) {
      out.push(
        `    at the end, ${which}: session ${m.session} (home ${m.home}): read ${q(m.read)}` +
          `${m.error ? ` (${m.error})` : ''}, expected ${q(m.expected)}`,
      );
    }
  }
  out.push(
    `  longest gap a live server received no operations: ${r.longestLiveServerGapSeconds} s` +
      (r.longestLiveServerGap.server === null
        ? ''
        : ` (server ${r.longestLiveServerGap.server}, from ${r.longestLiveServerGap.atSeconds} s)`) +
      `; per server ${r.longestGapPerServerSeconds.join(', ')} s; ` +
      `longest event-loop stall of this process ${r.maxEventLoopDelaySeconds} s`,
  );
  out.push(`  operations per server: ${r.operationsPerServer.join(', ')}`);
  out.push(r.dataLost ? '  RESULT: data was lost' : '  RESULT: no data lost');
  return out.join('\n');
}

function formatSummary(results) {
  const rows = [['scenario', 'operations', 'failed', 'lost', 'seconds until it carries traffic']];
  for (const r of results) {
    if (r.skipped) {
      rows.push([r.scenario, '-', '-', '-', `skipped: ${r.skipped}`]);
    } else if (r.error) {
      rows.push([r.scenario, '-', '-', '-', `run failed: ${r.error.split('\n')[0]}`]);
    } else {
      rows.push([
        r.scenario,
        String(r.operationsAttempted),
        String(r.operationsFailed),
        String(r.lost),
        r.events.map((e) => e.secondsUntilItCarriesTraffic ?? 'never').join(', '),
      ]);
    }
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  return rows
    .map((row) =>
      row
        .map((cell, c) => (c === row.length - 1 ? cell : cell.padEnd(widths[c])))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const log = (line) => process.stderr.write(`chaos: ${line}\n`);

  let SessionPgsql;
  try {
    ({ SessionPgsql } = require(path.join(__dirname, '..')));
  } catch (err) {
    process.stderr.write(
      `chaos: cannot load the package (run \`npm run build\`): ${err.message}\n`,
    );
    return 2;
  }
  // Ctrl-C: resume any hung server first (a stopped postmaster cannot shut down), then let
  // pg-cluster.js's own handler, which runs next, stop every server; PgBouncers go on exit.
  for (const sig of SIGNALS) {
    process.on(sig, () => {
      resumeAllFrozen();
      setImmediate(() => process.exit(130));
    });
  }

  const results = [];
  for (const name of args.scenarios) {
    const missing = SCENARIOS[name].missing && SCENARIOS[name].missing();
    if (missing) {
      log(`scenario ${name} skipped: ${missing}`);
      results.push({ scenario: name, skipped: missing });
      continue;
    }
    log(`scenario ${name}`);
    try {
      const report = await runScenario(name, args, SessionPgsql, (line) => log(`${name}: ${line}`));
      results.push(report);
      if (!args.json) process.stdout.write(`${formatReport(report)}\n`);
    } catch (err) {
      log(`scenario ${name} failed: ${err && err.stack ? err.stack : err}`);
      results.push({ scenario: name, error: String((err && err.message) || err) });
    }
  }

  const lost = results.some((r) => r.dataLost);
  const failed = results.some((r) => r.error);
  if (args.json) {
    process.stdout.write(
      `${JSON.stringify({ seconds: args.seconds, scenarios: results }, null, 2)}\n`,
    );
  } else {
    process.stdout.write(
      `== summary (${args.seconds} s per scenario)\n${formatSummary(results)}\n`,
    );
    process.stdout.write(lost ? 'RESULT: data was lost\n' : 'RESULT: no data lost\n');
  }
  return lost ? 1 : failed ? 2 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    resumeAllFrozen();
    process.stderr.write(`chaos: ${err && err.stack ? err.stack : err}\n`);
    process.exit(2);
  },
);
