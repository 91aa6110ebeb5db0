// Types for scripts/redis-server.js (plain CommonJS), so tests can import it.

export interface RedisServer {
  readonly port: number;
  /** its temporary directory (config, data, pid file, log) */
  readonly dir: string;
  readonly logFile: string;
  /** `redis://127.0.0.1:N` */
  readonly url: string;
  /** the redis-server binary it runs */
  readonly binary: string;
  /** The process id, or null before it has written its pid file. */
  pid(): number | null;
  /** The log so far ('' when none). */
  log(): string;
  /** Stops redis-server (SIGTERM without a final save, then SIGKILL) and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

export interface RedisServerOptions {
  /** snapshot points; default Redis's own '3600 1 300 100 60 10000', '' for none */
  save?: string;
  /** more redis.conf settings */
  extra?: Record<string, string | number>;
}

/** Redis's built-in snapshot points, the ones Debian's redis.conf leaves in force. */
export const DEFAULT_SAVE: string;
/** The redis-server binary ($REDIS_SERVER, else on PATH or in /usr/bin), or null when not installed. */
export function findRedisServer(): string | null;
/** Starts a throwaway redis-server on a free loopback port (never 6379); resolves once it answers PING. */
export function startRedis(opts?: RedisServerOptions): Promise<RedisServer>;
