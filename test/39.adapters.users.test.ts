// The adapters' `user` option and their stores' sessionsOf/destroySessionsOf, over real HTTP with
// express + express-session, fastify + @fastify/session and koa + koa-session: the user named by a
// key path or a function is kept in sess_custom, listed across servers, and logged out everywhere
// but the request's own session.
import fastifyCookie from '@fastify/cookie';
import fastifySession from '@fastify/session';
import { expect } from 'chai';
import express from 'express';
import session from 'express-session';
import Fastify from 'fastify';
import Koa from 'koa';
import koaSession from 'koa-session';
import http from 'node:http';
import { ErrorCode, SessionPgsqlError } from '../lib';
import { ExpressStore } from '../lib/express';
import { FastifyStore } from '../lib/fastify';
import { KoaStore } from '../lib/koa';
import { UserField, userWrite, type UserOption } from '../lib/users';
import { db, query, uniqueTable } from './support/db';
import { idOfRef } from './support/hash-mode';
import { closeServer, CookieJar, listen, okJson } from './support/http';

interface Store {
  sessionsOf(
    user: string | number,
    options?: { current?: string },
  ): Promise<{ sessions: Array<{ id: string; current: boolean }>; unreachable: number[] }>;
  destroySessionsOf(
    user: string | number,
    options?: { except?: readonly string[] },
  ): Promise<{ destroyed: number; unreachable: number[]; recorded: number[] }>;
  close(): Promise<void>;
}

interface App {
  store: Store;
  jar(): CookieJar;
}

const HANDLER = { gcInterval: 0, vacuumInterval: 0, connectTimeout: 2, maxLifetime: 3600 };
const SECRET = 'users adapter test secret, long enough for @fastify/session';

/** What the routes do to a session object (any framework's): log a user in or out. */
function logIn(s: Record<string, any>, name: string): void {
  s.passport = { user: name };
  // The function variant reads a number when the name is one.
  s.account = { id: /^\d+$/.test(name) ? Number(name) : name };
}
function logOut(s: Record<string, any>): void {
  delete s.passport;
  delete s.account;
}
function userIn(s: Record<string, any> | null | undefined): string | null {
  return s?.passport?.user ?? null;
}

const closers: Array<() => Promise<void>> = [];

async function expressApp(user: UserOption, table: string): Promise<App> {
  const store = new ExpressStore({ ...HANDLER, db: db(3), table }, { user });
  closers.push(() => store.close());
  const app = express();
  app.use(session({ store, secret: SECRET, resave: false, saveUninitialized: false }));
  app.post('/login', (req, res) => {
    logIn(req.session as any, String(req.query.name));
    res.json({ ok: true });
  });
  app.post('/logout-user', (req, res) => {
    logOut(req.session as any);
    res.json({ ok: true });
  });
  app.get('/me', (req, res) => res.json({ id: req.sessionID, user: userIn(req.session as any) }));
  app.get('/others', (req, res, next) => {
    store
      .sessionsOf(userIn(req.session as any)!, { current: req.sessionID })
      .then((r) => res.json(r), next);
  });
  app.post('/logout-others', (req, res, next) => {
    store
      .destroySessionsOf(userIn(req.session as any)!, { except: [req.sessionID] })
      .then((r) => res.json(r), next);
  });
  const server = http.createServer(app);
  const url = await listen(server);
  closers.push(() => closeServer(server));
  return { store, jar: () => new CookieJar(url) };
}

async function fastifyApp(user: UserOption, table: string): Promise<App> {
  const store = new FastifyStore({ ...HANDLER, db: db(3), table }, { user });
  closers.push(() => store.close());
  const app = Fastify();
  await app.register(fastifyCookie);
  await app.register(fastifySession, {
    secret: SECRET,
    store,
    saveUninitialized: false,
    cookie: { secure: false, maxAge: 3600_000 },
  });
  const data = (request: any) => request.session as Record<string, any>;
  app.post('/login', async (request: any) => {
    const s: Record<string, any> = {};
    logIn(s, String(request.query.name));
    for (const [k, v] of Object.entries(s)) request.session.set(k, v);
    return { ok: true };
  });
  app.post('/logout-user', async (request: any) => {
    request.session.set('passport', undefined);
    request.session.set('account', undefined);
    return { ok: true };
  });
  app.get('/me', async (request: any) => ({
    id: request.session.sessionId,
    user: userIn({ passport: data(request).get('passport') }),
  }));
  app.get('/others', async (request: any) =>
    store.sessionsOf(request.session.get('passport').user, {
      current: request.session.sessionId,
    }),
  );
  app.post('/logout-others', async (request: any) =>
    store.destroySessionsOf(request.session.get('passport').user, {
      except: [request.session.sessionId],
    }),
  );
  await app.listen({ port: 0, host: '127.0.0.1' });
  closers.push(() => app.close());
  const { port } = app.server.address() as { port: number };
  const url = `http://127.0.0.1:${port}/`;
  return { store, jar: () => new CookieJar(url) };
}

async function koaApp(user: UserOption, table: string): Promise<App> {
  const store = new KoaStore({ ...HANDLER, db: db(3), table }, { user });
  closers.push(() => store.close());
  const app = new Koa();
  app.keys = [SECRET];
  app.silent = true;
  app.use(koaSession({ store, maxAge: 3600_000 }, app));
  app.use(async (ctx) => {
    const s = ctx.session as Record<string, any>;
    // koa-session's external key is the (signed) cookie's value.
    const key = ctx.cookies.get('koa.sess', { signed: true });
    if (ctx.method === 'POST' && ctx.path === '/login') {
      logIn(s, String(ctx.query.name));
      ctx.body = { ok: true };
    } else if (ctx.method === 'POST' && ctx.path === '/logout-user') {
      logOut(s);
      ctx.body = { ok: true };
    } else if (ctx.path === '/me') {
      ctx.body = { id: key ?? null, user: userIn(s) };
    } else if (ctx.path === '/others') {
      ctx.body = await store.sessionsOf(userIn(s)!, key ? { current: key } : {});
    } else if (ctx.path === '/logout-others') {
      ctx.body = await store.destroySessionsOf(userIn(s)!, { except: key ? [key] : [] });
    } else {
      ctx.status = 404;
    }
  });
  const server = http.createServer(app.callback());
  const url = await listen(server);
  closers.push(() => closeServer(server));
  return { store, jar: () => new CookieJar(url) };
}

async function post(jar: CookieJar, path: string): Promise<any> {
  const res = await jar.post(path);
  expect(res.status, `POST ${path}: ${res.text.slice(0, 300)}`).to.equal(200);
  return res.json();
}

async function customOf(table: string, id: string): Promise<string[]> {
  const found: string[] = [];
  for (const server of [0, 1, 2]) {
    const rows = await query<{ sess_custom: string }>(
      server,
      `SELECT sess_custom FROM "${table}" WHERE sess_id = $1`,
      [id],
    );
    found.push(...rows.map((r) => r.sess_custom));
  }
  return found;
}

const FRAMEWORKS = { express: expressApp, fastify: fastifyApp, koa: koaApp };
const OPTIONS: Array<[string, UserOption]> = [
  ["the key path 'passport.user'", 'passport.user'],
  ['a function of the session', (s: any) => s.account?.id],
];

describe('39 adapters: a user\u2019s sessions (option user, sessionsOf, destroySessionsOf)', function () {
  this.timeout(30_000);

  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  it('a write carries the custom field only when the user differs from the one last read', () => {
    const field = new UserField('passport.user');
    // A new session (never read) has no user: a save without one carries nothing.
    expect(userWrite(field, 'new', {})).to.deep.equal({});
    expect(userWrite(field, 'new', { passport: { user: 'alice' } })).to.deep.equal({
      custom: 'alice',
    });
    // Read back with alice: saves that keep her carry nothing (merged writes, short circuit, HOT).
    field.seen('new', 'alice');
    expect(userWrite(field, 'new', { passport: { user: 'alice' } })).to.deep.equal({});
    expect(userWrite(field, 'new', { passport: {} })).to.deep.equal({ custom: '' });
    expect(userWrite(undefined, 'new', { passport: { user: 'x' } })).to.deep.equal({});
    expect(() => userWrite(field, 'x', { passport: { user: {} } }))
      .to.throw(SessionPgsqlError)
      .with.property('code', ErrorCode.InvalidArgument);
  });

  for (const [name, start] of Object.entries(FRAMEWORKS)) {
    describe(name, () => {
      for (const [how, option] of OPTIONS) {
        it(`with ${how}: the user is stored, listed across servers, and logged out everywhere else`, async () => {
          const table = uniqueTable('users');
          const app = await start(option, table);
          const a = app.jar();
          const b = app.jar();
          const other = app.jar();
          await post(a, '/login?name=alice');
          await post(b, '/login?name=alice');
          await post(other, '/login?name=bob');
          const idA = (await okJson(a, '/me')).id as string;
          const idB = (await okJson(b, '/me')).id as string;
          expect(idA).to.be.a('string').and.not.equal(idB);
          expect((await okJson(a, '/me')).user).to.equal('alice');
          expect(await customOf(table, idA)).to.deep.equal(['alice']);

          // The store lists both, with the framework's ids; the page marks its own.
          const seen = await okJson(a, '/others');
          expect(seen.unreachable).to.deep.equal([]);
          expect(seen.sessions.map((s: any) => idOfRef(s.id))).to.have.members([idA, idB]);
          expect(idOfRef(seen.sessions.find((s: any) => s.current).id)).to.equal(idA);
          const listed = await app.store.sessionsOf('alice');
          expect(listed.sessions.map((s) => idOfRef(s.id))).to.have.members([idA, idB]);
          expect((await app.store.sessionsOf('bob')).sessions).to.have.length(1);

          // Log out everywhere else: b is logged out, a and bob stay.
          expect(await post(a, '/logout-others')).to.deep.equal({
            destroyed: 1,
            unreachable: [],
            recorded: [],
          });
          expect((await okJson(b, '/me')).user).to.equal(null);
          expect((await okJson(a, '/me')).user).to.equal('alice');
          expect((await okJson(other, '/me')).user).to.equal('bob');
          expect(
            (await app.store.sessionsOf('alice')).sessions.map((s) => idOfRef(s.id)),
          ).to.deep.equal([idA]);

          // The user logs out in the session (it stays): the field is cleared.
          await post(a, '/logout-user');
          expect(await customOf(table, idA)).to.deep.equal(['']);
          expect((await app.store.sessionsOf('alice')).sessions).to.deep.equal([]);
          // A number is stringified.
          await post(a, '/login?name=42');
          expect(await customOf(table, idA)).to.deep.equal(['42']);
          expect((await app.store.sessionsOf(42)).sessions.map((s) => idOfRef(s.id))).to.deep.equal(
            [idA],
          );

          // destroySessionsOf from the store, sparing nobody.
          expect(await app.store.destroySessionsOf('bob')).to.deep.equal({
            destroyed: 1,
            unreachable: [],
            recorded: [],
          });
          expect((await okJson(other, '/me')).user).to.equal(null);
        });
      }

      it('refuses a user option that is neither a key path nor a function', () => {
        const Store = { express: ExpressStore, fastify: FastifyStore, koa: KoaStore }[name]!;
        for (const bad of ['', 'a..b', 5, {}]) {
          let error: unknown;
          try {
            new (Store as any)({ ...HANDLER, db: db(1) }, { user: bad });
          } catch (err) {
            error = err;
          }
          expect(error, String(bad)).to.be.instanceOf(SessionPgsqlError);
          expect((error as SessionPgsqlError).code).to.equal(ErrorCode.InvalidOption);
        }
      });
    });
  }
});
