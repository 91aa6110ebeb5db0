#!/usr/bin/env node
'use strict';
// The cost of `hashIds` alone, without a server: the stored key of an express-session-sized id
// (32 characters of base64url) as the handler computes it, off, SHA-256 and HMAC-SHA256, in
// microseconds per id (best of five rounds of 200 000 ids). Run after `npm run build:ts`:
//   node scripts/bench/hash-ids.js
const { randomBytes } = require('node:crypto');
const { idHashing } = require('../../dist/options');

const ids = Array.from({ length: 1000 }, () => randomBytes(24).toString('base64url'));
const ROUNDS = 5;
const PER_ROUND = 200;

for (const [name, value] of [
  ['off', false],
  ['sha256', true],
  ['hmac', { key: randomBytes(32) }],
]) {
  const stored = idHashing(value).stored;
  let best = Infinity;
  let sink = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.hrtime.bigint();
    for (let k = 0; k < PER_ROUND; k++) for (const id of ids) sink += stored(id).length;
    const ns = Number(process.hrtime.bigint() - start) / (PER_ROUND * ids.length);
    best = Math.min(best, ns);
  }
  if (sink === 0) throw new Error('unreachable');
  console.log(`${name.padEnd(7)} ${(best / 1000).toFixed(2)} µs per id`);
}
