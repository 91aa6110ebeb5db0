// Waiting: plain delays, polling until something holds, and bounding how long a promise may
// take to settle.
import type { SessionPgsqlError } from '../../lib';
import { query } from './db';

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` every 50 ms until it returns true; fails after `ms`. */
export async function waitUntil(
  what: string,
  ms: number,
  check: () => boolean | Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** Waits until test server `index` answers queries again (at most `ms`, 30 s by default). */
export async function serverBack(index: number, ms = 30_000): Promise<void> {
  const since = Date.now();
  for (;;) {
    try {
      await query(index, 'SELECT 1');
      return;
    } catch (error) {
      if (Date.now() - since > ms) throw error;
      await sleep(100);
    }
  }
}

/**
 * How a promise settled: `value` when it resolved, `error` when it rejected (the library rejects
 * with SessionPgsqlError; a test that must know checks it).
 */
export interface Settled<T> {
  value?: T;
  error?: SessionPgsqlError;
}

/** Resolves with the outcome of `promise`, or with 'pending' after `ms`. */
export async function settleWithin<T>(
  promise: Promise<T>,
  ms: number,
): Promise<Settled<T> | 'pending'> {
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    promise.then(
      (value): Settled<T> => ({ value }),
      (error: SessionPgsqlError): Settled<T> => ({ error }),
    ),
    new Promise<'pending'>((resolve) => {
      timer = setTimeout(() => resolve('pending'), ms);
    }),
  ]);
  clearTimeout(timer);
  return result;
}

/**
 * The outcome of `promise`; fails the test, naming `what`, when it is still pending after `ms`
 * (a hang guard far above the time the operation takes: not a timing claim).
 */
export async function settled<T>(
  promise: Promise<T>,
  what: string,
  ms = 15_000,
): Promise<Settled<T>> {
  const result = await settleWithin(promise, ms);
  if (result === 'pending') throw new Error(`${what}: still pending after ${ms} ms`);
  return result;
}
