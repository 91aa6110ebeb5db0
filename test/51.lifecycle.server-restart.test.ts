// A server that crashes with operations in flight and comes back (docs/behaviour.md, Outages): every
// operation settles, failures are retryable, operations during the outage fail fast, and the
// same handler works again once the server is back, with no reset() and no new handler.
// These tests crash and restart test server 2 and always leave it running.
import { expect } from 'chai';
import { SessionPgsql, SessionPgsqlError } from '../lib';
import { clusters, newId, query, servers, uniqueTable } from './support/db';
import { settleWithin, sleep } from './support/wait';

const SERVER = 2;

/** Codes an operation may fail with when its server crashes or is down. */
const RETRYABLE_CODES = [
  'SPG_CONNECTION_LOST',
  'SPG_NO_SERVER',
  'SPG_TIMEOUT',
  'SPG_CONNECT_FAILED',
  'SPG_CONNECT_TIMEOUT',
];

/** Checks an error from a crashed or down server: retryable, with an outage code. */
function expectOutageError(error: unknown, what: string): void {
  expect(error, what).to.be.instanceOf(SessionPgsqlError);
  const { code, retryable, message } = error as SessionPgsqlError;
  expect(retryable, `${what}: retryable (${code}: ${message})`).to.equal(true);
  const sqlstate = /^(57P0\d|08...)$/.test(code);
  expect(sqlstate || RETRYABLE_CODES.includes(code), `${what}: code ${code} (${message})`).to.equal(
    true,
  );
}

describe('lifecycle: server crash and restart', function () {
  this.timeout(60_000);

  const cluster = clusters()[SERVER]!;
  let handler: SessionPgsql | undefined;

  afterEach(async () => {
    try {
      if (!cluster.isRunning()) await cluster.start();
    } finally {
      await handler?.close();
      handler = undefined;
    }
  });

  it('settles every operation in flight, fails fast while down, and recovers on its own', async () => {
    const table = uniqueTable('t51');
    const h = new SessionPgsql({ db: servers()[SERVER]!, table, connectTimeout: 2 });
    handler = h;
    await h.open();
    const before = newId();
    await h.write(before, 'written before the crash');

    // 200 lanes, each running reads and writes back to back until its first failure.
    const acknowledged: string[] = []; // ids whose write resolved: committed
    const failures: unknown[] = [];
    let succeeded = 0;
    let crashed = false;
    let crashedAt = 0;
    const lane = async (n: number) => {
      for (let i = 0; ; i++) {
        const id = newId();
        try {
          if ((n + i) % 2 === 0) {
            await h.write(id, `lane ${n} op ${i}`);
            acknowledged.push(id);
          } else {
            await h.read(id);
          }
          succeeded++;
        } catch (error) {
          failures.push(error);
          return;
        }
        // Lanes still going 30 s after the crash are a hang, not a stream.
        if (crashed && Date.now() - crashedAt > 30_000) return;
      }
    };
    const lanes = Array.from({ length: 200 }, (_, n) => lane(n));

    // Let the stream run, then crash the server under it.
    const streaming = Date.now();
    while (succeeded < 1000 && failures.length === 0 && Date.now() - streaming < 10_000) {
      await sleep(10);
    }
    expect(failures, 'failures before the crash').to.deep.equal([]);
    expect(succeeded, 'operations before the crash').to.be.at.least(1000);
    crashed = true;
    crashedAt = Date.now();
    try {
      await cluster.stop({ mode: 'immediate' });

      // Every operation in flight settles within a few seconds of the crash.
      const outcome = await settleWithin(Promise.all(lanes), 5000);
      expect(
        outcome,
        `lanes still waiting ${Date.now() - crashedAt} ms after the crash`,
      ).to.not.equal('pending');
      expect(failures).to.have.length(200);
      failures.forEach((error, i) => expectOutageError(error, `in-flight failure ${i}`));

      // While the server is down, every kind of operation fails fast.
      const down: Array<[string, () => Promise<unknown>]> = [
        ['read', () => h.read(newId())],
        ['write', () => h.write(newId(), 'while down')],
        ['touch', () => h.touch(before)],
        ['destroy', () => h.destroy(newId())],
        ['read', () => h.read(before)],
      ];
      for (const [name, op] of down) {
        const started = Date.now();
        const result = await settleWithin(op(), 5000);
        const elapsed = Date.now() - started;
        expect(result, `${name} while down`).to.not.equal('pending');
        expect(result, `${name} while down`).to.have.property('error');
        expectOutageError((result as { error: unknown }).error, `${name} while down`);
        expect(elapsed, `${name} while down: elapsed ms`).to.be.below(1000);
      }
      const whileDown = h.status().servers[0]!;
      expect(whileDown.state).to.be.oneOf(['down', 'connecting']);
      expect(whileDown.failures).to.be.at.least(1);
    } finally {
      await cluster.start();
    }

    // Back without reset() or a new handler: poll every 100 ms for up to 15 s.
    const restarted = Date.now();
    let lastError: unknown = null;
    let session = null;
    while (Date.now() - restarted < 15_000) {
      try {
        session = await h.read(before);
        break;
      } catch (error) {
        lastError = error;
        await sleep(100);
      }
    }
    expect(session, `not back ${Date.now() - restarted} ms after the restart: ${lastError}`).to.not
      .be.null;
    expect(session!.data).to.equal('written before the crash');

    // Writes work again, and every write acknowledged before the crash is still there.
    const after = newId();
    expect(await h.write(after, 'written after the restart')).to.equal(true);
    expect((await h.read(after)).data).to.equal('written after the restart');
    expect(acknowledged.length).to.be.at.least(100);
    const [stored] = await query<{ count: string }>(
      SERVER,
      `SELECT count(*) FROM "${table}" WHERE sess_id = ANY($1)`,
      [acknowledged],
    );
    expect(Number(stored?.count), 'acknowledged writes still stored').to.equal(acknowledged.length);

    const status = h.status().servers[0]!;
    expect(status.state).to.equal('up');
    expect(status.failures).to.be.at.least(1);
  });

  it('a handler opened while the server is down comes up once it starts', async () => {
    const table = uniqueTable('t51');
    const h = new SessionPgsql({ db: servers()[SERVER]!, table, connectTimeout: 2 });
    handler = h;
    await cluster.stop({ mode: 'immediate' });
    try {
      const opened = await settleWithin(h.open(), 5000);
      expect(opened, 'open() while down').to.have.property('error');
      expectOutageError((opened as { error: unknown }).error, 'open() while down');
      const result = await settleWithin(h.read(newId()), 2000);
      expect(result).to.have.property('error');
      expectOutageError((result as { error: unknown }).error, 'read() while down');
    } finally {
      await cluster.start();
    }

    const restarted = Date.now();
    let lastError: unknown = null;
    let written = false;
    const id = newId();
    while (Date.now() - restarted < 15_000) {
      try {
        written = await h.write(id, 'first write');
        break;
      } catch (error) {
        lastError = error;
        await sleep(100);
      }
    }
    expect(written, `not up ${Date.now() - restarted} ms after the start: ${lastError}`).to.equal(
      true,
    );
    expect((await h.read(id)).data).to.equal('first write');
    expect(h.status().servers[0]!.state).to.equal('up');
  });
});
