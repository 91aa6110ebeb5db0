// VACUUM (docs/operations.md, Garbage collection and VACUUM): vacuum() runs VACUUM (ANALYZE) visibly in pg_stat_user_tables,
// on a connection of its own so session traffic is not blocked, vacuumInterval runs it by itself,
// and a role without the right to vacuum gets one clear warning while sessions keep working.
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { SessionPgsql, type SessionPgsqlOptions } from '../lib';
import { db, newId, query, servers, uniqueTable } from './support/db';
import { handlerFactory, pgClients } from './support/handlers';
import { housekeepingRecord, type HousekeepingRow } from './support/rows';
import { settled, sleep } from './support/wait';

interface VacuumStats {
  last_vacuum: Date | null;
  last_analyze: Date | null;
  last_autovacuum: Date | null;
}

describe('32 housekeeping: VACUUM', function () {
  this.timeout(60_000);
  let table: string;
  const clients = pgClients(); // ended after each test, before the handlers are closed
  const handlers = handlerFactory();

  /** An open handler on this test's table (server 0, housekeeping timers off). */
  function make(options: SessionPgsqlOptions = {}): Promise<SessionPgsql> {
    return handlers.open({ table, ...options });
  }

  async function stats(server = 0): Promise<VacuumStats> {
    const rows = await query<VacuumStats>(
      server,
      `SELECT last_vacuum, last_analyze, last_autovacuum FROM pg_stat_user_tables
       WHERE relid = to_regclass($1)`,
      [`"${table}"`],
    );
    expect(rows).to.have.length(1);
    return rows[0]!;
  }

  /** Polls pg_stat_user_tables until last_vacuum is after `after` (or non-null), or `ms` pass. */
  async function vacuumedAfter(after: Date | null, ms: number, server = 0): Promise<VacuumStats> {
    const deadline = Date.now() + ms;
    for (;;) {
      const s = await stats(server);
      // VACUUM (ANALYZE) reports its vacuum to the statistics before its analyze: both, or a
      // read between the two sees last_analyze still old.
      const since = (at: Date | null) =>
        at !== null && (after === null || at.getTime() > after.getTime());
      const done = since(s.last_vacuum) && since(s.last_analyze);
      if (done || Date.now() > deadline) return s;
      await sleep(100);
    }
  }

  function record(server = 0): Promise<HousekeepingRow | undefined> {
    return housekeepingRecord(`vacuum "${table}"`, server);
  }

  beforeEach(() => {
    table = uniqueTable('hk_vac');
  });

  describe('vacuum()', () => {
    it('runs VACUUM (ANALYZE): last_vacuum and last_analyze become non-null, then advance', async () => {
      const handler = await make();
      for (let i = 0; i < 50; i++) await handler.write(newId(), `row ${i}`);
      const before = await stats();
      expect(before.last_vacuum).to.equal(null);
      expect(handler.status().servers[0]!.lastVacuum).to.equal(null);

      const t0 = Date.now() / 1000;
      expect(await handler.vacuum()).to.equal(1);
      const first = await vacuumedAfter(null, 5000);
      expect(first.last_vacuum, 'last_vacuum after vacuum()').to.be.instanceOf(Date);
      expect(first.last_analyze, 'last_analyze after vacuum()').to.be.instanceOf(Date);

      const lastVacuum = handler.status().servers[0]!.lastVacuum!;
      expect(lastVacuum).to.have.all.keys('at', 'removed', 'duration', 'error');
      expect(lastVacuum.error).to.equal(null);
      expect(lastVacuum.at).to.be.within(t0 - 1, Date.now() / 1000 + 1);
      expect(lastVacuum.duration).to.be.within(0, 10);
      const row = (await record())!;
      expect(Number(row.runs)).to.equal(1);
      expect(row.last_error).to.equal(null);

      await sleep(1100); // timestamps must be able to differ
      expect(await handler.vacuum()).to.equal(1);
      const second = await vacuumedAfter(first.last_vacuum, 5000);
      expect(second.last_vacuum!.getTime()).to.be.above(first.last_vacuum!.getTime());
      expect(second.last_analyze!.getTime()).to.be.above(first.last_analyze!.getTime());
      expect(Number((await record())!.runs)).to.equal(2);
    });

    it('vacuums on every live server and resolves to the number of servers', async () => {
      const handler = await make({ db: db(2) });
      expect(await handler.vacuum()).to.equal(2);
      for (const server of [0, 1]) {
        const s = await vacuumedAfter(null, 5000, server);
        expect(s.last_vacuum, `last_vacuum on server ${server}`).to.be.instanceOf(Date);
        expect(Number((await record(server))!.runs)).to.equal(1);
        expect(handler.status().servers[server]!.lastVacuum!.error).to.equal(null);
      }
    });

    it('runs on a connection of its own: session traffic goes on while VACUUM waits for a lock', async () => {
      // statementTimeout 1 s: a VACUUM waiting 2.5 s must neither block nor be cut by it.
      const handler = await make({ statementTimeout: 1 });
      const id = newId();
      await handler.write(id, 'before');
      const locker = await clients.connect(0);
      await locker.query('BEGIN');
      // Conflicts with VACUUM, not with reads and writes.
      await locker.query(`LOCK TABLE "${table}" IN SHARE UPDATE EXCLUSIVE MODE`);
      let vacuumDone = false;
      const vacuum = handler.vacuum().finally(() => (vacuumDone = true));
      vacuum.catch(() => {}); // checked below
      await sleep(300);
      for (let i = 0; i < 10; i++) {
        const t0 = Date.now();
        await handler.write(id, `during ${i}`);
        expect((await handler.read(id)).data).to.equal(`during ${i}`);
        await handler.write(newId(), 'another');
        expect(Date.now() - t0, 'write+read while VACUUM waits (ms)').to.be.below(1000);
      }
      const waiting = await locker.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity
         WHERE query LIKE 'VACUUM%' AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
      );
      expect(waiting.rows[0].n, 'VACUUM backends waiting for the lock').to.equal(1);
      await sleep(2500 - 300);
      expect(vacuumDone, 'vacuum() settled while the lock was held').to.equal(false);
      await locker.query('COMMIT');
      expect(await settled(vacuum, 'vacuum()', 10_000)).to.deep.equal({ value: 1 });
      expect((await vacuumedAfter(null, 5000)).last_vacuum).to.be.instanceOf(Date);
    });

    it('close() during a VACUUM settles the vacuum() promise', async () => {
      // close() "waits for operations in flight": a vacuum() in flight must resolve or reject,
      // never stay pending forever.
      const handler = await make();
      const locker = await clients.connect(0);
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE "${table}" IN SHARE UPDATE EXCLUSIVE MODE`);
      const vacuum = handler.vacuum();
      vacuum.catch(() => {});
      await sleep(300);
      const closing = handler.close();
      await sleep(500);
      await locker.query('COMMIT');
      expect(await settled(closing, 'close()', 10_000)).to.deep.equal({ value: undefined });
      await settled(vacuum, 'vacuum() after close()', 5000);
    });
  });

  describe('vacuumInterval', () => {
    it('vacuumInterval: 1 runs VACUUM by itself', async () => {
      const handler = await make({ vacuumInterval: 1 });
      for (let i = 0; i < 20; i++) await handler.write(newId(), `row ${i}`);
      // A bound for a loaded machine, not a timing claim: the first run is due after ~1 s.
      const s = await vacuumedAfter(null, 15_000);
      expect(s.last_vacuum, 'last_vacuum within 15 s').to.be.instanceOf(Date);
      expect(s.last_analyze).to.be.instanceOf(Date);
      // The statistics can show the VACUUM a moment before its result reaches the handler.
      const deadline = Date.now() + 2000;
      while (handler.status().servers[0]!.lastVacuum === null && Date.now() < deadline) {
        await sleep(50);
      }
      expect(handler.status().servers[0]!.lastVacuum, 'status().lastVacuum').to.not.equal(null);
      expect(handler.status().servers[0]!.lastVacuum!.error).to.equal(null);
      expect(Number((await record())!.runs)).to.be.at.least(1);
    });

    it('vacuumInterval: 0 never runs', async () => {
      const handler = await make({ vacuumInterval: 0 });
      await handler.write(newId(), 'x');
      await sleep(3000);
      expect((await stats()).last_vacuum).to.equal(null);
      expect(await record()).to.equal(undefined);
      expect(handler.status().servers[0]!.lastVacuum).to.equal(null);
    });
  });

  describe('a role without the right to vacuum', () => {
    let role: string;

    /** The first test server's conninfo, logging in as `user`. */
    function as(user: string): string {
      return servers()[0]!.replace(/\buser=\S+/, `user=${user}`);
    }

    beforeEach(async () => {
      role = `hk_role_${randomBytes(4).toString('hex')}`;
      // The table and the record table belong to postgres; the role may use them, not own them.
      const owner = new SessionPgsql({ db: db(1), table, gcInterval: 0, vacuumInterval: 0 });
      try {
        await owner.open();
      } finally {
        await owner.close();
      }
      await query(
        0,
        `CREATE ROLE ${role} LOGIN;
         GRANT USAGE ON SCHEMA public TO ${role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON "${table}", session_pgsql_housekeeping
           TO ${role}`,
      );
    });
    afterEach(async () => {
      await handlers.closeAll();
      await query(0, `REASSIGN OWNED BY ${role} TO postgres; DROP OWNED BY ${role}`);
      await query(0, `DROP ROLE ${role}`);
    });

    it("vacuum() rejects with 42501 and a clear message; one 'warning' event however often; sessions keep working", async () => {
      const handler = await make({ db: as(role), vacuumInterval: 1 });
      const warnings: Array<Error & { code?: string }> = [];
      handler.on('warning', (w: Error & { code?: string }) => warnings.push(w));

      for (let i = 0; i < 3; i++) {
        let error: (Error & { code?: string }) | undefined;
        try {
          await handler.vacuum();
        } catch (err) {
          error = err as Error & { code?: string };
        }
        expect(error, `vacuum() #${i + 1}`).to.be.instanceOf(Error);
        expect(error!.code).to.equal('42501');
        expect(error!.message).to.match(/VACUUM/);
        expect(error!.message).to.include(table);
        expect(error!.message).to.match(/server 0/);
        expect(error!.message.split('\n')).to.have.length(1);
      }
      // Sessions meanwhile and afterwards.
      const id = newId();
      await handler.write(id, 'still served');
      expect((await handler.read(id)).data).to.equal('still served');
      // Let the timer try a few times too.
      await sleep(2500);
      await handler.write(id, 'still served later');
      expect((await handler.read(id)).data).to.equal('still served later');
      expect(await handler.gc()).to.equal(0);

      expect(warnings, "'warning' events").to.have.length(1);
      expect(warnings[0]!.code).to.equal('42501');
      expect(warnings[0]!.message).to.include(table);
      const lastVacuum = handler.status().servers[0]!.lastVacuum!;
      expect(lastVacuum.error).to.be.a('string').and.to.include('VACUUM');
      expect((await stats()).last_vacuum, 'no VACUUM ran').to.equal(null);
    });

    it("without a 'warning' listener it becomes one process warning", async () => {
      const seen: Error[] = [];
      const onWarning = (w: Error): void => {
        if (w.message.includes(table)) seen.push(w);
      };
      process.on('warning', onWarning);
      try {
        const handler = await make({ db: as(role) });
        for (let i = 0; i < 3; i++) await handler.vacuum().catch(() => {});
        await sleep(100); // process warnings are emitted on the next tick
        expect(seen, 'process warnings').to.have.length(1);
        expect((seen[0] as Error & { code?: string }).code).to.equal('42501');
      } finally {
        process.off('warning', onWarning);
      }
    });

    it('a role that owns the table (not a superuser) may vacuum it', async () => {
      await query(0, `ALTER TABLE "${table}" OWNER TO ${role}`);
      const handler = await make({ db: as(role) });
      const warnings: Error[] = [];
      handler.on('warning', (w: Error) => warnings.push(w));
      expect(await handler.vacuum()).to.equal(1);
      expect((await vacuumedAfter(null, 5000)).last_vacuum).to.be.instanceOf(Date);
      expect(warnings).to.deep.equal([]);
    });
  });
});
