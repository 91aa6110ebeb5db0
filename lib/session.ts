import { describe, ErrorCode, SessionPgsqlError } from './errors';
import { loneSurrogate, wellFormed } from './options';
import type { NativeRow } from './native';

/** What `Session#info()` returns (the original `session_pgsql_info()`). */
export interface SessionInfo {
  sessionId: string;
  /** Index in `db` of the server the session was read from. */
  serverId: number;
  /** That server's conninfo, password redacted. */
  server: string;
  /** The stored access counter + 1 (this access); 1 for a new session. */
  accesses: number;
  errors: number;
  warnings: number;
  notices: number;
  /** Unix seconds; 0 for a session not stored yet. */
  created: number;
  modified: number;
  expires: number;
  addressCreated: string;
  addressModified: string;
  custom: string;
}

/** What `Session#getError()` resolves to (the original `session_pgsql_get_error()`). */
export interface SessionErrors {
  errors: number;
  warnings: number;
  notices: number;
  message?: string;
}

/** An error level of `addError`: a name, or PHP's E_* number. */
export type ErrorLevel = 'error' | 'warning' | 'notice' | 1 | 2 | 8 | 256 | 512 | 1024;

const levels: Record<string, 'errors' | 'warnings' | 'notices'> = {
  error: 'errors',
  '1': 'errors', // E_ERROR
  '256': 'errors', // E_USER_ERROR
  warning: 'warnings',
  '2': 'warnings', // E_WARNING
  '512': 'warnings', // E_USER_WARNING
  notice: 'notices',
  '8': 'notices', // E_NOTICE
  '1024': 'notices', // E_USER_NOTICE
};

/** The handler's side of a Session, kept off the public surface. */
export interface SessionOwner {
  /** The stored error message of the row with stored key `key`. */
  message(key: string): Promise<string>;
  describeServer(index: number): string;
}

/** The pending changes of one request, as the native write takes them. */
export interface SessionChanges {
  custom: string | null;
  errors: number;
  warnings: number;
  notices: number;
  message: string | null;
}

/**
 * One request's view of one session, returned by `SessionPgsql#read()`. Its
 * counters, custom field and error message belong to this request alone.
 *
 * @example
 * const s = await handler.read(id, { address: req.ip })
 * s.setField('user:42')
 * await handler.write(s, JSON.stringify(state))
 */
export class Session {
  /** The session id, as the caller gave it (never the stored hash of `hashIds`). */
  readonly id: string;
  /** The address of the request that read the session (stored on write). */
  readonly address: string;
  readonly #owner: SessionOwner;
  // The stored key (sess_id) its writes go to, and the one its row was read from: they differ
  // only for a row found under its raw id during a hashIds migration.
  readonly #key: string;
  readonly #rowKey: string;
  #row: NativeRow;
  #custom: string | null = null;
  // This request's counts: written (stored by its writes) and pending (for its next write).
  // Its view of the counters is the row as read plus both; what the table holds is the
  // upsert's to compute (concurrent requests add theirs), never recomputed here.
  #written = { errors: 0, warnings: 0, notices: 0 };
  #pending = { errors: 0, warnings: 0, notices: 0 };
  #message: string | null = null;

  /** @internal */
  constructor(
    owner: SessionOwner,
    id: string,
    key: string,
    address: string,
    row: NativeRow,
    rowKey = key,
  ) {
    this.#owner = owner;
    this.id = id;
    this.#key = key;
    this.#rowKey = rowKey;
    this.address = address;
    this.#row = row;
  }

  /** The stored data; `''` for a new or expired session. */
  get data(): string {
    return this.#row.data;
  }

  /** True when the next write stores a fresh row (no row, or an expired one without keepExpired). */
  get isNew(): boolean {
    return this.#row.isNew;
  }

  /** True when a row existed but had expired. */
  get expired(): boolean {
    return this.#row.state === 'expired';
  }

  /** Index in `db` of the server the session was read from. */
  get serverId(): number {
    return this.#row.server;
  }

  /** The original `session_pgsql_info()`. */
  info(): SessionInfo {
    const r = this.#row;
    return {
      sessionId: this.id,
      serverId: r.server,
      server: this.#owner.describeServer(r.server),
      accesses: r.accesses,
      ...this.#counts(),
      created: r.created,
      modified: r.modified,
      expires: r.expires,
      addressCreated: r.addressCreated,
      addressModified: r.addressModified,
      custom: this.getField(),
    };
  }

  /**
   * Sets the custom field (`sess_custom`); `''` clears it. Forces the next write.
   * @throws SessionPgsqlError `SPG_INVALID_ARGUMENT` when `value` is not a string or holds a
   *   lone surrogate (which PostgreSQL cannot store).
   */
  setField(value: string): void {
    if (typeof value !== 'string') {
      throw new SessionPgsqlError(
        `Expected a string for setField(value) but received ${describe(value)}`,
        ErrorCode.InvalidArgument,
      );
    }
    if (!wellFormed(value)) {
      throw new SessionPgsqlError(
        `The custom field ${loneSurrogate(value)}`,
        ErrorCode.InvalidArgument,
      );
    }
    this.#custom = value;
  }

  /** The custom field: as set in this request, else as stored. */
  getField(): string {
    return this.#custom ?? this.#row.custom;
  }

  /**
   * Counts an error, warning or notice for this session; a message replaces the
   * stored one. Forces the next write.
   * @throws SessionPgsqlError `SPG_INVALID_ARGUMENT` for an unknown level, or a message that is
   *   not a string or holds a lone surrogate (nothing changes).
   */
  addError(level: ErrorLevel, message?: string): void {
    // Only a string or a number can name a level: String() of any other value may throw.
    const key = typeof level === 'string' || typeof level === 'number' ? String(level) : null;
    const counter = key !== null && Object.hasOwn(levels, key) ? levels[key] : undefined;
    if (counter === undefined) {
      throw new SessionPgsqlError(
        `Unknown error level ${describe(level)}: use 'error', 'warning', 'notice' or a PHP E_* number`,
        ErrorCode.InvalidArgument,
      );
    }
    if (message !== undefined && typeof message !== 'string') {
      throw new SessionPgsqlError(
        `Expected a string message but received ${describe(message)}`,
        ErrorCode.InvalidArgument,
      );
    }
    if (message !== undefined && !wellFormed(message)) {
      throw new SessionPgsqlError(
        `The error message ${loneSurrogate(message)}`,
        ErrorCode.InvalidArgument,
      );
    }
    this.#pending[counter] += 1;
    if (message !== undefined) this.#message = message;
  }

  /**
   * The error counters (stored + this request's) and, with `withMessage`, the
   * message: from this request, else from the table, `''` when there is none.
   */
  async getError(withMessage = false): Promise<SessionErrors> {
    const result: SessionErrors = this.#counts();
    if (withMessage) {
      result.message = this.#message ?? (this.isNew ? '' : await this.#owner.message(this.#rowKey));
    }
    return result;
  }

  /** The counters as this request sees them: as read, plus its own (written or pending). */
  #counts(): { errors: number; warnings: number; notices: number } {
    const r = this.#row;
    const w = this.#written;
    const p = this.#pending;
    return {
      errors: r.errors + w.errors + p.errors,
      warnings: r.warnings + w.warnings + p.warnings,
      notices: r.notices + w.notices + p.notices,
    };
  }

  /**
   * @internal The stored key this Session's writes go to, when `owner` (a handler's) read it;
   * null for a Session of another handler, whose key that handler would compute.
   */
  keyFor(owner: SessionOwner): string | null {
    return owner === this.#owner ? this.#key : null;
  }

  /** @internal What the next write must carry. */
  changes(): SessionChanges {
    return { custom: this.#custom, ...this.#pending, message: this.#message };
  }

  /**
   * @internal Whether setField or addError asked for the next write: the only home of the
   * rule (the short circuit and express-session's touch() ask it).
   */
  forced(): boolean {
    const p = this.#pending;
    return this.#custom !== null || this.#message !== null || p.errors + p.warnings + p.notices > 0;
  }

  /**
   * @internal Whether writing `data` would store nothing new: the session was read live (or
   * since written by this request) with the same data, and nothing was forced. The short
   * circuit skips such a write.
   */
  unchanged(data: string): boolean {
    return this.#row.state === 'existing' && this.#row.data === data && !this.forced();
  }

  /** @internal After a write was stored: the new data is the baseline, nothing is pending. */
  written(data: string, stored: boolean): void {
    if (!stored) return;
    this.#row = { ...this.#row, state: 'existing', isNew: false, data, custom: this.getField() };
    const w = this.#written;
    const p = this.#pending;
    this.#written = {
      errors: w.errors + p.errors,
      warnings: w.warnings + p.warnings,
      notices: w.notices + p.notices,
    };
    this.#custom = null;
    this.#pending = { errors: 0, warnings: 0, notices: 0 };
    this.#message = null;
  }
}
