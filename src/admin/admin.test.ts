import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  API_TOKEN,
  ENV_WORKER_TOKEN,
  TestAgent,
  sleep,
  until,
  type ControlPlane,
} from '../../test/support/worker-hub-kit.js';
import { AUDIT_NS, AuditLog } from './audit-log.js';
import { CSRF_HEADER } from './csrf.js';
import type { LiveMessage } from './view-types.js';
import { ALICE_PW, TEACHER_PW, adminControlPlane, basic } from '../../test/support/admin-kit.js';

let cp: ControlPlane;
const { agents, sockets, login, instructorSession, enqueue, auditEntries } = adminControlPlane((started) => {
  cp = started;
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
