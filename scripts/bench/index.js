#!/usr/bin/env node
'use strict';
// `npm run bench`: the web hot path (read a session, write it back changed) with C concurrent
// virtual users for T seconds, for session-pgsql and the stores people use today, each in a fresh
// process, against one throwaway PostgreSQL server (or --db). Prints the versions, the command
// and one table per concurrency; --json prints one JSON document instead.
//
//   index.js      this file: arguments, server, seeding, one run after another, the report
//   run-one.js    one Node contender in a fresh process (forked per run)
//   contenders/   session-pgsql, connect-pg-simple, pg, postgres (postgres.js), pgbench
//   seed.js       both tables and their 10 000 sessions; VACUUM/CHECKPOINT between runs
//   common.js     ids, data, SQL, conninfo parsing, the latency histogram
//   proc.js       CPU and RSS from /proc
const { fork } = require('node:child_process');
const os = require('node:os');
const path = require('node:path');
const { Client } = require('pg');
const { startClusters, findBindir } = require('../pg-cluster.js');
const { DATA_BYTES, SESSIONS, driverOptions } = require('./common.js');
const { seed, prepareRun } = require('./seed.js');
const { serverCpu, postmasterPid, rssBytes } = require('./proc.js');
const pgbench = require('./contenders/pgbench.js');

const CONTENDERS = ['session-pgsql', 'connect-pg-simple', 'pg', 'postgres', 'pgbench'];
const SOAK_CONCURRENCY = 16;
const SOAK_RSS_TARGET_MB = 20;
const SIGNALS = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

const USAGE = `usage: npm run bench -- [options]

  -c, --concurrency LIST  virtual users; a comma list runs one table each (default 1,16,64)
  -t, --seconds N         counted seconds per run (default 10)
  -w, --warmup N          uncounted seconds before each run (default 2)
      --contenders LIST   a subset of ${CONTENDERS.join(',')}
      --json              one JSON document on stdout instead of the tables
      --soak N            only session-pgsql, ${SOAK_CONCURRENCY} users, N seconds; samples its RSS every
                          second and reports the first and last tenth
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

/** Runs one Node contender in a fresh process; resolves to its result. */
function runChild(contender, concurrency, seconds, warmup, db, hooks) {
  return new Promise((resolve, reject) => {
    const config = { contender, db, concurrency, seconds, warmup };
    const child = fork(path.join(__dirname, 'run-one.js'), [JSON.stringify(config)], {
      execArgv: [],
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

function measurement(admin, pmPid, seconds, { sampleRss = false } = {}) {
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
      for (let i = 0; i < 20 && m.connections === null && m.started !== null; i++) {
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

async function runContender(name, concurrency, opts, env) {
  await prepareRun(env.admin);
  const meter = measurement(env.admin, env.pmPid, opts.seconds, { sampleRss: opts.sampleRss });
  let result;
  if (name === 'pgbench') {
    result = await pgbench.run(
      {
        bindir: env.bindir,
        db: env.db,
        concurrency,
        seconds: opts.seconds,
        warmup: opts.warmup,
      },
      { onStart: () => meter.onStart(null), onEnd: () => meter.onEnd(), track },
    );
  } else {
    result = await runChild(name, concurrency, opts.seconds, opts.warmup, env.db, meter);
  }
  delete result.type;
  return { ...result, ...(await meter.finish()) };
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

function printReport(report) {
  const out = [];
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
  out.push(
    `  cpu       ${report.cpu.model}, ${report.cpu.cores} cores (client and server share them); ` +
      `load average ${report.cpu.loadBefore.join(' ')} before, ${report.cpu.loadAfter.join(' ')} after`,
  );
  const w = report.workload;
  out.push(
    `  workload  ${w.sessions.toLocaleString('en-US')} sessions of ~${w.meanDataBytes} bytes of JSON; ` +
      'each virtual user: random id, read, views+1, write',
  );
  out.push(
    `  timing    ${w.warmup} s warm-up + ${w.seconds} s counted per run; each contender in a fresh ` +
      'process; VACUUM (ANALYZE) + CHECKPOINT before each run',
  );

  if (report.soak) {
    const k = report.soak;
    const r = k.run;
    out.push('');
    out.push(`soak: session-pgsql, ${r.concurrency} virtual users, ${k.seconds} s`);
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
    if (r.firstError) out.push(`  first error: ${r.firstError}`);
    process.stdout.write(`${out.join('\n')}\n`);
    return;
  }

  const errors = [];
  for (const c of report.concurrency) {
    const runs = report.runs.filter((r) => r.concurrency === c);
    const ours = runs.find((r) => r.contender === 'session-pgsql');
    const header = [
      'contender',
      'req/s',
      'p50 ms',
      'p99 ms',
      'errors',
      'conns',
      'client CPU',
      'server CPU',
    ];
    if (ours) header.push('ratio');
    const rows = runs.map((r) => {
      const row = [
        r.label,
        fmtInt(r.reqPerSec),
        fmtMs(r.p50Ms),
        fmtMs(r.p99Ms),
        String(r.errors),
        r.connections === null ? '—' : String(r.connections),
        fmtPct(r.clientCpu),
        fmtPct(r.serverCpu),
      ];
      if (ours) {
        const x = ratio(ours, r);
        row.push(r === ours ? '—' : x === null ? '—' : `x${x.toFixed(2)}`);
      }
      if (r.firstError) errors.push(`  ${r.label} at ${c}: ${r.firstError}`);
      return row;
    });
    out.push('');
    out.push(`${c} virtual user${c === 1 ? '' : 's'}`);
    out.push(table(header, rows));
  }
  out.push('');
  out.push(
    "ratio: session-pgsql's req/s divided by the contender's (above 1: session-pgsql is faster).",
  );
  out.push('conns: client connections in pg_stat_activity halfway through the run.');
  out.push(
    `client CPU: the contender's process over the counted window (100% = one of ${report.cpu.cores} cores);` +
      ' server CPU: every PostgreSQL process.',
  );
  const pools = [...new Map(report.runs.map((r) => [r.label, r.pool])).entries()]
    .filter(([label, pool]) => pool && label !== pgbench.label)
    .map(([label, pool]) => `${label} ${pool}`);
  if (report.runs.some((r) => r.contender === 'pgbench'))
    pools.push(`${pgbench.label} one per client`);
  out.push(`pools: ${pools.join('; ')}.`);
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

  // Ctrl-C, SIGTERM, SIGHUP: kill the children now; exiting runs pg-cluster's teardown of the
  // throwaway server (its 'exit' handler), and its watchdog covers a SIGKILL of this process.
  for (const [signal, number] of Object.entries(SIGNALS)) {
    process.on(signal, () => {
      killChildren();
      process.stderr.write(`\nbench: ${signal}; stopping\n`);
      process.exit(128 + number);
    });
  }
  process.on('exit', killChildren);

  let cluster = null;
  let admin = null;
  try {
    const env = { db: opts.db, pmPid: null, bindir: null };
    const needsPgbench = !opts.soak && opts.contenders.includes('pgbench');
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

    const info = await admin.query(
      `SELECT version() AS version, inet_server_addr()::text AS addr, inet_server_port() AS port,
         current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS synchronous_commit,
         current_setting('shared_buffers') AS shared_buffers, current_setting('max_connections') AS max_connections`,
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
    progress(`seeding ${SESSIONS} sessions of ~${DATA_BYTES} bytes`);
    const seeded = await seed(admin, env.db);

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
          max_connections: i.max_connections,
        },
      },
      cpu: {
        model: cpus[0] ? cpus[0].model.trim() : 'unknown',
        cores: cpus.length,
        loadBefore: loadAverage(),
        loadAfter: null,
      },
      workload: { ...seeded, seconds: opts.soak || opts.seconds, warmup: opts.warmup },
      concurrency: opts.soak ? [SOAK_CONCURRENCY] : opts.concurrency,
      runs: [],
    };

    if (opts.soak) {
      progress(`soak: session-pgsql, ${SOAK_CONCURRENCY} users, ${opts.soak} s`);
      const run = await runContender(
        'session-pgsql',
        SOAK_CONCURRENCY,
        { seconds: opts.soak, warmup: opts.warmup, sampleRss: true },
        env,
      );
      const samples = run.rss;
      delete run.rss;
      const tenth = opts.soak / 10;
      const mean = (list) =>
        list.length ? list.reduce((a, s) => a + s.rss, 0) / list.length : null;
      const first = samples.filter((s) => s.at <= tenth);
      const last = samples.filter((s) => s.at >= opts.soak - tenth);
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
        samples: samples.map((s) => ({ at: Number(s.at.toFixed(1)), rss: s.rss })),
      };
    } else {
      const total = opts.concurrency.length * opts.contenders.length;
      let n = 0;
      for (const c of opts.concurrency) {
        for (const name of opts.contenders) {
          n += 1;
          progress(`[${n}/${total}] ${name}, ${c} virtual user${c === 1 ? '' : 's'}`);
          let run;
          try {
            run = await runContender(name, c, { seconds: opts.seconds, warmup: opts.warmup }, env);
          } catch (err) {
            run = {
              contender: name,
              label: require(`./contenders/${name}.js`).label,
              concurrency: c,
              reqPerSec: null,
              p50Ms: null,
              p99Ms: null,
              errors: 1,
              firstError: `run failed: ${err.message.split('\n')[0]}`,
              connections: null,
              clientCpu: null,
              serverCpu: null,
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
        const ours = report.runs.find(
          (o) => o.contender === 'session-pgsql' && o.concurrency === r.concurrency,
        );
        r.ratio = ours && r !== ours ? ratio(ours, r) : null;
      }
    }

    report.cpu.loadAfter = loadAverage();
    if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else printReport(report);
  } finally {
    killChildren();
    if (admin) await admin.end().catch(() => {});
    if (cluster) await cluster.stop();
  }
}

main().catch((err) => {
  killChildren();
  process.stderr.write(`bench: ${err.stack || err}\n`);
  process.exitCode = 1;
});
