import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AccountService } from './auth/account-service.js';
import { ensureAdmin } from './bootstrap.js';
import { createLogger } from './logger.js';
import { openSqliteStore } from './store/sqlite/sqlite-store.js';
import { CONFORMANCE_DEFAULTS } from './store/store.conformance.js';
import type { JobStore } from './store/types.js';

let dir: string;
let store: JobStore;
let accounts: AccountService;
let printed: string;
const opts = () => ({
  dataDir: dir,
  publicUrl: 'https://w.example',
  logger: createLogger('silent'),
  print: (s: string) => (printed += s),
});

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-bootstrap-'));
  store = await openSqliteStore({
    path: join(dir, 'state.db'),
    defaults: structuredClone(CONFORMANCE_DEFAULTS),
  });
  accounts = new AccountService(store);
  printed = '';
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('ensureAdmin', () => {
  it('creates admin on the first start, prints the password once and saves it 0600', async () => {
    expect(await ensureAdmin(accounts, opts())).toBe('admin');
    const password = /admin \/ (\S+)/.exec(printed)![1]!;
    expect(await accounts.verify('admin', password)).not.toBeNull();
    const file = join(dir, 'credentials.txt');
    expect(readFileSync(file, 'utf8')).toContain(`password: ${password}`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(await ensureAdmin(accounts, opts())).toBeNull();
  });

  it('creates admin when participants were made before the first start, and says why', async () => {
    await accounts.create('alice', 'participant');
    expect(await ensureAdmin(accounts, opts())).toBe('admin');
    expect(printed).toMatch(/No instructor account existed/);
    expect((await accounts.get('admin'))?.role).toBe('instructor');
  });

  it('uses another name when a participant is called admin', async () => {
    await accounts.create('admin', 'participant');
    expect(await ensureAdmin(accounts, opts())).toBe('instructor');
    expect((await accounts.get('admin'))?.role).toBe('participant');
  });

  it('does nothing when an instructor of any name exists', async () => {
    await accounts.create('teach', 'instructor');
    await accounts.create('alice', 'participant');
    expect(await ensureAdmin(accounts, opts())).toBeNull();
    expect(printed).toBe('');
  });
});
