// What the session and housekeeping tables hold, read with query() (pg), not through the
// handler under test.
import { query } from './db';

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
  return rows.map((r) => r.sess_id);
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

/** The row of housekeeping job `job` (e.g. `gc "table"`) on test server `server`, if any. */
export async function housekeepingRecord<T = Record<string, unknown>>(
  job: string,
  server = 0,
): Promise<T | undefined> {
  const rows = await query<T>(server, 'SELECT * FROM session_pgsql_housekeeping WHERE job = $1', [
    job,
  ]);
  return rows[0];
}
