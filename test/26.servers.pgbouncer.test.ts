// Behind PgBouncer (docs/operations.md, Connection poolers), in transaction and in session pooling, with
// default_pool_size 2 so that clients share backends: a second handler starting on backends the
// first one used, handlers in several processes at once, two handlers with different tables on
// one pool, and the server settings that the next client of the pool sees. Transaction pooling
// runs with `pooler: 'transaction'`, session pooling with the default. The default on
// transaction pooling is covered too: a restart on backends that still hold our statements
// works, and a statement missing on the backend names the pooler option in its hint.
//
// Needs the pgbouncer binary (Debian: apt-get install pgbouncer; .ci/run installs it); without
// it these tests are skipped with a message saying so.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { expect } from 'chai';
import { Client } from 'pg';
import { hashedMode } from './support/hash-mode';
import { SessionPgsql, SessionPgsqlError, type SessionPgsqlOptions } from '../lib';
import { findPgbouncer, startPgbouncer, type Pgbouncer } from '../scripts/pgbouncer';
import { clusters, newId, query, uniqueTable } from './support/db';
import { closedAfterEach } from './support/handlers';

const FIXTURE = path.join(__dirname, 'fixtures', 'pooler-worker.js');
const SETTINGS = ['statement_timeout', 'plan_cache_mode', 'synchronous_commit'];
const MISSING = 'pgbouncer is not installed (Debian: apt-get install pgbouncer): skipped';

interface WorkerReport {
  ops: number;
  failures: Record<string, number>;
  wrong: number;
  samples: string[];
}

/** Runs the worker fixture; resolves to its report, rejects on a non-zero exit or timeout. */
function worker(options: SessionPgsqlOptions, ops: number, untilMs: number): Promise<WorkerReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [FIXTURE, JSON.stringify(options), String(ops), String(untilMs)],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), untilMs - Date.now() + 20_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`worker ${child.pid} exited ${code ?? signal}:\n${stdout}${stderr}`));
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

/** A plain client (node-postgres) connected through `bouncer`. */
async function plainClient(bouncer: Pgbouncer): Promise<Client> {
  const c = new Client({
    host: '127.0.0.1',
    port: bouncer.port,
    user: 'postgres',
    database: 'postgres',
  });
  await c.connect();
  return c;
}

/** Writes a new session through `handler` and reads it back; returns its id. */
async function roundTrip(handler: SessionPgsql, data = `v ${newId()}`): Promise<string> {
  const id = newId();
  expect(await handler.write(await handler.read(id), data)).to.equal(true);
  expect((await handler.read(id)).data).to.equal(data);
  return id;
}

/** The ids stored in `table` on test server 0 (read directly, not through the pooler). */
async function ids(table: string): Promise<string[]> {
  const rows = await query<{ sess_id: string }>(0, `SELECT sess_id FROM "${table}" ORDER BY 1`);
  // In hashed mode the rows come in the order of their stored keys: sorted again as ids.
  return hashedMode ? rows.map((r) => r.sess_id).sort() : rows.map((r) => r.sess_id);
}

describe('26 servers: behind PgBouncer', function () {
  this.timeout(90_000);

  it("pooler accepts 'none' and 'transaction'; anything else names the option and value", () => {
    for (const pooler of ['none', 'transaction'] as const) {
      const handler = new SessionPgsql({ db: 'host=127.0.0.1 port=1', pooler });
      void handler.close();
    }
    for (const pooler of ['session', '', 1, true]) {
      expect(() => new SessionPgsql({ pooler: pooler as never }))
        .to.throw(SessionPgsqlError, /"pooler"/)
        .that.satisfies(
          (e: SessionPgsqlError) =>
            e.code === 'SPG_INVALID_OPTION' && e.message.includes(String(JSON.stringify(pooler))),
        );
    }
  });

  it("pooler 'transaction' refuses synchronousCommit: false (a session setting) and says why", () => {
    expect(() => new SessionPgsql({ pooler: 'transaction', synchronousCommit: false }))
      .to.throw(SessionPgsqlError, /"synchronousCommit".*"pooler".*ALTER ROLE/)
      .with.property('code', 'SPG_INVALID_OPTION');
  });

  const modes = [
    { poolMode: 'transaction', options: { pooler: 'transaction' }, processes: 4, connections: 2 },
    // Session pooling gives each client connection a backend of its own for as long as it
    // stays connected: with two backends, two processes with one connection each.
    { poolMode: 'session', options: {}, processes: 2, connections: 1 },
  ] as const;

  for (const mode of modes) {
    describe(`${mode.poolMode} pooling, default_pool_size 2${mode.poolMode === 'transaction' ? ", pooler: 'transaction'" : ''}`, () => {
      let bouncer: Pgbouncer | undefined;
      const handlers = closedAfterEach<SessionPgsql>();
      const make = (table: string, options: SessionPgsqlOptions = {}): SessionPgsql =>
        handlers.keep(
          new SessionPgsql({
            db: bouncer!.conninfo,
            table,
            gcInterval: 0,
            vacuumInterval: 0,
            ...mode.options,
            ...options,
          }),
        );

      before(async function () {
        if (!findPgbouncer()) {
          console.log(`      ${MISSING}`);
          this.skip();
        }
        bouncer = await startPgbouncer({
          serverPort: clusters()[0]!.port,
          poolMode: mode.poolMode,
        });
      });
      after(() => bouncer?.stop());

      it('a second handler starts on the pooled backends the first one used; both work', async () => {
        const table = uniqueTable('pgb');
        const first = make(table);
        await first.open();
        await roundTrip(first);
        const second = make(table);
        await second.open();
        await roundTrip(second);
        await roundTrip(first);
        // A restart: the first goes away, a third starts on the same backends.
        await first.close();
        const third = make(table);
        await third.open();
        await roundTrip(third);
        await roundTrip(second);
      });

      it('writes issued together still commit together: one transaction, one xmin', async () => {
        const table = uniqueTable('pgb');
        const handler = make(table);
        await handler.open();
        const sessions = await Promise.all(Array.from({ length: 10 }, () => handler.read(newId())));
        // Same tick, no await in between: one batch.
        await Promise.all(sessions.map((s) => handler.write(s, 'batched')));
        const rows = await query<{ xmin: string }>(0, `SELECT xmin::text FROM "${table}"`);
        expect(rows).to.have.length(10);
        expect(new Set(rows.map((r) => r.xmin)).size, 'transactions').to.equal(1);
      });

      it('handlers in several processes write and read concurrently with 0 failures', async () => {
        const table = uniqueTable('pgb');
        const options = {
          db: bouncer!.conninfo,
          table,
          connections: mode.connections,
          ...mode.options,
        };
        // The table exists before the workers race for it (that race is test 10's business).
        await make(table).open();
        const until = Date.now() + 15_000;
        const reports = await Promise.all(
          Array.from({ length: mode.processes }, () => worker(options, 150, until)),
        );
        for (const report of reports) {
          expect(report.failures, report.samples.join('\n')).to.deep.equal({});
          expect(report.wrong, 'reads that did not return the value just written').to.equal(0);
          expect(report.ops).to.be.greaterThan(0);
        }
        const total = reports.reduce((n, r) => n + r.ops, 0);
        expect(await ids(table)).to.have.length(total);
      });

      it('two handlers with different tables on one pool each see only their own table', async () => {
        const tables = [uniqueTable('pgb_a'), uniqueTable('pgb_b')];
        const pair = tables.map((table) => make(table, { connections: mode.connections }));
        await Promise.all(pair.map((h) => h.open()));
        const written: string[][] = [[], []];
        // Interleaved and concurrent, so both run on both backends.
        await Promise.all(
          Array.from({ length: 40 }, async (_, i) => {
            const which = i % 2;
            written[which]!.push(await roundTrip(pair[which]!, `table ${tables[which]}`));
          }),
        );
        for (const which of [0, 1]) {
          expect(await ids(tables[which]!)).to.deep.equal([...written[which]!].sort());
          const other = written[1 - which]![0]!;
          expect((await pair[which]!.read(other)).isNew, 'the other table’s session').to.equal(
            true,
          );
        }
      });

      it('after our handler ran, a plain client of the pool sees the server defaults', async () => {
        const table = uniqueTable('pgb');
        const handler = make(table, {
          connections: 2,
          statementTimeout: 7,
          // Refused with pooler 'transaction' (a test above).
          ...(mode.poolMode === 'session' ? { synchronousCommit: false } : {}),
        });
        await handler.open();
        await Promise.all(Array.from({ length: 20 }, () => roundTrip(handler)));
        await handler.close();
        const direct = await query<Record<string, string>>(
          0,
          `SELECT ${SETTINGS.map((s) => `current_setting('${s}') AS ${s}`).join(', ')}`,
        );
        // Two clients in open transactions at once hold both backends of the pool.
        const plain = [await plainClient(bouncer!), await plainClient(bouncer!)];
        try {
          const seen = [];
          for (const c of plain) {
            await c.query('BEGIN');
            const [row] = (
              await c.query(
                `SELECT pg_backend_pid() AS pid, ${SETTINGS.map((s) => `current_setting('${s}') AS ${s}`).join(', ')}`,
              )
            ).rows;
            seen.push(row);
          }
          expect(seen[0].pid, 'two backends').to.not.equal(seen[1].pid);
          for (const row of seen) {
            const { pid: _pid, ...settings } = row;
            expect(settings, `backend ${row.pid}`).to.deep.equal(direct[0]);
          }
        } finally {
          await Promise.all(plain.map((c) => c.end()));
        }
      });
    });
  }

  describe("the default (pooler 'none') on transaction pooling", () => {
    const handlers = closedAfterEach<SessionPgsql>();
    const bouncers: Pgbouncer[] = [];
    before(function () {
      if (!findPgbouncer()) {
        console.log(`      ${MISSING}`);
        this.skip();
      }
    });
    after(() => Promise.all(bouncers.splice(0).map((b) => b.stop())));
    async function bouncer(poolSize: number): Promise<Pgbouncer> {
      const b = await startPgbouncer({ serverPort: clusters()[0]!.port, poolSize });
      bouncers.push(b);
      return b;
    }
    const make = (b: Pgbouncer, table: string): SessionPgsql =>
      handlers.keep(new SessionPgsql({ db: b.conninfo, table, gcInterval: 0, vacuumInterval: 0 }));

    it('a restart on a backend that still holds our prepared statements works', async () => {
      // One backend: the second start meets every statement the first one prepared.
      const b = await bouncer(1);
      const table = uniqueTable('pgb');
      const first = make(b, table);
      await first.open();
      const id = await roundTrip(first, 'before the restart');
      await first.close();
      const second = make(b, table);
      await second.open();
      expect((await second.read(id)).data).to.equal('before the restart');
      await roundTrip(second);
    });

    it('two handlers with different tables on one backend each run only their own statements', async () => {
      // One backend holds both handlers' statements at once: only names derived from the text
      // keep the second handler from running the first one's statements (same name, other table).
      const b = await bouncer(1);
      const tables = [uniqueTable('pgb_a'), uniqueTable('pgb_b')];
      const pair = tables.map((table) => make(b, table));
      for (const h of pair) await h.open();
      const written = [await roundTrip(pair[0]!), await roundTrip(pair[1]!)];
      expect(await ids(tables[0]!)).to.deep.equal([written[0]]);
      expect(await ids(tables[1]!)).to.deep.equal([written[1]]);
    });

    it("a statement missing on the pooled backend fails with a hint naming pooler: 'transaction'", async () => {
      const b = await bouncer(2);
      const table = uniqueTable('pgb');
      const handler = make(b, table);
      await handler.open();
      // Both backends held by plain clients; the one where our handler prepared its statements
      // stays held, the other is let go, and the handler's next transaction lands on it.
      const plain = [await plainClient(b), await plainClient(b)];
      try {
        const prepared: number[] = [];
        for (const c of plain) {
          await c.query('BEGIN');
          const [row] = (
            await c.query(
              "SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name LIKE 'spg%'",
            )
          ).rows;
          prepared.push(row.n);
        }
        expect(
          prepared.filter((n) => n > 0),
          'backends holding our statements',
        ).to.have.length(1);
        await plain[prepared.findIndex((n) => n === 0)]!.query('COMMIT');
        const outcome = await handler.read(newId()).then(
          () => null,
          (err: unknown) => err,
        );
        expect(outcome).to.be.instanceOf(SessionPgsqlError);
        const error = outcome as SessionPgsqlError;
        expect(error.code, error.message).to.equal('26000');
        expect(error.hint ?? '', 'hint').to.include("pooler: 'transaction'");
      } finally {
        await Promise.all(plain.map((c) => c.end()));
      }
    });
  });
});
