// close() with work pending (docs/api.md `handler.close()`): every
// operation started before close() settles, close() resolves once they have, later calls
// reject with SPG_CLOSED, and a server that never answers cannot hold close() hostage.
import { expect } from 'chai';
import { SessionPgsql, SessionPgsqlError } from '../lib';
import { db, newId, query, uniqueTable } from './support/db';
import { closedAfterEach } from './support/handlers';
import { SilentServer } from './support/net';
import { settleWithin } from './support/wait';

/** Asserts that `promise` rejects with SPG_CLOSED within a second. */
async function expectClosed(promise: Promise<unknown>, what: string): Promise<void> {
  const result = await settleWithin(promise, 1000);
  expect(result, what).to.not.equal('pending');
  expect(result, what).to.have.property('error');
  const error = (result as { error: unknown }).error;
  expect(error, what).to.be.instanceOf(SessionPgsqlError);
  expect((error as SessionPgsqlError).code, what).to.equal('SPG_CLOSED');
}

describe('lifecycle: close() with operations pending', function () {
  this.timeout(30_000);

  // Every test closes its handlers itself; afterEach closing them too is the safety net when
  // one fails.
  const handlers = closedAfterEach<SessionPgsql>();
  function handler(options: { db?: string; connectTimeout?: number; table?: string } = {}) {
    return handlers.keep(new SessionPgsql({ db: db(1), table: uniqueTable('t52'), ...options }));
  }

  for (const opened of [true, false]) {
    it(`drains 500 reads and 500 writes started just before close() (${opened ? 'after open()' : 'never opened'})`, async () => {
      const table = uniqueTable('t52');
      const h = handler({ table });
      if (opened) await h.open();

      const written = Array.from({ length: 500 }, () => newId());
      const operations: Promise<unknown>[] = [];
      for (let i = 0; i < 500; i++) operations.push(h.read(newId()));
      written.forEach((id, i) => operations.push(h.write(id, `data ${i}`)));
      const closing = h.close();

      const all = await settleWithin(Promise.allSettled(operations), 20_000);
      expect(all, 'operations still pending 20 s after close()').to.not.equal('pending');
      const results = (all as { value: PromiseSettledResult<unknown>[] }).value;
      expect(results).to.have.length(1000);
      const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      for (const r of rejected) {
        expect(r.reason, String(r.reason)).to.be.instanceOf(SessionPgsqlError);
        expect((r.reason as SessionPgsqlError).code, String(r.reason)).to.equal('SPG_CLOSED');
      }

      const closed = await settleWithin(closing, 5000);
      expect(closed, 'close() after its operations settled').to.deep.equal({ value: undefined });
      expect(h.status().closed).to.equal(true);
      expect(h.status().inFlight).to.equal(0);

      // Every write that resolved is stored.
      const ok = written.filter((_, i) => results[500 + i]!.status === 'fulfilled');
      const rows = await query<{ sess_id: string; sess_data: string }>(
        0,
        `SELECT sess_id, sess_data FROM "${table}" WHERE sess_id = ANY($1)`,
        [ok],
      );
      expect(rows).to.have.length(ok.length);
      const index = new Map(written.map((id, i) => [id, i]));
      for (const row of rows) expect(row.sess_data).to.equal(`data ${index.get(row.sess_id)}`);
    });
  }

  it('rejects every call after close() with SPG_CLOSED', async () => {
    const table = uniqueTable('t52');
    const h = handler({ table });
    await h.open();
    const id = newId();
    await h.write(id, 'before close');
    await h.close();

    await expectClosed(h.read(id), 'read');
    await expectClosed(h.write(id, 'after close'), 'write');
    await expectClosed(h.touch(id), 'touch');
    await expectClosed(h.destroy(id), 'destroy');
    await expectClosed(h.gc(), 'gc');
    await expectClosed(h.open(), 'open');
    await expectClosed(h.reset(), 'reset');
    // Nothing reached the table after close().
    const rows = await query<{ sess_data: string }>(
      0,
      `SELECT sess_data FROM "${table}" WHERE sess_id = $1`,
      [id],
    );
    expect(rows).to.deep.equal([{ sess_data: 'before close' }]);
  });

  it('rejects calls made while close() is draining with SPG_CLOSED', async () => {
    const h = handler();
    await h.open();
    const pending = h.read(newId());
    const closing = h.close();
    await expectClosed(h.read(newId()), 'read while closing');
    await expectClosed(h.write(newId(), 'x'), 'write while closing');
    expect(await settleWithin(pending, 5000)).to.have.property('value');
    expect(await settleWithin(closing, 5000)).to.deep.equal({ value: undefined });
  });

  it('close() twice, and concurrently, resolves every time', async () => {
    const h = handler();
    await h.open();
    const ops = Promise.allSettled(Array.from({ length: 50 }, () => h.read(newId())));
    const first = h.close();
    const second = h.close();
    expect(await settleWithin(Promise.all([first, second]), 5000)).to.deep.equal({
      value: [undefined, undefined],
    });
    expect(await settleWithin(h.close(), 1000)).to.deep.equal({ value: undefined });
    const settled = await settleWithin(ops, 1000);
    expect(settled).to.not.equal('pending');
  });

  it('close() on a handler that was never opened or used resolves at once', async () => {
    const h = handler();
    expect(await settleWithin(h.close(), 1000)).to.deep.equal({ value: undefined });
    expect(await settleWithin(h.close(), 1000)).to.deep.equal({ value: undefined });
    await expectClosed(h.read(newId()), 'read after close');
    await expectClosed(h.open(), 'open after close');
  });

  it('close() while the server never answers settles everything and resolves within ~2 s', async () => {
    const silent = new SilentServer();
    const port = await silent.listen();
    try {
      const h = handler({ db: `host=127.0.0.1 port=${port} dbname=x user=y`, connectTimeout: 0.5 });
      // Outcomes are captured at once, so no rejection is ever unhandled.
      const outcome = (promise: Promise<unknown>) =>
        promise.then(
          (value) => ({ value }),
          (error: unknown) => ({ error }),
        );
      const pending = {
        read: outcome(h.read(newId())),
        write: outcome(h.write(newId(), 'never stored')),
        open: outcome(h.open()),
      };
      const started = Date.now();
      const closed = await settleWithin(h.close(), 5000);
      const elapsed = Date.now() - started;
      expect(closed, 'close()').to.deep.equal({ value: undefined });
      expect(elapsed, 'close() elapsed ms').to.be.below(2000);
      for (const [what, op] of Object.entries(pending)) {
        const settled = await settleWithin(op, 100);
        expect(settled, `${what} still pending after close()`).to.not.equal('pending');
        const result = (settled as { value: { value?: unknown; error?: unknown } }).value;
        expect(result, what).to.have.property('error');
        const error = result.error as SessionPgsqlError;
        expect(error, what).to.be.instanceOf(SessionPgsqlError);
        expect(error.code, `${what}: ${error.message}`).to.be.oneOf([
          'SPG_CONNECT_TIMEOUT',
          'SPG_CLOSED',
        ]);
      }
    } finally {
      await silent.close();
    }
  });
});
