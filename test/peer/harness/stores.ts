// Our stores, as the peer suites get them in place of their own (loaded in the suites' child
// processes through hook.js). Every store gets a table of its own, as every MemoryStore starts
// empty; the parent test drops the tables (prefix peer_) when the suite's process has exited.
import { randomBytes } from 'node:crypto';
import { SessionPgsql } from '../../../lib';
import { ExpressStore } from '../../../lib/express';
import { FastifyStore } from '../../../lib/fastify';
import { KoaStore } from '../../../lib/koa';

const handlers: SessionPgsql[] = [];

/** A handler on the first test server, on a fresh table named peer_<suite>_<random>. */
export function peerHandler(suite: string): SessionPgsql {
  const db = process.env.SESSION_PGSQL_TEST_DB;
  if (!db) throw new Error('SESSION_PGSQL_TEST_DB is not set: run the peer suites with `npm test`');
  const handler = new SessionPgsql({
    db: db.split(';')[0]!,
    table: `peer_${suite}_${randomBytes(5).toString('hex')}`,
    gcInterval: 0,
    vacuumInterval: 0,
  });
  handlers.push(handler);
  return handler;
}

/** Closes every handler made so far (the suites never close their stores). */
export async function closeAll(): Promise<void> {
  await Promise.all(handlers.splice(0).map((h) => h.close()));
}

/** What `new session.MemoryStore()` gives the express-session suite. */
export class PeerExpressStore extends ExpressStore {
  constructor() {
    super(peerHandler('express'));
  }
}

/** What `new TestStore()` gives the @fastify/session suites. */
export class PeerFastifyStore extends FastifyStore {
  constructor() {
    super(peerHandler('fastify'));
  }
}

/** What koa-session's test/store.ts (one module-level store) gives its suites. */
export const peerKoaStore = new KoaStore(peerHandler('koa'));
