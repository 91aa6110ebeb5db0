// session-pgsql/express: a store for express-session.
import type { EventEmitter } from 'node:events';
import {
  adoptHandler,
  decode,
  destroyId,
  encode,
  mergeWritesOf,
  idFromStored,
  isNotFound,
  readId,
  requirePeer,
  rowExpiry,
  settle,
  toEpochMs,
  touchId,
  writeId,
  type AdapterOptions,
  type HandlerOrOptions,
} from './adapter';
import type {
  DestroySessionsOfOptions,
  Revocation,
  SessionPgsql,
  SessionsOfOptions,
  UserSessions,
} from './handler';
import { checkSeconds, MAX_LIFETIME_SECONDS } from './options';
import type { Session } from './session';
import {
  storeDestroySessionsOf,
  storeSessionsOf,
  userFieldOf,
  userWrite,
  type UserField,
} from './users';

// The store's types are written here, not taken from @types/express-session,
// so that a TypeScript app needs no types package to use the store; they are
// structural, so the store is still accepted where those types expect a Store.

/** The cookie of a stored express-session session (its JSON form, or a `Cookie`). */
export interface ExpressSessionCookie {
  originalMaxAge?: number | null;
  /** A `Date` in the request, an ISO string once stored; null for a browser-session cookie. */
  expires?: Date | string | null | boolean;
  [option: string]: any;
}

/** A session as express-session hands it to a store: the app's data and its `cookie`. */
export interface ExpressSessionData {
  cookie: ExpressSessionCookie;
  [key: string]: any;
}

/** What express-session's `Store` class gives its subclasses (it is an EventEmitter). */
export interface ExpressSessionStoreBase extends EventEmitter {
  regenerate(req: any, callback: (err?: any) => any): void;
  load(sid: string, callback: (err: any, session?: any) => any): void;
  createSession(req: any, session: any): any;
}

// express-session is an optional peer dependency: only this entry point needs it.
const session = requirePeer<{ Store: new () => ExpressSessionStoreBase }>(
  'express-session',
  'session-pgsql/express',
);

type Callback<T = unknown> = (err?: any, value?: T) => void;
type SessionData = ExpressSessionData;

export interface ExpressStoreOptions extends AdapterOptions {
  /**
   * Seconds: `touch()` does nothing when the stored expiry would move by less
   * than this (express-session touches on every request that does not save).
   * Default `60`; `0` touches every time; at most 2147483647.
   */
  touchAfter?: number;
}

/** An express middleware, as `guard()` returns it. */
export type GuardMiddleware = (req: unknown, res: unknown, next: (err?: unknown) => void) => void;

/** True while the stored session's cookie has not expired (to the millisecond). */
function alive(data: Record<string, unknown>, now = Date.now()): boolean {
  const cookie = data.cookie as { expires?: unknown } | undefined;
  const expires = toEpochMs(cookie?.expires);
  return expires === null || expires > now;
}

/**
 * An express-session store. Session objects are stored as JSON in `sess_data`
 * under the id express-session uses (any string up to 1024 characters, verbatim);
 * the expiry comes from `cookie.expires`, else the handler's `maxLifetime`.
 * A session is never served after its cookie's `expires`, to the millisecond.
 * A save stores the top-level keys the request changed, merged into the session as
 * stored (`mergeWrites`, see {@link AdapterOptions}), and destroy is a logout that a request
 * which loaded the session before it cannot undo.
 *
 * Failures (an outage included) reach express-session's callbacks as a
 * SessionPgsqlError, so the app's error handler sees them; the store never
 * emits `'disconnect'` (express-session would then run requests without
 * `req.session`). It emits `'connect'` when the first server comes up.
 * Methods called without a callback return a promise.
 *
 * @example
 * app.use(session({ store: new ExpressStore({ db: 'host=/run/postgresql dbname=app' }), secret, resave: false, saveUninitialized: false }))
 * app.get('/', (req, res) => { store.sessionFor(req)?.addError('notice', 'visited') })
 */
export class ExpressStore extends session.Store {
  /** The handler behind this store. */
  readonly handler: SessionPgsql;
  readonly #owned: boolean;
  readonly #touchAfter: number;
  readonly #maxLifetime: number;
  readonly #mergeWrites: boolean;
  #up = 0;
  // get() result object -> the Session it came from; then request -> Session.
  readonly #loaded = new WeakMap<object, Session>();
  readonly #requests = new WeakMap<object, Session>();
  readonly #users: UserField | undefined;

  constructor(handlerOrOptions: HandlerOrOptions, options: ExpressStoreOptions = {}) {
    super();
    // Checked first: a handler this store would own must not be left open by a throw.
    this.#touchAfter = checkSeconds(
      'touchAfter',
      options?.touchAfter ?? 60,
      true,
      MAX_LIFETIME_SECONDS,
    );
    this.#mergeWrites = mergeWritesOf(options);
    this.#users = userFieldOf(options);
    ({ handler: this.handler, owned: this.#owned } = adoptHandler(handlerOrOptions));
    const status = this.handler.status();
    this.#maxLifetime = status.maxLifetime;
    this.#up = status.servers.filter((s) => s.state === 'up').length;
    this.handler.on('up', () => {
      if (this.#up++ === 0) this.emit('connect');
    });
    // No 'disconnect': express-session would skip sessions (req.session
    // undefined) instead of failing the request; the operations fail instead.
    this.handler.on('down', () => {
      this.#up = Math.max(0, this.#up - 1);
    });
  }

  /**
   * The SPEC's per-session functions (info, setField, addError, getError) for
   * the session this request loaded from the store; undefined for a session
   * created during this request. Its `id` is the stored form of the id.
   */
  sessionFor(req: object): Session | undefined {
    return this.#requests.get(req);
  }

  /**
   * An express middleware to put before `session()`: while no server is up it
   * fails the request at once with the retryable SessionPgsqlError (so the
   * app's error handler answers 5xx before anything runs), instead of letting
   * a new session's save fail after the response was sent.
   * @example app.use(store.guard()); app.use(session({ store, ... }))
   */
  guard(): GuardMiddleware {
    return (_req, _res, next) => {
      if (this.handler.status().servers.some((s) => s.state === 'up')) {
        next();
        return;
      }
      this.handler.open().then(() => next(), next);
    };
  }

  /**
   * The stored session, or null when there is none (or it has expired, or the
   * id cannot be a session's). `T` is the app's session type (express-session's
   * `SessionData` where its types are installed).
   */
  get<T = SessionData>(
    sid: string,
    callback?: (err: any, session?: T | null) => void,
  ): Promise<T | null> | void {
    const found = readId(this.handler, sid).then(
      (s) => {
        this.#users?.seen(s.id, s.getField());
        const data = s.isNew || s.expired ? null : decode(s.data);
        if (!data || !alive(data)) return null;
        this.#loaded.set(data, s);
        return data as unknown as T;
      },
      (err) => {
        if (isNotFound(err)) return null; // a malformed id is a fresh session, not an error page
        throw err;
      },
    );
    return settle(found, callback);
  }

  override createSession(req: any, data: SessionData): any {
    const loaded = this.#loaded.get(data);
    if (loaded) this.#requests.set(req, loaded);
    return super.createSession(req, data);
  }

  set(sid: string, sess: SessionData, callback?: Callback): Promise<void> | void {
    const req = (sess as { req?: { ip?: string } }).req;
    const loaded = req ? this.#requests.get(req) : undefined;
    const ms = toEpochMs(sess.cookie?.expires);
    let user;
    try {
      user = userWrite(this.#users, sid, sess);
    } catch (err) {
      return settle(Promise.reject(err), callback);
    }
    // A session loaded by this request carries its custom field and errors, and
    // what it read: the write stores what changed since, and no logout since
    // is undone (see WriteOptions.loaded).
    const target = loaded && this.#sameId(loaded, sid) ? loaded : sid;
    const { data, merge } = encode(
      sess,
      this.#mergeWrites && typeof target !== 'string' ? target.data : null,
    );
    const options = {
      ...(ms === null ? {} : { expires: rowExpiry(ms) }),
      ...(req?.ip ? { address: req.ip } : {}),
      ...user,
      ...(merge ? { merge } : {}),
    };
    const written = writeId(this.handler, target, data, options);
    return settle(
      written.then(() => undefined),
      callback,
    );
  }

  /**
   * Refreshes the expiry of an unchanged session. Skipped while the stored
   * expiry would move by less than `touchAfter`. An actual touch stores the
   * refreshed cookie in the session (as MemoryStore does: the stored session
   * as it is now, with this cookie), so a reload shows the new expiry.
   */
  touch(sid: string, sess: SessionData, callback?: Callback): Promise<void> | void {
    const req = (sess as { req?: object }).req;
    const loaded = req ? this.#requests.get(req) : undefined;
    // setField/addError on an unchanged session still have to be stored.
    if (loaded?.forced()) return this.set(sid, sess, callback);
    const ms = toEpochMs(sess.cookie?.expires);
    // Cheap and rare: skipped when the stored expiry would move by less than touchAfter.
    const next = ms === null ? Date.now() / 1000 + this.#maxLifetime : rowExpiry(ms);
    if (loaded && next - loaded.info().expires < this.#touchAfter) {
      return settle(Promise.resolve(), callback);
    }
    return settle(this.#refresh(sid, sess, ms), callback);
  }

  async #refresh(sid: string, sess: SessionData, ms: number | null): Promise<void> {
    // A browser-session cookie has no expiry to store: the row's is enough.
    if (ms === null) {
      await touchId(this.handler, sid);
      return;
    }
    // The session as stored now (another request may have changed it), with
    // this cookie; a session destroyed meanwhile is not brought back.
    const current = await readId(this.handler, sid);
    const data = current.isNew || current.expired ? null : decode(current.data);
    if (!data || !alive(data)) return;
    const cookie = JSON.stringify(sess.cookie);
    data.cookie = JSON.parse(cookie);
    // Only the cookie changes: merged, a save of another request meanwhile stays.
    await writeId(this.handler, current, JSON.stringify(data), {
      expires: rowExpiry(ms),
      ...(this.#mergeWrites ? { merge: { changed: `{"cookie":${cookie}}` } } : {}),
    });
  }

  destroy(sid: string, callback?: Callback): Promise<void> | void {
    return settle(destroyId(this.handler, sid), callback);
  }

  /** Every live session, as an object keyed by id (like express-session's MemoryStore). */
  all<T = SessionData>(
    callback?: (err: any, sessions?: Record<string, T>) => void,
  ): Promise<Record<string, T>> | void {
    return settle(this.#live() as Promise<Record<string, T>>, callback);
  }

  /** The number of live sessions that all() would return. */
  length(callback?: Callback<number>): Promise<number> | void {
    return settle(
      this.#live().then((all) => Object.keys(all).length),
      callback,
    );
  }

  clear(callback?: Callback): Promise<void> | void {
    return settle(
      this.handler.clear().then(() => undefined),
      callback,
    );
  }

  /**
   * The live sessions of `user` on every server (see `SessionPgsql#sessionsOf`), with
   * express-session's ids; `current` (e.g. `req.sessionID`) marks the request's own.
   */
  sessionsOf(user: string | number, options?: SessionsOfOptions): Promise<UserSessions> {
    return storeSessionsOf(this.handler, user, options);
  }

  /**
   * Logs `user` out on every server but the sessions in `except` (express-session's ids, e.g.
   * `[req.sessionID]`): see `SessionPgsql#destroySessionsOf`.
   */
  destroySessionsOf(
    user: string | number,
    options?: DestroySessionsOfOptions,
  ): Promise<Revocation> {
    return storeDestroySessionsOf(this.handler, user, options);
  }

  /** Closes the handler if this store created it. */
  async close(): Promise<void> {
    if (this.#owned) await this.handler.close();
  }

  async #live(): Promise<Record<string, SessionData>> {
    const now = Date.now();
    const out: Record<string, SessionData> = {};
    for (const { id, data } of await this.handler.list()) {
      const value = decode(data);
      if (value && alive(value, now)) out[idFromStored(id)] = value as unknown as SessionData;
    }
    return out;
  }

  #sameId(loaded: Session, sid: string): boolean {
    return idFromStored(loaded.id) === sid;
  }
}
