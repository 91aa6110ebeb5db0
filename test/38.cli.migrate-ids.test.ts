// `session-pgsql migrate-ids` (docs/operations.md, Hashed ids): a table of raw ids on three
// servers is rewritten to hashed keys, each row moved to its key's home server with its whole
// row (created, counter, custom field); a second run changes nothing; a hashIds handler then
// reads every old session, and no raw id is left in any server's table. A keyed run needs the
// key from the environment; a session a hashIds handler wrote meanwhile is newer and kept; the
// transition read finds raw sessions before the migration and a logout removes both forms.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { SessionPgsql, type SessionPgsqlOptions } from '../lib';
import { idHashing, isHashedKey } from '../lib/options';
import { db, query, uniqueTable } from './support/db';
import { closedAfterEach } from './support/handlers';
import { runCli } from './support/cli';

// Ids made here, not by support's newId(): this test reads stored keys itself, so the
// hashed-mode translation of db.ts's query() must not know them.
const newId = () => randomBytes(24).toString('base64url');

const KEY = 'migration-test-key-0123456789abcdef';

const cli = (args: string[], env: Record<string, string> = {}) => runCli(args, env, 120_000);

interface MigrateReport {
  command: string;
  ok: boolean;
  dryRun: boolean;
  servers: Array<{ id: number; moved: number; stayed: number; hashed: number; otherKind: number }>;
}

async function migrate(table: string, extra: string[] = [], env = {}): Promise<MigrateReport> {
  const run = await cli(['migrate-ids', '--db', db(3), '--table', table, '--json', ...extra], env);
  expect(run.code, run.stderr).to.equal(0);
  expect(run.stderr).to.equal('');
  return JSON.parse(run.stdout) as MigrateReport;
}

const sum = (r: MigrateReport, k: 'moved' | 'stayed' | 'hashed' | 'otherKind') =>
  r.servers.reduce((n, s) => n + s[k], 0);

/** Every sess_id of `table` on each of the three servers. */
async function keysOnServers(table: string): Promise<string[][]> {
  return Promise.all(
    [0, 1, 2].map(async (i) =>
      (await query<{ sess_id: string }>(i, `SELECT sess_id FROM ${table}`)).map((r) => r.sess_id),
    ),
  );
}

// Data and custom field name the session without holding its id (the dump is searched for ids).
const dataOf = (id: string) =>
  `data of ${idHashing({ key: 'a-key-only-this-test-uses' }).stored(id)}`;
const customOf = (id: string) => `custom ${dataOf(id).slice(-8)}`;

describe('CLI: migrate-ids', () => {
  const handlers = closedAfterEach<SessionPgsql>();
  const make = (table: string, options: SessionPgsqlOptions) =>
    handlers.keep(
      new SessionPgsql({ db: db(3), table, gcInterval: 0, vacuumInterval: 0, ...options }),
    );

  /** `n` sessions written by a handler with raw ids, each with a custom field. */
  async function rawSessions(table: string, n: number): Promise<string[]> {
    const raw = make(table, { hashIds: false });
    const ids = Array.from({ length: n }, () => newId());
    await Promise.all(
      ids.map(async (id) => {
        const s = await raw.read(id, { address: '192.0.2.7' });
        s.setField(customOf(id));
        await raw.write(s, dataOf(id));
      }),
    );
    return ids;
  }

  it('moves every raw id of three servers to its hashed key and home; a rerun is a no-op', async function () {
    this.timeout(120_000);
    const table = uniqueTable('mig');
    const ids = await rawSessions(table, 60);
    const before = await keysOnServers(table);
    expect(before.flat()).to.have.members(ids);
    // Every server holds some: the move crosses servers.
    for (const keys of before) expect(keys).to.not.have.length(0);
    const createdBefore = new Map(
      (
        await Promise.all(
          [0, 1, 2].map((i) =>
            query<{ sess_id: string; sess_created: string }>(
              i,
              `SELECT sess_id, sess_created FROM ${table}`,
            ),
          ),
        )
      )
        .flat()
        .map((r) => [r.sess_id, Number(r.sess_created)]),
    );

    const dry = await migrate(table, ['--dry-run']);
    expect(dry.dryRun).to.equal(true);
    expect(sum(dry, 'moved')).to.equal(60);
    expect(await keysOnServers(table)).to.deep.equal(before);

    const first = await migrate(table, ['--batch', '7']);
    expect(sum(first, 'moved')).to.equal(60);
    expect(sum(first, 'stayed')).to.be.below(60); // placement changed for most
    expect(sum(first, 'hashed')).to.equal(0);

    const after = await keysOnServers(table);
    expect(after.flat()).to.have.length(60);
    expect(after.flat().every(isHashedKey)).to.equal(true);
    const hashed = make(table, { hashIds: true });
    for (const [server, keys] of after.entries()) {
      for (const key of keys) {
        // Each row sits on the home of its new key, where a hashIds handler looks.
        const id = ids.find((i) => idHashing(true).stored(i) === key)!;
        expect(hashed.serversFor(id)[0]).to.equal(server);
      }
    }
    // Nothing of any raw id is left in any column of any server.
    const dump = (
      await Promise.all([0, 1, 2].map((i) => query(i, `SELECT t::text AS row FROM ${table} t`)))
    )
      .flat()
      .map((r) => r.row as string)
      .join('\n');
    for (const id of ids) expect(dump).to.not.include(id);

    for (const id of ids) {
      const s = await hashed.read(id);
      expect(s.isNew, id).to.equal(false);
      expect(s.data).to.equal(dataOf(id));
      const info = s.info();
      expect(info.accesses).to.equal(2); // the whole row came along: counter 1, + this read
      expect(info.custom).to.equal(customOf(id));
      expect(info.addressCreated).to.equal('192.0.2.7');
      expect(info.created).to.equal(createdBefore.get(id));
      expect(info.sessionId).to.equal(id);
    }

    const second = await migrate(table);
    expect(sum(second, 'moved')).to.equal(0);
    expect(sum(second, 'hashed')).to.equal(60);
    expect(await keysOnServers(table)).to.deep.equal(after);
  });

  it('with --key-env: HMAC keys only that key reads; a plain-hashed table is left alone', async function () {
    this.timeout(60_000);
    const table = uniqueTable('migk');
    const ids = await rawSessions(table, 12);
    const missing = await cli(
      ['migrate-ids', '--db', db(3), '--table', table, '--key-env', 'SPG_TEST_NO_SUCH_VAR'],
      {},
    );
    expect(missing.code).to.equal(2);
    expect(missing.stderr).to.include('SPG_TEST_NO_SUCH_VAR');
    const short = await cli(
      ['migrate-ids', '--db', db(3), '--table', table, '--key-env', 'SPG_TEST_KEY'],
      { SPG_TEST_KEY: 'short' },
    );
    expect(short.code).to.equal(2);
    expect(short.stderr).to.include('at least 16 bytes').and.not.include('short');

    const run = await cli(
      ['migrate-ids', '--db', db(3), '--table', table, '--key-env', 'SPG_TEST_KEY'],
      { SPG_TEST_KEY: KEY },
    );
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/rewrote \d+ raw id/);
    expect(run.stdout + run.stderr).to.not.include(KEY);
    const keyed = make(table, { hashIds: { key: KEY } });
    const plain = make(table, { hashIds: true });
    for (const id of ids) {
      expect((await keyed.read(id)).data).to.equal(dataOf(id));
      expect((await plain.read(id)).isNew).to.equal(true);
    }
    // A plain run over a keyed table: nothing it can convert, nothing changed.
    const before = await keysOnServers(table);
    const other = await migrate(table);
    expect(sum(other, 'moved')).to.equal(0);
    expect(sum(other, 'otherKind')).to.equal(12);
    expect(await keysOnServers(table)).to.deep.equal(before);
  });

  it('keeps what a hashIds handler wrote since (newer), and the transition read bridges the gap', async function () {
    this.timeout(60_000);
    const table = uniqueTable('migt');
    const [kept, changed, loggedOut] = await rawSessions(table, 3);
    const bridge = make(table, { hashIds: { transition: true } });
    // Before any migration, the transition read finds the raw sessions...
    const s = await bridge.read(changed!);
    expect(s.data).to.equal(dataOf(changed!));
    expect(s.info().custom).to.equal(customOf(changed!));
    // ...and its write goes to the hashed key, newer than the raw row.
    await bridge.write(s, 'changed under hashIds');
    expect(await bridge.destroy(loggedOut!)).to.equal(true);
    // The logout removed both forms: nothing for the migration to bring back.
    expect((await keysOnServers(table)).flat()).to.not.include(loggedOut);

    const report = await migrate(table);
    expect(sum(report, 'moved')).to.equal(2); // kept, and changed's stale raw row
    const hashed = make(table, { hashIds: true });
    expect((await hashed.read(kept!)).data).to.equal(dataOf(kept!));
    const moved = await hashed.read(changed!);
    expect(moved.data).to.equal('changed under hashIds');
    expect(moved.getField()).to.equal(customOf(changed!)); // carried by the transition write
    expect((await hashed.read(loggedOut!)).isNew).to.equal(true);
    expect((await keysOnServers(table)).flat()).to.have.length(2);
  });

  it('refuses its own options on other commands, and bad values as usage errors', async () => {
    const gc = await cli(['gc', '--db', db(1), '--key-env', 'X']);
    expect(gc.code).to.equal(2);
    expect(gc.stderr).to.include('--key-env is only for migrate-ids');
    const placement = await cli(['migrate-ids', '--db', db(1), '--placement', 'random']);
    expect(placement.code).to.equal(2);
    expect(placement.stderr).to.include('--placement');
    const batch = await cli(['migrate-ids', '--db', db(1), '--batch', '0']);
    expect(batch.code).to.equal(2);
    expect(batch.stderr).to.include('--batch');
  });
});
