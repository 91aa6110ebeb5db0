'use strict';
// A throwaway redis-server, for the benchmark's connect-redis contender (and any test that
// wants one).
//
//   const { findRedisServer, startRedis } = require('./redis-server.js');
//   if (!findRedisServer()) ...skip...
//   const redis = await startRedis();
//   redis.url      // redis://127.0.0.1:N
//   await redis.stop();
//
// Its own config, data directory, pid file and log in a fresh temporary directory, a free
// loopback port (never 6379, so a system Redis is left alone), and Redis's default persistence:
// RDB snapshots (save 3600 1 300 100 60 10000), no append-only file, as Debian's package runs
// it. Stopped by stop(), on process exit, and, through a detached watchdog process, even when
// this process is killed with SIGKILL.

const { execFile } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const {
  which,
  freePorts,
  readPidFile,
  reapDaemon,
  readLog,
  terminateDaemon,
  spawnWatchdog,
} = require('./pg-cluster.js');

const HOST = '127.0.0.1';
const SYSTEM_PORT = 6379;
const READY_TIMEOUT_MS = 15_000;
/** Redis's built-in snapshot points, the ones Debian's redis.conf leaves in force. */
const DEFAULT_SAVE = '3600 1 300 100 60 10000';
const live = new Set();

/** The redis-server binary ($REDIS_SERVER, else on PATH or in /usr/bin), or null. */
function findRedisServer() {
  return process.env.REDIS_SERVER || which('redis-server');
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Sends one inline command; resolves to the first reply line, or null on any failure. */
function command(port, text, timeoutMs = 2000) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: HOST, port });
    let reply = '';
    const done = (value) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    socket.once('connect', () => socket.write(`${text}\r\n`));
    socket.on('data', (d) => {
      reply += d;
      const end = reply.indexOf('\r\n');
      if (end >= 0) done(reply.slice(0, end));
    });
    socket.once('error', () => done(null));
    socket.once('close', () => done(reply || null));
  });
}

function stopSync(server) {
  reapDaemon(server.pidFile, server.dir);
  if (server.watchdog) server.watchdog.stdin.destroy();
  live.delete(server);
}

process.on('exit', () => {
  for (const server of [...live]) stopSync(server);
});

/**
 * Starts redis-server on a free loopback port; resolves once it answers PING.
 * opts: { save = Redis's default snapshot points ('' for none), extra = {} (more settings) }.
 */
async function startRedis({ save = DEFAULT_SAVE, extra = {} } = {}) {
  const binary = findRedisServer();
  if (!binary)
    throw new Error('redis-server: not installed (Debian: apt-get install redis-server)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'session-pgsql-redis-'));
  let port;
  do [port] = await freePorts(1);
  while (port === SYSTEM_PORT);
  const file = (name) => path.join(dir, name);
  const settings = {
    bind: HOST,
    port,
    'protected-mode': 'yes',
    daemonize: 'yes',
    pidfile: file('redis.pid'),
    logfile: file('redis.log'),
    dir,
    dbfilename: 'dump.rdb',
    save: save === '' ? '""' : save,
    appendonly: 'no',
    // A throwaway: stopping it must not first write a snapshot of everything it holds.
    'shutdown-on-sigterm': 'nosave',
    'shutdown-on-sigint': 'nosave',
    ...extra,
  };
  fs.writeFileSync(
    file('redis.conf'),
    `${Object.entries(settings)
      .map(([k, v]) => `${k} ${v}`)
      .join('\n')}\n`,
  );
  const server = {
    port,
    dir,
    pidFile: file('redis.pid'),
    logFile: file('redis.log'),
    url: `redis://${HOST}:${port}`,
    binary,
    /** The process id, or null before it has written its pid file. */
    pid() {
      return readPidFile(server.pidFile);
    },
    log: () => readLog(server.logFile),
    /** Stops redis-server (SIGTERM without a final save, then SIGKILL) and removes its directory. */
    async stop() {
      if (!live.has(server)) return;
      await terminateDaemon(server.pidFile);
      stopSync(server);
    },
  };
  live.add(server);
  // Reaps redis-server once our end of its stdin closes (we died).
  server.watchdog = spawnWatchdog(__filename, [server.pidFile, dir]);
  const started = await new Promise((resolve) => {
    execFile(binary, [file('redis.conf')], { cwd: dir, timeout: READY_TIMEOUT_MS }, (err, o, e) =>
      resolve(err ? `${err.message}\n${o}${e}` : null),
    );
  });
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let ready = false;
  while (started === null && Date.now() < deadline) {
    if ((await command(port, 'PING')) === '+PONG') {
      ready = true;
      break;
    }
    await sleep(50);
  }
  if (!ready) {
    const log = server.log();
    await server.stop();
    throw new Error(`redis-server did not start on port ${port}: ${started || ''}\n${log}`);
  }
  return server;
}

module.exports = { findRedisServer, startRedis, DEFAULT_SAVE };

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
