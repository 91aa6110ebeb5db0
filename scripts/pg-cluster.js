#!/usr/bin/env node
'use strict';
// Throwaway PostgreSQL clusters for tests, the demo and benchmarks.
//
// Library:
//   const { startClusters, controlFromEnv } = require('./pg-cluster.js');
//   const set = await startClusters(3);          // set.clusters[i].conninfo, .port, ...
//   await set.clusters[0].stop({ mode: 'immediate' });   // simulate a crash
//   await set.clusters[0].start();                       // same port, same data dir
//   await set.stop();                                    // stop every server, remove the temp dir
//
// CLI:
//   node scripts/pg-cluster.js [N] [--json]
//   Starts N clusters (default 1), prints one conninfo per line (or one JSON document with
//   --json), then waits for SIGINT/SIGTERM/SIGHUP or for stdin to close, and tears down.
//
// Everything lives under one fresh temporary directory (os.tmpdir()/session-pgsql-XXXXXX):
// per cluster cN/data (PGDATA), cN/sock (unix_socket_directories), cN/postgres.log.
// Servers listen on 127.0.0.1 only, on a free port picked here (never 5432), trust auth.
// As root, the server tools run as the `postgres` OS user (created as `sessionpgsql` if no
// `postgres` user exists). Teardown happens on set.stop(), on process exit, on SIGINT/SIGTERM/
// SIGHUP, on an uncaught exception, and, through a detached watchdog process, even when this
// process is killed with SIGKILL.

const { execFile, execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const HOST = '127.0.0.1';
const DB_USER = 'postgres';
const FORBIDDEN_PORTS = new Set([5432]);
const START_ATTEMPTS = 5;
const READY_TIMEOUT_MS = 30_000;
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const SIGNAL_NUMBERS = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

// ---------------------------------------------------------------------------------------------
// small helpers

function sleepSync(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function which(name) {
  const dirs = (process.env.PATH || '')
    .split(path.delimiter)
    .concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return null;
}

function shellQuote(word) {
  return `'${String(word).replace(/'/g, `'\\''`)}'`;
}

/** Environment for the PostgreSQL tools: no PG* variables leaking in from the caller. */
function toolEnv() {
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^PG/.test(key)) env[key] = value;
  }
  env.LC_ALL = 'C';
  env.LANG = 'C';
  return env;
}

/** Runs a command; resolves with { code, stdout, stderr } and never rejects on exit status. */
function run(file, args, options = {}) {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      {
        encoding: 'utf8',
        env: toolEnv(),
        timeout: options.timeout || 120_000,
        cwd: options.cwd,
        maxBuffer: 16 << 20,
      },
      (err, stdout, stderr) => {
        let code = 0;
        if (err) code = typeof err.code === 'number' ? err.code : 1;
        if (err && typeof err.code !== 'number' && !stderr) stderr = String(err.message || err);
        resolve({ code, stdout: stdout || '', stderr: stderr || '' });
      },
    );
  });
}

function runSync(file, args, options = {}) {
  try {
    const stdout = execFileSync(file, args, {
      encoding: 'utf8',
      env: toolEnv(),
      timeout: options.timeout || 60_000,
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return { code: 0, stdout, stderr: '' };
  } catch (err) {
    return {
      code: typeof err.status === 'number' ? err.status : 1,
      stdout: String(err.stdout || ''),
      stderr: String(err.stderr || err.message || err),
    };
  }
}

function tail(file, lines = 30) {
  try {
    const text = fs.readFileSync(file, 'utf8').trimEnd();
    return text.split('\n').slice(-lines).join('\n');
  } catch (err) {
    return `(no log: ${err.code || err.message})`;
  }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL binaries and the OS user that runs them

let cachedBindir = null;

/**
 * Directory holding initdb, pg_ctl, postgres and pg_isready: $PG_BINDIR if set, else
 * `pg_config --bindir` (falling back to the newest /usr/lib/postgresql/N/bin when pg_config
 * points at a client-only install).
 */
function findBindir() {
  if (cachedBindir) return cachedBindir;
  const hasServer = (dir) =>
    dir && fs.existsSync(path.join(dir, 'initdb')) && fs.existsSync(path.join(dir, 'pg_ctl'));
  const candidates = [];
  if (process.env.PG_BINDIR) candidates.push(process.env.PG_BINDIR);
  let pgConfigError = null;
  try {
    candidates.push(
      execFileSync('pg_config', ['--bindir'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }).trim(),
    );
  } catch (err) {
    pgConfigError =
      err.code === 'ENOENT' ? 'pg_config not found on PATH' : `pg_config failed: ${err.message}`;
  }
  try {
    const versions = fs
      .readdirSync('/usr/lib/postgresql')
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) candidates.push(`/usr/lib/postgresql/${v}/bin`);
  } catch {
    // not a Debian-style layout
  }
  const found = candidates.find(hasServer);
  if (!found) {
    throw new Error(
      `pg-cluster: cannot find the PostgreSQL server binaries (initdb, pg_ctl)` +
        (pgConfigError ? ` — ${pgConfigError}` : ` in ${candidates.join(', ') || '(nowhere)'}`) +
        `. Install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql libpq-dev) ` +
        `or set PG_BINDIR to the directory holding initdb and pg_ctl.`,
    );
  }
  cachedBindir = found;
  return found;
}

function userIds(name) {
  const uid = runSync('id', ['-u', name]);
  const gid = runSync('id', ['-g', name]);
  if (uid.code !== 0 || gid.code !== 0) return null;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

let cachedOsUser;

/** null when not root (tools run as ourselves); else { name, uid, gid } of the unprivileged user. */
function serverOsUser() {
  if (cachedOsUser !== undefined) return cachedOsUser;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    cachedOsUser = null;
    return null;
  }
  let ids = userIds('postgres');
  let name = 'postgres';
  if (!ids) {
    name = 'sessionpgsql';
    ids = userIds(name);
    if (!ids) {
      const useradd = which('useradd');
      if (!useradd)
        throw new Error(
          'pg-cluster: running as root, no `postgres` user and no useradd to create one',
        );
      const res = runSync(useradd, [
        '--system',
        '--user-group',
        '--no-create-home',
        '--shell',
        '/bin/sh',
        name,
      ]);
      ids = userIds(name); // a parallel run may have created it first: only the outcome matters
      if (!ids) throw new Error(`pg-cluster: useradd ${name} failed: ${res.stderr.trim()}`);
    }
  }
  cachedOsUser = { name, uid: ids.uid, gid: ids.gid };
  return cachedOsUser;
}

/** [file, args] that runs `cmd args` as `osUserName` (or directly when null / not root). */
function asUser(osUserName, cmd, args) {
  if (!osUserName || typeof process.getuid !== 'function' || process.getuid() !== 0)
    return [cmd, args];
  const runuser = which('runuser');
  if (runuser) return [runuser, ['-u', osUserName, '--', cmd, ...args]];
  const su = which('su');
  if (su)
    return [su, [osUserName, '-s', '/bin/sh', '-c', [cmd, ...args].map(shellQuote).join(' ')]];
  throw new Error('pg-cluster: running as root but neither runuser nor su is available');
}

// ---------------------------------------------------------------------------------------------
// ports

function listenOnce(port) {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port, host: HOST, exclusive: true }, () => resolve(server));
  });
}

/** n distinct free loopback ports (all held open at once so they cannot repeat). */
async function freePorts(n) {
  const servers = [];
  try {
    while (servers.length < n) {
      const server = await listenOnce(0);
      const { port } = server.address();
      if (FORBIDDEN_PORTS.has(port)) continue; // keep it open so it is not handed out again
      servers.push(server);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(() => resolve()))));
  }
}

// ---------------------------------------------------------------------------------------------
// one cluster's control (used by the creating process and by controlFromEnv in others)

function postmasterPid(dataDir) {
  try {
    const pid = Number(
      fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0],
    );
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if (err.code !== 'EPERM') return false;
  }
  // A zombie (exited, not yet reaped by init) is not a running server.
  try {
    return !/^\d+ \(.*\) Z/s.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch (err) {
    return err.code === 'ENOENT' ? !fs.existsSync('/proc/self') : true;
  }
}

/** The pid in a daemon's pid file, or null when there is none (yet). */
function readPidFile(file) {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** A daemon's log file, or '' before it has one. */
function readLog(file) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Asks a daemon of ours to stop (SIGTERM) and waits up to 5 s for it to go. */
async function terminateDaemon(pidFile) {
  const pid = readPidFile(pidFile);
  if (!pid || !pidAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    // gone
  }
  for (let i = 0; i < 50 && pidAlive(pid); i++) await sleep(100);
}

/**
 * Synchronously kills a daemon of ours (PgBouncer, Redis) by its pid file and removes its
 * directory: for process exit, where nothing asynchronous runs any more.
 */
function reapDaemon(pidFile, dir) {
  const pid = readPidFile(pidFile);
  if (pid && pidAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

function pgIsReady(bindir, port, timeoutSeconds = 1) {
  return run(
    path.join(bindir, 'pg_isready'),
    ['-q', '-h', HOST, '-p', String(port), '-t', String(timeoutSeconds)],
    {
      timeout: (timeoutSeconds + 5) * 1000,
    },
  );
}

async function waitReady(bindir, port, timeoutMs = READY_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await pgIsReady(bindir, port);
    if (res.code === 0) return;
    if (Date.now() > deadline)
      throw new Error(`pg-cluster: server on port ${port} not ready after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** Sync, best effort: immediate stop of the server in dataDir, SIGKILL if pg_ctl cannot. */
function stopServerSync(bindir, osUserName, dataDir) {
  const pid = postmasterPid(dataDir);
  if (!pid || !pidAlive(pid)) return;
  try {
    const [file, args] = asUser(osUserName, path.join(bindir, 'pg_ctl'), [
      'stop',
      '-D',
      dataDir,
      '-m',
      'immediate',
      '-w',
      '-t',
      '30',
    ]);
    runSync(file, args, { timeout: 40_000, cwd: os.tmpdir() });
  } catch {
    // fall through to the signal
  }
  if (pidAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
    for (let i = 0; i < 50 && pidAlive(pid); i++) sleepSync(100);
  }
}

/**
 * The Cluster object. `info` is { index, port, dataDir, socketDir, logFile, conninfo, bindir,
 * osUser } — the same fields SESSION_PGSQL_TEST_CLUSTERS carries.
 */
function makeCluster(info) {
  const { bindir, dataDir, logFile, port } = info;
  const osUserName = info.osUser || null;
  const cwd = path.dirname(dataDir);
  const pgCtl = (args, timeout) => {
    const [file, argv] = asUser(osUserName, path.join(bindir, 'pg_ctl'), args);
    return run(file, argv, { timeout, cwd });
  };
  let busy = Promise.resolve();
  const serialize = (fn) => {
    const next = busy.then(fn, fn);
    busy = next.catch(() => {});
    return next;
  };

  const cluster = {
    index: info.index,
    port,
    host: HOST,
    socketDir: info.socketDir,
    dataDir,
    logFile,
    bindir,
    osUser: osUserName,
    conninfo: info.conninfo,
    /** true while a postmaster for this data dir is alive (sync, reads postmaster.pid). */
    isRunning() {
      const pid = postmasterPid(dataDir);
      return pid !== null && pidAlive(pid);
    },
    /** pg_ctl stop -m <mode> -w; 'immediate' simulates a crash. No-op when not running. */
    stop({ mode = 'fast' } = {}) {
      if (!['smart', 'fast', 'immediate'].includes(mode)) {
        return Promise.reject(new TypeError(`pg-cluster: unknown stop mode ${mode}`));
      }
      return serialize(async () => {
        if (!cluster.isRunning()) return;
        const res = await pgCtl(['stop', '-D', dataDir, '-m', mode, '-w', '-t', '60'], 90_000);
        if (res.code !== 0 && cluster.isRunning()) {
          throw new Error(
            `pg-cluster: pg_ctl stop -m ${mode} failed on port ${port}: ${res.stderr.trim()}`,
          );
        }
      });
    },
    /** Starts the server again (same port, same data dir) and waits until it accepts connections. */
    start() {
      return serialize(async () => {
        if (!cluster.isRunning()) {
          const res = await pgCtl(
            ['start', '-D', dataDir, '-l', logFile, '-w', '-t', '60'],
            90_000,
          );
          if (res.code !== 0) {
            throw new Error(
              `pg-cluster: pg_ctl start failed on port ${port}: ${(res.stderr || res.stdout).trim()}\n` +
                `--- tail of ${logFile} ---\n${tail(logFile)}`,
            );
          }
        }
        try {
          await waitReady(bindir, port);
        } catch (err) {
          err.message += `\n--- tail of ${logFile} ---\n${tail(logFile)}`;
          throw err;
        }
      });
    },
    /** The same info as one entry of SESSION_PGSQL_TEST_CLUSTERS. */
    toJSON() {
      return {
        index: info.index,
        port,
        host: HOST,
        dataDir,
        socketDir: info.socketDir,
        logFile,
        conninfo: info.conninfo,
        bindir,
        osUser: osUserName,
      };
    },
  };
  return cluster;
}

function conninfoFor(port) {
  return `host=${HOST} port=${port} dbname=postgres user=${DB_USER} connect_timeout=5`;
}

// ---------------------------------------------------------------------------------------------
// teardown registry: process exit, signals, and a watchdog for SIGKILL

const liveSets = new Set();
let exitHandlerInstalled = false;
let signalHandlersInstalled = false;

function onExit() {
  teardownAllSync();
}

function onSignal(signal) {
  teardownAllSync();
  removeSignalHandlers();
  // If nobody else handles the signal, die of it as we would have without our handler.
  if (process.listenerCount(signal) === 0) {
    process.exitCode = 128 + (SIGNAL_NUMBERS[signal] || 0);
    process.kill(process.pid, signal);
  }
}

function removeSignalHandlers() {
  if (!signalHandlersInstalled) return;
  for (const sig of SIGNALS) process.removeListener(sig, onSignal);
  signalHandlersInstalled = false;
}

function updateHandlers() {
  if (liveSets.size > 0 && !exitHandlerInstalled) {
    process.on('exit', onExit);
    exitHandlerInstalled = true;
  } else if (liveSets.size === 0 && exitHandlerInstalled) {
    process.removeListener('exit', onExit);
    exitHandlerInstalled = false;
  }
  const wantSignals = [...liveSets].some((s) => s.handleSignals);
  if (wantSignals && !signalHandlersInstalled) {
    for (const sig of SIGNALS) process.on(sig, onSignal);
    signalHandlersInstalled = true;
  } else if (!wantSignals) {
    removeSignalHandlers();
  }
}

/** Synchronously stops every server this process started and removes their directories. */
function teardownAllSync() {
  for (const set of [...liveSets]) set.teardownSync();
}

function removeDirSync(dir) {
  try {
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    // best effort
  }
}

/** Tears down everything under root: every cN/data with a live postmaster, then the dir. */
function reapRootSync(root, bindir, osUserName) {
  let entries = [];
  try {
    entries = fs.readdirSync(root);
  } catch {
    return; // already gone
  }
  for (const entry of entries) {
    if (/^c\d+$/.test(entry)) stopServerSync(bindir, osUserName, path.join(root, entry, 'data'));
  }
  removeDirSync(root);
}

/**
 * A detached node process running `script` with `args` (its `--watchdog` mode), which tears
 * down what it was given when our end of its stdin pipe closes, i.e. when this process dies by
 * any means, SIGKILL included. Harmless when we cleaned up ourselves. Null if it cannot start.
 */
function spawnWatchdog(script, args) {
  try {
    const child = spawn(process.execPath, [script, '--watchdog', ...args], {
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
      cwd: os.tmpdir(),
    });
    child.on('error', () => {});
    child.stdin.on('error', () => {});
    child.unref();
    child.stdin.unref();
    return child;
  } catch {
    return null;
  }
}

function watchdogMain(root, bindir, osUserName) {
  for (const sig of SIGNALS) process.on(sig, () => {}); // outlive the terminal / process group
  const reap = () => {
    reapRootSync(root, bindir, osUserName || null);
    process.exit(0);
  };
  process.stdin.on('end', reap);
  process.stdin.on('close', reap);
  process.stdin.on('error', reap);
  process.stdin.resume();
}

// ---------------------------------------------------------------------------------------------
// startClusters

function chownTo(target, osUser) {
  if (osUser) fs.chownSync(target, osUser.uid, osUser.gid);
}

async function initCluster(index, root, bindir, osUser) {
  const dir = path.join(root, `c${index}`);
  const dataDir = path.join(dir, 'data');
  const socketDir = path.join(dir, 'sock');
  const logFile = path.join(dir, 'postgres.log');
  fs.mkdirSync(dir, { mode: 0o700 });
  fs.mkdirSync(socketDir, { mode: 0o700 });
  chownTo(dir, osUser);
  chownTo(socketDir, osUser);

  const [file, args] = asUser(osUser && osUser.name, path.join(bindir, 'initdb'), [
    '-D',
    dataDir,
    '-A',
    'trust',
    '-U',
    DB_USER,
    '--no-sync',
    '-E',
    'UTF8',
    '--locale=C',
  ]);
  const res = await run(file, args, { timeout: 180_000, cwd: dir });
  if (res.code !== 0) {
    throw new Error(
      `pg-cluster: initdb failed for cluster ${index} (exit ${res.code}):\n${res.stdout}${res.stderr}`,
    );
  }
  fs.appendFileSync(
    path.join(dataDir, 'postgresql.conf'),
    [
      '',
      '# --- session-pgsql test cluster (scripts/pg-cluster.js) ---',
      `listen_addresses = '${HOST}'`,
      `unix_socket_directories = '${socketDir.replace(/'/g, "''")}'`,
      'max_connections = 200',
      'shared_buffers = 128MB',
      'log_min_messages = warning',
      'logging_collector = off',
      '',
    ].join('\n'),
  );
  return { index, dir, dataDir, socketDir, logFile };
}

async function startWithRetries(layout, firstPort, bindir, osUser) {
  let port = firstPort;
  let lastError = null;
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    if (attempt > 1) [port] = await freePorts(1);
    // The last `port` line wins, so each attempt just appends its choice.
    fs.appendFileSync(path.join(layout.dataDir, 'postgresql.conf'), `port = ${port}\n`);
    const cluster = makeCluster({
      index: layout.index,
      port,
      dataDir: layout.dataDir,
      socketDir: layout.socketDir,
      logFile: layout.logFile,
      conninfo: conninfoFor(port),
      bindir,
      osUser: osUser ? osUser.name : null,
    });
    try {
      await cluster.start();
      return cluster;
    } catch (err) {
      lastError = err;
      stopServerSync(bindir, osUser && osUser.name, layout.dataDir);
      if (attempt < START_ATTEMPTS) {
        process.stderr.write(
          `pg-cluster: cluster ${layout.index} did not start on port ${port}; retrying\n`,
        );
      }
    }
  }
  throw lastError;
}

/**
 * Starts n fresh clusters. opts: { handleSignals = true, quiet = true }.
 * handleSignals: also tear down on SIGINT/SIGTERM/SIGHUP (then re-raise the signal if no other
 * listener handles it). Teardown on process exit and uncaught exceptions is always installed.
 */
async function startClusters(n = 1, opts = {}) {
  if (!Number.isInteger(n) || n < 1)
    throw new TypeError(`pg-cluster: cluster count must be a positive integer`);
  const bindir = findBindir();
  const osUser = serverOsUser();

  let base = os.tmpdir();
  // Unix socket paths are limited to ~107 bytes: stay short.
  if (base.length > 60) base = '/tmp';
  const root = fs.mkdtempSync(path.join(base, 'session-pgsql-'));
  chownTo(root, osUser);

  const set = {
    root,
    clusters: [],
    handleSignals: opts.handleSignals !== false,
    watchdog: null,
    stopped: false,
    teardownSync() {
      if (set.stopped) return;
      set.stopped = true;
      reapRootSync(root, bindir, osUser && osUser.name);
      liveSets.delete(set);
      updateHandlers();
      if (set.watchdog && set.watchdog.stdin) set.watchdog.stdin.destroy();
    },
  };
  liveSets.add(set);
  updateHandlers();
  set.watchdog = spawnWatchdog(__filename, [root, bindir, (osUser && osUser.name) || '']);

  try {
    const ports = await freePorts(n);
    const layouts = await Promise.all(
      Array.from({ length: n }, (_, i) => initCluster(i, root, bindir, osUser)),
    );
    set.clusters = await Promise.all(
      layouts.map((l, i) => startWithRetries(l, ports[i], bindir, osUser)),
    );
  } catch (err) {
    set.teardownSync();
    throw err;
  }

  return {
    root,
    clusters: set.clusters,
    /** Stops every server (immediate) and removes the temp dir. Idempotent. */
    async stop() {
      if (set.stopped) return;
      await Promise.all(set.clusters.map((c) => c.stop({ mode: 'immediate' }).catch(() => {})));
      set.teardownSync();
    },
  };
}

/**
 * Cluster-like objects (stop/start/isRunning, port, conninfo, ...) for the clusters described by
 * SESSION_PGSQL_TEST_CLUSTERS, for use from another process (the tests).
 */
function controlFromEnv(env = process.env) {
  const raw = env.SESSION_PGSQL_TEST_CLUSTERS;
  if (!raw)
    throw new Error(
      'pg-cluster: SESSION_PGSQL_TEST_CLUSTERS is not set (run the tests with `npm test`)',
    );
  const list = JSON.parse(raw);
  if (!Array.isArray(list))
    throw new Error('pg-cluster: SESSION_PGSQL_TEST_CLUSTERS must be a JSON array');
  return list.map((info, index) =>
    makeCluster({
      index: info.index === undefined ? index : info.index,
      port: info.port,
      dataDir: info.dataDir,
      socketDir: info.socketDir,
      logFile: info.logFile || path.join(path.dirname(info.dataDir), 'postgres.log'),
      conninfo: info.conninfo || conninfoFor(info.port),
      bindir: info.bindir || findBindir(),
      osUser: info.osUser === undefined ? (serverOsUser() || { name: null }).name : info.osUser,
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// CLI

async function cliMain(argv) {
  let n = 1;
  let json = false;
  for (const arg of argv) {
    if (arg === '--json') json = true;
    else if (arg === '-h' || arg === '--help') {
      process.stdout.write(
        'usage: node scripts/pg-cluster.js [N] [--json]\n' +
          'Starts N throwaway PostgreSQL clusters on 127.0.0.1, prints their conninfo strings,\n' +
          'and tears them down on SIGINT/SIGTERM or when stdin closes.\n',
      );
      return;
    } else if (/^\d+$/.test(arg) && Number(arg) >= 1) n = Number(arg);
    else {
      process.stderr.write(
        `pg-cluster: unexpected argument ${arg} (usage: pg-cluster.js [N] [--json])\n`,
      );
      process.exitCode = 2;
      return;
    }
  }

  let set = null;
  let shuttingDown = false;
  let pendingSignal = null;
  const shutdown = async (signal) => {
    if (shuttingDown) {
      // second signal: no more waiting
      teardownAllSync();
      process.exit(signal ? 128 + (SIGNAL_NUMBERS[signal] || 0) : 1);
    }
    shuttingDown = true;
    if (set) await set.stop();
    else teardownAllSync();
    process.exit(0);
  };
  for (const sig of SIGNALS) {
    process.on(sig, () => {
      if (!set) pendingSignal = sig;
      else shutdown(sig);
    });
  }

  try {
    set = await startClusters(n, { handleSignals: false });
  } catch (err) {
    teardownAllSync();
    // Ctrl-C during startup also reaches initdb/pg_ctl (same process group): not an error.
    if (pendingSignal) process.exit(128 + (SIGNAL_NUMBERS[pendingSignal] || 0));
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
  if (pendingSignal) return shutdown(pendingSignal);

  if (json) {
    const clusters = set.clusters.map((c) => {
      const { index, port, host, conninfo, dataDir, socketDir, logFile } = c.toJSON();
      return { index, port, host, conninfo, dataDir, socketDir, logFile };
    });
    process.stdout.write(`${JSON.stringify({ clusters })}\n`);
  } else {
    for (const c of set.clusters) process.stdout.write(`${c.conninfo}\n`);
  }
  process.stderr.write(
    `pg-cluster: ${n} cluster(s) running under ${set.root}; Ctrl-C, SIGTERM or closing stdin stops them\n`,
  );

  process.stdin.on('end', () => shutdown(null));
  process.stdin.on('error', () => shutdown(null));
  process.stdin.resume();
}

module.exports = {
  startClusters,
  controlFromEnv,
  findBindir,
  conninfoFor,
  // for scripts/pg-replica.js and scripts/pgbouncer.js
  spawnWatchdog,
  readPidFile,
  reapDaemon,
  terminateDaemon,
  readLog,
  asUser,
  run,
  freePorts,
  makeCluster,
  postmasterPid,
  waitReady,
  which,
  serverOsUser,
  pidAlive,
};

if (require.main === module) {
  if (process.argv[2] === '--watchdog') {
    watchdogMain(process.argv[3], process.argv[4], process.argv[5]);
  } else {
    cliMain(process.argv.slice(2)).catch((err) => {
      process.stderr.write(`${err.stack || err}\n`);
      teardownAllSync();
      process.exit(1);
    });
  }
}
