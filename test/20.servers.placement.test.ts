// Placement: which server a session id belongs to (docs/api.md Options `placement`; docs/behaviour.md, Several servers).
// `serversFor(id)` is pure, so these tests use made-up conninfos: nothing ever connects.
import { expect } from 'chai';
import { SessionPgsql } from '../lib';
import { newId } from './support/db';

const A = 'host=10.0.0.1 port=5432 dbname=a';
const B = 'host=10.0.0.2 port=5432 dbname=a';
const C = 'host=10.0.0.3 port=5432 dbname=a';
const D = 'host=10.0.0.4 port=5432 dbname=a';

const open: SessionPgsql[] = [];

/** A handler over `entries` (never connected); closed after each test. */
function handler(
  entries: string[],
  options: { placement?: 'rendezvous' | 'php'; failoverMode?: boolean } = {},
) {
  // PHP's placement is for tables PHP shares, which keep raw ids: pinned so, also in the suite's
  // hashed mode, since these tests compute where a raw id goes.
  const h = new SessionPgsql({
    db: entries.join(';'),
    ...(options.placement === 'php' ? { hashIds: false } : {}),
    ...options,
  });
  open.push(h);
  return h;
}

/** The conninfo of the id's home server (its first choice), by identity rather than index. */
function home(h: SessionPgsql, entries: string[], id: string): string {
  return entries[h.serversFor(id)[0]!]!;
}

function ids(n: number): string[] {
  return Array.from({ length: n }, () => newId());
}

/** Σ bytes(id): the original extension's hash. */
function byteSum(id: string): number {
  return [...Buffer.from(id, 'latin1')].reduce((sum, b) => sum + b, 0);
}

describe('servers: placement', () => {
  afterEach(async () => {
    await Promise.all(open.splice(0).map((h) => h.close()));
  });

  describe('rendezvous (default)', () => {
    it('serversFor(id) ranks every server exactly once', () => {
      const h = handler([A, B, C]);
      for (const id of ids(200)) {
        expect([...h.serversFor(id)].sort()).to.deep.equal([0, 1, 2]);
      }
    });

    it('spreads 10 000 random ids evenly: each of 3 servers is home to 33 % ± 3 %', () => {
      const h = handler([A, B, C]);
      const counts = [0, 0, 0];
      const all = ids(10_000);
      for (const id of all) counts[h.serversFor(id)[0]!]! += 1;
      for (const count of counts) {
        const share = (100 * count) / all.length;
        expect(share, `shares ${counts.map((c) => c / 100).join(' / ')} %`).to.be.within(
          100 / 3 - 3,
          100 / 3 + 3,
        );
      }
    });

    it('spreads the first fallback evenly too (a dead server’s load is shared)', () => {
      const h = handler([A, B, C]);
      // For the ids homed on server 0, the next server is 1 or 2 about half the time each.
      const next = [0, 0, 0];
      let homed = 0;
      for (const id of ids(9_000)) {
        const order = h.serversFor(id);
        if (order[0] !== 0) continue;
        homed += 1;
        next[order[1]!]! += 1;
      }
      expect(next[0]).to.equal(0);
      expect(next[1]! / homed).to.be.within(0.4, 0.6);
      expect(next[2]! / homed).to.be.within(0.4, 0.6);
    });

    it('is deterministic: two handlers over the same list agree on every id', () => {
      const h1 = handler([A, B, C]);
      const h2 = handler([A, B, C]);
      for (const id of ids(1_000)) expect(h2.serversFor(id)).to.deep.equal(h1.serversFor(id));
    });

    it('adding a 4th server moves at most 30 % of ids, all of them to the new server', () => {
      const before = [A, B, C];
      const after = [A, B, C, D];
      const h3 = handler(before);
      const h4 = handler(after);
      const all = ids(10_000);
      let moved = 0;
      for (const id of all) {
        const was = home(h3, before, id);
        const now = home(h4, after, id);
        if (was === now) continue;
        moved += 1;
        expect(now, `id ${id} moved from ${was} to another old server`).to.equal(D);
      }
      expect(moved / all.length).to.be.at.most(0.3);
      // and the new server takes its fair share (~1/4), not almost nothing
      expect(moved / all.length).to.be.at.least(0.2);
    });

    it('adding a 5th server to four moves about a fifth of the ids and no others', () => {
      const E = 'host=10.0.0.5 port=5432 dbname=a';
      const before = [A, B, C, D];
      const after = [A, B, C, D, E];
      const h4 = handler(before);
      const h5 = handler(after);
      const all = ids(10_000);
      let moved = 0;
      for (const id of all) {
        const now = home(h5, after, id);
        if (home(h4, before, id) === now) continue;
        moved += 1;
        expect(now).to.equal(E);
      }
      expect(moved / all.length).to.be.within(0.17, 0.23);
    });

    it('removing a server moves only the ids that lived on it', () => {
      const before = [A, B, C];
      const after = [A, C]; // B removed; C shifts from index 2 to index 1
      const h3 = handler(before);
      const h2 = handler(after);
      let orphans = 0;
      for (const id of ids(10_000)) {
        const was = home(h3, before, id);
        const now = home(h2, after, id);
        if (was === B) {
          orphans += 1;
          expect([A, C]).to.include(now);
        } else {
          expect(now, `id ${id} lived on ${was}`).to.equal(was);
        }
      }
      expect(orphans).to.be.greaterThan(0);
    });

    it('removing a server makes each remaining id fall back exactly as before', () => {
      // The new order of an id is its old order with the removed server left out.
      const before = [A, B, C, D];
      const after = [A, C, D];
      const h4 = handler(before);
      const h3 = handler(after);
      for (const id of ids(2_000)) {
        const old = h4
          .serversFor(id)
          .map((i) => before[i]!)
          .filter((s) => s !== B);
        expect(h3.serversFor(id).map((i) => after[i]!)).to.deep.equal(old);
      }
    });

    it('reordering the list changes no id’s home server', () => {
      const lists = [
        [A, B, C],
        [A, C, B],
        [B, A, C],
        [B, C, A],
        [C, A, B],
        [C, B, A],
      ];
      const handlers = lists.map((l) => handler(l));
      for (const id of ids(2_000)) {
        const homes = handlers.map((h, i) => home(h, lists[i]!, id));
        expect(new Set(homes).size, `homes of ${id}: ${homes.join(' | ')}`).to.equal(1);
        // the whole fallback order follows the servers, not their positions
        const orders = handlers.map((h, i) =>
          h
            .serversFor(id)
            .map((k) => lists[i]![k]!)
            .join('|'),
        );
        expect(new Set(orders).size).to.equal(1);
      }
    });

    it('reordering changes nothing either when one database name is a prefix of another', () => {
      // Same host and port, databases "app" and "app2": distinct servers with distinct
      // identities, whatever their order in the list.
      const app = 'host=10.0.0.1 port=5432 dbname=app';
      const app2 = 'host=10.0.0.1 port=5432 dbname=app2';
      const other = 'host=10.0.0.3 port=5432 dbname=app';
      const l1 = [app, app2, other];
      const l2 = [app2, app, other];
      const h1 = handler(l1);
      const h2 = handler(l2);
      let moved = 0;
      const all = ids(2_000);
      for (const id of all) if (home(h1, l1, id) !== home(h2, l2, id)) moved += 1;
      expect(
        moved,
        `${moved} of ${all.length} ids changed home when the list was reordered`,
      ).to.equal(0);
    });

    it('ignores spacing and key order in an entry (the identity is host, port, database)', () => {
      const l1 = [A, B, C];
      const l2 = [
        'dbname=a  port=5432 host=10.0.0.1',
        `  ${B}  `,
        'port=5432 host=10.0.0.3 dbname=a',
      ];
      const h1 = handler(l1);
      const h2 = handler(l2);
      for (const id of ids(1_000)) expect(h2.serversFor(id)).to.deep.equal(h1.serversFor(id));
    });

    it('a server listed twice is still two servers', () => {
      const list = [A, A, B];
      const h = handler(list);
      const counts = [0, 0, 0];
      for (const id of ids(6_000)) {
        const order = h.serversFor(id);
        expect([...order].sort()).to.deep.equal([0, 1, 2]);
        counts[order[0]!]! += 1;
      }
      expect(h.status().numberOfServers).to.equal(3);
      for (const count of counts) expect(count / 6_000).to.be.within(0.28, 0.39);
    });

    it('a single server is every id’s only choice', () => {
      const h = handler([A]);
      for (const id of ids(50)) expect(h.serversFor(id)).to.deep.equal([0]);
    });
  });

  describe("placement 'php'", () => {
    it('puts ids where the original Σbytes(id) mod N did (computed by hand)', () => {
      // Σ bytes by hand:  'a'×16 = 97·16 = 1552    'b'×16 = 98·16 = 1568   'c'×16 = 99·16 = 1584
      //                   'A'×32 = 65·32 = 2080    '0'×16 = 48·16 = 768
      //                   'abcdefghijklmnop' = 97+…+112 = 1672   'Z'×20 = 90·20 = 1800
      //                   '-'×16 = 45·16 = 720     '_'×17 = 95·17 = 1615
      const cases: Array<[string, number, number, number]> = [
        // id, home with N=3, N=4, N=5
        ['a'.repeat(16), 1552 % 3, 1552 % 4, 1552 % 5], // 1, 0, 2
        ['b'.repeat(16), 1568 % 3, 1568 % 4, 1568 % 5], // 2, 0, 3
        ['c'.repeat(16), 1584 % 3, 1584 % 4, 1584 % 5], // 0, 0, 4
        ['A'.repeat(32), 2080 % 3, 2080 % 4, 2080 % 5], // 1, 0, 0
        ['0'.repeat(16), 768 % 3, 768 % 4, 768 % 5], // 0, 0, 3
        ['abcdefghijklmnop', 1672 % 3, 1672 % 4, 1672 % 5], // 1, 0, 2
        ['Z'.repeat(20), 1800 % 3, 1800 % 4, 1800 % 5], // 0, 0, 0
        ['-'.repeat(16), 720 % 3, 720 % 4, 720 % 5], // 0, 0, 0
        ['_'.repeat(17), 1615 % 3, 1615 % 4, 1615 % 5], // 1, 3, 0
      ];
      // the literal values, so a wrong modulus in this table cannot hide a wrong product
      expect(cases.map((c) => c.slice(1))).to.deep.equal([
        [1, 0, 2],
        [2, 0, 3],
        [0, 0, 4],
        [1, 0, 0],
        [0, 0, 3],
        [1, 0, 2],
        [0, 0, 0],
        [0, 0, 0],
        [1, 3, 0],
      ]);
      const E = 'host=10.0.0.5 port=5432 dbname=a';
      const h3 = handler([A, B, C], { placement: 'php' });
      const h4 = handler([A, B, C, D], { placement: 'php' });
      const h5 = handler([A, B, C, D, E], { placement: 'php' });
      for (const [id, n3, n4, n5] of cases) {
        expect(h3.serversFor(id)[0], `${id} over 3`).to.equal(n3);
        expect(h4.serversFor(id)[0], `${id} over 4`).to.equal(n4);
        expect(h5.serversFor(id)[0], `${id} over 5`).to.equal(n5);
      }
    });

    it('anagrams share a server, as in the original', () => {
      const h = handler([A, B, C, D], { placement: 'php' });
      expect(h.serversFor('abcdefghijklmnop')[0]).to.equal(h.serversFor('ponmlkjihgfedcba')[0]);
    });

    it('agrees with Σbytes(id) mod N for random ids, and ranks every server once', () => {
      const list = [A, B, C];
      const h = handler(list, { placement: 'php' });
      for (const id of ids(2_000)) {
        const order = h.serversFor(id);
        expect(order[0]).to.equal(byteSum(id) % list.length);
        expect([...order].sort()).to.deep.equal([0, 1, 2]);
      }
    });

    it('goes by list position: reordering the list moves sessions (as PHP does)', () => {
      const h1 = handler([A, B, C], { placement: 'php' });
      const h2 = handler([C, B, A], { placement: 'php' });
      const id = 'a'.repeat(16); // 1552 mod 3 = 1
      expect(h1.serversFor(id)[0]).to.equal(1);
      expect(h2.serversFor(id)[0]).to.equal(1);
      const id0 = 'c'.repeat(16); // 1584 mod 3 = 0: A in one list, C in the other
      expect(h1.serversFor(id0)[0]).to.equal(0);
      expect(h2.serversFor(id0)[0]).to.equal(0);
    });
  });

  describe('failoverMode', () => {
    it('gives every id the list order [0, 1, 2]', () => {
      const h = handler([A, B, C], { failoverMode: true });
      for (const id of [...ids(1_000), 'a'.repeat(16), 'b'.repeat(16), 'c'.repeat(16)]) {
        expect(h.serversFor(id)).to.deep.equal([0, 1, 2]);
      }
      expect(h.status().failoverMode).to.equal(true);
    });

    it("overrides placement 'php' too", () => {
      const h = handler([A, B, C], { failoverMode: true, placement: 'php' });
      for (const id of ['a'.repeat(16), 'b'.repeat(16), ...ids(200)]) {
        expect(h.serversFor(id)).to.deep.equal([0, 1, 2]);
      }
    });

    it('keeps the list order with a server listed twice', () => {
      const h = handler([A, A, B, C], { failoverMode: true });
      for (const id of ids(100)) expect(h.serversFor(id)).to.deep.equal([0, 1, 2, 3]);
    });
  });
});
