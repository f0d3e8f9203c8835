import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LOCK_FILE, lockDataDir } from './data-dir-lock.js';
import { StartupError } from './startup-error.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cm-lock-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('lockDataDir (SQLite serves one process)', () => {
  it('refuses a second server while the first one lives, in one sentence', async () => {
    const dir = tempDir();
    // Another live process owns the lock (a real process, not ours).
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { stdio: 'ignore' });
    try {
      writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: other.pid, host: hostname(), at: '' }));
      let err: unknown;
      try {
        lockDataDir(dir);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(StartupError);
      expect((err as Error).message).toMatch(
        new RegExp(`Another comfy-multi server \\(pid ${other.pid}\\).*STORE=redis`),
      );
      expect((err as Error).message.split('. ').length).toBe(1);
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('takes over the lock of a process that died (kill -9) and removes it on release', () => {
    const dir = tempDir();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    const deadPid = Number(dead.stdout.toString());
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: deadPid, host: hostname(), at: '' }));
    const lock = lockDataDir(dir);
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')).pid).toBe(process.pid);
    lock.release();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  });

  it('takes over a lock whose pid now belongs to another process (a restarted container reuses pids)', () => {
    const dir = tempDir();
    // Our parent is alive, but it is not the process that wrote this lock: the start time differs.
    writeFileSync(
      join(dir, LOCK_FILE),
      JSON.stringify({ pid: process.ppid, host: hostname(), at: '', start: '1' }),
    );
    lockDataDir(dir).release();
  });

  it('refuses a lock held on another host and names the file to delete', () => {
    const dir = tempDir();
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: 1234, host: 'elsewhere.example', at: '' }));
    expect(() => lockDataDir(dir)).toThrow(/host elsewhere\.example.*delete .*serve\.lock/);
  });
});
