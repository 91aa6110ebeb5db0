// `session-pgsql import connect-pg-simple` (docs/from-connect-pg-simple.md): live sessions of a table that
// connect-pg-simple itself created and filled are copied into ours over three servers, and
// read back with the same sids through ExpressStore and SessionPgsql; expired ones stay behind;
// a second run copies nothing and never regresses a session our store has since written.
import { expect } from 'chai';
import session from 'express-session';
import { Pool } from 'pg';
import { SessionPgsql } from '../lib';
import { ExpressStore } from '../lib/express';
import { randomBytes } from 'node:crypto';
import { db, query, servers, uniqueTable } from './support/db';
import { closedAfterEach } from './support/handlers';
import { runCli } from './support/cli';

// connect-pg-simple has no types of its own; this is the part of its API the test uses.
type PgStore = session.Store & { close(): void };
const PgSession = require('connect-pg-simple')(session) as new (options: object) => PgStore;

const HOUR = 3600_000;
// Sids made here, not by support's newId(): rows hold them raw in every mode, so the hashed-mode
// translation of db.ts's query() must not know them.
const newId = () => randomBytes(24).toString('base64url');
// The import (a child process) writes raw ids, as the CLI does for any table: the handlers here
// read them as such, also in the suite's hashed mode. (A hashIds table takes an import followed
// by migrate-ids: docs/operations.md, tested in 38.cli.migrate-ids.)
const RAW_IDS = { gcInterval: 0, vacuumInterval: 0, hashIds: false } as const;

const cli = (args: string[]) => runCli(args, {}, 120_000);

/** The line that sums an import up, as numbers. */
function counts(stdout: string) {
  const m =
    /^(copied|would copy) (\d+) live session\(s\); skipped (\d+) expired, (\d+) already here with the same or a later expiry, (\d+) our table cannot hold$/m.exec(
      stdout,
    );
  expect(m, stdout).to.not.equal(null);
  return { copied: +m![2]!, expired: +m![3]!, newer: +m![4]!, invalid: +m![5]! };
}

/** A session as express-session hands it to a store (cookie.expires a Date). */
function sess(expiresInMs: number, extra: Record<string, unknown>) {
  return {
    cookie: {
      originalMaxAge: expiresInMs,
      expires: new Date(Date.now() + expiresInMs),
      httpOnly: true,
      path: '/',
    },
    ...extra,
  } as unknown as session.SessionData;
}

/** What a store reads back: the JSON round trip of what was stored. */
function asStored(value: session.SessionData): unknown {
  return JSON.parse(JSON.stringify(value));
}

function call<T>(fn: (cb: (err: unknown, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) =>
    fn((err, value) => (err ? reject(err) : resolve(value!))),
  );
}

describe('34 CLI: import connect-pg-simple', function () {
  this.timeout(120_000);
  const closeList = closedAfterEach<{ close(): Promise<unknown> }>();
  /** `item`, closed after the test. */
  function keep<T extends { close(): Promise<unknown> }>(item: T): T {
    closeList.keep(item);
    return item;
  }
  let source: string; // connect-pg-simple's table, on server 0
  let ours: string;
  let pool: Pool;
  let pgStore: PgStore;

  function poolConfig() {
    const kv = Object.fromEntries(
      servers()[0]!
        .split(/\s+/)
        .map((p) => p.split('=') as [string, string]),
    );
    return { host: kv.host, port: Number(kv.port), user: kv.user, database: kv.dbname };
  }

  beforeEach(() => {
    source = uniqueTable('cps');
    ours = uniqueTable('ours');
    pool = new Pool(poolConfig());
    pgStore = new PgSession({ pool, tableName: source, createTableIfMissing: true });
  });

  afterEach(async () => {
    pgStore.close();
    await pool.end();
    await query(0, `DROP TABLE IF EXISTS ${source}`);
    for (const i of [0, 1, 2]) await query(i, `DROP TABLE IF EXISTS ${ours}`);
  });

  function importArgs(): string[] {
    return ['import', 'connect-pg-simple', '--from-table', source, '--db', db(3)];
  }

  it('copies live sessions to their servers; ExpressStore and SessionPgsql read them by sid', async () => {
    const live = new Map<string, session.SessionData>();
    for (let i = 0; i < 12; i++) {
      const sid = newId();
      const value = sess(HOUR, { user: `user ${i}`, cart: [i, 'é', { n: i }] });
      await call<void>((cb) => pgStore.set(sid, value, cb));
      live.set(sid, value);
    }
    // Not express-session's default shape: the adapters take any id, so the import does too.
    const odd = 'user:42 / é';
    live.set(odd, sess(HOUR, { user: 'odd' }));
    await call<void>((cb) => pgStore.set(odd, live.get(odd)!, cb));
    const expired = [newId(), newId()];
    for (const sid of expired) {
      await call<void>((cb) => pgStore.set(sid, sess(-60_000, { user: 'gone' }), cb));
    }
    // connect-pg-simple itself serves them (the table is its own, made by it).
    const [first] = live.keys();
    expect(await call((cb) => pgStore.get(first!, cb))).to.deep.equal(asStored(live.get(first!)!));

    const r = await cli([...importArgs(), '--table', ours]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr).to.equal('');
    expect(counts(r.stdout)).to.deep.equal({ copied: 13, expired: 2, newer: 0, invalid: 0 });

    const store = keep(new ExpressStore({ db: db(3), table: ours, ...RAW_IDS }));
    const handler = keep(new SessionPgsql({ db: db(3), table: ours, ...RAW_IDS }));
    let total = 0;
    for (const i of [0, 1, 2]) {
      total += (await query<{ n: number }>(i, `SELECT count(*)::int AS n FROM ${ours}`))[0]!.n;
    }
    expect(total).to.equal(13); // each once, no expired one
    for (const [sid, value] of live) {
      expect(await call((cb) => store.get(sid, cb))).to.deep.equal(asStored(value));
      if (sid === odd) continue; // the others have express-session's shape, as idPattern wants
      const s = await handler.read(sid);
      expect(s.isNew).to.equal(false);
      expect(s.data).to.equal(JSON.stringify(value));
      // On its home server, with ExpressStore's own row expiry (the store refuses the session
      // at the cookie's exact expiry).
      const home = handler.serversFor(sid)[0]!;
      const [row] = await query<{ e: string }>(
        home,
        `SELECT sess_expire AS e FROM ${ours} WHERE sess_id = $1`,
        [sid],
      );
      expect(row, `${sid} on server ${home}`).to.not.equal(undefined);
      const cookie = (value.cookie.expires as Date).getTime();
      expect(Number(row!.e)).to.equal(Math.ceil(cookie / 1000));
    }
    for (const sid of expired) {
      expect(await call((cb) => store.get(sid, cb))).to.equal(null);
    }
  });

  it('is idempotent and never regresses a session our store has written since', async () => {
    const sids = [newId(), newId(), newId()];
    for (const sid of sids) {
      await call<void>((cb) => pgStore.set(sid, sess(HOUR, { v: 'old' }), cb));
    }
    const first = await cli([...importArgs(), '--table', ours]);
    expect(counts(first.stdout)).to.deep.equal({ copied: 3, expired: 0, newer: 0, invalid: 0 });

    const again = await cli([...importArgs(), '--table', ours]);
    expect(again.code, again.stderr).to.equal(0);
    expect(counts(again.stdout)).to.deep.equal({ copied: 0, expired: 0, newer: 3, invalid: 0 });

    // The application (now on our store) writes sids[0]; the old one, still running during
    // the switch, writes sids[1] in its own table.
    const store = keep(new ExpressStore({ db: db(3), table: ours, ...RAW_IDS }));
    const mine = sess(2 * HOUR, { v: 'ours, newer' });
    await call<unknown>((cb) => store.set(sids[0]!, mine, cb));
    await call<void>((cb) => pgStore.set(sids[0]!, sess(HOUR + 60_000, { v: 'theirs' }), cb));
    const theirs = sess(2 * HOUR, { v: 'theirs, newer' });
    await call<void>((cb) => pgStore.set(sids[1]!, theirs, cb));

    const third = await cli([...importArgs(), '--table', ours]);
    expect(counts(third.stdout)).to.deep.equal({ copied: 1, expired: 0, newer: 2, invalid: 0 });
    expect(await call((cb) => store.get(sids[0]!, cb))).to.deep.equal(asStored(mine));
    expect(await call((cb) => store.get(sids[1]!, cb))).to.deep.equal(asStored(theirs));
    let total = 0;
    for (const i of [0, 1, 2]) {
      total += (await query<{ n: number }>(i, `SELECT count(*)::int AS n FROM ${ours}`))[0]!.n;
    }
    expect(total).to.equal(3);
  });

  it('pages through thousands of sessions; --dry-run counts and writes nothing; --json', async () => {
    await call<void>((cb) => pgStore.set(newId(), sess(HOUR, { made: 'by the store' }), cb));
    // More rows than one page (500), written as connect-pg-simple does: expire a timestamp
    // without time zone, sess without a cookie expiry (the column then decides).
    await query(
      0,
      `INSERT INTO ${source} (sid, sess, expire)
       SELECT 'bulk-' || lpad(g::text, 6, '0') || '-' || md5(g::text),
              json_build_object('n', g), (now() + interval '1 hour')::timestamp
       FROM generate_series(1, 1300) g`,
    );
    await query(
      0,
      `INSERT INTO ${source} (sid, sess, expire)
       SELECT 'old-' || md5(g::text), json_build_object('n', g), (now() - interval '1 minute')::timestamp
       FROM generate_series(1, 40) g`,
    );
    const dry = await cli([...importArgs(), '--table', ours, '--dry-run']);
    expect(dry.code, dry.stderr).to.equal(0);
    expect(dry.stdout).to.match(/^would copy /m);
    expect(counts(dry.stdout)).to.deep.equal({ copied: 1301, expired: 40, newer: 0, invalid: 0 });
    for (const i of [0, 1, 2]) {
      expect(await query(i, `SELECT 1 FROM ${ours}`), `server ${i}`).to.have.length(0);
    }

    const r = await cli([...importArgs(), '--table', ours, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const report = JSON.parse(r.stdout);
    expect(report).to.deep.include({
      command: 'import',
      ok: true,
      import: { copied: 1301, expired: 40, newer: 0, invalid: 0 },
    });
    // Sids that are not express-session's shape are copied verbatim too.
    const handler = keep(
      new SessionPgsql({
        ...RAW_IDS,
        db: db(3),
        table: ours,
        idPattern: /^[^\0]{1,1024}$/,
        gcInterval: 0,
        vacuumInterval: 0,
      }),
    );
    const [row] = await query<{ sid: string; expire: number }>(
      0,
      `SELECT sid, extract(epoch from expire::timestamptz)::float8 AS expire FROM ${source}
       WHERE sid LIKE 'bulk-000777-%'`,
    );
    const s = await handler.read(row!.sid);
    expect(s.isNew).to.equal(false);
    expect(JSON.parse(s.data)).to.deep.equal({ n: 777 });
    expect(s.info().expires).to.equal(Math.ceil(row!.expire));
  });

  it('--from-schema and --from-db find a table elsewhere; a missing table fails with exit 1', async () => {
    const schema = uniqueTable('cps_schema');
    await query(0, `CREATE SCHEMA ${schema}`);
    const inSchema = new PgSession({
      pool,
      schemaName: schema,
      tableName: 'session',
      createTableIfMissing: true,
    });
    try {
      const sid = newId();
      const value = sess(HOUR, { where: schema });
      await call<void>((cb) => inSchema.set(sid, value, cb));
      // --from-db as a URI (pg's own form).
      const c = poolConfig();
      const r = await cli([
        'import',
        'connect-pg-simple',
        '--from-schema',
        schema,
        '--from-db',
        `postgresql://${c.user}@${c.host}:${c.port}/${c.database}`,
        '--db',
        db(3),
        '--table',
        ours,
      ]);
      expect(r.code, r.stderr).to.equal(0);
      expect(counts(r.stdout)).to.deep.include({ copied: 1 });
      const store = keep(new ExpressStore({ db: db(3), table: ours, ...RAW_IDS }));
      expect(await call((cb) => store.get(sid, cb))).to.deep.equal(asStored(value));

      const missing = await cli([
        ...importArgs(),
        '--from-table',
        'no_such_table',
        '--table',
        ours,
      ]);
      expect(missing.code).to.equal(1);
      expect(missing.stderr).to.match(/^session-pgsql import: .*no_such_table/);
    } finally {
      inSchema.close();
      await query(0, `DROP SCHEMA ${schema} CASCADE`);
    }
  });
});
