// Types for scripts/pgbouncer.js (plain CommonJS), so tests can import it.

export interface Pgbouncer {
  readonly port: number;
  /** its temporary directory (config, auth file, pid file, log) */
  readonly dir: string;
  readonly logFile: string;
  readonly poolMode: 'session' | 'transaction' | 'statement';
  /** `host=127.0.0.1 port=N dbname=postgres user=postgres connect_timeout=5` */
  readonly conninfo: string;
  /** The log so far ('' when none). */
  log(): string;
  /** Stops PgBouncer (SIGTERM, then SIGKILL) and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

export interface PgbouncerOptions {
  /** port of the PostgreSQL server on 127.0.0.1 to pool */
  serverPort: number;
  /** default 'transaction' */
  poolMode?: 'session' | 'transaction' | 'statement';
  /** default_pool_size; default 2 */
  poolSize?: number;
  /** more [pgbouncer] settings */
  extra?: Record<string, string | number>;
}

/** The pgbouncer binary ($PGBOUNCER, else on PATH or in /usr/sbin), or null when not installed. */
export function findPgbouncer(): string | null;
/** Starts a throwaway PgBouncer on a free loopback port; resolves once it accepts connections. */
export function startPgbouncer(opts: PgbouncerOptions): Promise<Pgbouncer>;
