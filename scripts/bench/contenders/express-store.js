'use strict';
// session-pgsql's express-session store: store.get(sid), views+1 and express-session's touch()
// (common.js's changeExpressSession), store.set(sid, sess): what express-session does for a
// request that changed its session, as for every store contender.
// One handler with the default options (housekeeping timers off, see session-pgsql.js). The
// session that get() returns goes through store.createSession(req, ...) as express-session does
// with it, so set() sees the request's loaded session and writes what changed (mergeWrites).
const path = require('node:path');
const { TABLE, changeExpressSession } = require('../common.js');
const { handlerOptions } = require('./session-pgsql.js');

const dist = path.join(__dirname, '..', '..', '..', 'dist');
const { SessionPgsql } = require(path.join(dist, 'index.js'));
const { ExpressStore } = require(path.join(dist, 'express.js'));

/** A store contender on a handler with `more` options and a store with `storeOptions`. */
function expressStore(label, more, storeOptions = {}) {
  return {
    label,
    kind: 'store',
    tables: [TABLE],
    pool: 'its own (defaults)',
    async open(db) {
      const handler = new SessionPgsql(handlerOptions(db, more));
      await handler.open();
      const store = new ExpressStore(handler, storeOptions);
      return {
        async request(id) {
          const req = { sessionID: id };
          const data = await store.get(id);
          if (!data) throw new Error(`session ${id} not found`);
          const sess = store.createSession(req, data);
          changeExpressSession(sess);
          await store.set(id, sess);
        },
        gc: () => handler.gc(),
        close: () => handler.close(),
      };
    },
  };
}

module.exports = { ...expressStore('session-pgsql ExpressStore', {}), expressStore };
