'use strict';
// Shared by the orchestrator and the child runs: the seeded ids and data, the SQL of the plain
// contenders, conninfo parsing for the JavaScript drivers, and a fixed-memory latency histogram.

const SESSIONS = 10_000;
const DATA_BYTES = 500;
const TABLE = 'bench_sessions'; // created by SessionPgsql itself (its own schema)
const CPS_TABLE = 'bench_cps_session'; // connect-pg-simple's table.sql schema, under this name
const MAX_LIFETIME = 1440; // SessionPgsql's default maxLifetime, used by the plain UPDATEs too

/** The id of seeded session n (1..SESSIONS); pgbench computes the same string in SQL. */
function sessionId(n) {
  return `bench-${String(n).padStart(26, '0')}`;
}

/** The SQL expression pgbench uses for sessionId(:id). */
const PGBENCH_ID_SQL = `'bench-' || lpad(:id::text, 26, '0')`;

const ids = Array.from({ length: SESSIONS }, (_, i) => sessionId(i + 1));

/** A uniformly random seeded id. */
function randomId() {
  return ids[Math.floor(Math.random() * SESSIONS)];
}

// mulberry32: a small deterministic PRNG, so every run seeds the same data.
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * The data of seeded session n: the JSON an express-session app keeps (cookie, user, cart, CSRF
 * secret, ...), padded to DATA_BYTES bytes. Deterministic in n.
 */
function sessionData(n, expires) {
  const rnd = prng(n * 2654435761);
  const pick = (list) => list[Math.floor(rnd() * list.length)];
  const token = (len) => Array.from({ length: len }, () => pick(ALPHABET)).join('');
  const cart = Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => ({
    sku: `SKU-${10000 + Math.floor(rnd() * 90000)}`,
    qty: 1 + Math.floor(rnd() * 4),
    priceCents: 199 + Math.floor(rnd() * 20000),
  }));
  const session = {
    cookie: {
      originalMaxAge: 86_400_000,
      expires,
      secure: false,
      httpOnly: true,
      path: '/',
      sameSite: 'lax',
    },
    views: Math.floor(rnd() * 50),
    user: {
      id: 100000 + n,
      name: `user${n}`,
      email: `user${n}@example.com`,
      roles: rnd() < 0.1 ? ['customer', 'admin'] : ['customer'],
    },
    locale: pick(['en-GB', 'en-US', 'de-DE', 'fr-FR', 'es-ES', 'ja-JP']),
    theme: pick(['light', 'dark', 'system']),
    csrfSecret: token(24),
    cart,
    returnTo: `/products/${Math.floor(rnd() * 5000)}?page=${1 + Math.floor(rnd() * 9)}`,
    flash: {},
    pad: '',
  };
  const missing = DATA_BYTES - Buffer.byteLength(JSON.stringify(session));
  if (missing > 0) session.pad = token(missing);
  return JSON.stringify(session);
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
  MAX_LIFETIME,
  PGBENCH_ID_SQL,
  READ_SQL,
  WRITE_SQL,
  NOW,
  ids,
  sessionId,
  randomId,
  sessionData,
  bump,
  driverOptions,
  Histogram,
};
