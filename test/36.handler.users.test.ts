// A user's sessions (docs/operations.md, A user's sessions): sessionsOf() lists them on every
// server, once each; destroySessionsOf() turns them into tombstones everywhere but `except`,
// copies on a stand-in included, and a server down during the revocation gets it before it is up
// again. These tests stop and start test server 2; every test leaves all servers running.
import { expect } from 'chai';
import { ErrorCode, SessionPgsql, type SessionPgsqlOptions } from '../lib';
import { clusters, db, newId, query, restartAll, uniqueTable } from './support/db';
import { idOfRef } from './support/hash-mode';
import { rejection } from './support/errors';
import { fastRecovery, handlerFactory } from './support/handlers';
import { waitUntil } from './support/wait';
import { expectTombstone, idHomedOn, login, rowOn } from './support/users';

const NOW = 'floor(extract(epoch from now()))::bigint';

describe('36 handler: a user\u2019s sessions', function () {
  this.timeout(60_000);
  let table: string;
  const handlers = handlerFactory();
  function make(options: SessionPgsqlOptions = {}): Promise<SessionPgsql> {
    return handlers.open({ ...fastRecovery(table), ...options });
  }

  beforeEach(() => {
    table = uniqueTable('users');
  });
  afterEach(restartAll);

  it('creates a partial index on sess_custom with the table, so a lookup by user does not scan', async () => {
    await make();
    for (const server of [0, 1, 2]) {
      const rows = await query<{ indexdef: string }>(
        server,
        'SELECT indexdef FROM pg_indexes WHERE tablename = $1 AND indexname = $2',
        [table, `${table}_user_idx`],
      );
      expect(rows.length, `the index on server ${server}`).to.equal(1);
      expect(rows[0]!.indexdef).to.match(/\(sess_custom\) WHERE \(sess_custom <> ''::text\)/);
    }
    // The planner may use it for any user (the statement's own `<> ''` matches the predicate).
    const plan = await query<{ 'QUERY PLAN': string }>(
      0,
      `EXPLAIN SELECT sess_id FROM ${table} WHERE sess_custom = 'x' AND sess_custom <> ''`,
    );
    expect(plan.map((r) => r['QUERY PLAN']).join('\n')).to.match(/_user_idx/);
  });

  it('sessionsOf lists the live sessions of one user on every server, most recently seen first', async () => {
    const h = await make();
    const ids = [0, 1, 2].map((home) => idHomedOn(h, home));
    for (const [i, id] of ids.entries()) await login(h, id, 'alice', `192.0.2.${i + 1}`);
    await login(h, idHomedOn(h, 0), 'bob');
    await h.write(idHomedOn(h, 1), 'anonymous'); // no user
    // An expired session of alice's is not live.
    const expired = idHomedOn(h, 2);
    await login(h, expired, 'alice');
    await query(2, `UPDATE ${table} SET sess_expire = ${NOW} - 5 WHERE sess_id = $1`, [expired]);
    // The last seen: a write a second later than the others.
    await query(1, `UPDATE ${table} SET sess_modified = sess_modified + 60 WHERE sess_id = $1`, [
      ids[1],
    ]);

    const { sessions, unreachable } = await h.sessionsOf('alice', { current: ids[2] });
    expect(unreachable).to.deep.equal([]);
    expect(sessions.map((s) => idOfRef(s.id))).to.have.members(ids);
    expect(idOfRef(sessions[0]!.id), 'the most recently seen first').to.equal(ids[1]);
    for (const s of sessions) {
      const i = ids.indexOf(idOfRef(s.id));
      expect(s.server).to.equal(i);
      expect(s.current).to.equal(i === 2);
      expect(s.addressCreated).to.equal(`192.0.2.${i + 1}`);
      expect(s.created).to.be.within(Date.now() / 1000 - 60, Date.now() / 1000 + 60);
      expect(s.lastSeen).to.be.at.least(s.created);
      expect(s.expires).to.be.above(Date.now() / 1000 + 3000);
    }
    expect((await h.sessionsOf('bob')).sessions).to.have.length(1);
    expect((await h.sessionsOf('carol')).sessions).to.deep.equal([]);
    // A number names the same user as its string.
    await login(h, idHomedOn(h, 0), '42');
    expect((await h.sessionsOf(42)).sessions).to.have.length(1);
  });

  it('a user who logs out (custom field cleared) or changes is no longer listed', async () => {
    const h = await make();
    const id = idHomedOn(h, 0);
    await login(h, id, 'alice');
    const s = await h.read(id);
    expect(await h.write(s, s.data, { custom: 'bob' })).to.equal(true);
    expect((await h.sessionsOf('alice')).sessions).to.deep.equal([]);
    expect((await h.sessionsOf('bob')).sessions.map((x) => idOfRef(x.id))).to.deep.equal([id]);
    expect(await h.write(id, 'by id', { custom: '' })).to.equal(true);
    expect((await h.sessionsOf('bob')).sessions).to.deep.equal([]);
  });

  it('destroySessionsOf logs the user out on every server but `except`, leaving tombstones', async () => {
    const h = await make();
    const ids = [0, 1, 2].map((home) => idHomedOn(h, home));
    for (const id of ids) await login(h, id, 'alice');
    const bob = idHomedOn(h, 1);
    await login(h, bob, 'bob');

    const result = await h.destroySessionsOf('alice', { except: [ids[1]!] });
    expect(result).to.deep.equal({ destroyed: 2, unreachable: [], recorded: [] });
    expectTombstone(await rowOn(0, table, ids[0]!), 'alice on server 0');
    expectTombstone(await rowOn(2, table, ids[2]!), 'alice on server 2');
    expect((await h.read(ids[0]!)).isNew).to.equal(true);
    expect((await h.read(ids[2]!)).isNew).to.equal(true);
    // spared, and another user's untouched
    expect((await h.read(ids[1]!)).data).to.equal('{"user":"alice"}');
    expect((await h.read(bob)).data).to.equal('{"user":"bob"}');
    expect((await h.sessionsOf('alice')).sessions.map((s) => idOfRef(s.id))).to.deep.equal([
      ids[1],
    ]);
    // Nothing left to revoke: idempotent.
    expect(await h.destroySessionsOf('alice', { except: [ids[1]!] })).to.deep.equal({
      destroyed: 0,
      unreachable: [],
      recorded: [],
    });
    expect((await h.destroySessionsOf('alice')).destroyed).to.equal(1);
    expect((await h.sessionsOf('alice')).sessions).to.deep.equal([]);
  });

  it('a copy held on a stand-in during an outage is listed once (the newer) and revoked with the rest', async () => {
    const K = 2;
    const F = 0;
    const h = await make();
    const id = idHomedOn(h, K, F);
    await login(h, id, 'alice', '192.0.2.10');

    await clusters()[K]!.stop({ mode: 'immediate' });
    await waitUntil('server 2 down', 10_000, () => h.status().servers[K]!.state !== 'up');
    // During the outage the session is written on the stand-in (its fallback).
    const during = await h.read(id, { address: '192.0.2.20' });
    during.setField('alice');
    expect(await h.write(during, 'written during the outage')).to.equal(true);
    expect((await rowOn(F, table, id))?.sess_data).to.equal('written during the outage');
    const listed = await h.sessionsOf('alice');
    expect(listed.unreachable).to.deep.equal([K]);
    expect(listed.sessions.map((s) => [idOfRef(s.id), s.server])).to.deep.equal([[id, F]]);

    await clusters()[K]!.start();
    await waitUntil('server 2 up', 20_000, () => h.status().servers[K]!.state === 'up');
    // Both copies are stored now: listed once, as the newer one (the stand-in's).
    expect((await rowOn(K, table, id))?.sess_custom).to.equal('alice');
    const both = await h.sessionsOf('alice');
    expect(both.unreachable).to.deep.equal([]);
    expect(both.sessions.map((s) => [idOfRef(s.id), s.server, s.addressCreated])).to.deep.equal([
      [id, F, '192.0.2.20'],
    ]);

    const result = await h.destroySessionsOf('alice');
    expect(result).to.deep.equal({ destroyed: 1, unreachable: [], recorded: [] });
    expectTombstone(await rowOn(K, table, id), 'the row at home');
    expectTombstone(await rowOn(F, table, id), 'the copy on the stand-in');
    expect((await h.read(id)).isNew, 'the session after the revocation').to.equal(true);
    expect((await h.sessionsOf('alice')).sessions).to.deep.equal([]);
  });

  it('a server down during the revocation gets it before it is up again: its sessions do not come back', async () => {
    const K = 2;
    const h = await make();
    const onK = [idHomedOn(h, K), idHomedOn(h, K)];
    const elsewhere = idHomedOn(h, 0);
    for (const id of [...onK, elsewhere]) await login(h, id, 'alice');
    const kept = idHomedOn(h, K);
    await login(h, kept, 'alice');

    await clusters()[K]!.stop({ mode: 'immediate' });
    await waitUntil('server 2 down', 10_000, () => h.status().servers[K]!.state !== 'up');
    const result = await h.destroySessionsOf('alice', { except: [kept] });
    expect(result).to.deep.equal({ destroyed: 1, unreachable: [K], recorded: [K] });
    expect(h.status().servers[K]!.pendingRevocations).to.equal(1);
    expectTombstone(await rowOn(0, table, elsewhere), 'the session on a server that was up');

    await clusters()[K]!.start();
    await waitUntil('server 2 up', 20_000, () => h.status().servers[K]!.state === 'up');
    expect(h.status().servers[K]!.pendingRevocations).to.equal(0);
    for (const id of onK) {
      expectTombstone(await rowOn(K, table, id), 'a session on the returning server');
      expect((await h.read(id)).isNew, 'a revoked session read after the return').to.equal(true);
    }
    expect((await h.read(kept)).data, 'the spared session').to.equal('{"user":"alice"}');
    expect((await h.sessionsOf('alice')).sessions.map((s) => idOfRef(s.id))).to.deep.equal([kept]);
  });

  it('closing with a revocation still pending and recorded nowhere says so (a warning), since it dies with the handler', async () => {
    const K = 2;
    // A schema of its own whose servers have no records table (and may not create one): nothing
    // keeps the revocation but this handler.
    const schema = uniqueTable('norecords');
    for (const server of [0, 1, 2]) await query(server, `CREATE SCHEMA ${schema}`);
    const made = await make({ table: `${schema}.${table}` });
    await login(made, idHomedOn(made, K), 'alice');
    await made.close();
    for (const server of [0, 1, 2])
      await query(server, `DROP TABLE ${schema}.session_pgsql_records`);
    const h = await make({ table: `${schema}.${table}`, createTable: false });
    await clusters()[K]!.stop({ mode: 'immediate' });
    await waitUntil('server 2 down', 10_000, () => h.status().servers[K]!.state !== 'up');
    expect(await h.destroySessionsOf('alice')).to.deep.equal({
      destroyed: 0,
      unreachable: [K],
      recorded: [],
    });
    const warnings: Error[] = [];
    h.on('warning', (w: Error) => warnings.push(w));
    await h.close();
    await waitUntil('the warning', 2_000, () => warnings.length > 0);
    expect(warnings.map((w) => w.message)).to.deep.equal([
      "server 2: closed before it came back: the sessions of user 'alice' there are not revoked; call destroySessionsOf again once it is back",
    ]);
  });

  it('a user is a non-empty string or a number; except ids are checked like any id', async () => {
    const h = await make({ db: db(1) });
    for (const bad of ['', null, undefined, {}, true]) {
      expect((await rejection(h.sessionsOf(bad as never))).code).to.equal(
        ErrorCode.InvalidArgument,
      );
      expect((await rejection(h.destroySessionsOf(bad as never))).code).to.equal(
        ErrorCode.InvalidArgument,
      );
    }
    expect((await rejection(h.sessionsOf('a\0b'))).code).to.equal(ErrorCode.InvalidArgument);
    expect(
      (await rejection(h.destroySessionsOf('alice', { except: ['not an id!'] }))).code,
    ).to.equal(ErrorCode.InvalidId);
    expect((await rejection(h.destroySessionsOf('alice', { except: 'x' as never }))).code).to.equal(
      ErrorCode.InvalidArgument,
    );
    expect((await rejection(h.sessionsOf('alice', { current: 'not an id!' }))).code).to.equal(
      ErrorCode.InvalidId,
    );
    expect((await rejection(h.write(newId(), 'x', { custom: 5 as never }))).code).to.equal(
      ErrorCode.InvalidArgument,
    );
  });
});
