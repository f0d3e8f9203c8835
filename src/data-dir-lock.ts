import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { StartupError, errorCode } from './startup-error.js';

/** The lock file `comfy-multi serve` keeps in DATA_DIR while it runs with SQLite. */
export const LOCK_FILE = 'serve.lock';

export interface DataDirLock {
  /** Removes the lock file (on shutdown); safe to call twice. */
  release(): void;
}

interface LockOwner {
  pid: number;
  host: string;
  at: string;
  /** The process's start time (Linux: clock ticks after boot), to tell a reused pid apart. */
  start?: string | null;
}

/** When the process started, from /proc (Linux); null where that cannot be read. */
function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces and parentheses); starttime is the 22nd.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return errorCode(err) === 'EPERM';
  }
}

/**
 * SQLite is one process's database: a second `comfy-multi serve` on the same DATA_DIR would claim
 * the same jobs and overwrite the same credentials. So a server with STORE=sqlite holds
 * `DATA_DIR/serve.lock` (pid and host) for its lifetime and a second one refuses to start in one
 * sentence. A lock left by a process that died (kill -9, power loss) on this host is taken over;
 * one from another host (DATA_DIR on a network share) cannot be checked, so the operator is told
 * to remove it. Several processes need STORE=redis (and FILES=s3 across hosts).
 */
export function lockDataDir(dataDir: string): DataDirLock {
  const dir = resolve(dataDir);
  const path = join(dir, LOCK_FILE);
  const me: LockOwner = {
    pid: process.pid,
    host: hostname(),
    at: new Date().toISOString(),
    start: processStart(process.pid),
  };
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o600);
    } catch (err) {
      if (errorCode(err) !== 'EEXIST') throw err;
      let owner: Partial<LockOwner> = {};
      try {
        owner = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockOwner>;
      } catch {
        // Unreadable or half-written: treat as stale below only if it is not ours to judge.
      }
      const pid = typeof owner.pid === 'number' ? owner.pid : null;
      const sameHost = owner.host === me.host;
      // A container restarted after a crash reuses the same small pids: a live process with that
      // pid but another start time is not the owner.
      const reused = pid !== null && owner.start && processStart(pid) !== owner.start;
      if (pid !== null && sameHost && pid !== process.pid && !reused && alive(pid)) {
        throw new StartupError(
          `Another comfy-multi server (pid ${pid}) already uses DATA_DIR ${dir}: SQLite serves one process only, so stop it first or run several processes with STORE=redis (and FILES=s3).`,
        );
      }
      if (pid !== null && !sameHost) {
        throw new StartupError(
          `DATA_DIR ${dir} is in use by a comfy-multi server on host ${owner.host ?? '?'} (pid ${pid}): SQLite serves one process only; if that server is gone, delete ${path} and start again.`,
        );
      }
      // The owner is gone (or the file is garbage): take the lock over.
      try {
        unlinkSync(path);
      } catch (e) {
        if (errorCode(e) !== 'ENOENT') throw e;
      }
      continue;
    }
    try {
      writeSync(fd, `${JSON.stringify(me)}\n`);
    } finally {
      closeSync(fd);
    }
    let released = false;
    return {
      release() {
        if (released) return;
        released = true;
        try {
          const cur = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockOwner>;
          if (cur.pid === me.pid && cur.host === me.host) unlinkSync(path);
        } catch {
          // Already gone.
        }
      },
    };
  }
  throw new StartupError(
    `Could not take the lock ${path}: another comfy-multi server keeps starting on DATA_DIR ${dir}; SQLite serves one process only.`,
  );
}
