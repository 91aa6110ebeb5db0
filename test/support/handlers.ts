// Handlers (and anything else with a close()) that a test opens and that must be closed after
// it, whether it passed or not.
import type { Client } from 'pg';
import { SessionPgsql, type SessionPgsqlOptions } from '../../lib';
import { client, db } from './db';

export interface Closable {
  close(): Promise<unknown>;
}

/** Things to close; closeAll() closes them all at once and empties the list. */
export class CloseList<T extends Closable> {
  private readonly items: T[] = [];

  /** Adds `item`; returns it. */
  keep(item: T): T {
    this.items.push(item);
    return item;
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.items.splice(0).map((item) => item.close()));
  }
}

/** A CloseList that an afterEach registered in the calling describe empties after each test. */
export function closedAfterEach<T extends Closable>(): CloseList<T> {
  const list = new CloseList<T>();
  afterEach(() => list.closeAll());
  return list;
}

export interface HandlerFactory {
  /** A new handler: test server 0, gcInterval 0, vacuumInterval 0, then `options`. */
  make(options?: SessionPgsqlOptions): SessionPgsql;
  /** The same, opened. */
  open(options?: SessionPgsqlOptions): Promise<SessionPgsql>;
  /** Closes the handlers made so far now (before an afterEach of a nested describe cleans up). */
  closeAll(): Promise<void>;
}

/**
 * Handlers for the tests of the calling describe, each closed after its test (by an afterEach
 * registered where handlerFactory() is called). They run on test server 0 with the
 * housekeeping timers off (gcInterval and vacuumInterval 0) unless the options say otherwise.
 */
export function handlerFactory(): HandlerFactory {
  const list = closedAfterEach<SessionPgsql>();
  const make = (options: SessionPgsqlOptions = {}): SessionPgsql =>
    list.keep(new SessionPgsql({ db: db(1), gcInterval: 0, vacuumInterval: 0, ...options }));
  return {
    make,
    async open(options: SessionPgsqlOptions = {}): Promise<SessionPgsql> {
      const handler = make(options);
      await handler.open();
      return handler;
    },
    closeAll: () => list.closeAll(),
  };
}

/**
 * pg clients that stay open (to hold a lock, or to watch from a connection of their own) for the
 * tests of the calling describe, each ended after its test (errors ending it are ignored).
 */
export function pgClients(): { connect(index: number): Promise<Client> } {
  const open: Client[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.end().catch(() => {})));
  });
  return {
    async connect(index: number): Promise<Client> {
      const c = await client(index);
      open.push(c);
      return c;
    },
  };
}

/**
 * Options for a handler over all three test servers with fast failure detection and recovery,
 * so that outage tests take seconds, and a lifetime (an hour) long enough for the look-aside.
 */
export function fastRecovery(table: string) {
  return {
    db: db(3),
    table,
    connectTimeout: 1,
    statementTimeout: 2,
    retryMinDelay: 0.05,
    retryMaxDelay: 0.5,
    maxLifetime: 3600,
  };
}
