'use strict';
// A throwaway streaming-replication pair for tests: a primary from pg-cluster.js's
// startClusters(1) and a standby made from it with `pg_basebackup -R -X stream -c fast`, in the
// same temporary directory (cN/data), so that pg-cluster.js's teardown (set.stop(), process exit,
// signals, and its watchdog after a SIGKILL) stops both servers and removes both directories.
//
//   const { startReplicaPair } = require('./pg-replica.js');
//   const pair = await startReplicaPair({ synchronous: true });
//   pair.db          // host=127.0.0.1,127.0.0.1 port=P1,P2 ... target_session_attrs=read-write
//   const resume = pair.hang();   // SIGSTOP the primary's postmaster and every backend
//   await pair.promote();         // pg_ctl promote the standby
//   resume();                     // SIGCONT them
//   await pair.stop();
//
// The standby's copy of the configuration is taken before synchronous_standby_names is set on
// the primary, so the standby, once promoted, does not wait for a standby of its own.

const fs = require('node:fs');
const path = require('node:path');
const {
  startClusters,
  conninfoFor,
  asUser,
  run,
  freePorts,
  makeCluster,
  postmasterPid,
} = require('./pg-cluster.js');

const HOST = '127.0.0.1';
const WAIT_MS = 30_000;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs one SQL text on `cluster` with psql; resolves with its unaligned output. */
async function psql(cluster, sql) {
  const res = await run(
    path.join(cluster.bindir, 'psql'),
    ['-h', HOST, '-p', String(cluster.port), '-U', 'postgres', '-d', 'postgres', '-XAtqc', sql],
    { timeout: 30_000 },
  );
  if (res.code !== 0) {
    throw new Error(`pg-replica: psql on port ${cluster.port} failed: ${res.stderr.trim()}`);
  }
  return res.stdout.trim();
}

/** Polls `sql` on `cluster` until its output is `want` (bounded). */
async function waitFor(cluster, sql, want, what) {
  const deadline = Date.now() + WAIT_MS;
  let got = '';
  while (Date.now() < deadline) {
    got = await psql(cluster, sql).catch((err) => err.message);
    if (got === want) return;
    await sleep(100);
  }
  throw new Error(`pg-replica: ${what} not reached after ${WAIT_MS} ms (last: ${got})`);
}

/** The postmaster's pid and every process whose parent it is (backends, walsender, ...). */
function processTree(pid) {
  const pids = [pid];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      // The command name is in parentheses and may hold spaces: the ppid follows the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

function signal(pids, name) {
  for (const pid of pids) {
    try {
      process.kill(pid, name);
    } catch {
      // already gone
    }
  }
}

/**
 * Starts a primary and a streaming standby of it on free loopback ports. opts.synchronous: the
 * primary waits for the standby's flush before acknowledging a commit
 * (synchronous_standby_names = '*').
 */
async function startReplicaPair(opts = {}) {
  const set = await startClusters(1, { handleSignals: opts.handleSignals });
  const primary = set.clusters[0];
  const hung = new Set();
  let standby = null;
  try {
    const dir = path.join(set.root, 'c1');
    const dataDir = path.join(dir, 'data');
    const socketDir = path.join(dir, 'sock');
    const logFile = path.join(dir, 'postgres.log');
    const owner = fs.statSync(set.root);
    for (const d of [dir, socketDir]) {
      fs.mkdirSync(d, { mode: 0o700 });
      fs.chownSync(d, owner.uid, owner.gid);
    }
    const [file, args] = asUser(primary.osUser, path.join(primary.bindir, 'pg_basebackup'), [
      ...['-h', HOST, '-p', String(primary.port), '-U', 'postgres', '-D', dataDir],
      ...['-R', '-X', 'stream', '-c', 'fast', '--no-sync'],
    ]);
    const res = await run(file, args, { timeout: 120_000, cwd: dir });
    if (res.code !== 0) {
      throw new Error(`pg-replica: pg_basebackup failed (exit ${res.code}): ${res.stderr.trim()}`);
    }
    const [port] = await freePorts(1);
    fs.appendFileSync(
      path.join(dataDir, 'postgresql.conf'),
      [
        '',
        '# --- standby (scripts/pg-replica.js) ---',
        `unix_socket_directories = '${socketDir.replace(/'/g, "''")}'`,
        `port = ${port}`,
        '',
      ].join('\n'),
    );
    standby = makeCluster({
      index: 1,
      port,
      dataDir,
      socketDir,
      logFile,
      conninfo: conninfoFor(port),
      bindir: primary.bindir,
      osUser: primary.osUser,
    });
    await standby.start();
    await waitFor(
      primary,
      "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
      '1',
      'streaming replication',
    );
    if (opts.synchronous) {
      await psql(primary, "ALTER SYSTEM SET synchronous_standby_names = '*'");
      await psql(primary, 'SELECT pg_reload_conf()');
      await waitFor(
        primary,
        'SELECT sync_state FROM pg_stat_replication',
        'sync',
        'synchronous replication',
      );
    }
  } catch (err) {
    await set.stop();
    throw err;
  }

  const pgCtl = (args) => {
    const [file, argv] = asUser(primary.osUser, path.join(primary.bindir, 'pg_ctl'), args);
    return run(file, argv, { timeout: 90_000, cwd: path.dirname(standby.dataDir) });
  };

  return {
    root: set.root,
    primary,
    standby,
    /** One multi-host entry naming primary then standby, for a writable server. */
    db:
      `host=${HOST},${HOST} port=${primary.port},${standby.port} dbname=postgres user=postgres ` +
      'target_session_attrs=read-write',
    psql,
    /** Crashes the primary (pg_ctl stop -m immediate). */
    kill: () => primary.stop({ mode: 'immediate' }),
    /**
     * Freezes the primary: SIGSTOP to its postmaster and every child. Returns a function that
     * resumes them (SIGCONT); stop() resumes them too.
     */
    hang() {
      const pid = postmasterPid(primary.dataDir);
      if (pid === null) throw new Error('pg-replica: the primary is not running');
      signal([pid], 'SIGSTOP'); // first, so that it starts no new child meanwhile
      const pids = processTree(pid);
      signal(pids, 'SIGSTOP');
      for (const p of pids) hung.add(p);
      return () => {
        signal(pids, 'SIGCONT');
        for (const p of pids) hung.delete(p);
      };
    },
    /** pg_ctl promote on the standby; resolves once it is out of recovery. */
    async promote() {
      const res = await pgCtl(['promote', '-D', standby.dataDir, '-w', '-t', '60']);
      if (res.code !== 0) {
        throw new Error(`pg-replica: pg_ctl promote failed: ${(res.stderr || res.stdout).trim()}`);
      }
    },
    /** Resumes anything hung, stops both servers and removes the directory. Idempotent. */
    async stop() {
      signal([...hung], 'SIGCONT');
      hung.clear();
      await standby.stop({ mode: 'immediate' }).catch(() => {});
      await set.stop();
    },
  };
}

module.exports = { startReplicaPair };
