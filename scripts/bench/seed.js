'use strict';
// Schema and rows. bench_sessions is created by a SessionPgsql handler (the library's own schema)
// and filled by INSERT ... SELECT generate_series (the data is built in SQL: a million sessions
// take one statement per chunk, not a million round trips). connect-pg-simple's table
// (bench_cps_session, its table.sql) and Redis get a copy of the same ids and data, only when a
// contender uses them.
const fs = require('node:fs');
const path = require('node:path');
const {
  TABLE,
  CPS_TABLE,
  REDIS_PREFIX,
  DATA_BYTES,
  idSql,
  sessionDataSql,
} = require('./common.js');

const { SessionPgsql } = require(path.join(__dirname, '..', '..', 'dist', 'index.js'));

const CHUNK = 250_000; // rows per INSERT statement: bounds each statement's time and memory
const REDIS_BATCH = 5_000; // keys per pipelined round of SETs
const LIVE_SECONDS = 86_400; // a seeded live session's cookie and row expire in a day
const EXPIRED_SECONDS = 7_200; // an expired one's expired two hours ago

/** connect-pg-simple's table.sql, with every name it defines renamed after CPS_TABLE. */
function cpsTableSql() {
  const file = path.join(path.dirname(require.resolve('connect-pg-simple')), 'table.sql');
  return fs
    .readFileSync(file, 'utf8')
    .replaceAll('"session"', `"${CPS_TABLE}"`)
    .replaceAll('"session_pkey"', `"${CPS_TABLE}_pkey"`)
    .replaceAll('"IDX_session_expire"', `"IDX_${CPS_TABLE}_expire"`);
}

/**
 * Drops and recreates the tables, then seeds `sessions` sessions: ids 1..live are live (a day to
 * go), the rest (expired = sessions - live) expired two hours ago. `client` is a connected
 * pg.Client. opts: { sessions, expired = 0, cps = false (seed connect-pg-simple's table),
 * redis = null (a connected node-redis client to seed), fillfactor = null (the table's, set
 * before the rows go in; null: the library's), expiryIndex = false (add the index on
 * sess_expire that tables made before PostgreSQL 14's layout have), progress = () => {} }.
 * Resolves to { sessions, expired, meanDataBytes, seconds, layout }.
 */
async function seed(
  client,
  conninfo,
  {
    sessions,
    expired = 0,
    cps = false,
    redis = null,
    fillfactor = null,
    expiryIndex = false,
    progress,
  },
) {
  const say = progress || (() => {});
  const started = process.hrtime.bigint();
  await client.query(`DROP TABLE IF EXISTS ${TABLE}, ${CPS_TABLE}`);

  // No housekeeping timers: this handler only creates the table and its index.
  const handler = new SessionPgsql({
    db: conninfo,
    table: TABLE,
    gcInterval: 0,
    vacuumInterval: 0,
  });
  try {
    await handler.open();
  } finally {
    await handler.close();
  }

  // Layout variations to measure (docs/benchmarks.md, The table layout); both before the rows
  // go in, since a fillfactor applies to pages filled after it is set.
  if (fillfactor !== null) {
    await client.query(`ALTER TABLE ${TABLE} SET (fillfactor = ${Number(fillfactor)})`);
  }
  if (expiryIndex) {
    await client.query(`CREATE INDEX IF NOT EXISTS ${TABLE}_expire_idx ON ${TABLE} (sess_expire)`);
  }

  const live = sessions - expired;
  const now = Date.now();
  const liveIso = new Date(now + LIVE_SECONDS * 1000).toISOString();
  const expiredIso = new Date(now - EXPIRED_SECONDS * 1000).toISOString();
  const { head, data } = sessionDataSql('g', `CASE WHEN g > $3 THEN $5 ELSE $4 END`);
  const insert = `INSERT INTO ${TABLE} (sess_id, sess_name, sess_data, sess_created, sess_modified,
      sess_expire, sess_addr_created, sess_counter, sess_error, sess_warning, sess_notice, sess_custom)
    SELECT ${idSql('g')}, 'SID', ${data}, n.now, n.now,
      CASE WHEN g > $3 THEN n.now - ${EXPIRED_SECONDS} ELSE n.now + ${LIVE_SECONDS} END,
      '127.0.0.1', 1, 0, 0, 0, ''
    FROM (SELECT floor(extract(epoch from now()))::bigint AS now) n,
         generate_series($1::int, $2::int) g,
         LATERAL (SELECT ${head} AS head) h`;
  for (let from = 1; from <= sessions; from += CHUNK) {
    const to = Math.min(sessions, from + CHUNK - 1);
    if (sessions > CHUNK)
      say(`  ${TABLE}: rows ${from.toLocaleString('en-US')}..${to.toLocaleString('en-US')}`);
    await client.query(insert, [from, to, live, liveIso, expiredIso]);
  }
  if (cps) {
    await client.query(cpsTableSql());
    say(`  ${CPS_TABLE}: a copy of ${TABLE}`);
    await client.query(
      `INSERT INTO ${CPS_TABLE} (sid, sess, expire)
       SELECT sess_id, sess_data::json, to_timestamp(sess_expire) FROM ${TABLE}`,
    );
  }
  if (redis) {
    say(`  redis: a copy of ${TABLE}, ${REDIS_BATCH} keys per pipelined round`);
    await seedRedis(client, redis);
  }

  const { rows } = await client.query(
    `SELECT count(*)::int AS ours, avg(octet_length(sess_data))::float8 AS bytes
       ${cps ? `, (SELECT count(*) FROM ${CPS_TABLE})::int AS cps` : ''} FROM ${TABLE}`,
  );
  const counts = [rows[0].ours, ...(cps ? [rows[0].cps] : [])];
  if (redis) counts.push(await redis.dbSize());
  if (counts.some((c) => c !== sessions)) {
    throw new Error(`seeding failed: ${counts.join(', ')} rows/keys, not ${sessions}`);
  }
  const bytes = Math.round(rows[0].bytes);
  if (Math.abs(bytes - DATA_BYTES) > 50) {
    throw new Error(`seeding: sessions of ${bytes} bytes on average, not ~${DATA_BYTES}`);
  }
  return {
    sessions,
    expired,
    meanDataBytes: bytes,
    seconds: Number(process.hrtime.bigint() - started) / 1e9,
    layout: await tableLayout(client, TABLE),
  };
}

/** `table`'s fillfactor and indexes, as one line: what decides whether its updates can be HOT. */
async function tableLayout(client, table) {
  const { rows } = await client.query(
    `SELECT coalesce((SELECT substr(o, 12) FROM unnest(c.reloptions) o
                      WHERE o LIKE 'fillfactor=%'), '100') AS fillfactor,
            coalesce((SELECT string_agg(i.indexrelid::regclass::text || ' (' ||
                        pg_get_indexdef(i.indexrelid, 1, true) || ')', ', ' ORDER BY 1)
                      FROM pg_index i WHERE i.indrelid = c.oid), 'none') AS indexes
     FROM pg_class c WHERE c.oid = to_regclass($1)`,
    [table],
  );
  return rows[0] ? `fillfactor ${rows[0].fillfactor}; indexes ${rows[0].indexes}` : 'unknown';
}

/** Copies every row of TABLE into Redis as connect-redis stores it (prefix, JSON, a TTL). */
async function seedRedis(client, redis) {
  await redis.flushDb();
  await client.query('BEGIN');
  try {
    await client.query(
      `DECLARE bench_seed NO SCROLL CURSOR FOR
       SELECT sess_id, sess_data, sess_expire - floor(extract(epoch from now()))::bigint AS ttl
       FROM ${TABLE} WHERE sess_expire > floor(extract(epoch from now()))::bigint`,
    );
    for (let round = 0; round < 100_000; round++) {
      const { rows } = await client.query(`FETCH ${REDIS_BATCH} FROM bench_seed`);
      if (!rows.length) break;
      const multi = redis.multi();
      for (const r of rows) {
        multi.set(REDIS_PREFIX + r.sess_id, r.sess_data, {
          expiration: { type: 'EX', value: Number(r.ttl) },
        });
      }
      await multi.execAsPipeline();
    }
  } finally {
    await client.query('COMMIT');
  }
}

/** The sizes of `table` in bytes: heap (main fork), indexes, and total (with TOAST, FSM, VM). */
async function tableSize(client, table) {
  const { rows } = await client.query(
    `SELECT pg_relation_size(c)::float8 AS heap, pg_indexes_size(c)::float8 AS indexes,
            pg_total_relation_size(c)::float8 AS total
     FROM (SELECT to_regclass($1) AS c) r WHERE c IS NOT NULL`,
    [table],
  );
  return rows[0] || null;
}

/**
 * Before each run: VACUUM (ANALYZE) so earlier contenders' dead tuples cost later ones nothing,
 * then CHECKPOINT so each run starts from the same WAL state (skipped without the right to).
 */
async function prepareRun(client, tables) {
  if (tables.length) await client.query(`VACUUM (ANALYZE) ${tables.join(', ')}`);
  try {
    await client.query('CHECKPOINT');
  } catch {
    // not a superuser / pg_checkpoint member on an existing server: fine
  }
}

module.exports = { seed, prepareRun, tableSize, cpsTableSql };
