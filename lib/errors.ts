/**
 * Every failure is a {@link SessionPgsqlError} with a stable `code`: one of
 * {@link ErrorCode} for the library's own failures, or the five-character
 * SQLSTATE for errors reported by PostgreSQL (e.g. `'42501'`).
 */
export const ErrorCode = {
  /** An option is missing, of the wrong type or out of range; thrown by the constructor. */
  InvalidOption: 'SPG_INVALID_OPTION',
  /**
   * A session id does not match `idPattern` or holds NUL or a lone UTF-16 surrogate (direct
   * callers), or an adapter's id is empty or over its bound (1024 characters, 2048 bytes
   * stored); nothing was sent.
   */
  InvalidId: 'SPG_INVALID_ID',
  /** A method argument is of the wrong type or value (e.g. an unknown error level). */
  InvalidArgument: 'SPG_INVALID_ARGUMENT',
  /**
   * Session data is larger than `maxDataSize` bytes (UTF-8), or the whole write is over what one
   * PostgreSQL message can carry (1 GB minus 1 MiB); nothing was sent.
   */
  DataTooLarge: 'SPG_DATA_TOO_LARGE',
  /** Session data contains a NUL character, which a `text` column cannot hold; nothing was sent. */
  DataHasNul: 'SPG_DATA_HAS_NUL',
  /** The handler was closed (or is closing) before the operation started. */
  Closed: 'SPG_CLOSED',
  /** A server refused or failed the connection. Retryable. */
  ConnectFailed: 'SPG_CONNECT_FAILED',
  /** A server did not complete the connection within `connectTimeout`. Retryable. */
  ConnectTimeout: 'SPG_CONNECT_TIMEOUT',
  /** The connection broke while the operation was in flight. Retryable. */
  ConnectionLost: 'SPG_CONNECTION_LOST',
  /** A server did not answer within `statementTimeout`. Retryable. */
  Timeout: 'SPG_TIMEOUT',
  /** No server that the session could use is up. Retryable. */
  NoServer: 'SPG_NO_SERVER',
  /**
   * The server accepted the connection but is read-only (a standby in recovery, or
   * `default_transaction_read_only` is on), so sessions cannot be written there; it is treated
   * as down and tried again later, so a standby that is promoted is used once it is writable.
   * List the primary, or primary and standby in one entry with
   * `target_session_attrs=read-write`. Retryable.
   */
  ReadOnly: 'SPG_READ_ONLY',
  /** The table does not exist and `createTable` is off. */
  TableMissing: 'SPG_TABLE_MISSING',
  /** The table lacks a required column or a unique index on `sess_id`. */
  TableInvalid: 'SPG_TABLE_INVALID',
  /** libpq returned something the protocol does not allow here. */
  Protocol: 'SPG_PROTOCOL',
  /**
   * The compiled addon is missing or does not load; thrown by `require('session-pgsql')`. The
   * message says how to build it (`npm rebuild session-pgsql`, after approving the script).
   */
  AddonUnavailable: 'SPG_ADDON_UNAVAILABLE',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface ErrorDetails {
  /** Index in `db` of the server concerned, when one is. */
  server?: number;
  /** True when the same operation may succeed if tried again (e.g. a lost connection). */
  retryable?: boolean;
  severity?: string;
  detail?: string;
  hint?: string;
  table?: string;
  column?: string;
  constraint?: string;
}

/**
 * The error class of session-pgsql. Messages never contain a password or
 * session data. An error settled by the native core carries the stack of the
 * code that awaited the operation (the facade method, then the caller's chain
 * of `await`s).
 *
 * @example
 * try { await handler.read(id) } catch (err) {
 *   if (err instanceof SessionPgsqlError && err.retryable) retryLater()
 * }
 */
export class SessionPgsqlError extends Error {
  override name = 'SessionPgsqlError';
  /**
   * A library code (`SPG_*`, see {@link ErrorCode}) or a SQLSTATE. Typed
   * `ErrorCode | (string & {})` so that editors still offer the `SPG_*` codes
   * (a plain `| string` would swallow them) while any SQLSTATE type-checks.
   */
  readonly code: ErrorCode | (string & {});
  /** Index in `db` of the server concerned, when one is. */
  declare readonly server?: number;
  /** True when the same operation may succeed if tried again. */
  readonly retryable: boolean;
  declare readonly severity?: string;
  declare readonly detail?: string;
  declare readonly hint?: string;
  declare readonly table?: string;
  declare readonly column?: string;
  declare readonly constraint?: string;

  constructor(message: string, code: ErrorCode | (string & {}), details: ErrorDetails = {}) {
    super(message);
    this.code = code;
    this.retryable = details.retryable ?? false;
    for (const key of [
      'server',
      'severity',
      'detail',
      'hint',
      'table',
      'column',
      'constraint',
    ] as const) {
      if (details[key] !== undefined)
        Object.defineProperty(this, key, { value: details[key], enumerable: true });
    }
  }
}

// Strings are shown only this far: an option's text may be long, and a message is no dump.
const SHOWN_CHARACTERS = 64;

/**
 * @internal A value as a message shows it, with its type: `"x" (string)`, `5 (number)`,
 * `null (null)`, `an object (object)`. Never throws, whatever the value (an object without
 * a prototype, a Proxy, a BigInt, a symbol, a RegExp with a throwing getter).
 */
export function describe(value: unknown): string {
  try {
    switch (typeof value) {
      case 'string': {
        const cut = value.length > SHOWN_CHARACTERS;
        const shown = JSON.stringify(cut ? value.slice(0, SHOWN_CHARACTERS) : value);
        return `${shown}${cut ? `… (a string of ${value.length} characters)` : ' (string)'}`;
      }
      case 'number':
        return `${Object.is(value, -0) ? '-0' : String(value)} (number)`;
      case 'bigint':
        return `${value.toString()}n (bigint)`;
      case 'boolean':
      case 'undefined':
        return `${String(value)} (${typeof value})`;
      case 'symbol':
        return `${value.toString()} (symbol)`;
      case 'function':
        return 'a function (function)';
      default:
        if (value === null) return 'null (null)';
        if (value instanceof RegExp) return `${RegExp.prototype.toString.call(value)} (RegExp)`;
        if (Array.isArray(value)) return `an array of ${value.length} elements (object)`;
        return 'an object (object)';
    }
  } catch {
    return `a value that cannot be shown (${typeof value})`;
  }
}
