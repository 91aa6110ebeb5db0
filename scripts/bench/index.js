#!/usr/bin/env node
'use strict';
// `npm run bench`: the web hot path (read a session, write it back changed) with C concurrent
// virtual users for T seconds, for session-pgsql and the stores people use today, each in a fresh
// process, against one throwaway PostgreSQL server (or --db) and a throwaway redis-server.
// Prints the versions, the command and, per concurrency, one table of speed and one of what the
// runs cost the server (sizes, WAL, HOT updates); --json prints one JSON document instead.
//
//   index.js      this file: arguments, servers, seeding, one run after another, the report
//   run-one.js    one Node contender in a fresh process (forked per run)
//   contenders/   the express-session stores (session-pgsql's ExpressStore, connect-redis,
//                 connect-pg-simple) and the raw loops (session-pgsql's handler, pg,
//                 postgres.js, pgbench)
//   seed.js       the tables (and Redis) and their N sessions; VACUUM/CHECKPOINT between runs
//   stats.js      sizes, WAL, HOT updates, Redis INFO around a run
//   common.js     ids, data, SQL, conninfo parsing, the latency histogram
//   proc.js       CPU and RSS from /proc
const { fork } = require('node:child_process');
const os = require('node:os');
const path = require('node:path');
const { Client } = require('pg');
const { startClusters, findBindir } = require('../pg-cluster.js');
const { findRedisServer, startRedis } = require('../redis-server.js');
const { DATA_BYTES, SESSIONS, TABLE, CPS_TABLE, driverOptions } = require('./common.js');
const { seed, prepareRun } = require('./seed.js');
const { serverCpu, postmasterPid, rssBytes } = require('./proc.js');
const { backendsGone, snapshot, difference, redisInfo } = require('./stats.js');
const pgbench = require('./contenders/pgbench.js');

// The store contenders first (the one the first names is the reference of their ratios), then
// the raw loops (likewise).
const CONTENDERS = [
  'express-store',
  'express-store-async',
  'express-store-whole',
  'connect-redis',
  'connect-pg-simple',
  'session-pgsql',
  'pg',
  'postgres',
  'pgbench',
];
const REFERENCE = { store: 'express-store', raw: 'session-pgsql' };
// Issue 15's targets for one run's ratios, by concurrency.
const TARGETS = {
  store: { against: 'connect-redis', at: { 1: 0.6, 16: 1.0, 64: 1.5 } },
  raw: { against: 'pgbench', at: { 1: 0.9, 16: 1.8, 64: 3.5 } },
};
const SOAK_CONCURRENCY = 16;
const SOAK_RSS_TARGET_MB = 20;
const SOAK_SIZE_TARGET = 0.1; // table plus indexes within 10 % of the start
const GC_CONCURRENCY = 16;
const GC_MAX_SECONDS = 1800; // the GC phase's window ends there even if GC has not
const GC_P99_TARGET = 2; // p99 during GC at most twice the p99 without
const SIGNALS = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

const contenderModule = (name) => require(`./contenders/${name}.js`);

const USAGE = `usage: npm run bench -- [options]

  -c, --concurrency LIST  virtual users; a comma list runs one table each (default 1,16,64)
  -t, --seconds N         counted seconds per run (default 10)
  -w, --warmup N          uncounted seconds before each run (default 2)
      --contenders LIST   a subset of ${CONTENDERS.join(',')}
                          (connect-redis needs redis-server on PATH; skipped with a note without)
      --sessions N        sessions seeded (default ${SESSIONS.toLocaleString('en-US')}); only the tables the
                          contenders use are seeded
      --json              one JSON document on stdout instead of the tables
      --soak N            only the session-pgsql handler, ${SOAK_CONCURRENCY} users, N seconds; samples its
                          RSS every second and reports the first and last tenth, and the
                          table and index size at the start and the end
      --gc                only the GC phase: of the N sessions, --gc-share % expired; the
                          session-pgsql handler with ${GC_CONCURRENCY} users for -t seconds, then again while
                          a GC removes the expired ones (the window lasts as long as the GC
                          and counts every request in flight during it);
                          reports both p99s, the GC's duration and the rows it removed
      --gc-share P        the expired share for --gc, in percent (default 20)
      --gc-via WHERE      handler (default): the users' own handler runs gc(), as its
                          gcInterval timer would; separate: another handler (another
                          connection) does, as the CLI from cron would
      --fillfactor N      the session table's fillfactor (10-100), set before seeding
                          (default: the library's layout, 90 on PostgreSQL 14+)
      --expiry-index      add the index on sess_expire that tables made before the
                          PostgreSQL 14 layout have (their updates cannot be HOT, and GC
                          goes through that index)
      --cpu-prof DIR      each Node contender's process writes a V8 CPU profile (node
                          --cpu-prof) into DIR, named by node (CPU.<date>.<time>.<pid>...)
      --db CONNINFO       an existing server instead of a throwaway one; its tables
                          bench_sessions and bench_cps_session are dropped and recreated
  -h, --help              this text
`;

// ---------------------------------------------------------------------------------------------
// arguments

function parseArgs(argv) {
  const opts = {
    concurrency: [1, 16, 64],
    seconds: 10,
    warmup: 2,
    contenders: CONTENDERS,
    json: false,
    soak: null,
    sessions: SESSIONS,
    gc: false,
    cpuProf: null,
    gcShare: 20,
    gcVia: 'handler',
    fillfactor: null,
    expiryIndex: false,
    db: null,
    help: false,
  };
  const integer = (name, value, min, max) => {
    const n = Number(value);
    if (!/^\d+$/.test(String(value)) || n < min || n > max)
      throw new Error(
        `${name} expects a whole number from ${min} to ${max}, not ${JSON.stringify(value)}`,
      );
    return n;
  };
  const args = [...argv];
  for (let i = 0; i < args.length && i < 1000; i++) {
    let arg = args[i];
    let value;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const next = () => {
      if (value !== undefined) return value;
      if (i + 1 >= args.length) throw new Error(`${arg} needs a value`);
      return args[++i];
    };
    switch (arg) {
      case '-c':
      case '--concurrency':
        opts.concurrency = next()
          .split(',')
          .map((c) => integer(arg, c.trim(), 1, 1000));
        break;
      case '-t':
      case '--seconds':
        opts.seconds = integer(arg, next(), 1, 3600);
        break;
      case '-w':
      case '--warmup':
        opts.warmup = integer(arg, next(), 0, 600);
        break;
      case '--contenders': {
        const list = next()
          .split(',')
          .map((c) => c.trim())
          .filter(Boolean);
        const unknown = list.filter((c) => !CONTENDERS.includes(c));
        if (unknown.length || !list.length)
          throw new Error(
            `unknown contender ${unknown.join(', ') || '(none)'}: use ${CONTENDERS.join(',')}`,
          );
        opts.contenders = CONTENDERS.filter((c) => list.includes(c));
        break;
      }
      case '--json':
        opts.json = true;
        break;
      case '--soak':
        opts.soak = integer(arg, next(), 10, 86_400);
        break;
      case '--sessions':
        opts.sessions = integer(arg, next(), 100, 20_000_000);
        break;
      case '--gc':
        opts.gc = true;
        break;
      case '--cpu-prof':
        opts.cpuProf = path.resolve(next());
        break;
      case '--gc-share':
        opts.gcShare = integer(arg, next(), 1, 90);
        break;
      case '--gc-via': {
        const via = next();
        if (via !== 'handler' && via !== 'separate')
          throw new Error(`--gc-via expects handler or separate, not ${JSON.stringify(via)}`);
        opts.gcVia = via;
        break;
      }
      case '--fillfactor':
        opts.fillfactor = integer(arg, next(), 10, 100);
        break;
      case '--expiry-index':
        opts.expiryIndex = true;
        break;
      case '--db':
        opts.db = next();
        break;
      case '-h':
      case '--help':
        opts.help = true;
        break;
      default:
        throw new Error(`unknown argument ${JSON.stringify(args[i])}`);
    }
  }
  if (opts.soak && opts.gc) throw new Error('--soak and --gc are separate runs: give one');
  return opts;
}

function commandLine(argv) {
  const quote = (a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  const args = argv.map(quote).join(' ');
  if (process.env.npm_lifecycle_event === 'bench')
    return `npm run bench${args ? ` -- ${args}` : ''}`;
  return `node ${path.relative(process.cwd(), __filename) || __filename}${args ? ` ${args}` : ''}`;
}

// ---------------------------------------------------------------------------------------------
// children: tracked so Ctrl-C and exit never leave one behind

const children = new Set();

function track(child) {
  children.add(child);
  return () => children.delete(child);
}

function killChildren() {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  children.clear();
}

/**
 * Runs one Node contender in a fresh process; resolves to its result. config: run-one.js's
 * { contender, db, redis, sessions, concurrency, seconds, warmup, gc, gcMaxSeconds }.
 */
function runChild(config, hooks) {
  const { contender, warmup } = config;
  const seconds = config.gc ? config.gcMaxSeconds : config.seconds;
  return new Promise((resolve, reject) => {
    const child = fork(path.join(__dirname, 'run-one.js'), [JSON.stringify(config)], {
      execArgv: config.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${config.cpuProf}`] : [],
      stdio: ['ignore', 2, 2, 'ipc'], // a driver's console output goes to stderr, not into --json
    });
    const untrack = track(child);
    let result = null;
    let failure = null;
    const timer = setTimeout(
      () => {
        failure = `${contender} did not finish within ${warmup + seconds + 60} s; killed`;
        child.kill('SIGKILL');
      },
      (warmup + seconds + 60) * 1000,
    );
    child.on('message', (m) => {
      if (m.type === 'measuring') hooks.onStart(child);
      else if (m.type === 'done') hooks.onEnd();
      else if (m.type === 'result') result = m;
      else if (m.type === 'failed') failure = m.error;
    });
    child.on('error', (err) => (failure = failure || err.message));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      untrack();
      hooks.onEnd();
      if (result) resolve(result);
      else reject(new Error(failure || `${contender} exited (${code ?? signal}) without a result`));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// measurement around a run: server CPU, connections, RSS

function measurement(admin, pmPid, seconds, { sampleRss = false, connections = true } = {}) {
  const m = {
    started: null,
    ended: null,
    cpu0: null,
    cpu1: null,
    connections: null,
    rss: [],
    timers: [],
  };
  return {
    onStart(child) {
      if (m.started !== null) return;
      m.started = process.hrtime.bigint();
      m.cpu0 = pmPid ? serverCpu(pmPid) : null;
      // Mid-run: the client connections the contender actually holds.
      const t = setTimeout(
        () => {
          if (!connections) return;
          admin
            .query(
              `SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend'
               AND pid <> pg_backend_pid() AND datname = current_database()`,
            )
            .then((r) => (m.connections = r.rows[0].n))
            .catch(() => {});
        },
        (seconds * 1000) / 2,
      );
      m.timers.push(t);
      if (sampleRss && child) {
        const sample = () => {
          const rss = rssBytes(child.pid);
          const at = Number(process.hrtime.bigint() - m.started) / 1e9;
          if (rss !== null && at <= seconds + 0.5) m.rss.push({ at, rss });
        };
        sample();
        m.timers.push(setInterval(sample, 1000));
      }
    },
    onEnd() {
      if (m.started === null || m.ended !== null) return;
      m.ended = process.hrtime.bigint();
      m.cpu1 = pmPid ? serverCpu(pmPid) : null;
      for (const t of m.timers) clearInterval(t); // also clears timeouts
    },
    async finish() {
      // The connection count query may still be in flight; give it a moment.
      for (let i = 0; connections && i < 20 && m.connections === null && m.started !== null; i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      const wall =
        m.started !== null && m.ended !== null ? Number(m.ended - m.started) / 1e9 : null;
      return {
        serverCpu: m.cpu0 !== null && m.cpu1 !== null && wall ? (m.cpu1 - m.cpu0) / wall : null,
        connections: m.connections,
        rss: m.rss,
      };
    },
  };
}

/**
 * One run of contender `name`: VACUUM and CHECKPOINT, a snapshot of the server, the run, a
 * snapshot again. opts: { seconds, warmup, sampleRss, gc (null, 'handler' or 'separate'),
 * cpuProf }. The result adds server CPU, connections, RSS samples, `storage` (stats.js's
 * difference) and, for Redis, `redis`.
 */
async function runContender(name, concurrency, opts, env) {
  const mod = contenderModule(name);
  const isRedis = name === 'connect-redis';
  await prepareRun(env.admin, env.tables);
  const before = await snapshot(env.admin, mod.tables);
  const redisBefore = isRedis ? await redisInfo(env.redisClient) : null;
  const cpuPid = isRedis ? env.redisPid : env.pmPid;
  const meter = measurement(env.admin, cpuPid, opts.seconds, {
    sampleRss: opts.sampleRss,
    connections: !isRedis,
  });
  let result;
  if (name === 'pgbench') {
    result = await pgbench.run(
      {
        bindir: env.bindir,
        db: env.db,
        concurrency,
        seconds: opts.seconds,
        warmup: opts.warmup,
        sessions: env.liveSessions,
      },
      { onStart: () => meter.onStart(null), onEnd: () => meter.onEnd(), track },
    );
  } else {
    let hooks = meter;
    let separateGc = null;
    if (opts.gc === 'separate') {
      // The GC from another handler, connected beforehand and started when the users' window
      // opens; its end closes the window.
      const gcHandler = await openGcHandler(env);
      hooks = {
        ...meter,
        onStart(child) {
          meter.onStart(child);
          if (separateGc) return;
          separateGc = runSeparateGc(gcHandler).then((gc) => {
            try {
              child.send({ type: 'stop' });
            } catch {
              // the child is gone: its result (or failure) says why
            }
            return gc;
          });
        },
      };
    }
    result = await runChild(
      {
        contender: name,
        db: env.db,
        redis: env.redisUrl,
        sessions: env.liveSessions,
        concurrency,
        seconds: opts.seconds,
        warmup: opts.warmup,
        gc: opts.gc || null,
        gcMaxSeconds: GC_MAX_SECONDS,
        cpuProf: opts.cpuProf,
      },
      hooks,
    );
    if (separateGc)
      result.gc = { ...(await separateGc), finished: result.gc && result.gc.finished };
  }
  delete result.type;
  const measured = await meter.finish();
  await backendsGone(env.admin);
  const after = await snapshot(env.admin, mod.tables);
  const storage = difference(before, after, result.allRequests);
  const redis = isRedis ? { before: redisBefore, after: await redisInfo(env.redisClient) } : null;
  return { ...result, ...measured, storage, redis };
}

/** A handler of its own for the GC, as `session-pgsql gc` from cron would use. */
async function openGcHandler(env) {
  const { handlerOptions } = contenderModule('session-pgsql');
  const { SessionPgsql } = require(path.join(__dirname, '..', '..', 'dist', 'index.js'));
  const handler = new SessionPgsql(handlerOptions(env.db));
  await handler.open();
  return handler;
}

/** Runs GC on `handler`, then closes it. */
async function runSeparateGc(handler) {
  try {
    const started = process.hrtime.bigint();
    const removed = await handler.gc();
    return { removed, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
  } catch (err) {
    return { error: String(err && err.message ? err.message : err) };
  } finally {
    await handler.close().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// report

const fmtInt = (n) => (n === null || n === undefined ? '—' : Math.round(n).toLocaleString('en-US'));
const fmtMs = (n) => (n === null || n === undefined ? '—' : n.toFixed(2));
const fmtPct = (n) => (n === null || n === undefined ? '—' : `${Math.round(n * 100)}%`);
const fmtMb = (b) => `${(b / 1048576).toFixed(1)} MB`;

function libpqText(v) {
  return v >= 100000 ? `${Math.floor(v / 10000)}.${v % 10000}` : String(v);
}

function table(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(header), ...rows.map(line)].map((l) => `  ${l.trimEnd()}`).join('\n');
}

function ratio(ours, theirs) {
  if (!ours || !theirs || !ours.reqPerSec || !theirs.reqPerSec) return null;
  return ours.reqPerSec / theirs.reqPerSec;
}

/** The session-pgsql run a run's ratio compares with: the reference of its kind. */
function referenceOf(runs, run) {
  const ref = REFERENCE[contenderModule(run.contender).kind];
  return runs.find((r) => r.contender === ref && r.concurrency === run.concurrency) || null;
}

const fmtSize = (b) => (b === null || b === undefined ? '—' : (b / 1048576).toFixed(1));
const fmtBytes = (n) =>
  n === null || n === undefined ? '—' : Math.round(n).toLocaleString('en-US');

/** "heap before→after" etc. for a run's tables (summed), or Redis's memory. */
function storageRow(r) {
  const st = r.storage;
  const tables = st ? Object.values(st.tables) : [];
  const sum = (when, field) =>
    tables.length ? tables.reduce((a, t) => a + t[when][field], 0) : null;
  const span = (field) =>
    tables.length ? `${fmtSize(sum('before', field))} → ${fmtSize(sum('after', field))}` : '—';
  let memory = '—';
  let forks = '—';
  if (r.redis && r.redis.before && r.redis.after) {
    memory = `${fmtSize(r.redis.before.usedMemory)} → ${fmtSize(r.redis.after.usedMemory)}`;
    forks = String(r.redis.after.forks - r.redis.before.forks);
  }
  return [
    r.label,
    tables.length ? Object.keys(st.tables).join(', ') : r.redis ? 'redis' : '—',
    span('heap'),
    span('indexes'),
    tables.length ? span('total') : memory,
    st && tables.length ? fmtBytes(st.walPerRequest) : '—',
    st && tables.length && st.fpiPerRequest !== null ? st.fpiPerRequest.toFixed(2) : '—',
    st && tables.length ? fmtPct(st.hotShare) : '—',
    forks,
  ];
}

const STORAGE_HEADER = [
  'contender',
  'table',
  'heap MB',
  'indexes MB',
  'total MB',
  'WAL B/req',
  'FPI/req',
  'HOT',
  'snapshots',
];

function sizeLine(label, run) {
  const tables = run.storage ? Object.entries(run.storage.tables) : [];
  return tables.map(([name, t]) => {
    const b = t.before.heap + t.before.indexes;
    const a = t.after.heap + t.after.indexes;
    const d = b ? (a - b) / b : null;
    return (
      `  ${label} ${name}: heap ${fmtMb(t.before.heap)} → ${fmtMb(t.after.heap)}, indexes ` +
      `${fmtMb(t.before.indexes)} → ${fmtMb(t.after.indexes)}, heap+indexes ` +
      `${d === null ? '—' : `${d >= 0 ? '+' : ''}${(d * 100).toFixed(1)}%`}; total with TOAST/FSM/VM ` +
      `${fmtMb(t.before.total)} → ${fmtMb(t.after.total)}`
    );
  });
}

function walLine(run) {
  const st = run.storage;
  if (!st) return '  WAL: —';
  return (
    `  WAL: ${fmtBytes(st.walPerRequest)} bytes per request (${fmtMb(st.walBytes || 0)} over ` +
    `${fmtInt(st.requests)} requests, warm-up included), ${st.fpiPerRequest === null ? '—' : st.fpiPerRequest.toFixed(2)} full-page images per request; ` +
    `HOT updates ${fmtPct(st.hotShare)} (${fmtInt(st.hotUpdates)} of ${fmtInt(st.updates)})`
  );
}

function printHeader(report, out) {
  const s = report.server;
  out.push('session-pgsql benchmark: the web hot path (read a session, write it back changed)');
  out.push(`  command   ${report.command}`);
  out.push(`  node      ${report.node}`);
  out.push(`  libpq     ${libpqText(report.libpq)} (${report.libpq}, the addon's)`);
  out.push(`  server    ${s.version}`);
  out.push(
    `            ${s.throwaway ? 'throwaway, ' : ''}${s.address}; ` +
      Object.entries(s.settings)
        .map(([k, v]) => `${k}=${v}`)
        .join(' '),
  );
  if (report.redis) {
    out.push(
      `  redis     ${report.redis.version}, throwaway, ${report.redis.address}; save ${report.redis.save}` +
        ' (its default RDB snapshots), appendonly no',
    );
  }
  for (const note of report.notes) out.push(`  note      ${note}`);
  out.push(
    `  cpu       ${report.cpu.model}, ${report.cpu.cores} cores (client and server share them); ` +
      `load average ${report.cpu.loadBefore.join(' ')} before, ${report.cpu.loadAfter.join(' ')} after`,
  );
  const w = report.workload;
  out.push(
    `  workload  ${w.sessions.toLocaleString('en-US')} sessions of ~${w.meanDataBytes} bytes of JSON` +
      `${w.expired ? ` (${w.expired.toLocaleString('en-US')} of them expired)` : ''}, seeded in ` +
      `${w.seedSeconds.toFixed(1)} s; each virtual user: random live id, read, views+1, write`,
  );
  out.push(`  table     ${TABLE}: ${w.layout}`);
  out.push(
    `  timing    ${w.warmup} s warm-up + ${w.seconds} s counted per run; each contender in a fresh ` +
      'process; VACUUM (ANALYZE) + CHECKPOINT before each run',
  );
}

function printSoak(report, out) {
  const k = report.soak;
  const r = k.run;
  out.push('');
  out.push(`soak: session-pgsql handler, ${r.concurrency} virtual users, ${k.seconds} s`);
  out.push(
    `  ${fmtInt(r.reqPerSec)} req/s, p50 ${fmtMs(r.p50Ms)} ms, p99 ${fmtMs(r.p99Ms)} ms, ` +
      `${r.errors} errors, client CPU ${fmtPct(r.clientCpu)}, server CPU ${fmtPct(r.serverCpu)}`,
  );
  if (k.rssFirstTenth === null) {
    out.push('  RSS: not available (needs /proc)');
  } else {
    const d = k.rssLastTenth - k.rssFirstTenth;
    out.push(
      `  RSS (mean of ${k.samplesFirstTenth} / ${k.samplesLastTenth} one-second samples): ` +
        `first tenth ${fmtMb(k.rssFirstTenth)}, last tenth ${fmtMb(k.rssLastTenth)}, ` +
        `difference ${d >= 0 ? '+' : ''}${fmtMb(d)} ` +
        `(${Math.abs(d) <= SOAK_RSS_TARGET_MB * 1048576 ? 'within' : 'OUTSIDE'} the ${SOAK_RSS_TARGET_MB} MB target); ` +
        `min ${fmtMb(k.rssMin)}, max ${fmtMb(k.rssMax)}`,
    );
  }
  out.push(...sizeLine('start → end,', r));
  if (k.sizeGrowth !== null) {
    out.push(
      `  heap+indexes ${Math.abs(k.sizeGrowth) <= SOAK_SIZE_TARGET ? 'within' : 'OUTSIDE'} the ` +
        `${SOAK_SIZE_TARGET * 100}% target`,
    );
  }
  out.push(walLine(r));
  if (r.firstError) out.push(`  first error: ${r.firstError}`);
}

function printGc(report, out) {
  const g = report.gcPhase;
  const b = g.baseline;
  const d = g.during;
  out.push('');
  out.push(
    `GC while serving: session-pgsql handler, ${b.concurrency} virtual users on the ` +
      `${fmtInt(g.live)} live sessions; ${fmtInt(g.expired)} expired; GC via ${g.via === 'handler' ? "the users' own handler (as its gcInterval timer)" : 'a separate handler (as the CLI from cron)'}`,
  );
  const header = [
    'window',
    'seconds',
    'req/s',
    'p50 ms',
    'p99 ms',
    'max ms',
    'errors',
    'server CPU',
  ];
  const row = (name, r) => [
    name,
    r.seconds === null || r.seconds === undefined ? '—' : r.seconds.toFixed(1),
    fmtInt(r.reqPerSec),
    fmtMs(r.p50Ms),
    fmtMs(r.p99Ms),
    fmtMs(r.maxMs),
    String(r.errors),
    fmtPct(r.serverCpu),
  ];
  out.push(table(header, [row('without GC', b), row('during GC', d)]));
  const gc = d.gc || {};
  const x = b.p99Ms && d.p99Ms ? d.p99Ms / b.p99Ms : null;
  out.push(
    `  p99 during GC / without: ${x === null ? '—' : `x${x.toFixed(2)}`} (target at most x${GC_P99_TARGET}: ` +
      `${x === null ? '—' : x <= GC_P99_TARGET ? 'met' : 'NOT met'})`,
  );
  out.push(
    `  GC: ${gc.error ? `failed: ${gc.error}` : `${fmtInt(gc.removed)} rows removed in ${gc.seconds === undefined ? '—' : gc.seconds.toFixed(2)} s`}` +
      `${gc.finished === false ? ` (still running after ${GC_MAX_SECONDS} s: window cut there)` : ''}; ` +
      `${fmtInt(g.expiredAfter)} expired rows left`,
  );
  out.push(...sizeLine('before → after GC,', d));
  out.push(`${walLine(d)}; the GC's deletes included`);
  for (const r of [b, d]) if (r.firstError) out.push(`  first error: ${r.firstError}`);
}

function printReport(report) {
  const out = [];
  printHeader(report, out);
  if (report.soak) printSoak(report, out);
  if (report.gcPhase) printGc(report, out);
  if (report.soak || report.gcPhase) {
    process.stdout.write(`${out.join('\n')}\n`);
    return;
  }

  const errors = [];
  for (const c of report.concurrency) {
    const runs = report.runs.filter((r) => r.concurrency === c);
    const header = [
      'contender',
      'req/s',
      'p50 ms',
      'p99 ms',
      'errors',
      'conns',
      'client CPU',
      'server CPU',
      'ratio',
    ];
    const rows = runs.map((r) => {
      if (r.firstError) errors.push(`  ${r.label} at ${c}: ${r.firstError}`);
      return [
        r.label,
        fmtInt(r.reqPerSec),
        fmtMs(r.p50Ms),
        fmtMs(r.p99Ms),
        String(r.errors),
        r.connections === null || r.connections === undefined ? '—' : String(r.connections),
        fmtPct(r.clientCpu),
        fmtPct(r.serverCpu),
        r.ratio === null || r.ratio === undefined ? '—' : `x${r.ratio.toFixed(2)}`,
      ];
    });
    out.push('');
    out.push(`${c} virtual user${c === 1 ? '' : 's'}`);
    out.push(table(header, rows));
    out.push('');
    out.push(table(STORAGE_HEADER, runs.map(storageRow)));
  }
  if (report.targets.length) {
    out.push('');
    out.push("issue 15's target ratios (one run; targets, not limits):");
    out.push(
      table(
        ['users', 'ratio', 'measured', 'target', ''],
        report.targets.map((t) => [
          String(t.concurrency),
          t.name,
          t.ratio === null ? '—' : `x${t.ratio.toFixed(2)}`,
          t.target === null ? '—' : `≥ x${t.target.toFixed(1)}`,
          t.target === null || t.ratio === null ? '' : t.ratio >= t.target ? 'met' : 'not met',
        ]),
      ),
    );
  }
  out.push('');
  out.push(
    "ratio: the reference session-pgsql row's req/s divided by this row's (above 1: session-pgsql" +
      " is faster); the reference is the ExpressStore for the express-session stores (get, views+1 and express-session's touch()," +
      ' set) and the handler for the raw read/write loops.',
  );
  out.push(
    'synchronousCommit: false, like Redis with its default RDB snapshots, may lose the last' +
      ' moments of writes when the server crashes (never corrupt them); the other PostgreSQL rows' +
      ' commit to disk (fsync on) before answering.',
  );
  out.push('conns: client connections in pg_stat_activity halfway through the run (— for Redis).');
  out.push(
    `client CPU: the contender's process over the counted window (100% = one of ${report.cpu.cores} cores);` +
      ' server CPU: every PostgreSQL process (redis-server and its snapshot children for Redis).',
  );
  out.push(
    "heap, indexes, total: the table's main fork, its indexes, everything (TOAST, FSM, VM too)," +
      ' in MB after the VACUUM before the run → at its end (Redis: used_memory, as total); WAL B/req and' +
      ' FPI/req: WAL bytes and full-page images per request since the CHECKPOINT before the run (so a short run over many pages is mostly full-page images), warm-up included, whoever wrote' +
      ' them (autovacuum and checkpoints too); HOT: n_tup_hot_upd / n_tup_upd of the table over' +
      ' the run; snapshots: Redis BGSAVE forks during the run.',
  );
  const pools = [...new Map(report.runs.map((r) => [r.label, r.pool])).entries()]
    .filter(([label, pool]) => pool && label !== pgbench.label)
    .map(([label, pool]) => `${label} ${pool}`);
  if (report.runs.some((r) => r.contender === 'pgbench'))
    pools.push(`${pgbench.label} one per client`);
  out.push(`pools: ${pools.join('; ')}.`);
  out.push(
    "session-pgsql's housekeeping timers are off (gcInterval 0, vacuumInterval 0): the bench" +
      ' vacuums between runs, and measures GC apart (--gc).',
  );
  if (report.runs.some((r) => r.contender === 'pgbench')) {
    out.push(
      'pgbench runs the same SELECT and UPDATE (the read row returns to it and goes back as the' +
        ' write parameter, unchanged: its scripts cannot edit text); p50/p99 from its --log.',
    );
  }
  if (errors.length) {
    out.push('');
    out.push('first error of each run with errors:');
    out.push(...errors);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

// ---------------------------------------------------------------------------------------------
// main

/** 1, 5 and 15 minute load averages: other work on the machine skews every figure. */
function loadAverage() {
  return os.loadavg().map((l) => Number(l.toFixed(2)));
}

function progress(text) {
  process.stderr.write(`bench: ${text}\n`);
}

async function main() {
  const argv = process.argv.slice(2);
  let opts;
  try {
    opts = parseArgs(argv);
  } catch (err) {
    process.stderr.write(`bench: ${err.message}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (opts.help) {
    process.stdout.write(USAGE);
    return;
  }

  // Ctrl-C, SIGTERM, SIGHUP: kill the children now; exiting runs pg-cluster's and
  // redis-server.js's teardown of the throwaway servers (their 'exit' handlers), and their
  // watchdogs cover a SIGKILL of this process.
  for (const [signal, number] of Object.entries(SIGNALS)) {
    process.on(signal, () => {
      killChildren();
      process.stderr.write(`\nbench: ${signal}; stopping\n`);
      process.exit(128 + number);
    });
  }
  process.on('exit', killChildren);

  const notes = [];
  // The soak and the GC phase run the handler alone; otherwise the chosen contenders.
  let contenders = opts.soak || opts.gc ? ['session-pgsql'] : opts.contenders;
  if (contenders.includes('connect-redis') && !findRedisServer()) {
    contenders = contenders.filter((c) => c !== 'connect-redis');
    notes.push(
      'connect-redis skipped: redis-server is not installed (Debian: apt-get install redis-server)',
    );
    progress(notes[notes.length - 1]);
  }

  let cluster = null;
  let admin = null;
  let redisServer = null;
  let redisClient = null;
  try {
    const env = { db: opts.db, pmPid: null, bindir: null, redisUrl: null, redisPid: null };
    const needsPgbench = contenders.includes('pgbench');
    if (needsPgbench || !opts.db) env.bindir = findBindir();
    if (!opts.db) {
      progress('starting a throwaway PostgreSQL server');
      cluster = await startClusters(1);
      env.db = cluster.clusters[0].conninfo;
      env.pmPid = postmasterPid(cluster.clusters[0].dataDir);
    }
    const { url, ...clientOptions } = driverOptions(env.db);
    admin = new Client({ ...clientOptions, connectionString: url });
    admin.on('error', () => {});
    await admin.connect();
    env.admin = admin;

    let redisReport = null;
    if (contenders.includes('connect-redis')) {
      progress('starting a throwaway redis-server');
      redisServer = await startRedis();
      env.redisUrl = redisServer.url;
      env.redisPid = redisServer.pid();
      const { createClient } = require('redis');
      redisClient = createClient({ url: redisServer.url });
      redisClient.on('error', () => {});
      await redisClient.connect();
      env.redisClient = redisClient;
      const server = /^redis_version:(\S+)/m.exec(await redisClient.info('server'));
      const save = await redisClient.configGet('save');
      redisReport = {
        version: `Redis ${server ? server[1] : '?'}`,
        address: redisServer.url.replace('redis://', ''),
        save: save.save,
      };
    }

    const info = await admin.query(
      `SELECT version() AS version, inet_server_addr()::text AS addr, inet_server_port() AS port,
         current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS synchronous_commit,
         current_setting('shared_buffers') AS shared_buffers, current_setting('max_connections') AS max_connections,
         current_setting('max_wal_size') AS max_wal_size`,
    );
    const i = info.rows[0];
    if (env.pmPid === null) {
      // --db: server CPU is measurable too when the server runs on this machine and we may
      // read its data directory setting (superuser or pg_read_all_settings).
      try {
        const dir = await admin.query(`SELECT current_setting('data_directory') AS dir`);
        const local = ['127.0.0.1', '::1', null].includes(i.addr && i.addr.replace(/\/\d+$/, ''));
        if (local) env.pmPid = postmasterPid(dir.rows[0].dir);
      } catch {
        // no right to read it: server CPU shows as —
      }
    }
    const { libpqVersion } = require(path.join(__dirname, '..', '..', 'dist', 'index.js'));
    const cpus = os.cpus();

    const expired = opts.gc ? Math.round((opts.sessions * opts.gcShare) / 100) : 0;
    const cps = contenders.includes('connect-pg-simple');
    progress(
      `seeding ${opts.sessions.toLocaleString('en-US')} sessions of ~${DATA_BYTES} bytes` +
        `${expired ? ` (${expired.toLocaleString('en-US')} expired)` : ''} into ${TABLE}` +
        `${cps ? `, ${CPS_TABLE}` : ''}${redisClient ? ', redis' : ''}`,
    );
    const seeded = await seed(admin, env.db, {
      sessions: opts.sessions,
      expired,
      cps,
      redis: redisClient,
      fillfactor: opts.fillfactor,
      expiryIndex: opts.expiryIndex,
      progress,
    });
    progress(`seeded in ${seeded.seconds.toFixed(1)} s`);
    env.tables = cps ? [TABLE, CPS_TABLE] : [TABLE];
    env.liveSessions = opts.sessions - expired;

    const report = {
      command: commandLine(argv),
      node: process.version,
      libpq: libpqVersion,
      server: {
        version: i.version,
        address: i.addr ? `${i.addr.replace(/\/\d+$/, '')}:${i.port}` : 'unix socket',
        throwaway: !opts.db,
        settings: {
          fsync: i.fsync,
          synchronous_commit: i.synchronous_commit,
          shared_buffers: i.shared_buffers,
          max_wal_size: i.max_wal_size,
          max_connections: i.max_connections,
        },
      },
      redis: redisReport,
      notes,
      cpu: {
        model: cpus[0] ? cpus[0].model.trim() : 'unknown',
        cores: cpus.length,
        loadBefore: loadAverage(),
        loadAfter: null,
      },
      workload: {
        sessions: seeded.sessions,
        expired: seeded.expired,
        meanDataBytes: seeded.meanDataBytes,
        seedSeconds: seeded.seconds,
        layout: seeded.layout,
        seconds: opts.soak || opts.seconds,
        warmup: opts.warmup,
      },
      concurrency: opts.soak ? [SOAK_CONCURRENCY] : opts.gc ? [GC_CONCURRENCY] : opts.concurrency,
      runs: [],
      targets: [],
    };

    if (opts.soak) {
      progress(`soak: session-pgsql handler, ${SOAK_CONCURRENCY} users, ${opts.soak} s`);
      const run = await runContender(
        'session-pgsql',
        SOAK_CONCURRENCY,
        { seconds: opts.soak, warmup: opts.warmup, sampleRss: true, cpuProf: opts.cpuProf },
        env,
      );
      const samples = run.rss;
      delete run.rss;
      const tenth = opts.soak / 10;
      const mean = (list) =>
        list.length ? list.reduce((a, s) => a + s.rss, 0) / list.length : null;
      const first = samples.filter((s) => s.at <= tenth);
      const last = samples.filter((s) => s.at >= opts.soak - tenth);
      const t = run.storage.tables[TABLE];
      const startSize = t ? t.before.heap + t.before.indexes : 0;
      report.runs.push(run);
      report.soak = {
        seconds: opts.soak,
        run,
        rssFirstTenth: mean(first),
        rssLastTenth: mean(last),
        rssDifference: first.length && last.length ? mean(last) - mean(first) : null,
        samplesFirstTenth: first.length,
        samplesLastTenth: last.length,
        rssMin: samples.length ? Math.min(...samples.map((s) => s.rss)) : null,
        rssMax: samples.length ? Math.max(...samples.map((s) => s.rss)) : null,
        targetMb: SOAK_RSS_TARGET_MB,
        sizeGrowth: startSize ? (t.after.heap + t.after.indexes - startSize) / startSize : null,
        sizeTarget: SOAK_SIZE_TARGET,
        samples: samples.map((s) => ({ at: Number(s.at.toFixed(1)), rss: s.rss })),
      };
    } else if (opts.gc) {
      const runOpts = { seconds: opts.seconds, warmup: opts.warmup, cpuProf: opts.cpuProf };
      progress(
        `GC phase: session-pgsql handler, ${GC_CONCURRENCY} users, ${opts.seconds} s without GC`,
      );
      const baseline = await runContender('session-pgsql', GC_CONCURRENCY, runOpts, env);
      progress(
        `        ${fmtInt(baseline.reqPerSec)} req/s, p99 ${fmtMs(baseline.p99Ms)} ms; now with GC (via ${opts.gcVia})`,
      );
      const during = await runContender(
        'session-pgsql',
        GC_CONCURRENCY,
        { ...runOpts, gc: opts.gcVia },
        env,
      );
      const left = await admin.query(
        `SELECT count(*)::int AS n FROM ${TABLE} WHERE sess_expire < floor(extract(epoch from now()))::bigint`,
      );
      for (const r of [baseline, during]) delete r.rss;
      report.runs.push(baseline, during);
      report.gcPhase = {
        via: opts.gcVia,
        live: env.liveSessions,
        expired,
        expiredAfter: left.rows[0].n,
        baseline,
        during,
        p99Ratio: baseline.p99Ms && during.p99Ms ? during.p99Ms / baseline.p99Ms : null,
        p99Target: GC_P99_TARGET,
      };
    } else {
      const total = opts.concurrency.length * contenders.length;
      let n = 0;
      for (const c of opts.concurrency) {
        for (const name of contenders) {
          n += 1;
          progress(`[${n}/${total}] ${name}, ${c} virtual user${c === 1 ? '' : 's'}`);
          let run;
          try {
            run = await runContender(
              name,
              c,
              { seconds: opts.seconds, warmup: opts.warmup, cpuProf: opts.cpuProf },
              env,
            );
          } catch (err) {
            run = {
              contender: name,
              label: contenderModule(name).label,
              concurrency: c,
              reqPerSec: null,
              p50Ms: null,
              p99Ms: null,
              errors: 1,
              firstError: `run failed: ${err.message.split('\n')[0]}`,
              connections: null,
              clientCpu: null,
              serverCpu: null,
              storage: null,
              redis: null,
            };
          }
          delete run.rss;
          report.runs.push(run);
          progress(
            `        ${fmtInt(run.reqPerSec)} req/s, p50 ${fmtMs(run.p50Ms)} ms, p99 ${fmtMs(run.p99Ms)} ms, ${run.errors} errors`,
          );
        }
      }
      for (const r of report.runs) {
        const ref = referenceOf(report.runs, r);
        r.ratio = ref && r !== ref ? ratio(ref, r) : null;
      }
      for (const c of opts.concurrency) {
        for (const [kind, t] of Object.entries(TARGETS)) {
          const at = (name) =>
            report.runs.find((r) => r.contender === name && r.concurrency === c) || null;
          const ours = at(REFERENCE[kind]);
          const theirs = at(t.against);
          if (!ours || !theirs) continue;
          report.targets.push({
            concurrency: c,
            name: `${ours.label} / ${theirs.label}`,
            ratio: ratio(ours, theirs),
            target: t.at[c] === undefined ? null : t.at[c],
          });
        }
      }
    }

    report.cpu.loadAfter = loadAverage();
    if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else printReport(report);
  } finally {
    killChildren();
    if (admin) await admin.end().catch(() => {});
    if (redisClient) await redisClient.close().catch(() => {});
    if (redisServer) await redisServer.stop();
    if (cluster) await cluster.stop();
  }
}

main().catch((err) => {
  killChildren();
  process.stderr.write(`bench: ${err.stack || err}\n`);
  process.exitCode = 1;
});
