// The demo (`npm start` = node scripts/demo.js): started as a user would, driven over HTTP with a
// cookie jar, and stopped with SIGTERM. Without SESSION_PGSQL_DB it runs on a throwaway server
// of its own, which must be gone once it exits; with it, it uses that server and starts none.
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { clusters, query, servers, uniqueTable } from './support/db';
import { CookieJar } from './support/http';
import { settleWithin } from './support/wait';

const ROOT = path.resolve(__dirname, '..');

interface Demo {
  child: ChildProcess;
  url: string;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the demo with `env` (PORT=0); resolves once it prints its URL. */
async function startDemo(env: Record<string, string | undefined>): Promise<Demo> {
  const child = spawn(process.execPath, ['scripts/demo.js'], {
    cwd: ROOT,
    env: { ...env, PORT: '0', NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  let gone = false;
  void exited.then(() => (gone = true));
  const started = Date.now();
  for (;;) {
    const m = /session-pgsql demo on (http:\/\/127\.0\.0\.1:\d+\/)/.exec(output);
    if (m) return { child, url: m[1]!, output: () => output, exited };
    if (gone) throw new Error(`the demo exited before serving:\n${output}`);
    if (Date.now() - started > 90_000) {
      child.kill('SIGKILL');
      throw new Error(`the demo printed no URL within 90 s:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** SIGTERM (or `signal`), then the exit status; SIGKILL (and failure) after `ms`. */
async function stopDemo(
  demo: Demo,
  ms = 10_000,
  signal: NodeJS.Signals = 'SIGTERM',
): Promise<{ code: number | null; signal: NodeJS.Signals | null; elapsed: number }> {
  const started = Date.now();
  if (demo.child.exitCode === null && demo.child.signalCode === null) demo.child.kill(signal);
  const result = await settleWithin(demo.exited, ms);
  if (result === 'pending') {
    demo.child.kill('SIGKILL');
    await demo.exited;
    throw new Error(`the demo did not exit within ${ms} ms of SIGTERM:\n${demo.output()}`);
  }
  return { ...result.value!, elapsed: Date.now() - started };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setTimeout(2000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

/** The data directory of the throwaway cluster listening on `port` (scripts/pg-cluster.js layout). */
function findDataDir(port: number): string | undefined {
  const bases = new Set([os.tmpdir(), '/tmp']);
  for (const base of bases) {
    let entries: string[] = [];
    try {
      entries = fs.readdirSync(base).filter((e) => e.startsWith('session-pgsql-'));
    } catch {
      continue;
    }
    for (const entry of entries) {
      const dataDir = path.join(base, entry, 'c0', 'data');
      try {
        const pid = fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n');
        if (pid[3]?.trim() === String(port)) return dataDir;
      } catch {
        // not this one
      }
    }
  }
  return undefined;
}

/** The visit counter shown on the page. */
function counter(html: string): number {
  const m = /<div class="count">(\d+)<\/div>/.exec(html);
  expect(m, `no visit counter in the page:\n${html.slice(0, 500)}`).to.not.equal(null);
  return Number(m![1]);
}

/** The first table cell for `key` (the Session.info() table comes before handler.status()). */
function cell(html: string, key: string): string | undefined {
  const m = new RegExp(`<tr><th>${key}</th><td>(.*?)</td></tr>`).exec(html);
  return m?.[1];
}

async function page(jar: CookieJar): Promise<string> {
  const res = await jar.get('/');
  expect(res.status, res.text.slice(0, 300)).to.equal(200);
  expect(res.headers.get('content-type')).to.match(/^text\/html/);
  return res.text;
}

/** A POST the demo answers with a redirect to /. */
async function action(jar: CookieJar, pathname: string, body: Record<string, string> = {}) {
  const res = await jar.post(pathname, { body });
  expect(res.status, `POST ${pathname}: ${res.text.slice(0, 300)}`).to.equal(302);
  expect(res.headers.get('location')).to.equal('/');
}

function envWithout(name: string): Record<string, string | undefined> {
  const env = { ...process.env };
  delete env[name];
  return env;
}

describe('43 demo (npm start)', function () {
  this.timeout(120_000);

  describe('without SESSION_PGSQL_DB: a throwaway server of its own', () => {
    let demo: Demo | undefined;
    let pgPort = 0;
    let dataDir: string | undefined;
    let jar: CookieJar;

    before(async () => {
      demo = await startDemo(envWithout('SESSION_PGSQL_DB'));
      const m = /starting a throwaway PostgreSQL server… .*port=(\d+)/.exec(demo.output());
      expect(m, `no throwaway server announced:\n${demo.output()}`).to.not.equal(null);
      pgPort = Number(m![1]);
      dataDir = findDataDir(pgPort);
      jar = new CookieJar(demo.url);
    });

    after(async () => {
      if (demo) await stopDemo(demo, 20_000).catch(() => {});
    });

    it('prints its URL on 127.0.0.1 and runs its own PostgreSQL server', async () => {
      expect(demo!.url).to.match(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      expect(await canConnect(pgPort), 'the throwaway server accepts connections').to.equal(true);
      expect(dataDir, `the data directory of the server on port ${pgPort}`).to.be.a('string');
      expect(servers().some((s) => s.includes(`port=${pgPort} `))).to.equal(false);
    });

    it('GET / serves the page: the visit counter, Session.info() and handler.status()', async () => {
      const html = await page(jar);
      expect(html).to.match(/^<!doctype html>/i);
      expect(counter(html)).to.equal(1);
      expect(html).to.include('Session.info()');
      expect(html).to.include('handler.status()');
      expect(html).to.include(`port=${pgPort}`);
      // The store connects in the background: the first page may show it still connecting.
      expect(html).to.match(/<span class="state (up|connecting)">(up|connecting)<\/span>/);
      expect(jar.cookie('connect.sid'), 'session cookie').to.be.a('string');
    });

    it('a second GET with the cookie shows the counter at 2 and the stored session', async () => {
      const html = await page(jar);
      expect(counter(html)).to.equal(2);
      expect(cell(html, 'accesses')).to.equal('2');
      expect(cell(html, 'addressCreated')).to.equal('127.0.0.1');
      expect(html).to.match(/<span class="state up">up<\/span>/);
      const sid = decodeURIComponent(jar.cookie('connect.sid')!).slice(2).split('.')[0]!;
      expect(cell(html, 'sessionId')).to.equal(sid);
    });

    it('POST /login and /error, then GET shows the user in the custom field and the error count', async () => {
      await action(jar, '/login', { name: 'hello-user' });
      await action(jar, '/error', { level: 'warning', message: 'disk almost full' });
      await action(jar, '/error', { level: 'error', message: 'boom' });
      const html = await page(jar);
      expect(cell(html, 'custom')).to.equal('hello-user');
      expect(html).to.include('Logged in as <b>hello-user</b>');
      expect(cell(html, 'warnings')).to.equal('1');
      expect(cell(html, 'errors')).to.equal('1');
      expect(counter(html)).to.equal(3);
    });

    it('two browsers logged in as one user see each other; "log out everywhere else" logs the other out', async () => {
      const a = new CookieJar(demo!.url);
      const b = new CookieJar(demo!.url);
      await page(a);
      await page(b);
      await action(a, '/login', { name: 'alice' });
      await action(b, '/login', { name: 'alice' });
      const sidOf = (j: CookieJar) =>
        decodeURIComponent(j.cookie('connect.sid')!).slice(2).split('.')[0]!;
      const other = (html: string) =>
        /<h3>Your other sessions<\/h3><ul>(.*?)<\/ul>/.exec(html)?.[1] ?? '';
      const seenByA = other(await page(a));
      expect(seenByA, 'A lists B').to.include(sidOf(b));
      expect(seenByA, 'A does not list itself').to.not.include(sidOf(a));
      expect(other(await page(b)), 'B lists A').to.include(sidOf(a));

      await action(a, '/logout-others');
      const bAfter = await page(b);
      expect(bAfter, 'B is logged out').to.not.include('Logged in as');
      expect(counter(bAfter), 'B starts a new session').to.equal(1);
      const aAfter = await page(a);
      expect(aAfter).to.include('Logged in as <b>alice</b>');
      expect(aAfter).to.include('<h3>Your other sessions</h3><p>none</p>');
    });

    it('regenerate keeps the counter under a new id; destroy starts over', async () => {
      const before = jar.cookie('connect.sid');
      await action(jar, '/regenerate');
      expect(jar.cookie('connect.sid')).to.not.equal(before);
      expect(counter(await page(jar))).to.equal(4);
      await action(jar, '/destroy');
      expect(counter(await page(jar))).to.equal(1);
    });

    it('SIGTERM: exits 0 within 10 s, and its server and data directory are gone', async () => {
      const { code, signal } = await stopDemo(demo!);
      expect({ code, signal }, demo!.output()).to.deep.equal({ code: 0, signal: null });
      expect(await canConnect(pgPort), 'the throwaway server still accepts connections').to.equal(
        false,
      );
      expect(fs.existsSync(dataDir!), `${dataDir} still exists`).to.equal(false);
      expect(await canConnect(Number(new URL(demo!.url).port))).to.equal(false);
    });
  });

  describe('without SESSION_PGSQL_DB, stopped with SIGINT (Ctrl-C)', () => {
    let demo: Demo | undefined;
    after(async () => {
      if (demo) await stopDemo(demo, 20_000).catch(() => {});
    });

    it('exits 0 and removes its server', async () => {
      demo = await startDemo(envWithout('SESSION_PGSQL_DB'));
      const pgPort = Number(/throwaway PostgreSQL server… .*port=(\d+)/.exec(demo.output())![1]);
      const dataDir = findDataDir(pgPort);
      expect(dataDir, 'data directory').to.be.a('string');
      expect(counter(await page(new CookieJar(demo.url)))).to.equal(1);
      const { code, signal } = await stopDemo(demo, 10_000, 'SIGINT');
      expect({ code, signal }, demo.output()).to.deep.equal({ code: 0, signal: null });
      expect(await canConnect(pgPort)).to.equal(false);
      expect(fs.existsSync(dataDir!), `${dataDir} still exists`).to.equal(false);
    });
  });

  describe('with SESSION_PGSQL_DB: the given server', () => {
    const database = uniqueTable('demo');
    const conninfo = servers()[0]!.replace(/dbname=\S+/, `dbname=${database}`);
    let demo: Demo | undefined;

    before(async () => {
      // A database of its own on test server 0, so the demo's default table stays out of the way.
      await query(0, `CREATE DATABASE "${database}"`);
    });

    after(async () => {
      if (demo) await stopDemo(demo, 20_000).catch(() => {});
      await query(0, `DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    });

    it('uses that server, starts none, and leaves it running on SIGTERM', async () => {
      demo = await startDemo({ ...process.env, SESSION_PGSQL_DB: conninfo });
      expect(demo.output()).to.not.include('throwaway');
      const port = /port=(\d+)/.exec(servers()[0]!)![1]!;

      const jar = new CookieJar(demo.url);
      const first = await page(jar);
      expect(counter(first)).to.equal(1);
      expect(first).to.include(`port=${port}`);
      expect(first).to.include(`dbname=${database}`);
      expect(counter(await page(jar))).to.equal(2);

      const sid = decodeURIComponent(jar.cookie('connect.sid')!).slice(2).split('.')[0]!;
      const client = new Client({
        host: '127.0.0.1',
        port: Number(port),
        user: /user=(\S+)/.exec(servers()[0]!)![1],
        database,
      });
      await client.connect();
      try {
        const { rows } = await client.query(
          'SELECT sess_data FROM php_session WHERE sess_id = $1',
          [sid],
        );
        expect(rows).to.have.length(1);
        expect(JSON.parse(rows[0].sess_data)).to.include({ views: 2 });
      } finally {
        await client.end();
      }

      const { code, signal } = await stopDemo(demo);
      expect({ code, signal }, demo.output()).to.deep.equal({ code: 0, signal: null });
      expect(clusters()[0]!.isRunning(), 'test server 0 still running').to.equal(true);
      expect(await canConnect(Number(port))).to.equal(true);
    });
  });
});
