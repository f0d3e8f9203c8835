/**
 * Who may use the dashboard (participants, browsers without a session, instructors) and the CSRF
 * protection of its actions and live stream.
 */
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { API_TOKEN, type ControlPlane } from '../../test/support/worker-hub-kit.js';
import { AUDIT_NS } from './audit-log.js';
import { CSRF_HEADER } from './csrf.js';
import { ALICE_PW, TEACHER_PW, actions, adminControlPlane, basic } from '../../test/support/admin-kit.js';

let cp: ControlPlane;
const { login, instructorSession, enqueue, auditEntries } = adminControlPlane((started) => {
  cp = started;
});

describe('who may use the dashboard', () => {
  it('gives a participant 403 on /admin/, every read and every action, and changes nothing', async () => {
    const alice = basic('alice', ALICE_PW);
    const page = await cp.app.inject({
      url: '/admin/',
      headers: { authorization: alice, accept: 'text/html' },
    });
    expect(page.statusCode).toBe(403);
    expect(page.body).toContain('/alice/');
    for (const url of [
      '/admin/api/me',
      '/admin/api/state',
      '/admin/api/audit',
      '/admin/api/live',
      '/api/v1/status',
    ]) {
      const res = await cp.app.inject({ url, headers: { authorization: alice } });
      expect(res.statusCode, url).toBe(403);
      expect(res.json().error.code).toBe('FORBIDDEN');
    }
    const job = await enqueue('bob');
    // Even with a session and a (stolen, instructor's) CSRF token, a participant is refused.
    const { csrf } = await instructorSession();
    const aliceCookie = await login('alice', ALICE_PW);
    for (const a of actions(job.id)) {
      for (const auth of [
        { headers: { authorization: alice } },
        { cookies: { cm_session: aliceCookie }, headers: { [CSRF_HEADER]: csrf } },
      ]) {
        const res = await cp.app.inject({
          method: 'POST',
          url: a.url,
          payload: a.payload as object,
          ...auth,
        });
        expect(res.statusCode, a.url).toBe(403);
        expect(res.json().error.code).toBe('FORBIDDEN');
      }
    }
    expect((await cp.store.getJob(job.id))?.status).toBe('pending');
    expect(await cp.store.getSettings()).toMatchObject({
      mode: 'round_robin',
      paused: false,
      userLimits: {},
    });
    expect(await cp.services.broadcast.get()).toBeNull();
    expect(await cp.store.listBlobs(AUDIT_NS)).toEqual([]);
  });

  it('sends a browser without a session to the login page, and a script to a 401', async () => {
    const page = await cp.app.inject({ url: '/admin/', headers: { accept: 'text/html' } });
    expect(page.statusCode).toBe(303);
    expect(page.headers.location).toBe('/login?next=%2Fadmin%2F');
    for (const a of actions()) {
      const res = await cp.app.inject({ method: 'POST', url: a.url, payload: a.payload as object });
      expect(res.statusCode, a.url).toBe(401);
    }
  });

  it('serves the page to an instructor (or says how to build it), with a strict CSP', async () => {
    const cookie = await login('teacher', TEACHER_PW);
    const res = await cp.app.inject({
      url: '/admin/',
      cookies: { cm_session: cookie },
      headers: { accept: 'text/html' },
    });
    expect([200, 503]).toContain(res.statusCode);
    expect(res.headers['content-type']).toMatch(/text\/html/);
    if (res.statusCode === 200) {
      expect(res.headers['content-security-policy']).toContain("script-src 'self'");
      expect(res.body).not.toMatch(/https?:\/\//); // no CDN, no web fonts
    } else {
      expect(res.body).toContain('npm run build');
    }
  });
});

describe('CSRF protection of actions', () => {
  it('refuses every action from a session without the CSRF header, or with a wrong one', async () => {
    const job = await enqueue();
    const { cookie, csrf } = await instructorSession();
    for (const a of actions(job.id)) {
      for (const headers of [{}, { [CSRF_HEADER]: 'x'.repeat(43) }, { [CSRF_HEADER]: `${csrf}x` }]) {
        const res = await cp.app.inject({
          method: 'POST',
          url: a.url,
          payload: a.payload as object,
          cookies: { cm_session: cookie },
          headers,
        });
        expect(res.statusCode, a.url).toBe(403);
        expect(res.json().error.code).toBe('CSRF_FAILED');
      }
    }
    // A Basic login is a browser's ambient credential too: it needs the token as well.
    const viaBasic = await cp.app.inject({
      method: 'POST',
      url: '/admin/api/queue/pause',
      payload: { paused: true },
      headers: { authorization: basic('teacher', TEACHER_PW) },
    });
    expect(viaBasic.statusCode).toBe(403);
    // A cross-site request is refused even with the right token.
    const crossSite = await cp.app.inject({
      method: 'POST',
      url: '/admin/api/queue/pause',
      payload: { paused: true },
      cookies: { cm_session: cookie },
      headers: { [CSRF_HEADER]: csrf, origin: 'https://evil.example', host: 'localhost' },
    });
    expect(crossSite.statusCode).toBe(403);
    expect(crossSite.json().error.code).toBe('CSRF_FAILED');
    expect((await cp.store.getJob(job.id))?.status).toBe('pending');
    expect((await cp.store.getSettings()).paused).toBe(false);
    expect(await auditEntries()).toEqual([]);
  });

  it('accepts the right token with a session, and a Bearer API token without one', async () => {
    const { cookie, csrf } = await instructorSession();
    const ok = await cp.app.inject({
      method: 'POST',
      url: '/admin/api/queue/pause',
      payload: { paused: true },
      cookies: { cm_session: cookie },
      headers: { [CSRF_HEADER]: csrf, origin: 'http://localhost', host: 'localhost' },
    });
    expect(ok.statusCode).toBe(200);
    const script = await cp.app.inject({
      method: 'POST',
      url: '/admin/api/queue/pause',
      payload: { paused: false },
      headers: { authorization: `Bearer ${API_TOKEN}` },
    });
    expect(script.statusCode).toBe(200);
    expect((await cp.store.getSettings()).paused).toBe(false);
  });

  it('changes the token when the password changes', async () => {
    const before = await instructorSession();
    await cp.services.accounts.resetPassword('teacher', 'another-password-123');
    const cookie = await login('teacher', 'another-password-123');
    const stale = await cp.app.inject({
      method: 'POST',
      url: '/admin/api/queue/pause',
      payload: { paused: true },
      cookies: { cm_session: cookie },
      headers: { [CSRF_HEADER]: before.csrf },
    });
    expect(stale.statusCode).toBe(403);
  });

  it('refuses a cross-site WebSocket to the live stream', async () => {
    const cookie = await login('teacher', TEACHER_PW);
    const wsUrl = `${cp.url.replace('http', 'ws')}/admin/api/live`;
    const status = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(wsUrl, {
        headers: { cookie: `cm_session=${cookie}`, origin: 'https://evil.example' },
      });
      ws.on('open', () => reject(new Error('accepted')));
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => {});
    });
    expect(status).toBe(403);
  });

  it('validates every body with zod', async () => {
    const auth = { authorization: `Bearer ${API_TOKEN}` };
    const job = await enqueue();
    const bad: [string, unknown][] = [
      [`/admin/api/jobs/${job.id}/priority`, { priority: 'urgent' }],
      ['/admin/api/queue/mode', { mode: 'lottery' }],
      ['/admin/api/queue/pause', { paused: 'yes' }],
      ['/admin/api/queue/limits', {}],
      ['/admin/api/queue/limits', { maxPendingPerUser: 0 }],
      ['/admin/api/users/bob/limits', { maxRunningPerUser: 1.5 }],
      ['/admin/api/users/BAD NAME/limits', {}],
      ['/admin/api/workers/x/drain', {}],
      ['/admin/api/broadcast', { message: 'x'.repeat(1001) }],
      [`/admin/api/jobs/${job.id}/cancel`, { extra: true }],
    ];
    for (const [url, payload] of bad) {
      const res = await cp.app.inject({ method: 'POST', url, payload: payload as object, headers: auth });
      expect(res.statusCode, url).toBe(400);
      expect(res.json().error.code).toBe('VALIDATION_FAILED');
    }
  });
});
