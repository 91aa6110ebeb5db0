'use strict';
// Shared by the orchestrator and the child runs: the seeded ids and data (as SQL), the SQL of the plain
// contenders, conninfo parsing for the JavaScript drivers, and a fixed-memory latency histogram.

const SESSIONS = 10_000; // the default of --sessions
const DATA_BYTES = 500;
const TABLE = 'bench_sessions'; // created by SessionPgsql itself (its own schema)
const CPS_TABLE = 'bench_cps_session'; // connect-pg-simple's table.sql schema, under this name
const REDIS_PREFIX = 'sess:'; // connect-redis's default key prefix
const MAX_LIFETIME = 1440; // SessionPgsql's default maxLifetime, used by the plain UPDATEs too

/** The id of seeded session n (1..sessions); pgbench and the seeding compute it in SQL. */
function sessionId(n) {
  return `bench-${String(n).padStart(26, '0')}`;
}

/** The SQL expression of sessionId(expr). */
const idSql = (expr) => `'bench-' || lpad((${expr})::text, 26, '0')`;

/** The SQL expression pgbench uses for sessionId(:id). */
const PGBENCH_ID_SQL = idSql(':id');

/** A uniformly random id among the first `sessions` seeded ones. */
function randomId(sessions) {
  return sessionId(1 + Math.floor(Math.random() * sessions));
}

/**
 * SQL for the data of seeded session n (an integer expression `n`): the JSON an express-session
 * app keeps (cookie, user, cart, CSRF secret, ...), compact as JSON.stringify writes it, padded
 * to DATA_BYTES bytes, deterministic in n. `expires` is a SQL text expression (cookie.expires,
 * an ISO date). Built in SQL so a million rows need one statement, not a million round trips.
 */
function sessionDataSql(n, expires) {
  const head =
    `format('{"cookie":{"originalMaxAge":86400000,"expires":%s,"secure":false,"httpOnly":true,` +
    `"path":"/","sameSite":"lax"},"views":%s,"user":{"id":%s,"name":"user%s",` +
    `"email":"user%s@example.com","roles":%s},"locale":"%s","theme":"%s","csrfSecret":"%s",` +
    `"cart":[{"sku":"SKU-%s","qty":%s,"priceCents":%s}],"returnTo":"/products/%s?page=%s",` +
    `"flash":{},"pad":"', to_json(${expires}), ${n} % 50, 100000 + ${n}, ${n}, ${n}, ` +
    `CASE WHEN ${n} % 10 = 0 THEN '["customer","admin"]' ELSE '["customer"]' END, ` +
    `(ARRAY['en-GB','en-US','de-DE','fr-FR','es-ES','ja-JP'])[1 + ${n} % 6], ` +
    `(ARRAY['light','dark','system'])[1 + ${n} % 3], left(md5(${n}::text), 24), ` +
    `10000 + (${n}::bigint * 7919) % 90000, 1 + ${n} % 4, 199 + (${n}::bigint * 104729) % 20000, ` +
    `(${n}::bigint * 31) % 5000, 1 + ${n} % 9)`;
  const pad = `left(repeat(md5(${n}::text || 'pad'), 16), greatest(0, ${DATA_BYTES} - 2 - octet_length(h.head)))`;
  return { head, data: `h.head || ${pad} || '"}'` };
}

/**
 * What an express-session request that changed its session does to it before store.set(): the
 * app's change (views+1), then express-session's touch(), which every save follows and which
 * moves cookie.expires to now + originalMaxAge (so the stored expiry moves with each write).
 */
function changeExpressSession(sess) {
  sess.views += 1;
  sess.cookie.expires = new Date(Date.now() + sess.cookie.originalMaxAge);
}

/**
 * One request of a store contender, the same for every store so the comparison is like for
 * like: get(sid), changeExpressSession, set(sid, sess). `get`/`set` return promises.
 */
function storeRequest(get, set) {
  return async (id) => {
    const sess = await get(id);
    if (!sess) throw new Error(`session ${id} not found`);
    changeExpressSession(sess);
    await set(id, sess);
  };
}

/** The hot path's change to a session: parse it, count the visit, serialise it again. */
function bump(text) {
  const session = JSON.parse(text);
  session.views += 1;
  return JSON.stringify(session);
}

// The plain contenders' statements (pg, postgres.js, pgbench): one read, one write, of the same
// columns the session-pgsql write maintains on an existing row.
const NOW = 'floor(extract(epoch from now()))::bigint';
const READ_SQL = `SELECT sess_data FROM ${TABLE} WHERE sess_id = $1`;
const WRITE_SQL =
  `UPDATE ${TABLE} SET sess_data = $2, sess_modified = ${NOW}, ` +
  `sess_expire = ${NOW} + ${MAX_LIFETIME}, sess_counter = sess_counter + 1 WHERE sess_id = $1`;

/**
 * A libpq conninfo (key=value or URI) as pg / postgres.js options. URIs pass through; key=value
 * pairs keep host, port, dbname, user, password (quoted values and backslash escapes allowed).
 */
function driverOptions(conninfo) {
  if (/^postgres(ql)?:\/\//.test(conninfo)) return { url: conninfo };
  const pairs = {};
  const re = /\s*([A-Za-z_]+)\s*=\s*('((?:[^'\\]|\\.)*)'|(\S+))/gy;
  let m;
  let guard = 0;
  while (guard++ < 100 && (m = re.exec(conninfo)) !== null) {
    pairs[m[1]] = m[3] !== undefined ? m[3].replace(/\\(.)/g, '$1') : m[4];
  }
  return {
    host: pairs.host || pairs.hostaddr || undefined,
    port: pairs.port ? Number(pairs.port) : undefined,
    database: pairs.dbname || undefined,
    user: pairs.user || undefined,
    password: pairs.password || undefined,
  };
}

/**
 * Latencies in microseconds, fixed memory (so a long soak does not grow the heap): 1 µs buckets
 * below 100 ms, 1 ms buckets from 100 ms to 60 s (clamped above).
 */
class Histogram {
  constructor() {
    this.fine = new Uint32Array(100_000);
    this.coarse = new Uint32Array(60_000);
    this.count = 0;
    this.sum = 0;
    this.max = 0;
  }

  record(us) {
    const v = Math.max(0, Math.round(us));
    if (v < 100_000) this.fine[v] += 1;
    else this.coarse[Math.min(Math.floor(v / 1000), 59_999)] += 1;
    this.count += 1;
    this.sum += v;
    if (v > this.max) this.max = v;
  }

  /** The latency (µs) at quantile q (0..1), or null when empty. */
  quantile(q) {
    if (this.count === 0) return null;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < this.fine.length; i++) {
      seen += this.fine[i];
      if (seen >= rank) return i;
    }
    for (let i = 100; i < this.coarse.length; i++) {
      seen += this.coarse[i];
      if (seen >= rank) return i * 1000;
    }
    return this.max;
  }

  summary() {
    const ms = (us) => (us === null ? null : us / 1000);
    return {
      count: this.count,
      meanMs: this.count ? this.sum / this.count / 1000 : null,
      p50Ms: ms(this.quantile(0.5)),
      p99Ms: ms(this.quantile(0.99)),
      maxMs: this.count ? this.max / 1000 : null,
    };
  }
}

module.exports = {
  SESSIONS,
  DATA_BYTES,
  TABLE,
  CPS_TABLE,
  REDIS_PREFIX,
  MAX_LIFETIME,
  PGBENCH_ID_SQL,
  idSql,
  READ_SQL,
  WRITE_SQL,
  NOW,
  sessionId,
  randomId,
  sessionDataSql,
  bump,
  changeExpressSession,
  storeRequest,
  driverOptions,
  Histogram,
};
