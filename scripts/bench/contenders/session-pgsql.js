'use strict';
// session-pgsql's handler, the raw API under the framework adapters: read(id), then
// write(session, data). Default options (shortCircuit off), except that the housekeeping timers
// are off: the bench runs VACUUM between runs and GC only in its --gc phase.
const path = require('node:path');
const { TABLE, bump } = require('../common.js');

const { SessionPgsql } = require(path.join(__dirname, '..', '..', '..', 'dist', 'index.js'));

/**
 * The options of every session-pgsql contender. SESSION_PGSQL_BENCH_OPTIONS (JSON) tries other
 * options, e.g. '{"maxBatch":1}'; `more` (a contender's own) comes last.
 */
function handlerOptions(db, more = {}) {
  const extra = JSON.parse(process.env.SESSION_PGSQL_BENCH_OPTIONS || '{}');
  return { db, table: TABLE, gcInterval: 0, vacuumInterval: 0, ...extra, ...more };
}

module.exports = {
  label: 'session-pgsql handler',
  kind: 'raw',
  tables: [TABLE],
  pool: 'its own (defaults)',
  handlerOptions,
  async open(db) {
    const handler = new SessionPgsql(handlerOptions(db));
    await handler.open();
    return {
      async request(id) {
        const session = await handler.read(id);
        if (session.isNew) throw new Error(`session ${id} not found`);
        await handler.write(session, bump(session.data));
      },
      gc: () => handler.gc(),
      close: () => handler.close(),
    };
  },
};
