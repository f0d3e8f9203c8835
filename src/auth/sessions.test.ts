/** Sessions end server-side: logout, password reset, account removal (issue 10). */
import { afterEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/support/app-harness.js';
import { REVOKED_SESSIONS_NS, SessionRevocations } from './session-revocations.js';
import { SESSION_COOKIE } from './sessions.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function signIn(harness: Harness, user: string, password = `pw-${user}-0123456789`): Promise<string> {
  const res = await harness.app.inject({ method: 'POST', url: '/login', payload: { user, password } });
  expect(res.statusCode).toBe(200);
  const cookie = res.cookies.find((c) => c.name === SESSION_COOKIE);
  expect(cookie).toBeDefined();
  return cookie!.value;
}

function queue(harness: Harness, user: string, session: string) {
  return harness.app.inject({ url: `/${user}/api/queue`, cookies: { [SESSION_COOKIE]: session } });
}

describe('sessions', () => {
  it('a token checked once still expires on time, and a changed token never passes', async () => {
    h = await startHarness();
    const signer = h.services.auth.sessions;
    const now = 1_900_000_000;
    const token = signer.sign({ u: 'alice', v: 1, e: now + 60, s: 'abcdefghijklmnopqrstuv', c: 1 });
    expect(signer.verify(token, now)).toMatchObject({ u: 'alice' });
    expect(signer.verify(token, now)).toMatchObject({ u: 'alice' });
    expect(signer.verify(token, now + 60)).toBeNull();
    const [body, mac] = token.split('.');
    const forged = Buffer.from(
      JSON.stringify({ u: 'bob', v: 1, e: now + 60, s: 'abcdefghijklmnopqrstuv', c: 1 }),
    ).toString('base64url');
    expect(signer.verify(`${forged}.${mac}`, now)).toBeNull();
    expect(signer.verify(`${body}.${mac!.slice(0, -1)}${mac!.endsWith('A') ? 'B' : 'A'}`, now)).toBeNull();
  });

  it('logout ends the session on the server: the old cookie no longer works', async () => {
    h = await startHarness();
    await h.addUser('alice');
    const first = await signIn(h, 'alice');
    const second = await signIn(h, 'alice');
    expect((await queue(h, 'alice', first)).statusCode).toBe(200);

    const out = await h.app.inject({ method: 'POST', url: '/logout', cookies: { [SESSION_COOKIE]: first } });
    expect(out.statusCode).toBe(200);
    const replay = await queue(h, 'alice', first);
    expect(replay.statusCode).toBe(401);
    // Only that session ended: alice's other browser stays signed in.
    expect((await queue(h, 'alice', second)).statusCode).toBe(200);
  });

  it('a password reset ends every session of that user', async () => {
    h = await startHarness();
    await h.addUser('alice');
    const session = await signIn(h, 'alice');
    await h.services.accounts.resetPassword('alice', 'a-new-password-123');
    expect((await queue(h, 'alice', session)).statusCode).toBe(401);
  });

  it('removing an account ends its sessions, even if the name is created again', async () => {
    h = await startHarness();
    await h.addUser('alice');
    const session = await signIn(h, 'alice');
    await h.services.accounts.remove('alice');
    expect((await queue(h, 'alice', session)).statusCode).toBe(401);
    // Re-created (same password version 1): the old cookie belongs to the removed account.
    await h.services.accounts.create('alice', 'participant', 'another-password-123');
    expect((await queue(h, 'alice', session)).statusCode).toBe(401);
  });

  it('drops revocations of sessions that expired anyway', async () => {
    h = await startHarness();
    const revocations = new SessionRevocations(h.services.store);
    const now = 2_000_000_000;
    const claims = (e: number, s: string) => ({ u: 'alice', v: 1, e, s, c: 1 });
    await revocations.revoke(claims(now + 10, 'aaaaaaaaaaaaaaaaaaaaaa'), now);
    await revocations.revoke(claims(now + 20, 'bbbbbbbbbbbbbbbbbbbbbb'), now);
    await revocations.revoke(claims(now + 30, 'cccccccccccccccccccccc'), now + 15);
    expect(await h.services.store.listBlobs(REVOKED_SESSIONS_NS)).toHaveLength(2);
    expect(await revocations.isRevoked(claims(now + 10, 'aaaaaaaaaaaaaaaaaaaaaa'))).toBe(false);
    expect(await revocations.isRevoked(claims(now + 20, 'bbbbbbbbbbbbbbbbbbbbbb'))).toBe(true);
  });
});
