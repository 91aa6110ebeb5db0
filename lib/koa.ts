// session-pgsql/koa: an external store for koa-session.
import {
  adoptHandler,
  decode,
  destroyId,
  encode,
  isNotFound,
  mergeWritesOf,
  readId,
  rowExpiry,
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
import {
  storeDestroySessionsOf,
  storeSessionsOf,
  userFieldOf,
  userWrite,
  type UserField,
} from './users';

/** Options of a KoaStore. */
export type KoaStoreOptions = AdapterOptions;

interface KoaContext {
  ip?: string;
}

// koa-session asks the store to keep a session this much longer than its
// cookie (it adds it to the maxAge it passes to set()).
const KOA_MARGIN_MS = 10_000;

/**
 * A koa-session store. Sessions are stored as JSON under the key koa-session
 * uses (any string up to 1024 characters, `prefix` and `genid` ids included,
 * verbatim). `set` with `changed: false` (a rolling or renewing save of
 * unchanged data) only refreshes the expiry. `maxAge` in milliseconds sets the
 * expiry; `'session'` uses the handler's `maxLifetime`. Failures (an outage
 * included) reject, and reach the app's error handling through koa-session.
 *
 * A save stores the top-level keys the request changed, merged into the session as
 * stored (`mergeWrites`, see {@link AdapterOptions}), and destroy is a logout that a request
 * which loaded the session before it cannot undo.
 *
 * @example
 * app.use(session({ store: new KoaStore({ db: 'dbname=app' }) }, app))
 */
export class KoaStore {
  /** The handler behind this store. */
  readonly handler: SessionPgsql;
  readonly #owned: boolean;
  readonly #mergeWrites: boolean;
  // Request context -> the session it loaded: its key, the stored JSON read and when the
  // session was created.
  readonly #read = new WeakMap<object, { key: string; data: string; created: number }>();

  readonly #users: UserField | undefined;

  constructor(handlerOrOptions: HandlerOrOptions, options: KoaStoreOptions = {}) {
    this.#mergeWrites = mergeWritesOf(options);
    this.#users = userFieldOf(options);
    ({ handler: this.handler, owned: this.#owned } = adoptHandler(handlerOrOptions));
  }

  async get(key: string, _maxAge?: number | 'session', opts?: { ctx?: KoaContext }): Promise<any> {
    try {
      const s = await readId(this.handler, key);
      this.#users?.seen(s.id, s.getField());
      const data = s.isNew || s.expired ? null : decode(s.data);
      if (data === null) return undefined;
      if (opts?.ctx) this.#read.set(opts.ctx, { key, data: s.data, created: s.info().created });
      // koa-session keeps the cookie's expiry in `_expire` and refuses the
      // session after it. An expiry-only refresh (changed: false) moved the
      // row's, in whole seconds rounded up: one second less than that, minus
      // koa's margin, is never later than the refreshed cookie's expiry.
      const refreshed = (s.info().expires - 1) * 1000 - KOA_MARGIN_MS;
      if (typeof data._expire === 'number' && refreshed > data._expire) {
        data._expire = refreshed;
      }
      return data;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async set(
    key: string,
    sess: unknown,
    maxAge?: number | 'session',
    opts: { changed?: boolean; ctx?: KoaContext } = {},
  ): Promise<void> {
    const cookieExpiry = (sess as { _expire?: unknown } | null)?._expire;
    // The row outlives the cookie by koa's margin (to the ms when koa says when
    // the cookie ends).
    const ms =
      typeof maxAge !== 'number'
        ? null
        : typeof cookieExpiry === 'number'
          ? cookieExpiry + KOA_MARGIN_MS
          : Date.now() + maxAge;
    const expires = ms === null ? undefined : rowExpiry(ms);
    // Unchanged data: refresh the expiry only, unless the row is gone.
    if (opts.changed === false && (await touchId(this.handler, key, expires))) return;
    const address = opts.ctx?.ip;
    const read = opts.ctx ? this.#read.get(opts.ctx) : undefined;
    // A session this request loaded (not one regenerated under a new key): what
    // changed since is written, and no logout since is undone.
    const loaded = read !== undefined && read.key === key;
    const { data, merge } = encode(sess as object, loaded && this.#mergeWrites ? read.data : null);
    await writeId(this.handler, key, data, {
      ...(expires === undefined ? {} : { expires }),
      ...(address ? { address } : {}),
      ...(loaded ? { loaded, created: read.created } : {}),
      ...(merge ? { merge } : {}),
      ...userWrite(this.#users, key, sess),
    });
    if (loaded) read.data = data; // a second save diffs against the first
  }

  async destroy(key: string, _opts?: { ctx?: KoaContext }): Promise<void> {
    await destroyId(this.handler, key);
  }

  /**
   * The live sessions of `user` on every server (see `SessionPgsql#sessionsOf`), with
   * koa-session's keys; `current` marks the request's own (its external key).
   */
  sessionsOf(user: string | number, options?: SessionsOfOptions): Promise<UserSessions> {
    return storeSessionsOf(this.handler, user, options);
  }

  /** Logs `user` out on every server but the sessions in `except` (koa-session's keys). */
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
