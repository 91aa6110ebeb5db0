// shortCircuit: skip the UPDATE iff the data is byte-equal to what was read and neither
// setField nor addError was called; inserts are never skipped (docs/api.md `handler.write`; docs/from-php.md).
import { expect } from 'chai';
import { ErrorCode, SessionPgsql, type SessionPgsqlOptions } from '../lib';
import { newId, query, uniqueTable } from './support/db';
import { rejection } from './support/errors';
import { handlerFactory } from './support/handlers';
import { storedRow, type StoredRow } from './support/rows';

describe('13 handler: shortCircuit', () => {
  let table: string;
  const handlers = handlerFactory();
  /** An open handler on this test's table (server 0, housekeeping timers off). */
  function make(options: SessionPgsqlOptions = {}): Promise<SessionPgsql> {
    return handlers.open({ table, maxLifetime: 100, shortCircuit: true, ...options });
  }
  function row(id: string): Promise<StoredRow | undefined> {
    return storedRow(table, id);
  }
  /** Stores `data` for a new id, then marks the row's times so any rewrite shows. */
  async function stored(handler: SessionPgsql, data: string): Promise<string> {
    const id = newId();
    expect(await handler.write(id, data)).to.equal(true);
    await query(
      0,
      `UPDATE ${table} SET sess_modified = 2000,
         sess_expire = floor(extract(epoch from now()))::bigint + 30 WHERE sess_id = $1`,
      [id],
    );
    return id;
  }

  beforeEach(() => {
    table = uniqueTable();
  });

  it('status() reports shortCircuit true', async () => {
    expect((await make()).status().shortCircuit).to.equal(true);
  });

  it('unchanged data, nothing forced: write resolves false and the row is unchanged', async () => {
    const handler = await make();
    const id = await stored(handler, 'same data ✓');
    const before = await row(id);
    const s = await handler.read(id, { address: '192.0.2.99' });
    expect(await handler.write(s, 'same data ✓')).to.equal(false);
    const after = await row(id);
    expect(after).to.deep.equal(before);
    expect(after!.sess_modified).to.equal(2000);
    expect(after!.sess_counter).to.equal(1);
    expect(after!.sess_addr_modified).to.equal(null);
  });

  it('changed data is written', async () => {
    const handler = await make();
    const id = await stored(handler, 'v1');
    const s = await handler.read(id, { address: '192.0.2.5' });
    expect(await handler.write(s, 'v2')).to.equal(true);
    const r = (await row(id))!;
    expect(r.sess_data).to.equal('v2');
    expect(r.sess_counter).to.equal(2);
    expect(r.sess_modified).to.not.equal(2000);
    expect(r.sess_addr_modified).to.equal('192.0.2.5');
  });

  it('data differing in a single byte (even canonically equal Unicode) is written', async () => {
    const handler = await make();
    for (const [a, b] of [
      ['caf\u00e9', 'cafe\u0301'],
      ['abc', 'abc '],
      ['abc', 'ab'],
      ['x', ''],
    ] as const) {
      const id = await stored(handler, a);
      expect(await handler.write(await handler.read(id), b), `${a} -> ${b}`).to.equal(true);
      expect((await row(id))!.sess_data).to.equal(b);
    }
  });

  it('setField forces the write even when the data is unchanged', async () => {
    const handler = await make();
    const id = await stored(handler, 'same');
    const s = await handler.read(id);
    s.setField('user:1');
    expect(await handler.write(s, 'same')).to.equal(true);
    const r = (await row(id))!;
    expect(r.sess_custom).to.equal('user:1');
    expect(r.sess_counter).to.equal(2);
    expect(r.sess_modified).to.not.equal(2000);
  });

  it('setField to the value already stored still forces the write', async () => {
    const handler = await make();
    const id = await stored(handler, 'same');
    const s = await handler.read(id);
    s.setField(s.getField()); // '' as stored
    expect(await handler.write(s, 'same')).to.equal(true);
    expect((await row(id))!.sess_counter).to.equal(2);
  });

  it('addError forces the write even when the data is unchanged (with or without message)', async () => {
    const handler = await make();
    const id = await stored(handler, 'same');
    const s = await handler.read(id);
    s.addError('error');
    expect(await handler.write(s, 'same')).to.equal(true);
    let r = (await row(id))!;
    expect(r.sess_error).to.equal(1);
    expect(r.sess_counter).to.equal(2);
    const t = await handler.read(id);
    t.addError('notice', 'note');
    expect(await handler.write(t, 'same')).to.equal(true);
    r = (await row(id))!;
    expect(r.sess_err_message).to.equal('note');
    expect(r.sess_counter).to.equal(3);
  });

  it("a new session is always inserted, even with data ''", async () => {
    const handler = await make();
    const id = newId();
    const s = await handler.read(id);
    expect(s.data).to.equal('');
    expect(await handler.write(s, '')).to.equal(true);
    const r = await row(id);
    expect(r).to.not.equal(undefined);
    expect(r!.sess_counter).to.equal(1);
  });

  it("an expired session (without keepExpired) is always replaced, even with data ''", async () => {
    const handler = await make();
    const id = await stored(handler, 'old');
    await query(0, `UPDATE ${table} SET sess_expire = 1000 WHERE sess_id = $1`, [id]);
    const s = await handler.read(id);
    expect(s.expired).to.equal(true);
    expect(await handler.write(s, '')).to.equal(true);
    const r = (await row(id))!;
    expect(r.sess_data).to.equal('');
    expect(r.sess_expire).to.be.greaterThan(Date.now() / 1000);
  });

  it("an expired session kept by keepExpired is written even with data '' (a bug of the PHP original)", async () => {
    const handler = await make({ keepExpired: true });
    const id = await stored(handler, 'old');
    await query(0, `UPDATE ${table} SET sess_expire = 1000 WHERE sess_id = $1`, [id]);
    const s = await handler.read(id);
    expect(s.expired).to.equal(true);
    expect(s.data).to.equal('');
    expect(await handler.write(s, '')).to.equal(true);
    const r = (await row(id))!;
    expect(r.sess_counter).to.equal(2);
    expect(r.sess_expire).to.be.greaterThan(Date.now() / 1000);
    // and the handler's short circuit is still on afterwards (the original switched it off)
    expect(handler.status().shortCircuit).to.equal(true);
    const again = await handler.read(id);
    expect(await handler.write(again, '')).to.equal(false);
  });

  it('a plain write(id, data) is an upsert and never skipped', async () => {
    const handler = await make();
    const id = await stored(handler, 'same');
    expect(await handler.write(id, 'same')).to.equal(true);
    const r = (await row(id))!;
    expect(r.sess_counter).to.equal(2);
    expect(r.sess_modified).to.not.equal(2000);
  });

  it('the skip is per Session: another Session that changed the data still writes', async () => {
    const handler = await make();
    const id = await stored(handler, 'v1');
    const [a, b] = await Promise.all([handler.read(id), handler.read(id)]);
    expect(await handler.write(a!, 'v1')).to.equal(false);
    expect(await handler.write(b!, 'v2')).to.equal(true);
    expect((await row(id))!.sess_data).to.equal('v2');
  });

  it('shortCircuit off (the default): unchanged data is always written', async () => {
    const handler = await make({ shortCircuit: undefined });
    expect(handler.status().shortCircuit).to.equal(false);
    const id = await stored(handler, 'same');
    const s = await handler.read(id, { address: '192.0.2.7' });
    expect(await handler.write(s, 'same')).to.equal(true);
    const r = (await row(id))!;
    expect(r.sess_counter).to.equal(2);
    expect(r.sess_modified).to.not.equal(2000);
    expect(r.sess_addr_modified).to.equal('192.0.2.7');
    expect(r.sess_expire - r.sess_modified).to.equal(100);
  });

  // A skip never hides an error that the write would give.
  it('an unchanged session on a closed handler: the write rejects SPG_CLOSED, as any write', async () => {
    const handler = await make();
    const id = await stored(handler, 'same');
    const s = await handler.read(id);
    await handler.close();
    expect((await rejection(handler.write(s, 'same'))).code).to.equal(ErrorCode.Closed);
  });

  it('unchanged data over maxDataSize (stored by a handler allowing more): SPG_DATA_TOO_LARGE', async () => {
    const id = await stored(await make(), 'x'.repeat(200));
    const strict = await make({ maxDataSize: 100 });
    const s = await strict.read(id);
    expect(s.data).to.have.length(200);
    expect((await rejection(strict.write(s, s.data))).code).to.equal(ErrorCode.DataTooLarge);
    expect((await row(id))!.sess_modified).to.equal(2000);
  });
});
