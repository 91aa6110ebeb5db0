// The suite's hashed-ids mode (`npm run test:hashed`, SPG_TEST_HASH_IDS=1): every handler the
// tests create defaults to `hashIds: true`, through the library's test-only hook; the library
// itself never reads this variable. Tests look at rows with SQL by the ids they gave handlers:
// in this mode db.ts's query() and client() translate, both ways, the ids this module knows
// (every newId(), those given to knownId(), and every id a default handler of this process
// hashed, e.g. an id a framework generated) to their stored keys.
import { __setHashIdsDefaultForTest, idHashing } from '../../lib/options';

/** True when the suite runs with hashed ids. */
export const hashedMode = process.env.SPG_TEST_HASH_IDS === '1';

const plain = idHashing(true);
// stored key -> id, for every id the tests made or named, and every id a default handler hashed.
const ids = new Map<string, string>();

if (hashedMode) __setHashIdsDefaultForTest(true, (id, stored) => ids.set(stored, id));

/**
 * The `sess_id` a default handler of this run stores for the (handler-side) id `id`: the id
 * itself, or its SHA-256 key in hashed mode.
 */
export function storedKey(id: string): string {
  return hashedMode ? plain.stored(id) : id;
}

/** Makes `id` one that query() translates in hashed mode; returns it. */
export function knownId(id: string): string {
  if (hashedMode) ids.set(plain.stored(id), id);
  return id;
}

/** A query parameter with each known id (also inside an array) replaced by its stored key. */
export function toStored(value: unknown): unknown {
  if (!hashedMode) return value;
  if (Array.isArray(value)) return value.map(toStored);
  if (typeof value === 'string' && ids.has(plain.stored(value))) return plain.stored(value);
  return value;
}

/** A result row with each stored key of a known id replaced by the id. */
export function fromStored<T>(row: T): T {
  if (!hashedMode || typeof row !== 'object' || row === null) return row;
  const out = { ...row } as Record<string, unknown>;
  for (const [column, value] of Object.entries(out)) {
    if (typeof value === 'string' && ids.has(value)) out[column] = ids.get(value);
  }
  return out as T;
}

/**
 * The id of a reference the handler handed out (sessionsOf, list): under hashed mode its stored
 * key, mapped back to the id this module knows; else the id itself.
 */
export function idOfRef(ref: string): string {
  return hashedMode ? (ids.get(ref) ?? ref) : ref;
}
