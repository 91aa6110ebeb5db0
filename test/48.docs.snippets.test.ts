// The documentation runs as written. Every JavaScript and TypeScript block of README.md and
// docs/*.md is written to a file inside the checkout (so `require('session-pgsql')` resolves to
// it, by the package's self-reference) and run in a fresh Node process against a throwaway
// database on the first test server, given as DATABASE_URL. A snippet that starts a server
// (`.listen(`) listens on PORT and must count views: the first GET / sets a session cookie and
// answers `views: 1`, the second, with that cookie, `views: 2`; then it is stopped.
// TypeScript blocks are also type-checked. Links between the pages must point at files and
// headings that exist, and the README stays short.
import { expect } from 'chai';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { query, servers } from './support/db';
import { CookieJar } from './support/http';
import { closedPort } from './support/net';
import {
  anchors,
  docPages,
  extensionFor,
  fencedBlocks,
  isRunnable,
  isServer,
  isTypeScript,
  relativeLinks,
  type Snippet,
} from './support/snippets';
import { settleWithin } from './support/wait';

const ROOT = path.resolve(__dirname, '..');
const RUN_MS = 30_000;
const STOP_MS = 10_000;

const snippets: Snippet[] = docPages(ROOT).flatMap((page) =>
  fencedBlocks(fs.readFileSync(path.join(ROOT, page), 'utf8'), page),
);
const runnable = snippets.filter((s) => isRunnable(s) && s.notRun === undefined);

interface Run {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  done(): boolean;
}

/**
 * Test server 0's conninfo as a URI naming database `dbname`: libpq takes it, and so do the
 * pure-JavaScript clients a snippet may compare with (connect-pg-simple's `conString`).
 */
function uriFor(conninfo: string, dbname: string): string {
  const kv = Object.fromEntries(conninfo.split(/\s+/).map((p) => p.split('=') as [string, string]));
  return `postgresql://${kv.user}@${kv.host}:${kv.port}/${dbname}`;
}

function start(file: string, ts: boolean, env: Record<string, string>): Run {
  const args = ts ? ['--import', 'tsx', file] : [file];
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', NODE_OPTIONS: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  let gone = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      gone = true;
      resolve({ code, signal });
    }),
  );
  return { child, output: () => output, exited, done: () => gone };
}

/** Waits for exit; SIGKILL and a failure after `ms`. */
async function finish(run: Run, ms: number, what: string) {
  const result = await settleWithin(run.exited, ms);
  if (result === 'pending') {
    run.child.kill('SIGKILL');
    await run.exited;
    throw new Error(`${what} did not exit within ${ms} ms:\n${run.output()}`);
  }
  return result.value!;
}

function where(s: Snippet): string {
  return `${s.file}:${s.line}`;
}

describe('45 documentation snippets', function () {
  this.timeout(RUN_MS + STOP_MS + 20_000);

  const dbname = `docs_${randomBytes(4).toString('hex')}`;
  const dir = path.join(ROOT, '.tmp', `snippets-${randomBytes(4).toString('hex')}`);
  let databaseUrl = '';
  const written = new Map<Snippet, string>();

  before(async function () {
    await query(0, `CREATE DATABASE ${dbname}`);
    databaseUrl = uriFor(servers()[0]!, dbname);
    fs.mkdirSync(dir, { recursive: true });
    runnable.forEach((s, i) => {
      const name = `${i}-${path.basename(s.file, '.md')}-${s.line}${extensionFor(s)}`;
      const file = path.join(dir, name);
      fs.writeFileSync(file, s.code);
      written.set(s, file);
    });
  });

  after(async function () {
    fs.rmSync(dir, { recursive: true, force: true });
    try {
      fs.rmdirSync(path.join(ROOT, '.tmp'));
    } catch {
      // other files live there: leave it
    }
    await query(0, `DROP DATABASE IF EXISTS ${dbname} WITH (FORCE)`);
  });

  it('finds the snippets (README quick starts included)', function () {
    expect(
      runnable.filter((s) => s.file === 'README.md' && isServer(s)),
    ).to.have.length.of.at.least(3);
  });

  for (const s of runnable) {
    const kind = isServer(s) ? 'serves sessions over HTTP' : 'runs to completion';
    it(`${where(s)} (${s.lang}) ${kind}`, async function () {
      const file = written.get(s)!;
      const port = await closedPort();
      const env = {
        DATABASE_URL: databaseUrl,
        PORT: String(port),
        SESSION_SECRET: randomBytes(24).toString('hex'),
      };
      const run = start(file, isTypeScript(s), env);
      if (!isServer(s)) {
        const { code, signal } = await finish(run, RUN_MS, where(s));
        expect(code, `${where(s)} exited with ${code ?? signal}:\n${run.output()}`).to.equal(0);
        return;
      }
      try {
        const jar = new CookieJar(`http://127.0.0.1:${port}/`);
        const started = Date.now();
        let first;
        for (;;) {
          if (run.done()) throw new Error(`${where(s)} exited before serving:\n${run.output()}`);
          try {
            first = await jar.request('/', { timeoutMs: 5_000 });
            break;
          } catch {
            if (Date.now() - started > RUN_MS) {
              throw new Error(
                `${where(s)} did not serve on PORT within ${RUN_MS} ms:\n${run.output()}`,
              );
            }
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        }
        const context = `${where(s)}:\n${run.output()}`;
        expect(first.status, `first GET /: ${first.text}\n${context}`).to.equal(200);
        expect(first.setCookies, `first GET / set no cookie\n${context}`).to.not.be.empty;
        expect(first.text, context).to.match(/views: 1\b/);
        const second = await jar.request('/');
        expect(second.status, `second GET /: ${second.text}\n${context}`).to.equal(200);
        expect(second.text, `the session did not continue\n${context}`).to.match(/views: 2\b/);
      } finally {
        if (!run.done()) run.child.kill('SIGTERM');
        await finish(run, STOP_MS, where(s));
      }
    });
  }

  it('the TypeScript snippets type-check', async function () {
    const files = runnable.filter(isTypeScript).map((s) => written.get(s)!);
    if (files.length === 0) this.skip();
    const tsconfig = path.join(dir, 'tsconfig.json');
    fs.writeFileSync(
      tsconfig,
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'nodenext',
          moduleResolution: 'nodenext',
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: ['node'],
        },
        files,
      }),
    );
    const tsc = require.resolve('typescript/bin/tsc');
    const result = await new Promise<{ code: number; out: string }>((resolve) =>
      execFile(
        process.execPath,
        [tsc, '-p', tsconfig],
        { cwd: ROOT, timeout: 120_000 },
        (err, stdout, stderr) =>
          resolve({
            code: err ? (typeof err.code === 'number' ? err.code : -1) : 0,
            out: stdout + stderr,
          }),
      ),
    );
    expect(result.code, result.out).to.equal(0);
  });

  it('every link between the pages points at a file and heading that exist', function () {
    const broken: string[] = [];
    for (const page of docPages(ROOT)) {
      const text = fs.readFileSync(path.join(ROOT, page), 'utf8');
      for (const { target, line } of relativeLinks(text)) {
        const [file = '', anchor] = target.split('#');
        const resolved = file
          ? path.join(path.dirname(path.join(ROOT, page)), file)
          : path.join(ROOT, page);
        if (!fs.existsSync(resolved)) {
          broken.push(`${page}:${line}: ${target} (no such file)`);
          continue;
        }
        if (anchor && resolved.endsWith('.md')) {
          if (!anchors(fs.readFileSync(resolved, 'utf8')).has(anchor)) {
            broken.push(`${page}:${line}: ${target} (no such heading)`);
          }
        }
      }
    }
    expect(broken, broken.join('\n')).to.be.empty;
  });

  it('the README stays at most 250 lines', function () {
    const lines = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8').trimEnd().split('\n');
    expect(lines.length).to.be.at.most(250);
  });
});
