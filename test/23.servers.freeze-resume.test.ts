// A home server that hangs and then resumes (docs/behaviour.md, Versions): SIGSTOP every process of it while
// writes go on, so they time out there and are resent to the next server, write again, then
// SIGCONT. The resumed server runs the writes it had queued, late. Every acknowledged value must
// still be the one read back, on the same handler and on a fresh one, and a session destroyed
// meanwhile must stay destroyed.
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { ErrorCode, SessionPgsql, SessionPgsqlError, type Session } from '../lib';
import { db, newId, query, restartAll, uniqueTable } from './support/db';
import { fastRecovery, handlerFactory, pgClients } from './support/handlers';
import { freeze, freezeBackends, type Frozen } from './support/freeze';
import { sleep, waitUntil } from './support/wait';

const HOME = 0;

/** Fresh ids whose placement order starts with `home`. */
function idsHomedOn(h: SessionPgsql, home: number, n: number): string[] {
  const ids: string[] = [];
  while (ids.length < n) {
    const id = newId();
    if (h.serversFor(id)[0] === home) ids.push(id);
  }
  return ids;
}

describe('servers: a home server that hangs, then resumes', function () {
  this.timeout(60_000);
  const handlers: SessionPgsql[] = [];
  let frozen: Frozen | null = null;

  afterEach(async () => {
    frozen?.resume(); // a failing test never leaves a server stopped
    frozen = null;
    await Promise.all(handlers.splice(0).map((h) => h.close()));
    await restartAll();
  });

  it('no acknowledged write is lost to a write the resumed server runs late', async () => {
    const table = uniqueTable('frz');
    const options = { ...fastRecovery(table), statementTimeout: 1 };
    const h = new SessionPgsql(options);
    handlers.push(h);
    h.on('warning', () => {});
    await h.open();
    const kept = idsHomedOn(h, HOME, 6);
    const destroyed = idsHomedOn(h, HOME, 3);
    const all = [...kept, ...destroyed];

    // Before the hang: v0 of every session, at home; the sessions as a request read them.
    const before = new Map<string, Session>();
    for (const id of all) {
      await h.write(await h.read(id), `${id} v0`);
      before.set(id, await h.read(id));
    }
    expect(await query(HOME, `SELECT count(*)::int AS n FROM ${table}`)).to.deep.equal([
      { n: all.length },
    ]);

    const acked = new Map<string, string>(all.map((id) => [id, `${id} v0`]));
    frozen = freeze(HOME);
    try {
      // v1 goes to the hung home, times out there, and is resent to the next server.
      const v1 = await Promise.allSettled(all.map((id) => h.write(before.get(id)!, `${id} v1`)));
      v1.forEach((r, i) => {
        if (r.status === 'fulfilled') acked.set(all[i]!, `${all[i]} v1`);
      });
      expect(h.status().servers[HOME]!.state, 'home while hung').to.not.equal('up');
      // v2 (read, then written) goes straight to the server standing in for home.
      for (const id of kept) {
        await h.write(await h.read(id), `${id} v2`);
        acked.set(id, `${id} v2`);
      }
      for (const id of destroyed) {
        await h.destroy(id);
        acked.set(id, '');
      }
      // why: sess_modified counts whole seconds; today's look-aside only goes wrong when the
      // late run lands in a later second than v2, as it does after any pause longer than that.
      await sleep(1_100);
    } finally {
      frozen.resume();
    }

    // The resumed server runs what it had queued: v1 of every session, late.
    await waitUntil('the resumed server to run the queued v1 writes', 20_000, async () => {
      const rows = await query<{ sess_id: string; sess_data: string }>(
        HOME,
        `SELECT sess_id, sess_data FROM ${table} WHERE sess_id = ANY($1)`,
        [all],
      );
      return rows.filter((r) => r.sess_data.endsWith(' v1')).length === all.length;
    });
    await waitUntil('home to be up again', 20_000, () => h.status().servers[HOME]!.state === 'up');

    const readAll = async (handler: SessionPgsql) => {
      const got: Record<string, string> = {};
      for (const id of all) got[id] = (await handler.read(id)).data;
      return got;
    };
    expect(await readAll(h), 'read through the same handler').to.deep.equal(
      Object.fromEntries(acked),
    );
    const fresh = new SessionPgsql({ ...options, gcInterval: 0, vacuumInterval: 0 });
    handlers.push(fresh);
    await fresh.open();
    expect(await readAll(fresh), 'read through a fresh handler').to.deep.equal(
      Object.fromEntries(acked),
    );
  });

  it('a write a stalled connection runs after the server is back cannot undo a newer write or a destroy', async () => {
    const table = uniqueTable('stl');
    const options = { ...fastRecovery(table), statementTimeout: 1 };
    const h = new SessionPgsql(options);
    handlers.push(h);
    h.on('warning', () => {});
    await h.open();
    const [rewritten, destroyed] = idsHomedOn(h, HOME, 2) as [string, string];
    const before = new Map<string, Session>();
    for (const id of [rewritten, destroyed]) {
      await h.write(await h.read(id), `${id} v0`);
      before.set(id, await h.read(id));
    }
    // Only the handler's own backend stalls; the server goes on serving new connections.
    const pids = (
      await query<{ pid: number }>(
        HOME,
        `SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND strpos(query, $1) > 0`,
        [table],
      )
    ).map((r) => r.pid);
    frozen = freezeBackends(pids);
    const acked: Record<string, string> = {};
    try {
      // v1 goes to the stalled connection, times out, and is resent to the next server.
      await Promise.all([rewritten, destroyed].map((id) => h.write(before.get(id)!, `${id} v1`)));
      // The handler reconnects to home; what follows is done there, before v1 runs.
      await waitUntil(
        'home to be up again',
        20_000,
        () => h.status().servers[HOME]!.state === 'up',
      );
      await h.write(await h.read(rewritten), `${rewritten} v2`);
      acked[rewritten] = `${rewritten} v2`;
      await h.destroy(destroyed);
      acked[destroyed] = '';
    } finally {
      frozen.resume();
    }
    await waitUntil('the stalled backend to run v1 and end', 20_000, async () => {
      const left = await query(HOME, `SELECT 1 FROM pg_stat_activity WHERE pid = ANY($1)`, [pids]);
      return left.length === 0;
    });

    const readAll = async (handler: SessionPgsql) => {
      const got: Record<string, string> = {};
      for (const id of [rewritten, destroyed]) got[id] = (await handler.read(id)).data;
      return got;
    };
    expect(await readAll(h), 'read through the same handler').to.deep.equal(acked);
    const fresh = new SessionPgsql({ ...options, gcInterval: 0, vacuumInterval: 0 });
    handlers.push(fresh);
    await fresh.open();
    expect(await readAll(fresh), 'read through a fresh handler').to.deep.equal(acked);
  });
});

// The version column on tables made before it, by PHP or by an older session-pgsql.
describe('versions: sess_version on existing tables', function () {
  this.timeout(30_000);
  const { make } = handlerFactory();
  const pg = pgClients();

  // The original's DDL (integer times, no sess_version).
  const phpTable = async (): Promise<string> => {
    const table = uniqueTable('php');
    await query(
      0,
      `CREATE TABLE ${table} (sess_id text PRIMARY KEY, sess_name text, sess_data text,
        sess_created integer, sess_modified integer, sess_expire integer,
        sess_addr_created text, sess_addr_modified text, sess_counter integer,
        sess_error integer, sess_warning integer, sess_notice integer,
        sess_err_message text, sess_custom text)`,
    );
    return table;
  };
  const versionColumn = async (table: string) =>
    query<{ data_type: string }>(
      0,
      `SELECT data_type FROM information_schema.columns
       WHERE table_name = $1 AND column_name = 'sess_version'`,
      [table],
    );
  const warningsOf = (h: SessionPgsql): SessionPgsqlError[] => {
    const seen: SessionPgsqlError[] = [];
    h.on('warning', (e: SessionPgsqlError) => seen.push(e));
    return seen;
  };

  it('createTable adds sess_version to a PHP-made table; a row PHP wrote (no version) yields to a write', async () => {
    const table = await phpTable();
    const id = newId();
    await query(
      0,
      `INSERT INTO ${table} (sess_id, sess_data, sess_expire, sess_counter)
       VALUES ($1, 'from php', extract(epoch from now())::int + 600, 1)`,
      [id],
    );
    const h = make({ table });
    const warnings = warningsOf(h);
    await h.open();
    expect(await versionColumn(table)).to.deep.equal([{ data_type: 'bigint' }]);
    expect(warnings).to.deep.equal([]);
    expect(h.status().servers[0]!.setup.version).to.equal('created');
    const s = await h.read(id);
    expect(s.data).to.equal('from php');
    await h.write(s, 'from node');
    const [row] = await query<{ sess_data: string; sess_counter: number; v: boolean }>(
      0,
      `SELECT sess_data, sess_counter, sess_version IS NOT NULL AS v FROM ${table} WHERE sess_id = $1`,
      [id],
    );
    expect(row).to.deep.equal({ sess_data: 'from node', sess_counter: 2, v: true });
    // PHP updates the row without knowing the column: the next write still wins.
    await query(0, `UPDATE ${table} SET sess_data = 'php again' WHERE sess_id = $1`, [id]);
    const again = await h.read(id);
    expect(again.data).to.equal('php again');
    await h.write(again, 'node again');
    expect((await h.read(id)).data).to.equal('node again');
  });

  it('createTable off: a table without sess_version still works, with a warning naming the migration', async () => {
    const table = await phpTable();
    const h = make({ table, createTable: false, maxBatch: 64 });
    const warnings = warningsOf(h);
    await h.open();
    expect(await versionColumn(table)).to.deep.equal([]);
    const id = newId();
    await h.write(await h.read(id), 'one');
    await h.write(await h.read(id), 'two');
    expect((await h.read(id)).data).to.equal('two');
    // Writes side by side go out as one statement (the merged write), unversioned too.
    const many = Array.from({ length: 20 }, () => newId());
    await Promise.all(many.map((m) => h.write(m, `data of ${m}`)));
    const reads = await Promise.all(many.map((m) => h.read(m)));
    expect(reads.map((r) => r.data)).to.deep.equal(many.map((m) => `data of ${m}`));
    expect(warnings.map((w) => w.code)).to.deep.equal([ErrorCode.TableInvalid]);
    expect(h.status().servers[0]!.setup.version).to.equal('missing');
    expect(warnings[0]!.message).to.include('sess_version');
    expect(warnings[0]!.message).to.include(`npx session-pgsql init --table "${table}"`);
  });

  it('a table too busy to alter is served without versions, and the next connection migrates it', async () => {
    const table = await phpTable();
    const busy = await pg.connect(0);
    await busy.query(`BEGIN; SELECT count(*) FROM ${table}`); // a lock ALTER TABLE waits for
    const h = make({ table, statementTimeout: 5 });
    const warnings = warningsOf(h);
    await h.open();
    expect(warnings.map((w) => w.code)).to.deep.equal([ErrorCode.TableInvalid]);
    expect(warnings[0]!.message).to.include('lock timeout');
    const id = newId();
    await h.write(id, 'served meanwhile');
    await busy.query('COMMIT');
    expect(await versionColumn(table)).to.deep.equal([]);
    expect(await h.reset()).to.equal(true);
    expect(await versionColumn(table)).to.deep.equal([{ data_type: 'bigint' }]);
    expect(h.status().servers[0]!.setup.version).to.equal('created');
    expect((await h.read(id)).data).to.equal('served meanwhile');
  });

  it('`session-pgsql init` is the explicit migration for createTable: false deployments', async () => {
    const table = await phpTable();
    const cli = path.join(__dirname, '..', 'dist', 'cli.js');
    const out = await new Promise<string>((resolve, reject) =>
      execFile(
        process.execPath,
        [cli, 'init', '--db', db(1), '--table', table],
        { timeout: 20_000 },
        (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}${stderr}`)) : resolve(stdout),
      ),
    );
    expect(out).to.include(`created column ${table}.sess_version`);
    expect(await versionColumn(table)).to.deep.equal([{ data_type: 'bigint' }]);
    const h = make({ table, createTable: false });
    const warnings = warningsOf(h);
    await h.open();
    expect(warnings).to.deep.equal([]);
  });

  it('a blind write issued before a stored version loses its data but not its count; a write after reading it wins', async () => {
    const h = make({ table: uniqueTable('ver') });
    await h.open();
    const table = h.status().table;
    const id = newId();
    await h.write(id, 'first');
    // A version an hour ahead of our clock: what a host with a fast clock would store.
    const ahead = BigInt(Date.now() + 3_600_000) * 1000n * 2048n;
    await query(
      0,
      `UPDATE ${table} SET sess_data = 'ahead', sess_version = $2 WHERE sess_id = $1`,
      [id, ahead.toString()],
    );
    await h.write(id, 'blind'); // issued with our (earlier) clock: stale there
    const [row] = await query<{ sess_data: string; sess_counter: number }>(
      0,
      `SELECT sess_data, sess_counter FROM ${table} WHERE sess_id = $1`,
      [id],
    );
    expect(row).to.deep.equal({ sess_data: 'ahead', sess_counter: 2 });
    // Having read the row, this process issues versions after it, whatever its clock says.
    const s = await h.read(id);
    await h.write(s, 'after reading');
    expect((await h.read(id)).data).to.equal('after reading');
  });
});
