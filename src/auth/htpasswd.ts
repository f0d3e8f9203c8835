import { randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Account } from '../store/types.js';

/**
 * An Apache/nginx-compatible htpasswd file of every account, so a reverse proxy can share our
 * passwords. bcrypt's `$2b$` and `$2y$` are the same algorithm; `$2y$` is what htpasswd writes.
 */
export function renderHtpasswd(accounts: Account[]): string {
  return accounts.map((a) => `${a.name}:${a.passwordHash.replace(/^\$2[ab]\$/, '$2y$')}\n`).join('');
}

/**
 * Writes the file atomically with mode 0600. The temporary file's name is unique: several CLI
 * processes (`users add` run in parallel) may write at once, and a shared name made one of them
 * fail when another had already renamed it away.
 */
export function writeHtpasswd(path: string, accounts: Account[]): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(tmp, renderHtpasswd(accounts), { mode: 0o600 });
  renameSync(tmp, path);
}
