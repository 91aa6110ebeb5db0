// Runs one of the frameworks' own test suites (unmodified, from SESSION_PGSQL_PEER_SUITES or
// .tmp/peer-suites) in a child process with our store swapped in (hook.js), and turns each of
// its tests into a mocha test here. A test listed in ../differences.json must fail (its entry
// says why); an unlisted failure fails, and so does a listed test that passes or is gone, so the
// list can only shrink as the adapters are fixed.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Mocha from 'mocha';
import { query } from '../../support/db';

const ROOT = path.resolve(__dirname, '..', '..', '..');
export const SUITES = path.resolve(
  process.env.SESSION_PGSQL_PEER_SUITES ?? path.join(ROOT, '.tmp', 'peer-suites'),
);
export const HOOK = path.join(__dirname, 'hook.js');
const CHILD_LIMIT_MS = 120_000;
const OUTPUT_TAIL = 4000;

/** One entry of differences.json: a test of a peer suite that fails with our store. */
export interface Difference {
  /** "adapter bug" (ours to fix) or "difference" (documented behaviour). */
  category: 'adapter bug' | 'difference';
  /** The assertion the test fails, as it fails. */
  assertion: string;
  /** Why it fails with our store. */
  reason: string;
}

/** One test of a peer suite, as its runner reported it. */
export interface PeerResult {
  fullTitle: string;
  state: 'passed' | 'failed' | 'pending';
  message?: string;
  stack?: string;
}

export function differences(suite: string): Record<string, Difference> {
  const all = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'differences.json'), 'utf8'));
  return all[suite] ?? {};
}

/** How to run a suite: the child's arguments, given the file its results go to. */
export interface PeerRun {
  /** Name in differences.json and prefix of the suite's tables (peer_<table>_...). */
  suite: string;
  table: string;
  /** Directory under SUITES that must exist. */
  dir: string;
  args(resultsFile: string): string[];
  /** Reads the results file. */
  parse(text: string): PeerResult[];
  /** Runs before the child (e.g. fixtures the suite's own npm test makes). */
  prepare?(): void;
  extraEnv?: Record<string, string>;
  /** Unhandled rejections in the child: 'rethrow' fails the running test, 'record' reports each
   * as a failed test of its own (see hook.js). */
  rejections?: 'rethrow' | 'record';
}

function runChild(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-OUTPUT_TAIL);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const limit = setTimeout(() => child.kill('SIGKILL'), CHILD_LIMIT_MS);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(limit);
      resolve({ code, output });
    });
  });
}

async function dropTables(prefix: string): Promise<void> {
  const rows = await query<{ t: string }>(
    0,
    `SELECT tablename AS t FROM pg_tables WHERE tablename LIKE $1`,
    [`peer\\_${prefix}\\_%`],
  );
  for (const { t } of rows) await query(0, `DROP TABLE IF EXISTS "${t}"`);
}

/** Declares the mocha suite for one peer suite. */
export function peerSuite(title: string, run: PeerRun): void {
  describe(title, function () {
    this.timeout(CHILD_LIMIT_MS + 30_000);
    const listed = differences(run.suite);
    const present = fs.existsSync(path.join(SUITES, run.dir));
    let results: PeerResult[] = [];
    let child = { code: null as number | null, output: '' };

    before(async function () {
      if (!present) return;
      run.prepare?.();
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'session-pgsql-peer-'));
      const file = path.join(dir, 'results');
      const rejections = path.join(dir, 'rejections');
      try {
        child = await runChild(run.args(file), {
          ...process.env,
          SESSION_PGSQL_PEER_SUITES: SUITES,
          ...(run.rejections === 'rethrow' ? { SESSION_PGSQL_PEER_REJECTIONS: 'rethrow' } : {}),
          ...(run.rejections === 'record' ? { SESSION_PGSQL_PEER_REJECTIONS: rejections } : {}),
          ...run.extraEnv,
        });
        results = fs.existsSync(file) ? run.parse(fs.readFileSync(file, 'utf8')) : [];
        if (fs.existsSync(rejections)) {
          results.push(...parseJsonLines(fs.readFileSync(rejections, 'utf8')));
        }
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
        await dropTables(run.table);
      }
      results = merge(results);
      const parent = this.test!.parent!;
      for (const r of results) parent.addTest(resultTest(r, listed[r.fullTitle]));
    });

    it(`runs (${Object.keys(listed).length} tests listed in differences.json)`, function () {
      if (!present) {
        // The suites are not part of this repository: see test/peer/README.md.
        this.skip();
      }
      const counts = { passed: 0, expected: 0, skipped: 0, failed: 0 };
      for (const r of results) {
        if (r.state === 'pending') counts.skipped++;
        else if (r.state === 'passed') counts[listed[r.fullTitle] ? 'failed' : 'passed']++;
        else counts[listed[r.fullTitle] ? 'expected' : 'failed']++;
      }
      const seen = new Set(results.map((r) => r.fullTitle));
      const gone = Object.keys(listed).filter((t) => !seen.has(t));
      console.log(
        `      ${title}: ${counts.passed} passed, ${counts.expected} expected failures, ` +
          `${counts.skipped} skipped, ${counts.failed} unexpected`,
      );
      expect(results.length, `no results; the suite's process said:\n${child.output}`).to.be.above(
        0,
      );
      expect(gone, 'listed in differences.json but not in the suite').to.deep.equal([]);
    });
  });
}

/**
 * A mocha test of a ported peer suite that honours differences.json: listed, it must fail
 * (and is reported as an expected failure); unlisted, it must pass.
 */
export function peerIt(suite: string, title: string, fn: (this: Mocha.Context) => Promise<void>) {
  const listed = differences(suite)[title];
  const label = listed ? `[expected failure, ${listed.category}] ` : '';
  it(`${label}${title}`, async function () {
    if (!listed) return fn.call(this);
    let failure: unknown = null;
    try {
      await fn.call(this);
    } catch (err) {
      failure = err;
    }
    if (failure === null) {
      throw new Error(
        `passes now: remove it from test/peer/differences.json (it was listed as: ${listed.reason})`,
      );
    }
  });
}

/** One result per title: a test reported twice (e.g. failed after it passed) failed. */
function merge(results: PeerResult[]): PeerResult[] {
  const byTitle = new Map<string, PeerResult>();
  for (const r of results) {
    const seen = byTitle.get(r.fullTitle);
    if (!seen || (r.state === 'failed' && seen.state !== 'failed')) byTitle.set(r.fullTitle, r);
  }
  return [...byTitle.values()];
}

function resultTest(r: PeerResult, listed: Difference | undefined): Mocha.Test {
  const label = listed ? `[expected failure, ${listed.category}] ` : '';
  return new Mocha.Test(`${label}${r.fullTitle}`, function (this: Mocha.Context) {
    if (r.state === 'pending') this.skip();
    if (listed && r.state === 'passed') {
      throw new Error(
        `passes now: remove it from test/peer/differences.json (it was listed as: ${listed.reason})`,
      );
    }
    if (!listed && r.state === 'failed') {
      const err = new Error(r.message ?? 'failed');
      err.stack = `${r.message}\n${r.stack ?? ''}`;
      throw err;
    }
  });
}

/** Mocha's json reporter output as PeerResults. */
export function parseMochaJson(text: string): PeerResult[] {
  const json = JSON.parse(text) as {
    tests: { fullTitle: string; err: { message?: string; stack?: string } }[];
    pending: { fullTitle: string }[];
    failures: { fullTitle: string }[];
  };
  const pending = new Set(json.pending.map((t) => t.fullTitle));
  const failed = new Set(json.failures.map((t) => t.fullTitle));
  const out: PeerResult[] = json.tests.map((t) => ({
    fullTitle: t.fullTitle,
    state: pending.has(t.fullTitle) ? 'pending' : failed.has(t.fullTitle) ? 'failed' : 'passed',
    message: t.err?.message,
    stack: t.err?.stack,
  }));
  // Failing hooks show up only among the failures.
  for (const f of json.failures) {
    if (!out.some((t) => t.fullTitle === f.fullTitle)) {
      const err = (f as { err?: { message?: string; stack?: string } }).err;
      out.push({
        fullTitle: f.fullTitle,
        state: 'failed',
        message: err?.message,
        stack: err?.stack,
      });
    }
  }
  return out;
}

/** The JSON lines of node-test-reporter.mjs as PeerResults. */
export function parseJsonLines(text: string): PeerResult[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as PeerResult);
}

export const MOCHA = require.resolve('mocha/bin/mocha.js', { paths: [ROOT] });
