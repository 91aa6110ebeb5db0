// Cross-process coordination of GC (docs/operations.md, Garbage collection): three handlers in separate processes, each
// with gcInterval 1 s, on the same servers and table, run GC about once per second per server
// between them (counted from the record table), not three times as often.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { expect } from 'chai';
import { SessionPgsql } from '../lib';
import { db, newId, query, uniqueTable } from './support/db';

const FIXTURE = path.join(__dirname, 'fixtures', 'housekeeping-gc-worker.js');
const NOW = 'floor(extract(epoch from now()))::bigint';
const PROCESSES = 3;
const WINDOW_MS = 6000;

interface WorkerReport {
  servers: number[][];
  states: string[];
  ops: number;
}

/** Runs the fixture; resolves to its JSON report, rejects on a non-zero exit or timeout. */
function worker(args: string[], timeoutMs: number): Promise<WorkerReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FIXTURE, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`worker ${child.pid} exited ${code ?? signal}:\n${stdout}${stderr}`));
        return;
      }
      if (/gc error|warning/.test(stderr)) {
        reject(new Error(`worker ${child.pid} reported:\n${stderr}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout) as WorkerReport);
      } catch (err) {
        reject(new Error(`worker ${child.pid} printed ${JSON.stringify(stdout)}: ${err}`));
      }
    });
  });
}

describe('31 housekeeping: GC coordinated across processes', function () {
  this.timeout(60_000);
  let table: string;

  beforeEach(() => {
    table = uniqueTable('hk_co');
  });

  async function runs(server: number): Promise<number> {
    const rows = await query<{ runs: string }>(
      server,
      'SELECT runs FROM session_pgsql_housekeeping WHERE job = $1',
      [`gc "${table}"`],
    );
    expect(rows, `record row for gc "${table}" on server ${server}`).to.have.length(1);
    return Number(rows[0]!.runs);
  }

  /** Creates the table on the first `n` servers and puts expired rows in it. */
  async function prepare(n: number): Promise<void> {
    const handler = new SessionPgsql({ db: db(n), table, gcInterval: 0, vacuumInterval: 0 });
    try {
      await handler.open();
    } finally {
      await handler.close();
    }
    for (let server = 0; server < n; server++) {
      await query(
        server,
        `INSERT INTO ${table} (sess_id, sess_expire) SELECT $1 || g, ${NOW} - 60
         FROM generate_series(1, 100) g`,
        [newId()],
      );
    }
  }

  async function fleet(n: number): Promise<WorkerReport[]> {
    const start = Date.now() + 1500; // every process has started node by then
    const until = start + WINDOW_MS;
    return Promise.all(
      Array.from({ length: PROCESSES }, () =>
        worker([db(n), table, String(start), String(until), '1'], WINDOW_MS + 15_000),
      ),
    );
  }

  function check(server: number, reports: WorkerReport[], recorded: number): void {
    const perProcess = reports.map((r) => r.servers[server]!.length);
    const all = reports.flatMap((r) => r.servers[server]!).sort((a, b) => a - b);
    const gaps = all.slice(1).map((at, i) => at - all[i]!);
    console.log(
      `      server ${server}: ${recorded} runs recorded; per process ${perProcess.join(' + ')}; ` +
        `smallest gap ${gaps.length ? Math.min(...gaps).toFixed(3) : '-'} s`,
    );
    // About once per second over ~6 s between the three processes; uncoordinated it would be ~18.
    expect(recorded, `runs recorded on server ${server}`).to.be.within(3, 8);
    // What the processes saw themselves agrees with the record (a run claimed just as a process
    // closed may be missing from its own view).
    expect(all.length, `runs seen by the processes on server ${server}`).to.be.within(
      recorded - PROCESSES,
      recorded,
    );
    // Never two runs close together. The claims are >= 1 s apart by the database clock; `at` is
    // taken when a run is queued, before its claim executes, hence the slack. Uncoordinated
    // processes with random phases would often be well under 0.5 s apart.
    for (const gap of gaps) expect(gap, 'seconds between two GC runs').to.be.at.least(0.5);
    // More than one process took part in the work is likely but not guaranteed; at least one did.
    expect(perProcess.some((n) => n > 0)).to.equal(true);
  }

  it('three processes on one server run GC about once per interval between them, not three times', async () => {
    await prepare(1);
    const reports = await fleet(1);
    for (const r of reports) expect(r.ops).to.be.above(0);
    check(0, reports, await runs(0));
    const [left] = await query<{ n: number }>(
      0,
      `SELECT count(*)::int AS n FROM ${table}
      WHERE sess_expire < ${NOW}`,
    );
    expect(left!.n, 'expired rows left').to.equal(0);
  });

  it('across two servers each server keeps its own record and count', async () => {
    await prepare(2);
    const reports = await fleet(2);
    for (const r of reports) expect(r.states).to.have.length(2);
    const counts = [await runs(0), await runs(1)];
    check(0, reports, counts[0]!);
    check(1, reports, counts[1]!);
    for (const server of [0, 1]) {
      const [left] = await query<{ n: number }>(
        server,
        `SELECT count(*)::int AS n FROM ${table} WHERE sess_expire < ${NOW}`,
      );
      expect(left!.n, `expired rows left on server ${server}`).to.equal(0);
    }
  });

  it('handlers of different tables starting together in a schema without the record table all open', async () => {
    // The record table is shared by every session table of a schema; creating it must not race
    // (CREATE TABLE IF NOT EXISTS run concurrently can fail with 23505 on pg_type).
    const failures: string[] = [];
    const schemas: string[] = [];
    try {
      for (let round = 0; round < 8; round++) {
        const schema = uniqueTable('hk_co_schema');
        schemas.push(schema);
        await query(0, `CREATE SCHEMA ${schema}`);
        const handlers = Array.from(
          { length: 6 },
          (_, i) =>
            new SessionPgsql({
              db: db(1),
              table: `${schema}.t${i}`,
              gcInterval: 0,
              vacuumInterval: 0,
            }),
        );
        const results = await Promise.allSettled(handlers.map((h) => h.open()));
        await Promise.all(handlers.map((h) => h.close()));
        results.forEach((r, i) => {
          if (r.status === 'rejected') {
            const e = r.reason as { code?: string; message?: string };
            failures.push(`round ${round} table t${i}: ${e.code} ${e.message}`);
          }
        });
      }
    } finally {
      for (const schema of schemas) await query(0, `DROP SCHEMA ${schema} CASCADE`);
    }
    expect(failures, 'open() failures').to.deep.equal([]);
  });
});
