// session-pgsql/koa: an external store for koa-session.
import { adoptHandler, decode, isNotFound, type HandlerOrOptions } from './adapter';
import type { SessionPgsql } from './handler';

interface KoaContext {
  ip?: string;
}

/**
 * A koa-session store. `set` with `changed: false` (a rolling or renewing save
 * of unchanged data) only refreshes the expiry. `maxAge` in milliseconds sets
 * the expiry; `'session'` uses the handler's `maxLifetime`.
 *
 * @example
 * app.use(session({ store: new KoaStore({ db: 'dbname=app' }) }, app))
 */
export class KoaStore {
  /** The handler behind this store. */
  readonly handler: SessionPgsql;
  readonly #owned: boolean;

  constructor(handlerOrOptions: HandlerOrOptions) {
    ({ handler: this.handler, owned: this.#owned } = adoptHandler(handlerOrOptions));
  }

  async get(key: string, _maxAge?: number | 'session', _opts?: { ctx?: KoaContext }): Promise<any> {
    try {
      const s = await this.handler.read(key);
      const data = s.isNew || s.expired ? null : decode(s.data);
      if (data === null) return undefined;
      // koa-session keeps its own expiry in the data; an expiry-only refresh
      // (changed: false) moved the row's, so that one is the truth. The row
      // outlives the cookie by the 10 s koa-session adds to the store's maxAge.
      // (The row counts whole seconds: only a clearly later expiry replaces koa's own.)
      const refreshed = s.info().expires * 1000 - 10_000;
      if (typeof data._expire === 'number' && refreshed > data._expire + 1000) {
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
    const expires = typeof maxAge === 'number' ? Date.now() / 1000 + maxAge / 1000 : undefined;
    // Unchanged data: refresh the expiry only, unless the row is gone.
    if (opts.changed === false && (await this.handler.touch(key, expires))) return;
    const address = opts.ctx?.ip;
    await this.handler.write(key, JSON.stringify(sess), {
      ...(expires === undefined ? {} : { expires }),
      ...(address ? { address } : {}),
    });
  }

  async destroy(key: string, _opts?: { ctx?: KoaContext }): Promise<void> {
    try {
      await this.handler.destroy(key);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  /** Closes the handler if this store created it. */
  async close(): Promise<void> {
    if (this.#owned) await this.handler.close();
  }
}
