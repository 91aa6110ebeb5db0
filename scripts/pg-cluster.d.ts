// Types for scripts/pg-cluster.js (plain CommonJS), so tests can import it.

/** pg_ctl shutdown modes; 'immediate' simulates a crash (recovery runs on the next start). */
export type StopMode = 'smart' | 'fast' | 'immediate';

/** One entry of SESSION_PGSQL_TEST_CLUSTERS (and of `cluster.toJSON()`). */
export interface ClusterInfo {
  index: number;
  port: number;
  host: '127.0.0.1';
  dataDir: string;
  socketDir: string;
  logFile: string;
  /** `host=127.0.0.1 port=N dbname=postgres user=postgres connect_timeout=5` */
  conninfo: string;
  /** directory of initdb, pg_ctl, postgres, pg_isready */
  bindir: string;
  /** OS user the server runs as when we are root; null when it runs as ourselves */
  osUser: string | null;
}

export interface Cluster {
  readonly index: number;
  readonly port: number;
  readonly host: '127.0.0.1';
  readonly socketDir: string;
  readonly dataDir: string;
  readonly logFile: string;
  readonly bindir: string;
  readonly osUser: string | null;
  readonly conninfo: string;
  /** `pg_ctl stop -m <mode> -w` (default 'fast'); resolves once the server is down. No-op if down. */
  stop(opts?: { mode?: StopMode }): Promise<void>;
  /** Starts the server again on the same port and data dir; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Whether a postmaster for this data dir is alive (synchronous). */
  isRunning(): boolean;
  toJSON(): ClusterInfo;
}

export interface ClusterSet {
  /** the temporary directory holding every cluster */
  readonly root: string;
  readonly clusters: Cluster[];
  /** Stops every server (immediate) and removes the temporary directory. Idempotent. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Also tear down on SIGINT/SIGTERM/SIGHUP, then re-raise the signal (default true). */
  handleSignals?: boolean;
}

export function startClusters(n?: number, opts?: StartOptions): Promise<ClusterSet>;
/** Handles on the clusters described by SESSION_PGSQL_TEST_CLUSTERS, from any process. */
export function controlFromEnv(env?: Record<string, string | undefined>): Cluster[];
/** $PG_BINDIR, else `pg_config --bindir` (else the newest /usr/lib/postgresql/N/bin). */
export function findBindir(): string;
export function conninfoFor(port: number): string;
