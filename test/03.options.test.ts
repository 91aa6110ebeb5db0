// Option validation and defaults. Every invalid option throws SPG_INVALID_OPTION from the
// constructor with a message naming the option; `db` errors name the entry and never show a
// password. No server is needed (nothing here connects).
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { ErrorCode, SessionPgsql, SessionPgsqlError, type SessionPgsqlOptions } from '../lib';
import { MAX_EXPIRES, MAX_LIFETIME_SECONDS, MAX_TIMER_SECONDS } from '../lib/options';

const GOOD = 'host=127.0.0.1 port=1 dbname=x user=y';

function construct(options: unknown): SessionPgsqlError | SessionPgsql {
  try {
    return new SessionPgsql(options as SessionPgsqlOptions);
  } catch (err) {
    expect(err).to.be.instanceOf(SessionPgsqlError);
    return err as SessionPgsqlError;
  }
}

async function expectInvalid(options: unknown, ...mustName: string[]): Promise<SessionPgsqlError> {
  const result = construct(options);
  if (result instanceof SessionPgsql) {
    await result.close();
    expect.fail(`expected SPG_INVALID_OPTION for ${show(options)}, but it was accepted`);
  }
  const err = result as SessionPgsqlError;
  expect(err.code).to.equal(ErrorCode.InvalidOption);
  for (const name of mustName) expect(err.message).to.include(name);
  return err;
}

function show(value: unknown): string {
  if (value instanceof RegExp) return String(value);
  if (typeof value === 'number') return String(value);
  return JSON.stringify(value);
}

// option -> wrong values (each of the wrong type or out of range)
const INVALID: Record<string, unknown[]> = {
  db: [42, true, {}],
  createTable: ['yes', 1, 0],
  failoverMode: ['true', 1],
  shortCircuit: ['false', 0],
  keepExpired: [1, 'no'],
  gcInterval: [-1, Number.NaN, Number.POSITIVE_INFINITY, '3600'],
  vacuumInterval: [-0.5, 'x', Number.NaN],
  maxLifetime: [0, -1, '1440', Number.NaN, Number.POSITIVE_INFINITY],
  sessionName: [5, {}, true],
  table: ['', 'a.b.c', 'x'.repeat(64), '.x', 'x.', 'a\0b', 5],
  placement: ['random', 'PHP', 1],
  idPattern: [5, /^[a-z]{16,}$/g, /^[a-z]{16,}$/y, '(unclosed', {}],
  connectTimeout: [0, -1, '5', Number.NaN],
  statementTimeout: [0, -2, 'x'],
  maxDataSize: [0, -1, 1.5, '1000', Number.NaN, Number.POSITIVE_INFINITY],
  retryMinDelay: [0, -1, 'x'],
  retryMaxDelay: [0, -1, 'x'],
};

// option -> values beyond what its timer, PostgreSQL or the table can hold (accepted before the
// bounds: 24.9 days of statementTimeout failed every connection setup, 1e17 overflowed a cast,
// a maxLifetime of 2^63 stored every write already expired) or too short to be a timer.
const OUT_OF_RANGE: Record<string, number[]> = {
  statementTimeout: [2147483.648, 2160000, 1e17, 1e300, 0.0009],
  connectTimeout: [2147483.648, 1e17, 0.0001],
  retryMinDelay: [2147483.648, 1e17, 1e-7],
  retryMaxDelay: [2147483.648, 1e300],
  gcInterval: [2147483.648, 1e17, 0.0005],
  vacuumInterval: [2147483.648, 1e17, 1e-9],
  maxLifetime: [2147483648, 2 ** 63, 1e300, 0.0001],
};

// option -> the bounds themselves, accepted.
const AT_BOUNDS: Record<string, number[]> = {
  statementTimeout: [0.001, 2147483.647],
  connectTimeout: [0.001, 2147483.647],
  gcInterval: [0.001, 2147483.647],
  vacuumInterval: [0.001, 2147483.647],
  maxLifetime: [0.001, 2147483647],
};

describe('03 options', () => {
  describe('each option with a wrong type or range throws SPG_INVALID_OPTION naming it', () => {
    for (const [key, values] of Object.entries(INVALID)) {
      for (const value of values) {
        it(`${key}: ${show(value)}`, async () => {
          await expectInvalid({ db: GOOD, [key]: value }, key);
        });
      }
    }

    for (const [key, values] of Object.entries(OUT_OF_RANGE)) {
      for (const value of values) {
        it(`${key}: ${value} is out of range, and the message says the range`, async () => {
          const err = await expectInvalid(
            { db: GOOD, retryMaxDelay: 2147483.647, [key]: value },
            key,
          );
          expect(err.message).to.match(/from 0\.001 to \d/);
        });
      }
    }

    for (const [key, values] of Object.entries(AT_BOUNDS)) {
      for (const value of values) {
        it(`${key}: ${value} (a bound) is accepted`, async () => {
          const handler = construct({ db: GOOD, [key]: value });
          expect(handler).to.be.instanceOf(SessionPgsql);
          await (handler as SessionPgsql).close();
        });
      }
    }

    it('a value without a prototype (Object.create(null)) for any option is our error', async () => {
      for (const key of [...Object.keys(INVALID), 'maxBatch', 'connections', 'pooler']) {
        await expectInvalid({ db: GOOD, [key]: Object.create(null) }, key);
      }
      for (const odd of [Symbol('s'), 10n, () => 1, [Object.create(null)]]) {
        await expectInvalid({ db: GOOD, maxBatch: odd }, 'maxBatch');
        await expectInvalid({ db: GOOD, idPattern: odd }, 'idPattern');
      }
    });

    it('sessionName and table with a lone surrogate (stored as U+FFFD: not what was given)', async () => {
      await expectInvalid({ db: GOOD, sessionName: 'SID\uD800' }, 'sessionName');
      await expectInvalid({ db: GOOD, sessionName: '\uDC00SID' }, 'sessionName');
      await expectInvalid({ db: GOOD, table: 'sessions\uDBFF' }, 'table');
      const handler = construct({ db: GOOD, sessionName: 'SID😀', table: 'sessions_😀' });
      expect(handler).to.be.instanceOf(SessionPgsql);
      await (handler as SessionPgsql).close();
    });

    it('retryMaxDelay smaller than retryMinDelay', async () => {
      await expectInvalid({ db: GOOD, retryMinDelay: 2, retryMaxDelay: 1 }, 'retryMaxDelay');
    });

    it('options that are not an object', async () => {
      for (const options of [5, 'host=x', true, null]) {
        const err = await expectInvalid(options);
        expect(err.code).to.equal(ErrorCode.InvalidOption);
      }
    });
  });

  describe('unknown option keys', () => {
    for (const key of ['dbname', 'maxlifetime', 'gc_interval', 'session_pgsql.db', 'timeout']) {
      it(`rejects "${key}" and names it`, async () => {
        await expectInvalid({ db: GOOD, [key]: 1 }, key);
      });
    }

    it('rejects keys named like Object.prototype members ("constructor", "toString")', async () => {
      for (const key of ['constructor', 'toString', 'hasOwnProperty', 'valueOf']) {
        await expectInvalid({ db: GOOD, [key]: 1 }, key);
      }
    });
  });

  describe('sessionName', () => {
    it('rejects a NUL character (it would be silently cut in sess_name)', async () => {
      await expectInvalid({ db: GOOD, sessionName: 'PHP\0SESSID' }, 'sessionName');
    });
  });

  describe('db', () => {
    it('an empty list is an error, not a phantom server', async () => {
      for (const db of ['', '   ', ';']) await expectInvalid({ db }, 'db');
    });

    it("'a;;b': the empty middle entry is named by its position", async () => {
      const err = await expectInvalid({ db: `${GOOD};;${GOOD}` }, 'db');
      expect(err.message).to.match(/entry 1\b/);
    });

    it('a trailing ";" is an empty last entry', async () => {
      const err = await expectInvalid({ db: `${GOOD};${GOOD};` }, 'db');
      expect(err.message).to.match(/entry 2\b/);
      const spaced = await expectInvalid({ db: `${GOOD} ;  ` }, 'db');
      expect(spaced.message).to.match(/entry 1\b/);
    });

    it('entries are trimmed', async () => {
      const handler = new SessionPgsql({
        db: `  ${GOOD}  ;\n${GOOD.replace('port=1', 'port=2')}\t`,
      });
      try {
        expect(handler.status().numberOfServers).to.equal(2);
        expect(handler.status().servers[1]!.server).to.include('port=2');
      } finally {
        await handler.close();
      }
    });

    it("a ';' inside a single-quoted value does not separate entries", async () => {
      for (const [fragment, db] of [
        ['Secret', `host=127.0.0.1 password='Top;Secret' port=1`],
        ["Xit's", `host=127.0.0.1 password='Xit\\'s;Quo\\\\' port=1`],
        ['Mid9', `password = 'a;Mid9;c' host=127.0.0.1 port=1`],
        ['Secret', `host=127.0.0.1 password=Top\\;Secret port=1`],
      ] as const) {
        const handler = new SessionPgsql({ db: `${GOOD};${db};${GOOD}` });
        try {
          const status = handler.status();
          expect(status.numberOfServers, db).to.equal(3);
          expect(status.servers[1]!.server).to.include('password=***');
          expect(JSON.stringify(status)).to.not.include(fragment);
        } finally {
          await handler.close();
        }
      }
    });

    it('an unquoted ";" in a password separates, and no fragment is shown', async () => {
      for (const db of [
        'host=127.0.0.1 password=TopSecret;Tail42',
        'host=127.0.0.1 password=TopSecret;Tail42 port=1',
        'host=127.0.0.1 password=TopSecret;Tail42=x',
        'host=127.0.0.1 password=TopSecret;Tail42 Tail43',
        "host=127.0.0.1 password=TopSecret;Tail42 'Tail43",
      ]) {
        const err = await expectInvalid({ db }, 'db');
        expect(err.message).to.match(/entry 1\b/);
        for (const fragment of ['TopSecret', 'Tail42', 'Tail43']) {
          expect(err.message, db).to.not.include(fragment);
          expect(String(err.stack), db).to.not.include(fragment);
        }
      }
    });

    it('an array of entries: each taken whole (any character in a quoted password)', async () => {
      const handler = new SessionPgsql({
        db: [GOOD, `  host=127.0.0.1 port=2 password='a;b c\\'d'  `],
      });
      try {
        const status = handler.status();
        expect(status.numberOfServers).to.equal(2);
        expect(status.servers[1]!.server).to.include('port=2');
        expect(JSON.stringify(status)).to.not.match(/a;b|c'd/);
      } finally {
        await handler.close();
      }
      for (const db of [[], [GOOD, ''], [GOOD, 5], [GOOD, null], [Object.create(null)]]) {
        await expectInvalid({ db }, 'db');
      }
      const err = await expectInvalid({ db: [GOOD, 'host=x password=Hidden99 oops'] }, 'db');
      expect(err.message).to.match(/entry 1\b/);
      expect(err.message).to.not.include('Hidden99');
    });

    it('a URI with "@" or "/" in its password as is: refused, never shown', async () => {
      for (const db of [
        'postgresql://u:Top@Secret@127.0.0.1:1/db',
        'postgresql://u:Top/Secret@127.0.0.1:1/db',
        'postgres://u:Top/Sec@ret@127.0.0.1:1/db',
      ]) {
        const err = await expectInvalid({ db: `${GOOD};${db}` }, 'db');
        expect(err.message).to.match(/entry 1\b/);
        expect(err.message).to.not.match(/Top|Secret|Sec@ret/);
      }
      // Percent-encoded, and with other characters as is, the password is parsed and redacted.
      for (const db of [
        'postgresql://u:Top%40Sec%2Fret%3B@127.0.0.1:1/db',
        'postgresql://u:Top?Secret@127.0.0.1:1/db',
        'postgresql://u:Top#Secret@127.0.0.1:1/db',
        'postgresql://u:Top:Secret@127.0.0.1:1/db',
        'postgresql://127.0.0.1:1/db?application_name=a@b',
      ]) {
        const handler = new SessionPgsql({ db });
        try {
          expect(JSON.stringify(handler.status()), db).to.not.match(/Top|Secret|Sec/);
        } finally {
          await handler.close();
        }
      }
    });

    const BAD_ENTRIES: Array<[string, string]> = [
      ['a malformed key=value entry', 'host=127.0.0.1 password=hunter2 port'],
      ['an unknown conninfo key', 'host=127.0.0.1 password=hunter2 frobnicate=1'],
      ['an unterminated quote', "host=127.0.0.1 password='hunter2"],
      ['a password before a malformed part', 'password=hunter2 dbname=x oops'],
      ['a URI with an unknown parameter', 'postgresql://u:hunter2@127.0.0.1/db?frobnicate=1'],
      ['a URI with a bad percent-escape', 'postgresql://u:hunter2%zz@127.0.0.1/db'],
      ['a URI with an unterminated IPv6 host', 'postgresql://u:hunter2@[::1/db'],
      ['an unquoted password with a space', 'host=127.0.0.1 password=hun ter2'],
      ['a password after a key without "="', 'host hunter2 password=hunter2'],
      ['an unknown key after a password', 'password=x hunter2=1'],
    ];
    for (const [what, entry] of BAD_ENTRIES) {
      it(`${what}: names the entry position and never shows the password`, async () => {
        const err = await expectInvalid({ db: `${GOOD};${GOOD};${entry}` }, 'db');
        expect(err.message).to.match(/entry 2\b/);
        for (const fragment of ['hunter2', 'hun', 'ter2']) {
          expect(err.message).to.not.include(fragment);
        }
        expect(String(err.stack)).to.not.include('hunter2');
        expect(JSON.stringify(err)).to.not.include('hunter2');
      });
    }
  });

  describe('accepted values', () => {
    it('every documented option at a valid value', async () => {
      const handler = new SessionPgsql({
        db: `${GOOD};postgresql://u:pw@127.0.0.1:2/x`,
        createTable: false,
        failoverMode: true,
        shortCircuit: true,
        keepExpired: true,
        gcInterval: 0,
        vacuumInterval: 0,
        maxLifetime: 0.5,
        sessionName: 'PHPSESSID',
        table: 'app.sessions',
        placement: 'php',
        idPattern: '^[a-f0-9]{32}$',
        connectTimeout: 0.25,
        statementTimeout: 1.5,
        maxDataSize: 1,
        retryMinDelay: 0.01,
        retryMaxDelay: 0.01,
      });
      try {
        const status = handler.status();
        expect(status.numberOfServers).to.equal(2);
        expect(status.failoverMode).to.equal(true);
        expect(status.shortCircuit).to.equal(true);
        expect(status.keepExpired).to.equal(true);
      } finally {
        await handler.close();
      }
    });

    it('undefined means the default', async () => {
      const handler = new SessionPgsql({
        db: GOOD,
        shortCircuit: undefined,
        maxLifetime: undefined,
      });
      try {
        expect(handler.status().shortCircuit).to.equal(false);
      } finally {
        await handler.close();
      }
    });
  });

  describe('defaults', () => {
    it('status() shows failoverMode, shortCircuit and keepExpired off, rendezvous placement', async () => {
      const handler = new SessionPgsql({ db: GOOD });
      try {
        const status = handler.status();
        expect(status.failoverMode).to.equal(false);
        expect(status.shortCircuit).to.equal(false);
        expect(status.keepExpired).to.equal(false);
        expect(status.placement).to.equal('rendezvous');
        expect(status.numberOfServers).to.equal(1);
        expect(status.table).to.include('php_session');
      } finally {
        await handler.close();
      }
    });

    it('db defaults to the original "host=localhost dbname=php_session user=nobody"', async () => {
      const handler = new SessionPgsql();
      try {
        const status = handler.status();
        expect(status.numberOfServers).to.equal(1);
        const server = status.servers[0]!.server;
        expect(server).to.include('host=localhost');
        expect(server).to.include('dbname=php_session');
        expect(server).to.include('user=nobody');
      } finally {
        await handler.close();
      }
    });

    it('idPattern defaults to 16-256 of [A-Za-z0-9_,-] (checked before any connection)', async () => {
      const handler = new SessionPgsql({ db: GOOD });
      try {
        for (const id of [
          'a'.repeat(15),
          'a'.repeat(257),
          `${'a'.repeat(20)}.`,
          `${'a'.repeat(20)} `,
        ]) {
          const err = await handler.read(id).then(
            () => null,
            (e: SessionPgsqlError) => e,
          );
          expect(err, id).to.be.instanceOf(SessionPgsqlError);
          expect(err!.code, id).to.equal(ErrorCode.InvalidId);
        }
        expect(handler.status().servers[0]!.operations).to.equal(0);
      } finally {
        await handler.close();
      }
    });

    it('maxDataSize defaults to 1048576 bytes (checked before any connection)', async () => {
      const handler = new SessionPgsql({ db: GOOD });
      try {
        const err = await handler.write('a'.repeat(32), 'x'.repeat(1048577)).then(
          () => null,
          (e: SessionPgsqlError) => e,
        );
        expect(err).to.be.instanceOf(SessionPgsqlError);
        expect(err!.code).to.equal(ErrorCode.DataTooLarge);
        expect(handler.status().servers[0]!.operations).to.equal(0);
      } finally {
        await handler.close();
      }
    });
  });

  describe('bounds: the facade checks them, the native core keeps them as guards', () => {
    // native/sql.h: the numbers the native guards use; a drift would let one language refuse
    // what the other accepts, or GC misread a tombstone.
    const header = readFileSync(path.join(__dirname, '..', 'native', 'sql.h'), 'utf8');
    function nativeConstant(name: string): number {
      const found = new RegExp(`constexpr \\w[\\w ]* ${name} = ([0-9.e]+);`).exec(header);
      expect(found, `${name} in native/sql.h`).to.not.equal(null);
      return Number(found![1]);
    }

    for (const [ts, value, cc] of [
      ['MAX_LIFETIME_SECONDS', MAX_LIFETIME_SECONDS, 'kMaxLifetime'],
      ['MAX_TIMER_SECONDS', MAX_TIMER_SECONDS, 'kMaxTimerSeconds'],
      ['MAX_EXPIRES', MAX_EXPIRES, 'kMaxExpires'],
    ] as const) {
      it(`${ts} (lib/options.ts) equals ${cc} (native/sql.h)`, () => {
        expect(nativeConstant(cc)).to.equal(value);
      });
    }
  });
});
