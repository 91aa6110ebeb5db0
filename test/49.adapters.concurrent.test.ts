// Concurrent requests of one session, over real HTTP, in express, fastify and koa (and in several
// express processes): requests that overlap keep each other's changes, and a logout is never
// undone by a request that read the session before it, two outages within that request included
// (docs/behaviour.md, "Concurrent requests and logouts"). The overlap is certain, not timed: the app holds each request at a gate after
// the framework has loaded its session, and the test releases them in the order it wants (a
// request's save has happened once its response has arrived: every framework saves first).
import { expect } from 'chai';
import { fork, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import express from 'express';
import session from 'express-session';
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyCookie from '@fastify/cookie';
import fastifySession from '@fastify/session';
import Koa from 'koa';
import koaSession from 'koa-session';
import type { SessionPgsql, SessionPgsqlOptions } from '../lib';
import type { AdapterOptions } from '../lib/adapter';
import { ExpressStore } from '../lib/express';
import { FastifyStore } from '../lib/fastify';
import { KoaStore } from '../lib/koa';
import { clusters, db, query, restartAll, uniqueTable } from './support/db';
import { closeServer, CookieJar, listen, okJson, type HttpResponse } from './support/http';
import { waitUntil } from './support/wait';

const SECRET = 'a concurrent adapters test secret of at least 32 characters';

/** Requests held after their session was loaded, until the test releases them. */
class Gate {
  readonly #waiting = new Map<string, () => void>();

  hold(name: string): Promise<void> {
    return new Promise((resolve) => this.#waiting.set(name, resolve));
  }

  /** Waits until every request named has loaded its session and is held. */
  arrived(...names: string[]): Promise<void> {
    return waitUntil(`${names.join(', ')} to load the session`, 10_000, () =>
      names.every((name) => this.#waiting.has(name)),
    );
  }

  release(name: string): void {
    const resolve = this.#waiting.get(name);
    expect(resolve, `request ${name} is held`).to.be.a('function');
    this.#waiting.delete(name);
    resolve!();
  }
}

/**
 * What each app does with its session: `set` (key, value) and `add` (item to the cart) after the
 * gate when `hold` names the request; `login` sets the user; `logout` destroys the session;
 * `show` answers the session's user, cart and theme.
 */
interface Actions {
  login(s: Record<string, any>): void;
  set(s: Record<string, any>, query: Record<string, any>): void;
  show(s: Record<string, any> | null | undefined): Record<string, unknown>;
}
const actions: Actions = {
  login(s) {
    s.user = 'ann';
  },
  set(s, q) {
    if (q.item) s.cart = [...(s.cart ?? []), String(q.item)];
    if (q.key) s[String(q.key)] = String(q.value);
  },
  show(s) {
    return { user: s?.user ?? null, cart: s?.cart ?? null, theme: s?.theme ?? null };
  },
};

interface App {
  url: string;
  /** The store's handler. */
  handler: SessionPgsql;
  close(): Promise<void>;
}

type Framework = 'express' | 'fastify' | 'koa';

/** `server` listening on a free loopback port, as an App; closing it closes `store` too. */
async function served(
  server: http.Server,
  store: { handler: SessionPgsql; close(): Promise<void> },
): Promise<App> {
  const url = await listen(server);
  return {
    url,
    handler: store.handler,
    async close() {
      await closeServer(server);
      await store.close();
    },
  };
}

async function startExpress(
  handlerOptions: SessionPgsqlOptions,
  gate: Gate,
  options: AdapterOptions,
): Promise<App> {
  const store = new ExpressStore(handlerOptions, options);
  const app = express();
  app.use(session({ store, secret: SECRET, resave: false, saveUninitialized: false }));
  app.get('/login', (req, res) => {
    actions.login(req.session);
    res.json({ ok: true });
  });
  app.get('/set', async (req, res) => {
    if (req.query.hold) await gate.hold(String(req.query.hold));
    actions.set(req.session, req.query);
    res.json({ ok: true });
  });
  app.get('/logout', (req, res, next) => {
    req.session.destroy((err) => (err ? next(err) : res.json({ ok: true })));
  });
  app.get('/show', (req, res) => {
    res.json(actions.show(req.session));
  });
  return served(http.createServer(app), store);
}

async function startFastify(
  handlerOptions: SessionPgsqlOptions,
  gate: Gate,
  options: AdapterOptions,
): Promise<App> {
  const store = new FastifyStore(handlerOptions, options);
  const app: FastifyInstance = Fastify();
  await app.register(fastifyCookie);
  await app.register(fastifySession, {
    secret: SECRET,
    store,
    saveUninitialized: false,
    cookie: { secure: false },
  });
  const data = (request: any) => request.session as Record<string, any>;
  app.get('/login', async (request) => {
    actions.login(data(request));
    return { ok: true };
  });
  app.get('/set', async (request) => {
    const q = request.query as Record<string, string>;
    if (q.hold) await gate.hold(q.hold);
    actions.set(data(request), q);
    return { ok: true };
  });
  app.get('/logout', async (request) => {
    await request.session.destroy();
    return { ok: true };
  });
  app.get('/show', async (request) => actions.show(data(request)));
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/`,
    handler: store.handler,
    async close() {
      await app.close();
      await store.close();
    },
  };
}

async function startKoa(
  handlerOptions: SessionPgsqlOptions,
  gate: Gate,
  options: AdapterOptions,
): Promise<App> {
  const store = new KoaStore(handlerOptions, options);
  const app = new Koa();
  app.keys = [SECRET];
  app.use(koaSession({ store, maxAge: 3600_000 }, app));
  app.use(async (ctx) => {
    const q = ctx.query as Record<string, string>;
    if (ctx.path === '/login') {
      actions.login(ctx.session!);
      ctx.body = { ok: true };
    } else if (ctx.path === '/set') {
      if (q.hold) await gate.hold(q.hold);
      actions.set(ctx.session!, q);
      ctx.body = { ok: true };
    } else if (ctx.path === '/logout') {
      ctx.session = null;
      ctx.body = { ok: true };
    } else if (ctx.path === '/show') {
      ctx.body = actions.show(ctx.session);
    } else {
      ctx.status = 404;
    }
  });
  return served(http.createServer(app.callback()), store);
}

const starters: Record<Framework, typeof startExpress> = {
  express: startExpress,
  fastify: startFastify,
  koa: startKoa,
};

async function ok(res: Promise<HttpResponse>, what: string): Promise<void> {
  const r = await res;
  expect(r.status, `${what}: ${r.text}`).to.equal(200);
}

describe('49 adapters: concurrent requests of one session', function () {
  this.timeout(60_000);
  const open: App[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((app) => app.close()));
  });

  for (const framework of ['express', 'fastify', 'koa'] as const) {
    describe(framework, () => {
      let table: string;
      let gate: Gate;
      let app: App;
      async function start(
        options: AdapterOptions = {},
        handlerOptions: SessionPgsqlOptions = { db: db(1) },
      ): Promise<CookieJar> {
        table = uniqueTable('t49');
        gate = new Gate();
        const base = { table, gcInterval: 0, vacuumInterval: 0 };
        app = await starters[framework]({ ...base, ...handlerOptions }, gate, options);
        open.push(app);
        const jar = new CookieJar(app.url);
        await okJson(jar, '/login');
        return jar;
      }
      /** Starts GET /set?... held at the gate as `hold` (cookies sent, none stored). */
      function held(jar: CookieJar, hold: string, query: string): Promise<HttpResponse> {
        return jar.get(`/set?hold=${hold}&${query}`, { save: false });
      }
      /** What the stored rows on `server` say of the session's user, whatever its id. */
      async function storedUsers(server = 0): Promise<unknown[]> {
        const rows = await query<{ sess_data: string; live: boolean }>(
          server,
          `SELECT sess_data, sess_expire >= floor(extract(epoch from now())) AS live FROM "${table}"`,
        );
        return rows
          .filter((r) => r.live && r.sess_data !== '')
          .map((r) => JSON.parse(r.sess_data).user ?? null);
      }

      it('two overlapping requests that change different keys both keep their change', async () => {
        const jar = await start();
        const a = held(jar, 'a', 'item=book');
        const b = held(jar, 'b', 'key=theme&value=dark');
        await gate.arrived('a', 'b');
        gate.release('a');
        await ok(a, 'the cart request');
        gate.release('b'); // saves last, from a view without the book
        await ok(b, 'the theme request');
        expect(await okJson(jar, '/show')).to.deep.equal({
          user: 'ann',
          cart: ['book'],
          theme: 'dark',
        });
      });

      it('of one key, the request that saves last wins', async () => {
        const jar = await start();
        const a = held(jar, 'a', 'key=theme&value=red');
        const b = held(jar, 'b', 'key=theme&value=blue');
        await gate.arrived('a', 'b');
        gate.release('b');
        await ok(b, 'blue');
        gate.release('a');
        await ok(a, 'red');
        expect(await okJson(jar, '/show')).to.deep.equal({ user: 'ann', cart: null, theme: 'red' });
      });

      for (const mergeWrites of [true, false]) {
        it(`a logout while another request is in flight stays a logout (mergeWrites: ${mergeWrites})`, async () => {
          const jar = await start({ mergeWrites });
          const late = held(jar, 'late', 'item=book');
          await gate.arrived('late');
          await okJson(jar.copy(), '/logout');
          gate.release('late'); // saves after the logout, from the session it read before
          await ok(late, 'the late request');
          expect(await okJson(jar, '/show')).to.deep.equal({ user: null, cart: null, theme: null });
          expect(await storedUsers(), 'live sessions with a user').to.deep.equal([]);
        });
      }

      it('a logout stays a logout across two outages: the save lands on the server that missed the logout', async () => {
        // Two servers: home H holds the session, F stands in for it. F is down during the
        // logout, so only H has the tombstone; then H goes down and F returns, and the save of a
        // request that loaded the session before the logout is stored on F. When H is back,
        // its tombstone, written after the session was created, ends that copy.
        const jar = await start(
          {},
          {
            db: db(2),
            connectTimeout: 1,
            statementTimeout: 2,
            retryMinDelay: 0.05,
            retryMaxDelay: 0.5,
          },
        );
        const holders = [];
        for (const server of [0, 1])
          if ((await storedUsers(server)).length > 0) holders.push(server);
        expect(holders, 'servers holding the session').to.have.length(1);
        const H = holders[0]!;
        const F = 1 - H;
        // Created well before the logout, so no clock second can blur the two.
        await query(H, `UPDATE "${table}" SET sess_created = sess_created - 100`);
        const late = held(jar, 'late', 'item=book');
        await gate.arrived('late');
        const up = (server: number) =>
          waitUntil(`server ${server} to be up`, 10_000, () => {
            return app.handler.status().servers[server]!.state === 'up';
          });
        try {
          await clusters()[F]!.stop({ mode: 'immediate' });
          await okJson(jar.copy(), '/logout');
          await clusters()[H]!.stop({ mode: 'immediate' });
          await clusters()[F]!.start();
          await up(F);
          gate.release('late'); // saves on F, from the session it read before the logout
          await ok(late, 'the late request');
          expect(await storedUsers(F), 'the copy the late save stored on F').to.deep.equal(['ann']);
          await clusters()[H]!.start();
          await up(H);
          expect(await okJson(jar, '/show')).to.deep.equal({ user: null, cart: null, theme: null });
          expect(await storedUsers(H), 'live sessions with a user on H').to.deep.equal([]);
          expect(await storedUsers(F), 'live sessions with a user on F').to.deep.equal([]);
        } finally {
          await restartAll();
        }
      });

      it('mergeWrites: false stores whole sessions: the last save wins for every key', async () => {
        const jar = await start({ mergeWrites: false });
        const a = held(jar, 'a', 'item=book');
        const b = held(jar, 'b', 'key=theme&value=dark');
        await gate.arrived('a', 'b');
        gate.release('a');
        await ok(a, 'the cart request');
        gate.release('b');
        await ok(b, 'the theme request');
        expect(await okJson(jar, '/show')).to.deep.equal({
          user: 'ann',
          cart: null,
          theme: 'dark',
        });
      });
    });
  }

  describe('express in several processes', () => {
    const PROCESSES = 4;
    const children: ChildProcess[] = [];
    afterEach(async () => {
      await Promise.all(
        children.splice(0).map(
          (child) =>
            new Promise<void>((resolve) => {
              if (child.exitCode !== null) return resolve();
              const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
              child.once('exit', () => {
                clearTimeout(timer);
                resolve();
              });
              child.send({ exit: true });
            }),
        ),
      );
    });

    it('each process changes its own key of one session: every key survives', async () => {
      const table = uniqueTable('t49');
      const heldIn = new Set<string>();
      const urls = await Promise.all(
        Array.from({ length: PROCESSES }, () => {
          const child = fork(path.join(__dirname, 'fixtures/concurrent-app.js'), {
            env: {
              ...process.env,
              APP: JSON.stringify({ db: db(1), table, mergeWrites: true, secret: SECRET }),
            },
            stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
          });
          children.push(child);
          return new Promise<string>((resolve, reject) => {
            child.on('message', (m: { url?: string; held?: string }) => {
              if (m.url) resolve(m.url);
              if (m.held) heldIn.add(m.held);
            });
            child.once('exit', (code) => reject(new Error(`a child exited (${code})`)));
          });
        }),
      );
      const login = new CookieJar(urls[0]!);
      await okJson(login, '/login');
      const jars = urls.map((url) => {
        const jar = new CookieJar(url);
        for (const [name, value] of login.cookies) jar.setCookie(name, value);
        return jar;
      });
      const requests = jars.map((jar, i) =>
        jar.get(`/set?hold=p${i}&key=k${i}&value=v${i}`, { save: false }),
      );
      const names = jars.map((_, i) => `p${i}`);
      await waitUntil('every process to load the session', 20_000, () =>
        names.every((name) => heldIn.has(name)),
      );
      // All at once: the saves race each other in four processes.
      children.forEach((child, i) => child.send({ release: `p${i}` }));
      for (const [i, request] of requests.entries()) await ok(request, `process ${i}`);
      const [row] = await query<{ sess_data: string }>(0, `SELECT sess_data FROM "${table}"`);
      const stored = JSON.parse(row!.sess_data);
      expect(stored).to.include({ user: 'ann', k0: 'v0', k1: 'v1', k2: 'v2', k3: 'v3' });
    });
  });
});
