'use strict';
// session-pgsql's express-session store with synchronousCommit: false: commits return before
// they reach the disk, so a server crash may lose the last moments of writes, as Redis's default
// snapshotting may. Same calls as express-store.js.
const { expressStore } = require('./express-store.js');

module.exports = expressStore('session-pgsql ExpressStore, synchronousCommit: false', {
  synchronousCommit: false,
});
