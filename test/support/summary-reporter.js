'use strict';
// Mocha's spec reporter plus one final line that CI and humans can grep:
//   Tests: N passed, N failed[, N skipped]
// Mocha runs without --exit, so a leaked handle keeps the process alive after the run; if that
// happens, say so (and name the live resources) instead of hanging silently.

const Mocha = require('mocha');

const { Spec } = Mocha.reporters;
const { EVENT_RUN_END } = Mocha.Runner.constants;
const HANG_NOTICE_MS = 10_000;

class SummaryReporter extends Spec {
  constructor(runner, options) {
    super(runner, options);
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
