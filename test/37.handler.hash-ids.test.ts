// hashIds against real servers (docs/operations.md, Hashed ids): a dump of the table (every
// row as text, and pg_dump where it is installed) holds none of the ids clients sent, through
// the handler and through the adapters; read, write, touch, destroy, list and GC work by the
// hash; an outage's look-aside moves hashed rows home; keyed and plain keys differ.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import express from 'express';
import session from 'express-session';
import Fastify from 'fastify';
import fastifyCookie from '@fastify/cookie';
import fastifySession from '@fastify/session';
import { createServer } from 'node:http';
import { SessionPgsql, type SessionPgsqlOptions } from '../lib';
import { ExpressStore } from '../lib/express';
import { FastifyStore } from '../lib/fastify';
import { idHashing, isHashedKey } from '../lib/options';
import { clusters, db, query, restartAll, servers, uniqueTable } from './support/db';
import { closedAfterEach, fastRecovery } from './support/handlers';
import { closeServer, CookieJar, listen, okJson } from './support/http';
import { waitUntil } from './support/wait';

// Ids made here, not by support's newId(): this test reads stored keys itself, so the
// hashed-mode translation of db.ts's query() must not know them.
const newId = () => randomBytes(24).toString('base64url');

const run = promisify(execFile);
const KEY = 'a-hash-ids-test-key-of-32-bytes!';
const SECRET = 'a hash-ids test secret of at least 32 characters';
const NOW = 'floor(extract(epoch from now()))::bigint';

/** Every row of `table` (and of the housekeeping table) on each server, as text. */
async function rowsAsText(table: string, n = 1): Promise<string> {
  const parts: string[] = [];
  for (let i = 0; i < n; i++) {
    for (const t of [table, 'session_pgsql_housekeeping']) {
      const rows = await query<{ row: string }>(i, `SELECT x::text AS row FROM ${t} x`);
      parts.push(...rows.map((r) => r.row));
    }
  }
  return parts.join('\n');
}

/** pg_dump of test server 0's database (its table only), or null where pg_dump is missing. */
async function pgDump(table: string): Promise<string | null> {
  let bindir: string;
  try {
    bindir = (await run('pg_config', ['--bindir'])).stdout.trim();
  } catch {
    return null;
  }
  const pgDumpPath = path.join(bindir, 'pg_dump');
  if (!existsSync(pgDumpPath)) return null;
  const kv = Object.fromEntries(
    servers()[0]!
      .split(/\s+/)
      .map((p) => p.split('=')),
  );
  const { stdout } = await run(
    pgDumpPath,
    ['-h', kv.host, '-p', kv.port, '-U', kv.user, '-d', kv.dbname, '-t', table, '--data-only'],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  return stdout;
}

function expectNoneOf(text: string, ids: string[]): void {
  for (const id of ids) expect(text, `a client id in the dump`).to.not.include(id);
}

describe('handler: hashIds', function () {
  this.timeout(60_000);
  const handlers = closedAfterEach<SessionPgsql>();
  const make = (options: SessionPgsqlOptions) =>
    handlers.keep(new SessionPgsql({ db: db(1), gcInterval: 0, vacuumInterval: 0, ...options }));

  for (const [mode, hashIds] of [
    ['plain', true],
    ['keyed', { key: KEY }],
  ] as const) {
    it(`${mode}: a dump of the table holds no id a client sent, and every operation works by the hash`, async () => {
      const table = uniqueTable('hash');
      const h = make({ table, hashIds, keepExpired: false });
      const ids = Array.from({ length: 20 }, () => newId());
      for (const [i, id] of ids.entries()) {
        const s = await h.read(id, { address: '203.0.113.9' });
        expect(s.isNew).to.equal(true);
        s.setField(`user:${i}`);
        s.addError('notice', `notice ${i}`);
        expect(await h.write(s, `data ${i}`)).to.equal(true);
      }
      // read back, with the request's view showing the caller's id
      for (const [i, id] of ids.entries()) {
        const s = await h.read(id);
        expect(s.data).to.equal(`data ${i}`);
        expect(s.id).to.equal(id);
        expect(s.info().sessionId).to.equal(id);
        expect(s.info().accesses).to.equal(2);
        expect(s.getField()).to.equal(`user:${i}`);
        expect((await s.getError(true)).message).to.equal(`notice ${i}`);
      }
      const stored = (await query<{ sess_id: string }>(0, `SELECT sess_id FROM ${table}`)).map(
        (r) => r.sess_id,
      );
      const expected = ids.map((id) => idHashing(hashIds).stored(id));
      expect(stored).to.have.members(expected);
      // touch and a plain upsert by id
      expect(await h.touch(ids[0]!, 2_000_000_000)).to.equal(true);
      expect(await h.write(ids[1]!, 'by id')).to.equal(true);
      expect((await h.read(ids[1]!)).data).to.equal('by id');
      expect((await h.read(ids[0]!)).info().expires).to.equal(2_000_000_000);
      // list() hands out references (stored keys), never ids
      const listed = await h.list();
      expect(listed.map((r) => r.id)).to.have.members(expected);
      expect(listed.every((r) => isHashedKey(r.id))).to.equal(true);
      // destroy
      expect(await h.destroy(ids[2]!)).to.equal(true);
      expect((await h.read(ids[2]!)).isNew).to.equal(true);
      // GC removes an expired hashed row
      await query(0, `UPDATE ${table} SET sess_expire = ${NOW} - 10 WHERE sess_id = $1`, [
        expected[3],
      ]);
      expect(await h.gc()).to.equal(1);
      expect((await h.read(ids[3]!)).isNew).to.equal(true);

      expectNoneOf(await rowsAsText(table), ids);
      const dump = await pgDump(table);
      if (dump !== null) {
        expect(dump).to.include(expected[4]!);
        expectNoneOf(dump, ids);
      }
    });
  }

  it('keyed and plain keys differ: neither mode reads the other, nor raw ids', async () => {
    const table = uniqueTable('hash');
    const plain = make({ table, hashIds: true });
    const keyed = make({ table, hashIds: { key: KEY } });
    const other = make({ table, hashIds: { key: `${KEY}?` } });
    const raw = make({ table, hashIds: false });
    const id = newId();
    await plain.write(id, 'plain');
    await keyed.write(id, 'keyed');
    expect((await plain.read(id)).data).to.equal('plain');
    expect((await keyed.read(id)).data).to.equal('keyed');
    expect((await other.read(id)).isNew).to.equal(true);
    expect((await raw.read(id)).isNew).to.equal(true);
    const keys = (await query<{ sess_id: string }>(0, `SELECT sess_id FROM ${table}`)).map(
      (r) => r.sess_id,
    );
    expect(keys).to.have.length(2);
    expect(keys).to.have.members([idHashing(true).stored(id), idHashing({ key: KEY }).stored(id)]);
  });

  it('the adapters store no client id either (express-session and @fastify/session)', async () => {
    const table = uniqueTable('hash');
    const options = { db: db(1), table, gcInterval: 0, vacuumInterval: 0, hashIds: { key: KEY } };
    const expressStore = new ExpressStore(options);
    const fastifyStore = new FastifyStore(options);
    handlers.keep(expressStore.handler);
    handlers.keep(fastifyStore.handler);
    const sids: string[] = [];

    const app = express();
    app.use(
      session({ store: expressStore, secret: SECRET, resave: false, saveUninitialized: false }),
    );
    app.get('/', (req, res) => {
      const s = req.session as unknown as { n?: number };
      s.n = (s.n ?? 0) + 1;
      sids.push(req.sessionID);
      res.json({ n: s.n, id: req.sessionID });
    });
    const server = createServer(app);
    try {
      const jar = new CookieJar(await listen(server));
      for (let i = 1; i <= 3; i++) expect((await okJson(jar, '/')).n).to.equal(i);
    } finally {
      await closeServer(server);
    }

    const fastify = Fastify();
    await fastify.register(fastifyCookie);
    await fastify.register(fastifySession, {
      secret: SECRET,
      store: fastifyStore,
      cookie: { secure: false },
      saveUninitialized: false,
    });
    fastify.get('/', async (req) => {
      const n = ((req.session.get('n' as never) as number | undefined) ?? 0) + 1;
      req.session.set('n' as never, n as never);
      sids.push(req.session.sessionId);
      return { n };
    });
    try {
      let cookie = '';
      for (let i = 1; i <= 3; i++) {
        const res = await fastify.inject({ url: '/', headers: cookie ? { cookie } : {} });
        expect(res.json().n).to.equal(i);
        const set = res.headers['set-cookie'];
        if (set) cookie = String(Array.isArray(set) ? set[0] : set).split(';')[0]!;
      }
    } finally {
      await fastify.close();
    }
    expect(new Set(sids).size).to.equal(2);
    const text = await rowsAsText(table);
    expect(text.split('\n').filter((l) => l.includes('hmac:'))).to.have.length(2);
    expectNoneOf(text, [...new Set(sids)]);
  });

  describe('an outage under hashIds', () => {
    afterEach(restartAll);

    it('a session written on a fallback while its home is down is moved home by its hash', async function () {
      this.timeout(120_000);
      const table = uniqueTable('hash');
      const h = handlers.keep(new SessionPgsql({ ...fastRecovery(table), hashIds: { key: KEY } }));
      await h.open();
      const K = 2;
      let id = newId();
      while (h.serversFor(id)[0] !== K) id = newId();
      const key = idHashing({ key: KEY }).stored(id);
      const fallback = h.serversFor(id)[1]!;
      await clusters()[K]!.stop({ mode: 'immediate' });
      expect(await h.write(id, 'written during the outage')).to.equal(true);
      const on = async (i: number) =>
        (await query(i, `SELECT 1 FROM ${table} WHERE sess_id = $1`, [key])).length;
      expect(await on(fallback)).to.equal(1);
      await clusters()[K]!.start();
      await waitUntil('home up', 10_000, () => h.status().servers[K]!.state === 'up');
      const back = await h.read(id);
      expect(back.data).to.equal('written during the outage');
      expect(back.info().serverId).to.equal(K);
      await waitUntil(
        'the copy to leave the fallback',
        5_000,
        async () => (await on(fallback)) === 0,
      );
      expect(await on(K)).to.equal(1);
      expectNoneOf(await rowsAsText(table, 3), [id]);
    });
  });
});
