'use strict';
// A plain loop on pg (pool of 10, pg's default): a named prepared SELECT, then a named prepared UPDATE.
const { Pool } = require('pg');
const { TABLE, READ_SQL, WRITE_SQL, bump, driverOptions } = require('../common.js');

const POOL_SIZE = 10;

module.exports = {
  label: 'pg prepared',
  kind: 'raw',
  tables: [TABLE],
  pool: `pg.Pool max ${POOL_SIZE}`,
  async open(db) {
    const { url, ...options } = driverOptions(db);
    const pool = new Pool({ ...options, connectionString: url, max: POOL_SIZE });
    pool.on('error', () => {});
    return {
      async request(id) {
        const read = await pool.query({ name: 'bench_read', text: READ_SQL, values: [id] });
        if (read.rows.length !== 1) throw new Error(`session ${id} not found`);
        const write = await pool.query({
          name: 'bench_write',
          text: WRITE_SQL,
          values: [id, bump(read.rows[0].sess_data)],
        });
        if (write.rowCount !== 1) throw new Error(`session ${id} not updated`);
      },
      close: () => pool.end(),
    };
  },
};
