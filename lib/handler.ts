import { EventEmitter } from 'node:events';
import { describe, ErrorCode, SessionPgsqlError } from './errors';
import { native, type NativeHandler, type NativeStatus } from './native';
import {
  resolveOptions,
  isHashedKey,
  loneSurrogate,
  wellFormed,
  MAX_EXPIRES,
  type ResolvedOptions,
  type SessionPgsqlOptions,
} from './options';
import { Session, type SessionOwner } from './session';
import { requiredUser } from './users';

/** Per-request context of `read()`. */
export interface ReadContext {
  /** The client's address (e.g. `req.ip`), stored in `sess_addr_created`/`sess_addr_modified`. */
  address?: string;
}

/** Options of `write()`. */
export interface WriteOptions {
  /**
   * Absolute expiry in Unix seconds, from 0 to 8.64e12 (the range of a JS `Date` from 1970),
   * rounded to whole seconds; default now + `maxLifetime` (database clock).
   */
  expires?: number;
  /** The client's address; for a Session, defaults to the address it was read with. */
  address?: string;
  /**
   * The custom field (`sess_custom`) to store; default: the stored one is kept (for a Session,
   * what `setField` set). Given for a Session and different from its field, it is `setField`.
   */
  custom?: string;
  /**
   * Store what this request changed instead of replacing the stored data: `changed`, a JSON
   * object of the top-level keys it set, is merged over the stored JSON object after the
   * `removed` keys are taken out, in the write's one statement. So two requests of one session
   * that change different keys both keep theirs; of one key, the write issued last wins
   * (see `read`). `data` (the whole new object) is still what an insert stores: where no live row is,
   * where the stored data is no JSON object (then this write is sent again without the patch
   * if the server refused it as invalid JSON), and it is the data a Session then holds.
   * @example await handler.write(s, JSON.stringify(next), { merge: { changed: '{"theme":"dark"}', removed: ['draft'] } })
   */
  merge?: WriteMerge;
  /**
   * Whether the writer read this session live. Such a write never replaces a logout's
   * tombstone (see {@link DestroyOptions.logout}): a request that started before the logout
   * cannot store the session again. Default: for a Session, whether it was read live (or
   * since written); for an id, `false` (a plain upsert, which replaces a tombstone).
   */
  loaded?: boolean;
  /**
   * With `loaded`: when the session was created, in Unix seconds, as the writer read it
   * (`Session#info().created`). A row this write stores anew keeps it, so a copy stored on a
   * server standing in for the session's home during an outage is still known for the session
   * a logout ended, and cannot bring it back when home returns. Default: for a Session read
   * live, its created time; else none (the row is created now).
   */
  created?: number;
}

/** What `WriteOptions.merge` holds: the top-level keys a request changed. */
export interface WriteMerge {
  /** A JSON object of the keys set (added or changed), with their new values. */
  changed: string;
  /** Top-level keys removed. */
  removed?: readonly string[];
  /**
   * A JSON object of the values the request read of the keys it changed or removed (a key
   * it added is absent). Writes are ordered by the version each gets when issued: a write run
   * after one issued later (two processes, or two connections, racing) is stale. A stale
   * write with `read` still stores each of its keys that nobody changed since it was read,
   * so concurrent requests of one session in several processes keep each other's keys; without
   * `read` it stores no data, as a stale whole write.
   */
  read?: string;
}

/** Options of `destroy()`. */
export interface DestroyOptions {
  /**
   * A logout: every server that is up keeps a tombstone (an empty row that reads as expired
   * everywhere, removed by GC once the session's lifetime is over) instead of no row, so a
   * write of a request that read the session before (see {@link WriteOptions.loaded}) cannot
   * store it again, on any server, a server that was down during the logout excepted. The
   * framework adapters' destroy does this. Resolves `true` once the tombstone is stored.
   */
  logout?: boolean;
}

/** One live session of a user, as `sessionsOf` lists it. */
export interface UserSession {
  /** The stored id (under `hashIds`, a reference that names the session but is no cookie). */
  id: string;
  /** Whether this is the session named by the `current` option. */
  current: boolean;
  /** Index in `db` of the server holding it (the newest copy, during an outage). */
  server: number;
  /** Unix seconds: when it was created. */
  created: number;
  /** Unix seconds: its last write (`sess_modified`). */
  lastSeen: number;
  /** Unix seconds: when it expires. */
  expires: number;
  /** The address it was created from (`''`: unknown). */
  addressCreated: string;
  /** The address of its last write that had one (`''`: none since it was created). */
  addressModified: string;
}

/** What `sessionsOf` resolves to. */
export interface UserSessions {
  /** The user's live sessions, most recently seen first. */
  sessions: UserSession[];
  /** Servers that could not be asked (down, or failed): their sessions are not listed. */
  unreachable: number[];
}

/** Options of `sessionsOf`. */
export interface SessionsOfOptions {
  /** The session id of the caller's own session: its entry has `current: true`. */
  current?: string;
}

/** Options of `destroySessionsOf`. */
export interface DestroySessionsOfOptions {
  /** Session ids to spare (the caller's own session, for "log out everywhere else"). */
  except?: readonly string[];
}

/** What `destroySessionsOf` resolves to. */
export interface Revocation {
  /** Sessions logged out (a session with copies on two servers counts once). */
  destroyed: number;
  /**
   * Servers that could not be reached. This handler revokes the user's sessions there before
   * such a server is used again (`status().servers[i].pendingRevocations`), and so does any
   * process that opens it, for the servers listed in `recorded`. Until then the sessions there
   * are not revoked: see docs/operations.md, A user's sessions.
   */
  unreachable: number[];
  /**
   * Of `unreachable`, the servers for which the revocation is recorded on a server that was up
   * (in the same transaction as the revocation there): it runs on them before they are `'up'`
   * again in any process, even once this one has ended. A server missing here is revoked only by
   * this process, if it is still running when the server returns.
   */
  recorded: number[];
}

/** What `status()` returns (the original `session_pgsql_status()`). */
export interface Status extends NativeStatus {
  /** How ids are stored (`hashIds`): `'off'` (raw), `'sha256'` or `'hmac'`; never the key. */
  hashIds: 'off' | 'sha256' | 'hmac';
}

// Set only while an adapter's call starts: the id was checked by the adapter
// (any framework id, bounded, see adapter.ts), so idPattern is not applied to
// it. Every method checks its id before its first await, so the flag is seen
// by that call alone.
let adapterCall = false;

/**
 * @internal Runs `call` (one handler method call) with `idPattern` waived for
 * its id: the framework adapters take any id the framework hands them, after
 * their own check. Direct callers of the handler keep `idPattern`.
 */
export function withAdapterId<T>(call: () => T): T {
  adapterCall = true;
  try {
    return call();
  } finally {
    adapterCall = false;
  }
}

/**
 * A PostgreSQL session handler over one or more servers.
 *
 * @example
 * const handler = new SessionPgsql({ db: 'host=/run/postgresql dbname=app' })
 * await handler.open()
 * const s = await handler.read(id, { address: req.ip })
 * await handler.write(s, s.data + '!')
 *
 * @throws SessionPgsqlError `SPG_INVALID_OPTION` from the constructor.
 */
export class SessionPgsql extends EventEmitter {
  readonly #options: ResolvedOptions;
  readonly #native: NativeHandler;
  readonly #owner: SessionOwner;
  // Set as close() starts, as the native core's own flag is.
  #closing = false;

  constructor(options: SessionPgsqlOptions = {}) {
    super();
    this.#options = resolveOptions(options);
    this.#native = new native.Handler(this.#options.native);
    this.#native.onEvent((name, payload) => {
      // why: the native core calls this in the middle of its own work (a
      // server failing, its operations being resent or settled). Emitting on
      // the next tick keeps listeners out of it: one that throws raises an
      // uncaught exception once, as for any EventEmitter, instead of leaving a
      // pending exception that stops promises from settling; one that calls
      // reset() or close() finds the core in a consistent state. Ticks keep
      // the events in order.
      process.nextTick(() => {
        // A problem that fails no operation (e.g. no right to VACUUM): an event,
        // or a process warning when nobody listens.
        if (name === 'warning' && this.listenerCount('warning') === 0) {
          process.emitWarning(payload as Error);
        } else {
          this.emit(name, payload);
        }
      });
    });
    const servers = this.#options.redacted;
    this.#owner = {
      message: (id) => this.#native.message(id),
      describeServer: (index) => servers[index] ?? '',
    };
  }

  /**
   * Connects to every server and creates the table where it is missing.
   * Resolves once at least one server is usable; idempotent. Other methods
   * connect on first use, so calling it is optional but surfaces errors early.
   * @throws SessionPgsqlError `SPG_CONNECT_FAILED`, `SPG_CONNECT_TIMEOUT`, `SPG_READ_ONLY` (a
   *   standby), `SPG_TABLE_MISSING`, `SPG_TABLE_INVALID`, `SPG_NO_SERVER` (several servers, none
   *   usable), `SPG_CLOSED`, a SQLSTATE.
   */
  async open(): Promise<void> {
    try {
      await this.#native.open();
    } catch (err) {
      throw callerStack(err);
    }
  }

  /**
   * Reads a session: always resolves to a Session (new, existing or expired).
   * @example const s = await handler.read(req.sessionID, { address: req.ip })
   * @throws SessionPgsqlError `SPG_INVALID_ID`, `SPG_INVALID_ARGUMENT`, `SPG_NO_SERVER`, `SPG_CONNECTION_LOST`, `SPG_TIMEOUT`, `SPG_CLOSED`.
   */
  async read(id: string, context: ReadContext = {}): Promise<Session> {
    const key = this.#key(id);
    const address = checkAddress(fields(context, 'read context').address ?? '');
    try {
      const row = await this.#native.read(key);
      // A migration in progress: a session no row has under its hash may still be under its
      // raw id (an expired row or a tombstone under the hash is an answer: not looked past).
      // Found there, it is written back under the hash, with its custom field (the write
      // inserts there: its counter and created time start again).
      if (row.state === 'new' && this.#options.ids.transition) {
        const old = await this.#native.read(id);
        if (old.state !== 'new') {
          const found = new Session(this.#owner, id, key, address, old, id);
          if (old.custom !== '') found.setField(old.custom);
          return found;
        }
      }
      return new Session(this.#owner, id, key, address, row);
    } catch (err) {
      throw callerStack(err);
    }
  }

  /**
   * Stores session data. Given a Session, it carries that request's custom
   * field, errors and address, and the short circuit may skip an unchanged
   * write; given an id, it is a plain upsert. Resolves `true` when stored,
   * `false` when the short circuit skipped it.
   * @example await handler.write(session, newData)
   * @example await handler.write(id, data, { expires: Date.now() / 1000 + 3600 })
   * @throws SessionPgsqlError `SPG_INVALID_ID`, `SPG_DATA_TOO_LARGE`, `SPG_DATA_HAS_NUL`,
   *   `SPG_INVALID_ARGUMENT`, `SPG_NO_SERVER`, `SPG_CONNECTION_LOST`, `SPG_TIMEOUT`, `SPG_CLOSED`, a SQLSTATE.
   */
  async write(
    session: Session | string,
    data: string,
    options: WriteOptions = {},
  ): Promise<boolean> {
    // A Session read by this handler carries its stored key: its id is checked again, but
    // hashed once per request.
    const key =
      session instanceof Session
        ? this.#key(session.id, session.keyFor(this.#owner))
        : this.#key(session);
    if (typeof data !== 'string')
      throw argument(`Expected a string for "data" but received ${describe(data)}`);
    if (!wellFormed(data)) throw argument(`Session data ${loneSurrogate(data)}`);
    const given = fields(options, 'write options');
    const expires = checkExpires(given.expires);
    const address = checkAddress(
      given.address ?? (session instanceof Session ? session.address : ''),
    );
    const custom = checkCustom(given.custom);
    if (session instanceof Session && custom !== null && custom !== session.getField()) {
      session.setField(custom);
    }
    const merge = checkMerge(given.merge);
    const live = session instanceof Session && !session.isNew && !session.expired;
    const loaded = given.loaded === undefined ? live : checkLoaded(given.loaded);
    // A Session stored since it was read new knows no created time (0): its row has one.
    const createdRead = session instanceof Session && live ? session.info().created || null : null;
    const created = loaded ? (checkUnixSeconds('created', given.created) ?? createdRead) : null;
    try {
      if (!(session instanceof Session)) {
        return await this.#patched(merge, (patch, removed, read) =>
          this.#native.write(
            key,
            data,
            address,
            expires,
            custom,
            0,
            0,
            0,
            null,
            patch,
            removed,
            read,
            loaded,
            created,
          ),
        );
      }
      if (this.#shortCircuits(session, data, merge)) return false;
      const c = session.changes();
      const stored = await this.#patched(merge, (patch, removed, read) =>
        this.#native.write(
          key,
          data,
          address,
          expires,
          c.custom,
          c.errors,
          c.warnings,
          c.notices,
          c.message,
          patch,
          removed,
          read,
          loaded,
          created,
        ),
      );
      session.written(data, stored);
      return stored;
    } catch (err) {
      throw callerStack(err);
    }
  }

  /**
   * Sends a write with its patch; where the server refuses it as invalid data (a data
   * exception, SQLSTATE class 22: stored text that starts like a JSON object but is none, or
   * JSON that `jsonb` cannot hold, such as `\u0000`), once more whole.
   */
  async #patched(
    merge: CheckedMerge | null,
    send: (patch: string | null, removed: string | null, read: string | null) => Promise<boolean>,
  ): Promise<boolean> {
    if (merge === null) return send(null, null, null);
    try {
      return await send(merge.changed, merge.removed, merge.read);
    } catch (err) {
      if (!(err instanceof SessionPgsqlError) || !err.code.startsWith('22')) throw err;
      return send(null, null, null);
    }
  }

  /**
   * Refreshes a live session's expiry without rewriting it. Resolves `false`
   * when there is no live session with that id.
   * @throws SessionPgsqlError `SPG_INVALID_ID`, `SPG_INVALID_ARGUMENT`, `SPG_NO_SERVER`, `SPG_CLOSED`.
   */
  async touch(id: string, expires?: number): Promise<boolean> {
    const key = this.#key(id);
    const at = checkExpires(expires);
    try {
      const touched = await this.#native.touch(key, at);
      if (touched || !this.#options.ids.transition) return touched;
      return await this.#native.touch(id, at);
    } catch (err) {
      throw callerStack(err);
    }
  }

  /**
   * Deletes a session. Resolves `true` when a row was removed (with `logout`: once its
   * tombstone is stored).
   * @example await handler.destroy(id, { logout: true })
   * @throws SessionPgsqlError `SPG_INVALID_ID`, `SPG_INVALID_ARGUMENT`, `SPG_NO_SERVER`, `SPG_CLOSED`.
   */
  async destroy(id: string, options: DestroyOptions = {}): Promise<boolean> {
    const key = this.#key(id);
    const logout = fields(options, 'destroy options').logout ?? false;
    if (typeof logout !== 'boolean')
      throw argument(`Expected a boolean for "logout" but received ${describe(logout)}`);
    try {
      if (!this.#options.ids.transition) return await this.#native.destroy(key, logout);
      // During a migration a session may have rows under both forms: a logout removes both,
      // so the migration cannot bring back the raw one. The raw row goes without a tombstone,
      // which would store the raw id again; the hashed key's tombstone is the logout.
      const [hashed, raw] = await Promise.all([
        this.#native.destroy(key, logout),
        this.#native.destroy(id, false),
      ]);
      return hashed || raw;
    } catch (err) {
      throw callerStack(err);
    }
  }

  /**
   * Runs garbage collection now on every live server; resolves to the number
   * of rows removed.
   * @throws SessionPgsqlError `SPG_NO_SERVER`, `SPG_CLOSED`, a SQLSTATE.
   */
  async gc(): Promise<number> {
    try {
      return await this.#native.gc();
    } catch (err) {
      throw callerStack(err);
    }
  }

  /**
   * The servers a session id belongs to, best first (indexes in `db`): its home
   * is the first one that is up. Pure computation; nothing is sent.
   * @example handler.serversFor(id)[0] // the id's home server
   * @throws SessionPgsqlError `SPG_INVALID_ID`.
   */
  serversFor(id: string): number[] {
    return this.#native.order(this.#key(id));
  }

  /**
   * Runs `VACUUM (ANALYZE)` of the table now on every live server, each on a
   * connection of its own; resolves to the number of servers where it ran.
   * @throws SessionPgsqlError `42501` when the role may not vacuum the table, `SPG_NO_SERVER`, `SPG_CLOSED`.
   */
  async vacuum(): Promise<number> {
    try {
      return await this.#native.vacuum();
    } catch (err) {
      throw callerStack(err);
    }
  }

  /**
   * Row counts and size of the table on each server (a full count: for
   * operators, not for the request path).
   */
  async stats(): Promise<
    Array<{ rows: number; expired: number; bytes: number } | { error: Error }>
  > {
    try {
      return await this.#native.stats();
    } catch (err) {
      throw callerStack(err);
    }
  }

  /**
   * Every live session on every server that is up, as `{ id, data }` (reads
   * the whole table: for administration, not the request path). `id` is the
   * stored key: under `hashIds`, the hash (a reference, not usable as an id).
   * @throws SessionPgsqlError `SPG_NO_SERVER`, `SPG_CLOSED`, a SQLSTATE.
   */
  async list(): Promise<Array<{ id: string; data: string }>> {
    try {
      return await this.#native.list();
    } catch (err) {
      throw callerStack(err);
    }
  }

  /**
   * Deletes every session on every server that is up; resolves to the count.
   * @throws SessionPgsqlError `SPG_NO_SERVER`, `SPG_CLOSED`, a SQLSTATE.
   */
  async clear(): Promise<number> {
    try {
      return await this.#native.clear();
    } catch (err) {
      throw callerStack(err);
    }
  }

  /**
   * The live sessions of `user` (the value the adapters' `user` option keeps in `sess_custom`) on
   * every server that is up, each once: a session with copies on two servers (one written during
   * an outage) is listed as its newer copy, and not at all when that is a logout. One indexed
   * lookup per server, then one read of those ids per server.
   * @example const { sessions } = await handler.sessionsOf('alice', { current: req.sessionID })
   * @throws SessionPgsqlError `SPG_INVALID_ARGUMENT` (no user), `SPG_INVALID_ID` (`current`),
   *   `SPG_NO_SERVER` (no server could be asked), `SPG_CLOSED`.
   */
  async sessionsOf(user: string | number, options: SessionsOfOptions = {}): Promise<UserSessions> {
    const who = requiredUser(user, 'sessionsOf(user)');
    const given = fields(options, 'sessionsOf options');
    const current = given.current === undefined ? null : this.#key(given.current);
    let found;
    try {
      found = await this.#native.sessionsOf(who);
    } catch (err) {
      throw callerStack(err);
    }
    return {
      sessions: found.sessions.map((s) => ({
        // Under hashIds a reference, also for a row still under its raw id (transition).
        id: this.#reference(s.id),
        current: this.#reference(s.id) === current,
        server: s.server,
        created: s.created,
        lastSeen: s.modified,
        expires: s.expires,
        addressCreated: s.addressCreated,
        addressModified: s.addressModified,
      })),
      unreachable: found.unreachable,
    };
  }

  /**
   * Logs `user` out everywhere (but the sessions in `except`): on every server that is up, each of
   * the user's live sessions, copies held on a stand-in included, becomes a tombstone, so that a
   * request of one of them that writes late cannot bring it back. A server that cannot be reached
   * is listed in `unreachable`: the servers that are up record the revocation for it, and it runs
   * there before the server is used again, by this process or any other that opens it (sparing
   * sessions created since); `recorded` lists the servers it is recorded for.
   * @example await handler.destroySessionsOf('alice', { except: [req.sessionID] })
   * @throws SessionPgsqlError `SPG_INVALID_ARGUMENT` (no user), `SPG_INVALID_ID` (an `except` id),
   *   `SPG_CLOSED`.
   */
  async destroySessionsOf(
    user: string | number,
    options: DestroySessionsOfOptions = {},
  ): Promise<Revocation> {
    const who = requiredUser(user, 'destroySessionsOf(user)');
    const given = fields(options, 'destroySessionsOf options');
    if (given.except !== undefined && !Array.isArray(given.except))
      throw argument(
        `Expected an array of ids for "except" but received ${describe(given.except)}`,
      );
    // During a migration (transition) a session kept may still be under its raw id.
    const except = (given.except ?? []).flatMap((id) =>
      this.#options.ids.transition ? [this.#key(id), id] : [this.#key(id)],
    );
    try {
      return await this.#native.destroySessionsOf(who, except);
    } catch (err) {
      throw callerStack(err);
    }
  }

  /** A snapshot of every server's state and the handler's settings; passwords redacted. */
  status(): Status {
    const { servers, numberOfServers, failoverMode, ...rest } = this.#native.status();
    return {
      servers,
      numberOfServers,
      failoverMode,
      shortCircuit: this.#options.shortCircuit,
      ...rest,
      hashIds: this.#options.ids.mode,
    };
  }

  /**
   * Reconnects every server: operations already sent finish on the old
   * connections, those still waiting for a connection go to the new ones.
   * A server that is up stays usable meanwhile and emits no `'down'`/`'up'`.
   * Resolves `true` if any server is up afterwards.
   */
  async reset(): Promise<boolean> {
    try {
      return await this.#native.reset();
    } catch (err) {
      throw callerStack(err);
    }
  }

  /** Waits for operations in flight, then closes every connection; idempotent. */
  async close(): Promise<void> {
    this.#closing = true;
    await this.#native.close();
  }

  /**
   * The short circuit (the only home of the rule): with `shortCircuit`, a write of a Session
   * read live whose data is unchanged and on which nothing was forced is skipped, so its
   * expiry is not refreshed. Decided here, the data is never copied to the native core. A
   * skip never hides an error that the write would give: on a closing handler, or with data
   * over `maxDataSize` (stored by a handler with a larger one), the write goes to the native
   * core, which refuses it.
   */
  #shortCircuits(session: Session, data: string, merge: CheckedMerge | null): boolean {
    // A patch that changes nothing leaves the data as stored, whatever its text.
    const same =
      merge !== null && merge.changed === '{}' && merge.removed === null
        ? session.unchanged(session.data)
        : session.unchanged(data);
    return (
      this.#options.shortCircuit &&
      same &&
      !this.#closing &&
      Buffer.byteLength(data) <= this.#options.native.maxDataSize
    );
  }

  /**
   * The one intake of session ids: checks `id` (idPattern, NUL, lone surrogates; never
   * showing it), then returns its stored key (`sess_id`): the id, or its hash under
   * `hashIds`. Every method that takes an id calls it before its first await. `known`: the
   * key already computed for this id (a Session's).
   * @throws SessionPgsqlError `SPG_INVALID_ID`.
   */
  #key(id: unknown, known: string | null = null): string {
    this.#checkId(id);
    return known ?? this.#options.ids.stored(id);
  }

  /**
   * What the handler hands out for a stored key: the key itself, but under `hashIds` a row
   * still under its raw id (a migration in progress) is named by the hash it will have, so
   * that no raw id is ever handed out.
   */
  #reference(stored: string): string {
    const ids = this.#options.ids;
    return ids.mode === 'off' || isHashedKey(stored) ? stored : ids.stored(stored);
  }

  #checkId(id: unknown): asserts id is string {
    // A NUL would cut the id short on its way to libpq, and a lone surrogate would be stored
    // as U+FFFD (two ids, one row), whatever the pattern allows.
    if (typeof id === 'string' && !id.includes('\0') && !wellFormed(id)) {
      throw new SessionPgsqlError(
        `Invalid session id of ${id.length} characters: it ${loneSurrogate(id)}`,
        ErrorCode.InvalidId,
      );
    }
    if (
      typeof id !== 'string' ||
      id.includes('\0') ||
      (!adapterCall && !this.#options.idPattern.test(id))
    ) {
      // The id itself is a secret (or an attacker's input): only its shape is told.
      const shown = typeof id === 'string' ? `of ${id.length} characters` : `(a ${typeof id})`;
      throw new SessionPgsqlError(
        `Invalid session id ${shown}: it must match ${String(this.#options.idPattern)}`,
        ErrorCode.InvalidId,
      );
    }
  }
}

/**
 * Gives an error of the native core the stack of the code awaiting the
 * operation. Errors settled from a libpq callback are built with no JS frame on
 * the stack; here, in the awaiting facade method, V8's async stack trace names
 * the caller's chain of awaits. Done only on failure: capturing a stack at every
 * call costs about as much CPU as the operation itself.
 */
function callerStack(err: unknown): unknown {
  if (err instanceof SessionPgsqlError) Error.captureStackTrace(err, callerStack);
  return err;
}

function argument(message: string): SessionPgsqlError {
  return new SessionPgsqlError(message, ErrorCode.InvalidArgument);
}

function checkExpires(expires: unknown): number | null {
  return checkUnixSeconds('expires', expires);
}

/** An instant in Unix seconds, given as option `name` (`null`: not given). */
function checkUnixSeconds(name: string, seconds: unknown): number | null {
  if (seconds === undefined || seconds === null) return null;
  // The row keeps a bigint; within this range every Date's expiry fits, and so does any
  // arithmetic on it (GC subtracts, a tombstone negates).
  if (typeof seconds !== 'number' || !(seconds >= 0 && seconds <= MAX_EXPIRES)) {
    throw argument(
      `Expected "${name}" in Unix seconds from 0 to ${MAX_EXPIRES} but received ${describe(seconds)}`,
    );
  }
  return seconds;
}

/**
 * `WriteOptions.merge` as the native write takes it: the removed keys as a PostgreSQL text[]
 * literal (null: none); null for no merge.
 */
interface CheckedMerge {
  changed: string;
  removed: string | null;
  read: string | null;
}

function checkMerge(merge: unknown): CheckedMerge | null {
  if (merge === undefined) return null;
  const { changed, removed, read = null } = fields(merge as WriteMerge, 'merge option');
  for (const [name, json] of [
    ['changed', changed],
    ['read', read ?? ''],
  ] as const) {
    if (typeof json !== 'string')
      throw argument(
        `Expected a JSON object string for "merge.${name}" but received ${describe(json)}`,
      );
    if (!wellFormed(json)) throw argument(`"merge.${name}" ${loneSurrogate(json)}`);
    if (json.includes('\0')) throw argument(`"merge.${name}" contains a NUL character`);
  }
  if (removed === undefined || (Array.isArray(removed) && removed.length === 0)) {
    return { changed: changed as string, removed: null, read };
  }
  if (!Array.isArray(removed))
    throw argument(
      `Expected an array of keys for "merge.removed" but received ${describe(removed)}`,
    );
  let literal = '{';
  for (const key of removed as unknown[]) {
    if (typeof key !== 'string')
      throw argument(`Expected string keys in "merge.removed" but received ${describe(key)}`);
    if (!wellFormed(key) || key.includes('\0'))
      throw argument('A key in "merge.removed" holds a NUL character or a lone surrogate');
    literal += (literal.length > 1 ? ',"' : '"') + key.replace(/["\\]/g, '\\$&') + '"';
  }
  return { changed: changed as string, removed: literal + '}', read };
}

function checkLoaded(loaded: unknown): boolean {
  if (typeof loaded !== 'boolean')
    throw argument(`Expected a boolean for "loaded" but received ${describe(loaded)}`);
  return loaded;
}

function checkCustom(custom: unknown): string | null {
  if (custom === undefined) return null;
  if (typeof custom !== 'string')
    throw argument(`Expected a string for "custom" but received ${describe(custom)}`);
  if (!wellFormed(custom)) throw argument(`The custom field ${loneSurrogate(custom)}`);
  return custom;
}

function checkAddress(address: unknown): string {
  if (typeof address !== 'string')
    throw argument(`Expected a string for "address" but received ${describe(address)}`);
  if (!wellFormed(address)) throw argument(`The address ${loneSurrogate(address)}`);
  // Checked on read too, where the Session keeps it for its write: refused when given.
  if (address.includes('\0')) throw argument('The address contains a NUL character');
  return address;
}

/** An options argument: undefined (none) or an object, whose properties are then read. */
function fields<T extends object>(value: T | undefined, what: string): Partial<T> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null)
    throw argument(`Expected an object for the ${what} but received ${describe(value)}`);
  return value;
}
