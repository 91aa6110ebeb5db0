'use strict';
// The same loop on postgres.js (default max 10 connections; tagged-template statements are
// prepared automatically). The SQL text matches READ_SQL / WRITE_SQL of common.js.
const postgres = require('postgres');
const { TABLE, bump, driverOptions } = require('../common.js');

const POOL_SIZE = 10;

module.exports = {
  label: 'postgres.js',
  kind: 'raw',
  tables: [TABLE],
  pool: `max ${POOL_SIZE}`,
  async open(db) {
    const { url, user, ...options } = driverOptions(db);
    const settings = { max: POOL_SIZE, onnotice: () => {} };
    const sql = url
      ? postgres(url, settings)
      : postgres({ ...options, username: user, ...settings });
    return {
      async request(id) {
        const rows = await sql`SELECT sess_data FROM bench_sessions WHERE sess_id = ${id}`;
        if (rows.length !== 1) throw new Error(`session ${id} not found`);
        const data = bump(rows[0].sess_data);
        const result = await sql`UPDATE bench_sessions SET sess_data = ${data},
          sess_modified = floor(extract(epoch from now()))::bigint,
          sess_expire = floor(extract(epoch from now()))::bigint + 1440,
          sess_counter = sess_counter + 1 WHERE sess_id = ${id}`;
        if (result.count !== 1) throw new Error(`session ${id} not updated`);
      },
      close: () => sql.end({ timeout: 5 }),
    };
  },
};
