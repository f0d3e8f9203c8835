import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/support/app-harness.js';

const PROMPT = {
  '1': { class_type: 'EmptyImage', inputs: { width: 64, height: 64, batch_size: 1, color: 0 } },
  '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'demo' } },
};

let h: Harness;
let admin: string;

beforeEach(async () => {
  h = await startHarness({ API_TOKENS: 'ci:secret-api-token-123', LOGIN_MAX_FAILURES: '3' });
  admin = await h.addUser('teacher', 'instructor');
  await h.addUser('alice');
  await h.addUser('bob');
});
afterEach(() => h.close());

function submit(user: string, extra: Record<string, unknown> = {}, auth = admin) {
  return h.app.inject({
    method: 'POST',
    url: '/api/v1/jobs',
    headers: { authorization: auth },
    payload: { user, prompt: PROMPT, ...extra },
  });
}

describe('health', () => {
  it('answers /health and /ready without auth', async () => {
    expect((await h.app.inject('/health')).json()).toMatchObject({ status: 'ok' });
    expect((await h.app.inject('/ready')).json()).toEqual({ status: 'ready', store: 'sqlite' });
  });

  it('reports 503 from /ready when the store is gone', async () => {
    await h.services.store.close();
    const res = await h.app.inject('/ready');
    expect(res.statusCode).toBe(503);
    expect(res.json().error.code).toBe('STORE_UNAVAILABLE');
    expect(res.headers['retry-after']).toBe('5');
  });
});

describe('authentication and authorisation of /api/v1', () => {
  it('challenges a caller without credentials', async () => {
    const res = await h.app.inject('/api/v1/queue');
    expect(res.statusCode).toBe(401);
    expect(res.headers['www-authenticate']).toMatch(/^Basic /);
    expect(res.json().error.code).toBe('UNAUTHORIZED');
  });

  it('refuses participants with 403', async () => {
    const alice = h.basic('alice', 'pw-alice-0123456789');
    const res = await h.app.inject({ url: '/api/v1/queue', headers: { authorization: alice } });
    expect(res.statusCode).toBe(403);
    expect(res.json().error.code).toBe('FORBIDDEN');
  });

  it('refuses a wrong password without saying whether the user exists', async () => {
    const a = await h.app.inject({
      url: '/api/v1/queue',
      headers: { authorization: h.basic('teacher', 'nope') },
    });
    const b = await h.app.inject({
      url: '/api/v1/queue',
      headers: { authorization: h.basic('ghost', 'nope') },
    });
    expect(a.statusCode).toBe(401);
    expect(a.json()).toEqual(b.json());
  });

  it('throttles repeated failures with 429 and Retry-After, even for the right password', async () => {
    for (let i = 0; i < 3; i++) {
      await h.app.inject({ url: '/api/v1/queue', headers: { authorization: h.basic('teacher', 'wrong') } });
    }
    const res = await h.app.inject({
      url: '/api/v1/queue',
      headers: { authorization: h.basic('teacher', 'pw-teacher-0123456789') },
    });
    expect(res.statusCode).toBe(429);
    expect(res.json().error.code).toBe('LOGIN_THROTTLED');
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
  });

  it('accepts a configured Bearer API token and refuses an unknown one', async () => {
    const ok = await h.app.inject({
      url: '/api/v1/queue',
      headers: { authorization: 'Bearer secret-api-token-123' },
    });
    expect(ok.statusCode).toBe(200);
    const bad = await h.app.inject({ url: '/api/v1/queue', headers: { authorization: 'Bearer nope' } });
    expect(bad.statusCode).toBe(401);
    expect(bad.json().error.code).toBe('INVALID_TOKEN');
  });

  it('sets an HttpOnly SameSite=Lax session cookie after a Basic login, which then works alone', async () => {
    const first = await h.app.inject({ url: '/api/v1/queue', headers: { authorization: admin } });
    const cookie = first.cookies.find((c) => c.name === 'cm_session');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/' });
    const again = await h.app.inject({ url: '/api/v1/queue', cookies: { cm_session: cookie!.value } });
    expect(again.statusCode).toBe(200);
  });

  it('ends sessions when the password is reset', async () => {
    const first = await h.app.inject({ url: '/api/v1/queue', headers: { authorization: admin } });
    const value = first.cookies.find((c) => c.name === 'cm_session')!.value;
    await h.services.accounts.resetPassword('teacher');
    const res = await h.app.inject({ url: '/api/v1/queue', cookies: { cm_session: value } });
    expect(res.statusCode).toBe(401);
  });

  it('refuses a forged or tampered session cookie', async () => {
    const first = await h.app.inject({
      url: '/api/v1/queue',
      headers: { authorization: h.basic('alice', 'pw-alice-0123456789') },
    });
    const value = first.cookies.find((c) => c.name === 'cm_session')!.value;
    const [, mac] = value.split('.');
    const forged = `${Buffer.from(JSON.stringify({ u: 'teacher', v: 1, e: 4_000_000_000 })).toString('base64url')}.${mac}`;
    const res = await h.app.inject({ url: '/api/v1/queue', cookies: { cm_session: forged } });
    expect(res.statusCode).toBe(401);
  });

  it('refuses a cross-site write carried by a session cookie', async () => {
    const first = await h.app.inject({ url: '/api/v1/queue', headers: { authorization: admin } });
    const value = first.cookies.find((c) => c.name === 'cm_session')!.value;
    const res = await h.app.inject({
      method: 'PUT',
      url: '/api/v1/queue',
      cookies: { cm_session: value },
      headers: { origin: 'https://evil.example', host: 'localhost' },
      payload: { paused: true },
    });
    expect(res.statusCode).toBe(403);
    expect(res.json().error.code).toBe('CSRF_FAILED');
    expect((await h.services.store.getSettings()).paused).toBe(false);
  });
});

describe('login form', () => {
  it('signs a participant in and sends them to their own page', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'user=alice&password=pw-alice-0123456789&next=',
    });
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toBe('/alice/');
    expect(res.cookies.some((c) => c.name === 'cm_session')).toBe(true);
  });

  it('never redirects off-site', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/login',
      payload: { user: 'alice', password: 'pw-alice-0123456789', next: '//evil.example/x' },
    });
    expect(res.json().next).toBe('/alice/');
  });

  it('shows the form again with a message on a wrong password', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'user=alice&password=wrong',
    });
    expect(res.statusCode).toBe(401);
    expect(res.body).toContain('The user name or password is wrong.');
  });

  it('sends a browser without a session to the login page', async () => {
    const res = await h.app.inject({ url: '/api/v1/queue', headers: { accept: 'text/html' } });
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toBe('/login?next=%2Fapi%2Fv1%2Fqueue');
  });
});

describe('jobs', () => {
  it('accepts a job for a user and answers 201 with its place', async () => {
    const res = await submit('alice');
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({
      user: 'alice',
      status: 'pending',
      position: 1,
      priority: 'normal',
      attempts: 0,
    });
    const got = await h.app.inject({
      url: `/api/v1/jobs/${res.json().id}`,
      headers: { authorization: admin },
    });
    expect(got.json()).toMatchObject({ id: res.json().id, prompt: PROMPT, position: 1 });
  });

  it('serves users round robin: bob waits behind one of alice’s jobs, not three', async () => {
    for (const u of ['alice', 'alice', 'alice', 'bob']) expect((await submit(u)).statusCode).toBe(201);
    const q = (await h.app.inject({ url: '/api/v1/queue', headers: { authorization: admin } })).json();
    expect(q.mode).toBe('round_robin');
    expect(q.pending.map((p: { user: string }) => p.user)).toEqual(['alice', 'bob', 'alice', 'alice']);
    expect(q.counts.pending).toBe(4);
    expect(q.byUser.alice.pending).toBe(3);
  });

  it('switches to fifo live and reorders', async () => {
    for (const u of ['alice', 'alice', 'bob']) await submit(u);
    const res = await h.app.inject({
      method: 'PUT',
      url: '/api/v1/queue',
      headers: { authorization: admin },
      payload: { mode: 'fifo' },
    });
    expect(res.json().pending.map((p: { user: string }) => p.user)).toEqual(['alice', 'alice', 'bob']);
  });

  it('moves a job to the front and changes its priority', async () => {
    await submit('alice');
    const last = (await submit('bob')).json();
    const res = await h.app.inject({
      method: 'PATCH',
      url: `/api/v1/jobs/${last.id}`,
      headers: { authorization: admin },
      payload: { front: true, priority: 'high' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ front: true, priority: 'high', position: 1 });
  });

  it('cancels a pending job once; a second cancel is a 409', async () => {
    const job = (await submit('alice')).json();
    const del = await h.app.inject({
      method: 'DELETE',
      url: `/api/v1/jobs/${job.id}`,
      headers: { authorization: admin },
    });
    expect(del.json().status).toBe('cancelled');
    const again = await h.app.inject({
      method: 'DELETE',
      url: `/api/v1/jobs/${job.id}`,
      headers: { authorization: admin },
    });
    expect(again.statusCode).toBe(409);
    expect(again.json().error.code).toBe('JOB_FINISHED');
  });

  it('lists jobs by user and status with cursor pagination', async () => {
    for (let i = 0; i < 5; i++) await submit('alice');
    await submit('bob');
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/api/v1/jobs?user=alice&status=pending&limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const page = (await h.app.inject({ url, headers: { authorization: admin } })).json();
      expect(page.jobs.length).toBeLessThanOrEqual(2);
      seen.push(...page.jobs.map((j: { id: string; user: string }) => (expect(j.user).toBe('alice'), j.id)));
      cursor = page.nextCursor;
    } while (cursor);
    expect(new Set(seen).size).toBe(5);
  });

  it('answers 429 with Retry-After and a clear message over the pending limit', async () => {
    for (let i = 0; i < 10; i++) expect((await submit('alice')).statusCode).toBe(201);
    const res = await submit('alice');
    expect(res.statusCode).toBe(429);
    expect(res.headers['retry-after']).toBeDefined();
    expect(res.json().error).toMatchObject({
      code: 'QUEUE_LIMIT',
      message: expect.stringContaining('alice'),
    });
    expect((await submit('bob')).statusCode).toBe(201);
  });

  it('keeps every job across a restart', async () => {
    const ids = [(await submit('alice')).json().id, (await submit('bob')).json().id];
    await h.app.close();
    await h.services.store.close();
    const { openSqliteStore } = await import('../store/sqlite/sqlite-store.js');
    const { defaultSettings } = await import('../store/index.js');
    const store = await openSqliteStore({
      path: `${h.dataDir}/comfy-multi.db`,
      defaults: defaultSettings(h.config),
    });
    for (const id of ids) expect((await store.getJob(id))?.status).toBe('pending');
    await store.close();
  });
});

describe('bad input', () => {
  const cases: [string, Record<string, unknown>, number, string][] = [
    ['unknown user', { user: 'nobody', prompt: PROMPT }, 404, 'USER_NOT_FOUND'],
    ['no prompt', { user: 'alice' }, 400, 'VALIDATION_FAILED'],
    ['empty prompt', { user: 'alice', prompt: {} }, 400, 'INVALID_PROMPT'],
    ['node without class_type', { user: 'alice', prompt: { '1': { inputs: {} } } }, 400, 'INVALID_PROMPT'],
    ['bad priority', { user: 'alice', prompt: PROMPT, priority: 'urgent' }, 400, 'VALIDATION_FAILED'],
    ['unknown field', { user: 'alice', prompt: PROMPT, evil: 1 }, 400, 'VALIDATION_FAILED'],
    ['bad user name', { user: '../etc', prompt: PROMPT }, 400, 'VALIDATION_FAILED'],
  ];
  it.each(cases)('%s → %i %s', async (_name, payload, status, code) => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/api/v1/jobs',
      headers: { authorization: admin },
      payload,
    });
    expect(res.statusCode).toBe(status);
    expect(res.json().error.code).toBe(code);
  });

  it('answers bad JSON with 400 INVALID_JSON', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/api/v1/jobs',
      headers: { authorization: admin, 'content-type': 'application/json' },
      payload: '{"user": "alice", ',
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('INVALID_JSON');
  });

  it('answers an oversized body with 413', async () => {
    const small = await startHarness({ BODY_LIMIT: '1kb' });
    try {
      const auth = await small.addUser('teacher', 'instructor');
      const res = await small.app.inject({
        method: 'POST',
        url: '/api/v1/jobs',
        headers: { authorization: auth, 'content-type': 'application/json' },
        payload: JSON.stringify({ user: 'x', prompt: PROMPT, metadata: { pad: 'x'.repeat(5000) } }),
      });
      expect(res.statusCode).toBe(413);
      expect(res.json().error.code).toBe('PAYLOAD_TOO_LARGE');
    } finally {
      await small.close();
    }
  });

  it('answers unknown jobs and routes with JSON 404s', async () => {
    const job = await h.app.inject({ url: '/api/v1/jobs/nope', headers: { authorization: admin } });
    expect(job.json().error.code).toBe('JOB_NOT_FOUND');
    const route = await h.app.inject({ url: '/api/v1/nothing-here', headers: { authorization: admin } });
    expect(route.statusCode).toBe(404);
    expect(route.json().error.code).toBe('NOT_FOUND');
  });

  it('never answers 500 or leaks a stack trace, whatever the body', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue(), async (body) => {
        const res = await h.app.inject({
          method: 'POST',
          url: '/api/v1/jobs',
          headers: { authorization: admin, 'content-type': 'application/json' },
          payload: JSON.stringify(body),
        });
        expect(res.statusCode).toBeLessThan(500);
        expect(res.body).not.toMatch(/at .*\.(ts|js):\d+/);
        expect(res.json()).toHaveProperty('error.code');
      }),
      { numRuns: 150 },
    );
  });
});
