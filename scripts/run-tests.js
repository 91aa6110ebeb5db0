#!/usr/bin/env node
'use strict';
// `npm test` (after lint): starts three throwaway PostgreSQL clusters, hands them to mocha
// through the environment, runs mocha (arguments pass through: `npm test -- --grep foo`),
// and always tears the clusters down. Exit status is mocha's.
//
//   SESSION_PGSQL_TEST_DB        the three conninfo strings joined by ';' (the `db` option)
//   SESSION_PGSQL_TEST_CLUSTERS  JSON [{ index, port, host, dataDir, socketDir, logFile,
//                                conninfo, bindir, osUser }]; controlFromEnv() in
//                                scripts/pg-cluster.js turns it into stop()/start() handles.
//
// Mocha runs without --exit: a leaked handle hangs the run. A hard guard kills mocha after
// SESSION_PGSQL_TEST_GUARD_MINUTES (default 14) and fails.

const path = require('node:path');
const { spawn } = require('node:child_process');
const { startClusters } = require('./pg-cluster.js');

const ROOT = path.resolve(__dirname, '..');
const CLUSTER_COUNT = 3;
const GUARD_MS = Number(process.env.SESSION_PGSQL_TEST_GUARD_MINUTES || 14) * 60_000;
const KILL_GRACE_MS = 10_000;
const SIGNAL_NUMBERS = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15, SIGKILL: 9 };

function mochaBin() {
  return require.resolve('mocha/bin/mocha.js', { paths: [ROOT] });
}

// Mocha adds spec paths given on the command line to the configured ones; when files
// are named, run just those (same loader, reporter and timeouts as .mocharc.json).
function mochaArgs(args) {
  const files = args.filter((a) => /\.test\.ts$/.test(a));
  if (files.length === 0) return args;
  const rc = require(path.join(ROOT, '.mocharc.json'));
  return [
    '--no-config',
    ...rc.require.flatMap((r) => ['--require', r]),
    '--reporter',
    rc.reporter,
    '--timeout',
    String(rc.timeout),
    '--slow',
    String(rc.slow),
    ...args,
  ];
}

async function main() {
  let set = null;
  let child = null;
  let interrupted = null;
  let guardFired = false;

  // Cluster teardown on exit is installed by pg-cluster.js itself (process 'exit' handler and a
  // watchdog), so a plain process.exit() is always safe here.
  const onSignal = (signal) => {
    if (interrupted) process.exit(128 + SIGNAL_NUMBERS[signal]); // second signal: stop waiting
    interrupted = signal;
    if (child) {
      child.kill(signal);
      setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS).unref();
    }
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, onSignal);

  try {
    set = await startClusters(CLUSTER_COUNT, { handleSignals: false });
  } catch (err) {
    // Ctrl-C during startup also reaches initdb/pg_ctl (same process group): not an error.
    if (interrupted) process.exit(128 + SIGNAL_NUMBERS[interrupted]);
    process.stderr.write(
      `run-tests: could not start the test PostgreSQL clusters:\n${err.message}\n`,
    );
    process.exit(1);
  }
  if (interrupted) {
    await set.stop();
    process.exit(128 + SIGNAL_NUMBERS[interrupted]);
  }

  const env = {
    ...process.env,
    SESSION_PGSQL_TEST_DB: set.clusters.map((c) => c.conninfo).join(';'),
    SESSION_PGSQL_TEST_CLUSTERS: JSON.stringify(set.clusters.map((c) => c.toJSON())),
  };
  child = spawn(process.execPath, [mochaBin(), ...mochaArgs(process.argv.slice(2))], {
    cwd: ROOT,
    env,
    stdio: 'inherit',
  });

  const guard = setTimeout(() => {
    guardFired = true;
    process.stderr.write(
      `\nrun-tests: mocha still running after ${GUARD_MS / 60_000} minutes; killing it. ` +
        `(A test hangs, or a leaked handle keeps mocha from exiting.)\n`,
    );
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS).unref();
  }, GUARD_MS);

  const [code, signal] = await new Promise((resolve) => {
    child.on('error', (err) => {
      process.stderr.write(`run-tests: could not run mocha: ${err.message}\n`);
      resolve([1, null]);
    });
    child.on('exit', (c, s) => resolve([c, s]));
  });
  clearTimeout(guard);
  await set.stop();

  if (guardFired) return 1;
  if (interrupted) return 128 + SIGNAL_NUMBERS[interrupted];
  if (code !== null) return code;
  return 128 + (SIGNAL_NUMBERS[signal] || 0) || 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`run-tests: ${err.stack || err}\n`);
    process.exit(1);
  },
);
