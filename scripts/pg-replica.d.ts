// Types for scripts/pg-replica.js (plain CommonJS), so tests can import it.
import type { Cluster } from './pg-cluster';

export interface ReplicaPair {
  /** the temporary directory holding both servers */
  readonly root: string;
  readonly primary: Cluster;
  readonly standby: Cluster;
  /** `host=127.0.0.1,127.0.0.1 port=P1,P2 dbname=postgres user=postgres target_session_attrs=read-write` */
  readonly db: string;
  /** Runs one SQL text on `cluster` with psql; resolves with its unaligned output. */
  psql(cluster: Cluster, sql: string): Promise<string>;
  /** Crashes the primary (`pg_ctl stop -m immediate`). */
  kill(): Promise<void>;
  /** SIGSTOPs the primary's postmaster and every child; the returned function SIGCONTs them. */
  hang(): () => void;
  /** `pg_ctl promote -w` on the standby. */
  promote(): Promise<void>;
  /** Resumes anything hung, stops both servers, removes the directory. Idempotent. */
  stop(): Promise<void>;
}

export interface ReplicaOptions {
  /** The primary acknowledges a commit once the standby has flushed it. Default false. */
  synchronous?: boolean;
  /** As for startClusters (default true). */
  handleSignals?: boolean;
}

export function startReplicaPair(opts?: ReplicaOptions): Promise<ReplicaPair>;
