// Connecting never blocks the event loop and never waits forever (docs/api.md Options
// `connectTimeout`): a server that accepts TCP connections but never answers times out after
// connectTimeout with a retryable SPG_CONNECT_TIMEOUT while timers keep firing; a port with
// nothing listening fails at once with SPG_CONNECT_FAILED; nothing hangs afterwards.
import { expect } from 'chai';
import { SessionPgsql, SessionPgsqlError } from '../lib';
import { newId, servers, uniqueTable } from './support/db';
import { closedAfterEach } from './support/handlers';
import { closedPort, SilentServer } from './support/net';
import { settled } from './support/wait';

/** The rejection of `promise` (fails the test if it resolves or takes longer than `ms`). */
async function rejection(promise: Promise<unknown>, ms: number): Promise<SessionPgsqlError> {
  const outcome = await settled(promise, 'the operation', ms);
  if (!('error' in outcome)) throw new Error(`resolved (${String(outcome.value)})`);
  expect(outcome.error).to.be.instanceOf(SessionPgsqlError);
  return outcome.error!;
}

describe('lifecycle: connect timeout', function () {
  this.timeout(20_000);

  let silent: SilentServer;
  let silentPort: number;
  const handlers = closedAfterEach<SessionPgsql>();

  /** A handler that afterEach closes. */
  function handler(db: string, options: { connectTimeout?: number; table?: string } = {}) {
    return handlers.keep(new SessionPgsql({ db, table: uniqueTable('t50'), ...options }));
  }

  before(async () => {
    silent = new SilentServer();
    silentPort = await silent.listen();
  });

  after(async () => {
    await silent.close();
  });

  it('open() against a silent server rejects with SPG_CONNECT_TIMEOUT after connectTimeout, without blocking the event loop', async () => {
    const h = handler(`host=127.0.0.1 port=${silentPort} dbname=x user=y`, {
      connectTimeout: 0.5,
    });
    let ticks = 0;
    const interval = setInterval(() => ticks++, 10);
    const started = Date.now();
    let error: SessionPgsqlError;
    try {
      error = await rejection(h.open(), 10_000);
    } finally {
      clearInterval(interval);
    }
    const elapsed = Date.now() - started;

    expect(error.code).to.equal('SPG_CONNECT_TIMEOUT');
    expect(error.retryable).to.equal(true);
    expect(error.server).to.equal(0);
    expect(elapsed, 'elapsed ms').to.be.within(400, 3000);
    // ~50 ticks of 10 ms fit in 0.5 s; a blocked loop would deliver one or two.
    expect(ticks, `interval ticks in ${elapsed} ms`).to.be.at.least(25);
    expect(silent.sockets.size, 'connections the silent server accepted').to.be.at.least(1);
  });

  it('a read() waiting for that connection rejects with SPG_CONNECT_TIMEOUT too', async () => {
    const h = handler(`host=127.0.0.1 port=${silentPort} dbname=x user=y`, {
      connectTimeout: 0.5,
    });
    const started = Date.now();
    const error = await rejection(h.read(newId()), 10_000);
    expect(error.code).to.equal('SPG_CONNECT_TIMEOUT');
    expect(error.retryable).to.equal(true);
    expect(Date.now() - started, 'elapsed ms').to.be.within(400, 3000);
  });

  it('after the timeout, read() rejects at once with a retryable error and status() shows the server down', async () => {
    const h = handler(`host=127.0.0.1 port=${silentPort} dbname=x user=y`, {
      connectTimeout: 0.5,
    });
    await rejection(h.open(), 10_000);
    const started = Date.now();
    const error = await rejection(h.read(newId()), 2000);
    expect(Date.now() - started, 'elapsed ms').to.be.below(1000);
    expect(error.retryable).to.equal(true);
    expect(error.code).to.be.oneOf(['SPG_NO_SERVER', 'SPG_CONNECT_TIMEOUT']);
    const status = h.status().servers[0]!;
    expect(status.state).to.be.oneOf(['down', 'connecting']);
    expect(status.failures).to.be.at.least(1);
    expect(status.lastError?.code).to.equal('SPG_CONNECT_TIMEOUT');
  });

  it('open() against a port with nothing listening rejects promptly with SPG_CONNECT_FAILED', async () => {
    const port = await closedPort();
    // A long connectTimeout: the refusal must not wait for it.
    const h = handler(`host=127.0.0.1 port=${port} dbname=x user=y`, { connectTimeout: 5 });
    const started = Date.now();
    const error = await rejection(h.open(), 10_000);
    expect(Date.now() - started, 'elapsed ms').to.be.below(2000);
    expect(error.code).to.equal('SPG_CONNECT_FAILED');
    expect(error.retryable).to.equal(true);
    expect(error.server).to.equal(0);
  });

  it('read() on a handler whose server refuses connections rejects promptly with a retryable code', async () => {
    const port = await closedPort();
    const h = handler(`host=127.0.0.1 port=${port} dbname=x user=y`, { connectTimeout: 5 });
    for (let i = 0; i < 3; i++) {
      const started = Date.now();
      const error = await rejection(h.read(newId()), 10_000);
      expect(Date.now() - started, `read ${i}: elapsed ms`).to.be.below(2000);
      expect(error.retryable, `read ${i}: ${error.code}`).to.equal(true);
      expect(error.code).to.be.oneOf(['SPG_CONNECT_FAILED', 'SPG_NO_SERVER']);
    }
  });

  it('the SPG_CONNECT_FAILED message names the reason (connection refused)', async () => {
    const port = await closedPort();
    const h = handler(`host=127.0.0.1 port=${port} dbname=x user=y`, { connectTimeout: 5 });
    const error = await rejection(h.open(), 10_000);
    expect(error.code).to.equal('SPG_CONNECT_FAILED');
    expect(error.message).to.match(/refused/i);
  });

  it('a refused host of a multi-host entry falls through to the next host (libpq semantics)', async () => {
    const port = await closedPort();
    const live = /port=(\d+)/.exec(servers()[0]!)![1];
    const h = handler(
      `host=127.0.0.1,127.0.0.1 port=${port},${live} dbname=postgres user=postgres`,
      { connectTimeout: 5 },
    );
    await h.open();
    const id = newId();
    await h.write(id, 'via the second host');
    expect((await h.read(id)).data).to.equal('via the second host');
  });
});
