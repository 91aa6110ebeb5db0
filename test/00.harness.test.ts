// The test harness itself: scripts/run-tests.js must hand every test three live, distinct
// PostgreSQL servers, and tests must be able to crash and restart them.
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { controlFromEnv, type Cluster } from '../scripts/pg-cluster.js';

function pgIsReady(cluster: Cluster): Promise<number> {
  return new Promise((resolve) => {
    execFile(
      path.join(cluster.bindir, 'pg_isready'),
      ['-q', '-h', cluster.host, '-p', String(cluster.port), '-t', '5'],
      (err) => resolve(err ? (typeof err.code === 'number' ? err.code : -1) : 0),
    );
  });
}

describe('test harness', () => {
  it('exports three distinct servers in SESSION_PGSQL_TEST_DB', () => {
    const db = process.env.SESSION_PGSQL_TEST_DB;
    expect(db, 'SESSION_PGSQL_TEST_DB is unset: run the tests with `npm test`').to.be.a('string');
    const entries = (db ?? '').split(';');
    expect(entries).to.have.length(3);
    const ports = entries.map((entry) => {
      const match = /^host=127\.0\.0\.1 port=(\d+) dbname=postgres user=postgres\b/.exec(entry);
      expect(match, entry).to.not.equal(null);
      return Number(match?.[1]);
    });
    expect(new Set(ports).size).to.equal(3);
    expect(ports).to.not.include(5432);
  });

  it('describes the same servers in SESSION_PGSQL_TEST_CLUSTERS', () => {
    const clusters = controlFromEnv();
    expect(clusters.map((c) => c.conninfo).join(';')).to.equal(process.env.SESSION_PGSQL_TEST_DB);
  });

  it('every server answers pg_isready', async () => {
    const codes = await Promise.all(controlFromEnv().map(pgIsReady));
    expect(codes).to.deep.equal([0, 0, 0]);
  });

  it('a test can crash a server and start it again', async function () {
    this.timeout(90_000);
    const cluster = controlFromEnv()[2]!;
    await cluster.stop({ mode: 'immediate' });
    expect(cluster.isRunning()).to.equal(false);
    expect(await pgIsReady(cluster)).to.not.equal(0);
    await cluster.start();
    expect(cluster.isRunning()).to.equal(true);
    expect(await pgIsReady(cluster)).to.equal(0);
  });
});
