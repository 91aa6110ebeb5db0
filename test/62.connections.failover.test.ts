// Failover with several connections per server (issue 13 §3; README: an operation in flight on a
// server that fails is resent to the next server that is up). A server is killed (pg_ctl stop -m
// immediate) while hundreds of operations are in flight on each of its connections: the server is
// marked down once, for all its connections, before any of their operations is resent, so none
// of them goes back to the dead server and fails SPG_NO_SERVER while two servers are up.
// Every test leaves all servers running.
import { expect } from 'chai';
import { SessionPgsql, SessionPgsqlError } from '../lib';
import { clusters, newId, restartAll, uniqueTable } from './support/db';
import { fastRecovery } from './support/handlers';
import { waitUntil } from './support/wait';
import { idHomedOn } from './support/users';

/** Writers issuing operations back to back: hundreds in flight at any time. */
const WORKERS = 300;

async function waitUp(h: SessionPgsql, index: number): Promise<void> {
  await waitUntil(
    `server ${index} to be up`,
    10_000,
    () => h.status().servers[index]!.state === 'up',
  );
}

describe('62 connections per server: failover', function () {
  this.timeout(180_000);
  let handler: SessionPgsql | null = null;

  afterEach(async () => {
    await handler?.close();
    handler = null;
    await restartAll();
  });

  after(restartAll);

  /**
   * One crash of server `killed` under load: every worker writes fresh sessions (most homed on
   * the killed server) and reads each back, until well after the kill. Returns what was
   * acknowledged and what failed.
   */
  async function crashUnderLoad(
    h: SessionPgsql,
    killed: number,
  ): Promise<{ acked: Map<string, string>; failures: string[]; inFlightAtKill: number }> {
    const acked = new Map<string, string>();
    const failures: string[] = [];
    let done = 0;
    let running = true;
    const worker = async (w: number): Promise<void> => {
      for (let n = 0; running && n < 10_000; n++) {
        // Three in four sessions live on the server that is killed; the rest anywhere.
        const id = w % 4 === 3 ? newId() : idHomedOn(h, killed);
        const data = `worker ${w} write ${n} of ${id}`;
        let op = 'write';
        try {
          expect(await h.write(id, data)).to.equal(true);
          acked.set(id, data);
          op = 'read';
          await h.read(id);
          done += 2;
        } catch (err) {
          const e = err as SessionPgsqlError;
          failures.push(`${op} by worker ${w}: ${e.code}: ${e.message}`);
        }
      }
    };
    const load = Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
    try {
      await waitUntil('the load to run', 30_000, () => done >= 2 * WORKERS);
      const inFlightAtKill = h.status().inFlight;
      const failuresBefore = h.status().servers[killed]!.failures;
      await clusters()[killed]!.stop({ mode: 'immediate' });
      await waitUntil(
        `server ${killed} to be seen down`,
        10_000,
        () => h.status().servers[killed]!.failures > failuresBefore,
      );
      // The load runs on until every worker has gone round a few more times on the servers
      // still up.
      const after = done;
      await waitUntil(
        'the load to run on after the kill',
        30_000,
        () => done >= after + 6 * WORKERS,
      );
      return { acked, failures, inFlightAtKill };
    } finally {
      running = false;
      await load;
    }
  }

  for (const [connections, crashes] of [
    [1, 1],
    [2, 3],
    [4, 2],
  ] as const) {
    it(`with connections: ${connections}, a server killed under load (${crashes} in turn): every operation succeeds and every write reads back`, async () => {
      const table = uniqueTable('t62');
      const h = (handler = new SessionPgsql({
        ...fastRecovery(table),
        connections,
        // why: a loaded machine must not turn a slow answer from a live server into a failure.
        statementTimeout: 10,
      }));
      await h.open();
      for (let crash = 0; crash < crashes; crash++) {
        const killed = crash % 3;
        for (const i of [0, 1, 2]) await waitUp(h, i);
        const { acked, failures, inFlightAtKill } = await crashUnderLoad(h, killed);
        expect(inFlightAtKill, 'operations in flight when the kill began').to.be.at.least(
          WORKERS / 2,
        );
        expect(failures, `failed operations, server ${killed} killed`).to.deep.equal([]);
        for (const i of [0, 1, 2]) {
          if (i !== killed) expect(h.status().servers[i]!.state, `server ${i}`).to.equal('up');
        }

        // Written before the crash on the killed server, or resent to the next one: every
        // acknowledged write reads back once the killed server is up again.
        await clusters()[killed]!.start();
        await waitUp(h, killed);
        const ids = [...acked.keys()];
        const wrong: string[] = [];
        for (let at = 0; at < ids.length; at += 200) {
          const chunk = ids.slice(at, at + 200);
          const sessions = await Promise.all(chunk.map((id) => h.read(id)));
          sessions.forEach((s, i) => {
            const id = chunk[i]!;
            if (s.data !== acked.get(id)) wrong.push(`${id}: ${JSON.stringify(s.data)}`);
          });
        }
        expect(ids.length, 'acknowledged writes').to.be.greaterThan(WORKERS * 2);
        expect(wrong, `writes that did not read back, server ${killed} killed`).to.deep.equal([]);
      }
    });
  }
});
