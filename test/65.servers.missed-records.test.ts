// What a server missed while down, recorded on the servers that were up (docs/behaviour.md, What
// a server missed): a revocation (destroySessionsOf, the CLI's revoke) or a logout that could not
// reach server 2 is replayed there before it is up again in any process, a fresh one included,
// even once the process that made it has exited; the records then go. Setup does not wait on a
// frozen holder; gc() replays what a process that never lost the server finds, and removes
// records past their bound. These tests stop and start test server 2; all servers run after each.
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { SessionPgsql, type SessionPgsqlOptions } from '../lib';
import { idHashing } from '../lib/options';
import { clusters, newId, query, restartAll, servers, uniqueTable } from './support/db';
import { storedKey } from './support/hash-mode';
import { freeze, type Frozen } from './support/freeze';
import { closedAfterEach, fastRecovery } from './support/handlers';
import { runCli } from './support/cli';
import { waitUntil } from './support/wait';
import { expectTombstone, idHomedOn, login, rowOn } from './support/users';

const X = 2; // the server that misses things
const F = 0; // a stand-in for it

/** Whether session `id` is stored live on `server` (not a tombstone, not expired). */
async function liveOn(server: number, table: string, id: string): Promise<boolean> {
  const row = await rowOn(server, table, id);
  return row !== undefined && row.sess_data !== '' && Number(row.sess_expire) > Date.now() / 1000;
}

interface RecordRow {
  target: string;
  kind: string;
  subject: string;
  until: string;
  recorded: string;
}

/** The records server `server` keeps for session table `table`. */
function recordsOn(server: number, table: string): Promise<RecordRow[]> {
  return query<RecordRow>(
    server,
    'SELECT * FROM session_pgsql_records WHERE sess_table = $1 ORDER BY target, kind, subject',
    [`"${table}"`],
  );
}

async function stopX(): Promise<void> {
  await clusters()[X]!.stop({ mode: 'immediate' });
}

describe('65 servers: what a server missed is recorded and replayed on its return', function () {
  this.timeout(120_000);
  let table: string;
  const handlers = closedAfterEach<SessionPgsql>();
  const frozen: Frozen[] = [];

  function make(options: SessionPgsqlOptions = {}): SessionPgsql {
    return handlers.keep(
      new SessionPgsql({ ...fastRecovery(table), gcInterval: 0, vacuumInterval: 0, ...options }),
    );
  }
  async function open(options: SessionPgsqlOptions = {}): Promise<SessionPgsql> {
    const h = make(options);
    await h.open();
    return h;
  }

  /**
   * A session of alice homed on server 2, revoked while server 2 was down by a process that has
   * closed since: only the records on the other servers know.
   */
  async function revokedWhileXDown(): Promise<string> {
    const h0 = await open();
    const revoked = idHomedOn(h0, X);
    await login(h0, revoked, 'alice');
    await stopX();
    await waitUntil('server 2 down', 10_000, () => h0.status().servers[X]!.state !== 'up');
    expect((await h0.destroySessionsOf('alice')).recorded).to.deep.equal([X]);
    await h0.close();
    return revoked;
  }

  beforeEach(() => {
    table = uniqueTable('missed');
  });
  afterEach(async () => {
    for (const f of frozen.splice(0)) f.resume();
    await restartAll();
  });

  it('a revocation by a process that has exited (the CLI) runs on the server before a fresh process uses it', async () => {
    const h0 = await open();
    const revoked = [idHomedOn(h0, X), idHomedOn(h0, X)];
    const kept = idHomedOn(h0, X);
    const elsewhere = idHomedOn(h0, F);
    for (const id of [...revoked, kept, elsewhere]) await login(h0, id, 'alice');
    const bob = idHomedOn(h0, X);
    await login(h0, bob, 'bob');
    await h0.close();

    await stopX();
    const args = ['--db', fastRecovery(table).db, '--table', table, '--connect-timeout', '1'];
    const run = await runCli(['revoke', 'alice', '--except', storedKey(kept), '--json', ...args]);
    expect(run.code, run.stderr).to.equal(0);
    const report = JSON.parse(run.stdout);
    expect(report).to.include({ ok: true, revoked: 1 });
    expect(report.recorded).to.deep.equal([X]);
    expect(report.servers[X]).to.include({ state: 'down', recorded: true });
    for (const server of [0, 1]) {
      const records = await recordsOn(server, table);
      expect(
        records.map((r) => [r.kind, r.subject]),
        `server ${server}`,
      ).to.deep.equal([['revoke', 'alice']]);
    }

    await clusters()[X]!.start();
    // Nothing has run there yet: the CLI has exited, no process has opened the server since.
    for (const id of revoked) expect(await liveOn(X, table, id)).to.equal(true);

    // A fresh process: its first reads go out before open() (routed during the first connect).
    const h1 = make();
    const seenAtUp: Array<Promise<boolean[]>> = [];
    h1.on('up', (server: number) => {
      if (server === X) seenAtUp.push(Promise.all(revoked.map((id) => liveOn(X, table, id))));
    });
    const early = revoked.map((id) => h1.read(id));
    await h1.open();
    for (const s of await Promise.all(early)) expect(s.isNew, 'a revoked session').to.equal(true);
    await waitUntil('the up event of server 2', 5_000, () => seenAtUp.length === 1);
    expect(await seenAtUp[0]!, 'live at the up event').to.deep.equal([false, false]);
    for (const id of revoked) expectTombstone(await rowOn(X, table, id), 'revoked on server 2');
    expect((await h1.read(kept)).data, 'the session spared').to.equal('{"user":"alice"}');
    expect((await h1.read(bob)).data, "another user's session").to.equal('{"user":"bob"}');
    const listed = (await h1.sessionsOf('alice')).sessions.map((s) => s.id);
    expect(listed).to.deep.equal([storedKey(kept)]);
    await waitUntil('the records dropped', 10_000, async () => {
      return (await recordsOn(0, table)).length + (await recordsOn(1, table)).length === 0;
    });
  });

  it('a logout that missed a server holding a live copy runs there before a fresh process uses it', async () => {
    const h0 = await open();
    const id = idHomedOn(h0, X, F);
    await login(h0, id, 'alice');
    await stopX();
    await waitUntil('server 2 down', 10_000, () => h0.status().servers[X]!.state !== 'up');
    // The logout goes to the stand-in (and to server 1): server 2 keeps the live row.
    expect(await h0.destroy(id, { logout: true })).to.equal(true);
    expectTombstone(await rowOn(F, table, id), 'the tombstone on the stand-in');
    await waitUntil('the records', 10_000, async () => {
      const held = [...(await recordsOn(0, table)), ...(await recordsOn(1, table))];
      return held.length === 2 && held.every((r) => r.kind === 'logout');
    });
    await h0.close();

    await clusters()[X]!.start();
    expect(await liveOn(X, table, id), 'the live copy, before any process opens it').to.equal(true);
    const h1 = make();
    const early = h1.read(id);
    await h1.open();
    expect((await early).isNew, 'the session after the logout').to.equal(true);
    expectTombstone(await rowOn(X, table, id), 'server 2 after its return');
    expect((await h1.read(id)).isNew).to.equal(true);
    await waitUntil('the records dropped', 10_000, async () => {
      return (await recordsOn(0, table)).length + (await recordsOn(1, table)).length === 0;
    });
  });

  it('a server that comes up after the one that missed the revocation replays on it what it keeps, before it is up itself', async () => {
    const revoked = await revokedWhileXDown();

    // Server 2 back, both servers that keep the record down: a fresh process finds no record
    // for server 2 when it comes up (the window docs/operations.md describes).
    await Promise.all([0, 1].map((i) => clusters()[i]!.stop({ mode: 'immediate' })));
    await clusters()[X]!.start();
    const h1 = make();
    const seenAtUp: Array<Promise<boolean>> = [];
    h1.on('up', (server: number) => {
      if (server === 0) seenAtUp.push(liveOn(X, table, revoked));
    });
    await h1.open();
    expect(await liveOn(X, table, revoked)).to.equal(true);
    await clusters()[0]!.start();
    await waitUntil('server 0 up', 20_000, () => h1.status().servers[0]!.state === 'up');
    await waitUntil('the up event of server 0', 5_000, () => seenAtUp.length === 1);
    expect(await seenAtUp[0]!, 'live at the up event of server 0').to.equal(false);
    expectTombstone(await rowOn(X, table, revoked), 'revoked on server 2');
    await waitUntil('the record dropped', 10_000, async () => {
      return (await recordsOn(0, table)).length === 0;
    });
  });

  it('records hold stored keys only: under hashIds the hash, never the id a client sends', async () => {
    const h0 = await open({ hashIds: true });
    const ids: string[] = [];
    while (ids.length < 2) {
      // Not a newId(): its key is not translated back by the suite's hashed mode.
      const id = randomBytes(24).toString('base64url');
      if (h0.serversFor(id)[0] === F) ids.push(id);
    }
    for (const id of ids) await login(h0, id, 'alice');
    await stopX();
    await waitUntil('server 2 down', 10_000, () => h0.status().servers[X]!.state !== 'up');
    await h0.destroy(ids[0]!, { logout: true });
    expect((await h0.destroySessionsOf('alice', { except: [ids[1]!] })).recorded).to.deep.equal([
      X,
    ]);
    const all = await query<{ row: string }>(
      F,
      'SELECT r::text AS row FROM session_pgsql_records r WHERE sess_table = $1',
      [`"${table}"`],
    );
    expect(all).to.have.length(2);
    const text = all.map((r) => r.row).join('\n');
    const keys = idHashing(true);
    expect(text).to.include(keys.stored(ids[0]!)).and.include(keys.stored(ids[1]!));
    for (const id of ids) expect(text).to.not.include(id);
  });

  it('setup does not wait on a frozen holder: the server comes up with what the others answered', async () => {
    const revoked = await revokedWhileXDown();

    // Both holders up in this process, server 2 still down; then one holder hangs.
    const h = await open({ statementTimeout: 60 });
    await waitUntil('servers 0 and 1 up', 10_000, () =>
      [0, 1].every((i) => h.status().servers[i]!.state === 'up'),
    );
    frozen.push(freeze(1));
    await clusters()[X]!.start();
    // Its connect timeout is 1 s; the frozen holder would answer only once resumed.
    await waitUntil('server 2 up while server 1 is frozen', 20_000, () => {
      return h.status().servers[X]!.state === 'up';
    });
    expectTombstone(await rowOn(X, table, revoked), 'revoked by the record server 0 kept');
    // (A read now would look aside on the frozen server: server 2 has just recovered.)
    frozen.splice(0).forEach((f) => f.resume());
    expect((await h.read(revoked)).isNew).to.equal(true);
  });

  it('a fresh process with a frozen server serves the others at once, not after the connect timeout', async () => {
    // Each server asks the others for what it missed before it is up; one still making its first
    // connection (here: frozen) is awaited only briefly, or every session of a process started
    // during a stall would wait for the whole connect timeout.
    frozen.push(freeze(X));
    const h = make({ connectTimeout: 20 });
    const ids = [idHomedOn(h, 0), idHomedOn(h, 1)];
    await Promise.all(ids.map((id) => login(h, id, 'carol')));
    expect(h.status().servers[X]!.state, 'the frozen server is still connecting').to.equal(
      'connecting',
    );
    expect(
      h
        .status()
        .servers.slice(0, 2)
        .map((s) => s.state),
    ).to.deep.equal(['up', 'up']);
  });

  it('gc() replays records for a server that this process never lost (another lost it), and removes records past their bound', async () => {
    const h0 = await open();
    const revoked = idHomedOn(h0, X);
    await login(h0, revoked, 'alice');
    await h0.close();

    // A process for which server 2 is unusable (its role does not exist there): a partition of
    // that process from the server, which the others still use.
    const entries = servers().slice(0, 3);
    entries[X] = entries[X]!.replace(/user=\S+/, 'user=nosuchrole');
    const cut = make({ db: entries.join(';') });
    await cut.open();
    await waitUntil('server 2 down there', 10_000, () => cut.status().servers[X]!.state !== 'up');
    const others = await open();
    expect((await cut.destroySessionsOf('alice')).recorded).to.deep.equal([X]);
    expect(await liveOn(X, table, revoked)).to.equal(true);
    // A login after the revocation (a later second of the server's clock) is spared by it.
    const [record] = await query<{ created_before: string }>(
      0,
      'SELECT created_before FROM session_pgsql_records WHERE sess_table = $1',
      [`"${table}"`],
    );
    await waitUntil('a later second on server 2', 5_000, async () => {
      const [now] = await query<{ now: string }>(
        X,
        'SELECT floor(extract(epoch from now()))::bigint AS now',
      );
      return Number(now!.now) > Number(record!.created_before);
    });
    const fresh = idHomedOn(others, X);
    await login(others, fresh, 'alice');

    await others.gc();
    expectTombstone(await rowOn(X, table, revoked), 'revoked by the sweep');
    expect((await others.read(fresh)).data, 'the login after it').to.equal('{"user":"alice"}');
    expect((await recordsOn(0, table)).length + (await recordsOn(1, table)).length).to.equal(0);

    // A record for a server that does not return goes once no session it concerns can be live.
    await stopX();
    await waitUntil('server 2 down', 10_000, () => others.status().servers[X]!.state !== 'up');
    await cut.destroySessionsOf('bob');
    expect((await recordsOn(0, table)).length).to.equal(1);
    expect((await recordsOn(1, table)).length).to.equal(1);
    const [held] = await recordsOn(0, table);
    // A lifetime (an hour here) from the call, at least.
    expect(Number(held!.until) - Number(held!.recorded)).to.be.at.least(3600);
    await query(0, 'UPDATE session_pgsql_records SET until = recorded - 1 WHERE sess_table = $1', [
      `"${table}"`,
    ]);
    await others.gc();
    expect(await recordsOn(0, table)).to.deep.equal([]);
    expect((await recordsOn(1, table)).length, 'still within its bound').to.equal(1);
  });
});
