import { afterEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/support/app-harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** Logs in over `inject` with extra headers; returns the Set-Cookie header and HSTS header. */
async function login(env: Record<string, string>, headers: Record<string, string> = {}) {
  h = await startHarness(env);
  await h.addUser('user001');
  const res = await h.app.inject({
    method: 'POST',
    url: '/login',
    headers,
    payload: { user: 'user001', password: 'pw-user001-0123456789' },
  });
  expect(res.statusCode).toBe(200);
  return { cookie: String(res.headers['set-cookie']), hsts: res.headers['strict-transport-security'] };
}

describe('Secure cookies and HSTS', () => {
  it('plain HTTP: no Secure, no HSTS', async () => {
    const r = await login({});
    expect(r.cookie).toMatch(/^cm_session=/);
    expect(r.cookie).not.toMatch(/;\s*Secure/i);
    expect(r.hsts).toBeUndefined();
  });

  it('a trusted proxy saying https: Secure and HSTS with the configured max-age', async () => {
    const r = await login({ TRUST_PROXY: 'true', HSTS_MAX_AGE: '600' }, { 'x-forwarded-proto': 'https' });
    expect(r.cookie).toMatch(/;\s*Secure/i);
    expect(r.hsts).toBe('max-age=600');
  });

  it('X-Forwarded-Proto from an untrusted client changes nothing', async () => {
    const r = await login({}, { 'x-forwarded-proto': 'https' });
    expect(r.cookie).not.toMatch(/;\s*Secure/i);
    expect(r.hsts).toBeUndefined();
  });

  it('an https PUBLIC_URL makes cookies Secure even on a plain hop, but sends no HSTS over HTTP', async () => {
    const r = await login({ PUBLIC_URL: 'https://workshop.example.org' });
    expect(r.cookie).toMatch(/;\s*Secure/i);
    expect(r.hsts).toBeUndefined();
  });

  it('HSTS_MAX_AGE=0 sends no HSTS header', async () => {
    const r = await login({ TRUST_PROXY: 'true', HSTS_MAX_AGE: '0' }, { 'x-forwarded-proto': 'https' });
    expect(r.cookie).toMatch(/;\s*Secure/i);
    expect(r.hsts).toBeUndefined();
  });
});
