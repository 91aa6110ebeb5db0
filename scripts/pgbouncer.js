'use strict';
// A throwaway PgBouncer in front of one test cluster, for the pooler tests.
//
//   const { findPgbouncer, startPgbouncer } = require('./pgbouncer.js');
//   if (!findPgbouncer()) ...skip...
//   const bouncer = await startPgbouncer({ serverPort: 5433, poolMode: 'transaction' });
//   bouncer.conninfo   // host=127.0.0.1 port=N dbname=postgres user=postgres ...
//   await bouncer.stop();
//
// Its own config, auth file, pid file and log in a fresh temporary directory, a free loopback
// port, trust auth, default_pool_size 2 (so clients share backends), run as the `postgres` OS
// user when we are root. Stopped by stop(), on process exit, and, through a detached watchdog
// process, even when this process is killed with SIGKILL.

const { execFile } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const {
  which,
  serverOsUser,
  asUser,
  freePorts,
  readPidFile,
  reapDaemon,
  readLog,
  terminateDaemon,
  conninfoFor,
  spawnWatchdog,
} = require('./pg-cluster.js');

const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 15_000;
const live = new Set();

/** The pgbouncer binary, or null when it is not installed. */
function findPgbouncer() {
  return process.env.PGBOUNCER || which('pgbouncer');
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: HOST, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function stopSync(bouncer) {
  reapDaemon(bouncer.pidFile, bouncer.dir);
  if (bouncer.watchdog) bouncer.watchdog.stdin.destroy();
  live.delete(bouncer);
}

process.on('exit', () => {
  for (const bouncer of [...live]) stopSync(bouncer);
});

/**
 * Starts PgBouncer in front of the PostgreSQL server on `serverPort`.
 * opts: { serverPort, poolMode = 'transaction', poolSize = 2, extra = {} (more [pgbouncer] settings) }.
 */
async function startPgbouncer({ serverPort, poolMode = 'transaction', poolSize = 2, extra = {} }) {
  const binary = findPgbouncer();
  if (!binary) throw new Error('pgbouncer: not installed (Debian: apt-get install pgbouncer)');
  const osUser = serverOsUser();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'session-pgsql-pgbouncer-'));
  if (osUser) fs.chownSync(dir, osUser.uid, osUser.gid);
  const [port] = await freePorts(1);
  const file = (name) => path.join(dir, name);
  const settings = {
    listen_addr: HOST,
    listen_port: port,
    unix_socket_dir: '',
    auth_type: 'trust',
    auth_file: file('userlist.txt'),
    admin_users: 'postgres',
    pool_mode: poolMode,
    default_pool_size: poolSize,
    max_client_conn: 500,
    logfile: file('pgbouncer.log'),
    pidfile: file('pgbouncer.pid'),
    ...extra,
  };
  fs.writeFileSync(file('userlist.txt'), '"postgres" ""\n');
  fs.writeFileSync(
    file('pgbouncer.ini'),
    [
      '[databases]',
      `* = host=${HOST} port=${serverPort}`,
      '[pgbouncer]',
      ...Object.entries(settings).map(([k, v]) => `${k} = ${v}`),
      '',
    ].join('\n'),
  );
  if (osUser) {
    for (const name of ['userlist.txt', 'pgbouncer.ini']) {
      fs.chownSync(file(name), osUser.uid, osUser.gid);
    }
  }
  const bouncer = {
    port,
    dir,
    pidFile: file('pgbouncer.pid'),
    logFile: file('pgbouncer.log'),
    poolMode,
    conninfo: conninfoFor(port),
    log: () => readLog(bouncer.logFile),
    /** Stops PgBouncer (SIGTERM, then SIGKILL) and removes its directory. Idempotent. */
    async stop() {
      if (!live.has(bouncer)) return;
      await terminateDaemon(bouncer.pidFile);
      stopSync(bouncer);
    },
  };
  live.add(bouncer);
  // Reaps PgBouncer once our end of its stdin closes (we died).
  bouncer.watchdog = spawnWatchdog(__filename, [bouncer.pidFile, dir]);
  const [cmd, args] = asUser(osUser && osUser.name, binary, ['-d', '-q', file('pgbouncer.ini')]);
  const started = await new Promise((resolve) => {
    execFile(cmd, args, { cwd: dir, timeout: READY_TIMEOUT_MS }, (err, stdout, stderr) =>
      resolve(err ? `${err.message}\n${stdout}${stderr}` : null),
    );
  });
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (started === null && !(await canConnect(port)) && Date.now() < deadline) await sleep(50);
  if (started !== null || !(await canConnect(port))) {
    const log = bouncer.log();
    await bouncer.stop();
    throw new Error(`pgbouncer did not start on port ${port}: ${started || ''}\n${log}`);
  }
  return bouncer;
}

module.exports = { findPgbouncer, startPgbouncer };

if (require.main === module && process.argv[2] === '--watchdog') {
  const [pidFile, dir] = process.argv.slice(3);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => {});
  const reap = () => {
    reapDaemon(pidFile, dir);
    process.exit(0);
  };
  process.stdin.on('end', reap);
  process.stdin.on('close', reap);
  process.stdin.on('error', reap);
  process.stdin.resume();
}
