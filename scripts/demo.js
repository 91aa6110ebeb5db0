#!/usr/bin/env node
'use strict';
// `npm start`: an Express app using ExpressStore. With SESSION_PGSQL_DB unset it
// starts a throwaway PostgreSQL server (scripts/pg-cluster.js) and removes it on exit.
//   PORT=8080 npm start        listen on another port (default 3000; 0 picks a free one)
//   SESSION_PGSQL_DB='host=/run/postgresql dbname=app' npm start
const http = require('node:http');
const express = require('express');
const session = require('express-session');
const { randomBytes } = require('node:crypto');
const { ExpressStore } = require('..' + '/dist/express.js');

const escape = (v) => String(v).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function table(rows) {
  return `<table>${Object.entries(rows)
    .map(([k, v]) => `<tr><th>${escape(k)}</th><td>${escape(v === '' ? '—' : v)}</td></tr>`)
    .join('')}</table>`;
}

// "Your other sessions": the signed-in user's sessions but this one (sessionsOf), each with a
// line of facts, and the button that logs out everywhere else.
function others(req, mine) {
  const user = req.session.user;
  if (!user) {
    return `<form method="post" action="/login"><input name="name" placeholder="user name" required> <button>log in</button></form>
 <p>A tiny login for the demo (no password): log in with the same name in another browser, and each lists the other.</p>`;
  }
  const list = mine.sessions
    .filter((s) => !s.current)
    .map(
      (s) =>
        `<li><code>${escape(s.id)}</code> on server #${s.server}: created ${when(s.created)}, last seen ${when(s.lastSeen)}, from ${escape(s.addressModified || s.addressCreated || 'unknown')}</li>`,
    )
    .join('');
  const unreachable = mine.unreachable.length
    ? `<p>Not listed: the sessions on server(s) ${mine.unreachable.map((i) => `#${i}`).join(', ')}, which could not be reached.</p>`
    : '';
  return `<p>Logged in as <b>${escape(user)}</b>.</p>
 <h3>Your other sessions</h3>${list ? `<ul>${list}</ul>` : '<p>none</p>'}${unreachable}
 <form method="post" action="/logout-others"><button>log out everywhere else</button></form>
 <form method="post" action="/logout"><button class="secondary">log out</button></form>`;
}

function page(req, store, mine) {
  const s = store.sessionFor(req);
  const info = s
    ? {
        ...s.info(),
        created: when(s.info().created),
        modified: when(s.info().modified),
        expires: when(s.info().expires),
      }
    : { note: 'a new session: it is stored when this response ends' };
  const status = store.handler.status();
  const servers = status.servers
    .map(
      (srv) =>
        `<li><span class="state ${srv.state}">${srv.state}</span> #${srv.id} <code>${escape(srv.server)}</code> — ${srv.operations} operations, ${srv.failures} failures</li>`,
    )
    .join('');
  return `<!doctype html><html><head><meta charset="utf-8"><title>session-pgsql demo</title>
<style>
 body{font:15px/1.5 system-ui,sans-serif;max-width:760px;margin:2em auto;padding:0 1em;color:#222}
 h1{font-size:1.4em} .count{font-size:3em;font-weight:700;color:#2a6ebb}
 table{border-collapse:collapse;width:100%;margin:.5em 0} th,td{text-align:left;padding:.2em .6em;border-bottom:1px solid #eee}
 th{width:35%;color:#555;font-weight:500} code{font-size:.9em}
 form{display:inline-block;margin:.3em .6em .3em 0} button{padding:.35em .8em;border-radius:6px;border:1px solid #2a6ebb;background:#2a6ebb;color:#fff;cursor:pointer}
 button.secondary{background:#fff;color:#2a6ebb} .state{padding:0 .4em;border-radius:4px;color:#fff} .up{background:#2e8b57}.down{background:#c0392b}.connecting{background:#d68910}
 section{border:1px solid #e5e5e5;border-radius:8px;padding:.8em 1em;margin:1em 0}
</style></head><body>
<h1>session-pgsql demo</h1>
<section><div>You have visited this page</div><div class="count">${req.session.views}</div><div>times in this session (<code>${escape(req.sessionID)}</code>).</div></section>
<section><h2>Your account</h2>${others(req, mine)}</section>
<section><h2>Session.info()</h2>${table(info)}</section>
<section><h2>Actions</h2>
 <form method="post" action="/error"><select name="level"><option>error</option><option>warning</option><option>notice</option></select> <input name="message" placeholder="message"> <button>addError</button></form>
 <form method="post" action="/regenerate"><button class="secondary">regenerate id</button></form>
 <form method="post" action="/destroy"><button class="secondary">destroy session</button></form>
</section>
<section><h2>handler.status()</h2><ul>${servers}</ul>${table({ placement: status.placement, shortCircuit: status.shortCircuit, keepExpired: status.keepExpired, table: status.table })}</section>
</body></html>`;
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toISOString() : '';
}

async function main() {
  let cluster = null;
  let db = process.env.SESSION_PGSQL_DB;
  if (!db) {
    const { startClusters } = require('./pg-cluster.js');
    process.stdout.write('SESSION_PGSQL_DB is not set: starting a throwaway PostgreSQL server… ');
    cluster = await startClusters(1);
    db = cluster.clusters[0].conninfo;
    process.stdout.write(`${db}\n`);
  }
  // The user's name, kept in each session's custom field, lists and revokes a user's sessions.
  const store = new ExpressStore({ db }, { user: 'user' });
  const app = express();
  app.use(express.urlencoded({ extended: false }));
  app.use(
    session({
      store,
      secret: process.env.SESSION_SECRET || randomBytes(32).toString('hex'),
      resave: false,
      saveUninitialized: true,
      cookie: { maxAge: 20 * 60 * 1000, sameSite: 'lax' },
    }),
  );
  app.get('/', async (req, res, next) => {
    req.session.views = (req.session.views || 0) + 1;
    try {
      const user = req.session.user;
      const mine = user
        ? await store.sessionsOf(user, { current: req.sessionID })
        : { sessions: [], unreachable: [] };
      res.type('html').send(page(req, store, mine));
    } catch (err) {
      next(err);
    }
  });
  app.post('/login', (req, res) => {
    const name = String(req.body.name ?? '').trim();
    if (name) req.session.user = name.slice(0, 100);
    res.redirect('/');
  });
  app.post('/logout', (req, res) => {
    delete req.session.user;
    res.redirect('/');
  });
  app.post('/logout-others', (req, res, next) => {
    const user = req.session.user;
    if (!user) return res.redirect('/');
    store.destroySessionsOf(user, { except: [req.sessionID] }).then(() => res.redirect('/'), next);
  });
  app.post('/error', (req, res) => {
    const s = store.sessionFor(req);
    if (s) s.addError(req.body.level, req.body.message || undefined);
    req.session.touched = Date.now();
    res.redirect('/');
  });
  app.post('/regenerate', (req, res, next) => {
    const views = req.session.views;
    req.session.regenerate((err) => {
      if (err) return next(err);
      req.session.views = views;
      res.redirect('/');
    });
  });
  app.post('/destroy', (req, res, next) => {
    req.session.destroy((err) => (err ? next(err) : res.redirect('/')));
  });

  const server = http.createServer(app);
  const port = process.env.PORT === undefined ? 3000 : Number(process.env.PORT);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  console.log(`session-pgsql demo on http://127.0.0.1:${server.address().port}/ (Ctrl-C to stop)`);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    server.close();
    server.closeAllConnections?.();
    await store.close();
    if (cluster) await cluster.stop();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err) => {
  console.error(`demo: ${err.message}`);
  process.exit(1);
});
