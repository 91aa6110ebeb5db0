'use strict';
// session-pgsql's express-session store with mergeWrites: false: every save writes the whole
// session (the last save wins for every key), as before mergeWrites. Same calls as
// express-store.js; the pair measures what writing only the changed keys costs.
const { expressStore } = require('./express-store.js');

module.exports = expressStore(
  'session-pgsql ExpressStore, mergeWrites: false',
  {},
  { mergeWrites: false },
);
