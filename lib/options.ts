// Validates and defaults the options once; every message names the option and
// shows the offending value. Only this file reads raw user options.
import { createHash, createHmac } from 'node:crypto';
import { describe, ErrorCode, SessionPgsqlError } from './errors';
import { native, type NativeConfig } from './native';

/** Options of {@link SessionPgsql}; every duration is in seconds. */
export interface SessionPgsqlOptions {
  /**
   * The servers: libpq conninfo strings (key=value or URI), one per server, either
   * `;`-separated in one string (a `;` inside a single-quoted value, or escaped as `\;`,
   * does not separate) or as an array of entries (each taken whole).
   */
  db?: string | readonly string[];
  /** Create the table (and its expiry index before PostgreSQL 14) when missing. Default `true`. */
  createTable?: boolean;
  /** Every session goes to the first live server in list order. Default `false`. */
  failoverMode?: boolean;
  /** Skip the write when the data is unchanged and nothing was forced. Default `false`. */
  shortCircuit?: boolean;
  /** Keep an expired row's metadata (counter, created, …). Default `false`. */
  keepExpired?: boolean;
  /** Seconds between GC runs per server; `0` disables. Default `3600`. */
  gcInterval?: number;
  /** Seconds between `VACUUM (ANALYZE)` runs per server; `0` disables. Default `21600`. */
  vacuumInterval?: number;
  /** Seconds a session lives after its last write. Default `1440`. */
  maxLifetime?: number;
  /** Stored in `sess_name` on insert. Default `'SID'`. */
  sessionName?: string;
  /** Table name, optionally schema-qualified (`schema.table`). Default `'php_session'`. */
  table?: string;
  /** `'rendezvous'` (default) or `'php'` (the original Σbytes(id) mod N). */
  placement?: 'rendezvous' | 'php';
  /** Valid session ids. Default: 16 to 256 of `[A-Za-z0-9_,-]`. */
  idPattern?: RegExp | string;
  /** Seconds to wait for a connection. Default `5`. */
  connectTimeout?: number;
  /** Seconds to wait for any statement. Default `5`. */
  statementTimeout?: number;
  /** Largest session data in bytes (UTF-8). Default `1048576`. */
  maxDataSize?: number;
  /** Seconds before the first reconnect attempt to a failed server. Default `0.1`. */
  retryMinDelay?: number;
  /** Upper bound of the reconnect backoff in seconds. Default `5`. */
  retryMaxDelay?: number;
  /**
   * Group commit: writes (and touches and destroys) waiting for the same
   * server while its previous batch commits go out together, at most this
   * many per round trip and commit; `1` makes each commit alone. Default `64`
   * (see the README's benchmark: one connection with group commit serves more
   * concurrent users than a pool of ten).
   */
  maxBatch?: number;
  /**
   * `false` lets commits return before they reach the disk: a server crash may
   * lose the last few hundred milliseconds of session writes (PostgreSQL's own
   * trade-off, `synchronous_commit = off`), never corrupt them. Default `true`.
   */
  synchronousCommit?: boolean;
  /**
   * Connections per server. Each operation takes the least busy one, except
   * that an operation on a session with operations pending follows them.
   * Default `1`.
   */
  connections?: number;
  /**
   * `'transaction'` for a connection pooler that may run each transaction on
   * another backend and cannot keep prepared statements or session settings
   * (PgBouncer before 1.21 in transaction pooling, RDS Proxy, Supavisor):
   * statements go unnamed with their text, still pipelined and group-committed,
   * and no session-level setting is made, so `statementTimeout` is then only
   * enforced by this process (not by the server) and `synchronousCommit: false`
   * is refused (set them on the role: see the docs on connection poolers).
   * `'none'` (default): direct connections, or session pooling.
   */
  pooler?: 'none' | 'transaction';
  /**
   * Store a hash of each session id instead of the id, so that ids read from the table (a
   * dump, a backup, a read-only SQL injection) cannot be replayed as cookies, and the
   * lookup no longer compares a client's id with stored ids. `true`: SHA-256 of the id,
   * stored as `sha256:` and 64 hex digits. `{ key }`: HMAC-SHA256 with that secret key (a
   * string or Buffer of at least 16 bytes, never shown), stored as `hmac:` and 64 hex
   * digits: a dump is then of no use without the key either. `transition: true` (with
   * either) also finds sessions stored under their raw id by a handler without hashIds,
   * for the time of the migration (see the docs' "Hashed ids"). Default `false`: tables
   * that PHP's session_pgsql shares hold raw ids. Changes placement: a table of raw ids
   * needs `npx session-pgsql migrate-ids`.
   */
  hashIds?: boolean | HashIdsOptions;
}

/** The object form of the `hashIds` option. */
export interface HashIdsOptions {
  /** HMAC-SHA256 key (at least 16 bytes); without it, plain SHA-256. */
  key?: string | Buffer;
  /** Also find sessions still stored under their raw id (during a migration). Default `false`. */
  transition?: boolean;
}

/**
 * @internal How the handler turns a checked session id into its stored key (`sess_id`):
 * the id itself, or its hash. The key material lives only in the closure of `stored`.
 */
export interface IdHashing {
  /** `'off'`, `'sha256'` or `'hmac'` (what status() shows; never the key). */
  mode: 'off' | 'sha256' | 'hmac';
  /** The stored key of a (checked) id. */
  stored(id: string): string;
  /** Also look sessions up by their raw id (migration). */
  transition: boolean;
}

/** The prefixes of hashed stored keys: a raw id from `idPattern`'s default never has a ':'. */
export const HASH_PREFIX = { sha256: 'sha256:', hmac: 'hmac:' } as const;

/** The shortest HMAC key in bytes. */
export const MIN_HASH_KEY_BYTES = 16;

/**
 * @internal The id hashing of a `hashIds` value.
 * @throws SessionPgsqlError `SPG_INVALID_OPTION`, never showing the key.
 */
export function idHashing(value: unknown): IdHashing {
  if (value === false) return { mode: 'off', stored: (id) => id, transition: false };
  if (value === true) return plainHashing(false);
  if (
    typeof value !== 'object' ||
    value === null ||
    Array.isArray(value) ||
    Buffer.isBuffer(value)
  ) {
    throw invalid(
      `Expected true, false or { key, transition } for "hashIds" but received ${
        typeof value === 'string' || Buffer.isBuffer(value)
          ? `a ${typeof value === 'string' ? 'string' : 'Buffer'} (pass the key as { key })`
          : show(value)
      }`,
    );
  }
  for (const name of Object.keys(value)) {
    if (name !== 'key' && name !== 'transition')
      throw invalid(`Unknown property "${name}" of "hashIds" (expected key, transition)`);
  }
  const { key, transition = false } = value as HashIdsOptions;
  if (typeof transition !== 'boolean') {
    throw invalid(`Expected a boolean for "hashIds.transition" but received ${show(transition)}`);
  }
  if (key === undefined) return plainHashing(transition);
  // The key is a secret: only its type and size are ever told.
  if (typeof key !== 'string' && !Buffer.isBuffer(key)) {
    throw invalid(`Expected a string or Buffer for "hashIds.key" but received a ${typeof key}`);
  }
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : Buffer.from(key);
  if (bytes.length < MIN_HASH_KEY_BYTES || (typeof key === 'string' && !wellFormed(key))) {
    throw invalid(
      `Expected "hashIds.key" of at least ${MIN_HASH_KEY_BYTES} bytes (a random secret, e.g. 32 ` +
        `bytes as hex or base64) but received one of ${bytes.length} bytes` +
        (typeof key === 'string' && !wellFormed(key) ? ' with a lone surrogate' : ''),
    );
  }
  return {
    mode: 'hmac',
    stored: (id) => HASH_PREFIX.hmac + createHmac('sha256', bytes).update(id).digest('hex'),
    transition,
  };
}

function plainHashing(transition: boolean): IdHashing {
  return {
    mode: 'sha256',
    stored: (id) => HASH_PREFIX.sha256 + createHash('sha256').update(id).digest('hex'),
    transition,
  };
}

/** @internal True when `stored` is a hashed key of either kind (what migrate-ids skips). */
export function isHashedKey(stored: string): boolean {
  return /^(?:sha256|hmac):[0-9a-f]{64}$/.test(stored);
}

// Test-only: the default of `hashIds` (test/support/hash-mode.ts sets it for
// `npm run test:hashed`, so that every handler of the suite hashes its ids). The product
// never reads the environment for it.
let hashIdsDefault: boolean | HashIdsOptions = false;
let observeDefault: ((id: string, stored: string) => void) | null = null;

/**
 * @internal Not part of the API: sets the default of `hashIds` for the handlers created
 * afterwards in this process (the test suite's hashed mode), and a function told each id such
 * a handler hashes (so the suite can find its rows by id). Returns the previous default.
 */
export function __setHashIdsDefaultForTest(
  value: boolean | HashIdsOptions,
  observe: ((id: string, stored: string) => void) | null = null,
): boolean | HashIdsOptions {
  const previous = hashIdsDefault;
  hashIdsDefault = value;
  observeDefault = observe;
  return previous;
}

function defaultHashing(): IdHashing {
  const ids = idHashing(hashIdsDefault);
  const observe = observeDefault;
  if (observe === null || ids.mode === 'off') return ids;
  return {
    ...ids,
    stored: (id) => {
      const stored = ids.stored(id);
      observe(id, stored);
      return stored;
    },
  };
}

export interface ResolvedOptions {
  native: NativeConfig;
  idPattern: RegExp;
  /** Stored keys of ids (`hashIds`). */
  ids: IdHashing;
  /** Decided by the facade alone (see SessionPgsql's write). */
  shortCircuit: boolean;
  /** Each `db` entry as messages and `info()` show it: key=value, secrets as `***`. */
  redacted: string[];
}

export const defaults = {
  db: 'host=localhost dbname=php_session user=nobody',
  createTable: true,
  failoverMode: false,
  shortCircuit: false,
  keepExpired: false,
  gcInterval: 3600,
  vacuumInterval: 21600,
  maxLifetime: 1440,
  sessionName: 'SID',
  table: 'php_session',
  placement: 'rendezvous',
  idPattern: /^[A-Za-z0-9_,-]{16,256}$/,
  connectTimeout: 5,
  statementTimeout: 5,
  maxDataSize: 1048576,
  retryMinDelay: 0.1,
  retryMaxDelay: 5,
  maxBatch: 64,
  synchronousCommit: true,
  connections: 1,
  pooler: 'none',
  hashIds: false,
} as const;

function invalid(message: string): SessionPgsqlError {
  return new SessionPgsqlError(message, ErrorCode.InvalidOption);
}

const show = describe;

/**
 * @internal True when `text` has no lone surrogate. UTF-8, and so PostgreSQL, has no encoding
 * for one: it would be stored as U+FFFD, so two strings would share one stored value.
 */
export function wellFormed(text: string): boolean {
  return (text as string & { isWellFormed(): boolean }).isWellFormed();
}

/**
 * @internal The pattern of a lone surrogate (half of a UTF-16 pair without its other half), as
 * a RegExp source over code units (no `u` flag); the adapters' id escaping uses it too.
 */
export const LONE_SURROGATE =
  '[\\uD800-\\uDBFF](?![\\uDC00-\\uDFFF])|(?<![\\uD800-\\uDBFF])[\\uDC00-\\uDFFF]';
const loneSurrogatePattern = new RegExp(LONE_SURROGATE);

/** @internal Says where `text`'s first lone surrogate is, never showing the text. */
export function loneSurrogate(text: string): string {
  const at = text.search(loneSurrogatePattern);
  return (
    `contains a lone surrogate (half of a UTF-16 pair) at index ${at}: PostgreSQL cannot store ` +
    'it (it would read back as U+FFFD); encode binary data (e.g. base64) before storing it'
  );
}

/**
 * The longest timer, in seconds: 2^31 - 1 ms, what PostgreSQL's `statement_timeout` (an int32
 * of milliseconds) and Node's `setTimeout` hold. The shortest is 1 ms: below it the native
 * core's whole milliseconds would be 0, which PostgreSQL reads as "no timeout". native/sql.h
 * keeps the same number as a guard (kMaxTimerSeconds; test 03 checks that they agree).
 */
export const MAX_TIMER_SECONDS = 2147483.647;
/** The shortest duration other than an allowed 0 (off), in seconds: 1 ms. */
export const MIN_TIMER_SECONDS = 0.001;
/**
 * The longest `maxLifetime`, in seconds (2^31 - 1, about 68 years): now plus it stays far
 * inside `expires`' range, and GC tells a tombstone (negative expiry, at most now plus a
 * lifetime below zero) from a corrupt row by it. native/sql.h keeps the same number
 * (kMaxLifetime; test 03 checks that they agree).
 */
export const MAX_LIFETIME_SECONDS = 2147483647;
/**
 * The largest `expires` of a write or touch, in Unix seconds: 8.64e15 ms, the last instant a
 * JS `Date` holds. The row keeps a bigint; within this range every Date's expiry fits, and so
 * does any arithmetic on it (GC subtracts, a tombstone negates). native/sql.h keeps the same
 * number as a guard (kMaxExpires; test 03 checks that they agree).
 */
export const MAX_EXPIRES = 8.64e12;

function boolean(
  options: SessionPgsqlOptions,
  key: keyof typeof defaults & keyof SessionPgsqlOptions,
): boolean {
  const value = options[key] ?? defaults[key];
  if (typeof value !== 'boolean')
    throw invalid(`Expected a boolean for "${key}" but received ${show(value)}`);
  return value;
}

/**
 * @internal A duration option in seconds: finite, from 1 ms (or exactly 0 where `allowZero`:
 * off) to `max`. The native core turns it into whole milliseconds (timers) or seconds (lifetime).
 * @throws SessionPgsqlError `SPG_INVALID_OPTION` naming `key` and the range.
 */
export function checkSeconds(
  key: string,
  value: unknown,
  allowZero: boolean,
  max = MAX_TIMER_SECONDS,
): number {
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    !(value === 0 ? allowZero : value >= MIN_TIMER_SECONDS && value <= max)
  ) {
    const range = `${allowZero ? '0 (off) or ' : ''}a number of seconds from ${MIN_TIMER_SECONDS} to ${max}`;
    throw invalid(`Expected ${range} for "${key}" but received ${show(value)}`);
  }
  return value;
}

function seconds(
  options: SessionPgsqlOptions,
  key: keyof typeof defaults & keyof SessionPgsqlOptions,
  allowZero: boolean,
  max = MAX_TIMER_SECONDS,
): number {
  return checkSeconds(key, options[key] ?? defaults[key], allowZero, max);
}

/** The longest prefix of `text` within `bytes` UTF-8 bytes, never splitting a character. */
function truncateBytes(text: string, bytes: number): string {
  let out = '';
  for (const ch of text) {
    if (Buffer.byteLength(out + ch) > bytes) break;
    out += ch;
  }
  return out;
}

/** Quotes an SQL identifier: `"` doubled, the whole wrapped in `"`. */
function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function tableNames(value: unknown): {
  table: string;
  index: string;
  housekeeping: string;
  records: string;
} {
  if (typeof value !== 'string')
    throw invalid(`Expected a string for "table" but received ${show(value)}`);
  const parts = value.split('.');
  const valid =
    parts.length <= 2 &&
    parts.every(
      (p) => p.length > 0 && Buffer.byteLength(p) <= 63 && !p.includes('\0') && wellFormed(p),
    );
  if (!valid) {
    throw invalid(
      `Expected "table" as name or schema.name (each 1 to 63 bytes, no NUL or lone surrogate) but received ${show(value)}`,
    );
  }
  const name = parts[parts.length - 1]!;
  // Identifiers stop at 63 bytes: a long name keeps a prefix plus a hash of the
  // whole, so two long names sharing a prefix still get distinct indexes.
  let index = `${name}_expire_idx`;
  if (Buffer.byteLength(index) > 63) {
    const hash = createHash('sha1').update(name).digest('hex').slice(0, 8);
    index = `${truncateBytes(name, 63 - '_expire_idx'.length - 9)}_${hash}_expire_idx`;
  }
  const schema = parts.length === 2 ? `${quoteIdentifier(parts[0]!)}.` : '';
  return {
    table: parts.map(quoteIdentifier).join('.'),
    index: quoteIdentifier(index),
    housekeeping: `${schema}${quoteIdentifier('session_pgsql_housekeeping')}`,
    records: `${schema}${quoteIdentifier('session_pgsql_records')}`,
  };
}

/**
 * Splits a `db` string into its entries at each `;` that is outside a value: not inside a
 * single-quoted value (libpq's quoting: `'…'` with `\'` and `\\` escapes), not escaped
 * as `\;`. A URI entry (`postgresql://…`) has no quoting: it ends at the next `;` (a `;`
 * in its password is written `%3B`). Mirrors the scan of libpq's conninfo parser, so a
 * quoted password may hold any character.
 */
export function splitConninfo(text: string): string[] {
  const entries: string[] = [];
  const space = (c: string | undefined): boolean => c !== undefined && /[ \t\n\v\f\r]/.test(c);
  let i = 0;
  let start = 0;
  const end = (): void => {
    entries.push(text.slice(start, i).trim());
    start = ++i;
  };
  while (i <= text.length) {
    while (space(text[i])) i++;
    if (/^postgres(?:ql)?:\/\//.test(text.slice(i, i + 13))) {
      const semicolon = text.indexOf(';', i);
      i = semicolon === -1 ? text.length : semicolon;
      end();
      continue;
    }
    for (;;) {
      const c = text[i];
      if (c === undefined || c === ';') break;
      if (space(c)) {
        i++;
        continue;
      }
      // A keyword runs to "=" or white space; libpq reports one without "=".
      while (text[i] !== undefined && text[i] !== '=' && text[i] !== ';' && !space(text[i])) i++;
      while (space(text[i])) i++;
      if (text[i] !== '=') continue;
      i++;
      while (space(text[i])) i++;
      if (text[i] === "'") {
        // Up to the closing quote, or the end of the text when there is none (one
        // unparsable entry, reported without its text).
        for (i++; i < text.length && text[i] !== "'"; i++) if (text[i] === '\\') i++;
        i = Math.min(i + 1, text.length);
      } else {
        while (text[i] !== undefined && text[i] !== ';' && !space(text[i])) {
          i += text[i] === '\\' ? 2 : 1;
        }
        i = Math.min(i, text.length);
      }
    }
    end();
  }
  return entries;
}

// What is wrong with an entry libpq cannot parse, in general terms: its message quotes parts
// of the entry, and any part may be (or hold) a password.
function conninfoProblem(libpqMessage: string): string {
  const problems: Array<[RegExp, string]> = [
    [/unterminated quoted string/, "a quoted value has no closing '"],
    [/missing "=" after/, 'a word has no "=" (expected keyword=value pairs)'],
    [/invalid connection option|invalid URI query parameter/, 'an unknown connection option'],
    [/percent-encoded|forbidden value %00/, 'a malformed %-escape'],
    [/IPv6 host address/, 'an unterminated IPv6 host address'],
    [/URI|unexpected spec/, 'a malformed URI'],
  ];
  const found = problems.find(([pattern]) => pattern.test(libpqMessage));
  return found ? found[1] : 'libpq cannot parse it';
}

/**
 * Whether a URI entry has an "@" where libpq does not take it as the end of the user info:
 * libpq ends the user info at the first "@" before any "/", so an "@" or a "/" in a password
 * written as is puts the rest of the password in the host, port or database name, which are
 * shown (status(), messages). Such an entry is refused rather than shown.
 */
function strayAt(entry: string): boolean {
  const scheme = /^postgres(?:ql)?:\/\//.exec(entry);
  if (scheme === null) return false;
  const rest = entry.slice(scheme[0].length);
  const at = rest.indexOf('@');
  const slash = rest.indexOf('/');
  const hasUserInfo = at !== -1 && (slash === -1 || at < slash);
  const after = hasUserInfo ? rest.slice(at + 1) : rest;
  const query = after.indexOf('?');
  return (query === -1 ? after : after.slice(0, query)).includes('@');
}

/** The `db` entries, each checked by libpq's parser, and their redacted forms. */
function serverList(value: unknown): { servers: string[]; redacted: string[] } {
  let entries: string[];
  if (typeof value === 'string') {
    entries = splitConninfo(value);
  } else if (Array.isArray(value) && value.length > 0) {
    entries = value.map((entry: unknown, i) => {
      if (typeof entry !== 'string') {
        throw invalid(
          `Expected a string for "db" entry ${i} (counting from 0) but received ${show(entry)}`,
        );
      }
      return entry.trim();
    });
  } else {
    throw invalid(
      `Expected a string or a non-empty array of strings for "db" but received ${show(value)}`,
    );
  }
  const redacted = entries.map((entry, i) => {
    if (entry === '') {
      throw invalid(
        `"db" entry ${i} (counting from 0) is empty: remove the extra ";" (received ${entries.length} entries)`,
      );
    }
    if (strayAt(entry)) {
      throw invalid(
        `"db" entry ${i} (counting from 0) is a URI with an "@" that libpq would not read as the ` +
          'end of the user name and password: in a URI, write "@" as %40 and "/" as %2F in them',
      );
    }
    try {
      return native.inspectConninfo(entry).redacted;
    } catch (err) {
      // Nothing of the entry is shown: an unparsable entry may hold a password anywhere.
      throw invalid(
        `"db" entry ${i} (counting from 0) is not a valid libpq connection string: ` +
          `${conninfoProblem((err as Error).message)}; a value holding spaces, ";" or "'" is ` +
          `written in single quotes, with ' and \\ escaped by a backslash`,
      );
    }
  });
  return { servers: entries, redacted };
}

function pattern(value: unknown): RegExp {
  const re = typeof value === 'string' ? safeRegExp(value) : value;
  if (!(re instanceof RegExp) || re.global || re.sticky) {
    throw invalid(
      `Expected a RegExp (without g or y flags) for "idPattern" but received ${show(value)}`,
    );
  }
  return re;
}

function safeRegExp(source: string): RegExp | string {
  try {
    return new RegExp(source);
  } catch {
    return source;
  }
}

/**
 * Validates `options` and fills in the defaults.
 * @throws SessionPgsqlError `SPG_INVALID_OPTION` naming the option and value.
 */
export function resolveOptions(options: SessionPgsqlOptions = {}): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw invalid(`Expected an options object but received ${show(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!Object.hasOwn(defaults, key)) throw invalid(`Unknown option "${key}"`);
  }
  const placement = options.placement ?? defaults.placement;
  if (placement !== 'rendezvous' && placement !== 'php') {
    throw invalid(`Expected "rendezvous" or "php" for "placement" but received ${show(placement)}`);
  }
  const sessionName = options.sessionName ?? defaults.sessionName;
  if (typeof sessionName !== 'string' || sessionName.includes('\0') || !wellFormed(sessionName)) {
    throw invalid(
      `Expected a string without NUL characters or lone surrogates for "sessionName" but received ${show(sessionName)}`,
    );
  }
  const maxDataSize = options.maxDataSize ?? defaults.maxDataSize;
  if (!Number.isSafeInteger(maxDataSize) || maxDataSize <= 0) {
    throw invalid(
      `Expected a positive integer for "maxDataSize" but received ${show(maxDataSize)}`,
    );
  }
  const maxBatch = options.maxBatch ?? defaults.maxBatch;
  if (!Number.isSafeInteger(maxBatch) || maxBatch < 1 || maxBatch > 10000) {
    throw invalid(
      `Expected an integer from 1 to 10000 for "maxBatch" but received ${show(maxBatch)}`,
    );
  }
  const connections = options.connections ?? defaults.connections;
  if (!Number.isSafeInteger(connections) || connections < 1 || connections > 64) {
    throw invalid(
      `Expected an integer from 1 to 64 for "connections" but received ${show(connections)}`,
    );
  }
  const retryMin = seconds(options, 'retryMinDelay', false);
  const retryMax = seconds(options, 'retryMaxDelay', false);
  if (retryMax < retryMin) {
    throw invalid(
      `Expected "retryMaxDelay" >= "retryMinDelay" (${retryMin}) but received ${show(retryMax)}`,
    );
  }
  const pooler = options.pooler ?? defaults.pooler;
  if (pooler !== 'none' && pooler !== 'transaction') {
    throw invalid(`Expected "none" or "transaction" for "pooler" but received ${show(pooler)}`);
  }
  const synchronousCommit = boolean(options, 'synchronousCommit');
  if (pooler === 'transaction' && !synchronousCommit) {
    // why: it is a session setting, which a transaction pooler would leave on
    // its backend for other clients; silently ignoring it would hide the loss.
    throw invalid(
      `"synchronousCommit": false needs a session setting, which "pooler": "transaction" cannot make: ` +
        `leave it true and set it on the database role instead (ALTER ROLE ... SET synchronous_commit = off)`,
    );
  }
  const { table, index, housekeeping, records } = tableNames(options.table ?? defaults.table);
  const { servers, redacted } = serverList(options.db ?? defaults.db);
  const createTable = boolean(options, 'createTable');
  const shortCircuit = boolean(options, 'shortCircuit');
  const keepExpired = boolean(options, 'keepExpired');
  // failoverMode is a placement of its own: list order for every id.
  const failoverMode = boolean(options, 'failoverMode');
  return {
    native: {
      servers,
      table,
      index,
      housekeeping,
      records,
      sessionName,
      placement: failoverMode ? 'failover' : placement,
      createTable,
      keepExpired,
      maxLifetime: seconds(options, 'maxLifetime', false, MAX_LIFETIME_SECONDS),
      maxDataSize,
      connectTimeout: seconds(options, 'connectTimeout', false),
      statementTimeout: seconds(options, 'statementTimeout', false),
      retryMin,
      retryMax,
      gcInterval: seconds(options, 'gcInterval', true),
      vacuumInterval: seconds(options, 'vacuumInterval', true),
      maxBatch,
      connections,
      synchronousCommit,
      pooler,
    },
    idPattern: pattern(options.idPattern ?? defaults.idPattern),
    ids: options.hashIds === undefined ? defaultHashing() : idHashing(options.hashIds),
    shortCircuit,
    redacted,
  };
}
