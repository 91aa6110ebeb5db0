#!/usr/bin/env node
// npx session-pgsql init|gc|vacuum|status: housekeeping from cron or a deploy step.
import { parseArgs } from 'node:util';
import { SessionPgsql } from './handler';
import { SessionPgsqlError } from './errors';

const usage = `Usage: session-pgsql <command> [options]

Commands:
  init      create the session table, its index and the housekeeping record
            (for deployments whose application role may not create tables)
  gc        delete expired sessions now on every server; prints rows removed per server
  vacuum    run VACUUM (ANALYZE) of the session table now on every server
  status    print each server's state and the table's size and row counts

Options:
  --db <list>       ';'-separated libpq conninfo list (default: $SESSION_PGSQL_DB)
  --table <name>    session table, optionally schema.table (default: php_session)
  --max-lifetime <s>  seconds a session lives; with --keep-expired sets GC's grace (default 1440)
  --keep-expired    GC keeps expired rows for one more lifetime, like the handler option
  --connect-timeout <s>  seconds to wait for each server (default 5)
  --json            print one JSON document on stdout
  -h, --help        this text

Exit status: 0 success; 1 an operation failed on some server (the reason is on stderr);
2 usage error (unknown command or option, no --db and no SESSION_PGSQL_DB).

Crontab example (GC every 10 minutes, VACUUM nightly):
  */10 * * * * SESSION_PGSQL_DB='host=/run/postgresql dbname=app' npx session-pgsql gc
  30 3 * * *   SESSION_PGSQL_DB='host=/run/postgresql dbname=app' npx session-pgsql vacuum
`;

class UsageError extends Error {}

interface Report {
  command: string;
  ok: boolean;
  servers: Array<Record<string, unknown>>;
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        db: { type: 'string' },
        table: { type: 'string' },
        'max-lifetime': { type: 'string' },
        'keep-expired': { type: 'boolean' },
        'connect-timeout': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(usage);
    return 0;
  }
  const command = positionals[0];
  if (positionals.length !== 1 || !['init', 'gc', 'vacuum', 'status'].includes(command!)) {
    throw new UsageError(
      command === undefined
        ? 'a command is required'
        : `unknown command "${positionals.join(' ')}"`,
    );
  }
  const db = values.db ?? process.env.SESSION_PGSQL_DB;
  if (!db) throw new UsageError('no server list: pass --db or set SESSION_PGSQL_DB');

  let handler: SessionPgsql;
  try {
    handler = new SessionPgsql({
      db,
      table: values.table ?? 'php_session',
      createTable: command === 'init',
      gcInterval: 0,
      vacuumInterval: 0,
      keepExpired: values['keep-expired'] ?? false,
      ...(values['max-lifetime'] ? { maxLifetime: Number(values['max-lifetime']) } : {}),
      ...(values['connect-timeout'] ? { connectTimeout: Number(values['connect-timeout']) } : {}),
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  handler.on('warning', () => {}); // failures are reported per server below
  const report: Report = { command: command!, ok: true, servers: [] };
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
    const stats = command === 'status' || command === 'init' ? await handler.stats() : [];
    for (const s of handler.status().servers) {
      const entry: Record<string, unknown> = { id: s.id, server: s.server, state: s.state };
      if (s.state !== 'up' && s.lastError) entry.error = s.lastError.message;
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
      if (s.state !== 'up' || entry.error !== undefined) report.ok = false;
      report.servers.push(entry);
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

function print(report: Report, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } else {
    for (const s of report.servers) {
      const facts = Object.entries(s)
        .filter(([k]) => !['id', 'server', 'error'].includes(k))
        .map(
          ([k, v]) => `${k}=${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(3) : v}`,
        );
      process.stdout.write(`server ${s.id} (${s.server}): ${facts.join(' ')}\n`);
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
