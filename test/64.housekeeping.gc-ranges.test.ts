// The table layout for HOT writes and GC by TID ranges (docs/operations.md, The table; issue 15):
// on PostgreSQL 14 and later a new table has no index on sess_expire and room on its pages
// (fillfactor), so a write that moves the expiry is a HOT update, and GC walks the heap in
// bounded ranges of pages instead of reading an index, while session traffic goes on.
import { expect } from 'chai';
import type { SessionPgsql } from '../lib';
import { newId, query, uniqueTable } from './support/db';
import { gcWay, logDeletes } from './support/gc';
import { handlerFactory } from './support/handlers';
import { waitUntil } from './support/wait';

const NOW = 'floor(extract(epoch from now()))::bigint';

describe('64 housekeeping: HOT layout and GC by TID ranges', function () {
  this.timeout(120_000);
  let table: string;
  const handlers = handlerFactory();

  beforeEach(() => {
    table = uniqueTable('hk_ranges');
  });

  function open(): Promise<SessionPgsql> {
    return handlers.open({ table, maxLifetime: 3600 });
  }

  it('a new table gets fillfactor 90 and no index on sess_expire (the primary key and the partial user index)', async () => {
    const handler = await open();
    expect(handler.status().servers[0]!.setup).to.deep.include({
      table: 'created',
      index: 'missing',
    });
    const [rel] = await query<{ options: string[] | null }>(
      0,
      'SELECT reloptions AS options FROM pg_class WHERE oid = to_regclass($1)',
      [table],
    );
    expect(rel!.options).to.deep.equal(['fillfactor=90']);
    const indexes = await query<{ def: string }>(
      0,
      'SELECT indexdef AS def FROM pg_indexes WHERE tablename = $1',
      [table],
    );
    const defs = indexes.map((i) => i.def).sort(); // CREATE INDEX, then CREATE UNIQUE INDEX
    expect(defs).to.have.length(2);
    expect(defs[1]).to.match(/UNIQUE INDEX .* \(sess_id\)/);
    // The user index covers sess_custom only, which a session write rarely changes: no cost to HOT.
    expect(defs[0]).to.match(/_user_idx .* \(sess_custom\) WHERE \(sess_custom <> ''::text\)/);
  });

  it('repeated writes of one session that move its expiry are HOT updates', async () => {
    const handler = await open();
    const id = newId();
    const base = Math.floor(Date.now() / 1000) + 600;
    // 11 writes of ~200 bytes fit one page: each update finds room there, and moves only
    // columns no index covers, so it is HOT whatever the timing.
    const writes = 11;
    for (let i = 0; i < writes; i += 1) {
      await handler.write(id, `data ${i} `.padEnd(200, 'x'), { expires: base + i });
    }
    await handlers.closeAll(); // the backend flushes its table counters as it exits
    let stats = { upd: 0, hot: 0 };
    await waitUntil('the write backend’s counters', 30_000, async () => {
      const [r] = await query<{ upd: string; hot: string }>(
        0,
        'SELECT n_tup_upd AS upd, n_tup_hot_upd AS hot FROM pg_stat_user_tables WHERE relname = $1',
        [table],
      );
      stats = { upd: Number(r?.upd ?? 0), hot: Number(r?.hot ?? 0) };
      return stats.upd >= writes - 1;
    });
    expect(stats).to.deep.equal({ upd: writes - 1, hot: writes - 1 });
  });

  it('GC of a table of several ranges removes every expired row in bounded statements while a writer keeps working', async () => {
    const handler = await open();
    const total = 30_000;
    // Every third row expired, spread over the whole heap; ~500 bytes a row, so the table spans
    // several GC ranges of 1024 pages.
    await query(
      0,
      `INSERT INTO ${table} (sess_id, sess_name, sess_data, sess_created, sess_modified,
         sess_expire, sess_counter)
       SELECT 'seeded' || lpad(g::text, 12, '0'), 'SID', repeat('x', 500), n - 3000, n - 3000,
         CASE WHEN g % 3 = 0 THEN n - 100 ELSE n + 3600 END, 1
       FROM generate_series(1, ${total}) g, (SELECT ${NOW} AS n) s`,
    );
    const expired = total / 3;
    const [size] = await query<{ pages: string }>(
      0,
      `SELECT pg_relation_size(to_regclass($1)) / 8192 AS pages`,
      [table],
    );
    expect(Number(size!.pages), 'heap pages').to.be.above(2 * 1024);
    const deletes = await logDeletes(table);

    const live = Array.from({ length: 8 }, () => newId());
    for (const id of live) await handler.write(id, `live ${id}`);
    let done = false;
    const failures: unknown[] = [];
    let writes = 0;
    const writer = (async () => {
      for (let n = 0; !done && n < 1_000_000; n += 1) {
        const id = live[n % live.length]!;
        try {
          await handler.write(id, `live ${id} ${n}`);
          writes += 1;
        } catch (err) {
          failures.push(err);
        }
      }
    })();
    let removed: number;
    try {
      removed = await handler.gc();
    } finally {
      done = true;
      await writer;
    }

    expect(removed).to.equal(expired);
    expect(failures, 'failed writes').to.deep.equal([]);
    expect(writes, 'writes during gc()').to.be.above(0);
    const [left] = await query<{ expired: number; rows: number }>(
      0,
      `SELECT count(*) FILTER (WHERE sess_expire < ${NOW})::int AS expired,
         count(*)::int AS rows FROM ${table}`,
    );
    expect(left).to.deep.equal({ expired: 0, rows: total - expired + live.length });
    const log = await deletes();
    expect(
      log.map(gcWay).every((way) => way === 'ranges'),
      'every statement by ranges',
    ).to.equal(true);
    for (const entry of log) expect(entry.n, 'rows of one DELETE').to.be.at.most(1000);
    expect(log.reduce((sum, e) => sum + e.n, 0)).to.equal(expired);
    expect(handler.status().servers[0]!.lastGc!.removed).to.equal(expired);
  });
});
