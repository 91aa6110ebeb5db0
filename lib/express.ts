// session-pgsql/express: a store for express-session.
import type * as ExpressSession from 'express-session';
import {
  adoptHandler,
  decode,
  isNotFound,
  requirePeer,
  settle,
  toUnixSeconds,
  type HandlerOrOptions,
} from './adapter';
import type { SessionPgsql } from './handler';
import type { Session } from './session';

// express-session is an optional peer dependency: only this entry point needs it.
const session = requirePeer<typeof ExpressSession>('express-session', 'session-pgsql/express');

type Callback<T = unknown> = (err?: any, value?: T) => void;
type SessionData = ExpressSession.SessionData;

export interface ExpressStoreOptions {
  /**
   * Seconds: `touch()` does nothing when the stored expiry would move by less
   * than this (express-session touches on every request that does not save).
   * Default `60`; `0` touches every time.
   */
  touchAfter?: number;
}

/**
 * An express-session store. Session objects are stored as JSON in `sess_data`;
 * the expiry comes from `cookie.expires`, else the handler's `maxLifetime`.
 * Emits `'connect'` when the first server comes up and `'disconnect'` when none is left.
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
  #up = 0;
  // get() result object -> the Session it came from; then request -> Session.
  readonly #loaded = new WeakMap<object, Session>();
  readonly #requests = new WeakMap<object, Session>();

  constructor(handlerOrOptions: HandlerOrOptions, options: ExpressStoreOptions = {}) {
    super();
    ({ handler: this.handler, owned: this.#owned } = adoptHandler(handlerOrOptions));
    this.#touchAfter = options.touchAfter ?? 60;
    const status = this.handler.status();
    this.#maxLifetime = status.maxLifetime;
    this.#up = status.servers.filter((s) => s.state === 'up').length;
    this.handler.on('up', () => {
      if (this.#up++ === 0) this.emit('connect');
    });
    this.handler.on('down', () => {
      if (--this.#up === 0) this.emit('disconnect');
    });
  }

  /**
   * The SPEC's per-session functions (info, setField, addError, getError) for
   * the session this request loaded from the store; undefined for a session
   * created during this request.
   */
  sessionFor(req: object): Session | undefined {
    return this.#requests.get(req);
  }

  override get(sid: string, callback: Callback<SessionData | null>): void {
    const found = this.handler.read(sid).then(
      (s) => {
        const data = s.isNew || s.expired ? null : decode(s.data);
        if (data) this.#loaded.set(data, s);
        return data as SessionData | null;
      },
      (err) => {
        if (isNotFound(err)) return null; // a malformed id is a fresh session, not an error page
        throw err;
      },
    );
    settle(found, callback);
  }

  override createSession(req: any, data: SessionData): ExpressSession.Session & SessionData {
    const loaded = this.#loaded.get(data);
    if (loaded) this.#requests.set(req, loaded);
    return super.createSession(req, data);
  }

  override set(sid: string, sess: SessionData, callback?: Callback): void {
    const req = (sess as { req?: { ip?: string } }).req;
    const loaded = req ? this.#requests.get(req) : undefined;
    const expires = toUnixSeconds(sess.cookie?.expires) ?? undefined;
    const data = JSON.stringify(sess);
    const options = {
      ...(expires === undefined ? {} : { expires }),
      ...(req?.ip ? { address: req.ip } : {}),
    };
    // A session loaded by this request carries its custom field and errors.
    const written =
      loaded && loaded.id === sid
        ? this.handler.write(loaded, data, options)
        : this.handler.write(sid, data, options);
    settle(
      written.then(() => undefined),
      callback,
    );
  }

  override touch(sid: string, sess: SessionData, callback?: Callback): void {
    const req = (sess as { req?: object }).req;
    const loaded = req ? this.#requests.get(req) : undefined;
    // setField/addError on an unchanged session still have to be stored.
    if (loaded?.forced()) {
      this.set(sid, sess, callback);
      return;
    }
    const expires = toUnixSeconds(sess.cookie?.expires);
    // Cheap and rare: skipped when the stored expiry would move by less than touchAfter.
    const next = expires ?? Date.now() / 1000 + this.#maxLifetime;
    if (loaded && next - loaded.info().expires < this.#touchAfter) {
      callback?.(null);
      return;
    }
    settle(
      this.handler.touch(sid, expires ?? undefined).then(() => undefined),
      callback,
    );
  }

  override destroy(sid: string, callback?: Callback): void {
    const destroyed = this.handler.destroy(sid).then(
      () => undefined,
      (err) => {
        if (!isNotFound(err)) throw err;
      },
    );
    settle(destroyed, callback);
  }

  /** Every live session, as an object keyed by id (like express-session's MemoryStore). */
  override all(callback: Callback<Record<string, SessionData>>): void {
    const all = this.handler.list().then((rows) => {
      const out: Record<string, SessionData> = {};
      for (const { id, data } of rows) {
        const value = decode(data);
        if (value) out[id] = value as unknown as SessionData;
      }
      return out;
    });
    settle(all, callback);
  }

  /** The number of live sessions that all() would return. */
  override length(callback: Callback<number>): void {
    settle(
      this.handler.list().then((rows) => rows.filter(({ data }) => decode(data) !== null).length),
      callback,
    );
  }

  override clear(callback?: Callback): void {
    settle(
      this.handler.clear().then(() => undefined),
      callback,
    );
  }

  /** Closes the handler if this store created it. */
  async close(): Promise<void> {
    if (this.#owned) await this.handler.close();
  }
}
