'use strict';
// connect-pg-simple on a pg.Pool of 10 (pg's default size): store.get(sid), views+1 and touch(),
// store.set(sid, sess), what express-session does for a request that changed its session.
const session = require('express-session');
const { Pool } = require('pg');
const { CPS_TABLE, storeRequest, driverOptions } = require('../common.js');

const PgStore = require('connect-pg-simple')(session);
const POOL_SIZE = 10;

module.exports = {
  label: 'connect-pg-simple',
  kind: 'store',
  tables: [CPS_TABLE],
  pool: `pg.Pool max ${POOL_SIZE}`,
  async open(db) {
    const { url, ...options } = driverOptions(db);
    const pool = new Pool({ ...options, connectionString: url, max: POOL_SIZE });
    pool.on('error', () => {}); // an idle client's error surfaces on its next query
    const store = new PgStore({ pool, tableName: CPS_TABLE });
    const get = (sid) =>
      new Promise((resolve, reject) =>
        store.get(sid, (err, s) => (err ? reject(err) : resolve(s))),
      );
    const set = (sid, s) =>
      new Promise((resolve, reject) => store.set(sid, s, (err) => (err ? reject(err) : resolve())));
    return {
      request: storeRequest(get, set),
      async close() {
        await store.close();
        await pool.end();
      },
    };
  },
};
