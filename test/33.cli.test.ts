// The CLI (docs/operations.md, Command line): `node dist/cli.js init|gc|vacuum|status` against the test
// servers: --help, help, --version, exit codes (0 ok, 1 a server failed, 2 usage), our own
// messages for unknown options, one-line reasons on stderr that never show a secret, --json as
// exactly one JSON document, per-server output, what init created. import: 34.cli.import.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { db, newId, query, servers, uniqueTable } from './support/db';
import { closedPort } from './support/net';
import { sleep } from './support/wait';
import { runCli } from './support/cli';

const ROOT = path.join(__dirname, '..');
const NOW = 'floor(extract(epoch from now()))::bigint';

interface JsonReport {
  command: string;
  ok: boolean;
  servers: Array<Record<string, unknown> & { id: number; server: string; state: string }>;
}

const cli = (args: string[], env: Record<string, string> = {}) => runCli(args, env, 30_000);

/** stderr is exactly one non-empty line. */
function oneLine(stderr: string): string {
  const lines = stderr.split('\n');
  expect(lines, `stderr: ${JSON.stringify(stderr)}`).to.have.length(2);
  expect(lines[1]).to.equal('');
  expect(lines[0]!.trim()).to.not.equal('');
  return lines[0]!;
}

function parseJson(stdout: string): JsonReport {
  let parsed: unknown;
  expect(() => (parsed = JSON.parse(stdout)), `stdout: ${stdout}`).to.not.throw();
  return parsed as JsonReport;
}

describe('33 CLI', function () {
  this.timeout(60_000);
  let table: string;

  async function exists(name: string, server = 0): Promise<boolean> {
    const [row] = await query<{ ok: boolean }>(server, 'SELECT to_regclass($1) IS NOT NULL AS ok', [
      name,
    ]);
    return row!.ok;
  }

  async function insert(server: number, n: number, offset: number): Promise<void> {
    await query(
      server,
      `INSERT INTO ${table} (sess_id, sess_data, sess_expire)
       SELECT $1 || g, 'x', ${NOW} + $2::bigint FROM generate_series(1, $3::int) g`,
      [newId(), offset, n],
    );
  }

  async function count(server = 0): Promise<{ rows: number; expired: number }> {
    const [row] = await query<{ rows: number; expired: number }>(
      server,
      `SELECT count(*)::int AS rows, count(*) FILTER (WHERE sess_expire < ${NOW})::int AS expired
       FROM ${table}`,
    );
    return row!;
  }

  /** last_vacuum of the table, waiting up to `waitMs` for it to be set. */
  async function lastVacuum(waitMs = 5000, server = 0): Promise<Date | null> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const [row] = await query<{ v: Date | null }>(
        server,
        'SELECT last_vacuum AS v FROM pg_stat_user_tables WHERE relid = to_regclass($1)',
        [table],
      );
      if (row?.v || Date.now() > deadline) return row?.v ?? null;
      await sleep(100);
    }
  }

  /** Creates the table on the first `n` servers with `init`. */
  async function init(n = 1): Promise<void> {
    const r = await cli(['init', '--db', db(n), '--table', table]);
    expect(r.code, r.stderr).to.equal(0);
  }

  beforeEach(() => {
    table = uniqueTable('hk_cli');
  });

  describe('usage', () => {
    it('--help exits 0 and documents every command, every flag and the exit codes', async () => {
      const r = await cli(['--help']);
      expect(r.code).to.equal(0);
      expect(r.stderr).to.equal('');
      for (const command of ['init', 'gc', 'vacuum', 'status']) {
        expect(r.stdout).to.match(new RegExp(`^\\s+${command}\\s`, 'm'), `command ${command}`);
      }
      // Every option the parser accepts (read from lib/cli.ts) appears in the help.
      const source = readFileSync(path.join(ROOT, 'lib', 'cli.ts'), 'utf8');
      const block = /const OPTIONS = {([\s\S]*?)\n} as const;/.exec(source);
      expect(block, 'the parseArgs options in lib/cli.ts').to.not.equal(null);
      const flags = [...block![1]!.matchAll(/^\s*'?([a-z][a-z-]*)'?\s*:\s*{/gm)].map((m) => m[1]!);
      expect(flags).to.include.members(['db', 'table', 'json', 'help']);
      for (const flag of flags) expect(r.stdout).to.include(`--${flag}`, `flag --${flag}`);
      expect(r.stdout).to.include('-h');
      expect(r.stdout).to.include('SESSION_PGSQL_DB');
      const exit = /exit (status|code)[\s\S]*/i.exec(r.stdout);
      expect(exit, 'an exit status section').to.not.equal(null);
      for (const code of ['0', '1', '2']) {
        expect(exit![0]).to.match(new RegExp(`\\b${code}\\b`), `exit code ${code}`);
      }
      const short = await cli(['-h']);
      expect(short.code).to.equal(0);
      expect(short.stdout).to.equal(r.stdout);
      const help = await cli(['help']);
      expect(help.code).to.equal(0);
      expect(help.stdout).to.equal(r.stdout);
      expect(r.stdout).to.match(/^\s+help\s/m);
      expect(r.stdout).to.match(/^\s+import connect-pg-simple\b/m);
    });

    it('the cron example cds into the app and runs npx --no-install', async () => {
      const r = await cli(['--help']);
      const cron = r.stdout
        .split('\n')
        .filter(
          (line) => line.includes('session-pgsql gc') || line.includes('session-pgsql vacuum'),
        );
      expect(cron.length, r.stdout).to.be.at.least(2);
      for (const line of cron) {
        expect(line).to.match(/\bcd \S+ && /);
        expect(line).to.match(/npx --no-install session-pgsql (gc|vacuum)$/);
      }
    });

    it("--version and -v print the package version and libpq's, and exit 0", async () => {
      const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
      for (const flag of ['--version', '-v']) {
        const r = await cli([flag]);
        expect(r.code, flag).to.equal(0);
        expect(r.stderr).to.equal('');
        expect(r.stdout).to.match(
          new RegExp(`^session-pgsql ${version} \\(libpq \\d+\\.\\d+\\)\\n$`),
        );
      }
    });

    it('an unknown option or command gets our own one-line message naming it, exit 2', async () => {
      const cases: Array<[string[], string]> = [
        [
          ['status', '--bogus', '--db', db(1)],
          'session-pgsql: unknown option --bogus (see --help)',
        ],
        [['status', '-x', '--db', db(1)], 'session-pgsql: unknown option -x (see --help)'],
        [['--frob=1', 'gc'], 'session-pgsql: unknown option --frob (see --help)'],
        [['status', '--db'], 'session-pgsql: option --db needs a value (see --help)'],
        [['frobnicate', '--db', db(1)], 'session-pgsql: unknown command "frobnicate" (see --help)'],
        [
          ['gc', '--from-table', 'session', '--db', db(1)],
          'session-pgsql: option --from-table is only for import (see --help)',
        ],
      ];
      for (const [args, message] of cases) {
        const r = await cli(args);
        expect(r.code, args.join(' ')).to.equal(2);
        expect(r.stdout, args.join(' ')).to.equal('');
        expect(oneLine(r.stderr)).to.equal(message);
      }
      // A value that starts with '-' is a value, not an option.
      const negative = await cli(['gc', '--max-lifetime', '-5', '--db', db(1)]);
      expect(negative.code).to.equal(2);
      expect(oneLine(negative.stderr)).to.include('maxLifetime');
    });

    it('without --db and SESSION_PGSQL_DB: exit 2 and a one-line reason', async () => {
      for (const command of ['init', 'gc', 'vacuum', 'status']) {
        const r = await cli([command]);
        expect(r.code, command).to.equal(2);
        expect(r.stdout).to.equal('');
        const line = oneLine(r.stderr);
        expect(line).to.include('--db');
        expect(line).to.include('SESSION_PGSQL_DB');
      }
    });

    it('unknown command, no command, extra arguments, unknown flag, bad value: exit 2, one line', async () => {
      const cases = [
        ['frobnicate', '--db', db(1)],
        ['--db', db(1)],
        ['gc', 'now', '--db', db(1)],
        ['status', '--bogus', '--db', db(1)],
        ['gc', '--max-lifetime', 'abc', '--db', db(1)],
        ['status', '--connect-timeout', '0', '--db', db(1)],
        ['status', '--db', 'host=127.0.0.1 port=notaport = ='],
      ];
      for (const args of cases) {
        const r = await cli(args);
        expect(r.code, args.join(' ')).to.equal(2);
        expect(r.stdout, args.join(' ')).to.equal('');
        oneLine(r.stderr);
      }
      expect(oneLine((await cli(cases[0]!)).stderr)).to.include('frobnicate');
    });
  });

  describe('init', () => {
    let schema: string;
    beforeEach(async () => {
      schema = uniqueTable('hk_cli_schema');
      await query(0, `CREATE SCHEMA ${schema}`);
    });
    afterEach(async () => {
      await query(0, `DROP SCHEMA ${schema} CASCADE`);
    });

    it('creates the table (no expiry index on PostgreSQL 14+) and the record table, and exits 0', async () => {
      const name = `${schema}.${table}`;
      expect(await exists(name)).to.equal(false);
      const r = await cli(['init', '--table', name], { SESSION_PGSQL_DB: db(1) });
      expect(r.code, r.stderr).to.equal(0);
      expect(await exists(name)).to.equal(true);
      // The test servers are PostgreSQL 15: GC walks the table by ranges, so no expiry index.
      expect(await exists(`${schema}.${table}_expire_idx`)).to.equal(false);
      expect(await exists(`${schema}.session_pgsql_housekeeping`)).to.equal(true);
      expect(r.stdout).to.match(/^server 0 .*state=up.*rows=0/m);
      expect(await exists(`${schema}.session_pgsql_records`)).to.equal(true);
      expect(r.stdout).to.include(
        `server 0: created table ${name}, ` +
          `housekeeping table ${schema}.session_pgsql_housekeeping, ` +
          `records table ${schema}.session_pgsql_records\n`,
      );
      // Running it again is fine, and says so.
      const again = await cli(['init', '--table', name], { SESSION_PGSQL_DB: db(1) });
      expect(again.code, again.stderr).to.equal(0);
      expect(again.stdout).to.include(
        `server 0: table ${name}, housekeeping table ${schema}.session_pgsql_housekeeping, ` +
          `records table ${schema}.session_pgsql_records already existed\n`,
      );
      expect(again.stdout).to.not.include('created');
    });

    it('--json lists what was created and what existed; a second table finds the record table', async () => {
      const first = parseJson(
        (await cli(['init', '--db', db(1), '--table', `${schema}.${table}`, '--json'])).stdout,
      );
      expect(first.servers[0]).to.deep.include({
        created: [
          `table ${schema}.${table}`,
          `housekeeping table ${schema}.session_pgsql_housekeeping`,
          `records table ${schema}.session_pgsql_records`,
        ],
        existed: [],
        missing: [],
      });
      const second = await cli(['init', '--db', db(1), '--table', `${schema}.${table}_2`]);
      expect(second.code, second.stderr).to.equal(0);
      expect(second.stdout).to.include(
        `server 0: created table ${schema}.${table}_2; ` +
          `housekeeping table ${schema}.session_pgsql_housekeeping, ` +
          `records table ${schema}.session_pgsql_records already existed\n`,
      );
    });

    it('succeeds silently on stderr, also when the record table already exists', async () => {
      // A second table in the same schema: the record table exists already. A successful run
      // must not leak server NOTICEs ("relation ... already exists, skipping") to stderr.
      const first = await cli(['init', '--db', db(1), '--table', `${schema}.${table}`]);
      expect(first.code).to.equal(0);
      expect(first.stderr, 'stderr of the first init').to.equal('');
      const second = await cli(['init', '--db', db(1), '--table', `${schema}.${table}_2`]);
      expect(second.code).to.equal(0);
      expect(second.stderr, 'stderr of the second init').to.equal('');
    });

    it('creates the table on every server', async () => {
      await query(1, `CREATE SCHEMA ${schema}`);
      try {
        const r = await cli(['init', '--db', db(2), '--table', `${schema}.${table}`]);
        expect(r.code, r.stderr).to.equal(0);
        expect(await exists(`${schema}.${table}`, 0)).to.equal(true);
        expect(await exists(`${schema}.${table}`, 1)).to.equal(true);
        expect(r.stdout).to.match(/^server 0 .*state=up/m);
        expect(r.stdout).to.match(/^server 1 .*state=up/m);
      } finally {
        await query(1, `DROP SCHEMA ${schema} CASCADE`);
      }
    });
  });

  describe('gc, vacuum, status', () => {
    it('gc removes expired rows, prints rows removed per server and exits 0', async () => {
      await init(2);
      await insert(0, 7, -60);
      await insert(0, 2, 600);
      await insert(1, 3, -60);
      await insert(1, 4, 600);
      const r = await cli(['gc', '--db', db(2), '--table', table]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stderr).to.equal('');
      expect(r.stdout).to.match(/^server 0 \(.*\): .*removed=7\b/m);
      expect(r.stdout).to.match(/^server 1 \(.*\): .*removed=3\b/m);
      expect(r.stdout.trim().split('\n')).to.have.length(2);
      expect(await count(0)).to.deep.equal({ rows: 2, expired: 0 });
      expect(await count(1)).to.deep.equal({ rows: 4, expired: 0 });
      const [rec] = await query<{ runs: string; last_removed: string }>(
        0,
        'SELECT runs, last_removed FROM session_pgsql_housekeeping WHERE job = $1',
        [`gc "${table}"`],
      );
      expect(rec).to.deep.equal({ runs: '1', last_removed: '7' });
    });

    it('gc --pooler transaction (unnamed statements, for a transaction pooler) collects the same', async () => {
      await init(1);
      await insert(0, 5, -60);
      await insert(0, 2, 600);
      const r = await cli(['gc', '--pooler', 'transaction', '--db', db(1), '--table', table]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.match(/^server 0 \(.*\): .*removed=5\b/m);
      expect(await count(0)).to.deep.equal({ rows: 2, expired: 0 });
      const bad = await cli(['gc', '--pooler', 'statement', '--db', db(1), '--table', table]);
      expect(bad.code).to.equal(2);
      expect(oneLine(bad.stderr)).to.include('"pooler"');
    });

    it('gc --keep-expired --max-lifetime keeps rows within the grace period', async () => {
      await init();
      await insert(0, 4, -30); // within a 100 s grace
      await insert(0, 5, -300); // beyond it
      const r = await cli([
        'gc',
        '--db',
        db(1),
        '--table',
        table,
        '--keep-expired',
        '--max-lifetime',
        '100',
      ]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.match(/removed=5\b/);
      expect(await count(0)).to.deep.equal({ rows: 4, expired: 4 });
      // Without --keep-expired they go too.
      const all = await cli(['gc', '--db', db(1), '--table', table]);
      expect(all.stdout).to.match(/removed=4\b/);
      expect(await count(0)).to.deep.equal({ rows: 0, expired: 0 });
    });

    it('vacuum exits 0 and last_vacuum advances', async () => {
      await init();
      await insert(0, 10, -60);
      expect(await lastVacuum(0)).to.equal(null);
      const r = await cli(['vacuum', '--db', db(1), '--table', table]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stderr).to.equal('');
      expect(r.stdout).to.match(/^server 0 \(.*\): state=up/m);
      const first = await lastVacuum();
      expect(first, 'last_vacuum after the first run').to.be.instanceOf(Date);
      await sleep(1100);
      const again = await cli(['vacuum', '--db', db(1), '--table', table]);
      expect(again.code, again.stderr).to.equal(0);
      const deadline = Date.now() + 5000;
      let second = await lastVacuum();
      while (second!.getTime() <= first!.getTime() && Date.now() < deadline) {
        await sleep(100);
        second = await lastVacuum();
      }
      expect(second!.getTime()).to.be.above(first!.getTime());
    });

    it('status prints each server’s state and the row counts, and exits 0', async () => {
      await init(2);
      await insert(0, 3, -60);
      await insert(0, 5, 600);
      await insert(1, 2, 600);
      const r = await cli(['status', '--db', db(2), '--table', table]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stderr).to.equal('');
      expect(r.stdout).to.match(/^server 0 \(.*\): state=up rows=8 expired=3 bytes=\d+$/m);
      expect(r.stdout).to.match(/^server 1 \(.*\): state=up rows=2 expired=0 bytes=\d+$/m);
      // status changes nothing
      expect(await count(0)).to.deep.equal({ rows: 8, expired: 3 });
    });

    it('gc and vacuum work on a table made elsewhere, without the record table', async () => {
      // The README's cron setup for an app role that may not create tables.
      const schema = uniqueTable('hk_cli_schema');
      await query(
        0,
        `CREATE SCHEMA ${schema};
         CREATE TABLE ${schema}.s (sess_id text PRIMARY KEY, sess_name text, sess_data text,
           sess_created bigint, sess_modified bigint, sess_expire bigint, sess_addr_created text,
           sess_addr_modified text, sess_counter integer, sess_error integer,
           sess_warning integer, sess_notice integer, sess_err_message text, sess_custom text);
         INSERT INTO ${schema}.s (sess_id, sess_expire)
           SELECT 'cron' || g, ${NOW} - 60 FROM generate_series(1, 3) g`,
      );
      try {
        const gc = await cli(['gc', '--db', db(1), '--table', `${schema}.s`]);
        expect(gc.code, gc.stderr).to.equal(0);
        expect(gc.stdout).to.match(/removed=3\b/);
        const vacuum = await cli(['vacuum', '--db', db(1), '--table', `${schema}.s`]);
        expect(vacuum.code, vacuum.stderr).to.equal(0);
        expect(await exists(`${schema}.session_pgsql_housekeeping`)).to.equal(false);
      } finally {
        await query(0, `DROP SCHEMA ${schema} CASCADE`);
      }
    });

    it('status of a table that does not exist: exit 1 with a one-line reason', async () => {
      const r = await cli(['status', '--db', db(1), '--table', table]);
      expect(r.code).to.equal(1);
      const line = oneLine(r.stderr);
      expect(line).to.include(table);
      expect(line).to.include('server 0');
      expect(line).to.include(`session-pgsql init --table ${table}`);
      expect(await exists(table)).to.equal(false); // only init creates it
      for (const command of ['gc', 'vacuum']) {
        const other = await cli([command, '--db', db(1), '--table', table]);
        expect(other.code, command).to.equal(1);
        expect(oneLine(other.stderr), command).to.include(`session-pgsql init --table ${table}`);
      }
    });

    it('vacuum by a role that does not own the table: exit 1, the reason on stderr', async () => {
      await init();
      const role = uniqueTable('hk_cli_role');
      await query(0, `CREATE ROLE ${role} LOGIN`);
      try {
        await query(0, `GRANT SELECT, INSERT, UPDATE, DELETE ON ${table} TO ${role}`);
        const asRole = servers()[0]!.replace(/user=\S+/, `user=${role}`);
        for (const json of [false, true]) {
          const r = await cli([
            'vacuum',
            '--db',
            asRole,
            '--table',
            table,
            ...(json ? ['--json'] : []),
          ]);
          expect(r.code, r.stderr).to.equal(1);
          const line = oneLine(r.stderr);
          expect(line).to.match(/^session-pgsql vacuum: server 0: the role may not VACUUM/);
          expect(line).to.include(table);
          if (json) expect(parseJson(r.stdout).servers[0]!.error).to.include('may not VACUUM');
        }
      } finally {
        await query(0, `REVOKE ALL ON ${table} FROM ${role}`);
        await query(0, `DROP ROLE ${role}`);
      }
    });
  });

  describe('--json', () => {
    it('prints exactly one JSON document for each command', async () => {
      const init = await cli(['init', '--db', db(2), '--table', table, '--json']);
      expect(init.code, init.stderr).to.equal(0);
      const i = parseJson(init.stdout);
      expect(i).to.include({ command: 'init', ok: true });
      expect(i.servers.map((s) => [s.id, s.state, s.rows])).to.deep.equal([
        [0, 'up', 0],
        [1, 'up', 0],
      ]);

      await insert(0, 6, -60);
      await insert(0, 1, 600);
      const gc = await cli(['gc', '--db', db(2), '--table', table, '--json']);
      expect(gc.code, gc.stderr).to.equal(0);
      const g = parseJson(gc.stdout);
      expect(g).to.include({ command: 'gc', ok: true });
      expect(g.servers.map((s) => [s.id, s.state, s.removed])).to.deep.equal([
        [0, 'up', 6],
        [1, 'up', 0],
      ]);
      for (const s of g.servers) expect(s.seconds).to.be.a('number');

      const vacuum = await cli(['vacuum', '--db', db(2), '--table', table, '--json']);
      expect(vacuum.code, vacuum.stderr).to.equal(0);
      const v = parseJson(vacuum.stdout);
      expect(v).to.include({ command: 'vacuum', ok: true });
      expect(v.servers.map((s) => s.state)).to.deep.equal(['up', 'up']);
      for (const s of v.servers) expect(s.error).to.equal(undefined);

      const status = await cli(['status', '--table', table, '--json'], {
        SESSION_PGSQL_DB: db(2),
      });
      expect(status.code, status.stderr).to.equal(0);
      const st = parseJson(status.stdout);
      expect(st).to.include({ command: 'status', ok: true });
      expect(st.servers.map((s) => [s.id, s.state, s.rows, s.expired])).to.deep.equal([
        [0, 'up', 1, 0],
        [1, 'up', 0, 0],
      ]);
      for (const s of st.servers) {
        expect(s.bytes).to.be.a('number').and.above(0);
        expect(s.server).to.be.a('string');
      }
    });
  });

  describe('secrets', () => {
    it('password and sslpassword, key=value or in a URI, never show in any output', async () => {
      await init();
      const [secret, sslSecret] = ['cli-secret-pw', 'cli-ssl-secret-pw'];
      const kv = Object.fromEntries(
        servers()[0]!
          .split(/\s+/)
          .map((p) => p.split('=') as [string, string]),
      );
      const entries = [
        `${servers()[0]} password=${secret} sslpassword=${sslSecret}`,
        `postgresql://${kv.user}:${secret}@${kv.host}:${kv.port}/${kv.dbname}?sslpassword=${sslSecret}`,
      ];
      for (const entry of entries) {
        for (const args of [
          ['status', '--db', entry, '--table', table],
          ['status', '--db', entry, '--table', table, '--json'],
          ['gc', '--db', entry, '--table', `${table}_missing`],
          ['status', '--db', `${entry} port=notaport = =`],
        ]) {
          const r = await cli(args);
          expect(r.stdout + r.stderr, args.join(' ')).to.not.include(secret);
          expect(r.stdout + r.stderr, args.join(' ')).to.not.include(sslSecret);
        }
        const r = await cli(['status', '--db', entry, '--table', table]);
        expect(r.code, r.stderr).to.equal(0);
        expect(r.stdout).to.include('password=***');
        expect(r.stdout).to.include('sslpassword=***');
      }
    });
  });

  describe('unreachable servers', () => {
    const password = 'hunter2';
    let dead: string;
    let port: number;
    beforeEach(async () => {
      port = await closedPort();
      dead = `host=127.0.0.1 port=${port} dbname=postgres user=postgres password=${password} connect_timeout=3`;
    });

    for (const command of ['init', 'gc', 'vacuum', 'status']) {
      it(`${command} on an unreachable server: exit 1, one line naming the server, no password`, async () => {
        const r = await cli([command, '--db', dead, '--table', table]);
        expect(r.code, r.stderr).to.equal(1);
        const line = oneLine(r.stderr);
        expect(line).to.include('server 0');
        expect(line).to.include(String(port));
        expect(r.stdout + r.stderr).to.not.include(password);

        const json = await cli([command, '--db', dead, '--table', table, '--json']);
        expect(json.code).to.equal(1);
        const report = parseJson(json.stdout);
        expect(report).to.include({ command, ok: false });
        expect(report.servers[0]).to.include({ id: 0, state: 'down' });
        expect(json.stdout + json.stderr).to.not.include(password);
        oneLine(json.stderr);
      });
    }

    it('status with one live and one unreachable server reports the live one and exits 1', async () => {
      await init();
      await insert(0, 2, 600);
      await insert(0, 1, -60);
      const list = `${servers()[0]};${dead}`;
      const r = await cli(['status', '--db', list, '--table', table]);
      expect(r.code).to.equal(1);
      expect(r.stdout).to.match(/^server 0 \(.*\): state=up rows=3 expired=1 bytes=\d+$/m);
      expect(r.stdout).to.match(/^server 1 \(.*\): state=down/m);
      const line = oneLine(r.stderr);
      expect(line).to.include('server 1');
      expect(line).to.include(String(port));
      expect(r.stdout + r.stderr).to.not.include(password);

      const json = await cli(['status', '--db', list, '--table', table, '--json']);
      expect(json.code).to.equal(1);
      const report = parseJson(json.stdout);
      expect(report.ok).to.equal(false);
      expect(report.servers[0]).to.include({ state: 'up', rows: 3, expired: 1 });
      expect(report.servers[1]).to.include({ state: 'down' });
      expect(report.servers[1]!.error).to.be.a('string');
      expect(json.stdout + json.stderr).to.not.include(password);
    });

    it('gc with one live and one unreachable server still collects on the live one and exits 1', async () => {
      await init();
      await insert(0, 4, -60);
      const r = await cli(['gc', '--db', `${servers()[0]};${dead}`, '--table', table]);
      expect(r.code).to.equal(1);
      expect(r.stdout).to.match(/^server 0 \(.*\): state=up removed=4\b/m);
      expect(await count(0)).to.deep.equal({ rows: 0, expired: 0 });
      expect(oneLine(r.stderr)).to.include('server 1');
      expect(r.stdout + r.stderr).to.not.include(password);
    });
  });
});
