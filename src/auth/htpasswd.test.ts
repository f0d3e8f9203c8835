import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import type { Account } from '../store/types.js';
import { writeHtpasswd } from './htpasswd.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const account = (name: string) => ({ name, passwordHash: '$2b$10$abcdefghijklmnopqrstuv' }) as Account;

it('writes the file 0600 with $2y$ hashes and leaves no temporary file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-htpasswd-'));
  dirs.push(dir);
  const path = join(dir, 'htpasswd');
  writeHtpasswd(path, [account('alice'), account('bob')]);
  expect(readFileSync(path, 'utf8')).toBe(
    'alice:$2y$10$abcdefghijklmnopqrstuv\nbob:$2y$10$abcdefghijklmnopqrstuv\n',
  );
  expect(statSync(path).mode & 0o777).toBe(0o600);
  expect(readdirSync(dir)).toEqual(['htpasswd']);
});

it('does not share a temporary file name with another writer (parallel `users add`)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-htpasswd-'));
  dirs.push(dir);
  const path = join(dir, 'htpasswd');
  // Another process's temporary file, in the way under the old fixed name.
  mkdirSync(`${path}.tmp`);
  writeHtpasswd(path, [account('alice')]);
  expect(readFileSync(path, 'utf8')).toContain('alice:');
});
