// Process exit (docs/api.md `handler.close()`: no crash, no hang at exit):
// child processes that never call close() end on their own with status 0, whether the handler
// is idle, has operations in flight at process.exit(), cannot reach its server, or was never
// used. A hang is killed after 15 s and fails; a crash shows up as a signal or a bad status.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { db, query, uniqueTable } from './support/db';
import { closedPort, SilentServer } from './support/net';

const FIXTURE = path.join(__dirname, 'fixtures', 'process-exit.js');
const KILL_AFTER_MS = 15_000;

interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  elapsed: number;
  killed: boolean;
}

/** Runs the fixture in a fresh Node process; kills it after 15 s. */
function runChild(args: string[]): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [FIXTURE, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let killed = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, KILL_AFTER_MS);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, elapsed: Date.now() - started, killed });
    });
  });
}

/** Exit status 0, no signal, within 10 s, and nothing alarming on stderr. */
function expectCleanExit(result: ChildResult, stdout: RegExp): void {
  const report = `status ${result.code}, signal ${result.signal}, ${result.elapsed} ms\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
  expect(result.killed, `still running after ${KILL_AFTER_MS} ms (hang)\n${report}`).to.equal(
    false,
  );
  expect(result.signal, report).to.equal(null);
  expect(result.code, report).to.equal(0);
  expect(result.elapsed, report).to.be.below(10_000);
  for (const word of ['Assertion', 'Segmentation', 'FATAL', 'Aborted', 'core dumped']) {
    expect(result.stderr, report).to.not.include(word);
  }
  expect(result.stdout, report).to.match(stdout);
}

describe('lifecycle: process exit without close()', function () {
  this.timeout(30_000);

  it('a process that writes, reads and ends its script exits 0', async () => {
    const result = await runChild(['end-without-close', db(1), uniqueTable('t53')]);
    expectCleanExit(result, /^done$/m);
  });

  it('process.exit(0) with 100 operations in flight exits 0', async () => {
    const result = await runChild(['exit-in-flight', db(1), uniqueTable('t53')]);
    expectCleanExit(result, /^exiting$/m);
  });

  it('a process that ends its script with 100 operations in flight finishes them and exits 0', async () => {
    const table = uniqueTable('t53');
    const result = await runChild(['end-in-flight', db(1), table]);
    expectCleanExit(result, /^\[.*\]$/m);
    const ids = JSON.parse(result.stdout) as string[];
    expect(ids).to.have.length(50);
    const rows = await query<{ count: string }>(
      0,
      `SELECT count(*) FROM "${table}" WHERE sess_id = ANY($1)`,
      [ids],
    );
    expect(Number(rows[0]!.count), 'writes stored').to.equal(50);
  });

  it('a process whose server is unreachable (nothing listening) exits 0', async () => {
    const port = await closedPort();
    const result = await runChild([
      'unreachable',
      `host=127.0.0.1 port=${port} dbname=x user=y`,
      uniqueTable('t53'),
    ]);
    expectCleanExit(result, /^SPG_CONNECT_FAILED$/m);
  });

  it('a process whose server never answers exits 0 once the connect timeout has passed', async () => {
    const silent = new SilentServer();
    const port = await silent.listen();
    try {
      const result = await runChild([
        'unreachable',
        `host=127.0.0.1 port=${port} dbname=x user=y`,
        uniqueTable('t53'),
      ]);
      expectCleanExit(result, /^SPG_CONNECT_TIMEOUT$/m);
    } finally {
      await silent.close();
    }
  });

  it('a process that creates a handler and never uses it exits 0', async () => {
    const result = await runChild(['never-used', db(1), uniqueTable('t53')]);
    expectCleanExit(result, /^done$/m);
  });
});
