'use strict';
// @fastify/session's test/TestStore.js: each `new TestStore()` is one of our stores.
module.exports = require('./stores.ts').PeerFastifyStore;
