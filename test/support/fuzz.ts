// A seeded pseudo-random source and the value generators of the API fuzz tests (04, 28): the
// same seed gives the same cases on every run, so a failure names a case that can be rerun.
import { expect } from 'chai';
import { SessionPgsqlError } from '../../lib';

/** mulberry32: a small 32-bit PRNG; `next()` is in [0, 1). */
export class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

/** Numbers at and around every bound the API has, and the ones JavaScript makes hard. */
export const EDGE_NUMBERS: readonly number[] = [
  0,
  -0,
  -1,
  1,
  0.5,
  1e-9,
  0.0009,
  0.001,
  1.5,
  64,
  10000,
  10001,
  2147483.647,
  2147483.648,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32,
  8.64e12,
  8.64e12 + 1,
  2 ** 53,
  2 ** 63,
  1e17,
  1e300,
  -1e19,
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
];

// Code units a string is built from: ASCII, the id alphabet, quotes and separators that matter
// to SQL and conninfo, NUL, lone and paired surrogates, other planes.
const UNITS: readonly string[] = [
  'a',
  'Z',
  '0',
  '_',
  '-',
  ',',
  ' ',
  ';',
  "'",
  '"',
  '\\',
  '=',
  '@',
  '/',
  '%',
  '\n',
  '\0',
  '\u0001',
  'é',
  '日',
  '\uFFFD',
  '\uFEFF',
  '\uD800',
  '\uDBFF',
  '\uDC00',
  '\uDFFF',
  '😀',
  '\uD83D\uDE00',
];

/** A string of up to `max` pieces drawn from UNITS (lone surrogates and NUL included). */
export function randomText(rng: Rng, max: number): string {
  let out = '';
  const n = rng.int(max + 1);
  for (let i = 0; i < n; i++) out += rng.pick(UNITS);
  return out;
}

/** A value of any type, odd ones included (no prototype, symbol, BigInt, function). */
export function randomValue(rng: Rng): unknown {
  switch (rng.int(12)) {
    case 0:
      return rng.pick(EDGE_NUMBERS);
    case 1:
      return randomText(rng, 12);
    case 2:
      return rng.chance(0.5);
    case 3:
      return null;
    case 4:
      return undefined;
    case 5:
      return Object.create(null);
    case 6:
      return rng.pick<unknown>([{}, [], [1, 'x'], { valueOf: () => 5 }, new Date(0)]);
    case 7:
      return Symbol('fuzz');
    case 8:
      return BigInt(rng.int(1000));
    case 9:
      return () => 1;
    case 10:
      return rng.pick([/x/, /x/g, /^[\s\S]{1,300}$/]);
    default:
      return rng.int(100);
  }
}

/** A secret no generated text contains by chance: 6 letters and a digit, mixed case. */
export function randomSecret(rng: Rng): string {
  const letters = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz';
  let out = '';
  for (let i = 0; i < 6; i++) out += rng.pick([...letters]);
  return `${out}${rng.int(10)}`;
}

/**
 * A password made of secrets joined by characters that conninfo strings and URIs treat
 * specially; every secret in it is a fragment that must never be shown.
 */
export function randomPassword(rng: Rng): { password: string; secrets: string[] } {
  const secrets = [randomSecret(rng)];
  let password = secrets[0]!;
  const joins = [';', ' ', "'", '\\', '@', '/', ':', '?', '#', '%', '=', '&', ',', '"', '%3B'];
  for (let i = rng.int(3); i > 0; i--) {
    const secret = randomSecret(rng);
    secrets.push(secret);
    password += rng.pick(joins) + secret;
  }
  return { password, secrets };
}

/** `value` in libpq's single quotes: `'` and `\` escaped with a backslash. */
export function quoted(value: string): string {
  return `'${value.replace(/[\\']/g, (c) => `\\${c}`)}'`;
}

/**
 * A `db` entry for the server `base` (key=value conninfo) that carries `password` in one of
 * the ways a user may write it: quoted, raw (possibly broken), in a URI (encoded or raw).
 */
export function entryWithPassword(rng: Rng, base: string, password: string): string {
  const kv = Object.fromEntries(base.split(/\s+/).map((p) => p.split('=') as [string, string]));
  switch (rng.int(5)) {
    case 0:
      return `${base} password=${quoted(password)}`;
    case 1:
      return `password = ${quoted(password)} ${base}`;
    case 2:
      return `${base} password=${password}`; // raw: may not parse, or may split at ";"
    case 3:
      return `postgresql://${kv.user}:${encodeURIComponent(password)}@${kv.host}:${kv.port}/${kv.dbname}`;
    default:
      return `postgresql://${kv.user}:${password}@${kv.host}:${kv.port}/${kv.dbname}`; // raw
  }
}

/** Fails the test when any secret occurs in `text`. */
export function expectNoSecret(text: string, secrets: readonly string[], where: string): void {
  for (const secret of secrets) {
    if (text.includes(secret)) expect.fail(`${where} shows the secret ${secret}: ${text}`);
  }
}

/** Checks a failure: our error, with a code, and no secret in its message or stack. */
export function expectOurError(err: unknown, secrets: readonly string[], where: string): void {
  if (!(err instanceof SessionPgsqlError)) {
    expect.fail(`${where}: expected a SessionPgsqlError but got ${String(err)}`);
  }
  expect(err.code, where).to.be.a('string').and.not.equal('');
  expectNoSecret(`${err.message}\n${err.stack}\n${JSON.stringify(err)}`, secrets, where);
}
