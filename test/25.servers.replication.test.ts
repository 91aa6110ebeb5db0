// A streaming-replication pair behind one multi-host entry (docs/behaviour.md, A replicated pair): a
// throwaway primary and a standby built from it with `pg_basebackup -R` (scripts/pg-replica.js),
// synchronous replication, and one entry `host=127.0.0.1,127.0.0.1 port=P1,P2
// target_session_attrs=read-write`. When the primary crashes, or hangs (SIGSTOP of the
// postmaster and every backend), and the standby is promoted, writes resume on the standby and
// every write that was acknowledged is read back from it. The standby listed alone is reported
// read-only (SPG_READ_ONLY), not up, and is used once promoted.
import { expect } from 'chai';
import { Client } from 'pg';
import { fromStored } from './support/hash-mode';
import { SessionPgsql, SessionPgsqlError } from '../lib';
import type { Cluster } from '../scripts/pg-cluster';
import { startReplicaPair, type ReplicaPair } from '../scripts/pg-replica';
import { newId, uniqueTable } from './support/db';
import { closedAfterEach } from './support/handlers';
import { sleep } from './support/wait';

/** Polls `check` every 50 ms until it is true; false after `ms` (bounded in count and time). */
async function until(check: () => boolean, ms: number): Promise<boolean> {
  for (let i = 0; i < ms / 50; i++) {
    if (check()) return true;
    await sleep(50);
  }
  return check();
}

/** Every row of `table` on `cluster`: sess_id -> sess_data. */
async function rowsOn(cluster: Cluster, table: string): Promise<Map<string, string>> {
  const c = new Client({
    connectionString: `postgresql://postgres@127.0.0.1:${cluster.port}/postgres`,
  });
  await c.connect();
  try {
    const { rows } = await c.query<{ sess_id: string; sess_data: string }>(
      `SELECT sess_id, sess_data FROM ${table}`,
    );
    return new Map(rows.map(fromStored).map((r) => [r.sess_id, r.sess_data]));
  } finally {
    await c.end();
  }
}

/** Handler options for a quick failover: 1 s timeouts, short reconnect backoff. */
const FAST = {
  gcInterval: 0,
  vacuumInterval: 0,
  connectTimeout: 1,
  statementTimeout: 1,
  retryMinDelay: 0.05,
  retryMaxDelay: 0.5,
};

/** Writes a fresh session again and again; remembers what was acknowledged and when. */
class Writer {
  readonly acked = new Map<string, string>();
  readonly ackTimes: number[] = [];
  readonly failures: SessionPgsqlError[] = [];
  #stop = false;
  readonly #done: Promise<void>;

  constructor(private readonly handler: SessionPgsql) {
    this.#done = this.#run();
  }

  async #run(): Promise<void> {
    for (let i = 0; !this.#stop && i < 100_000; i++) {
      const id = newId();
      const value = `v${i}`;
      try {
        await this.handler.write(id, value);
        this.acked.set(id, value);
        this.ackTimes.push(Date.now());
      } catch (err) {
        this.failures.push(err as SessionPgsqlError);
        await sleep(20);
      }
    }
  }

  /** The first acknowledgement at or after `at` (ms), if any. */
  firstAckAfter(at: number): number | undefined {
    return this.ackTimes.find((t) => t >= at);
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await this.#done;
  }
}

describe('servers: a replication pair behind one entry', function () {
  this.timeout(60_000);

  const handlers = closedAfterEach<SessionPgsql>();

  /** A fresh synchronous pair for the tests of the calling describe, stopped after them. */
  function pairForDescribe(): () => ReplicaPair {
    let pair: ReplicaPair | undefined;
    before(async () => {
      pair = await startReplicaPair({ synchronous: true });
    });
    after(async () => {
      await pair?.stop();
    });
    return () => pair!;
  }

  /**
   * Opens a handler on the pair's entry, writes until `breakPrimary` has run and the standby is
   * promoted and has taken writes, then checks that every acknowledged write is on the promoted
   * standby. Returns the measured times (ms).
   */
  async function failover(
    pair: ReplicaPair,
    breakPrimary: () => Promise<() => void>,
  ): Promise<{ afterBreak: number; afterPromote: number; acked: number; failed: number }> {
    const table = uniqueTable('t25');
    const h = handlers.keep(
      new SessionPgsql({ db: `${pair.db} connect_timeout=1`, table, ...FAST }),
    );
    await h.open();
    expect(h.status().servers[0]).to.include({
      state: 'up',
      host: '127.0.0.1',
      port: pair.primary.port,
    });
    const writer = new Writer(h);
    let brokeAt = 0;
    let promotedAt = 0;
    let resume = () => {};
    try {
      expect(await until(() => writer.acked.size >= 30, 15_000), 'writes before the failure').to.be
        .true;
      brokeAt = Date.now();
      resume = await breakPrimary();
      // The handler meets the broken primary (and reconnects to it) before the standby is
      // promoted, as when an operator or a failover manager promotes it.
      await sleep(1_500);
      const before = writer.acked.size;
      // Nothing is acknowledged from here until the standby is promoted.
      promotedAt = Date.now();
      await pair.promote();
      const resumed = await until(
        () => writer.acked.size >= before + 30 && h.status().servers[0]!.port === pair.standby.port,
        30_000,
      );
      expect(resumed, 'writes resumed on the promoted standby').to.equal(true);
    } finally {
      await writer.stop();
      resume();
    }
    for (const err of writer.failures) {
      expect(err, err.message).to.be.instanceOf(SessionPgsqlError);
      expect(err.retryable, `${err.code}: ${err.message}`).to.equal(true);
    }
    const stored = await rowsOn(pair.standby, table);
    const lost = [...writer.acked].filter(([id, value]) => stored.get(id) !== value);
    expect(lost, 'acknowledged writes missing from the promoted standby').to.deep.equal([]);
    const firstAfter = writer.firstAckAfter(promotedAt)!;
    return {
      afterBreak: firstAfter - brokeAt,
      afterPromote: firstAfter - promotedAt,
      acked: writer.acked.size,
      failed: writer.failures.length,
    };
  }

  function report(what: string, t: Awaited<ReturnType<typeof failover>>): void {
    process.stdout.write(
      `      ${what}: writes resumed ${(t.afterPromote / 1000).toFixed(2)} s after pg_ctl promote started ` +
        `(${(t.afterBreak / 1000).toFixed(2)} s after the failure, promoted 1.5 s after it); ${t.acked} acknowledged, ` +
        `0 lost, ${t.failed} failed (retryable)\n`,
    );
  }

  describe('primary crashed', function () {
    const pair = pairForDescribe();

    it('the standby alone in db (no target_session_attrs): SPG_READ_ONLY, not up', async () => {
      const h = handlers.keep(
        new SessionPgsql({ db: pair().standby.conninfo, table: uniqueTable('t25'), ...FAST }),
      );
      const error = await h.open().then(
        () => null,
        (err: SessionPgsqlError) => err,
      );
      expect(error, 'open() rejection').to.be.instanceOf(SessionPgsqlError);
      expect(error!.code).to.equal('SPG_READ_ONLY');
      expect(error!.retryable).to.equal(true);
      expect(error!.message).to.contain('standby');
      expect(error!.message).to.contain('target_session_attrs=read-write');
      const s = h.status().servers[0]!;
      expect(s.state).to.not.equal('up');
      expect(s.lastError?.code).to.equal('SPG_READ_ONLY');
    });

    it('target_session_attrs=prefer-standby tries every host for a standby first, as libpq does: the standby listed second is chosen, and is read-only', async () => {
      const { primary, standby } = pair();
      const h = handlers.keep(
        new SessionPgsql({
          db:
            `host=127.0.0.1,127.0.0.1 port=${primary.port},${standby.port} dbname=postgres ` +
            'user=postgres target_session_attrs=prefer-standby',
          table: uniqueTable('t25'),
          ...FAST,
        }),
      );
      const error = await h.open().then(
        () => null,
        (err: SessionPgsqlError) => err,
      );
      expect(error?.code).to.equal('SPG_READ_ONLY');
      expect(error!.message).to.contain(`127.0.0.1:${standby.port}`);
    });

    it('killed (pg_ctl stop -m immediate), standby promoted: writes resume, none acknowledged is lost; the standby listed alone is used once promoted', async () => {
      const alone = handlers.keep(
        new SessionPgsql({ db: pair().standby.conninfo, table: uniqueTable('t25'), ...FAST }),
      );
      expect(await alone.open().catch((err: SessionPgsqlError) => err.code)).to.equal(
        'SPG_READ_ONLY',
      );
      const times = await failover(pair(), async () => {
        await pair().kill();
        return () => {};
      });
      report('primary crashed', times);
      let written = false;
      for (let i = 0; i < 100 && !written; i++) {
        written = await alone.write(newId(), 'promoted').catch(() => false);
        if (!written) await sleep(100);
      }
      expect(written, 'the standby listed alone took a write once promoted').to.equal(true);
      expect(alone.status().servers[0]!.state).to.equal('up');
    });
  });

  describe('primary hung', function () {
    const pair = pairForDescribe();

    it('SIGSTOP of the postmaster and every backend, standby promoted: writes resume, none acknowledged is lost', async () => {
      const times = await failover(pair(), async () => pair().hang());
      report('primary hung', times);
    });
  });
});
