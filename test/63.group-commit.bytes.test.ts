// Group commit bounded by bytes as well as by count (issue 13 §6): a batch of writes stops at
// 32 MiB of values (counted as the elements of a merged write's arrays, where each quote and
// backslash is escaped, doubling a value made of them), far below the 1 GB PostgreSQL takes in
// one message, so large writes issued together are split into several batches instead of one
// message the server rejects by dropping the connection. A single write over what one message
// can carry is rejected alone, before anything is sent.
//
// Evidence of batching: rows written by one batch share one transaction, hence one `xmin`.
import { constants } from 'node:buffer';
import { expect } from 'chai';
import { SessionPgsql, SessionPgsqlError } from '../lib';
import { db, newId, query, uniqueTable } from './support/db';
import { closedAfterEach } from './support/handlers';

const MiB = 1 << 20;
/** The bound of a batch, in bytes of escaped values. */
const BATCH_BYTES = 32 * MiB;
/** Writes issued together, and the data of each: 2 MiB of quotes and backslashes (4 MiB escaped). */
const WRITES = 24;
const UNIT = '"\\';

/** Data for write `i` of `id`: mostly characters that array escaping doubles, unique per id. */
function bulky(id: string, i: number): string {
  return `${id} #${i} ${UNIT.repeat(MiB)}`;
}

describe('63 group commit: batches bounded by bytes', function () {
  this.timeout(120_000);

  const handlers = closedAfterEach<SessionPgsql>();
  let table: string;

  beforeEach(() => {
    table = uniqueTable('t63');
  });

  /** Rows written per transaction (xmin) among the rows of `ids` on test server 0. */
  async function transactionSizes(ids: string[]): Promise<number[]> {
    const found = await query<{ n: string }>(
      0,
      `SELECT count(*) AS n FROM ${table} WHERE sess_id = ANY($1) GROUP BY xmin::text`,
      [ids],
    );
    return found.map((r) => Number(r.n)).sort((a, b) => a - b);
  }

  /** Reads every id back and compares its data, without printing megabytes on a mismatch. */
  async function expectReadBack(h: SessionPgsql, ids: string[], data: string[]): Promise<void> {
    const sessions = await Promise.all(ids.map((id) => h.read(id)));
    const wrong = sessions
      .map((s, i) => (s.data === data[i] ? null : `${ids[i]}: ${s.data.length} characters`))
      .filter((w) => w !== null);
    expect(wrong, 'writes that did not read back byte-identical').to.deep.equal([]);
  }

  async function open(servers: number, failoverMode = false): Promise<SessionPgsql> {
    const h = handlers.keep(
      new SessionPgsql({
        db: db(servers),
        table,
        failoverMode,
        maxBatch: 1000,
        maxDataSize: 4 * MiB,
        gcInterval: 0,
        vacuumInterval: 0,
      }),
    );
    await h.open();
    return h;
  }

  /** Every server of `h` up and never failed. */
  function expectAllUp(h: SessionPgsql): void {
    for (const [i, server] of h.status().servers.entries()) {
      expect(server.state, `server ${i}`).to.equal('up');
      expect(server.failures, `failures of server ${i}`).to.equal(0);
    }
  }

  it(`merged writes of ${WRITES} × 4 MiB escaped, issued together, go out in batches of at most 32 MiB; the servers stay up`, async () => {
    // failoverMode: every write goes to server 0; before the bound, a batch over 1 GB there
    // was resent to server 1 and took it down too.
    const h = await open(2, true);
    const ids = Array.from({ length: WRITES }, () => newId());
    const data = ids.map((id, i) => bulky(id, i));
    const stored = await Promise.all(ids.map((id, i) => h.write(id, data[i]!)));
    expect(stored).to.deep.equal(ids.map(() => true));

    const perRow = 2 * (UNIT.length * MiB) + 64;
    const sizes = await transactionSizes(ids);
    expect(
      sizes.reduce((a, b) => a + b, 0),
      'rows written',
    ).to.equal(WRITES);
    expect(sizes.length, `transactions (rows in each: ${sizes})`).to.be.at.least(
      Math.ceil((WRITES * perRow) / BATCH_BYTES),
    );
    expect(Math.max(...sizes), `rows in the largest batch (${sizes})`).to.be.at.most(
      Math.floor(BATCH_BYTES / perRow),
    );
    expect(Math.max(...sizes), `still batched (${sizes})`).to.be.greaterThan(1);
    expectAllUp(h);
    await expectReadBack(h, ids, data);
  });

  it('unmerged writes (a custom field each) are bounded the same way', async () => {
    const h = await open(1);
    const ids = Array.from({ length: WRITES }, () => newId());
    const data = ids.map((id, i) => bulky(id, i));
    const sessions = await Promise.all(ids.map((id) => h.read(id)));
    const stored = await Promise.all(
      sessions.map((s, i) => {
        s.setField(`user ${i}`);
        return h.write(s, data[i]!);
      }),
    );
    expect(stored).to.deep.equal(ids.map(() => true));
    const sizes = await transactionSizes(ids);
    expect(
      sizes.reduce((a, b) => a + b, 0),
      'rows written',
    ).to.equal(WRITES);
    expect(Math.max(...sizes), `rows in the largest batch (${sizes})`).to.be.at.most(
      Math.floor(BATCH_BYTES / (2 * UNIT.length * MiB)),
    );
    expectAllUp(h);
    await expectReadBack(h, ids, data);
  });

  it('a single write over what one PostgreSQL message takes fails alone with SPG_DATA_TOO_LARGE; its neighbours are stored', async () => {
    const h = handlers.keep(
      new SessionPgsql({
        db: db(2),
        table,
        failoverMode: true,
        maxDataSize: 2 ** 31,
        gcInterval: 0,
        vacuumInterval: 0,
      }),
    );
    await h.open();
    // The longest string V8 makes, of a character that takes two bytes in UTF-8: just over 1 GB.
    let huge: string | null = 'é'.repeat(constants.MAX_STRING_LENGTH);
    const ids = Array.from({ length: 3 }, () => newId());
    const outcomes = await Promise.allSettled([
      h.write(ids[0]!, 'before'),
      h.write(ids[1]!, huge),
      h.write(ids[2]!, 'after'),
    ]);
    huge = null;
    expect(outcomes[0]).to.deep.equal({ status: 'fulfilled', value: true });
    expect(outcomes[2]).to.deep.equal({ status: 'fulfilled', value: true });
    expect(outcomes[1]!.status).to.equal('rejected');
    const error = (outcomes[1] as PromiseRejectedResult).reason as SessionPgsqlError;
    expect(error).to.be.instanceOf(SessionPgsqlError);
    expect(error.code, error.message).to.equal('SPG_DATA_TOO_LARGE');
    expect(error.message).to.match(/1 GB/);
    expect((await h.read(ids[1]!)).isNew, 'nothing stored for the rejected write').to.equal(true);
    expect((await h.read(ids[0]!)).data).to.equal('before');
    expect((await h.read(ids[2]!)).data).to.equal('after');
    expectAllUp(h);
  });
});
