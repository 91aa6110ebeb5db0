// The only importer of the compiled addon, and its hand-written interface.
// Durations cross in seconds, points in time in Unix seconds.
import bindings from 'bindings';

/** The configuration the native handler takes, fully validated by options.ts. */
export interface NativeConfig {
  servers: string[];
  table: string; // quoted identifier
  index: string; // quoted name of the expiry index
  housekeeping: string; // quoted name of the table recording GC/VACUUM runs
  sessionName: string;
  placement: 'rendezvous' | 'php';
  createTable: boolean;
  shortCircuit: boolean;
  keepExpired: boolean;
  failoverMode: boolean;
  maxLifetime: number;
  maxDataSize: number;
  connectTimeout: number;
  statementTimeout: number;
  retryMin: number;
  retryMax: number;
  gcInterval: number;
  vacuumInterval: number;
  maxBatch: number;
  connections: number;
  synchronousCommit: boolean;
}

export interface NativeRow {
  server: number;
  state: 'new' | 'existing' | 'expired';
  isNew: boolean;
  data: string;
  accesses: number;
  errors: number;
  warnings: number;
  notices: number;
  custom: string;
  created: number;
  modified: number;
  expires: number;
  addressCreated: string;
  addressModified: string;
}

/**
 * Makes the row of a read for the native core, which passes the fields in NativeRow's order: an
 * object literal built here costs a fraction of one built property by property through Node-API.
 */
export function nativeRow(
  server: number,
  state: NativeRow['state'],
  isNew: boolean,
  data: string,
  accesses: number,
  errors: number,
  warnings: number,
  notices: number,
  custom: string,
  created: number,
  modified: number,
  expires: number,
  addressCreated: string,
  addressModified: string,
): NativeRow {
  return {
    server,
    state,
    isNew,
    data,
    accesses,
    errors,
    warnings,
    notices,
    custom,
    created,
    modified,
    expires,
    addressCreated,
    addressModified,
  };
}

/** One GC or VACUUM run of this process on one server. */
export interface HousekeepingRun {
  /** Unix seconds it started. */
  at: number;
  /** Seconds it took. */
  duration: number;
  /** Rows removed (GC). */
  removed: number;
  error: string | null;
}

/**
 * What the handler found of a table on one server when it connected: `'created'` only when its
 * own DDL made it; `null` until checked.
 */
export type SetupFinding = 'existed' | 'created' | 'missing' | null;

export interface NativeServerStatus {
  id: number;
  server: string;
  state: 'up' | 'down' | 'connecting';
  since: number;
  operations: number;
  failures: number;
  lastError: { code: string; message: string } | null;
  /** The session table (created with its sess_expire index) and the housekeeping record table. */
  setup: { table: SetupFinding; housekeeping: SetupFinding };
  lastGc: HousekeepingRun | null;
  lastVacuum: HousekeepingRun | null;
}

export interface NativeStatus {
  servers: NativeServerStatus[];
  numberOfServers: number;
  failoverMode: boolean;
  shortCircuit: boolean;
  keepExpired: boolean;
  /** Seconds a session lives after its last write (whole seconds). */
  maxLifetime: number;
  placement: 'rendezvous' | 'php' | 'failover';
  table: string;
  inFlight: number;
  closed: boolean;
}

export interface NativeHandler {
  open(): Promise<void>;
  read(id: string): Promise<NativeRow>;
  /** Resolves false when the short circuit skipped the write. */
  write(
    id: string,
    data: string,
    address: string,
    expires: number | null,
    custom: string | null,
    errors: number,
    warnings: number,
    notices: number,
    message: string | null,
    baseline: string | null,
  ): Promise<boolean>;
  touch(id: string, expires: number | null): Promise<boolean>;
  destroy(id: string): Promise<boolean>;
  message(id: string): Promise<string>;
  gc(): Promise<number>;
  /** Resolves to the number of servers where VACUUM ran. */
  vacuum(): Promise<number>;
  stats(): Promise<Array<{ rows: number; expired: number; bytes: number } | { error: Error }>>;
  list(): Promise<Array<{ id: string; data: string }>>;
  clear(): Promise<number>;
  onEvent(listener: (name: string, payload: unknown) => void): void;
  status(): NativeStatus;
  order(id: string): number[];
  reset(): Promise<boolean>;
  close(): Promise<void>;
}

interface NativeModule {
  Handler: new (
    config: NativeConfig,
    errorClass: Function,
    makeRow: typeof nativeRow,
  ) => NativeHandler;
  inspectConninfo(entry: string): { redacted: string; identity: string };
  libpqVersion: number;
}

export const native: NativeModule = bindings('session_pgsql');
