// The CLI's sessions and revoke (docs/operations.md, A user's sessions): `node dist/cli.js
// sessions USER` and `revoke USER [--except ID]... [--wait S]` against the three test servers,
// with one of them down: what support staff read, the exit status, and the rows left behind.
import { spawn } from 'node:child_process';
import { expect } from 'chai';
import { SessionPgsql } from '../lib';
import { clusters, db, query, restartAll, uniqueTable } from './support/db';
import { idOfRef, storedKey } from './support/hash-mode';
import { fastRecovery } from './support/handlers';
import { waitUntil } from './support/wait';
import { CLI, runCli } from './support/cli';
import { idHomedOn, login } from './support/users';

const cli = (args: string[]) => runCli(args, {}, 60_000);

/** Whether session `id` is stored live for `user` on test server `server`. */
async function liveFor(server: number, table: string, id: string, user: string): Promise<boolean> {
  const rows = await query<{ live: boolean }>(
    server,
    `SELECT sess_custom = $2 AND sess_expire > 0 AS live FROM "${table}" WHERE sess_id = $1`,
    [id, user],
  );
  return rows[0]?.live ?? false;
}

describe('35 CLI: sessions and revoke', function () {
  this.timeout(120_000);
  const DOWN = 2;
  let table: string;
  let handler: SessionPgsql;
  let ids: string[];
  let args: string[];

  beforeEach(async () => {
    table = uniqueTable('cliusers');
    handler = new SessionPgsql({ ...fastRecovery(table), gcInterval: 0, vacuumInterval: 0 });
    await handler.open();
    ids = [0, 1, 2].map((home) => idHomedOn(handler, home));
    for (const id of ids) await login(handler, id, 'alice');
    await login(handler, idHomedOn(handler, 0), 'bob');
    await handler.close();
    args = ['--db', db(3), '--table', table, '--connect-timeout', '2'];
  });

  afterEach(restartAll);

  it('sessions USER prints a table of the live sessions on every server; --json one document', async () => {
    const run = await cli(['sessions', 'alice', ...args]);
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stderr).to.equal('');
    const lines = run.stdout.trim().split('\n');
    expect(lines[0]).to.match(/^ID\s+SERVER\s+CREATED\s+LAST SEEN\s+EXPIRES\s+ADDRESSES$/);
    expect(lines).to.have.length(5);
    for (const id of ids) expect(run.stdout).to.include(storedKey(id)); // references
    expect(lines[1]).to.match(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ.*192\.0\.2\.1$/);
    expect(lines[4]).to.equal('3 live session(s) of alice');

    const json = await cli(['sessions', 'alice', '--json', ...args]);
    expect(json.code).to.equal(0);
    const report = JSON.parse(json.stdout);
    expect(report).to.include({ command: 'sessions', ok: true, user: 'alice' });
    expect(report.sessions.map((s: { id: string }) => idOfRef(s.id))).to.have.members(ids);
    expect(report.sessions[0]).to.have.keys([
      'id',
      'current',
      'server',
      'created',
      'lastSeen',
      'expires',
      'addressCreated',
      'addressModified',
    ]);

    const none = await cli(['sessions', 'carol', ...args]);
    expect(none.code).to.equal(0);
    expect(none.stdout).to.equal('no live session of carol\n');
  });

  it('revoke USER --except ID logs the user out on every server but that session', async () => {
    // The ids as `sessions` lists them: references in the suite's hashed mode.
    const run = await cli(['revoke', 'alice', '--except', storedKey(ids[1]!), ...args]);
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.equal('revoked 2 session(s) of alice\n');
    expect(await liveFor(0, table, ids[0]!, 'alice')).to.equal(false);
    expect(await liveFor(1, table, ids[1]!, 'alice')).to.equal(true);
    expect(await liveFor(2, table, ids[2]!, 'alice')).to.equal(false);
    const listed = JSON.parse((await cli(['sessions', 'alice', '--json', ...args])).stdout);
    expect(listed.sessions.map((s: { id: string }) => idOfRef(s.id))).to.deep.equal([ids[1]]);
    const again = JSON.parse((await cli(['revoke', 'alice', '--json', ...args])).stdout);
    expect(again).to.include({ command: 'revoke', ok: true, user: 'alice', revoked: 1 });
  });

  it('with a server down: sessions exits 1 naming it; revoke records the revocation for it (exit 0), and the next process to open it revokes there', async () => {
    await clusters()[DOWN]!.stop({ mode: 'immediate' });
    const listed = await cli(['sessions', 'alice', ...args]);
    expect(listed.code).to.equal(1);
    expect(listed.stdout)
      .to.include(storedKey(ids[0]!))
      .and.include(storedKey(ids[1]!))
      .and.not.include(storedKey(ids[2]!));
    expect(listed.stderr).to.match(
      new RegExp(
        `^session-pgsql sessions: server ${DOWN}: could not be reached .*: its sessions are not listed\\n$`,
      ),
    );

    const revoked = await cli(['revoke', 'alice', ...args]);
    expect(revoked.code, revoked.stderr).to.equal(0);
    expect(revoked.stdout).to.equal(
      'revoked 2 session(s) of alice\n' +
        `server ${DOWN} could not be reached: the revocation is recorded on the servers that are ` +
        'up and runs there before it is used again, by any process that opens it\n',
    );
    expect(revoked.stderr).to.equal('');
    expect(await liveFor(0, table, ids[0]!, 'alice')).to.equal(false);

    await clusters()[DOWN]!.start();
    // The CLI has exited, and no process has opened the server since.
    expect(await liveFor(DOWN, table, ids[2]!, 'alice')).to.equal(true);
    // The next one that does (here another CLI run) revokes there before using it.
    const after = await cli(['sessions', 'alice', ...args]);
    expect(after.code, after.stderr).to.equal(0);
    expect(after.stdout).to.equal('no live session of alice\n');
    expect(await liveFor(DOWN, table, ids[2]!, 'alice')).to.equal(false);
    const again = await cli(['revoke', 'alice', '--json', ...args]);
    expect(JSON.parse(again.stdout)).to.include({ ok: true, revoked: 0 });
  });

  it('revoke --wait: a server down at the start gets the revocation when it returns, then exit 0', async () => {
    await clusters()[DOWN]!.stop({ mode: 'immediate' });
    const child = spawn(process.execPath, [
      CLI,
      'revoke',
      'alice',
      '--wait',
      '60',
      '--json',
      ...args,
    ]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    // 'close': exited, and its output read to the end.
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    // Revoked where it could be, then waiting.
    await waitUntil('the revocation on the servers that are up', 30_000, async () => {
      return !(await liveFor(0, table, ids[0]!, 'alice'));
    });
    await clusters()[DOWN]!.start();
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      exited,
      new Promise<string>(
        (resolve) => (timer = setTimeout(() => resolve('still running'), 70_000)),
      ),
    ]);
    clearTimeout(timer);
    if (code === 'still running') child.kill('SIGKILL');
    expect(code, stderr).to.equal(0);
    const report = JSON.parse(stdout);
    expect(report).to.include({ command: 'revoke', ok: true, revoked: 2 });
    expect(await liveFor(DOWN, table, ids[2]!, 'alice')).to.equal(false);
    expect(await liveFor(0, table, ids[0]!, 'alice')).to.equal(false);
  });

  it('usage: a user is required, --except and --wait are revoke options', async () => {
    for (const [argv, message] of [
      [['sessions'], 'sessions needs a user: sessions USER'],
      [['revoke'], 'revoke needs a user: revoke USER'],
      [['sessions', 'alice', 'bob'], 'unexpected argument "bob"'],
      [['gc', '--except', 'x'], 'option --except is only for revoke'],
      [['revoke', 'alice', '--wait', 'soon'], 'option --wait needs seconds from 0 to 86400'],
    ] as Array<[string[], string]>) {
      const run = await cli([...argv, '--db', db(1)]);
      expect(run.code, argv.join(' ')).to.equal(2);
      expect(run.stderr).to.include(message);
    }
    const help = await cli(['--help']);
    expect(help.stdout).to.include('sessions USER').and.include('revoke USER [--except ID]...');
  });
});
