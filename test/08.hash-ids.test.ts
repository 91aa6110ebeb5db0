// The `hashIds` option without a server: its validation (the key is never shown), the stored
// key of an id (SHA-256, or HMAC-SHA256 with the key), the placement it changes, and that no
// error of an id's path ever shows the raw id.
import { expect } from 'chai';
import { createHash, createHmac } from 'node:crypto';
import { inspect } from 'node:util';
import { ErrorCode, SessionPgsql, SessionPgsqlError, type SessionPgsqlOptions } from '../lib';
import { idHashing, isHashedKey } from '../lib/options';
import { rejection, thrown } from './support/errors';

// Nothing listens on port 1: a connection attempt fails at once.
const NOWHERE = 'host=127.0.0.1 port=1 dbname=x user=y';
const THREE = [1, 2, 3].map((p) => `host=127.0.0.1 port=${p} dbname=x user=y`);
const KEY = 'k3y-material-that-must-never-show';
const ID = 'Client_Cookie_Id_0123456789abcdef';

const handlers: SessionPgsql[] = [];
function make(options: SessionPgsqlOptions): SessionPgsql {
  const handler = new SessionPgsql({ db: NOWHERE, gcInterval: 0, vacuumInterval: 0, ...options });
  handlers.push(handler);
  return handler;
}

describe('hashIds option (no server)', () => {
  afterEach(async () => {
    await Promise.all(handlers.splice(0).map((h) => h.close()));
  });

  it('is off by default (PHP-compatible raw ids), and status() tells the mode, never the key', () => {
    // The suite's hashed mode changes the default of the handlers tests make: this test names it.
    expect(make({ hashIds: false }).status().hashIds).to.equal('off');
    expect(make({ hashIds: true }).status().hashIds).to.equal('sha256');
    const keyed = make({ hashIds: { key: KEY } });
    expect(keyed.status().hashIds).to.equal('hmac');
    expect(JSON.stringify(keyed.status())).not.to.include(KEY);
    expect(inspect(keyed, { depth: 10, showHidden: true })).not.to.include(KEY);
    const buffer = make({ hashIds: { key: Buffer.from(KEY) } });
    expect(inspect(buffer, { depth: 10, showHidden: true })).not.to.include(KEY);
  });

  const invalid: Array<[unknown, string]> = [
    ['yes', 'hashIds'],
    [1, 'hashIds'],
    [[KEY], 'hashIds'],
    [KEY, 'pass the key as { key }'],
    [Buffer.from(KEY), 'pass the key as { key }'],
    [{ key: 42 }, 'hashIds.key'],
    [{ key: '' }, 'at least 16 bytes'],
    [{ key: KEY.slice(0, 15) }, 'at least 16 bytes'],
    [{ key: Buffer.alloc(8) }, 'at least 16 bytes'],
    [{ key: `${KEY}\uD800` }, 'lone surrogate'],
    [{ key: KEY, transition: 'yes' }, 'hashIds.transition'],
    [{ key: KEY, salt: 'x' }, 'Unknown property "salt"'],
  ];
  for (const [value, named] of invalid) {
    it(`refuses hashIds ${inspect(value).slice(0, 40)} naming ${named}, never showing the key`, () => {
      const err = thrown(() => make({ hashIds: value as never }));
      expect(err.code).to.equal(ErrorCode.InvalidOption);
      expect(err.message).to.include(named);
      expect(err.message).not.to.include(KEY.slice(0, 15));
      expect(err.message).not.to.include(ID);
    });
  }

  it('stores SHA-256 (plain) or HMAC-SHA256 (keyed) of the id, hex, behind a prefix', () => {
    const plain = idHashing(true).stored(ID);
    expect(plain).to.equal(`sha256:${createHash('sha256').update(ID).digest('hex')}`);
    const keyed = idHashing({ key: KEY }).stored(ID);
    expect(keyed).to.equal(`hmac:${createHmac('sha256', KEY).update(ID).digest('hex')}`);
    expect(idHashing({ key: Buffer.from(KEY) }).stored(ID)).to.equal(keyed);
    expect(idHashing({ key: `${KEY}!` }).stored(ID)).not.to.equal(keyed);
    expect(idHashing(false).stored(ID)).to.equal(ID);
    expect([plain, keyed].every(isHashedKey)).to.equal(true);
    // A raw id of the default idPattern can never look hashed: it has no ':'.
    expect(isHashedKey(ID)).to.equal(false);
    expect(isHashedKey(plain.toUpperCase())).to.equal(false);
  });

  it('places a session by its stored key: hashIds changes placement', () => {
    const raw = make({ db: THREE, hashIds: false });
    const hashed = make({ db: THREE, hashIds: true });
    const keyed = make({ db: THREE, hashIds: { key: KEY } });
    const ids = Array.from({ length: 40 }, (_, i) => `${ID}_${i}`);
    const homes = (h: SessionPgsql) => ids.map((id) => h.serversFor(id)[0]);
    expect(homes(hashed)).not.to.deep.equal(homes(raw));
    expect(homes(keyed)).not.to.deep.equal(homes(hashed));
  });

  it('checks the raw id first (idPattern), and no message shows it', async () => {
    for (const hashIds of [true, { key: KEY }] as const) {
      const handler = make({ hashIds });
      for (const bad of [`${ID}!`, `${ID}\0`, `${ID}\uDC00`, ID.slice(0, 8)]) {
        for (const call of [
          () => handler.read(bad),
          () => handler.write(bad, 'x'),
          () => handler.touch(bad),
          () => handler.destroy(bad),
        ]) {
          const err = await rejection(call());
          expect(err.code).to.equal(ErrorCode.InvalidId);
          expect(err.message).not.to.include(bad.slice(0, 8));
        }
        const err = thrown(() => handler.serversFor(bad));
        expect(err.message).not.to.include(bad.slice(0, 8));
      }
    }
  });

  it('shows neither the id nor its stored key when the server cannot be reached', async () => {
    const handler = make({ hashIds: true, connectTimeout: 1 });
    const key = idHashing(true).stored(ID);
    for (const call of [
      () => handler.read(ID),
      () => handler.write(ID, 'x'),
      () => handler.touch(ID),
      () => handler.destroy(ID),
    ]) {
      const err = await rejection(call());
      expect(err).to.be.instanceOf(SessionPgsqlError);
      for (const text of [err.message, err.stack ?? '', inspect(err)]) {
        expect(text).not.to.include(ID);
        expect(text).not.to.include(key.slice(7));
      }
    }
  });
});
