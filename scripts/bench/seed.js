'use strict';
// Schema and rows. bench_sessions is created by a SessionPgsql handler (the library's own schema);
// bench_cps_session by connect-pg-simple's table.sql. Both get the same SESSIONS ids and data.
const fs = require('node:fs');
const path = require('node:path');
const { SESSIONS, TABLE, CPS_TABLE, ids, sessionData } = require('./common.js');

const { SessionPgsql } = require(path.join(__dirname, '..', '..', 'dist', 'index.js'));

const BATCH = 1000;

/** connect-pg-simple's table.sql, with every name it defines renamed after CPS_TABLE. */
function cpsTableSql() {
  const file = path.join(path.dirname(require.resolve('connect-pg-simple')), 'table.sql');
  return fs
    .readFileSync(file, 'utf8')
    .replaceAll('"session"', `"${CPS_TABLE}"`)
    .replaceAll('"session_pkey"', `"${CPS_TABLE}_pkey"`)
    .replaceAll('"IDX_session_expire"', `"IDX_${CPS_TABLE}_expire"`);
}

/** Drops and recreates both tables, then inserts the sessions. `client` is a connected pg.Client. */
async function seed(client, conninfo) {
  await client.query(`DROP TABLE IF EXISTS ${TABLE}, ${CPS_TABLE}`);

  const handler = new SessionPgsql({ db: conninfo, table: TABLE });
  try {
    await handler.open(); // creates the table and its index
  } finally {
    await handler.close();
  }
  await client.query(cpsTableSql());

  const expires = new Date(Date.now() + 86_400_000).toISOString();
  for (let start = 0; start < SESSIONS; start += BATCH) {
    const batchIds = ids.slice(start, start + BATCH);
    const data = batchIds.map((_, i) => sessionData(start + i + 1, expires));
    await client.query(
      `INSERT INTO ${TABLE} (sess_id, sess_name, sess_data, sess_created, sess_modified,
         sess_expire, sess_addr_created, sess_counter, sess_error, sess_warning, sess_notice,
         sess_custom)
       SELECT u.id, 'SID', u.data, n.now, n.now, n.now + 86400, '127.0.0.1', 1, 0, 0, 0, ''
       FROM unnest($1::text[], $2::text[]) AS u(id, data),
            (SELECT floor(extract(epoch from now()))::bigint AS now) n`,
      [batchIds, data],
    );
    await client.query(
      `INSERT INTO ${CPS_TABLE} (sid, sess, expire)
       SELECT u.id, u.data::json, now() + interval '1 day'
       FROM unnest($1::text[], $2::text[]) AS u(id, data)`,
      [batchIds, data],
    );
  }
  const { rows } = await client.query(
    `SELECT (SELECT count(*) FROM ${TABLE})::int AS ours, (SELECT count(*) FROM ${CPS_TABLE})::int AS cps,
            (SELECT avg(octet_length(sess_data)) FROM ${TABLE})::float8 AS bytes`,
  );
  if (rows[0].ours !== SESSIONS || rows[0].cps !== SESSIONS) {
    throw new Error(`seeding failed: ${rows[0].ours} and ${rows[0].cps} rows, not ${SESSIONS}`);
  }
  return { sessions: SESSIONS, meanDataBytes: Math.round(rows[0].bytes) };
}

/**
 * Before each run: VACUUM (ANALYZE) so earlier contenders' dead tuples cost later ones nothing,
 * then CHECKPOINT so each run starts from the same WAL state (skipped without the right to).
 */
async function prepareRun(client) {
  await client.query(`VACUUM (ANALYZE) ${TABLE}, ${CPS_TABLE}`);
  try {
    await client.query('CHECKPOINT');
  } catch {
    // not a superuser / pg_checkpoint member on an existing server: fine
  }
}

module.exports = { seed, prepareRun };
