import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  API_TOKEN,
  ENV_WORKER_TOKEN,
  PROMPT,
  TestAgent,
  sleep,
  startControlPlane,
  until,
  type ControlPlane,
} from '../../test/support/worker-hub-kit.js';
import type { Job } from '../store/types.js';
import { AUDIT_NS, AuditLog } from './audit-log.js';
import { CSRF_HEADER } from './csrf.js';
import type { AuditEntry, LiveMessage } from './view-types.js';

const TEACHER_PW = 'teacher-password-0123';
const ALICE_PW = 'alice-password-0123';

let cp: ControlPlane;
const agents: TestAgent[] = [];
const sockets: WebSocket[] = [];

beforeEach(async () => {
  cp = await startControlPlane({ MAX_RUNNING_PER_USER: '1' });
  await cp.services.accounts.create('teacher', 'instructor', TEACHER_PW);
  await cp.services.accounts.create('alice', 'participant', ALICE_PW);
  await cp.services.accounts.create('bob', 'participant', 'bob-password-0123');
});

afterEach(async () => {
  for (const s of sockets.splice(0)) s.terminate();
  for (const a of agents.splice(0)) await a.close();
  await cp.close();
});

const basic = (user: string, pw: string) => `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`;

/** Signs in through `/login` like a browser; returns the session cookie value. */
async function login(user: string, password: string): Promise<string> {
  const res = await cp.app.inject({ method: 'POST', url: '/login', payload: { user, password } });
  expect(res.statusCode).toBe(200);
  return res.cookies.find((c) => c.name === 'cm_session')!.value;
}

/** A signed-in instructor's browser: session cookie and CSRF token from /admin/api/me. */
async function instructorSession(): Promise<{ cookie: string; csrf: string }> {
  const cookie = await login('teacher', TEACHER_PW);
  const me = await cp.app.inject({ url: '/admin/api/me', cookies: { cm_session: cookie } });
  expect(me.statusCode).toBe(200);
  expect(me.json()).toMatchObject({ user: 'teacher', role: 'instructor', csrfHeader: CSRF_HEADER });
  return { cookie, csrf: me.json().csrfToken as string };
}

async function enqueue(user = 'alice', metadata: Record<string, unknown> = {}): Promise<Job> {
  return cp.services.queue.enqueue({ user, prompt: PROMPT, metadata });
}

/** Every action endpoint, with a body that is valid (the targets may not exist). */
function actions(jobId = 'no-such-job', workerId = 'envgpu:gpu1'): { url: string; payload: unknown }[] {
  return [
    { url: `/admin/api/jobs/${jobId}/cancel`, payload: {} },
    { url: `/admin/api/jobs/${jobId}/front`, payload: {} },
    { url: `/admin/api/jobs/${jobId}/priority`, payload: { priority: 'high' } },
    { url: '/admin/api/queue/mode', payload: { mode: 'fifo' } },
    { url: '/admin/api/queue/pause', payload: { paused: true } },
    { url: '/admin/api/queue/limits', payload: { maxPendingPerUser: 5 } },
    { url: '/admin/api/users/bob/limits', payload: { maxPendingPerUser: 2 } },
    { url: '/admin/api/users/bob/reset-password', payload: {} },
    { url: `/admin/api/workers/${workerId}/drain`, payload: { draining: true } },
    { url: '/admin/api/broadcast', payload: { message: 'hello' } },
    { url: '/admin/api/alerts/test', payload: {} },
  ];
}

async function auditEntries(): Promise<AuditEntry[]> {
  const res = await cp.app.inject({
    url: '/admin/api/audit?limit=200',
    headers: { authorization: `Bearer ${API_TOKEN}` },
  });
  expect(res.statusCode).toBe(200);
  return res.json().entries as AuditEntry[];
}

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

describe('actions and the audit log', () => {
  it('does every action and records who did what, when, in the store', async () => {
    const { cookie, csrf } = await instructorSession();
    const post = (url: string, payload: unknown = {}) =>
      cp.app.inject({
        method: 'POST',
        url,
        payload: payload as object,
        cookies: { cm_session: cookie },
        headers: { [CSRF_HEADER]: csrf },
      });

    const { agent } = await TestAgent.register(cp.wsUrl, ENV_WORKER_TOKEN, { name: 'gpu1', prefetch: 0 });
    agents.push(agent);
    const running = await enqueue('alice', { workflow: 'Warm-up' });
    await agent.next('assign');
    const a = await enqueue('alice');
    const b = await enqueue('bob');
    const t0 = Date.now();

    expect((await post(`/admin/api/jobs/${b.id}/front`)).json()).toMatchObject({ id: b.id, position: 1 });
    expect((await post(`/admin/api/jobs/${a.id}/priority`, { priority: 'high' })).json()).toMatchObject({
      priority: 'high',
    });
    expect((await post('/admin/api/queue/mode', { mode: 'priority' })).json()).toEqual({ mode: 'priority' });
    expect((await post('/admin/api/queue/pause', { paused: true })).json()).toEqual({ paused: true });
    expect((await post('/admin/api/queue/pause', { paused: false })).json()).toEqual({ paused: false });
    expect((await post('/admin/api/queue/limits', { maxPendingPerUser: 7 })).statusCode).toBe(200);
    expect(
      (await post('/admin/api/users/bob/limits', { maxPendingPerUser: 2, maxRunningPerUser: 3 })).json(),
    ).toMatchObject({
      user: 'bob',
      limits: { maxPendingPerUser: 2, maxRunningPerUser: 3 },
    });
    expect((await post('/admin/api/users/bob/limits', { maxRunningPerUser: null })).json().limits).toEqual({
      maxPendingPerUser: 2,
    });
    const reset = await post('/admin/api/users/bob/reset-password');
    expect(reset.headers['cache-control']).toBe('no-store');
    const password = reset.json().password as string;
    expect(password.length).toBeGreaterThanOrEqual(8);
    expect(await cp.services.accounts.verify('bob', password)).not.toBeNull();
    expect((await post('/admin/api/workers/envgpu:gpu1/drain', { draining: true })).json()).toMatchObject({
      draining: true,
    });
    expect(await agent.next('drain')).toEqual({ type: 'drain', draining: true });
    expect((await post('/admin/api/workers/envgpu:gpu1/drain', { draining: false })).json()).toMatchObject({
      draining: false,
    });
    expect((await post('/admin/api/broadcast', { message: '  Break until 14:30  ' })).json().message).toBe(
      'Break until 14:30',
    );
    expect((await post(`/admin/api/jobs/${running.id}/cancel`)).json()).toEqual({
      id: running.id,
      status: 'cancelled',
    });
    expect((await post('/admin/api/alerts/test')).json()).toEqual({ delivery: 'local', webhook: false });
    // A failing action is recorded too.
    const again = await post(`/admin/api/jobs/${running.id}/cancel`);
    expect(again.statusCode).toBe(409);
    expect((await post('/admin/api/broadcast', { message: '' })).json()).toEqual({ message: '', at: null });

    const settings = await cp.store.getSettings();
    expect(settings).toMatchObject({
      mode: 'priority',
      paused: false,
      limits: { maxPendingPerUser: 7 },
      userLimits: { bob: { maxPendingPerUser: 2 } },
    });

    const entries = (await auditEntries()).reverse();
    expect(entries.map((e) => [e.action, e.target, e.ok])).toEqual([
      ['job.front', b.id, true],
      ['job.priority', a.id, true],
      ['queue.mode', null, true],
      ['queue.pause', null, true],
      ['queue.resume', null, true],
      ['queue.limits', null, true],
      ['user.limits', 'bob', true],
      ['user.limits', 'bob', true],
      ['user.reset_password', 'bob', true],
      ['worker.drain', 'envgpu:gpu1', true],
      ['worker.undrain', 'envgpu:gpu1', true],
      ['broadcast.set', null, true],
      ['job.cancel', running.id, true],
      ['alerts.test', null, true],
      ['job.cancel', running.id, false],
      ['broadcast.clear', null, true],
    ]);
    for (const e of entries) {
      expect(e.by).toBe('teacher');
      expect(e.at).toBeGreaterThanOrEqual(t0);
      expect(e.at).toBeLessThanOrEqual(Date.now());
    }
    expect(entries[1]!.details).toMatchObject({ user: 'alice', number: a.seq, from: 'normal', to: 'high' });
    expect(entries[2]!.details).toEqual({ from: 'round_robin', to: 'priority' });
    expect(entries[11]!.details).toEqual({ message: 'Break until 14:30' });
    expect(entries[14]).toMatchObject({ ok: false, error: 'JOB_FINISHED' });
    expect(JSON.stringify(entries)).not.toContain(password);

    // Persisted: a fresh log (another process, a restart) reads the same entries.
    expect(await cp.store.listBlobs(AUDIT_NS)).toHaveLength(entries.length);
    const fresh = new AuditLog(cp.store);
    expect((await fresh.recent(200)).map((e) => e.id)).toEqual([...entries].reverse().map((e) => e.id));
  });

  it('shows the broadcast in every participant’s workshop banner', async () => {
    await cp.app.inject({
      method: 'POST',
      url: '/admin/api/broadcast',
      payload: { message: 'Lunch break until 13:30' },
      headers: { authorization: `Bearer ${API_TOKEN}` },
    });
    for (const [user, pw] of [
      ['alice', ALICE_PW],
      ['bob', 'bob-password-0123'],
    ] as const) {
      const res = await cp.app.inject({
        url: `/${user}/comfy-multi/status`,
        headers: { authorization: basic(user, pw) },
      });
      expect(res.statusCode).toBe(200);
      expect(res.json().broadcast).toMatchObject({ message: 'Lunch break until 13:30' });
    }
    expect(await cp.services.broadcast.get()).toMatchObject({
      message: 'Lunch break until 13:30',
      by: 'token:tests',
    });
  });

  it('refuses to move a running job or reset an instructor’s password', async () => {
    const auth = { authorization: `Bearer ${API_TOKEN}` };
    const job = await enqueue();
    await cp.services.queue.claim('envgpu:elsewhere', []);
    const front = await cp.app.inject({
      method: 'POST',
      url: `/admin/api/jobs/${job.id}/front`,
      headers: auth,
    });
    expect(front.statusCode).toBe(409);
    const reset = await cp.app.inject({
      method: 'POST',
      url: '/admin/api/users/teacher/reset-password',
      headers: auth,
    });
    expect(reset.statusCode).toBe(403);
    const missing = await cp.app.inject({
      method: 'POST',
      url: '/admin/api/users/nobody/limits',
      payload: {},
      headers: auth,
    });
    expect(missing.statusCode).toBe(404);
    const noWorker = await cp.app.inject({
      method: 'POST',
      url: '/admin/api/workers/x:y/drain',
      payload: { draining: true },
      headers: auth,
    });
    expect(noWorker.json().error.code).toBe('WORKER_NOT_FOUND');
  });
});

describe('live stream', () => {
  async function openLive(): Promise<{ ws: WebSocket; messages: LiveMessage[] }> {
    const cookie = await login('teacher', TEACHER_PW);
    const ws = new WebSocket(`${cp.url.replace('http', 'ws')}/admin/api/live`, {
      headers: { cookie: `cm_session=${cookie}` },
    });
    sockets.push(ws);
    const messages: LiveMessage[] = [];
    ws.on('message', (d) => messages.push(JSON.parse(d.toString()) as LiveMessage));
    await until(() => messages.length > 0, 3000, 'hello');
    return { ws, messages };
  }

  it('starts with the whole state, then pushes changes without being asked', async () => {
    await enqueue('alice', { workflow: 'First' });
    const { messages } = await openLive();
    const hello = messages[0]!;
    expect(hello.type).toBe('hello');
    if (hello.type !== 'hello') return;
    expect(hello.user).toBe('teacher');
    expect(hello.sections.pending.map((p) => p.workflow)).toEqual(['First']);
    expect(hello.sections.participants.map((p) => p.user)).toEqual(['alice', 'bob']);

    const job = await enqueue('bob', { workflow: 'Second' });
    await until(
      () => messages.some((m) => m.type === 'patch' && m.sections.pending?.some((p) => p.id === job.id)),
      2000,
      'a patch with the new job',
    );
    const { agent } = await TestAgent.register(cp.wsUrl, ENV_WORKER_TOKEN, { name: 'gpu9', prefetch: 0 });
    agents.push(agent);
    const assigned = await agent.next('assign');
    agent.send({
      type: 'job_event',
      jobId: assigned.job.jobId,
      attempt: assigned.job.attempt,
      event: { type: 'progress', data: { value: 7, max: 20, node: '1', prompt_id: assigned.job.jobId } },
    });
    await until(
      () =>
        messages.some(
          (m) =>
            m.type === 'patch' &&
            m.sections.workers?.some((w) =>
              w.held.some((h) => h.progress?.value === 7 && h.nodeType === 'EmptyImage'),
            ),
        ),
      2000,
      'progress on the worker card',
    );
    await agent.terminate();
    await until(
      () =>
        messages.some(
          (m) =>
            m.type === 'patch' &&
            m.sections.workers?.some((w) => w.id === 'envgpu:gpu9' && w.status === 'offline'),
        ),
      3000,
      'the worker shown offline',
    );
  });

  it('coalesces a burst of changes into a few pushes', async () => {
    const { messages } = await openLive();
    const before = messages.length;
    for (let i = 0; i < 20; i++) await enqueue(i % 2 ? 'alice' : 'bob');
    await sleep(800);
    const patches = messages.slice(before).filter((m) => m.type === 'patch');
    expect(patches.length).toBeGreaterThan(0);
    expect(patches.length).toBeLessThanOrEqual(5);
    const last = [...patches].reverse().find((m) => m.type === 'patch' && m.sections.pending);
    expect(last?.type === 'patch' && last.sections.pending?.length).toBe(20); // 10 per user, the default limit
  });

  it('counts participants’ open ComfyUI tabs as online', async () => {
    const { messages } = await openLive();
    const ws = new WebSocket(`${cp.url.replace('http', 'ws')}/alice/ws?clientId=t1`, {
      headers: { authorization: basic('alice', ALICE_PW) },
    });
    sockets.push(ws);
    await until(
      () =>
        messages.some(
          (m) => m.type === 'patch' && m.sections.participants?.find((p) => p.user === 'alice')?.online === 1,
        ),
      3000,
      'alice online',
    );
    expect(cp.services.connections.onlineUsers()).toEqual(['alice']);
    expect(cp.services.connections.clients()).toMatchObject({ participant: 1, admin: 1 });
    ws.close();
    await until(() => cp.services.connections.onlineUsers().length === 0, 3000, 'alice offline');
  });
});

describe('GET /api/v1/status', () => {
  const get = () =>
    cp.app.inject({ url: '/api/v1/status', headers: { authorization: `Bearer ${API_TOKEN}` } });

  it('reports version, uptime, store, queue, workers and participants', async () => {
    const res = await get();
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      healthy: true,
      problems: [],
      version: expect.any(String),
      uptimeSeconds: expect.any(Number),
      store: { backend: 'sqlite', reachable: true },
      queue: { mode: 'round_robin', paused: false, counts: { pending: 0, running: 0 } },
      workers: { total: 0, usable: 0, byStatus: { idle: 0, busy: 0, offline: 0 } },
      participants: { online: 0 },
      frontend: { source: 'none', mirroring: true, versionId: null, cachedVersions: 0 },
    });
    expect(res.json().notes).toContain(
      'No ComfyUI frontend yet: it is copied from the first GPU worker that connects.',
    );
  });

  it('is unhealthy (503) while jobs wait with no usable worker, healthy again once one connects', async () => {
    await enqueue();
    const bad = await get();
    expect(bad.statusCode).toBe(503);
    expect(bad.json().healthy).toBe(false);
    expect(bad.json().problems[0]).toMatch(/waiting but no GPU worker/);
    const { agent } = await TestAgent.register(cp.wsUrl, ENV_WORKER_TOKEN, { name: 'gpu1' });
    agents.push(agent);
    const ok = await get();
    expect(ok.statusCode).toBe(200);
    expect(ok.json().workers).toMatchObject({ total: 1, usable: 1 });
  });

  it('is unhealthy when the store is unreachable', async () => {
    await cp.store.close();
    const res = await get();
    expect(res.statusCode).toBe(503);
    expect(res.json()).toMatchObject({ healthy: false, store: { reachable: false } });
  });
});
