// What the framework adapters share: owning or borrowing a handler, the ids
// frameworks hand us and their stored form, turning a framework's expiry into
// Unix seconds, and the JSON encoding of session objects.
import { ErrorCode, SessionPgsqlError } from './errors';
import { SessionPgsql, withAdapterId, type ReadContext, type WriteOptions } from './handler';
import { LONE_SURROGATE, type SessionPgsqlOptions } from './options';
import type { Session } from './session';
import type { UserOption } from './users';

/**
 * Loads a framework package that an adapter needs (an optional peer
 * dependency), with a message that says what to install when it is missing.
 */
export function requirePeer<T>(name: string, entry: string): T {
  try {
    return require(name) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
    throw new Error(`${entry} needs the ${name} package: npm install ${name}`);
  }
}

/** A handler to use, or the options of one the adapter creates, opens and closes. */
export type HandlerOrOptions = SessionPgsql | SessionPgsqlOptions;

export function adoptHandler(source: HandlerOrOptions): { handler: SessionPgsql; owned: boolean } {
  if (source instanceof SessionPgsql) return { handler: source, owned: false };
  const handler = new SessionPgsql(source);
  // Connect now so the first request does not wait and readiness events fire;
  // failures surface on the operations themselves (and as 'down' events).
  handler.open().catch(() => {});
  return { handler, owned: true };
}

/** The longest id an adapter takes, in characters (UTF-16 code units, as `String#length`). */
export const MAX_ID_LENGTH = 1024;
/**
 * The longest stored id in UTF-8 bytes. PostgreSQL's btree refuses an index
 * entry over 2704 bytes after compression: 1024 random three-byte characters
 * would pass the character bound and then fail on insert with SQLSTATE 54000.
 */
export const MAX_ID_BYTES = 2048;

// The first character of an escaped id. A verbatim id never contains it (one
// that does is escaped), so the two forms cannot collide.
const MARK = '\u0001';
// What a text column cannot hold losslessly: NUL, and a lone surrogate (UTF-8
// has no encoding for it, libpq would get U+FFFD). Plus MARK, so that in an
// escaped id every MARK starts an escape. Without the u flag, code units.
const UNSAFE = new RegExp(`[\\u0000\\u0001]|${LONE_SURROGATE}`, 'g');
const ESCAPE = /\u0001([0-9a-f]{4})/g;

function invalidId(message: string): SessionPgsqlError {
  return new SessionPgsqlError(message, ErrorCode.InvalidId);
}

/**
 * The `sess_id` of a framework's session id: the id itself (verbatim), unless
 * it contains NUL, U+0001 or a lone surrogate; then U+0001 followed by the id
 * with each of those characters written as U+0001 and four lowercase hex
 * digits. Injective, and {@link idFromStored} inverts it.
 * @throws SessionPgsqlError `SPG_INVALID_ID` for a non-string, an empty id, or
 *   one over {@link MAX_ID_LENGTH} characters or {@link MAX_ID_BYTES} bytes stored.
 */
export function storedId(id: unknown): string {
  if (typeof id !== 'string')
    throw invalidId(`Invalid session id (a ${typeof id}): expected a string`);
  if (id.length === 0) throw invalidId('Invalid session id: it is empty');
  if (id.length > MAX_ID_LENGTH) {
    throw invalidId(
      `Invalid session id of ${id.length} characters: at most ${MAX_ID_LENGTH} are allowed`,
    );
  }
  UNSAFE.lastIndex = 0;
  const stored = UNSAFE.test(id)
    ? MARK + id.replace(UNSAFE, (c) => MARK + c.charCodeAt(0).toString(16).padStart(4, '0'))
    : id;
  const bytes = Buffer.byteLength(stored, 'utf8');
  if (bytes > MAX_ID_BYTES) {
    throw invalidId(
      `Invalid session id of ${id.length} characters: it takes ${bytes} bytes stored, at most ${MAX_ID_BYTES} are allowed`,
    );
  }
  return stored;
}

/** The framework's id of a stored `sess_id` (the inverse of {@link storedId}). */
export function idFromStored(stored: string): string {
  if (!stored.startsWith(MARK)) return stored;
  return stored
    .slice(1)
    .replace(ESCAPE, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
}

// The handler's operations on a framework id: stored form, idPattern waived.
// An invalid id rejects (SPG_INVALID_ID) like any other failure.

export async function readId(
  handler: SessionPgsql,
  id: string,
  context?: ReadContext,
): Promise<Session> {
  const key = storedId(id);
  return withAdapterId(() => handler.read(key, context));
}

/** Writes by id, or through the Session this request read (which carries its own stored id). */
export async function writeId(
  handler: SessionPgsql,
  target: string | Session,
  data: string,
  options?: WriteOptions,
): Promise<boolean> {
  const key = typeof target === 'string' ? storedId(target) : target;
  return withAdapterId(() => handler.write(key, data, options));
}

export async function touchId(
  handler: SessionPgsql,
  id: string,
  expires?: number,
): Promise<boolean> {
  const key = storedId(id);
  return withAdapterId(() => handler.touch(key, expires));
}

/**
 * Logs a session out by id: its row becomes a tombstone on every server that is up, so a
 * request that read it before cannot store it again (see `DestroyOptions.logout`). An id no
 * session can have is nothing to destroy.
 */
export async function destroyId(handler: SessionPgsql, id: string): Promise<void> {
  let key: string;
  try {
    key = storedId(id);
  } catch {
    return;
  }
  await withAdapterId(() => handler.destroy(key, { logout: true }));
}

/** Options every framework adapter takes. */
export interface AdapterOptions {
  /**
   * Store what each request changed, not the whole session: the top-level keys it set or
   * removed relative to what it read, merged into the stored session in the write's one
   * statement. Two overlapping requests of one session that change different keys both keep
   * their change; of one key, the request whose write reaches the server last wins. `false`
   * writes the whole session (the last write wins for every key). Either way a logout is
   * never undone by a request that read the session before it. Default `true`.
   */
  mergeWrites?: boolean;
  /**
   * Where a session names its user, kept in `sess_custom` for `sessionsOf`/`destroySessionsOf`:
   * a key path such as `'passport.user'` or `'userId'`, or a function of the session object.
   */
  user?: UserOption;
}

/** `mergeWrites` checked (a boolean, default true). */
export function mergeWritesOf(options: AdapterOptions | undefined): boolean {
  const value = options?.mergeWrites ?? true;
  if (typeof value !== 'boolean') {
    throw new SessionPgsqlError(
      `Invalid option "mergeWrites": expected a boolean but received ${typeof value}`,
      ErrorCode.InvalidOption,
    );
  }
  return value;
}

/**
 * Whether `now` has the JSON of `was` (a value JSON.parse made), told by walking both: cheaper
 * than stringifying `was`. False where it cannot tell (a toJSON, NaN, a hole), and then the
 * caller compares the JSON itself: a key reported changed but unchanged would overwrite a
 * concurrent change of it.
 */
function sameValue(was: unknown, now: unknown): boolean {
  if (was === now) return true;
  if (typeof was !== 'object' || was === null || typeof now !== 'object' || now === null) {
    return false;
  }
  if (typeof (now as { toJSON?: unknown }).toJSON === 'function') return false;
  if (Array.isArray(now)) {
    if (!Array.isArray(was) || was.length !== now.length) return false;
    for (let i = 0; i < now.length; i++) if (!sameValue(was[i], now[i])) return false;
    return true;
  }
  if (Array.isArray(was)) return false;
  const before = was as Record<string, unknown>;
  const after = now as Record<string, unknown>;
  let count = 0;
  for (const key of Object.keys(after)) {
    const value = after[key];
    if (value === undefined || typeof value === 'function' || typeof value === 'symbol') continue;
    if (!Object.hasOwn(before, key) || !sameValue(before[key], value)) return false;
    count += 1;
  }
  return count === Object.keys(before).length;
}

/** A session to store: its JSON, and what changed since it was read (null: write it whole). */
export interface Encoded {
  data: string;
  merge: { changed: string; removed?: string[]; read: string } | null;
}

const JSON_OBJECT = /^\{/;

/**
 * The JSON of `session` (what `JSON.stringify` gives) and, given the stored JSON the request
 * read (`read`), the top-level keys that differ from it. Each value is stringified once, and
 * the whole text is put together from those pieces, so the diff costs the parse of what was
 * read and the stringify of the values read that are not primitives.
 */
export function encode(session: object, read: string | null): Encoded {
  const value = session as Record<string, unknown>;
  // An object with its own toJSON says what its JSON is: then whole.
  if (
    read === null ||
    typeof value !== 'object' ||
    value === null ||
    Array.isArray(value) ||
    typeof value.toJSON === 'function' ||
    !JSON_OBJECT.test(read)
  ) {
    return { data: JSON.stringify(session), merge: null };
  }
  const base = decode(read);
  if (base === null) return { data: JSON.stringify(session), merge: null };
  let data = '{';
  let changed = '{';
  let was = '{'; // what was read of the keys changed or removed (see WriteMerge.read)
  for (const key of Object.keys(value)) {
    const now = value[key];
    const piece = JSON.stringify(now);
    if (piece === undefined) continue; // undefined, a function: JSON leaves the key out
    const name = JSON.stringify(key);
    const entry = name + ':' + piece;
    data += data.length > 1 ? ',' + entry : entry;
    if (Object.hasOwn(base, key)) {
      // An equal primitive has the same JSON (JSON.parse makes no NaN; -0 and 0 are "0").
      if (now === base[key] || sameValue(base[key], now)) continue;
      const before = JSON.stringify(base[key]);
      if (before === piece) continue;
      was += (was.length > 1 ? ',' : '') + name + ':' + before;
    }
    changed += changed.length > 1 ? ',' + entry : entry;
  }
  const removed: string[] = [];
  for (const key of Object.keys(base)) {
    const now = value[key];
    if (now !== undefined && typeof now !== 'function' && typeof now !== 'symbol') {
      if (Object.hasOwn(value, key)) continue;
    }
    removed.push(key);
    was += (was.length > 1 ? ',' : '') + JSON.stringify(key) + ':' + JSON.stringify(base[key]);
  }
  const merge = { changed: changed + '}', read: was + '}' };
  return { data: data + '}', merge: removed.length > 0 ? { ...merge, removed } : merge };
}

/** Epoch milliseconds from a Date, an ISO string or epoch milliseconds; null when absent. */
export function toEpochMs(value: unknown): number | null {
  if (value === undefined || value === null || value === false) return null;
  const ms =
    value instanceof Date
      ? value.getTime()
      : typeof value === 'string'
        ? Date.parse(value)
        : Number(value);
  return Number.isFinite(ms) ? ms : null;
}

/**
 * The row expiry (whole Unix seconds, as the table keeps it) for an exact
 * expiry in ms: rounded up, so the row never ends before the framework's
 * expiry; the adapter refuses the session at the exact time itself. An expiry
 * before 1970 is stored as 0 (`expires` starts there): expired all the same.
 */
export function rowExpiry(ms: number): number {
  return Math.max(0, Math.ceil(ms / 1000));
}

/** True for errors that mean "no such session" to a framework: a malformed or foreign id. */
export function isNotFound(err: unknown): boolean {
  return err instanceof SessionPgsqlError && err.code === ErrorCode.InvalidId;
}

/** The stored JSON as an object, or null when it is empty or not a JSON object. */
export function decode(data: string): Record<string, unknown> | null {
  if (data === '') return null;
  try {
    const value: unknown = JSON.parse(data);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null; // corrupt or written by another application: start afresh
  }
}

/**
 * Settles an optional node-style callback from a promise; without one the
 * promise is returned (as connect-redis does). A returned promise never counts
 * as an unhandled rejection: express-session drops it (`req.session.destroy()`
 * with no callback), and that must not end the process. Await it to see a failure.
 */
export function settle<T>(
  promise: Promise<T>,
  callback?: (err: any, value?: T) => void,
): Promise<T> | void {
  if (!callback) {
    promise.catch(() => {});
    return promise;
  }
  promise.then(
    (value) => callback(null, value),
    (err) => callback(err),
  );
}
