import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../errors.js';
import { CONFORMANCE_DEFAULTS } from '../store/store.conformance.js';
import { openSqliteStore, type SqliteStore } from '../store/sqlite/sqlite-store.js';
import { hashToken } from './passwords.js';
import { WorkerTokenService } from './worker-tokens.js';

describe('WorkerTokenService', () => {
  let dir: string;
  let store: SqliteStore;
  let now = 1_000;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cm-wtokens-'));
    store = await openSqliteStore({ path: join(dir, 'state.db'), defaults: CONFORMANCE_DEFAULTS });
  });

  afterEach(async () => {
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const service = (config: { name: string; secret: string }[] = []) =>
    new WorkerTokenService(store, config, () => now);

  it('creates a token, stores only its hash, and verifies it', async () => {
    const tokens = service();
    const { name, token } = await tokens.create('gpu1');
    expect(name).toBe('gpu1');
    expect(token.length).toBeGreaterThanOrEqual(40);
    const stored = await store.listWorkerTokens();
    expect(stored).toEqual([
      { name: 'gpu1', tokenHash: hashToken(token), createdAt: 1_000, revokedAt: null },
    ]);
    // The plain token is nowhere in the database files.
    for (const f of ['state.db', 'state.db-wal']) {
      try {
        expect(readFileSync(join(dir, f)).includes(Buffer.from(token))).toBe(false);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    expect(await tokens.verify(token)).toBe('gpu1');
    expect(await tokens.verify(`${token}x`)).toBeNull();
    expect(await tokens.verify('')).toBeNull();
  });

  it('refuses bad and taken names', async () => {
    const tokens = service();
    await tokens.create('gpu1');
    await expect(tokens.create('gpu1')).rejects.toMatchObject({ code: 'CONFLICT' });
    for (const bad of ['', 'has space', '../x', 'a'.repeat(65), '-lead']) {
      await expect(tokens.create(bad)).rejects.toBeInstanceOf(AppError);
    }
  });

  it('revokes: the token stops working; the name can be issued again with a new token', async () => {
    const tokens = service();
    const first = await tokens.create('gpu1');
    now = 2_000;
    expect(await tokens.revoke('gpu1')).toBe(true);
    expect(await tokens.revoke('gpu1')).toBe(false);
    expect(await tokens.revoke('nope')).toBe(false);
    expect(await tokens.verify(first.token)).toBeNull();
    expect((await tokens.list())[0]).toMatchObject({ name: 'gpu1', revokedAt: 2_000, source: 'store' });
    const second = await tokens.create('gpu1');
    expect(second.token).not.toBe(first.token);
    expect(await tokens.verify(second.token)).toBe('gpu1');
    expect(await tokens.verify(first.token)).toBeNull();
  });

  it('reuses a recent answer for file transfers, never past its age or a revoke it has seen', async () => {
    const tokens = service();
    const { token } = await tokens.create('gpu1');
    const hash = hashToken(token);
    now = 10_000;
    expect(await tokens.verifyHashRecent(hash, 1000)).toBe('gpu1');
    // Revoked by another process (the CLI writes the store directly): reused within the age...
    await store.revokeWorkerToken('gpu1', now);
    now = 10_900;
    expect(await tokens.verifyHashRecent(hash, 1000)).toBe('gpu1');
    // ...and not after it.
    now = 11_001;
    expect(await tokens.verifyHashRecent(hash, 1000)).toBeNull();
    expect(await tokens.verifyHashRecent(hash, 1000)).toBeNull();

    // A fresh check that finds the revoke (a heartbeat, a dispatch) ends the reuse at once.
    const again = await tokens.create('gpu2');
    const h2 = hashToken(again.token);
    expect(await tokens.verifyHashRecent(h2, 1000)).toBe('gpu2');
    await store.revokeWorkerToken('gpu2', now);
    expect(await tokens.verifyHash(h2)).toBeNull();
    expect(await tokens.verifyHashRecent(h2, 1000)).toBeNull();

    // A revoke in this process, too; and a wrong token is never remembered.
    const third = await tokens.create('gpu3');
    const h3 = hashToken(third.token);
    expect(await tokens.verifyHashRecent(h3, 1000)).toBe('gpu3');
    expect(await tokens.revoke('gpu3')).toBe(true);
    expect(await tokens.verifyHashRecent(h3, 1000)).toBeNull();
    expect(await tokens.verifyHashRecent(hashToken('nope'), 1000)).toBeNull();
  });

  it('accepts WORKER_TOKENS from config and lists them without secrets', async () => {
    const tokens = service([{ name: 'box', secret: 'configured-secret-123' }]);
    await tokens.create('gpu1');
    expect(await tokens.verify('configured-secret-123')).toBe('box');
    const list = await tokens.list();
    expect(list.map((t) => [t.name, t.source])).toEqual([
      ['gpu1', 'store'],
      ['box', 'config'],
    ]);
    expect(JSON.stringify(list)).not.toContain('configured-secret-123');
  });
});
