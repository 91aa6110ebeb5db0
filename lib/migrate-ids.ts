// `session-pgsql migrate-ids`: rewrites a table of raw session ids to the stored keys of
// `hashIds` (SHA-256, or HMAC-SHA256 with a key), on every server, in bounded batches. A
// hashed key places a session elsewhere than its raw id, so each row goes to the home server
// of its new key (where a handler with hashIds looks for it), and leaves its old one.
import { requirePeer } from './adapter';
import { SessionPgsql, withAdapterId } from './handler';
import { pgConfig } from './import';
import { idHashing, isHashedKey, resolveOptions, type HashIdsOptions } from './options';

/** What to migrate, and how the application will store ids afterwards. */
export interface MigrateIdsOptions {
  /** The `db` entries, as the application lists them (placement depends on their order). */
  servers: string[];
  /** The session table, optionally schema-qualified. */
  table: string;
  /** The application's placement (`failoverMode` is `'failover'`). */
  placement: 'rendezvous' | 'php' | 'failover';
  /** The application's `hashIds`: `true` (SHA-256) or `{ key }`. */
  hashIds: true | HashIdsOptions;
  /** Rows per batch (one transaction on the server they come from). Default 500. */
  batch?: number;
  /** Count what would move; change nothing. */
  dryRun?: boolean;
}

/** What a migration did (or would do) on one server. */
export interface MigratedServer {
  /** Rows of raw ids found on this server, rewritten under their hashed key (on their home). */
  moved: number;
  /** Of those, rows that stayed on this server (it is their key's home). */
  stayed: number;
  /** Rows already stored under a hashed key of this kind. */
  hashed: number;
  /**
   * Rows under a hashed key of the other kind (plain where a key is given, or keyed where none
   * is): their raw ids are unknown, so they cannot be converted; left alone.
   */
  otherKind: number;
}

/** The subset of `pg` this file uses. */
interface PgClient {
  connect(): Promise<void>;
  query(text: string, values?: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
  end(): Promise<void>;
}

/**
 * Moves every row stored under a raw id to its hashed key. Safe to run again, and while
 * applications run: a row is moved in a transaction that locks it on its server; its copy at
 * its new home replaces a row already there only when it is newer (by `sess_version` when both
 * have one, else by `sess_modified`), so a session a hashIds handler wrote since is kept. Every
 * server must be reachable (a row's home is the first server of its key's order).
 * @throws Error from `pg` (a server unreachable, a statement failing); rows moved before stay
 *   moved, and a second run finishes the rest.
 */
export async function migrateIds(options: MigrateIdsOptions): Promise<MigratedServer[]> {
  const pg = requirePeer<{ Client: new (config: object) => PgClient }>(
    'pg',
    'session-pgsql migrate-ids',
  );
  const batch = options.batch ?? 500;
  const ids = idHashing(options.hashIds);
  const names = resolveOptions({ table: options.table }).native;
  const t = names.table;
  // Placement only (nothing is sent): the order of a stored key, as the application computes it.
  const placer = new SessionPgsql({
    db: options.servers as string[],
    table: options.table,
    ...(options.placement === 'failover'
      ? { failoverMode: true }
      : { placement: options.placement }),
    hashIds: false,
    gcInterval: 0,
    vacuumInterval: 0,
  });
  const clients: PgClient[] = [];
  try {
    for (const entry of options.servers) {
      const client = new pg.Client(pgConfig(entry));
      clients.push(client);
      await client.connect();
    }
    // Counted on every server before any row moves: a moved row is not "already hashed".
    const result: MigratedServer[] = [];
    for (const client of clients) result.push(await countKinds(client));
    for (let s = 0; s < clients.length; s++) await migrateServer(s, result[s]!);
    return result;
  } finally {
    await placer.close();
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  }

  async function countKinds(source: PgClient): Promise<MigratedServer> {
    const kinds = await source.query(
      `SELECT count(*) FILTER (WHERE sess_id ~ $1)::float8 AS hashed, ` +
        `count(*) FILTER (WHERE sess_id ~ $2)::float8 AS other FROM ${t}`,
      [`^${ids.mode}:[0-9a-f]{64}$`, `^${ids.mode === 'sha256' ? 'hmac' : 'sha256'}:[0-9a-f]{64}$`],
    );
    return {
      moved: 0,
      stayed: 0,
      hashed: Number(kinds.rows[0]!.hashed),
      otherKind: Number(kinds.rows[0]!.other),
    };
  }

  async function migrateServer(s: number, counts: MigratedServer): Promise<void> {
    const source = clients[s]!;
    let after = '';
    for (;;) {
      await source.query('BEGIN');
      try {
        // Keyset paging on the primary key (from '', which no handler stores): each batch is
        // one short transaction, and a run ends whatever it meets. FOR UPDATE: a concurrent write of a row waits for its move,
        // then stores it anew under its raw id (a second run moves that one).
        const { rows } = await source.query(
          `SELECT * FROM ${t} WHERE sess_id > $1 AND sess_id !~ '^(sha256|hmac):[0-9a-f]{64}$' ` +
            `ORDER BY sess_id LIMIT ${batch} FOR UPDATE`,
          [after],
        );
        if (rows.length === 0) {
          await source.query('COMMIT');
          break;
        }
        after = rows[rows.length - 1]!.sess_id as string;
        const byHome = new Map<number, Array<Record<string, unknown>>>();
        for (const row of rows) {
          const raw = row.sess_id as string;
          if (isHashedKey(raw)) continue; // the SQL filter's twin
          const key = ids.stored(raw);
          const home = withAdapterId(() => placer.serversFor(key))[0]!;
          const list = byHome.get(home) ?? [];
          list.push({ ...row, sess_id: key });
          byHome.set(home, list);
          counts.moved++;
          if (home === s) counts.stayed++;
        }
        if (!options.dryRun) {
          // Other servers first, each in a commit of its own: if this run stops before the
          // source commits, the rows are still here under their raw ids, and a second run
          // copies them again (an equal copy replaces its twin: no change).
          for (const [home, moved] of byHome) {
            if (home !== s) await adopt(clients[home]!, moved);
          }
          const here = byHome.get(s);
          if (here) await adopt(source, here);
          await source.query(`DELETE FROM ${t} WHERE sess_id = ANY($1)`, [
            rows.map((r) => r.sess_id),
          ]);
        }
        await source.query('COMMIT');
      } catch (err) {
        await source.query('ROLLBACK').catch(() => {});
        throw err;
      }
    }
  }

  /** Upserts `rows` (column -> value, sess_id already the hashed key), newer wins. */
  async function adopt(client: PgClient, rows: Array<Record<string, unknown>>): Promise<void> {
    const columns = Object.keys(rows[0]!).filter((c) => c !== 'sess_id');
    const quoted = columns.map((c) => `"${c.replace(/"/g, '""')}"`);
    const versioned = columns.includes('sess_version');
    const newer = versioned
      ? 'CASE WHEN s.sess_version IS NOT NULL AND EXCLUDED.sess_version IS NOT NULL ' +
        'THEN s.sess_version <= EXCLUDED.sess_version ' +
        'ELSE coalesce(s.sess_modified, 0) <= coalesce(EXCLUDED.sess_modified, 0) END'
      : 'coalesce(s.sess_modified, 0) <= coalesce(EXCLUDED.sess_modified, 0)';
    // The rows travel as one JSON array; jsonb_populate_recordset gives each value its
    // column's type on the receiving server.
    await client.query(
      `INSERT INTO ${t} AS s (sess_id, ${quoted.join(', ')}) ` +
        `SELECT sess_id, ${quoted.join(', ')} FROM jsonb_populate_recordset(NULL::${t}, $1::jsonb) ` +
        `ON CONFLICT (sess_id) DO UPDATE SET (${quoted.join(', ')}) = ` +
        `(${quoted.map((c) => `EXCLUDED.${c}`).join(', ')}) WHERE ${newer}`,
      [JSON.stringify(rows)],
    );
  }
}
