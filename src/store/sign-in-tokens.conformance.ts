/**
 * Sign-in links on every backend: run from `store.conformance.ts`, so SQLite and Redis both show
 * that a link is stored only hashed, that a new link or a revocation ends the old one at once, that
 * an account removed and created again under the same name does not inherit a link, and that links
 * survive a reopen and a state export/import.
 */
import { expect, it } from 'vitest';
import { SIGN_IN_NS, SignInTokens } from '../auth/sign-in-tokens.js';
import type { OpenStore } from './conformance-types.js';
import type { Account, JobStore } from './types.js';

const T0 = 1_700_000_000_000;

function account(name: string, createdAt = T0): Account {
  return { name, role: 'participant', passwordHash: '$2b$10$x', createdAt, passwordVersion: 1 };
}

export function signInTokenConformance(
  current: () => JobStore,
  open: OpenStore,
  reopen: () => Promise<JobStore> | null,
): void {
  it('sign-in links: stored hashed, resolve to the account, one per user', async () => {
    const store = current();
    await store.putAccount(account('alice'));
    await store.putAccount(account('bob'));
    const links = new SignInTokens(store, () => T0 + 5);
    const a = await links.issue(account('alice'));
    const b = await links.issue(account('bob'));
    expect(a.token).toMatch(/^alice\.[A-Za-z0-9_-]{43}$/);
    expect(a.issuedAt).toBe(T0 + 5);
    expect((await links.resolve(a.token))?.name).toBe('alice');
    expect((await links.resolve(b.token))?.name).toBe('bob');
    // Only the hash is stored.
    const raw = (await store.getBlob(SIGN_IN_NS, 'alice')) ?? '';
    expect(raw).not.toContain(a.token.split('.')[1]);
    expect(await links.users()).toEqual(['alice', 'bob']);
    // A token naming bob but carrying alice's secret is not bob's.
    expect(await links.resolve(`bob.${a.token.split('.')[1]}`)).toBeNull();
    expect(await links.resolve('alice.short')).toBeNull();
    expect(await links.resolve('')).toBeNull();
  });

  it('sign-in links: a new link or a revocation ends the old one; others are untouched', async () => {
    const store = current();
    await store.putAccount(account('alice'));
    await store.putAccount(account('bob'));
    const links = new SignInTokens(store);
    const first = await links.issue(account('alice'));
    const bob = await links.issue(account('bob'));
    const second = await links.issue(account('alice'));
    expect(await links.resolve(first.token)).toBeNull();
    expect(await links.isCurrent(first.token)).toBe(false);
    expect((await links.resolve(second.token))?.name).toBe('alice');
    expect(await links.revoke('alice')).toBe(true);
    expect(await links.revoke('alice')).toBe(false);
    expect(await links.resolve(second.token)).toBeNull();
    expect(await links.issuedAt(account('alice'))).toBeNull();
    expect((await links.resolve(bob.token))?.name).toBe('bob');
  });

  it('sign-in links: an account removed and created again does not inherit the old link', async () => {
    const store = current();
    await store.putAccount(account('carol', T0));
    const links = new SignInTokens(store);
    const old = await links.issue(account('carol', T0));
    await store.deleteAccount('carol');
    expect(await links.resolve(old.token)).toBeNull();
    await store.putAccount(account('carol', T0 + 1000));
    expect(await links.resolve(old.token)).toBeNull();
    expect(await links.issuedAt(account('carol', T0 + 1000))).toBeNull();
    const fresh = await links.issue(account('carol', T0 + 1000));
    expect((await links.resolve(fresh.token))?.name).toBe('carol');
  });

  it('sign-in links: survive a reopen and a state export/import', async () => {
    let store = current();
    await store.putAccount(account('dave'));
    const issued = await new SignInTokens(store).issue(account('dave'));
    const reopened = reopen();
    if (reopened) store = await reopened;
    expect((await new SignInTokens(store).resolve(issued.token))?.name).toBe('dave');
    const records = [];
    for await (const r of store.exportState()) records.push(r);
    const target = await open({
      mode: 'fifo',
      paused: false,
      limits: { maxPendingPerUser: 10, maxRunningPerUser: 1 },
      userLimits: {},
    });
    try {
      await target.store.importState(records);
      expect((await new SignInTokens(target.store).resolve(issued.token))?.name).toBe('dave');
    } finally {
      await target.cleanup();
    }
  });
}
