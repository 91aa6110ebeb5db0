// What the framework adapters share: owning or borrowing a handler, turning a
// framework's expiry into Unix seconds, and the JSON encoding of session objects.
import { ErrorCode, SessionPgsqlError } from './errors';
import { SessionPgsql } from './handler';
import type { SessionPgsqlOptions } from './options';

/**
 * Loads a framework package that an adapter needs (an optional peer
 * dependency), with a message that says what to install when it is missing.
 */
export function requirePeer<T>(name: string, entry: string): T {
  try {
    return require(name) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
    throw new Error(`${entry} needs the ${name} package: npm install ${name}`);
  }
}

/** A handler to use, or the options of one the adapter creates, opens and closes. */
export type HandlerOrOptions = SessionPgsql | SessionPgsqlOptions;

export function adoptHandler(source: HandlerOrOptions): { handler: SessionPgsql; owned: boolean } {
  if (source instanceof SessionPgsql) return { handler: source, owned: false };
  const handler = new SessionPgsql(source);
  // Connect now so the first request does not wait and readiness events fire;
  // failures surface on the operations themselves (and as 'down' events).
  handler.open().catch(() => {});
  return { handler, owned: true };
}

/** Unix seconds from a Date, an ISO string or epoch milliseconds; null when absent. */
export function toUnixSeconds(value: unknown): number | null {
  if (value === undefined || value === null || value === false) return null;
  const ms =
    value instanceof Date
      ? value.getTime()
      : typeof value === 'string'
        ? Date.parse(value)
        : Number(value);
  return Number.isFinite(ms) ? ms / 1000 : null;
}

/** True for errors that mean "no such session" to a framework: a malformed or foreign id. */
export function isNotFound(err: unknown): boolean {
  return err instanceof SessionPgsqlError && err.code === ErrorCode.InvalidId;
}

/** The stored JSON as an object, or null when it is empty or not a JSON object. */
export function decode(data: string): Record<string, unknown> | null {
  if (data === '') return null;
  try {
    const value: unknown = JSON.parse(data);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null; // corrupt or written by another application: start afresh
  }
}

/** Settles an optional node-style callback from a promise; without one the promise is returned. */
export function settle<T>(
  promise: Promise<T>,
  callback?: (err: any, value?: T) => void,
): Promise<T> | void {
  if (!callback) return promise;
  promise.then(
    (value) => callback(null, value),
    (err) => callback(err),
  );
}
