import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/support/app-harness.js';
import { updateLoginMaterial } from './login-material-update.js';
import { participantsFilePath, readParticipantsFile } from './login-material.js';
import { SignInTokens } from './sign-in-tokens.js';
import { decodeSvgQr } from '../../test/support/qr-decode.js';

const HTML = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' };
let h: Harness;
const API_TOKEN = 'start-routes-api-token-0123456789';

beforeEach(async () => {
  h = await startHarness({ PUBLIC_URL: 'https://workshop.example.org/', API_TOKENS: `ci:${API_TOKEN}` });
});
afterEach(async () => {
  await h.close();
});

function cookieOf(res: { headers: Record<string, unknown> }): string {
  const set = res.headers['set-cookie'];
  const first = Array.isArray(set) ? String(set[0]) : String(set);
  return first.split(';')[0]!;
}

async function linkFor(name: string): Promise<string> {
  const account = (await h.services.accounts.get(name))!;
  return (await new SignInTokens(h.services.store).issue(account)).token;
}

describe('sign-in links', () => {
  it('sign the participant in and send them to their ComfyUI, without the token in a Referer', async () => {
    await h.addUser('alice');
    const token = await linkFor('alice');
    const res = await h.app.inject({ url: `/login/t/${token}`, headers: HTML });
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toBe('/alice/');
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    expect(res.headers['cache-control']).toBe('no-store');
    const cookie = cookieOf(res);
    expect(String(res.headers['set-cookie'])).toMatch(/HttpOnly/i);
    // The session works like one from the password form: / now sends alice home.
    const home = await h.app.inject({ url: '/', headers: { ...HTML, cookie } });
    expect(home.statusCode).toBe(303);
    expect(home.headers.location).toBe('/alice/');
    const me = await h.app.inject({ url: '/alice/api/system_stats', headers: { cookie } });
    expect(me.statusCode).not.toBe(401);
  });

  it('refuse a regenerated, revoked or made-up token: a page for browsers, JSON for scripts', async () => {
    await h.addUser('alice');
    const old = await linkFor('alice');
    const current = await linkFor('alice');
    for (const t of [old, 'alice.' + 'x'.repeat(43), 'garbage', 'bob.' + current.split('.')[1]]) {
      const res = await h.app.inject({ url: `/login/t/${t}` });
      expect(res.statusCode).toBe(401);
      expect(res.json().error.code).toBe('SIGN_IN_LINK_INVALID');
      expect(res.headers['set-cookie']).toBeUndefined();
    }
    await new SignInTokens(h.services.store).revoke('alice');
    const page = await h.app.inject({ url: `/login/t/${current}`, headers: HTML });
    expect(page.statusCode).toBe(401);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.body).toContain('SIGN_IN_LINK_INVALID');
    expect(page.body).toContain('href="/"');
  });

  it('are for participants only: an instructor’s token does not sign in', async () => {
    await h.addUser('teach', 'instructor');
    const token = await linkFor('teach');
    const res = await h.app.inject({ url: `/login/t/${token}` });
    expect(res.statusCode).toBe(401);
  });
});

describe('the start page /', () => {
  it('shows the sign-in form when signed out, then sends each to their place', async () => {
    const alice = await h.addUser('alice');
    const teach = await h.addUser('teach', 'instructor');
    const out = await h.app.inject({ url: '/', headers: HTML });
    expect(out.statusCode).toBe(200);
    expect(out.body).toContain('<form method="post" action="/login"');
    const a = await h.app.inject({ url: '/', headers: { ...HTML, authorization: alice } });
    expect(a.headers.location).toBe('/alice/');
    const t = await h.app.inject({ url: '/', headers: { ...HTML, authorization: teach } });
    expect(t.headers.location).toBe('/admin/');
    const form = await h.app.inject({
      method: 'POST',
      url: '/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'user=teach&password=pw-teach-0123456789&next=',
    });
    expect(form.headers.location).toBe('/admin/');
  });

  it('answers API clients with JSON', async () => {
    const res = await h.app.inject({ url: '/', headers: { accept: 'application/json' } });
    expect(res.json()).toMatchObject({ service: 'comfy-multi', signedInAs: null });
  });
});

describe('error pages', () => {
  it('a neighbour’s space: a 403 page for the browser, JSON for the frontend’s fetches', async () => {
    const alice = await h.addUser('alice');
    await h.addUser('bob');
    const page = await h.app.inject({ url: '/bob/', headers: { ...HTML, authorization: alice } });
    expect(page.statusCode).toBe(403);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.body).toContain('/alice/');
    expect(page.body).toContain('FORBIDDEN');
    expect(page.body).not.toMatch(/at .*\.ts:\d+/);
    const api = await h.app.inject({ url: '/bob/api/queue', headers: { ...HTML, authorization: alice } });
    expect(api.statusCode).toBe(403);
    expect(api.json().error.code).toBe('FORBIDDEN');
    const fetchLike = await h.app.inject({ url: '/bob/', headers: { authorization: alice, accept: '*/*' } });
    expect(fetchLike.json().error.code).toBe('FORBIDDEN');
  });

  it('an unknown page: 404 page; /api/ paths and non-browsers keep JSON', async () => {
    const page = await h.app.inject({ url: '/No.such/page', headers: HTML });
    expect(page.statusCode).toBe(404);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.body).toContain('Page not found');
    const api = await h.app.inject({ url: '/api/v1/nothing', headers: HTML });
    expect(api.statusCode).toBe(404);
    expect(api.headers['content-type']).toMatch(/json/);
    const curl = await h.app.inject({ url: '/No.such/page' });
    expect(curl.json().error.code).toBe('NOT_FOUND');
    const xhr = await h.app.inject({ url: '/No.such/page', headers: { ...HTML, 'sec-fetch-mode': 'cors' } });
    expect(xhr.headers['content-type']).toMatch(/json/);
  });
});

describe('GET /api/v1/users/cards', () => {
  it('serves instructors the cards of the participants file, with a QR code per participant', async () => {
    const teach = await h.addUser('teach', 'instructor');
    await h.addUser('alice');
    await h.addUser('bob');
    const file = participantsFilePath(h.dataDir);
    await updateLoginMaterial(h.services.store, file, 'https://workshop.example.org', { issue: 'missing' });
    const tokens = readParticipantsFile(file);
    const res = await h.app.inject({ url: '/api/v1/users/cards', headers: { authorization: teach } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/text\/html/);
    expect(res.headers['content-security-policy']).toContain("default-src 'none'");
    const svgs = [...res.body.matchAll(/<svg class="qr"[\s\S]*?<\/svg>/g)].map((m) => m[0]);
    expect(svgs.map((s) => decodeSvgQr(s))).toEqual([
      `https://workshop.example.org/login/t/${tokens.get('alice')!.token}`,
      `https://workshop.example.org/login/t/${tokens.get('bob')!.token}`,
    ]);
    const one = await h.app.inject({
      url: '/api/v1/users/cards?users=bob',
      headers: { authorization: teach },
    });
    expect([...one.body.matchAll(/data-user="([^"]+)"/g)].map((m) => m[1])).toEqual(['bob']);
    const participant = await h.app.inject({
      url: '/api/v1/users/cards',
      headers: { authorization: h.basic('alice', 'pw-alice-0123456789') },
    });
    expect(participant.statusCode).toBe(403);
  });

  it('a password reset on the dashboard reaches the participants file and the next cards', async () => {
    await h.addUser('alice');
    const file = participantsFilePath(h.dataDir);
    await updateLoginMaterial(h.services.store, file, 'https://workshop.example.org', { issue: 'missing' });
    const before = readParticipantsFile(file).get('alice')!;
    const res = await h.app.inject({
      method: 'POST',
      url: '/admin/api/users/alice/reset-password',
      headers: { authorization: `Bearer ${API_TOKEN}` },
    });
    expect(res.statusCode).toBe(200);
    const password = res.json().password as string;
    expect(readParticipantsFile(file).get('alice')).toMatchObject({ password, token: before.token });
    expect(readFileSync(join(h.dataDir, 'login-cards.html'), 'utf8')).toContain(`<code>${password}</code>`);
    const cards = await h.app.inject({
      url: '/api/v1/users/cards',
      headers: { authorization: `Bearer ${API_TOKEN}` },
    });
    expect(cards.body).toContain(`<code>${password}</code>`);
  });
});
