// The CLI as a user runs it: `node dist/cli.js ...` in a child process.
import { execFile } from 'node:child_process';
import path from 'node:path';

/** The built CLI. */
export const CLI = path.join(__dirname, '..', '..', 'dist', 'cli.js');

/** How a CLI run ended: its exit code (null when killed) and its output. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI with `args`; SESSION_PGSQL_DB is unset unless given in `env`, so a developer's
 * own setting never reaches a test. Killed after `timeoutMs`.
 */
export function runCli(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 120_000,
): Promise<CliRun> {
  const base = { ...process.env };
  delete base.SESSION_PGSQL_DB;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { ...base, ...env }, timeout: timeoutMs, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        const code = error ? (error as { code?: number | string }).code : 0;
        resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
      },
    );
  });
}
