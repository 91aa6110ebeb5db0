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
import type { SessionPgsql } from './handler';

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

  constructor(handlerOrOptions: HandlerOrOptions) {
    ({ handler: this.handler, owned: this.#owned } = adoptHandler(handlerOrOptions));
  }

  get(sessionId: string, callback: CallbackSession): void {
    readId(this.handler, sessionId).then(
      (s) => {
        const data = s.isNew || s.expired ? null : decode(s.data);
        const expires = data ? expiryOf(data) : null;
        callback(null, data && (expires === null || expires > Date.now()) ? data : null);
      },
      (err) => (isNotFound(err) ? callback(null, null) : callback(err)),
    );
  }

  set(sessionId: string, session: any, callback: Callback): void {
    const ms = expiryOf(session);
    writeId(
      this.handler,
      sessionId,
      JSON.stringify(session),
      ms === null ? {} : { expires: rowExpiry(ms) },
    ).then(() => callback(), callback);
  }

  destroy(sessionId: string, callback: Callback): void {
    destroyId(this.handler, sessionId).then(() => callback(), callback);
  }

  /** Closes the handler if this store created it. */
  async close(): Promise<void> {
    if (this.#owned) await this.handler.close();
  }
}
