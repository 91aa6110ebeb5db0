'use strict';
// connect-redis over the `redis` client (one connection, as its README sets it up), against the
// bench's throwaway redis-server: store.get(sid), views+1 and touch(), store.set(sid, sess), like the other
// store contenders. connect-redis is an ES module: loaded with import().
const { REDIS_PREFIX, storeRequest } = require('../common.js');

module.exports = {
  label: 'connect-redis + redis',
  kind: 'store',
  tables: [],
  pool: 'one redis connection',
  async open(_db, config) {
    if (!config.redis) throw new Error('connect-redis: no redis-server (config.redis)');
    const { createClient } = require('redis');
    const { RedisStore } = await import('connect-redis');
    const client = createClient({ url: config.redis });
    client.on('error', () => {}); // a failed command rejects; the event would only repeat it
    await client.connect();
    const store = new RedisStore({ client, prefix: REDIS_PREFIX });
    return {
      request: storeRequest(
        (id) => store.get(id),
        (id, sess) => store.set(id, sess),
      ),
      close: () => client.close(),
    };
  },
};
