// Multi-host entries behave like libpq's own (docs/behaviour.md, A replicated pair): one `db` entry may list several
// hosts (`host=a,b port=p1,p2`); each host gets its own connectTimeout, so a first host that
// hangs or refuses costs at most one connectTimeout before the next is tried, and status()
// says which host of the entry is in use. A read-only server is not "up" (item 3): it is
// reported with SPG_READ_ONLY (retryable, with a hint naming target_session_attrs=read-write),
// routed around like a down server, and used once it is writable again.
import { expect } from 'chai';
import { SessionPgsql, SessionPgsqlError } from '../lib';
import { newId, query, servers, uniqueTable } from './support/db';
import { closedAfterEach } from './support/handlers';
import { closedPort, SilentServer } from './support/net';
import { settled, sleep } from './support/wait';

/** The test server `index` as `host=127.0.0.1 port=N ...` split into its parts. */
function parts(index: number): { port: number; rest: string } {
  const conninfo = servers()[index]!;
  const port = Number(/port=(\d+)/.exec(conninfo)![1]);
  const rest = conninfo
    .split(/\s+/)
    .filter((p) => !/^(host|port|connect_timeout)=/.test(p))
    .join(' ');
  return { port, rest };
}

describe('servers: multi-host entries', function () {
  this.timeout(30_000);

  const handlers = closedAfterEach<SessionPgsql>();
  let silent: SilentServer;
  let silentPort: number;

  before(async () => {
    silent = new SilentServer();
    silentPort = await silent.listen();
  });

  after(async () => {
    await silent.close();
  });

  function handler(
    db: string,
    options: Partial<ConstructorParameters<typeof SessionPgsql>[0]> = {},
  ) {
    return handlers.keep(
      new SessionPgsql({
        db,
        table: uniqueTable('t24'),
        gcInterval: 0,
        vacuumInterval: 0,
        connectTimeout: 1,
        ...options,
      }),
    );
  }

  /** Opens `h`, writes and reads a session; returns the ms open() took. */
  async function openAndUse(h: SessionPgsql): Promise<number> {
    const started = Date.now();
    const opened = await settled(h.open(), 'open()');
    const elapsed = Date.now() - started;
    expect(opened.error, 'open() rejection').to.equal(undefined);
    const id = newId();
    expect(await h.write(id, 'multi')).to.equal(true);
    expect((await h.read(id)).data).to.equal('multi');
    return elapsed;
  }

  it('a first host that accepts and never answers costs one connectTimeout; the second host serves, and status names it', async () => {
    const { port, rest } = parts(0);
    const h = handler(`host=127.0.0.1,127.0.0.1 port=${silentPort},${port} ${rest}`);
    const elapsed = await openAndUse(h);
    // connectTimeout is 1 s: one for the silent host, then the real one (generous bound).
    expect(elapsed, 'ms until open() resolved').to.be.below(5_000);
    expect(silent.sockets.size, 'connections the silent host accepted').to.be.at.least(1);
    const s = h.status().servers[0]!;
    expect(s.state).to.equal('up');
    expect(s.host).to.equal('127.0.0.1');
    expect(s.port).to.equal(port);
  });

  it('a first host with nothing listening is skipped at once; the second host serves', async () => {
    const { port, rest } = parts(1);
    const closed = await closedPort();
    const h = handler(`host=127.0.0.1,127.0.0.1 port=${closed},${port} ${rest}`);
    await openAndUse(h);
    expect(h.status().servers[0]!.port).to.equal(port);
  });

  it('three hosts, silent then closed then real, with connections: 2: every connection reaches the third', async () => {
    const { port, rest } = parts(2);
    const closed = await closedPort();
    const h = handler(
      `host=127.0.0.1,127.0.0.1,127.0.0.1 port=${silentPort},${closed},${port} ${rest}`,
      { connections: 2 },
    );
    await openAndUse(h);
    const s = h.status().servers[0]!;
    expect([s.state, s.host, s.port]).to.deep.equal(['up', '127.0.0.1', port]);
  });

  it('no host usable: open() rejects retryable, naming what happened on each host; the server is down', async () => {
    const closed = await closedPort();
    const { rest } = parts(0);
    const h = handler(`host=127.0.0.1,127.0.0.1 port=${silentPort},${closed} ${rest}`);
    const { error } = await settled(h.open(), 'open()');
    expect(error).to.be.instanceOf(SessionPgsqlError);
    expect(error!.retryable).to.equal(true);
    expect(error!.code).to.be.oneOf(['SPG_CONNECT_FAILED', 'SPG_CONNECT_TIMEOUT']);
    expect(error!.message).to.contain(`127.0.0.1:${silentPort}`);
    expect(error!.message).to.contain(`127.0.0.1:${closed}`);
    const s = h.status().servers[0]!;
    expect(s.state).to.not.equal('up');
    expect(s.host).to.equal(null);
    expect(s.port).to.equal(null);
  });

  it('a single-host entry still reports its host and port', async () => {
    const { port } = parts(0);
    const h = handler(servers()[0]!);
    await openAndUse(h);
    expect(h.status().servers[0]!).to.include({ host: '127.0.0.1', port });
  });
});

describe('servers: a read-only server is not up', function () {
  this.timeout(30_000);

  const handlers = closedAfterEach<SessionPgsql>();
  const database = uniqueTable('d24');

  before(async () => {
    await query(0, `CREATE DATABASE ${database}`);
    await query(0, `ALTER DATABASE ${database} SET default_transaction_read_only = on`);
  });

  after(async () => {
    await query(0, `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  });

  /** Test server 0, its database that makes every transaction read-only. */
  function readOnlyEntry(): string {
    return servers()[0]!.replace(/dbname=\S+/, `dbname=${database}`);
  }

  function handler(db: string) {
    return handlers.keep(
      new SessionPgsql({
        db,
        table: uniqueTable('t24'),
        gcInterval: 0,
        vacuumInterval: 0,
        connectTimeout: 1,
        retryMinDelay: 0.05,
        retryMaxDelay: 0.2,
      }),
    );
  }

  it('alone in db: open() rejects with SPG_READ_ONLY (retryable, hint target_session_attrs=read-write); it is not up and no write reaches it', async () => {
    const h = handler(readOnlyEntry());
    const { error } = await settled(h.open(), 'open()');
    expect(error, 'open() rejection').to.be.instanceOf(SessionPgsqlError);
    expect(error!.code).to.equal('SPG_READ_ONLY');
    expect(error!.retryable).to.equal(true);
    expect(error!.server).to.equal(0);
    expect(error!.message).to.contain('target_session_attrs=read-write');
    expect(error!.hint).to.contain('target_session_attrs=read-write');
    const s = h.status().servers[0]!;
    expect(s.state).to.not.equal('up');
    expect(s.lastError?.code).to.equal('SPG_READ_ONLY');
    const write = await settled(h.write(newId(), 'x'), 'write()');
    expect(write.error, 'write() rejection').to.be.instanceOf(SessionPgsqlError);
    expect(write.error!.retryable).to.equal(true);
    expect(write.error!.code).to.not.equal('25006');
  });

  it('next to a writable server: sessions go to the writable one; the read-only one is down with SPG_READ_ONLY', async () => {
    const h = handler(`${readOnlyEntry()};${servers()[1]}`);
    const opened = await settled(h.open(), 'open()');
    expect(opened.error, 'open() rejection').to.equal(undefined);
    for (let i = 0; i < 20; i++) {
      const id = newId();
      expect(await h.write(id, `v${i}`)).to.equal(true);
      expect((await h.read(id)).data).to.equal(`v${i}`);
    }
    const [ro, rw] = h.status().servers;
    expect(ro!.state).to.not.equal('up');
    expect(ro!.lastError?.code).to.equal('SPG_READ_ONLY');
    expect(rw!.state).to.equal('up');
  });

  it('retried like a down server: once it is writable again it is used', async () => {
    const h = handler(readOnlyEntry());
    const { error } = await settled(h.open(), 'open()');
    expect(error?.code).to.equal('SPG_READ_ONLY');
    await query(0, `ALTER DATABASE ${database} RESET default_transaction_read_only`);
    try {
      const id = newId();
      let written = false;
      for (let i = 0; i < 100 && !written; i++) {
        written = await h.write(id, 'writable').catch(() => false);
        if (!written) await sleep(100);
      }
      expect(written, 'a write succeeded within 100 tries').to.equal(true);
      expect(h.status().servers[0]!.state).to.equal('up');
      expect((await h.read(id)).data).to.equal('writable');
    } finally {
      await query(0, `ALTER DATABASE ${database} SET default_transaction_read_only = on`);
    }
  });
});
