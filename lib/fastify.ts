// session-pgsql/fastify: a store for @fastify/session (callback get/set/destroy).
import {
  adoptHandler,
  decode,
  destroyId,
  isNotFound,
  readId,
  rowExpiry,
  toEpochMs,
  writeId,
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
  UserField,
  userWrite,
  type UserOption,
} from './users';

/** Options of a FastifyStore. */
export interface FastifyStoreOptions {
  /**
   * Where a session names its user, kept in `sess_custom` for `sessionsOf`/`destroySessionsOf`:
   * a key path such as `'userId'`, or a function of the session object.
   */
  user?: UserOption;
}

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
 * A store for @fastify/session. Sessions are stored as JSON under the id the
 * plugin uses (any string up to 1024 characters, verbatim); the expiry comes
 * from the session cookie's `expires`, else the handler's `maxLifetime`. A
 * session is never served after that expiry, to the millisecond. Failures (an
 * outage included) reach the plugin as a SessionPgsqlError, which fails the
 * request (5xx) through Fastify's error handler.
 *
 * @example
 * app.register(fastifySession, { secret, store: new FastifyStore({ db: 'dbname=app' }) })
 */
export class FastifyStore {
  /** The handler behind this store. */
  readonly handler: SessionPgsql;
  readonly #owned: boolean;
  readonly #users: UserField | undefined;

  constructor(handlerOrOptions: HandlerOrOptions, options: FastifyStoreOptions = {}) {
    this.#users = options?.user === undefined ? undefined : new UserField(options.user);
    ({ handler: this.handler, owned: this.#owned } = adoptHandler(handlerOrOptions));
  }

  get(sessionId: string, callback: CallbackSession): void {
    readId(this.handler, sessionId).then(
      (s) => {
        this.#users?.seen(s.id, s.getField());
        const data = s.isNew || s.expired ? null : decode(s.data);
        const expires = data ? expiryOf(data) : null;
        callback(null, data && (expires === null || expires > Date.now()) ? data : null);
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
    writeId(this.handler, sessionId, JSON.stringify(session), {
      ...(ms === null ? {} : { expires: rowExpiry(ms) }),
      ...user,
    }).then(() => callback(), callback);
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
