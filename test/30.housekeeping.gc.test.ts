// Garbage collection (docs/operations.md, Garbage collection): gc() removes expired rows and keeps live ones,
// keepExpired keeps expired rows for one more lifetime, a large backlog goes in bounded batches
// while session traffic keeps flowing, status() and the record table report the run, and the
// gcInterval timer runs GC by itself (and never when 0) without keeping the process alive.
// GC walks a table without an expiry index by TID ranges (PostgreSQL 14+) and one with the
// index through it, with the same rules either way, on a connection of its own.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { expect } from 'chai';
import { SessionPgsql, type SessionPgsqlOptions } from '../lib';
import { db, newId, query, uniqueTable } from './support/db';
import { handlerFactory, pgClients } from './support/handlers';
import { native } from '../lib/native';
import { createWithExpiryIndex, gcWay, logDeletes } from './support/gc';
import { housekeepingRecord, idsIn, type HousekeepingRow } from './support/rows';
import { settled, settleWithin, sleep, waitUntil } from './support/wait';

const NOW = 'floor(extract(epoch from now()))::bigint';

describe('30 housekeeping: garbage collection', function () {
  this.timeout(60_000);
  let table: string;
  const clients = pgClients(); // ended after each test, before the handlers are closed
  const handlers = handlerFactory();

  /** A handler on this test's table (server 0, housekeeping timers off), opened unless told. */
  async function make(options: SessionPgsqlOptions = {}, open = true): Promise<SessionPgsql> {
    const handler = handlers.make({ table, maxLifetime: 100, ...options });
    if (open) await handler.open();
    return handler;
  }

  /** Inserts rows whose sess_expire is the database's now + `offset` seconds. */
  async function insert(
    server: number,
    rows: Array<{ id: string; offset: number | null; data?: string }>,
  ): Promise<void> {
    for (const r of rows) {
      await query(
        server,
        `INSERT INTO ${table} (sess_id, sess_name, sess_data, sess_created, sess_modified,
           sess_expire, sess_counter, sess_custom, sess_error, sess_warning, sess_notice,
           sess_addr_created)
         SELECT $1, 'SID', $2, n - 5000, n - 4000, n + $3::bigint, 7, 'custom ' || $1, 0, 0, 0,
           '192.0.2.7'
         FROM (SELECT ${NOW} AS n) s`,
        [r.id, r.data ?? `data of ${r.id}`, r.offset],
      );
    }
  }

  function ids(server = 0): Promise<string[]> {
    return idsIn(table, server);
  }

  async function countRows(name: string, server = 0): Promise<number> {
    const rows = await query<{ n: number }>(server, `SELECT count(*)::int AS n FROM ${name}`);
    return rows[0]!.n;
  }

  function record(server = 0, job = `gc "${table}"`): Promise<HousekeepingRow | undefined> {
    return housekeepingRecord(job, server);
  }

  beforeEach(() => {
    table = uniqueTable('hk_gc');
  });

  describe('gc()', () => {
    it('removes expired rows, keeps live ones and resolves to the number removed', async () => {
      const handler = await make();
      const expired = [1, 10, 1000, 100_000].map(() => newId());
      const live = [5, 100, 100_000].map(() => newId());
      await insert(0, [
        ...expired.map((id, i) => ({ id, offset: -[1, 10, 1000, 100_000][i]! })),
        ...live.map((id, i) => ({ id, offset: [5, 100, 100_000][i]! })),
      ]);
      expect(await handler.gc()).to.equal(4);
      expect(await ids()).to.deep.equal([...live].sort());
      for (const id of live) {
        const s = await handler.read(id);
        expect(s.expired).to.equal(false);
        expect(s.data).to.equal(`data of ${id}`);
      }
      for (const id of expired) expect((await handler.read(id)).isNew).to.equal(true);
      // Nothing left to remove.
      expect(await handler.gc()).to.equal(0);
      expect(await ids()).to.deep.equal([...live].sort());
    });

    it('sessions written through the handler survive; sessions expired with write({ expires }) go', async () => {
      const handler = await make();
      const keep = newId();
      const gone = newId();
      await handler.write(keep, 'keep me');
      await handler.write(gone, 'expire me', { expires: Math.floor(Date.now() / 1000) - 60 });
      expect(await handler.gc()).to.equal(1);
      expect(await ids()).to.deep.equal([keep]);
      expect((await handler.read(keep)).data).to.equal('keep me');
    });

    it('never removes a row whose sess_expire is NULL (as the README documents)', async () => {
      // read() treats such a row as expired (coalesce(sess_expire, 0) < now), but GC leaves it
      // alone by design ("Rows whose sess_expire is NULL are never removed").
      const handler = await make();
      const id = newId();
      const expired = newId();
      await insert(0, [
        { id, offset: null },
        { id: expired, offset: -10 },
      ]);
      expect((await handler.read(id)).expired).to.equal(true);
      expect(await handler.gc()).to.equal(1);
      expect(await ids()).to.deep.equal([id]);
    });

    it('removes expired rows on every live server and resolves to the total', async () => {
      const handler = await make({ db: db(2) });
      await insert(0, [
        { id: newId(), offset: -50 },
        { id: newId(), offset: -50 },
      ]);
      await insert(1, [
        { id: newId(), offset: -50 },
        { id: newId(), offset: -50 },
        { id: newId(), offset: -50 },
      ]);
      const live0 = newId();
      const live1 = newId();
      await insert(0, [{ id: live0, offset: 50 }]);
      await insert(1, [{ id: live1, offset: 50 }]);
      expect(await handler.gc()).to.equal(5);
      expect(await ids(0)).to.deep.equal([live0]);
      expect(await ids(1)).to.deep.equal([live1]);
      const [s0, s1] = handler.status().servers;
      expect(s0!.lastGc!.removed).to.equal(2);
      expect(s1!.lastGc!.removed).to.equal(3);
      expect(Number((await record(0))!.last_removed)).to.equal(2);
      expect(Number((await record(1))!.last_removed)).to.equal(3);
    });

    it('does not wait for a row another transaction has locked (SKIP LOCKED)', async () => {
      const handler = await make({ statementTimeout: 10 });
      const locked = newId();
      const other = newId();
      await insert(0, [
        { id: locked, offset: -50 },
        { id: other, offset: -50 },
      ]);
      const c = await clients.connect(0);
      await c.query('BEGIN');
      await c.query(`SELECT 1 FROM ${table} WHERE sess_id = $1 FOR UPDATE`, [locked]);
      const started = Date.now();
      const removed = await handler.gc();
      const took = Date.now() - started;
      expect(took, 'gc() took (ms)').to.be.below(3000);
      expect(removed).to.equal(1);
      expect(await ids()).to.deep.equal([locked]);
      await c.query('COMMIT');
      expect(await handler.gc()).to.equal(1);
      expect(await ids()).to.deep.equal([]);
    });

    it('rejects with SPG_CLOSED after close()', async () => {
      const handler = await make();
      await handler.close();
      let error: unknown;
      try {
        await handler.gc();
      } catch (err) {
        error = err;
      }
      expect(error).to.have.property('code', 'SPG_CLOSED');
    });
  });

  describe('by TID ranges or through the expiry index (docs/operations.md, The table)', () => {
    const MAX_LIFETIME = 2_147_483_647;
    /** Rows for the rules GC keeps: sess_expire given as SQL over the database's now `n`. */
    const rows = {
      live: 'n + 50',
      nullExpiry: 'NULL',
      expiredRecently: 'n - 50',
      expiredLongAgo: 'n - 130',
      // A tombstone whose lifetime has 50 s to run stays; one whose lifetime ended goes.
      tombstone: '-(n + 50)',
      oldTombstone: '-(n - 10)',
      // Below -(now + the longest lifetime): no tombstone, a corrupt expiry, expired for ever.
      corrupt: `-(n + ${MAX_LIFETIME}) - 1000`,
    };
    type Row = keyof typeof rows;

    async function insertRows(): Promise<Record<Row, string>> {
      const out = {} as Record<Row, string>;
      for (const [name, expire] of Object.entries(rows)) {
        const id = newId();
        out[name as Row] = id;
        await query(
          0,
          `INSERT INTO ${table} (sess_id, sess_name, sess_data, sess_created, sess_modified,
             sess_expire, sess_counter)
           SELECT $1, 'SID', 'data', n - 5000, n - 4000, ${expire}, 1
           FROM (SELECT ${NOW} AS n) s`,
          [id],
        );
      }
      return out;
    }

    for (const layout of ['new', 'old'] as const) {
      for (const keepExpired of [false, true]) {
        it(`${layout === 'new' ? 'a new table (no expiry index, by ranges)' : 'a table with the expiry index (through it)'}, keepExpired ${keepExpired}: expired rows, old tombstones and corrupt expiries go; live, NULL and fresh tombstones stay`, async () => {
          if (layout === 'old') await createWithExpiryIndex(table);
          const handler = await make({ maxLifetime: 100, keepExpired });
          expect(handler.status().servers[0]!.setup.index).to.equal(
            layout === 'new' ? 'missing' : 'existed',
          );
          const deletes = await logDeletes(table);
          const id = await insertRows();
          const gone: Row[] = ['expiredLongAgo', 'oldTombstone', 'corrupt'];
          if (!keepExpired) gone.push('expiredRecently');
          expect(await handler.gc()).to.equal(gone.length);
          const kept = (Object.keys(rows) as Row[]).filter((r) => !gone.includes(r));
          expect(await ids()).to.deep.equal(kept.map((r) => id[r]).sort());
          const log = await deletes();
          expect(log.length, 'DELETE statements').to.be.at.least(1);
          for (const entry of log) {
            expect(gcWay(entry)).to.equal(layout === 'new' ? 'ranges' : 'index');
          }
          expect(log.reduce((sum, e) => sum + e.n, 0)).to.equal(gone.length);
        });
      }
    }

    it('a table whose expiry index is dropped while the handler runs is collected by ranges from the next run on', async () => {
      await createWithExpiryIndex(table);
      const handler = await make();
      const deletes = await logDeletes(table);
      await insert(0, [{ id: newId(), offset: -50 }]);
      expect(await handler.gc()).to.equal(1);
      await query(0, `DROP INDEX ${table}_expire_idx`);
      await insert(0, [{ id: newId(), offset: -50 }]);
      expect(await handler.gc()).to.equal(1);
      expect((await deletes()).map(gcWay)).to.deep.equal(['index', 'ranges']);
    });

    it('chooses the way by server version and index: ranges only from PostgreSQL 14 on and without the index; new tables get the index before 14 only', () => {
      const plan = native.__gcPlanForTest;
      expect(plan(130_012, false)).to.deep.equal({ way: 'index', createsIndex: true });
      expect(plan(130_012, true)).to.deep.equal({ way: 'index', createsIndex: true });
      expect(plan(140_000, false)).to.deep.equal({ way: 'ranges', createsIndex: false });
      expect(plan(140_000, true)).to.deep.equal({ way: 'index', createsIndex: false });
      expect(plan(150_018, false)).to.deep.equal({ way: 'ranges', createsIndex: false });
      expect(plan(170_000, true)).to.deep.equal({ way: 'index', createsIndex: false });
    });
  });

  describe('on a connection of its own', () => {
    it('gc() finishes while a session write waits on a row lock, and the write then goes through', async () => {
      const handler = await make({ statementTimeout: 60 });
      const busy = newId();
      await handler.write(busy, 'before');
      await insert(0, [
        { id: newId(), offset: -50 },
        { id: newId(), offset: -50 },
      ]);
      const c = await clients.connect(0);
      await c.query('BEGIN');
      await c.query(`SELECT 1 FROM ${table} WHERE sess_id = $1 FOR UPDATE`, [busy]);
      const write = handler.write(busy, 'after');
      await waitUntil('the write waits on the row lock', 15_000, async () => {
        const r = await query<{ n: number }>(
          0,
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE wait_event_type = 'Lock' AND query LIKE '%${table}%'`,
        );
        return r[0]!.n > 0;
      });
      // Through the sessions' pipeline, GC would queue behind that write until the lock goes.
      const gc = await settled(handler.gc(), 'gc() while a write waits on a lock');
      expect(gc.value).to.equal(2);
      expect(await settleWithin(write, 0)).to.equal('pending');
      await c.query('COMMIT');
      await write;
      expect((await handler.read(busy)).data).to.equal('after');
    });
  });

  describe('keepExpired', () => {
    it('keeps rows expired less than maxLifetime ago, removes older ones; a kept row still reads with its metadata', async () => {
      const handler = await make({ keepExpired: true, maxLifetime: 100 });
      const recent = newId(); // expired 10 s ago: within the grace
      const almost = newId(); // expired 80 s ago: within the grace
      const old = newId(); // expired 130 s ago: beyond it
      const ancient = newId(); // expired a day ago
      const live = newId();
      await insert(0, [
        { id: recent, offset: -10 },
        { id: almost, offset: -80 },
        { id: old, offset: -130 },
        { id: ancient, offset: -86_400 },
        { id: live, offset: 60 },
      ]);
      expect(await handler.gc()).to.equal(2);
      expect(await ids()).to.deep.equal([recent, almost, live].sort());

      // The kept expired row reads as documented: expired, data '' but its metadata kept.
      const s = await handler.read(recent);
      expect(s.expired).to.equal(true);
      expect(s.isNew).to.equal(false);
      expect(s.data).to.equal('');
      expect(s.getField()).to.equal(`custom ${recent}`);
      expect(s.info().accesses).to.equal(8); // counter 7, this read counts one more
      expect(s.info().addressCreated).to.equal('192.0.2.7');
      // A removed one is simply new.
      const gone = await handler.read(old);
      expect(gone.isNew).to.equal(true);
      expect(gone.expired).to.equal(false);
    });

    it('without keepExpired every expired row goes, however recently it expired', async () => {
      const handler = await make({ keepExpired: false, maxLifetime: 100 });
      const live = newId();
      await insert(0, [
        { id: newId(), offset: -2 },
        { id: newId(), offset: -80 },
        { id: newId(), offset: -130 },
        { id: live, offset: 60 },
      ]);
      expect(await handler.gc()).to.equal(3);
      expect(await ids()).to.deep.equal([live]);
    });
  });

  describe('a large backlog', () => {
    it('empties 50 000 expired rows in several bounded batches while reads and writes keep succeeding', async () => {
      const total = 50_000;
      const handler = await make();
      await query(
        0,
        `INSERT INTO ${table} (sess_id, sess_name, sess_data, sess_created, sess_modified,
           sess_expire, sess_counter)
         SELECT 'expired' || lpad(g::text, 12, '0'), 'SID', repeat('x', 200), n - 3000, n - 3000,
           n - 1000 - g % 500, 1
         FROM generate_series(1, ${total}) g, (SELECT ${NOW} AS n) s`,
      );
      await query(0, `ANALYZE ${table}`);
      const deletes = await logDeletes(table);
      const live = Array.from({ length: 20 }, () => newId());
      for (const id of live) await handler.write(id, `live ${id}`);

      // A monitor on a connection of its own sees each batch commit.
      const monitor = await clients.connect(0);
      const seen = new Set<number>();
      let gcDone = false;
      const watching = (async () => {
        while (!gcDone) {
          const r = await monitor.query(
            `SELECT count(*)::int AS n FROM ${table} WHERE sess_expire < ${NOW}`,
          );
          seen.add(r.rows[0].n as number);
          await sleep(2);
        }
      })();

      // Session traffic on live sessions through the same handler meanwhile.
      const latencies: number[] = [];
      const failures: unknown[] = [];
      const traffic = Array.from({ length: 4 }, async (_, worker) => {
        let n = 0;
        while (!gcDone) {
          // Each worker has five sessions of its own, so a read back can only see its own write.
          const id = live[worker * 5 + (n % 5)]!;
          const data = `live ${id} ${worker}/${n}`;
          const t0 = Date.now();
          try {
            await handler.write(id, data);
            const back = await handler.read(id);
            if (back.data !== data) throw new Error(`read back ${back.data} for ${data}`);
          } catch (err) {
            failures.push(err);
          }
          latencies.push(Date.now() - t0);
          n += 1;
        }
      });

      const started = Date.now();
      let removed: number;
      try {
        removed = await handler.gc();
      } finally {
        gcDone = true;
        await Promise.all([watching, ...traffic]);
      }
      const took = Date.now() - started;
      const intermediate = [...seen].filter((n) => n > 0 && n < total).sort((a, b) => b - a);
      console.log(
        `      gc of ${total} rows: ${took} ms, ${latencies.length} write+read pairs meanwhile ` +
          `(max ${Math.max(...latencies)} ms), ${intermediate.length} intermediate counts seen`,
      );

      expect(removed).to.equal(total);
      expect(took, 'gc() duration (ms)').to.be.below(30_000);
      expect(failures, 'failed session operations').to.deep.equal([]);
      expect(latencies.length, 'write+read pairs during gc()').to.be.above(0);
      expect(Math.max(...latencies), 'slowest write+read pair (ms)').to.be.below(2000);
      // Several commits: another connection saw the table partly emptied, and no statement
      // removed more than a batch of 1000 rows.
      expect(intermediate.length, 'distinct partial counts seen').to.be.at.least(1);
      const log = await deletes();
      expect(log.length, 'DELETE statements').to.be.at.least(total / 1000);
      for (const entry of log) expect(entry.n, 'rows of one DELETE').to.be.at.most(1000);
      expect(log.reduce((sum, e) => sum + e.n, 0)).to.equal(total);

      const [left] = await query<{ expired: number; rows: number }>(
        0,
        `SELECT count(*) FILTER (WHERE sess_expire < ${NOW})::int AS expired, count(*)::int AS rows
         FROM ${table}`,
      );
      expect(left).to.deep.equal({ expired: 0, rows: live.length });
      for (const id of live) expect((await handler.read(id)).expired).to.equal(false);
      const row = await record();
      expect(Number(row!.last_removed)).to.equal(total);
      expect(Number(row!.runs)).to.equal(1);
      expect(handler.status().servers[0]!.lastGc!.removed).to.equal(total);
    });
  });

  describe('status() and the record table', () => {
    it('status().servers[i].lastGc is null before a run, then { at, removed, duration, error: null }', async () => {
      const handler = await make();
      expect(handler.status().servers[0]!.lastGc).to.equal(null);
      await insert(0, [
        { id: newId(), offset: -5 },
        { id: newId(), offset: -5 },
        { id: newId(), offset: -5 },
      ]);
      const before = Date.now() / 1000;
      await handler.gc();
      const after = Date.now() / 1000;
      const lastGc = handler.status().servers[0]!.lastGc!;
      expect(lastGc).to.have.all.keys('at', 'removed', 'duration', 'error');
      expect(lastGc.removed).to.equal(3);
      expect(lastGc.error).to.equal(null);
      expect(lastGc.at).to.be.within(before - 1, after + 1);
      expect(lastGc.duration).to.be.within(0, after - before + 0.5);

      const row = (await record())!;
      expect(row.job).to.equal(`gc "${table}"`);
      expect(Number(row.runs)).to.equal(1);
      expect(Number(row.last_removed)).to.equal(3);
      expect(row.last_error).to.equal(null);
      expect(row.last_start).to.be.within(before - 5, after + 5);
      expect(row.last_finish).to.be.at.least(row.last_start!);
      expect(row.last_duration).to.be.within(0, 5);

      await handler.gc();
      const again = (await record())!;
      expect(Number(again.runs)).to.equal(2);
      expect(Number(again.last_removed)).to.equal(0);
      expect(handler.status().servers[0]!.lastGc!.removed).to.equal(0);
    });
  });

  describe('without the record table (createTable off, table made elsewhere)', () => {
    let schema: string;
    const columns = `sess_id text PRIMARY KEY, sess_name text, sess_data text,
      sess_created bigint, sess_modified bigint, sess_expire bigint, sess_addr_created text,
      sess_addr_modified text, sess_counter integer, sess_error integer, sess_warning integer,
      sess_notice integer, sess_err_message text, sess_custom text`;
    beforeEach(async () => {
      // A schema of its own, so there is no session_pgsql_housekeeping next to the table.
      schema = uniqueTable('hk_gc_schema');
      await query(0, `CREATE SCHEMA ${schema}; CREATE TABLE ${schema}.s (${columns})`);
      await query(
        0,
        `INSERT INTO ${schema}.s (sess_id, sess_expire)
         SELECT 'norecord' || lpad(g::text, 12, '0'), ${NOW} - 60 FROM generate_series(1, 5) g`,
      );
    });
    afterEach(async () => {
      await handlers.closeAll();
      await query(0, `DROP SCHEMA ${schema} CASCADE`);
    });

    it('timer runs do not happen and lastGc.error says why; gc() still works', async () => {
      const handler = await make({ table: `${schema}.s`, createTable: false, gcInterval: 1 });
      await sleep(2500);
      const before = await countRows(`${schema}.s`);
      expect(before, 'rows left by the timer').to.equal(5);
      const failed = handler.status().servers[0]!.lastGc!;
      expect(failed.error).to.be.a('string').and.to.include('session_pgsql_housekeeping');
      expect(failed.removed).to.equal(0);
      expect(await handler.gc()).to.equal(5);
      const after = await countRows(`${schema}.s`);
      expect(after).to.equal(0);
      expect(
        await query(0, 'SELECT to_regclass($1) AS r', [`${schema}.session_pgsql_housekeeping`]),
      ).to.deep.equal([{ r: null }]);
    });

    it('a timer run that fails after a successful gc() reports its own removed and duration, not the previous run’s', async () => {
      const handler = await make({ table: `${schema}.s`, createTable: false, gcInterval: 1 });
      expect(await handler.gc()).to.equal(5);
      const ok = handler.status().servers[0]!.lastGc!;
      expect(ok).to.include({ removed: 5, error: null });
      // Within ~2.5 s the 1-second timer ticks and its claim fails (no record table).
      const deadline = Date.now() + 3000;
      let last = handler.status().servers[0]!.lastGc!;
      while (last.at === ok.at && Date.now() < deadline) {
        await sleep(50);
        last = handler.status().servers[0]!.lastGc!;
      }
      expect(last.at, 'a later timer run').to.be.above(ok.at);
      expect(last.error).to.be.a('string');
      // Its own figures: nothing removed, its own duration; not the earlier gc()'s 5 rows.
      expect(last.removed, 'removed by the failed timer run').to.equal(0);
      expect(last.duration, 'duration of the failed timer run').to.not.equal(ok.duration);
    });
  });

  describe('the gcInterval timer', () => {
    it('gcInterval: 1 removes expired rows by itself within ~3 s', async () => {
      const handler = await make({ gcInterval: 1 });
      const live = newId();
      await insert(0, [
        { id: newId(), offset: -30 },
        { id: newId(), offset: -30 },
        { id: live, offset: 60 },
      ]);
      const deadline = Date.now() + 3500;
      let left = await ids();
      while (left.length > 1 && Date.now() < deadline) {
        await sleep(100);
        left = await ids();
      }
      expect(left, 'rows left ~3 s later').to.deep.equal([live]);
      // The deletion can be visible a moment before its result reaches the handler.
      while (handler.status().servers[0]!.lastGc === null && Date.now() < deadline + 2000) {
        await sleep(50);
      }
      const lastGc = handler.status().servers[0]!.lastGc;
      expect(lastGc, 'status().lastGc').to.not.equal(null);
      expect(lastGc!.error).to.equal(null);
      expect(Number((await record())!.runs)).to.be.at.least(1);
    });

    it('gcInterval: 0 never runs: expired rows stay and no run is recorded', async () => {
      const handler = await make({ gcInterval: 0 });
      const expired = newId();
      await insert(0, [{ id: expired, offset: -30 }]);
      await sleep(3000);
      expect(await ids()).to.deep.equal([expired]);
      expect(await record()).to.equal(undefined);
      expect(handler.status().servers[0]!.lastGc).to.equal(null);
    });

    it('the timers do not keep the process alive', async () => {
      // The fixture opens a handler with gcInterval 1 and vacuumInterval 1, writes, and ends
      // its script without close(): it must exit by itself.
      await make(); // creates the table
      const fixture = path.join(__dirname, 'fixtures', 'housekeeping-idle-exit.js');
      const started = Date.now();
      const result = await new Promise<{ code: number | null; signal: string | null }>(
        (resolve) => {
          execFile(
            process.execPath,
            [fixture, db(1), table],
            { timeout: 15_000, killSignal: 'SIGKILL' },
            (error, stdout, stderr) => {
              resolve({
                code: error ? ((error as { code?: number }).code ?? null) : 0,
                signal: error ? ((error as { signal?: string }).signal ?? null) : null,
              });
              if (error) process.stderr.write(`${stdout}${stderr}`);
            },
          );
        },
      );
      expect(result, 'the fixture ended on its own').to.deep.equal({ code: 0, signal: null });
      expect(Date.now() - started).to.be.below(15_000);
    });
  });
});
