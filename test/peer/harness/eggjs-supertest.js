'use strict';
// @eggjs/supertest is a fork of supertest that exports it as `request`: what koa-session uses.
const supertest = require('supertest');
module.exports = { request: supertest, default: supertest };
