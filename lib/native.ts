// The only importer of the compiled addon, and its hand-written interface.
// Durations cross in seconds, points in time in Unix seconds.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ErrorCode, SessionPgsqlError } from './errors';

/** The configuration the native handler takes, fully validated by options.ts. */
export interface NativeConfig {
  servers: string[];
  table: string; // quoted identifier
  index: string; // quoted name of the expiry index
  housekeeping: string; // quoted name of the table recording GC/VACUUM runs
  records: string; // quoted name of the table of what a server missed (next to housekeeping)
  sessionName: string;
  /** `'failover'` is the `failoverMode` option (list order for every id). */
  placement: 'rendezvous' | 'php' | 'failover';
  createTable: boolean;
  keepExpired: boolean;
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
  pooler: 'none' | 'transaction';
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
  /**
   * The host of the entry that the server's connections use while it is `'up'` (for a multi-host
   * entry, the one that was chosen; a Unix socket directory for a socket); `null` otherwise.
   */
  host: string | null;
  /** The port of that host while `'up'`; `null` otherwise. */
  port: number | null;
  since: number;
  operations: number;
  failures: number;
  lastError: { code: string; message: string } | null;
  /**
   * The session table, the housekeeping record table, the table's sess_version column
   * (`'created'`: added by this handler to an older table; `'missing'`: writes on this server
   * are not versioned) and its index on sess_expire (`'missing'` on a table made without it,
   * PostgreSQL 14 and later, whose GC walks the heap by ranges).
   */
  setup: {
    table: SetupFinding;
    housekeeping: SetupFinding;
    version: SetupFinding;
    index: SetupFinding;
    /**
     * The table of what other servers missed (`session_pgsql_records`); `'missing'` also when
     * this role may not read, add and delete there: nothing is recorded on this server.
     */
    records: SetupFinding;
  };
  lastGc: HousekeepingRun | null;
  lastVacuum: HousekeepingRun | null;
  /**
   * Revocations of a user's sessions (`destroySessionsOf`) that could not reach this server: this
   * process runs them there before the server is `'up'` again. The servers that were up keep a
   * record of them as well, which any process runs there before the server is `'up'`.
   */
  pendingRevocations: number;
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

/** One live session of a user, as the native core lists it (stored id: a reference under hashIds). */
export interface NativeUserSession {
  id: string;
  /** Index in `db` of the server holding the newest copy. */
  server: number;
  /** Unix seconds. */
  created: number;
  /** Unix seconds of the last write (`sess_modified`): last seen. */
  modified: number;
  /** Unix seconds. */
  expires: number;
  addressCreated: string;
  addressModified: string;
}

export interface NativeUserSessions {
  sessions: NativeUserSession[];
  /** Servers that could not be asked (down, or failed). */
  unreachable: number[];
}

export interface NativeRevocation {
  /** Sessions turned into tombstones (a session with copies on two servers counts once). */
  destroyed: number;
  /** Servers that could not be reached: the revocation waits for them (see pendingRevocations). */
  unreachable: number[];
  /** Of `unreachable`, the servers whose revocation a server that is up keeps a record of. */
  recorded: number[];
}

export interface NativeHandler {
  open(): Promise<void>;
  read(id: string): Promise<NativeRow>;
  /** Resolves true once stored (the short circuit is the facade's, decided before this). */
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
    /** The changed top-level keys, a JSON object merged over the stored one; null: whole. */
    patch: string | null,
    /** The removed top-level keys as a PostgreSQL text[] literal; null: none. */
    removed: string | null,
    /** What the writer read of the changed and removed keys, a JSON object; null: unknown. */
    read: string | null,
    /** The writer read the session live: a tombstone (a logout since) stays. */
    loaded: boolean,
    /** When the session was created as the writer read it, Unix seconds; null: now. */
    created: number | null,
  ): Promise<boolean>;
  touch(id: string, expires: number | null): Promise<boolean>;
  /** With `logout`, every server keeps a tombstone instead of deleting the row. */
  destroy(id: string, logout: boolean): Promise<boolean>;
  message(id: string): Promise<string>;
  gc(): Promise<number>;
  /** Resolves to the number of servers where VACUUM ran. */
  vacuum(): Promise<number>;
  stats(): Promise<Array<{ rows: number; expired: number; bytes: number } | { error: Error }>>;
  list(): Promise<Array<{ id: string; data: string }>>;
  clear(): Promise<number>;
  sessionsOf(user: string): Promise<NativeUserSessions>;
  destroySessionsOf(user: string, except: string[]): Promise<NativeRevocation>;
  onEvent(listener: (name: string, payload: unknown) => void): void;
  /** The status but `shortCircuit`, which the facade adds (a setting of its own). */
  status(): Omit<NativeStatus, 'shortCircuit'>;
  order(id: string): number[];
  reset(): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * @internal One operation of a batch, in the order sent, as its results left it: the input of
 * the native pipeline's settle decision (`Decide()` in native/pipeline.h). For tests only.
 */
export interface SettleOutcomeForTest {
  /** It has an error of its own. */
  error?: boolean;
  /** PostgreSQL skipped it after an earlier failure in its batch. */
  aborted?: boolean;
  /** Its error came at COMMIT, after its statements. */
  atCommit?: boolean;
  /** Operations after it that rode on its merged statement. */
  riders?: number;
}

/**
 * @internal What becomes of one operation when its batch ends: answered, sent again in its
 * place, sent again alone, or handed back to the server (the connection was lost). For tests.
 */
export type SettleDecisionForTest = 'settle' | 'retry' | 'alone' | 'handBack';

interface NativeModule {
  /**
   * Gives the addon, once per environment (the main thread, each worker), the class of the errors
   * it reports and the factory of the rows it reads; every handler uses them.
   */
  initialize(errorClass: typeof SessionPgsqlError, makeRow: typeof nativeRow): void;
  Handler: new (config: NativeConfig) => NativeHandler;
  inspectConninfo(entry: string): { redacted: string; identity: string };
  libpqVersion: number;
  /**
   * @internal Not part of the API: the pipeline's pure settle decision, reached by
   * test/05.pipeline.settle.test.ts without a server.
   */
  __settleForTest(batch: SettleOutcomeForTest[], end: 'sync' | 'lost'): SettleDecisionForTest[];
  /**
   * @internal Not part of the API: how GC finds expired rows on a server of that version
   * (`140000` for 14.0) whose table has, or lacks, an index on sess_expire, and whether a table
   * created there gets that index (test/30.housekeeping.gc.test.ts).
   */
  __gcPlanForTest(
    serverVersion: number,
    expiryIndex: boolean,
  ): { way: 'index' | 'ranges'; createsIndex: boolean };
}

const PACKAGE = 'session-pgsql';

/** Quotes a word for a POSIX shell when it needs it, so a printed command can be pasted. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

// The project whose package.json holds the install-script policy: the directory above the
// first node_modules in our path (npm keeps allowScripts at the root, workspaces included).
function projectDir(root: string): string | null {
  const parts = root.split(path.sep);
  const at = parts.indexOf('node_modules');
  return at > 0 ? parts.slice(0, at).join(path.sep) || path.sep : null;
}

// The allowScripts keys that deny our script: our name, a pinned `name@range`, or a spec
// that names us (npm keys a tarball or git dependency by its spec: `file:/…/session-pgsql-…tgz`).
function denials(project: string): string[] {
  let manifest: { allowScripts?: Record<string, unknown> };
  try {
    manifest = JSON.parse(fs.readFileSync(path.join(project, 'package.json'), 'utf8'));
  } catch {
    return [];
  }
  return Object.entries(manifest.allowScripts ?? {})
    .filter(([, value]) => value === false)
    .map(([key]) => key)
    .filter(
      (key) =>
        key === PACKAGE ||
        key.startsWith(`${PACKAGE}@`) ||
        (/[:/]/.test(key) && key.includes(PACKAGE)),
    );
}

function missingAddonMessage(root: string, file: string): string {
  const project = projectDir(root);
  if (project === null) {
    return (
      `${PACKAGE}: the native addon is not built (${file} does not exist). ` +
      `In a checkout, run \`npm install\` in ${root}; it needs a C++17 compiler, make, python3 ` +
      'and libpq >= 14 with its headers (Debian/Ubuntu: apt-get install build-essential python3 libpq-dev).'
    );
  }
  const denied = denials(project);
  const steps = [
    ...denied.map((key) => `npm pkg delete ${shellWord(`allowScripts[${key}]`)}`),
    `npm install-scripts approve ${PACKAGE}`,
    `npm rebuild ${PACKAGE}`,
  ];
  const why =
    denied.length > 0
      ? `${path.join(project, 'package.json')} denies its install script ` +
        `(allowScripts ${denied.map((key) => JSON.stringify(key)).join(', ')}: false), and ` +
        '`npm install-scripts approve` never overrides a denial. Remove the denial, approve the ' +
        'script and build the addon'
      : 'npm did not run its install script (not approved, or installed with --ignore-scripts), ' +
        'or the build failed. Approve the script (npm 11 and later) and build the addon';
  return (
    `${PACKAGE}: the native addon is not built (${file} does not exist). ${why}, in ${project}:\n` +
    steps.map((step) => `  ${step}\n`).join('') +
    'The build needs a C++17 compiler, make, python3 and libpq >= 14 with its headers ' +
    '(Debian/Ubuntu: apt-get install build-essential python3 libpq-dev); if it fails, npm prints why.'
  );
}

function unavailable(message: string, cause?: unknown): SessionPgsqlError {
  const err = new SessionPgsqlError(message, ErrorCode.AddonUnavailable);
  if (cause !== undefined) Object.defineProperty(err, 'cause', { value: cause });
  return err;
}

// Loads build/Release (what install builds) or else build/Debug (`npm run build:debug`), and
// turns each way it can fail into a message that says how to fix it. SPG_ADDON_PATH, for
// developers, names another build to load instead (`npm run test:asan`: the sanitizer build).
function loadAddon(): NativeModule {
  const root = path.resolve(__dirname, '..');
  const chosen = process.env.SPG_ADDON_PATH;
  const candidates = chosen
    ? [path.resolve(chosen)]
    : ['Release', 'Debug'].map((dir) => path.join(root, 'build', dir, 'session_pgsql.node'));
  const file = candidates.find((candidate) => fs.existsSync(candidate));
  if (file === undefined && chosen) {
    throw unavailable(`${PACKAGE}: SPG_ADDON_PATH names ${candidates[0]}, which does not exist`);
  }
  if (file === undefined) throw unavailable(missingAddonMessage(root, candidates[0]!));
  try {
    return require(file) as NativeModule;
  } catch (err) {
    throw unavailable(
      `${PACKAGE}: the native addon ${file} failed to load: ${(err as Error).message}\n` +
        'If the message names libpq.so.5, install libpq (Debian/Ubuntu: apt-get install libpq5). ' +
        'If the addon was built for another machine, Node.js or architecture (node_modules ' +
        `copied from elsewhere), build it here: npm rebuild ${PACKAGE}`,
      err,
    );
  }
}

/** The addon, its error class and row factory given (the only call of `initialize`). */
export const native: NativeModule = loadAddon();
native.initialize(SessionPgsqlError, nativeRow);
