// status() (the original session_pgsql_status(), every secret option redacted) and reset()
// (reconnect every server; operations in flight still complete).
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ErrorCode, SessionPgsql, type SessionPgsqlOptions } from '../lib';
import { db, newId, query, servers, uniqueTable } from './support/db';
import { rejection, thrown } from './support/errors';
import { handlerFactory } from './support/handlers';
import { sleep } from './support/wait';

const SECRET = 'secretpw';
// libpq's other secret option (dispchar '*'); harmless against a server without TLS.
const SSL_SECRET = 'sslsecretpw';

function withPassword(conninfo: string): string {
  return `${conninfo} password=${SECRET} sslpassword=${SSL_SECRET}`;
}

function asUri(conninfo: string): string {
  const kv = Object.fromEntries(conninfo.split(/\s+/).map((p) => p.split('=') as [string, string]));
  return `postgresql://${kv.user}:${SECRET}@${kv.host}:${kv.port}/${kv.dbname}?sslpassword=${SSL_SECRET}`;
}

function expectNoSecret(value: unknown, what: string): void {
  const text =
    value instanceof Error
      ? `${value.message}\n${value.stack}\n${JSON.stringify(value)}`
      : JSON.stringify(value);
  expect(text, what).to.not.include(SECRET);
  expect(text, what).to.not.include(SSL_SECRET);
}

describe('18 handler: status() and reset()', () => {
  let table: string;
  const handlers = handlerFactory();
  /** An unopened handler on this test's table (server 0, housekeeping timers off). */
  function make(options: SessionPgsqlOptions = {}): SessionPgsql {
    return handlers.make({ table, ...options });
  }

  beforeEach(() => {
    table = uniqueTable();
  });

  describe('status()', () => {
    it('has the documented shape; servers[0] is up after open()', async () => {
      const handler = make({ shortCircuit: true, keepExpired: true });
      const before = handler.status();
      expect(before.servers).to.have.length(1);
      expect(before.servers[0]!.state).to.not.equal('up');
      await handler.open();
      const status = handler.status();
      expect(status).to.include({
        numberOfServers: 1,
        failoverMode: false,
        shortCircuit: true,
        keepExpired: true,
      });
      expect(status.servers).to.have.length(1);
      const server = status.servers[0]!;
      expect(server.id).to.equal(0);
      expect(server.state).to.equal('up');
      expect(server.server).to.be.a('string');
      const port = /port=(\d+)/.exec(servers()[0]!)![1]!;
      expect(server.server).to.include(`port=${port}`);
      expect(['up', 'down', 'connecting']).to.include(server.state);
    });

    it('a status snapshot is plain data (JSON round trip) and does not change afterwards', async () => {
      const handler = make();
      await handler.open();
      const status = handler.status();
      expect(JSON.parse(JSON.stringify(status))).to.deep.equal(status);
      const frozen = JSON.stringify(status);
      await handler.write(newId(), 'x');
      expect(JSON.stringify(status)).to.equal(frozen);
    });

    it('numberOfServers 3 with db(3), ids 0..2 in list order, all up', async () => {
      const handler = make({ db: db(3) });
      await handler.open();
      const status = handler.status();
      expect(status.numberOfServers).to.equal(3);
      expect(status.servers.map((s) => s.id)).to.deep.equal([0, 1, 2]);
      expect(status.servers.map((s) => s.state)).to.deep.equal(['up', 'up', 'up']);
      servers()
        .slice(0, 3)
        .forEach((conninfo, i) => {
          const port = /port=(\d+)/.exec(conninfo)![1]!;
          expect(status.servers[i]!.server).to.include(`port=${port}`);
        });
    });

    it('setup tells what the handler created and what it found', async () => {
      const creator = make();
      expect(creator.status().servers[0]!.setup).to.deep.equal({
        table: null,
        housekeeping: null,
        version: null,
        index: null,
        records: null,
      });
      await creator.open();
      const created = creator.status().servers[0]!.setup;
      expect(created.table).to.equal('created');
      expect(created.version).to.equal('created');
      expect(created.housekeeping).to.be.oneOf(['created', 'existed']); // shared by the schema
      expect(created.index).to.equal('missing'); // PostgreSQL 14+: no expiry index
      expect(created.records).to.be.oneOf(['created', 'existed']); // shared by the schema
      const finder = make();
      await finder.open();
      expect(finder.status().servers[0]!.setup).to.deep.equal({
        table: 'existed',
        housekeeping: 'existed',
        version: 'existed',
        index: 'missing',
        records: 'existed',
      });
      const missing = make({ table: uniqueTable(), createTable: false, retryMinDelay: 5 });
      await rejection(missing.open());
      expect(missing.status().servers[0]!.setup.table).to.equal('missing');
    });

    it('failoverMode shows in status()', async () => {
      const handler = make({ db: db(2), failoverMode: true });
      expect(handler.status().failoverMode).to.equal(true);
      expect(handler.status().numberOfServers).to.equal(2);
    });
  });

  describe('passwords never show', () => {
    it('key=value password: not in status(), info(), getError() or error messages', async () => {
      const handler = make({ db: withPassword(servers()[0]!), shortCircuit: true });
      expectNoSecret(handler.status(), 'status() before open');
      await handler.open();
      expectNoSecret(handler.status(), 'status() after open');
      expect(handler.status().servers[0]!.server).to.include('password=');
      expect(handler.status().servers[0]!.server).to.include('sslpassword=***');
      const id = newId();
      const s = await handler.read(id, { address: '192.0.2.1' });
      expectNoSecret(s.info(), 'info()');
      s.addError('error', 'm');
      expectNoSecret(await s.getError(true), 'getError()');
      await handler.write(s, 'x');
      expectNoSecret((await handler.read(id)).info(), 'info() of a stored session');
      expectNoSecret(await rejection(handler.read('bad')), 'invalid id error');
      expectNoSecret(await rejection(handler.write(id, 'a\0b')), 'NUL error');
    });

    it('URI password and sslpassword: redacted the same way', async () => {
      const handler = make({ db: asUri(servers()[0]!) });
      await handler.open();
      expect(handler.status().servers[0]!.state).to.equal('up');
      expectNoSecret(handler.status(), 'status()');
      expect(handler.status().servers[0]!.server).to.include('sslpassword=***');
      expectNoSecret((await handler.read(newId())).info(), 'info()');
    });

    it('an entry libpq cannot parse: the option error shows neither secret', () => {
      for (const entry of [
        `postgresql://u:${SECRET}@[::1/db?sslpassword=${SSL_SECRET}`,
        `host=h password=${SECRET} sslpassword='${SSL_SECRET}`,
      ]) {
        const err = thrown(() => new SessionPgsql({ db: entry }));
        expect(err.code).to.equal(ErrorCode.InvalidOption);
        expectNoSecret(err, entry);
      }
    });

    it('secrets from a service file never show (status() names only the service)', async () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'spg-service-'));
      const file = path.join(dir, 'pg_service.conf');
      const kv = Object.fromEntries(
        servers()[0]!
          .split(/\s+/)
          .map((p) => p.split('=') as [string, string]),
      );
      writeFileSync(
        file,
        `[spg_live]\nhost=${kv.host}\nport=${kv.port}\nuser=${kv.user}\ndbname=${kv.dbname}\n` +
          `password=${SECRET}\nsslpassword=${SSL_SECRET}\n` +
          `[spg_dead]\nhost=127.0.0.1\nport=1\npassword=${SECRET}\nsslpassword=${SSL_SECRET}\n`,
      );
      // libpq reads PGSERVICEFILE from this process's environment at connect time.
      const saved = process.env.PGSERVICEFILE;
      process.env.PGSERVICEFILE = file;
      try {
        const live = make({ db: 'service=spg_live' });
        await live.open();
        expect(live.status().servers[0]!.server).to.equal('service=spg_live');
        expectNoSecret((await live.read(newId())).info(), 'info()');
        const dead = make({ db: 'service=spg_dead', connectTimeout: 2, retryMinDelay: 5 });
        const err = await rejection(dead.open());
        expect(err.code).to.equal(ErrorCode.ConnectFailed);
        expectNoSecret(err, 'refused');
        expectNoSecret(dead.status(), 'status() of a refused server');
      } finally {
        if (saved === undefined) delete process.env.PGSERVICEFILE;
        else process.env.PGSERVICEFILE = saved;
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('open() errors (table missing / invalid) do not show it', async () => {
      const missing = make({
        db: withPassword(servers()[0]!),
        createTable: false,
        retryMinDelay: 5,
      });
      const err = await rejection(missing.open());
      expect(err.code).to.equal(ErrorCode.TableMissing);
      expectNoSecret(err, 'SPG_TABLE_MISSING');
      expectNoSecret(missing.status(), 'status() after a failed open');

      await query(0, `CREATE TABLE ${table} (sess_id text PRIMARY KEY)`);
      const invalid = make({ db: withPassword(servers()[0]!), retryMinDelay: 5 });
      const err2 = await rejection(invalid.open());
      expect(err2.code).to.equal(ErrorCode.TableInvalid);
      expectNoSecret(err2, 'SPG_TABLE_INVALID');
    });

    it('connection errors (refused, bad database) do not show it', async () => {
      const refused = make({
        db: `host=127.0.0.1 port=1 dbname=x user=y password=${SECRET}`,
        connectTimeout: 2,
        retryMinDelay: 5,
      });
      const err = await rejection(refused.open());
      expectNoSecret(err, 'refused');
      expectNoSecret(refused.status(), 'status() of a refused server');

      const noDb = make({
        db: withPassword(servers()[0]!).replace('dbname=postgres', 'dbname=no_such_db'),
        retryMinDelay: 5,
      });
      const err2 = await rejection(noDb.open());
      expect(err2.message).to.include('no_such_db');
      expectNoSecret(err2, 'unknown database');
      expectNoSecret(noDb.status(), 'status() of a server with an unknown database');
    });
  });

  describe('reset()', () => {
    it('resolves true and the handler keeps working', async () => {
      const handler = make();
      await handler.open();
      const id = newId();
      await handler.write(id, 'before');
      expect(await handler.reset()).to.equal(true);
      expect(handler.status().servers[0]!.state).to.equal('up');
      expect((await handler.read(id)).data).to.equal('before');
      await handler.write(id, 'after');
      expect((await handler.read(id)).data).to.equal('after');
      expect(await handler.reset()).to.equal(true);
      expect(await handler.reset()).to.equal(true);
      expect((await handler.read(id)).data).to.equal('after');
    });

    it('replaces the connections (new backends) without leaking the old ones', async () => {
      const app = `spg_reset_${newId().slice(0, 12).replace(/-/g, '_')}`;
      const handler = make({ db: `${servers()[0]!} application_name=${app}`, connections: 2 });
      await handler.open();
      const backends = async (): Promise<number[]> => {
        const rows = await query<{ pid: number }>(
          0,
          `SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid`,
          [app],
        );
        return rows.map((r) => r.pid);
      };
      const before = await backends();
      expect(before, 'connections: 2').to.have.length(2);
      expect(await handler.reset()).to.equal(true);
      await handler.write(newId(), 'x');
      let after = await backends();
      for (let i = 0; i < 30 && after.length !== 2; i++) {
        await sleep(100);
        after = await backends();
      }
      expect(after).to.have.length(2);
      expect(
        after.filter((pid) => before.includes(pid)),
        'backends kept',
      ).to.deep.equal([]);
    });

    it('before open(): connects and resolves true', async () => {
      const handler = make();
      expect(await handler.reset()).to.equal(true);
      expect(handler.status().servers[0]!.state).to.equal('up');
      await handler.write(newId(), 'x');
    });

    it('with 3 servers: true, all up afterwards', async () => {
      const handler = make({ db: db(3) });
      await handler.open();
      expect(await handler.reset()).to.equal(true);
      expect(handler.status().servers.map((s) => s.state)).to.deep.equal(['up', 'up', 'up']);
    });

    it('with no reachable server: resolves false', async () => {
      const handler = make({
        db: 'host=127.0.0.1 port=1 dbname=x',
        connectTimeout: 2,
        retryMinDelay: 5,
      });
      expect(await handler.reset()).to.equal(false);
    });

    it('200 reads in flight during reset() all resolve with the right data', async function () {
      this.timeout(30_000);
      const handler = make();
      await handler.open();
      const ids = Array.from({ length: 20 }, () => newId());
      await Promise.all(ids.map((id, i) => handler.write(id, `data-${i}`)));
      const reads = Array.from({ length: 200 }, (_, i) => handler.read(ids[i % ids.length]!));
      const reset = handler.reset();
      const more = Array.from({ length: 50 }, (_, i) => handler.read(ids[i % ids.length]!));
      const results = await Promise.allSettled([...reads, ...more]);
      const failures = results.filter((r) => r.status === 'rejected');
      expect(failures.map((f) => String((f as PromiseRejectedResult).reason))).to.deep.equal([]);
      results.forEach((r, i) => {
        const s = (r as PromiseFulfilledResult<{ data: string }>).value;
        expect(s.data).to.equal(`data-${(i % 200) % ids.length}`);
      });
      expect(await reset).to.equal(true);
    });

    it('writes in flight during reset() are all stored', async function () {
      this.timeout(30_000);
      const handler = make();
      await handler.open();
      const ids = Array.from({ length: 200 }, () => newId());
      const writes = ids.map((id, i) => handler.write(id, `w${i}`));
      const reset = handler.reset();
      const results = await Promise.allSettled(writes);
      expect(results.filter((r) => r.status === 'rejected')).to.have.length(0);
      expect(await reset).to.equal(true);
      const rows = await query<{ n: number }>(0, `SELECT count(*)::int AS n FROM ${table}`);
      expect(rows[0]!.n).to.equal(200);
    });
  });
});
