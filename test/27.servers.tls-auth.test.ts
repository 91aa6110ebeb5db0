// What users connect with (docs/operations.md, Deployment): TLS at sslmode require, verify-ca and
// verify-full, scram-sha-256 and md5 passwords, a password file, a Unix socket. One test
// server gets a throwaway self-signed certificate and two password roles for this file;
// after() turns TLS off again and drops the roles.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { SessionPgsql } from '../lib';
import { clusters, newId, query, servers, uniqueTable } from './support/db';
import { rejection } from './support/errors';

const SERVER = 2;
const SCRAM = { role: 'spg_scram_user', password: 'scram: a secret of the test' };
const MD5 = { role: 'spg_md5_user', password: 'md5: a secret of the test' };

/** A field of a password file: ':' and '\\' are escaped with '\\'. */
function pgpassField(value: string): string {
  return value.replace(/[:\\]/g, (c) => `\\${c}`);
}

/** A throwaway self-signed certificate: `<base>.key` and `<base>.crt`, valid for a day. */
function selfSigned(base: string, cn: string, extra: string[] = []): void {
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      `/CN=${cn}`,
      ...extra,
    ].concat(['-keyout', `${base}.key`, '-out', `${base}.crt`]),
    { stdio: 'ignore' },
  );
}

describe('servers: TLS, passwords, password file, Unix socket', function () {
  this.timeout(60_000);
  const table = uniqueTable('tls');
  let dir: string;
  let port: string;
  let hbaBefore: string;
  let hbaPath: string | undefined;

  /** One write and one read through a handler on `db`; closes it. */
  async function roundTrip(db: string): Promise<void> {
    const h = new SessionPgsql({ db, table, gcInterval: 0, vacuumInterval: 0 });
    try {
      const id = newId();
      await h.write(id, 'over this connection');
      expect((await h.read(id)).data).to.equal('over this connection');
    } finally {
      await h.close();
    }
  }

  before(async function () {
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
    } catch {
      console.log('    openssl is not installed (Debian: apt-get install openssl): skipped');
      this.skip();
    }
    const cluster = clusters()[SERVER]!;
    port = /port=(\d+)/.exec(servers()[SERVER]!)![1]!;
    dir = mkdtempSync(path.join(tmpdir(), 'spg-tls-'));
    // A self-signed certificate for 127.0.0.1, its own CA for verify-ca and verify-full.
    selfSigned(path.join(cluster.dataDir, 'spg_test'), '127.0.0.1', [
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ]);
    const owner = statSync(cluster.dataDir);
    for (const f of ['spg_test.key', 'spg_test.crt']) {
      chownSync(path.join(cluster.dataDir, f), owner.uid, owner.gid);
      chmodSync(path.join(cluster.dataDir, f), 0o600);
    }
    execFileSync('cp', [path.join(cluster.dataDir, 'spg_test.crt'), path.join(dir, 'root.crt')]);
    hbaPath = path.join(cluster.dataDir, 'pg_hba.conf');
    hbaBefore = execFileSync('cat', [hbaPath], { encoding: 'utf8' });
    writeFileSync(
      hbaPath,
      `host all ${SCRAM.role} 127.0.0.1/32 scram-sha-256\n` +
        `host all ${MD5.role} 127.0.0.1/32 md5\n` +
        hbaBefore,
    );
    for (const sql of [
      `DROP ROLE IF EXISTS ${SCRAM.role}`,
      `DROP ROLE IF EXISTS ${MD5.role}`,
      `SET password_encryption = 'scram-sha-256'; CREATE ROLE ${SCRAM.role} LOGIN PASSWORD '${SCRAM.password}'`,
      `SET password_encryption = 'md5'; CREATE ROLE ${MD5.role} LOGIN PASSWORD '${MD5.password}'`,
      `GRANT CREATE ON SCHEMA public TO ${SCRAM.role}, ${MD5.role}`,
      `ALTER SYSTEM SET ssl_cert_file = 'spg_test.crt'`,
      `ALTER SYSTEM SET ssl_key_file = 'spg_test.key'`,
      `ALTER SYSTEM SET ssl = on`,
      'SELECT pg_reload_conf()',
    ]) {
      await query(SERVER, sql);
    }
    // The table belongs to the first role; the other may use it.
    await roundTrip(
      `host=127.0.0.1 port=${port} dbname=postgres user=${SCRAM.role} password='${SCRAM.password}'`,
    );
    await query(SERVER, `GRANT ALL ON "${table}" TO ${MD5.role}`);
  });

  after(async () => {
    if (hbaPath === undefined) return; // skipped before anything changed
    writeFileSync(hbaPath, hbaBefore);
    for (const sql of [
      'ALTER SYSTEM RESET ssl',
      'ALTER SYSTEM RESET ssl_cert_file',
      'ALTER SYSTEM RESET ssl_key_file',
      'SELECT pg_reload_conf()',
      `DROP TABLE IF EXISTS "${table}"`,
      `DROP OWNED BY ${SCRAM.role}, ${MD5.role}`,
      `DROP ROLE IF EXISTS ${SCRAM.role}`,
      `DROP ROLE IF EXISTS ${MD5.role}`,
    ]) {
      await query(SERVER, sql).catch(() => {});
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const base = () => `host=127.0.0.1 port=${port} dbname=postgres user=${SCRAM.role}`;
  const password = () => `password='${SCRAM.password}'`;

  for (const mode of ['require', 'verify-ca', 'verify-full']) {
    it(`sslmode=${mode}: the session connection is encrypted, and works`, async () => {
      const root = mode === 'require' ? '' : ` sslrootcert=${path.join(dir, 'root.crt')}`;
      const h = new SessionPgsql({
        db: `${base()} ${password()} sslmode=${mode}${root} application_name=spg_tls_${mode}`,
        table,
        gcInterval: 0,
        vacuumInterval: 0,
      });
      try {
        const id = newId();
        await h.write(id, mode);
        expect((await h.read(id)).data).to.equal(mode);
        const [row] = await query<{ ssl: boolean }>(
          SERVER,
          `SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
            WHERE a.application_name = $1`,
          [`spg_tls_${mode}`],
        );
        expect(row?.ssl, 'pg_stat_ssl of our connection').to.equal(true);
        expect(JSON.stringify(h.status())).to.not.include(SCRAM.password);
      } finally {
        await h.close();
      }
    });
  }

  it('sslmode=verify-full with a root certificate that did not sign the server: SPG_CONNECT_FAILED', async () => {
    const other = path.join(dir, 'other');
    selfSigned(other, 'other');
    const h = new SessionPgsql({
      db: `${base()} ${password()} sslmode=verify-full sslrootcert=${other}.crt`,
      table,
    });
    try {
      const err = await rejection(h.open());
      expect(err.code).to.equal('SPG_CONNECT_FAILED');
      expect(err.message).to.match(/certificate/i);
      expect(err.message).to.not.include(SCRAM.password);
    } finally {
      await h.close();
    }
  });

  it('scram-sha-256 and md5 passwords work; a wrong password is SPG_CONNECT_FAILED without the secret', async () => {
    await roundTrip(`${base()} ${password()}`);
    await roundTrip(
      `host=127.0.0.1 port=${port} dbname=postgres user=${MD5.role} password='${MD5.password}'`,
    );
    const h = new SessionPgsql({ db: `${base()} password=wrong-secret`, table });
    try {
      const err = await rejection(h.open());
      expect(err.code).to.equal('SPG_CONNECT_FAILED');
      expect(err.message).to.include('password authentication failed');
      expect(err.message).to.not.include('wrong-secret');
    } finally {
      await h.close();
    }
  });

  it('a password file (passfile=) supplies the password', async () => {
    const passfile = path.join(dir, 'pgpass');
    writeFileSync(
      passfile,
      `127.0.0.1:${port}:postgres:${SCRAM.role}:${pgpassField(SCRAM.password)}\n`,
      {
        mode: 0o600,
      },
    );
    await roundTrip(`${base()} passfile=${passfile}`);
  });

  it('a Unix socket directory as host works', async () => {
    const socketDir = clusters()[SERVER]!.socketDir;
    await roundTrip(`host=${socketDir} port=${port} dbname=postgres user=postgres`);
  });
});
