// Sessions of users on several servers, as the tests of sessionsOf, destroySessionsOf, the CLI's
// sessions/revoke and the records of what a server missed set them up and look at them.
import { expect } from 'chai';
import type { SessionPgsql } from '../../lib';
import { newId } from './db';
import { sessionRow } from './rows';

/** A fresh id whose placement order starts with `home` (and, if given, then `next`). */
export function idHomedOn(h: SessionPgsql, home: number, next?: number): string {
  for (let i = 0; i < 10_000; i++) {
    const id = newId();
    const order = h.serversFor(id);
    if (order[0] === home && (next === undefined || order[1] === next)) return id;
  }
  throw new Error(`no id homed on server ${home} in 10,000 tries`);
}

/** Stores session `id` for `user` (through a Session, as a request would). */
export async function login(
  h: SessionPgsql,
  id: string,
  user: string,
  address = '192.0.2.1',
): Promise<void> {
  const s = await h.read(id, { address });
  s.setField(user);
  expect(await h.write(s, `{"user":"${user}"}`)).to.equal(true);
}

/** The columns of a stored session that tell a tombstone. */
export interface UserRow {
  sess_data: string;
  sess_custom: string;
  sess_expire: string;
}

/** The row of session `id` on test server `server`, if any. */
export function rowOn(server: number, table: string, id: string): Promise<UserRow | undefined> {
  return sessionRow<UserRow>(table, id, server);
}

/** A tombstone: empty data and custom field, a negative expiry. */
export function expectTombstone(row: UserRow | undefined, what: string): void {
  expect(row, what).to.not.equal(undefined);
  expect(row!.sess_data, what).to.equal('');
  expect(row!.sess_custom, what).to.equal('');
  expect(Number(row!.sess_expire), what).to.be.below(0);
}
