// Public exports only.
export { SessionPgsql } from './handler';
export type {
  ReadContext,
  WriteOptions,
  WriteMerge,
  DestroyOptions,
  Status,
  UserSession,
  UserSessions,
  SessionsOfOptions,
  DestroySessionsOfOptions,
  Revocation,
} from './handler';
export type { UserOption } from './users';
export { Session } from './session';
export type { SessionInfo, SessionErrors, ErrorLevel } from './session';
export { SessionPgsqlError, ErrorCode } from './errors';
export type { ErrorDetails } from './errors';
export type { SessionPgsqlOptions } from './options';
import { native } from './native';
/** The version of the libpq the addon runs with, e.g. 150018. */
export const libpqVersion: number = native.libpqVersion;
