#!/usr/bin/env node
'use strict';
// Finds libpq for binding.gyp. One flag, one line on stdout:
//   --include-dir  the directory holding libpq-fe.h (binding.gyp's include_dirs)
//   --libs         the link flags: -L<libdir> -lpq (binding.gyp's libraries)
//   --rpath        -Wl,-rpath,<libdir>, so the addon loads the libpq it was built against
//   (no flag)      what was found and how, as JSON, for people debugging a build
// Order: LIBPQ_INCLUDE_DIR/LIBPQ_LIB_DIR, then pg_config, then pkg-config libpq.
// On failure it prints one line naming what to install and exits non-zero, so node-gyp
// stops with that line instead of a bare "exit status 127".
const { execFileSync } = require('node:child_process');

function run(cmd, args) {
  try {
    return execFileSync(cmd, args, {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return null;
  }
}

function locate() {
  const env = process.env;
  if (env.LIBPQ_INCLUDE_DIR && env.LIBPQ_LIB_DIR) {
    return { how: 'environment', include: env.LIBPQ_INCLUDE_DIR, lib: env.LIBPQ_LIB_DIR };
  }
  const include = run('pg_config', ['--includedir']);
  const lib = run('pg_config', ['--libdir']);
  if (include && lib) return { how: 'pg_config', include, lib };
  const cflags = run('pkg-config', ['--cflags-only-I', 'libpq']);
  const libs = run('pkg-config', ['--libs-only-L', 'libpq']);
  if (cflags !== null && libs !== null) {
    const first = (flags, prefix) =>
      flags
        .split(/\s+/)
        .find((f) => f.startsWith(prefix))
        ?.slice(2) ?? '';
    return {
      how: 'pkg-config',
      include: first(cflags, '-I') || '/usr/include',
      lib: first(libs, '-L'),
    };
  }
  return null;
}

const found = locate();
if (!found) {
  console.error(
    'session-pgsql: libpq not found (no pg_config or pkg-config libpq): install libpq-dev (Debian/Ubuntu), ' +
      'libpq-devel (Fedora/RHEL) or libpq (Homebrew), or set LIBPQ_INCLUDE_DIR and LIBPQ_LIB_DIR',
  );
  process.exit(1);
}
const mode = process.argv[2];
if (mode === '--include-dir') console.log(found.include);
else if (mode === '--libs')
  console.log([found.lib && `-L${found.lib}`, '-lpq'].filter(Boolean).join(' '));
else if (mode === '--rpath') console.log(found.lib ? `-Wl,-rpath,${found.lib}` : '');
else if (mode === undefined) console.log(JSON.stringify(found));
else {
  console.error(`find-libpq.js: unknown flag ${mode}: use --include-dir, --libs or --rpath`);
  process.exit(2);
}
