// What the session and housekeeping tables hold, read with query() (pg), not through the
// handler under test.
import { query } from './db';
import { hashedMode } from './hash-mode';

/** The rows of session `id` in `table` on test server `server` (0 unless told): none or one. */
export function sessionRows<T = Record<string, unknown>>(
  table: string,
  id: string,
  server = 0,
): Promise<T[]> {
  return query<T>(server, `SELECT * FROM ${table} WHERE sess_id = $1`, [id]);
}

/** The row of session `id` in `table` on test server `server` (0 unless told), if any. */
export async function sessionRow<T = Record<string, unknown>>(
  table: string,
  id: string,
  server = 0,
): Promise<T | undefined> {
  return (await sessionRows<T>(table, id, server))[0];
}

/**
 * A row of a session table with its bigint and integer columns as numbers. Columns the handler
 * always writes are typed non-null; a NULL in one (e.g. a counter in a row PHP wrote) stays null.
 */
export interface StoredRow {
  sess_id: string;
  sess_name: string | null;
  sess_data: string;
  sess_created: number;
  sess_modified: number;
  sess_expire: number;
  sess_addr_created: string | null;
  sess_addr_modified: string | null;
  sess_counter: number;
  sess_error: number;
  sess_warning: number;
  sess_notice: number;
  sess_err_message: string | null;
  sess_custom: string | null;
}

/** The bigint/integer columns of a session table (pg returns bigint as a string). */
const NUMERIC_COLUMNS = [
  'sess_created',
  'sess_modified',
  'sess_expire',
  'sess_counter',
  'sess_error',
  'sess_warning',
  'sess_notice',
] as const;

/**
 * `r` as a StoredRow (with any extra columns it has, typed by `T`): its non-NULL numeric columns
 * converted with Number().
 */
export function toStoredRow<T extends object = object>(r: Record<string, unknown>): StoredRow & T {
  const out: Record<string, unknown> = { ...r };
  for (const c of NUMERIC_COLUMNS) {
    if (out[c] !== null && out[c] !== undefined) out[c] = Number(out[c]);
  }
  return out as unknown as StoredRow & T;
}

/** The rows of session `id` in `table` on test server `server` (0 unless told) as StoredRows. */
export async function storedRows(table: string, id: string, server = 0): Promise<StoredRow[]> {
  return (await sessionRows(table, id, server)).map(toStoredRow);
}

/** sessionRow() as a StoredRow: the row of session `id` in `table` on server `server`, if any. */
export async function storedRow(
  table: string,
  id: string,
  server = 0,
): Promise<StoredRow | undefined> {
  return (await storedRows(table, id, server))[0];
}

/** Only the `keys` columns of a stored row (undefined when there is no row). */
export function columnsOf<K extends keyof StoredRow>(
  row: StoredRow | undefined,
  keys: readonly K[],
): Pick<StoredRow, K> | undefined {
  return row && (Object.fromEntries(keys.map((k) => [k, row[k]])) as Pick<StoredRow, K>);
}

/** allRows() as StoredRows: every row of `table` on test server `server`, ordered by sess_id. */
export async function allStoredRows(table: string, server = 0): Promise<StoredRow[]> {
  return (await allRows(table, server)).map((r) => toStoredRow(r));
}

/** Every row of `table` on test server `server` (0 unless told), ordered by sess_id. */
export function allRows<T = Record<string, unknown>>(table: string, server = 0): Promise<T[]> {
  return query<T>(server, `SELECT * FROM ${table} ORDER BY sess_id`);
}

/** The session ids in `table` on test server `server` (0 unless told), sorted. */
export async function idsIn(table: string, server = 0): Promise<string[]> {
  const rows = await query<{ sess_id: string }>(
    server,
    `SELECT sess_id FROM ${table} ORDER BY sess_id`,
  );
  const ids = rows.map((r) => r.sess_id);
  // The rows come in the order of their stored keys: sorted again as ids.
  return hashedMode ? ids.sort() : ids;
}

/** sess_id -> sess_data of the given ids stored in `table` on test server `index`. */
export async function rowsOn(
  index: number,
  table: string,
  ids: string[],
): Promise<Map<string, string>> {
  const rows = await query<{ sess_id: string; sess_data: string }>(
    index,
    `SELECT sess_id, sess_data FROM "${table}" WHERE sess_id = ANY($1)`,
    [ids],
  );
  return new Map(rows.map((r) => [r.sess_id, r.sess_data]));
}

/** A row of the housekeeping record table, as pg returns it (bigint columns as strings). */
export interface HousekeepingRow {
  job: string;
  last_start: number | null;
  last_finish: number | null;
  runs: string;
  last_removed: string | null;
  last_duration: number | null;
  last_error: string | null;
}

/** The row of housekeeping job `job` (e.g. `gc "table"`) on test server `server`, if any. */
export async function housekeepingRecord(
  job: string,
  server = 0,
): Promise<HousekeepingRow | undefined> {
  const rows = await query<HousekeepingRow>(
    server,
    'SELECT * FROM session_pgsql_housekeeping WHERE job = $1',
    [job],
  );
  return rows[0];
}

/**
 * Whether `row` is a logout's tombstone: no data and a negative expiry (minus the end of its
 * lifetime), which every reader takes for an expired session. The adapters' destroy leaves one.
 */
export function isTombstone(row: StoredRow | undefined): boolean {
  return row !== undefined && row.sess_data === '' && Number(row.sess_expire) < 0;
}
