// Fuzz of the public API against a real server (test 04 fuzzes what needs none): ids, data,
// addresses and expiries of every kind, lone surrogates and NUL included, in concurrent batches
// (so writes merge), and option sets with passwords in every form on live handlers. A fixed seed
// and a bounded number of cases. Every promise must settle within a bound, every rejection must
// be our error with a code, a call must be refused exactly when its input is invalid, every
// accepted write must read back identical (one stored row per id), and no password fragment may
// appear in a message, stack, status() or event.
import { expect } from 'chai';
import { inspect } from 'node:util';
import { ErrorCode, SessionPgsql, SessionPgsqlError, type Session } from '../lib';
import { servers, uniqueTable } from './support/db';
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
import { handlerFactory } from './support/handlers';
import { settled as settledOrFail, type Settled } from './support/wait';

const SEED = 0x28_1013;
const OPERATIONS = 1500;
const BATCH = 8;
// Far above any operation's time on a loaded machine; only a promise that never settles hits it.
const SETTLE_MS = 20_000;
const MAX_DATA = 65536;
const ID_PATTERN = /^[\s\S]{1,300}$/;

type Outcome = Settled<unknown>;

/** The outcome of `promise`; fails the test when it has not settled within SETTLE_MS. */
function settled(promise: Promise<unknown>, where: string): Promise<Outcome> {
  return settledOrFail(promise, where, SETTLE_MS);
}

function wellFormedText(value: string): boolean {
  return (value as string & { isWellFormed(): boolean }).isWellFormed() && !value.includes('\0');
}

function validId(id: unknown): id is string {
  return typeof id === 'string' && wellFormedText(id) && ID_PATTERN.test(id);
}

function validData(data: unknown): data is string {
  return typeof data === 'string' && wellFormedText(data) && Buffer.byteLength(data) <= MAX_DATA;
}

function validExpires(expires: unknown): boolean {
  return (
    expires === undefined ||
    expires === null ||
    (typeof expires === 'number' && expires >= 0 && expires <= 8.64e12)
  );
}

function validAddress(address: unknown): boolean {
  return address == null || (typeof address === 'string' && wellFormedText(address));
}

/** What a session id's row should read as: its last accepted data, live or expired; unknown
 * when its expiry was too close to now to say (the clocks of test and server differ a little). */
type Expected = { live: true; data: string } | { live: false } | 'unknown';

describe('28 fuzz: the API against a real server', () => {
  const handlers = handlerFactory();

  it(`${OPERATIONS} operations (seed ${SEED}): settled, refused exactly when invalid, read back identical`, async function () {
    this.timeout(180_000);
    const rng = new Rng(SEED);
    const handler = await handlers.open({
      table: uniqueTable('fuzz'),
      idPattern: ID_PATTERN,
      maxDataSize: MAX_DATA,
      statementTimeout: 60,
    });
    const now = Math.floor(Date.now() / 1000);

    // Ids: valid ones, and variants of them that must never reach a row of their own (lone
    // surrogates, which used to share one row as U+FFFD), or are invalid in other ways.
    const ids: unknown[] = [];
    for (let i = 0; i < 12; i++) {
      const base = `fz${i}_${Math.floor(rng.next() * 1e9).toString(36)}`;
      ids.push(base, `${base}😀`, `${base}\uD800`, `${base}\uDBFF`, `${base}\uDC00`);
      ids.push(rng.pick([`${base}\0`, `${base}é日`, `${base}${randomText(rng, 6)}`]));
    }
    ids.push('', 'x'.repeat(301), 'x'.repeat(300), 5, null, undefined, Object.create(null));

    const data = (): unknown => {
      const r = rng.next();
      if (r < 0.45) return randomText(rng, 40);
      if (r < 0.7) return JSON.stringify({ k: randomText(rng, 10), n: rng.int(100) });
      if (r < 0.8) return 'é'.repeat(rng.chance(0.5) ? MAX_DATA / 2 : MAX_DATA / 2 + 1);
      if (r < 0.9) return '';
      return randomValue(rng);
    };
    const expiry = (): unknown => {
      const r = rng.next();
      if (r < 0.55) return undefined;
      if (r < 0.7) return now + 1000 + rng.int(1e6) + rng.next();
      if (r < 0.78) return rng.int(now - 1000);
      if (r < 0.95) return rng.pick(EDGE_NUMBERS);
      return randomValue(rng);
    };
    const address = (): unknown => {
      const r = rng.next();
      if (r < 0.6) return undefined;
      if (r < 0.9) return randomText(rng, 8);
      return randomValue(rng);
    };
    /** Whether a row with `expires` (undefined: now + maxLifetime) is live when read back. */
    const liveness = (expires: unknown): boolean | 'unknown' => {
      if (expires === undefined || expires === null) return true;
      const at = expires as number;
      return at > now + 500 ? true : at < now - 500 ? false : 'unknown';
    };

    const model = new Map<string, Expected>();
    let accepted = 0;
    let refused = 0;

    for (let done = 0; done < OPERATIONS;) {
      // A batch on distinct ids, run concurrently: writes merge into one statement.
      const batch = new Set<unknown>();
      while (batch.size < BATCH) batch.add(rng.pick(ids));
      const calls = [...batch].map(async (id, n) => {
        const where = `operation ${done + n} on ${inspect(id)}`;
        const kind = rng.int(5);
        const d = data();
        const options = rng.chance(0.95)
          ? { expires: expiry(), address: address() }
          : randomValue(rng);
        const opts = (options ?? {}) as { expires?: unknown; address?: unknown };
        const optionsValid =
          options === undefined ||
          (typeof options === 'object' &&
            options !== null &&
            validExpires(opts.expires) &&
            validAddress(opts.address));
        let valid: boolean;
        let outcome: Outcome;
        let session: Session | null = null;
        if (kind === 0 || kind === 1) {
          if (kind === 1 && validId(id)) {
            const read = await settled(handler.read(id), where);
            expect(read, where).to.have.property('value');
            session = (read as { value: Session }).value;
          }
          valid = validId(id) && validData(d) && optionsValid;
          outcome = await settled(
            handler.write((session ?? id) as string, d as string, options as never),
            where,
          );
          if (valid && 'value' in outcome) {
            expect(outcome.value, where).to.equal(true);
            const live = liveness(opts.expires);
            model.set(
              id as string,
              live === 'unknown' ? 'unknown' : live ? { live, data: d as string } : { live },
            );
          }
        } else if (kind === 2) {
          valid = validId(id) && validAddress(opts.address);
          outcome = await settled(
            handler.read(id as string, { address: opts.address } as never),
            where,
          );
        } else if (kind === 3) {
          valid = validId(id) && validExpires(opts.expires);
          outcome = await settled(handler.touch(id as string, opts.expires as number), where);
          const before = validId(id) ? model.get(id) : undefined;
          if (valid && 'value' in outcome && before !== undefined && before !== 'unknown') {
            expect(
              outcome.value,
              `${where}: touch of a ${before.live ? 'live' : 'dead'} row`,
            ).to.equal(before.live);
            const live = liveness(opts.expires);
            if (before.live) {
              model.set(id as string, live === 'unknown' ? 'unknown' : live ? before : { live });
            }
          } else if (
            valid &&
            'value' in outcome &&
            before === undefined &&
            outcome.value === true
          ) {
            expect.fail(`${where}: touch found a row for an id never written`);
          }
        } else {
          valid = validId(id);
          outcome = await settled(handler.destroy(id as string), where);
          if (valid && 'value' in outcome) model.delete(id as string);
        }
        if ('error' in outcome) {
          expectOurError(outcome.error, [], where);
          if (valid) expect.fail(`${where}: a valid call was refused: ${String(outcome.error)}`);
          refused++;
        } else {
          if (!valid) {
            expect.fail(
              `${where}: an invalid call was accepted (kind ${kind}, data ${inspect(d)}, options ${inspect(options)})`,
            );
          }
          accepted++;
        }
      });
      await Promise.all(calls);
      done += batch.size;
      // Every id of the batch reads back as the model says: one row per id, data identical.
      for (const id of batch) {
        if (!validId(id)) continue;
        await expectStored(handler, id, model.get(id));
      }
    }
    for (const [id, expected] of model) await expectStored(handler, id, expected);
    // Both outcomes must be common for the run to prove anything.
    expect(accepted).to.be.above(OPERATIONS / 5);
    expect(refused).to.be.above(OPERATIONS / 5);
  });

  it('option sets with passwords in every form, on live handlers: no fragment shown, data identical', async function () {
    this.timeout(180_000);
    const rng = new Rng(SEED + 1);
    const base = servers()[0]!;
    let live = 0;
    for (let attempt = 0; attempt < 60 && live < 10; attempt++) {
      const secrets: string[] = [];
      const withPassword = (entry: string): string => {
        const p = randomPassword(rng);
        secrets.push(...p.secrets);
        return entryWithPassword(rng, entry, p.password);
      };
      const entries = [withPassword(base)];
      // Sometimes a server that refuses connections, whose failures land in status() and events.
      if (rng.chance(0.4)) entries.push(withPassword(base.replace(/port=\d+/, 'port=1')));
      const where = `option set ${attempt}`;
      const events: string[] = [];
      let handler: SessionPgsql;
      try {
        handler = handlers.make({
          db: rng.chance(0.5) ? entries : entries.join(';'),
          table: uniqueTable('fuzz'),
          idPattern: ID_PATTERN,
          connections: rng.pick([1, 2, 3]),
          maxBatch: rng.pick([1, 2, 64, 10000]),
          shortCircuit: rng.chance(0.5),
          keepExpired: rng.chance(0.5),
          failoverMode: rng.chance(0.3),
          placement: rng.pick(['rendezvous', 'php'] as const),
          synchronousCommit: rng.chance(0.5),
          statementTimeout: rng.pick([5, 60, 2147483.647]),
          connectTimeout: rng.pick([5, 2147483.647]),
          retryMinDelay: rng.pick([0.001, 0.1]),
          retryMaxDelay: rng.pick([0.1, 2147483.647]),
          gcInterval: rng.pick([0, 0.5, 2147483.647]),
          vacuumInterval: rng.pick([0, 2147483.647]),
          maxLifetime: rng.pick([1000, 2147483647]),
        });
      } catch (err) {
        expectOurError(err, secrets, where);
        expect((err as SessionPgsqlError).code, where).to.equal(ErrorCode.InvalidOption);
        continue;
      }
      live++;
      for (const name of ['up', 'down', 'warning']) {
        handler.on(name, (payload: unknown) => {
          events.push(`${name} ${inspect(payload, { depth: 6, showHidden: true })}`);
        });
      }
      const opened = await settled(handler.open(), `${where} open()`);
      if ('error' in opened) expectOurError(opened.error, secrets, `${where} open()`);
      for (let i = 0; i < 20; i++) {
        const id = `opt${attempt}_${i}_${randomText(rng, 4).replace(/[\0\uD800-\uDFFF]/g, '')}`;
        const d = JSON.stringify({ v: randomText(rng, 20) });
        const w = await settled(handler.write(id, d), `${where} write`);
        if ('error' in w) {
          expectOurError(w.error, secrets, `${where} write`);
          continue;
        }
        const r = await settled(handler.read(id), `${where} read`);
        if ('error' in r) {
          expectOurError(r.error, secrets, `${where} read`);
          continue;
        }
        expect((r.value as Session).data, `${where} ${id}`).to.equal(d);
      }
      expectNoSecret(JSON.stringify(handler.status()), secrets, `${where} status()`);
      await settled(handler.close(), `${where} close()`);
      expectNoSecret(events.join('\n'), secrets, `${where} events`);
    }
    expect(live).to.equal(10);
  });
});

/** Reads `id` and checks it against what the model expects. */
async function expectStored(
  handler: SessionPgsql,
  id: string,
  expected: Expected | undefined,
): Promise<void> {
  if (expected === 'unknown') return;
  const where = `read back ${inspect(id)}`;
  const outcome = await settled(handler.read(id), where);
  if ('error' in outcome) expect.fail(`${where}: ${String(outcome.error)}`);
  const s = outcome.value as Session;
  if (expected === undefined) {
    expect(s.isNew && !s.expired, `${where}: no row expected`).to.equal(true);
  } else if (expected.live) {
    expect(s.expired, `${where}: live`).to.equal(false);
    expect(s.data === expected.data, `${where}: data identical`).to.equal(true);
  } else {
    expect(s.expired, `${where}: expired`).to.equal(true);
  }
}
