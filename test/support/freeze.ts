// Hanging a test server without stopping it: SIGSTOP its postmaster and every backend, as a VM
// pause or a storage stall would. Connections stay open and the kernel keeps accepting what is
// sent to them; the server runs it all once resumed with SIGCONT.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { clusters } from './db';

/** A frozen server: resume() sends SIGCONT to what was stopped (safe to call more than once). */
export interface Frozen {
  pids: number[];
  resume(): void;
}

/** The postmaster of test server `index` and all its descendants, postmaster first. */
function processTree(index: number): number[] {
  const dataDir = clusters()[index]!.dataDir;
  const postmaster = Number(
    readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0],
  );
  if (!Number.isSafeInteger(postmaster) || postmaster <= 0) {
    throw new Error(`no postmaster pid in ${dataDir}`);
  }
  const all = [postmaster];
  for (let i = 0; i < all.length; i++) {
    let children = '';
    try {
      children = execFileSync('pgrep', ['-P', String(all[i])], { encoding: 'utf8' });
    } catch {
      continue; // pgrep exits 1 when there are none
    }
    for (const pid of children.split('\n').filter(Boolean)) all.push(Number(pid));
  }
  return all;
}

/** Sends `sig` to `pid`; false when it has exited meanwhile. */
function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/** Stops the processes `list()` names with SIGSTOP, asking again until it names no new one. */
function stopAll(list: () => number[]): Frozen {
  const stopped = new Set<number>();
  const frozen: Frozen = {
    pids: [],
    resume() {
      for (const pid of stopped) signal(pid, 'SIGCONT');
      stopped.clear();
    },
  };
  try {
    for (let round = 0; round < 5; round++) {
      const fresh = list().filter((pid) => !stopped.has(pid));
      if (fresh.length === 0) break;
      for (const pid of fresh) if (signal(pid, 'SIGSTOP')) stopped.add(pid);
    }
  } catch (err) {
    frozen.resume();
    throw err;
  }
  frozen.pids = [...stopped];
  return frozen;
}

/**
 * Stops every process of test server `index` with SIGSTOP. The postmaster goes first so it forks
 * nothing new; its children are then listed again until none is left running.
 */
export function freeze(index: number): Frozen {
  return stopAll(() => processTree(index));
}

/**
 * Stops only the given backends (a stalled connection, as after a partition of one TCP
 * connection): the server goes on accepting and serving new connections.
 */
export function freezeBackends(pids: number[]): Frozen {
  if (pids.length === 0) throw new Error('no backend to freeze');
  return stopAll(() => pids);
}
