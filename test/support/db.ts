// Access to the throwaway servers that scripts/run-tests.js starts for the run.
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { controlFromEnv, type Cluster } from '../../scripts/pg-cluster';
import { fromStored, hashedMode, knownId, toStored } from './hash-mode';

/** The conninfo of each test server, from SESSION_PGSQL_TEST_DB. */
export function servers(): string[] {
  const list = process.env.SESSION_PGSQL_TEST_DB;
  if (!list) {
    throw new Error('SESSION_PGSQL_TEST_DB is not set: run the tests with `npm test`');
  }
  return list.split(';').map((s) => s.trim());
}

/** A `db` option naming the first `n` test servers. */
export function db(n = 1): string {
  return servers().slice(0, n).join(';');
}

/** Handles to stop and start the test servers. */
export function clusters(): Cluster[] {
  return controlFromEnv();
}

/** Starts every test server that is down; resolves once each accepts connections. */
export async function restartAll(): Promise<void> {
  await Promise.all(clusters().map((c) => (c.isRunning() ? undefined : c.start())));
}

/** A table name no other test uses. */
export function uniqueTable(prefix = 't'): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

/** A valid session id (32 characters of [A-Za-z0-9_-]), known to hashed mode's query(). */
export function newId(): string {
  return knownId(randomBytes(24).toString('base64url'));
}

/**
 * Runs one query on test server `index` with the `pg` client; returns the rows. In hashed mode
 * (hash-mode.ts) known ids in `params` go as their stored keys, and come back as ids.
 */
export async function query<T = Record<string, unknown>>(
  index: number,
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = new Client({ connectionString: toUri(servers()[index]!) });
  await client.connect();
  try {
    // (A text of several statements answers with one result each: no rows.)
    const { rows } = await client.query(text, params.map(toStored));
    return (rows ? rows.map(fromStored) : rows) as T[];
  } finally {
    await client.end();
  }
}

/**
 * A pg client on test server `index` that stays open (query() opens one per call); its
 * `query(text, params)` translates ids as query() does in hashed mode.
 */
export async function client(index: number): Promise<Client> {
  const c = new Client({ connectionString: toUri(servers()[index]!) });
  await c.connect();
  if (!hashedMode) return c;
  const plain = c.query.bind(c) as (text: unknown, params?: unknown[]) => Promise<any>;
  (c as unknown as { query: unknown }).query = async (text: unknown, params?: unknown[]) => {
    const result = await plain(text, Array.isArray(params) ? params.map(toStored) : params);
    if (result && Array.isArray(result.rows)) result.rows = result.rows.map(fromStored);
    return result;
  };
  return c;
}

function toUri(conninfo: string): string {
  const kv = Object.fromEntries(conninfo.split(/\s+/).map((p) => p.split('=') as [string, string]));
  return `postgresql://${kv.user}@${kv.host}:${kv.port}/${kv.dbname}`;
}
