// An outage is an error, never a silent logout, and never an unhandled rejection: with no
// PostgreSQL server (a port nothing listens on, or a test server stopped), each adapter fails
// the request with a 5xx carrying the retryable SessionPgsqlError, and express's store methods
// called without a callback return the promise and never end the process.
import { expect } from 'chai';
import express from 'express';
import session from 'express-session';
import fastifyCookie from '@fastify/cookie';
import fastifySession from '@fastify/session';
import Fastify, { type FastifyInstance } from 'fastify';
import Koa from 'koa';
import koaSession from 'koa-session';
import http from 'node:http';
import { SessionPgsqlError } from '../lib';
import { ExpressStore } from '../lib/express';
import { FastifyStore } from '../lib/fastify';
import { KoaStore } from '../lib/koa';
import { clusters, newId, servers, uniqueTable } from './support/db';
import { rejection } from './support/errors';
import {
  closeServer,
  CookieJar,
  expectOutageError,
  listen,
  OUTAGE_CODES,
  pollUntilBack,
} from './support/http';
import { closedPort } from './support/net';
import { sleep, waitUntil } from './support/wait';

const RESTART_SERVER = 2;
const QUICK = { gcInterval: 0, vacuumInterval: 0, connectTimeout: 2, retryMaxDelay: 0.5 };

/** Unhandled rejections and uncaught exceptions seen while `watch` is installed. */
class ProcessProblems {
  readonly seen: unknown[] = [];
  readonly #record = (reason: unknown) => this.seen.push(reason);

  install(): void {
    process.on('unhandledRejection', this.#record);
    process.on('uncaughtException', this.#record);
  }

  uninstall(): void {
    process.off('unhandledRejection', this.#record);
    process.off('uncaughtException', this.#record);
  }

  /** Lets pending rejections be reported (they are, after the microtask queue drains), then checks. */
  async expectNone(): Promise<void> {
    await sleep(200);
    await new Promise((resolve) => setImmediate(resolve));
    expect(this.seen.map(String), 'unhandled rejections / uncaught exceptions').to.deep.equal([]);
  }
}

/** The express error handler of the docs: an error after the response was sent goes to express. */
function errorHandler(seen: Array<{ err: unknown; headersSent: boolean }> = []) {
  return (err: Error, _req: express.Request, res: express.Response, next: express.NextFunction) => {
    seen.push({ err, headersSent: res.headersSent });
    if (res.headersSent) return next(err);
    const { code = null, retryable = null } = err as SessionPgsqlError;
    res.status(500).json({ error: err.message, code, retryable });
  };
}

describe('45 adapters: outages (errors, never a silent logout, never unhandled)', function () {
  this.timeout(60_000);
  const problems = new ProcessProblems();
  const httpServers: http.Server[] = [];
  const fastifyApps: FastifyInstance[] = [];
  const closables: Array<{ close(): Promise<void> }> = [];
  let deadDb: string;

  before(async () => {
    deadDb = `host=127.0.0.1 port=${await closedPort()} dbname=none user=none`;
  });
  beforeEach(() => problems.install());
  afterEach(async () => {
    problems.uninstall();
    await Promise.all(httpServers.splice(0).map((s) => closeServer(s)));
    await Promise.all(fastifyApps.splice(0).map((a) => a.close()));
    await Promise.all(closables.splice(0).map((s) => s.close()));
  });

  function expressStore(dbOption: string, table = uniqueTable('t45')): ExpressStore {
    const store = new ExpressStore({ db: dbOption, table, ...QUICK });
    closables.push(store);
    return store;
  }

  async function expressApp(
    store: ExpressStore,
    options: { guard?: boolean; seen?: Array<{ err: unknown; headersSent: boolean }> } = {},
  ): Promise<CookieJar> {
    const app = express();
    app.set('env', 'test'); // express's final handler then logs no stack for an error after the response
    if (options.guard) app.use(store.guard());
    app.use(
      session({
        store,
        secret: 'outage test secret',
        resave: false,
        saveUninitialized: false,
        cookie: { maxAge: 3600_000 },
      }),
    );
    app.get('/count', (req, res) => {
      req.session.views = (req.session.views ?? 0) + 1;
      res.json({ id: req.sessionID, views: req.session.views });
    });
    // The documented pattern when the write must not be lost: save, then answer.
    app.get('/login', (req, res, next) => {
      req.session.views = 1;
      req.session.save((err) => (err ? next(err) : res.json({ id: req.sessionID })));
    });
    // destroy() with no callback, as apps write it.
    app.get('/logout-no-callback', (req, res) => {
      req.session.destroy(undefined as unknown as (err: any) => void);
      res.json({ ok: true });
    });
    app.use(errorHandler(options.seen));
    const server = http.createServer(app);
    httpServers.push(server);
    return new CookieJar(await listen(server));
  }

  describe('express, with no server up at all', () => {
    it('every store method called without a callback returns a promise that rejects with the retryable error', async () => {
      const store = expressStore(deadDb);
      const id = newId();
      const sess = { cookie: { originalMaxAge: 60_000, expires: new Date(Date.now() + 60_000) } };
      const calls: Array<[string, () => unknown]> = [
        ['get', () => store.get(id)],
        ['set', () => store.set(id, sess)],
        ['touch', () => store.touch(id, sess)],
        ['destroy', () => store.destroy(id)],
        ['all', () => store.all()],
        ['length', () => store.length()],
        ['clear', () => store.clear()],
      ];
      for (const [name, call] of calls) {
        const result = call();
        expect(result, `${name}() returns a promise`).to.be.instanceOf(Promise);
        const err = await rejection(result as Promise<unknown>);
        expect(OUTAGE_CODES, `${name}(): ${err.code}`).to.include(err.code);
        expect(err.retryable, `${name}() retryable`).to.equal(true);
      }
      await problems.expectNone();
    });

    it('a failure with no callback and nobody awaiting is no unhandled rejection (req.session.destroy())', async () => {
      const store = expressStore(deadDb);
      const id = newId();
      // Called as express-session calls it from req.session.destroy(): the result is dropped.
      void store.destroy(id);
      void store.set(id, { cookie: { originalMaxAge: null, expires: null } });
      await problems.expectNone();
      const jar = await expressApp(store);
      const res = await jar.get('/logout-no-callback');
      expect(res.status, res.text).to.equal(200);
      await problems.expectNone();
    });

    it('guard() before session(): a request fails at once with the retryable error (5xx)', async () => {
      const store = expressStore(deadDb);
      const jar = await expressApp(store, { guard: true });
      for (let i = 0; i < 3; i++) expectOutageError(await jar.get('/count'), `request ${i}`);
      expect(jar.cookie('connect.sid'), 'no cookie for a session that cannot be stored').to.equal(
        undefined,
      );
      await problems.expectNone();
    });

    it('req.session.save(cb) before answering: the request fails with the retryable error (5xx)', async () => {
      const store = expressStore(deadDb);
      const jar = await expressApp(store);
      expectOutageError(await jar.get('/login'), 'GET /login');
      await problems.expectNone();
    });

    it("without either, a new session's save fails after the response: the error still reaches the app's error handler, and nothing crashes", async () => {
      const store = expressStore(deadDb);
      const seen: Array<{ err: unknown; headersSent: boolean }> = [];
      const jar = await expressApp(store, { seen });
      // express-session saves a new session when the response ends, after its headers.
      const res = await jar.get('/count');
      expect(res.status, res.text).to.equal(200);
      await waitUntil('the error handler to see the failed save', 10_000, () => seen.length > 0);
      const [{ err, headersSent }] = seen as [{ err: SessionPgsqlError; headersSent: boolean }];
      expect(err).to.be.instanceOf(SessionPgsqlError);
      expect(OUTAGE_CODES).to.include(err.code);
      expect(headersSent).to.equal(true);
      await problems.expectNone();
    });
  });

  describe('fastify and koa, with no server up at all', () => {
    it('fastify: a new session whose save fails answers 5xx with the retryable error', async () => {
      const store = new FastifyStore({ db: deadDb, table: uniqueTable('t45'), ...QUICK });
      closables.push(store);
      const app = Fastify();
      fastifyApps.push(app);
      app.setErrorHandler(async (err, _request, reply) => {
        const { code = null, retryable = null } = err as unknown as SessionPgsqlError;
        return reply.status(500).send({ error: (err as Error).message, code, retryable });
      });
      await app.register(fastifyCookie);
      await app.register(fastifySession, {
        secret: 'a fastify outage test secret of at least 32 characters',
        store,
        saveUninitialized: false,
        cookie: { secure: false, maxAge: 3600_000 },
      });
      app.get('/count', async (request) => {
        request.session.set('views', 1);
        return { views: 1 };
      });
      await app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = app.server.address() as { port: number };
      const jar = new CookieJar(`http://127.0.0.1:${port}/`);
      // The save fails in onSend; the error handler's own reply goes through onSend again (and
      // fails again), so Fastify answers with its fallback body: { statusCode, code, error, message }.
      const res = await jar.get('/count');
      expect(res.status, res.text).to.equal(500);
      expect(OUTAGE_CODES).to.include(res.json().code);
      expect(jar.cookie('sessionId')).to.equal(undefined);
      await problems.expectNone();
    });

    it('koa: a new session whose save fails answers 5xx with the retryable error', async () => {
      const store = new KoaStore({ db: deadDb, table: uniqueTable('t45'), ...QUICK });
      closables.push(store);
      const app = new Koa();
      app.keys = ['koa outage test key'];
      app.silent = true;
      app.use(async (ctx, next) => {
        try {
          await next();
        } catch (err) {
          const { code = null, retryable = null } = err as SessionPgsqlError;
          ctx.status = 500;
          ctx.body = { error: (err as Error).message, code, retryable };
        }
      });
      app.use(koaSession({ store, maxAge: 3600_000 }, app));
      app.use(async (ctx) => {
        ctx.session!.views = 1;
        ctx.body = { views: 1 };
      });
      const server = http.createServer(app.callback());
      httpServers.push(server);
      const jar = new CookieJar(await listen(server));
      expectOutageError(await jar.get('/count'), 'GET /count');
      await problems.expectNone();
    });
  });

  describe(`express, its server stopping and returning (test server ${RESTART_SERVER})`, () => {
    const cluster = clusters()[RESTART_SERVER]!;
    afterEach(async () => {
      if (!cluster.isRunning()) await cluster.start();
    });

    it('with guard(): a known session fails with 5xx, a new visitor too; both work after the return, the same session continuing', async () => {
      const store = expressStore(servers()[RESTART_SERVER]!);
      const jar = await expressApp(store, { guard: true });
      expect((await jar.get('/count')).json()).to.include({ views: 1 });
      const { id } = (await jar.get('/count')).json();
      const state = () => store.handler.status().servers[0]!.state;
      try {
        await cluster.stop({ mode: 'fast' });
        // The first request may be the one that finds the server gone.
        expectOutageError(await jar.get('/count', { save: false }), 'known session');
        await waitUntil('the server seen down', 10_000, () => state() !== 'up');
        expectOutageError(await jar.get('/count', { save: false }), 'known session, again');
        const visitor = new CookieJar(jar.baseUrl);
        expectOutageError(await visitor.get('/count'), 'new visitor');
        expect(visitor.cookie('connect.sid')).to.equal(undefined);
      } finally {
        await cluster.start();
      }
      const back = await pollUntilBack(
        jar,
        '/count',
        (res) => res.status === 200 && res.json().id === id,
      );
      expect(back!.status, `not back 15 s after the restart: ${back!.text}`).to.equal(200);
      expect(back!.json()).to.deep.equal({ id, views: 3 });
      await problems.expectNone();
    });
  });
});
