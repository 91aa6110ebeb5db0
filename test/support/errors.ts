// Catching the SessionPgsqlError a call is expected to fail with.
import { expect } from 'chai';
import { SessionPgsqlError } from '../../lib';

/** The SessionPgsqlError `promise` rejects with (fails the test if it resolves). */
export async function rejection(promise: Promise<unknown>): Promise<SessionPgsqlError> {
  try {
    await promise;
  } catch (err) {
    expect(err).to.be.instanceOf(SessionPgsqlError);
    return err as SessionPgsqlError;
  }
  throw new Error('expected the promise to reject');
}

/** The SessionPgsqlError `fn` throws (fails the test if it returns). */
export function thrown(fn: () => unknown): SessionPgsqlError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(SessionPgsqlError);
    return err as SessionPgsqlError;
  }
  throw new Error('expected a throw');
}
