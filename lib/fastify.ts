// session-pgsql/fastify: a store for @fastify/session (callback get/set/destroy).
import {
  adoptHandler,
  decode,
  destroyId,
  encode,
  isNotFound,
  mergeWritesOf,
  readId,
  rowExpiry,
  toEpochMs,
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
import {
  storeDestroySessionsOf,
  storeSessionsOf,
  userFieldOf,
  userWrite,
  type UserField,
} from './users';

/** Options of a FastifyStore. */
export type FastifyStoreOptions = AdapterOptions;

type Callback = (err?: any) => void;
type CallbackSession = (err: any, session?: any) => void;

/**
 * The exact expiry (epoch ms) of a @fastify/session session; null when it has
 * none. `expires` is the one being saved; `originalExpires` the one it was
 * loaded with.
 */
function expiryOf(session: any): number | null {
  return toEpochMs(session?.cookie?.expires ?? session?.cookie?.originalExpires);
}

/**
 * The property by which a session that get() loaded tells set() what was read.
 * why: @fastify/session gives the store no request, and copies what get()
 * returns property by property (for...in) into a session object of its own;
 * a function is copied along and left out of every JSON of the session
 * (the stored one and the plugin's change hash alike).
 */
const READ = '__sessionPgsqlRead';
type ReadOf = () => { id: string; data: string; created: number };

/**
 * A store for @fastify/session. Sessions are stored as JSON under the id the
 * plugin uses (any string up to 1024 characters, verbatim); the expiry comes
 * from the session cookie's `expires`, else the handler's `maxLifetime`. A
 * session is never served after that expiry, to the millisecond. Failures (an
 * outage included) reach the plugin as a SessionPgsqlError, which fails the
 * request (5xx) through Fastify's error handler.
 *
 * A save stores the top-level keys the request changed, merged into the session as
 * stored (`mergeWrites`, see {@link AdapterOptions}), and destroy is a logout that a request
 * which loaded the session before it cannot undo.
 *
 * @example
 * app.register(fastifySession, { secret, store: new FastifyStore({ db: 'dbname=app' }) })
 */
export class FastifyStore {
  /** The handler behind this store. */
  readonly handler: SessionPgsql;
  readonly #owned: boolean;
  readonly #mergeWrites: boolean;

  readonly #users: UserField | undefined;

  constructor(handlerOrOptions: HandlerOrOptions, options: FastifyStoreOptions = {}) {
    this.#mergeWrites = mergeWritesOf(options);
    this.#users = userFieldOf(options);
    ({ handler: this.handler, owned: this.#owned } = adoptHandler(handlerOrOptions));
  }

  get(sessionId: string, callback: CallbackSession): void {
    readId(this.handler, sessionId).then(
      (s) => {
        this.#users?.seen(s.id, s.getField());
        const data = s.isNew || s.expired ? null : decode(s.data);
        const expires = data ? expiryOf(data) : null;
        if (!data || (expires !== null && expires <= Date.now())) {
          callback(null, null);
          return;
        }
        const read = { id: sessionId, data: s.data, created: s.info().created };
        Object.defineProperty(data, READ, {
          value: (() => read) satisfies ReadOf,
          enumerable: true,
          configurable: true,
          writable: true,
        });
        callback(null, data);
      },
      (err) => (isNotFound(err) ? callback(null, null) : callback(err)),
    );
  }

  set(sessionId: string, session: any, callback: Callback): void {
    const ms = expiryOf(session);
    let user;
    try {
      user = userWrite(this.#users, sessionId, session);
    } catch (err) {
      callback(err);
      return;
    }
    const readOf: unknown = session?.[READ];
    const read = typeof readOf === 'function' ? (readOf as ReadOf)() : null;
    // A session this request loaded (not one regenerated under a new id).
    const loaded = read !== null && read.id === sessionId;
    const { data, merge } = encode(session, loaded && this.#mergeWrites ? read.data : null);
    writeId(this.handler, sessionId, data, {
      ...(ms === null ? {} : { expires: rowExpiry(ms) }),
      ...user,
      ...(loaded ? { loaded, created: read.created } : {}),
      ...(merge ? { merge } : {}),
    }).then(() => {
      if (loaded) read.data = data; // a second save diffs against the first
      callback();
    }, callback);
  }

  destroy(sessionId: string, callback: Callback): void {
    destroyId(this.handler, sessionId).then(() => callback(), callback);
  }

  /**
   * The live sessions of `user` on every server (see `SessionPgsql#sessionsOf`), with the
   * plugin's ids; `current` (e.g. `request.session.sessionId`) marks the request's own.
   */
  sessionsOf(user: string | number, options?: SessionsOfOptions): Promise<UserSessions> {
    return storeSessionsOf(this.handler, user, options);
  }

  /** Logs `user` out on every server but the sessions in `except` (the plugin's ids). */
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
}
