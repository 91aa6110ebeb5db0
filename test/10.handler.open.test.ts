// open(): table creation (14 columns, primary key), idempotence, race-free creation, and the
// checks of an existing table (missing table, missing column, PHP's own DDL, schemas, quoting).
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { ErrorCode } from '../lib';
import { clusters, db, newId, query, servers, uniqueTable } from './support/db';
import { rejection } from './support/errors';
import { handlerFactory } from './support/handlers';

const COLUMNS = [
  'sess_id',
  'sess_name',
  'sess_data',
  'sess_created',
  'sess_modified',
  'sess_expire',
  'sess_addr_created',
  'sess_addr_modified',
  'sess_counter',
  'sess_error',
  'sess_warning',
  'sess_notice',
  'sess_err_message',
  'sess_custom',
];

// The PHP extension's own DDL (docs/operations.md, The table), with a table name of our choosing.
function phpDdl(table: string): string {
  return `CREATE TABLE ${table} ( sess_id            text	PRIMARY KEY, sess_name          text, sess_data          text, sess_created       integer, sess_modified      integer, sess_expire        integer, sess_addr_created  text, sess_addr_modified text, sess_counter       integer, sess_error         integer, sess_warning       integer, sess_notice        integer, sess_err_message   text, sess_custom        text)`;
}

async function columnsOf(schema: string, table: string) {
  return query<{ column_name: string; data_type: string }>(
    0,
    `SELECT column_name, data_type FROM information_schema.columns
     WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`,
    [schema, table],
  );
}

async function primaryKeyOf(regclass: string): Promise<string[]> {
  const rows = await query<{ attname: string }>(
    0,
    `SELECT a.attname FROM pg_index i
     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
     WHERE i.indrelid = to_regclass($1) AND i.indisprimary`,
    [regclass],
  );
  return rows.map((r) => r.attname);
}

describe('10 handler: open()', () => {
  // Unopened handlers on test server 0, housekeeping timers off; closed after each test.
  const { make } = handlerFactory();

  it('creates the table with the 14 columns and sess_version, bigint times and a primary key on sess_id', async () => {
    const table = uniqueTable();
    await make({ table }).open();
    const columns = await columnsOf('public', table);
    expect(columns.map((c) => c.column_name)).to.have.members([...COLUMNS, 'sess_version']);
    const types = Object.fromEntries(columns.map((c) => [c.column_name, c.data_type]));
    for (const c of ['sess_created', 'sess_modified', 'sess_expire', 'sess_version']) {
      expect(types[c], c).to.equal('bigint');
    }
    for (const c of ['sess_counter', 'sess_error', 'sess_warning', 'sess_notice']) {
      expect(types[c], c).to.equal('integer');
    }
    for (const c of [
      'sess_id',
      'sess_name',
      'sess_data',
      'sess_addr_created',
      'sess_addr_modified',
      'sess_err_message',
      'sess_custom',
    ]) {
      expect(types[c], c).to.equal('text');
    }
    expect(await primaryKeyOf(table)).to.deep.equal(['sess_id']);
  });

  it('creates no index on sess_expire on PostgreSQL 14+ (writes stay HOT; GC walks the heap by ranges)', async () => {
    const table = uniqueTable();
    await make({ table }).open();
    const rows = await query(
      0,
      `SELECT 1 FROM pg_index i JOIN pg_attribute a
       ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
       WHERE i.indrelid = to_regclass($1) AND a.attname = 'sess_expire'`,
      [table],
    );
    expect(rows).to.have.length(0);
  });

  it('tables whose long names share a prefix are each created, each with its own primary key', async () => {
    const prefix = uniqueTable('p').padEnd(55, 'x'); // 55 bytes; names below are 57
    const tables = [`${prefix}_a`, `${prefix}_b`];
    for (const table of tables) await make({ table }).open();
    for (const table of tables) expect(await primaryKeyOf(table), table).to.deep.equal(['sess_id']);
  });

  it('is idempotent: a second open() and a second handler keep the table and its rows', async () => {
    const table = uniqueTable();
    const first = make({ table });
    await first.open();
    await first.open();
    const id = newId();
    expect(await first.write(id, 'kept')).to.equal(true);
    const second = make({ table });
    await second.open();
    await first.open();
    expect((await second.read(id)).data).to.equal('kept');
    const rows = await query(0, `SELECT count(*)::int AS n FROM ${table}`);
    expect(rows[0]!.n).to.equal(1);
  });

  it('concurrent open() of 5 handlers on a fresh table all succeed (race-free creation)', async () => {
    const table = uniqueTable();
    const many = Array.from({ length: 5 }, () => make({ table }));
    const results = await Promise.allSettled(many.map((h) => h.open()));
    for (const r of results) {
      expect(r.status, r.status === 'rejected' ? String(r.reason) : '').to.equal('fulfilled');
    }
    const tables = await query(0, `SELECT 1 FROM pg_class WHERE relname = $1`, [table]);
    expect(tables).to.have.length(1);
    // every one of them is usable
    const ids = many.map(() => newId());
    await Promise.all(many.map((h, i) => h.write(ids[i]!, `from ${i}`)));
    const count = await query(0, `SELECT count(*)::int AS n FROM ${table}`);
    expect(count[0]!.n).to.equal(5);
  });

  it('concurrent first use without open() (read and write) also creates the table once', async () => {
    const table = uniqueTable();
    const many = Array.from({ length: 5 }, () => make({ table }));
    const ids = many.map(() => newId());
    const results = await Promise.allSettled(many.map((h, i) => h.write(ids[i]!, 'x')));
    for (const r of results) {
      expect(r.status, r.status === 'rejected' ? String(r.reason) : '').to.equal('fulfilled');
    }
    const count = await query(0, `SELECT count(*)::int AS n FROM ${table}`);
    expect(count[0]!.n).to.equal(5);
  });

  it('createTable: false on a missing table rejects SPG_TABLE_MISSING and creates nothing', async () => {
    const table = uniqueTable();
    const handler = make({ table, createTable: false, retryMinDelay: 5 });
    const err = await rejection(handler.open());
    expect(err.code).to.equal(ErrorCode.TableMissing);
    expect(err.message).to.include(table);
    const rows = await query(0, `SELECT to_regclass($1) IS NULL AS missing`, [table]);
    expect(rows[0]!.missing).to.equal(true);
  });

  it('createTable: false on an existing table opens it', async () => {
    const table = uniqueTable();
    await query(0, phpDdl(table));
    const handler = make({ table, createTable: false });
    await handler.open();
    const id = newId();
    await handler.write(id, 'data');
    expect((await handler.read(id)).data).to.equal('data');
  });

  it('an existing table lacking a column rejects SPG_TABLE_INVALID naming the column', async () => {
    const table = uniqueTable();
    await query(
      0,
      phpDdl(table).replace(', sess_custom        text)', ')'), // no sess_custom
    );
    const handler = make({ table, retryMinDelay: 5 });
    const err = await rejection(handler.open());
    expect(err.code).to.equal(ErrorCode.TableInvalid);
    expect(err.message).to.include('sess_custom');
    expect(err.retryable).to.equal(false);
    // and the table was not altered behind the user's back
    const columns = await columnsOf('public', table);
    expect(columns.map((c) => c.column_name)).to.not.include('sess_custom');
  });

  it('names every missing column', async () => {
    const table = uniqueTable();
    await query(0, `CREATE TABLE ${table} (sess_id text PRIMARY KEY, sess_data text)`);
    const err = await rejection(make({ table, retryMinDelay: 5 }).open());
    expect(err.code).to.equal(ErrorCode.TableInvalid);
    for (const column of ['sess_expire', 'sess_counter', 'sess_err_message', 'sess_custom']) {
      expect(err.message).to.include(column);
    }
  });

  it('a table without a unique key on sess_id (the 2003 DDL) rejects SPG_TABLE_INVALID', async () => {
    const table = uniqueTable();
    await query(0, phpDdl(table).replace('PRIMARY KEY', ''));
    await query(0, `CREATE INDEX ${table}_idx ON ${table} USING BTREE (sess_id)`);
    const err = await rejection(make({ table, retryMinDelay: 5 }).open());
    expect(err.code).to.equal(ErrorCode.TableInvalid);
    expect(err.message).to.include('sess_id');
  });

  it('a table created by PHP (integer time columns) works for read, write, touch, destroy, gc', async () => {
    const table = uniqueTable();
    await query(0, phpDdl(table));
    const handler = make({ table, maxLifetime: 100 });
    await handler.open();
    const id = newId();
    const s = await handler.read(id, { address: '192.0.2.1' });
    expect(s.isNew).to.equal(true);
    s.setField('php-custom');
    expect(await handler.write(s, 'a|s:1:"b";')).to.equal(true);
    const again = await handler.read(id, { address: '192.0.2.2' });
    expect(again.data).to.equal('a|s:1:"b";');
    expect(again.info().accesses).to.equal(2);
    expect(await handler.write(again, 'a|s:1:"c";')).to.equal(true);
    expect(await handler.touch(id)).to.equal(true);
    const rows = await query(0, `SELECT * FROM ${table} WHERE sess_id = $1`, [id]);
    expect(rows[0]).to.include({
      sess_data: 'a|s:1:"c";',
      sess_counter: 2,
      sess_custom: 'php-custom',
      sess_addr_created: '192.0.2.1',
      sess_addr_modified: '192.0.2.2',
    });
    expect(rows[0]!.sess_expire).to.be.a('number'); // still integer columns
    const other = newId();
    await handler.write(other, 'old');
    await query(0, `UPDATE ${table} SET sess_expire = 1000 WHERE sess_id = $1`, [other]);
    expect(await handler.gc()).to.equal(1);
    expect(await handler.destroy(id)).to.equal(true);
    const left = await query(0, `SELECT count(*)::int AS n FROM ${table}`);
    expect(left[0]!.n).to.equal(0);
  });

  it('an existing table with extra user columns works', async () => {
    const table = uniqueTable();
    await query(
      0,
      phpDdl(table).replace(
        'sess_custom        text)',
        "sess_custom text, user_id integer, note text DEFAULT 'n')",
      ),
    );
    const handler = make({ table });
    await handler.open();
    const id = newId();
    await handler.write(id, 'x');
    await handler.write(id, 'y');
    const rows = await query(
      0,
      `SELECT sess_data, user_id, note FROM ${table} WHERE sess_id = $1`,
      [id],
    );
    expect(rows).to.deep.equal([{ sess_data: 'y', user_id: null, note: 'n' }]);
  });

  it('a schema-qualified table is created and used in that schema', async () => {
    const schema = uniqueTable('s');
    const name = uniqueTable();
    await query(0, `CREATE SCHEMA ${schema}`);
    const handler = make({ table: `${schema}.${name}` });
    await handler.open();
    const columns = await columnsOf(schema, name);
    expect(columns).to.have.length(15);
    expect(await columnsOf('public', name)).to.have.length(0);
    const id = newId();
    await handler.write(id, 'in schema');
    const rows = await query(0, `SELECT sess_data FROM ${schema}.${name} WHERE sess_id = $1`, [id]);
    expect(rows).to.deep.equal([{ sess_data: 'in schema' }]);
    expect((await handler.read(id)).data).to.equal('in schema');
  });

  it('a schema-qualified table that exists is used, not a same-named table elsewhere', async () => {
    const schema = uniqueTable('s');
    const name = uniqueTable();
    await query(0, `CREATE SCHEMA ${schema}`);
    await query(0, phpDdl(`${schema}.${name}`));
    await query(0, `CREATE TABLE public.${name} (unrelated int)`); // not a session table
    const handler = make({ table: `${schema}.${name}`, createTable: false });
    await handler.open();
    const id = newId();
    await handler.write(id, 'here');
    const rows = await query(0, `SELECT sess_data FROM ${schema}.${name}`);
    expect(rows).to.deep.equal([{ sess_data: 'here' }]);
  });

  it('a missing schema surfaces the SQLSTATE (3F000) with the server index', async () => {
    const handler = make({ table: `${uniqueTable('nosuch')}.t`, retryMinDelay: 5 });
    const err = await rejection(handler.open());
    expect(err.code).to.equal('3F000');
    expect(err.server).to.equal(0);
  });

  it('a table name needing quotes (\'My "odd" table\') works', async () => {
    const name = `My "odd" table ${uniqueTable()}`;
    const handler = make({ table: name });
    await handler.open();
    const found = await query(0, `SELECT relname FROM pg_class WHERE relname = $1`, [name]);
    expect(found).to.deep.equal([{ relname: name }]);
    const quoted = `"${name.replace(/"/g, '""')}"`;
    expect(await primaryKeyOf(quoted)).to.deep.equal(['sess_id']);
    const id = newId();
    expect(await handler.write(id, 'odd')).to.equal(true);
    expect((await handler.read(id)).data).to.equal('odd');
    const rows = await query(0, `SELECT sess_data FROM ${quoted} WHERE sess_id = $1`, [id]);
    expect(rows).to.deep.equal([{ sess_data: 'odd' }]);
    expect(await handler.destroy(id)).to.equal(true);
  });

  it('a table name that looks like SQL is only ever an identifier', async () => {
    const name = `x; DROP TABLE victim_${uniqueTable()}; --`;
    const victim = name.slice('x; DROP TABLE '.length, name.indexOf(';', 2));
    await query(0, `CREATE TABLE ${victim} (a int)`);
    const handler = make({ table: name });
    await handler.open();
    const id = newId();
    await handler.write(id, 'safe');
    expect((await handler.read(id)).data).to.equal('safe');
    const still = await query(0, `SELECT to_regclass($1) IS NOT NULL AS present`, [victim]);
    expect(still[0]!.present).to.equal(true);
  });

  it('prints nothing on stderr or stdout (server NOTICEs are not dumped on the console)', async function () {
    this.timeout(30_000);
    const table = uniqueTable();
    // Two handlers on the same fresh table: the second CREATE ... IF NOT EXISTS makes the
    // server send "NOTICE: relation ... already exists, skipping".
    const script = `
      const { SessionPgsql } = require('./lib');
      (async () => {
        const options = { db: process.env.SPG_DB, table: process.env.SPG_TABLE, gcInterval: 0, vacuumInterval: 0 };
        const a = new SessionPgsql(options);
        const b = new SessionPgsql(options);
        await Promise.all([a.open(), b.open()]);
        const c = new SessionPgsql(options);
        await c.open();
        await a.write('abcdefghijklmnopqrstuvwxyz', 'x');
        await Promise.all([a.close(), b.close(), c.close()]);
      })().catch((err) => { process.exitCode = 3; console.error(err); });
    `;
    const result = await new Promise<{ code: number; stdout: string; stderr: string }>(
      (resolve) => {
        execFile(
          process.execPath,
          ['-r', 'tsx/cjs', '-e', script],
          {
            cwd: path.resolve(__dirname, '..'),
            timeout: 25_000,
            env: { ...process.env, SPG_DB: db(1), SPG_TABLE: table },
          },
          (err, stdout, stderr) =>
            resolve({
              code: err ? (typeof err.code === 'number' ? err.code : -1) : 0,
              stdout,
              stderr,
            }),
        );
      },
    );
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stderr).to.equal('');
    expect(result.stdout).to.equal('');
  });
  describe('a server that fails at once says why', () => {
    // libpq fails these before any socket wait: no socket directory, no server on the socket,
    // a host name that does not resolve (.invalid never does, RFC 6761: no query leaves the
    // local resolver). Each reaches open() as the server's own error, like a refused port.
    const socketDir = () => clusters()[0]!.socketDir;
    const cases = [
      {
        what: 'a missing socket directory',
        entry: () => 'host=/nonexistent/spg-no-such-dir dbname=postgres',
        text: () => '/nonexistent/spg-no-such-dir/.s.PGSQL.',
      },
      {
        what: 'no server on the socket (a real socket directory, another port)',
        entry: () => `host=${socketDir()} port=1 dbname=postgres`,
        text: () => `${socketDir()}/.s.PGSQL.1`,
      },
      {
        what: 'a host name that does not resolve',
        entry: () => 'host=spg-test.invalid port=1 dbname=postgres',
        text: () => 'spg-test.invalid',
      },
    ];

    for (const c of cases) {
      it(`${c.what}: open() rejects with SPG_CONNECT_FAILED and libpq's text`, async () => {
        const handler = make({ db: c.entry(), connectTimeout: 2, retryMinDelay: 5 });
        const err = await rejection(handler.open());
        expect(err.code).to.equal(ErrorCode.ConnectFailed);
        expect(err.server).to.equal(0);
        expect(err.retryable).to.equal(true);
        expect(err.message).to.include(c.text());
        // status() and the next operation tell the same reason.
        expect(handler.status().servers[0]!.lastError?.message).to.include(c.text());
        const read = await rejection(handler.read(newId()));
        expect(read.message).to.include(c.text());
      });
    }

    it('among several servers: SPG_NO_SERVER naming each server’s reason', async () => {
      const [socket, , unresolvable] = cases;
      const handler = make({
        db: `${socket!.entry()};${unresolvable!.entry()}`,
        connectTimeout: 2,
        retryMinDelay: 5,
      });
      const err = await rejection(handler.open());
      expect(err.code).to.equal(ErrorCode.NoServer);
      expect(err.message).to.include(socket!.text());
      expect(err.message).to.include(unresolvable!.text());
    });

    it('a live server next to one that fails at once: open() resolves', async () => {
      const handler = make({
        db: `${servers()[0]};host=spg-test.invalid dbname=postgres`,
        table: uniqueTable(),
        retryMinDelay: 5,
      });
      await handler.open();
      expect(handler.status().servers.map((s) => s.state)).to.deep.equal(['up', 'down']);
    });
  });
});
