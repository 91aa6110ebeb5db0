// What GC does to a table, as the server sees it: a statement-level trigger logs every DELETE
// with the rows it removed and the text of the client's statement (current_query()), so a test
// can tell how many rows each GC statement held and which way (by ranges or by the index) it
// found them. Transition tables make the count exact; no timing is involved.
import { query } from './db';

export interface DeleteLogEntry {
  /** Rows the statement deleted. */
  n: number;
  /** The client's statement text. */
  query: string;
}

/** The old layout: the table as session-pgsql created it before PostgreSQL 14's layout. */
export async function createWithExpiryIndex(table: string, server = 0): Promise<void> {
  await query(
    server,
    `CREATE TABLE ${table} (sess_id text PRIMARY KEY, sess_name text, sess_data text,
       sess_created bigint, sess_modified bigint, sess_expire bigint, sess_addr_created text,
       sess_addr_modified text, sess_counter integer, sess_error integer, sess_warning integer,
       sess_notice integer, sess_err_message text, sess_custom text, sess_version bigint)`,
  );
  await query(server, `CREATE INDEX ${table}_expire_idx ON ${table} (sess_expire)`);
}

/**
 * Logs every DELETE statement on `table` (server `server`) from now on; the returned function
 * reads the log, oldest first.
 */
export async function logDeletes(
  table: string,
  server = 0,
): Promise<() => Promise<DeleteLogEntry[]>> {
  const log = `${table}_deletes`;
  await query(server, `CREATE TABLE ${log} (at bigserial, n int, query text)`);
  await query(
    server,
    `CREATE FUNCTION ${log}_f() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       INSERT INTO ${log} (n, query) SELECT count(*), current_query() FROM old_rows;
       RETURN NULL;
     END $$`,
  );
  await query(
    server,
    `CREATE TRIGGER ${log}_t AFTER DELETE ON ${table} REFERENCING OLD TABLE AS old_rows
     FOR EACH STATEMENT EXECUTE FUNCTION ${log}_f()`,
  );
  return () =>
    query<DeleteLogEntry>(server, `SELECT n, query FROM ${log} ORDER BY at`).then((rows) =>
      rows.map((r) => ({ n: Number(r.n), query: r.query })),
    );
}

/** Which way a logged GC statement went: through TID ranges or through the expiry index. */
export function gcWay(entry: DeleteLogEntry): 'ranges' | 'index' {
  return /ctid >= \$2::tid/.test(entry.query) ? 'ranges' : 'index';
}
