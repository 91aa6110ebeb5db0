// Fuzz of what needs no server (test 28 fuzzes the operations against one): the constructor over
// every option, with values of any type and at and beyond every bound, and `db` carrying
// passwords in every form a user may write one. A fixed seed and a bounded number of cases: the
// same cases on every run. Every rejection must be our error with a code, no password fragment
// may appear in any message, stack or status(), and every accepted value must be in its
// documented range. Nothing here connects (no handler is opened).
import { expect } from 'chai';
import { ErrorCode, SessionPgsql, SessionPgsqlError, type SessionPgsqlOptions } from '../lib';
import { rowExpiry } from '../lib/adapter';
import { describe as describeValue } from '../lib/errors';
import { ExpressStore } from '../lib/express';
import {
  EDGE_NUMBERS,
  entryWithPassword,
  expectNoSecret,
  expectOurError,
  randomPassword,
  randomText,
  randomValue,
  Rng,
} from './support/fuzz';

const SEED = 0x5e55_1013;
const CASES = 1500;
// A server that is never contacted (nothing is opened).
const BASE = 'host=127.0.0.1 port=1 dbname=x user=y';

// Documented ranges of the numeric options: [min, max, zero allowed].
const DURATIONS: Record<string, [number, number, boolean]> = {
  connectTimeout: [0.001, 2147483.647, false],
  statementTimeout: [0.001, 2147483.647, false],
  retryMinDelay: [0.001, 2147483.647, false],
  retryMaxDelay: [0.001, 2147483.647, false],
  gcInterval: [0.001, 2147483.647, true],
  vacuumInterval: [0.001, 2147483.647, true],
  maxLifetime: [0.001, 2147483647, false],
};
const INTEGERS: Record<string, [number, number]> = {
  maxDataSize: [1, Number.MAX_SAFE_INTEGER],
  maxBatch: [1, 10000],
  connections: [1, 64],
};
const BOOLEANS = [
  'createTable',
  'failoverMode',
  'shortCircuit',
  'keepExpired',
  'synchronousCommit',
];
const CHOICES: Record<string, unknown[]> = {
  placement: ['rendezvous', 'php', 'PHP', ''],
  pooler: ['none', 'transaction', 'session'],
  sessionName: ['SID', 'PHPSESSID', 'S\0ID', 'SID\uD800', '😀'],
  table: ['sessions', 'app.sessions', 'a.b.c', '', 'x'.repeat(64), 't\uDC00', 'é'.repeat(31)],
  idPattern: [/^[a-f0-9]{32}$/, '^[a-z]+$', '(unclosed', /x/g, /x/y, /^[\s\S]{1,300}$/],
};

/** A value for `key`: usually one of its kind (near its bounds), sometimes anything at all. */
function valueFor(rng: Rng, key: string): unknown {
  if (rng.chance(0.25)) return randomValue(rng);
  if (key in DURATIONS || key in INTEGERS) return rng.pick(EDGE_NUMBERS);
  if (BOOLEANS.includes(key)) return rng.chance(0.5);
  return rng.pick(CHOICES[key] ?? [undefined]);
}

/** A `db` option of 1 to 3 entries, each with a password; and the fragments to keep secret. */
function dbWithPasswords(rng: Rng): { db: string | string[]; secrets: string[] } {
  const secrets: string[] = [];
  const entries: string[] = [];
  for (let i = rng.int(3) + 1; i > 0; i--) {
    const p = randomPassword(rng);
    secrets.push(...p.secrets);
    entries.push(entryWithPassword(rng, BASE.replace('port=1', `port=${i}`), p.password));
  }
  return { db: rng.chance(0.3) ? entries : entries.join(rng.pick([';', ' ; ', ';\n'])), secrets };
}

/** Checks that every option `options` set was within its documented range. */
function expectInRange(options: Record<string, unknown>, where: string): void {
  for (const [key, [min, max, zero]] of Object.entries(DURATIONS)) {
    const v = options[key];
    if (v === undefined || v === null) continue; // the default
    expect(v, `${where}: ${key}`).to.be.a('number');
    const n = v as number;
    expect((zero && n === 0) || (n >= min && n <= max), `${where}: ${key} = ${n}`).to.equal(true);
  }
  for (const [key, [min, max]] of Object.entries(INTEGERS)) {
    const v = options[key];
    if (v === undefined || v === null) continue; // the default
    expect(Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max, key).to.equal(
      true,
    );
  }
}

describe('04 fuzz: the API without a server', () => {
  it(`${CASES} option sets (seed ${SEED}): our error or a handler within every range, no secret shown`, async () => {
    const rng = new Rng(SEED);
    const keys = [
      ...Object.keys(DURATIONS),
      ...Object.keys(INTEGERS),
      ...BOOLEANS,
      ...Object.keys(CHOICES),
    ];
    let accepted = 0;
    for (let i = 0; i < CASES; i++) {
      const { db, secrets } = dbWithPasswords(rng);
      const options: Record<string, unknown> = { db };
      for (const key of keys) if (rng.chance(0.2)) options[key] = valueFor(rng, key);
      if (rng.chance(0.02)) options[rng.pick(['dbname', 'timeout', 'maxlifetime'])] = 1;
      // retryMaxDelay below retryMinDelay is its own error; keep most cases past it.
      if (rng.chance(0.8)) delete options.retryMaxDelay;
      const where = `case ${i}`;
      let handler: SessionPgsql;
      try {
        handler = new SessionPgsql(options as SessionPgsqlOptions);
      } catch (err) {
        expectOurError(err, secrets, where);
        expect((err as SessionPgsqlError).code, where).to.equal(ErrorCode.InvalidOption);
        continue;
      }
      accepted++;
      try {
        expectInRange(options, where);
        expectNoSecret(JSON.stringify(handler.status()), secrets, `${where} status()`);
      } finally {
        await handler.close();
      }
    }
    // The generator must reach both outcomes for the run to prove anything.
    expect(accepted).to.be.within(CASES * 0.02, CASES * 0.9);
  });

  it('describe() (every message shows values with it) never throws, whatever the value', () => {
    const rng = new Rng(SEED + 1);
    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    const hostile = new Proxy(
      {},
      {
        get() {
          throw new Error('get');
        },
        getPrototypeOf() {
          throw new Error('getPrototypeOf');
        },
      },
    );
    const values = [revoked.proxy, hostile, Object.create(null), randomText(rng, 200)];
    for (let i = 0; i < 300; i++) values.push(randomValue(rng));
    for (const value of values) expect(describeValue(value)).to.be.a('string');
    expect(describeValue('x'.repeat(1000)).length).to.be.below(200);
  });

  it("an adapter's expiry before 1970 is stored as 0, the lowest expires (expired all the same)", () => {
    expect(rowExpiry(-1)).to.equal(0);
    expect(rowExpiry(-8.64e15)).to.equal(0);
    expect(rowExpiry(1)).to.equal(1);
    expect(rowExpiry(8.64e15)).to.equal(8.64e12);
  });

  it('ExpressStore touchAfter is checked like every duration (SPG_INVALID_OPTION)', async () => {
    const handler = new SessionPgsql({ db: BASE });
    try {
      for (const touchAfter of [-1, Number.NaN, '60', Object.create(null), 1e300, 2 ** 31]) {
        let err: unknown = null;
        try {
          new ExpressStore(handler, { touchAfter: touchAfter as number });
        } catch (e) {
          err = e;
        }
        expect(err, describeValue(touchAfter)).to.be.instanceOf(SessionPgsqlError);
        expect((err as SessionPgsqlError).code).to.equal(ErrorCode.InvalidOption);
        expect((err as SessionPgsqlError).message).to.include('touchAfter');
      }
      for (const touchAfter of [0, 0.5, 60, 2147483647]) {
        expect(new ExpressStore(handler, { touchAfter })).to.be.instanceOf(ExpressStore);
      }
    } finally {
      await handler.close();
    }
  });
});
