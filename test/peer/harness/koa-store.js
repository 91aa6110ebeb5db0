'use strict';
// koa-session's test/store.ts: one module-level store, here ours.
const { peerKoaStore } = require('./stores.ts');
module.exports = { __esModule: true, default: peerKoaStore };
