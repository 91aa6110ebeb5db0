// The suite's hashed-ids mode (`npm run test:hashed`, SPG_TEST_HASH_IDS=1): every handler the
// tests create defaults to `hashIds: true`, through the library's test-only hook; the library
// itself never reads this variable. Imported by the support modules that server tests use.
import { __setHashIdsDefaultForTest, idHashing } from '../../lib/options';

/** True when the suite runs with hashed ids. */
export const hashedMode = process.env.SPG_TEST_HASH_IDS === '1';

if (hashedMode) __setHashIdsDefaultForTest(true);

const plain = idHashing(true);

/**
 * The `sess_id` a default handler of this run stores for the (handler-side) id `id`: the id
 * itself, or its SHA-256 key in hashed mode.
 */
export function storedKey(id: string): string {
  return hashedMode ? plain.stored(id) : id;
}

/**
 * Skips the calling test (or suite, from a `before`) in hashed mode; `why` says why it is about
 * raw ids by nature.
 */
export function skipWhenHashed(context: Mocha.Context, why: string): void {
  if (hashedMode) {
    context.test!.title += ` (skipped with hashed ids: ${why})`;
    context.skip();
  }
}
