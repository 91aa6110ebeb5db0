'use strict';
// express-session as its own suite requires it (`require('../')`), with our store swapped in:
// `new session.MemoryStore()` makes a PeerExpressStore, and session() without a store gets one.
const session = require('express-session');
const { PeerExpressStore } = require('./stores.ts');

function peerSession(options) {
  const opts = options || {};
  if (!opts.store) opts.store = new PeerExpressStore();
  return session(opts);
}
Object.assign(peerSession, session, { MemoryStore: PeerExpressStore });
module.exports = peerSession;
