/**
 * Login hardening through the real app (issue 10): throttling decided before bcrypt, bounded bcrypt
 * work, no lockout of a room behind one NAT or of a named participant, redirects only to local
 * paths, login CSRF refused.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/support/app-harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const pw = (name: string) => `pw-${name}-0123456789`;

async function start(env: Record<string, string> = {}): Promise<Harness> {
  h = await startHarness(env);
  return h;
}

function login(
  harness: Harness,
  user: string,
  password: string,
  opts: { ip?: string; headers?: Record<string, string>; next?: string; form?: boolean } = {},
) {
  const fields = { user, password, ...(opts.next !== undefined ? { next: opts.next } : {}) };
  return harness.app.inject({
    method: 'POST',
    url: '/login',
    remoteAddress: opts.ip ?? '10.0.0.1',
    ...(opts.form
      ? {
          payload: new URLSearchParams(fields).toString(),
          headers: { 'content-type': 'application/x-www-form-urlencoded', ...opts.headers },
        }
      : { payload: fields, headers: opts.headers ?? {} }),
  });
}

describe('login throttling', () => {
  it('checks at most the allowed number of passwords in a concurrent burst from one address', async () => {
    const harness = await start({ LOGIN_QUEUE_MAX: '1000' });
    await harness.addUser('bob');
    const results = await Promise.all(Array.from({ length: 300 }, () => login(harness, 'bob', 'wrong')));
    const codes = results.map((r) => r.statusCode);
    // Each 401 is one bcrypt check; before the fix, ~all 300 were checked.
    expect(codes.filter((c) => c === 401)).toHaveLength(5);
    expect(codes.filter((c) => c === 429)).toHaveLength(295);
    expect(harness.services.bcrypt.stats().compares).toBe(5);
    const metrics = await harness.app.inject({ url: '/metrics' });
    expect(metrics.body).toContain('comfy_multi_login_password_checks_total 5');
    const throttled = results.find((r) => r.statusCode === 429)!;
    expect(throttled.json().error.code).toBe('LOGIN_THROTTLED');
    expect(Number(throttled.headers['retry-after'])).toBeGreaterThan(0);
  });

  it('refuses logins beyond the bcrypt queue at once with 503 LOGIN_BUSY and Retry-After', async () => {
    const harness = await start({ LOGIN_QUEUE_MAX: '2', LOGIN_BCRYPT_THREADS: '1' });
    for (let i = 0; i < 12; i++) await harness.addUser(`user${i}`);
    const hashesBefore = harness.services.bcrypt.stats().compares;
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => login(harness, `user${i}`, 'wrong', { ip: `10.0.1.${i}` })),
    );
    const busy = results.filter((r) => r.statusCode === 503);
    expect(busy.length).toBeGreaterThanOrEqual(9);
    expect(busy[0]!.json().error.code).toBe('LOGIN_BUSY');
    expect(Number(busy[0]!.headers['retry-after'])).toBeGreaterThan(0);
    expect(harness.services.bcrypt.stats().compares - hashesBefore).toBeLessThanOrEqual(3);
    // A refused attempt counted no failure: the same people can sign in right after.
    const ok = await login(harness, 'user0', pw('user0'), { ip: '10.0.1.0' });
    expect(ok.statusCode).toBe(200);
  });

  it("never refuses other people at a shared address because of someone else's typos", async () => {
    const harness = await start();
    await harness.addUser('alice');
    await harness.addUser('bob');
    for (let i = 0; i < 8; i++) await login(harness, 'bob', 'typo');
    const res = await login(harness, 'alice', pw('alice'));
    expect(res.statusCode).toBe(200);
  });

  it('forgets the typos of one person at one address after a correct login', async () => {
    const harness = await start({ LOGIN_MAX_FAILURES: '3' });
    await harness.addUser('bob');
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 2; i++) expect((await login(harness, 'bob', 'typo')).statusCode).toBe(401);
      expect((await login(harness, 'bob', pw('bob'))).statusCode).toBe(200);
    }
  });

  it('does not let a guesser elsewhere lock a named participant out', async () => {
    const harness = await start();
    await harness.addUser('alice');
    for (let i = 0; i < 10; i++) await login(harness, 'alice', `guess${i}`, { ip: '198.51.100.7' });
    const res = await login(harness, 'alice', pw('alice'), { ip: '10.0.0.1' });
    expect(res.statusCode).toBe(200);
  });

  it('lets a participant back in on a browser they signed in from, while someone at the same address guesses', async () => {
    const harness = await start();
    await harness.addUser('alice');
    await harness.addUser('mallory');
    const first = await login(harness, 'alice', pw('alice'));
    const device = first.cookies.find((c) => c.name === 'cm_device')!;
    expect(device).toMatchObject({ path: '/login', httpOnly: true });
    // Mallory, behind the same venue NAT, keeps guessing alice's password, with her own device cookie.
    const own = (await login(harness, 'mallory', pw('mallory'))).cookies.find((c) => c.name === 'cm_device')!;
    // A new password, so the correct one is not already remembered from the first login.
    await harness.services.accounts.resetPassword('alice', 'alice-new-password-123');
    for (let i = 0; i < 10; i++) {
      await login(harness, 'alice', `guess${i}`, { headers: { cookie: `cm_device=${own.value}` } });
    }
    // Without the cookie, alice at that address is slowed like mallory (the known limit).
    const stranger = await login(harness, 'alice', 'alice-new-password-123');
    expect(stranger.statusCode).toBe(429);
    // A forged device cookie is just ignored.
    const forged = await login(harness, 'alice', 'alice-new-password-123', {
      headers: { cookie: `cm_device=${device.value.slice(0, -2)}xx` },
    });
    expect(forged.statusCode).toBe(429);
    const back = await login(harness, 'alice', 'alice-new-password-123', {
      headers: { cookie: `cm_device=${device.value}` },
    });
    expect(back.statusCode).toBe(200);
  });

  it('checks an unknown name against a dummy hash, like a known one', async () => {
    const harness = await start();
    await harness.addUser('alice');
    const before = harness.services.bcrypt.stats().compares;
    const known = await login(harness, 'alice', 'wrong');
    const unknown = await login(harness, 'nobody', 'wrong', { ip: '10.0.0.2' });
    expect(harness.services.bcrypt.stats().compares - before).toBe(2);
    expect(unknown.statusCode).toBe(401);
    expect(unknown.json()).toEqual(known.json());
  });
});

describe('login redirect', () => {
  const evil = [
    '/\t/evil.example',
    '/%09/evil.example',
    '/\n/evil.example',
    '/%0a/evil.example',
    '//evil.example',
    '/\\evil.example',
    '/%5cevil.example',
    '/%2f/evil.example',
    '/%252f%252fevil.example',
    'https://evil.example/',
    'javascript:alert(1)',
    ' /alice/',
    '/alice/\r\nSet-Cookie: x=1',
  ];

  it.each(evil)('sends %j to the default landing page, never elsewhere', async (next) => {
    const harness = await start();
    await harness.addUser('alice');
    const res = await login(harness, 'alice', pw('alice'), { next, form: true });
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toBe('/alice/');
  });

  it('keeps a local next path', async () => {
    const harness = await start();
    await harness.addUser('alice');
    const res = await login(harness, 'alice', pw('alice'), { next: '/alice/?tab=queue', form: true });
    expect(res.headers.location).toBe('/alice/?tab=queue');
  });

  it('does not echo an unsafe next into the login page', async () => {
    const harness = await start();
    const res = await harness.app.inject({ url: '/login?next=%2F%09%2Fevil.example' });
    expect(res.statusCode).toBe(200);
    expect(res.body).not.toContain('evil.example');
  });
});

describe('login CSRF', () => {
  it('refuses a sign-in posted from another site', async () => {
    const harness = await start();
    await harness.addUser('alice');
    const cases: Record<string, string>[] = [
      { origin: 'https://evil.example' },
      { origin: 'null' },
      { referer: 'https://evil.example/page' },
      { 'sec-fetch-site': 'cross-site' },
    ];
    for (const headers of cases) {
      const res = await login(harness, 'alice', pw('alice'), { headers, form: true });
      expect(res.statusCode, JSON.stringify(headers)).toBe(403);
      expect(res.headers['set-cookie']).toBeUndefined();
      const json = await login(harness, 'alice', pw('alice'), { headers });
      expect(json.json().error.code).toBe('CSRF_FAILED');
    }
  });

  it('accepts our own origin, and scripts that send neither Origin nor Referer', async () => {
    const harness = await start();
    await harness.addUser('alice');
    const same = await login(harness, 'alice', pw('alice'), {
      headers: { origin: 'http://localhost:80', 'sec-fetch-site': 'same-origin' },
      form: true,
    });
    expect(same.statusCode).toBe(303);
    const script = await login(harness, 'alice', pw('alice'));
    expect(script.statusCode).toBe(200);
  });
});
