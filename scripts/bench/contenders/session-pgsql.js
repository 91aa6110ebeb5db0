'use strict';
// session-pgsql with its default options (shortCircuit off): read(id), then write(session, data).
const path = require('node:path');
const { TABLE, bump } = require('../common.js');

const { SessionPgsql } = require(path.join(__dirname, '..', '..', '..', 'dist', 'index.js'));

module.exports = {
  label: 'session-pgsql',
  pool: 'its own (defaults)',
  async open(db) {
    const handler = new SessionPgsql({ db, table: TABLE });
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
