// Every operation settles (issue 13, items 1 and 2): reset() while connections are still being
// made strands nothing, close() resolves and the process exits; reset() of a healthy server
// emits no events, so a 'down' listener that calls reset() cannot nest resets or loop; and a
// listener that throws surfaces once, as an uncaught exception, without stopping any operation
// from settling. The crash tests stop and restart test server 2 and always leave it running.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { SessionPgsql, SessionPgsqlError, type SessionPgsqlOptions } from '../lib';
import { clusters, db, newId, servers, uniqueTable } from './support/db';
import { serverBack, settleWithin, waitUntil } from './support/wait';

const CRASHED = 2;
const ROOT = path.join(__dirname, '..');

/** Waits for `promise` (at most `ms`) and fails the test if it is still pending. */
async function settled<T>(
  promise: Promise<T>,
  what: string,
  ms = 15_000,
): Promise<{ value: T } | { error: unknown }> {
  const outcome = await settleWithin(promise, ms);
  expect(outcome, `${what} still pending after ${ms} ms`).to.not.equal('pending');
  return outcome as { value: T } | { error: unknown };
}

/** Our error with a code, as every rejection must be. */
function expectOurError(error: unknown, what: string): void {
  expect(error, what).to.be.instanceOf(SessionPgsqlError);
  expect((error as SessionPgsqlError).code, `${what}: code`).to.be.a('string').and.not.empty;
}

/**
 * Collects uncaught exceptions while `body` runs, in place of mocha's listener (which would
 * fail the test at the first one); mocha's listeners are back when it returns.
 */
async function collectingUncaught(body: (errors: unknown[]) => Promise<void>): Promise<void> {
  const mochas = process.listeners('uncaughtException');
  const errors: unknown[] = [];
  const collect = (error: unknown) => errors.push(error);
  process.removeAllListeners('uncaughtException');
  process.on('uncaughtException', collect);
  try {
    await body(errors);
  } finally {
    process.off('uncaughtException', collect);
    for (const listener of mochas) process.on('uncaughtException', listener);
  }
}

/** The messages of the collected errors. */
function messages(errors: unknown[]): string[] {
  return errors.map((e) => (e instanceof Error ? e.message : String(e)));
}

/** Lets the event loop turn `n` times (connections progress between the calls of a test). */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe('19 handler: every operation settles', function () {
  this.timeout(60_000);
  let table: string;
  const made: SessionPgsql[] = [];
  /** A handler on server 0 and this test's table, housekeeping timers off; closed after it. */
  function make(options: SessionPgsqlOptions = {}): SessionPgsql {
    const h = new SessionPgsql({ db: db(1), table, gcInterval: 0, vacuumInterval: 0, ...options });
    made.push(h);
    return h;
  }

  beforeEach(() => {
    table = uniqueTable('t19');
  });

  // Bounded, unlike handlerFactory's: a close() that never resolves fails this test alone.
  afterEach(async () => {
    const outcomes = await Promise.all(made.splice(0).map((h) => settleWithin(h.close(), 15_000)));
    expect(outcomes, 'close() after the test').to.not.include('pending');
  });

  describe('reset() while connections are being made', () => {
    for (const connections of [1, 2]) {
      it(`open() then reset() at once: both settle, close() resolves (connections: ${connections})`, async () => {
        const h = make({ connections });
        const open = h.open();
        const reset = h.reset();
        expect(await settled(open, 'open()')).to.deep.equal({ value: undefined });
        expect(await settled(reset, 'reset()')).to.deep.equal({ value: true });
        const id = newId();
        expect(await h.write(id, 'after')).to.equal(true);
        expect((await h.read(id)).data).to.equal('after');
        expect(h.status().inFlight).to.equal(0);
        expect(await settled(h.close(), 'close()')).to.deep.equal({ value: undefined });
      });
    }

    it('a storm of resets with writes in flight: every write settles, what resolved true reads back', async () => {
      const h = make({ connections: 2, maxBatch: 8 });
      const writes: Array<{ id: string; data: string; outcome: Promise<boolean> }> = [];
      const resets: Array<Promise<boolean>> = [];
      for (let round = 0; round < 12; round++) {
        for (let i = 0; i < 5; i++) {
          const id = newId();
          const data = `round ${round} write ${i}`;
          writes.push({ id, data, outcome: h.write(id, data) });
        }
        resets.push(h.reset());
        // Resets land at different points of the connections' setup.
        await turns(round % 4);
      }
      expect(writes).to.have.length(60);
      const outcomes = await settled(
        Promise.allSettled(writes.map((w) => w.outcome)),
        'the 60 writes',
      );
      const results = (outcomes as { value: Array<PromiseSettledResult<boolean>> }).value;
      let stored = 0;
      for (const [i, result] of results.entries()) {
        if (result.status === 'rejected') {
          expectOurError(result.reason, `write ${i}`);
          continue;
        }
        expect(result.value, `write ${i}`).to.equal(true);
        expect((await h.read(writes[i]!.id)).data, `write ${i} read back`).to.equal(
          writes[i]!.data,
        );
        stored++;
      }
      expect(stored, 'writes stored (the server stayed up)').to.equal(60);
      for (const [i, reset] of resets.entries()) {
        expect(await settled(reset, `reset ${i}`)).to.deep.equal({ value: true });
      }
      expect(h.status().inFlight).to.equal(0);
      expect(await settled(h.close(), 'close()')).to.deep.equal({ value: undefined });
    });

    it('a child process doing open(); reset(); close() exits by itself', async () => {
      const script = `
        const { SessionPgsql } = require(${JSON.stringify(ROOT)});
        const h = new SessionPgsql({ db: process.env.DB, table: process.env.TABLE });
        const report = (what) => (v) => console.log(what, v && v.code ? v.code : String(v));
        h.open().then(report('open resolved'), report('open rejected'));
        h.reset().then(report('reset resolved'), report('reset rejected'));
        h.close().then(report('close resolved'), report('close rejected'));
      `;
      const child = spawn(process.execPath, ['-e', script], {
        env: { ...process.env, DB: db(1), TABLE: table },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
      const outcome = await settleWithin(exited, 15_000);
      if (outcome === 'pending') child.kill('SIGKILL');
      expect(outcome, `still running after 15 s:\n${output}`).to.not.equal('pending');
      expect(outcome, output).to.deep.equal({ value: 0 });
      expect(output.trim().split('\n').sort()).to.deep.equal([
        'close resolved undefined',
        'open resolved undefined',
        'reset resolved true',
      ]);
    });
  });

  describe("'up' and 'down' events", () => {
    it('reset() of healthy servers emits neither; a down listener calling reset() does not nest', async () => {
      const h = make({ db: db(2) });
      await h.open();
      const events: string[] = [];
      const resets: Array<Promise<boolean>> = [];
      h.on('up', (i: number) => events.push(`up ${i}`));
      h.on('down', (i: number) => {
        events.push(`down ${i}`);
        resets.push(h.reset());
      });
      expect(await settled(h.reset(), 'reset()')).to.deep.equal({ value: true });
      await turns(3);
      expect(events, 'events of a reset of healthy servers').to.deep.equal([]);
      expect(resets, "resets from the 'down' listener").to.have.length(0);
      expect(h.status().servers.map((s) => s.state)).to.deep.equal(['up', 'up']);
      const id = newId();
      expect(await h.write(id, 'x')).to.equal(true);
      expect((await h.read(id)).data).to.equal('x');
    });

    it("a throwing 'up' listener: open() settles, the exception is uncaught exactly once", async () => {
      await collectingUncaught(async (errors) => {
        const h = make();
        h.on('up', () => {
          throw new Error('thrown by an up listener');
        });
        expect(await settled(h.open(), 'open()')).to.deep.equal({ value: undefined });
        await turns(3);
        expect(messages(errors)).to.deep.equal(['thrown by an up listener']);
        // Nothing stale surfaces from the next, unrelated calls.
        const id = newId();
        expect(await settled(h.write(id, 'next'), 'write()')).to.deep.equal({ value: true });
        expect((await h.read(id)).data).to.equal('next');
        expect(h.status().inFlight).to.equal(0);
        await turns(3);
        expect(errors).to.have.length(1);
      });
    });

    describe('a server crash', () => {
      const cluster = clusters()[CRASHED]!;
      afterEach(async () => {
        if (!cluster.isRunning()) await cluster.start();
      });

      /** Lanes of writes back to back on `h`, each until its first failure. */
      function lanes(h: SessionPgsql, count: number) {
        const state = { succeeded: 0, failures: [] as unknown[] };
        const lane = async (n: number) => {
          for (let i = 0; i < 10_000; i++) {
            try {
              await h.write(newId(), `lane ${n} write ${i}`);
              state.succeeded++;
            } catch (error) {
              state.failures.push(error);
              return;
            }
          }
        };
        return { state, done: Promise.all(Array.from({ length: count }, (_, n) => lane(n))) };
      }

      it("a throwing 'down' listener: every operation in flight settles, the exception is uncaught once", async () => {
        await collectingUncaught(async (errors) => {
          const h = make({
            db: servers()[CRASHED]!,
            connectTimeout: 2,
            retryMinDelay: 0.05,
            retryMaxDelay: 0.5,
          });
          await h.open();
          let downs = 0;
          h.on('down', () => {
            downs++;
            throw new Error('thrown by a down listener');
          });
          const { state, done } = lanes(h, 400);
          await waitUntil('writes streaming', 10_000, () => state.succeeded >= 800);
          await cluster.stop({ mode: 'immediate' });
          await settled(done, 'the 400 lanes');
          expect(state.failures).to.have.length(400);
          state.failures.forEach((error, i) => expectOurError(error, `lane ${i}`));
          expect(h.status().inFlight, 'inFlight once all settled').to.equal(0);
          await turns(3);
          expect(downs).to.equal(1);
          expect(messages(errors)).to.deep.equal(['thrown by a down listener']);

          await cluster.start();
          await serverBack(CRASHED);
          await waitUntil(
            'the server up again',
            15_000,
            () => h.status().servers[0]!.state === 'up',
          );
          // Nothing stale surfaces from the next, unrelated call.
          const id = newId();
          expect(await settled(h.write(id, 'after'), 'write()')).to.deep.equal({ value: true });
          expect((await h.read(id)).data).to.equal('after');
          expect(errors).to.have.length(1);
        });
      });

      it("a 'down' listener calling reset(): one 'down' per crash, everything settles, no loop", async () => {
        const h = make({
          db: servers()[CRASHED]!,
          connectTimeout: 2,
          retryMinDelay: 0.05,
          retryMaxDelay: 0.5,
        });
        await h.open();
        const events: string[] = [];
        const resets: Array<Promise<boolean>> = [];
        h.on('up', (i: number) => events.push(`up ${i}`));
        h.on('down', (i: number) => {
          events.push(`down ${i}`);
          resets.push(h.reset());
        });
        const { state, done } = lanes(h, 100);
        await waitUntil('writes streaming', 10_000, () => state.succeeded >= 200);
        await cluster.stop({ mode: 'immediate' });
        await settled(done, 'the 100 lanes');
        state.failures.forEach((error, i) => expectOurError(error, `lane ${i}`));
        for (const [i, reset] of resets.entries()) {
          const outcome = await settled(reset, `reset ${i}`);
          expect(outcome, `reset ${i}`).to.have.property('value').that.is.a('boolean');
        }
        // Retries (and the listener's reset) find the server down again and again, each
        // without another event.
        const failures = h.status().servers[0]!.failures;
        await waitUntil('three more failed retries', 15_000, () => {
          return h.status().servers[0]!.failures >= failures + 3;
        });
        expect(events).to.deep.equal(['down 0']);
        expect(resets).to.have.length(1);
        await cluster.start();
        await waitUntil('the server up again', 15_000, () => h.status().servers[0]!.state === 'up');
        await turns(3);
        expect(events).to.deep.equal(['down 0', 'up 0']);
        // A reset() now, of a healthy server, emits nothing: the listener does not run.
        expect(await settled(h.reset(), 'reset() after recovery')).to.deep.equal({ value: true });
        await turns(3);
        expect(events).to.deep.equal(['down 0', 'up 0']);
        expect(resets).to.have.length(1);
        expect(h.status().inFlight).to.equal(0);
        expect(await settled(h.close(), 'close()')).to.deep.equal({ value: undefined });
      });
    });
  });
});
