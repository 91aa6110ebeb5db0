// `session-pgsql import connect-pg-simple`: copies the live sessions of connect-pg-simple's
// table, session(sid varchar, sess json, expire timestamp(6)), into ours. Each session is
// written through the handler, so it lands on the server where the handler (and ExpressStore)
// will look for it; the source is read a page at a time, so memory stays bounded.
import { readId, requirePeer, rowExpiry, toEpochMs, writeId } from './adapter';
import { ErrorCode, SessionPgsqlError } from './errors';
import type { SessionPgsql } from './handler';

/** Where connect-pg-simple's sessions are, and what to do with them. */
export interface ImportOptions {
  /** A libpq conninfo (key=value or URI) of the database holding connect-pg-simple's table. */
  from: string;
  /** connect-pg-simple's table (its `tableName` option). */
  table: string;
  /** Its schema (its `schemaName` option); the search path's when absent. */
  schema?: string;
  /** Count what would be copied; write nothing. */
  dryRun: boolean;
  /** Rows read per page of the source. */
  pageSize?: number;
  /** Sessions written at once (the handler batches them into few round trips). */
  concurrency?: number;
}

/** What an import did (or, with `dryRun`, would do). */
export interface ImportCounts {
  /** Live sessions written into our table. */
  copied: number;
  /** Rows whose session had expired: left behind. */
  expired: number;
  /** Sessions we already hold with the same or a later expiry (a previous import, or newer). */
  newer: number;
  /** Sessions our table cannot hold (data over maxDataSize, an id over the adapters' bound). */
  invalid: number;
}

/** The subset of `pg` this file uses (pg is connect-pg-simple's own dependency). */
interface PgClient {
  connect(): Promise<void>;
  query(
    text: string,
    values?: unknown[],
  ): Promise<{ rows: Array<{ sid: string; sess: string | null; expire: number; now: number }> }>;
  end(): Promise<void>;
}

/**
 * Copies the live sessions as ExpressStore would store them: sess_id = sid (verbatim, or
 * ExpressStore's escaped form for the rare id a text column cannot hold as is), sess_data =
 * the JSON text of sess, row expiry = ExpressStore's for the cookie's own expiry (the store
 * refuses the session at the cookie's exact expiry), else connect-pg-simple's `expire`.
 * Idempotent: a session we already hold with the same or a later expiry is left alone, so a
 * second run copies nothing and a session the application has used since is never regressed.
 * @throws SessionPgsqlError from the handler (a server down, a timeout), Error from `pg`.
 */
export async function importConnectPgSimple(
  handler: SessionPgsql,
  options: ImportOptions,
): Promise<ImportCounts> {
  const pg = requirePeer<{ Client: new (config: object) => PgClient }>(
    'pg',
    'session-pgsql import connect-pg-simple',
  );
  const pageSize = options.pageSize ?? 500;
  const concurrency = options.concurrency ?? 64;
  const source = `${options.schema ? `${quoteIdentifier(options.schema)}.` : ''}${quoteIdentifier(options.table)}`;
  // expire is a timestamp without time zone that connect-pg-simple writes with to_timestamp()
  // and compares as timestamptz: the same cast reads it back as the instant it meant.
  const columns =
    'SELECT sid, CASE WHEN expire::timestamptz > now() THEN sess::text END AS sess, ' +
    'extract(epoch from expire::timestamptz)::float8 AS expire, ' +
    `extract(epoch from now())::float8 AS now FROM ${source}`;
  const counts: ImportCounts = { copied: 0, expired: 0, newer: 0, invalid: 0 };
  const client = new pg.Client(pgConfig(options.from));
  await client.connect();
  try {
    let after = null as string | null;
    for (;;) {
      // Keyset paging on the primary key: each page is one short query, whatever the size.
      const { rows } = await (after === null
        ? client.query(`${columns} ORDER BY sid LIMIT $1`, [pageSize])
        : client.query(`${columns} WHERE sid > $1 ORDER BY sid LIMIT $2`, [after, pageSize]));
      if (rows.length === 0) break;
      after = rows[rows.length - 1]!.sid;
      const live = [];
      for (const row of rows) {
        const ms = row.sess === null ? null : expiryOf(row.sess, row.expire);
        if (ms === null || ms <= row.now * 1000) counts.expired++;
        else live.push({ id: row.sid, data: row.sess!, expires: rowExpiry(ms) });
      }
      for (let i = 0; i < live.length; i += concurrency) {
        const outcomes = await Promise.all(
          live
            .slice(i, i + concurrency)
            .map((s) => copy(handler, s.id, s.data, s.expires, options.dryRun)),
        );
        for (const outcome of outcomes) counts[outcome]++;
      }
      if (rows.length < pageSize) break;
    }
  } finally {
    await client.end().catch(() => {});
  }
  return counts;
}

/** The session's expiry in epoch ms: the cookie's own, else connect-pg-simple's column. */
function expiryOf(sess: string, column: number): number {
  try {
    const value = JSON.parse(sess) as { cookie?: { expires?: unknown } } | null;
    return toEpochMs(value?.cookie?.expires) ?? column * 1000;
  } catch {
    return column * 1000;
  }
}

async function copy(
  handler: SessionPgsql,
  id: string,
  data: string,
  expires: number,
  dryRun: boolean,
): Promise<keyof ImportCounts> {
  try {
    // A copy compares equal to its earlier self: both are whole seconds from rowExpiry().
    const ours = await readId(handler, id);
    if (!ours.isNew && !ours.expired && ours.info().expires >= expires) return 'newer';
    if (!dryRun) await writeId(handler, id, data, { expires });
    return 'copied';
  } catch (err) {
    const unfit: string[] = [ErrorCode.InvalidId, ErrorCode.DataTooLarge, ErrorCode.DataHasNul];
    if (err instanceof SessionPgsqlError && unfit.includes(err.code)) {
      return 'invalid';
    }
    throw err;
  }
}

function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * A `pg` client configuration from a libpq conninfo: a URI as is; from key=value the keys pg
 * knows (host, port, dbname, user, password, sslmode, connect_timeout, application_name).
 * Anything else falls back to the PG* environment variables, as with libpq.
 */
export function pgConfig(conninfo: string): Record<string, unknown> {
  if (/^postgres(ql)?:\/\//.test(conninfo)) return { connectionString: conninfo };
  const config: Record<string, unknown> = {};
  const pair = /\s*([A-Za-z_]+)\s*=\s*('((?:[^'\\]|\\.)*)'|((?:[^\s'\\]|\\.)+))/y;
  const unescape = (text: string) => text.replace(/\\(.)/g, '$1');
  for (let m = pair.exec(conninfo); m !== null; m = pair.exec(conninfo)) {
    const value = unescape(m[3] ?? m[4] ?? '');
    switch (m[1]) {
      case 'host':
      case 'hostaddr':
        config.host ??= value.split(',')[0];
        break;
      case 'port':
        config.port = Number(value.split(',')[0]);
        break;
      case 'dbname':
        config.database = value;
        break;
      case 'user':
      case 'password':
        config[m[1]] = value;
        break;
      case 'sslmode':
        config.ssl = ['require', 'verify-ca', 'verify-full'].includes(value)
          ? { rejectUnauthorized: value !== 'require' }
          : false;
        break;
      case 'connect_timeout':
        config.connectionTimeoutMillis = Number(value) * 1000;
        break;
      case 'application_name':
        config.application_name = value;
        break;
    }
  }
  return config;
}
