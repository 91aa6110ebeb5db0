'use strict';
// Mocha's spec reporter plus one final line that CI and humans can grep:
//   Tests: N passed, N failed[, N skipped]
// Mocha runs without --exit, so a leaked handle keeps the process alive after the run; if that
// happens, say so (and name the live resources) instead of hanging silently.
// Under scripts/run-tests.js it also ends the run if that runner dies (even by SIGKILL): its
// PostgreSQL servers are gone by then, and an orphaned mocha must not run on against nothing.

const Mocha = require('mocha');

const { Spec } = Mocha.reporters;
const { EVENT_RUN_END } = Mocha.Runner.constants;
const HANG_NOTICE_MS = 10_000;
const ORPHAN_CHECK_MS = 1_000;

function exitWhenOrphaned() {
  if (!process.env.SESSION_PGSQL_TEST_CLUSTERS) return; // not started by run-tests.js
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    process.stderr.write('\nmocha: the test runner (scripts/run-tests.js) died; exiting.\n');
    process.exit(1);
  }, ORPHAN_CHECK_MS);
  timer.unref();
}

class SummaryReporter extends Spec {
  constructor(runner, options) {
    super(runner, options);
    exitWhenOrphaned();
    // Registered after Spec's own handler, so the line follows its epilogue.
    runner.once(EVENT_RUN_END, () => {
      const { passes = 0, failures = 0, pending = 0 } = this.stats;
      let line = `Tests: ${passes} passed, ${failures} failed`;
      if (pending > 0) line += `, ${pending} skipped`;
      process.stdout.write(`${line}\n`);

      const notice = setTimeout(() => {
        const live =
          typeof process.getActiveResourcesInfo === 'function'
            ? process.getActiveResourcesInfo().join(', ')
            : 'unknown';
        process.stderr.write(
          `\nmocha has not exited ${HANG_NOTICE_MS / 1000} s after the last test: something ` +
            `still holds the event loop open (live resources: ${live}).\n`,
        );
      }, HANG_NOTICE_MS);
      notice.unref();
    });
  }
}

module.exports = SummaryReporter;
