// The package as users meet it: `npm pack`, then the tarball installed into a throwaway app
// that already has its own TypeScript, with the install script approved under
// --strict-allow-scripts. Every entry point must load under require() and import, a
// TypeScript consumer must compile, `rm -rf node_modules && npm ci` must work again, a failed
// rebuild must keep the working addon, and a missing addon must say how to fix it (and the
// commands it prints must fix it). No PostgreSQL server is needed; npm and a C++ toolchain are.
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const ENTRY_POINTS = [
  'session-pgsql',
  'session-pgsql/express',
  'session-pgsql/fastify',
  'session-pgsql/koa',
];
// The adapters' peer frameworks, at the versions the tests use (so npm finds them in its cache).
const PEERS = ['express-session', '@fastify/session', 'koa-session'];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

// The child npm must see the app as its project, not this checkout: drop what the `npm test`
// around us exported about itself; keep the user's npm configuration (nodedir, cache, cafile).
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: '' };
  for (const key of Object.keys(env)) {
    if (
      /^npm_(package|lifecycle)_/.test(key) ||
      /^npm_config_(local_prefix|call|allow_scripts|ignore_scripts|dangerously_allow_all_scripts|strict_allow_scripts)$/.test(
        key,
      ) ||
      key === 'npm_command' ||
      key === 'INIT_CWD'
    ) {
      delete env[key];
    }
  }
  return { ...env, ...extra };
}

function run(
  command: string,
  args: string[],
  cwd: string,
  { timeoutMs = 240_000, env = {} as Record<string, string> } = {},
): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd,
      env: childEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => (stderr += String(err)));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

const npm = (args: string[], cwd: string, env?: Record<string, string>) =>
  run(NPM, ['--no-audit', '--no-fund', '--prefer-offline', ...args], cwd, { env });

function ok(result: Run, what: string): Run {
  expect(result.code, `${what} failed:\n${result.stdout}\n${result.stderr}`).to.equal(0);
  return result;
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

function labVersion(name: string): string {
  return JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8'))
    .version;
}

// Loads every entry point with require() and with import, in fresh processes, and reports the
// exports each one has (or the error it threw).
async function loadAll(app: string): Promise<{ cjs: unknown; esm: unknown }> {
  const cjs = await run(
    process.execPath,
    [
      '-e',
      `const out = {};
       for (const id of ${JSON.stringify(ENTRY_POINTS)}) out[id] = Object.keys(require(id)).sort();
       console.log(JSON.stringify(out));`,
    ],
    app,
  );
  const esm = await run(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { SessionPgsql, SessionPgsqlError } from 'session-pgsql';
       const out = { named: [typeof SessionPgsql, typeof SessionPgsqlError] };
       for (const id of ${JSON.stringify(ENTRY_POINTS)}) out[id] = Object.keys(await import(id)).sort();
       console.log(JSON.stringify(out));`,
    ],
    app,
  );
  expect(cjs.code, cjs.stderr).to.equal(0);
  expect(esm.code, esm.stderr).to.equal(0);
  return { cjs: JSON.parse(cjs.stdout), esm: JSON.parse(esm.stdout) };
}

function expectEveryEntryPoint(loaded: { cjs: unknown; esm: unknown }): void {
  const cjs = loaded.cjs as Record<string, string[]>;
  const esm = loaded.esm as Record<string, string[]> & { named: string[] };
  expect(cjs['session-pgsql']).to.include.members([
    'SessionPgsql',
    'SessionPgsqlError',
    'ErrorCode',
  ]);
  expect(cjs['session-pgsql/express']).to.include('ExpressStore');
  expect(esm.named).to.deep.equal(['function', 'function']);
  for (const id of ENTRY_POINTS) {
    expect(cjs[id], id).to.not.be.empty;
    expect(esm[id], id).to.include.members(cjs[id]!);
  }
}

// What require('session-pgsql') throws, as { code, message }, or null when it loads.
async function requireError(
  app: string,
): Promise<{ name: string; code: string; message: string } | null> {
  const result = await run(
    process.execPath,
    [
      '-e',
      `try { require('session-pgsql'); console.log('null'); }
       catch (err) { console.log(JSON.stringify({ name: err.name, code: err.code, message: err.message })); }`,
    ],
    app,
  );
  expect(result.code, result.stderr).to.equal(0);
  return JSON.parse(result.stdout);
}

describe('70 the packed tarball installed into a fresh app', function () {
  let tmp = '';
  let app = '';
  let tarball = '';
  let packed: string[] = [];
  let addon = '';

  before(async function () {
    this.timeout(240_000);
    if (spawnSync(NPM, ['--version'], { env: childEnv() }).status !== 0) {
      console.log(
        '    (skipped: npm is not available, so the tarball cannot be packed or installed)',
      );
      this.skip();
    }
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'session-pgsql-tarball-'));
    // dist/ was built by `npm install` (or `npm run build:ts`) before the tests: pack it as is,
    // without prepack's second compile.
    const pack = ok(
      await npm(['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], ROOT),
      'npm pack',
    );
    const [info] = JSON.parse(pack.stdout);
    tarball = path.join(tmp, info.filename);
    packed = info.files.map((f: { path: string }) => f.path);

    app = path.join(tmp, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(
      path.join(app, 'package.json'),
      JSON.stringify({ name: 'tarball-app', version: '1.0.0', private: true }, null, 2),
    );
    ok(
      await npm(['install', '--save-dev', 'typescript@5', '@types/node'], app),
      'installing typescript',
    );
    // The one approve step. npm keys a tarball dependency by its `file:` spec; for the registry
    // package the same command is `npm pkg set allowScripts.session-pgsql=true --json`.
    ok(
      await npm(['pkg', 'set', `allowScripts[file:${tarball}]=true`, '--json'], app),
      'npm pkg set',
    );
    ok(
      await npm(
        [
          'install',
          '--strict-allow-scripts',
          tarball,
          ...PEERS.map((p) => `${p}@${labVersion(p)}`),
        ],
        app,
      ),
      'installing the tarball',
    );
    addon = path.join(
      app,
      'node_modules',
      'session-pgsql',
      'build',
      'Release',
      'session_pgsql.node',
    );
  });

  after(() => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('ships dist/, the native sources and the install scripts, and no tests', () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    const targets = [
      manifest.main,
      manifest.types,
      ...Object.values(manifest.bin as Record<string, string>),
      ...Object.values(manifest.exports as Record<string, string | Record<string, string>>).flatMap(
        (target) => (typeof target === 'string' ? [target] : Object.values(target)),
      ),
    ].map((p: string) => path.posix.normalize(p));
    expect(packed).to.include.members(targets);
    expect(packed).to.include.members([
      'package.json',
      'README.md',
      'LICENSE',
      'binding.gyp',
      'scripts/install.js',
      'scripts/find-libpq.js',
      ...fs.readdirSync(path.join(ROOT, 'native')).map((f) => `native/${f}`),
    ]);
    if (fs.existsSync(path.join(ROOT, 'CHANGELOG.md'))) expect(packed).to.include('CHANGELOG.md');
    if (fs.existsSync(path.join(ROOT, 'docs')))
      expect(packed.some((f) => f.startsWith('docs/'))).to.equal(true);
    // test/ is also how scripts/install.js tells a checkout from an installed tarball.
    const unwanted = packed.filter((f) =>
      /^(test|build|build-staging|node_modules|\.ci|examples)\/|^scripts\/(run-tests|pg-cluster|chaos|demo|bench)/.test(
        f,
      ),
    );
    expect(unwanted).to.deep.equal([]);
  });

  it('installs with only the addon built: the app’s own TypeScript never compiles lib/', () => {
    expect(fs.existsSync(addon)).to.equal(true);
    const installed = path.join(app, 'node_modules', 'session-pgsql');
    for (const file of ['dist/index.js', 'dist/index.d.ts', 'dist/express.js']) {
      expect(sha256(path.join(installed, file)), file).to.equal(sha256(path.join(ROOT, file)));
    }
    expect(fs.existsSync(path.join(installed, 'build-staging'))).to.equal(false);
  });

  it('loads every entry point with require() and import', async () => {
    expectEveryEntryPoint(await loadAll(app));
  });

  it("compiles a TypeScript consumer with the app's own tsc", async function () {
    this.timeout(120_000);
    fs.writeFileSync(
      path.join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'es2022',
          strict: true,
          noEmit: true,
          types: ['node'],
        },
        files: ['index.ts'],
      }),
    );
    fs.writeFileSync(
      path.join(app, 'index.ts'),
      `import { SessionPgsql, SessionPgsqlError, ErrorCode } from 'session-pgsql';
       const handler: SessionPgsql = new SessionPgsql({ db: 'host=127.0.0.1 port=1 dbname=x' });
       const code: string = ErrorCode.NoServer;
       void handler.close().catch((err: unknown) => err instanceof SessionPgsqlError && code);
       export {};\n`,
    );
    const tsc = path.join(app, 'node_modules', 'typescript', 'bin', 'tsc');
    ok(await run(process.execPath, [tsc, '-p', '.'], app), 'tsc');
  });

  it('keeps the working addon when `npm rebuild` fails', async function () {
    this.timeout(240_000);
    const before = sha256(addon);
    // libpq headers that do not exist: configure succeeds, the compile fails.
    const broken = path.join(tmp, 'no-libpq');
    const rebuild = await npm(['rebuild', 'session-pgsql'], app, {
      LIBPQ_INCLUDE_DIR: broken,
      LIBPQ_LIB_DIR: broken,
    });
    expect(rebuild.code, 'the rebuild should fail').to.not.equal(0);
    expect(fs.existsSync(addon), 'the addon was deleted').to.equal(true);
    expect(sha256(addon)).to.equal(before);
    expect(await requireError(app)).to.equal(null);
    expect(rebuild.stdout + rebuild.stderr).to.include('previous build in build/ is kept');
  });

  it('a missing addon fails at require with SPG_ADDON_UNAVAILABLE and the commands that build it', async () => {
    fs.rmSync(path.dirname(path.dirname(addon)), { recursive: true });
    const err = await requireError(app);
    expect(err).to.include({ name: 'SessionPgsqlError', code: 'SPG_ADDON_UNAVAILABLE' });
    expect(err!.message).to.include('session-pgsql: the native addon is not built');
    expect(err!.message).to.include('\n  npm install-scripts approve session-pgsql\n');
    expect(err!.message).to.include('\n  npm rebuild session-pgsql\n');
    expect(err!.message).to.not.include('npm pkg delete');
    expect(err!.message).to.not.include('Could not locate the bindings file');
  });

  it('with the script denied, the message names the denial, and its commands undo it', async function () {
    this.timeout(120_000);
    // Headers that do not exist make a build that runs fail at once, so each rebuild below
    // shows whether npm ran our script without compiling anything.
    const broken = path.join(tmp, 'no-libpq');
    const failFast = { LIBPQ_INCLUDE_DIR: broken, LIBPQ_LIB_DIR: broken };
    ok(await npm(['install-scripts', 'deny', 'session-pgsql'], app), 'npm install-scripts deny');
    const skipped = ok(await npm(['rebuild', 'session-pgsql'], app, failFast), 'denied rebuild');
    expect(skipped.stdout + skipped.stderr).to.not.include('building the native addon failed');

    const err = await requireError(app);
    expect(err).to.include({ code: 'SPG_ADDON_UNAVAILABLE' });
    expect(err!.message).to.include(`npm pkg delete 'allowScripts[file:${tarball}]'`);
    expect(err!.message).to.include('never overrides a denial');
    const commands = err!.message
      .split('\n')
      .filter((line) => line.startsWith('  npm '))
      .map((line) => line.trim());
    expect(commands).to.deep.equal([
      `npm pkg delete 'allowScripts[file:${tarball}]'`,
      'npm install-scripts approve session-pgsql',
      'npm rebuild session-pgsql',
    ]);
    // Exactly as printed; the rebuild now runs our script (and fails on the missing headers).
    ok(await run('sh', ['-c', commands[0]!], app), commands[0]!);
    ok(await run('sh', ['-c', commands[1]!], app), commands[1]!);
    const rebuild = await run('sh', ['-c', commands[2]!], app, { env: failFast });
    expect(rebuild.code).to.not.equal(0);
    expect(rebuild.stdout + rebuild.stderr).to.include('building the native addon failed');
    const manifest = JSON.parse(fs.readFileSync(path.join(app, 'package.json'), 'utf8'));
    expect(manifest.allowScripts).to.deep.equal({ [`file:${tarball}`]: true });
  });

  it('an addon that does not load fails with the reason and the rebuild command', async () => {
    // What a node_modules copied from another platform, or a missing libpq.so.5, look like.
    fs.mkdirSync(path.dirname(addon), { recursive: true });
    fs.writeFileSync(addon, 'not an ELF file');
    const err = await requireError(app);
    expect(err).to.include({ name: 'SessionPgsqlError', code: 'SPG_ADDON_UNAVAILABLE' });
    expect(err!.message).to.include(`the native addon ${addon} failed to load: `);
    expect(err!.message).to.include('libpq5');
    expect(err!.message).to.include('npm rebuild session-pgsql');
  });

  it('installs again from the lockfile: rm -rf node_modules && npm ci', async function () {
    this.timeout(240_000);
    fs.rmSync(path.join(app, 'node_modules'), { recursive: true, force: true });
    ok(await npm(['ci', '--strict-allow-scripts'], app), 'npm ci');
    expect(fs.existsSync(addon)).to.equal(true);
    expectEveryEntryPoint(await loadAll(app));
  });
});
