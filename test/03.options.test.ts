// Option validation and defaults. Every invalid option throws SPG_INVALID_OPTION from the
// constructor with a message naming the option; `db` errors name the entry and never show a
// password. No server is needed (nothing here connects).
import { expect } from 'chai';
import { ErrorCode, SessionPgsql, SessionPgsqlError, type SessionPgsqlOptions } from '../lib';

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

describe('03 options', () => {
  describe('each option with a wrong type or range throws SPG_INVALID_OPTION naming it', () => {
    for (const [key, values] of Object.entries(INVALID)) {
      for (const value of values) {
        it(`${key}: ${show(value)}`, async () => {
          await expectInvalid({ db: GOOD, [key]: value }, key);
        });
      }
    }

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

    const BAD_ENTRIES: Array<[string, string]> = [
      ['a malformed key=value entry', 'host=127.0.0.1 password=hunter2 port'],
      ['an unknown conninfo key', 'host=127.0.0.1 password=hunter2 frobnicate=1'],
      ['an unterminated quote', "host=127.0.0.1 password='hunter2"],
      ['a password before a malformed part', 'password=hunter2 dbname=x oops'],
      ['a URI with an unknown parameter', 'postgresql://u:hunter2@127.0.0.1/db?frobnicate=1'],
      ['a URI with a bad percent-escape', 'postgresql://u:hunter2%zz@127.0.0.1/db'],
      ['a URI with an unterminated IPv6 host', 'postgresql://u:hunter2@[::1/db'],
    ];
    for (const [what, entry] of BAD_ENTRIES) {
      it(`${what}: names the entry position and never shows the password`, async () => {
        const err = await expectInvalid({ db: `${GOOD};${GOOD};${entry}` }, 'db');
        expect(err.message).to.match(/entry 2\b/);
        expect(err.message).to.not.include('hunter2');
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
});
