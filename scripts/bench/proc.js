'use strict';
// CPU and memory figures from /proc (Linux); every function returns null elsewhere.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');

let ticks = null;
function clockTicks() {
  if (ticks === null) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** Fields of /proc/<pid>/stat after the command name, indexed from field 3 (state) = 0. */
function statFields(pid) {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

// Indexes into statFields(): ppid 1, utime 11, stime 12, cutime 13, cstime 14.
const seconds = (f, ...idx) => idx.reduce((sum, i) => sum + Number(f[i]), 0) / clockTicks();

/** CPU seconds of this process's children that have exited and been reaped (e.g. pgbench). */
function reapedChildrenCpu() {
  const f = statFields('self');
  return f ? seconds(f, 13, 14) : null;
}

/**
 * CPU seconds the PostgreSQL server has used: the postmaster, its live children (backends,
 * walwriter, checkpointer, autovacuum) and those already gone (counted in the postmaster's
 * cutime/cstime), so a backend exiting between two readings is counted once.
 */
function serverCpu(postmasterPid) {
  const parent = String(postmasterPid);
  // A backend reaped while /proc is scanned would be missed or counted twice: scan until the
  // postmaster's cutime/cstime is the same before and after the scan (a few tries at most).
  for (let attempt = 0; attempt < 5; attempt++) {
    const before = statFields(postmasterPid);
    if (!before) return null;
    let entries;
    try {
      entries = fs.readdirSync('/proc');
    } catch {
      return null;
    }
    let children = 0;
    for (const entry of entries) {
      if (!/^\d+$/.test(entry)) continue;
      const f = statFields(entry);
      if (f && f[1] === parent) children += seconds(f, 11, 12);
    }
    const after = statFields(postmasterPid);
    if (!after) return null;
    if (after[13] === before[13] && after[14] === before[14]) {
      return seconds(after, 11, 12, 13, 14) + children;
    }
  }
  return null;
}

/** The postmaster's pid from its data directory, or null. */
function postmasterPid(dataDir) {
  try {
    const pid = Number(fs.readFileSync(`${dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);
    if (!Number.isInteger(pid) || pid <= 0) return null;
    // Another PID namespace (a container) would name some other process.
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return /postgres|postmaster/.test(cmdline) ? pid : null;
  } catch {
    return null;
  }
}

/** Resident set size of a process in bytes, or null. */
function rssBytes(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

module.exports = { reapedChildrenCpu, serverCpu, postmasterPid, rssBytes };
