// worker_threads (docs/behaviour.md; docs/api.md `handler.close()`): each worker gets its own
// addon instance and loop; workers that end with or without close() exit 0 with the right
// data, several run side by side, and a worker terminated (or exiting) with operations in
// flight does not take the process down. That last case runs in a child process, so a crash
// fails the test instead of killing mocha.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { db, query, uniqueTable } from './support/db';

const WORKER = path.join(__dirname, 'fixtures', 'worker-session.js');
const TERMINATE = path.join(__dirname, 'fixtures', 'worker-terminate.js');

interface WorkerReport {
  id?: string;
  data?: string;
  accesses?: number;
  checked?: number;
  error?: string;
  code?: string;
}

interface WorkerResult {
  exitCode: number | null;
  messages: WorkerReport[];
  errors: Error[];
}

/** Runs fixtures/worker-session.js; terminates it (and fails) if it has not exited in 20 s. */
function runWorker(workerData: {
  db: string;
  table: string;
  close: boolean;
  ops?: number;
}): Promise<WorkerResult> {
  return new Promise((resolve) => {
    const worker = new Worker(WORKER, { workerData });
    const messages: WorkerReport[] = [];
    const errors: Error[] = [];
    let hung = false;
    const timer = setTimeout(() => {
      hung = true;
      void worker.terminate();
    }, 20_000);
    worker.on('message', (message: WorkerReport) => messages.push(message));
    worker.on('error', (error) => errors.push(error));
    worker.on('exit', (exitCode) => {
      clearTimeout(timer);
      if (hung) errors.push(new Error('the worker did not exit within 20 s'));
      resolve({ exitCode, messages, errors });
    });
  });
}

function expectCleanWorker(result: WorkerResult): WorkerReport {
  const report = JSON.stringify(result.messages) + result.errors.map(String).join('\n');
  expect(result.errors, report).to.deep.equal([]);
  expect(result.exitCode, report).to.equal(0);
  expect(result.messages, report).to.have.length(1);
  const message = result.messages[0]!;
  expect(message.error, report).to.equal(undefined);
  return message;
}

async function storedData(table: string, id: string): Promise<string[]> {
  const rows = await query<{ sess_data: string }>(
    0,
    `SELECT sess_data FROM "${table}" WHERE sess_id = $1`,
    [id],
  );
  return rows.map((r) => r.sess_data);
}

describe('lifecycle: worker_threads', function () {
  this.timeout(60_000);

  it('a worker that writes, reads and ends without close() exits 0 with the right data', async () => {
    const table = uniqueTable('t54');
    const message = expectCleanWorker(await runWorker({ db: db(1), table, close: false }));
    expect(message.data).to.match(/^from worker \d+$/);
    expect(message.accesses).to.equal(2);
    expect(await storedData(table, message.id!)).to.deep.equal([message.data]);
  });

  it('a worker that calls close() before it ends exits 0 with the right data', async () => {
    const table = uniqueTable('t54');
    const message = expectCleanWorker(await runWorker({ db: db(1), table, close: true }));
    expect(message.data).to.match(/^from worker \d+$/);
    expect(await storedData(table, message.id!)).to.deep.equal([message.data]);
  });

  it('4 workers at once, 200 operations each, all exit 0 with every read right', async () => {
    const table = uniqueTable('t54');
    // The workers also race to create the table.
    const results = await Promise.all(
      [0, 1, 2, 3].map(() => runWorker({ db: db(1), table, close: false, ops: 200 })),
    );
    const messages = results.map(expectCleanWorker);
    for (const message of messages) {
      expect(message.checked).to.equal(100);
      expect(await storedData(table, message.id!)).to.deep.equal([message.data]);
    }
    expect(new Set(messages.map((m) => m.data)).size, 'distinct workers').to.equal(4);
    const [rows] = await query<{ count: string }>(0, `SELECT count(*) FROM "${table}"`);
    expect(Number(rows?.count)).to.equal(4 * 101);
  });

  it('terminating workers with operations in flight does not crash the process', async () => {
    const started = Date.now();
    const child = spawn(process.execPath, [TERMINATE, db(1), uniqueTable('t54'), '', '3'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, 40_000);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      child.on('close', (c, s) => resolve([c, s])),
    );
    clearTimeout(timer);

    const report = `status ${code}, signal ${signal}, ${Date.now() - started} ms\nstdout: ${stdout}\nstderr: ${stderr.slice(0, 2000)}`;
    expect(killed, `still running after 40 s (hang)\n${report}`).to.equal(false);
    expect(signal, report).to.equal(null);
    expect(code, report).to.equal(0);
    for (const word of ['Assertion', 'Segmentation', 'FATAL', 'Aborted']) {
      expect(stderr, report).to.not.include(word);
    }
    const results = JSON.parse(stdout) as Array<{ moment: string; code: number }>;
    expect(results.length, report).to.be.at.least(12);
    for (const r of results) {
      // terminate() makes the worker exit with 1; a worker's own process.exit(0) with 0.
      expect(r.code, JSON.stringify(r)).to.equal(r.moment === 'exit-in-flight' ? 0 : 1);
    }
  });
});
