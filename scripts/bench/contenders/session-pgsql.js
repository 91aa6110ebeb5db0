'use strict';
// session-pgsql with its default options (shortCircuit off): read(id), then write(session, data).
const path = require('node:path');
const { TABLE, bump } = require('../common.js');

const { SessionPgsql } = require(path.join(__dirname, '..', '..', '..', 'dist', 'index.js'));

module.exports = {
  label: 'session-pgsql',
  pool: 'its own (defaults)',
  async open(db) {
    // SESSION_PGSQL_BENCH_OPTIONS (JSON) tries other options, e.g. '{"maxBatch":1}'.
    const extra = JSON.parse(process.env.SESSION_PGSQL_BENCH_OPTIONS || '{}');
    const handler = new SessionPgsql({ db, table: TABLE, ...extra });
    await handler.open();
    return {
      async request(id) {
        const session = await handler.read(id);
        if (session.isNew) throw new Error(`session ${id} not found`);
        await handler.write(session, bump(session.data));
      },
      close: () => handler.close(),
    };
  },
};
