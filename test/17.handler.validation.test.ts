// Input validation: ids outside idPattern, data with NUL bytes, data over maxDataSize and
// non-string data are rejected before anything is sent, and nothing stored changes.
import { expect } from 'chai';
import { ErrorCode, SessionPgsql, SessionPgsqlError, type SessionPgsqlOptions } from '../lib';
import { newId, query, uniqueTable } from './support/db';
import { knownId } from './support/hash-mode';
import { rejection, thrown } from './support/errors';
import { handlerFactory } from './support/handlers';
import { allRows, idsIn } from './support/rows';

const BAD_IDS: Array<[string, unknown]> = [
  ['too short (15)', 'a'.repeat(15)],
  ['too long (257)', 'a'.repeat(257)],
  ['empty', ''],
  ['a dot', `${'a'.repeat(20)}.`],
  ['a space', `${'a'.repeat(10)} ${'a'.repeat(10)}`],
  ['a quote', `${'a'.repeat(20)}'`],
  ['a slash', `${'a'.repeat(20)}/`],
  ['a NUL', `${'a'.repeat(20)}\0`],
  ['a newline at the end', `${'a'.repeat(20)}\n`],
  ['non-ASCII letters', 'é'.repeat(20)],
  ['a number', 12345678901234567890],
  ['undefined', undefined],
  ['null', null],
  ['an object', { id: 'a'.repeat(32) }],
];

describe('17 handler: validation', () => {
  let table: string;
  const handlers = handlerFactory();
  /** An open handler on this test's table (server 0, housekeeping timers off). */
  function make(options: SessionPgsqlOptions = {}): Promise<SessionPgsql> {
    return handlers.open({ table, ...options });
  }
  function rows() {
    return allRows(table);
  }
  /** Operations sent to server 0 so far (to prove nothing was sent). */
  function sent(handler: SessionPgsql): number {
    return handler.status().servers[0]!.operations;
  }

  beforeEach(() => {
    table = uniqueTable();
  });

  describe('ids outside idPattern reject SPG_INVALID_ID, nothing sent or stored', () => {
    for (const [what, id] of BAD_IDS) {
      it(what, async () => {
        const handler = await make();
        const before = sent(handler);
        const ops: Array<() => Promise<unknown>> = [
          () => handler.read(id as string),
          () => handler.write(id as string, 'data'),
          () => handler.write(id as string, 'data', { expires: 4000000000 }),
          () => handler.touch(id as string),
          () => handler.destroy(id as string),
        ];
        for (const op of ops) {
          const err = await rejection(op());
          expect(err.code).to.equal(ErrorCode.InvalidId);
        }
        expect(sent(handler)).to.equal(before);
        expect(await rows()).to.deep.equal([]);
      });
    }

    it('an invalid id message never echoes a long id in full', async () => {
      const handler = await make();
      const secret = `${'s'.repeat(300)}!`;
      const err = await rejection(handler.read(secret));
      expect(err.message).to.not.include(secret);
    });
  });

  describe('the default idPattern accepts 16 to 256 of [A-Za-z0-9_,-]', () => {
    for (const id of [
      'a'.repeat(16),
      'Z'.repeat(256),
      'abc_DEF-123,xyz0',
      'abcdefghijklmnopqrstuvwxyz012345', // PHP's 32 hex-ish characters
      'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0', // SHA-1 hex (40), rejected by the original
      'abcdefghijklmnopqrstuvwxyz', // 26 chars (hash_bits_per_character=5)
    ]) {
      it(`${id.length} characters: ${id.slice(0, 24)}${id.length > 24 ? '…' : ''}`, async () => {
        const handler = await make();
        expect(await handler.write(await handler.read(id), 'ok')).to.equal(true);
        expect((await handler.read(id)).data).to.equal('ok');
        expect(await handler.destroy(id)).to.equal(true);
      });
    }
  });

  describe('a custom idPattern', () => {
    it('a RegExp replaces the default entirely', async () => {
      const handler = await make({ idPattern: /^[a-f0-9]{32}$/ });
      const good = knownId('abcdef0123456789abcdef0123456789');
      expect(await handler.write(good, 'hex')).to.equal(true);
      for (const bad of ['ABCDEF0123456789ABCDEF0123456789', 'a'.repeat(31), 'g'.repeat(32)]) {
        expect((await rejection(handler.write(bad, 'x'))).code).to.equal(ErrorCode.InvalidId);
      }
      expect((await rows()).map((r) => r.sess_id)).to.deep.equal([good]);
    });

    it('a string pattern is compiled to a RegExp (short ids allowed if it says so)', async () => {
      const handler = await make({ idPattern: '^sess-[0-9]+$' });
      expect(await handler.write('sess-1', 'short id')).to.equal(true);
      expect((await handler.read('sess-1')).data).to.equal('short id');
      expect((await rejection(handler.read('sess-x'))).code).to.equal(ErrorCode.InvalidId);
      expect((await rejection(handler.read('a'.repeat(32)))).code).to.equal(ErrorCode.InvalidId);
    });

    it('a permissive pattern: ids with quotes and SQL are bound parameters, stored as is', async () => {
      const handler = await make({ idPattern: /^.{1,100}$/s });
      const id = knownId(`it's "odd"; DROP TABLE ${table}; -- ü`);
      expect(await handler.write(await handler.read(id), 'odd id')).to.equal(true);
      expect((await handler.read(id)).data).to.equal('odd id');
      expect((await rows()).map((r) => r.sess_id)).to.deep.equal([id]);
      expect(await handler.touch(id)).to.equal(true);
      expect(await handler.destroy(id)).to.equal(true);
    });
  });

  describe('session data', () => {
    it("data containing '\\0' rejects SPG_DATA_HAS_NUL; the stored data is unchanged", async () => {
      const handler = await make();
      const id = newId();
      await handler.write(id, 'original');
      const before = await rows();
      const sentBefore = sent(handler);
      for (const data of ['\0', 'a\0b', `${'x'.repeat(1000)}\0`, '\0😀']) {
        expect((await rejection(handler.write(id, data))).code).to.equal(ErrorCode.DataHasNul);
        const s = await handler.read(id);
        const err = await rejection(handler.write(s, data));
        expect(err.code).to.equal(ErrorCode.DataHasNul);
        expect(err.message).to.not.include('x'.repeat(100)); // no session data in messages
      }
      expect(await rows()).to.deep.equal(before);
      expect(sent(handler) - sentBefore).to.equal(4); // only the 4 reads
    });

    it('a NUL in a new session is rejected and nothing is inserted', async () => {
      const handler = await make();
      const s = await handler.read(newId());
      expect((await rejection(handler.write(s, 'new\0session'))).code).to.equal(
        ErrorCode.DataHasNul,
      );
      expect(await rows()).to.deep.equal([]);
    });

    it('maxDataSize counts UTF-8 bytes: 1001 bytes of multibyte text reject SPG_DATA_TOO_LARGE', async () => {
      const handler = await make({ maxDataSize: 1000 });
      const id = newId();
      await handler.write(id, 'original');
      const before = await rows();
      const sentBefore = sent(handler);
      const tooLarge = [
        `a${'é'.repeat(500)}`, // 1001 bytes, 501 characters
        'é'.repeat(501), // 1002 bytes
        `a${'😀'.repeat(250)}`, // 1001 bytes, 501 UTF-16 units
        `${'日'.repeat(333)}ab`, // 1001 bytes
        'x'.repeat(1001),
      ];
      for (const data of tooLarge) {
        expect(Buffer.byteLength(data)).to.be.greaterThan(1000);
        expect(data.length).to.be.below(1002);
        const err = await rejection(handler.write(id, data));
        expect(err.code, `${Buffer.byteLength(data)} bytes`).to.equal(ErrorCode.DataTooLarge);
        expect(err.message).to.not.include(data.slice(0, 50)); // no session data in messages
      }
      const s = await handler.read(id);
      expect((await rejection(handler.write(s, 'é'.repeat(501)))).code).to.equal(
        ErrorCode.DataTooLarge,
      );
      expect(await rows()).to.deep.equal(before);
      expect(sent(handler) - sentBefore).to.equal(1); // only the read
    });

    it('exactly maxDataSize bytes is accepted', async () => {
      const handler = await make({ maxDataSize: 1000 });
      const id = newId();
      for (const data of [
        'é'.repeat(500),
        '😀'.repeat(250),
        'x'.repeat(1000),
        `${'日'.repeat(333)}a`,
      ]) {
        expect(Buffer.byteLength(data)).to.equal(1000);
        expect(await handler.write(id, data)).to.equal(true);
        expect((await handler.read(id)).data).to.equal(data);
      }
    });

    it('non-string data rejects SPG_INVALID_ARGUMENT; the stored data is unchanged', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(id, 'original');
      const before = await rows();
      const s = await handler.read(id);
      for (const data of [42, null, undefined, { a: 1 }, Buffer.from('abc'), ['x'], true]) {
        expect((await rejection(handler.write(id, data as unknown as string))).code).to.equal(
          ErrorCode.InvalidArgument,
        );
        expect((await rejection(handler.write(s, data as unknown as string))).code).to.equal(
          ErrorCode.InvalidArgument,
        );
      }
      expect(await rows()).to.deep.equal(before);
    });

    it('a non-string address rejects SPG_INVALID_ARGUMENT', async () => {
      const handler = await make();
      const id = newId();
      const err = await rejection(handler.read(id, { address: 42 as unknown as string }));
      expect(err.code).to.equal(ErrorCode.InvalidArgument);
      const s = await handler.read(id);
      const werr = await rejection(handler.write(s, 'x', { address: {} as unknown as string }));
      expect(werr.code).to.equal(ErrorCode.InvalidArgument);
      expect(await rows()).to.deep.equal([]);
    });
  });

  describe('NUL bytes in the other stored strings are rejected, never silently cut', () => {
    const CODES: string[] = [ErrorCode.DataHasNul, ErrorCode.InvalidArgument];

    it('custom field (setField)', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(id, 'x');
      let err: unknown = null;
      try {
        const s = await handler.read(id);
        s.setField('user\0admin');
        await handler.write(s, 'y');
      } catch (e) {
        err = e;
      }
      expect(err, 'a custom field with NUL must be rejected').to.be.instanceOf(SessionPgsqlError);
      expect(CODES).to.include((err as SessionPgsqlError).code);
      const [r] = await rows();
      expect(r!.sess_custom).to.equal('');
      expect(r!.sess_data).to.equal('x');
    });

    it('error message (addError)', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(id, 'x');
      let err: unknown = null;
      try {
        const s = await handler.read(id);
        s.addError('error', 'first\0second');
        await handler.write(s, 'y');
      } catch (e) {
        err = e;
      }
      expect(err, 'an error message with NUL must be rejected').to.be.instanceOf(SessionPgsqlError);
      expect(CODES).to.include((err as SessionPgsqlError).code);
      const [r] = await rows();
      expect(r!.sess_err_message).to.equal(null);
      expect(r!.sess_data).to.equal('x');
    });

    it('address', async () => {
      const handler = await make();
      const id = newId();
      let err: unknown = null;
      try {
        await handler.write(await handler.read(id, { address: '10.0.0.1\0evil' }), 'y');
      } catch (e) {
        err = e;
      }
      expect(err, 'an address with NUL must be rejected').to.be.instanceOf(SessionPgsqlError);
      expect(CODES).to.include((err as SessionPgsqlError).code);
      expect(await rows()).to.deep.equal([]);
    });
  });
  describe('expires: Unix seconds from 0 to 8.64e12, anything else rejects SPG_INVALID_ARGUMENT', () => {
    // 2^63 and beyond were stored as -2^63 (a double->int64 cast), so the session read back
    // expired and empty although write() resolved true.
    const OUT: unknown[] = [
      2 ** 63,
      1e300,
      -1e19,
      -1,
      8.64e12 + 1,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      '4000000000',
      10n,
      Object.create(null),
      { valueOf: () => 4000000000 },
    ];

    it('write (by id and through a Session) and touch reject; nothing is sent or stored', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(id, 'original');
      const before = await rows();
      const s = await handler.read(id);
      const sentBefore = sent(handler);
      for (const expires of OUT) {
        for (const op of [
          () => handler.write(id, 'changed', { expires: expires as number }),
          () => handler.write(s, 'changed', { expires: expires as number }),
          () => handler.touch(id, expires as number),
        ]) {
          const err = await rejection(op());
          expect(err.code, String(typeof expires)).to.equal(ErrorCode.InvalidArgument);
          expect(err.message).to.include('expires');
        }
      }
      expect(sent(handler)).to.equal(sentBefore);
      expect(await rows()).to.deep.equal(before);
    });

    it('the bounds are stored as given and read back', async () => {
      const handler = await make();
      const far = newId();
      expect(await handler.write(far, 'far future', { expires: 8.64e12 })).to.equal(true);
      const s = await handler.read(far);
      expect(s.expired).to.equal(false);
      expect(s.data).to.equal('far future');
      expect(s.info().expires).to.equal(8.64e12);
      expect(await handler.touch(far, 8.64e12)).to.equal(true);
      const epoch = newId();
      expect(await handler.write(epoch, 'born expired', { expires: 0 })).to.equal(true);
      expect((await handler.read(epoch)).expired).to.equal(true);
    });

    it('durations at their upper bounds: the server comes up, and a session lives its maxLifetime', async () => {
      const handler = await make({
        statementTimeout: 2147483.647,
        connectTimeout: 2147483.647,
        retryMaxDelay: 2147483.647,
        maxLifetime: 2147483647,
      });
      const id = newId();
      expect(await handler.write(id, 'long-lived')).to.equal(true);
      const s = await handler.read(id);
      expect(s.expired).to.equal(false);
      expect(s.data).to.equal('long-lived');
      expect(s.info().expires - s.info().modified).to.equal(2147483647);
      expect(await handler.touch(id)).to.equal(true);
      expect(handler.status().servers[0]!.state).to.equal('up');
    });

    it('GC removes rows with any expired sess_expire, extremes written by other clients included', async () => {
      const handler = await make({ maxLifetime: 100 });
      await handler.read(newId()); // creates the table
      const now = 'floor(extract(epoch from now()))::bigint';
      // id -> sess_expire as SQL; the first group is expired, the second is not (a live row,
      // and a tombstone whose lifetime has not passed: it must stay until then).
      const gone: Record<string, string> = {
        min: '-9223372036854775808',
        belowAnyLifetime: `-(${now} + 2147483647 + 3600)`,
        farNegative: '-1000000000000000',
        justExpired: `${now} - 1`,
        negativeSmall: '-5',
      };
      const kept: Record<string, string> = {
        max: '9223372036854775807',
        live: `${now} + 100`,
        tombstone: `-(${now} + 100)`,
      };
      for (const [name, expire] of Object.entries({ ...gone, ...kept })) {
        await query(
          0,
          `INSERT INTO ${table} (sess_id, sess_name, sess_data, sess_expire)
           VALUES ($1, 'SID', 'other client', ${expire})`,
          [knownId(`${name}_${'x'.repeat(16)}`)],
        );
      }
      expect(await handler.gc()).to.equal(Object.keys(gone).length);
      expect(await idsIn(table)).to.deep.equal(
        Object.keys(kept)
          .map((name) => `${name}_${'x'.repeat(16)}`)
          .sort(),
      );
      const max = await handler.read(`max_${'x'.repeat(16)}`);
      expect(max.expired).to.equal(false);
      expect(max.data).to.equal('other client');
    });
  });

  describe('lone surrogates: rejected, never stored as U+FFFD', () => {
    const LONE = ['\uD800', '\uDBFF', '\uDC00', '\uDFFF', 'a\uD83D', '\uDE00a', '\uDE00\uD83D'];

    it('data with a lone surrogate rejects SPG_INVALID_ARGUMENT; nothing stored', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(id, 'original');
      const before = await rows();
      const s = await handler.read(id);
      for (const lone of LONE) {
        for (const data of [lone, `{"a":"${lone}"}`, `${'x'.repeat(5000)}${lone}`]) {
          const err = await rejection(handler.write(id, data));
          expect(err.code).to.equal(ErrorCode.InvalidArgument);
          expect(err.message).to.include('lone surrogate');
          expect(err.message).to.not.include('x'.repeat(20)); // no session data in messages
          expect((await rejection(handler.write(s, data))).code).to.equal(
            ErrorCode.InvalidArgument,
          );
        }
      }
      expect(await rows()).to.deep.equal(before);
    });

    it('well-formed pairs, and JSON.stringify of lone surrogates (escaped), round-trip exactly', async () => {
      const handler = await make();
      const id = newId();
      for (const data of ['😀', '\uD83D\uDE00x', JSON.stringify({ a: '\uD800', b: 'x\uDFFF' })]) {
        expect(await handler.write(id, data)).to.equal(true);
        expect((await handler.read(id)).data).to.equal(data);
      }
      const json = (await handler.read(id)).data;
      expect(JSON.parse(json)).to.deep.equal({ a: '\uD800', b: 'x\uDFFF' });
    });

    it('ids differing only in a lone surrogate never share a row: both reject SPG_INVALID_ID', async () => {
      const handler = await make({ idPattern: /^[\s\S]{1,100}$/ });
      const base = newId();
      for (const lone of LONE) {
        const id = `${base}${lone}`;
        for (const op of [
          () => handler.read(id),
          () => handler.write(id, 'mine'),
          () => handler.touch(id),
          () => handler.destroy(id),
        ]) {
          const err = await rejection(op());
          expect(err.code).to.equal(ErrorCode.InvalidId);
          expect(err.message).to.include('lone surrogate');
        }
        expect(thrown(() => handler.serversFor(id)).code).to.equal(ErrorCode.InvalidId);
      }
      expect(await rows()).to.deep.equal([]);
      // A well-formed pair is a character like any other.
      expect(await handler.write(`${base}😀`, 'pair')).to.equal(true);
      expect((await handler.read(`${base}😀`)).data).to.equal('pair');
    });

    it('an address, custom field or error message with a lone surrogate is rejected', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(id, 'x');
      const before = await rows();
      expect((await rejection(handler.read(id, { address: '10.0.0.1\uD800' }))).code).to.equal(
        ErrorCode.InvalidArgument,
      );
      expect((await rejection(handler.write(id, 'y', { address: '\uDC00' }))).code).to.equal(
        ErrorCode.InvalidArgument,
      );
      const s = await handler.read(id);
      expect(thrown(() => s.setField('user\uD800')).code).to.equal(ErrorCode.InvalidArgument);
      expect(thrown(() => s.addError('error', 'bad \uDFFF')).code).to.equal(
        ErrorCode.InvalidArgument,
      );
      expect(s.forced()).to.equal(false); // nothing was kept
      expect(await rows()).to.deep.equal(before);
    });
  });

  describe('arguments of any value give our error, never a bare TypeError', () => {
    it('read(id, null), write(id, data, null) and odd values reject SPG_INVALID_ARGUMENT', async () => {
      const handler = await make();
      const id = newId();
      const odd = [null, 5, 'x', Symbol('s'), 10n];
      for (const value of odd) {
        expect((await rejection(handler.read(id, value as never))).code).to.equal(
          ErrorCode.InvalidArgument,
        );
        expect((await rejection(handler.write(id, 'x', value as never))).code).to.equal(
          ErrorCode.InvalidArgument,
        );
      }
      const bare = Object.create(null);
      for (const value of [bare, Symbol('s'), 10n, () => 1]) {
        for (const op of [
          () => handler.read(id, { address: value }),
          () => handler.write(id, value),
          () => handler.write(id, 'x', { address: value }),
          () => handler.write(id, 'x', { expires: value }),
          () => handler.touch(id, value),
        ]) {
          expect((await rejection(op())).code).to.equal(ErrorCode.InvalidArgument);
        }
      }
      expect((await rejection(handler.read(bare))).code).to.equal(ErrorCode.InvalidId);
      const s = await handler.read(id);
      expect(thrown(() => s.setField(bare)).code).to.equal(ErrorCode.InvalidArgument);
      expect(thrown(() => s.addError(bare)).code).to.equal(ErrorCode.InvalidArgument);
      expect(thrown(() => s.addError(10n as never)).code).to.equal(ErrorCode.InvalidArgument);
      expect(thrown(() => s.addError('error', bare)).code).to.equal(ErrorCode.InvalidArgument);
      expect(await rows()).to.deep.equal([]);
    });
  });
});
