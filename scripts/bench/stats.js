'use strict';
// What a run costs the server besides time: table and index sizes, WAL, the share of HOT
// updates (PostgreSQL's statistics), and Redis's memory and snapshots (INFO).
//
// PostgreSQL 15 keeps each backend's table and WAL counters in the backend until it flushes them:
// at most once a second while busy, within a second of going idle, and when it exits. So the
// "after" snapshot waits for the run's backends to be gone (they flush on exit), then makes its
// own pending counters visible with pg_stat_force_next_flush(). WAL bytes come from the WAL
// insert position, exact at both ends, whoever wrote them (the run's backends, autovacuum, the
// checkpointer); pg_stat_wal gives the full-page images among them.

const BACKENDS_GONE_MS = 10_000;
const EXIT_FLUSH_MS = 300; // a backend leaves pg_stat_activity just before its exit-time flush

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A pg_lsn's text ('16/B374D848') as a byte position. */
function lsnBytes(text) {
  const [hi, lo] = text.split('/');
  return Number((BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`));
}

/** Waits (bounded) until no client backend but `admin`'s own is connected to its database. */
async function backendsGone(admin) {
  const deadline = Date.now() + BACKENDS_GONE_MS;
  while (Date.now() < deadline) {
    const { rows } = await admin.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend'
       AND pid <> pg_backend_pid() AND datname = current_database()`,
    );
    if (rows[0].n === 0) break;
    await sleep(100);
  }
  await sleep(EXIT_FLUSH_MS);
}

/**
 * Sizes, statistics counters and the WAL position now. `tables`: the names to measure. Fields
 * a server cannot give (an older version, missing rights) are null.
 */
async function snapshot(admin, tables) {
  try {
    await admin.query('SELECT pg_stat_force_next_flush()'); // PostgreSQL 15+
  } catch {
    // older: counters may lag by up to half a second
  }
  const snap = { lsn: null, walFpi: null, walRecords: null, tables: {} };
  try {
    const { rows } = await admin.query('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    snap.lsn = lsnBytes(rows[0].lsn);
  } catch {
    // a standby, or no right to: no WAL figures
  }
  try {
    const { rows } = await admin.query(
      'SELECT wal_fpi::float8 AS fpi, wal_records::float8 AS records FROM pg_stat_wal',
    );
    snap.walFpi = rows[0].fpi;
    snap.walRecords = rows[0].records;
  } catch {
    // before PostgreSQL 14
  }
  if (tables.length) {
    const { rows } = await admin.query(
      `SELECT t.name, pg_relation_size(c)::float8 AS heap, pg_indexes_size(c)::float8 AS indexes,
              pg_total_relation_size(c)::float8 AS total,
              coalesce(s.n_tup_upd, 0)::float8 AS upd, coalesce(s.n_tup_hot_upd, 0)::float8 AS hot
       FROM unnest($1::text[]) AS t(name)
       CROSS JOIN LATERAL to_regclass(t.name) AS c
       LEFT JOIN pg_stat_user_tables s ON s.relid = c
       WHERE c IS NOT NULL`,
      [tables],
    );
    for (const r of rows) snap.tables[r.name] = r;
  }
  return snap;
}

/**
 * What happened between two snapshots, per request: { tables: { name: { heap, indexes, total }
 * before and after }, walBytes, walPerRequest, fpiPerRequest, updates, hotUpdates, hotShare }.
 */
function difference(before, after, requests) {
  const per = (x) => (x === null || !requests ? null : x / requests);
  const walBytes = before.lsn === null || after.lsn === null ? null : after.lsn - before.lsn;
  const fpi = before.walFpi === null || after.walFpi === null ? null : after.walFpi - before.walFpi;
  const tables = {};
  let updates = 0;
  let hot = 0;
  for (const [name, a] of Object.entries(after.tables)) {
    const b = before.tables[name];
    if (!b) continue;
    tables[name] = {
      before: { heap: b.heap, indexes: b.indexes, total: b.total },
      after: { heap: a.heap, indexes: a.indexes, total: a.total },
    };
    updates += a.upd - b.upd;
    hot += a.hot - b.hot;
  }
  return {
    requests,
    tables,
    walBytes,
    walPerRequest: per(walBytes),
    fpiPerRequest: per(fpi),
    updates,
    hotUpdates: hot,
    hotShare: updates > 0 ? hot / updates : null,
  };
}

/** Redis's INFO as numbers: used_memory, total_forks (a BGSAVE forks), keys; null without it. */
async function redisInfo(client) {
  if (!client) return null;
  try {
    const text = await client.info();
    const field = (name) => {
      const m = new RegExp(`^${name}:(\\d+)`, 'm').exec(text);
      return m ? Number(m[1]) : null;
    };
    return {
      usedMemory: field('used_memory'),
      forks: field('total_forks'),
      keys: await client.dbSize(),
    };
  } catch {
    return null;
  }
}

module.exports = { backendsGone, snapshot, difference, redisInfo, lsnBytes };
