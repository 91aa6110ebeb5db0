// The native pipeline's decision when a batch ends (Decide() in native/pipeline.h): which
// operations are answered, which are sent again in their place, which are sent again alone, and
// which go back to the server when the connection is lost first. It is a pure function, reached
// through an internal hook of the addon, so no server is needed. The behaviour it gives users is
// in docs/behaviour.md (Group commit): one bad write neither fails nor loses its neighbours.
import { expect } from 'chai';
import { native, type SettleOutcomeForTest } from '../lib/native';

function decide(batch: SettleOutcomeForTest[], end: 'sync' | 'lost' = 'sync'): string[] {
  return native.__settleForTest(batch, end);
}

describe('05 pipeline: what becomes of each operation when its batch ends', () => {
  describe('the Sync arrives', () => {
    it('settles every operation of a batch that committed', () => {
      expect(decide([{}, {}, {}])).to.deep.equal(['settle', 'settle', 'settle']);
      expect(decide([])).to.deep.equal([]);
    });

    it('settles an operation alone in its batch with its own error', () => {
      expect(decide([{ error: true }])).to.deep.equal(['settle']);
    });

    it('rollback: the failed operation settles with its error, the others are sent again', () => {
      // Sent before it, rolled back with it; sent after it, skipped by PostgreSQL (aborted).
      expect(decide([{}, { error: true }, { aborted: true }, { aborted: true }])).to.deep.equal([
        'retry',
        'settle',
        'retry',
        'retry',
      ]);
    });

    it('rollback in a group of reads: the same, nothing else is lost', () => {
      expect(decide([{ error: true }, { aborted: true }])).to.deep.equal(['settle', 'retry']);
    });

    it('COMMIT failure (a deferred constraint): every operation is sent again alone', () => {
      // The COMMIT's error arrives after the last operation's statements: it names no operation.
      expect(decide([{}, {}, { error: true, atCommit: true }])).to.deep.equal([
        'alone',
        'alone',
        'alone',
      ]);
    });

    it('COMMIT failure of an operation alone in its batch: it is the culprit, it settles', () => {
      expect(decide([{ error: true, atCommit: true }])).to.deep.equal(['settle']);
    });

    it('merged riders share the fate of the statement that carried them', () => {
      // One merged statement (head and two riders) that committed, then one more operation.
      expect(decide([{ riders: 2 }, {}, {}, {}])).to.deep.equal([
        'settle',
        'settle',
        'settle',
        'settle',
      ]);
    });

    it('a failed merged statement: its operations are sent again alone, the others in place', () => {
      // An operation before it (rolled back), the merged statement (head + 2 riders, failed),
      // then operations skipped after the failure.
      expect(
        decide([{}, { riders: 2, error: true }, {}, {}, { aborted: true }, { aborted: true }]),
      ).to.deep.equal(['retry', 'alone', 'alone', 'alone', 'retry', 'retry']);
    });

    it('a merged statement that committed next to one that failed is rolled back and resent', () => {
      expect(
        decide([{ riders: 1 }, {}, { riders: 1, error: true }, {}, { aborted: true }]),
      ).to.deep.equal(['retry', 'retry', 'alone', 'alone', 'retry']);
    });

    it('COMMIT failure of a batch with merged riders: every operation alone', () => {
      expect(decide([{ riders: 1 }, {}, { error: true, atCommit: true }])).to.deep.equal([
        'alone',
        'alone',
        'alone',
      ]);
    });
  });

  describe('the connection is lost mid-batch', () => {
    it('hands every operation back, whatever its results so far', () => {
      // Some answered, one failed (so the batch would roll back), some never answered: none is
      // settled, since no Sync said how the batch ended; the server resends or fails them.
      expect(
        decide([{}, { riders: 1 }, {}, { error: true }, { aborted: true }, {}], 'lost'),
      ).to.deep.equal(['handBack', 'handBack', 'handBack', 'handBack', 'handBack', 'handBack']);
      expect(decide([{ error: true, atCommit: true }], 'lost')).to.deep.equal(['handBack']);
    });
  });

  describe('the hook checks its arguments', () => {
    it('throws a TypeError naming what was wrong', () => {
      const hook = native.__settleForTest as unknown as (...args: unknown[]) => unknown;
      expect(() => hook({}, 'sync')).to.throw(TypeError, 'batch must be an array');
      expect(() => hook([], 'later')).to.throw(TypeError, "end must be 'sync' or 'lost'");
      expect(() => hook([1], 'sync')).to.throw(TypeError, 'batch[0] is not an object');
      expect(() => hook([{ riders: -1 }], 'sync')).to.throw(TypeError, 'riders must be a count');
    });
  });
});
