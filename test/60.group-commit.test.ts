// Group commit (docs/behaviour.md, Group commit): operations queued for one server in the same loop turn go out as one
// pipeline batch ending in one Sync (one round trip, one transaction, one commit), at most
// `maxBatch` operations per batch. One failing statement rolls its batch back: the failing
// operation is rejected and its neighbours are sent again, so they neither fail nor get lost.
// Order per session id is preserved; reads do not wait for a commit they do not need.
//
// Evidence of batching: rows written by one batch share one transaction, hence one `xmin`.
// Operations share a batch when they are issued in the same tick (no await between them) on a
// handler that is already open. The server-crash tests stop and restart test server 2 and always
// leave it running.
import { expect } from 'chai';
import { SessionPgsql, SessionPgsqlError, type SessionPgsqlOptions } from '../lib';
import { clusters, db, newId, query, servers, uniqueTable } from './support/db';
import { handlerFactory } from './support/handlers';
import { addSlowCommit } from './support/triggers';
import { toStoredRow, type StoredRow } from './support/rows';
import { serverBack, settled, sleep } from './support/wait';

/** A stored row with the transaction that wrote it. */
type Row = StoredRow & { xmin: string };

const CRASH_SERVER = 2;

/** Checks a rejection by the `no_poison` CHECK constraint. */
function expectCheckViolation(outcome: PromiseSettledResult<unknown> | undefined, what: string) {
  expect(outcome?.status, `${what}: settled as`).to.equal('rejected');
  const error = (outcome as PromiseRejectedResult).reason as SessionPgsqlError;
  expect(error, what).to.be.instanceOf(SessionPgsqlError);
  expect(error.code, `${what}: ${error.message}`).to.equal('23514');
  expect(error.constraint, what).to.equal('no_poison');
  expect(error.retryable, what).to.equal(false);
}

/** The value of a fulfilled outcome; fails the test with the reason of a rejected one. */
function valueOf<T>(outcome: PromiseSettledResult<T> | undefined, what: string): T {
  expect(outcome, what).to.not.equal(undefined);
  if (outcome!.status === 'rejected') {
    const reason = outcome!.reason as Error;
    expect.fail(`${what}: rejected with ${(reason as SessionPgsqlError).code}: ${reason.message}`);
  }
  return (outcome as PromiseFulfilledResult<T>).value;
}

describe('60 group commit', function () {
  this.timeout(60_000);

  let table: string;
  const handlers = handlerFactory();

  /**
   * An open handler on this test's table on test server `server` (0 unless told), housekeeping
   * timers off, maxBatch 64 unless told.
   */
  function make(options: SessionPgsqlOptions = {}, server = 0): Promise<SessionPgsql> {
    const conninfo = server === 0 ? db(1) : servers()[server]!;
    return handlers.open({ db: conninfo, table, maxBatch: 64, ...options });
  }

  /** The stored rows of `ids` (every row when omitted), by id, with their xmin. */
  async function rows(ids?: string[], server = 0): Promise<Map<string, Row>> {
    const list =
      ids === undefined
        ? await query(server, `SELECT *, xmin::text AS xmin FROM ${table}`)
        : await query(
            server,
            `SELECT *, xmin::text AS xmin FROM ${table} WHERE sess_id = ANY($1)`,
            [ids],
          );
    return new Map(list.map((r) => toStoredRow<{ xmin: string }>(r)).map((r) => [r.sess_id, r]));
  }

  /** How many rows each transaction (xmin) among `found` wrote. */
  function transactions(found: Iterable<Row>): number[] {
    const sizes = new Map<string, number>();
    for (const r of found) sizes.set(r.xmin, (sizes.get(r.xmin) ?? 0) + 1);
    return [...sizes.values()];
  }

  async function addPoisonCheck(server = 0): Promise<void> {
    await query(
      server,
      `ALTER TABLE ${table} ADD CONSTRAINT no_poison CHECK (sess_data <> 'poison')`,
    );
  }

  beforeEach(() => {
    table = uniqueTable('t60');
  });

  describe('batching', () => {
    it('50 writes issued together with maxBatch 64 commit in one transaction', async () => {
      const h = await make({ maxBatch: 64 });
      const ids = Array.from({ length: 50 }, () => newId());
      const outcomes = await Promise.allSettled(ids.map((id, i) => h.write(id, `data ${i}`)));
      outcomes.forEach((o, i) => expect(valueOf(o, `write ${i}`)).to.equal(true));
      const found = await rows(ids);
      expect(found.size).to.equal(50);
      ids.forEach((id, i) => expect(found.get(id)!.sess_data).to.equal(`data ${i}`));
      const sizes = transactions(found.values());
      expect(sizes.length, `transactions (rows each: ${sizes})`).to.be.at.most(2);
    });

    it('with maxBatch 1 the same 50 writes commit one by one', async () => {
      const h = await make({ maxBatch: 1 });
      const ids = Array.from({ length: 50 }, () => newId());
      const outcomes = await Promise.allSettled(ids.map((id, i) => h.write(id, `data ${i}`)));
      outcomes.forEach((o, i) => expect(valueOf(o, `write ${i}`)).to.equal(true));
      const found = await rows(ids);
      expect(found.size).to.equal(50);
      expect(transactions(found.values()).length).to.equal(50);
    });

    it('maxBatch 10 bounds the batch: 50 writes take at least 5 commits of at most 10', async () => {
      const h = await make({ maxBatch: 10 });
      const ids = Array.from({ length: 50 }, () => newId());
      const outcomes = await Promise.allSettled(ids.map((id, i) => h.write(id, `data ${i}`)));
      outcomes.forEach((o, i) => expect(valueOf(o, `write ${i}`)).to.equal(true));
      const found = await rows(ids);
      expect(found.size).to.equal(50);
      const sizes = transactions(found.values());
      expect(sizes.length, `transactions (rows each: ${sizes})`).to.be.at.least(5);
      for (const size of sizes) expect(size, `rows per transaction (${sizes})`).to.be.at.most(10);
    });

    it('touches and destroys issued together share a batch too', async () => {
      const h = await make();
      const touched = Array.from({ length: 10 }, () => newId());
      const destroyed = Array.from({ length: 10 }, () => newId());
      await Promise.all([...touched, ...destroyed].map((id) => h.write(id, 'stored')));
      const far = Math.floor(Date.now() / 1000) + 7200;
      const outcomes = await Promise.allSettled([
        ...touched.map((id) => h.touch(id, far)),
        ...destroyed.map((id) => h.destroy(id)),
      ]);
      outcomes.forEach((o, i) => expect(valueOf(o, `op ${i}`)).to.equal(true));
      const found = await rows([...touched, ...destroyed]);
      expect([...found.keys()].sort()).to.deep.equal([...touched].sort());
      for (const id of touched) expect(found.get(id)!.sess_expire).to.equal(far);
      const sizes = transactions(found.values());
      expect(sizes.length, `transactions of the touches (rows each: ${sizes})`).to.be.at.most(2);
    });
  });

  describe('failure isolation', () => {
    for (const position of [0, 9, 19]) {
      it(`one write violating a CHECK (at ${position} of 20) fails alone; the 19 others are stored`, async () => {
        const h = await make();
        await addPoisonCheck();
        const ids = Array.from({ length: 20 }, () => newId());
        const data = ids.map((_, i) => (i === position ? 'poison' : `good ${i}`));
        const outcomes = await Promise.allSettled(ids.map((id, i) => h.write(id, data[i]!)));
        expectCheckViolation(outcomes[position], `the poisoned write`);
        outcomes.forEach((o, i) => {
          if (i !== position) expect(valueOf(o, `write ${i}`)).to.equal(true);
        });
        const found = await rows(ids);
        expect(found.size).to.equal(19);
        expect(found.has(ids[position]!)).to.equal(false);
        ids.forEach((id, i) => {
          if (i === position) return;
          expect(found.get(id)?.sess_data, `row ${i}`).to.equal(data[i]);
          expect(found.get(id)?.sess_counter, `counter of row ${i}`).to.equal(1);
        });
      });
    }

    it('two poisoned writes among 30: both fail with 23514, the 28 others are stored', async () => {
      const h = await make();
      await addPoisonCheck();
      const ids = Array.from({ length: 30 }, () => newId());
      const poisoned = new Set([7, 22]);
      const data = ids.map((_, i) => (poisoned.has(i) ? 'poison' : `good ${i}`));
      const outcomes = await Promise.allSettled(ids.map((id, i) => h.write(id, data[i]!)));
      outcomes.forEach((o, i) => {
        if (poisoned.has(i)) expectCheckViolation(o, `poisoned write ${i}`);
        else expect(valueOf(o, `write ${i}`)).to.equal(true);
      });
      const found = await rows(ids);
      expect(found.size).to.equal(28);
      ids.forEach((id, i) => {
        if (!poisoned.has(i)) expect(found.get(id)?.sess_data, `row ${i}`).to.equal(data[i]);
      });
    });

    it('a batch of poisoned writes only: each fails, nothing is stored, the handler goes on', async () => {
      const h = await make();
      await addPoisonCheck();
      const ids = Array.from({ length: 5 }, () => newId());
      const outcomes = await Promise.allSettled(ids.map((id) => h.write(id, 'poison')));
      outcomes.forEach((o, i) => expectCheckViolation(o, `poisoned write ${i}`));
      expect((await rows(ids)).size).to.equal(0);
      const after = newId();
      expect(await h.write(after, 'after')).to.equal(true);
      expect((await h.read(after)).data).to.equal('after');
    });

    it('reads issued in the same tick as a failing batch resolve with the right rows', async () => {
      const h = await make();
      await addPoisonCheck();
      const [r, a, b] = [newId(), newId(), newId()];
      await h.write(r, 'stored before');
      const reads = [
        h.write(a, 'a data').then(() => null),
        h.read(a), // after a's write: sees it
        h.read(r),
        h.write(newId(), 'poison').then(
          () => 'stored',
          (e: SessionPgsqlError) => e.code,
        ),
        h.read(r),
        h.read(a),
        h.write(b, 'b data').then(() => null),
        h.read(b),
        h.read(newId()),
      ];
      const outcomes = await Promise.allSettled(reads);
      const value = (i: number) => valueOf(outcomes[i], `op ${i}`);
      expect(value(3), 'the poisoned write').to.equal('23514');
      const session = (i: number) =>
        value(i) as unknown as { data: string; isNew: boolean } | undefined;
      expect(session(1)).to.include({ data: 'a data', isNew: false });
      expect(session(2)).to.include({ data: 'stored before', isNew: false });
      expect(session(4)).to.include({ data: 'stored before', isNew: false });
      expect(session(5)).to.include({ data: 'a data', isNew: false });
      expect(session(7)).to.include({ data: 'b data', isNew: false });
      expect(session(8)).to.include({ data: '', isNew: true });
      const found = await rows([r, a, b]);
      expect([r, a, b].map((id) => found.get(id)?.sess_data)).to.deep.equal([
        'stored before',
        'a data',
        'b data',
      ]);
    });

    it('touch and destroy next to a failing write are sent again with the right outcome', async () => {
      const h = await make();
      await addPoisonCheck();
      const [t, d] = [newId(), newId()];
      await h.write(t, 'touched');
      await h.write(d, 'destroyed');
      const far = Math.floor(Date.now() / 1000) + 7200;
      const outcomes = await Promise.allSettled([
        h.touch(t, far),
        h.destroy(d),
        h.write(newId(), 'poison'),
        h.touch(newId(), far),
        h.destroy(newId()),
      ]);
      expect(valueOf(outcomes[0], 'touch of a live session')).to.equal(true);
      expect(valueOf(outcomes[1], 'destroy of a stored session')).to.equal(true);
      expectCheckViolation(outcomes[2], 'the poisoned write');
      expect(valueOf(outcomes[3], 'touch of a missing session')).to.equal(false);
      expect(valueOf(outcomes[4], 'destroy of a missing session')).to.equal(false);
      const found = await rows([t, d]);
      expect([...found.keys()]).to.deep.equal([t]);
      expect(found.get(t)!.sess_expire).to.equal(far);
    });

    it('a write resent after a failed batch does not overtake a later batch writing the same id', async () => {
      // maxBatch 2: [poison, x ← 'first'] and [x ← 'second'] go out back to back; the first
      // batch is rolled back and 'first' is sent again, after 'second' was committed.
      const h = await make({ maxBatch: 2 });
      await addPoisonCheck();
      const x = newId();
      const outcomes = await Promise.allSettled([
        h.write(newId(), 'poison'),
        h.write(x, 'first'),
        h.write(x, 'second'),
      ]);
      expectCheckViolation(outcomes[0], 'the poisoned write');
      expect(valueOf(outcomes[1], "write 'first'")).to.equal(true);
      expect(valueOf(outcomes[2], "write 'second'")).to.equal(true);
      const row = (await rows([x])).get(x);
      expect(row?.sess_counter, 'counter').to.equal(2);
      expect(row?.sess_data, 'the data of the last write issued').to.equal('second');
    });

    it('the same holds when the later write goes out while the failing batch is in flight', async () => {
      const h = await make();
      await addPoisonCheck();
      // A write of 'slow-statement' takes 1 s to execute: the first batch is still running on
      // the server when the second write is sent.
      await query(
        0,
        `CREATE FUNCTION ${table}_slow_statement() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.sess_data = 'slow-statement' THEN PERFORM pg_sleep(1); END IF;
           RETURN NEW;
         END $$`,
      );
      await query(
        0,
        `CREATE TRIGGER slow_statement BEFORE INSERT OR UPDATE ON ${table}
         FOR EACH ROW EXECUTE FUNCTION ${table}_slow_statement()`,
      );
      const x = newId();
      const first = Promise.allSettled([
        h.write(newId(), 'slow-statement'),
        h.write(newId(), 'poison'),
        h.write(x, 'first'),
      ]);
      await sleep(200); // the first batch is sent and still executing
      const second = h.write(x, 'second');
      const outcomes = [...(await first), ...(await Promise.allSettled([second]))];
      expect(valueOf(outcomes[0], 'the slow write')).to.equal(true);
      expectCheckViolation(outcomes[1], 'the poisoned write');
      expect(valueOf(outcomes[2], "write 'first'")).to.equal(true);
      expect(valueOf(outcomes[3], "write 'second'")).to.equal(true);
      const row = (await rows([x])).get(x);
      expect(row?.sess_counter, 'counter').to.equal(2);
      expect(row?.sess_data, 'the data of the last write issued').to.equal('second');
    });

    it('a write failing at commit (deferred constraint) fails alone; its neighbours are stored', async () => {
      const h = await make();
      await query(
        0,
        `CREATE FUNCTION ${table}_deferred() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.sess_data = 'poison at commit' THEN
             RAISE EXCEPTION 'no poison' USING ERRCODE = '23514', CONSTRAINT = 'no_poison';
           END IF;
           RETURN NULL;
         END $$`,
      );
      await query(
        0,
        `CREATE CONSTRAINT TRIGGER no_poison AFTER INSERT OR UPDATE ON ${table}
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${table}_deferred()`,
      );
      const ids = Array.from({ length: 10 }, () => newId());
      const position = 3;
      const data = ids.map((_, i) => (i === position ? 'poison at commit' : `good ${i}`));
      const outcomes = await Promise.allSettled(ids.map((id, i) => h.write(id, data[i]!)));
      const found = await rows(ids);
      const report = outcomes.map((o, i) =>
        o.status === 'fulfilled'
          ? `${i}: ${String(o.value)}`
          : `${i}: ${(o.reason as SessionPgsqlError).code}`,
      );
      expect(outcomes[position]?.status, `the poisoned write (${report})`).to.equal('rejected');
      outcomes.forEach((o, i) => {
        if (i !== position) expect(o.status, `write ${i} (${report})`).to.equal('fulfilled');
      });
      expect(found.size, 'rows stored').to.equal(9);
    });
  });

  describe('ordering per session id', () => {
    it('two writes to one id issued back to back share a batch and land in order', async () => {
      const h = await make();
      const x = newId();
      const outcomes = await Promise.allSettled([h.write(x, 'first'), h.write(x, 'second')]);
      outcomes.forEach((o, i) => expect(valueOf(o, `write ${i}`)).to.equal(true));
      const row = (await rows([x])).get(x);
      expect(row?.sess_data).to.equal('second');
      expect(row?.sess_counter).to.equal(2);
    });

    it('a read after a write of the same id in one tick sees the write', async () => {
      const h = await make();
      const x = newId();
      const [written, read] = await Promise.all([h.write(x, 'just written'), h.read(x)]);
      expect(written).to.equal(true);
      expect(read.isNew).to.equal(false);
      expect(read.data).to.equal('just written');
    });

    it('a read before a write of the same id in one tick does not see it', async () => {
      const h = await make();
      const x = newId();
      await h.write(x, 'old');
      const [read, written] = await Promise.all([h.read(x), h.write(x, 'new')]);
      expect(read.data).to.equal('old');
      expect(written).to.equal(true);
      expect((await h.read(x)).data).to.equal('new');
    });

    it('10 writes to one id among other writes: the last wins and the counter counts 10', async () => {
      const h = await make();
      const x = newId();
      await h.write(x, 'before');
      const others: string[] = [];
      const ps: Array<Promise<boolean>> = [];
      for (let i = 0; i < 10; i++) {
        ps.push(h.write(x, `x ${i}`));
        const other = newId();
        others.push(other);
        ps.push(h.write(other, `other ${i}`));
      }
      const outcomes = await Promise.allSettled(ps);
      outcomes.forEach((o, i) => expect(valueOf(o, `write ${i}`)).to.equal(true));
      const found = await rows([x, ...others]);
      expect(found.get(x)?.sess_data).to.equal('x 9');
      expect(found.get(x)?.sess_counter).to.equal(11);
      others.forEach((id, i) => expect(found.get(id)?.sess_data).to.equal(`other ${i}`));
    });

    it('with a poisoned write in the middle, the last write still wins and counts once each', async () => {
      const h = await make();
      await addPoisonCheck();
      const x = newId();
      const ps: Array<Promise<boolean>> = [];
      for (let i = 0; i < 10; i++) {
        ps.push(h.write(x, `x ${i}`));
        if (i === 4) ps.push(h.write(newId(), 'poison'));
      }
      const outcomes = await Promise.allSettled(ps);
      expectCheckViolation(outcomes[5], 'the poisoned write');
      outcomes.forEach((o, i) => {
        if (i !== 5) expect(valueOf(o, `write ${i}`)).to.equal(true);
      });
      const row = (await rows([x])).get(x);
      expect(row?.sess_data).to.equal('x 9');
      expect(row?.sess_counter).to.equal(10);
    });
  });

  describe('reads next to batched writes', () => {
    it('reads issued amid 200 writes resolve with the right data, before the later batches', async () => {
      const h = await make();
      const r = newId();
      await h.write(r, 'read me');
      const payload = 'x'.repeat(500);
      const ids = Array.from({ length: 200 }, () => newId());
      let sequence = 0;
      const writeDone: number[] = [];
      const readDone: number[] = [];
      const ops: Array<Promise<unknown>> = [];
      // Issue order: writes 0..39, read r, writes 40..119, read of write 10's id, writes 120..199.
      const read = (id: string) => {
        const n = readDone.push(0) - 1;
        ops.push(h.read(id).finally(() => (readDone[n] = ++sequence)));
      };
      ids.forEach((id, i) => {
        if (i === 40) read(r);
        if (i === 120) read(ids[10]!);
        ops.push(h.write(id, `${i} ${payload}`).finally(() => (writeDone[i] = ++sequence)));
      });
      const outcomes = await Promise.allSettled(ops);
      const values = outcomes.map((o, i) => valueOf(o, `op ${i}`));
      const reads = [values[40], values[121]] as Array<{ data: string; isNew: boolean }>;
      expect(reads[0]).to.include({ data: 'read me', isNew: false });
      expect(reads[1]).to.include({ data: `10 ${payload}`, isNew: false });
      values.forEach((v, i) => {
        if (i !== 40 && i !== 121) expect(v, `write at ${i}`).to.equal(true);
      });
      // The first read is in the first batch (ops 0..63): it does not wait for the batches
      // sent after it.
      expect(readDone[0], 'settle order of the first read').to.be.below(writeDone[199]!);
      expect(readDone[0], 'settle order of the first read').to.be.below(
        Math.max(...writeDone.slice(0, 63)),
      );
    });

    for (const [maxBatch, label, what] of [
      [1, 'baseline: with maxBatch 1', 'the read took (ms)'],
      [64, 'with maxBatch 64', 'the read took (ms), behind a commit it does not need'],
    ] as const) {
      it(`${label} a read issued before a slow-committing write does not wait for it`, async () => {
        const h = await make({ maxBatch });
        await addSlowCommit(table, 1.5);
        const r = newId();
        await h.write(r, 'read me');
        const started = Date.now();
        let readMs = 0;
        const read = h.read(r).then((s) => ((readMs = Date.now() - started), s));
        const write = h.write(newId(), 'slow-commit');
        const [s, written] = await Promise.all([read, write]);
        const writeMs = Date.now() - started;
        expect(s.data).to.equal('read me');
        expect(written).to.equal(true);
        expect(writeMs, 'the slow commit took').to.be.at.least(1400);
        expect(readMs, what).to.be.below(700);
      });
    }
  });

  describe('a batch interrupted by the server dying', () => {
    const cluster = clusters()[CRASH_SERVER]!;

    afterEach(async () => {
      if (!cluster.isRunning()) await cluster.start();
    });

    /** A rejection of an interrupted operation: retryable, or a SQLSTATE from the server. */
    function expectInterrupted(reason: unknown, what: string): void {
      expect(reason, what).to.be.instanceOf(SessionPgsqlError);
      const { code, retryable, message } = reason as SessionPgsqlError;
      expect(retryable || /^[0-9A-Z]{5}$/.test(code), `${what}: ${code}: ${message}`).to.equal(
        true,
      );
    }

    it('every operation settles, and nothing is reported stored that is not', async () => {
      const h = await make({ maxBatch: 64, connectTimeout: 2 }, CRASH_SERVER);
      // Each batch of 64 holds one slow-committing write: batches are in flight at the crash.
      await addSlowCommit(table, 1, CRASH_SERVER);
      const ids = Array.from({ length: 320 }, () => newId());
      const data = ids.map((_, i) => (i % 64 === 63 ? 'slow-commit' : `data ${i}`));
      const resolved: string[] = [];
      const writes = ids.map((id, i) =>
        h.write(id, data[i]!).then((stored) => {
          if (stored) resolved.push(id);
          return stored;
        }),
      );
      // Handled at once, so a rejection never goes unhandled.
      const all = Promise.allSettled(writes);
      // Crash once the first batch has committed, while the others wait for their commit.
      const since = Date.now();
      while (resolved.length === 0 && Date.now() - since < 10_000) await sleep(5);
      expect(resolved.length, 'writes committed before the crash').to.be.above(0);
      try {
        await cluster.stop({ mode: 'immediate' });
        const { value: outcomes } = await settled(all, 'writes after the crash');
        let rejected = 0;
        outcomes!.forEach((o, i) => {
          if (o.status === 'fulfilled') expect(o.value, `write ${i}`).to.equal(true);
          else {
            rejected++;
            expectInterrupted(o.reason, `write ${i}`);
          }
        });
        expect(rejected, 'writes interrupted by the crash').to.be.above(0);
      } finally {
        await cluster.start();
      }
      await serverBack(CRASH_SERVER);
      const found = await rows(ids, CRASH_SERVER);
      const lost = resolved.filter((id) => found.get(id)?.sess_data !== data[ids.indexOf(id)]);
      expect(lost.length, `writes reported stored but missing of ${resolved.length}`).to.equal(0);

      // The same handler works again once the server is back.
      const after = newId();
      let lastError: unknown = null;
      const restarted = Date.now();
      while (Date.now() - restarted < 15_000) {
        try {
          expect(await h.write(after, 'after the restart')).to.equal(true);
          lastError = null;
          break;
        } catch (error) {
          lastError = error;
          await sleep(100);
        }
      }
      expect(lastError, 'writes after the restart').to.equal(null);
      expect((await h.read(after)).data).to.equal('after the restart');
    });

    it('a read never reports data that its interrupted batch did not commit', async () => {
      const h = await make({ maxBatch: 64, connectTimeout: 2 }, CRASH_SERVER);
      await addSlowCommit(table, 4, CRASH_SERVER);
      const big = 'y'.repeat(20_000);
      const [x, filler] = [newId(), newId()];
      await h.write(filler, big);
      // One batch: x is written, read back, a large row is read (the server's output buffer
      // overflows, so the first read's answer leaves before the commit), and a write makes the
      // commit slow. The server dies during that commit: x is never stored.
      const write = h.write(x, `x ${big}`);
      let readSettled = false;
      const read = h.read(x).finally(() => (readSettled = true));
      const readFiller = h.read(filler);
      const slow = h.write(newId(), 'slow-commit');
      const all = Promise.allSettled([write, read, readFiller, slow]);
      const since = Date.now();
      while (!readSettled && Date.now() - since < 1500) await sleep(5);
      try {
        await cluster.stop({ mode: 'immediate' });
        await settled(all, 'operations after the crash');
      } finally {
        await cluster.start();
      }
      await serverBack(CRASH_SERVER);
      const stored = (await rows([x], CRASH_SERVER)).get(x)?.sess_data ?? '';
      const readData = await read.then(
        (s) => s.data,
        () => null, // failed: it reported nothing
      );
      if (readData !== null && readData !== '') {
        const what = `the read reported ${readData.length} characters of data; stored: ${stored.length}`;
        expect(stored === readData, what).to.equal(true);
      }
    });
  });

  describe('shortCircuit and keepExpired under maxBatch 64', () => {
    it('shortCircuit: an unchanged write resolves false and sends nothing; its neighbours are stored', async () => {
      const h = await make({ shortCircuit: true, maxBatch: 64 });
      const x = newId();
      await h.write(x, 'unchanged');
      await query(0, `UPDATE ${table} SET sess_modified = 2000 WHERE sess_id = $1`, [x]);
      const s = await h.read(x);
      const before = (await rows([x])).get(x);
      const operations = h.status().servers[0]!.operations;
      const skipped = h.write(s, 'unchanged');
      expect(h.status().servers[0]!.operations, 'operations sent for the skipped write').to.equal(
        operations,
      );
      const others = Array.from({ length: 10 }, () => newId());
      const outcomes = await Promise.allSettled([
        skipped,
        ...others.map((id) => h.write(id, 'other')),
      ]);
      expect(valueOf(outcomes[0], 'the skipped write')).to.equal(false);
      outcomes.slice(1).forEach((o, i) => expect(valueOf(o, `write ${i}`)).to.equal(true));
      const found = await rows([x, ...others]);
      expect(found.get(x), 'the skipped row').to.deep.equal(before);
      expect(found.size).to.equal(11);
    });

    for (const keepExpired of [false, true]) {
      it(`keepExpired ${keepExpired}: an expired row written in a batch is ${keepExpired ? 'kept' : 'replaced'}`, async () => {
        const h = await make({ keepExpired, maxBatch: 64 });
        const x = newId();
        await h.write(x, 'old');
        await query(
          0,
          `UPDATE ${table} SET sess_counter = 5, sess_created = 1000,
             sess_expire = floor(extract(epoch from now()))::bigint - 10 WHERE sess_id = $1`,
          [x],
        );
        const s = await h.read(x);
        expect(s.expired).to.equal(true);
        const others = Array.from({ length: 10 }, () => newId());
        const outcomes = await Promise.allSettled([
          h.write(s, 'renewed'),
          ...others.map((id) => h.write(id, 'other')),
        ]);
        outcomes.forEach((o, i) => expect(valueOf(o, `write ${i}`)).to.equal(true));
        const row = (await rows([x])).get(x)!;
        expect(row.sess_data).to.equal('renewed');
        expect(row.sess_counter).to.equal(keepExpired ? 6 : 1);
        expect(row.sess_created === 1000).to.equal(keepExpired);
      });
    }
  });
});
