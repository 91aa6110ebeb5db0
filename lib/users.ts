// A user's sessions: who a session belongs to, kept in its row's custom field (sess_custom) so
// that one indexed lookup finds all of a user's sessions on a server. The handler lists and
// revokes them (sessionsOf, destroySessionsOf); the adapters' `user` option fills the field, with
// the rules here: what names a user, and when the field must be written.
// Imports of adapter.ts and handler.ts are used only inside functions: handler.ts imports this
// file for requiredUser, and they import each other, so nothing here runs at load time.
import { idFromStored, storedId, type AdapterOptions } from './adapter';
import { describe, ErrorCode, SessionPgsqlError } from './errors';
import {
  withAdapterId,
  type DestroySessionsOfOptions,
  type Revocation,
  type SessionPgsql,
  type SessionsOfOptions,
  type UserSessions,
} from './handler';
import { loneSurrogate, wellFormed } from './options';

/**
 * The adapter option `user`: where a session object names its user. A key path (`'passport.user'`,
 * `'userId'`), or a function of the session object returning the user. A string is the user; a
 * number is stringified; `null`, `undefined` or `''` mean no user.
 */
export type UserOption = string | ((session: any) => unknown);

/** The longest user in UTF-8 bytes: the value is a key of the partial index on `sess_custom`. */
export const MAX_USER_BYTES = 1024;

function invalid(message: string): SessionPgsqlError {
  return new SessionPgsqlError(message, ErrorCode.InvalidArgument);
}

/**
 * A user as stored in `sess_custom`: a string, or a finite number stringified; `''` for none (null,
 * undefined, or the empty string).
 * @throws SessionPgsqlError `SPG_INVALID_ARGUMENT` for another type, a NUL, a lone surrogate, or
 *   more than {@link MAX_USER_BYTES} bytes; `what` names the value in the message.
 */
export function userValue(value: unknown, what: string): string {
  if (value === undefined || value === null) return '';
  let user: string;
  if (typeof value === 'string') user = value;
  else if (typeof value === 'number' && Number.isFinite(value)) user = String(value);
  else if (typeof value === 'bigint') user = String(value);
  else throw invalid(`Expected a string or a number for ${what} but received ${describe(value)}`);
  if (user.includes('\0')) throw invalid(`The ${what} contains a NUL character`);
  if (!wellFormed(user)) throw invalid(`The ${what} ${loneSurrogate(user)}`);
  const bytes = Buffer.byteLength(user);
  if (bytes > MAX_USER_BYTES) {
    throw invalid(`The ${what} is ${bytes} bytes; at most ${MAX_USER_BYTES} are allowed`);
  }
  return user;
}

/**
 * The user a caller names (sessionsOf, destroySessionsOf, the CLI): like {@link userValue}, but
 * there must be one.
 * @throws SessionPgsqlError `SPG_INVALID_ARGUMENT`.
 */
export function requiredUser(value: unknown, what: string): string {
  const user = userValue(value, what);
  if (user === '') {
    throw invalid(`Expected a user for ${what} (a non-empty string or a number)`);
  }
  return user;
}

// Stored ids whose custom field this process last saw, with that value: a write needs to carry
// the field only when the user changed. Bounded; the oldest entries go first. A request reads its
// session before it writes it, so the entry it needs is fresh.
const REMEMBERED = 10_000;

/**
 * The `user` option of an adapter, checked once: reads the user of a session object, and tells a
 * write whether the custom field must change (only then: an unchanged field keeps merged writes,
 * the short circuit and HOT updates).
 */
export class UserField {
  readonly #read: (session: any) => unknown;
  readonly #what: string;
  readonly #seen = new Map<string, string>();

  /** @throws SessionPgsqlError `SPG_INVALID_OPTION` when `option` is neither a key path nor a function. */
  constructor(option: UserOption) {
    if (typeof option === 'function') {
      this.#read = option;
      this.#what = 'user of the session (the user option)';
    } else if (typeof option === 'string' && option !== '' && !option.split('.').includes('')) {
      const path = option.split('.');
      this.#read = (session) => {
        let at: unknown = session;
        for (const key of path) {
          if (at === null || (typeof at !== 'object' && typeof at !== 'function')) return undefined;
          at = Object.hasOwn(at, key) ? (at as Record<string, unknown>)[key] : undefined;
        }
        return at;
      };
      this.#what = `user of the session (the user option, '${option}')`;
    } else {
      throw new SessionPgsqlError(
        `Expected a key path such as 'passport.user' or a function for the "user" option but received ${describe(option)}`,
        ErrorCode.InvalidOption,
      );
    }
  }

  /**
   * The user of `session` (`''`: none).
   * @throws SessionPgsqlError `SPG_INVALID_ARGUMENT` when it is not a string or a number.
   */
  of(session: unknown): string {
    return userValue(this.#read(session), this.#what);
  }

  /** A read of stored id `key` found this custom field (`''` for a new session). */
  seen(key: string, custom: string): void {
    this.#seen.delete(key);
    this.#seen.set(key, custom);
    if (this.#seen.size > REMEMBERED) this.#seen.delete(this.#seen.keys().next().value!);
  }

  /** Stored id `key` is gone (destroyed). */
  forget(key: string): void {
    this.#seen.delete(key);
  }

  /**
   * For a write of `session` under stored id `key`: `{ custom }` when its user differs from the
   * field last seen for that id (an id not seen is a new session, whose field is `''`), else `{}`.
   */
  prepare(key: string, session: unknown): { custom?: string } {
    const user = this.of(session);
    if ((this.#seen.get(key) ?? '') === user) return {};
    this.seen(key, user);
    return { custom: user };
  }
}

/** The adapter option `user` checked: its UserField, or undefined without the option. */
export function userFieldOf(options: AdapterOptions | undefined): UserField | undefined {
  return options?.user === undefined ? undefined : new UserField(options.user);
}

/**
 * The `custom` write option of an adapter's write of `session` under the framework's `id`: see
 * {@link UserField.prepare}. Without the option, or for an id no session can have (the write
 * reports it), nothing. (Through a Session, `custom` is its `setField`, when it differs.)
 */
export function userWrite(
  field: UserField | undefined,
  id: string,
  session: unknown,
): { custom?: string } {
  if (field === undefined) return {};
  const key = storedIdOrNull(id);
  return key === null ? {} : field.prepare(key, session);
}

/**
 * The stores' `sessionsOf`: the handler's, with framework ids in and out (`current`: the request's
 * session id, e.g. `req.sessionID`).
 */
export async function storeSessionsOf(
  handler: SessionPgsql,
  user: string | number,
  options: SessionsOfOptions = {},
): Promise<UserSessions> {
  const current = options?.current === undefined ? null : storedIdOrNull(options.current);
  const found = await withAdapterId(() =>
    handler.sessionsOf(user, current === null ? {} : { current }),
  );
  return {
    ...found,
    sessions: found.sessions.map((s) => ({ ...s, id: idFromStored(s.id) })),
  };
}

/** The stores' `destroySessionsOf`: the handler's, `except` in framework ids. */
export async function storeDestroySessionsOf(
  handler: SessionPgsql,
  user: string | number,
  options: DestroySessionsOfOptions = {},
): Promise<Revocation> {
  const except: unknown = options?.except ?? [];
  if (!Array.isArray(except)) {
    throw invalid(`Expected an array of ids for "except" but received ${describe(except)}`);
  }
  // An id no session can have spares nothing.
  const keys = except.map(storedIdOrNull).filter((key): key is string => key !== null);
  return withAdapterId(() => handler.destroySessionsOf(user, { except: keys }));
}

function storedIdOrNull(id: unknown): string | null {
  try {
    return storedId(id);
  } catch {
    return null;
  }
}
