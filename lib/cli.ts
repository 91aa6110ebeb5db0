#!/usr/bin/env node
// npx session-pgsql init|gc|vacuum|status|import|sessions|revoke: housekeeping from cron or a
// deploy step, the move from connect-pg-simple, and a user's sessions for support staff.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SessionPgsql, withAdapterId, type Revocation, type UserSessions } from './handler';
import { ErrorCode, SessionPgsqlError } from './errors';
import { importConnectPgSimple, type ImportCounts } from './import';
import { migrateIds, type MigratedServer } from './migrate-ids';
import { libpqVersion } from './index';
import { resolveOptions, splitConninfo } from './options';

const usage = `Usage: session-pgsql <command> [options]

Commands:
  init      create the session table (with an expiry index before PostgreSQL 14) and the
            housekeeping and records tables, and say which were created and which already
            existed (for deployments whose application role may not create tables)
  gc        delete expired sessions now on every server; prints rows removed per server
  vacuum    run VACUUM (ANALYZE) of the session table now on every server
  status    print each server's state and the table's size and row counts
  import connect-pg-simple
            copy the live sessions of connect-pg-simple's table into ours, ids unchanged,
            so switching stores logs nobody out; safe to run again
  sessions USER
            list USER's live sessions on every server (the user the adapters' \`user\`
            option stores): id, server, created, last seen, expiry, addresses
  revoke USER [--except ID]...
            log USER out everywhere: every live session on every server (copies held
            during an outage included) but the ids given with --except (as \`sessions\`
            lists them). For a server that is down the revocation is recorded on the
            servers that are up and runs there before it is used again, by any process
            that opens it: said on stdout, exit status 0. Exit status 1 when no server
            could record it (run it again once that server is back, or use --wait)
  migrate-ids
            rewrite every session stored under its raw id to the key of hashIds (SHA-256, or
            HMAC-SHA256 with --key-env), moving it to that key's home server; safe to run
            again, and while the application runs (see the docs: Hashed ids). Needs pg
  help      this text

Options:
  --db <list>       ';'-separated libpq conninfo list (default: $SESSION_PGSQL_DB)
  --table <name>    session table, optionally schema.table (default: php_session)
  --max-lifetime <s>  seconds a session lives; with --keep-expired sets GC's grace (default 1440)
  --keep-expired    GC keeps expired rows for one more lifetime, like the handler option
  --connect-timeout <s>  seconds to wait for each server (default 5)
  --pooler <mode>   'transaction' behind a transaction-pooling PgBouncer (default: none)
  --json            print one JSON document on stdout
  -h, --help        this text
  -v, --version     print the version of session-pgsql and of the libpq it runs with

Options of revoke:
  --except <id>     spare this session (repeat for several)
  --wait <s>        when a server is down, wait up to this many seconds for it to come back
                    and revoke there too before exiting (default 0: exit at once)

Options of import connect-pg-simple:
  --from-table <name>   connect-pg-simple's table (its tableName; default: session)
  --from-schema <name>  its schema (its schemaName; default: the search path's)
  --from-db <conninfo>  the database holding it (default: the first server of --db)
  --dry-run             count what would be copied; write nothing

Options of migrate-ids (--db lists the servers in the application's order):
  --key-env <VAR>       the environment variable holding the hashIds key (HMAC-SHA256);
                        without it, plain SHA-256 (hashIds: true)
  --placement <mode>    the application's placement: rendezvous (default), php, or failover
                        (failoverMode: true)
  --batch <n>           rows per transaction (default 500)
  --dry-run             count what would move; change nothing

Exit status: 0 success; 1 an operation failed on some server (the reason is on stderr; for
sessions, its sessions are not listed; for revoke, they are not revoked);
2 usage error (unknown command or option, no --db and no SESSION_PGSQL_DB).

Crontab example (GC every 10 minutes, VACUUM nightly). cron starts in the home directory, so
cd into the application that depends on session-pgsql; --no-install makes npx fail rather than
download a package when it is not installed there:
  */10 * * * * cd /srv/app && SESSION_PGSQL_DB='host=/run/postgresql dbname=app' npx --no-install session-pgsql gc
  30 3 * * *   cd /srv/app && SESSION_PGSQL_DB='host=/run/postgresql dbname=app' npx --no-install session-pgsql vacuum
`;

const COMMANDS = [
  'init',
  'gc',
  'vacuum',
  'status',
  'import',
  'sessions',
  'revoke',
  'migrate-ids',
  'help',
];
const USER_COMMANDS = ['sessions', 'revoke'];
const IMPORT_SOURCES = ['connect-pg-simple'];

const OPTIONS = {
  db: { type: 'string' },
  table: { type: 'string' },
  'max-lifetime': { type: 'string' },
  'keep-expired': { type: 'boolean' },
  'connect-timeout': { type: 'string' },
  pooler: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
  'from-table': { type: 'string' },
  'from-schema': { type: 'string' },
  'from-db': { type: 'string' },
  'dry-run': { type: 'boolean' },
  except: { type: 'string', multiple: true },
  wait: { type: 'string' },
  'key-env': { type: 'string' },
  placement: { type: 'string' },
  batch: { type: 'string' },
} as const;

const IMPORT_ONLY = ['from-table', 'from-schema', 'from-db'];
const REVOKE_ONLY = ['except', 'wait'];
const MIGRATE_ONLY = ['key-env', 'placement', 'batch'];

class UsageError extends Error {}

/**
 * Our own message for an option the parser does not know or a value it lacks, naming it (Node's
 * parseArgs messages talk about positionals and '--'). Returns the arguments with each string
 * option's value attached (`--db=...`), so a value starting with '-' stays a value.
 */
function checkOptions(argv: string[]): string[] {
  const byShort = new Map<string, string>();
  for (const [name, spec] of Object.entries(OPTIONS)) {
    if ('short' in spec) byShort.set(spec.short, name);
  }
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      out.push(...argv.slice(i));
      break;
    }
    out.push(arg);
    if (!arg.startsWith('-') || arg === '-') continue;
    const names = arg.startsWith('--')
      ? [arg.slice(2).split('=')[0]!]
      : [...arg.slice(1)].map((c) => byShort.get(c) ?? `-${c}`);
    for (const name of names) {
      const spec = (OPTIONS as Record<string, { type: string }>)[name];
      if (spec === undefined) {
        const shown = name.startsWith('-') ? name : `--${name}`;
        throw new UsageError(`unknown option ${shown}`);
      }
      if (spec.type === 'string' && !arg.includes('=')) {
        const value = argv[i + 1];
        if (value === undefined) throw new UsageError(`option --${name} needs a value`);
        out[out.length - 1] = `--${name}=${value}`;
        i++;
      }
    }
  }
  return out;
}

function version(): string {
  // dist/cli.js and lib/cli.ts both sit one level below package.json.
  const pkg = JSON.parse(readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  const v = libpqVersion;
  return `session-pgsql ${pkg.version} (libpq ${Math.floor(v / 10000)}.${v % 100})\n`;
}

/** An identifier as a user wrote it: the quotes only where they are needed. */
function shown(quoted: string): string {
  return quoted.replace(/"((?:[^"]|"")*)"/g, (q, name: string) =>
    /^[a-z_][a-z0-9_$]*$/.test(name) ? name : q,
  );
}

/** init's account of one server: what it created and what was already there. */
function setupSummary(
  setup: {
    table: string | null;
    housekeeping: string | null;
    version: string | null;
    index: string | null;
    records: string | null;
  },
  names: { table: string; index: string; housekeeping: string; records: string },
): { created: string[]; existed: string[]; missing: string[] } {
  const out = { created: [] as string[], existed: [] as string[], missing: [] as string[] };
  const table = shown(names.table);
  const index = shown(names.index);
  const housekeeping = shown(names.housekeeping);
  if (setup.table === 'created') out.created.push(`table ${table}`);
  // PostgreSQL 14 and later: a new table has no expiry index (GC walks it by ranges).
  if (setup.table === 'created' && setup.index === 'created') out.created.push(`index ${index}`);
  if (setup.table === 'existed') out.existed.push(`table ${table}`);
  if (setup.housekeeping === 'created') out.created.push(`housekeeping table ${housekeeping}`);
  if (setup.housekeeping === 'existed') out.existed.push(`housekeeping table ${housekeeping}`);
  if (setup.housekeeping === 'missing') out.missing.push(`housekeeping table ${housekeeping}`);
  const records = shown(names.records);
  if (setup.records === 'created') out.created.push(`records table ${records}`);
  if (setup.records === 'existed') out.existed.push(`records table ${records}`);
  if (setup.records === 'missing') out.missing.push(`records table ${records}`);
  // Created with the table, the column is no news; added to an existing one, it is the migration.
  if (setup.version === 'created' && setup.table !== 'created')
    out.created.push(`column ${table}.sess_version`);
  if (setup.version === 'missing') out.missing.push(`column ${table}.sess_version`);
  return out;
}

function sentence(summary: { created: string[]; existed: string[]; missing: string[] }): string {
  const parts = [];
  if (summary.created.length > 0) parts.push(`created ${summary.created.join(', ')}`);
  if (summary.existed.length > 0) parts.push(`${summary.existed.join(', ')} already existed`);
  // What each missing piece costs; sessions are served either way.
  const costs = summary.missing.map((what) =>
    what.startsWith('column ')
      ? `${what} (a write a hung server runs late can replace a newer one there)`
      : what.startsWith('records ')
        ? `${what} (or this role may not use it: nothing another server misses is recorded here)`
        : `${what} (GC and VACUUM runs go unrecorded)`,
  );
  if (costs.length > 0) parts.push(`could not create ${costs.join(', ')}`);
  return parts.join('; ');
}

interface Report {
  command: string;
  ok: boolean;
  servers: Array<Record<string, unknown>>;
  /** import: what was copied and skipped. */
  import?: ImportCounts;
  dryRun?: boolean;
  /** sessions, revoke: the user. */
  user?: string;
  /** sessions: the user's live sessions. */
  sessions?: UserSessions['sessions'];
  /** revoke: sessions logged out. */
  revoked?: number;
  /** revoke: the servers down whose revocation is recorded, to run there on their return. */
  recorded?: number[];
}

async function main(argv: string[]): Promise<number> {
  const args = checkOptions(argv);
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, options: OPTIONS });
  } catch (err) {
    throw new UsageError((err as Error).message); // checkOptions has caught what users hit
  }
  const { values, positionals } = parsed;
  const command = positionals[0];
  if (values.help || command === 'help') {
    process.stdout.write(usage);
    return 0;
  }
  if (values.version) {
    process.stdout.write(version());
    return 0;
  }
  if (command === undefined) throw new UsageError('a command is required');
  if (!COMMANDS.includes(command)) throw new UsageError(`unknown command "${command}"`);
  if (command === 'import') {
    if (positionals.length !== 2 || !IMPORT_SOURCES.includes(positionals[1]!)) {
      throw new UsageError(
        positionals[1] === undefined
          ? 'import needs a source: import connect-pg-simple'
          : `cannot import from "${positionals.slice(1).join(' ')}" (only connect-pg-simple)`,
      );
    }
  } else if (USER_COMMANDS.includes(command)) {
    if (positionals.length !== 2 || positionals[1] === '')
      throw new UsageError(
        positionals.length < 2
          ? `${command} needs a user: ${command} USER`
          : `unexpected argument "${positionals.slice(2).join(' ')}"`,
      );
    const misplaced = IMPORT_ONLY.find((name) => values[name as keyof typeof values] !== undefined);
    if (misplaced) throw new UsageError(`option --${misplaced} is only for import`);
  } else {
    if (positionals.length !== 1)
      throw new UsageError(`unexpected argument "${positionals.slice(1).join(' ')}"`);
    const misplaced = IMPORT_ONLY.find((name) => values[name as keyof typeof values] !== undefined);
    if (misplaced) throw new UsageError(`option --${misplaced} is only for import`);
  }
  if (command !== 'migrate-ids') {
    const misplaced = MIGRATE_ONLY.find(
      (name) => values[name as keyof typeof values] !== undefined,
    );
    if (misplaced) throw new UsageError(`option --${misplaced} is only for migrate-ids`);
    if (values['dry-run'] !== undefined && command !== 'import')
      throw new UsageError('option --dry-run is only for import and migrate-ids');
  }
  if (command !== 'revoke') {
    const misplaced = REVOKE_ONLY.find((name) => values[name as keyof typeof values] !== undefined);
    if (misplaced) throw new UsageError(`option --${misplaced} is only for revoke`);
  }
  const wait = values.wait === undefined ? 0 : Number(values.wait);
  if (!(wait >= 0 && wait <= 86_400))
    throw new UsageError(`option --wait needs seconds from 0 to 86400, not "${values.wait}"`);
  const db = values.db ?? process.env.SESSION_PGSQL_DB;
  if (!db) throw new UsageError('no server list: pass --db or set SESSION_PGSQL_DB');
  if (command === 'migrate-ids') return migrateCommand(values, db);

  let handler: SessionPgsql;
  const table = values.table ?? 'php_session';
  try {
    handler = new SessionPgsql({
      db,
      table,
      // import makes the table it copies into, as the application would on its first start.
      createTable: command === 'init' || command === 'import',
      gcInterval: 0,
      vacuumInterval: 0,
      keepExpired: values['keep-expired'] ?? false,
      ...(values['max-lifetime'] ? { maxLifetime: Number(values['max-lifetime']) } : {}),
      ...(values['connect-timeout'] ? { connectTimeout: Number(values['connect-timeout']) } : {}),
      // Validated by the handler's options: a wrong mode is a usage error naming it.
      ...(values.pooler ? { pooler: values.pooler as 'none' | 'transaction' } : {}),
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  handler.on('warning', () => {}); // failures are reported per server below
  const report: Report = { command, ok: true, servers: [] };
  let imported: ImportCounts | null = null as ImportCounts | null;
  try {
    let failure: unknown = null;
    try {
      await handler.open();
    } catch (err) {
      failure = err; // some servers may still answer below; each reports its own state
    }
    if (failure === null || handler.status().servers.some((s) => s.state === 'up')) {
      if (command === 'gc') await handler.gc().catch((err) => (failure = err));
      if (command === 'vacuum') await handler.vacuum().catch((err) => (failure = err));
    }
    const user = USER_COMMANDS.includes(command) ? positionals[1]! : null;
    let unreachable: number[] = [];
    let recorded: number[] = [];
    if (command === 'sessions' && user !== null) {
      const found = await handler.sessionsOf(user).catch((err) => {
        failure = err;
        return null;
      });
      report.user = user;
      report.sessions = found?.sessions ?? [];
      unreachable = found?.unreachable ?? [];
    }
    if (command === 'revoke' && user !== null) {
      // The ids as `sessions` lists them (stored keys): any id a session can have.
      const except = values.except ?? [];
      const done: Revocation | null = await withAdapterId(() =>
        handler.destroySessionsOf(user, { except }),
      ).catch((err) => {
        failure = err;
        return null;
      });
      report.user = user;
      report.revoked = done?.destroyed ?? 0;
      unreachable = done?.unreachable ?? [];
      recorded = done?.recorded ?? [];
      // The revocation waits in this handler for the servers it missed, and runs there as they
      // come back (before they are up): --wait keeps the process for that long. A server that
      // failed the statement while up has none pending, and stays unrevoked.
      const pendingOn = (i: number) => handler.status().servers[i]!.pendingRevocations > 0;
      const waiting = unreachable.filter(pendingOn);
      const deadline = Date.now() + wait * 1000;
      while (waiting.some(pendingOn) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      unreachable = unreachable.filter((i) => !waiting.includes(i) || pendingOn(i));
      recorded = recorded.filter((i) => unreachable.includes(i));
      report.recorded = recorded;
    }
    if (command === 'import' && failure === null) {
      const from = values['from-db'] ?? splitConninfo(db)[0]!;
      imported = await importConnectPgSimple(handler, {
        from,
        table: values['from-table'] ?? 'session',
        ...(values['from-schema'] ? { schema: values['from-schema'] } : {}),
        dryRun: values['dry-run'] ?? false,
      }).catch((err) => {
        failure = err;
        return null;
      });
    }
    const stats = command === 'status' || command === 'init' ? await handler.stats() : [];
    const names = resolveOptions({ table }).native;
    for (const s of handler.status().servers) {
      const entry: Record<string, unknown> = { id: s.id, server: s.server, state: s.state };
      if (s.state !== 'up' && s.lastError) {
        entry.error =
          s.lastError.code === ErrorCode.TableMissing
            ? `${s.lastError.message}; create it with: session-pgsql init --table ${table}`
            : s.lastError.message;
      }
      if (command === 'gc' && s.lastGc) {
        entry.removed = s.lastGc.removed;
        entry.seconds = s.lastGc.duration;
        if (s.lastGc.error) entry.error = s.lastGc.error;
      }
      if (command === 'vacuum' && s.lastVacuum) {
        entry.seconds = s.lastVacuum.duration;
        if (s.lastVacuum.error) entry.error = s.lastVacuum.error;
      }
      const st = stats[s.id];
      if (st && 'rows' in st) Object.assign(entry, st);
      else if (st && 'error' in st && s.state === 'up') entry.error = st.error.message;
      if (command === 'init' && s.state === 'up') {
        const summary = setupSummary(s.setup, names);
        Object.assign(entry, summary);
        // Sessions are served without it, but init was asked to make it.
        if (summary.missing.length > 0)
          entry.error = sentence({ ...summary, created: [], existed: [] });
      }
      if (command === 'revoke' && recorded.includes(s.id)) {
        // Durable: whichever process opens that server next revokes there first.
        delete entry.error;
        entry.recorded = true;
      } else if (command === 'revoke' && unreachable.includes(s.id)) {
        const why = typeof entry.error === 'string' ? ` (${entry.error})` : '';
        entry.error =
          `could not be reached${why}: ${report.user}'s sessions there are NOT revoked; ` +
          `run \`session-pgsql revoke\` again once it is back (or pass --wait)`;
      } else if (command === 'sessions' && unreachable.includes(s.id)) {
        const why = typeof entry.error === 'string' ? ` (${entry.error})` : '';
        entry.error = `could not be reached${why}: its sessions are not listed`;
      }
      if ((s.state !== 'up' && entry.recorded !== true) || entry.error !== undefined)
        report.ok = false;
      report.servers.push(entry);
    }
    if (imported) {
      report.import = imported;
      if (values['dry-run']) report.dryRun = true;
    }
    if (failure !== null && report.servers.every((s) => s.error === undefined)) {
      report.ok = false;
      process.stderr.write(`session-pgsql ${command}: ${(failure as Error).message}\n`);
    }
  } finally {
    await handler.close();
  }
  print(report, values.json ?? false);
  return report.ok ? 0 : 1;
}

/** `migrate-ids`: its own run (pg connections to each server), its own report. */
async function migrateCommand(
  values: {
    'key-env'?: string;
    placement?: string;
    batch?: string;
    table?: string;
    'dry-run'?: boolean;
    json?: boolean;
  },
  db: string,
): Promise<number> {
  let key: string | undefined;
  const variable = values['key-env'];
  if (variable !== undefined) {
    key = process.env[variable];
    // The key is read from the environment only (an argument shows in `ps`), and never shown.
    if (!key) throw new UsageError(`--key-env ${variable}: the environment variable is not set`);
  }
  const placement = values.placement ?? 'rendezvous';
  if (placement !== 'rendezvous' && placement !== 'php' && placement !== 'failover') {
    throw new UsageError(
      `--placement must be rendezvous, php or failover (received ${JSON.stringify(placement)})`,
    );
  }
  const batch = values.batch === undefined ? 500 : Number(values.batch);
  if (!Number.isSafeInteger(batch) || batch < 1 || batch > 100000)
    throw new UsageError(`--batch must be an integer from 1 to 100000`);
  const table = values.table ?? 'php_session';
  const servers = splitConninfo(db);
  let options;
  try {
    // The same checks as the application's options (db entries, table, key), as usage errors.
    const resolved = resolveOptions({
      db: servers,
      table,
      hashIds: key === undefined ? true : { key },
    });
    options = { redacted: resolved.redacted };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const dryRun = values['dry-run'] ?? false;
  let result: MigratedServer[];
  try {
    result = await migrateIds({
      servers,
      table,
      placement,
      hashIds: key === undefined ? true : { key },
      batch,
      dryRun,
    });
  } catch (err) {
    process.stderr.write(
      `session-pgsql migrate-ids: ${(err as Error).message}; rows moved so far stay moved, ` +
        'run it again to finish\n',
    );
    return 1;
  }
  const report = {
    command: 'migrate-ids',
    ok: true,
    dryRun,
    servers: result.map((r, id) => ({ id, server: options.redacted[id], ...r })),
  };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } else {
    for (const s of report.servers) {
      process.stdout.write(
        `server ${s.id} (${s.server}): ${dryRun ? 'would rewrite' : 'rewrote'} ${s.moved} ` +
          `raw id(s) (${s.moved - s.stayed} to another server), already hashed ${s.hashed}` +
          (s.otherKind > 0 ? `, hashed the other way ${s.otherKind} (left alone)` : '') +
          '\n',
      );
    }
  }
  return 0;
}

/** Unix seconds as an ISO 8601 time in UTC, to the second. */
function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The rows as a text table, columns padded to their widest cell. */
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows
    .map((r) =>
      r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  '),
    )
    .map((line) => `${line}\n`)
    .join('');
}

/** sessions and revoke: what was found or done, for a person. */
function printUser(report: Report): void {
  if (report.sessions) {
    const n = report.sessions.length;
    if (n === 0) {
      process.stdout.write(`no live session of ${report.user}\n`);
      return;
    }
    const rows = [['ID', 'SERVER', 'CREATED', 'LAST SEEN', 'EXPIRES', 'ADDRESSES']];
    for (const s of report.sessions) {
      const addresses = [s.addressCreated, s.addressModified].filter((a, i, all) => {
        return a !== '' && all.indexOf(a) === i;
      });
      rows.push([
        s.id,
        String(s.server),
        iso(s.created),
        iso(s.lastSeen),
        iso(s.expires),
        addresses.join(' -> ') || '-',
      ]);
    }
    process.stdout.write(table(rows));
    process.stdout.write(`${n} live session(s) of ${report.user}\n`);
  }
  if (report.revoked !== undefined) {
    process.stdout.write(`revoked ${report.revoked} session(s) of ${report.user}\n`);
  }
  for (const id of report.recorded ?? []) {
    process.stdout.write(
      `server ${id} could not be reached: the revocation is recorded on the servers that are ` +
        `up and runs there before it is used again, by any process that opens it\n`,
    );
  }
}

function print(report: Report, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } else if (report.user !== undefined) {
    printUser(report);
  } else {
    for (const s of report.servers) {
      const facts = Object.entries(s)
        .filter(([k]) => !['id', 'server', 'error', 'created', 'existed', 'missing'].includes(k))
        .map(
          ([k, v]) => `${k}=${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(3) : v}`,
        );
      process.stdout.write(`server ${s.id} (${s.server}): ${facts.join(' ')}\n`);
      if (Array.isArray(s.created)) {
        const said = sentence({
          created: s.created as string[],
          existed: s.existed as string[],
          missing: [], // on stderr, as an error
        });
        if (said) process.stdout.write(`server ${s.id}: ${said}\n`);
      }
    }
    if (report.import) {
      const c = report.import;
      process.stdout.write(
        `${report.dryRun ? 'would copy' : 'copied'} ${c.copied} live session(s); skipped ` +
          `${c.expired} expired, ${c.newer} already here with the same or a later expiry, ` +
          `${c.invalid} our table cannot hold\n`,
      );
    }
  }
  for (const s of report.servers) {
    if (s.error === undefined) continue;
    // Library messages already start with "server N: ".
    const reason = String(s.error).replace(/^server \d+: /, '');
    process.stderr.write(`session-pgsql ${report.command}: server ${s.id}: ${reason}\n`);
  }
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (err) => {
    const usageError =
      err instanceof UsageError ||
      (err instanceof SessionPgsqlError && err.code === 'SPG_INVALID_OPTION');
    process.stderr.write(`session-pgsql: ${err.message}${usageError ? ' (see --help)' : ''}\n`);
    process.exitCode = usageError ? 2 : 1;
  },
);
