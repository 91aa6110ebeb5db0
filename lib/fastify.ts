// session-pgsql/fastify: a store for @fastify/session (callback get/set/destroy).
import { adoptHandler, decode, isNotFound, toUnixSeconds, type HandlerOrOptions } from './adapter';
import type { SessionPgsql } from './handler';

type Callback = (err?: any) => void;
type CallbackSession = (err: any, session?: any) => void;

/**
 * A store for @fastify/session. Sessions are stored as JSON; the expiry comes
 * from the session cookie's `expires`, else the handler's `maxLifetime`.
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
    this.handler.read(sessionId).then(
      (s) => callback(null, s.isNew || s.expired ? null : decode(s.data)),
      (err) => (isNotFound(err) ? callback(null, null) : callback(err)),
    );
  }

  set(sessionId: string, session: any, callback: Callback): void {
    const expires = toUnixSeconds(session?.cookie?.expires ?? session?.cookie?.originalExpires);
    this.handler
      .write(sessionId, JSON.stringify(session), expires === null ? {} : { expires })
      .then(() => callback(), callback);
  }

  destroy(sessionId: string, callback: Callback): void {
    this.handler.destroy(sessionId).then(
      () => callback(),
      (err) => (isNotFound(err) ? callback() : callback(err)),
    );
  }

  /** Closes the handler if this store created it. */
  async close(): Promise<void> {
    if (this.#owned) await this.handler.close();
  }
}
